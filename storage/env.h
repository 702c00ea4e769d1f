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
};

/* Creates dir if needed and opens (or initialises) the environment in it. With sync false,
 * commits are not flushed to disk (unsafe: a crash loses recent writes). 0 and *ret, or
 * -errno, an LMDB error code, or a STORAGE_E_* code. */
int storage_open(const char *dir, bool sync, struct storage **ret);
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
