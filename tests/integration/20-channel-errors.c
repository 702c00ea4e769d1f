/* 20-channel-errors — channel exceptions 403, 404, 405, 406: each closes only its channel with
 * RabbitMQ's code, text and class/method ids; a second connection and the other channels of the
 * same connection keep working, and the channel can be opened again.
 * RabbitMQ 3.10.8 answers (asserted below):
 *  403 queue.declare "amq.x": "ACCESS_REFUSED - queue name 'amq.x' contains reserved prefix
 *      'amq.*'" (50.10)
 *  404 basic.publish to a missing exchange: "NOT_FOUND - no exchange 'E' in vhost '/'" (60.40)
 *  405 queue.declare of another connection's exclusive queue: "RESOURCE_LOCKED - cannot obtain
 *      exclusive access to locked queue 'Q' in vhost '/'. It could be originally declared on
 *      another connection or the exclusive property value does not match that of the original
 *      declaration." (50.10)
 *  406 queue.declare with another durable flag: "PRECONDITION_FAILED - inequivalent arg
 *      'durable' for queue 'Q' in vhost '/': received 'true' but current is 'false'" (50.10)
 *  406 basic.ack of an unknown delivery tag: "PRECONDITION_FAILED - unknown delivery tag 42"
 *      (60.80)
 *  406 basic.publish with user_id other than the login: "PRECONDITION_FAILED - user_id property
 *      set to 'bob' but authenticated user was 'guest'" (60.40)
 * Asynchronous methods (publish, ack) have no reply: the channel.close is seen by the next
 * synchronous method on that channel. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static char s_queue[64];
static char s_text[512];

/* A synchronous round trip on ch; returns its reply (normal, or the pending channel.close). */
static amqp_rpc_reply_t sync_on(amqp_connection_state_t conn, amqp_channel_t ch)
{
    amqp_queue_declare(conn, ch, amqp_cstring_bytes(s_queue), 1, 0, 0, 0, amqp_empty_table);
    return amqp_get_rpc_reply(conn);
}

static void reopen_and_check(amqp_connection_state_t conn, amqp_channel_t ch)
{
    harness_channel_open(conn, ch);
    CHECK_REPLY(sync_on(conn, ch));
    CHECK_REPLY(sync_on(conn, 9)); /* the bystander channel never noticed */
}

int main(void)
{
    harness_watchdog(50);
    harness_broker_t b;
    harness_broker_start(&b);

    amqp_connection_state_t conn = harness_connect(&b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    amqp_connection_state_t other = harness_connect(&b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    harness_channel_open(conn, 1);
    harness_channel_open(conn, 9);
    harness_channel_open(other, 1);
    snprintf(s_queue, sizeof s_queue, "it-errors-%d", (int)getpid());
    harness_queue_declare(conn, 1, s_queue, HARNESS_QUEUE_AUTO_DELETE, amqp_empty_table);

    /* 403: reserved name prefix */
    amqp_queue_declare(conn, 1, amqp_cstring_bytes("amq.x"), 0, 0, 0, 1, amqp_empty_table);
    harness_expect_channel_close(
        conn, 1, amqp_get_rpc_reply(conn), 403,
        "ACCESS_REFUSED - queue name 'amq.x' contains reserved prefix 'amq.*'", 50, 10);
    reopen_and_check(conn, 1);

    /* 404: publish to an exchange that does not exist */
    char exchange[64];
    snprintf(exchange, sizeof exchange, "it-no-exchange-%d", (int)getpid());
    harness_publish(conn, 1, exchange, s_queue, "lost");
    snprintf(s_text, sizeof s_text, "NOT_FOUND - no exchange '%s' in vhost '/'", exchange);
    harness_expect_channel_close(conn, 1, sync_on(conn, 1), 404, s_text, 60, 40);
    reopen_and_check(conn, 1);

    /* 405: someone else's exclusive queue */
    char excl[64];
    snprintf(excl, sizeof excl, "it-exclusive-%d", (int)getpid());
    harness_queue_declare(other, 1, excl, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    amqp_queue_declare(conn, 1, amqp_cstring_bytes(excl), 0, 0, 1, 0, amqp_empty_table);
    snprintf(s_text, sizeof s_text,
             "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '%s' in vhost "
             "'/'. It could be originally declared on another connection or the exclusive "
             "property value does not match that of the original declaration.",
             excl);
    harness_expect_channel_close(conn, 1, amqp_get_rpc_reply(conn), 405, s_text, 50, 10);
    reopen_and_check(conn, 1);

    /* 406: inequivalent durable flag */
    amqp_queue_declare(conn, 1, amqp_cstring_bytes(s_queue), 0, 1, 0, 1, amqp_empty_table);
    snprintf(s_text, sizeof s_text,
             "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '%s' in vhost '/': "
             "received 'true' but current is 'false'",
             s_queue);
    harness_expect_channel_close(conn, 1, amqp_get_rpc_reply(conn), 406, s_text, 50, 10);
    reopen_and_check(conn, 1);

    /* 406: ack of a delivery tag never handed out */
    CHECK_AMQP(amqp_basic_ack(conn, 1, 42, 0));
    harness_expect_channel_close(conn, 1, sync_on(conn, 1), 406,
                                 "PRECONDITION_FAILED - unknown delivery tag 42", 60, 80);
    reopen_and_check(conn, 1);

    /* 406: user_id that is not the authenticated user */
    amqp_basic_properties_t props;
    memset(&props, 0, sizeof props);
    props._flags = AMQP_BASIC_USER_ID_FLAG;
    props.user_id = amqp_cstring_bytes("bob");
    harness_publish_props(conn, 1, "", s_queue, false, &props, "from bob");
    harness_expect_channel_close(
        conn, 1, sync_on(conn, 1), 406,
        "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'",
        60, 40);
    reopen_and_check(conn, 1);

    /* None of it reached the queue, and the other connection was never disturbed. */
    amqp_queue_declare_ok_t *ok =
        amqp_queue_declare(conn, 9, amqp_cstring_bytes(s_queue), 1, 0, 0, 0, amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    CHECK_EQ(ok->message_count, 0);
    amqp_queue_declare(other, 1, amqp_cstring_bytes(excl), 1, 0, 0, 0, amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(other));

    harness_disconnect(other);
    harness_disconnect(conn);
    return harness_finish(&b);
}
