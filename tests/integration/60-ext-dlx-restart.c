/* 60-ext-dlx-restart — dead-letter state across a warrend restart: a persistent dead letter in a
 * durable queue comes back byte for byte (x-death with its original time, x-first-death-*, the
 * client's headers, delivery-mode 2, no expiration), x-death counts carry on from there, durable
 * queues keep their x-dead-letter-* and x-max-length, and transient dead letters are gone.
 * Skips against an external broker (it stops and starts warrend).
 * Checked against RabbitMQ 3.10.8 by hand (rabbitmqctl stop_app / start_app on a private node,
 * the same steps): the headers after the restart are identical, time included; rejecting the
 * message again gives [D rejected 1, W rejected 1] then [W rejected 2, D rejected 1]; a full
 * x-max-length 2 queue drops (and dead-letters, reason maxlen) its oldest on the next publish. */
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
static amqp_connection_state_t s_conn; /* owned: channel 1 open */

/* The broker closes s_conn on its way down; a new one has channel 1 open. */
static void restart(void)
{
    s_conn = harness_reopen(&s_broker, s_conn, false);
}

static void qdeclare(const char *q, long maxlen, const char *dlq)
{
    harness_args_t a;
    harness_queue_declare(s_conn, 1, q, HARNESS_QUEUE_DURABLE,
                          harness_dl_args(&a, -1, maxlen, "", dlq));
}

static void publish(const char *q, const char *body, int delivery_mode, bool with_headers)
{
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof p);
    amqp_table_entry_t h[1];
    p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    p.delivery_mode = (uint8_t)delivery_mode;
    if (with_headers) {
        h[0].key = amqp_cstring_bytes("h");
        h[0].value.kind = AMQP_FIELD_KIND_I32;
        h[0].value.value.i32 = 1;
        p._flags |= AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_EXPIRATION_FLAG;
        p.headers.num_entries = 1;
        p.headers.entries = h;
        p.expiration = amqp_cstring_bytes("60000");
    }
    harness_publish_props(s_conn, 1, "", q, false, &p, body);
}

/* Take the next message from q (manual ack, waiting <= 5 s); check its body. */
static void take(const char *q, const char *body, harness_got_t *g)
{
    CHECKF(harness_get_wait(s_conn, 1, q, false, 5000, g), "%s: no '%s'", q, body);
    CHECKF(strcmp(g->body, body) == 0, "%s: got '%s', want '%s'", q, g->body, body);
}

static const char *headers_exact(const harness_got_t *g, char *buf, size_t cap)
{
    if (!(g->msg.properties._flags & AMQP_BASIC_HEADERS_FLAG))
        return "-";
    return harness_table_fmt(&g->msg.properties.headers, false, buf, cap);
}

static const char *entry(const char *q, int count, const char *reason, bool orig_exp)
{
    static char bufs[4][256];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0],
             "F{count:l%d,exchange:S\"\",%squeue:S\"%s\",reason:S\"%s\",routing-keys:A[S\"%s\"],"
             "time:T*}",
             count, orig_exp ? "original-expiration:S\"60000\"," : "", q, reason, q);
    return b;
}

int main(void)
{
    harness_watchdog(55);
    harness_broker_start(&s_broker);
    harness_require_own_broker(&s_broker);
    s_conn = harness_open(&s_broker);
    const char *w = "dlxr.work", *d = "dlxr.dead", *m = "dlxr.max";
    qdeclare(w, -1, d);
    qdeclare(d, -1, w);
    qdeclare(m, 2, d);

    publish(w, "p", 2, true);
    publish(w, "t", 1, false);
    publish(m, "m1", 2, false);
    publish(m, "m2", 2, false);
    harness_expect_count(s_conn, 1, w, 2, "published");
    harness_expect_count(s_conn, 1, m, 2, "published");
    harness_got_t g;
    take(w, "p", &g);
    CHECK_AMQP(amqp_basic_reject(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);
    take(w, "t", &g);
    CHECK_AMQP(amqp_basic_reject(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);
    harness_expect_count(s_conn, 1, d, 2, "dead letters");

    char first[1024];
    snprintf(first, sizeof first,
             "{h:I1,x-death:A[F{count:l1,reason:S\"rejected\",queue:S\"%s\",time:T*,"
             "exchange:S\"\",routing-keys:A[S\"%s\"],original-expiration:S\"60000\"}],"
             "x-first-death-exchange:S\"\",x-first-death-queue:S\"%s\","
             "x-first-death-reason:S\"rejected\"}",
             w, w, w);
    take(d, "p", &g);
    harness_expect_death_headers(&g, first, "dead letter before the restart");
    char before[1024];
    headers_exact(&g, before, sizeof before);
    CHECK_AMQP(amqp_basic_nack(s_conn, 1, g.delivery_tag, 0, 1)); /* back, ahead of "t" */
    harness_got_free(&g);
    harness_expect_count(s_conn, 1, d, 2, "requeued");

    restart();
    /* the transient dead letter is gone; the persistent one is back, identical */
    harness_expect_count(s_conn, 1, d, 1, "after the restart");
    take(d, "p", &g);
    char after[1024];
    headers_exact(&g, after, sizeof after);
    CHECKF(strcmp(before, after) == 0,
           "headers changed across the restart\n  before %s\n  after  %s", before, after);
    CHECK(g.msg.properties._flags & AMQP_BASIC_DELIVERY_MODE_FLAG);
    CHECK_EQ(g.msg.properties.delivery_mode, 2);
    CHECKF(!(g.msg.properties._flags & AMQP_BASIC_EXPIRATION_FLAG), "dead letter has expiration");
    harness_log("persistent dead letter back byte for byte, transient gone: ok");

    /* counts carry on; the durable queues still dead-letter */
    CHECK_AMQP(amqp_basic_reject(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);
    take(w, "p", &g);
    char want[1024], xfirst[256];
    snprintf(xfirst, sizeof xfirst,
             "x-first-death-exchange:S\"\",x-first-death-queue:S\"%s\","
             "x-first-death-reason:S\"rejected\"}",
             w);
    char w_first[256];
    snprintf(w_first, sizeof w_first,
             "F{count:l1,reason:S\"rejected\",queue:S\"%s\",time:T*,exchange:S\"\","
             "routing-keys:A[S\"%s\"],original-expiration:S\"60000\"}",
             w, w);
    snprintf(want, sizeof want, "{h:I1,x-death:A[%s,%s],%s", entry(d, 1, "rejected", false),
             w_first, xfirst);
    harness_expect_death_headers(&g, want, "rejected from the dead-letter queue after the restart");
    CHECK_AMQP(amqp_basic_reject(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);
    take(d, "p", &g);
    snprintf(want, sizeof want, "{h:I1,x-death:A[%s,%s],%s", entry(w, 2, "rejected", true),
             entry(d, 1, "rejected", false), xfirst);
    harness_expect_death_headers(&g, want, "rejected from the work queue again");
    CHECK_AMQP(amqp_basic_ack(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);
    harness_log("x-death counts carry on after the restart: ok");

    /* x-max-length survived: the next publish drops (and dead-letters) the oldest */
    publish(m, "m3", 2, false);
    take(d, "m1", &g);
    snprintf(want, sizeof want,
             "{x-death:A[F{count:l1,reason:S\"maxlen\",queue:S\"%s\",time:T*,exchange:S\"\","
             "routing-keys:A[S\"%s\"]}],x-first-death-exchange:S\"\",x-first-death-queue:S\"%s\","
             "x-first-death-reason:S\"maxlen\"}",
             m, m, m);
    harness_expect_death_headers(&g, want, "maxlen after the restart");
    CHECK_AMQP(amqp_basic_ack(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);
    char left[256];
    harness_drain(s_conn, 1, m, left, sizeof left);
    CHECK_STREQ(left, "m2 m3");
    harness_log("x-max-length and its dead-lettering after the restart: ok");

    harness_disconnect(s_conn);
    CHECK(harness_broker_stop(&s_broker) == 0);
    harness_log("PASS");
    return 0;
}
