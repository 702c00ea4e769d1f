/* 60-ext-expires — queue expiry (x-expires): a queue unused for that many milliseconds is
 * deleted. Unused means no consumers, no basic.get, no queue.declare of it (passive or not);
 * publishing to it is not use. Its messages are dropped, not dead-lettered.
 * Whether a queue exists is probed here with queue.bind to amq.direct, which RabbitMQ does not
 * count as use (a passive queue.declare would keep the queue alive); a missing queue answers
 * channel.close 404 "NOT_FOUND - no queue 'Q' in vhost '/'" (50.20).
 * RabbitMQ 3.10.8 answers (asserted below):
 *  - an idle queue with x-expires 300 is gone after a while;
 *  - a queue with a consumer stays (for 3 x x-expires here), and goes once it is cancelled;
 *  - basic.get every 100 ms, or queue.declare (passive or not) every 100 ms, keeps a queue with
 *    x-expires 500 alive; publishing every 50 ms does not;
 *  - a queue expiring with messages does not dead-letter them (its x-dead-letter-exchange
 *    queue stays empty); declared again, it is a new empty queue. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

#define PROBE_CH 3

static amqp_connection_state_t s_conn;

static amqp_queue_declare_ok_t declare_expiring(amqp_channel_t ch, const char *q, long expires,
                                                const char *dlq)
{
    harness_args_t a = {.n = 0};
    harness_arg_int(&a, "x-expires", 'I', expires);
    if (dlq) {
        harness_arg_str(&a, "x-dead-letter-exchange", "");
        harness_arg_str(&a, "x-dead-letter-routing-key", dlq);
    }
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(s_conn, ch, amqp_cstring_bytes(q), 0, 0, 0,
                                                     0, harness_args_table(&a));
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));
    return *ok;
}

/* Does q exist? Asked with queue.bind on PROBE_CH, which is not "use". */
static bool exists(const char *q)
{
    return harness_queue_exists(s_conn, PROBE_CH, q);
}

/* Wait (<= 5 s) until q is gone; fail otherwise. Between probes, call tick (may be NULL). */
static void wait_gone(const char *q, void (*tick)(const char *), const char *what)
{
    int64_t deadline = harness_now_ms() + 5000;
    while (exists(q)) {
        CHECKF(harness_now_ms() < deadline, "%s: queue %s still exists after 5 s", what, q);
        if (tick)
            tick(q);
        usleep(50000);
    }
}

/* For ms, call use(q) every 100 ms; q must exist all along. */
static void keep_using(const char *q, int ms, void (*use)(const char *), const char *what)
{
    int64_t end = harness_now_ms() + ms;
    while (harness_now_ms() < end) {
        if (use)
            use(q);
        usleep(100000);
        CHECKF(exists(q), "%s: queue %s expired while in use", what, q);
    }
}

static void use_get(const char *q)
{
    amqp_rpc_reply_t r = amqp_basic_get(s_conn, 1, amqp_cstring_bytes(q), 1);
    CHECK_REPLY(r);
    CHECK(r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD);
}

static void use_passive(const char *q)
{
    CHECK_REPLY(harness_queue_peek(s_conn, 1, q, NULL, NULL));
}

static void use_redeclare(const char *q)
{
    declare_expiring(1, q, 500, NULL);
}

static void publish(const char *q)
{
    harness_publish(s_conn, 1, "", q, "p");
}

static void check_idle_and_consumer(void)
{
    const char *q = harness_name("idle");
    declare_expiring(1, q, 300, NULL);
    wait_gone(q, NULL, "idle queue, x-expires 300");

    const char *c = harness_name("consumed");
    declare_expiring(1, c, 300, NULL);
    harness_channel_open(s_conn, 2);
    harness_consume(s_conn, 2, c, "keep", HARNESS_CONSUME_NO_ACK, amqp_empty_table);
    keep_using(c, 900, NULL, "x-expires 300 with a consumer");
    harness_cancel(s_conn, 2, "keep");
    wait_gone(c, NULL, "x-expires 300 after the consumer was cancelled");
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));
    harness_log("idle queue expires; a consumer keeps it: ok");
}

static void check_uses(void)
{
    const char *g = harness_name("get"), *p = harness_name("passive"),
               *r = harness_name("redeclare"), *pub = harness_name("publish");
    declare_expiring(1, g, 500, NULL);
    keep_using(g, 1200, use_get, "basic.get every 100 ms, x-expires 500");
    wait_gone(g, NULL, "x-expires 500 after the last basic.get");

    declare_expiring(1, p, 500, NULL);
    keep_using(p, 1200, use_passive, "passive declare every 100 ms, x-expires 500");
    wait_gone(p, NULL, "x-expires 500 after the last passive declare");

    declare_expiring(1, r, 500, NULL);
    keep_using(r, 1200, use_redeclare, "declare every 100 ms, x-expires 500");
    wait_gone(r, NULL, "x-expires 500 after the last declare");

    declare_expiring(1, pub, 500, NULL);
    wait_gone(pub, publish, "publishing every 50 ms is not use");
    harness_log("basic.get and declares are use, publishing is not: ok");
}

static void check_messages_dropped(void)
{
    const char *q = harness_name("msgs"), *dlq = harness_name("msgs-dlq");
    harness_queue_declare(s_conn, 1, dlq, 0, amqp_empty_table);
    declare_expiring(1, q, 300, dlq);
    for (int i = 0; i < 3; i++)
        publish(q);
    uint32_t n = harness_wait_message_count(s_conn, 1, q, 3, 5000);
    CHECK_EQ(n, 3);
    wait_gone(q, NULL, "x-expires 300 with messages");
    harness_expect_steady(s_conn, 1, dlq, 0, 200, "an expired queue's messages dead-lettered");

    amqp_queue_declare_ok_t ok = declare_expiring(1, q, 300, dlq);
    CHECK_EQ(ok.message_count, 0);
    CHECK_EQ(ok.consumer_count, 0);
    harness_queue_delete(s_conn, 1, q);
    harness_queue_delete(s_conn, 1, dlq);
    harness_log("expired queue's messages are not dead-lettered: ok");
}

int main(void)
{
    harness_broker_t b;
    s_conn = harness_begin(&b, 55, "it-expires");
    harness_channel_open(s_conn, PROBE_CH);

    check_idle_and_consumer();
    check_uses();
    check_messages_dropped();

    harness_disconnect(s_conn);
    return harness_finish(&b);
}
