/* 40-queue-flow — Warren's flow control (issue 9; RabbitMQ has its own credit flow with other
 * numbers, so this runs against warrend only): a publisher whose messages go to a queue that is
 * more than 4096 messages ahead of its consumers is not read until the queue drains to 2048,
 * loses its consumers or is deleted; a queue without consumers never holds publishers back; a
 * connection that consumes is never paused (its acks may be what drains the queue).
 * A publisher thread sends 20,000 messages of 1 KiB on its own connection while a consumer with
 * prefetch 1 holds one message unacked, so the queue can only grow. */
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

#define TOTAL 20000
#define FLOW_HIGH 4096

static harness_broker_t s_b;
static const char *s_q;
static atomic_int s_published;

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

/* The queue's ready count once it has stopped changing for 500 ms (<= 10 s). */
static uint32_t settled_count(amqp_connection_state_t conn)
{
    uint32_t last = harness_queue_count(conn, 1, s_q);
    int64_t stable_since = harness_now_ms(), deadline = stable_since + 10000;
    while (harness_now_ms() < deadline) {
        usleep(50 * 1000);
        uint32_t n = harness_queue_count(conn, 1, s_q);
        if (n != last) {
            last = n;
            stable_since = harness_now_ms();
        } else if (harness_now_ms() - stable_since >= 500) {
            break;
        }
    }
    return last;
}

int main(void)
{
    harness_watchdog(55);
    harness_broker_start(&s_b);
    harness_require_own_broker(&s_b);
    harness_name_init("it-flow");
    s_q = harness_name("q");

    amqp_connection_state_t c = harness_connect(&s_b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    harness_channel_open(c, 1);
    harness_channel_open(c, 2);
    harness_queue_declare(c, 1, s_q, 0, amqp_empty_table);
    harness_qos(c, 2, 1, false);
    amqp_basic_consume(c, 2, amqp_cstring_bytes(s_q), amqp_cstring_bytes("hold"), 0, 0, 0,
                       amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(c));

    pthread_t t;
    CHECK(pthread_create(&t, NULL, publisher, NULL) == 0);

    /* The consumer takes one message and holds it: the queue grows to the high mark and the
     * publisher is held there (its socket is not read), far from its 20,000. */
    uint32_t held = settled_count(c);
    int published = atomic_load(&s_published);
    harness_log("queue settled at %u ready, publisher at %d of %d", held, published, TOTAL);
    CHECKF(held >= FLOW_HIGH && held <= FLOW_HIGH + 200,
           "%u ready: the publisher should stop right past %d", held, FLOW_HIGH);
    CHECKF(published < TOTAL, "the publisher sent all %d messages without waiting", TOTAL);

    /* The connection with a consumer publishes too: it is never paused, so its publishes go
     * through while the other publisher waits. */
    harness_publish_range(c, s_q, 1, 300);
    uint32_t more = harness_wait_message_count(c, 1, s_q, held + 300, 5000);
    CHECK_EQ(more, held + 300);

    /* Draining below the low mark lets the publisher go on (until the high mark again). */
    amqp_queue_purge(c, 1, amqp_cstring_bytes(s_q));
    CHECK_REPLY(amqp_get_rpc_reply(c));
    uint32_t again = settled_count(c);
    CHECKF(again >= FLOW_HIGH && again <= FLOW_HIGH + 200, "%u ready after the purge", again);
    CHECK(atomic_load(&s_published) > published);

    /* Without consumers nothing holds the publisher back: it sends everything. */
    amqp_basic_cancel(c, 2, amqp_cstring_bytes("hold"));
    CHECK_REPLY(amqp_get_rpc_reply(c));
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_EQ(atomic_load(&s_published), TOTAL);
    harness_log("publisher done once the consumer went away");

    harness_disconnect(c);
    harness_check_alive(&s_b);
    CHECK(harness_broker_stop(&s_b) == 0);
    harness_log("PASS");
    return 0;
}
