/* 30-exchange-declare — exchange.declare / exchange.delete and the rules around them, with
 * RabbitMQ's reply codes, texts and class/method ids.
 * RabbitMQ 3.10.8 answers (asserted below; X is the exchange's name):
 *  declare direct/fanout/topic/headers: declare-ok, again with the same flags: declare-ok
 *  passive, missing: 404 "NOT_FOUND - no exchange 'X' in vhost '/'" (40.10)
 *  passive with another type or other flags: declare-ok (passive checks existence only)
 *  redeclare with another type: 406 "PRECONDITION_FAILED - inequivalent arg 'type' for exchange
 *      'X' in vhost '/': received 'fanout' but current is 'direct'" (40.10); likewise 'durable',
 *      'auto_delete', 'internal' with "received 'true' but current is 'false'"
 *  alternate-exchange added: "... inequivalent arg 'alternate-exchange' for exchange 'X' in
 *      vhost '/': received the value 'ae1' of type 'longstr' but current is none"
 *  alternate-exchange removed: "... received none but current is the value 'ae1' of type
 *      'longstr'"; changed: "... received 'ae2' but current is 'ae1'"
 *  an argument RabbitMQ does not know (foo=bar) on redeclare: declare-ok (not compared)
 *  alternate-exchange of type signedint: 406 "PRECONDITION_FAILED - invalid type 'signedint'
 *      for arg 'alternate-exchange' in exchange 'X' in vhost '/'" (40.10)
 *  unknown type (also for an existing exchange and for ""): connection.close 503
 *      "COMMAND_INVALID - unknown exchange type 'nosuch'" (40.10)
 *  name "amq.foo": 403 "ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix
 *      'amq.*'" (40.10); passive "amq.foo": 404
 *  amq.direct, amq.fanout, amq.topic, amq.headers, amq.match: passive declare-ok; redeclared
 *      durable with their own type: declare-ok; amq.direct non-durable: 406 'durable' "received
 *      'false' but current is 'true'"; amq.direct as fanout: 406 'type'
 *  the default exchange "": declare (passive or not), delete, queue.bind, queue.unbind,
 *      exchange.bind and exchange.unbind (as source or destination): 403 "ACCESS_REFUSED -
 *      operation not permitted on the default exchange" (40.10, 40.20, 50.20, 50.50, 40.30,
 *      40.40)
 *  delete if-unused of an exchange that is the source of a queue or exchange binding: 406
 *      "PRECONDITION_FAILED - exchange 'X' in vhost '/' in use" (40.20); being only the
 *      destination of an exchange binding does not count: delete-ok
 *  delete (if-unused or not) of a missing exchange: delete-ok
 *  delete amq.direct (if-unused or not): 403 "ACCESS_REFUSED - deletion of system exchange
 *      'amq.direct' in vhost '/' not allowed" (40.20)
 *  exchange.bind / queue.bind naming a missing exchange: 404 "NOT_FOUND - no exchange 'X' in
 *      vhost '/'"; queue.bind naming a missing queue: 404 "NOT_FOUND - no queue 'Q' in vhost
 *      '/'" (50.20) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static const harness_broker_t *s_broker;
static amqp_connection_state_t s_conn;

static amqp_table_t one_arg(const char *key, amqp_field_value_t v)
{
    static amqp_table_entry_t e;
    e.key = amqp_cstring_bytes(key);
    e.value = v;
    amqp_table_t t = {.num_entries = 1, .entries = &e};
    return t;
}

static amqp_table_t str_arg(const char *key, const char *val)
{
    amqp_field_value_t v = {.kind = AMQP_FIELD_KIND_UTF8};
    v.value.bytes = amqp_cstring_bytes(val);
    return one_arg(key, v);
}

static amqp_rpc_reply_t declare(const char *name, const char *type, int passive, int durable,
                                int auto_delete, int internal, amqp_table_t args)
{
    amqp_exchange_declare(s_conn, 1, amqp_cstring_bytes(name), amqp_cstring_bytes(type), passive,
                          durable, auto_delete, internal, args);
    return amqp_get_rpc_reply(s_conn);
}

static amqp_rpc_reply_t delete_x(const char *name, int if_unused)
{
    amqp_exchange_delete(s_conn, 1, amqp_cstring_bytes(name), if_unused);
    return amqp_get_rpc_reply(s_conn);
}

/* r must be a channel.close of channel 1 with this code, class.method and text (printf
 * format); channel 1 is opened again afterwards. */
static void expect_close(amqp_rpc_reply_t r, uint16_t code, uint16_t cls, uint16_t mth,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void expect_close(amqp_rpc_reply_t r, uint16_t code, uint16_t cls, uint16_t mth,
                         const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    harness_expect_channel_close(s_conn, 1, r, code, text, cls, mth);
    harness_channel_open(s_conn, 1);
}

static void check_types(void)
{
    static const char *const types[] = {"direct", "fanout", "topic", "headers"};
    for (int i = 0; i < 4; i++) {
        const char *x = harness_name(types[i]);
        CHECK_REPLY(declare(x, types[i], 0, 0, 0, 0, amqp_empty_table));
        CHECK_REPLY(declare(x, types[i], 0, 0, 0, 0, amqp_empty_table)); /* idempotent */
        CHECK_REPLY(declare(x, "", 1, 0, 0, 0, amqp_empty_table));
        /* passive ignores type and flags */
        CHECK_REPLY(declare(x, i ? "direct" : "fanout", 1, 1, 1, 1, amqp_empty_table));
    }
    harness_log("direct, fanout, topic, headers: declare-ok, redeclare-ok, passive-ok");

    const char *missing = harness_name("missing");
    expect_close(declare(missing, "direct", 1, 0, 0, 0, amqp_empty_table), 404, 40, 10,
                 "NOT_FOUND - no exchange '%s' in vhost '/'", missing);
    /* and a failed passive declare did not create it */
    expect_close(declare(missing, "", 1, 0, 0, 0, amqp_empty_table), 404, 40, 10,
                 "NOT_FOUND - no exchange '%s' in vhost '/'", missing);
}

static void check_equivalence(void)
{
    const char *x = harness_name("equiv");
    CHECK_REPLY(declare(x, "direct", 0, 0, 0, 0, amqp_empty_table));

    expect_close(declare(x, "fanout", 0, 0, 0, 0, amqp_empty_table), 406, 40, 10,
                 "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '%s' in vhost '/': "
                 "received 'fanout' but current is 'direct'",
                 x);
    expect_close(declare(x, "direct", 0, 1, 0, 0, amqp_empty_table), 406, 40, 10,
                 "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange '%s' in vhost "
                 "'/': received 'true' but current is 'false'",
                 x);
    expect_close(declare(x, "direct", 0, 0, 1, 0, amqp_empty_table), 406, 40, 10,
                 "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for exchange '%s' in "
                 "vhost '/': received 'true' but current is 'false'",
                 x);
    expect_close(declare(x, "direct", 0, 0, 0, 1, amqp_empty_table), 406, 40, 10,
                 "PRECONDITION_FAILED - inequivalent arg 'internal' for exchange '%s' in vhost "
                 "'/': received 'true' but current is 'false'",
                 x);
    expect_close(declare(x, "direct", 0, 0, 0, 0, str_arg("alternate-exchange", "ae1")), 406, 40,
                 10,
                 "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '%s' "
                 "in vhost '/': received the value 'ae1' of type 'longstr' but current is none",
                 x);
    /* Arguments RabbitMQ does not interpret are not compared. */
    CHECK_REPLY(declare(x, "direct", 0, 0, 0, 0, str_arg("foo", "bar")));
    /* The exchange is unchanged by all of that. */
    CHECK_REPLY(declare(x, "direct", 0, 0, 0, 0, amqp_empty_table));

    const char *xa = harness_name("equiv-ae");
    CHECK_REPLY(declare(xa, "fanout", 0, 0, 0, 0, str_arg("alternate-exchange", "ae1")));
    CHECK_REPLY(declare(xa, "fanout", 0, 0, 0, 0, str_arg("alternate-exchange", "ae1")));
    expect_close(declare(xa, "fanout", 0, 0, 0, 0, amqp_empty_table), 406, 40, 10,
                 "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '%s' "
                 "in vhost '/': received none but current is the value 'ae1' of type 'longstr'",
                 xa);
    expect_close(declare(xa, "fanout", 0, 0, 0, 0, str_arg("alternate-exchange", "ae2")), 406, 40,
                 10,
                 "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '%s' "
                 "in vhost '/': received 'ae2' but current is 'ae1'",
                 xa);
    CHECK_REPLY(declare(xa, "", 1, 0, 0, 0, amqp_empty_table));

    const char *xi = harness_name("ae-int");
    amqp_field_value_t five = {.kind = AMQP_FIELD_KIND_I32};
    five.value.i32 = 5;
    expect_close(declare(xi, "fanout", 0, 0, 0, 0, one_arg("alternate-exchange", five)), 406, 40,
                 10,
                 "PRECONDITION_FAILED - invalid type 'signedint' for arg 'alternate-exchange' in "
                 "exchange '%s' in vhost '/'",
                 xi);
    expect_close(declare(xi, "", 1, 0, 0, 0, amqp_empty_table), 404, 40, 10,
                 "NOT_FOUND - no exchange '%s' in vhost '/'", xi);

    CHECK_REPLY(delete_x(x, 0));
    CHECK_REPLY(delete_x(xa, 0));
    harness_log("equivalence: type, durable, auto_delete, internal, alternate-exchange -> 406");
}

/* An unknown type is a connection exception, even for an existing exchange or for "". */
static void check_unknown_type(void)
{
    const char *names[] = {harness_name("weird"), "amq.direct", ""};
    for (int i = 0; i < 3; i++) {
        amqp_connection_state_t c = harness_open(s_broker);
        amqp_exchange_declare(c, 1, amqp_cstring_bytes(names[i]), amqp_cstring_bytes("nosuch"),
                              0, 0, 0, 0, amqp_empty_table);
        harness_expect_connection_close(c, amqp_get_rpc_reply(c), 503,
                                        "COMMAND_INVALID - unknown exchange type 'nosuch'", 40,
                                        10);
    }
    expect_close(declare(names[0], "", 1, 0, 0, 0, amqp_empty_table), 404, 40, 10,
                 "NOT_FOUND - no exchange '%s' in vhost '/'", names[0]);
    harness_log("unknown type: connection.close 503");
}

static void check_reserved_and_predeclared(void)
{
    expect_close(declare("amq.foo", "direct", 0, 0, 0, 0, amqp_empty_table), 403, 40, 10,
                 "ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix 'amq.*'");
    expect_close(declare("amq.foo", "direct", 1, 0, 0, 0, amqp_empty_table), 404, 40, 10,
                 "NOT_FOUND - no exchange 'amq.foo' in vhost '/'");

    static const char *const pre[][2] = {{"amq.direct", "direct"},
                                         {"amq.fanout", "fanout"},
                                         {"amq.topic", "topic"},
                                         {"amq.headers", "headers"},
                                         {"amq.match", "headers"}};
    for (int i = 0; i < 5; i++) {
        CHECK_REPLY(declare(pre[i][0], "", 1, 0, 0, 0, amqp_empty_table));
        /* They are durable, with exactly these types. */
        CHECK_REPLY(declare(pre[i][0], pre[i][1], 0, 1, 0, 0, amqp_empty_table));
    }
    expect_close(declare("amq.direct", "direct", 0, 0, 0, 0, amqp_empty_table), 406, 40, 10,
                 "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.direct' in "
                 "vhost '/': received 'false' but current is 'true'");
    expect_close(declare("amq.direct", "fanout", 0, 1, 0, 0, amqp_empty_table), 406, 40, 10,
                 "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'amq.direct' in "
                 "vhost '/': received 'fanout' but current is 'direct'");

    for (int if_unused = 0; if_unused < 2; if_unused++)
        expect_close(delete_x("amq.direct", if_unused), 403, 40, 20,
                     "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not "
                     "allowed");
    expect_close(delete_x("amq.topic", 0), 403, 40, 20,
                 "ACCESS_REFUSED - deletion of system exchange 'amq.topic' in vhost '/' not "
                 "allowed");
    CHECK_REPLY(declare("amq.direct", "", 1, 0, 0, 0, amqp_empty_table));
    CHECK_REPLY(declare("amq.topic", "", 1, 0, 0, 0, amqp_empty_table));
    harness_log("amq.* reserved (403), predeclared ones exist with their types, not deletable");
}

static void check_default_exchange(const char *queue)
{
    static const char text[] = "ACCESS_REFUSED - operation not permitted on the default exchange";
    amqp_bytes_t dflt = amqp_empty_bytes, q = amqp_cstring_bytes(queue);

    expect_close(declare("", "direct", 0, 0, 0, 0, amqp_empty_table), 403, 40, 10, text);
    expect_close(declare("", "direct", 0, 1, 0, 0, amqp_empty_table), 403, 40, 10, text);
    expect_close(declare("", "", 1, 0, 0, 0, amqp_empty_table), 403, 40, 10, text);
    expect_close(delete_x("", 0), 403, 40, 20, text);
    expect_close(delete_x("", 1), 403, 40, 20, text);

    amqp_queue_bind(s_conn, 1, q, dflt, q, amqp_empty_table);
    expect_close(amqp_get_rpc_reply(s_conn), 403, 50, 20, text);
    amqp_queue_unbind(s_conn, 1, q, dflt, q, amqp_empty_table);
    expect_close(amqp_get_rpc_reply(s_conn), 403, 50, 50, text);

    amqp_bytes_t other = amqp_cstring_bytes("amq.direct");
    amqp_exchange_bind(s_conn, 1, dflt, other, q, amqp_empty_table); /* "" as destination */
    expect_close(amqp_get_rpc_reply(s_conn), 403, 40, 30, text);
    amqp_exchange_bind(s_conn, 1, other, dflt, q, amqp_empty_table); /* "" as source */
    expect_close(amqp_get_rpc_reply(s_conn), 403, 40, 30, text);
    amqp_exchange_unbind(s_conn, 1, dflt, other, q, amqp_empty_table);
    expect_close(amqp_get_rpc_reply(s_conn), 403, 40, 40, text);
    amqp_exchange_unbind(s_conn, 1, other, dflt, q, amqp_empty_table);
    expect_close(amqp_get_rpc_reply(s_conn), 403, 40, 40, text);

    /* ... and it still routes by queue name. */
    harness_publish(s_conn, 1, "", queue, "dflt");
    char got[64];
    CHECK_EQ(harness_drain(s_conn, 1, queue, got, sizeof got), 1);
    CHECK_STREQ(got, "dflt");
    harness_log("default exchange: declare/delete/bind/unbind -> 403, still routes");
}

static void check_delete(const char *queue)
{
    amqp_bytes_t q = amqp_cstring_bytes(queue);
    const char *x = harness_name("del"), *dst = harness_name("del-dst");
    CHECK_REPLY(declare(x, "direct", 0, 0, 0, 0, amqp_empty_table));
    CHECK_REPLY(declare(dst, "fanout", 0, 0, 0, 0, amqp_empty_table));

    /* bind errors: missing queue, missing exchange (either end) */
    const char *nq = harness_name("no-queue"), *nx = harness_name("no-exchange");
    amqp_queue_bind(s_conn, 1, amqp_cstring_bytes(nq), amqp_cstring_bytes(x), q, amqp_empty_table);
    expect_close(amqp_get_rpc_reply(s_conn), 404, 50, 20, "NOT_FOUND - no queue '%s' in vhost '/'",
                 nq);
    amqp_queue_bind(s_conn, 1, q, amqp_cstring_bytes(nx), q, amqp_empty_table);
    expect_close(amqp_get_rpc_reply(s_conn), 404, 50, 20,
                 "NOT_FOUND - no exchange '%s' in vhost '/'", nx);
    amqp_exchange_bind(s_conn, 1, amqp_cstring_bytes(nx), amqp_cstring_bytes(x), q,
                       amqp_empty_table);
    expect_close(amqp_get_rpc_reply(s_conn), 404, 40, 30,
                 "NOT_FOUND - no exchange '%s' in vhost '/'", nx);
    amqp_exchange_bind(s_conn, 1, amqp_cstring_bytes(x), amqp_cstring_bytes(nx), q,
                       amqp_empty_table);
    expect_close(amqp_get_rpc_reply(s_conn), 404, 40, 30,
                 "NOT_FOUND - no exchange '%s' in vhost '/'", nx);
    /* unbinding what was never bound is fine */
    harness_queue_unbind(s_conn, 1, queue, x, "nokey", amqp_empty_table);
    harness_exchange_unbind(s_conn, 1, dst, x, "nokey");

    /* in use as the source of a queue binding */
    harness_queue_bind(s_conn, 1, queue, x, "k", amqp_empty_table);
    expect_close(delete_x(x, 1), 406, 40, 20,
                 "PRECONDITION_FAILED - exchange '%s' in vhost '/' in use", x);
    harness_queue_unbind(s_conn, 1, queue, x, "k", amqp_empty_table);

    /* in use as the source of an exchange binding; the destination is not "in use" */
    harness_exchange_bind(s_conn, 1, dst, x, "k");
    expect_close(delete_x(x, 1), 406, 40, 20,
                 "PRECONDITION_FAILED - exchange '%s' in vhost '/' in use", x);
    CHECK_REPLY(delete_x(dst, 1)); /* takes the x -> dst binding with it */
    CHECK_REPLY(delete_x(x, 1));   /* so x is unused now */
    expect_close(declare(x, "", 1, 0, 0, 0, amqp_empty_table), 404, 40, 10,
                 "NOT_FOUND - no exchange '%s' in vhost '/'", x);
    expect_close(declare(dst, "", 1, 0, 0, 0, amqp_empty_table), 404, 40, 10,
                 "NOT_FOUND - no exchange '%s' in vhost '/'", dst);

    /* deleting a missing exchange is not an error */
    CHECK_REPLY(delete_x(x, 0));
    CHECK_REPLY(delete_x(x, 1));

    /* delete without if-unused removes the bindings: a new exchange of that name is empty */
    CHECK_REPLY(declare(x, "direct", 0, 0, 0, 0, amqp_empty_table));
    harness_queue_bind(s_conn, 1, queue, x, "k", amqp_empty_table);
    CHECK_REPLY(delete_x(x, 0));
    CHECK_REPLY(declare(x, "direct", 0, 0, 0, 0, amqp_empty_table));
    harness_publish(s_conn, 1, x, "k", "old-binding");
    CHECK_REPLY(delete_x(x, 1)); /* unused: the old binding went with the old exchange */
    char got[64];
    CHECK_EQ(harness_drain(s_conn, 1, queue, got, sizeof got), 0);

    /* publishing to a deleted exchange: 404 on basic.publish */
    harness_publish(s_conn, 1, x, "k", "gone");
    expect_close(harness_round_trip(s_conn, 1), 404, 60, 40,
                 "NOT_FOUND - no exchange '%s' in vhost '/'", x);
    harness_log("delete: if-unused 406, missing ok, bindings go with the exchange");
}

int main(void)
{
    harness_broker_t b;
    s_conn = harness_begin(&b, 50, "it-xd");
    s_broker = &b;
    char queue[128]; /* harness_name() buffers are reused */
    snprintf(queue, sizeof queue, "%s", harness_name("q"));
    harness_queue_declare(s_conn, 1, queue, HARNESS_QUEUE_EXCLUSIVE | HARNESS_QUEUE_AUTO_DELETE,
                          amqp_empty_table);

    check_types();
    check_equivalence();
    check_unknown_type();
    check_reserved_and_predeclared();
    check_default_exchange(queue);
    check_delete(queue);

    static const char *const types[] = {"direct", "fanout", "topic", "headers"};
    for (int i = 0; i < 4; i++)
        CHECK_REPLY(delete_x(harness_name(types[i]), 0));
    harness_disconnect(s_conn);
    return harness_finish(&b);
}
