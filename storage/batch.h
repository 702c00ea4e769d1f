/* batch.h — group commit. The loop thread adds writes to the open batch during a turn and
 * submits it; one writer thread commits each submitted batch in one LMDB transaction (one
 * fsync for all of it) and then calls the notify function, after which the loop collects it.
 * Batches are numbered; "batch N is durable" means every write added before N was submitted
 * is on disk. Only one batch is being committed at a time; the next one grows meanwhile,
 * which is what makes commits larger as load rises. */
#ifndef WARREN_STORAGE_BATCH_H
#define WARREN_STORAGE_BATCH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct storage;
struct st_exchange;
struct st_queue;
struct st_binding;
struct st_bytes;
struct st_user;
struct st_vhost;
struct st_permission;
struct st_topic_permission;
struct st_param;

enum storage_idx_flag {
    STORAGE_IDX_TRANSIENT = 1 << 0, /* paged-out transient message: dropped at recovery */
};

/* Starts the writer thread; notify(arg) runs on it after every commit, and on the loop thread
 * when a write is lost (below): typically a uv_async_send. 0 or -errno. */
int storage_start(struct storage *st, void (*notify)(void *arg), void *arg);
/* How many writes were ever added: compare before and after an operation to learn whether it
 * wrote anything. */
uint64_t storage_writes(const struct storage *st);
/* Number of the open batch: the writes added now become durable with it. */
uint64_t storage_batch_no(const struct storage *st);

/* Writes, added to the open batch (loop thread). Records are copied.
 *
 * Each returns 0, or -ENOMEM when the batch could not grow; none aborts. A write that fails
 * is lost, so storage fails as after a failed commit (sticky): the open batch and every later
 * one are never committed, and storage_collect() reports -ENOMEM (notify is called so that the
 * loop looks). To refuse an operation instead (a publish, a declare), storage_reserve() room
 * for all its writes first: writes covered by a reservation cannot fail. */

/* Makes room in the open batch for `nwrites` more writes of the functions below carrying
 * `nbytes` more copied bytes in all (st_*_size() of entity records, hlen of messages; index and
 * delete writes carry none). That many such writes added before the next storage_submit()
 * cannot fail. 0, or -ENOMEM with storage still healthy (nothing was added). */
int storage_reserve(struct storage *st, size_t nwrites, size_t nbytes);

int storage_put_exchange(struct storage *st, const struct st_exchange *x);
int storage_put_queue(struct storage *st, const struct st_queue *q);
int storage_put_binding(struct storage *st, const struct st_binding *b);
/* Deleting a queue also deletes its index entries and the messages only they named. */
int storage_del_entity(struct storage *st, char kind /* 'x' 'q' 'b' */, uint64_t id);
/* A message, referenced by `refs` index entries added in this same batch. The bytes are
 * head[0..hlen) (copied) then body[0..blen) (borrowed until release(release_arg) is called).
 * release is called exactly once, on the loop thread: by storage_collect() once the batch is
 * done, or before this returns when it fails. */
int storage_put_msg(struct storage *st, uint64_t msg_id, uint32_t refs, const void *head,
                    size_t hlen, const void *body, size_t blen, void (*release)(void *),
                    void *release_arg);

/* Tenancy records (records.h, layout in schema.h), keyed by their names: putting a record
 * again under the same names replaces it; deleting one that is not there does nothing. The
 * bytes each carries (for storage_reserve): st_*_size() of the record for a put, and for a
 * delete its key, one byte per name plus the names' lengths (st_key_size()). Besides
 * -ENOMEM (a lost write, as above), each returns -ENAMETOOLONG with nothing added and storage
 * healthy when a name breaks the key limits of records.h (or a string is over 4 GiB).
 * Nothing cascades: deleting a vhost or a user leaves its permissions, topic permissions and
 * entities; the broker deletes those itself, in the same batch. */
int storage_put_user(struct storage *st, const struct st_user *u);
int storage_del_user(struct storage *st, struct st_bytes name);
int storage_put_vhost(struct storage *st, const struct st_vhost *v);
int storage_del_vhost(struct storage *st, struct st_bytes name);
int storage_put_permission(struct storage *st, const struct st_permission *pm);
int storage_del_permission(struct storage *st, struct st_bytes user, struct st_bytes vhost);
int storage_put_topic_permission(struct storage *st, const struct st_topic_permission *tp);
int storage_del_topic_permission(struct storage *st, struct st_bytes user, struct st_bytes vhost,
                                 struct st_bytes exchange);
/* Runtime parameters and policies (schema.h's params), keyed by component, vhost and name. */
int storage_put_param(struct storage *st, const struct st_param *pr);
int storage_del_param(struct storage *st, struct st_bytes component, struct st_bytes vhost,
                      struct st_bytes name);
/* Records that the broker has seeded the tenancy (storage_is_new(), env.h): add it to the
 * batch that stores the default user and vhost. Carries no bytes. 0 or -ENOMEM. */
int storage_put_seeded(struct storage *st);

/* expires: wall-clock ms after which the message is dead (TTL), 0 for never; returns: times
 * it came back unacked (quorum queues' delivery count). Putting an existing (qid, seq) again
 * updates it. */
int storage_put_idx(struct storage *st, uint64_t qid, uint64_t seq, uint64_t msg_id,
                    uint8_t flags, uint64_t expires, uint16_t returns);
/* Removes an index entry (ack, drop) and the message when no entry names it any more. */
int storage_del_idx(struct storage *st, uint64_t qid, uint64_t seq);
/* Removes every index entry of qid with seq >= from (purge of the paged-out part). */
int storage_del_idx_from(struct storage *st, uint64_t qid, uint64_t from);
/* count: persistent index entries of qid; delivered_seq: the highest seq delivered. */
int storage_put_queue_meta(struct storage *st, uint64_t qid, uint64_t count,
                           uint64_t delivered_seq);

/* Deduplication entries (schema.h's dedup) of exchange or queue `owner` (its storage id):
 * key[0..klen) with its expiry (wall-clock ms, 0: never) and insertion number. Deleting an
 * exchange or queue (storage_del_entity) deletes its entries too. -ENAMETOOLONG when klen is 0
 * or over STORAGE_DEDUP_KEY_MAX (nothing added); else as the writes above (klen bytes each). */
#define STORAGE_DEDUP_KEY_MAX 64
int storage_put_dedup(struct storage *st, uint64_t owner, const void *key, size_t klen,
                      uint64_t expires, uint64_t seq);
int storage_del_dedup(struct storage *st, uint64_t owner, const void *key, size_t klen);

/* Delayed messages (delayed.h). An entry holds message msg_id (written with storage_put_msg in
 * this batch, the entry counted in its refs) until `due` (wall-clock ms) for a target (kind
 * 'x': a delayed exchange, 'q': a queue; target: its entity id, or for a transient entry any
 * id unique in this open). A transient entry carries this open's epoch and is stale in later
 * ones. Deleting an entry drops the message when nothing else names it; deleting a target's
 * entries walks the whole database. */
int storage_put_delayed(struct storage *st, uint64_t due, uint64_t msg_id, char kind,
                        uint64_t target, bool transient);
int storage_del_delayed(struct storage *st, uint64_t due, uint64_t msg_id);
int storage_del_delayed_target(struct storage *st, char kind, uint64_t target);

/* Hands the open batch to the writer unless one is being committed. Returns 1 when it did,
 * 0 when there was nothing to do or the writer is busy (submit again after collecting). */
int storage_submit(struct storage *st);
/* Loop thread, after notify: releases committed batches' borrowed data and returns the
 * number of the newest durable batch (0 if none yet). *ret_failed gets the sticky error (0
 * while healthy): a failed commit's, or -ENOMEM after a lost write. After it nothing more
 * becomes durable. */
uint64_t storage_collect(struct storage *st, int *ret_failed);
/* True while a commit is held up by a full disk (the writer retries every second). */
int storage_disk_full(const struct storage *st);

#endif
