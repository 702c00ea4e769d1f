/* 60-ext-expires-restart — durable queues with x-expires across a warrend restart: one whose
 * time ran out while warrend was down is deleted after the restart (its persistent messages
 * with it, not dead-lettered); one with time left is still there with its messages.
 * Skips against an external broker (it stops and starts warrend).
 * Checked against RabbitMQ 3.10.8 by hand (rabbitmqctl stop_app, 1.5 s, start_app on a private
 * node): a durable queue with x-expires 1000 exists right after the restart (its timer starts
 * again at recovery) and is gone about a second later. Whether it exists right after the restart
 * is not asserted; only that it goes. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static harness_broker_t s_broker;
static amqp_connection_state_t s_conn; /* owned: channels 1 and 3 open */

static void connect_broker(void)
{
    s_conn = harness_open(&s_broker);
    harness_channel_open(s_conn, 3);
}

static void declare(const char *q, long expires, const char *dlq)
{
    harness_args_t a = {.n = 0};
    if (expires > 0)
        harness_arg_int(&a, "x-expires", 'I', expires);
    if (dlq) {
        harness_arg_str(&a, "x-dead-letter-exchange", "");
        harness_arg_str(&a, "x-dead-letter-routing-key", dlq);
    }
    harness_queue_declare(s_conn, 1, q, HARNESS_QUEUE_DURABLE, harness_args_table(&a));
}

/* queue.bind on channel 3: not "use" of the queue (see 60-ext-expires). */
static bool exists(const char *q)
{
    return harness_queue_exists(s_conn, 3, q);
}

static void publish(const char *q, const char *body)
{
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof p);
    p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    p.delivery_mode = 2;
    harness_publish_props(s_conn, 1, "", q, false, &p, body);
}

int main(void)
{
    harness_watchdog(55);
    harness_broker_start(&s_broker);
    harness_require_own_broker(&s_broker);
    connect_broker();
    const char *shortq = "expr.short", *longq = "expr.long", *dlq = "expr.dlq";
    declare(dlq, 0, NULL);
    declare(shortq, 1000, dlq);
    declare(longq, 60000, dlq);
    publish(shortq, "s1");
    publish(longq, "l1");
    CHECK_EQ(harness_wait_message_count(s_conn, 1, shortq, 1, 5000), 1);
    CHECK_EQ(harness_wait_message_count(s_conn, 1, longq, 1, 5000), 1);
    int64_t t0 = harness_now_ms();

    harness_broker_shutdown(&s_broker);
    amqp_destroy_connection(s_conn);
    int64_t wait = t0 + 1500 - harness_now_ms();
    if (wait > 0)
        usleep((useconds_t)wait * 1000);
    harness_broker_respawn(&s_broker, NULL);
    connect_broker();

    int64_t deadline = harness_now_ms() + 5000;
    while (exists(shortq)) {
        CHECKF(harness_now_ms() < deadline, "%s (x-expires 1000) still exists 5 s after the "
               "restart", shortq);
        usleep(50000);
    }
    uint32_t n = 0;
    CHECK_REPLY(harness_queue_peek(s_conn, 1, dlq, &n, NULL));
    CHECKF(n == 0, "the expired queue dead-lettered %u messages", n);
    CHECK(exists(longq));
    char got[64];
    harness_drain(s_conn, 1, longq, got, sizeof got);
    CHECK_STREQ(got, "l1");
    harness_log("durable x-expires queues after a restart: ok");

    harness_disconnect(s_conn);
    CHECK(harness_broker_stop(&s_broker) == 0);
    harness_log("PASS");
    return 0;
}
