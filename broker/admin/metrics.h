/* metrics.h — the Prometheus endpoint (prometheus.tcp.port, 15692 by default, as RabbitMQ's
 * rabbitmq_prometheus): GET /metrics and /metrics/per-object on their own HTTP listener, no
 * authentication (as RabbitMQ's). Owns its listener; borrows the broker. */
#ifndef WARREN_METRICS_H
#define WARREN_METRICS_H
#include <uv.h>
#include "broker/admin/http.h"

struct broker;

struct metrics {
    struct http_server http, https;
    struct broker *b;     /* borrowed */
    const char *data_dir; /* borrowed: for rabbitmq_disk_space_available_bytes */
};

/* Serves the metrics over HTTP and/or HTTPS as ports say. 0 or a libuv error (logged; nothing
 * is left listening). */
int metrics_start(struct metrics *m, uv_loop_t *loop, struct broker *b, const char *data_dir,
                  const struct http_ports *ports);
void metrics_stop(struct metrics *m);

#endif
