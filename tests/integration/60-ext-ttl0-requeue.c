/* 60-ext-ttl0-requeue — a message with TTL 0 (the queue's x-message-ttl 0, or its own
 * expiration "0") that a consumer took and that then goes back to the queue: by basic.nack or
 * basic.reject with requeue=true, by basic.recover(requeue=true), or because its channel closed
 * while it was unacked. Its TTL ran out while it was out, so the requeue expires it instead of
 * delivering it again. 60-ext-ttl covers TTL 0 at publish time and requeues after a longer TTL.
 * RabbitMQ 3.10.8 answers (asserted below; Q is the queue, DLQ the dead-letter queue, reached
 * through the default exchange with x-dead-letter-routing-key DLQ):
 *  - every one of those requeues expires the message at once: with a dead-letter exchange it is
 *    dead-lettered with reason "expired", else dropped. It is never delivered again, neither to
 *    the consumer that gave it back (still consuming, no prefetch limit) nor to another
 *    consumer waiting on the queue; the queue is left empty.
 *  - the dead letter's headers: x-death = [{count 1, reason "expired", queue Q, time, exchange
 *    "", routing-keys [Q]}] plus x-first-death-exchange "", -queue Q, -reason "expired"; with a
 *    per-message expiration "0" the x-death entry also has original-expiration "0" (last) and
 *    the dead letter has no expiration property. It arrives in DLQ with routing key DLQ,
 *    exchange "" and redelivered=false.
 *  - basic.nack multiple=true of several TTL-0 messages, or closing the channel with several
 *    unacked: dead-lettered in delivery order (1 2 3).
 *  - per-message TTLs mixed on a queue without x-message-ttl (a:"0" b:none c:"0" d:"60000"),
 *    all nacked with requeue: a and c are dead-lettered (in that order), b and d are delivered
 *    again, redelivered, in that order. */
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


/* Publish body to q through the default exchange on channel 1, with expiration when given. */
static void publish(const char *q, const char *body, const char *expiration)
{
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof p);
    if (expiration) {
        p._flags = AMQP_BASIC_EXPIRATION_FLAG;
        p.expiration = amqp_cstring_bytes(expiration);
    }
    harness_publish_props(s_conn, 1, "", q, false, &p, body);
}

static void consume(amqp_channel_t ch, const char *q, const char *tag)
{
    harness_consume(s_conn, ch, q, tag, 0, amqp_empty_table);
}

/* The next delivery (<= 5 s) is body for consumer tag with flag redel; returns its tag. */
static uint64_t expect_delivery(const char *tag, const char *body, bool redel)
{
    return harness_expect_message(s_conn, 0, tag, body, redel);
}

/* The headers of a first death by expiry from q (published to q through the default exchange);
 * orig_exp: the message's own expiration, or NULL. */
static const char *expired_from(const char *q, const char *orig_exp)
{
    static char buf[1024];
    char oe[128] = "";
    if (orig_exp)
        snprintf(oe, sizeof oe, ",original-expiration:S\"%s\"", orig_exp);
    snprintf(buf, sizeof buf,
             "{x-death:A[F{count:l1,reason:S\"expired\",queue:S\"%s\",time:T*,exchange:S\"\","
             "routing-keys:A[S\"%s\"]%s}],x-first-death-exchange:S\"\","
             "x-first-death-queue:S\"%s\",x-first-death-reason:S\"expired\"}",
             q, q, oe, q);
    return buf;
}

/* Take the next dead letter from dlq (waiting for it, <= 5 s): body, headers exactly (time
 * masked, and near the clock), no expiration, routed with key dlq, not redelivered. */
static void expect_dead_letter(const char *dlq, const char *body, const char *q,
                               const char *orig_exp)
{
    harness_got_t g;
    CHECKF(harness_get_wait(s_conn, 1, dlq, true, 5000, &g), "no dead letter '%s' in %s", body,
           dlq);
    CHECKF(strcmp(g.body, body) == 0, "dead letter in %s is '%s', want '%s'", dlq, g.body, body);
    char what[128];
    snprintf(what, sizeof what, "dead letter '%s'", body);
    harness_expect_death_headers(&g, expired_from(q, orig_exp), what);
    CHECKF(harness_table_times_near(&g.msg.properties.headers, 120, NULL),
           "x-death time is not the wall clock");
    CHECKF(!(g.msg.properties._flags & AMQP_BASIC_EXPIRATION_FLAG),
           "dead letter '%s' still has an expiration", body);
    CHECK_STREQ(g.routing_key, dlq);
    CHECK_STREQ(g.exchange, "");
    CHECK(!g.redelivered);
    harness_got_free(&g);
}

static void expect_empty(const char *q, const char *what)
{
    harness_got_t g;
    if (harness_get(s_conn, 1, q, true, &g)) {
        char body[128];
        snprintf(body, sizeof body, "%.100s", g.body);
        harness_got_free(&g);
        CHECKF(0, "%s: %s held '%s'", what, q, body);
    }
}

/* ---- one message, every way of giving it back ------------------------------------------------ */

static void check_single(void)
{
    const char *dlq = harness_name("dlq"), *q0 = harness_name("ttl0"),
               *q0n = harness_name("ttl0-nodlx"), *qp = harness_name("plain"),
               *qpn = harness_name("plain-nodlx");
    harness_ttl_queue(s_conn, dlq, -1, NULL);
    harness_ttl_queue(s_conn, q0, 0, dlq);
    harness_ttl_queue(s_conn, q0n, 0, NULL);
    harness_ttl_queue(s_conn, qp, -1, dlq);
    harness_ttl_queue(s_conn, qpn, -1, NULL);

    static const struct {
        const char *what;
        int queue;       /* 0: q0, 1: q0n, 2: qp, 3: qpn */
        bool exp0;       /* published with expiration "0" */
        char how;        /* 'n' nack, 'r' reject, 'v' recover, 'c' channel close */
    } cases[] = {
        {"x-message-ttl 0 + DLX, nack requeue", 0, false, 'n'},
        {"x-message-ttl 0, no DLX, nack requeue", 1, false, 'n'},
        {"expiration 0 + DLX, nack requeue", 2, true, 'n'},
        {"expiration 0, no DLX, nack requeue", 3, true, 'n'},
        {"x-message-ttl 0 + DLX, reject requeue", 0, false, 'r'},
        {"expiration 0 + DLX, reject requeue", 2, true, 'r'},
        {"expiration 0, no DLX, reject requeue", 3, true, 'r'},
        {"x-message-ttl 0 + DLX, basic.recover", 0, false, 'v'},
        {"expiration 0 + DLX, basic.recover", 2, true, 'v'},
        {"x-message-ttl 0, no DLX, basic.recover", 1, false, 'v'},
        {"x-message-ttl 0 + DLX, channel closed", 0, false, 'c'},
        {"expiration 0 + DLX, channel closed", 2, true, 'c'},
        {"x-message-ttl 0, no DLX, channel closed", 1, false, 'c'},
        {"expiration 0, no DLX, channel closed", 3, true, 'c'},
    };
    const char *queues[] = {q0, q0n, qp, qpn};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *q = queues[cases[i].queue];
        bool dlx = cases[i].queue == 0 || cases[i].queue == 2;
        harness_channel_open(s_conn, 2);
        consume(2, q, "c");
        publish(q, "m", cases[i].exp0 ? "0" : NULL);
        uint64_t tag = expect_delivery("c", "m", false);
        switch (cases[i].how) {
        case 'n':
            CHECK_AMQP(amqp_basic_nack(s_conn, 2, tag, 0, 1));
            break;
        case 'r':
            CHECK_AMQP(amqp_basic_reject(s_conn, 2, tag, 1));
            break;
        case 'v':
            amqp_basic_recover(s_conn, 2, 1);
            CHECK_REPLY(amqp_get_rpc_reply(s_conn));
            break;
        case 'c':
            /* another consumer, on channel 3, is ready to take it */
            harness_channel_open(s_conn, 3);
            consume(3, q, "other");
            CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));
            break;
        }
        if (dlx)
            expect_dead_letter(dlq, "m", q, cases[i].exp0 ? "0" : NULL);
        harness_expect_quiet(s_conn, 300, "a redelivery of the expired TTL-0 message");
        CHECK_EQ(harness_queue_count(s_conn, 1, q), 0);
        CHECK_REPLY(amqp_channel_close(s_conn, cases[i].how == 'c' ? 3 : 2, AMQP_REPLY_SUCCESS));
        /* nothing was left unacked on the closed channel either (close-ok says it is done) */
        CHECK_EQ(harness_queue_count(s_conn, 1, q), 0);
        expect_empty(dlq, cases[i].what);
        harness_log("%s: %s: ok", cases[i].what, dlx ? "dead-lettered (expired)" : "dropped");
    }
    harness_queue_delete(s_conn, 1, q0);
    harness_queue_delete(s_conn, 1, q0n);
    harness_queue_delete(s_conn, 1, qp);
    harness_queue_delete(s_conn, 1, qpn);
    harness_queue_delete(s_conn, 1, dlq);
}

/* ---- several at once ------------------------------------------------------------------------- */

static void check_several(void)
{
    const char *dlq = harness_name("m-dlq"), *q0 = harness_name("m-ttl0"),
               *qp = harness_name("m-plain");
    harness_ttl_queue(s_conn, dlq, -1, NULL);
    harness_ttl_queue(s_conn, q0, 0, dlq);
    harness_ttl_queue(s_conn, qp, -1, dlq);

    /* nack multiple: dead-lettered in delivery order */
    harness_channel_open(s_conn, 2);
    consume(2, q0, "c");
    harness_publish_range(s_conn, q0, 1, 4);
    uint64_t tags[4];
    for (int i = 0; i < 4; i++) {
        char body[4];
        snprintf(body, sizeof body, "%d", i + 1);
        tags[i] = expect_delivery("c", body, false);
    }
    CHECK_AMQP(amqp_basic_nack(s_conn, 2, tags[2], 1, 1));
    expect_dead_letter(dlq, "1", q0, NULL);
    expect_dead_letter(dlq, "2", q0, NULL);
    expect_dead_letter(dlq, "3", q0, NULL);
    harness_expect_quiet(s_conn, 300, "a redelivery after nack multiple of TTL-0 messages");
    expect_empty(dlq, "nack multiple up to 3");
    CHECK_AMQP(amqp_basic_nack(s_conn, 2, tags[3], 0, 1));
    expect_dead_letter(dlq, "4", q0, NULL);
    harness_expect_quiet(s_conn, 300, "a redelivery after the nack of 4");
    CHECK_EQ(harness_queue_count(s_conn, 1, q0), 0);
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));
    harness_log("nack multiple of TTL-0 messages: dead-lettered in order: ok");

    /* channel closed with three unacked */
    harness_channel_open(s_conn, 2);
    consume(2, q0, "c");
    harness_publish_range(s_conn, q0, 1, 3);
    for (int i = 0; i < 3; i++) {
        char body[4];
        snprintf(body, sizeof body, "%d", i + 1);
        expect_delivery("c", body, false);
    }
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));
    expect_dead_letter(dlq, "1", q0, NULL);
    expect_dead_letter(dlq, "2", q0, NULL);
    expect_dead_letter(dlq, "3", q0, NULL);
    CHECK_EQ(harness_queue_count(s_conn, 1, q0), 0);
    expect_empty(dlq, "channel closed with three TTL-0 messages unacked");
    harness_log("channel closed with several TTL-0 messages unacked: in order: ok");

    /* per-message TTLs mixed: the "0" ones expire, the others come back */
    harness_channel_open(s_conn, 2);
    consume(2, qp, "c");
    publish(qp, "a", "0");
    publish(qp, "b", NULL);
    publish(qp, "c", "0");
    publish(qp, "d", "60000");
    expect_delivery("c", "a", false);
    expect_delivery("c", "b", false);
    expect_delivery("c", "c", false);
    uint64_t last = expect_delivery("c", "d", false);
    CHECK_AMQP(amqp_basic_nack(s_conn, 2, last, 1, 1));
    expect_delivery("c", "b", true);
    expect_delivery("c", "d", true);
    harness_expect_quiet(s_conn, 300, "a redelivery of a or c (expiration 0)");
    expect_dead_letter(dlq, "a", qp, "0");
    expect_dead_letter(dlq, "c", qp, "0");
    expect_empty(dlq, "mixed expirations");
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));
    harness_expect_count(s_conn, 1, qp, 2, "b and d back after the channel closed");
    harness_expect_drain(s_conn, 1, qp, "b d", "b and d back after the channel closed");
    harness_log("mixed per-message TTLs, nack multiple: ok");

    harness_queue_delete(s_conn, 1, q0);
    harness_queue_delete(s_conn, 1, qp);
    harness_queue_delete(s_conn, 1, dlq);
}

int main(void)
{
    harness_broker_t b;
    s_conn = harness_begin(&b, 55, "it-ttl0");

    check_single();
    check_several();

    harness_disconnect(s_conn);
    return harness_finish(&b);
}
