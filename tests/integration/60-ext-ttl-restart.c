/* 60-ext-ttl-restart — persistent messages keep their TTL across a warrend restart and a crash:
 * the expiry deadline is a point in time, not a duration restarted at recovery, and expiry after
 * a restart still dead-letters (durable queues' x-message-ttl and x-dead-letter-* survive).
 * Skips against an external broker (it stops and starts warrend).
 * Checked against RabbitMQ 3.10.8 by hand (rabbitmqctl stop_app / start_app on a private node,
 * the same steps): a persistent message whose expiration passed while the broker was down is
 * never delivered after it comes back and is dead-lettered with reason "expired" (x-death as for
 * any first death, original-expiration kept, delivery-mode 2, no expiration); one with a long
 * expiration comes back with its expiration property unchanged; a transient one is gone; a
 * durable queue's x-message-ttl still expires messages, old and new, after the restart. */
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
static amqp_connection_state_t s_conn; /* owned: channels 1 and 2 (confirms) open */
static uint64_t s_seq;                 /* publishes on channel 2 since it was opened */

static void connect_broker(void)
{
    s_conn = harness_open(&s_broker);
    harness_channel_open(s_conn, 2);
    harness_confirm_select(s_conn, 2);
    s_seq = 0;
}

static void qdeclare(const char *q, long ttl, const char *dlq)
{
    harness_args_t a;
    harness_queue_declare(s_conn, 1, q, HARNESS_QUEUE_DURABLE,
                          harness_dl_args(&a, ttl, -1, dlq ? "" : NULL, dlq));
}

/* Publish on the confirm channel; delivery_mode 2 or 1; expiration may be NULL. */
static void publish(const char *q, const char *body, int delivery_mode, const char *expiration)
{
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof p);
    p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    p.delivery_mode = (uint8_t)delivery_mode;
    if (expiration) {
        p._flags |= AMQP_BASIC_EXPIRATION_FLAG;
        p.expiration = amqp_cstring_bytes(expiration);
    }
    harness_publish_props(s_conn, 2, "", q, false, &p, body);
    s_seq++;
}

/* Wait until every publish on channel 2 so far is acked. */
static void wait_confirms(void)
{
    uint64_t acked = 0;
    while (acked < s_seq) {
        amqp_frame_t f;
        int rc = harness_next_frame(s_conn, &f, 10000);
        CHECKF(rc == 0, "waiting for confirms (%llu of %llu): %s", (unsigned long long)acked,
               (unsigned long long)s_seq, amqp_error_string2(rc));
        CHECKF(f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD,
               "want basic.ack, got %s",
               f.frame_type == AMQP_FRAME_METHOD ? amqp_method_name(f.payload.method.id)
                                                 : "a content frame");
        const amqp_basic_ack_t *a = f.payload.method.decoded;
        CHECK(a->delivery_tag > acked && a->delivery_tag <= s_seq);
        acked = a->delivery_tag;
    }
}

static const char *expiration_of(const harness_got_t *g)
{
    static char buf[64];
    if (!(g->msg.properties._flags & AMQP_BASIC_EXPIRATION_FLAG))
        return "(none)";
    snprintf(buf, sizeof buf, "%.*s", (int)g->msg.properties.expiration.len,
             (const char *)g->msg.properties.expiration.bytes);
    return buf;
}

/* Take from q, in order, the messages named by bodies (space-separated), checking each one's
 * expiration ("(none)" for none) as listed in exps (space-separated); then q must be empty. */
static void expect_queue(const char *q, const char *bodies, const char *exps)
{
    char b[512], e[512];
    snprintf(b, sizeof b, "%s", bodies);
    snprintf(e, sizeof e, "%s", exps);
    char *sb = NULL, *se = NULL;
    for (char *w = strtok_r(b, " ", &sb), *x = strtok_r(e, " ", &se); w;
         w = strtok_r(NULL, " ", &sb), x = strtok_r(NULL, " ", &se)) {
        harness_got_t g;
        CHECKF(harness_get(s_conn, 1, q, true, &g), "%s: '%s' missing", q, w);
        CHECKF(strcmp(g.body, w) == 0, "%s: got '%s', want '%s'", q, g.body, w);
        CHECK(x);
        CHECKF(strcmp(expiration_of(&g), x) == 0, "%s: '%s' has expiration %s, want %s", q, w,
               expiration_of(&g), x);
        CHECK(g.msg.properties._flags & AMQP_BASIC_DELIVERY_MODE_FLAG);
        CHECK_EQ(g.msg.properties.delivery_mode, 2);
        harness_got_free(&g);
    }
    harness_got_t g;
    if (harness_get(s_conn, 1, q, true, &g)) {
        char body[128];
        snprintf(body, sizeof body, "%.100s", g.body);
        harness_got_free(&g);
        CHECKF(0, "%s: unexpected '%s' (after \"%s\")", q, body, bodies);
    }
}

typedef struct dead {
    const char *body, *queue, *orig_exp;
} dead_t;

/* dlq comes to hold exactly the n dead letters in want (reason "expired", any order), each a
 * persistent first death with RabbitMQ's headers; takes them. */
static void expect_expired(const char *dlq, const dead_t *want, int n)
{
    bool seen[8] = {false};
    for (int i = 0; i < n; i++) {
        harness_got_t g;
        CHECKF(harness_get_wait(s_conn, 1, dlq, true, 5000, &g), "%s: %d of %d dead letters",
               dlq, i, n);
        int k = 0;
        while (k < n && (seen[k] || strcmp(want[k].body, g.body) != 0))
            k++;
        CHECKF(k < n, "%s: unexpected dead letter '%s'", dlq, g.body);
        seen[k] = true;
        char oe[64] = "", h[1024];
        if (want[k].orig_exp)
            snprintf(oe, sizeof oe, ",original-expiration:S\"%s\"", want[k].orig_exp);
        snprintf(h, sizeof h,
                 "{x-death:A[F{count:l1,reason:S\"expired\",queue:S\"%s\",time:T*,exchange:S\"\","
                 "routing-keys:A[S\"%s\"]%s}],x-first-death-exchange:S\"\","
                 "x-first-death-queue:S\"%s\",x-first-death-reason:S\"expired\"}",
                 want[k].queue, want[k].queue, oe, want[k].queue);
        CHECKF(strcmp(harness_got_death_headers(&g), h) == 0, "'%s' headers\n  got  %s\n  want %s",
               g.body, harness_got_death_headers(&g), h);
        CHECKF(strcmp(expiration_of(&g), "(none)") == 0, "'%s' kept expiration %s", g.body,
               expiration_of(&g));
        CHECK_EQ(g.msg.properties.delivery_mode, 2);
        harness_got_free(&g);
    }
    harness_expect_steady(s_conn, 1, dlq, 0, 200, "more dead letters than expected");
}

int main(void)
{
    harness_watchdog(55);
    harness_broker_start(&s_broker);
    harness_require_own_broker(&s_broker);
    connect_broker();
    const char *dlq = "ttlr.dlq", *q = "ttlr.q", *qt = "ttlr.qttl";
    qdeclare(dlq, -1, NULL);
    qdeclare(q, -1, dlq);
    qdeclare(qt, 400, dlq);

    /* the deadline passes while warrend is down */
    int64_t t0 = harness_now_ms();
    publish(q, "exp300", 2, "300");
    publish(q, "exp60000", 2, "60000");
    publish(q, "plain", 2, NULL);
    publish(q, "transient-exp300", 1, "300");
    publish(qt, "qttl", 2, NULL);
    wait_confirms();
    harness_broker_shutdown(&s_broker);
    amqp_destroy_connection(s_conn);
    int64_t wait = t0 + 800 - harness_now_ms();
    if (wait > 0)
        usleep((useconds_t)wait * 1000);
    harness_broker_respawn(&s_broker, NULL);
    connect_broker();
    const dead_t down[] = {{"exp300", q, "300"}, {"qttl", qt, NULL}};
    expect_expired(dlq, down, 2);
    expect_queue(q, "exp60000 plain", "60000 (none)");
    CHECK_EQ(harness_queue_count(s_conn, 1, qt), 0);
    harness_log("deadlines passed while down: expired at recovery, dead-lettered: ok");

    /* after the restart, the durable queue's TTL still applies to new messages */
    publish(qt, "after", 2, NULL);
    wait_confirms();
    const dead_t after[] = {{"after", qt, NULL}};
    expect_expired(dlq, after, 1);

    /* a deadline still ahead at the restart is kept: it expires after it */
    publish(q, "exp1500", 2, "1500");
    publish(q, "keep", 2, "60000");
    publish(qt, "qttl2", 2, NULL);
    wait_confirms();
    harness_broker_restart(&s_broker);
    amqp_destroy_connection(s_conn); /* the broker closed it on its way down */
    connect_broker();
    const dead_t ahead[] = {{"exp1500", q, "1500"}, {"qttl2", qt, NULL}};
    expect_expired(dlq, ahead, 2);
    expect_queue(q, "keep", "60000");
    harness_log("deadlines ahead at a restart: expired after it: ok");

    /* confirmed, then SIGKILL */
    publish(q, "crash-exp", 2, "500");
    publish(q, "crash-keep", 2, "60000");
    wait_confirms();
    harness_broker_crash_restart(&s_broker);
    amqp_destroy_connection(s_conn);
    connect_broker();
    const dead_t crash[] = {{"crash-exp", q, "500"}};
    expect_expired(dlq, crash, 1);
    expect_queue(q, "crash-keep", "60000");
    harness_log("TTL of confirmed messages after a SIGKILL: ok");

    harness_disconnect(s_conn);
    CHECK(harness_broker_stop(&s_broker) == 0);
    harness_log("PASS");
    return 0;
}
