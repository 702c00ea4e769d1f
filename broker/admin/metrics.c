/* metrics.c — Prometheus metrics (metrics.h) in the text exposition format, with RabbitMQ's
 * metric names and labels (rabbitmq_prometheus): /metrics holds the node's aggregates,
 * /metrics/per-object adds one series per queue (vhost and queue labels). Served by its own
 * HTTP listener (http.c); reads the model's counters and session views, keeps nothing. */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <uv.h>
#include "config.h"
#include "broker/admin/metrics.h"
#include "broker/model/broker.h"
#include "broker/model/dedup.h"
#include "broker/model/queue.h"
#include "broker/model/sessions.h"
#include "broker/model/vhost.h"

/* A growing text buffer; out of memory leaves failed set. */
struct text {
    char *p;
    size_t len, cap;
    bool failed;
};

__attribute__((format(printf, 2, 3)))
static void put(struct text *t, const char *fmt, ...)
{
    for (int pass = 0; pass < 2 && !t->failed; pass++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if (t->p && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap : 4096;
        while (cap <= t->len + (size_t)n)
            cap *= 2;
        char *q = realloc(t->p, cap);
        if (!q) {
            t->failed = true;
            return;
        }
        t->p = q;
        t->cap = cap;
    }
}

/* The HELP and TYPE lines of a metric. */
static void head(struct text *t, const char *name, const char *type, const char *help)
{
    put(t, "# TYPE %s %s\n# HELP %s %s\n", name, type, name, help);
}

static void gauge(struct text *t, const char *name, const char *help, uint64_t v)
{
    head(t, name, "gauge", help);
    put(t, "%s %llu\n", name, (unsigned long long)v);
}

static void total(struct text *t, const char *name, const char *labels, const char *help,
                  uint64_t v)
{
    head(t, name, "counter", help);
    put(t, "%s%s %llu\n", name, labels, (unsigned long long)v);
}

/* A label value with \, " and newlines escaped, as the format wants. */
static void label(struct text *t, const char *s)
{
    for (; *s; s++)
        put(t, *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : "%c", *s);
}

static void count_one(void *arg, const void *v)
{
    (void)v;
    ++*(uint64_t *)arg;
}

static void count_session(void *arg, const struct session_view *v)
{
    count_one(arg, v);
}

static void count_channel(void *arg, const struct channel_view *v)
{
    count_one(arg, v);
}

static uint64_t open_fds(void)
{
    uint64_t n = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n ? n - 1 : 0; /* the directory's own descriptor */
}

/* Every queue's series of one metric, for /metrics/per-object. */
static void per_queue(struct text *t, struct broker *b, const char *name, const char *help,
                      uint64_t (*value)(const struct queue *))
{
    head(t, name, "gauge", help);
    void *v, *qv;
    for (uint32_t it = 0; hmap_next(&b->vhosts, &it, &v);)
        for (uint32_t jt = 0; hmap_next(&((struct vhost *)v)->queues, &jt, &qv);) {
            struct queue *q = qv;
            put(t, "%s{vhost=\"", name);
            label(t, q->vhost->name);
            put(t, "\",queue=\"");
            label(t, q->name);
            put(t, "\"} %llu\n", (unsigned long long)value(q));
        }
}

static uint64_t q_messages(const struct queue *q) { return queue_ready((struct queue *)q) + queue_unacked(q); }
static uint64_t q_ready(const struct queue *q) { return queue_ready((struct queue *)q); }
static uint64_t q_unacked(const struct queue *q) { return queue_unacked(q); }
static uint64_t q_bytes(const struct queue *q) { return q->bytes_all; }
static uint64_t q_consumers(const struct queue *q) { return q->consumer_count; }
static uint64_t q_dedup(const struct queue *q) { return q->dedup ? q->dedup->deduplicated : 0; }

static void render(struct metrics *m, struct text *t, bool per_object)
{
    struct broker *b = m->b;
    uint64_t nconn = 0, nch = 0, nq = 0, ncons = 0, msgs = 0, ready = 0, unack = 0, bytes = 0;
    if (b->sessions) {
        b->sessions->each(b->sessions_arg, NULL, count_session, &nconn);
        b->sessions->each_channel(b->sessions_arg, NULL, NULL, count_channel, &nch);
    }
    void *v, *qv;
    for (uint32_t it = 0; hmap_next(&b->vhosts, &it, &v);)
        for (uint32_t jt = 0; hmap_next(&((struct vhost *)v)->queues, &jt, &qv);) {
            struct queue *q = qv;
            nq++;
            ncons += q->consumer_count;
            ready += queue_ready(q);
            unack += queue_unacked(q);
            bytes += q->bytes_all;
        }
    msgs = ready + unack;
    gauge(t, "rabbitmq_connections", "Connections currently open", nconn);
    gauge(t, "rabbitmq_channels", "Channels currently open", nch);
    gauge(t, "rabbitmq_consumers", "Consumers currently connected", ncons);
    gauge(t, "rabbitmq_queues", "Queues available", nq);
    if (!per_object) { /* per object, the same names carry one series per queue (below) */
        gauge(t, "rabbitmq_queue_messages", "Sum of ready and unacknowledged messages", msgs);
        gauge(t, "rabbitmq_queue_messages_ready", "Messages ready to be delivered to consumers",
              ready);
        gauge(t, "rabbitmq_queue_messages_unacked",
              "Messages delivered to consumers but not yet acknowledged", unack);
        gauge(t, "rabbitmq_queue_messages_bytes", "Size in bytes of ready messages", bytes);
    }
    const struct broker_stats *s = &b->stats;
    static const char proto[] = "{protocol=\"amqp091\"}";
    total(t, "rabbitmq_global_messages_received_total", proto,
          "Total number of messages received from publishers", s->received);
    total(t, "rabbitmq_global_messages_received_confirm_total", proto,
          "Total number of messages received from publishers expecting confirmations",
          s->received_confirm);
    total(t, "rabbitmq_global_messages_confirmed_total", proto,
          "Total number of messages confirmed to publishers", s->confirmed);
    total(t, "rabbitmq_global_messages_routed_total", proto,
          "Total number of messages routed to queues", s->routed);
    total(t, "rabbitmq_global_messages_unroutable_dropped_total", proto,
          "Total number of messages published as non-mandatory into an exchange and dropped as "
          "unroutable", s->unroutable_dropped);
    total(t, "rabbitmq_global_messages_unroutable_returned_total", proto,
          "Total number of messages published as mandatory into an exchange and returned to "
          "the publisher as unroutable", s->unroutable_returned);
    total(t, "rabbitmq_global_messages_delivered_total", proto,
          "Total number of messages delivered to consumers", s->delivered);
    total(t, "rabbitmq_global_messages_acknowledged_total", proto,
          "Total number of messages acknowledged by consumers", s->acknowledged);
    total(t, "rabbitmq_global_messages_redelivered_total", proto,
          "Total number of messages redelivered to consumers", s->redelivered);
    static const char *const why[] = {"rejected", "expired", "maxlen", "delivery_limit"};
    for (int i = 0; i < 4; i++) {
        char name[96];
        snprintf(name, sizeof name, "rabbitmq_global_messages_dead_lettered_%s_total", why[i]);
        total(t, name, "{queue_type=\"rabbit_classic_queue\",dead_letter_strategy=\"at_most_once\"}",
              "Total number of messages dead-lettered", s->dead_lettered[i]);
    }
    total(t, "rabbitmq_global_messages_deduplicated_total", proto,
          "Total number of duplicate messages dropped by deduplicating exchanges and queues "
          "(x-message-deduplication)", s->deduplicated);
    total(t, "rabbitmq_connections_opened_total", "", "Total number of connections opened",
          s->connections_opened);
    total(t, "rabbitmq_connections_closed_total", "", "Total number of connections closed",
          s->connections_closed);
    total(t, "rabbitmq_channels_opened_total", "", "Total number of channels opened",
          s->channels_opened);
    total(t, "rabbitmq_channels_closed_total", "", "Total number of channels closed",
          s->channels_closed);
    size_t rss = 0;
    uv_resident_set_memory(&rss);
    gauge(t, "rabbitmq_process_resident_memory_bytes", "Memory used in bytes", rss);
    struct statvfs fs;
    uint64_t avail = m->data_dir && statvfs(m->data_dir, &fs) == 0
                         ? (uint64_t)fs.f_bavail * fs.f_frsize : 0;
    gauge(t, "rabbitmq_disk_space_available_bytes", "Disk space available in bytes", avail);
    gauge(t, "rabbitmq_process_open_fds", "Open file descriptors", open_fds());
    gauge(t, "rabbitmq_alarms_memory_used_watermark",
          "is the vm_memory_high_watermark threshold hit", m->b->alarm_memory);
    gauge(t, "rabbitmq_alarms_free_disk_space_watermark",
          "is the disk_free_limit threshold hit", m->b->alarm_disk);
    gauge(t, "rabbitmq_alarms_file_descriptor_limit",
          "is the file descriptors limit hit", 0);
    head(t, "rabbitmq_build_info", "untyped", "RabbitMQ & Erlang/OTP version info");
    put(t, "rabbitmq_build_info{rabbitmq_version=\"3.10.8\",prometheus_plugin_version=\"%s\","
           "prometheus_client_version=\"%s\",erlang_version=\"none\"} 1\n",
        WARREN_VERSION, WARREN_VERSION);
    head(t, "rabbitmq_identity_info", "untyped", "RabbitMQ node & cluster identity info");
    put(t, "rabbitmq_identity_info{rabbitmq_node=\"warren@localhost\",rabbitmq_cluster="
           "\"warren@localhost\",rabbitmq_cluster_permanent_id=\"warren\"} 1\n");
    if (!per_object)
        return;
    /* RabbitMQ's per-object names: the queue metrics with vhost and queue labels. */
    per_queue(t, b, "rabbitmq_queue_messages", "Sum of ready and unacknowledged messages",
              q_messages);
    per_queue(t, b, "rabbitmq_queue_messages_ready", "Messages ready to be delivered",
              q_ready);
    per_queue(t, b, "rabbitmq_queue_messages_unacked", "Messages delivered but not yet "
              "acknowledged", q_unacked);
    per_queue(t, b, "rabbitmq_queue_messages_bytes", "Size in bytes of ready messages",
              q_bytes);
    per_queue(t, b, "rabbitmq_queue_consumers", "Consumers on a queue", q_consumers);
    per_queue(t, b, "rabbitmq_queue_messages_deduplicated", "Duplicate messages the queue "
              "refused (x-message-deduplication)", q_dedup);
}

static void handle(const struct http_req *req, struct http_resp *resp, void *arg)
{
    struct metrics *m = arg;
    bool per_object = !strcmp(req->path, "/metrics/per-object") ||
                      !strcmp(req->path, "/metrics/detailed");
    if (!per_object && strcmp(req->path, "/metrics") != 0) {
        resp->content_type = "text/plain";
        http_resp_set(resp, 404, "Not Found\n");
        return;
    }
    if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
        resp->content_type = "text/plain";
        snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: GET, HEAD\r\n");
        http_resp_set(resp, 405, "Method Not Allowed\n");
        return;
    }
    struct text t = {0};
    render(m, &t, per_object);
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    if (t.failed) {
        free(t.p);
        http_resp_set(resp, 500, "out of memory\n");
        return;
    }
    free(resp->body);
    resp->status = 200;
    resp->body = t.p;
    resp->body_len = t.len;
}

int metrics_start(struct metrics *m, uv_loop_t *loop, struct broker *b, const char *data_dir,
                  const struct http_ports *ports)
{
    m->b = b;
    m->data_dir = data_dir;
    int rc = ports->port > 0 ? http_start(&m->http, loop, "Prometheus endpoint",
                                          "prometheus.tcp.port", ports->ip, ports->port, NULL,
                                          handle, m)
                             : 0;
    if (rc == 0 && ports->ssl_port > 0)
        rc = http_start(&m->https, loop, "Prometheus endpoint", "prometheus.ssl.port",
                        ports->ssl_ip, ports->ssl_port, ports->ssl_ctx, handle, m);
    else
        tls_ctx_free(ports->ssl_ctx);
    if (rc < 0)
        http_stop(&m->http);
    http_set_timeouts(&m->http, ports);
    http_set_timeouts(&m->https, ports);
    return rc;
}

void metrics_stop(struct metrics *m)
{
    http_stop(&m->http);
    http_stop(&m->https);
}
