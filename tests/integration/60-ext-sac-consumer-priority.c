/* 60-ext-sac-consumer-priority — consumer priorities (the x-priority argument of basic.consume):
 * messages go to the highest-priority consumers that can take them, lower ones get what the
 * higher ones cannot take, and the lower ones take over when the higher ones go.
 * RabbitMQ 3.10.8 answers (asserted below; Q is the queue name):
 *  a consumer with x-priority 10 and prefetch 2 beside one with the default priority 0: the high
 *      one gets messages until it holds 2 unacked, then the low one gets them; once the high one
 *      acks, it is served first again.
 *  consumers of one priority share its messages round-robin; lower ones get none meanwhile; a
 *      negative priority is below the default 0.
 *  when the high one is cancelled, or its channel or connection closes, the low one gets
 *      everything, including the high one's requeued unacked messages (redelivered, in order)
 *      when its channel or connection closed; a new high one is served first again.
 *  x-priority "high" (a longstr): channel.close 406 "PRECONDITION_FAILED - invalid arg
 *      'x-priority' for queue 'Q' in vhost '/': \"expected integer, got longstr\"" (60.20), the
 *      consumer is not registered. */
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

/* basic.consume with tag and x-priority prio (no argument at all when prio is NO_PRIO). */
enum { NO_PRIO = -1000 };

static void consume(amqp_connection_state_t conn, amqp_channel_t ch, const char *q,
                    const char *tag, int prio)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("x-priority")};
    e.value.kind = AMQP_FIELD_KIND_I32;
    e.value.value.i32 = prio;
    harness_consume(conn, ch, q, tag, 0,
                    prio != NO_PRIO ? (amqp_table_t){.num_entries = 1, .entries = &e}
                                    : amqp_empty_table);
}

/* Deliveries seen by one connection: who got which body, with the redelivered flag. */
typedef struct seen {
    char tag[64][16]; /* by body number */
    bool redelivered[64];
    uint64_t dtag[64];
    int count;
} seen_t;

/* Read exactly n deliveries from conn (any channel) into s. Channels interleave on the wire, so
 * the checks look at who got which body, and at the order per consumer. */
static void collect(amqp_connection_state_t conn, seen_t *s, int n, char *order, size_t cap)
{
    size_t len = strlen(order);
    for (int i = 0; i < n; i++) {
        amqp_envelope_t env;
        struct timeval tv = {.tv_sec = 5};
        amqp_maybe_release_buffers(conn);
        amqp_rpc_reply_t r = amqp_consume_message(conn, &env, &tv, 0);
        char buf[512];
        CHECKF(r.reply_type == AMQP_RESPONSE_NORMAL, "delivery %d of %d: %s", i + 1, n,
               harness_reply_str(r, buf, sizeof buf));
        char body[16];
        snprintf(body, sizeof body, "%.*s", (int)env.message.body.len,
                 (const char *)env.message.body.bytes);
        int k = atoi(body);
        CHECK(k > 0 && k < 64);
        snprintf(s->tag[k], sizeof s->tag[k], "%.*s", (int)env.consumer_tag.len,
                 (const char *)env.consumer_tag.bytes);
        s->redelivered[k] = env.redelivered;
        s->dtag[k] = env.delivery_tag;
        s->count++;
        len += (size_t)snprintf(order + len, cap > len ? cap - len : 0, "%s%s:%d", len ? " " : "",
                                s->tag[k], k);
        amqp_destroy_envelope(&env);
    }
}

/* Body k went to consumer tag, redelivered or not. */
static void expect_got(const seen_t *s, int k, const char *tag, bool redel)
{
    CHECKF(strcmp(s->tag[k], tag) == 0, "message %d went to '%s', want '%s'", k, s->tag[k], tag);
    CHECKF(s->redelivered[k] == redel, "message %d: redelivered %d", k, s->redelivered[k]);
}

/* The high consumer is served first until it is full; then the low one. */
static void check_overflow_to_lower(amqp_connection_state_t conn)
{
    char q[64], order[512] = "";
    snprintf(q, sizeof q, "it-cprio-overflow-%d", s_pid);
    harness_queue_declare(conn, 1, q, 0, amqp_empty_table);
    harness_channel_open(conn, 2);
    harness_channel_open(conn, 3);
    harness_qos(conn, 2, 2, false);
    consume(conn, 3, q, "low", NO_PRIO); /* registered first: order does not matter */
    consume(conn, 2, q, "high", 10);
    harness_publish_range(conn, q, 1, 5);
    seen_t s = {0};
    collect(conn, &s, 5, order, sizeof order);
    harness_log("deliveries: %s", order);
    expect_got(&s, 1, "high", false);
    expect_got(&s, 2, "high", false);
    for (int k = 3; k <= 5; k++)
        expect_got(&s, k, "low", false);
    harness_expect_quiet(conn, 200, "after 5 deliveries");

    /* high acks both: it is first again (6, 7), then low (8). */
    CHECK_AMQP(amqp_basic_ack(conn, 2, s.dtag[2], 1));
    harness_sync(conn, 2);
    harness_publish_range(conn, q, 6, 8);
    collect(conn, &s, 3, order, sizeof order);
    expect_got(&s, 6, "high", false);
    expect_got(&s, 7, "high", false);
    expect_got(&s, 8, "low", false);
    harness_expect_quiet(conn, 200, "after 8 deliveries");
    /* Ack everything first: unacked messages of a closing channel would go to the other. */
    CHECK_AMQP(amqp_basic_ack(conn, 2, s.dtag[7], 1));
    CHECK_AMQP(amqp_basic_ack(conn, 3, s.dtag[8], 1));
    harness_sync(conn, 2);
    harness_sync(conn, 3);
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    CHECK_REPLY(amqp_channel_close(conn, 3, AMQP_REPLY_SUCCESS));
    harness_queue_delete(conn, 1, q);
    harness_log("high priority first, overflow to the lower one: ok");
}

/* Equal priorities round-robin; lower and negative ones get nothing meanwhile. */
static void check_round_robin_within(amqp_connection_state_t conn)
{
    char q[64], order[512] = "";
    snprintf(q, sizeof q, "it-cprio-rr-%d", s_pid);
    harness_queue_declare(conn, 1, q, 0, amqp_empty_table);
    for (amqp_channel_t ch = 2; ch <= 5; ch++)
        harness_channel_open(conn, ch);
    consume(conn, 2, q, "neg", -5);
    consume(conn, 3, q, "h1", 5);
    consume(conn, 4, q, "default", NO_PRIO);
    consume(conn, 5, q, "h2", 5);
    harness_publish_range(conn, q, 1, 6);
    seen_t s = {0};
    collect(conn, &s, 6, order, sizeof order);
    harness_log("deliveries: %s", order);
    for (int k = 1; k <= 6; k++)
        expect_got(&s, k, k % 2 ? "h1" : "h2", false);
    harness_expect_quiet(conn, 200, "after 6 deliveries");

    /* Without the two 5s, the default 0 is above -5. */
    CHECK_AMQP(amqp_basic_ack(conn, 3, s.dtag[5], 1));
    CHECK_AMQP(amqp_basic_ack(conn, 5, s.dtag[6], 1));
    harness_cancel(conn, 3, "h1");
    harness_cancel(conn, 5, "h2");
    harness_publish_range(conn, q, 7, 9);
    order[0] = '\0';
    collect(conn, &s, 3, order, sizeof order);
    CHECK_STREQ(order, "default:7 default:8 default:9");
    harness_expect_quiet(conn, 200, "neg gets nothing");
    uint32_t m = 99;
    CHECK_REPLY(harness_queue_peek(conn, 1, q, &m, NULL));
    CHECK_EQ(m, 0);
    CHECK_REPLY(amqp_channel_close(conn, 3, AMQP_REPLY_SUCCESS));
    CHECK_REPLY(amqp_channel_close(conn, 5, AMQP_REPLY_SUCCESS));
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    CHECK_REPLY(amqp_channel_close(conn, 4, AMQP_REPLY_SUCCESS));
    harness_queue_delete(conn, 1, q);
    harness_log("round-robin within a priority, negative below default: ok");
}

/* The high consumer goes (cancel, channel close, connection close): the low one takes over. */
static void check_handover(const harness_broker_t *b, amqp_connection_state_t conn)
{
    char q[64], order[512] = "";
    snprintf(q, sizeof q, "it-cprio-handover-%d", s_pid);
    harness_queue_declare(conn, 1, q, 0, amqp_empty_table);
    amqp_connection_state_t lc = harness_connect(b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    amqp_connection_state_t hc = harness_connect(b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    harness_channel_open(lc, 1);
    consume(lc, 1, q, "low", 0);
    seen_t ls = {0}, hs = {0};

    /* Cancel: high holds 1 (and keeps it), low gets 2 and 3. */
    harness_channel_open(hc, 1);
    consume(hc, 1, q, "high", 10);
    harness_publish_range(conn, q, 1, 1);
    collect(hc, &hs, 1, order, sizeof order);
    expect_got(&hs, 1, "high", false);
    harness_cancel(hc, 1, "high");
    harness_publish_range(conn, q, 2, 3);
    collect(lc, &ls, 2, order, sizeof order);
    expect_got(&ls, 2, "low", false);
    expect_got(&ls, 3, "low", false);
    CHECK_AMQP(amqp_basic_ack(hc, 1, hs.dtag[1], 0));
    harness_sync(hc, 1);

    /* Channel close: high2 (prefetch 2) holds 4 and 5, low gets 6; the close gives low 4 and 5
     * again. */
    harness_channel_open(hc, 2);
    harness_qos(hc, 2, 2, false);
    consume(hc, 2, q, "high2", 10);
    harness_publish_range(conn, q, 4, 6);
    collect(hc, &hs, 2, order, sizeof order);
    expect_got(&hs, 4, "high2", false);
    expect_got(&hs, 5, "high2", false);
    collect(lc, &ls, 1, order, sizeof order);
    expect_got(&ls, 6, "low", false);
    CHECK_REPLY(amqp_channel_close(hc, 2, AMQP_REPLY_SUCCESS));
    order[0] = '\0';
    collect(lc, &ls, 2, order, sizeof order);
    CHECK_STREQ(order, "low:4 low:5");
    expect_got(&ls, 4, "low", true);
    expect_got(&ls, 5, "low", true);

    /* Connection close: high3 holds 7, the connection goes, low gets 7 again then 8. */
    harness_channel_open(hc, 3);
    consume(hc, 3, q, "high3", 10);
    harness_publish_range(conn, q, 7, 7);
    collect(hc, &hs, 1, order, sizeof order);
    expect_got(&hs, 7, "high3", false);
    harness_disconnect(hc);
    harness_publish_range(conn, q, 8, 8);
    order[0] = '\0';
    collect(lc, &ls, 2, order, sizeof order);
    CHECK_STREQ(order, "low:7 low:8");
    expect_got(&ls, 7, "low", true);
    expect_got(&ls, 8, "low", false);

    /* A new high consumer is served first again. */
    hc = harness_open(b);
    consume(hc, 1, q, "high4", 10);
    harness_publish_range(conn, q, 9, 10);
    collect(hc, &hs, 2, order, sizeof order);
    expect_got(&hs, 9, "high4", false);
    expect_got(&hs, 10, "high4", false);
    harness_expect_quiet(lc, 200, "low while high4 can take everything");
    CHECK_EQ(ls.count, 7);
    CHECK_EQ(hs.count, 6);
    harness_disconnect(hc);
    harness_disconnect(lc);
    harness_queue_delete(conn, 1, q);
    harness_log("hand-over to the lower priority on cancel, channel and connection close: ok");
}

static void check_invalid(amqp_connection_state_t conn)
{
    char q[64];
    snprintf(q, sizeof q, "it-cprio-invalid-%d", s_pid);
    harness_queue_declare(conn, 1, q, 0, amqp_empty_table);
    harness_channel_open(conn, 2);
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("x-priority")};
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = amqp_cstring_bytes("high");
    amqp_basic_consume(conn, 2, amqp_cstring_bytes(q), amqp_empty_bytes, 0, 0, 0,
                       (amqp_table_t){.num_entries = 1, .entries = &e});
    snprintf(s_text, sizeof s_text,
             "PRECONDITION_FAILED - invalid arg 'x-priority' for queue '%s' in vhost '/': "
             "\"expected integer, got longstr\"",
             q);
    harness_expect_channel_close(conn, 2, amqp_get_rpc_reply(conn), 406, s_text, 60, 20);
    uint32_t c = 99;
    CHECK_REPLY(harness_queue_peek(conn, 1, q, NULL, &c));
    CHECK_EQ(c, 0);
    harness_queue_delete(conn, 1, q);
    harness_log("invalid x-priority: ok");
}

int main(void)
{
    harness_broker_t b;
    amqp_connection_state_t conn = harness_begin(&b, 55, NULL);
    s_pid = (int)getpid();

    check_overflow_to_lower(conn);
    check_round_robin_within(conn);
    check_handover(&b, conn);
    check_invalid(conn);
    harness_disconnect(conn);
    return harness_finish(&b);
}
