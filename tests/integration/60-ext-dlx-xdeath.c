/* 60-ext-dlx-xdeath — the x-death header and the x-first-death-* headers exactly as RabbitMQ
 * writes them when it dead-letters a message, over several deaths.
 * Headers are compared as rendered by harness_table_fmt(): wire order, every value with its
 * field type (l = signed 64-bit, S = longstr, T = timestamp in seconds, A = array, F = table);
 * timestamps are masked and checked against the wall clock separately.
 * RabbitMQ 3.10.8 (rabbit_dead_letter.erl) answers, asserted below:
 *  - first death (no x-death yet): x-death is an array of one table with, in this order,
 *      count:l1, reason:S, queue:S, time:T, exchange:S, routing-keys:A[S...],
 *      original-expiration:S (only when the message had an expiration property);
 *    exchange is the one the message was published to ("" for the default exchange);
 *    routing-keys are the published routing key then the CC keys (never BCC);
 *    x-first-death-exchange, x-first-death-queue, x-first-death-reason (longstr) are added;
 *    RabbitMQ 3.10.8 writes no x-last-death-* headers (3.13 added them, and issue 5 asks for
 *    them): they are left out of the comparisons, but when present they must be the exchange,
 *    queue and reason of x-death's first entry (harness_got_death_headers());
 *    the whole headers table is then sorted by key (byte order: "CC" < "aa" < "x-death" < "zz");
 *    the expiration property is removed; every other property is kept.
 *  - later deaths: the existing entries are first regrouped by (queue, reason), which reverses
 *    their order when there are two or more; then the entry for this (queue, reason) is taken
 *    out (count + 1, every other field unchanged: its time, exchange, routing-keys and
 *    original-expiration stay those of its first death) or a new one made (count 1), and put in
 *    front with its keys sorted: count, exchange, original-expiration, queue, reason,
 *    routing-keys, time. x-first-death-* never change.
 *    Example, rejected around Q1 -> Q2 -> Q3 -> Q1 -> Q2 (x-death seen after each death):
 *      [Q1]  [Q2 Q1]  [Q3 Q1 Q2]  [Q1(2) Q2 Q3]  [Q2(2) Q3 Q1(2)].
 *  - an x-death that is not an array (a client re-published it as a string): replaced by a
 *    one-entry array (unsorted keys, like a first death) and no x-first-death-* are added;
 *    an empty x-death array: a new sorted entry and no x-first-death-*; a client's own
 *    x-first-death-queue on a message without x-death is overwritten. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <amqp_framing.h>

static amqp_connection_state_t s_conn;

/* Declare q (fresh) dead-lettering to exchange dlx (NULL: none) with routing key dlrk (NULL:
 * the message's own). */
static void qdeclare(const char *q, const char *dlx, const char *dlrk)
{
    harness_queue_delete(s_conn, 1, q);
    harness_args_t a;
    harness_queue_declare(s_conn, 1, q, 0, harness_dl_args(&a, -1, -1, dlx, dlrk));
}

static void publish(const char *x, const char *key, const amqp_basic_properties_t *p,
                    const char *body)
{
    harness_publish_props(s_conn, 1, x, key, false, p, body);
}

/* Take the message from q (waiting <= 5 s), manual ack; caller rejects or acks. */
static void take(const char *q, harness_got_t *g)
{
    CHECKF(harness_get_wait(s_conn, 1, q, false, 5000, g), "nothing arrived in %s", q);
}

static void reject(harness_got_t *g)
{
    CHECK_AMQP(amqp_basic_reject(s_conn, 1, g->delivery_tag, 0));
    harness_got_free(g);
}

static void expect_headers(const harness_got_t *g, const char *want, const char *what)
{
    harness_expect_death_headers(g, want, what);
    int n = 0;
    CHECKF(harness_table_times_near(&g->msg.properties.headers, 120, &n),
           "%s: an x-death time is not the wall clock", what);
}

/* The time of x-death entry i (0 = first). */
static uint64_t death_time(const harness_got_t *g, int i)
{
    const amqp_field_value_t *xd = harness_table_get(&g->msg.properties.headers, "x-death");
    CHECK(xd && xd->kind == AMQP_FIELD_KIND_ARRAY && i < xd->value.array.num_entries);
    const amqp_field_value_t *e = &xd->value.array.entries[i];
    CHECK(e->kind == AMQP_FIELD_KIND_TABLE);
    const amqp_field_value_t *t = harness_table_get(&e->value.table, "time");
    CHECK(t && t->kind == AMQP_FIELD_KIND_TIMESTAMP);
    return t->value.u64;
}

/* ---- the first death: layout, sorting, properties ------------------------------------------ */

static void check_first_death(void)
{
    const char *w = harness_name("w"), *dx = harness_name("dx"), *d = harness_name("d");
    harness_exchange_declare(s_conn, 1, dx, "fanout",
                             HARNESS_EXCHANGE_AUTO_DELETE, amqp_empty_table);
    qdeclare(d, NULL, NULL);
    harness_queue_bind(s_conn, 1, d, dx, "", amqp_empty_table);
    qdeclare(w, dx, NULL);

    amqp_table_entry_t h[3];
    amqp_field_value_t cc = {.kind = AMQP_FIELD_KIND_UTF8};
    cc.value.bytes = amqp_cstring_bytes("cc-nowhere");
    h[0].key = amqp_cstring_bytes("zz");
    h[0].value.kind = AMQP_FIELD_KIND_UTF8;
    h[0].value.value.bytes = amqp_cstring_bytes("last");
    h[1].key = amqp_cstring_bytes("aa");
    h[1].value.kind = AMQP_FIELD_KIND_I32;
    h[1].value.value.i32 = 1;
    h[2].key = amqp_cstring_bytes("CC");
    h[2].value.kind = AMQP_FIELD_KIND_ARRAY;
    h[2].value.value.array.num_entries = 1;
    h[2].value.value.array.entries = &cc;
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof p);
    p._flags = AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_EXPIRATION_FLAG |
               AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
               AMQP_BASIC_PRIORITY_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
               AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
    p.headers.num_entries = 3;
    p.headers.entries = h;
    p.expiration = amqp_cstring_bytes("60000");
    p.content_type = amqp_cstring_bytes("text/plain");
    p.message_id = amqp_cstring_bytes("m1");
    p.priority = 3;
    p.delivery_mode = 2;
    p.correlation_id = amqp_cstring_bytes("c1");
    p.timestamp = 12345;
    publish("", w, &p, "first");

    harness_got_t g;
    take(w, &g);
    reject(&g);
    take(d, &g);
    CHECK_STREQ(g.body, "first");
    CHECK_STREQ(g.exchange, dx);
    CHECK_STREQ(g.routing_key, w);
    char want[1024];
    snprintf(want, sizeof want,
             "{CC:A[S\"cc-nowhere\"],aa:I1,x-death:A[F{count:l1,reason:S\"rejected\","
             "queue:S\"%s\",time:T*,exchange:S\"\",routing-keys:A[S\"%s\",S\"cc-nowhere\"],"
             "original-expiration:S\"60000\"}],x-first-death-exchange:S\"\","
             "x-first-death-queue:S\"%s\",x-first-death-reason:S\"rejected\",zz:S\"last\"}",
             w, w, w);
    expect_headers(&g, want, "first death");
    const amqp_basic_properties_t *gp = &g.msg.properties;
    CHECKF(!(gp->_flags & AMQP_BASIC_EXPIRATION_FLAG), "expiration kept");
    CHECK(gp->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG);
    CHECK(harness_bytes_is(gp->content_type, "text/plain"));
    CHECK(gp->_flags & AMQP_BASIC_MESSAGE_ID_FLAG);
    CHECK(harness_bytes_is(gp->message_id, "m1"));
    CHECK(gp->_flags & AMQP_BASIC_CORRELATION_ID_FLAG);
    CHECK(harness_bytes_is(gp->correlation_id, "c1"));
    CHECK(gp->_flags & AMQP_BASIC_PRIORITY_FLAG);
    CHECK_EQ(gp->priority, 3);
    CHECK(gp->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG);
    CHECK_EQ(gp->delivery_mode, 2);
    CHECK(gp->_flags & AMQP_BASIC_TIMESTAMP_FLAG);
    CHECK_EQ(gp->timestamp, 12345);
    CHECK_AMQP(amqp_basic_ack(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);

    /* a message without any headers or properties */
    publish("", w, NULL, "bare");
    take(w, &g);
    reject(&g);
    take(d, &g);
    CHECK_STREQ(g.body, "bare");
    snprintf(want, sizeof want,
             "{x-death:A[F{count:l1,reason:S\"rejected\",queue:S\"%s\",time:T*,exchange:S\"\","
             "routing-keys:A[S\"%s\"]}],x-first-death-exchange:S\"\",x-first-death-queue:S\"%s\","
             "x-first-death-reason:S\"rejected\"}",
             w, w, w);
    expect_headers(&g, want, "first death, no headers before");
    CHECK_AMQP(amqp_basic_ack(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);

    harness_queue_delete(s_conn, 1, w);
    harness_queue_delete(s_conn, 1, d);
    harness_exchange_delete(s_conn, 1, dx);
    harness_log("first death layout, sorted headers, properties kept: ok");
}

/* ---- three queues in a ring: regrouping, counts, times ------------------------------------- */

/* One x-death entry as RabbitMQ writes a new or updated one after the first death (sorted). */
static const char *sorted_entry(const char *q, int count, const char *rk)
{
    static char bufs[4][256];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0],
             "F{count:l%d,exchange:S\"\",queue:S\"%s\",reason:S\"rejected\","
             "routing-keys:A[S\"%s\"],time:T*}",
             count, q, rk);
    return b;
}

static void check_ring(void)
{
    const char *q1 = harness_name("r1"), *q2 = harness_name("r2"), *q3 = harness_name("r3");
    qdeclare(q1, "", q2);
    qdeclare(q2, "", q3);
    qdeclare(q3, "", q1);
    publish("", q1, NULL, "ring");

    /* the first death's entry keeps its unsorted layout until it is updated */
    char q1_first[256];
    snprintf(q1_first, sizeof q1_first,
             "F{count:l1,reason:S\"rejected\",queue:S\"%s\",time:T*,exchange:S\"\","
             "routing-keys:A[S\"%s\"]}",
             q1, q1);
    char first[512];
    snprintf(first, sizeof first,
             "x-first-death-exchange:S\"\",x-first-death-queue:S\"%s\","
             "x-first-death-reason:S\"rejected\"}",
             q1);
    char want[2048];
    harness_got_t g;

    take(q1, &g);
    CHECK_STREQ(harness_got_death_headers(&g), "-");
    reject(&g);

    take(q2, &g);
    snprintf(want, sizeof want, "{x-death:A[%s],%s", q1_first, first);
    expect_headers(&g, want, "after Q1");
    CHECK_STREQ(g.routing_key, q2);
    uint64_t q1_time = death_time(&g, 0);
    reject(&g);

    take(q3, &g);
    snprintf(want, sizeof want, "{x-death:A[%s,%s],%s", sorted_entry(q2, 1, q2), q1_first, first);
    expect_headers(&g, want, "after Q1, Q2");
    reject(&g);

    take(q1, &g);
    snprintf(want, sizeof want, "{x-death:A[%s,%s,%s],%s", sorted_entry(q3, 1, q3), q1_first,
             sorted_entry(q2, 1, q2), first);
    expect_headers(&g, want, "after Q1, Q2, Q3");
    /* let the wall clock's second move on, so that a rewritten time would show */
    while ((uint64_t)time(NULL) <= q1_time)
        usleep(20000);
    reject(&g);

    take(q2, &g);
    snprintf(want, sizeof want, "{x-death:A[%s,%s,%s],%s", sorted_entry(q1, 2, q1),
             sorted_entry(q2, 1, q2), sorted_entry(q3, 1, q3), first);
    expect_headers(&g, want, "after Q1, Q2, Q3, Q1");
    CHECKF(death_time(&g, 0) == q1_time, "Q1's entry time changed from %llu to %llu",
           (unsigned long long)q1_time, (unsigned long long)death_time(&g, 0));
    reject(&g);

    take(q3, &g);
    snprintf(want, sizeof want, "{x-death:A[%s,%s,%s],%s", sorted_entry(q2, 2, q2),
             sorted_entry(q3, 1, q3), sorted_entry(q1, 2, q1), first);
    expect_headers(&g, want, "after Q1, Q2, Q3, Q1, Q2");
    CHECK_EQ(death_time(&g, 2), q1_time);
    CHECK_AMQP(amqp_basic_ack(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);

    harness_queue_delete(s_conn, 1, q1);
    harness_queue_delete(s_conn, 1, q2);
    harness_queue_delete(s_conn, 1, q3);
    harness_log("x-death over five deaths in a ring of three queues: ok");
}

/* ---- x-death headers a client put there itself ---------------------------------------------- */

static void check_client_headers(void)
{
    const char *w = harness_name("c"), *d = harness_name("c-dlq");
    qdeclare(d, NULL, NULL);
    qdeclare(w, "", d);
    amqp_basic_properties_t p;
    amqp_table_entry_t h[2];
    char want[1024];
    harness_got_t g;

    /* x-death as a string: reset, no x-first-death-* */
    memset(&p, 0, sizeof p);
    p._flags = AMQP_BASIC_HEADERS_FLAG;
    h[0].key = amqp_cstring_bytes("x-death");
    h[0].value.kind = AMQP_FIELD_KIND_UTF8;
    h[0].value.value.bytes = amqp_cstring_bytes("garbage");
    h[1].key = amqp_cstring_bytes("b");
    h[1].value.kind = AMQP_FIELD_KIND_I32;
    h[1].value.value.i32 = 1;
    p.headers.num_entries = 2;
    p.headers.entries = h;
    publish("", w, &p, "string");
    take(w, &g);
    reject(&g);
    take(d, &g);
    snprintf(want, sizeof want,
             "{b:I1,x-death:A[F{count:l1,reason:S\"rejected\",queue:S\"%s\",time:T*,"
             "exchange:S\"\",routing-keys:A[S\"%s\"]}]}",
             w, w);
    expect_headers(&g, want, "x-death was a string");
    CHECK_AMQP(amqp_basic_ack(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);

    /* x-death an empty array: a new (sorted) entry, no x-first-death-* */
    h[0].value.kind = AMQP_FIELD_KIND_ARRAY;
    h[0].value.value.array.num_entries = 0;
    h[0].value.value.array.entries = NULL;
    p.headers.num_entries = 1;
    publish("", w, &p, "empty");
    take(w, &g);
    reject(&g);
    take(d, &g);
    snprintf(want, sizeof want, "{x-death:A[%s]}", sorted_entry(w, 1, w));
    expect_headers(&g, want, "x-death was an empty array");
    CHECK_AMQP(amqp_basic_ack(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);

    /* a client's x-first-death-queue is overwritten */
    h[0].key = amqp_cstring_bytes("x-first-death-queue");
    h[0].value.kind = AMQP_FIELD_KIND_UTF8;
    h[0].value.value.bytes = amqp_cstring_bytes("mine");
    publish("", w, &p, "first-set");
    take(w, &g);
    reject(&g);
    take(d, &g);
    snprintf(want, sizeof want,
             "{x-death:A[F{count:l1,reason:S\"rejected\",queue:S\"%s\",time:T*,exchange:S\"\","
             "routing-keys:A[S\"%s\"]}],x-first-death-exchange:S\"\",x-first-death-queue:S\"%s\","
             "x-first-death-reason:S\"rejected\"}",
             w, w, w);
    expect_headers(&g, want, "client's x-first-death-queue");
    CHECK_AMQP(amqp_basic_ack(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);

    /* a dead letter re-published by a client with its headers (what retry libraries do) and
     * rejected again from the same queue: the entry is counted up, moved to the front */
    publish("", w, NULL, "again");
    take(w, &g);
    reject(&g);
    take(d, &g);
    amqp_basic_properties_t again = g.msg.properties; /* borrowed from g until it is freed */
    publish("", w, &again, "again");
    CHECK_AMQP(amqp_basic_ack(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);
    take(w, &g);
    reject(&g);
    take(d, &g);
    snprintf(want, sizeof want,
             "{x-death:A[%s],x-first-death-exchange:S\"\",x-first-death-queue:S\"%s\","
             "x-first-death-reason:S\"rejected\"}",
             sorted_entry(w, 2, w), w);
    expect_headers(&g, want, "re-published dead letter rejected again");
    CHECK_AMQP(amqp_basic_ack(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);

    harness_queue_delete(s_conn, 1, w);
    harness_queue_delete(s_conn, 1, d);
    harness_log("client-supplied x-death and x-first-death headers: ok");
}

int main(void)
{
    harness_broker_t b;
    s_conn = harness_begin(&b, 55, "it-xdeath");

    check_first_death();
    check_ring();
    check_client_headers();

    harness_disconnect(s_conn);
    return harness_finish(&b);
}
