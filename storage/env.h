/* env.h — the LMDB environment under --data-dir: opening (with the format-version check and
 * the data-dir lock), ids, closing. Storage never logs and never includes protocol/ or uv.h;
 * it returns codes that storage_strerror() explains. */
#ifndef WARREN_STORAGE_ENV_H
#define WARREN_STORAGE_ENV_H
#include <stdbool.h>
#include <stdint.h>

struct storage;

#define STORAGE_FORMAT_VERSION 1
/* Storage-specific error codes (negative, below -30000 like LMDB's own). */
enum storage_err {
    STORAGE_E_FORMAT = -31001, /* the data dir was written by an incompatible version */
    STORAGE_E_LOCKED = -31002, /* another process holds the data dir */
    STORAGE_E_CORRUPT = -31003, /* a record does not decode */
    /* Encryption at rest (crypt.h). */
    STORAGE_E_NOKEY = -31004,    /* messages are encrypted but no key was given */
    STORAGE_E_WRONGKEY = -31005, /* the key given is not the one messages are encrypted with */
    STORAGE_E_ROTATING = -31006, /* the key given is the one an unfinished rotation replaced */
    STORAGE_E_DECRYPT = -31007,  /* a stored message fails authentication, or its key is gone */
    STORAGE_E_CRYPTO = -31008,   /* the cipher itself failed (OpenSSL) */
};

/* How to open, and (out) what the data dir says about encryption keys: filled as far as it was
 * read, whether or not the open succeeds, so that a refusal can say what the data dir wants. */
struct storage_opts {
    bool sync;          /* fsync each commit (false: --sync=none, unsafe) */
    bool nolock;        /* shared storage (ha.mode = shared): open with MDB_NOLOCK, since LMDB's
                         * lock file cannot coordinate hosts; the HA lock keeps other processes
                         * out, and reads and commits exclude each other here */
    const uint8_t *key; /* 32 bytes: seal message records with AES-256-GCM (crypt.h) under this
                         * key; NULL: write them in plain. Borrowed during the call only. */
    char key_id[17];    /* out: the id of key ("" without one) */
    char stored_key_id[17]; /* out: the key id the data dir's messages use ("" none recorded) */
    char rotating_from[17]; /* out: an unfinished rotation's old key id ("" none) */
    uint64_t messages;  /* out: message records stored */
};

/* Creates dir if needed and opens (or initialises) the environment in it. With sync false,
 * commits are not flushed to disk (unsafe: a crash loses recent writes). 0 and *ret, or
 * -errno, an LMDB error code, or a STORAGE_E_* code. */
int storage_open(const char *dir, bool sync, struct storage **ret);
/* storage_open with o->key: before anything is written, the key is checked against the data
 * dir's "enc_key" record (crypt.h): STORAGE_E_WRONGKEY when messages are stored under another
 * key, STORAGE_E_ROTATING when it is the key an unfinished rotation replaced, STORAGE_E_NOKEY
 * when messages are encrypted and o->key is NULL; each leaves the data dir untouched. A data dir
 * without messages takes any key (or none). Plain messages written before a key was configured
 * stay readable. */
int storage_open_opts(const char *dir, struct storage_opts *o, struct storage **ret);
/* Stops the writer thread (after committing what it was given) and closes. Accepts NULL. */
void storage_close(struct storage *st);
/* Text for any code storage_* returns. */
const char *storage_strerror(int rc);
/* A new id for an entity or message, unique in this data dir. Loop thread only. */
uint64_t storage_new_id(struct storage *st);
/* True when the data dir's tenancy has never been seeded: it was created by this open, or
 * written before tenancy records existed, or the batch that seeded it never became durable
 * (a crash right after the first start). The broker then stores its default user, vhost and
 * permissions, with storage_put_seeded() in the same batch (batch.h), as RabbitMQ seeds on a
 * node's first boot only. Stays as it was at open. */
bool storage_is_new(const struct storage *st);

#endif
