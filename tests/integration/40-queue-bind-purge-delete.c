/* 40-queue-bind-purge-delete — queue.bind/unbind with arguments, queue.purge (count; unacked
 * messages stay), queue.delete with if-unused / if-empty and its count, and the empty queue
 * name meaning the channel's most recently declared queue.
 * RabbitMQ 3.10.8 answers (asserted below; Q is the queue name):
 *  A binding is (exchange, key, arguments): the same key with other arguments is a second
 *      binding; a message matching both still reaches the queue once; unbind removes only the
 *      binding with equal arguments, and unbinding a binding that does not exist is unbind-ok.
 *  purge-ok message_count = the ready messages removed; delivered-but-unacked ones are kept and
 *      come back (redelivered) when their channel closes.
 *  delete if-unused with a consumer: 406 "PRECONDITION_FAILED - queue 'Q' in vhost '/' in use"
 *      (50.40); if-empty with ready messages: 406 "PRECONDITION_FAILED - queue 'Q' in vhost '/'
 *      not empty" (50.40); with only unacked messages the queue counts as empty.
 *  delete-ok message_count = the ready messages; deleting a missing queue is delete-ok 0.
 *  queue "" = the channel's most recently declared queue (a passive declare counts); bind with
 *      queue "" and key "" binds that queue with its own name as the key. On a channel that
 *      declared nothing: 404 "NOT_FOUND - no previously declared queue" for bind (50.20),
 *      unbind (50.50), purge (50.30), delete (50.40), basic.get (60.70), basic.consume (60.20).
 *      After "" was deleted, "" still names it: 404 "NOT_FOUND - no queue 'Q' in vhost '/'".
 *      A passive queue.declare of "" is not expanded: 404 "NOT_FOUND - no queue '' in vhost
 *      '/'" (50.10) even right after a declare on the same channel.
 *  bind / purge of a missing queue: 404 "NOT_FOUND - no queue 'Q' in vhost '/'" (50.20 /
 *      50.30); bind to a missing exchange: 404 "NOT_FOUND - no exchange 'X' in vhost '/'";
 *      unbind with a missing queue and/or exchange is unbind-ok. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static char s_text[512];
static int s_pid;

static amqp_table_t table1(amqp_table_entry_t *e, const char *k1, const char *v1)
{
    e[0].key = amqp_cstring_bytes(k1);
    e[0].value.kind = AMQP_FIELD_KIND_UTF8;
    e[0].value.value.bytes = amqp_cstring_bytes(v1);
    return (amqp_table_t){.num_entries = 1, .entries = e};
}

static amqp_table_t table2(amqp_table_entry_t *e, const char *k1, const char *v1, const char *k2,
                           const char *v2)
{
    table1(e, k1, v1);
    table1(e + 1, k2, v2);
    return (amqp_table_t){.num_entries = 2, .entries = e};
}

static void check_bind_unbind(amqp_connection_state_t conn)
{
    char q[64], got[256];
    snprintf(q, sizeof q, "it-bind-%d", s_pid);
    harness_queue_declare(conn, 1, q, 0, amqp_empty_table);
    amqp_table_entry_t a[2], b[2], m[2];

    /* Headers exchange: the arguments are the binding. */
    harness_queue_bind(conn, 1, q, "amq.headers", "",
                       table2(a, "x-match", "all", "colour", "red"));
    harness_publish_headers(conn, 1, "amq.headers", "",
                            (amqp_table_t[]){table1(m, "colour", "red")}, "red1");
    harness_publish_headers(conn, 1, "amq.headers", "",
                            (amqp_table_t[]){table1(m, "colour", "blue")}, "blue1");
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 1, 5000), 1);
    harness_drain(conn, 1, q, got, sizeof got);
    CHECK_STREQ(got, "red1");
    /* Unbind with other arguments removes nothing (and is not an error). */
    harness_queue_unbind(conn, 1, q, "amq.headers", "",
                         table2(a, "x-match", "all", "colour", "blue"));
    harness_publish_headers(conn, 1, "amq.headers", "",
                            (amqp_table_t[]){table1(m, "colour", "red")}, "red2");
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 1, 5000), 1);
    harness_drain(conn, 1, q, got, sizeof got);
    CHECK_STREQ(got, "red2");
    harness_queue_unbind(conn, 1, q, "amq.headers", "",
                         table2(a, "x-match", "all", "colour", "red"));
    harness_publish_headers(conn, 1, "amq.headers", "",
                            (amqp_table_t[]){table1(m, "colour", "red")}, "red3");

    /* Direct exchange: same key, two argument tables = two bindings; one copy per publish. */
    harness_queue_bind(conn, 1, q, "amq.direct", "k", table1(a, "x-tag", "one"));
    harness_queue_bind(conn, 1, q, "amq.direct", "k", table1(b, "x-tag", "two"));
    harness_queue_bind(conn, 1, q, "amq.direct", "k", table1(b, "x-tag", "two")); /* again: no-op */
    harness_publish(conn, 1, "amq.direct", "k", "k1");
    harness_queue_unbind(conn, 1, q, "amq.direct", "k", table1(a, "x-tag", "one"));
    harness_publish(conn, 1, "amq.direct", "k", "k2");
    harness_queue_unbind(conn, 1, q, "amq.direct", "k", table1(b, "x-tag", "two"));
    /* gone already: still ok */
    harness_queue_unbind(conn, 1, q, "amq.direct", "k", table1(b, "x-tag", "two"));
    harness_publish(conn, 1, "amq.direct", "k", "k3");
    harness_publish(conn, 1, "", q, "end"); /* the default binding: a marker */
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 3, 5000), 3);
    harness_drain(conn, 1, q, got, sizeof got);
    CHECK_STREQ(got, "k1 k2 end");

    harness_queue_delete(conn, 1, q);
    harness_log("bind/unbind with arguments: ok");
}

static void check_purge(amqp_connection_state_t conn)
{
    char q[64], got[256];
    snprintf(q, sizeof q, "it-purge-%d", s_pid);
    harness_queue_declare(conn, 1, q, 0, amqp_empty_table);
    CHECK_EQ(harness_queue_purge(conn, 1, q), 0);

    for (int i = 1; i <= 5; i++) {
        char body[8];
        snprintf(body, sizeof body, "%d", i);
        harness_publish(conn, 1, "", q, body);
    }
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 5, 5000), 5);
    /* Take two without acking them on channel 2. */
    harness_channel_open(conn, 2);
    for (int i = 0; i < 2; i++) {
        amqp_rpc_reply_t r = amqp_basic_get(conn, 2, amqp_cstring_bytes(q), 0);
        CHECK_REPLY(r);
        CHECK_EQ(r.reply.id, AMQP_BASIC_GET_OK_METHOD);
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(conn, 2, &msg, 0));
        amqp_destroy_message(&msg);
    }
    CHECK_EQ(harness_queue_purge(conn, 1, q), 3);
    uint32_t n = 99;
    CHECK_REPLY(harness_queue_peek(conn, 1, q, &n, NULL));
    CHECK_EQ(n, 0);
    /* The two unacked ones survived the purge and return when their channel closes. */
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 2, 5000), 2);
    harness_drain(conn, 1, q, got, sizeof got);
    CHECK_STREQ(got, "1 2");
    harness_queue_delete(conn, 1, q);
    harness_log("purge: ok");
}

static void check_delete(amqp_connection_state_t conn)
{
    char q[64];
    snprintf(q, sizeof q, "it-delete-%d", s_pid);
    amqp_bytes_t qb = amqp_cstring_bytes(q);
    harness_queue_declare(conn, 1, q, 0, amqp_empty_table);

    /* if-unused with a consumer: 406 */
    harness_channel_open(conn, 2);
    amqp_basic_consume_ok_t *cok =
        amqp_basic_consume(conn, 2, qb, amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    amqp_bytes_t tag = amqp_bytes_malloc_dup(cok->consumer_tag);
    amqp_queue_delete(conn, 1, qb, 1, 0);
    snprintf(s_text, sizeof s_text, "PRECONDITION_FAILED - queue '%s' in vhost '/' in use", q);
    harness_expect_channel_close(conn, 1, amqp_get_rpc_reply(conn), 406, s_text, 50, 40);
    harness_channel_open(conn, 1);
    amqp_basic_cancel(conn, 2, tag);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    amqp_bytes_free(tag);

    /* if-empty with ready messages: 406 */
    for (int i = 0; i < 4; i++)
        harness_publish(conn, 1, "", q, "m");
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 4, 5000), 4);
    amqp_queue_delete(conn, 1, qb, 0, 1);
    snprintf(s_text, sizeof s_text, "PRECONDITION_FAILED - queue '%s' in vhost '/' not empty", q);
    harness_expect_channel_close(conn, 1, amqp_get_rpc_reply(conn), 406, s_text, 50, 40);
    harness_channel_open(conn, 1);

    /* if-unused and if-empty both hold once there is no consumer and only unacked messages:
     * the unacked ones do not count. delete-ok counts the ready ones. */
    for (int i = 0; i < 4; i++) {
        amqp_rpc_reply_t r = amqp_basic_get(conn, 2, qb, 0);
        CHECK_REPLY(r);
        CHECK_EQ(r.reply.id, AMQP_BASIC_GET_OK_METHOD);
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(conn, 2, &msg, 0));
        amqp_destroy_message(&msg);
    }
    amqp_queue_delete_ok_t *dok = amqp_queue_delete(conn, 1, qb, 1, 1);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    CHECK_EQ(dok->message_count, 0);
    CHECKF(harness_wait_queue_gone(conn, 1, q, 5000), "queue %s survived queue.delete", q);
    harness_channel_open(conn, 1);
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));

    /* Plain delete returns the number of ready messages. */
    harness_queue_declare(conn, 1, q, 0, amqp_empty_table);
    for (int i = 0; i < 7; i++)
        harness_publish(conn, 1, "", q, "m");
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 7, 5000), 7);
    dok = amqp_queue_delete(conn, 1, qb, 0, 0);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    CHECK_EQ(dok->message_count, 7);

    /* A missing queue: delete-ok 0, whatever the flags. */
    dok = amqp_queue_delete(conn, 1, qb, 0, 0);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    CHECK_EQ(dok->message_count, 0);
    dok = amqp_queue_delete(conn, 1, qb, 1, 1);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    CHECK_EQ(dok->message_count, 0);
    harness_log("delete: ok");
}

static void check_no_previous_queue(amqp_connection_state_t conn, amqp_channel_t ch)
{
    const char *text = "NOT_FOUND - no previously declared queue";
    amqp_bytes_t e = amqp_empty_bytes;

    amqp_queue_bind(conn, ch, e, amqp_cstring_bytes("amq.direct"), e, amqp_empty_table);
    harness_expect_channel_close(conn, ch, amqp_get_rpc_reply(conn), 404, text, 50, 20);
    harness_channel_open(conn, ch);
    amqp_queue_unbind(conn, ch, e, amqp_cstring_bytes("amq.direct"), e, amqp_empty_table);
    harness_expect_channel_close(conn, ch, amqp_get_rpc_reply(conn), 404, text, 50, 50);
    harness_channel_open(conn, ch);
    amqp_queue_purge(conn, ch, e);
    harness_expect_channel_close(conn, ch, amqp_get_rpc_reply(conn), 404, text, 50, 30);
    harness_channel_open(conn, ch);
    amqp_queue_delete(conn, ch, e, 0, 0);
    harness_expect_channel_close(conn, ch, amqp_get_rpc_reply(conn), 404, text, 50, 40);
    harness_channel_open(conn, ch);
    harness_expect_channel_close(conn, ch, amqp_basic_get(conn, ch, e, 1), 404, text, 60, 70);
    harness_channel_open(conn, ch);
    amqp_basic_consume(conn, ch, e, e, 0, 1, 0, amqp_empty_table);
    harness_expect_channel_close(conn, ch, amqp_get_rpc_reply(conn), 404, text, 60, 20);
    harness_channel_open(conn, ch);
}

static void check_empty_name(amqp_connection_state_t conn)
{
    char q1[64], q2[64], got[256];
    snprintf(q1, sizeof q1, "it-lastq-1-%d", s_pid);
    snprintf(q2, sizeof q2, "it-lastq-2-%d", s_pid);
    amqp_bytes_t e = amqp_empty_bytes;

    harness_channel_open(conn, 3);
    check_no_previous_queue(conn, 3);
    /* A queue declared on another channel does not count. */
    harness_queue_declare(conn, 1, q1, 0, amqp_empty_table);
    harness_queue_declare(conn, 1, q2, 0, amqp_empty_table);
    check_no_previous_queue(conn, 3);

    /* Declared here: q1 then (passively) q2; "" is q2. */
    harness_queue_declare(conn, 3, q1, 0, amqp_empty_table);
    amqp_queue_declare(conn, 3, amqp_cstring_bytes(q2), 1, 0, 0, 0, amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(conn));

    /* bind "" with key "": the key is the queue's name. */
    amqp_queue_bind(conn, 3, e, amqp_cstring_bytes("amq.direct"), e, amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    harness_publish(conn, 1, "amq.direct", q2, "via amq.direct");
    harness_publish(conn, 1, "amq.direct", "", "empty key: unroutable");
    CHECK_EQ(harness_wait_message_count(conn, 1, q2, 1, 5000), 1);
    amqp_rpc_reply_t r = amqp_basic_get(conn, 3, e, 1);
    CHECK_REPLY(r);
    CHECK_EQ(r.reply.id, AMQP_BASIC_GET_OK_METHOD);
    amqp_basic_get_ok_t *gok = r.reply.decoded;
    CHECK(gok->routing_key.len == strlen(q2) && memcmp(gok->routing_key.bytes, q2, strlen(q2)) == 0);
    amqp_message_t msg;
    CHECK_REPLY(amqp_read_message(conn, 3, &msg, 0));
    CHECK(msg.body.len == 14 && memcmp(msg.body.bytes, "via amq.direct", 14) == 0);
    amqp_destroy_message(&msg);
    /* unbind "" "" removes it again */
    amqp_queue_unbind(conn, 3, e, amqp_cstring_bytes("amq.direct"), e, amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    harness_publish(conn, 1, "amq.direct", q2, "unbound");

    /* purge "" and delete "" act on q2, not q1. */
    harness_publish(conn, 1, "", q1, "in q1");
    harness_publish(conn, 1, "", q2, "in q2 a");
    harness_publish(conn, 1, "", q2, "in q2 b");
    CHECK_EQ(harness_wait_message_count(conn, 1, q2, 2, 5000), 2);
    CHECK_EQ(harness_wait_message_count(conn, 1, q1, 1, 5000), 1);
    amqp_queue_purge_ok_t *pok = amqp_queue_purge(conn, 3, e);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    CHECK_EQ(pok->message_count, 2);
    harness_publish(conn, 1, "", q2, "in q2 c");
    CHECK_EQ(harness_wait_message_count(conn, 1, q2, 1, 5000), 1);
    amqp_queue_delete_ok_t *dok = amqp_queue_delete(conn, 3, e, 0, 0);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    CHECK_EQ(dok->message_count, 1);
    CHECKF(harness_wait_queue_gone(conn, 1, q2, 5000), "queue.delete \"\" left %s", q2);
    harness_channel_open(conn, 1);
    harness_drain(conn, 1, q1, got, sizeof got);
    CHECK_STREQ(got, "in q1");

    /* "" still means the deleted q2 */
    snprintf(s_text, sizeof s_text, "NOT_FOUND - no queue '%s' in vhost '/'", q2);
    harness_expect_channel_close(conn, 3, amqp_basic_get(conn, 3, e, 1), 404, s_text, 60, 70);
    harness_channel_open(conn, 3);
    /* and a fresh channel 3 has no previous queue again */
    check_no_previous_queue(conn, 3);

    /* basic.consume "" on the last declared queue */
    harness_queue_declare(conn, 3, q1, 0, amqp_empty_table);
    harness_publish(conn, 1, "", q1, "consumed");
    harness_consume(conn, 3, "", "ctag-empty", HARNESS_CONSUME_NO_ACK, amqp_empty_table);
    amqp_envelope_t env;
    CHECK(harness_next_delivery(conn, 5000, &env));
    CHECK(env.routing_key.len == strlen(q1) && memcmp(env.routing_key.bytes, q1, strlen(q1)) == 0);
    CHECK(env.message.body.len == 8 && memcmp(env.message.body.bytes, "consumed", 8) == 0);
    amqp_destroy_envelope(&env);
    CHECK_REPLY(amqp_channel_close(conn, 3, AMQP_REPLY_SUCCESS));
    harness_queue_delete(conn, 1, q1);
    harness_log("empty queue name: ok");
}

/* Missing queues and exchanges: bind and purge say 404, unbind does not care. A passive
 * declare of "" is not the last-declared-queue shortcut: it looks for a queue named "". */
static void check_missing(amqp_connection_state_t conn)
{
    char q[64], mq[64], mx[64];
    snprintf(q, sizeof q, "it-missing-%d", s_pid);
    snprintf(mq, sizeof mq, "it-missing-q-%d", s_pid);
    snprintf(mx, sizeof mx, "it-missing-x-%d", s_pid);
    harness_queue_declare(conn, 1, q, 0, amqp_empty_table);

    snprintf(s_text, sizeof s_text, "NOT_FOUND - no queue '%s' in vhost '/'", mq);
    amqp_queue_bind(conn, 1, amqp_cstring_bytes(mq), amqp_cstring_bytes("amq.direct"),
                    amqp_cstring_bytes("k"), amqp_empty_table);
    harness_expect_channel_close(conn, 1, amqp_get_rpc_reply(conn), 404, s_text, 50, 20);
    harness_channel_open(conn, 1);
    amqp_queue_purge(conn, 1, amqp_cstring_bytes(mq));
    harness_expect_channel_close(conn, 1, amqp_get_rpc_reply(conn), 404, s_text, 50, 30);
    harness_channel_open(conn, 1);
    snprintf(s_text, sizeof s_text, "NOT_FOUND - no exchange '%s' in vhost '/'", mx);
    amqp_queue_bind(conn, 1, amqp_cstring_bytes(q), amqp_cstring_bytes(mx),
                    amqp_cstring_bytes("k"), amqp_empty_table);
    harness_expect_channel_close(conn, 1, amqp_get_rpc_reply(conn), 404, s_text, 50, 20);
    harness_channel_open(conn, 1);

    harness_queue_unbind(conn, 1, mq, "amq.direct", "k", amqp_empty_table);
    harness_queue_unbind(conn, 1, q, mx, "k", amqp_empty_table);
    harness_queue_unbind(conn, 1, mq, mx, "k", amqp_empty_table);

    harness_queue_declare(conn, 1, q, 0,
                          amqp_empty_table); /* the channel's last declared queue is q ... */
    amqp_queue_declare(conn, 1, amqp_empty_bytes, 1, 0, 0, 0, amqp_empty_table);
    harness_expect_channel_close(conn, 1, amqp_get_rpc_reply(conn), 404,
                                 "NOT_FOUND - no queue '' in vhost '/'", 50, 10);
    harness_channel_open(conn, 1);
    harness_queue_delete(conn, 1, q);
    harness_log("missing queues and exchanges: ok");
}

int main(void)
{
    harness_broker_t b;
    amqp_connection_state_t conn = harness_begin(&b, 55, NULL);
    s_pid = (int)getpid();

    check_bind_unbind(conn);
    check_purge(conn);
    check_delete(conn);
    check_empty_name(conn);
    check_missing(conn);
    harness_disconnect(conn);
    return harness_finish(&b);
}
