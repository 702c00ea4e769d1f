/* 60-ext-dlx-cycles — dead-letter cycles: which ones RabbitMQ drops and which go round.
 * RabbitMQ 3.10.8's rule (rabbit_dead_letter:detect_cycles/3 and is_cycle/2), asserted below:
 *  - a message dead-lettered with reason "rejected" is never dropped as a cycle;
 *  - otherwise (expired, maxlen), for each queue the dead letter routes to: walk the updated
 *    x-death array from the front up to and including the first entry for that queue; if there
 *    is one and no entry on that walk has reason "rejected", the message is not delivered to
 *    that queue (other queues it routes to still get it); nothing is logged to the client.
 *  - the x-death array is the one RabbitMQ writes (see 60-ext-dlx-xdeath: the older entries are
 *    regrouped, which reverses them), so:
 *      a queue with a TTL dead-lettering to itself: dropped after the first expiry;
 *      the same with x-max-length 1: the dropped head is not re-queued;
 *      A (TTL) -> B (TTL) -> A: dropped on the way back to A, but observers bound to the
 *        dead-letter exchanges beside A and B get their copy each time;
 *      a queue rejecting to itself: goes round, count 1, 2, 3;
 *      work (reject) -> delay (TTL) -> work: goes round (the retry pattern);
 *      rejected once in W, then W (TTL) -> D (TTL) -> W -> ...: goes round for ever, because
 *        after the regrouping the "rejected" entry always sits between the front and the
 *        target queue's entry (x-death in D: [W expired n, W rejected 1, D expired n]). */
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
static const char *s_prefix; /* borrowed: harness_name_init()'s, lives for the whole test */

/* Declare q (fresh): x-message-ttl ttl (< 0: none), x-max-length maxlen (< 0: none),
 * dead-lettering to dlx (NULL: none) with routing key dlrk (NULL: the message's own). */
static void qdeclare(const char *q, long ttl, long maxlen, const char *dlx, const char *dlrk)
{
    harness_queue_delete(s_conn, 1, q);
    harness_args_t a;
    harness_queue_declare(s_conn, 1, q, 0, harness_dl_args(&a, ttl, maxlen, dlx, dlrk));
}

static void fanout(const char *x)
{
    harness_exchange_declare(s_conn, 1, x, "fanout",
                             HARNESS_EXCHANGE_AUTO_DELETE, amqp_empty_table);
}

static void publish(const char *q, const char *body)
{
    harness_publish(s_conn, 1, "", q, body);
}

/* x-death reduced to "reason:queue:count" entries in order ("expired:B:1 expired:A:1"), with
 * the queue names' common prefix cut off. */
static const char *deaths(const harness_got_t *g)
{
    static char out[1024];
    out[0] = '\0';
    size_t len = 0, plen = strlen(s_prefix) + 1;
    const amqp_field_value_t *xd = harness_table_get(&g->msg.properties.headers, "x-death");
    if (!xd)
        return "-";
    CHECK(xd->kind == AMQP_FIELD_KIND_ARRAY);
    for (int i = 0; i < xd->value.array.num_entries; i++) {
        const amqp_field_value_t *e = &xd->value.array.entries[i];
        CHECK(e->kind == AMQP_FIELD_KIND_TABLE);
        const amqp_field_value_t *r = harness_table_get(&e->value.table, "reason");
        const amqp_field_value_t *q = harness_table_get(&e->value.table, "queue");
        const amqp_field_value_t *c = harness_table_get(&e->value.table, "count");
        CHECK(r && q && c && c->kind == AMQP_FIELD_KIND_I64);
        const char *qn = (const char *)q->value.bytes.bytes;
        int ql = (int)q->value.bytes.len;
        if ((size_t)ql > plen && memcmp(qn, s_prefix, plen - 1) == 0) {
            qn += plen;
            ql -= (int)plen;
        }
        len += (size_t)snprintf(out + len, sizeof out - len, "%s%.*s:%.*s:%lld", i ? " " : "",
                                (int)r->value.bytes.len, (const char *)r->value.bytes.bytes, ql,
                                qn, (long long)c->value.i64);
    }
    return out;
}

/* Take the next message from q (waiting <= 5 s) and check its body and x-death summary. */
static void expect_msg(const char *q, const char *body, const char *want_deaths, bool ack,
                       harness_got_t *ret)
{
    harness_got_t g;
    CHECKF(harness_get_wait(s_conn, 1, q, ack, 5000, &g), "no '%s' in %s", body, q);
    CHECK_STREQ(g.body, body);
    const char *d = deaths(&g);
    CHECKF(strcmp(d, want_deaths) == 0, "'%s' in %s: x-death \"%s\", want \"%s\"", body, q, d,
           want_deaths);
    if (ret)
        *ret = g;
    else
        harness_got_free(&g);
}

/* ms after now (time for the TTLs to run out), q is empty. */
static void expect_empty_after(const char *q, int ms, const char *what)
{
    usleep((useconds_t)ms * 1000);
    uint32_t n = harness_queue_count(s_conn, 1, q);
    CHECKF(n == 0, "%s: %s holds %u messages", what, q, n);
}

/* ---- automatic cycles are dropped ---------------------------------------------------------- */

static void check_self_cycles(void)
{
    /* TTL to itself (default exchange, no routing key: its own name) */
    const char *q = harness_name("self-ttl");
    qdeclare(q, 100, -1, "", NULL);
    publish(q, "x");
    harness_expect_count(s_conn, 1, q, 0, "self-dead-lettering TTL queue");
    expect_empty_after(q, 400, "self-dead-lettering TTL queue");

    /* the same through a fanout with an observer beside it */
    const char *x = harness_name("self-fx"), *o = harness_name("self-obs");
    fanout(x);
    qdeclare(o, -1, -1, NULL, NULL);
    qdeclare(q, 100, -1, x, NULL);
    harness_queue_bind(s_conn, 1, q, x, "", amqp_empty_table);
    harness_queue_bind(s_conn, 1, o, x, "", amqp_empty_table);
    publish(q, "x");
    expect_msg(o, "x", "expired:self-ttl:1", true, NULL);
    expect_empty_after(o, 400, "observer of a self-dead-lettering queue");
    CHECK_EQ(harness_queue_count(s_conn, 1, q), 0);
    harness_queue_delete(s_conn, 1, q);

    /* x-max-length 1 to itself: the dropped head does not come back */
    const char *m = harness_name("self-max");
    qdeclare(m, -1, 1, x, NULL);
    harness_queue_bind(s_conn, 1, m, x, "", amqp_empty_table);
    publish(m, "1");
    publish(m, "2");
    expect_msg(o, "1", "maxlen:self-max:1", true, NULL);
    harness_expect_count(s_conn, 1, m, 1, "x-max-length 1 to itself");
    expect_msg(m, "2", "-", true, NULL);
    CHECK_EQ(harness_queue_count(s_conn, 1, o), 0);

    harness_queue_delete(s_conn, 1, m);
    harness_queue_delete(s_conn, 1, o);
    harness_exchange_delete(s_conn, 1, x);
    harness_log("self cycles (expired, maxlen) dropped: ok");
}

static void check_two_queue_cycle(void)
{
    const char *a = harness_name("a"), *b = harness_name("b"), *fa = harness_name("fa"),
               *fb = harness_name("fb");
    const char *oa = harness_name("oa"), *ob = harness_name("ob");
    fanout(fa);
    fanout(fb);
    qdeclare(oa, -1, -1, NULL, NULL);
    qdeclare(ob, -1, -1, NULL, NULL);
    qdeclare(a, 100, -1, fa, NULL);
    qdeclare(b, 100, -1, fb, NULL);
    harness_queue_bind(s_conn, 1, b, fa, "", amqp_empty_table);
    harness_queue_bind(s_conn, 1, oa, fa, "", amqp_empty_table);
    harness_queue_bind(s_conn, 1, a, fb, "", amqp_empty_table);
    harness_queue_bind(s_conn, 1, ob, fb, "", amqp_empty_table);
    publish(a, "x");
    /* A -> B (and the observer of A's dead letters) -> A is a cycle: dropped; B's observer
     * still gets its copy */
    expect_msg(oa, "x", "expired:a:1", true, NULL);
    expect_msg(ob, "x", "expired:b:1 expired:a:1", true, NULL);
    expect_empty_after(oa, 500, "A's observer: the message came round again");
    CHECK_EQ(harness_queue_count(s_conn, 1, ob), 0);
    CHECK_EQ(harness_queue_count(s_conn, 1, a), 0);
    CHECK_EQ(harness_queue_count(s_conn, 1, b), 0);

    harness_queue_delete(s_conn, 1, a);
    harness_queue_delete(s_conn, 1, b);
    harness_queue_delete(s_conn, 1, oa);
    harness_queue_delete(s_conn, 1, ob);
    harness_exchange_delete(s_conn, 1, fa);
    harness_exchange_delete(s_conn, 1, fb);
    harness_log("A -> B -> A expiry cycle dropped at A, observers served: ok");
}

/* ---- cycles with a rejection go round ------------------------------------------------------ */

static void check_reject_cycles(void)
{
    /* rejected to itself */
    const char *q = harness_name("self-rej");
    qdeclare(q, -1, -1, "", NULL);
    publish(q, "r");
    harness_got_t g;
    expect_msg(q, "r", "-", false, &g);
    for (int i = 1; i <= 3; i++) {
        CHECK_AMQP(amqp_basic_reject(s_conn, 1, g.delivery_tag, 0));
        harness_got_free(&g);
        char want[64];
        snprintf(want, sizeof want, "rejected:self-rej:%d", i);
        expect_msg(q, "r", want, false, &g);
    }
    CHECK_AMQP(amqp_basic_ack(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);
    harness_queue_delete(s_conn, 1, q);

    /* the retry pattern: work rejects into delay, delay's TTL sends it back */
    const char *w = harness_name("work"), *d = harness_name("delay");
    qdeclare(w, -1, -1, "", d);
    qdeclare(d, 100, -1, "", w);
    publish(w, "job");
    expect_msg(w, "job", "-", false, &g);
    for (int i = 1; i <= 3; i++) {
        CHECK_AMQP(amqp_basic_reject(s_conn, 1, g.delivery_tag, 0));
        harness_got_free(&g);
        char want[128];
        snprintf(want, sizeof want, "expired:delay:%d rejected:work:%d", i, i);
        expect_msg(w, "job", want, false, &g);
    }
    CHECK_AMQP(amqp_basic_ack(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);
    harness_queue_delete(s_conn, 1, w);
    harness_queue_delete(s_conn, 1, d);
    harness_log("cycles with a rejection go round (self, work/delay): ok");
}

static void check_rejected_once_goes_forever(void)
{
    const char *w = harness_name("fw"), *d = harness_name("fd"), *fw = harness_name("ffw"),
               *fd = harness_name("ffd");
    const char *ow = harness_name("fow"), *od = harness_name("fod");
    fanout(fw);
    fanout(fd);
    qdeclare(ow, -1, -1, NULL, NULL);
    qdeclare(od, -1, -1, NULL, NULL);
    qdeclare(w, 150, -1, fw, NULL);
    qdeclare(d, 50, -1, fd, NULL);
    harness_queue_bind(s_conn, 1, d, fw, "", amqp_empty_table);
    harness_queue_bind(s_conn, 1, ow, fw, "", amqp_empty_table);
    harness_queue_bind(s_conn, 1, w, fd, "", amqp_empty_table);
    harness_queue_bind(s_conn, 1, od, fd, "", amqp_empty_table);
    publish(w, "m");
    harness_got_t g;
    expect_msg(w, "m", "-", false, &g);
    CHECK_AMQP(amqp_basic_reject(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);
    /* W's dead letters (rejected once, then expired n times) and D's (expired n times) as the
     * observers see them, round after round */
    expect_msg(ow, "m", "rejected:fw:1", true, NULL);
    expect_msg(od, "m", "expired:fd:1 rejected:fw:1", true, NULL);
    expect_msg(ow, "m", "expired:fw:1 rejected:fw:1 expired:fd:1", true, NULL);
    expect_msg(od, "m", "expired:fd:2 rejected:fw:1 expired:fw:1", true, NULL);
    expect_msg(ow, "m", "expired:fw:2 rejected:fw:1 expired:fd:2", true, NULL);
    expect_msg(od, "m", "expired:fd:3 rejected:fw:1 expired:fw:2", true, NULL);

    harness_queue_delete(s_conn, 1, w);
    harness_queue_delete(s_conn, 1, d);
    harness_queue_delete(s_conn, 1, ow);
    harness_queue_delete(s_conn, 1, od);
    harness_exchange_delete(s_conn, 1, fw);
    harness_exchange_delete(s_conn, 1, fd);
    harness_log("rejected once, then an expiry cycle: goes round: ok");
}

int main(void)
{
    harness_broker_t b;
    s_conn = harness_begin(&b, 55, NULL);
    s_prefix = harness_name_init("it-cyc");

    check_self_cycles();
    check_two_queue_cycle();
    check_reject_cycles();
    check_rejected_once_goes_forever();

    harness_disconnect(s_conn);
    return harness_finish(&b);
}
