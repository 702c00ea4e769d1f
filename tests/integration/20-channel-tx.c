/* 20-channel-tx — transactions: tx.select / tx.commit / tx.rollback for publishes and for
 * acknowledgements, and commit/rollback on a channel that is not transactional.
 * RabbitMQ 3.10.8 answers (asserted below):
 *  tx.commit / tx.rollback without tx.select: channel.close 406 "PRECONDITION_FAILED - channel
 *      is not transactional" (90.20 / 90.30).
 *  publishes in a transaction reach no queue before tx.commit; tx.rollback discards them; a
 *      channel closed with an open transaction discards them too. A mandatory unroutable
 *      publish is returned (312 NO_ROUTE) at commit, before commit-ok, not at publish time.
 *  acks (and rejects) in a transaction take effect at tx.commit: closing the channel before it
 *      returns every message; after tx.rollback the messages are still unacked and
 *      basic.recover(requeue=true) puts them back, redelivered. Every commit or rollback starts
 *      the next transaction on the same channel. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static char s_q[64];

static void publish(amqp_connection_state_t conn, amqp_channel_t ch, const char *body)
{
    harness_publish(conn, ch, "", s_q, body);
}

/* The ready messages in the queue (a passive declare on channel 1). */
static uint32_t ready(amqp_connection_state_t conn)
{
    return harness_queue_count(conn, 1, s_q);
}

/* basic.get, no-ack, until empty: bodies with "r" for redelivered, space separated. */
static const char *drain(amqp_connection_state_t conn)
{
    static char out[512];
    harness_drain_marked(conn, 1, s_q, out, sizeof out);
    harness_log("queue holds: \"%s\"", out);
    return out;
}

static void check_not_transactional(amqp_connection_state_t conn)
{
    harness_channel_open(conn, 2);
    amqp_tx_commit(conn, 2);
    harness_expect_channel_close(conn, 2, amqp_get_rpc_reply(conn), 406,
                                 "PRECONDITION_FAILED - channel is not transactional", 90, 20);
    harness_channel_open(conn, 2);
    amqp_tx_rollback(conn, 2);
    harness_expect_channel_close(conn, 2, amqp_get_rpc_reply(conn), 406,
                                 "PRECONDITION_FAILED - channel is not transactional", 90, 30);
    harness_log("commit/rollback without select: ok");
}

static void check_publishes(amqp_connection_state_t conn)
{
    harness_channel_open(conn, 2);
    harness_tx(conn, 2, 's');
    harness_tx(conn, 2, 's'); /* again: fine */
    publish(conn, 2, "a");
    publish(conn, 2, "b");
    publish(conn, 2, "c");
    harness_sync(conn, 2); /* the publishes have been handled when the reply comes */
    CHECK_EQ(ready(conn), 0);
    harness_tx(conn, 2, 'c');
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 3, 5000), 3);
    CHECK_STREQ(drain(conn), "a b c");

    /* rollback discards; the next transaction starts empty */
    publish(conn, 2, "d");
    publish(conn, 2, "e");
    harness_tx(conn, 2, 'r');
    harness_tx(conn, 2, 'c');
    CHECK_EQ(ready(conn), 0);
    publish(conn, 2, "f");
    harness_tx(conn, 2, 'c');
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 1, 5000), 1);
    CHECK_STREQ(drain(conn), "f");

    /* a channel closed mid-transaction discards it */
    publish(conn, 2, "g");
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    CHECK_EQ(ready(conn), 0);

    /* mandatory and unroutable: returned at commit, before commit-ok */
    harness_channel_open(conn, 2);
    harness_tx(conn, 2, 's');
    char nowhere[96];
    snprintf(nowhere, sizeof nowhere, "%s-nowhere", s_q);
    harness_publish_props(conn, 2, "", nowhere, true, NULL, "unroutable");
    harness_sync(conn, 2);
    harness_expect_quiet(conn, 300, "basic.return before tx.commit");
    amqp_tx_commit(conn, 2);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    /* rabbitmq-c kept the basic.return it read while waiting for commit-ok */
    CHECKF(amqp_frames_enqueued(conn), "no basic.return before commit-ok");
    amqp_frame_t f;
    CHECK_AMQP(harness_next_frame(conn, &f, 1000));
    CHECKF(f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_RETURN_METHOD,
           "want basic.return");
    CHECK_EQ(((amqp_basic_return_t *)f.payload.method.decoded)->reply_code, 312);
    amqp_message_t msg;
    CHECK_REPLY(amqp_read_message(conn, 2, &msg, 0));
    CHECK(msg.body.len == 10 && memcmp(msg.body.bytes, "unroutable", 10) == 0);
    amqp_destroy_message(&msg);
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    harness_log("transactional publishes: ok");
}

static void get3(amqp_connection_state_t conn, amqp_channel_t ch, bool redelivered)
{
    for (int i = 1; i <= 3; i++) {
        amqp_rpc_reply_t r = amqp_basic_get(conn, ch, amqp_cstring_bytes(s_q), 0);
        CHECK_REPLY(r);
        CHECK_EQ(r.reply.id, AMQP_BASIC_GET_OK_METHOD);
        amqp_basic_get_ok_t *ok = r.reply.decoded;
        CHECK_EQ(ok->redelivered, redelivered);
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(conn, ch, &msg, 0));
        amqp_destroy_message(&msg);
    }
}

static void fill3(amqp_connection_state_t conn)
{
    publish(conn, 1, "1");
    publish(conn, 1, "2");
    publish(conn, 1, "3");
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 3, 5000), 3);
}

static void check_acks(amqp_connection_state_t conn)
{
    /* acks not committed: closing the channel returns all three */
    fill3(conn);
    harness_channel_open(conn, 2);
    harness_tx(conn, 2, 's');
    get3(conn, 2, false);
    CHECK_AMQP(amqp_basic_ack(conn, 2, 1, 0));
    CHECK_AMQP(amqp_basic_ack(conn, 2, 3, 0));
    harness_sync(conn, 2);
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 3, 5000), 3);

    /* committed: they are gone */
    harness_channel_open(conn, 2);
    harness_tx(conn, 2, 's');
    get3(conn, 2, true);
    CHECK_AMQP(amqp_basic_ack(conn, 2, 1, 0));
    CHECK_AMQP(amqp_basic_ack(conn, 2, 3, 0));
    harness_tx(conn, 2, 'c');
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 1, 5000), 1);
    CHECK_STREQ(drain(conn), "2r");

    /* rolled back: still unacked; recover puts them back */
    fill3(conn);
    harness_channel_open(conn, 2);
    harness_tx(conn, 2, 's');
    get3(conn, 2, false);
    CHECK_AMQP(amqp_basic_ack(conn, 2, 3, 1));
    harness_tx(conn, 2, 'r');
    CHECK_EQ(ready(conn), 0);
    amqp_basic_recover(conn, 2, 1);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 3, 5000), 3);
    CHECK_STREQ(drain(conn), "1r 2r 3r");

    /* a reject with requeue in a transaction: the message comes back at commit */
    fill3(conn);
    get3(conn, 2, false); /* tags 4, 5, 6 (the channel's numbering goes on) */
    CHECK_AMQP(amqp_basic_reject(conn, 2, 5, 1));
    CHECK_AMQP(amqp_basic_ack(conn, 2, 4, 0));
    harness_sync(conn, 2);
    CHECK_EQ(ready(conn), 0);
    harness_tx(conn, 2, 'c');
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 1, 5000), 1);
    CHECK_STREQ(drain(conn), "2r");
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS)); /* 3 comes back */
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 1, 5000), 1);
    CHECK_STREQ(drain(conn), "3r");
    harness_log("transactional acks: ok");
}

int main(void)
{
    harness_broker_t b;
    amqp_connection_state_t conn = harness_begin(&b, 55, NULL);
    snprintf(s_q, sizeof s_q, "it-tx-%d", (int)getpid());

    harness_queue_declare(conn, 1, s_q, 0, amqp_empty_table);
    check_not_transactional(conn);
    check_publishes(conn);
    check_acks(conn);
    harness_queue_delete(conn, 1, s_q);
    harness_disconnect(conn);
    return harness_finish(&b);
}
