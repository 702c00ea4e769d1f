/* 60-ext-length — queue length limits x-max-length (ready messages) and x-max-length-bytes
 * (ready messages' body bytes) with the default overflow, drop-head: the oldest ready messages
 * are dropped, and dead-lettered with reason "maxlen" when the queue has a dead-letter
 * exchange. reject-publish and reject-publish-dlx are 60-ext-length-reject's.
 * RabbitMQ 3.10.8 answers (asserted below):
 *  - x-max-length 3, 1..5 published: the queue holds 3 4 5; 1 and 2 are dead-lettered, in that
 *    order, x-death reason "maxlen" (layout as for any first death); without a dead-letter
 *    exchange they are just gone; x-overflow "drop-head" is the same as no x-overflow.
 *  - x-max-length-bytes: heads are dropped while the ready bodies total more than the limit
 *    (4-byte bodies, limit 10: two stay); a body of exactly the limit stays alone; a body over
 *    the limit empties the queue, itself included (dead-lettered after the older ones).
 *  - x-max-length 0: every message is dead-lettered at once.
 *  - both limits: whichever is exceeded drops.
 *  - unacked messages do not count: with x-max-length 2, two fetched and unacked, three more
 *    published: the oldest of those three is dropped; requeueing the two unacked puts each back
 *    at the head, over the limit, so each is dropped in turn (dead letters: 3, then the
 *    requeued ones in requeue order). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static amqp_connection_state_t s_conn;

/* Declare q (fresh) with x-max-length maxlen and x-max-length-bytes maxbytes (< 0: none),
 * x-overflow overflow (NULL: none), dead-lettering to dlq through the default exchange (NULL:
 * none). */
static void qdeclare(const char *q, long maxlen, long maxbytes, const char *overflow,
                     const char *dlq)
{
    harness_queue_delete(s_conn, 1, q);
    harness_args_t a;
    harness_queue_declare(s_conn, 1, q, 0,
                          harness_length_args(&a, maxlen, maxbytes, 'I', overflow, dlq));
}

/* Publish the space-separated words of bodies, in order. */
static void publish_words(const char *q, const char *bodies)
{
    harness_publish_words(s_conn, 1, "", q, bodies);
}

static void check_max_length(void)
{
    const char *dlq = harness_name("dlq"), *q = harness_name("len"),
               *qd = harness_name("len-drop-head"), *plain = harness_name("len-plain"),
               *zero = harness_name("len-zero");
    qdeclare(dlq, -1, -1, NULL, NULL);
    qdeclare(q, 3, -1, NULL, dlq);
    qdeclare(qd, 3, -1, "drop-head", dlq);
    qdeclare(plain, 2, -1, NULL, NULL);
    qdeclare(zero, 0, -1, NULL, dlq);

    publish_words(q, "1 2 3 4 5");
    harness_expect_count(s_conn, 1, q, 3, "x-max-length 3");
    harness_expect_maxlen_dead(s_conn, 1, dlq, q, "1 2");
    harness_expect_drain(s_conn, 1, q, "3 4 5", "x-max-length 3");

    publish_words(qd, "1 2 3 4 5");
    harness_expect_count(s_conn, 1, qd, 3, "x-max-length 3, drop-head");
    harness_expect_maxlen_dead(s_conn, 1, dlq, qd, "1 2");
    harness_expect_drain(s_conn, 1, qd, "3 4 5", "x-max-length 3, drop-head");

    publish_words(plain, "1 2 3 4 5");
    harness_expect_count(s_conn, 1, plain, 2, "x-max-length 2, no DLX");
    harness_expect_drain(s_conn, 1, plain, "4 5", "x-max-length 2, no DLX");

    publish_words(zero, "z1 z2");
    harness_expect_maxlen_dead(s_conn, 1, dlq, zero, "z1 z2");
    CHECK_EQ(harness_queue_count(s_conn, 1, zero), 0);

    harness_queue_delete(s_conn, 1, q);
    harness_queue_delete(s_conn, 1, qd);
    harness_queue_delete(s_conn, 1, plain);
    harness_queue_delete(s_conn, 1, zero);
    harness_queue_delete(s_conn, 1, dlq);
    harness_log("x-max-length drop-head, dead letters in order: ok");
}

static void check_max_bytes(void)
{
    const char *dlq = harness_name("b-dlq"), *q = harness_name("bytes"),
               *both = harness_name("both");
    qdeclare(dlq, -1, -1, NULL, NULL);
    qdeclare(q, -1, 10, NULL, dlq);
    qdeclare(both, 3, 5, NULL, dlq);

    publish_words(q, "abc1 abc2 abc3 abc4 abc5");
    harness_expect_count(s_conn, 1, q, 2, "x-max-length-bytes 10, 4-byte bodies");
    harness_expect_maxlen_dead(s_conn, 1, dlq, q, "abc1 abc2 abc3");
    harness_expect_drain(s_conn, 1, q, "abc4 abc5", "x-max-length-bytes 10");

    /* over the limit by itself: everything goes, the big one last */
    publish_words(q, "abc1 abc2 0123456789A");
    harness_expect_maxlen_dead(s_conn, 1, dlq, q, "abc1 abc2 0123456789A");
    CHECK_EQ(harness_queue_count(s_conn, 1, q), 0);

    /* exactly the limit: stays, alone */
    publish_words(q, "abc1 0123456789");
    harness_expect_maxlen_dead(s_conn, 1, dlq, q, "abc1");
    harness_expect_drain(s_conn, 1, q, "0123456789", "a body of exactly x-max-length-bytes");

    /* both limits: bytes first (2+2+2 > 5), then length */
    publish_words(both, "aa bb cc");
    harness_expect_maxlen_dead(s_conn, 1, dlq, both, "aa");
    publish_words(both, "d e");
    harness_expect_maxlen_dead(s_conn, 1, dlq, both, "bb");
    harness_expect_drain(s_conn, 1, both, "cc d e", "x-max-length 3 and x-max-length-bytes 5");

    harness_queue_delete(s_conn, 1, q);
    harness_queue_delete(s_conn, 1, both);
    harness_queue_delete(s_conn, 1, dlq);
    harness_log("x-max-length-bytes drop-head: ok");
}

static void check_unacked_not_counted(void)
{
    const char *dlq = harness_name("u-dlq"), *q = harness_name("unacked");
    qdeclare(dlq, -1, -1, NULL, NULL);
    qdeclare(q, 2, -1, NULL, dlq);
    publish_words(q, "1 2");
    harness_expect_count(s_conn, 1, q, 2, "published");
    harness_channel_open(s_conn, 2);
    harness_got_t g1, g2;
    CHECK(harness_get(s_conn, 2, q, false, &g1));
    CHECK(harness_get(s_conn, 2, q, false, &g2));
    CHECK_STREQ(g1.body, "1");
    CHECK_STREQ(g2.body, "2");
    harness_got_free(&g1);
    harness_got_free(&g2);

    publish_words(q, "3 4 5");
    harness_expect_maxlen_dead(s_conn, 1, dlq, q, "3");
    CHECK_EQ(harness_queue_count(s_conn, 1, q), 2);

    /* back at the head, over the limit: dropped in the order they come back */
    CHECK_AMQP(amqp_basic_nack(s_conn, 2, g2.delivery_tag, 0, 1));
    CHECK_AMQP(amqp_basic_nack(s_conn, 2, g1.delivery_tag, 0, 1));
    harness_sync(s_conn, 2);
    harness_expect_maxlen_dead(s_conn, 1, dlq, q, "2 1");
    harness_expect_drain(s_conn, 1, q, "4 5", "after requeueing two over the limit");
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));

    harness_queue_delete(s_conn, 1, q);
    harness_queue_delete(s_conn, 1, dlq);
    harness_log("unacked messages do not count; requeue over the limit drops: ok");
}

int main(void)
{
    harness_broker_t b;
    s_conn = harness_begin(&b, 55, "it-len");

    check_max_length();
    check_max_bytes();
    check_unacked_not_counted();

    harness_disconnect(s_conn);
    return harness_finish(&b);
}
