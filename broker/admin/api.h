/* api.h — the RabbitMQ-compatible management HTTP API (/api/...) over the broker model: basic
 * auth against the stored users, tags deciding access as in RabbitMQ, JSON in RabbitMQ's shapes
 * (jansson). So far: whoami, overview, vhosts, users and permissions; every other path is the
 * web console's files (console.h). Owns its HTTP server;
 * borrows the broker (which must outlive it). */
#ifndef WARREN_API_H
#define WARREN_API_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include "broker/admin/http.h"
#include "lib/list.h"

struct broker;

/* A listener the node has, as /api/overview lists it. */
struct admin_listener {
    const char *protocol; /* "amqp", "http" */
    char ip[48];          /* "::" for every address */
    int port;
};
#define ADMIN_LISTENERS_MAX 12

struct admin {
    struct http_server http, https;
    struct list held;   /* of api.c's held replies: waiting for their storage batch */
    struct broker *b; /* borrowed */
    const char *loopback_users; /* borrowed: comma-separated, may log in from loopback only */
    uint64_t started_ms;
    uv_timer_t sampler;         /* stats_sample() every STATS_INTERVAL_MS */
    struct admin_listener listeners[ADMIN_LISTENERS_MAX];
    unsigned nlisteners;
    const char *data_dir;       /* borrowed (the configuration's), may be NULL: /api/nodes'
                                 * disk_free is its filesystem's free space */
    uint64_t disk_free_limit;   /* bytes, as configured (/api/nodes) */
};

/* Serves the API over HTTP and/or HTTPS as ports say. 0 or a libuv error (logged; nothing is
 * left listening). The caller may fill a->listeners (with a->nlisteners) beforehand, for
 * /api/overview, and data_dir and disk_free_limit for /api/nodes. */
int admin_start(struct admin *a, uv_loop_t *loop, struct broker *b, const struct http_ports *ports,
                const char *loopback_users);
void admin_stop(struct admin *a);

#endif
