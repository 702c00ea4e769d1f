/* 20-channel-many — 200 channels on one connection, channel exceptions, channel.flow.
 * - 200 channels are opened, then (interleaved across channels) each declares its own queue,
 *   publishes one message to it and gets it back on its own channel; then all are closed.
 *   Deliveries are counted and must total exactly 200.
 * - A channel exception closes only that channel (RabbitMQ 3.10.8: basic.get on a missing queue
 *   -> channel.close 404 "NOT_FOUND - no queue 'NAME' in vhost '/'" class 60 method 70; passive
 *   queue.declare -> the same text, class 50 method 10); the other channels keep working and the
 *   channel number can be opened again after close-ok.
 * - channel.flow active=true -> flow-ok active=true. RabbitMQ 3.x does not implement
 *   active=false: connection.close 540 "NOT_IMPLEMENTED - active=false" class 20 method 20. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

#define NCHAN 200

static char queue_names[NCHAN + 1][64];

static void publish_and_get(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                            const char *body)
{
    harness_publish_get(conn, ch, amqp_cstring_bytes(queue), amqp_cstring_bytes(body));
}

static void check_many_channels(const harness_broker_t *b)
{
    amqp_connection_state_t conn = harness_connect(b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    CHECK_EQ(amqp_get_channel_max(conn), 2047);

    for (amqp_channel_t ch = 1; ch <= NCHAN; ch++)
        harness_channel_open(conn, ch);
    for (amqp_channel_t ch = 1; ch <= NCHAN; ch++) {
        snprintf(queue_names[ch], sizeof queue_names[ch], "it-many-%d-%u", (int)getpid(), ch);
        amqp_queue_declare_ok_t *ok = amqp_queue_declare(
            conn, ch, amqp_cstring_bytes(queue_names[ch]), 0, 0, 1, 1, amqp_empty_table);
        CHECK_REPLY(amqp_get_rpc_reply(conn));
        CHECK(ok->queue.len == strlen(queue_names[ch]) &&
              memcmp(ok->queue.bytes, queue_names[ch], ok->queue.len) == 0);
        CHECK_EQ(ok->message_count, 0);
        CHECK_EQ(ok->consumer_count, 0);
    }
    for (amqp_channel_t ch = 1; ch <= NCHAN; ch++) {
        char body[64];
        snprintf(body, sizeof body, "message on channel %u", ch);
        harness_publish(conn, ch, "", queue_names[ch], body);
    }
    int got = 0;
    for (amqp_channel_t ch = NCHAN; ch >= 1; ch--) {
        amqp_rpc_reply_t r = amqp_basic_get(conn, ch, amqp_cstring_bytes(queue_names[ch]), 0);
        CHECK_REPLY(r);
        CHECKF(r.reply.id == AMQP_BASIC_GET_OK_METHOD, "channel %u: basic.get got %s", ch,
               amqp_method_name(r.reply.id));
        amqp_basic_get_ok_t *gok = r.reply.decoded;
        CHECK_EQ(gok->message_count, 0);
        CHECK_EQ(gok->delivery_tag, 1); /* delivery tags count per channel */
        CHECK(!gok->redelivered);
        CHECK(gok->exchange.len == 0);
        CHECK(gok->routing_key.len == strlen(queue_names[ch]) &&
              memcmp(gok->routing_key.bytes, queue_names[ch], gok->routing_key.len) == 0);
        uint64_t tag = gok->delivery_tag;
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(conn, ch, &msg, 0));
        char body[64];
        snprintf(body, sizeof body, "message on channel %u", ch);
        CHECKF(msg.body.len == strlen(body) && memcmp(msg.body.bytes, body, msg.body.len) == 0,
               "channel %u got \"%.*s\"", ch, (int)msg.body.len, (const char *)msg.body.bytes);
        amqp_destroy_message(&msg);
        CHECK_AMQP(amqp_basic_ack(conn, ch, tag, 0));
        got++;
    }
    CHECK_EQ(got, NCHAN);
    /* Acks are async: a synchronous round trip per channel proves none of them broke it. */
    for (amqp_channel_t ch = 1; ch <= NCHAN; ch++) {
        amqp_queue_declare_ok_t *ok = amqp_queue_declare(
            conn, ch, amqp_cstring_bytes(queue_names[ch]), 1, 0, 0, 0, amqp_empty_table);
        CHECK_REPLY(amqp_get_rpc_reply(conn));
        CHECK_EQ(ok->message_count, 0);
    }
    for (amqp_channel_t ch = 1; ch <= NCHAN; ch++)
        CHECK_REPLY(amqp_channel_close(conn, ch, AMQP_REPLY_SUCCESS));
    harness_log("%d channels: opened, declared, published, got %d, closed", NCHAN, got);
    harness_disconnect(conn);
}

static void check_channel_exception(const harness_broker_t *b)
{
    amqp_connection_state_t conn = harness_connect(b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    for (amqp_channel_t ch = 1; ch <= 3; ch++)
        harness_channel_open(conn, ch);
    char good[64], missing[64], text[160];
    snprintf(good, sizeof good, "it-exc-%d", (int)getpid());
    snprintf(missing, sizeof missing, "it-missing-%d", (int)getpid());
    harness_queue_declare(conn, 2, good, HARNESS_QUEUE_EXCLUSIVE | HARNESS_QUEUE_AUTO_DELETE,
                          amqp_empty_table);

    snprintf(text, sizeof text, "NOT_FOUND - no queue '%s' in vhost '/'", missing);
    amqp_rpc_reply_t r = amqp_basic_get(conn, 1, amqp_cstring_bytes(missing), 1);
    harness_expect_channel_close(conn, 1, r, 404, text, 60, 70);

    /* The other channels are untouched. */
    publish_and_get(conn, 2, good, "after the 404 on channel 1");
    publish_and_get(conn, 3, good, "channel 3 too");

    /* Passive declare of a missing queue: same 404, now naming queue.declare. */
    amqp_queue_declare(conn, 3, amqp_cstring_bytes(missing), 1, 0, 0, 0, amqp_empty_table);
    harness_expect_channel_close(conn, 3, amqp_get_rpc_reply(conn), 404, text, 50, 10);
    publish_and_get(conn, 2, good, "after the 404 on channel 3");

    /* Closed channels can be opened again after close-ok. */
    harness_channel_open(conn, 1);
    harness_channel_open(conn, 3);
    publish_and_get(conn, 1, good, "reopened channel 1");
    publish_and_get(conn, 3, good, "reopened channel 3");

    /* channel.flow active=true is answered with flow-ok active=true. */
    amqp_channel_flow_ok_t *fok = amqp_channel_flow(conn, 2, 1);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    CHECK(fok != NULL);
    CHECK_EQ(fok->active, 1);
    publish_and_get(conn, 2, good, "after channel.flow");

    for (amqp_channel_t ch = 1; ch <= 3; ch++)
        CHECK_REPLY(amqp_channel_close(conn, ch, AMQP_REPLY_SUCCESS));
    harness_disconnect(conn);
}

/* channel.flow active=false is a connection exception in RabbitMQ 3.x. */
static void check_flow_false(const harness_broker_t *b)
{
    amqp_connection_state_t conn = harness_open(b);
    amqp_channel_flow(conn, 1, 0);
    harness_expect_connection_close(conn, amqp_get_rpc_reply(conn), 540,
                                    "NOT_IMPLEMENTED - active=false", 20, 20);
}

int main(void)
{
    harness_watchdog(55);
    harness_broker_t b;
    harness_broker_start(&b);

    check_many_channels(&b);
    check_channel_exception(&b);
    check_flow_false(&b);

    return harness_finish(&b);
}
