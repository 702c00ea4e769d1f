/* 50-durability-entities — what of exchanges, queues and bindings survives a restart of warrend
 * on the same data dir (SIGTERM, then SIGKILL).
 * RabbitMQ 3.10.8 answers (asserted below; checked on a node restarted with rabbitmqctl stop):
 *  durable exchanges of every type come back with their type, flags (auto_delete, internal) and
 *      alternate-exchange; durable queues with their flags (auto_delete too) and arguments;
 *      bindings whose source and destination are both durable come back, also exchange-to-
 *      exchange ones and headers bindings with their arguments.
 *  redeclare with the same flags and arguments: declare-ok; with others: 406 "PRECONDITION_FAILED
 *      - inequivalent arg ..." exactly as before the restart; the recovered flags act (internal
 *      refuses publishes with 403, auto-delete queues and exchanges go when their last consumer
 *      / binding goes). (x-max-length is compared here; its effect is issue 5's.)
 *  non-durable exchanges and queues are gone (404 "NOT_FOUND - no exchange 'X' in vhost '/'" /
 *      "no queue 'Q' ..."), and redeclaring them brings none of their old bindings back; an
 *      exclusive queue is gone even when durable (404), and any connection may declare it again.
 *  deleted exchanges and queues and removed bindings stay gone.
 *  an entity declared (or deleted) before a confirmed persistent publish is stored by the time
 *      of the confirm: it survives a SIGKILL. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static harness_broker_t s_broker;
static amqp_connection_state_t s_conn; /* owned: the current connection, channel 1 open */
static char s_text[1024];

/* ---- small builders --------------------------------------------------------------------------- */

static amqp_table_t str_arg(amqp_table_entry_t *e, const char *key, const char *val)
{
    e->key = amqp_cstring_bytes(key);
    e->value.kind = AMQP_FIELD_KIND_UTF8;
    e->value.value.bytes = amqp_cstring_bytes(val);
    return (amqp_table_t){.num_entries = 1, .entries = e};
}

static amqp_table_t maxlen_args(amqp_table_entry_t e[2], int maxlen, const char *foo)
{
    e[0].key = amqp_cstring_bytes("x-max-length");
    e[0].value.kind = AMQP_FIELD_KIND_I32;
    e[0].value.value.i32 = maxlen;
    e[1].key = amqp_cstring_bytes("x-foo");
    e[1].value.kind = AMQP_FIELD_KIND_UTF8;
    e[1].value.value.bytes = foo ? amqp_cstring_bytes(foo) : amqp_empty_bytes;
    return (amqp_table_t){.num_entries = foo ? 2 : 1, .entries = e};
}

static amqp_rpc_reply_t xdecl(const char *x, const char *type, bool passive, bool durable,
                              bool auto_delete, bool internal, amqp_table_t args)
{
    amqp_exchange_declare(s_conn, 1, amqp_cstring_bytes(x), amqp_cstring_bytes(type), passive,
                          durable, auto_delete, internal, args);
    return amqp_get_rpc_reply(s_conn);
}

static amqp_rpc_reply_t qdecl(const char *q, bool passive, bool durable, bool exclusive,
                              bool auto_delete, amqp_table_t args, uint32_t *ret_count)
{
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(s_conn, 1, amqp_cstring_bytes(q), passive,
                                                     durable, exclusive, auto_delete, args);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(s_conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL && ret_count)
        *ret_count = ok->message_count;
    return r;
}

/* r must be a channel.close with code and the formatted text; channel 1 is opened again. */
static void expect_close(amqp_rpc_reply_t r, uint16_t code, uint16_t cls, uint16_t meth,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void expect_close(amqp_rpc_reply_t r, uint16_t code, uint16_t cls, uint16_t meth,
                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s_text, sizeof s_text, fmt, ap);
    va_end(ap);
    harness_expect_channel_close(s_conn, 1, r, code, s_text, cls, meth);
    harness_channel_open(s_conn, 1);
}

static void expect_no_exchange(const char *x)
{
    expect_close(xdecl(x, "direct", true, false, false, false, amqp_empty_table), 404, 40, 10,
                 "NOT_FOUND - no exchange '%s' in vhost '/'", x);
}

static void expect_no_queue(const char *q)
{
    expect_close(qdecl(q, true, false, false, false, amqp_empty_table, NULL), 404, 50, 10,
                 "NOT_FOUND - no queue '%s' in vhost '/'", q);
}

/* Restart warrend (SIGTERM, or SIGKILL when crash) on its data dir; s_conn, which the broker
 * closed, is replaced by a new connection with channel 1 open. */
static void restart(bool crash)
{
    s_conn = harness_reopen(&s_broker, s_conn, crash);
}

static void publish(const char *x, const char *key, const char *body, const char *header_h)
{
    amqp_table_entry_t h;
    amqp_table_t t = str_arg(&h, "h", header_h ? header_h : "");
    harness_publish_headers(s_conn, 1, x, key, header_h ? &t : NULL, body);
}

/* ---- the entities --------------------------------------------------------------------------- */

static const char *const s_types[][2] = {
    {"d.direct", "direct"}, {"d.fanout", "fanout"}, {"d.topic", "topic"}, {"d.headers", "headers"}};

static amqp_table_t headers_binding_args(amqp_table_entry_t e[2])
{
    e[0].key = amqp_cstring_bytes("x-match");
    e[0].value.kind = AMQP_FIELD_KIND_UTF8;
    e[0].value.value.bytes = amqp_cstring_bytes("all");
    e[1].key = amqp_cstring_bytes("h");
    e[1].value.kind = AMQP_FIELD_KIND_UTF8;
    e[1].value.value.bytes = amqp_cstring_bytes("1");
    return (amqp_table_t){.num_entries = 2, .entries = e};
}

static void declare_all(void)
{
    amqp_table_entry_t e[2];
    /* Durable exchanges: the four types with an alternate exchange, an auto-delete one and an
     * internal one. */
    CHECK_REPLY(xdecl("d.ae", "fanout", false, true, false, false, amqp_empty_table));
    for (size_t i = 0; i < 4; i++)
        CHECK_REPLY(xdecl(s_types[i][0], s_types[i][1], false, true, false, false,
                          str_arg(e, "alternate-exchange", "d.ae")));
    CHECK_REPLY(xdecl("d.xad", "direct", false, true, true, false, amqp_empty_table));
    CHECK_REPLY(xdecl("d.internal", "topic", false, true, false, true, amqp_empty_table));

    /* Durable queues: plain, with arguments, auto-delete, exclusive. */
    const char *plain[] = {"dq.plain", "dq.ae", "dq.fan"};
    for (size_t i = 0; i < 3; i++)
        CHECK_REPLY(qdecl(plain[i], false, true, false, false, amqp_empty_table, NULL));
    CHECK_REPLY(qdecl("dq.args", false, true, false, false, maxlen_args(e, 5, "bar"), NULL));
    CHECK_REPLY(qdecl("dq.ad", false, true, false, true, amqp_empty_table, NULL));
    CHECK_REPLY(qdecl("dq.excl", false, true, true, false, amqp_empty_table, NULL));

    /* Bindings between durable entities. */
    harness_queue_bind(s_conn, 1, "dq.plain", "d.direct", "k1", amqp_empty_table);
    harness_queue_bind(s_conn, 1, "dq.ad", "d.direct", "k2", amqp_empty_table);
    harness_queue_bind(s_conn, 1, "dq.plain", "d.topic", "a.*.c", amqp_empty_table);
    harness_queue_bind(s_conn, 1, "dq.args", "d.headers", "", headers_binding_args(e));
    harness_queue_bind(s_conn, 1, "dq.fan", "d.fanout", "", amqp_empty_table);
    harness_queue_bind(s_conn, 1, "dq.ae", "d.ae", "", amqp_empty_table);
    harness_exchange_bind(s_conn, 1, "d.fanout", "d.direct", "e2e");
    harness_exchange_bind(s_conn, 1, "d.internal", "d.topic", "int.#");
    harness_queue_bind(s_conn, 1, "dq.plain", "d.internal", "int.x", amqp_empty_table);
    harness_queue_bind(s_conn, 1, "dq.plain", "d.xad", "xad", amqp_empty_table);
    harness_queue_bind(s_conn, 1, "dq.excl", "d.direct", "k1", amqp_empty_table);

    /* Non-durable ones, and bindings that involve them. */
    CHECK_REPLY(xdecl("n.x", "direct", false, false, false, false, amqp_empty_table));
    CHECK_REPLY(qdecl("n.q", false, false, false, false, amqp_empty_table, NULL));
    harness_queue_bind(s_conn, 1, "dq.plain", "n.x", "nk", amqp_empty_table);
    harness_exchange_bind(s_conn, 1, "n.x", "d.direct", "to-nx");
    harness_exchange_bind(s_conn, 1, "d.fanout", "n.x", "from-nx");
    harness_queue_bind(s_conn, 1, "n.q", "d.direct", "k1", amqp_empty_table);
    harness_queue_bind(s_conn, 1, "n.q", "d.fanout", "", amqp_empty_table);

    /* Durable entities and bindings that are deleted again before the restart. */
    CHECK_REPLY(xdecl("d.gone", "direct", false, true, false, false, amqp_empty_table));
    harness_queue_bind(s_conn, 1, "dq.plain", "d.gone", "gone", amqp_empty_table);
    harness_exchange_delete(s_conn, 1, "d.gone");
    CHECK_REPLY(qdecl("dq.gone", false, true, false, false, amqp_empty_table, NULL));
    harness_queue_bind(s_conn, 1, "dq.gone", "d.direct", "kg", amqp_empty_table);
    harness_queue_delete(s_conn, 1, "dq.gone");
    harness_queue_bind(s_conn, 1, "dq.plain", "d.direct", "unbound", amqp_empty_table);
    amqp_queue_unbind(s_conn, 1, amqp_cstring_bytes("dq.plain"), amqp_cstring_bytes("d.direct"),
                      amqp_cstring_bytes("unbound"), amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));
    harness_exchange_bind(s_conn, 1, "d.fanout", "d.direct", "e2e-unbound");
    amqp_exchange_unbind(s_conn, 1, amqp_cstring_bytes("d.fanout"), amqp_cstring_bytes("d.direct"),
                         amqp_cstring_bytes("e2e-unbound"), amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));
    harness_log("declared 7 durable exchanges, 6 durable queues (1 exclusive), 11 durable "
                "bindings; 2 non-durable entities with 5 bindings; deleted 2 entities, 2 bindings");
}

/* Publish m1..m16 (transient) and check where each went. Before the restart the non-durable
 * entities still route; after it they are fresh (redeclared, unbound) and route nothing. */
static void check_routing(bool after)
{
    publish("d.direct", "k1", "m1", NULL);
    publish("d.direct", "k2", "m2", NULL);
    publish("d.topic", "a.b.c", "m3", NULL);
    publish("d.headers", "", "m4", "1");
    publish("d.headers", "", "m5", NULL); /* no match: alternate exchange */
    publish("d.fanout", "any", "m6", NULL);
    publish("d.direct", "e2e", "m7", NULL);
    publish("d.direct", "nomatch", "m8", NULL);
    publish("d.direct", "unbound", "m9", NULL);
    publish("d.direct", "e2e-unbound", "m10", NULL);
    publish("d.direct", "kg", "m11", NULL);
    if (after) /* before, d.direct -> n.x matches, and n.x routes "to-nx" nowhere */
        publish("d.direct", "to-nx", "m12", NULL);
    publish("n.x", "nk", "m13", NULL);
    publish("d.topic", "int.x", "m14", NULL);
    publish("d.xad", "xad", "m15", NULL);
    publish("n.x", "from-nx", "m16", NULL);
    const char *when = after ? "after the restart" : "before the restart";
    harness_expect_drain(s_conn, 1, "dq.plain", after ? "m1 m3 m14 m15" : "m1 m3 m13 m14 m15",
                         when);
    harness_expect_drain(s_conn, 1, "dq.args", "m4", when);
    harness_expect_drain(s_conn, 1, "dq.ad", "m2", when);
    harness_expect_drain(s_conn, 1, "dq.ae", after ? "m5 m8 m9 m10 m11 m12" : "m5 m8 m9 m10 m11",
                         when);
    harness_expect_drain(s_conn, 1, "dq.fan", after ? "m6 m7" : "m6 m7 m16", when);
    harness_expect_drain(s_conn, 1, "n.q", after ? "" : "m1 m6 m7 m16", when);
    if (after)
        harness_expect_drain(s_conn, 1, "dq.gone", "", when);
    else
        harness_expect_drain(s_conn, 1, "dq.excl", "m1", when);
    harness_log("routing %s: exact", when);
}

static void check_existence(void)
{
    const char *xs[] = {"d.ae", "d.direct", "d.fanout", "d.topic", "d.headers", "d.xad",
                        "d.internal"};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++)
        CHECK_REPLY(xdecl(xs[i], "direct", true, false, false, false, amqp_empty_table));
    const char *qs[] = {"dq.plain", "dq.ae", "dq.fan", "dq.args", "dq.ad"};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        uint32_t n = 99;
        CHECK_REPLY(qdecl(qs[i], true, false, false, false, amqp_empty_table, &n));
        CHECKF(n == 0, "queue %s holds %u messages after the restart, all were drained", qs[i], n);
    }
    expect_no_exchange("n.x");
    expect_no_exchange("d.gone");
    expect_no_queue("n.q");
    expect_no_queue("dq.excl");
    expect_no_queue("dq.gone");
    harness_log("after the restart: 7 durable exchanges and 5 durable queues exist; n.x, d.gone, "
                "n.q, dq.excl, dq.gone answer 404");
}

static void check_equivalence(void)
{
    amqp_table_entry_t e[2];
    for (size_t i = 0; i < 4; i++)
        CHECK_REPLY(xdecl(s_types[i][0], s_types[i][1], false, true, false, false,
                          str_arg(e, "alternate-exchange", "d.ae")));
    CHECK_REPLY(xdecl("d.xad", "direct", false, true, true, false, amqp_empty_table));
    CHECK_REPLY(xdecl("d.internal", "topic", false, true, false, true, amqp_empty_table));
    CHECK_REPLY(qdecl("dq.args", false, true, false, false, maxlen_args(e, 5, "bar"), NULL));
    CHECK_REPLY(qdecl("dq.args", false, true, false, false, maxlen_args(e, 5, "other"), NULL));
    CHECK_REPLY(qdecl("dq.ad", false, true, false, true, amqp_empty_table, NULL));
    CHECK_REPLY(qdecl("dq.plain", false, true, false, false, amqp_empty_table, NULL));

    expect_close(xdecl("d.direct", "direct", false, true, false, false, amqp_empty_table), 406, 40,
                 10,
                 "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange "
                 "'d.direct' in vhost '/': received none but current is the value 'd.ae' of type "
                 "'longstr'");
    expect_close(xdecl("d.fanout", "fanout", false, true, false, false,
                       str_arg(e, "alternate-exchange", "other")),
                 406, 40, 10,
                 "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange "
                 "'d.fanout' in vhost '/': received 'other' but current is 'd.ae'");
    expect_close(xdecl("d.topic", "direct", false, true, false, false,
                       str_arg(e, "alternate-exchange", "d.ae")),
                 406, 40, 10,
                 "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'd.topic' in vhost "
                 "'/': received 'direct' but current is 'topic'");
    expect_close(xdecl("d.headers", "headers", false, false, false, false,
                       str_arg(e, "alternate-exchange", "d.ae")),
                 406, 40, 10,
                 "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'd.headers' in "
                 "vhost '/': received 'false' but current is 'true'");
    expect_close(xdecl("d.xad", "direct", false, true, false, false, amqp_empty_table), 406, 40,
                 10,
                 "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for exchange 'd.xad' in "
                 "vhost '/': received 'false' but current is 'true'");
    expect_close(xdecl("d.internal", "topic", false, true, false, false, amqp_empty_table), 406,
                 40, 10,
                 "PRECONDITION_FAILED - inequivalent arg 'internal' for exchange 'd.internal' in "
                 "vhost '/': received 'false' but current is 'true'");

    expect_close(qdecl("dq.args", false, true, false, false, maxlen_args(e, 6, "bar"), NULL), 406,
                 50, 10,
                 "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'dq.args' in "
                 "vhost '/': received '6' but current is '5'");
    expect_close(qdecl("dq.args", false, true, false, false, amqp_empty_table, NULL), 406, 50, 10,
                 "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'dq.args' in "
                 "vhost '/': received none but current is the value '5' of type 'signedint'");
    expect_close(qdecl("dq.plain", false, true, false, false, maxlen_args(e, 5, NULL), NULL), 406,
                 50, 10,
                 "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'dq.plain' in "
                 "vhost '/': received the value '5' of type 'signedint' but current is none");
    expect_close(qdecl("dq.plain", false, false, false, false, amqp_empty_table, NULL), 406, 50,
                 10,
                 "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'dq.plain' in vhost "
                 "'/': received 'false' but current is 'true'");
    expect_close(qdecl("dq.ad", false, true, false, false, amqp_empty_table, NULL), 406, 50, 10,
                 "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue 'dq.ad' in vhost "
                 "'/': received 'false' but current is 'true'");
    harness_log("after the restart: same flags and arguments declare-ok; 11 different ones 406");
}

/* The recovered flags and arguments act, not only compare. */
static void check_behaviour(void)
{
    /* internal: no direct publishes. */
    publish("d.internal", "int.x", "i1", NULL);
    amqp_rpc_reply_t r = amqp_basic_get(s_conn, 1, amqp_cstring_bytes("dq.plain"), 1);
    expect_close(r, 403, 60, 40,
                 "ACCESS_REFUSED - cannot publish to internal exchange 'd.internal' in vhost '/'");

    /* The exclusive queue's name is free for anyone. */
    CHECK_REPLY(qdecl("dq.excl", false, true, true, false, amqp_empty_table, NULL));
    harness_queue_delete(s_conn, 1, "dq.excl");

    /* auto-delete queue: goes with its last consumer. */
    amqp_basic_consume(s_conn, 1, amqp_cstring_bytes("dq.ad"), amqp_cstring_bytes("c1"), 0, 1, 0,
                       amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));
    amqp_basic_cancel(s_conn, 1, amqp_cstring_bytes("c1"));
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));
    CHECKF(harness_wait_queue_gone(s_conn, 1, "dq.ad", 2000),
           "recovered auto-delete queue dq.ad is still there after its consumer was cancelled");
    harness_channel_open(s_conn, 1);

    /* auto-delete exchange: goes with its last binding. */
    amqp_queue_unbind(s_conn, 1, amqp_cstring_bytes("dq.plain"), amqp_cstring_bytes("d.xad"),
                      amqp_cstring_bytes("xad"), amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));
    expect_no_exchange("d.xad");
    harness_log("after the restart: internal, auto-delete (queue and exchange) act; "
                "the exclusive queue's name is free");
}

/* Changes made after the restart, then a confirmed persistent publish, then SIGKILL. */
static void change_then_crash(void)
{
    CHECK_REPLY(xdecl("d.late", "direct", false, true, false, false, amqp_empty_table));
    CHECK_REPLY(qdecl("dq.late", false, true, false, false, amqp_empty_table, NULL));
    harness_queue_bind(s_conn, 1, "dq.late", "d.late", "late", amqp_empty_table);
    harness_exchange_delete(s_conn, 1, "d.topic");
    harness_queue_delete(s_conn, 1, "dq.fan");
    amqp_queue_unbind(s_conn, 1, amqp_cstring_bytes("dq.plain"), amqp_cstring_bytes("d.direct"),
                      amqp_cstring_bytes("k1"), amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));

    harness_confirm_select(s_conn, 1);
    amqp_basic_properties_t props = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG, .delivery_mode = 2};
    harness_publish_props(s_conn, 1, "d.late", "late", false, &props, "p1");
    amqp_frame_t f;
    int st = harness_next_frame(s_conn, &f, 10000);
    CHECKF(st == 0, "waiting for the confirm: %s", amqp_error_string2(st));
    CHECKF(f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD,
           "wanted basic.ack, got frame type %u (%s)", f.frame_type,
           f.frame_type == AMQP_FRAME_METHOD ? amqp_method_name(f.payload.method.id) : "-");

    restart(true);

    uint32_t n = 0;
    CHECK_REPLY(xdecl("d.late", "direct", true, false, false, false, amqp_empty_table));
    CHECK_REPLY(qdecl("dq.late", true, false, false, false, amqp_empty_table, &n));
    CHECK_EQ(n, 1);
    expect_no_exchange("d.topic");
    expect_no_queue("dq.fan");
    publish("d.late", "late", "p2", NULL);
    publish("d.direct", "k1", "p3", NULL); /* unbound from dq.plain: alternate exchange */
    harness_expect_drain(s_conn, 1, "dq.late", "p1 p2", "after SIGKILL");
    harness_expect_drain(s_conn, 1, "dq.plain", "", "after SIGKILL");
    harness_expect_drain(s_conn, 1, "dq.ae", "p3", "after SIGKILL");
    harness_log("after SIGKILL: declares, deletes and an unbind made before a confirm are kept");
}

/* declare-ok (or delete-ok) and a SIGKILL right after it: the answer said it was done, and
 * RabbitMQ keeps it (checked: 3 of 3 rounds with kill -9 of beam.smp after declare-ok). Every
 * loss is counted and logged; the test fails at the end if there was any. */
static bool exists(bool queue, const char *name)
{
    amqp_rpc_reply_t r = queue ? qdecl(name, true, false, false, false, amqp_empty_table, NULL)
                               : xdecl(name, "fanout", true, false, false, false, amqp_empty_table);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return true;
    expect_close(r, 404, queue ? 50 : 40, 10, "NOT_FOUND - no %s '%s' in vhost '/'",
                 queue ? "queue" : "exchange", name);
    return false;
}

static void declare_then_crash(void)
{
    int lost = 0;
    for (int round = 0; round < 5; round++) {
        char q[32], x[32], prev[32];
        snprintf(q, sizeof q, "dq.quick%d", round);
        snprintf(x, sizeof x, "d.quick%d", round);
        snprintf(prev, sizeof prev, "dq.quick%d", round - 1);
        CHECK_REPLY(xdecl(x, "fanout", false, true, false, false, amqp_empty_table));
        CHECK_REPLY(qdecl(q, false, true, false, false, amqp_empty_table, NULL));
        harness_queue_bind(s_conn, 1, q, x, "", amqp_empty_table);
        if (round > 0) { /* and the previous round's queue deleted */
            harness_queue_delete(s_conn, 1, prev);
        }
        restart(true);
        bool has_x = exists(false, x), has_q = exists(true, q);
        if (!has_x || !has_q) {
            harness_log("round %d: LOST %s%s (declare-ok came before the SIGKILL)", round,
                        has_x ? "" : "exchange ", has_q ? "" : "queue");
            lost++;
            continue;
        }
        publish(x, "", "b", NULL);
        char got[64];
        harness_drain(s_conn, 1, q, got, sizeof got);
        if (strcmp(got, "b") != 0) {
            harness_log("round %d: LOST the binding %s -> %s (bind-ok came before the SIGKILL)",
                        round, x, q);
            lost++;
        }
        if (round > 0 && exists(true, prev)) {
            harness_log("round %d: deleted queue %s is BACK (delete-ok came before the SIGKILL)",
                        round, prev);
            lost++;
        }
    }
    CHECKF(lost == 0, "%d of 5 rounds lost a declare, bind or delete answered before a SIGKILL",
           lost);
    harness_log("declare-ok, bind-ok and delete-ok followed at once by SIGKILL: kept (5 rounds)");
}

int main(void)
{
    harness_watchdog(120);
    harness_broker_start(&s_broker);
    harness_require_own_broker(&s_broker);
    s_conn = harness_open(&s_broker);

    declare_all();
    check_routing(false);

    restart(false);

    check_existence();
    check_equivalence();
    CHECK_REPLY(xdecl("n.x", "direct", false, false, false, false, amqp_empty_table));
    CHECK_REPLY(qdecl("n.q", false, false, false, false, amqp_empty_table, NULL));
    CHECK_REPLY(qdecl("dq.gone", false, true, false, false, amqp_empty_table, NULL));
    check_routing(true);
    amqp_queue_delete(s_conn, 1, amqp_cstring_bytes("dq.gone"), 0, 0); /* deleted once more */
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));

    /* A second restart: what came back once comes back again. */
    restart(false);
    check_existence();
    check_equivalence();
    check_behaviour();
    change_then_crash();
    declare_then_crash();

    harness_disconnect(s_conn);
    CHECK(harness_broker_stop(&s_broker) == 0);
    harness_log("PASS");
    return 0;
}
