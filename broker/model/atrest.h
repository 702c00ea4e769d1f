/* atrest.h — the broker's side of encryption at rest: the key from encryption.key_file or
 * encryption.key_command, storage opened with it (one log line for each refusal, saying what to
 * do), and key rotation on request (warrenctl rotate_key, through the management API): the key
 * source is read again off the loop, then storage re-encrypts in one bounded step per commit,
 * so service goes on. The cryptography and the stored form are storage's (storage/crypt.h). */
#ifndef WARREN_ATREST_H
#define WARREN_ATREST_H
#include <stdbool.h>
#include <stdint.h>
#include "storage/crypt.h"

struct broker;
struct atrest;

enum atrest_state {
    ATREST_IDLE,     /* the key in use seals every new record */
    ATREST_LOADING,  /* a rotation reads the key source again (threadpool) */
    ATREST_ROTATING, /* stored records are being re-encrypted */
    ATREST_FAILED,   /* the last rotation could not read its key: nothing changed */
    ATREST_STATE_MAX
};

struct atrest_status {
    bool enabled;               /* a key is configured */
    const char *source;         /* "encryption.key_file" or "encryption.key_command" */
    const char *path;           /* the file or command (borrowed from the broker) */
    enum atrest_state state;
    struct storage_crypt_status store; /* key ids and re-encryption counts */
    const char *error;          /* why the last rotation failed; NULL when it did not */
    uint64_t rotations;         /* finished since start */
    uint64_t started_ms;        /* the running or last rotation's start (loop time), 0: none */
    uint64_t finished_ms;       /* ... and its end, 0 while running or none */
};

/* Opens storage on dir for b (b->store): with the key read from key_file or key_command (both
 * may be NULL: encryption off; both set is refused), checked against the data dir (storage_
 * open_opts). Logs one line for any failure, naming what to do; then returns it: -ENOKEY when
 * the key could not be read, a STORAGE_E_* or other storage code. A rotation that a previous run
 * left unfinished is resumed. */
int atrest_open(struct broker *b, const char *dir, bool sync, const char *key_file,
                const char *key_command);
/* True for the codes of atrest_open that a configuration change fixes (exit 78): a key that
 * cannot be read, a wrong or missing key. */
bool atrest_config_error(int rc);

/* Starts a key rotation: reads the key source again (off the loop); a new key then replaces the
 * one in use and every stored record is re-encrypted in the background; the same key only seals
 * the records written before encryption was configured. 0 (started: follow atrest_status),
 * -ENOTSUP when encryption is off, -EBUSY while a rotation loads or runs. */
int atrest_rotate(struct broker *b);
void atrest_status(struct broker *b, struct atrest_status *ret);
const char *atrest_state_name(enum atrest_state s);

/* Accepts NULL. The loop must have run out (no key load in flight). */
void atrest_free(struct atrest *a);

#endif
