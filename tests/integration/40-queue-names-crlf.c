/* 40-queue-names-crlf — CR and LF in queue and exchange names. RabbitMQ removes every CR and LF
 * from the names in queue.declare/delete/bind/unbind and exchange.declare/delete/bind/unbind
 * (so "lf_test\n", "\rlf_\r\ntest" and "lf_test" are one queue there), but not from the names in
 * basic.publish, basic.get, basic.consume and queue.purge, and never from routing keys.
 * RabbitMQ 3.10.8 answers (asserted below; P- is the test's name prefix, "\n" a LF byte):
 *  - queue.declare "P-lf_test\n" (active or passive) declares / finds "P-lf_test", and
 *    declare-ok names "P-lf_test"; "P-a\r\nb" is "P-ab"; a redeclare through another spelling
 *    is checked against the same queue: 406 "PRECONDITION_FAILED - inequivalent arg
 *    'x-message-ttl' for queue 'P-lf_test' in vhost '/': received the value '1000' of type
 *    'signedint' but current is none" and "... inequivalent arg 'durable' for queue 'P-lf_test'
 *    in vhost '/': received 'true' but current is 'false'" (50.10); passive "P-missing\n": 404
 *    "NOT_FOUND - no queue 'P-missing' in vhost '/'" (50.10); "\r\n" is the empty name: a
 *    server-named "amq.gen-..." queue; "amq.\nx" and "am\nq.x": 403 "ACCESS_REFUSED - queue
 *    name 'amq.x' contains reserved prefix 'amq.*'" (50.10).
 *  - exchange.declare "P-x\n" declares "P-x"; "P-x\r" as fanout: 406 "PRECONDITION_FAILED -
 *    inequivalent arg 'type' for exchange 'P-x' in vhost '/': received 'fanout' but current is
 *    'direct'" (40.10); passive "P-nox\n": 404 "NOT_FOUND - no exchange 'P-nox' in vhost '/'";
 *    "amq.\nfoo": 403 "ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix
 *    'amq.*'"; passive "amq.direct\n" is amq.direct; passive "\n": 403 "ACCESS_REFUSED -
 *    operation not permitted on the default exchange" (all 40.10).
 *  - not stripped: basic.publish to exchange "P-x\n" (P-x exists) or "\n": 404 "NOT_FOUND - no
 *    exchange 'P-x\n' in vhost '/'" (60.40), the LF kept in the text; basic.get, basic.consume
 *    and queue.purge of "P-lf_test\n": 404 "NOT_FOUND - no queue 'P-lf_test\n' in vhost '/'"
 *    (60.70, 60.20, 50.30). A mandatory publish through the default exchange with routing key
 *    "P-lf_test\n" is returned 312 NO_ROUTE (the key is not a queue name there).
 *  - the empty-name shortcut (the channel's last declared queue) is the stripped name: after
 *    queue.declare "P-sc\n", basic.get "" takes from "P-sc" and queue.bind "" binds "P-sc";
 *    the shortcut is applied before stripping: queue.bind "\n" is 404 "NOT_FOUND - no queue ''
 *    in vhost '/'" (50.20), basic.get "\n" is 404 "... no queue '\n' ..." (60.70).
 *  - queue.bind / queue.unbind strip the queue and the exchange name, not the routing key:
 *    bound with key "kk\n", a publish with "kk" is returned NO_ROUTE and one with "kk\n" arrives
 *    (routing key "kk\n"). queue.bind of "P-nosuch\n" / to "P-nox\n": 404 "NOT_FOUND - no queue
 *    'P-nosuch' ..." / "... no exchange 'P-nox' ..." (50.20); to "\n": 403 "ACCESS_REFUSED -
 *    operation not permitted on the default exchange" (50.20).
 *  - exchange.bind / exchange.unbind strip both names; with "P-nox\n" as destination or
 *    "P-nox\r" as source: 404 "NOT_FOUND - no exchange 'P-nox' in vhost '/'" (40.30).
 *  - queue.delete "P-ab\n" deletes "P-ab" (delete-ok counts its 2 messages); exchange.delete
 *    "P-x\n" deletes "P-x"; exchange.delete "amq.direct\n": 403 "ACCESS_REFUSED - deletion of
 *    system exchange 'amq.direct' in vhost '/' not allowed", of "\r": 403 "ACCESS_REFUSED -
 *    operation not permitted on the default exchange" (40.20). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static amqp_connection_state_t s_conn;
static char s_q[128]; /* "P-lf_test": the queue all the spellings name */
static char s_x[128]; /* "P-x": a direct exchange */

/* A copy of harness_name(suffix) that stays valid (8 rotating buffers). */
static const char *nm(const char *suffix)
{
    static char bufs[8][128];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s", harness_name("%s", suffix));
    return b;
}

/* "\n" -> "\\n" and "\r" -> "\\r", for messages. */
static const char *esc(const char *s)
{
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ % 4];
    size_t o = 0;
    for (; *s && o < sizeof bufs[0] - 3; s++) {
        if (*s == '\n' || *s == '\r') {
            b[o++] = '\\';
            b[o++] = *s == '\n' ? 'n' : 'r';
        } else {
            b[o++] = *s;
        }
    }
    b[o] = '\0';
    return b;
}

/* r must be channel.close code/text/class.method on ch; the channel is opened again. A failure
 * names the caller's line. */
#define expect_close(ch, r, code, text, class_id, method_id)                                      \
    expect_close_at(__LINE__, ch, r, code, text, class_id, method_id)

static void expect_close_at(int line, amqp_channel_t ch, amqp_rpc_reply_t r, uint16_t code,
                            const char *text, uint16_t class_id, uint16_t method_id)
{
    if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION || r.reply.id != AMQP_CHANNEL_CLOSE_METHOD) {
        char buf[512];
        harness_fail(__FILE__, line, "channel.close", "want %u \"%s\", got %s", code, esc(text),
                     harness_reply_str(r, buf, sizeof buf));
    }
    harness_expect_channel_close(s_conn, ch, r, code, text, class_id, method_id);
    harness_channel_open(s_conn, ch);
}

static const char *not_found(const char *kind, const char *name)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "NOT_FOUND - no %s '%s' in vhost '/'", kind, name);
    return buf;
}

/* queue.declare on ch; the reply, and the declare-ok in *ret_ok when normal. */
static amqp_rpc_reply_t qdeclare(amqp_channel_t ch, const char *name, bool passive, bool durable,
                                 bool exclusive, amqp_table_t args,
                                 amqp_queue_declare_ok_t **ret_ok)
{
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(
        s_conn, ch, amqp_cstring_bytes(name), passive, durable, exclusive, exclusive, args);
    if (ret_ok)
        *ret_ok = ok;
    return amqp_get_rpc_reply(s_conn);
}

/* A (passive or not) queue.declare of name that must succeed and name the queue want. */
static uint32_t expect_declared_as(const char *name, bool passive, const char *want)
{
    amqp_queue_declare_ok_t *ok;
    CHECK_REPLY(qdeclare(1, name, passive, false, false, amqp_empty_table, &ok));
    CHECK(ok != NULL);
    CHECKF(harness_bytes_is(ok->queue, want), "declare%s of '%s' answered '%.*s', want '%s'",
           passive ? " (passive)" : "", esc(name), (int)ok->queue.len,
           (const char *)ok->queue.bytes, want);
    return ok->message_count;
}

static amqp_rpc_reply_t xdeclare(amqp_channel_t ch, const char *name, const char *type,
                                 bool passive)
{
    amqp_exchange_declare(s_conn, ch, amqp_cstring_bytes(name), amqp_cstring_bytes(type), passive,
                          0, 0, 0, amqp_empty_table);
    return amqp_get_rpc_reply(s_conn);
}

static void publish(const char *x, const char *key, const char *body, bool mandatory)
{
    harness_publish_props(s_conn, 1, x, key, mandatory, NULL, body);
}

/* A mandatory publish on channel 1 that must come back: basic.return 312 NO_ROUTE naming
 * exchange x and key, with body. */
static void expect_returned(const char *x, const char *key, const char *body)
{
    publish(x, key, body, true);
    harness_sync(s_conn, 1);
    harness_expect_return(s_conn, 1, x, key, body);
}

/* q comes to hold one message: body, published to exchange x with key. Taken. */
static void expect_one(const char *q, const char *body, const char *x, const char *key)
{
    harness_expect_count(s_conn, 1, q, 1, body);
    harness_expect_get(s_conn, 1, q, body, x, key);
}

/* ---- queue.declare --------------------------------------------------------------------------- */

static void check_queue_declare(void)
{
    const char *q_lf = nm("lf_test\n");
    CHECK_EQ(expect_declared_as(q_lf, false, s_q), 0);
    CHECK_EQ(expect_declared_as(s_q, true, s_q), 0);
    CHECK_EQ(expect_declared_as(q_lf, true, s_q), 0);
    CHECK_EQ(expect_declared_as(nm("\rlf_\r\ntest\n"), true, s_q), 0);
    CHECK_EQ(expect_declared_as(s_q, false, s_q), 0);
    /* one queue: a message published to "P-lf_test" is counted through "P-lf_test\n" */
    publish("", s_q, "1", false);
    harness_expect_count(s_conn, 1, s_q, 1, "published to P-lf_test");
    CHECK_EQ(harness_queue_count(s_conn, 1, q_lf), 1);
    CHECK_EQ(harness_queue_count(s_conn, 1, nm("lf_test\r")), 1);

    /* equivalence is checked against that queue, named without the LF */
    char text[512];
    harness_args_t a = {.n = 0};
    harness_arg_int(&a, "x-message-ttl", 'I', 1000);
    snprintf(text, sizeof text,
             "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '%s' in vhost '/': "
             "received the value '1000' of type 'signedint' but current is none",
             s_q);
    expect_close(2, qdeclare(2, nm("lf_test\r\n"), false, false, false, harness_args_table(&a),
                             NULL),
                 406, text, 50, 10);
    snprintf(text, sizeof text,
             "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '%s' in vhost '/': "
             "received 'true' but current is 'false'",
             s_q);
    expect_close(2, qdeclare(2, q_lf, false, true, false, amqp_empty_table, NULL), 406, text, 50,
                 10);

    /* CR LF in the middle */
    const char *ab = nm("ab");
    CHECK_EQ(expect_declared_as(nm("a\r\nb"), false, ab), 0);
    CHECK_EQ(expect_declared_as(ab, true, ab), 0);

    /* a missing queue is named without the LF */
    expect_close(2, qdeclare(2, nm("missing\n"), true, false, false, amqp_empty_table, NULL), 404,
                 not_found("queue", nm("missing")), 50, 10);

    /* "\r\n" is the empty name: the server names the queue */
    amqp_queue_declare_ok_t *ok;
    CHECK_REPLY(qdeclare(2, "\r\n", false, false, true, amqp_empty_table, &ok));
    CHECKF(ok->queue.len > 8 && memcmp(ok->queue.bytes, "amq.gen-", 8) == 0 &&
               !memchr(ok->queue.bytes, '\n', ok->queue.len) &&
               !memchr(ok->queue.bytes, '\r', ok->queue.len),
           "queue.declare \"\\r\\n\" answered '%.*s', want a server-named amq.gen-...",
           (int)ok->queue.len, (const char *)ok->queue.bytes);
    harness_log("queue.declare \"\\r\\n\": %.*s", (int)ok->queue.len,
                (const char *)ok->queue.bytes);
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));
    harness_channel_open(s_conn, 2);

    /* the reserved prefix is checked on the stripped name */
    const char *reserved =
        "ACCESS_REFUSED - queue name 'amq.x' contains reserved prefix 'amq.*'";
    expect_close(2, qdeclare(2, "amq.\nx", false, false, false, amqp_empty_table, NULL), 403,
                 reserved, 50, 10);
    expect_close(2, qdeclare(2, "am\nq.x", false, false, false, amqp_empty_table, NULL), 403,
                 reserved, 50, 10);
    harness_log("queue.declare strips CR and LF: ok");
}

/* ---- exchange.declare ------------------------------------------------------------------------ */

static void check_exchange_declare(void)
{
    CHECK_REPLY(xdeclare(1, nm("x\n"), "direct", false));
    CHECK_REPLY(xdeclare(1, s_x, "direct", true));
    CHECK_REPLY(xdeclare(1, nm("\r\nx"), "direct", false));
    char text[512];
    snprintf(text, sizeof text,
             "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '%s' in vhost '/': "
             "received 'fanout' but current is 'direct'",
             s_x);
    expect_close(2, xdeclare(2, nm("x\r"), "fanout", false), 406, text, 40, 10);
    expect_close(2, xdeclare(2, nm("nox\n"), "direct", true), 404,
                 not_found("exchange", nm("nox")), 40, 10);
    expect_close(2, xdeclare(2, "amq.\nfoo", "direct", false), 403,
                 "ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix 'amq.*'", 40,
                 10);
    CHECK_REPLY(xdeclare(2, "amq.direct\n", "direct", true));
    expect_close(2, xdeclare(2, "\n", "direct", true), 403,
                 "ACCESS_REFUSED - operation not permitted on the default exchange", 40, 10);
    harness_log("exchange.declare strips CR and LF: ok");
}

/* ---- names that are not stripped ------------------------------------------------------------- */

static void check_not_stripped(void)
{
    const char *q_lf = nm("lf_test\n");
    /* the routing key through the default exchange: no queue "P-lf_test\n" */
    expect_returned("", q_lf, "lf-key");
    CHECK_EQ(harness_queue_count(s_conn, 1, s_q), 1);

    amqp_rpc_reply_t r = amqp_basic_get(s_conn, 2, amqp_cstring_bytes(q_lf), 1);
    expect_close(2, r, 404, not_found("queue", q_lf), 60, 70);
    amqp_basic_consume(s_conn, 2, amqp_cstring_bytes(q_lf), amqp_empty_bytes, 0, 1, 0,
                       amqp_empty_table);
    expect_close(2, amqp_get_rpc_reply(s_conn), 404, not_found("queue", q_lf), 60, 20);
    const char *q_crlf = nm("lf_test\r\n");
    amqp_queue_purge(s_conn, 2, amqp_cstring_bytes(q_crlf));
    expect_close(2, amqp_get_rpc_reply(s_conn), 404, not_found("queue", q_crlf), 50, 30);
    CHECK_EQ(harness_queue_count(s_conn, 1, s_q), 1);

    /* the exchange of basic.publish */
    const char *x_lf = nm("x\n");
    harness_publish(s_conn, 2, x_lf, "k", "to x\\n");
    expect_close(2, harness_round_trip(s_conn, 2), 404, not_found("exchange", x_lf), 60, 40);
    harness_publish(s_conn, 2, "\n", s_q, "to \\n");
    expect_close(2, harness_round_trip(s_conn, 2), 404, not_found("exchange", "\n"), 60, 40);
    CHECK_EQ(harness_queue_count(s_conn, 1, s_q), 1);
    harness_expect_get(s_conn, 1, s_q, "1", "", s_q);
    harness_log("basic.publish/get/consume and queue.purge keep CR and LF: ok");

    /* the channel's last declared queue (channel 3): the stripped name */
    const char *sc = nm("sc");
    harness_channel_open(s_conn, 3);
    amqp_queue_declare_ok_t *ok;
    CHECK_REPLY(qdeclare(3, nm("sc\n"), false, false, false, amqp_empty_table, &ok));
    CHECK(harness_bytes_is(ok->queue, sc));
    publish("", sc, "s1", false);
    harness_expect_count(s_conn, 1, sc, 1, "published to P-sc");
    harness_expect_get(s_conn, 3, "", "s1", "", sc);
    r = amqp_basic_get(s_conn, 3, amqp_cstring_bytes("\n"), 1);
    expect_close(3, r, 404, not_found("queue", "\n"), 60, 70);
    CHECK_REPLY(qdeclare(3, nm("sc\r"), false, false, false, amqp_empty_table, &ok));
    CHECK(harness_bytes_is(ok->queue, sc));
    amqp_queue_bind(s_conn, 3, amqp_cstring_bytes("\n"), amqp_cstring_bytes("amq.direct"),
                    amqp_cstring_bytes(sc), amqp_empty_table);
    expect_close(3, amqp_get_rpc_reply(s_conn), 404, not_found("queue", ""), 50, 20);
    CHECK_REPLY(qdeclare(3, nm("sc\r"), false, false, false, amqp_empty_table, &ok));
    amqp_queue_bind(s_conn, 3, amqp_empty_bytes, amqp_cstring_bytes("amq.direct"),
                    amqp_cstring_bytes(sc), amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));
    publish("amq.direct", sc, "s2", false);
    expect_one(sc, "s2", "amq.direct", sc);
    CHECK_REPLY(amqp_channel_close(s_conn, 3, AMQP_REPLY_SUCCESS));
    harness_queue_delete(s_conn, 1, sc);
    harness_log("the last-declared-queue shortcut uses the stripped name: ok");
}

/* ---- bindings -------------------------------------------------------------------------------- */

static void check_bindings(void)
{
    /* queue.bind: both names stripped */
    harness_queue_bind(s_conn, 1, nm("lf_test\n"), nm("x\r\n"), "k", amqp_empty_table);
    publish(s_x, "k", "b1", false);
    expect_one(s_q, "b1", s_x, "k");

    /* not the routing key */
    harness_queue_bind(s_conn, 1, s_q, s_x, "kk\n", amqp_empty_table);
    expect_returned(s_x, "kk", "b2");
    publish(s_x, "kk\n", "b3", false);
    expect_one(s_q, "b3", s_x, "kk\n");

    /* queue.unbind: both names stripped */
    harness_queue_unbind(s_conn, 1, nm("\nlf_test"), nm("\rx"), "k", amqp_empty_table);
    expect_returned(s_x, "k", "b4");
    CHECK_EQ(harness_queue_count(s_conn, 1, s_q), 0);

    /* errors name the stripped entity */
    amqp_queue_bind(s_conn, 2, amqp_cstring_bytes(nm("nosuch\n")), amqp_cstring_bytes(s_x),
                    amqp_cstring_bytes("k"), amqp_empty_table);
    expect_close(2, amqp_get_rpc_reply(s_conn), 404, not_found("queue", nm("nosuch")), 50, 20);
    amqp_queue_bind(s_conn, 2, amqp_cstring_bytes(s_q), amqp_cstring_bytes(nm("nox\n")),
                    amqp_cstring_bytes("k"), amqp_empty_table);
    expect_close(2, amqp_get_rpc_reply(s_conn), 404, not_found("exchange", nm("nox")), 50, 20);
    amqp_queue_bind(s_conn, 2, amqp_cstring_bytes(s_q), amqp_cstring_bytes("\n"),
                    amqp_cstring_bytes("k"), amqp_empty_table);
    expect_close(2, amqp_get_rpc_reply(s_conn), 403,
                 "ACCESS_REFUSED - operation not permitted on the default exchange", 50, 20);
    harness_log("queue.bind/unbind strip names, not routing keys: ok");

    /* exchange.bind / unbind */
    const char *y = nm("y");
    harness_exchange_declare(s_conn, 1, nm("y\r"), "fanout", 0, amqp_empty_table);
    CHECK_REPLY(xdeclare(1, y, "fanout", true));
    harness_queue_bind(s_conn, 1, s_q, s_x, "k", amqp_empty_table);
    harness_exchange_bind(s_conn, 1, nm("x\n"), nm("\r\ny"), "");
    publish(y, "k", "e1", false);
    expect_one(s_q, "e1", y, "k");
    harness_exchange_unbind(s_conn, 1, nm("x\r"), nm("y\n"), "");
    expect_returned(y, "k", "e2");
    CHECK_EQ(harness_queue_count(s_conn, 1, s_q), 0);

    amqp_exchange_bind(s_conn, 2, amqp_cstring_bytes(nm("nox\n")), amqp_cstring_bytes(y),
                       amqp_cstring_bytes(""), amqp_empty_table);
    expect_close(2, amqp_get_rpc_reply(s_conn), 404, not_found("exchange", nm("nox")), 40, 30);
    amqp_exchange_bind(s_conn, 2, amqp_cstring_bytes(s_x), amqp_cstring_bytes(nm("nox\r")),
                       amqp_cstring_bytes(""), amqp_empty_table);
    expect_close(2, amqp_get_rpc_reply(s_conn), 404, not_found("exchange", nm("nox")), 40, 30);
    harness_log("exchange.bind/unbind strip names: ok");
}

/* ---- deletes --------------------------------------------------------------------------------- */

static void check_deletes(void)
{
    const char *ab = nm("ab");
    publish("", ab, "a1", false);
    publish("", ab, "a2", false);
    harness_expect_count(s_conn, 1, ab, 2, "published to P-ab");
    amqp_queue_delete_ok_t *dok =
        amqp_queue_delete(s_conn, 1, amqp_cstring_bytes(nm("ab\n")), 0, 0);
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));
    CHECK_EQ(dok->message_count, 2);
    expect_close(2, qdeclare(2, ab, true, false, false, amqp_empty_table, NULL), 404,
                 not_found("queue", ab), 50, 10);

    amqp_queue_delete(s_conn, 1, amqp_cstring_bytes(nm("lf_test\r\n")), 0, 0);
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));
    expect_close(2, qdeclare(2, s_q, true, false, false, amqp_empty_table, NULL), 404,
                 not_found("queue", s_q), 50, 10);

    amqp_exchange_delete(s_conn, 2, amqp_cstring_bytes("amq.direct\n"), 0);
    expect_close(2, amqp_get_rpc_reply(s_conn), 403,
                 "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not "
                 "allowed",
                 40, 20);
    amqp_exchange_delete(s_conn, 2, amqp_cstring_bytes("\r"), 0);
    expect_close(2, amqp_get_rpc_reply(s_conn), 403,
                 "ACCESS_REFUSED - operation not permitted on the default exchange", 40, 20);

    harness_exchange_delete(s_conn, 1, nm("x\n"));
    expect_close(2, xdeclare(2, s_x, "direct", true), 404, not_found("exchange", s_x), 40, 10);
    harness_exchange_delete(s_conn, 1, nm("\ry"));
    expect_close(2, xdeclare(2, nm("y"), "fanout", true), 404, not_found("exchange", nm("y")), 40,
                 10);
    harness_log("queue.delete and exchange.delete strip CR and LF: ok");
}

int main(void)
{
    harness_broker_t b;
    s_conn = harness_begin(&b, 55, "it-crlf");
    snprintf(s_q, sizeof s_q, "%s", harness_name("lf_test"));
    snprintf(s_x, sizeof s_x, "%s", harness_name("x"));
    harness_channel_open(s_conn, 2);

    check_queue_declare();
    check_exchange_declare();
    check_not_stripped();
    check_bindings();
    check_deletes();

    harness_disconnect(s_conn);
    return harness_finish(&b);
}
