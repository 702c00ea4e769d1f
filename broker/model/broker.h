/* broker.h — the broker model's process state, usable without any session: vhosts (and through
 * them exchanges, queues and bindings), storage, the timer heap, the queues waiting for a
 * dispatch, TTL-0 expiry, dead-letter jobs and the memory held by ready messages. A surface (the
 * AMQP server, a test harness) embeds one and drives it; nothing here knows of connections.
 * Invariant: a queue is on kick_head at most once (queue.kicked) and holds a reference there. */
#ifndef WARREN_BROKER_H
#define WARREN_BROKER_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include "lib/hmap.h"
#include "lib/list.h"
#include "lib/timer.h"

struct queue;
struct vhost;
struct storage;
struct msg;
struct session_ops;
struct atrest;
struct delay;

/* Something waiting for a storage batch to be durable (a reply that must not leave before the
 * change it reports is on disk): done() runs, unlinked, once b->durable_batch >= batch. */
struct durable_wait {
    struct list link;   /* in broker.durable_waits */
    uint64_t batch;
    void (*done)(struct durable_wait *w);
};

/* Message counts since start, as RabbitMQ's global counters (rabbitmq_global_messages_*_total):
 * plain increments on the loop thread, read by the management API and Prometheus. */
struct broker_stats {
    uint64_t received, received_confirm, routed, unroutable_dropped, unroutable_returned;
    uint64_t confirmed, delivered, redelivered, acknowledged;
    uint64_t dead_lettered[4]; /* by enum dl_reason: rejected, expired, maxlen, delivery limit */
    uint64_t connections_opened, connections_closed, channels_opened, channels_closed;
    uint64_t deduplicated;     /* duplicates dropped by dedup exchanges and queues (dedup.h) */
};

/* Rates per second of some of broker_stats over the last sample (stats.c). */
struct broker_rates {
    uint64_t at_ms;             /* when the last sample was taken (0: never) */
    struct broker_stats prev;   /* the counts then */
    double received, confirmed, delivered, redelivered, acknowledged, returned, dropped;
};

/* What /api/ha shows of active/standby (filled by the HA layer; plain data). */
struct ha_view {
    bool active;                 /* this process holds the lock */
    uint64_t epoch;
    char holder[512];            /* the holder record as it is in warren.lock now */
    uint32_t heartbeat_ms, fence_deadline_ms;
    uint64_t last_heartbeat_ago_ms; /* since the last heartbeat reached the storage */
};

struct broker {
    uv_loop_t *loop;            /* borrowed: the caller's */
    struct hmap vhosts;         /* name -> struct vhost (owned) */
    struct hmap users;          /* name -> struct user (owned; users.c) */
    uint64_t access_gen;        /* bumped by every change of users, permissions, vhosts or
                                 * entity deletions: cached access decisions older are stale */
    void *re_match;             /* owned pcre2_match_data for permission patterns (users.c) */
    /* Called before vhost vh is deleted, while its objects still exist: the surface closes
     * the sessions using vh (they must drop every pointer into it before returning). */
    void (*vhost_closing)(struct broker *b, struct vhost *vh, void *arg);
    void *vhost_closing_arg;
    /* The client sessions of the AMQP surface, for the others (sessions.h); NULL: none. */
    const struct session_ops *sessions;
    void *sessions_arg;
    struct list durable_waits;  /* of durable_wait.link: released by broker_on_durable */
    struct hmap params;         /* "component\0vhost\0name" -> struct param (params.c) */
    struct broker_stats stats;
    struct broker_rates rates;
    struct storage *store;      /* owned; NULL: nothing is durable */
    struct atrest *atrest;      /* owned (atrest.c): encryption at rest; NULL: off */
    struct timers timers;       /* TTL, x-expires and consumer-timeout deadlines */
    struct delay *delay;        /* owned (delay.c): delayed messages; NULL until delay_start */
    struct queue *kick_head;    /* ref: queues to dispatch, linked by queue.kick_next */
    uint64_t queued_mem;        /* memory of ready messages in all queues */
    uint64_t durable_batch;     /* newest storage batch known to be on disk */
    struct list meta_dirty;     /* of queue.meta_link: queue metadata to write */
    struct list pending_queues; /* of queue.pend_link: paged-out entries waiting for a commit */
    struct list ttl0;           /* of queue.ttl0_link: TTL-0 messages to expire after dispatch */
    struct dl_job {             /* dead-lettered copies waiting to be enqueued (deadletter.c) */
        struct vhost *vh;       /* borrowed: vhosts outlive the broker's work */
        struct msg *m;          /* ref */
        int reason;             /* enum dl_reason */
    } *dl_jobs;                 /* owned */
    uint32_t dl_n, dl_cap;
    bool dl_busy;
    bool stopping;              /* shutting down: durable auto-delete queues are kept */
    bool recovering;            /* persist_recover() is recreating stored objects */
    bool alarm_memory, alarm_disk; /* the resource alarms in force (the server sets them) */
    uint64_t mem_limit;            /* the memory alarm's watermark in bytes (the server's) */
    /* Active/standby (broker/ha, set by main): fills *v for /api/ha; NULL without ha.mode. */
    void (*ha_describe)(void *arg, struct ha_view *v);
    void *ha_arg;
    bool store_shared;             /* the data directory is shared (ha.mode = shared): storage
                                    * is opened with MDB_NOLOCK (set before atrest_open) */
};

/* Empty state on loop (no vhost yet, no storage: the caller opens it into b->store). */
void broker_init(struct broker *b, uv_loop_t *loop);
/* Releases the vhosts and everything in them, and the pending kicks and jobs. Storage must
 * have been closed (b->store NULL) so that freeing objects is not taken for deleting them. */
void broker_free(struct broker *b);
/* Creates the vhost called name and adds it. NULL on OOM. */
struct vhost *broker_add_vhost(struct broker *b, const char *name);
/* Deletes vh as RabbitMQ does: its sessions are closed (vhost_closing), then its queues (with
 * their stored messages), exchanges, bindings, every user's permissions in it and its own
 * record go, in one storage batch. */
void broker_delete_vhost(struct broker *b, struct vhost *vh);
/* Waits until batch is durable (done() at once when it already is). */
void broker_wait_durable(struct broker *b, struct durable_wait *w, uint64_t batch);
/* Storage made batch `durable` durable: runs the durable_waits it satisfies. */
void broker_on_durable(struct broker *b, uint64_t durable);
/* Schedules q for dispatch (deduplicated): broker_dispatch runs it. */
void broker_kick_queue(struct broker *b, struct queue *q);
/* Dispatches every kicked queue now, then expires the TTL-0 messages nobody took, until quiet.
 * The AMQP server calls it after each frame, so that deliveries happen in protocol order (a
 * message published before a basic.cancel or basic.get reaches the consumer first, as in
 * RabbitMQ), and from its before-sleep hook. */
void broker_dispatch(struct broker *b);

#endif
