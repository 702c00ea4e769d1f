/* records.h — the durable records as the broker hands them to storage and gets them back at
 * recovery: entities (exchanges, queues, bindings) and tenancy (users, virtual hosts,
 * permissions, topic permissions); their byte layout is in schema.h. Byte strings are
 * borrowed: from the caller when writing, from the database when recovering (valid only
 * during the callback). */
#ifndef WARREN_STORAGE_RECORDS_H
#define WARREN_STORAGE_RECORDS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct st_bytes {
    const void *p; /* borrowed */
    size_t len;
};

enum st_entity_flag {
    ST_DURABLE = 1 << 0,
    ST_AUTO_DELETE = 1 << 1,
    ST_INTERNAL = 1 << 2,
    ST_EXCLUSIVE = 1 << 3,
};

struct st_exchange {
    uint64_t id;
    struct st_bytes vhost, name, args;
    uint8_t type, flags;
};
struct st_queue {
    uint64_t id;
    struct st_bytes vhost, name, args;
    uint8_t flags;
    /* Recovery only: from queue_meta and the queue index. */
    uint64_t count;         /* persistent messages stored for this queue */
    uint64_t delivered_seq; /* highest seq delivered before the stop, 0 for none */
    uint64_t first_seq, next_seq; /* seq range of the entries (next_seq: one past the last) */
};
/* Bindings name their ends (exchanges predeclared at boot have no stored record). */
struct st_binding {
    uint64_t id;
    struct st_bytes vhost, src, dst, key, args;
    char dst_kind; /* 'q' or 'x' */
};

/* Tenancy records are keyed by their names (schema.h): each name in a key is at most
 * ST_KEY_NAME_MAX bytes and a whole key at most ST_KEY_MAX (LMDB's default key limit), which
 * leaves 508 bytes for the three names of a topic permission. Other strings may be up to
 * UINT32_MAX bytes. A record that breaks these limits is refused by its storage_put_*. */
#define ST_KEY_NAME_MAX 255
#define ST_KEY_MAX 511

struct st_user {
    struct st_bytes name;
    struct st_bytes password_hash; /* base64 text (broker/model/password.c), may be empty */
    struct st_bytes hashing;       /* e.g. "rabbit_password_hashing_sha256" */
    struct st_bytes tags;          /* comma-separated, e.g. "administrator,monitoring" */
};
struct st_vhost {
    struct st_bytes name, description;
    struct st_bytes default_queue_type; /* e.g. "classic", may be empty */
    int64_t max_connections, max_queues; /* -1: no limit */
};
/* The regular expressions a user is granted in a vhost. */
struct st_permission {
    struct st_bytes user, vhost; /* the key */
    struct st_bytes configure, write, read;
};
struct st_topic_permission {
    struct st_bytes user, vhost, exchange; /* the key */
    struct st_bytes write, read;
};

/* A runtime parameter (policies included), keyed by component, vhost and name. */
struct st_param {
    struct st_bytes component, vhost, name; /* the key */
    struct st_bytes value;                  /* JSON text */
};

/* Encoded sizes and encoders (into memory of that size). */
size_t st_exchange_size(const struct st_exchange *x);
void st_exchange_encode(const struct st_exchange *x, uint8_t *p);
size_t st_queue_size(const struct st_queue *q);
void st_queue_encode(const struct st_queue *q, uint8_t *p);
size_t st_binding_size(const struct st_binding *b);
void st_binding_encode(const struct st_binding *b, uint8_t *p);
/* Tenancy records: the size of key and value together (what a storage_put_* of it carries),
 * the encoder (the key, then the value, into memory of that size; returns the key's size),
 * and whether the record fits the limits above. */
size_t st_user_size(const struct st_user *u);
size_t st_user_encode(const struct st_user *u, uint8_t *p);
bool st_user_fits(const struct st_user *u);
size_t st_vhost_size(const struct st_vhost *v);
size_t st_vhost_encode(const struct st_vhost *v, uint8_t *p);
bool st_vhost_fits(const struct st_vhost *v);
size_t st_permission_size(const struct st_permission *pm);
size_t st_permission_encode(const struct st_permission *pm, uint8_t *p);
bool st_permission_fits(const struct st_permission *pm);
size_t st_topic_permission_size(const struct st_topic_permission *tp);
size_t st_topic_permission_encode(const struct st_topic_permission *tp, uint8_t *p);
bool st_topic_permission_fits(const struct st_topic_permission *tp);
size_t st_param_size(const struct st_param *pr);
size_t st_param_encode(const struct st_param *pr, uint8_t *p);
bool st_param_fits(const struct st_param *pr);
/* A tenancy key of n names (each a u8 length and its bytes): its size, 0 when it breaks the
 * limits above; the encoder writes that many bytes. */
size_t st_key_size(const struct st_bytes *names, size_t n);
void st_key_encode(const struct st_bytes *names, size_t n, uint8_t *p);

/* Decoders: 0, or STORAGE_E_CORRUPT. */
int st_exchange_decode(uint64_t id, const uint8_t *p, size_t len, struct st_exchange *ret);
int st_queue_decode(uint64_t id, const uint8_t *p, size_t len, struct st_queue *ret);
int st_binding_decode(uint64_t id, const uint8_t *p, size_t len, struct st_binding *ret);
/* Tenancy decoders take the key and the value. */
int st_user_decode(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                   struct st_user *ret);
int st_vhost_decode(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                    struct st_vhost *ret);
int st_permission_decode(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                         struct st_permission *ret);
int st_topic_permission_decode(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                               struct st_topic_permission *ret);
int st_param_decode(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                    struct st_param *ret);

#endif
