/* 20-channel-misc — the rest of the basic class and channel.flow as RabbitMQ 3 answers them:
 * basic.get (get-ok message_count, get-empty), mandatory -> basic.return, sender-selected
 * distribution (CC / BCC headers), basic.recover-async, and the methods RabbitMQ refuses with
 * 540 NOT_IMPLEMENTED (a connection exception: the whole connection is closed).
 * RabbitMQ 3.10.8 answers (asserted below; Q is the queue name):
 *  basic.get -> get-ok with message_count = messages left after this one; get-empty when none.
 *  mandatory publish that reaches no queue -> basic.return 312 "NO_ROUTE" with the exchange and
 *      routing key of the publish and the message unchanged; a routable one is not returned.
 *  CC and BCC headers (arrays of strings) add routing keys on the same exchange; each queue
 *      gets one copy, with the publish's routing key; CC is delivered as sent, BCC removed.
 *  basic.recover-async requeue=true: no reply, the unacked messages go back to the queue.
 *  basic.publish immediate=true: connection.close 540 "NOT_IMPLEMENTED - immediate=true"
 *      (60.40).
 *  basic.recover-async requeue=false: 540 "NOT_IMPLEMENTED - requeue=false" (60.100);
 *  basic.recover requeue=false: 540 "NOT_IMPLEMENTED - requeue=false" (60.110).
 *  channel.flow active=true -> flow-ok active=true; active=false: 540 "NOT_IMPLEMENTED -
 *      active=false" (20.20). */
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
static int s_pid;

static void check_get(amqp_connection_state_t conn)
{
    amqp_rpc_reply_t r = amqp_basic_get(conn, 1, amqp_cstring_bytes(s_q), 1);
    CHECK_REPLY(r);
    CHECKF(r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD, "got %s", amqp_method_name(r.reply.id));
    for (int i = 0; i < 3; i++)
        harness_publish(conn, 1, "", s_q, i == 0 ? "zero" : i == 1 ? "one" : "two");
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 3, 5000), 3);
    const char *want[] = {"zero", "one", "two"};
    for (int i = 0; i < 3; i++) {
        r = amqp_basic_get(conn, 1, amqp_cstring_bytes(s_q), 0);
        CHECK_REPLY(r);
        CHECKF(r.reply.id == AMQP_BASIC_GET_OK_METHOD, "got %s", amqp_method_name(r.reply.id));
        amqp_basic_get_ok_t *ok = r.reply.decoded;
        CHECK_EQ(ok->delivery_tag, i + 1);
        CHECK(!ok->redelivered);
        CHECK(ok->exchange.len == 0);
        CHECK(harness_bytes_is(ok->routing_key, s_q));
        CHECK_EQ(ok->message_count, 2 - i);
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(conn, 1, &msg, 0));
        CHECK(harness_bytes_is(msg.body, want[i]));
        amqp_destroy_message(&msg);
    }
    r = amqp_basic_get(conn, 1, amqp_cstring_bytes(s_q), 1);
    CHECK_REPLY(r);
    CHECKF(r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD, "got %s", amqp_method_name(r.reply.id));
    CHECK_AMQP(amqp_basic_ack(conn, 1, 3, 1));
    harness_sync(conn, 1);
    harness_log("basic.get: ok");
}

static void check_mandatory(amqp_connection_state_t conn)
{
    char nowhere[96];
    snprintf(nowhere, sizeof nowhere, "%s-nowhere", s_q);
    harness_publish_props(conn, 1, "", nowhere, true, NULL, "lost 1");
    harness_publish_props(conn, 1, "amq.direct", nowhere, true, NULL, "lost 2");
    harness_publish_props(conn, 1, "", s_q, true, NULL, "delivered");
    harness_publish(conn, 1, "", nowhere, "dropped silently");
    harness_sync(conn, 1);
    harness_expect_return(conn, 1, "", nowhere, "lost 1");
    harness_expect_return(conn, 1, "amq.direct", nowhere, "lost 2");
    harness_expect_quiet(conn, 300, "after the two basic.return");
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 1, 5000), 1);
    harness_queue_purge(conn, 1, s_q);
    harness_log("mandatory -> basic.return 312 NO_ROUTE: ok");
}

static void check_cc_bcc(amqp_connection_state_t conn)
{
    char q[3][64];
    const char *keys[3] = {"k-main", "k-cc", "k-bcc"};
    for (int i = 0; i < 3; i++) {
        snprintf(q[i], sizeof q[i], "it-misc-cc%d-%d", i, s_pid);
        harness_queue_declare(conn, 1, q[i], HARNESS_QUEUE_AUTO_DELETE, amqp_empty_table);
        harness_queue_bind(conn, 1, q[i], "amq.direct", keys[i], amqp_empty_table);
    }
    /* q[0] is also bound to k-cc: still one copy */
    harness_queue_bind(conn, 1, q[0], "amq.direct", "k-cc", amqp_empty_table);

    amqp_field_value_t cc_v = {.kind = AMQP_FIELD_KIND_UTF8};
    cc_v.value.bytes = amqp_cstring_bytes("k-cc");
    amqp_field_value_t bcc_v = {.kind = AMQP_FIELD_KIND_UTF8};
    bcc_v.value.bytes = amqp_cstring_bytes("k-bcc");
    amqp_table_entry_t h[3];
    h[0].key = amqp_cstring_bytes("CC");
    h[0].value.kind = AMQP_FIELD_KIND_ARRAY;
    h[0].value.value.array = (amqp_array_t){.num_entries = 1, .entries = &cc_v};
    h[1].key = amqp_cstring_bytes("BCC");
    h[1].value.kind = AMQP_FIELD_KIND_ARRAY;
    h[1].value.value.array = (amqp_array_t){.num_entries = 1, .entries = &bcc_v};
    h[2].key = amqp_cstring_bytes("other");
    h[2].value.kind = AMQP_FIELD_KIND_UTF8;
    h[2].value.value.bytes = amqp_cstring_bytes("kept");
    amqp_basic_properties_t props;
    memset(&props, 0, sizeof props);
    props._flags = AMQP_BASIC_HEADERS_FLAG;
    props.headers = (amqp_table_t){.num_entries = 3, .entries = h};
    harness_publish_props(conn, 1, "amq.direct", "k-main", false, &props, "cc");
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(harness_wait_message_count(conn, 1, q[i], 1, 5000), 1);
        amqp_rpc_reply_t r = amqp_basic_get(conn, 1, amqp_cstring_bytes(q[i]), 1);
        CHECK_REPLY(r);
        CHECK_EQ(r.reply.id, AMQP_BASIC_GET_OK_METHOD);
        amqp_basic_get_ok_t *ok = r.reply.decoded;
        CHECK(harness_bytes_is(ok->routing_key, "k-main"));
        CHECK_EQ(ok->message_count, 0);
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(conn, 1, &msg, 0));
        CHECK(harness_bytes_is(msg.body, "cc"));
        CHECK(msg.properties._flags & AMQP_BASIC_HEADERS_FLAG);
        const amqp_table_t *got = &msg.properties.headers;
        const amqp_field_value_t *v = harness_table_get(got, "CC");
        CHECKF(v && v->kind == AMQP_FIELD_KIND_ARRAY && v->value.array.num_entries == 1 &&
                   harness_bytes_is(v->value.array.entries[0].value.bytes, "k-cc"),
               "queue %d: CC header not delivered as sent", i);
        CHECKF(harness_table_get(got, "BCC") == NULL, "queue %d: BCC header delivered", i);
        v = harness_table_get(got, "other");
        CHECK(v && v->kind == AMQP_FIELD_KIND_UTF8 && harness_bytes_is(v->value.bytes, "kept"));
        CHECK_EQ(got->num_entries, 2);
        amqp_destroy_message(&msg);
    }
    for (int i = 0; i < 3; i++) {
        harness_queue_delete(conn, 1, q[i]);
    }
    harness_log("CC/BCC sender-selected distribution: ok");
}

static void check_recover_async(amqp_connection_state_t conn)
{
    for (int i = 0; i < 2; i++)
        harness_publish(conn, 1, "", s_q, "r");
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 2, 5000), 2);
    harness_channel_open(conn, 2);
    for (int i = 0; i < 2; i++) {
        amqp_rpc_reply_t r = amqp_basic_get(conn, 2, amqp_cstring_bytes(s_q), 0);
        CHECK_REPLY(r);
        CHECK_EQ(r.reply.id, AMQP_BASIC_GET_OK_METHOD);
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(conn, 2, &msg, 0));
        amqp_destroy_message(&msg);
    }
    amqp_basic_recover_async_t ra = {.requeue = 1};
    CHECK_AMQP(amqp_send_method(conn, 2, AMQP_BASIC_RECOVER_ASYNC_METHOD, &ra));
    harness_sync(conn, 2);
    CHECK(!amqp_frames_enqueued(conn)); /* no reply to recover-async */
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, 2, 5000), 2);
    amqp_rpc_reply_t r = amqp_basic_get(conn, 1, amqp_cstring_bytes(s_q), 1);
    CHECK_REPLY(r);
    CHECK_EQ(r.reply.id, AMQP_BASIC_GET_OK_METHOD);
    CHECK(((amqp_basic_get_ok_t *)r.reply.decoded)->redelivered);
    amqp_message_t msg;
    CHECK_REPLY(amqp_read_message(conn, 1, &msg, 0));
    amqp_destroy_message(&msg);
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    harness_queue_purge(conn, 1, s_q);
    harness_log("basic.recover-async requeue=true: ok");
}

static void check_flow_true(amqp_connection_state_t conn)
{
    amqp_channel_flow_ok_t *fok = amqp_channel_flow(conn, 1, 1);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    CHECK(fok->active);
    harness_log("channel.flow active=true: ok");
}

/* Each refused method on a connection of its own (the 540 closes the connection). */
static void check_not_implemented(const harness_broker_t *b)
{
    amqp_connection_state_t conn = harness_open(b);
    CHECK_AMQP(amqp_basic_publish(conn, 1, amqp_empty_bytes, amqp_cstring_bytes(s_q), 0, 1, NULL,
                                  amqp_cstring_bytes("immediate")));
    amqp_basic_qos(conn, 1, 0, 0, 0);
    harness_expect_connection_close(conn, amqp_get_rpc_reply(conn), 540,
                                    "NOT_IMPLEMENTED - immediate=true", 60, 40);

    conn = harness_open(b);
    amqp_basic_recover_async_t ra = {.requeue = 0};
    CHECK_AMQP(amqp_send_method(conn, 1, AMQP_BASIC_RECOVER_ASYNC_METHOD, &ra));
    amqp_basic_qos(conn, 1, 0, 0, 0);
    harness_expect_connection_close(conn, amqp_get_rpc_reply(conn), 540,
                                    "NOT_IMPLEMENTED - requeue=false", 60, 100);

    conn = harness_open(b);
    amqp_basic_recover(conn, 1, 0);
    harness_expect_connection_close(conn, amqp_get_rpc_reply(conn), 540,
                                    "NOT_IMPLEMENTED - requeue=false", 60, 110);

    conn = harness_open(b);
    amqp_channel_flow(conn, 1, 0);
    harness_expect_connection_close(conn, amqp_get_rpc_reply(conn), 540,
                                    "NOT_IMPLEMENTED - active=false", 20, 20);

    /* nothing published with immediate=true got anywhere */
    conn = harness_open(b);
    uint32_t m = 99;
    CHECK_REPLY(harness_queue_peek(conn, 1, s_q, &m, NULL));
    CHECK_EQ(m, 0);
    harness_disconnect(conn);
    harness_log("540 NOT_IMPLEMENTED answers: ok");
}

int main(void)
{
    harness_broker_t b;
    amqp_connection_state_t conn = harness_begin(&b, 55, NULL);
    s_pid = (int)getpid();
    snprintf(s_q, sizeof s_q, "it-misc-%d", s_pid);

    harness_queue_declare(conn, 1, s_q, 0, amqp_empty_table);
    check_get(conn);
    check_mandatory(conn);
    check_cc_bcc(conn);
    check_recover_async(conn);
    check_flow_true(conn);
    check_not_implemented(&b);
    harness_queue_delete(conn, 1, s_q);
    harness_disconnect(conn);
    return harness_finish(&b);
}
