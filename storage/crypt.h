/* crypt.h — encryption at rest of message records: AES-256-GCM envelopes (OpenSSL EVP), the
 * keys that seal and open them (one set per thread), and the key rotation, whose re-encryption
 * runs on the writer thread in bounded steps. Entities, index entries and tenancy records are
 * not encrypted (schema.h). Storage never logs: the broker turns the codes into log lines.
 *
 * Envelope (a `messages` value when a key is configured; CRYPT_OVERHEAD bytes more than the
 * message):  u8 0xEC, 8-byte key id, 12-byte nonce, ciphertext, 16-byte GCM tag.
 * The AAD is the envelope's first 21 bytes, then 'm' and the record's u64 key (message id), so
 * a record moved under another id, or to another key id, fails authentication. A key id is the
 * first 8 bytes of SHA-256("warren at-rest key id v1" || key). Nonces are 12 random bytes drawn
 * at each open whose low 8 bytes count up per record sealed (base + n mod 2^64): unique per key
 * within a process and, across processes, unless two opens draw the same 4-byte prefix and
 * overlapping counter ranges (about 2^-32 * n / 2^64), with no random draw per record.
 *
 * meta records (schema.h):  "enc_key" -> the 8-byte id of the key new records are sealed with;
 * "enc_old" -> while a rotation is unfinished, the old key's id then the old key sealed with the
 * new one (AAD 'k'), so that a restart with the new key alone can read and finish it.
 *
 * Invariant: every envelope in `messages` is under the "enc_key" key or, while "enc_old" exists,
 * the old one; a data dir with "enc_key" and messages is never opened without its key, and a
 * refused open writes nothing. */
#ifndef WARREN_STORAGE_CRYPT_H
#define WARREN_STORAGE_CRYPT_H
#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct storage;
struct storage_opts;

enum {
    CRYPT_KEY_SIZE = 32,
    CRYPT_ID_SIZE = 8,
    CRYPT_NONCE_SIZE = 12,
    CRYPT_TAG_SIZE = 16,
    CRYPT_HEAD_SIZE = 1 + CRYPT_ID_SIZE + CRYPT_NONCE_SIZE,
    CRYPT_OVERHEAD = CRYPT_HEAD_SIZE + CRYPT_TAG_SIZE,
    CRYPT_MAGIC = 0xEC, /* a plain message must not begin with it (the broker's begin with 1) */
    CRYPT_ID_HEX = 2 * CRYPT_ID_SIZE + 1,
};

/* ---- for the broker (loop thread) ------------------------------------------------------------ */

/* The id of key (32 bytes) as 16 hex digits and a NUL, as logs and the API show it. */
void storage_key_id(const uint8_t key[CRYPT_KEY_SIZE], char hex[CRYPT_ID_HEX]);

struct storage_crypt_status {
    bool enabled;                  /* a key is configured */
    char key_id[CRYPT_ID_HEX];     /* the key new records are sealed with ("" when off) */
    char old_key_id[CRYPT_ID_HEX]; /* the key a running rotation replaces ("" when none) */
    bool rotating;                 /* storage_rotate_key() (or an open) started one, and the
                                    * broker has not yet seen it finish */
    uint64_t total;                /* message records when it started */
    uint64_t examined, reencrypted, damaged; /* records so far (committed steps only) */
};
void storage_crypt_status(struct storage *st, struct storage_crypt_status *ret);

/* Starts a key rotation: from the open batch on, new records are sealed with key (32 bytes,
 * copied; the caller wipes its own copy), and the "enc_key"/"enc_old" records change in that
 * same batch. Then storage_reencrypt_step() re-encrypts every record not under key: those under
 * the old key and plaintext ones written before encryption was configured. With the key in use,
 * only the latter (and nothing in meta changes). 0; -EINVAL when storage has no key; -EBUSY
 * while a rotation runs (until storage_rotation_done() said so); -ENOMEM with nothing changed. */
int storage_rotate_key(struct storage *st, const uint8_t key[CRYPT_KEY_SIZE]);
/* Adds one re-encryption step to the open batch: at most max records (and about 4 MiB) from
 * where the last step stopped; the step that finds no more records ends the rotation (and drops
 * "enc_old"). Nothing while no rotation runs. 0 or -ENOMEM (a lost write: storage fails). */
int storage_reencrypt_step(struct storage *st, size_t max);
/* After a step's batch is durable: true once the rotation has finished, and then the old key is
 * forgotten (records still under it were damaged: storage_scan_queue reports them). */
bool storage_rotation_done(struct storage *st);

/* ---- storage-internal ------------------------------------------------------------------------ */

struct st_crypt;

/* What an open decided about keys before writing anything (crypt__check), done by
 * crypt__apply_plan in the open's write transaction. */
struct crypt_plan {
    bool put_id, del_id, del_old;
    uint8_t id[CRYPT_ID_SIZE];
};

/* Reads the key records and the message count in a read-only transaction and decides: 0 with
 * *plan (and st->crypt set up when key is not NULL), or STORAGE_E_NOKEY / _WRONGKEY / _ROTATING
 * / _CORRUPT / -ENOMEM / an LMDB code with nothing written. Fills o's diagnostic fields. */
int crypt__check(struct storage *st, const uint8_t *key, struct storage_opts *o,
                 struct crypt_plan *plan);
int crypt__apply_plan(struct storage *st, MDB_txn *txn, const struct crypt_plan *plan);
void crypt__free(struct storage *st);

static inline bool crypt__is_envelope(const void *v, size_t len)
{
    return len >= CRYPT_OVERHEAD && *(const uint8_t *)v == CRYPT_MAGIC;
}

/* Writer thread. True when new records are sealed. */
bool crypt__sealing(const struct storage *st);
/* Seals message msg_id's bytes, head[0..hlen) then body[0..blen), into out (hlen + blen +
 * CRYPT_OVERHEAD bytes). 0 or STORAGE_E_CRYPTO. */
int crypt__seal_msg(struct storage *st, uint64_t msg_id, const void *head, size_t hlen,
                    const void *body, size_t blen, uint8_t *out);
/* The writer's side of storage_rotate_key / storage_reencrypt_step, inside the batch's
 * transaction. Their effect on the writer's state is undone by crypt__txn_abort() when the
 * transaction is not committed, and published by crypt__txn_commit(). */
int crypt__apply_rotate(struct storage *st, MDB_txn *txn, const uint8_t key[CRYPT_KEY_SIZE]);
int crypt__apply_step(struct storage *st, MDB_txn *txn, size_t max);
void crypt__txn_begin(struct storage *st);
void crypt__txn_abort(struct storage *st);
void crypt__txn_commit(struct storage *st);

/* Loop thread. A stored message's bytes as the broker wrote them: a plain value as it is, an
 * envelope opened into a buffer of storage's (valid until the next call). 0 with *ret and *ret_len;
 * STORAGE_E_DECRYPT (fails authentication, or its key is not loaded); -ENOMEM. */
int crypt__open_msg(struct storage *st, uint64_t msg_id, const void *val, size_t len,
                    const void **ret, size_t *ret_len);
/* Loop thread, after a page-in: gives back a large opening buffer. */
void crypt__scan_done(struct storage *st);
/* Loop thread, for storage_rotate_key (batch.c): the loop's keys take key; -EBUSY / -EINVAL /
 * -ENOMEM as storage_rotate_key. */
int crypt__loop_rotate(struct storage *st, const uint8_t key[CRYPT_KEY_SIZE]);

/* OPENSSL_cleanse. */
void crypt__wipe(void *p, size_t n);

#endif
