/* 60-ext-priority — priority queues (x-max-priority): which message comes out first.
 * RabbitMQ 3.10.8 answers (asserted below; Q is the queue name):
 *  ready messages come out highest priority first and FIFO within one priority, through
 *      basic.get and through a consumer alike; a message without the priority property counts
 *      as priority 0; one above the queue's maximum counts as the maximum (it queues FIFO with
 *      the maximum's messages, it does not overtake them); the property itself is delivered
 *      unchanged (9 stays 9).
 *  x-max-priority 255 (the largest) and 1 work; x-max-priority 0 is accepted too (RabbitMQ's
 *      check is "non-negative and at most 255"): one level, plain FIFO.
 *  x-max-priority 256: channel.close 406 "PRECONDITION_FAILED - invalid arg 'x-max-priority' for
 *      queue 'Q' in vhost '/': {max_value_exceeded,256}" (50.10); -1: "... {value_negative,-1}".
 *  a redeclare with another x-max-priority, or without it: 406 "PRECONDITION_FAILED -
 *      inequivalent arg 'x-max-priority' for queue 'Q' in vhost '/': received '3' but current
 *      is '5'" / "... received none but current is the value '5' of type 'signedint'" (50.10).
 *  requeued messages (basic.nack requeue, channel close) go back to their place: the order is
 *      the same as before, with redelivered set on those that had been delivered.
 *  a queue without x-max-priority ignores the property: FIFO.
 *  message_count counts every level; queue.purge answers the total and empties every level. */
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
static char s_text[1024];

static amqp_table_t maxprio_args(amqp_table_entry_t *e, int max)
{
    e->key = amqp_cstring_bytes("x-max-priority");
    e->value.kind = AMQP_FIELD_KIND_I32;
    e->value.value.i32 = max;
    return (amqp_table_t){.num_entries = 1, .entries = e};
}

static amqp_rpc_reply_t declare_prio(amqp_connection_state_t conn, amqp_channel_t ch,
                                     const char *q, int max)
{
    amqp_table_entry_t e;
    amqp_queue_declare(conn, ch, amqp_cstring_bytes(q), 0, 0, 0, 0,
                       max >= -1000 ? maxprio_args(&e, max) : amqp_empty_table);
    return amqp_get_rpc_reply(conn);
}

enum { NO_PRIO = -1 };

/* Publish body with the priority property (none when prio is NO_PRIO). */
static void publish_prio(amqp_connection_state_t conn, const char *q, const char *body, int prio)
{
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof p);
    if (prio != NO_PRIO) {
        p._flags = AMQP_BASIC_PRIORITY_FLAG;
        p.priority = (uint8_t)prio;
    }
    harness_publish_props(conn, 1, "", q, false, &p, body);
}

/* The messages of the ordering checks: body "<letter><priority>", priority NO_PRIO for none. */
typedef struct pmsg {
    const char *body;
    int prio;
} pmsg_t;

/* With x-max-priority 5: e9 counts as 5 and queues after c5, before f5. */
static const pmsg_t k_mix[] = {
    {"a-", NO_PRIO}, {"b3", 3}, {"c5", 5}, {"d1", 1}, {"e9", 9},
    {"f5", 5},       {"g0", 0}, {"h3", 3}, {"i-", NO_PRIO}, {"j255", 255},
};
static const char k_mix_order[] = "c5 e9 f5 j255 b3 h3 d1 a- g0 i-";

static void publish_mix(amqp_connection_state_t conn, const char *q)
{
    for (size_t i = 0; i < sizeof k_mix / sizeof k_mix[0]; i++)
        publish_prio(conn, q, k_mix[i].body, k_mix[i].prio);
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 10, 5000), 10);
}

/* basic.get order, and the priority property delivered as published. */
static void check_get_order(amqp_connection_state_t conn)
{
    char q[64], got[256];
    snprintf(q, sizeof q, "it-prio-get-%d", s_pid);
    CHECK_REPLY(declare_prio(conn, 1, q, 5));
    publish_mix(conn, q);

    /* The first one out is c5 with its priority 5; then e9, still saying 9. */
    for (int k = 0; k < 2; k++) {
        amqp_rpc_reply_t r = amqp_basic_get(conn, 1, amqp_cstring_bytes(q), 1);
        CHECK_REPLY(r);
        CHECK(r.reply.id == AMQP_BASIC_GET_OK_METHOD);
        amqp_basic_get_ok_t *ok = r.reply.decoded;
        CHECK_EQ(ok->message_count, 10 - 1 - k);
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(conn, 1, &msg, 0));
        const char *want = k == 0 ? "c5" : "e9";
        CHECKF(msg.body.len == 2 && memcmp(msg.body.bytes, want, 2) == 0, "got %.*s, want %s",
               (int)msg.body.len, (const char *)msg.body.bytes, want);
        CHECK(msg.properties._flags & AMQP_BASIC_PRIORITY_FLAG);
        CHECK_EQ(msg.properties.priority, k == 0 ? 5 : 9);
        amqp_destroy_message(&msg);
    }
    CHECK_EQ(harness_drain(conn, 1, q, got, sizeof got), 8);
    CHECKF(strcmp(got, k_mix_order + 6) == 0, "order \"%s\", want \"%s\"", got, k_mix_order + 6);
    harness_queue_delete(conn, 1, q);
    harness_log("basic.get order: ok");
}

/* A consumer that subscribes after the publishes gets the same order. */
static void check_consume_order(amqp_connection_state_t conn)
{
    char q[64], got[256] = "";
    snprintf(q, sizeof q, "it-prio-consume-%d", s_pid);
    CHECK_REPLY(declare_prio(conn, 1, q, 5));
    publish_mix(conn, q);
    harness_channel_open(conn, 2);
    harness_consume(conn, 2, q, NULL, 0, amqp_empty_table);
    size_t len = 0;
    for (int i = 0; i < 10; i++) {
        amqp_envelope_t env;
        struct timeval tv = {.tv_sec = 5};
        amqp_maybe_release_buffers(conn);
        CHECK_REPLY(amqp_consume_message(conn, &env, &tv, 0));
        CHECK_EQ(env.channel, 2);
        CHECK_EQ(env.delivery_tag, i + 1);
        len += (size_t)snprintf(got + len, sizeof got - len, "%s%.*s", i ? " " : "",
                                (int)env.message.body.len, (const char *)env.message.body.bytes);
        CHECK_AMQP(amqp_basic_ack(conn, 2, env.delivery_tag, 0));
        amqp_destroy_envelope(&env);
    }
    CHECKF(strcmp(got, k_mix_order) == 0, "order \"%s\", want \"%s\"", got, k_mix_order);
    harness_expect_quiet(conn, 200, "after the 10 deliveries");
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    harness_queue_delete(conn, 1, q);
    harness_log("consumer order: ok");
}

/* Requeued messages go back to their place in their priority. */
static void check_requeue(amqp_connection_state_t conn)
{
    char q[64], got[256];
    snprintf(q, sizeof q, "it-prio-requeue-%d", s_pid);
    CHECK_REPLY(declare_prio(conn, 1, q, 5));
    publish_mix(conn, q);

    /* Take c5 e9 f5 j255 b3 unacked on channel 2, then nack them all back. */
    harness_channel_open(conn, 2);
    for (int i = 0; i < 5; i++) {
        amqp_rpc_reply_t r = amqp_basic_get(conn, 2, amqp_cstring_bytes(q), 0);
        CHECK_REPLY(r);
        CHECK(r.reply.id == AMQP_BASIC_GET_OK_METHOD);
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(conn, 2, &msg, 0));
        amqp_destroy_message(&msg);
    }
    /* One more message of priority 5 arrives meanwhile: it queues after the requeued ones. */
    publish_prio(conn, q, "k5", 5);
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 6, 5000), 6);
    CHECK_AMQP(amqp_basic_nack(conn, 2, 5, 1, 1));
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 11, 5000), 11);

    /* The redelivered flag is set on exactly the five that had been delivered. */
    const char *want = "c5 e9 f5 j255 k5 b3 h3 d1 a- g0 i-";
    size_t len = 0;
    got[0] = '\0';
    for (int i = 0; i < 11; i++) {
        amqp_rpc_reply_t r = amqp_basic_get(conn, 1, amqp_cstring_bytes(q), 1);
        CHECK_REPLY(r);
        CHECK(r.reply.id == AMQP_BASIC_GET_OK_METHOD);
        amqp_basic_get_ok_t *ok = r.reply.decoded;
        bool redelivered = ok->redelivered;
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(conn, 1, &msg, 0));
        bool was_out = msg.body.len >= 2 && memcmp(msg.body.bytes, "k5", 2) != 0 &&
                       (((const char *)msg.body.bytes)[1] == '5' ||
                        ((const char *)msg.body.bytes)[1] == '9' ||
                        ((const char *)msg.body.bytes)[0] == 'j' ||
                        memcmp(msg.body.bytes, "b3", 2) == 0);
        CHECKF(redelivered == was_out, "%.*s: redelivered %d", (int)msg.body.len,
               (const char *)msg.body.bytes, redelivered);
        len += (size_t)snprintf(got + len, sizeof got - len, "%s%.*s", i ? " " : "",
                                (int)msg.body.len, (const char *)msg.body.bytes);
        amqp_destroy_message(&msg);
    }
    CHECKF(strcmp(got, want) == 0, "order after requeue \"%s\", want \"%s\"", got, want);

    /* The same through a channel close: take three, close, they are back first. */
    publish_prio(conn, q, "x1", 1);
    publish_prio(conn, q, "y2", 2);
    publish_prio(conn, q, "z2", 2);
    publish_prio(conn, q, "w4", 4);
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 4, 5000), 4);
    for (int i = 0; i < 3; i++) {
        amqp_rpc_reply_t r = amqp_basic_get(conn, 2, amqp_cstring_bytes(q), 0);
        CHECK_REPLY(r);
        CHECK(r.reply.id == AMQP_BASIC_GET_OK_METHOD);
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(conn, 2, &msg, 0));
        amqp_destroy_message(&msg);
    }
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 4, 5000), 4);
    CHECK_EQ(harness_drain(conn, 1, q, got, sizeof got), 4);
    CHECKF(strcmp(got, "w4 y2 z2 x1") == 0, "order after channel close \"%s\"", got);
    harness_queue_delete(conn, 1, q);
    harness_log("requeue keeps the priority order: ok");
}

/* x-max-priority 255, 1 and 0; a plain queue ignores priorities. */
static void check_levels(amqp_connection_state_t conn)
{
    char q[64], got[256];
    static const struct {
        int max;
        const char *want;
    } cases[] = {
        {255, "p255 p254 p200 p7 p1 none p0"},
        {1, "p7 p254 p1 p255 p200 none p0"},
        {0, "p7 p254 none p1 p255 p0 p200"},
        {-2000, "p7 p254 none p1 p255 p0 p200"}, /* no x-max-priority at all */
    };
    static const pmsg_t msgs[] = {{"p7", 7},   {"p254", 254}, {"none", NO_PRIO}, {"p1", 1},
                                  {"p255", 255}, {"p0", 0},     {"p200", 200}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        snprintf(q, sizeof q, "it-prio-levels-%d-%zu", s_pid, k);
        CHECK_REPLY(declare_prio(conn, 1, q, cases[k].max));
        for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++)
            publish_prio(conn, q, msgs[i].body, msgs[i].prio);
        CHECK_EQ(harness_wait_message_count(conn, 1, q, 7, 5000), 7);
        CHECK_EQ(harness_drain(conn, 1, q, got, sizeof got), 7);
        CHECKF(strcmp(got, cases[k].want) == 0, "x-max-priority %d: \"%s\", want \"%s\"",
               cases[k].max, got, cases[k].want);
        harness_queue_delete(conn, 1, q);
    }
    harness_log("x-max-priority 255, 1, 0 and none: ok");
}

/* Invalid values, and redeclares that differ. */
static void check_declare_errors(amqp_connection_state_t conn)
{
    char q[64];
    snprintf(q, sizeof q, "it-prio-args-%d", s_pid);
    snprintf(s_text, sizeof s_text,
             "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '%s' in vhost '/': "
             "{max_value_exceeded,256}",
             q);
    harness_expect_channel_close(conn, 1, declare_prio(conn, 1, q, 256), 406, s_text, 50, 10);
    harness_channel_open(conn, 1);
    snprintf(s_text, sizeof s_text,
             "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '%s' in vhost '/': "
             "{value_negative,-1}",
             q);
    harness_expect_channel_close(conn, 1, declare_prio(conn, 1, q, -1), 406, s_text, 50, 10);
    harness_channel_open(conn, 1);
    CHECKF(harness_wait_queue_gone(conn, 1, q, 0), "queue %s exists after invalid declares", q);
    harness_channel_open(conn, 1);

    CHECK_REPLY(declare_prio(conn, 1, q, 5));
    CHECK_REPLY(declare_prio(conn, 1, q, 5));
    snprintf(s_text, sizeof s_text,
             "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue '%s' in vhost "
             "'/': received '3' but current is '5'",
             q);
    harness_expect_channel_close(conn, 1, declare_prio(conn, 1, q, 3), 406, s_text, 50, 10);
    harness_channel_open(conn, 1);
    snprintf(s_text, sizeof s_text,
             "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue '%s' in vhost "
             "'/': received none but current is the value '5' of type 'signedint'",
             q);
    harness_expect_channel_close(conn, 1, declare_prio(conn, 1, q, -2000), 406, s_text, 50, 10);
    harness_channel_open(conn, 1);
    harness_queue_delete(conn, 1, q);
    harness_log("x-max-priority declare errors: ok");
}

/* Counts over all levels; purge empties every level. */
static void check_counts_purge(amqp_connection_state_t conn)
{
    char q[64];
    snprintf(q, sizeof q, "it-prio-purge-%d", s_pid);
    CHECK_REPLY(declare_prio(conn, 1, q, 10));
    for (int i = 0; i < 30; i++) {
        char body[16];
        snprintf(body, sizeof body, "m%d", i);
        publish_prio(conn, q, body, i % 3 == 0 ? NO_PRIO : i % 12);
    }
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 30, 5000), 30);
    CHECK_EQ(harness_queue_purge(conn, 1, q), 30);
    uint32_t m = 99;
    CHECK_REPLY(harness_queue_peek(conn, 1, q, &m, NULL));
    CHECK_EQ(m, 0);
    amqp_rpc_reply_t r = amqp_basic_get(conn, 1, amqp_cstring_bytes(q), 1);
    CHECK_REPLY(r);
    CHECK(r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD);
    harness_queue_delete(conn, 1, q);
    harness_log("counts and purge: ok");
}

int main(void)
{
    harness_broker_t b;
    amqp_connection_state_t conn = harness_begin(&b, 55, NULL);
    s_pid = (int)getpid();

    check_get_order(conn);
    check_consume_order(conn);
    check_requeue(conn);
    check_levels(conn);
    check_declare_errors(conn);
    check_counts_purge(conn);
    harness_disconnect(conn);
    return harness_finish(&b);
}
