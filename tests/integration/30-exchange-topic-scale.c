/* 30-exchange-topic-scale — a topic exchange with 100,000 distinct bindings (20,000 against an
 * external broker such as RabbitMQ, which binds far more slowly) still routes exactly right.
 * Bindings are sent with no-wait, pipelined, then one round trip. No timing is asserted: the
 * time taken is only logged (speed is measured by tools/bench.sh).
 * The patterns, for n in [0, N/4): "s.<n>.e" -> q0, "s.<n>.*" -> q1, "s.<n>.#" -> q2,
 * "#.<n>.t" -> q3; plus "#.e" -> q4. Every published key's queues follow from RabbitMQ's topic
 * rules ('#' is zero or more words, '*' exactly one); each queue is drained and compared. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

#define NQ 5

static amqp_connection_state_t s_conn;
static char s_x[64];
static char s_q[NQ][128];

static void pattern(int i, char *out, size_t cap, int *ret_queue)
{
    int n = i / 4;
    static const char *const fmt[4] = {"s.%d.e", "s.%d.*", "s.%d.#", "#.%d.t"};
    snprintf(out, cap, fmt[i % 4], n);
    *ret_queue = i % 4;
}

static void bind_nowait(const char *q, const char *key, bool unbind)
{
    if (unbind) { /* queue.unbind has no no-wait */
        harness_queue_unbind(s_conn, 1, q, s_x, key, amqp_empty_table);
        return;
    }
    amqp_queue_bind_t m;
    memset(&m, 0, sizeof m);
    m.queue = amqp_cstring_bytes(q);
    m.exchange = amqp_cstring_bytes(s_x);
    m.routing_key = amqp_cstring_bytes(key);
    m.nowait = 1;
    m.arguments = amqp_empty_table;
    CHECK_AMQP(amqp_send_method(s_conn, 1, AMQP_QUEUE_BIND_METHOD, &m));
}

/* Publish key (body = key), then every queue must hold exactly the bodies in want[q]. */
typedef struct route_case {
    const char *key;
    const char *want[NQ];
} route_case_t;

static void check_routes(const route_case_t *cases, int ncases, const char *when)
{
    for (int c = 0; c < ncases; c++)
        harness_publish(s_conn, 1, s_x, cases[c].key, cases[c].key);
    /* Expected per queue: the keys of the cases naming it, in publish order. */
    for (int q = 0; q < NQ; q++) {
        char want[1024] = "", got[1024];
        for (int c = 0; c < ncases; c++) {
            if (!cases[c].want[q])
                continue;
            if (want[0])
                strcat(want, " ");
            strcat(want, cases[c].key);
        }
        harness_drain(s_conn, 1, s_q[q], got, sizeof got);
        CHECKF(strcmp(got, want) == 0, "%s: queue q%d got \"%s\", want \"%s\"", when, q, got,
               want);
    }
}

#define Y "y"

int main(void)
{
    harness_broker_t b;
    s_conn = harness_begin(&b, 55, NULL);
    const int nbind = harness_external(&b) ? 20000 : 100000;
    const int nmax = nbind / 4 - 1; /* the highest <n> in the patterns */
    snprintf(s_x, sizeof s_x, "it-xt-%d", (int)getpid());
    harness_exchange_declare(s_conn, 1, s_x, "topic", 0, amqp_empty_table);
    for (int q = 0; q < NQ; q++) {
        snprintf(s_q[q], sizeof s_q[q], "%s-q%d", s_x, q);
        harness_queue_declare(s_conn, 1, s_q[q], HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    }

    int64_t t0 = harness_now_ms();
    for (int i = 0; i < nbind; i++) {
        char key[64];
        int q;
        pattern(i, key, sizeof key, &q);
        bind_nowait(s_q[q], key, false);
        if (i % 10000 == 9999) /* keep the unread-reply window small on a slow broker */
            harness_sync(s_conn, 1);
    }
    bind_nowait(s_q[4], "#.e", false);
    harness_sync(s_conn, 1);
    harness_log("%d topic bindings in %lld ms", nbind + 1, (long long)(harness_now_ms() - t0));

    char k_top_x[32], k_top_e[32], k_over[32], k_top_t[32];
    snprintf(k_top_x, sizeof k_top_x, "s.%d.x", nmax);
    snprintf(k_top_e, sizeof k_top_e, "s.%d.e", nmax);
    snprintf(k_over, sizeof k_over, "s.%d.e", nmax + 1);
    snprintf(k_top_t, sizeof k_top_t, "z.z.%d.t", nmax);
    /*                                   q0 s.n.e  q1 s.n.*  q2 s.n.#  q3 #.n.t  q4 #.e */
    const route_case_t cases[] = {
        {"s.7.e", {Y, Y, Y, NULL, Y}},
        {"s.7", {NULL, NULL, Y, NULL, NULL}},
        {"s.7.e.f", {NULL, NULL, Y, NULL, NULL}},
        {"s.7.t", {NULL, Y, Y, Y, NULL}},
        {"x.y.7.t", {NULL, NULL, NULL, Y, NULL}},
        {"7.t", {NULL, NULL, NULL, Y, NULL}},
        {"s..e", {NULL, NULL, NULL, NULL, Y}},
        {"s.07.e", {NULL, NULL, NULL, NULL, Y}},
        {"S.7.e", {NULL, NULL, NULL, NULL, Y}},
        {"e", {NULL, NULL, NULL, NULL, Y}},
        {"s.0.e.t", {NULL, NULL, Y, NULL, NULL}},
        {"s.123.123.t", {NULL, NULL, Y, Y, NULL}},
        {k_top_x, {NULL, Y, Y, NULL, NULL}},
        {k_top_e, {Y, Y, Y, NULL, Y}},
        {k_over, {NULL, NULL, NULL, NULL, Y}},
        {k_top_t, {NULL, NULL, NULL, Y, NULL}},
        {"", {NULL, NULL, NULL, NULL, NULL}},
    };
    const int ncases = (int)(sizeof cases / sizeof cases[0]);
    t0 = harness_now_ms();
    check_routes(cases, ncases, "all bindings");
    harness_log("%d keys routed exactly right in %lld ms", ncases,
                (long long)(harness_now_ms() - t0));

    /* Remove a few bindings and check again. */
    bind_nowait(s_q[1], "s.7.*", true);
    bind_nowait(s_q[3], "#.7.t", true);
    bind_nowait(s_q[4], "#.e", true);
    const route_case_t after[] = {
        {"s.7.e", {Y, NULL, Y, NULL, NULL}},
        {"s.7.t", {NULL, NULL, Y, NULL, NULL}},
        {"x.y.7.t", {NULL, NULL, NULL, NULL, NULL}},
        {"s.8.t", {NULL, Y, Y, Y, NULL}},
    };
    check_routes(after, (int)(sizeof after / sizeof after[0]), "after unbinding three");
    harness_log("after unbinding three patterns: still exact");

    t0 = harness_now_ms();
    harness_exchange_delete(s_conn, 1, s_x);
    harness_log("exchange deleted in %lld ms", (long long)(harness_now_ms() - t0));
    harness_disconnect(s_conn);
    return harness_finish(&b);
}
