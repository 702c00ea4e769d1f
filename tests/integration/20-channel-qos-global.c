/* 20-channel-qos-global — channel-wide prefetch (basic.qos global=true) over several queues on
 * one channel: no-ack consumers beside a manual-ack one, and that every queue's consumer keeps
 * getting messages as acks free the channel's limit (not only the consumer that was acked).
 * The waits for "nothing more comes" end after 300 ms of quiet; the totals are exact.
 * RabbitMQ 3.10.8 answers (asserted below):
 *  qos(2, global): A (manual ack) on QA (2 messages) takes both; then B (no-ack) on QB (5
 *      messages) gets none while the 2 are unacked; acking them (QA empty) lets B take all 5.
 *      With nothing unacked, 3 more to QB: B gets all 3 (no-ack deliveries do not count against
 *      the limit). 3 more to QA: A takes 2 (the limit); 2 more to QB: B gets none; acking A's 2:
 *      A takes QA's last and B both of QB's. Totals A 5, B 10; both queues empty.
 *  3 queues of 10, one consumer each on one channel with qos(N, global): all 30 arrive, 10 from
 *      each queue, and the client never holds more than N unacked: N 1 acking each delivery; N 3
 *      acking (single) the oldest once 3 are unacked; N 4 acking multiple once 4 are; N 3
 *      acking each.
 *  queues of 1 (or 2), 10 and 10 where the first queue's consumer consumes alone first and takes
 *      N (so its queue is empty), the other two consume at the limit and get nothing; then acks
 *      of only the first consumer's messages (N 1, one ack; N 2, one multiple ack; N 2, one
 *      single ack of the oldest) let the other queues through, and all 21 (22) arrive. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <string.h>

#include <amqp_framing.h>

enum { NQ = 3 };

typedef struct tally {
    int per[NQ];          /* deliveries per consumer tag c0..c2 */
    int total;
    uint64_t last_dtag;   /* highest delivery tag seen */
    uint64_t last_of[NQ]; /* per consumer */
    int unacked;          /* deliveries that need an ack and are not acked yet (client side) */
    int max_unacked;
    bool no_ack[NQ];      /* consumer k acks nothing */
} tally_t;

static void fill(amqp_connection_state_t conn, const char *q, int n)
{
    harness_fill(conn, q, 1, n);
}

static void consume(amqp_connection_state_t conn, amqp_channel_t ch, const char *q, int k,
                    bool no_ack)
{
    char tag[16];
    snprintf(tag, sizeof tag, "c%d", k);
    harness_consume(conn, ch, q, tag, no_ack ? HARNESS_CONSUME_NO_ACK : 0, amqp_empty_table);
}

/* One delivery within timeout_ms, counted in t: true; false on timeout. */
static bool next_delivery(amqp_connection_state_t conn, tally_t *t, int timeout_ms)
{
    amqp_envelope_t env;
    if (!harness_next_delivery(conn, timeout_ms, &env))
        return false;
    CHECKF(env.consumer_tag.len == 2 && ((char *)env.consumer_tag.bytes)[0] == 'c',
           "consumer tag %.*s", (int)env.consumer_tag.len, (char *)env.consumer_tag.bytes);
    int k = ((char *)env.consumer_tag.bytes)[1] - '0';
    CHECK(k >= 0 && k < NQ);
    t->per[k]++;
    t->total++;
    t->last_dtag = env.delivery_tag;
    t->last_of[k] = env.delivery_tag;
    if (!t->no_ack[k]) {
        t->unacked++;
        if (t->unacked > t->max_unacked)
            t->max_unacked = t->unacked;
    }
    amqp_destroy_envelope(&env);
    return true;
}

/* Take deliveries until none arrives for 300 ms. Nothing is acked. */
static void collect(amqp_connection_state_t conn, tally_t *t)
{
    while (next_delivery(conn, t, 300)) {
    }
}

/* No-ack consumers beside a manual-ack one on a channel with qos(2, global=true): their
 * deliveries wait while the channel's limit is reached, but do not count against it. */
static void check_no_ack(amqp_connection_state_t conn)
{
    const char *qa = harness_name("noack-a"), *qb = harness_name("noack-b");
    tally_t t = {.no_ack = {false, true}};
    fill(conn, qa, 2);
    fill(conn, qb, 5);
    harness_channel_open(conn, 2);
    harness_qos(conn, 2, 2, true);
    /* A (c0, manual ack) takes QA's 2: the limit is reached. */
    consume(conn, 2, qa, 0, false);
    collect(conn, &t);
    CHECK_EQ(t.per[0], 2);
    /* B (c1, no-ack) gets nothing while it is. */
    consume(conn, 2, qb, 1, true);
    collect(conn, &t);
    CHECK_EQ(t.per[1], 0);
    CHECK_EQ(harness_queue_count(conn, 1, qb), 5);
    /* A's acks (QA is empty) let B take all 5: they do not count. */
    CHECK_AMQP(amqp_basic_ack(conn, 2, t.last_of[0], 1));
    collect(conn, &t);
    CHECK_EQ(t.per[0], 2);
    CHECK_EQ(t.per[1], 5);
    /* Nor do they when B alone is busy: 3 more, 3 deliveries. */
    harness_publish_range(conn, qb, 6, 8);
    collect(conn, &t);
    CHECK_EQ(t.per[1], 8);
    /* 3 more to QA: A takes 2 (the limit), B then gets none of QB's next 2. */
    harness_publish_range(conn, qa, 3, 5);
    collect(conn, &t);
    CHECK_EQ(t.per[0], 4);
    harness_publish_range(conn, qb, 9, 10);
    collect(conn, &t);
    CHECK_EQ(t.per[1], 8);
    CHECK_EQ(harness_queue_count(conn, 1, qb), 2);
    /* Acking A's 2: A takes QA's last (1 unacked, below the limit), B its 2. */
    CHECK_AMQP(amqp_basic_ack(conn, 2, t.last_of[0], 1));
    collect(conn, &t);
    CHECK_EQ(t.per[0], 5);
    CHECK_EQ(t.per[1], 10);
    CHECK_AMQP(amqp_basic_ack(conn, 2, t.last_of[0], 1));
    harness_expect_quiet(conn, 200, "after the last ack");
    CHECK_EQ(harness_queue_count(conn, 1, qa), 0);
    CHECK_EQ(harness_queue_count(conn, 1, qb), 0);
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    harness_queue_delete(conn, 1, qa);
    harness_queue_delete(conn, 1, qb);
    harness_log("no-ack consumers wait while the channel limit is reached, and do not count: ok");
}

enum ack_policy {
    ACK_EACH,      /* basic.ack of each delivery as it comes */
    ACK_WHEN_FULL, /* basic.ack multiple of the latest delivery once n are unacked */
    ACK_OLDEST,    /* once n are unacked, basic.ack (single) of the oldest: one slot at a time */
};

static const char *const s_policy[] = {"ack each", "ack multiple when full",
                                       "ack the oldest when full"};

/* One channel with qos(n, global=true) and a manual-ack consumer c<k> on each of NQ queues
 * holding size[k] messages. With alone_first, c0 consumes (and gets its first messages) before
 * the others exist, so that the first acks are c0's. Acks by policy; every message of every
 * queue must arrive within 10 s, and never more than n are unacked. */
static void check_liveness(amqp_connection_state_t conn, amqp_channel_t ch, int n,
                           const int size[NQ], enum ack_policy policy, bool alone_first)
{
    const char *q[NQ];
    int want = 0;
    for (int k = 0; k < NQ; k++) {
        q[k] = harness_name("live-%u-%d", ch, k);
        fill(conn, q[k], size[k]);
        want += size[k];
    }
    harness_channel_open(conn, ch);
    harness_qos(conn, ch, (uint16_t)n, true);
    tally_t t = {0};
    if (alone_first) {
        /* c0 takes n (size[0] >= n); the others, consuming while the limit is reached, get
         * nothing until an ack of c0's messages frees it. */
        CHECK(size[0] >= n);
        consume(conn, ch, q[0], 0, false);
        collect(conn, &t);
        CHECK_EQ(t.per[0], n);
        for (int k = 1; k < NQ; k++)
            consume(conn, ch, q[k], k, false);
        collect(conn, &t);
        CHECK_EQ(t.total, n);
        CHECK_EQ(t.per[0], t.total);
        CHECK_EQ(t.last_dtag, t.total);
        /* Free the limit with acks of c0's messages only: its queue is empty by now (or will
         * be), so only the other queues can use what the acks free. */
        if (policy == ACK_WHEN_FULL) {
            CHECK_AMQP(amqp_basic_ack(conn, ch, t.last_dtag, 1));
            t.unacked = 0;
        } else if (policy == ACK_EACH) {
            for (int i = 1; i <= t.total; i++)
                CHECK_AMQP(amqp_basic_ack(conn, ch, (uint64_t)i, 0));
            t.unacked = 0;
        } else {
            CHECK_AMQP(amqp_basic_ack(conn, ch, 1, 0));
            t.unacked--;
        }
    } else {
        for (int k = 0; k < NQ; k++)
            consume(conn, ch, q[k], k, false);
    }
    uint64_t oldest = (uint64_t)(t.total - t.unacked) + 1; /* every delivery tag below is acked */
    int64_t deadline = harness_now_ms() + 10000;
    while (t.total < want) {
        int64_t left = deadline - harness_now_ms();
        bool got = left > 0 && next_delivery(conn, &t, (int)left);
        CHECKF(got,
               "qos(%d, global), %s: %d of %d deliveries came in 10 s (per queue %d %d %d of %d "
               "%d %d), %d unacked",
               n, s_policy[policy], t.total, want, t.per[0], t.per[1], t.per[2], size[0],
               size[1], size[2], t.unacked);
        CHECKF(t.unacked <= n, "qos(%d, global): %d deliveries unacked", n, t.unacked);
        if (t.total == want || policy == ACK_EACH ||
            (policy == ACK_WHEN_FULL && t.unacked == n)) {
            CHECK_AMQP(amqp_basic_ack(conn, ch, t.last_dtag, policy != ACK_EACH));
            t.unacked = 0;
            oldest = t.last_dtag + 1;
        } else if (policy == ACK_OLDEST && t.unacked == n) {
            CHECK_AMQP(amqp_basic_ack(conn, ch, oldest++, 0));
            t.unacked--;
        }
    }
    harness_expect_quiet(conn, 200, "after every message came");
    for (int k = 0; k < NQ; k++) {
        CHECK_EQ(t.per[k], size[k]);
        CHECK_EQ(harness_queue_count(conn, 1, q[k]), 0);
    }
    if (policy != ACK_EACH)
        CHECK_EQ(t.max_unacked, n);
    CHECK_REPLY(amqp_channel_close(conn, ch, AMQP_REPLY_SUCCESS));
    for (int k = 0; k < NQ; k++)
        harness_queue_delete(conn, 1, q[k]);
    harness_log("qos(%d, global), %s, queues of %d %d %d%s: all %d came, at most %d unacked: ok",
                n, s_policy[policy], size[0], size[1], size[2], alone_first ? ", c0 first" : "",
                want, t.max_unacked);
}

int main(void)
{
    harness_broker_t b;
    amqp_connection_state_t conn = harness_begin(&b, 55, "it-qosg");
    check_no_ack(conn);
    static const int ten[NQ] = {10, 10, 10}, one[NQ] = {1, 10, 10}, two[NQ] = {2, 10, 10};
    check_liveness(conn, 3, 1, ten, ACK_EACH, false);
    check_liveness(conn, 4, 3, ten, ACK_OLDEST, false);
    check_liveness(conn, 5, 4, ten, ACK_WHEN_FULL, false);
    check_liveness(conn, 6, 1, one, ACK_EACH, true);
    check_liveness(conn, 7, 2, two, ACK_WHEN_FULL, true);
    check_liveness(conn, 8, 2, two, ACK_OLDEST, true);
    check_liveness(conn, 9, 3, ten, ACK_EACH, false);
    harness_disconnect(conn);
    return harness_finish(&b);
}
