/* delayed.h — the `delayed` database (schema.h): persistent messages held until they are due,
 * keyed by (due, message id) so that the soonest come first. Owns the key and value layout and
 * the read of the soonest entries; the writes are batch ops (batch.h: storage_put_delayed and
 * its kin). Invariant: every entry names a message in `messages` and counts as one of its
 * references (msg_refs), as a qindex entry does. */
#ifndef WARREN_STORAGE_DELAYED_H
#define WARREN_STORAGE_DELAYED_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct storage;

#define DELAYED_KEY_SIZE 16 /* u64 due, u64 msg id */
#define DELAYED_VAL_SIZE 9  /* u8 kind, u64 target id */
#define DELAYED_VAL_SIZE_T 13 /* the same, then u32 epoch: a transient message's entry */

void delayed_key_encode(uint8_t k[DELAYED_KEY_SIZE], uint64_t due, uint64_t msg_id);

/* One stored entry, as storage_scan_delayed gives it. */
struct st_delayed {
    uint64_t due, msg_id; /* the key */
    char kind;            /* 'x' or 'q' */
    uint64_t target;      /* the target's entity id */
    bool stale;           /* a transient message's entry from an earlier open: drop it (the
                           * callback gets no bytes) */
};

/* Called for each entry; data[0..len) are the message's bytes, valid only during the call.
 * 0 to go on, > 0 to stop after this entry, < 0 to stop with that error. It may add writes
 * (storage_del_delayed for an entry whose target is gone) but must not read storage. */
typedef int (*st_delayed_cb)(void *arg, const struct st_delayed *e, const void *data,
                             size_t len);

/* Walks up to max entries with key >= (due, msg_id), in key order, in one read-only
 * transaction. 0 with *ret_n the entries cb took (fewer than max: the end was reached), or an
 * error (the callback's, STORAGE_E_CORRUPT, STORAGE_E_DECRYPT for a message that cannot be
 * opened, an LMDB code); *ret_n untouched then. */
int storage_scan_delayed(struct storage *st, uint64_t due, uint64_t msg_id, size_t max,
                         st_delayed_cb cb, void *arg, size_t *ret_n);

#endif
