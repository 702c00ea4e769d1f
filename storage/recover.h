/* recover.h — reading back what was stored: the entities at start-up (before the writer
 * thread starts) and a queue's messages when the broker pages them in (loop thread). Reads
 * never block the writer: LMDB readers see the last committed state. */
#ifndef WARREN_STORAGE_RECOVER_H
#define WARREN_STORAGE_RECOVER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct storage;
struct st_exchange;
struct st_queue;
struct st_binding;
struct st_user;
struct st_vhost;
struct st_permission;
struct st_topic_permission;
struct st_param;

/* Callbacks for storage_recover; a non-zero return stops the walk and is returned. The
 * tenancy ones are optional (NULL: that table is not read). */
struct st_recover_ops {
    int (*exchange)(void *arg, const struct st_exchange *x);
    int (*queue)(void *arg, const struct st_queue *q);
    int (*binding)(void *arg, const struct st_binding *b);
    int (*vhost)(void *arg, const struct st_vhost *v);
    int (*user)(void *arg, const struct st_user *u);
    int (*permission)(void *arg, const struct st_permission *pm);
    int (*topic_permission)(void *arg, const struct st_topic_permission *tp);
    int (*param)(void *arg, const struct st_param *pr);
};
/* In one read transaction, calls ops for every vhost, then every user, every permission,
 * every topic permission and every runtime parameter (each table in key order: schema.h), then
 * every exchange, every queue (with its message count, seq range and delivered mark: index
 * metadata only, no message is read), then every binding. Records may name vhosts or users that are not
 * stored (storage does not cascade deletes): the broker decides what to do with them. */
int storage_recover(struct storage *st, const struct st_recover_ops *ops, void *arg);

struct st_entry {
    uint64_t seq, msg_id;
    uint8_t flags;  /* STORAGE_IDX_* */
    bool stale;     /* a transient message from before the last start: drop it (no bytes) */
    uint64_t expires; /* wall-clock ms (TTL), 0: never */
    uint16_t returns; /* times it came back unacked (quorum delivery count) */
    int err;        /* 0, or why the message's bytes cannot be given (data NULL, len 0):
                     * STORAGE_E_DECRYPT, its envelope fails authentication or names a key
                     * that is not configured (crypt.h) */
    void *data;     /* storage_read_queue: owned by the caller (malloc), NULL when stale;
                     * storage_scan_queue: NULL (the bytes are the callback's data) */
    size_t len;     /* message bytes */
};

/* Called by storage_scan_queue for one index entry. data[0..len) are the stored message bytes,
 * borrowed from the database (read-only memory) or, for an encrypted record, from storage's
 * opening buffer: valid only until the callback returns, so copy what is kept, once, straight
 * into its own object. data is NULL for a stale entry and for one with e->err set.
 * Returns 0 to go on, > 0 to stop after this entry, < 0 to stop with that error. It may add
 * writes (storage_put_* / storage_del_*: storage_del_idx for a stale entry, say) but must not
 * read storage (storage_scan_queue, storage_read_queue, storage_recover). */
typedef int (*st_entry_cb)(void *arg, const struct st_entry *e, const void *data, size_t len);

/* Walks up to max index entries of queue qid with seq >= from, in seq order, calling cb for
 * each with its message's bytes (one read-only transaction, no copy, no allocation). 0 with
 * *ret_n the number of entries cb took (0 at the end of the queue), or an error: the callback's
 * negative return, STORAGE_E_CORRUPT (an entry or its message does not decode or is missing)
 * or an LMDB code; *ret_n untouched then. */
int storage_scan_queue(struct storage *st, uint64_t qid, uint64_t from, size_t max,
                       st_entry_cb cb, void *arg, size_t *ret_n);

/* The copying form of storage_scan_queue: fills out[0..*ret_n) with a malloc'd copy of each
 * message (data NULL when stale). 0 or an error (nothing allocated, *ret_n = 0). Kept until the
 * broker's page-in moves to storage_scan_queue (it costs a malloc and a copy per message that
 * the broker then copies again). */
int storage_read_queue(struct storage *st, uint64_t qid, uint64_t from, size_t max,
                       struct st_entry *out, size_t *ret_n);

/* Called by storage_scan_dedup for one deduplication entry (schema.h's dedup); key is borrowed
 * until it returns. Non-zero stops the walk and is returned. */
typedef int (*st_dedup_cb)(void *arg, uint64_t owner, const void *key, size_t klen,
                           uint64_t expires, uint64_t seq);
/* Walks every deduplication entry in key order (owner, then key), in one read transaction.
 * 0, the callback's return, STORAGE_E_CORRUPT or an LMDB code. Loop thread, before or between
 * other reads (not from inside another scan's callback). */
int storage_scan_dedup(struct storage *st, st_dedup_cb cb, void *arg);

#endif
