/* 60-ext-sac-exclusive — exclusive consumers (basic.consume exclusive=true) and what happens when
 * the exclusive consumer goes: cancel, channel close, connection close. (40-queue-consume checks
 * the 403 refusals themselves.)
 * RabbitMQ 3.10.8 answers (asserted below; Q is the queue name):
 *  while an exclusive consumer exists every other basic.consume on Q is refused with
 *      channel.close 403 "ACCESS_REFUSED - queue 'Q' in vhost '/' in exclusive use" (60.20), but
 *      basic.get from another connection works and takes a ready message.
 *  after basic.cancel of the exclusive consumer its unacked messages stay with its channel (it
 *      can still ack them) and anyone may consume again, exclusively too: the new consumer gets
 *      the ready messages.
 *  when the exclusive consumer's channel, or connection, closes, its unacked messages are
 *      requeued in their place; a new (exclusive) consumer gets them redelivered, then the rest.
 *  an exclusive consumer that was refused leaves no consumer behind: consumer_count stays 1. */
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
static char s_q[64], s_refused[256];

static void publish_range(amqp_connection_state_t conn, int first, int last)
{
    for (int i = first; i <= last; i++) {
        char body[16];
        snprintf(body, sizeof body, "%d", i);
        harness_publish(conn, 1, "", s_q, body);
    }
}

static amqp_rpc_reply_t try_consume(amqp_connection_state_t conn, amqp_channel_t ch,
                                    const char *tag, bool exclusive)
{
    amqp_basic_consume(conn, ch, amqp_cstring_bytes(s_q), amqp_cstring_bytes(tag), 0, 0,
                       exclusive, amqp_empty_table);
    return amqp_get_rpc_reply(conn);
}

/* A plain and an exclusive consume on ch of conn are both refused (ch is reopened after each). */
static void expect_refused(amqp_connection_state_t conn, amqp_channel_t ch)
{
    harness_expect_channel_close(conn, ch, try_consume(conn, ch, "refused", false), 403,
                                 s_refused, 60, 20);
    harness_channel_open(conn, ch);
    harness_expect_channel_close(conn, ch, try_consume(conn, ch, "refused", true), 403,
                                 s_refused, 60, 20);
    harness_channel_open(conn, ch);
}

static void expect_counts(amqp_connection_state_t conn, uint32_t messages, uint32_t consumers)
{
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, messages, 5000), messages);
    uint32_t c = 99;
    CHECK_REPLY(harness_queue_peek(conn, 1, s_q, NULL, &c));
    CHECK_EQ(c, consumers);
}

int main(void)
{
    harness_broker_t b;
    amqp_connection_state_t conn = harness_begin(&b, 55, NULL);
    s_pid = (int)getpid();
    snprintf(s_q, sizeof s_q, "it-excl-consumer-%d", s_pid);
    snprintf(s_refused, sizeof s_refused,
             "ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use", s_q);
    harness_queue_declare(conn, 1, s_q, 0, amqp_empty_table);
    amqp_connection_state_t other = harness_open(&b);

    /* e1 (prefetch 2) holds 1 and 2; 3 and 4 are ready. Others are refused; basic.get works. */
    amqp_connection_state_t ec = harness_open(&b);
    harness_qos(ec, 1, 2, false);
    CHECK_REPLY(try_consume(ec, 1, "e1", true));
    publish_range(conn, 1, 5);
    uint64_t t1 = harness_expect_delivery(ec, "e1", 1, false);
    harness_expect_delivery(ec, "e1", 2, false);
    expect_counts(conn, 3, 1);
    expect_refused(other, 1);
    harness_channel_open(ec, 2);
    expect_refused(ec, 2);
    expect_counts(conn, 3, 1);
    amqp_rpc_reply_t r = amqp_basic_get(other, 1, amqp_cstring_bytes(s_q), 1);
    CHECK_REPLY(r);
    CHECKF(r.reply.id == AMQP_BASIC_GET_OK_METHOD, "basic.get beside an exclusive consumer: %s",
           amqp_method_name(r.reply.id));
    amqp_message_t msg;
    CHECK_REPLY(amqp_read_message(other, 1, &msg, 0));
    CHECK(harness_bytes_is(msg.body, "3"));
    amqp_destroy_message(&msg);
    expect_counts(conn, 2, 1);

    /* Cancel e1: it keeps 1 and 2; other consumes (not exclusively) and gets 4 and 5. */
    harness_cancel(ec, 1, "e1");
    expect_counts(conn, 2, 0);
    CHECK_REPLY(try_consume(other, 1, "o1", false));
    harness_expect_delivery(other, "o1", 4, false);
    harness_expect_delivery(other, "o1", 5, false);
    CHECK_AMQP(amqp_basic_ack(ec, 1, t1 + 1, 1));
    harness_sync(ec, 1);
    CHECK_AMQP(amqp_basic_ack(other, 1, 0, 1));
    harness_sync(other, 1);
    harness_cancel(other, 1, "o1");
    expect_counts(conn, 0, 0);
    harness_log("exclusive consumer cancelled: others may consume: ok");

    /* e2 on channel 3 of ec holds 6 and 7 (prefetch 2), 8 is ready; its channel closes: an
     * exclusive consumer on other gets 6 7 redelivered, then 8. */
    harness_channel_open(ec, 3);
    harness_qos(ec, 3, 2, false);
    CHECK_REPLY(try_consume(ec, 3, "e2", true));
    publish_range(conn, 6, 8);
    harness_expect_delivery(ec, "e2", 6, false);
    harness_expect_delivery(ec, "e2", 7, false);
    expect_counts(conn, 1, 1);
    expect_refused(other, 1);
    CHECK_REPLY(amqp_channel_close(ec, 3, AMQP_REPLY_SUCCESS));
    expect_counts(conn, 3, 0);
    CHECK_REPLY(try_consume(other, 1, "o2", true));
    harness_expect_delivery(other, "o2", 6, true);
    harness_expect_delivery(other, "o2", 7, true);
    harness_expect_delivery(other, "o2", 8, false);
    harness_log("exclusive consumer's channel closed: requeued to the next one: ok");

    /* o2 is exclusive now: ec is refused; other's connection closes holding 6 7 8 and 9: ec
     * consumes exclusively and gets them all redelivered. */
    publish_range(conn, 9, 9);
    harness_expect_delivery(other, "o2", 9, false);
    expect_refused(ec, 2);
    harness_disconnect(other);
    CHECK_REPLY(try_consume(ec, 2, "e3", true));
    for (int i = 6; i <= 9; i++)
        harness_expect_delivery(ec, "e3", i, true);
    CHECK_AMQP(amqp_basic_ack(ec, 2, 0, 1));
    harness_sync(ec, 2);
    expect_counts(conn, 0, 1);
    harness_expect_quiet(ec, 200, "after the last delivery");
    harness_log("exclusive consumer's connection closed: requeued to the next one: ok");

    harness_disconnect(ec);
    expect_counts(conn, 0, 0);
    harness_queue_delete(conn, 1, s_q);
    harness_disconnect(conn);
    return harness_finish(&b);
}
