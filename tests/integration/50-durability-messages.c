/* 50-durability-messages — which messages survive a restart of warrend (SIGTERM) on its data
 * dir, in which order, with which bodies, properties and redelivered flags.
 * RabbitMQ 3.10.8 answers (asserted below; checked on a node restarted with rabbitmqctl stop):
 *  persistent messages (delivery_mode 2) in a durable queue come back in their order, bodies and
 *      every property as published (headers of every field type, timestamp, priority, ...);
 *      transient ones (delivery_mode 1 or none) in the same queue are gone, also those past the
 *      in-memory window; persistent messages in a non-durable queue go with the queue.
 *  a message delivered (basic.get or a consumer) and not acked before the stop comes back with
 *      redelivered=true, in its place; one requeued before the stop (channel closed) likewise;
 *      one never delivered with redelivered=false; acked ones (explicit, multiple or no-ack) do
 *      not come back.
 *  purged messages and a deleted queue's messages do not come back (a queue declared again under
 *      the deleted one's name is empty), also past the window.
 *  a queue of 20,000 persistent messages (past the 2048-message window) counts 20,000 in
 *      declare-ok before and after the restart and gives all of them back in order. */
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

/* The broker closes s_conn (320) on its way down; a new one has channel 1 open. */
static void restart(void)
{
    s_conn = harness_reopen(&s_broker, s_conn, false);
}

static void expect_no_queue(const char *q)
{
    char text[256];
    snprintf(text, sizeof text, "NOT_FOUND - no queue '%s' in vhost '/'", q);
    harness_expect_channel_close(s_conn, 1, harness_queue_peek(s_conn, 1, q, NULL, NULL), 404,
                                 text, 50, 10);
    harness_channel_open(s_conn, 1);
}

/* A short body "<prefix><n>" with delivery_mode dm (0: no delivery_mode property). */
static void publish_short(const char *q, const char *prefix, int n, int dm)
{
    char body[64];
    snprintf(body, sizeof body, "%s%d", prefix, n);
    amqp_basic_properties_t props = {._flags = dm ? AMQP_BASIC_DELIVERY_MODE_FLAG : 0,
                                     .delivery_mode = (uint8_t)dm};
    harness_publish_props(s_conn, 1, "", q, false, &props, body);
}

/* basic.get (no-ack) until empty: bodies joined by spaces, "r" appended when redelivered. */
static const char *drain_flags(const char *q)
{
    static char out[8192];
    harness_drain_marked(s_conn, 1, q, out, sizeof out);
    CHECK(strlen(out) < sizeof out - 1);
    return out;
}

static void expect_drain(const char *q, const char *want, const char *what)
{
    const char *got = drain_flags(q);
    CHECKF(strcmp(got, want) == 0, "%s: queue '%s' gave \"%s\", want \"%s\"", what, q, got, want);
}

static int s_mismatches; /* expect_queue() failures so far */

/* declare-ok's message_count, then what basic.get gives: both must be as wanted. A mismatch is
 * logged and counted (the caller fails the test after checking every queue). */
static void expect_queue(const char *q, uint32_t want_count, const char *want, const char *what)
{
    uint32_t n = harness_queue_count(s_conn, 1, q);
    const char *got = drain_flags(q);
    if (n != want_count || strcmp(got, want) != 0) {
        harness_log("MISMATCH %s: queue '%s' counted %u and gave \"%s\", want %u and \"%s\"",
                    what, q, n, got, want_count, want);
        s_mismatches++;
    }
}

/* ---- 1: order, bodies and properties ----------------------------------------------------------- */

#define ORDER_N 60
static const size_t s_sizes[] = {0,      1,      7,      100,    1000,    4096,    65536,
                                  131071, 131072, 131073, 300000, 1048575, 1048576};
#define NSIZES (sizeof s_sizes / sizeof s_sizes[0])

/* Message i of the order queue: every third is transient (delivery_mode 1), every sixth of
 * those has no delivery_mode at all. */
static int order_dm(int i)
{
    return i % 3 != 2 ? 2 : i % 6 == 5 ? 0 : 1;
}

static size_t order_size(int i)
{
    return s_sizes[(size_t)i % NSIZES];
}

static void order_body(int i, uint8_t *p, size_t n)
{
    uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1);
    for (size_t k = 0; k < n; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[k] = (uint8_t)x;
    }
}

/* Storage for one message's properties (strings live here). */
typedef struct props_buf {
    amqp_basic_properties_t p;
    char ctype[32], corr[32], reply[32], msgid[32], type[32], hs[32];
    amqp_table_entry_t h[10], inner[2];
    amqp_field_value_t arr[3];
    uint8_t bin[4];
} props_buf_t;

static void order_props(int i, props_buf_t *b)
{
    memset(b, 0, sizeof *b);
    amqp_basic_properties_t *p = &b->p;
    snprintf(b->ctype, sizeof b->ctype, "application/x-test-%d", i);
    snprintf(b->corr, sizeof b->corr, "corr-%d", i);
    snprintf(b->reply, sizeof b->reply, "reply-%d", i);
    snprintf(b->msgid, sizeof b->msgid, "msg-%d", i);
    snprintf(b->type, sizeof b->type, "type-%d", i);
    snprintf(b->hs, sizeof b->hs, "header-%d", i);
    p->_flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG |
                AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_PRIORITY_FLAG |
                AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_REPLY_TO_FLAG |
                AMQP_BASIC_EXPIRATION_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
                AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_USER_ID_FLAG |
                AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_CLUSTER_ID_FLAG;
    if (order_dm(i)) {
        p->_flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
        p->delivery_mode = (uint8_t)order_dm(i);
    }
    p->content_type = amqp_cstring_bytes(b->ctype);
    p->content_encoding = amqp_cstring_bytes("identity");
    p->priority = (uint8_t)(i % 10);
    p->correlation_id = amqp_cstring_bytes(b->corr);
    p->reply_to = amqp_cstring_bytes(b->reply);
    p->expiration = amqp_cstring_bytes("86400000");
    p->message_id = amqp_cstring_bytes(b->msgid);
    p->timestamp = 1700000000u + (uint64_t)i;
    p->type = amqp_cstring_bytes(b->type);
    p->user_id = amqp_cstring_bytes("guest");
    p->app_id = amqp_cstring_bytes("warren-tests");
    p->cluster_id = amqp_cstring_bytes("cluster-1");

    amqp_table_entry_t *h = b->h;
    int n = 0;
    h[n].key = amqp_cstring_bytes("seq");
    h[n].value.kind = AMQP_FIELD_KIND_I32;
    h[n++].value.value.i32 = i;
    h[n].key = amqp_cstring_bytes("str");
    h[n].value.kind = AMQP_FIELD_KIND_UTF8;
    h[n++].value.value.bytes = amqp_cstring_bytes(b->hs);
    h[n].key = amqp_cstring_bytes("bool");
    h[n].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    h[n++].value.value.boolean = i & 1;
    h[n].key = amqp_cstring_bytes("long");
    h[n].value.kind = AMQP_FIELD_KIND_I64;
    h[n++].value.value.i64 = -((int64_t)1 << 40) - i;
    h[n].key = amqp_cstring_bytes("double");
    h[n].value.kind = AMQP_FIELD_KIND_F64;
    h[n++].value.value.f64 = i + 0.25;
    h[n].key = amqp_cstring_bytes("ts");
    h[n].value.kind = AMQP_FIELD_KIND_TIMESTAMP;
    h[n++].value.value.u64 = 1600000000u + (uint64_t)i;
    b->bin[0] = 0;
    b->bin[1] = 0xff;
    b->bin[2] = (uint8_t)i;
    b->bin[3] = 0;
    h[n].key = amqp_cstring_bytes("bin");
    h[n].value.kind = AMQP_FIELD_KIND_BYTES;
    h[n++].value.value.bytes = (amqp_bytes_t){4, b->bin};
    b->inner[0].key = amqp_cstring_bytes("x");
    b->inner[0].value.kind = AMQP_FIELD_KIND_I32;
    b->inner[0].value.value.i32 = i * 7;
    b->inner[1].key = amqp_cstring_bytes("void");
    b->inner[1].value.kind = AMQP_FIELD_KIND_VOID;
    h[n].key = amqp_cstring_bytes("table");
    h[n].value.kind = AMQP_FIELD_KIND_TABLE;
    h[n++].value.value.table = (amqp_table_t){2, b->inner};
    b->arr[0].kind = AMQP_FIELD_KIND_I32;
    b->arr[0].value.i32 = 1;
    b->arr[1].kind = AMQP_FIELD_KIND_UTF8;
    b->arr[1].value.bytes = amqp_cstring_bytes("two");
    b->arr[2].kind = AMQP_FIELD_KIND_BOOLEAN;
    b->arr[2].value.boolean = 1;
    h[n].key = amqp_cstring_bytes("array");
    h[n].value.kind = AMQP_FIELD_KIND_ARRAY;
    h[n++].value.value.array = (amqp_array_t){3, b->arr};
    p->headers = (amqp_table_t){n, h};
}

static void publish_order(void)
{
    uint8_t *body = malloc(1048576);
    CHECK(body);
    for (int i = 0; i < ORDER_N; i++) {
        props_buf_t pb;
        order_props(i, &pb);
        order_body(i, body, order_size(i));
        CHECK_AMQP(amqp_basic_publish(s_conn, 1, amqp_empty_bytes,
                                      amqp_cstring_bytes("dq.order"), 0, 0, &pb.p,
                                      (amqp_bytes_t){order_size(i), body}));
    }
    free(body);
}

/* basic.get the order queue until empty; every message must be the next one expected (all of
 * them before the restart, the persistent ones after), intact. Returns how many came. */
static int check_order(bool after)
{
    uint8_t *body = malloc(1048576);
    CHECK(body);
    int i = 0, n = 0;
    for (;; i++) {
        if (after)
            while (i < ORDER_N && order_dm(i) != 2)
                i++;
        amqp_rpc_reply_t r = amqp_basic_get(s_conn, 1, amqp_cstring_bytes("dq.order"), 1);
        CHECK_REPLY(r);
        if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
            break;
        CHECKF(i < ORDER_N, "more messages than published");
        CHECKF(!((amqp_basic_get_ok_t *)r.reply.decoded)->redelivered,
               "message %d redelivered, it never was delivered", i);
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(s_conn, 1, &msg, 0));
        props_buf_t pb;
        order_props(i, &pb);
        char buf[512];
        const char *diff = harness_props_diff(&pb.p, &msg.properties, true, buf, sizeof buf);
        CHECKF(diff == NULL, "message %d (%s): %s (got message_id \"%.*s\")", i,
               after ? "after the restart" : "before the restart", diff,
               (int)msg.properties.message_id.len, (const char *)msg.properties.message_id.bytes);
        order_body(i, body, order_size(i));
        CHECKF(msg.body.len == order_size(i) &&
                   (msg.body.len == 0 || memcmp(msg.body.bytes, body, msg.body.len) == 0),
               "message %d: body of %zu bytes, want %zu intact bytes", i, msg.body.len,
               order_size(i));
        amqp_destroy_message(&msg);
        amqp_maybe_release_buffers(s_conn);
        n++;
    }
    CHECKF(i >= ORDER_N, "%s: only messages up to %d of %d came back", after ? "after" : "before",
           i, ORDER_N);
    free(body);
    return n;
}

/* ---- 2-6: small queues ----------------------------------------------------------------------- */

static void small_before(void)
{
    /* 2: persistent messages in a non-durable queue. */
    harness_queue_declare(s_conn, 1, "nq.persist", 0, amqp_empty_table);
    for (int i = 0; i < 10; i++)
        publish_short("nq.persist", "n", i, 2);

    /* 3: delivered and not acked: basic.get 0,1,2 and ack 1. */
    harness_queue_declare(s_conn, 1, "dq.unacked", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    for (int i = 0; i < 10; i++)
        publish_short("dq.unacked", "u", i, 2);
    uint64_t tags[3];
    for (int i = 0; i < 3; i++) {
        amqp_rpc_reply_t r = amqp_basic_get(s_conn, 1, amqp_cstring_bytes("dq.unacked"), 0);
        CHECK_REPLY(r);
        CHECK_EQ(r.reply.id, AMQP_BASIC_GET_OK_METHOD);
        tags[i] = ((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag;
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(s_conn, 1, &msg, 0));
        amqp_destroy_message(&msg);
    }
    CHECK_AMQP(amqp_basic_ack(s_conn, 1, tags[1], 0));

    /* 3b: a consumer (prefetch 4) on channel 2 gets c0..c3, acks c0, then gets c4: it holds
     * c1..c4 unacked. */
    harness_queue_declare(s_conn, 1, "dq.consumer", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    for (int i = 0; i < 10; i++)
        publish_short("dq.consumer", "c", i, 2);
    harness_channel_open(s_conn, 2);
    harness_qos(s_conn, 2, 4, false);
    harness_consume(s_conn, 2, "dq.consumer", NULL, 0, amqp_empty_table);
    for (int i = 0; i < 5; i++) {
        amqp_envelope_t env;
        CHECK(harness_next_delivery(s_conn, 10000, &env));
        char want[8];
        snprintf(want, sizeof want, "c%d", i);
        CHECKF(harness_bytes_is(env.message.body, want), "consumer got %.*s, want %s",
               (int)env.message.body.len, (const char *)env.message.body.bytes, want);
        if (i == 0)
            CHECK_AMQP(amqp_basic_ack(s_conn, 2, env.delivery_tag, 0));
        amqp_destroy_envelope(&env);
    }

    /* 3c: requeued before the stop: r0, r1 taken on channel 3, which is then closed. */
    harness_queue_declare(s_conn, 1, "dq.requeued", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    for (int i = 0; i < 10; i++)
        publish_short("dq.requeued", "r", i, 2);
    harness_channel_open(s_conn, 3);
    for (int i = 0; i < 2; i++) {
        amqp_rpc_reply_t r = amqp_basic_get(s_conn, 3, amqp_cstring_bytes("dq.requeued"), 0);
        CHECK_REPLY(r);
        CHECK_EQ(r.reply.id, AMQP_BASIC_GET_OK_METHOD);
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(s_conn, 3, &msg, 0));
        amqp_destroy_message(&msg);
    }
    CHECK_REPLY(amqp_channel_close(s_conn, 3, AMQP_REPLY_SUCCESS));

    /* 4: acked: a0..a4 acked with one multiple ack, a5..a9 taken with no-ack (on channel 5, so
     * that the multiple ack covers nothing of channel 1's). */
    harness_queue_declare(s_conn, 1, "dq.acked", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    for (int i = 0; i < 20; i++)
        publish_short("dq.acked", "a", i, 2);
    harness_channel_open(s_conn, 5);
    uint64_t last = 0;
    for (int i = 0; i < 10; i++) {
        amqp_rpc_reply_t r = amqp_basic_get(s_conn, 5, amqp_cstring_bytes("dq.acked"), i >= 5);
        CHECK_REPLY(r);
        CHECK_EQ(r.reply.id, AMQP_BASIC_GET_OK_METHOD);
        if (i < 5)
            last = ((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag;
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(s_conn, 5, &msg, 0));
        amqp_destroy_message(&msg);
    }
    CHECK_AMQP(amqp_basic_ack(s_conn, 5, last, 1));

    /* 5: purged, then 3 more; and a purge of a queue past the window. */
    harness_queue_declare(s_conn, 1, "dq.purged", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    for (int i = 0; i < 50; i++)
        publish_short("dq.purged", "old", i, 2);
    CHECK_EQ(harness_queue_purge(s_conn, 1, "dq.purged"), 50);
    for (int i = 0; i < 3; i++)
        publish_short("dq.purged", "p", i, 2);
    harness_queue_declare(s_conn, 1, "dq.bigpurge", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    for (int i = 0; i < 5000; i++)
        publish_short("dq.bigpurge", "bp", i, 2);
    CHECK_EQ(harness_wait_message_count(s_conn, 1, "dq.bigpurge", 5000, 5000), 5000);
    CHECK_EQ(harness_queue_purge(s_conn, 1, "dq.bigpurge"), 5000);

    /* 6: deleted with messages (one past the window), declared last so that their ids are the
     * highest the store has seen. */
    harness_queue_declare(s_conn, 1, "dq.deleted", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    harness_queue_declare(s_conn, 1, "dq.bigdeleted", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    for (int i = 0; i < 50; i++)
        publish_short("dq.deleted", "d", i, 2);
    for (int i = 0; i < 5000; i++)
        publish_short("dq.bigdeleted", "bd", i, 2);
    CHECK_EQ(harness_wait_message_count(s_conn, 1, "dq.bigdeleted", 5000, 5000), 5000);
    amqp_queue_delete_ok_t *dok =
        amqp_queue_delete(s_conn, 1, amqp_cstring_bytes("dq.deleted"), 0, 0);
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));
    CHECK_EQ(dok->message_count, 50);
    dok = amqp_queue_delete(s_conn, 1, amqp_cstring_bytes("dq.bigdeleted"), 0, 0);
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));
    CHECK_EQ(dok->message_count, 5000);

    /* 7: transient messages past the window (paged to disk) with every tenth persistent. */
    harness_queue_declare(s_conn, 1, "dq.tpaged", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    for (int i = 0; i < 3000; i++)
        publish_short("dq.tpaged", "t", i, i % 10 == 0 ? 2 : 1);
    CHECK_EQ(harness_wait_message_count(s_conn, 1, "dq.tpaged", 3000, 5000), 3000);

    CHECK_EQ(harness_queue_count(s_conn, 1, "dq.unacked"), 7);
    CHECK_EQ(harness_queue_count(s_conn, 1, "dq.consumer"), 5);
    CHECK_EQ(harness_queue_count(s_conn, 1, "dq.requeued"), 10);
    CHECK_EQ(harness_queue_count(s_conn, 1, "dq.acked"), 10);
    CHECK_EQ(harness_queue_count(s_conn, 1, "dq.purged"), 3);
    CHECK_EQ(harness_queue_count(s_conn, 1, "dq.bigpurge"), 0);
    harness_log("small queues set up: unacked, consumer, requeued, acked, purged, deleted, "
                "transient past the window");
}

static void small_after(void)
{
    expect_no_queue("nq.persist");
    harness_queue_declare(s_conn, 1, "nq.persist", 0, amqp_empty_table);
    CHECK_EQ(harness_queue_count(s_conn, 1, "nq.persist"), 0);

    expect_queue("dq.unacked", 9, "u0r u2r u3 u4 u5 u6 u7 u8 u9", "delivered, unacked");
    expect_queue("dq.consumer", 9, "c1r c2r c3r c4r c5 c6 c7 c8 c9", "consumer, unacked");
    expect_queue("dq.requeued", 10, "r0r r1r r2 r3 r4 r5 r6 r7 r8 r9", "requeued");
    expect_queue("dq.acked", 10, "a10 a11 a12 a13 a14 a15 a16 a17 a18 a19", "acked");
    expect_queue("dq.purged", 3, "p0 p1 p2", "purged");
    expect_queue("dq.bigpurge", 0, "", "purged past the window");
    expect_no_queue("dq.deleted");
    expect_no_queue("dq.bigdeleted");
    harness_queue_declare(s_conn, 1, "dq.deleted", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    harness_queue_declare(s_conn, 1, "dq.bigdeleted", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    CHECK_EQ(harness_queue_count(s_conn, 1, "dq.deleted"), 0);
    CHECK_EQ(harness_queue_count(s_conn, 1, "dq.bigdeleted"), 0);
    expect_drain("dq.deleted", "", "deleted, declared again");
    expect_drain("dq.bigdeleted", "", "deleted past the window, declared again");

    char want[2048];
    size_t len = 0;
    for (int i = 0; i < 3000; i += 10)
        len += (size_t)snprintf(want + len, sizeof want - len, "%st%d", i ? " " : "", i);
    expect_queue("dq.tpaged", 300, want, "transient past the window");
    CHECKF(s_mismatches == 0, "%d queues came back wrong after the restart (see above)",
           s_mismatches);
    harness_log("small queues after the restart: exact");
}

/* ---- 8: 20,000 persistent messages --------------------------------------------------------- */

#define BIG_N 20000
#define BIG_PRE 5000 /* taken (no-ack) before the restart */

static void big_body(int i, char *out, size_t cap)
{
    snprintf(out, cap, "big-%05d-%0*d", i, 40 + i % 50, i);
}

static void big_before(void)
{
    harness_queue_declare(s_conn, 1, "dq.big", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    char body[128];
    amqp_basic_properties_t props = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG, .delivery_mode = 2};
    for (int i = 0; i < BIG_N; i++) {
        big_body(i, body, sizeof body);
        CHECK_AMQP(amqp_basic_publish(s_conn, 1, amqp_empty_bytes, amqp_cstring_bytes("dq.big"),
                                      0, 0, &props, amqp_cstring_bytes(body)));
    }
    CHECK_EQ(harness_wait_message_count(s_conn, 1, "dq.big", BIG_N, 10000), BIG_N);
    for (int i = 0; i < BIG_PRE; i++) {
        amqp_rpc_reply_t r = amqp_basic_get(s_conn, 1, amqp_cstring_bytes("dq.big"), 1);
        CHECK_REPLY(r);
        CHECK_EQ(r.reply.id, AMQP_BASIC_GET_OK_METHOD);
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(s_conn, 1, &msg, 0));
        big_body(i, body, sizeof body);
        CHECKF(harness_bytes_is(msg.body, body), "dq.big message %d: got %.*s", i,
               (int)msg.body.len, (const char *)msg.body.bytes);
        amqp_destroy_message(&msg);
        amqp_maybe_release_buffers(s_conn);
    }
    CHECK_EQ(harness_queue_count(s_conn, 1, "dq.big"), BIG_N - BIG_PRE);
    harness_log("dq.big: %d persistent messages counted, the first %d taken in order", BIG_N,
                BIG_PRE);
}

/* Consume the rest with a consumer (prefetch 1000, multiple acks every 500). */
static void big_after(void)
{
    CHECK_EQ(harness_queue_count(s_conn, 1, "dq.big"), BIG_N - BIG_PRE);
    harness_channel_open(s_conn, 4);
    harness_qos(s_conn, 4, 1000, false);
    harness_consume(s_conn, 4, "dq.big", "big", 0, amqp_empty_table);
    char body[128];
    for (int i = BIG_PRE; i < BIG_N; i++) {
        amqp_envelope_t env;
        struct timeval tv = {.tv_sec = 10};
        amqp_maybe_release_buffers(s_conn);
        amqp_rpc_reply_t r = amqp_consume_message(s_conn, &env, &tv, 0);
        CHECKF(r.reply_type == AMQP_RESPONSE_NORMAL, "waiting for dq.big message %d", i);
        big_body(i, body, sizeof body);
        CHECKF(harness_bytes_is(env.message.body, body),
               "dq.big message %d after the restart: got %.*s", i, (int)env.message.body.len,
               (const char *)env.message.body.bytes);
        CHECKF(!env.redelivered, "dq.big message %d redelivered", i);
        if ((i - BIG_PRE) % 500 == 499 || i == BIG_N - 1)
            CHECK_AMQP(amqp_basic_ack(s_conn, 4, env.delivery_tag, 1));
        amqp_destroy_envelope(&env);
    }
    harness_cancel(s_conn, 4, "big");
    CHECK_EQ(harness_queue_count(s_conn, 1, "dq.big"), 0);
    harness_log("dq.big after the restart: %d more, in order, none redelivered", BIG_N - BIG_PRE);
}

int main(void)
{
    harness_watchdog(150);
    harness_broker_start(&s_broker);
    harness_require_own_broker(&s_broker);
    s_conn = harness_open(&s_broker);

    harness_queue_declare(s_conn, 1, "dq.order", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    publish_order();
    CHECK_EQ(harness_wait_message_count(s_conn, 1, "dq.order", ORDER_N, 5000), ORDER_N);
    CHECK_EQ(check_order(false), ORDER_N);
    publish_order();
    CHECK_EQ(harness_wait_message_count(s_conn, 1, "dq.order", ORDER_N, 5000), ORDER_N);
    small_before();
    big_before();

    restart();

    int persistent = 0;
    for (int i = 0; i < ORDER_N; i++)
        persistent += order_dm(i) == 2;
    CHECK_EQ(harness_queue_count(s_conn, 1, "dq.order"), persistent);
    CHECK_EQ(check_order(true), persistent);
    harness_log("dq.order after the restart: %d persistent of %d (sizes 0 B to 1 MiB), in order, "
                "all properties intact; the transient ones gone",
                persistent, ORDER_N);
    small_after();
    big_after();

    /* Everything was acked: a last restart brings nothing back. */
    restart();
    const char *qs[] = {"dq.order", "dq.unacked", "dq.consumer", "dq.requeued", "dq.acked",
                        "dq.purged", "dq.tpaged",  "dq.big"};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        CHECKF(harness_queue_count(s_conn, 1, qs[i]) == 0,
               "queue %s holds %u messages after the last restart", qs[i],
               harness_queue_count(s_conn, 1, qs[i]));
    harness_log("after a last restart every durable queue is empty");

    harness_disconnect(s_conn);
    CHECK(harness_broker_stop(&s_broker) == 0);
    harness_log("PASS");
    return 0;
}
