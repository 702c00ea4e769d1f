/* server.h — the AMQP server on one libuv loop: the broker model it drives (struct broker),
 * listener, connections, and the before-sleep hook that dispatches queues, submits the storage
 * batch and flushes output once per turn. */
#ifndef WARREN_SERVER_H
#define WARREN_SERVER_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include "lib/hmap.h"
#include "lib/list.h"
#include "broker/amqp/auth.h"
#include "broker/amqp/outbuf.h"
#include "lib/timer.h"
#include "lib/tls.h"
#include "broker/model/broker.h"

struct conn;
struct queue;
struct vhost;
struct storage;

/* One AMQP listener: listeners.tcp.<name> in the configuration file, or --port/--bind. */
#define CONFIG_LISTENERS_MAX 8
struct config_listener {
    char name[32]; /* "default" for listeners.tcp.default and --port/--bind */
    char addr[48]; /* IPv4 or IPv6 literal; "" = every IPv4 and IPv6 address */
    int port;
    bool tls;      /* listeners.ssl.<name>: AMQPS with cfg->tls */
};

/* How a client certificate names its user for SASL EXTERNAL (ssl_cert_login_from). */
enum cert_login { CERT_LOGIN_CN, CERT_LOGIN_DN };


struct config {
    struct config_listener listeners[CONFIG_LISTENERS_MAX];
    unsigned nlisteners;  /* 0: no AMQP listener (listeners.tcp = none) */
    const char *data_dir; /* borrowed: argv, or owned by _owned (conf_load) */
    bool sync;            /* fsync every commit (false: --sync=none, unsafe) */
    uint16_t channel_max;
    uint32_t frame_max;
    uint16_t heartbeat;   /* seconds, proposed in connection.tune */
    uint32_t handshake_timeout_ms;  /* handshake_timeout: connection.open must come by then */
    uint32_t send_timeout_ms;       /* tcp_listen_options.send_timeout: a client that reads
                                     * nothing of a write for this long is closed */
    uint64_t max_message_size;
    int64_t connection_max;       /* open connections on this node; -1: infinity */
    int64_t consumer_max_per_channel; /* -1: infinity */
    double memory_high_watermark; /* fraction of physical memory (RabbitMQ's relative one) */
    uint64_t memory_high_watermark_abs; /* bytes (vm_memory_high_watermark.absolute); 0: use
                                         * the relative one */
    uint64_t consumer_timeout_ms; /* unacked deliveries older than this close the channel; 0 off */
    uint32_t read_budget;         /* bytes one connection may have parsed per loop turn */

    /* Stored for the tenancy work (users and vhosts); nothing reads them yet. Strings are
     * borrowed from _owned. */
    const char *default_user, *default_pass, *default_vhost;
    char default_user_tags[256];  /* comma-separated (default_user_tags.<tag> = true) */
    const char *default_perm_configure, *default_perm_write, *default_perm_read;
    char loopback_users[512];     /* comma-separated: users who may log in from loopback
                                   * addresses only (loopback_users.<user> = true) */
    uint64_t disk_free_limit;     /* bytes */
    const char *load_definitions; /* NULL: none */
    /* The management API (broker/admin): port (-1: off), address ("" = every address), and
     * whether it was asked for (then a port that cannot be bound stops warrend; the default
     * 15672 only warns, so that several brokers on one machine can start). */
    int mgmt_port;
    char mgmt_ip[48];
    bool mgmt_explicit;
    /* The Prometheus endpoint (broker/admin/metrics.c), with the same rules. */
    int prom_port;
    char prom_ip[48];
    bool prom_explicit;

    /* TLS: ssl_options.* for the AMQPS listeners, management.ssl.* and prometheus.ssl.* for
     * HTTPS (port -1: off). */
    struct tls_options tls;
    uint32_t ssl_handshake_timeout_ms;
    int mgmt_ssl_port, prom_ssl_port;
    /* management.tcp.idle_timeout / request_timeout, prometheus.tcp.* (ms): an idle HTTP
     * connection is closed; a request must arrive whole within request_timeout (408). */
    uint32_t mgmt_idle_timeout_ms, mgmt_request_timeout_ms;
    uint32_t prom_idle_timeout_ms, prom_request_timeout_ms;
    char mgmt_ssl_ip[48], prom_ssl_ip[48];
    struct tls_options mgmt_tls, prom_tls;
    /* SASL mechanisms offered, in order, space-separated (auth_mechanisms.N). */
    char auth_mechanisms[64];
    enum cert_login cert_login;
    /* Active/standby (ha.mode = shared, broker/ha): lock poll interval (ms), the status port
     * (-1: none) and its address, the fence command (NULL: none). */
    bool ha_shared;
    uint32_t ha_poll_ms;
    uint32_t ha_heartbeat_ms, ha_fence_deadline_ms; /* the self-fencing watchdog's */
    int ha_status_port;
    char ha_status_ip[48];
    const char *ha_fence_command;
    /* Encryption at rest (encryption.key_file / encryption.key_command); NULL: off. */
    const char *encryption_key_file, *encryption_key_command;

    char **_owned;                /* owned: strings read from the configuration file */
    unsigned _nowned;
};
void config_defaults(struct config *cfg);

struct server {
    struct broker b;            /* the model: vhosts, queues, storage, timers, dispatch */
    uv_loop_t *loop;            /* borrowed: the caller's */
    struct config cfg;
    uv_tcp_t listeners[CONFIG_LISTENERS_MAX]; /* the first cfg.nlisteners are open */
    bool listener_tls[CONFIG_LISTENERS_MAX];  /* ... and these of them speak AMQPS */
    unsigned nlisteners;
    SSL_CTX *tls_ctx;           /* owned: from cfg.tls when there is an AMQPS listener */
    uint8_t *tls_rbuf;          /* owned: ciphertext as read, before it is decrypted */
    uv_prepare_t before_sleep;
    uv_signal_t sig_int, sig_term;
    struct opool opool;
    uint8_t **in_free;          /* owned: free input buffers of CONN_IN_BLOCK bytes (owned) */
    uint32_t in_nfree, in_free_cap;
    struct list conns;          /* of conn.link */
    struct list flush;          /* of conn.flush_link: connections with output to write */
    struct hmap replies;        /* direct reply-to name -> channel (borrowed) */
    uint64_t seq;               /* for connection ids and generated names */
    uint64_t turn;              /* loop turns, for per-turn budgets */
    struct list paused;         /* of conn.pause_link: connections waiting to read again */
    struct auth_throttle throttle; /* addresses with recent login failures */

    /* The writer thread wakes the loop through store_async when a batch is on disk; confirms
     * and held replies wait for that. */
    uv_async_t store_async;
    struct list waiting;        /* of channel.wait_link: confirms / tx.commit-ok waiting */
    struct list held;           /* of conn.hold_link: connections waiting for a commit */
    bool disk_alarm;            /* free disk below disk_free_limit, or a commit waits for
                                 * space: publishers are blocked */
    uint64_t mem_limit;         /* memory alarm above this */
    bool mem_alarm;             /* publishers are blocked */
    uv_timer_t alarm_timer;     /* every second: disk space and connection buffers */
    uint64_t disk_free;         /* bytes free on the data directory's filesystem (UINT64_MAX:
                                 * not known) */
    uint64_t conn_mem;          /* bytes held in connections' input and output buffers */
    char block_reason[40];      /* connection.blocked's reason: "low on memory" ... */
    bool config_error;          /* server_start failed on the configuration (definitions) */
    void (*on_stop)(void *arg); /* called by server_stop: other surfaces close their handles */
    void *on_stop_arg;
};

/* Opens storage, creates the default vhost, binds and listens. 0 or -errno / -WERR. On
 * failure everything taken is released and a log line says why. */
int server_start(struct server *s, uv_loop_t *loop, const struct config *cfg);
/* Closes the listener and every connection; the loop then runs out of handles. */
void server_stop(struct server *s);
/* After uv_run returned: releases what server_start took. */
void server_free(struct server *s);
/* Re-reads the AMQPS certificates and keys (SIGHUP): new connections use them, open ones
 * keep theirs. 0, or -1 after a log line (the old ones stay in use). */
int server_reload_tls(struct server *s);
/* Schedules conn's output for the before-sleep flush. */
void server_want_flush(struct server *s, struct conn *c);
/* Fills buf with prefix + 22 random url-safe characters (RabbitMQ's amq.gen-/amq.ctag- style). */
void server_gen_name(struct server *s, const char *prefix, char *buf, size_t size);

#endif
