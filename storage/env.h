/* env.h — the LMDB environment under --data-dir: opening, the format-version record,
 * closing. Storage never logs and never includes protocol/ or uv.h; it returns codes. */
#ifndef WARREN_STORAGE_ENV_H
#define WARREN_STORAGE_ENV_H

struct storage;

#define STORAGE_FORMAT_VERSION 1
/* Storage-specific error codes (negative, below -30000 like LMDB's own). */
enum storage_err {
    STORAGE_E_FORMAT = -31001, /* the data dir was written by an incompatible version */
    STORAGE_E_LOCKED = -31002, /* another process holds the data dir */
};

/* Creates dir if needed and opens (or initialises) the environment in it. 0 and *ret, or
 * -errno, an LMDB error code, or a STORAGE_E_* code. */
int storage_open(const char *dir, struct storage **ret);
/* Closes the environment. Accepts NULL. */
void storage_close(struct storage *st);
/* Text for any code storage_* returns. */
const char *storage_strerror(int rc);

#endif
