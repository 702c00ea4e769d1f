/* api_overview.c — the management API's node-wide views, in RabbitMQ 3.10's shapes:
 * /api/overview (versions, object and queue totals, message_stats with rates, listeners),
 * /api/nodes, /api/health/checks/..., /api/aliveness-test/{vhost}, and the message_stats of a
 * queue. Counts come from the model (broker_stats, queue stats, stats.c's rates) and the
 * session views; nothing here keeps state. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <uv.h>
#include "config.h"
#include "broker/admin/api_int.h"
#include "broker/model/broker.h"
#include "broker/model/entity.h"
#include "broker/model/exchange.h"
#include "broker/model/msg.h"
#include "broker/model/publish.h"
#include "broker/model/queue.h"
#include "broker/model/sessions.h"
#include "broker/model/users.h"
#include "broker/model/vhost.h"
#include "protocol/codec.h"

/* "name": count and "name_details": {"rate": rate} into o. */
static void counter(json_t *o, const char *name, uint64_t count, double rate)
{
    char details[64];
    snprintf(details, sizeof details, "%s_details", name);
    json_object_set_new(o, name, json_integer((json_int_t)count));
    json_object_set_new(o, details, json_pack("{s:f}", "rate", rate));
}

json_t *api_queue_message_stats(const struct queue *q)
{
    static const char *const names[QSTAT_MAX] = {"publish", "deliver_get", "redeliver", "ack"};
    json_t *o = json_object();
    for (int i = 0; o && i < QSTAT_MAX; i++)
        counter(o, names[i], q->stat[i], q->stat_rate[i]);
    return o;
}

static void count_session(void *arg, const struct session_view *v)
{
    (void)v;
    ++*(uint64_t *)arg;
}

static void count_channel(void *arg, const struct channel_view *v)
{
    (void)v;
    ++*(uint64_t *)arg;
}

void api_overview(struct call *c)
{
    if (!api_is(c, "GET"))
        return api_method_not_allowed(c, "GET, HEAD");
    struct broker *b = c->a->b;
    uint64_t nq = 0, nx = 0, ncons = 0, ready = 0, unack = 0, nconn = 0, nch = 0;
    void *v, *qv;
    for (uint32_t it = 0; hmap_next(&b->vhosts, &it, &v);) {
        struct vhost *vh = v;
        if (!api_sees_vhost(c, vh->name))
            continue;
        nq += vh->queues.count;
        nx += vh->exchanges.count;
        for (uint32_t jt = 0; hmap_next(&vh->queues, &jt, &qv);) {
            struct queue *q = qv;
            ncons += q->consumer_count;
            ready += queue_ready(q);
            unack += queue_unacked(q);
        }
    }
    if (b->sessions) {
        b->sessions->each(b->sessions_arg, NULL, count_session, &nconn);
        b->sessions->each_channel(b->sessions_arg, NULL, NULL, count_channel, &nch);
    }
    const struct broker_stats *s = &b->stats;
    const struct broker_rates *r = &b->rates;
    json_t *ms = json_object();
    counter(ms, "publish", s->received, r->received);
    counter(ms, "confirm", s->confirmed, r->confirmed);
    counter(ms, "deliver_get", s->delivered, r->delivered);
    counter(ms, "redeliver", s->redelivered, r->redelivered);
    counter(ms, "ack", s->acknowledged, r->acknowledged);
    counter(ms, "return_unroutable", s->unroutable_returned, r->returned);
    counter(ms, "drop_unroutable", s->unroutable_dropped, r->dropped);
    json_t *ls = json_array();
    for (unsigned i = 0; i < c->a->nlisteners; i++)
        json_array_append_new(ls, json_pack("{s:s, s:s, s:s, s:i}", "node", "warren@localhost",
                                            "protocol", c->a->listeners[i].protocol,
                                            "ip_address", c->a->listeners[i].ip, "port",
                                            c->a->listeners[i].port));
    json_t *ov =
              json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:{s:I, s:I, s:I, s:I, s:I}, "
                        "s:{s:I, s:I, s:I}, s:o, s:s, s:s}",
                        "management_version", WARREN_VERSION, "rabbitmq_version", "3.10.8",
                        "product_name", "Warren", "product_version", WARREN_VERSION, "node",
                        "warren@localhost", "cluster_name", "warren@localhost", "message_stats",
                        ms, "object_totals", "connections", (json_int_t)nconn, "channels",
                        (json_int_t)nch, "exchanges", (json_int_t)nx, "queues", (json_int_t)nq,
                        "consumers", (json_int_t)ncons, "queue_totals", "messages",
                        (json_int_t)(ready + unack), "messages_ready", (json_int_t)ready,
                        "messages_unacknowledged", (json_int_t)unack, "listeners", ls,
                        "statistics_db_event_queue", "0", "erlang_version", "none (C17)");
    if (!ov)
        return api_error(c, 500, "internal_error", "out of memory");
    /* RabbitMQ's other overview fields that clients read. */
    json_object_set_new(ov, "statistics_db_event_queue", json_integer(0));
    json_object_set_new(ov, "rates_mode", json_string("basic"));
    json_object_set_new(ov, "disable_stats", json_false());
    json_object_set_new(ov, "enable_queue_totals", json_true());
    json_t *types = json_array();
    static const char *const names[] = {"direct", "fanout", "headers", "topic",
                                        "x-message-deduplication", "x-delayed-message"};
    static const char *const descr[] = {"", "", "", "", "Message Deduplication Exchange.",
                                        "Delayed Message Exchange."};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        json_array_append_new(types, json_pack("{s:s, s:s, s:b}", "name", names[i],
                                               "description", descr[i], "enabled", 1));
    json_object_set_new(ov, "exchange_types", types);
    api_reply(c, 200, ov);
}

void api_nodes(struct call *c)
{
    if (!api_is(c, "GET"))
        return api_method_not_allowed(c, "GET, HEAD");
    size_t rss = 0;
    uv_resident_set_memory(&rss);
    uint64_t uptime = uv_now(c->a->http.loop) - c->a->started_ms;
    json_t *node = json_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:I}", "name",
                             "warren@localhost", "type", "disc", "running", 1, "mem_used",
                             (json_int_t)rss, "mem_limit", (json_int_t)c->a->b->mem_limit,
                             "uptime", (json_int_t)uptime, "processors",
                             (json_int_t)uv_available_parallelism(), "run_queue", (json_int_t)0);
    if (node) { /* the fields RabbitMQ's node has that mean something here */
        struct rlimit fds;
        uint64_t nconn = 0;
        if (c->a->b->sessions)
            c->a->b->sessions->each(c->a->b->sessions_arg, NULL, count_session, &nconn);
        json_object_set_new(node, "os_pid", json_integer((json_int_t)uv_os_getpid()));
        json_object_set_new(node, "fd_total", json_integer(getrlimit(RLIMIT_NOFILE, &fds) == 0
                                                               ? (json_int_t)fds.rlim_cur : 0));
        json_object_set_new(node, "sockets_used", json_integer((json_int_t)nconn));
        json_object_set_new(node, "mem_alarm", json_boolean(c->a->b->alarm_memory));
        json_object_set_new(node, "disk_free_alarm", json_boolean(c->a->b->alarm_disk));
        struct statvfs fs; /* as RabbitMQ's node: the data directory's free space and limit */
        if (c->a->data_dir && statvfs(c->a->data_dir, &fs) == 0)
            json_object_set_new(node, "disk_free",
                                json_integer((json_int_t)((uint64_t)fs.f_bavail * fs.f_frsize)));
        json_object_set_new(node, "disk_free_limit",
                            json_integer((json_int_t)c->a->disk_free_limit));
        json_object_set_new(node, "partitions", json_array());
        json_object_set_new(node, "rates_mode", json_string("basic"));
    }
    if (c->nseg == 2)
        return !strcmp(c->seg[1], "warren@localhost") ? api_reply(c, 200, node)
                                                       : (json_decref(node), api_not_found(c));
    api_reply(c, 200, json_pack("[o]", node));
}

/* /api/health/checks/{alarms,local-alarms,virtual-hosts,port-listener/{port},
 * protocol-listener/{protocol},ready-to-serve-clients}: {"status":"ok"} or 503 failed. */
void api_health(struct call *c)
{
    if (c->nseg < 3 || strcmp(c->seg[1], "checks"))
        return api_not_found(c);
    const char *what = c->seg[2];
    if (!strcmp(what, "alarms") || !strcmp(what, "local-alarms")) {
        if (!c->a->b->alarm_memory && !c->a->b->alarm_disk)
            return api_reply(c, 200, json_pack("{s:s}", "status", "ok"));
        json_t *alarms = json_array();
        if (c->a->b->alarm_memory)
            json_array_append_new(alarms, json_pack("{s:s, s:s}", "node", "warren@localhost",
                                                    "resource", "memory"));
        if (c->a->b->alarm_disk)
            json_array_append_new(alarms, json_pack("{s:s, s:s}", "node", "warren@localhost",
                                                    "resource", "disk"));
        return api_reply(c, 503, json_pack("{s:s, s:s, s:o}", "status", "failed", "reason",
                                           "resource alarm(s) in effect", "alarms", alarms));
    }
    if (!strcmp(what, "virtual-hosts") || !strcmp(what, "ready-to-serve-clients"))
        return api_reply(c, 200, json_pack("{s:s}", "status", "ok"));
    bool port = !strcmp(what, "port-listener");
    if ((!port && strcmp(what, "protocol-listener")) || c->nseg != 4)
        return api_not_found(c);
    /* As RabbitMQ: the port or protocol asked for, and on failure the ones there are. */
    const char *want = c->seg[3];
    const char *proto = !strcasecmp(want, "amqp091") || !strcasecmp(want, "amqp") ? "amqp" : want;
    json_t *have = json_array();
    bool ok = false;
    for (unsigned i = 0; i < c->a->nlisteners; i++) {
        const struct admin_listener *l = &c->a->listeners[i];
        ok |= port ? l->port == atoi(want) : !strcasecmp(l->protocol, proto);
        json_array_append_new(have, port ? json_integer(l->port) : json_string(l->protocol));
    }
    if (ok) {
        json_decref(have);
        return api_reply(c, 200, port ? json_pack("{s:s, s:i}", "status", "ok", "port",
                                                  atoi(want))
                                       : json_pack("{s:s, s:s}", "status", "ok", "protocol",
                                                   proto));
    }
    api_reply(c, 503, port ? json_pack("{s:s, s:s, s:i, s:o}", "status", "failed", "reason",
                                       "No active listener", "missing", atoi(want), "ports",
                                       have)
                           : json_pack("{s:s, s:s, s:s, s:o}", "status", "failed", "reason",
                                       "No active listener", "missing", want, "protocols",
                                       have));
}

/* GET /api/aliveness-test/{vhost}: declares the queue aliveness-test, publishes a message to
 * it through the default exchange and gets it back, as RabbitMQ does. */
void api_aliveness(struct call *c)
{
    struct vhost *vh = c->nseg == 2 ? hmap_get(&c->a->b->vhosts, c->seg[1], strlen(c->seg[1]))
                                    : NULL;
    if (!vh)
        return api_not_found(c);
    if (!api_admin_only(c))
        return;
    amqp_bytes_t name = AMQP_BYTES_LIT("aliveness-test");
    struct queue *q = vhost_queue(vh, name);
    struct route r = {0};
    struct msg *m = NULL;
    if (!q && entity_queue_create(vh, name, false, false, false, NULL, (amqp_bytes_t){NULL, 0},
                                  &q) < 0)
        goto fail;
    uint8_t hdr[32];
    struct amqp_basic_props p = {0};
    long hl = amqp_content_header_encode(&p, 12, hdr);
    struct exchange *x = vhost_exchange(vh, AMQP_BYTES_LIT(""));
    if (hl < 0 || !x || !(m = msg_new((amqp_bytes_t){NULL, 0}, name,
                                      (amqp_bytes_t){hdr, (uint32_t)hl},
                                      (amqp_bytes_t){NULL, 0}, 12)))
        goto fail;
    memcpy(m->body, "test_message", 12);
    m->body_have = 12;
    uint64_t batch;
    bool rejected;
    if (exchange_route(x, m, &r) < 0 || publish_enqueue(c->a->b, m, &r, &batch, &rejected) < 0)
        goto fail;
    struct qentry e;
    bool got = false;
    while (queue_pop(q, &e)) { /* take back what is there (ours is the newest) */
        got = e.m->body_size == 12 && !memcmp(e.m->body, "test_message", 12);
        queue_settled(q, &e);
        msg_unref(e.m);
    }
    if (!got)
        goto fail;
    route_free(&r);
    msg_unref(m);
    return api_reply(c, 200, json_pack("{s:s}", "status", "ok"));
fail:
    route_free(&r);
    msg_unref(m);
    api_reply(c, 503, json_pack("{s:s, s:s}", "status", "failed", "reason",
                                "could not publish and get a message"));
}
