/* 40-queue-consume — basic.consume and basic.cancel: no-ack consumers, server-generated tags,
 * duplicate tags, exclusive consumers, client and server cancels, round-robin.
 * RabbitMQ 3.10.8 answers (asserted below; Q is the queue name):
 *  server-generated consumer tags are "amq.ctag-" + 22 url-safe base64 characters.
 *  a consumer tag already used on the same channel: connection.close 530 "NOT_ALLOWED - attempt
 *      to reuse consumer tag 'T'" (60.20); the same tag on another channel is fine.
 *  exclusive consume on a queue that has a consumer, and any consume on a queue that has an
 *      exclusive consumer: channel.close 403 "ACCESS_REFUSED - queue 'Q' in vhost '/' in
 *      exclusive use" (60.20).
 *  basic.cancel -> cancel-ok with the tag; nothing more is delivered to it. Cancelling a tag
 *      that does not exist is cancel-ok too.
 *  a queue deleted under its consumers: a client that announced the consumer_cancel_notify
 *      capability receives basic.cancel (its tag, no-wait set) on the consumer's channel; one
 *      that did not receives nothing; both channels stay open.
 *  a consumer's unacked messages go to another consumer of the queue when its channel closes,
 *      in order and redelivered; an auto-delete queue is deleted when the connection of its
 *      last consumer closes.
 *  round-robin: consumers registered in the order 1, 2, 3 receive messages 1, 2, 3, 1, 2, 3...:
 *      10 each of 30 (asserted exactly, message by message). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static char s_text[512];
static int s_pid;

static void publish_n(amqp_connection_state_t conn, const char *q, int first, int n)
{
    harness_publish_range(conn, q, first, first + n - 1);
}

/* Next delivery within 5 s; fails on anything else. */
static void next_delivery(amqp_connection_state_t conn, amqp_envelope_t *env)
{
    CHECKF(harness_next_delivery(conn, 5000, env), "no delivery within 5 s");
}

static amqp_bytes_t consume(amqp_connection_state_t conn, amqp_channel_t ch, const char *q,
                            const char *tag, bool no_ack, bool exclusive)
{
    amqp_basic_consume_ok_t *ok =
        amqp_basic_consume(conn, ch, amqp_cstring_bytes(q),
                           tag ? amqp_cstring_bytes(tag) : amqp_empty_bytes, 0, no_ack, exclusive,
                           amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    if (tag)
        CHECK(harness_bytes_is(ok->consumer_tag, tag));
    return amqp_bytes_malloc_dup(ok->consumer_tag);
}

static void cancel(amqp_connection_state_t conn, amqp_channel_t ch, amqp_bytes_t tag)
{
    amqp_basic_cancel_ok_t *ok = amqp_basic_cancel(conn, ch, tag);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    CHECK(ok->consumer_tag.len == tag.len && memcmp(ok->consumer_tag.bytes, tag.bytes, tag.len) == 0);
}

static void check_no_ack_and_cancel(amqp_connection_state_t conn)
{
    char q[64];
    snprintf(q, sizeof q, "it-consume-noack-%d", s_pid);
    harness_queue_declare(conn, 1, q, 0, amqp_empty_table);
    harness_channel_open(conn, 2);
    amqp_bytes_t tag = consume(conn, 2, q, NULL, true, false);
    harness_log("server-generated tag %.*s", (int)tag.len, (const char *)tag.bytes);
    CHECKF(tag.len == 9 + 22 && memcmp(tag.bytes, "amq.ctag-", 9) == 0, "tag %.*s",
           (int)tag.len, (const char *)tag.bytes);
    amqp_bytes_t tag2 = consume(conn, 2, q, NULL, true, false);
    CHECK(!(tag2.len == tag.len && memcmp(tag2.bytes, tag.bytes, tag.len) == 0));
    cancel(conn, 2, tag2);
    amqp_bytes_free(tag2);

    publish_n(conn, q, 1, 5);
    for (int i = 1; i <= 5; i++) {
        amqp_envelope_t env;
        next_delivery(conn, &env);
        CHECK_EQ(env.channel, 2);
        CHECK_EQ(env.delivery_tag, i);
        CHECK(!env.redelivered);
        CHECK(env.consumer_tag.len == tag.len &&
              memcmp(env.consumer_tag.bytes, tag.bytes, tag.len) == 0);
        CHECK_EQ(harness_body_int(env.message.body), i);
        amqp_destroy_envelope(&env);
    }
    cancel(conn, 2, tag);
    /* After cancel-ok nothing more is delivered: the next message stays in the queue. */
    publish_n(conn, q, 6, 1);
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 1, 5000), 1);
    harness_expect_quiet(conn, 300, "after basic.cancel");
    /* no-ack deliveries are gone for good: closing the channel brings nothing back */
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    uint32_t m = 0, c = 99;
    CHECK_REPLY(harness_queue_peek(conn, 1, q, &m, &c));
    CHECK_EQ(m, 1);
    CHECK_EQ(c, 0);
    /* cancelling a tag that does not exist is answered with cancel-ok */
    harness_channel_open(conn, 2);
    cancel(conn, 2, amqp_cstring_bytes("no-such-consumer"));
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    amqp_bytes_free(tag);
    harness_queue_delete(conn, 1, q);
    harness_log("no-ack consume, server tags, cancel: ok");
}

static void check_duplicate_tag(const harness_broker_t *b)
{
    char q[64];
    snprintf(q, sizeof q, "it-consume-dup-%d", s_pid);
    amqp_connection_state_t conn = harness_open(b);
    harness_channel_open(conn, 2);
    harness_queue_declare(conn, 1, q, HARNESS_QUEUE_AUTO_DELETE, amqp_empty_table);
    amqp_bytes_free(consume(conn, 1, q, "dup-tag", false, false));
    /* the same tag on another channel is another consumer */
    amqp_bytes_free(consume(conn, 2, q, "dup-tag", false, false));
    amqp_basic_consume(conn, 1, amqp_cstring_bytes(q), amqp_cstring_bytes("dup-tag"), 0, 0, 0,
                       amqp_empty_table);
    harness_expect_connection_close(conn, amqp_get_rpc_reply(conn), 530,
                                    "NOT_ALLOWED - attempt to reuse consumer tag 'dup-tag'", 60,
                                    20);
    harness_log("duplicate consumer tag: ok");
}

static void check_exclusive(amqp_connection_state_t conn, const harness_broker_t *b)
{
    char q[64];
    snprintf(q, sizeof q, "it-consume-excl-%d", s_pid);
    harness_queue_declare(conn, 1, q, 0, amqp_empty_table);
    snprintf(s_text, sizeof s_text, "ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use",
             q);
    amqp_connection_state_t other = harness_open(b);

    /* A plain consumer exists: exclusive consume is refused, on any connection. */
    harness_channel_open(conn, 2);
    amqp_bytes_t plain = consume(conn, 2, q, "plain", false, false);
    amqp_basic_consume(other, 1, amqp_cstring_bytes(q), amqp_empty_bytes, 0, 0, 1,
                       amqp_empty_table);
    harness_expect_channel_close(other, 1, amqp_get_rpc_reply(other), 403, s_text, 60, 20);
    harness_channel_open(other, 1);
    amqp_basic_consume(conn, 2, amqp_cstring_bytes(q), amqp_empty_bytes, 0, 0, 1,
                       amqp_empty_table);
    harness_expect_channel_close(conn, 2, amqp_get_rpc_reply(conn), 403, s_text, 60, 20);
    harness_channel_open(conn, 2); /* that closed "plain" with its channel */
    uint32_t c = 99;
    CHECK_REPLY(harness_queue_peek(conn, 1, q, NULL, &c));
    CHECK_EQ(c, 0);
    amqp_bytes_free(plain);

    /* An exclusive consumer exists: every other consume is refused. */
    amqp_bytes_t excl = consume(conn, 2, q, "exclusive", false, true);
    amqp_basic_consume(other, 1, amqp_cstring_bytes(q), amqp_empty_bytes, 0, 0, 0,
                       amqp_empty_table);
    harness_expect_channel_close(other, 1, amqp_get_rpc_reply(other), 403, s_text, 60, 20);
    harness_channel_open(other, 1);
    amqp_basic_consume(other, 1, amqp_cstring_bytes(q), amqp_empty_bytes, 0, 0, 1,
                       amqp_empty_table);
    harness_expect_channel_close(other, 1, amqp_get_rpc_reply(other), 403, s_text, 60, 20);
    harness_channel_open(other, 1);
    harness_channel_open(conn, 3);
    amqp_basic_consume(conn, 3, amqp_cstring_bytes(q), amqp_empty_bytes, 0, 1, 0,
                       amqp_empty_table);
    harness_expect_channel_close(conn, 3, amqp_get_rpc_reply(conn), 403, s_text, 60, 20);

    /* Once it is cancelled, anyone may consume again. */
    cancel(conn, 2, excl);
    amqp_bytes_free(excl);
    amqp_bytes_free(consume(other, 1, q, NULL, false, true));
    harness_disconnect(other);
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    harness_queue_delete(conn, 1, q);
    harness_log("exclusive consumers: ok");
}

static void check_server_cancel(const harness_broker_t *b)
{
    char q[64];
    snprintf(q, sizeof q, "it-consume-srvcancel-%d", s_pid);
    static const char *const caps[] = {"consumer_cancel_notify", NULL};
    amqp_connection_state_t notified = harness_connect_caps(b, caps);
    amqp_connection_state_t plain = harness_connect(b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    harness_channel_open(notified, 1);
    harness_channel_open(notified, 5);
    harness_channel_open(plain, 1);
    harness_channel_open(plain, 5);
    harness_queue_declare(notified, 1, q, 0, amqp_empty_table);
    amqp_bytes_t t1 = consume(notified, 5, q, "notify-me", false, false);
    amqp_bytes_t t2 = consume(plain, 5, q, "silent", false, false);
    uint32_t c = 0;
    CHECK_REPLY(harness_queue_peek(notified, 1, q, NULL, &c));
    CHECK_EQ(c, 2);

    harness_queue_delete(plain, 1, q);

    amqp_frame_t f;
    int st = harness_next_frame(notified, &f, 5000);
    CHECKF(st == 0, "no basic.cancel from the server: %s", amqp_error_string2(st));
    CHECKF(f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_CANCEL_METHOD,
           "want basic.cancel, got frame type %u (%s)", f.frame_type,
           f.frame_type == AMQP_FRAME_METHOD ? amqp_method_name(f.payload.method.id) : "-");
    CHECK_EQ(f.channel, 5);
    amqp_basic_cancel_t *bc = f.payload.method.decoded;
    CHECK(harness_bytes_is(bc->consumer_tag, "notify-me"));
    CHECK(bc->nowait);
    harness_log("server basic.cancel for %.*s (nowait=%d)", (int)bc->consumer_tag.len,
                (const char *)bc->consumer_tag.bytes, bc->nowait);
    harness_expect_quiet(plain, 300, "consumer of a deleted queue without consumer_cancel_notify");

    /* Both channels are still open and usable. */
    harness_queue_declare(notified, 5, q, 0, amqp_empty_table);
    harness_queue_declare(plain, 5, q, 0, amqp_empty_table);
    harness_queue_delete(notified, 5, q);
    amqp_bytes_free(t1);
    amqp_bytes_free(t2);
    harness_disconnect(plain);
    harness_disconnect(notified);
    harness_log("server-side basic.cancel: ok");
}

static void check_round_robin(amqp_connection_state_t conn)
{
    enum { NCONS = 3, NMSG = 30 };
    char q[64];
    snprintf(q, sizeof q, "it-consume-rr-%d", s_pid);
    harness_queue_declare(conn, 1, q, 0, amqp_empty_table);
    amqp_bytes_t tags[NCONS];
    for (int k = 0; k < NCONS; k++) {
        harness_channel_open(conn, (amqp_channel_t)(11 + k));
        tags[k] = consume(conn, (amqp_channel_t)(11 + k), q, NULL, false, false);
    }
    publish_n(conn, q, 0, NMSG);
    int count[NCONS] = {0}, total = 0;
    uint64_t next_tag[NCONS] = {1, 1, 1};
    int owner[NMSG];
    for (int i = 0; i < NMSG; i++) {
        amqp_envelope_t env;
        next_delivery(conn, &env);
        int k = env.channel - 11;
        CHECKF(k >= 0 && k < NCONS, "delivery on channel %u", env.channel);
        CHECK(env.consumer_tag.len == tags[k].len &&
              memcmp(env.consumer_tag.bytes, tags[k].bytes, tags[k].len) == 0);
        CHECK_EQ(env.delivery_tag, next_tag[k]++);
        int n = harness_body_int(env.message.body);
        CHECK(n >= 0 && n < NMSG);
        owner[n] = k;
        count[k]++;
        total++;
        CHECK_AMQP(amqp_basic_ack(conn, env.channel, env.delivery_tag, 0));
        amqp_destroy_envelope(&env);
    }
    harness_expect_quiet(conn, 300, "after all 30 deliveries");
    harness_log("round-robin counts: %d %d %d", count[0], count[1], count[2]);
    CHECK_EQ(total, NMSG);
    for (int k = 0; k < NCONS; k++)
        CHECK_EQ(count[k], NMSG / NCONS);
    for (int i = 0; i < NMSG; i++)
        CHECKF(owner[i] == i % NCONS, "message %d went to consumer %d", i, owner[i]);
    for (int k = 0; k < NCONS; k++) {
        CHECK_REPLY(amqp_channel_close(conn, (amqp_channel_t)(11 + k), AMQP_REPLY_SUCCESS));
        amqp_bytes_free(tags[k]);
    }
    uint32_t m = 99;
    CHECK_REPLY(harness_queue_peek(conn, 1, q, &m, NULL));
    CHECK_EQ(m, 0);
    harness_queue_delete(conn, 1, q);
    harness_log("round-robin: ok");
}

/* A consumer's unacked messages go to the other consumer when its channel closes, in order,
 * redelivered; an auto-delete queue goes when its consumer's connection closes. */
static void check_handover(const harness_broker_t *b, amqp_connection_state_t conn)
{
    char q[64];
    snprintf(q, sizeof q, "it-consume-handover-%d", s_pid);
    harness_queue_declare(conn, 1, q, HARNESS_QUEUE_AUTO_DELETE, amqp_empty_table);
    amqp_connection_state_t first = harness_open(b);
    amqp_bytes_free(consume(first, 1, q, "first", false, false));
    publish_n(conn, q, 1, 3);
    for (int i = 1; i <= 3; i++) {
        amqp_envelope_t env;
        next_delivery(first, &env);
        CHECK_EQ(harness_body_int(env.message.body), i);
        CHECK(!env.redelivered);
        amqp_destroy_envelope(&env);
    }
    /* a second consumer (on conn) waits with nothing to do */
    harness_channel_open(conn, 2);
    amqp_bytes_t second = consume(conn, 2, q, "second", false, false);
    harness_expect_quiet(conn, 300, "second consumer while the first holds everything");
    CHECK_REPLY(amqp_channel_close(first, 1, AMQP_REPLY_SUCCESS));
    for (int i = 1; i <= 3; i++) {
        amqp_envelope_t env;
        next_delivery(conn, &env);
        CHECK(harness_bytes_is(env.consumer_tag, "second"));
        CHECK_EQ(env.delivery_tag, i);
        CHECK_EQ(harness_body_int(env.message.body), i);
        CHECK(env.redelivered);
        CHECK_AMQP(amqp_basic_ack(conn, 2, env.delivery_tag, 0));
        amqp_destroy_envelope(&env);
    }
    harness_disconnect(first);
    /* The only consumer left is on conn; "first" re-connects as the last consumer. */
    first = harness_open(b);
    amqp_bytes_free(consume(first, 1, q, "again", true, false));
    cancel(conn, 2, second);
    amqp_bytes_free(second);
    CHECK_REPLY(harness_queue_peek(conn, 1, q, NULL, NULL)); /* still there: one consumer */
    harness_disconnect(first);
    CHECKF(harness_wait_queue_gone(conn, 1, q, 5000),
           "auto-delete queue %s survived its last consumer's connection", q);
    harness_channel_open(conn, 1);
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    harness_log("hand-over to another consumer, auto-delete on connection close: ok");
}

int main(void)
{
    harness_broker_t b;
    amqp_connection_state_t conn = harness_begin(&b, 55, NULL);
    s_pid = (int)getpid();

    check_no_ack_and_cancel(conn);
    check_duplicate_tag(&b);
    check_exclusive(conn, &b);
    check_server_cancel(&b);
    check_round_robin(conn);
    check_handover(&b, conn);
    harness_disconnect(conn);
    return harness_finish(&b);
}
