/* records.h — the durable entity records (exchanges, queues, bindings) as the broker hands
 * them to storage and gets them back at recovery; their byte layout is in schema.h. Byte
 * strings are borrowed: from the caller when writing, from the database when recovering
 * (valid only during the callback). */
#ifndef WARREN_STORAGE_RECORDS_H
#define WARREN_STORAGE_RECORDS_H
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

/* Encoded sizes and encoders (into memory of that size). */
size_t st_exchange_size(const struct st_exchange *x);
void st_exchange_encode(const struct st_exchange *x, uint8_t *p);
size_t st_queue_size(const struct st_queue *q);
void st_queue_encode(const struct st_queue *q, uint8_t *p);
size_t st_binding_size(const struct st_binding *b);
void st_binding_encode(const struct st_binding *b, uint8_t *p);
/* Decoders: 0, or STORAGE_E_CORRUPT. */
int st_exchange_decode(uint64_t id, const uint8_t *p, size_t len, struct st_exchange *ret);
int st_queue_decode(uint64_t id, const uint8_t *p, size_t len, struct st_queue *ret);
int st_binding_decode(uint64_t id, const uint8_t *p, size_t len, struct st_binding *ret);

#endif
