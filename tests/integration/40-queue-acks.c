/* 40-queue-acks — basic.ack / basic.nack / basic.reject with multiple and requeue, where
 * requeued messages go, unknown and double acks, basic.recover, and unacked messages returning
 * to their queue when their channel or connection closes.
 * Messages are numbered by their bodies; drain() lists what a queue holds in order, with "r"
 * after the redelivered ones ("3r 7r 8").
 * RabbitMQ 3.10.8 answers (asserted below):
 *  requeue puts a message back at its original position in the queue, not at the tail:
 *      1..10 all fetched, nack 7 then nack 3 (requeue) -> the queue holds "3r 7r";
 *      1..10, 1..5 fetched, nack 4 then reject 2 (requeue) -> "2r 4r 6 7 8 9 10";
 *      1..4, fetch 1, 2; nack 2 (queue "2r 3 4"); fetch 2 again and 3; nack 3, 2, 1 in that
 *      order -> "1r 2r 3r 4";
 *      closing a channel holding 1,2,4,5,6,8,9,10 unacked -> "1r 2r 4r 5r 6r 8r 9r 10r".
 *  multiple=true covers every outstanding tag up to and including the given one; tag 0 with
 *      multiple=true means all outstanding deliveries (ack and nack).
 *  reject / nack with requeue=false drops the message (no dead-letter exchange here).
 *  an unknown or already acknowledged tag: channel.close 406 "PRECONDITION_FAILED - unknown
 *      delivery tag N" (ack 60.80, reject 60.90, nack 60.120); also for multiple=true with a
 *      tag above every outstanding one, for tag 0 without multiple, and for an ack of a no-ack
 *      delivery; ack/nack of tag 0 with multiple=true and nothing outstanding is fine.
 *  basic.recover requeue=true -> recover-ok; the channel's consumer gets its unacked messages
 *      again (redelivered, new delivery tags, in their original order); messages fetched with
 *      basic.get go back to the queue.
 *  a consumer (prefetch 1) that nacks with requeue gets the same message again, redelivered,
 *      under the next delivery tag. Acks, nacks and rejects of messages whose queue was deleted
 *      after delivery are accepted silently.
 *  closing the channel or the connection puts its unacked messages back, in order, marked
 *      redelivered, ahead of the messages that were never delivered. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static int s_pid;
static char s_q[64];

static void fresh_queue(amqp_connection_state_t conn)
{
    harness_queue_declare(conn, 1, s_q, 0, amqp_empty_table);
    harness_queue_purge(conn, 1, s_q);
}

static void publish_only(amqp_connection_state_t conn, int first, int last)
{
    harness_publish_range(conn, s_q, first, last);
}

/* Publish bodies first..last and wait until the queue shows them. */
static void publish_range(amqp_connection_state_t conn, int first, int last)
{
    uint32_t before = 0;
    CHECK_REPLY(harness_queue_peek(conn, 1, s_q, &before, NULL));
    publish_only(conn, first, last);
    uint32_t want = before + (uint32_t)(last - first + 1);
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, want, 5000), want);
}

/* basic.get with manual ack on ch: the body number; checks tag and redelivered. */
static int get_one(amqp_connection_state_t conn, amqp_channel_t ch, uint64_t want_tag,
                   bool want_redelivered)
{
    amqp_rpc_reply_t r = amqp_basic_get(conn, ch, amqp_cstring_bytes(s_q), 0);
    CHECK_REPLY(r);
    CHECKF(r.reply.id == AMQP_BASIC_GET_OK_METHOD, "basic.get: %s", amqp_method_name(r.reply.id));
    amqp_basic_get_ok_t *ok = r.reply.decoded;
    CHECK_EQ(ok->delivery_tag, want_tag);
    CHECK_EQ(ok->redelivered, want_redelivered);
    amqp_message_t msg;
    CHECK_REPLY(amqp_read_message(conn, ch, &msg, 0));
    int n = harness_body_int(msg.body);
    amqp_destroy_message(&msg);
    return n;
}

/* Fetch first..last with basic.get (manual ack) on ch; tags tag0, tag0+1, ... */
static void get_range_r(amqp_connection_state_t conn, amqp_channel_t ch, int first, int last,
                        uint64_t tag0, bool redelivered)
{
    for (int i = first; i <= last; i++)
        CHECK_EQ(get_one(conn, ch, tag0 + (uint64_t)(i - first), redelivered), i);
}

static void get_range(amqp_connection_state_t conn, amqp_channel_t ch, int first, int last,
                      uint64_t tag0)
{
    get_range_r(conn, ch, first, last, tag0, false);
}

/* What the queue holds, in order ("3r 7r 8"), taken with no-ack basic.get on channel 1. */
static const char *drain(amqp_connection_state_t conn)
{
    static char out[1024];
    harness_drain_marked(conn, 1, s_q, out, sizeof out);
    harness_log("queue holds: \"%s\"", out);
    return out;
}

/* Acks are asynchronous: a round trip on ch makes sure the broker has handled them (and, for
 * a bad one, returns the channel.close). */
static amqp_rpc_reply_t sync_on(amqp_connection_state_t conn, amqp_channel_t ch)
{
    return harness_round_trip(conn, ch);
}

static void check_positions(amqp_connection_state_t conn)
{
    harness_channel_open(conn, 2);

    /* All ten fetched; nack 7, then nack 3: back at their own positions. */
    fresh_queue(conn);
    publish_range(conn, 1, 10);
    get_range(conn, 2, 1, 10, 1);
    CHECK_AMQP(amqp_basic_nack(conn, 2, 7, 0, 1));
    CHECK_AMQP(amqp_basic_nack(conn, 2, 3, 0, 1));
    CHECK_REPLY(sync_on(conn, 2));
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 2, 5000), 2);
    CHECK_STREQ(drain(conn), "3r 7r");
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS)); /* 8 unacked go back */
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 8, 5000), 8);
    CHECK_STREQ(drain(conn), "1r 2r 4r 5r 6r 8r 9r 10r");

    /* Half fetched; nack 4 then reject 2: ahead of the never-delivered 6..10. */
    harness_channel_open(conn, 2);
    publish_range(conn, 1, 10);
    get_range(conn, 2, 1, 5, 1);
    CHECK_AMQP(amqp_basic_nack(conn, 2, 4, 0, 1));
    CHECK_AMQP(amqp_basic_reject(conn, 2, 2, 1));
    CHECK_REPLY(sync_on(conn, 2));
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 7, 5000), 7);
    CHECK_STREQ(drain(conn), "2r 4r 6 7 8 9 10");
    CHECK_AMQP(amqp_basic_ack(conn, 2, 0, 1)); /* 1, 3, 5 */
    CHECK_REPLY(sync_on(conn, 2));
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS)); /* nothing unacked to return */
    CHECK_STREQ(drain(conn), "");

    /* A requeued message fetched again and requeued again keeps its place. */
    harness_channel_open(conn, 2);
    publish_range(conn, 1, 4);
    get_range(conn, 2, 1, 2, 1);
    CHECK_AMQP(amqp_basic_nack(conn, 2, 2, 0, 1)); /* queue: 2r 3 4 */
    CHECK_EQ(get_one(conn, 2, 3, true), 2);
    CHECK_EQ(get_one(conn, 2, 4, false), 3);
    CHECK_AMQP(amqp_basic_nack(conn, 2, 4, 0, 1)); /* 3 back */
    CHECK_AMQP(amqp_basic_nack(conn, 2, 3, 0, 1)); /* 2 back */
    CHECK_AMQP(amqp_basic_nack(conn, 2, 1, 0, 1)); /* 1 back */
    CHECK_REPLY(sync_on(conn, 2));
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 4, 5000), 4);
    CHECK_STREQ(drain(conn), "1r 2r 3r 4");
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    harness_log("requeue positions: ok");
}

static void check_multiple(amqp_connection_state_t conn)
{
    harness_channel_open(conn, 2);
    fresh_queue(conn);
    publish_range(conn, 1, 8);
    get_range(conn, 2, 1, 8, 1);
    CHECK_AMQP(amqp_basic_ack(conn, 2, 2, 1));      /* 1, 2 acked */
    CHECK_AMQP(amqp_basic_nack(conn, 2, 4, 1, 1));  /* 3, 4 requeued */
    CHECK_AMQP(amqp_basic_reject(conn, 2, 5, 0));   /* 5 dropped */
    CHECK_AMQP(amqp_basic_nack(conn, 2, 6, 1, 0));  /* 6 dropped (5 is no longer outstanding) */
    CHECK_AMQP(amqp_basic_nack(conn, 2, 0, 1, 1));  /* tag 0, multiple: 7, 8 requeued */
    CHECK_REPLY(sync_on(conn, 2));
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 4, 5000), 4);
    CHECK_STREQ(drain(conn), "3r 4r 7r 8r");
    /* Nothing is outstanding any more: closing the channel brings nothing back. */
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    CHECK_STREQ(drain(conn), "");

    /* ack tag 0 multiple: everything outstanding */
    harness_channel_open(conn, 2);
    publish_range(conn, 1, 3);
    get_range(conn, 2, 1, 3, 1);
    CHECK_AMQP(amqp_basic_ack(conn, 2, 0, 1));
    CHECK_REPLY(sync_on(conn, 2));
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    CHECK_STREQ(drain(conn), "");

    /* nack multiple requeue=false drops a range */
    harness_channel_open(conn, 2);
    publish_range(conn, 1, 5);
    get_range(conn, 2, 1, 5, 1);
    CHECK_AMQP(amqp_basic_nack(conn, 2, 3, 1, 0));
    CHECK_REPLY(sync_on(conn, 2));
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 2, 5000), 2);
    CHECK_STREQ(drain(conn), "4r 5r");
    harness_log("multiple, requeue=false, tag 0: ok");
}

static void expect_unknown_tag(amqp_connection_state_t conn, amqp_channel_t ch, uint64_t tag,
                               uint16_t method_id)
{
    char text[128];
    snprintf(text, sizeof text, "PRECONDITION_FAILED - unknown delivery tag %llu",
             (unsigned long long)tag);
    harness_expect_channel_close(conn, ch, sync_on(conn, ch), 406, text, 60, method_id);
}

static void check_unknown_tags(amqp_connection_state_t conn)
{
    fresh_queue(conn);

    harness_channel_open(conn, 2);
    CHECK_AMQP(amqp_basic_ack(conn, 2, 1, 0)); /* nothing delivered yet */
    expect_unknown_tag(conn, 2, 1, 80);

    harness_channel_open(conn, 2);
    publish_range(conn, 1, 2);
    get_range(conn, 2, 1, 2, 1);
    CHECK_AMQP(amqp_basic_ack(conn, 2, 1, 0));
    CHECK_REPLY(sync_on(conn, 2));
    CHECK_AMQP(amqp_basic_ack(conn, 2, 1, 0)); /* double ack */
    expect_unknown_tag(conn, 2, 1, 80);
    /* the channel's other unacked message went back when the channel was closed */
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 1, 5000), 1);
    CHECK_STREQ(drain(conn), "2r");

    harness_channel_open(conn, 2);
    publish_range(conn, 1, 2);
    get_range(conn, 2, 1, 2, 1);
    CHECK_AMQP(amqp_basic_reject(conn, 2, 3, 1));
    expect_unknown_tag(conn, 2, 3, 90);

    harness_channel_open(conn, 2);
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 2, 5000), 2);
    get_range_r(conn, 2, 1, 2, 1, true);
    CHECK_AMQP(amqp_basic_nack(conn, 2, 99, 0, 1));
    expect_unknown_tag(conn, 2, 99, 120);

    harness_channel_open(conn, 2);
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 2, 5000), 2);
    get_range_r(conn, 2, 1, 2, 1, true);
    CHECK_AMQP(amqp_basic_ack(conn, 2, 5, 1)); /* multiple, above the highest outstanding */
    expect_unknown_tag(conn, 2, 5, 80);

    /* tag 0 without multiple is just an unknown tag; with multiple and nothing outstanding
     * it is fine */
    harness_channel_open(conn, 2);
    CHECK_AMQP(amqp_basic_ack(conn, 2, 0, 1));
    CHECK_AMQP(amqp_basic_nack(conn, 2, 0, 1, 1));
    CHECK_REPLY(sync_on(conn, 2));
    CHECK_AMQP(amqp_basic_ack(conn, 2, 0, 0));
    expect_unknown_tag(conn, 2, 0, 80);
    harness_channel_open(conn, 2);
    CHECK_AMQP(amqp_basic_nack(conn, 2, 0, 0, 1));
    expect_unknown_tag(conn, 2, 0, 120);

    /* a no-ack delivery has nothing to acknowledge */
    harness_channel_open(conn, 2);
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 2, 5000), 2);
    amqp_rpc_reply_t r = amqp_basic_get(conn, 2, amqp_cstring_bytes(s_q), 1);
    CHECK_REPLY(r);
    CHECK_EQ(r.reply.id, AMQP_BASIC_GET_OK_METHOD);
    uint64_t tag = ((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag;
    CHECK_EQ(tag, 1);
    amqp_message_t msg;
    CHECK_REPLY(amqp_read_message(conn, 2, &msg, 0));
    amqp_destroy_message(&msg);
    CHECK_AMQP(amqp_basic_ack(conn, 2, tag, 0));
    expect_unknown_tag(conn, 2, tag, 80);
    CHECK_STREQ(drain(conn), "2r");
    harness_log("unknown delivery tags: ok");
}

static void check_recover(amqp_connection_state_t conn)
{
    fresh_queue(conn);
    /* basic.get deliveries go back to the queue */
    harness_channel_open(conn, 2);
    publish_range(conn, 1, 4);
    get_range(conn, 2, 1, 3, 1);
    CHECK_AMQP(amqp_basic_ack(conn, 2, 2, 0));
    amqp_basic_recover(conn, 2, 1);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 3, 5000), 3);
    CHECK_STREQ(drain(conn), "1r 3r 4");
    /* and the channel holds nothing any more: tag 1 is unknown now */
    CHECK_AMQP(amqp_basic_ack(conn, 2, 1, 0));
    expect_unknown_tag(conn, 2, 1, 80);

    /* a consumer gets its unacked messages again, redelivered, with new tags */
    harness_channel_open(conn, 2);
    harness_consume(conn, 2, s_q, "recover", 0, amqp_empty_table);
    publish_only(conn, 1, 3);
    for (int i = 1; i <= 3; i++) {
        amqp_envelope_t env;
        CHECK(harness_next_delivery(conn, 5000, &env));
        CHECK_EQ(env.delivery_tag, i);
        CHECK_EQ(harness_body_int(env.message.body), i);
        CHECK(!env.redelivered);
        amqp_destroy_envelope(&env);
    }
    CHECK_AMQP(amqp_basic_ack(conn, 2, 2, 0));
    amqp_basic_recover(conn, 2, 1);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    const int want[] = {1, 3};
    for (int i = 0; i < 2; i++) {
        amqp_envelope_t env;
        CHECK(harness_next_delivery(conn, 5000, &env));
        CHECK_EQ(env.delivery_tag, 4 + i);
        CHECK_EQ(harness_body_int(env.message.body), want[i]);
        CHECK(env.redelivered);
        amqp_destroy_envelope(&env);
    }
    harness_expect_quiet(conn, 300, "after the two redeliveries");
    CHECK_AMQP(amqp_basic_ack(conn, 2, 5, 1));
    CHECK_REPLY(sync_on(conn, 2));
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    CHECK_STREQ(drain(conn), "");
    harness_log("basic.recover requeue=true: ok");
}

/* A consumer that nacks with requeue gets the message straight back; acks and nacks of
 * messages whose queue has been deleted meanwhile are accepted. */
static void check_consumer_requeue_and_deleted_queue(amqp_connection_state_t conn)
{
    fresh_queue(conn);
    harness_channel_open(conn, 2);
    harness_qos(conn, 2, 1, false);
    harness_consume(conn, 2, s_q, "nacker", 0, amqp_empty_table);
    publish_only(conn, 1, 2);
    const struct {
        int body;
        bool redelivered;
    } want[] = {{1, false}, {1, true}, {1, true}, {2, false}};
    for (int i = 0; i < 4; i++) {
        amqp_envelope_t env;
        CHECK(harness_next_delivery(conn, 5000, &env));
        CHECK_EQ(env.delivery_tag, i + 1);
        CHECK_EQ(harness_body_int(env.message.body), want[i].body);
        CHECK_EQ(env.redelivered, want[i].redelivered);
        if (i < 2)
            CHECK_AMQP(amqp_basic_nack(conn, 2, env.delivery_tag, 0, 1));
        else
            CHECK_AMQP(amqp_basic_ack(conn, 2, env.delivery_tag, 0));
        amqp_destroy_envelope(&env);
    }
    harness_expect_quiet(conn, 300, "after the last message was acked");
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));

    harness_channel_open(conn, 2);
    publish_range(conn, 1, 3);
    get_range(conn, 2, 1, 3, 1);
    harness_queue_delete(conn, 1, s_q);
    CHECK_AMQP(amqp_basic_ack(conn, 2, 1, 0));
    CHECK_AMQP(amqp_basic_nack(conn, 2, 2, 0, 1));
    CHECK_AMQP(amqp_basic_reject(conn, 2, 3, 0));
    CHECK_REPLY(sync_on(conn, 2));
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    fresh_queue(conn);
    CHECK_STREQ(drain(conn), ""); /* the requeued one did not come back to a new queue */
    harness_log("consumer nack requeue, acks for a deleted queue: ok");
}

static void check_close_returns(const harness_broker_t *b, amqp_connection_state_t conn)
{
    fresh_queue(conn);
    /* channel close */
    harness_channel_open(conn, 2);
    publish_range(conn, 1, 5);
    get_range(conn, 2, 1, 3, 1);
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 5, 5000), 5);
    CHECK_STREQ(drain(conn), "1r 2r 3r 4 5");

    /* connection close, with both a consumer's and basic.get's unacked messages */
    amqp_connection_state_t other = harness_open(b);
    harness_channel_open(other, 2);
    publish_range(conn, 1, 6);
    amqp_rpc_reply_t r = amqp_basic_get(other, 1, amqp_cstring_bytes(s_q), 0);
    CHECK_REPLY(r);
    CHECK_EQ(r.reply.id, AMQP_BASIC_GET_OK_METHOD);
    amqp_message_t msg;
    CHECK_REPLY(amqp_read_message(other, 1, &msg, 0));
    CHECK_EQ(harness_body_int(msg.body), 1);
    amqp_destroy_message(&msg);
    harness_qos(other, 2, 2, false);
    harness_consume(other, 2, s_q, NULL, 0, amqp_empty_table);
    for (int i = 2; i <= 3; i++) {
        amqp_envelope_t env;
        CHECK(harness_next_delivery(other, 5000, &env));
        CHECK_EQ(harness_body_int(env.message.body), i);
        amqp_destroy_envelope(&env);
    }
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 3, 5000), 3);
    harness_disconnect(other);
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 6, 5000), 6);
    CHECK_STREQ(drain(conn), "1r 2r 3r 4 5 6");
    harness_log("unacked messages return on channel and connection close: ok");
}

int main(void)
{
    harness_broker_t b;
    amqp_connection_state_t conn = harness_begin(&b, 55, NULL);
    s_pid = (int)getpid();
    snprintf(s_q, sizeof s_q, "it-acks-%d", s_pid);

    check_positions(conn);
    check_multiple(conn);
    check_unknown_tags(conn);
    check_recover(conn);
    check_consumer_requeue_and_deleted_queue(conn);
    check_close_returns(&b, conn);
    harness_queue_delete(conn, 1, s_q);
    harness_disconnect(conn);
    return harness_finish(&b);
}
