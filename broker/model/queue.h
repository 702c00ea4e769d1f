/* queue.h — a queue and its consumers. Ready messages are, in order: a ring of message
 * references in memory (the head window, O(1) push/pop), then for durable queues that grew
 * past the window a run of messages kept only on disk, then messages whose write is still
 * being committed. Consumers are served by x-priority, round-robin within a priority, through
 * the consumer_ops interface; with x-single-active-consumer one of them at a time. */
#ifndef WARREN_QUEUE_H
#define WARREN_QUEUE_H
#include <stdbool.h>
#include <stdint.h>
#include "lib/list.h"
#include "lib/timer.h"
#include "protocol/wire.h"

struct msg;
struct vhost;
struct dedup;

enum qentry_flag {
    QE_REDELIVERED = 1 << 0,
    QE_STORED = 1 << 1,     /* has a qindex entry in storage (removed when settled) */
    QE_PERSISTENT = 1 << 2, /* a persistent message: counted in stored_count */
    QE_TTL0 = 1 << 3,       /* TTL 0: delivered at once if a consumer can take it, else expired */
    QE_GROUP_OUT = 1 << 4,  /* x-message-groups: taken from its group, which stays held until
                             * the entry is settled or requeued (groups.c) */
};

struct qentry {
    struct msg *m;    /* ref */
    uint64_t seq;     /* position in the queue: requeued messages go back to their place */
    uint64_t expires; /* wall-clock ms after which it is dead (TTL), 0: never */
    uint16_t returns; /* times it came back unacked (quorum queues: x-delivery-count) */
    uint8_t flags;    /* enum qentry_flag */
    uint32_t group;   /* x-message-groups: its group's slot while QE_GROUP_OUT (groups.c) */
};

/* A FIFO of entries (the in-memory window has one per priority level). */
struct qring {
    struct qentry *e; /* owned, capacity a power of two */
    uint32_t cap, head, count;
    uint32_t held;    /* entries out for delivery that may come back: cap >= count + held */
};

/* Entries whose storage write is in batch `batch`, not yet known durable. */
struct pentry {
    struct qentry e;
    uint64_t batch;
};

struct consumer;
struct queue;

/* A queue's consumers of one x-priority: those that may take deliveries, served round-robin
 * from the head, and those parked because they could not (prefetch full, output throttled)
 * until their owner wakes them. Dispatch touches only the ready ones, so its cost does not
 * grow with the number of full consumers. */
struct cbucket {
    int32_t priority;
    struct list ready;  /* of consumer.dlink */
    struct list parked; /* of consumer.dlink */
    uint32_t count;     /* ready + parked */
};

/* How a queue reaches a consumer: an AMQP channel, an HTTP "get" and a test harness each
 * provide one, so the model never calls into a session. */
struct consumer_ops {
    /* May c take one more delivery now (prefetch, flow, output room)? */
    bool (*can_take)(struct consumer *c);
    /* Hands over e, popped from q; the caller keeps its reference on e's message. */
    void (*deliver)(struct consumer *c, struct queue *q, const struct qentry *e);
    /* q was deleted and c is detached from it already; the owner ends c. */
    void (*cancelled)(struct consumer *c);
};

struct consumer {
    const struct consumer_ops *ops; /* borrowed: static tables */
    void *owner;           /* borrowed: the surface object behind ops (a channel); a consumer
                            * never outlives it */
    struct list qlink;     /* in queue.consumers (all of them, in arrival order) */
    struct list dlink;     /* in its bucket's ready or parked list */
    struct cbucket *bucket;/* borrowed: q's bucket for our priority, while attached */
    bool parked;           /* its can_take said no: skipped until consumer_wake */
    struct list chlink;    /* in the owner's list of consumers */
    struct queue *q;       /* ref: while the consumer is attached */
    uint32_t refs;         /* the channel's + one per unacked delivery */
    uint32_t prefetch;     /* 0 = unlimited */
    uint32_t unacked;
    bool no_ack, exclusive, cancelled;
    uint32_t _ghead, _gtail; /* groups.c: the groups it holds that have ready messages */
    int32_t priority;      /* x-priority: higher-priority consumers are served first */
    uint8_t tag_len;
    char tag[256];
};

/* Flow control: a publisher whose message went to a queue that is more than QUEUE_FLOW_HIGH
 * ready messages ahead of consumers that are draining it (a delivery within the last
 * QUEUE_FLOW_IDLE_MS) waits (its session stops reading) until the queue is down to
 * QUEUE_FLOW_LOW, loses its consumers, is deleted, or its consumers stop taking messages for
 * QUEUE_FLOW_IDLE_MS. So publishers are paced to consumers that keep up, never stalled by a
 * queue without consumers (filled for later) nor by slow or stuck ones (as with RabbitMQ, such a
 * queue grows; memory alarms and paging bound it). */
#define QUEUE_FLOW_HIGH 4096
#define QUEUE_FLOW_LOW 2048
#define QUEUE_FLOW_IDLE_MS 100

struct flow_waiter {
    struct list link;  /* in queue.flow_waiters */
    struct queue *q;   /* ref while waiting, else NULL */
    void (*resume)(struct flow_waiter *w); /* borrowed: the session's */
};

enum qstat { QSTAT_PUBLISH, QSTAT_DELIVER_GET, QSTAT_REDELIVER, QSTAT_ACK, QSTAT_MAX };

enum overflow { OVERFLOW_DROP_HEAD, OVERFLOW_REJECT_PUBLISH, OVERFLOW_REJECT_PUBLISH_DLX };

/* RabbitMQ's x- arguments, parsed once at declare (validated by args_check_queue). */
struct queue_opts {
    int64_t message_ttl;      /* ms; -1: none */
    int64_t expires;          /* ms of disuse before the queue is deleted; 0: never */
    int64_t max_length, max_length_bytes; /* ready messages / body bytes; -1: no limit */
    enum overflow overflow;
    bool has_dlx, has_dlrk;
    amqp_bytes_t dlx, dlrk;   /* borrowed from queue.args */
    uint8_t max_priority;     /* 0: not a priority queue */
    bool single_active;       /* x-single-active-consumer */
    bool quorum;              /* x-queue-type quorum */
    bool message_groups;      /* x-message-groups: per-group order and holders (groups.c) */
    int64_t delivery_limit;   /* returns before a message is dead-lettered; -1: none */
    int64_t consumer_timeout; /* ms an unacked delivery may stay out (x-consumer-timeout, the
                               * consumer-timeout policy key); 0: none; -1: the broker's */
    int64_t delivery_delay;   /* ms each message waits before it is enqueued
                               * (x-delivery-delay, delay.h); 0: none */
};

struct queue {
    struct vhost *vhost; /* borrowed: vhosts outlive queues */
    char *name;          /* owned, NUL-terminated */
    uint8_t name_len;
    bool durable, exclusive, auto_delete, deleted, had_consumer, kicked;
    struct conn *owner;  /* borrowed: exclusive queues are deleted when the owner closes */
    uint8_t *args;       /* owned copy of the declare arguments table */
    uint32_t args_len;
    uint32_t refs;       /* the vhost's + unacked deliveries + kick list */

    struct qring *rings; /* owned: [opt.max_priority + 1], highest priority served first */
    struct groups *groups; /* owned: with x-message-groups, the ready entries by group (in
                            * place of rings[0], which then only counts the held ones) */
    uint32_t count;      /* entries in all rings */
    uint64_t ready_bytes; /* their body bytes */
    uint64_t next_seq;

    /* Durability (store_id != 0: a durable, non-exclusive queue kept in storage). */
    uint64_t store_id;
    uint64_t stored_count;   /* persistent entries in storage, ready and unacked */
    uint64_t delivered_seq;  /* highest seq handed to a client */
    bool meta_dirty;
    struct list meta_link;   /* in srv->meta_dirty */
    uint64_t disk_head, disk_count, disk_persistent; /* the on-disk-only run */
    struct pentry *pend;     /* owned ring: paged-out entries waiting for their commit */
    uint32_t pend_cap, pend_head, pend_count;
    struct list pend_link;   /* in srv->pending_queues while pend_count > 0 */
    struct list ttl0_link;   /* in srv->ttl0 while TTL-0 messages wait for the dispatch */

    struct list bindings_in; /* of binding.dst_link */
    uint64_t route_pass;     /* routing walk that last added us */

    struct queue_opts opt;
    struct timer_item ttl_timer;     /* the head's expiry */
    struct timer_item expires_timer; /* x-expires: deletion after disuse */
    uint64_t bytes_all;              /* body bytes of all ready messages (length limits) */

    struct list flow_waiters; /* of flow_waiter.link: publishers waiting for us to drain */
    uint64_t last_delivery;   /* uv_now() of the last delivery to a consumer */
    struct timer_item flow_timer; /* lets the waiting publishers go if deliveries stop */
    struct list consumers; /* of consumer.qlink, in arrival order */
    uint32_t consumer_count;
    struct cbucket **buckets; /* owned (and each bucket): by priority, highest first */
    uint32_t nbuckets, buckets_cap;
    bool exclusive_consumer;
    struct consumer *active; /* borrowed: x-single-active-consumer's current one, or NULL */
    struct queue *kick_next;
    /* Counts since the queue was created, and their rates per second over the last sample
     * (stats.c; the management API shows them). */
    uint64_t stat[QSTAT_MAX], stat_prev[QSTAT_MAX];
    float stat_rate[QSTAT_MAX];
    uint64_t last_active;     /* wall-clock ms of the last publish or use (declare, get,
                               * consume): the management API's idle_since */
    uint64_t unacked_bytes;   /* body bytes of the deliveries held (queue_hold) */
    /* The arguments with the policies applied (params.c), which opt is parsed from; NULL
     * while no policy applies. The names of the policies that apply ("" for none). */
    uint8_t *eff_args;
    uint32_t eff_args_len;
    char policy[256], op_policy[256];
    struct dedup *dedup;      /* owned: x-message-deduplication's ids (dedup.h), or NULL */
};

/* Creates a queue (refs = 1, held by the caller who adds it to the vhost) with its x- arguments
 * parsed from args (already validated). NULL on OOM. */
struct queue *queue_new(struct vhost *vh, amqp_bytes_t name, amqp_bytes_t args);
void queue_ref(struct queue *q);
/* Messages handed to clients and not yet settled (acked, rejected or requeued). */
uint64_t queue_unacked(const struct queue *q);
/* Applies the policies of q's vhost to q again: its effective arguments and options change
 * at once (a lower max-length drops the head, timers are re-armed). Memory short: unchanged. */
void queue_apply_policies(struct queue *q);
/* Drops a reference; frees the queue (and any messages) at zero. Accepts NULL. */
void queue_unref(struct queue *q);
/* True when a publish of m must be refused (x-overflow reject-publish*, queue full). */
bool queue_rejects(const struct queue *q, const struct msg *m);
/* Makes room for one more entry for m, so that queue_push(q, m) cannot fail: 0 or -ENOMEM. */
int queue_reserve(struct queue *q, const struct msg *m) __attribute__((warn_unused_result));
/* Appends m (taking a new reference) at the tail; a persistent message already given to
 * storage (m->store_id) gets an index entry, and past the memory window the message is paged
 * out. Length limits with drop-head then drop (dead-letter) the oldest. 0 or -ENOMEM. */
int queue_push(struct queue *q, struct msg *m);
/* e (popped from q) goes to a client that may give it back: its place in the ring is kept, so
 * that requeueing it cannot fail. 0 or -ENOMEM (then it must not be handed out). */
int queue_hold(struct queue *q, const struct qentry *e) __attribute__((warn_unused_result));
/* Gives back the place queue_hold kept, when the client settles e (before queue_requeue). */
void queue_unhold(struct queue *q, const struct qentry *e);
/* Puts an entry popped earlier back at its place by seq (requeue), marked redelivered;
 * takes a new reference. Cannot fail for an entry held until now or just popped; else 0 or
 * -ENOMEM. */
int queue_requeue(struct queue *q, const struct qentry *e);
/* Removes the head into *ret (the reference moves to the caller), paging in from disk when
 * the window is empty. false when the queue is empty. */
bool queue_pop(struct queue *q, struct qentry *ret);
/* e (popped from q) went to a client: remembered so a restart marks it redelivered. */
void queue_delivered(struct queue *q, const struct qentry *e);
/* e (popped from q) is done with (acked, or dropped): its storage entry goes. */
void queue_settled(struct queue *q, const struct qentry *e);
/* e (popped from q) was rejected without requeue: settled, then dead-lettered if q has a DLX (so
 * that a deduplicating queue that dead-letters to itself has forgotten the id first). */
void queue_reject(struct queue *q, const struct qentry *e);
/* After recovery: starts the TTL and x-expires clocks of a queue that came back. */
void queue_start_timers(struct queue *q);
/* Something used q (consume, get, redeclare): restarts its x-expires clock. */
void queue_used(struct queue *q);
/* Ready messages: in memory, on disk and being written. */
uint64_t queue_ready(const struct queue *q);
/* Drops every ready message; returns how many. */
uint32_t queue_purge(struct queue *q);
/* Batch `durable` is on disk: entries waiting for it move on. */
void queue_on_durable(struct queue *q, uint64_t durable);
/* After a dispatch (server_dispatch): TTL-0 messages nobody took expire now. */
void queue_expire_ttl0(struct queue *q);
/* Writes the queue's storage metadata if it changed (before each batch is submitted). */
void queue_flush_meta(struct queue *q);
/* Deletes q: consumers are cancelled (with basic.cancel where the client asked for it),
 * ready messages dropped, the queue removed from its vhost. Returns the ready count. */
uint32_t queue_delete(struct queue *q);

/* True when a publisher that just routed to q should wait for q to drain. */
bool queue_flow_high(const struct queue *q);
/* w waits for q (queue_flow_high was true): w->resume is called once q has drained, lost its
 * consumers, stopped delivering or is deleted. w must not be waiting already. */
void queue_flow_wait(struct queue *q, struct flow_waiter *w);
/* w stops waiting (its session is closing), without a resume call. Accepts a w not waiting. */
void queue_flow_cancel(struct flow_waiter *w);

/* Attaches c (already filled in) to q. 0 or -ENOMEM. */
int queue_add_consumer(struct queue *q, struct consumer *c)
    __attribute__((warn_unused_result));
/* Detaches c; the queue may auto-delete. */
void queue_remove_consumer(struct queue *q, struct consumer *c);
/* Delivers ready messages to consumers that can take them (run by server_dispatch). */
void queue_dispatch(struct queue *q);
/* Asks for a dispatch once the frame being handled is done (server_dispatch). */
void queue_kick(struct queue *q);

/* Something that kept c from taking deliveries may have changed (an ack, a qos change, output
 * drained): c is ready again and its queue gets a dispatch. Accepts a detached consumer. */
void consumer_wake(struct consumer *c);

struct consumer *consumer_ref(struct consumer *c);
void consumer_unref(struct consumer *c);

#endif
