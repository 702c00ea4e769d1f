/* 60-ext-reply-to — direct reply-to: the amq.rabbitmq.reply-to pseudo-queue.
 * RabbitMQ 3.10.8 answers (asserted below; RT is "amq.rabbitmq.reply-to"):
 *  basic.consume RT with no-ack: consume-ok with the client's tag. Without no-ack: channel.close
 *      406 "PRECONDITION_FAILED - reply consumer cannot acknowledge" (60.20); a second RT consumer
 *      on the same channel: 406 "PRECONDITION_FAILED - reply consumer already set" (60.20).
 *  basic.publish with reply_to RT on a channel that has no RT consumer (never had, or cancelled
 *      it): channel.close 406 "PRECONDITION_FAILED - fast reply consumer does not exist" (60.40).
 *  a publish with reply_to RT from the consuming channel reaches the server with reply_to
 *      rewritten to "amq.rabbitmq.reply-to.<opaque>" (91 characters here: two base64 parts
 *      separated by a dot), the same for every request of that channel, different for another
 *      requester; the other properties are untouched. reply_to other than RT is not rewritten.
 *  a reply published to the default exchange with that routing key, from any connection, is
 *      delivered to the requester: its consumer tag, redelivered false, exchange "", routing key
 *      the full name, properties as published; its delivery tag is the channel's next delivery
 *      tag, which it does not use up (replies on a fresh channel all have tag 1; after two
 *      basic.get deliveries the reply has 3, and so does the next basic.get).
 *  with mandatory set, that reply is delivered AND returned to the replier as basic.return 312
 *      "NO_ROUTE" (RabbitMQ routes it outside any queue, then finds no queue). Warren must do the
 *      same: see check_mandatory_live.
 *  passive queue.declare of RT, or of a live reply name: declare-ok with that name, 0 messages, 1
 *      consumer (also when the channel has no RT consumer, for RT itself).
 *  unroutable (dropped, or with mandatory returned 312 "NO_ROUTE" with exchange and routing key
 *      as published): a reply name through amq.direct; a reply name with a character added;
 *      "amq.rabbitmq.reply-to.garbage"; RT itself; a reply name after its consumer was cancelled
 *      (also once the channel consumes RT again: the new consumer has a new name), after its
 *      channel closed and after its connection closed. The replier's channel stays open. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

#define RT "amq.rabbitmq.reply-to"

static int s_pid;
static char s_rpcq[64];

static amqp_rpc_reply_t consume_rt(amqp_connection_state_t conn, amqp_channel_t ch,
                                   const char *tag, bool no_ack)
{
    amqp_basic_consume_ok_t *ok = amqp_basic_consume(conn, ch, amqp_cstring_bytes(RT),
                                                     amqp_cstring_bytes(tag), 0, no_ack, 0,
                                                     amqp_empty_table);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        CHECKF(harness_bytes_is(ok->consumer_tag, tag), "consume-ok tag %.*s",
               (int)ok->consumer_tag.len, (const char *)ok->consumer_tag.bytes);
    return r;
}

/* Publish body to exchange/rk with reply_to (NULL: none) and correlation_id "corr-<body>". */
static void publish(amqp_connection_state_t conn, amqp_channel_t ch, const char *exchange,
                    const char *rk, bool mandatory, const char *reply_to, const char *body)
{
    char corr[64];
    snprintf(corr, sizeof corr, "corr-%s", body);
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof p);
    p._flags = AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    p.correlation_id = amqp_cstring_bytes(corr);
    p.content_type = amqp_cstring_bytes("text/plain");
    if (reply_to) {
        p._flags |= AMQP_BASIC_REPLY_TO_FLAG;
        p.reply_to = amqp_cstring_bytes(reply_to);
    }
    harness_publish_props(conn, ch, exchange, rk, mandatory, &p, body);
}

/* The next frame on conn must be a channel.close with this code and text; answer it. */
static void expect_async_close(amqp_connection_state_t conn, amqp_channel_t ch, uint16_t code,
                               const char *text, uint16_t class_id, uint16_t method_id)
{
    amqp_frame_t f;
    int st = harness_next_frame(conn, &f, 5000);
    CHECKF(st == 0, "waiting for channel.close %u: %s", code, amqp_error_string2(st));
    CHECKF(f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD,
           "want channel.close, got frame type %u (%s)", f.frame_type,
           f.frame_type == AMQP_FRAME_METHOD ? amqp_method_name(f.payload.method.id) : "-");
    CHECK_EQ(f.channel, ch);
    amqp_rpc_reply_t r = {.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION, .reply = f.payload.method};
    harness_expect_channel_close(conn, ch, r, code, text, class_id, method_id);
}

/* basic.get the next request from the rpc queue (no-ack) and return its body and reply_to. */
static void get_request(amqp_connection_state_t conn, char *body, size_t bcap, char *reply_to,
                        size_t rcap)
{
    harness_got_t g;
    CHECKF(harness_get_wait(conn, 1, s_rpcq, true, 5000, &g), "no request in %s after 5 s",
           s_rpcq);
    amqp_message_t msg = g.msg;
    snprintf(body, bcap, "%.*s", (int)msg.body.len, (const char *)msg.body.bytes);
    CHECKF(msg.properties._flags & AMQP_BASIC_REPLY_TO_FLAG, "request %s has no reply_to", body);
    snprintf(reply_to, rcap, "%.*s", (int)msg.properties.reply_to.len,
             (const char *)msg.properties.reply_to.bytes);
    char corr[64];
    snprintf(corr, sizeof corr, "corr-%s", body);
    CHECK((msg.properties._flags & AMQP_BASIC_CORRELATION_ID_FLAG) &&
          harness_bytes_is(msg.properties.correlation_id, corr));
    CHECK((msg.properties._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) &&
          harness_bytes_is(msg.properties.content_type, "text/plain"));
    harness_got_free(&g);
}

/* The next delivery on conn is the reply body for consumer tag on ch, routed with name. */
static void expect_reply(amqp_connection_state_t conn, amqp_channel_t ch, const char *tag,
                         uint64_t dtag, const char *name, const char *body)
{
    amqp_envelope_t env;
    struct timeval tv = {.tv_sec = 5};
    amqp_maybe_release_buffers(conn);
    amqp_rpc_reply_t r = amqp_consume_message(conn, &env, &tv, 0);
    char buf[512];
    CHECKF(r.reply_type == AMQP_RESPONSE_NORMAL, "waiting for reply %s: %s", body,
           harness_reply_str(r, buf, sizeof buf));
    CHECKF(harness_bytes_is(env.message.body, body), "reply %.*s, want %s", (int)env.message.body.len,
           (const char *)env.message.body.bytes, body);
    CHECK_EQ(env.channel, ch);
    CHECK(harness_bytes_is(env.consumer_tag, tag));
    CHECKF(env.delivery_tag == dtag, "reply %s: delivery tag %llu, want %llu", body,
           (unsigned long long)env.delivery_tag, (unsigned long long)dtag);
    CHECK(!env.redelivered);
    CHECK(harness_bytes_is(env.exchange, ""));
    CHECKF(harness_bytes_is(env.routing_key, name), "routing key %.*s", (int)env.routing_key.len,
           (const char *)env.routing_key.bytes);
    char corr[64];
    snprintf(corr, sizeof corr, "corr-%s", body);
    CHECK((env.message.properties._flags & AMQP_BASIC_CORRELATION_ID_FLAG) &&
          harness_bytes_is(env.message.properties.correlation_id, corr));
    CHECK(!(env.message.properties._flags & AMQP_BASIC_REPLY_TO_FLAG));
    amqp_destroy_envelope(&env);
}

/* The next frame on conn is basic.return 312 NO_ROUTE of body, on ch, exchange/rk as given. */
static void expect_return(amqp_connection_state_t conn, amqp_channel_t ch, const char *exchange,
                          const char *rk, const char *body)
{
    amqp_frame_t f;
    amqp_maybe_release_buffers(conn);
    int st = harness_next_frame(conn, &f, 5000);
    CHECKF(st == 0, "waiting for the return of %s: %s", body, amqp_error_string2(st));
    CHECKF(f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_RETURN_METHOD,
           "want basic.return of %s, got frame type %u (%s)", body, f.frame_type,
           f.frame_type == AMQP_FRAME_METHOD ? amqp_method_name(f.payload.method.id) : "-");
    CHECK_EQ(f.channel, ch);
    amqp_basic_return_t *ret = f.payload.method.decoded;
    CHECK_EQ(ret->reply_code, 312);
    CHECK(harness_bytes_is(ret->reply_text, "NO_ROUTE"));
    CHECK(harness_bytes_is(ret->exchange, exchange));
    CHECKF(harness_bytes_is(ret->routing_key, rk), "returned with routing key %.*s",
           (int)ret->routing_key.len, (const char *)ret->routing_key.bytes);
    amqp_message_t msg;
    CHECK_REPLY(amqp_read_message(conn, ch, &msg, 0));
    CHECKF(harness_bytes_is(msg.body, body), "returned %.*s, want %s", (int)msg.body.len,
           (const char *)msg.body.bytes, body);
    amqp_destroy_message(&msg);
}

/* A reply that cannot be routed: with mandatory it comes back, without it vanishes; the
 * replier's channel 1 stays open either way and the requester (may be NULL) gets nothing. */
static void expect_unroutable(amqp_connection_state_t replier, amqp_connection_state_t requester,
                              const char *exchange, const char *rk, const char *body)
{
    publish(replier, 1, exchange, rk, true, NULL, body);
    expect_return(replier, 1, exchange, rk, body);
    publish(replier, 1, exchange, rk, false, NULL, body);
    harness_sync(replier, 1);
    CHECKF(!amqp_frames_enqueued(replier), "something came back for non-mandatory %s", body);
    if (requester)
        harness_expect_quiet(requester, 100, "an unroutable reply");
}

static void expect_declare_ok(amqp_connection_state_t conn, amqp_channel_t ch, const char *name)
{
    amqp_queue_declare_ok_t *ok =
        amqp_queue_declare(conn, ch, amqp_cstring_bytes(name), 1, 0, 0, 0, amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    CHECKF(harness_bytes_is(ok->queue, name), "declare-ok names %.*s", (int)ok->queue.len,
           (const char *)ok->queue.bytes);
    CHECK_EQ(ok->message_count, 0);
    CHECK_EQ(ok->consumer_count, 1);
}

/* The refusals on the requester's side. */
static void check_errors(const harness_broker_t *b)
{
    amqp_connection_state_t conn = harness_open(b);
    expect_declare_ok(conn, 1, RT);

    publish(conn, 1, "", s_rpcq, false, RT, "no-consumer");
    expect_async_close(conn, 1, 406, "PRECONDITION_FAILED - fast reply consumer does not exist",
                       60, 40);
    harness_channel_open(conn, 1);

    harness_expect_channel_close(conn, 1, consume_rt(conn, 1, "acking", false), 406,
                                 "PRECONDITION_FAILED - reply consumer cannot acknowledge", 60, 20);
    harness_channel_open(conn, 1);

    CHECK_REPLY(consume_rt(conn, 1, "rt-once", true));
    harness_expect_channel_close(conn, 1, consume_rt(conn, 1, "rt-twice", true), 406,
                                 "PRECONDITION_FAILED - reply consumer already set", 60, 20);
    harness_channel_open(conn, 1);

    /* The RT consumer of channel 1 does not serve channel 2. */
    CHECK_REPLY(consume_rt(conn, 1, "rt-ch1", true));
    harness_channel_open(conn, 2);
    publish(conn, 2, "", s_rpcq, false, RT, "other-channel");
    expect_async_close(conn, 2, 406, "PRECONDITION_FAILED - fast reply consumer does not exist",
                       60, 40);

    /* Nor does a cancelled one. */
    harness_cancel(conn, 1, "rt-ch1");
    publish(conn, 1, "", s_rpcq, false, RT, "cancelled");
    expect_async_close(conn, 1, 406, "PRECONDITION_FAILED - fast reply consumer does not exist",
                       60, 40);
    harness_disconnect(conn);

    uint32_t m = 99;
    amqp_connection_state_t peek = harness_open(b);
    CHECK_REPLY(harness_queue_peek(peek, 1, s_rpcq, &m, NULL));
    CHECK_EQ(m, 0); /* none of the refused requests was routed */
    harness_disconnect(peek);
    harness_log("reply-to refusals: ok");
}

/* Two requesters, one server: each gets its own reply. */
static void check_round_trip(const harness_broker_t *b)
{
    amqp_connection_state_t r1 = harness_connect(b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    amqp_connection_state_t r2 = harness_connect(b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    amqp_connection_state_t srv = harness_connect(b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    harness_channel_open(r1, 1);
    harness_channel_open(r2, 3);
    harness_channel_open(srv, 1);
    CHECK_REPLY(consume_rt(r1, 1, "rt-r1", true));
    CHECK_REPLY(consume_rt(r2, 3, "rt-r2", true));

    /* One at a time: two connections' publishes may reach the queue in any order. */
    publish(r1, 1, "", s_rpcq, false, RT, "q1");
    CHECK_EQ(harness_wait_message_count(srv, 1, s_rpcq, 1, 5000), 1);
    publish(r2, 3, "", s_rpcq, false, RT, "q2");
    CHECK_EQ(harness_wait_message_count(srv, 1, s_rpcq, 2, 5000), 2);
    publish(r1, 1, "", s_rpcq, false, RT, "q3");
    publish(r1, 1, "", s_rpcq, false, "plain-queue-name", "q4");
    char body[64], n1[256], n2[256], n3[256], n4[256];
    get_request(srv, body, sizeof body, n1, sizeof n1);
    CHECK_STREQ(body, "q1");
    get_request(srv, body, sizeof body, n2, sizeof n2);
    CHECK_STREQ(body, "q2");
    get_request(srv, body, sizeof body, n3, sizeof n3);
    CHECK_STREQ(body, "q3");
    get_request(srv, body, sizeof body, n4, sizeof n4);
    CHECK_STREQ(body, "q4");
    harness_log("reply_to rewritten to %s (%zu characters)", n1, strlen(n1));
    CHECKF(strncmp(n1, RT ".", strlen(RT ".")) == 0 && strlen(n1) > strlen(RT ".") &&
               strlen(n1) <= 255,
           "reply_to \"%s\"", n1);
    CHECKF(strncmp(n2, RT ".", strlen(RT ".")) == 0 && strlen(n2) > strlen(RT ".") &&
               strlen(n2) <= 255,
           "reply_to \"%s\"", n2);
    CHECKF(strcmp(n1, n2) != 0, "two requesters share the reply name %s", n1);
    CHECKF(strcmp(n1, n3) == 0, "one channel's reply names differ: %s, %s", n1, n3);
    CHECK_STREQ(n4, "plain-queue-name");
    expect_declare_ok(srv, 1, n1);

    /* Replies cross: q2's first, from the server's connection. */
    publish(srv, 1, "", n2, false, NULL, "a2");
    publish(srv, 1, "", n1, false, NULL, "a1");
    publish(srv, 1, "", n1, false, NULL, "a3");
    expect_reply(r2, 3, "rt-r2", 1, n2, "a2");
    expect_reply(r1, 1, "rt-r1", 1, n1, "a1");
    expect_reply(r1, 1, "rt-r1", 1, n1, "a3");
    harness_sync(srv, 1);
    CHECKF(!amqp_frames_enqueued(srv), "the replier got something back");
    /* A requester may reply to itself (same connection, any channel). */
    harness_channel_open(r1, 2);
    publish(r1, 2, "", n1, false, NULL, "self");
    expect_reply(r1, 1, "rt-r1", 1, n1, "self");
    harness_expect_quiet(r1, 100, "after the replies");
    harness_expect_quiet(r2, 1, "after the replies");

    /* Unroutable reply names, while both requesters are there. */
    char forged[300];
    snprintf(forged, sizeof forged, "%sX", n1);
    expect_unroutable(srv, r1, "amq.direct", n1, "via-amq.direct");
    expect_unroutable(srv, r1, "", forged, "forged");
    expect_unroutable(srv, r1, "", RT ".garbage", "garbage");
    expect_unroutable(srv, r1, "", RT, "bare");

    /* Gone requesters: r1 cancels (then consumes RT again: a new name), r2's channel closes,
     * then r1's connection closes. */
    harness_cancel(r1, 1, "rt-r1");
    expect_unroutable(srv, r1, "", n1, "after-cancel");
    CHECK_REPLY(consume_rt(r1, 1, "rt-r1-again", true));
    expect_unroutable(srv, r1, "", n1, "after-reconsume");
    publish(r1, 1, "", s_rpcq, false, RT, "q5");
    char n5[256];
    get_request(srv, body, sizeof body, n5, sizeof n5);
    CHECK_STREQ(body, "q5");
    CHECKF(strcmp(n5, n1) != 0, "the new RT consumer has the old name %s", n1);
    publish(srv, 1, "", n5, false, NULL, "a5");
    expect_reply(r1, 1, "rt-r1-again", 1, n5, "a5");

    CHECK_REPLY(amqp_channel_close(r2, 3, AMQP_REPLY_SUCCESS));
    expect_unroutable(srv, NULL, "", n2, "after-channel-close");
    harness_disconnect(r1);
    expect_unroutable(srv, NULL, "", n5, "after-connection-close");
    harness_disconnect(r2);
    harness_disconnect(srv);
    harness_log("round trips, unroutable and gone requesters: ok");
}

/* A mandatory reply to a live requester: delivered, and (RabbitMQ 3.10.8) also returned. */
static void check_mandatory_live(const harness_broker_t *b)
{
    amqp_connection_state_t req = harness_connect(b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    amqp_connection_state_t srv = harness_connect(b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    harness_channel_open(req, 1);
    harness_channel_open(srv, 1);
    CHECK_REPLY(consume_rt(req, 1, "rt-m", true));
    publish(req, 1, "", s_rpcq, false, RT, "qm");
    char body[64], name[256];
    get_request(srv, body, sizeof body, name, sizeof name);
    /* Two deliveries on the requester's channel before the reply: basic.get no-ack. */
    for (int i = 0; i < 2; i++) {
        publish(req, 1, "", s_rpcq, false, NULL, "filler");
        CHECK_EQ(harness_wait_message_count(req, 1, s_rpcq, 1, 5000), 1);
        amqp_rpc_reply_t r = amqp_basic_get(req, 1, amqp_cstring_bytes(s_rpcq), 1);
        CHECK_REPLY(r);
        CHECK(r.reply.id == AMQP_BASIC_GET_OK_METHOD);
        CHECK_EQ(((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag, i + 1);
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(req, 1, &msg, 0));
        amqp_destroy_message(&msg);
    }
    publish(srv, 1, "", name, true, NULL, "am");
    expect_reply(req, 1, "rt-m", 3, name, "am");
    expect_return(srv, 1, "", name, "am");
    /* The reply did not use up tag 3: the next basic.get has it. */
    publish(req, 1, "", s_rpcq, false, NULL, "filler");
    CHECK_EQ(harness_wait_message_count(req, 1, s_rpcq, 1, 5000), 1);
    amqp_rpc_reply_t r = amqp_basic_get(req, 1, amqp_cstring_bytes(s_rpcq), 1);
    CHECK_REPLY(r);
    CHECK(r.reply.id == AMQP_BASIC_GET_OK_METHOD);
    CHECK_EQ(((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag, 3);
    amqp_message_t msg;
    CHECK_REPLY(amqp_read_message(req, 1, &msg, 0));
    amqp_destroy_message(&msg);
    harness_sync(srv, 1);
    CHECKF(!amqp_frames_enqueued(srv), "more than one basic.return");
    harness_disconnect(req);
    harness_disconnect(srv);
    harness_log("mandatory reply to a live requester: delivered and returned: ok");
}

int main(void)
{
    harness_broker_t b;
    amqp_connection_state_t conn = harness_begin(&b, 55, NULL);
    s_pid = (int)getpid();
    snprintf(s_rpcq, sizeof s_rpcq, "it-reply-to-rpc-%d", s_pid);

    harness_queue_declare(conn, 1, s_rpcq, 0, amqp_empty_table);
    check_errors(&b);
    check_round_trip(&b);
    check_mandatory_live(&b);
    harness_queue_delete(conn, 1, s_rpcq);
    harness_disconnect(conn);
    return harness_finish(&b);
}
