/* 60-ext-dlx — when messages are dead-lettered (x-dead-letter-exchange,
 * x-dead-letter-routing-key) and where they are routed. The x-death layout over several deaths
 * is 60-ext-dlx-xdeath's; cycles are 60-ext-dlx-cycles'; expiry and overflow are the TTL and
 * length tests'.
 * RabbitMQ 3.10.8 answers (asserted below):
 *  - basic.reject and basic.nack with requeue=false dead-letter (reason "rejected"), a nack
 *    with multiple=true every covered message in delivery order, from basic.get and from
 *    consumers alike; requeue=true, channel close (unacked messages go back), queue.purge and
 *    queue.delete dead-letter nothing.
 *  - a dead-letter exchange that does not exist: the message is dropped silently (no error on
 *    the channel); once the exchange is declared, dead-lettering goes through it.
 *  - without x-dead-letter-routing-key the message is republished with all its original
 *    routing keys: the published one, CC and even BCC (though neither x-death's routing-keys
 *    nor the headers show BCC); the delivery's routing key is the published one.
 *  - with x-dead-letter-routing-key it is republished with that key only and the CC header is
 *    removed; x-death's routing-keys still list the original keys (published + CC).
 *  - x-death's exchange is the exchange the message came through: the publisher's for the
 *    first death, the dead-letter exchange for the next.
 *  - x-dead-letter-routing-key without x-dead-letter-exchange: queue.declare fails with 406
 *    "PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue 'Q' in vhost '/':
 *    routing_key_but_no_dlx_defined" (50.10). */
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

/* Declare q (fresh) with x-message-ttl (< 0: none), dead-lettering to dlx (NULL: none) with
 * routing key dlrk (NULL: the message's own). */
static void qdeclare(const char *q, long ttl, const char *dlx, const char *dlrk)
{
    harness_queue_delete(s_conn, 1, q);
    harness_args_t a;
    harness_queue_declare(s_conn, 1, q, 0, harness_dl_args(&a, ttl, -1, dlx, dlrk));
}

static void publish_props(const char *x, const char *key, const amqp_basic_properties_t *p,
                          const char *body)
{
    harness_publish_props(s_conn, 1, x, key, false, p, body);
}

static void publish_n(const char *q, int first, int last)
{
    harness_publish_range(s_conn, q, first, last);
}

/* A round trip on ch: the acks and rejects before it have been handled. */
static void sync_ch(amqp_channel_t ch)
{
    harness_sync(s_conn, ch);
}

/* Every message in dlq (waiting until it holds n) is a first death from q with reason: checks
 * x-death's queue, reason and count through the whole headers, routing key q. */
static void expect_rejected_from(const char *dlq, const char *q, const char *bodies, int n)
{
    int words = *bodies ? 1 : 0;
    for (const char *p = bodies; *p; p++)
        words += *p == ' ';
    CHECK_EQ(words, n);
    harness_expect_first_deaths(s_conn, 1, dlq, q, "rejected", bodies);
    CHECK_EQ(harness_queue_count(s_conn, 1, dlq), 0);
}

/* ---- what dead-letters and what does not ------------------------------------------------ */

static void check_triggers(void)
{
    const char *q = harness_name("t"), *dlq = harness_name("t-dlq");
    qdeclare(dlq, -1, NULL, NULL);
    qdeclare(q, -1, "", dlq);
    harness_channel_open(s_conn, 2);

    /* basic.get, then reject / nack single / nack multiple with requeue=false */
    publish_n(q, 1, 8);
    harness_expect_count(s_conn, 1, q, 8, "published");
    harness_got_t g[8];
    for (int i = 0; i < 8; i++) {
        CHECK(harness_get(s_conn, 2, q, false, &g[i]));
        harness_got_free(&g[i]);
    }
    CHECK_AMQP(amqp_basic_reject(s_conn, 2, g[1].delivery_tag, 0)); /* 2 */
    CHECK_AMQP(amqp_basic_nack(s_conn, 2, g[0].delivery_tag, 0, 0)); /* 1 */
    CHECK_AMQP(amqp_basic_nack(s_conn, 2, g[5].delivery_tag, 1, 0)); /* 3 4 5 6 */
    CHECK_AMQP(amqp_basic_nack(s_conn, 2, g[6].delivery_tag, 0, 1)); /* 7 back */
    CHECK_AMQP(amqp_basic_reject(s_conn, 2, g[7].delivery_tag, 1));  /* 8 back */
    sync_ch(2);
    expect_rejected_from(dlq, q, "2 1 3 4 5 6", 6);
    harness_expect_drain(s_conn, 1, q, "7 8", "requeued with requeue=true");

    /* a consumer's nack and reject */
    publish_n(q, 1, 3);
    harness_expect_count(s_conn, 1, q, 3, "published");
    harness_consume(s_conn, 2, q, "c", 0, amqp_empty_table);
    uint64_t tags[3];
    for (int i = 0; i < 3; i++) {
        amqp_envelope_t env;
        struct timeval tv = {.tv_sec = 5};
        amqp_maybe_release_buffers(s_conn);
        CHECK_REPLY(amqp_consume_message(s_conn, &env, &tv, 0));
        tags[i] = env.delivery_tag;
        amqp_destroy_envelope(&env);
    }
    CHECK_AMQP(amqp_basic_nack(s_conn, 2, tags[2], 0, 0));
    CHECK_AMQP(amqp_basic_reject(s_conn, 2, tags[0], 0));
    harness_cancel(s_conn, 2, "c");
    expect_rejected_from(dlq, q, "3 1", 2);

    /* closing the channel puts "2" back: not dead-lettered */
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));
    harness_expect_count(s_conn, 1, q, 1, "unacked message back after channel close");
    harness_expect_drain(s_conn, 1, q, "2", "after channel close");
    CHECK_EQ(harness_queue_count(s_conn, 1, dlq), 0);

    /* purge and delete drop without dead-lettering */
    publish_n(q, 1, 3);
    harness_expect_count(s_conn, 1, q, 3, "published");
    harness_queue_purge(s_conn, 1, q);
    publish_n(q, 4, 6);
    harness_expect_count(s_conn, 1, q, 3, "published");
    harness_queue_delete(s_conn, 1, q);
    harness_expect_steady(s_conn, 1, dlq, 0, 200, "purged and deleted messages not dead-lettered");

    harness_queue_delete(s_conn, 1, dlq);
    harness_log("reject/nack requeue=false dead-letter; requeue, close, purge, delete do not: ok");
}

/* ---- missing dead-letter exchange -------------------------------------------------------- */

static void check_missing_dlx(void)
{
    const char *q = harness_name("m"), *dx = harness_name("m-dx"), *dlq = harness_name("m-dlq");
    harness_exchange_delete(s_conn, 1, dx);
    qdeclare(q, -1, dx, NULL);
    publish_n(q, 1, 1);
    harness_got_t g;
    CHECK(harness_get_wait(s_conn, 1, q, false, 5000, &g));
    CHECK_AMQP(amqp_basic_reject(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);
    sync_ch(1); /* no channel error */
    CHECK_EQ(harness_queue_count(s_conn, 1, q), 0);

    harness_exchange_declare(s_conn, 1, dx, "fanout",
                             HARNESS_EXCHANGE_AUTO_DELETE, amqp_empty_table);
    qdeclare(dlq, -1, NULL, NULL);
    harness_queue_bind(s_conn, 1, dlq, dx, "", amqp_empty_table);
    publish_n(q, 2, 2);
    CHECK(harness_get_wait(s_conn, 1, q, false, 5000, &g));
    CHECK_AMQP(amqp_basic_reject(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);
    harness_expect_count(s_conn, 1, dlq, 1, "dead-letter exchange declared later");
    harness_expect_drain(s_conn, 1, dlq, "2", "dead-letter exchange declared later");

    harness_queue_delete(s_conn, 1, q);
    harness_queue_delete(s_conn, 1, dlq);
    harness_exchange_delete(s_conn, 1, dx);
    harness_log("missing dead-letter exchange drops silently: ok");
}

/* ---- routing keys, CC, BCC, x-dead-letter-routing-key ------------------------------------- */

static void cc_bcc_props(amqp_basic_properties_t *p, amqp_table_entry_t h[2],
                         amqp_field_value_t *cc, amqp_field_value_t *bcc)
{
    memset(p, 0, sizeof *p);
    cc->kind = AMQP_FIELD_KIND_UTF8;
    cc->value.bytes = amqp_cstring_bytes("k2");
    bcc->kind = AMQP_FIELD_KIND_UTF8;
    bcc->value.bytes = amqp_cstring_bytes("k3");
    h[0].key = amqp_cstring_bytes("CC");
    h[0].value.kind = AMQP_FIELD_KIND_ARRAY;
    h[0].value.value.array.num_entries = 1;
    h[0].value.value.array.entries = cc;
    h[1].key = amqp_cstring_bytes("BCC");
    h[1].value.kind = AMQP_FIELD_KIND_ARRAY;
    h[1].value.value.array.num_entries = 1;
    h[1].value.value.array.entries = bcc;
    p->_flags = AMQP_BASIC_HEADERS_FLAG;
    p->headers.num_entries = 2;
    p->headers.entries = h;
}

static void check_routing(void)
{
    const char *x = harness_name("rx"), *dx = harness_name("rdx"), *w = harness_name("rw"),
               *wr = harness_name("rwr");
    const char *d1 = harness_name("rd1"), *d2 = harness_name("rd2"), *d3 = harness_name("rd3");
    harness_exchange_declare(s_conn, 1, x, "direct",
                             HARNESS_EXCHANGE_AUTO_DELETE, amqp_empty_table);
    harness_exchange_declare(s_conn, 1, dx, "direct",
                             HARNESS_EXCHANGE_AUTO_DELETE, amqp_empty_table);
    qdeclare(d1, -1, NULL, NULL);
    qdeclare(d2, -1, NULL, NULL);
    qdeclare(d3, -1, NULL, NULL);
    harness_queue_bind(s_conn, 1, d1, dx, "k1", amqp_empty_table);
    harness_queue_bind(s_conn, 1, d2, dx, "k2", amqp_empty_table);
    harness_queue_bind(s_conn, 1, d3, dx, "k3", amqp_empty_table);
    qdeclare(w, 100, dx, NULL);
    harness_queue_bind(s_conn, 1, w, x, "k1", amqp_empty_table);
    qdeclare(wr, 100, dx, "k1");
    harness_queue_bind(s_conn, 1, wr, x, "kr", amqp_empty_table);

    amqp_basic_properties_t p;
    amqp_table_entry_t h[2];
    amqp_field_value_t cc, bcc;
    cc_bcc_props(&p, h, &cc, &bcc);

    /* no x-dead-letter-routing-key: k1, CC k2 and BCC k3 all route again */
    publish_props(x, "k1", &p, "keys");
    char want[1024];
    snprintf(want, sizeof want,
             "{CC:A[S\"k2\"],x-death:A[F{count:l1,reason:S\"expired\",queue:S\"%s\",time:T*,"
             "exchange:S\"%s\",routing-keys:A[S\"k1\",S\"k2\"]}],x-first-death-exchange:S\"%s\","
             "x-first-death-queue:S\"%s\",x-first-death-reason:S\"expired\"}",
             w, x, x, w);
    const char *dl[] = {d1, d2, d3};
    for (int i = 0; i < 3; i++) {
        harness_got_t g;
        CHECKF(harness_get_wait(s_conn, 1, dl[i], true, 5000, &g),
               "dead letter not routed to %s (bound to k%d)", dl[i], i + 1);
        CHECK_STREQ(g.body, "keys");
        CHECK_STREQ(g.exchange, dx);
        CHECK_STREQ(g.routing_key, "k1");
        const char *got = harness_got_death_headers(&g);
        CHECKF(strcmp(got, want) == 0, "%s: headers\n  got  %s\n  want %s", dl[i], got, want);
        harness_got_free(&g);
    }

    /* x-dead-letter-routing-key k1: only k1, CC gone, x-death still lists kr and k2 */
    publish_props(x, "kr", &p, "dlrk");
    harness_got_t g;
    CHECK(harness_get_wait(s_conn, 1, d1, true, 5000, &g));
    CHECK_STREQ(g.body, "dlrk");
    CHECK_STREQ(g.routing_key, "k1");
    snprintf(want, sizeof want,
             "{x-death:A[F{count:l1,reason:S\"expired\",queue:S\"%s\",time:T*,exchange:S\"%s\","
             "routing-keys:A[S\"kr\",S\"k2\"]}],x-first-death-exchange:S\"%s\","
             "x-first-death-queue:S\"%s\",x-first-death-reason:S\"expired\"}",
             wr, x, x, wr);
    CHECKF(strcmp(harness_got_death_headers(&g), want) == 0, "dlrk: headers\n  got  %s\n  want %s",
           harness_got_death_headers(&g), want);
    harness_got_free(&g);
    harness_expect_steady(s_conn, 1, d2, 0, 200, "x-dead-letter-routing-key k1: nothing for k2");
    CHECK_EQ(harness_queue_count(s_conn, 1, d3), 0);

    /* the second death names the dead-letter exchange it came through */
    const char *d4 = harness_name("rd4");
    qdeclare(d4, -1, NULL, NULL);
    qdeclare(d1, -1, "", d4);
    harness_queue_bind(s_conn, 1, d1, dx, "k1", amqp_empty_table);
    publish_props(x, "kr", NULL, "second");
    CHECK(harness_get_wait(s_conn, 1, d1, false, 5000, &g));
    CHECK_AMQP(amqp_basic_reject(s_conn, 1, g.delivery_tag, 0));
    harness_got_free(&g);
    CHECK(harness_get_wait(s_conn, 1, d4, true, 5000, &g));
    CHECK_STREQ(g.body, "second");
    CHECK_STREQ(g.routing_key, d4);
    snprintf(want, sizeof want,
             "{x-death:A[F{count:l1,exchange:S\"%s\",queue:S\"%s\",reason:S\"rejected\","
             "routing-keys:A[S\"k1\"],time:T*},F{count:l1,reason:S\"expired\",queue:S\"%s\","
             "time:T*,exchange:S\"%s\",routing-keys:A[S\"kr\"]}],x-first-death-exchange:S\"%s\","
             "x-first-death-queue:S\"%s\",x-first-death-reason:S\"expired\"}",
             dx, d1, wr, x, x, wr);
    CHECKF(strcmp(harness_got_death_headers(&g), want) == 0,
           "second death: headers\n  got  %s\n  want %s", harness_got_death_headers(&g), want);
    harness_got_free(&g);

    const char *qs[] = {w, wr, d1, d2, d3, d4};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        harness_queue_delete(s_conn, 1, qs[i]);
    harness_exchange_delete(s_conn, 1, x);
    harness_exchange_delete(s_conn, 1, dx);
    harness_log("dead-letter routing keys, CC/BCC, x-dead-letter-routing-key: ok");
}

static void check_routing_key_needs_dlx(void)
{
    const char *q = harness_name("nodlx");
    harness_args_t a = {.n = 0};
    harness_arg_str(&a, "x-dead-letter-routing-key", "k");
    harness_channel_open(s_conn, 2);
    amqp_queue_declare(s_conn, 2, amqp_cstring_bytes(q), 0, 0, 0, 0, harness_args_table(&a));
    char text[512];
    snprintf(text, sizeof text,
             "PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue '%s' in "
             "vhost '/': routing_key_but_no_dlx_defined",
             q);
    harness_expect_channel_close(s_conn, 2, amqp_get_rpc_reply(s_conn), 406, text, 50, 10);
    harness_log("x-dead-letter-routing-key without x-dead-letter-exchange: ok");
}

/* Warren's own check (RabbitMQ 3.10.8 accepts both): x-dead-letter-exchange and
 * x-dead-letter-routing-key name a shortstr, so values over 255 bytes are refused at declare
 * with 406 naming the argument (a longer key used to be cut to 8 bits at dead-lettering). */
static void check_long_dead_letter_args(const harness_broker_t *b)
{
    if (harness_external(b))
        return;
    static const char *const keys[] = {"x-dead-letter-exchange", "x-dead-letter-routing-key"};
    char big[301];
    memset(big, 'k', 300);
    big[300] = 0;
    for (int i = 0; i < 2; i++) {
        const char *q = harness_name("longarg%d", i);
        harness_args_t a = {.n = 0};
        harness_arg_str(&a, "x-dead-letter-exchange", i == 0 ? big : "amq.direct");
        if (i == 1)
            harness_arg_str(&a, "x-dead-letter-routing-key", big);
        harness_channel_open(s_conn, 2);
        amqp_queue_declare(s_conn, 2, amqp_cstring_bytes(q), 0, 0, 0, 0, harness_args_table(&a));
        char text[512];
        snprintf(text, sizeof text,
                 "PRECONDITION_FAILED - invalid arg '%s' for queue '%s' in vhost '/': "
                 "{value_too_long,300,max,255}",
                 keys[i], q);
        harness_expect_channel_close(s_conn, 2, amqp_get_rpc_reply(s_conn), 406, text, 50, 10);
    }
    /* 255 bytes is still a valid routing key: dead-lettering uses all of it. */
    const char *q = harness_name("longarg-ok"), *dlq = harness_name("longarg-dlq");
    big[255] = 0;
    harness_queue_declare(s_conn, 1, dlq, 0, amqp_empty_table);
    harness_queue_bind(s_conn, 1, dlq, "amq.direct", big, amqp_empty_table);
    harness_args_t a = {.n = 0};
    harness_arg_str(&a, "x-dead-letter-exchange", "amq.direct");
    harness_arg_str(&a, "x-dead-letter-routing-key", big);
    harness_queue_declare(s_conn, 1, q, 0, harness_args_table(&a));
    publish_n(q, 1, 1);
    harness_got_t g;
    CHECK(harness_get(s_conn, 1, q, false, &g));
    amqp_basic_reject(s_conn, 1, g.delivery_tag, 0);
    harness_got_free(&g);
    CHECK(harness_get_wait(s_conn, 1, dlq, true, 5000, &g));
    CHECK_STREQ(g.routing_key, big);
    CHECK_STREQ(g.body, "1");
    harness_got_free(&g);
    harness_log("dead-letter arguments over 255 bytes refused, 255 used whole: ok");
}

int main(void)
{
    harness_broker_t b;
    s_conn = harness_begin(&b, 55, "it-dlx");

    check_triggers();
    check_missing_dlx();
    check_routing();
    check_routing_key_needs_dlx();
    check_long_dead_letter_args(&b);

    harness_disconnect(s_conn);
    return harness_finish(&b);
}
