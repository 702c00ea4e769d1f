/* 60-ext-consumer-timeout — consumer acknowledgement timeout: a channel that holds an unacked
 * delivery longer than the timeout is closed. warrend is started with --consumer-timeout 1000.
 * RabbitMQ's default is 30 minutes (consumer_timeout, in ms), which a test cannot wait for: this
 * test skips (77) against an external broker unless WARREN_TEST_CONSUMER_TIMEOUT_MS says what that
 * broker was configured with (it was checked against RabbitMQ 3.10.8 with consumer_timeout 2000
 * and channel_tick_interval 500 set through rabbitmqctl eval application:set_env: RabbitMQ checks
 * on the channel's tick, by default every 60 s).
 * RabbitMQ 3.10.8 answers (asserted below; T is the timeout in ms, C the channel):
 *  a channel holding a delivery unacked for longer than T, from a consumer or from basic.get,
 *      gets channel.close 406 "PRECONDITION_FAILED - delivery acknowledgement on channel C timed
 *      out. Timeout value used: T ms. This timeout value can be configured, see consumers doc
 *      guide to learn more" with class and method 0; its unacked messages are requeued
 *      (redelivered) and its consumer is gone; other channels of the connection stay open.
 *  a channel that acks each delivery in time stays open however long it consumes; no-ack
 *      deliveries never time out.
 * Warren also takes a queue's own timeout (the x-consumer-timeout argument, or the
 * consumer-timeout policy key) as RabbitMQ 4 does: 0 turns it off for that queue, and on a
 * channel holding deliveries from several queues the one whose timeout comes first closes it
 * (checked against warrend only). */
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
static int s_timeout_ms = 1000;
static char s_q[64];

static void publish(amqp_connection_state_t conn, const char *body)
{
    harness_publish(conn, 1, "", s_q, body);
}

static void consume(amqp_connection_state_t conn, amqp_channel_t ch, bool no_ack)
{
    harness_consume(conn, ch, s_q, NULL, (no_ack ? HARNESS_CONSUME_NO_ACK : 0), amqp_empty_table);
}

/* Wait (at most the timeout + 10 s) for the channel.close of the timeout on ch, which must not
 * come before the timeout has passed since t0 (when the oldest unacked delivery was made). */
static void expect_timeout_close(amqp_connection_state_t conn, amqp_channel_t ch, int64_t t0)
{
    amqp_frame_t f;
    amqp_maybe_release_buffers(conn);
    int st = harness_next_frame(conn, &f, s_timeout_ms + 10000);
    CHECKF(st == 0, "no channel.close within %d ms of an unacked delivery: %s",
           s_timeout_ms + 10000, amqp_error_string2(st));
    int64_t waited = harness_now_ms() - t0;
    CHECKF(f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD,
           "want channel.close, got frame type %u (%s)", f.frame_type,
           f.frame_type == AMQP_FRAME_METHOD ? amqp_method_name(f.payload.method.id) : "-");
    CHECK_EQ(f.channel, ch);
    harness_log("channel %u closed %lld ms after the delivery", ch, (long long)waited);
    CHECKF(waited >= s_timeout_ms - 50, "closed after %lld ms, before the %d ms timeout",
           (long long)waited, s_timeout_ms);
    char text[512];
    snprintf(text, sizeof text,
             "PRECONDITION_FAILED - delivery acknowledgement on channel %u timed out. Timeout "
             "value used: %d ms. This timeout value can be configured, see consumers doc guide "
             "to learn more",
             ch, s_timeout_ms);
    amqp_rpc_reply_t r = {.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION, .reply = f.payload.method};
    harness_expect_channel_close(conn, ch, r, 406, text, 0, 0);
}

/* A consumer that never acks: closed; its messages go to the next consumer. */
static void check_consumer(amqp_connection_state_t conn)
{
    harness_channel_open(conn, 2);
    consume(conn, 2, false);
    publish(conn, "c1");
    publish(conn, "c2");
    int64_t t0 = harness_now_ms();
    harness_expect_message(conn, 2, NULL, "c1", false);
    harness_expect_message(conn, 2, NULL, "c2", false);
    expect_timeout_close(conn, 2, t0);

    /* Channel 1 still works; the queue has both back and no consumer. */
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 2, 5000), 2);
    uint32_t c = 99;
    CHECK_REPLY(harness_queue_peek(conn, 1, s_q, NULL, &c));
    CHECK_EQ(c, 0);
    harness_channel_open(conn, 2);
    consume(conn, 2, true);
    harness_expect_message(conn, 2, NULL, "c1", true);
    harness_expect_message(conn, 2, NULL, "c2", true);
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    harness_log("unacked consumer delivery: channel closed, messages requeued: ok");
}

/* basic.get without ack: the same. */
static void check_get(amqp_connection_state_t conn)
{
    harness_channel_open(conn, 3);
    publish(conn, "g1");
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 1, 5000), 1);
    amqp_rpc_reply_t r = amqp_basic_get(conn, 3, amqp_cstring_bytes(s_q), 0);
    int64_t t0 = harness_now_ms();
    CHECK_REPLY(r);
    CHECK(r.reply.id == AMQP_BASIC_GET_OK_METHOD);
    amqp_message_t msg;
    CHECK_REPLY(amqp_read_message(conn, 3, &msg, 0));
    amqp_destroy_message(&msg);
    expect_timeout_close(conn, 3, t0);
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 1, 5000), 1);
    char got[64];
    CHECK_EQ(harness_drain(conn, 1, s_q, got, sizeof got), 1);
    CHECK_STREQ(got, "g1");
    harness_log("unacked basic.get: channel closed, message requeued: ok");
}

/* Acking in time, and no-ack: no close over more than twice the timeout. A channel of the same
 * connection that does not ack is closed meanwhile, alone. */
static void check_in_time(amqp_connection_state_t conn)
{
    harness_channel_open(conn, 4);
    harness_channel_open(conn, 5);
    consume(conn, 4, false);
    int rounds = 5, step = s_timeout_ms / 2;
    int64_t start = harness_now_ms();
    for (int i = 0; i < rounds; i++) {
        char body[16];
        snprintf(body, sizeof body, "a%d", i);
        publish(conn, body);
        uint64_t tag = harness_expect_message(conn, 4, NULL, body, false);
        CHECK_AMQP(amqp_basic_ack(conn, 4, tag, 0));
        harness_expect_quiet(conn, step, "channel 4, acking in time");
    }
    harness_sync(conn, 4);
    CHECKF(!amqp_frames_enqueued(conn), "something came while acking in time");
    harness_log("acked in time for %lld ms: channel 4 open", (long long)(harness_now_ms() - start));
    CHECK_REPLY(amqp_channel_close(conn, 4, AMQP_REPLY_SUCCESS));

    /* An unacked basic.get on 6; a no-ack consumer on 5 from then on. 6 is closed, its message
     * goes to 5 (redelivered), and 5 stays open for twice the timeout. */
    harness_channel_open(conn, 6);
    publish(conn, "held");
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 1, 5000), 1);
    amqp_rpc_reply_t r = amqp_basic_get(conn, 6, amqp_cstring_bytes(s_q), 0);
    int64_t t0 = harness_now_ms();
    CHECK_REPLY(r);
    CHECK(r.reply.id == AMQP_BASIC_GET_OK_METHOD);
    amqp_message_t msg;
    CHECK_REPLY(amqp_read_message(conn, 6, &msg, 0));
    amqp_destroy_message(&msg);
    consume(conn, 5, true);
    publish(conn, "n1");
    harness_expect_message(conn, 5, NULL, "n1", false);
    expect_timeout_close(conn, 6, t0);
    harness_expect_message(conn, 5, NULL, "held", true);
    harness_expect_quiet(conn, 2 * s_timeout_ms, "no-ack consumer after twice the timeout");
    CHECK_REPLY(amqp_channel_close(conn, 5, AMQP_REPLY_SUCCESS));
    harness_log("no-ack deliveries and acked ones never time out: ok");
}

/* basic.get of q on ch that must return a message, which is left unacked. */
static void get_unacked(amqp_connection_state_t conn, amqp_channel_t ch, const char *q)
{
    amqp_basic_get(conn, ch, amqp_cstring_bytes(q), 0);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    amqp_message_t m;
    CHECK_REPLY(amqp_read_message(conn, ch, &m, 0));
    amqp_destroy_message(&m);
}

/* A queue with x-consumer-timeout n (ms, or -1 for none), declared afresh on channel 1. */
static void declare_with_timeout(amqp_connection_state_t conn, const char *q, int n)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("x-consumer-timeout"),
                            .value = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = n}};
    amqp_table_t args = {.num_entries = n >= 0, .entries = &e};
    amqp_queue_delete(conn, 1, amqp_cstring_bytes(q), 0, 0);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    harness_queue_declare(conn, 1, q, 0, args);
}

/* Per-queue timeouts: a 300 ms queue times out a delivery long before the broker's 1000 ms,
 * even when an older delivery from a queue without its own timeout is held on the same channel;
 * a queue with 0 never times out. */
static void check_queue_timeouts(amqp_connection_state_t conn)
{
    char slow[80], fast[80], never[80];
    snprintf(slow, sizeof slow, "%s-slow", s_q);
    snprintf(fast, sizeof fast, "%s-fast", s_q);
    snprintf(never, sizeof never, "%s-never", s_q);
    declare_with_timeout(conn, slow, -1);
    declare_with_timeout(conn, fast, 300);
    declare_with_timeout(conn, never, 0);
    harness_publish(conn, 1, "", slow, "held (broker's timeout)");
    harness_publish(conn, 1, "", fast, "held (300 ms)");
    harness_publish(conn, 1, "", never, "held (no timeout)");
    harness_channel_open(conn, 4);
    get_unacked(conn, 4, slow);
    int64_t t0 = harness_now_ms();
    get_unacked(conn, 4, fast);
    int saved = s_timeout_ms;
    s_timeout_ms = 300; /* what the close must say, and must not come before */
    expect_timeout_close(conn, 4, t0);
    s_timeout_ms = saved;
    int64_t waited = harness_now_ms() - t0;
    CHECKF(waited < 900, "the 300 ms queue's delivery timed out only after %lld ms",
           (long long)waited);
    /* x-consumer-timeout 0: held past the broker's timeout, the channel stays open. */
    harness_channel_open(conn, 5);
    get_unacked(conn, 5, never);
    usleep(1600 * 1000);
    harness_sync(conn, 5);
    amqp_channel_close(conn, 5, AMQP_REPLY_SUCCESS);
    harness_queue_delete(conn, 1, slow);
    harness_queue_delete(conn, 1, fast);
    harness_queue_delete(conn, 1, never);
}

int main(void)
{
    harness_watchdog(55);
    const char *ext_timeout = getenv("WARREN_TEST_CONSUMER_TIMEOUT_MS");
    harness_broker_t b;
    static const char *const extra[] = {"--consumer-timeout", "1000", NULL};
    harness_broker_start_args(&b, extra);
    if (harness_external(&b)) {
        if (!ext_timeout || atoi(ext_timeout) <= 0) {
            fprintf(stderr, "SKIP: the external broker's consumer timeout is unknown (set "
                            "WARREN_TEST_CONSUMER_TIMEOUT_MS)\n");
            return 77;
        }
        s_timeout_ms = atoi(ext_timeout);
    }
    s_pid = (int)getpid();
    snprintf(s_q, sizeof s_q, "it-consumer-timeout-%d", s_pid);

    amqp_connection_state_t conn = harness_open(&b);
    harness_queue_declare(conn, 1, s_q, 0, amqp_empty_table);
    check_consumer(conn);
    check_get(conn);
    check_in_time(conn);
    if (!harness_external(&b))
        check_queue_timeouts(conn);
    harness_queue_delete(conn, 1, s_q);
    harness_disconnect(conn);
    return harness_finish(&b);
}
