/* server.h — the broker process state for one libuv loop: listener, connections, vhosts,
 * and the before-sleep hook that dispatches queues and flushes output once per turn. */
#ifndef WARREN_SERVER_H
#define WARREN_SERVER_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include "lib/hmap.h"
#include "lib/list.h"
#include "broker/outbuf.h"
#include "lib/timer.h"

struct conn;
struct queue;
struct vhost;
struct storage;

struct config {
    const char *bind;     /* borrowed: argv */
    int port;
    const char *data_dir; /* borrowed: argv */
    bool sync;            /* fsync every commit (false: --sync=none, unsafe) */
    uint16_t channel_max;
    uint32_t frame_max;
    uint16_t heartbeat;   /* seconds, proposed in connection.tune */
    uint32_t handshake_timeout_ms;
    uint64_t max_message_size;
    double memory_high_watermark; /* fraction of physical memory (RabbitMQ's relative one) */
    uint64_t consumer_timeout_ms; /* unacked deliveries older than this close the channel; 0 off */
    uint32_t read_budget;         /* bytes one connection may have parsed per loop turn */
};
void config_defaults(struct config *cfg);

struct server {
    uv_loop_t *loop; /* borrowed: the caller's */
    struct config cfg;
    uv_tcp_t listener;
    uv_prepare_t before_sleep;
    uv_signal_t sig_int, sig_term;
    struct opool opool;
    struct list conns;          /* of conn.link */
    struct list flush;          /* of conn.flush_link: connections with output to write */
    struct queue *kick_head;    /* ref: queues to dispatch, linked by queue.kick_next */
    struct hmap vhosts;         /* name -> struct vhost (owned) */
    struct hmap replies;        /* direct reply-to name -> channel (borrowed) */
    struct vhost *default_vhost;/* borrowed from vhosts */
    struct storage *store;      /* owned */
    uint64_t seq;               /* for connection ids and generated names */
    uint64_t turn;              /* loop turns, for per-turn budgets */
    struct list paused;         /* of conn.pause_link: connections waiting to read again */
    uint64_t queued_mem;        /* memory of ready messages in all queues */
    struct timers timers;       /* TTL, x-expires and consumer-timeout deadlines */

    /* Durability: the open storage batch is submitted in the before-sleep hook; the writer
     * thread wakes the loop through store_async when a batch is on disk. */
    uv_async_t store_async;
    uint64_t durable_batch;     /* newest batch known to be on disk */
    struct list meta_dirty;     /* of queue.meta_link: queue metadata to write */
    struct list pending_queues; /* of queue.pend_link: paged-out entries waiting for a commit */
    struct list waiting;        /* of channel.wait_link: confirms / tx.commit-ok waiting */
    struct list held;           /* of conn.hold_link: connections waiting for a commit */
    struct list ttl0;           /* of queue.ttl0_link: TTL-0 messages to expire after dispatch */
    struct dl_job {             /* dead-lettered copies waiting to be enqueued (deadletter.c) */
        struct vhost *vh;       /* borrowed: vhosts outlive the server's work */
        struct msg *m;          /* ref */
        int reason;             /* enum dl_reason */
    } *dl_jobs;                 /* owned */
    uint32_t dl_n, dl_cap;
    bool dl_busy;
    bool disk_alarm;            /* a commit waits for disk space: publishers are blocked */
    uint64_t mem_limit;         /* memory alarm above this */
    bool mem_alarm;             /* publishers are blocked */
    bool stopping;
    bool recovering;            /* persist_recover() is recreating stored objects */
};

/* Opens storage, creates the default vhost, binds and listens. 0 or -errno / -WERR. On
 * failure everything taken is released and a log line says why. */
int server_start(struct server *s, uv_loop_t *loop, const struct config *cfg);
/* Closes the listener and every connection; the loop then runs out of handles. */
void server_stop(struct server *s);
/* After uv_run returned: releases what server_start took. */
void server_free(struct server *s);
/* Schedules conn's output for the before-sleep flush. */
void server_want_flush(struct server *s, struct conn *c);
/* Schedules q for dispatch (deduplicated): after the frame being handled, or in the
 * before-sleep hook for kicks from timers and storage completions. */
void server_kick_queue(struct server *s, struct queue *q);
/* Dispatches every kicked queue now, then expires the TTL-0 messages nobody took. Called
 * after each frame, so that deliveries happen in protocol order (a message published before
 * a basic.cancel or basic.get reaches the consumer first, as in RabbitMQ), and from the
 * before-sleep hook. */
void server_dispatch(struct server *s);
/* Fills buf with prefix + 22 random url-safe characters (RabbitMQ's amq.gen-/amq.ctag- style). */
void server_gen_name(struct server *s, const char *prefix, char *buf, size_t size);

#endif
