/* conn.h — one client connection: its socket, input buffer, output buffers, negotiation
 * state, heartbeats, flow-control pause and channels. Errors from any layer come back here as
 * return codes with a struct err and are turned into channel.close / connection.close by
 * conn_fail() and nowhere else. */
#ifndef WARREN_CONN_H
#define WARREN_CONN_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include "lib/list.h"
#include "lib/tls.h"
#include "broker/amqp/outbuf.h"
#include "broker/model/access.h"
#include "broker/model/queue.h"
#include "protocol/codec.h"

struct server;
struct channel;
struct vhost;
struct msg;
struct err;

#define CONN_LOW_CHANNELS 16      /* channel numbers kept inline in struct conn */
#define CONN_IN_BLOCK (64u << 10) /* a pooled input buffer */
#define CONN_IN_POOL_MAX 64       /* free input buffers the server keeps */

enum conn_state {
    CONN_HEADER,  /* waiting for the protocol header */
    CONN_START,   /* connection.start sent, waiting for start-ok */
    CONN_TUNE,    /* connection.tune sent, waiting for tune-ok */
    CONN_OPENING, /* tuned, waiting for connection.open */
    CONN_OPEN,
    CONN_CLOSING, /* connection.close sent, waiting for close-ok */
    CONN_DRAINING, /* close-ok sent: input is discarded until the client closes (or a timeout) */
    CONN_CLOSED,  /* socket closing; nothing more is read or written */
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;   /* handshake timeout, then heartbeats */
    struct server *srv; /* borrowed: outlives connections */
    struct list link;   /* in srv->conns */
    struct list flush_link; /* in srv->flush while output waits for the before-sleep hook */
    struct list pause_link; /* in srv->paused while the read budget is used up */
    bool writing, close_after_flush, loopback, throttled;
    bool reading;       /* uv_read_start is in effect */
    bool read_done;     /* never read again (bad header, silent handshake close) */
    bool publisher;     /* has published: the memory alarm blocks it */
    bool blocked;       /* blocked by the memory alarm */
    bool out_full;      /* output above CONN_OUTPUT_HIGH: we stop reading until it drains */
    struct flow_waiter flow; /* waiting for a queue far ahead of its consumers: not read */
    uint32_t nconsumers; /* consumers on our channels: such a connection is never paused by
                          * flow control, its acks may be what drains the queue */
    uint64_t hold_batch; /* output and input wait for this storage batch (0: none) */
    struct list hold_link; /* in srv->held while hold_batch != 0 */
    uint64_t turn;      /* srv->turn when turn_bytes was last reset */
    size_t turn_bytes;  /* bytes read during that turn */
    int handles_open;   /* uv handles still to close before free */
    uint64_t id;
    enum conn_state state;
    char peer[64];
    char host[48];      /* the peer's address alone: the login throttle's key */
    char local_host[48];
    int peer_port, local_port;
    char name[128];     /* RabbitMQ's connection name: "peer:port -> local:port" */
    uint64_t connected_at; /* wall-clock ms */
    uint64_t recv_oct, recv_cnt, send_oct, send_cnt; /* bytes and socket reads/writes */
    uint8_t *client_props; /* owned: the client's properties table from start-ok */
    uint32_t client_props_len;
    char user[256];
    char mechanism[16]; /* of the login, for the refusal text */
    bool auth_wait;     /* the login's outcome waits for its throttle slot (c->timer) */
    bool opened;        /* connection.open succeeded (counted in the broker's stats) */
    int auth_rc;        /* that outcome: 0 or -WERR_LOGIN_REFUSED */
    struct vhost *vhost; /* borrowed: NULL once the vhost is deleted (conn_vhost_deleted) */
    struct access access; /* the user's permissions in vhost, once open */

    /* Negotiated. */
    uint16_t channel_max;
    uint32_t frame_max;
    uint16_t heartbeat;
    bool cap_consumer_cancel_notify, cap_auth_failure_close, cap_connection_blocked;

    /* Input: frames are parsed in place from in[0..in_len). The buffer is taken (from the
     * server's pool) when a read begins and given back once every byte is handled, so an idle
     * connection holds none; it grows past CONN_IN_BLOCK only for a frame that needs it. */
    uint8_t *in; /* owned; NULL while empty */
    size_t in_len, in_cap;
    uint64_t last_recv_ms, last_send_ms;
    uint64_t write_since_ms; /* when the write in flight began (c->writing) */

    /* Output: out[fill] collects this turn's frames while out[!fill] is being written. */
    struct outbuf out[2];
    int fill;
    uv_write_t wreq;

    /* AMQPS: the TLS session (owned; NULL on a plain listener). Ciphertext is decrypted into
     * `in` as it arrives (all of it: nothing waits inside OpenSSL), and a flush encrypts `out`
     * into the session's buffer and writes that. */
    struct tls *tls;
    bool tls_shut; /* close_notify queued */

    struct list confirms;      /* of channel.confirm_link: confirms to send at the flush */
    /* Channels by number: the first CONN_LOW_CHANNELS inline (what nearly every client uses),
     * the rest in 256 lazily allocated pages of 256 slots (owned, as are the channels).
     * channel_max bounds how many are open at once, not their numbers (as in RabbitMQ). */
    struct channel *low[CONN_LOW_CHANNELS];
    struct channel ***pages; /* owned: 256 page pointers, allocated for the first high number */
    uint32_t nchannels;
};

/* Memory alarm on or off for this connection: publishers stop being read (and are told with
 * connection.blocked when they asked for it). */
void conn_set_blocked(struct conn *c, bool on);
/* Closes c when a write has been waiting for the client to read for longer than
 * tcp_listen_options.send_timeout (called every second). */
void conn_check_send_timeout(struct conn *c, uint64_t now);
/* Reads again after the read budget of a loop turn was used up. */
void conn_resume(struct conn *c);
/* A publish arrived on c: marks it a publisher (blocked at once during an alarm). */
void conn_note_publish(struct conn *c);
/* c published to q, which is far ahead of its consumers (queue_flow_high): c is not read until
 * q drains, unless c consumes itself or waits already. */
void conn_flow_pause(struct conn *c, struct queue *q);
/* Accepts a new connection on the listener; over TLS with ctx when it is not NULL. */
void conn_accept(struct server *s, uv_stream_t *listener, SSL_CTX *ctx);
/* Begins an orderly close (connection.close 320 CONNECTION_FORCED) for shutdown. */
void conn_shutdown(struct conn *c);

/* Calls fn for each open channel of c. */
void conn_each_channel(struct conn *c, void (*fn)(void *arg, struct channel *ch), void *arg);
/* c's vhost is being deleted: connection.close 320 CONNECTION_FORCED, and c lets go of it. */
void conn_vhost_deleted(struct conn *c);

/* Queues one method frame on channel ch. */
void conn_send_method(struct conn *c, uint16_t ch, const struct amqp_method *m);
/* Queues a content method (deliver, get-ok, return) + the message's header and body frames,
 * split by the connection's frame_max. */
void conn_send_content(struct conn *c, uint16_t ch, const struct amqp_method *m, struct msg *msg);
/* The one place errors become AMQP: a channel error closes channel ch (if ch is not 0),
 * anything else closes the connection. err (may be NULL) carries the detail text that follows
 * the reply code's name; `method` is the method id that failed (or 0). */
void conn_fail(struct conn *c, uint16_t ch, int rc, const struct err *err, uint32_t method);
/* Holds c's output and stops handling its input until storage batch `batch` is durable, so
 * that a reply to a durable change leaves only when the change is on disk. */
void conn_hold_until(struct conn *c, uint64_t batch);
/* Storage batch `durable` is on disk: releases a held connection. */
void conn_on_durable(struct conn *c, uint64_t durable);
/* Asks for ch's publisher confirms to be sent at this turn's flush. */
void conn_want_confirms(struct conn *c, struct channel *ch);
/* Output bytes waiting for the socket: used to stop delivering to slow consumers. */
size_t conn_output_pending(const struct conn *c);
/* Storage failed for good and the process is about to exit: every channel nacks what it has
 * not confirmed (channel_nack_pending) and that output is written at once, best effort. */
void conn_storage_failed(struct conn *c);
/* Writes what this turn queued (called from the server's before-sleep hook). */
void conn_flush(struct conn *c);

#define CONN_OUTPUT_HIGH (4u << 20) /* above this many queued bytes: no deliveries, no reading */
#define CONN_OUTPUT_MAX (256u << 20) /* above this the client is not reading at all: close */

#endif
