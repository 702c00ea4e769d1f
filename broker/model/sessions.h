/* sessions.h — what a surface tells the others about its client sessions, so that the
 * management API can list and close AMQP connections and channels without knowing the AMQP
 * surface: views filled on demand (nothing kept), and an ops table the surface registers in
 * struct broker. Owns nothing; views borrow the session's strings for the callback's duration. */
#ifndef WARREN_SESSIONS_H
#define WARREN_SESSIONS_H
#include <stdbool.h>
#include <stdint.h>
#include "protocol/wire.h"

struct consumer;

struct session_view {
    const char *name;           /* RabbitMQ's "peer:port -> local:port" */
    const char *user, *vhost;   /* vhost "" before connection.open */
    const char *protocol, *auth_mechanism, *state; /* "AMQP 0-9-1", "PLAIN", "running" ... */
    const char *peer_host, *host;
    int peer_port, port;
    uint32_t channels;
    uint16_t channel_max, heartbeat;
    uint32_t frame_max;
    uint64_t connected_at;      /* wall-clock ms */
    uint64_t recv_oct, recv_cnt, send_oct, send_cnt;
    amqp_bytes_t client_properties; /* a field table */
    /* TLS: ssl_protocol "tlsv1.3" (NULL: plain TCP), the cipher, and the client certificate's
     * subject and issuer ("" without one). */
    const char *ssl_protocol, *ssl_cipher;
    char peer_cert_subject[256], peer_cert_issuer[256];
};

struct channel_view {
    const struct session_view *conn;
    uint16_t number;
    const char *state;          /* "running", "closing" */
    uint32_t prefetch, global_prefetch, unacked, consumers, uncommitted, acks_uncommitted;
    uint64_t unconfirmed;       /* publishes not yet confirmed (confirm mode) */
    uint64_t published, delivered; /* messages received whole / delivery tags given out */
    bool confirm, transactional;
};

struct session_ops {
    /* Calls fn for every session (those of vhost only, when not NULL). */
    void (*each)(void *arg, const char *vhost, void (*fn)(void *fn_arg,
                 const struct session_view *), void *fn_arg);
    /* Calls fn for every open channel (of vhost's sessions / of the session called conn, when
     * not NULL). */
    void (*each_channel)(void *arg, const char *vhost, const char *conn,
                         void (*fn)(void *fn_arg, const struct channel_view *), void *fn_arg);
    /* Calls fn with the channel a consumer belongs to (its owner). */
    void (*consumer_channel)(void *arg, const struct consumer *c,
                             void (*fn)(void *fn_arg, const struct channel_view *), void *fn_arg);
    /* Closes the session called name with 320 CONNECTION_FORCED and reason. 0 or -ENOENT. */
    int (*close)(void *arg, const char *name, const char *reason);
};

#endif
