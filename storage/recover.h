/* recover.h — reading back what was stored: the entities at start-up (before the writer
 * thread starts) and a queue's messages when the broker pages them in (loop thread). Reads
 * never block the writer: LMDB readers see the last committed state. */
#ifndef WARREN_STORAGE_RECOVER_H
#define WARREN_STORAGE_RECOVER_H
#include <stddef.h>
#include <stdint.h>

struct storage;
struct st_exchange;
struct st_queue;
struct st_binding;

/* Callbacks for storage_recover; a non-zero return stops the walk and is returned. */
struct st_recover_ops {
    int (*exchange)(void *arg, const struct st_exchange *x);
    int (*queue)(void *arg, const struct st_queue *q);
    int (*binding)(void *arg, const struct st_binding *b);
};
/* Calls ops for every exchange, then every queue (with its message count, seq range and
 * delivered mark: index metadata only, no message is read), then every binding. */
int storage_recover(struct storage *st, const struct st_recover_ops *ops, void *arg);

struct st_entry {
    uint64_t seq, msg_id;
    uint8_t flags;  /* STORAGE_IDX_* */
    bool stale;     /* a transient message from before the last start: drop it */
    uint64_t expires; /* wall-clock ms (TTL), 0: never */
    uint16_t returns; /* times it came back unacked (quorum delivery count) */
    void *data;     /* owned by the caller (malloc): the message bytes */
    size_t len;
};
/* Reads up to max index entries of queue qid with seq >= from, each with a malloc'd copy of
 * its message. *ret_n gets the count (0 at the end). 0 or an error (nothing allocated). */
int storage_read_queue(struct storage *st, uint64_t qid, uint64_t from, size_t max,
                       struct st_entry *out, size_t *ret_n);

#endif
