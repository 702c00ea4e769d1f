/* schema.h — storage-internal: the LMDB databases, their key and value layouts, and the
 * struct every storage file shares. Not included outside storage/.
 *
 * All integers are big-endian (lib/byteorder.h) so that keys sort numerically. Ids (entities
 * and messages) come from one 64-bit counter; at open it restarts above the largest id found
 * in any database.
 *
 *   meta        "format" -> u32 STORAGE_FORMAT_VERSION
 *               "epoch"  -> u32 number of opens; paged-out transient messages carry the
 *                           epoch they were written in and are dropped in later ones
 *               "seeded" -> empty: the broker has stored its first users and vhosts
 *                           (storage_put_seeded); absent in a new data dir and in one
 *                           written before tenancy records existed
 *               "enc_key", "enc_old" -> encryption at rest: the key id messages are sealed
 *                           with, and an unfinished rotation's old key (crypt.h)
 *   exchanges   u64 id -> u8 type, u8 flags, u8 vhost_len, vhost, u8 name_len, name, args
 *   queues      u64 id -> u8 flags, u8 vhost_len, vhost, u8 name_len, name, args
 *   queue_meta  u64 id -> per-queue index record: layout in qindex.h
 *   bindings    u64 id -> u8 dest kind ('q'|'x'), then u8-length vhost, source, destination
 *                         and key, then args
 *   messages    u64 id -> the broker's opaque message bytes (written once per message), or,
 *                         when a key is configured, those bytes sealed in an AES-256-GCM
 *                         envelope (crypt.h; its first byte 0xEC is one no plain message may
 *                         begin with). Only this database is encrypted: names, arguments, index
 *                         entries and tenancy records are not.
 *   msg_refs    u64 id -> u32 queue-index and delayed entries that name it, present only when
 *                         above one
 *   qindex      u64 queue id, u64 seq -> the message it names, with flags, epoch, expiry and
 *                         returns: layout in qindex.h (the one place that encodes it)
 *   delayed     u64 due (wall-clock ms), u64 message id -> u8 target kind ('x' a delayed
 *                         exchange, 'q' a queue with x-delivery-delay), u64 the target's entity
 *                         id, and for a transient message u32 epoch: a message held until it is
 *                         due (storage/delayed.h encodes it); a transient one from an earlier
 *                         epoch is dropped. Added within format version 1: an older data dir
 *                         gets it, empty, at its next open.
 *
 * Tenancy (users, vhosts and what users may do in them). Keys are names, each as a u8 length
 * and its bytes (so no name is mistaken for a prefix of another, and an empty name is a
 * 1-byte key); a name is at most 255 bytes and a key at most 511 (records.h). Values are
 * strings, each as a u32 length and its bytes, filling the value exactly.
 *   users              name -> password_hash (base64), hashing (algorithm name), tags
 *   vhosts             name -> i64 max_connections, i64 max_queues (-1: none), then the
 *                             strings description, default_queue_type
 *   permissions        user, vhost -> configure, write, read (regular expressions)
 *   topic_permissions  user, vhost, exchange -> write, read (regular expressions)
 *   params             component, vhost, name -> value (JSON text): RabbitMQ's runtime
 *                             parameters, policies (component "policy"), operator policies
 *                             ("operator_policy"), global parameters (vhost "") and user
 *                             limits ("user-limits", name = the user)
 * Storage does not cascade: deleting a vhost or a user leaves the permissions, topic
 * permissions and entities that name it; the broker deletes those itself, in the same batch.
 * These databases were added within format version 1: an older data dir gets them, empty,
 * at its next open (and has no "seeded" record, so the broker seeds it).
 *
 * Deduplication (broker/model/dedup.c), added within format version 1 as the tenancy
 * databases were (an older data dir gets it, empty, at its next open):
 *   dedup              u64 owner (the exchange's or queue's id), key (1..64 bytes, the
 *                             broker's: see dedup.c) -> u64 expires (wall-clock ms, 0: never),
 *                             u64 insertion number. Deleting the owner deletes its entries.
 *
 * Invariant: a message is in `messages` exactly while at least one qindex or delayed entry
 * names it; msg_refs holds the number of those entries whenever it is more than one. */
#ifndef WARREN_STORAGE_SCHEMA_H
#define WARREN_STORAGE_SCHEMA_H
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "lib/byteorder.h"

struct st_batch;

struct storage {
    MDB_env *env; /* owned */
    MDB_dbi meta, exchanges, queues, queue_meta, bindings, messages, msg_refs, qindex;
    MDB_dbi delayed;
    MDB_dbi users, vhosts, permissions, topic_permissions, params, dedup;
    int lock_fd;      /* owned: flock on <dir>/warrend.lock keeps a second process out */
    char *dir;        /* owned: the data directory, for free-space checks */
    uint64_t next_id; /* loop thread only */
    uint32_t epoch;   /* this open's number */
    bool sync;        /* fsync each commit (false only with --sync=none) */
    bool is_new;      /* meta had no "seeded" record at open */
    struct st_crypt *crypt; /* owned (crypt.c): keys and rotation state; NULL: no key */

    /* The writer thread and its hand-over. Threads: "mu" fields are read and written under mu
     * only; "loop" fields belong to the loop thread (batch_seq and open are changed under mu by
     * storage_submit, but only the loop thread ever reads or changes them); "atomic" ones are
     * read without a lock. Set before the thread starts and constant while it runs: thread,
     * notify_arg. Invariant: inflight is non-NULL exactly while the writer owns a batch. */
    pthread_t thread;
    bool thread_started;           /* loop */
    bool stopping;                 /* mu: the writer exits once inflight is done */
    bool closing;                  /* mu: closing: a full disk is no longer waited out */
    pthread_mutex_t mu;
    pthread_cond_t cond;           /* with mu: inflight taken or done, stopping */
    pthread_rwlock_t map_lock;     /* readers on the loop thread vs. map growth by the writer;
                                    * with nolock also vs. every write transaction */
    bool nolock;                   /* MDB_NOLOCK (ha.mode = shared): LMDB keeps no reader table,
                                    * so no read may overlap a write transaction */
    struct st_batch *open;         /* loop: collects this turn's writes */
    struct st_batch *inflight;     /* mu: handed to the writer, being committed */
    struct st_batch *done_head;    /* mu: committed, waiting for storage_collect */
    struct st_batch **done_tail;   /* mu */
    uint64_t batch_seq;            /* loop: number of the open batch */
    uint64_t ops_added;            /* loop: writes ever added */
    int failed;                    /* mu: sticky error; 0 while healthy */
    atomic_int disk_full;          /* atomic: set while a commit waits for disk space */
    void (*notify)(void *arg);     /* mu: called on the writer thread after each commit */
    void *notify_arg;
};

/* For env.c / batch.c: frees batches still queued at close. */
void storage__batches_free(struct storage *st);
/* For the scans (recover.c, delayed.c; loop thread, in read transaction txn): message msg_id's
 * bytes as the broker wrote them, opened when sealed (crypt__open_msg: valid until its next
 * call). 0; STORAGE_E_CORRUPT when it is missing; STORAGE_E_DECRYPT for a message that cannot
 * be opened (the caller may skip it); -ENOMEM or another LMDB error. */
int storage__read_msg(struct storage *st, MDB_txn *txn, uint64_t msg_id, const void **ret,
                      size_t *ret_len);

#endif
