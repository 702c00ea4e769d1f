/* 30-exchange-e2e — exchange-to-exchange bindings (exchange.bind / exchange.unbind): chains
 * through exchanges of different types, fan-in, a diamond, loops (x1 -> x2 -> x1) and a
 * self-binding. Every queue is drained until get-empty: each must hold exactly one copy of each
 * message that reaches it, however many paths lead there.
 * RabbitMQ 3.10.8 behaviour (asserted below):
 *  - every exchange on the way routes with the published routing key and its own type;
 *  - the delivery names the exchange the message was published to, not the last one;
 *  - loops and self-bindings are harmless: each queue gets a publish at most once;
 *  - exchange.unbind stops the flow; binding twice is one binding; exchange.delete removes the
 *    bindings where it is the source and where it is the destination. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static amqp_connection_state_t s_conn;

/* source -> destination */
static void xunbind(const char *src, const char *dst, const char *key)
{
    harness_exchange_unbind(s_conn, 1, dst, src, key);
}

static void publish(const char *x, const char *key, const char *body)
{
    harness_publish(s_conn, 1, x, key, body);
}

/* x1 (direct) -a.b-> x2 (fanout) -> x3 (topic) -a.#-> q1, and x2 -> q2 */
static void check_chain(void)
{
    const char *x1 = harness_name("c1"), *x2 = harness_name("c2"), *x3 = harness_name("c3");
    const char *q1 = harness_name("cq1"), *q2 = harness_name("cq2");
    harness_exchange_declare(s_conn, 1, x1, "direct", 0, amqp_empty_table);
    harness_exchange_declare(s_conn, 1, x2, "fanout", 0, amqp_empty_table);
    harness_exchange_declare(s_conn, 1, x3, "topic", 0, amqp_empty_table);
    harness_queue_declare(s_conn, 1, q1, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_queue_declare(s_conn, 1, q2, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_exchange_bind(s_conn, 1, x2, x1, "a.b");
    harness_exchange_bind(s_conn, 1, x2, x1, "a.b"); /* twice: one binding */
    harness_exchange_bind(s_conn, 1, x2, x1, "z.z");
    harness_exchange_bind(s_conn, 1, x3, x2, "ignored-by-fanout");
    harness_queue_bind(s_conn, 1, q1, x3, "a.#", amqp_empty_table);
    harness_queue_bind(s_conn, 1, q2, x2, "", amqp_empty_table);

    publish(x1, "a.b", "m1");
    publish(x1, "z.z", "m2"); /* x3 does not route z.z */
    publish(x1, "a.c", "m3"); /* x1 does not route a.c */
    harness_expect_get(s_conn, 1, q1, "m1", x1, "a.b");
    harness_expect_drain(s_conn, 1, q1, "", "chain");
    harness_expect_get(s_conn, 1, q2, "m1", x1, "a.b");
    harness_expect_get(s_conn, 1, q2, "m2", x1, "z.z");
    harness_expect_drain(s_conn, 1, q2, "", "chain");

    /* publishing in the middle of the chain */
    publish(x2, "q.q", "m4");
    publish(x3, "a", "m5");
    harness_expect_drain(s_conn, 1, q1, "m5", "chain, middle");
    harness_expect_drain(s_conn, 1, q2, "m4", "chain, middle");

    /* unbind stops the flow (one unbind undoes the double bind) */
    xunbind(x1, x2, "a.b");
    publish(x1, "a.b", "m6");
    publish(x1, "z.z", "m7");
    harness_expect_drain(s_conn, 1, q1, "", "chain after unbind");
    harness_expect_drain(s_conn, 1, q2, "m7", "chain after unbind");
    xunbind(x2, x3, "ignored-by-fanout");
    publish(x1, "z.z", "m8");
    publish(x2, "a.x", "m9");
    harness_expect_drain(s_conn, 1, q1, "", "chain after second unbind");
    harness_expect_drain(s_conn, 1, q2, "m8 m9", "chain after second unbind");

    /* deleting x2 takes x1 -> x2 (z.z) and x2 -> q2 with it */
    harness_exchange_delete(s_conn, 1, x2);
    harness_exchange_declare(s_conn, 1, x2, "fanout", 0, amqp_empty_table);
    publish(x1, "z.z", "m10");
    publish(x2, "k", "m11");
    harness_expect_drain(s_conn, 1, q2, "", "chain after deleting the middle exchange");
    harness_exchange_delete(s_conn, 1, x1);
    harness_exchange_delete(s_conn, 1, x2);
    harness_exchange_delete(s_conn, 1, x3);
    harness_log("chain direct -> fanout -> topic: routed with the original key, unbind stops it");
}

/* fan-in xa, xb -> xc -> q; diamond d0 -> dl, dr -> dm -> q, and q bound to d0 too */
static void check_fan_in(void)
{
    const char *xa = harness_name("fa"), *xb = harness_name("fb"), *xc = harness_name("fc"),
               *q = harness_name("fq");
    harness_exchange_declare(s_conn, 1, xa, "fanout", 0, amqp_empty_table);
    harness_exchange_declare(s_conn, 1, xb, "direct", 0, amqp_empty_table);
    harness_exchange_declare(s_conn, 1, xc, "fanout", 0, amqp_empty_table);
    harness_queue_declare(s_conn, 1, q, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_exchange_bind(s_conn, 1, xc, xa, "");
    harness_exchange_bind(s_conn, 1, xc, xb, "k");
    harness_queue_bind(s_conn, 1, q, xc, "", amqp_empty_table);
    publish(xa, "k", "a1");
    publish(xb, "k", "b1");
    publish(xb, "other", "b2");
    publish(xc, "k", "c1");
    harness_expect_drain(s_conn, 1, q, "a1 b1 c1", "fan-in");

    const char *d0 = harness_name("d0"), *dl = harness_name("dl"), *dr = harness_name("dr"),
               *dm = harness_name("dm");
    const char *dq = harness_name("dq");
    harness_exchange_declare(s_conn, 1, d0, "fanout", 0, amqp_empty_table);
    harness_exchange_declare(s_conn, 1, dl, "topic", 0, amqp_empty_table);
    harness_exchange_declare(s_conn, 1, dr, "direct", 0, amqp_empty_table);
    harness_exchange_declare(s_conn, 1, dm, "fanout", 0, amqp_empty_table);
    harness_queue_declare(s_conn, 1, dq, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_exchange_bind(s_conn, 1, dl, d0, "#");
    harness_exchange_bind(s_conn, 1, dr, d0, "k");
    harness_exchange_bind(s_conn, 1, dm, dl, "*");
    harness_exchange_bind(s_conn, 1, dm, dr, "k");
    harness_queue_bind(s_conn, 1, dq, dm, "", amqp_empty_table);
    harness_queue_bind(s_conn, 1, dq, d0, "", amqp_empty_table);
    harness_queue_bind(s_conn, 1, dq, dl, "k", amqp_empty_table);
    publish(d0, "k", "d1");      /* every path reaches dq: one copy */
    publish(d0, "other", "d2");  /* d0 -> dq, d0 -> dl -> dm -> dq */
    publish(d0, "two.words", "d3"); /* only d0 -> dq */
    harness_expect_drain(s_conn, 1, dq, "d1 d2 d3", "diamond");
    for (const char *const *x = (const char *const[]){xa, xb, xc, d0, dl, dr, dm, NULL}; *x; x++)
        harness_exchange_delete(s_conn, 1, *x);
    harness_log("fan-in and a diamond: one copy per queue per publish");
}

/* x1 -> x2 -> x1, a self-binding, and a three-exchange cycle */
static void check_loops(void)
{
    const char *x1 = harness_name("l1"), *x2 = harness_name("l2"), *xs = harness_name("ls"),
               *lonely = harness_name("lonely");
    const char *q1 = harness_name("lq1"), *q2 = harness_name("lq2"), *qs = harness_name("lqs");
    harness_exchange_declare(s_conn, 1, x1, "fanout", 0, amqp_empty_table);
    harness_exchange_declare(s_conn, 1, x2, "direct", 0, amqp_empty_table);
    harness_exchange_declare(s_conn, 1, xs, "topic", 0, amqp_empty_table);
    harness_exchange_declare(s_conn, 1, lonely, "fanout", 0, amqp_empty_table);
    harness_queue_declare(s_conn, 1, q1, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_queue_declare(s_conn, 1, q2, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_queue_declare(s_conn, 1, qs, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_exchange_bind(s_conn, 1, x2, x1, "k");
    harness_exchange_bind(s_conn, 1, x1, x2, "k");
    harness_queue_bind(s_conn, 1, q1, x1, "", amqp_empty_table);
    harness_queue_bind(s_conn, 1, q2, x2, "k", amqp_empty_table);
    publish(x1, "k", "m1");
    publish(x2, "k", "m2");
    publish(x1, "j", "m3"); /* x2 does not route j */
    publish(x2, "j", "m4"); /* nothing routes j out of x2 */
    harness_expect_drain(s_conn, 1, q1, "m1 m2 m3", "loop x1 <-> x2");
    harness_expect_drain(s_conn, 1, q2, "m1 m2", "loop x1 <-> x2");

    harness_exchange_bind(s_conn, 1, xs, xs, "#");
    harness_exchange_bind(s_conn, 1, xs, xs, "a.*");
    harness_queue_bind(s_conn, 1, qs, xs, "a.b", amqp_empty_table);
    publish(xs, "a.b", "s1");
    publish(xs, "a.c", "s2");
    harness_expect_drain(s_conn, 1, qs, "s1", "self-binding");

    harness_exchange_bind(s_conn, 1, lonely, lonely,
                          ""); /* a loop with no queue at all: the publish just vanishes */
    publish(lonely, "", "nowhere");

    /* a three-exchange cycle with a queue on each, then broken */
    const char *c[3] = {harness_name("cy0"), harness_name("cy1"), harness_name("cy2")};
    const char *cq[3] = {harness_name("cyq0"), harness_name("cyq1"), harness_name("cyq2")};
    for (int i = 0; i < 3; i++) {
        harness_exchange_declare(s_conn, 1, c[i], "fanout", 0, amqp_empty_table);
        harness_queue_declare(s_conn, 1, cq[i], HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
        harness_queue_bind(s_conn, 1, cq[i], c[i], "", amqp_empty_table);
    }
    for (int i = 0; i < 3; i++)
        harness_exchange_bind(s_conn, 1, c[(i + 1) % 3], c[i], "");
    publish(c[1], "k", "y1");
    for (int i = 0; i < 3; i++)
        harness_expect_drain(s_conn, 1, cq[i], "y1", "three-exchange cycle");
    xunbind(c[2], c[0], "");
    publish(c[1], "k", "y2");
    harness_expect_drain(s_conn, 1, cq[0], "", "broken cycle");
    harness_expect_drain(s_conn, 1, cq[1], "y2", "broken cycle");
    harness_expect_drain(s_conn, 1, cq[2], "y2", "broken cycle");

    for (const char *const *x = (const char *const[]){x1, x2, xs, lonely, c[0], c[1], c[2], NULL};
         *x; x++)
        harness_exchange_delete(s_conn, 1, *x);
    harness_log("loops and self-bindings: each queue gets a publish at most once");
}

int main(void)
{
    harness_broker_t b;
    s_conn = harness_begin(&b, 50, "it-xe");

    check_chain();
    check_fan_in();
    check_loops();

    harness_disconnect(s_conn);
    return harness_finish(&b);
}
