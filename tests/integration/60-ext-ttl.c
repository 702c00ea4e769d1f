/* 60-ext-ttl — message TTL: per queue (x-message-ttl) and per message (the expiration property,
 * a string of milliseconds), the lower of the two, TTL 0, expiry with and without consumers, and
 * where expired messages go (the queue's dead-letter exchange, reason "expired").
 * RabbitMQ 3.10.8 answers (asserted below):
 *  - an invalid expiration is channel.close 406 on basic.publish (60.40), whether or not the
 *    message routes anywhere (a missing exchange is the 404 first):
 *      "abc", ""      -> "PRECONDITION_FAILED - invalid expiration 'abc': no_integer"
 *      "-1"           -> "... invalid expiration '-1': {value_negative,-1}"
 *      "1.5"          -> "... invalid expiration '1.5': {leftover_string,\".5\"}"
 *      "1 "           -> "... invalid expiration '1 ': {leftover_string,\" \"}"
 *      "0x10"         -> "... invalid expiration '0x10': {leftover_string,\"x10\"}"
 *      "315360000001" -> "... invalid expiration '315360000001': {value_too_large,315360000001}"
 *    (Erlang's string:to_integer: an optional sign, then digits; the maximum is 315360000000,
 *    ten years). "+5000", "007", "-0", "4294967296" and "315360000000" are accepted, and the
 *    property is delivered exactly as published ("+5000", not "5000").
 *  - an expired message is never delivered (basic.get after the TTL passed answers get-empty;
 *    a consumer that comes later gets nothing) and is dead-lettered with reason "expired"; no
 *    consumer is needed for that: an idle queue with a TTL empties by itself.
 *  - both TTLs set: the lower one applies (queue 200 + message 60000, queue 60000 + message
 *    200: both expire). x-death's original-expiration is the message's own expiration property
 *    (absent when only the queue TTL was set); the dead-lettered copy has no expiration.
 *  - TTL 0 (expiration "0" or "-0", or x-message-ttl 0): delivered if a consumer can take it at
 *    once, else expired (dead-lettered) right away; the delivered copy keeps expiration "0".
 *  - a per-message TTL expires a message only when it reaches the head of the queue: a short
 *    one behind a long one is counted until then (RabbitMQ's message_count says 3 below), but
 *    it is never delivered: basic.get skips it. Warren may drop it earlier; the count is not
 *    asserted.
 *  - an unacked message does not expire; when it is requeued after its TTL it is expired
 *    (dead-lettered) at once.
 *  - one message routed to two queues expires by each queue's own TTL.
 * Not asserted: how soon expiry happens (the tests only wait long enough for it). */
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


/* Publish body to q through the default exchange on ch, with expiration when not NULL. */
static void publish_ch(amqp_channel_t ch, const char *x, const char *q, const char *body,
                       const char *expiration)
{
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof p);
    if (expiration) {
        p._flags = AMQP_BASIC_EXPIRATION_FLAG;
        p.expiration = amqp_cstring_bytes(expiration);
    }
    harness_publish_props(s_conn, ch, x, q, false, &p, body);
}

static void publish(const char *q, const char *body, const char *expiration)
{
    publish_ch(1, "", q, body, expiration);
}

static bool has_expiration(const harness_got_t *g)
{
    return (g->msg.properties._flags & AMQP_BASIC_EXPIRATION_FLAG) != 0;
}

static const char *expiration_of(const harness_got_t *g)
{
    static char buf[64];
    if (!has_expiration(g))
        return "(none)";
    snprintf(buf, sizeof buf, "%.*s", (int)g->msg.properties.expiration.len,
             (const char *)g->msg.properties.expiration.bytes);
    return buf;
}

/* The headers RabbitMQ writes on a message dead-lettered once, from q where it was published
 * through the default exchange with routing key q. orig_exp: its expiration, or NULL. */
static const char *first_death(const char *q, const char *reason, const char *orig_exp)
{
    static char buf[1024];
    char oe[128] = "";
    if (orig_exp)
        snprintf(oe, sizeof oe, ",original-expiration:S\"%s\"", orig_exp);
    snprintf(buf, sizeof buf,
             "{x-death:A[F{count:l1,reason:S\"%s\",queue:S\"%s\",time:T*,exchange:S\"\","
             "routing-keys:A[S\"%s\"]%s}],x-first-death-exchange:S\"\","
             "x-first-death-queue:S\"%s\",x-first-death-reason:S\"%s\"}",
             reason, q, q, oe, q, reason);
    return buf;
}

/* Take the next dead letter from dlq (waiting for it, <= 5 s) and check its body, headers
 * (exactly, time masked and checked against the clock) and that it has no expiration. */
static void expect_dead_letter(const char *dlq, const char *body, const char *q,
                               const char *reason, const char *orig_exp)
{
    harness_got_t g;
    CHECKF(harness_get_wait(s_conn, 1, dlq, true, 5000, &g), "no dead letter '%s' in %s", body,
           dlq);
    CHECKF(strcmp(g.body, body) == 0, "dead letter in %s is '%s', want '%s'", dlq, g.body, body);
    const char *h = harness_got_death_headers(&g);
    const char *want = first_death(q, reason, orig_exp);
    CHECKF(strcmp(h, want) == 0, "dead letter '%s' headers\n  got  %s\n  want %s", body, h, want);
    CHECKF(harness_table_times_near(&g.msg.properties.headers, 120, NULL),
           "x-death time is not the wall clock");
    CHECKF(!has_expiration(&g), "dead letter '%s' still has expiration '%s'", body,
           expiration_of(&g));
    harness_got_free(&g);
}

typedef struct dead {
    const char *body, *queue, *orig_exp;
} dead_t;

/* n dead letters (reason "expired") from different queues, which may come in any order. */
static void expect_dead_letters_any(const char *dlq, const dead_t *want, int n)
{
    bool seen[8] = {false};
    for (int i = 0; i < n; i++) {
        harness_got_t g;
        CHECKF(harness_get_wait(s_conn, 1, dlq, true, 5000, &g), "only %d of %d dead letters", i,
               n);
        int k = 0;
        while (k < n && (seen[k] || strcmp(want[k].body, g.body) != 0))
            k++;
        CHECKF(k < n, "unexpected dead letter '%s'", g.body);
        seen[k] = true;
        const char *h = harness_got_death_headers(&g);
        const char *w = first_death(want[k].queue, "expired", want[k].orig_exp);
        CHECKF(strcmp(h, w) == 0, "dead letter '%s' headers\n  got  %s\n  want %s", g.body, h, w);
        CHECK(!has_expiration(&g));
        harness_got_free(&g);
    }
}

static void expect_empty(const char *q, const char *what)
{
    harness_got_t g;
    if (harness_get(s_conn, 1, q, true, &g)) {
        char body[256];
        snprintf(body, sizeof body, "%.200s", g.body);
        harness_got_free(&g);
        CHECKF(0, "%s: %s delivered '%s'", what, q, body);
    }
}

/* ---- invalid expiration ------------------------------------------------------------------- */

static void expect_bad_expiration(const char *x, const char *key, const char *exp,
                                  const char *detail)
{
    harness_channel_open(s_conn, 2);
    publish_ch(2, x, key, "bad", exp);
    amqp_exchange_declare(s_conn, 2, amqp_cstring_bytes("amq.direct"),
                          amqp_cstring_bytes("direct"), 1, 0, 0, 0, amqp_empty_table);
    char text[256];
    snprintf(text, sizeof text, "PRECONDITION_FAILED - invalid expiration '%s': %s", exp, detail);
    harness_expect_channel_close(s_conn, 2, amqp_get_rpc_reply(s_conn), 406, text, 60, 40);
}

static void check_invalid_expiration(void)
{
    const char *q = harness_name("inv");
    harness_ttl_queue(s_conn, q, -1, NULL);
    expect_bad_expiration("", q, "abc", "no_integer");
    expect_bad_expiration("", q, "", "no_integer");
    expect_bad_expiration("", q, "-1", "{value_negative,-1}");
    expect_bad_expiration("", q, "1.5", "{leftover_string,\".5\"}");
    expect_bad_expiration("", q, "1 ", "{leftover_string,\" \"}");
    expect_bad_expiration("", q, "0x10", "{leftover_string,\"x10\"}");
    expect_bad_expiration("", q, "315360000001", "{value_too_large,315360000001}");
    /* routed nowhere: still checked */
    expect_bad_expiration("", harness_name("no-such-queue"), "abc", "no_integer");
    expect_bad_expiration("amq.fanout", "", "abc", "no_integer");
    CHECK_EQ(harness_queue_count(s_conn, 1, q), 0);

    /* accepted */
    const char *ok[] = {"+5000", "007", "-0", "4294967296", "315360000000"};
    harness_channel_open(s_conn, 2);
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        publish_ch(2, "", q, ok[i], ok[i]);
    harness_sync(s_conn, 2);
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));
    usleep(100000);
    /* "007" (7 ms) and "-0" (0) expire; the other three are delivered with their expiration
     * exactly as published */
    const char *left[] = {"+5000", "4294967296", "315360000000"};
    for (size_t i = 0; i < 3; i++) {
        harness_got_t g;
        CHECKF(harness_get(s_conn, 1, q, true, &g), "'%s' was not kept", left[i]);
        CHECKF(strcmp(g.body, left[i]) == 0, "got '%s', want '%s'", g.body, left[i]);
        CHECKF(has_expiration(&g) && strcmp(expiration_of(&g), left[i]) == 0,
               "'%s' delivered with expiration '%s'", left[i], expiration_of(&g));
        harness_got_free(&g);
    }
    expect_empty(q, "accepted expirations");
    harness_queue_delete(s_conn, 1, q);
    harness_log("invalid expiration 406s, accepted forms: ok");
}

/* ---- expiry without consumers --------------------------------------------------------------- */

static void check_idle_queue_expires(void)
{
    const char *q = harness_name("idle"), *dlq = harness_name("idle-dlq"),
               *plain = harness_name("idle-plain");
    harness_ttl_queue(s_conn, dlq, -1, NULL);
    harness_ttl_queue(s_conn, q, 300, dlq);
    harness_ttl_queue(s_conn, plain, 300, NULL);
    char body[8];
    for (int i = 1; i <= 5; i++) {
        snprintf(body, sizeof body, "%d", i);
        publish(q, body, NULL);
        publish(plain, body, NULL);
    }
    /* nobody consumes: the queue empties by itself and its dead-letter queue has them, in
     * order */
    harness_expect_count(s_conn, 1, q, 0, "idle queue with x-message-ttl 300");
    harness_expect_count(s_conn, 1, plain, 0, "idle queue with x-message-ttl 300 and no DLX");
    harness_expect_count(s_conn, 1, dlq, 5, "dead letters of the idle queue");
    for (int i = 1; i <= 5; i++) {
        snprintf(body, sizeof body, "%d", i);
        expect_dead_letter(dlq, body, q, "expired", NULL);
    }
    harness_queue_delete(s_conn, 1, q);
    harness_queue_delete(s_conn, 1, plain);
    harness_queue_delete(s_conn, 1, dlq);
    harness_log("idle queue expiry, dead letters in order: ok");
}

/* ---- per-message TTL, the lower of two, never delivered ------------------------------------ */

static void check_per_message_and_lower(void)
{
    const char *dlq = harness_name("pm-dlq"), *q = harness_name("pm"), *qlow = harness_name("q200"),
               *mlow = harness_name("q60000");
    harness_ttl_queue(s_conn, dlq, -1, NULL);
    harness_ttl_queue(s_conn, q, -1, dlq);
    harness_ttl_queue(s_conn, qlow, 200, dlq);
    harness_ttl_queue(s_conn, mlow, 60000, dlq);

    publish(q, "short", "300");
    publish(qlow, "q200-m60000", "60000");
    publish(mlow, "q60000-m200", "200");
    publish(mlow, "q60000-none", NULL);
    harness_expect_count(s_conn, 1, q, 0, "expiration 300");
    harness_expect_count(s_conn, 1, qlow, 0, "x-message-ttl 200 and expiration 60000");
    harness_expect_count(s_conn, 1, mlow, 1, "x-message-ttl 60000 and expiration 200");
    /* from three queues: in any order */
    const dead_t want[] = {{"short", q, "300"}, {"q200-m60000", qlow, "60000"},
                           {"q60000-m200", mlow, "200"}};
    expect_dead_letters_any(dlq, want, 3);
    /* the one without expiration is still there, undelivered so far */
    harness_got_t g;
    CHECK(harness_get(s_conn, 1, mlow, true, &g));
    CHECK_STREQ(g.body, "q60000-none");
    harness_got_free(&g);

    /* a short TTL behind a long one: basic.get never hands out the expired one */
    publish(q, "long", "60000");
    publish(q, "behind", "100");
    publish(q, "none", NULL);
    usleep(400000);
    CHECK(harness_get(s_conn, 1, q, true, &g));
    CHECK_STREQ(g.body, "long");
    CHECK_STREQ(expiration_of(&g), "60000");
    harness_got_free(&g);
    CHECK(harness_get(s_conn, 1, q, true, &g));
    CHECKF(strcmp(g.body, "none") == 0, "got '%s' after its expiration passed", g.body);
    harness_got_free(&g);
    expect_empty(q, "short TTL behind a long one");
    expect_dead_letter(dlq, "behind", q, "expired", "100");

    /* a late consumer gets nothing that expired before it came */
    publish(qlow, "old", NULL);
    usleep(400000);
    expect_empty(qlow, "x-message-ttl 200, 400 ms later");
    expect_dead_letter(dlq, "old", qlow, "expired", NULL);
    publish(qlow, "old2", NULL);
    usleep(400000);
    harness_channel_open(s_conn, 2);
    harness_consume(s_conn, 2, qlow, "late", HARNESS_CONSUME_NO_ACK, amqp_empty_table);
    harness_expect_quiet(s_conn, 300, "a delivery of an expired message to a late consumer");
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));
    expect_dead_letter(dlq, "old2", qlow, "expired", NULL);
    expect_empty(dlq, "dead-letter queue");

    harness_queue_delete(s_conn, 1, q);
    harness_queue_delete(s_conn, 1, qlow);
    harness_queue_delete(s_conn, 1, mlow);
    harness_queue_delete(s_conn, 1, dlq);
    harness_log("per-message TTL, lower TTL applies, expired never delivered: ok");
}

/* ---- TTL 0 ---------------------------------------------------------------------------------- */

static void check_ttl_zero(void)
{
    const char *dlq = harness_name("z-dlq"), *q = harness_name("z"), *q0 = harness_name("z-queue0");
    harness_ttl_queue(s_conn, dlq, -1, NULL);
    harness_ttl_queue(s_conn, q, -1, dlq);
    harness_ttl_queue(s_conn, q0, 0, dlq);

    /* nobody to take them: expired at once */
    publish(q, "zero", "0");
    publish(q, "minus-zero", "-0");
    publish(q0, "queue-zero", NULL);
    const dead_t want[] = {{"zero", q, "0"}, {"minus-zero", q, "-0"}, {"queue-zero", q0, NULL}};
    expect_dead_letters_any(dlq, want, 3);
    CHECK_EQ(harness_queue_count(s_conn, 1, q), 0);
    CHECK_EQ(harness_queue_count(s_conn, 1, q0), 0);

    /* a consumer that can take it at once gets it, expiration "0" and all */
    harness_channel_open(s_conn, 2);
    harness_consume(s_conn, 2, q, "c0", HARNESS_CONSUME_NO_ACK, amqp_empty_table);
    publish(q, "zero-consumed", "0");
    amqp_envelope_t env;
    struct timeval tv = {.tv_sec = 5};
    amqp_maybe_release_buffers(s_conn);
    CHECK_REPLY(amqp_consume_message(s_conn, &env, &tv, 0));
    CHECK_EQ(env.channel, 2);
    CHECKF(env.message.body.len == 13 && memcmp(env.message.body.bytes, "zero-consumed", 13) == 0,
           "consumer got '%.*s'", (int)env.message.body.len, (const char *)env.message.body.bytes);
    CHECK(env.message.properties._flags & AMQP_BASIC_EXPIRATION_FLAG);
    CHECKF(env.message.properties.expiration.len == 1 &&
               ((const char *)env.message.properties.expiration.bytes)[0] == '0',
           "delivered expiration '%.*s'", (int)env.message.properties.expiration.len,
           (const char *)env.message.properties.expiration.bytes);
    amqp_destroy_envelope(&env);
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));

    /* x-message-ttl 0 and a consumer with prefetch 1 holding one unacked: the first goes to
     * it, the second cannot be delivered now and is expired */
    harness_channel_open(s_conn, 2);
    amqp_basic_qos(s_conn, 2, 0, 1, 0);
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));
    harness_consume(s_conn, 2, q0, "c1", 0, amqp_empty_table);
    publish(q0, "a", NULL);
    publish(q0, "b", NULL);
    amqp_maybe_release_buffers(s_conn);
    CHECK_REPLY(amqp_consume_message(s_conn, &env, &tv, 0));
    CHECKF(env.message.body.len == 1 && ((const char *)env.message.body.bytes)[0] == 'a',
           "consumer got '%.*s'", (int)env.message.body.len, (const char *)env.message.body.bytes);
    amqp_destroy_envelope(&env);
    expect_dead_letter(dlq, "b", q0, "expired", NULL);
    /* closing the channel requeues "a" into a TTL 0 queue with no consumer: expired too */
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));
    expect_dead_letter(dlq, "a", q0, "expired", NULL);
    CHECK_EQ(harness_queue_count(s_conn, 1, q0), 0);
    expect_empty(dlq, "dead-letter queue after TTL 0");

    harness_queue_delete(s_conn, 1, q);
    harness_queue_delete(s_conn, 1, q0);
    harness_queue_delete(s_conn, 1, dlq);
    harness_log("TTL 0: ok");
}

/* ---- unacked messages, requeue, two queues ------------------------------------------------- */

static void check_unacked_and_requeue(void)
{
    const char *dlq = harness_name("u-dlq"), *q = harness_name("u");
    harness_ttl_queue(s_conn, dlq, -1, NULL);
    harness_ttl_queue(s_conn, q, 300, dlq);
    publish(q, "held", NULL);
    publish(q, "behind", NULL);
    harness_expect_count(s_conn, 1, q, 2, "published");

    harness_channel_open(s_conn, 2);
    harness_got_t held;
    CHECK(harness_get(s_conn, 2, q, false, &held));
    CHECK_STREQ(held.body, "held");
    /* "behind" expires while "held" is unacked; "held" does not */
    expect_dead_letter(dlq, "behind", q, "expired", NULL);
    harness_expect_steady(s_conn, 1, dlq, 0, 400, "dead-letter queue while 'held' is unacked");
    expect_empty(dlq, "dead-letter queue while 'held' is unacked");
    /* requeued after its TTL: expired at once */
    CHECK_AMQP(amqp_basic_nack(s_conn, 2, held.delivery_tag, 0, 1));
    harness_got_free(&held);
    harness_sync(s_conn, 2);
    expect_dead_letter(dlq, "held", q, "expired", NULL);
    harness_expect_count(s_conn, 1, q, 0, "after the requeue of an expired message");
    expect_empty(q, "requeued expired message");
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));

    /* one message, two queues, two TTLs */
    const char *x = harness_name("fan"), *qs = harness_name("fan-short"),
               *ql = harness_name("fan-long");
    harness_exchange_declare(s_conn, 1, x, "fanout",
                             HARNESS_EXCHANGE_AUTO_DELETE, amqp_empty_table);
    harness_ttl_queue(s_conn, qs, 100, NULL);
    harness_ttl_queue(s_conn, ql, 60000, NULL);
    harness_queue_bind(s_conn, 1, qs, x, "", amqp_empty_table);
    harness_queue_bind(s_conn, 1, ql, x, "", amqp_empty_table);
    publish_ch(1, x, "", "both", NULL);
    harness_expect_count(s_conn, 1, qs, 0, "fanout copy in the 100 ms queue");
    CHECK_EQ(harness_queue_count(s_conn, 1, ql), 1);
    harness_got_t g;
    CHECK(harness_get(s_conn, 1, ql, true, &g));
    CHECK_STREQ(g.body, "both");
    harness_got_free(&g);

    harness_queue_delete(s_conn, 1, q);
    harness_queue_delete(s_conn, 1, dlq);
    harness_queue_delete(s_conn, 1, qs);
    harness_queue_delete(s_conn, 1, ql);
    harness_exchange_delete(s_conn, 1, x);
    harness_log("unacked not expired, expired on requeue, per-queue TTL: ok");
}

int main(void)
{
    harness_broker_t b;
    s_conn = harness_begin(&b, 55, "it-ttl");

    check_invalid_expiration();
    check_idle_queue_expires();
    check_per_message_and_lower();
    check_ttl_zero();
    check_unacked_and_requeue();

    harness_disconnect(s_conn);
    return harness_finish(&b);
}
