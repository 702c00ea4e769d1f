/* 40-queue-flow — Warren's flow control (issue 9; RabbitMQ has its own credit flow with other
 * numbers, so this runs against warrend only). A publisher whose messages go to a queue more than
 * 4096 messages ahead of consumers that are draining it (a delivery within the last 100 ms) is not
 * read until the queue is down to 2048, loses its consumers or stops delivering for 100 ms:
 *  a) a consumer that takes about 2,000 msg/s while a publisher sends 8,000 as fast as it can:
 *     the queue never holds much more than 4096 ready messages, and everything arrives;
 *  b) a stuck consumer (prefetch 1, never acks) does not hold publishers back: 8,000 messages
 *     go through to the queue (as in RabbitMQ, the queue grows);
 *  c) a connection that consumes is never paused (its acks may be what drains the queue).
 * Publishers run in their own thread on their own connection; the main thread watches the queue's
 * ready count with passive declares. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

#define TOTAL 8000
#define FLOW_HIGH 4096
#define SLACK 300 /* publishes already read when the pause begins (one 64 KiB read and more) */

static harness_broker_t s_b;
static const char *s_q;
static atomic_int s_published, s_consumed;
static atomic_bool s_stop;

static void *publisher(void *arg)
{
    (void)arg;
    amqp_connection_state_t p = harness_connect(&s_b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    harness_channel_open(p, 1);
    static char body[1024];
    memset(body, 'x', sizeof body);
    for (int i = 0; i < TOTAL; i++) {
        CHECK_AMQP(amqp_basic_publish(p, 1, amqp_empty_bytes, amqp_cstring_bytes(s_q), 0, 0,
                                      NULL, (amqp_bytes_t){sizeof body, body}));
        atomic_fetch_add(&s_published, 1);
    }
    harness_disconnect(p);
    return NULL;
}

/* A consumer that keeps taking messages, about one every 0.5 ms, acking each, until stopped. */
static void *consumer(void *arg)
{
    (void)arg;
    amqp_connection_state_t c = harness_connect(&s_b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    harness_channel_open(c, 1);
    harness_qos(c, 1, 10, false);
    amqp_basic_consume(c, 1, amqp_cstring_bytes(s_q), amqp_cstring_bytes("steady"), 0, 0, 0,
                       amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(c));
    while (!atomic_load(&s_stop)) {
        struct timeval tv = {0, 100 * 1000};
        amqp_envelope_t env;
        amqp_maybe_release_buffers(c);
        amqp_rpc_reply_t r = amqp_consume_message(c, &env, &tv, 0);
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            r.library_error == AMQP_STATUS_TIMEOUT)
            continue;
        CHECK_REPLY(r);
        CHECK_AMQP(amqp_basic_ack(c, 1, env.delivery_tag, 0));
        amqp_destroy_envelope(&env);
        atomic_fetch_add(&s_consumed, 1);
        usleep(500); /* the consumer's own pace: slower than the publisher */
    }
    harness_disconnect(c);
    return NULL;
}

static void case_paced_by_a_draining_consumer(amqp_connection_state_t m)
{
    s_q = harness_name("paced");
    harness_queue_declare(m, 1, s_q, 0, amqp_empty_table);
    atomic_store(&s_published, 0);
    atomic_store(&s_consumed, 0);
    atomic_store(&s_stop, false);
    pthread_t ct, pt;
    CHECK(pthread_create(&ct, NULL, consumer, NULL) == 0);
    for (uint32_t consumers = 0; consumers == 0;) { /* the consumer is there first */
        CHECK_REPLY(harness_queue_peek(m, 1, s_q, NULL, &consumers));
        if (!consumers)
            usleep(10 * 1000);
    }
    CHECK(pthread_create(&pt, NULL, publisher, NULL) == 0);
    uint32_t most = 0;
    int64_t deadline = harness_now_ms() + 30000;
    while (atomic_load(&s_consumed) < TOTAL && harness_now_ms() < deadline) {
        uint32_t n = harness_queue_count(m, 1, s_q);
        most = n > most ? n : most;
        usleep(20 * 1000);
    }
    CHECK(pthread_join(pt, NULL) == 0);
    atomic_store(&s_stop, true);
    CHECK(pthread_join(ct, NULL) == 0);
    harness_log("paced: at most %u ready; %d published, %d consumed", most,
                atomic_load(&s_published), atomic_load(&s_consumed));
    CHECK_EQ(atomic_load(&s_consumed), TOTAL);
    CHECKF(most >= FLOW_HIGH / 2 && most <= FLOW_HIGH + SLACK,
           "the queue held up to %u ready messages: the publisher should wait past %d", most,
           FLOW_HIGH);
}

static void case_stuck_consumer_holds_nobody(amqp_connection_state_t m)
{
    s_q = harness_name("stuck");
    harness_queue_declare(m, 1, s_q, 0, amqp_empty_table);
    harness_channel_open(m, 2);
    harness_qos(m, 2, 1, false);
    amqp_basic_consume(m, 2, amqp_cstring_bytes(s_q), amqp_cstring_bytes("hold"), 0, 0, 0,
                       amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(m));
    atomic_store(&s_published, 0);
    pthread_t pt;
    CHECK(pthread_create(&pt, NULL, publisher, NULL) == 0);
    CHECK(pthread_join(pt, NULL) == 0); /* the watchdog fails us if it never finishes */
    CHECK_EQ(atomic_load(&s_published), TOTAL);
    /* All but the one the consumer holds are ready (the publisher's close followed them). */
    CHECK_EQ(harness_wait_message_count(m, 1, s_q, TOTAL - 1, 5000), TOTAL - 1);

    /* c) The consuming connection publishes past the high mark and is not paused. */
    harness_publish_range(m, s_q, 1, 300);
    CHECK_EQ(harness_wait_message_count(m, 1, s_q, TOTAL - 1 + 300, 5000), TOTAL - 1 + 300);
    harness_log("stuck consumer: the publisher went through, the consuming connection too");
}

int main(void)
{
    harness_watchdog(55);
    harness_broker_start(&s_b);
    harness_require_own_broker(&s_b);
    harness_name_init("it-flow");
    amqp_connection_state_t m = harness_connect(&s_b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    harness_channel_open(m, 1);

    case_paced_by_a_draining_consumer(m);
    case_stuck_consumer_holds_nobody(m);

    harness_disconnect(m);
    harness_check_alive(&s_b);
    CHECK(harness_broker_stop(&s_b) == 0);
    harness_log("PASS");
    return 0;
}
