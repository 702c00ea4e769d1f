/* 20-channel-qos — basic.qos prefetch_count with RabbitMQ's meaning of global: per consumer
 * when false (for consumers created afterwards), per channel when true, both at once; and
 * prefetch_size, and basic.get, which no limit applies to.
 * Each consumer's queue holds 10 messages; the test counts deliveries until nothing more comes
 * for 300 ms and asserts the exact totals.
 * RabbitMQ 3.10.8 answers (asserted below):
 *  qos(3, global=false), 10 ready: 3 deliveries; each ack lets exactly as many more through.
 *      Two consumers on one channel get 3 each (the limit is per consumer).
 *  a consumer keeps the prefetch_count it was created with: qos(5, false) afterwards does not
 *      change it; prefetch_count 0 means no limit.
 *  qos(4, global=true), two consumers: 4 deliveries between them; raising it to 6 lets 2 more
 *      through.
 *  qos(2, false) + qos(5, true), three consumers: none has more than 2, 5 in all.
 *  prefetch_size != 0: connection.close 540 "NOT_IMPLEMENTED - prefetch_size!=0 (1000)" (60.10).
 *  basic.get on a channel whose consumer (and channel) limit is reached still answers get-ok,
 *      and messages got that way do not count against either limit while unacked. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

#define NQ 3
#define PER_QUEUE 10

static char s_q[NQ][64];

/* Queue k, emptied and filled with PER_QUEUE messages. */
static void fill(amqp_connection_state_t conn, int k)
{
    harness_fill(conn, s_q[k], 0, PER_QUEUE - 1);
}

static void consume(amqp_connection_state_t conn, amqp_channel_t ch, int k)
{
    char tag[32];
    snprintf(tag, sizeof tag, "c%d", k);
    harness_consume(conn, ch, s_q[k], tag, 0, amqp_empty_table);
}

typedef struct tally {
    int per[NQ];   /* deliveries per consumer tag c0..c2 */
    int total;
    uint64_t last_tag[8]; /* per channel: highest delivery tag seen */
} tally_t;

/* Take deliveries until none arrives for 300 ms; count them. Nothing is acked. */
static void collect(amqp_connection_state_t conn, tally_t *t)
{
    amqp_envelope_t env;
    while (harness_next_delivery(conn, 300, &env)) {
        CHECK(env.consumer_tag.len == 2 && ((char *)env.consumer_tag.bytes)[0] == 'c');
        int k = ((char *)env.consumer_tag.bytes)[1] - '0';
        CHECK(k >= 0 && k < NQ);
        CHECK(env.channel < 8);
        t->per[k]++;
        t->total++;
        t->last_tag[env.channel] = env.delivery_tag;
        amqp_destroy_envelope(&env);
    }
}

static void ack_all(amqp_connection_state_t conn, amqp_channel_t ch)
{
    CHECK_AMQP(amqp_basic_ack(conn, ch, 0, 1));
}

static void check_per_consumer(amqp_connection_state_t conn)
{
    tally_t t = {0};
    fill(conn, 0);
    fill(conn, 1);
    harness_channel_open(conn, 2);
    harness_qos(conn, 2, 3, false);
    consume(conn, 2, 0);
    collect(conn, &t);
    CHECK_EQ(t.total, 3);
    /* ack one: exactly one more */
    CHECK_AMQP(amqp_basic_ack(conn, 2, 1, 0));
    collect(conn, &t);
    CHECK_EQ(t.total, 4);
    CHECK_EQ(t.last_tag[2], 4);
    /* ack two (multiple up to 3): two more */
    CHECK_AMQP(amqp_basic_ack(conn, 2, 3, 1));
    collect(conn, &t);
    CHECK_EQ(t.total, 6);

    /* a second consumer on the same channel has its own 3 */
    consume(conn, 2, 1);
    collect(conn, &t);
    CHECK_EQ(t.per[0], 6);
    CHECK_EQ(t.per[1], 3);

    /* a new qos(global=false) does not change existing consumers */
    harness_qos(conn, 2, 5, false);
    collect(conn, &t);
    CHECK_EQ(t.total, 9);

    /* ack everything: each consumer refills to its own 3 */
    ack_all(conn, 2);
    collect(conn, &t);
    CHECK_EQ(t.per[0], 9);
    CHECK_EQ(t.per[1], 6);
    ack_all(conn, 2);
    collect(conn, &t);
    CHECK_EQ(t.per[0], 10);
    CHECK_EQ(t.per[1], 9);
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));

    /* prefetch 0: no limit */
    fill(conn, 0);
    harness_channel_open(conn, 2);
    harness_qos(conn, 2, 0, false);
    memset(&t, 0, sizeof t);
    consume(conn, 2, 0);
    collect(conn, &t);
    CHECK_EQ(t.total, PER_QUEUE);
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    harness_log("prefetch per consumer (global=false): ok");
}

static void check_global(amqp_connection_state_t conn)
{
    tally_t t = {0};
    fill(conn, 0);
    fill(conn, 1);
    harness_channel_open(conn, 3);
    harness_qos(conn, 3, 4, true);
    consume(conn, 3, 0);
    consume(conn, 3, 1);
    collect(conn, &t);
    harness_log("global=true 4: %d + %d", t.per[0], t.per[1]);
    CHECK_EQ(t.total, 4);
    CHECK_AMQP(amqp_basic_ack(conn, 3, 1, 0));
    collect(conn, &t);
    CHECK_EQ(t.total, 5);
    /* raising the channel limit lets more through at once */
    harness_qos(conn, 3, 6, true);
    collect(conn, &t);
    CHECK_EQ(t.total, 7);
    ack_all(conn, 3);
    collect(conn, &t);
    CHECK_EQ(t.total, 13);
    CHECK_REPLY(amqp_channel_close(conn, 3, AMQP_REPLY_SUCCESS));
    harness_log("prefetch per channel (global=true): ok");
}

static void check_both(amqp_connection_state_t conn)
{
    tally_t t = {0};
    for (int k = 0; k < NQ; k++)
        fill(conn, k);
    harness_channel_open(conn, 4);
    harness_qos(conn, 4, 2, false);
    harness_qos(conn, 4, 5, true);
    for (int k = 0; k < NQ; k++)
        consume(conn, 4, k);
    collect(conn, &t);
    harness_log("global=false 2 + global=true 5: %d %d %d", t.per[0], t.per[1], t.per[2]);
    CHECK_EQ(t.total, 5);
    for (int k = 0; k < NQ; k++)
        CHECK(t.per[k] <= 2);
    /* all acked: again 5 in all, at most 2 each */
    ack_all(conn, 4);
    tally_t t2 = {0};
    collect(conn, &t2);
    CHECK_EQ(t2.total, 5);
    for (int k = 0; k < NQ; k++)
        CHECK(t2.per[k] <= 2);
    CHECK_REPLY(amqp_channel_close(conn, 4, AMQP_REPLY_SUCCESS));
    harness_log("both limits: ok");
}

static void check_get_ignores_prefetch(amqp_connection_state_t conn)
{
    fill(conn, 0);
    fill(conn, 1);
    harness_channel_open(conn, 5);
    harness_qos(conn, 5, 1, false);
    harness_qos(conn, 5, 1, true);
    consume(conn, 5, 0);
    tally_t t = {0};
    collect(conn, &t);
    CHECK_EQ(t.total, 1);
    /* both limits are reached; basic.get (manual ack) still gets, and gets again */
    for (int i = 0; i < 3; i++) {
        amqp_rpc_reply_t r = amqp_basic_get(conn, 5, amqp_cstring_bytes(s_q[1]), 0);
        CHECK_REPLY(r);
        CHECKF(r.reply.id == AMQP_BASIC_GET_OK_METHOD, "basic.get %d: %s", i,
               amqp_method_name(r.reply.id));
        amqp_basic_get_ok_t *ok = r.reply.decoded;
        CHECK_EQ(ok->delivery_tag, 2 + i);
        CHECK_EQ(ok->message_count, PER_QUEUE - 1 - i);
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(conn, 5, &msg, 0));
        amqp_destroy_message(&msg);
    }
    /* nor do the unacked gets count against either limit: acking the consumer's one message
     * lets exactly one more through although 3 gets are still unacked on the channel */
    CHECK_AMQP(amqp_basic_ack(conn, 5, 1, 0));
    collect(conn, &t);
    CHECK_EQ(t.total, 2);
    CHECK_EQ(t.last_tag[5], 5);
    /* and acking the gets as well as the consumer's message: one more again */
    ack_all(conn, 5);
    collect(conn, &t);
    CHECK_EQ(t.total, 3);
    CHECK_REPLY(amqp_channel_close(conn, 5, AMQP_REPLY_SUCCESS));
    harness_log("basic.get ignores prefetch: ok");
}

static void check_prefetch_size(const harness_broker_t *b)
{
    amqp_connection_state_t conn = harness_open(b);
    amqp_basic_qos(conn, 1, 1000, 10, 0);
    harness_expect_connection_close(conn, amqp_get_rpc_reply(conn), 540,
                                    "NOT_IMPLEMENTED - prefetch_size!=0 (1000)", 60, 10);
    harness_log("prefetch_size != 0: ok");
}

int main(void)
{
    harness_broker_t b;
    amqp_connection_state_t conn = harness_begin(&b, 55, NULL);
    for (int k = 0; k < NQ; k++)
        snprintf(s_q[k], sizeof s_q[k], "it-qos-%d-%d", k, (int)getpid());
    check_per_consumer(conn);
    check_global(conn);
    check_both(conn);
    check_get_ignores_prefetch(conn);
    check_prefetch_size(&b);
    for (int k = 0; k < NQ; k++) {
        harness_queue_delete(conn, 1, s_q[k]);
    }
    harness_disconnect(conn);
    return harness_finish(&b);
}
