/* 60-ext-quorum — x-queue-type: classic as before, quorum with single-node semantics, stream
 * refused. (Quorum messages surviving a restart: 60-ext-quorum-restart.)
 * RabbitMQ 3.10.8 answers (asserted below; Q is the queue name):
 *  x-queue-type quorum, durable: declare-ok; a redeclare with the same arguments is fine.
 *  quorum and not durable: channel.close 406 "PRECONDITION_FAILED - invalid property
 *      'non-durable' for queue 'Q' in vhost '/'" (50.10); exclusive: "... invalid property
 *      'exclusive-owner' ..."; auto-delete: "... invalid property 'auto-delete' ..." (auto-delete
 *      is named first when several are wrong, then exclusive-owner).
 *  a redeclare as classic: 406 "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue
 *      'Q' in vhost '/': received 'classic' but current is 'quorum'"; without x-queue-type:
 *      "... received none but current is the value 'quorum' of type 'longstr'".
 *  x-max-priority on a quorum queue: 406 "PRECONDITION_FAILED - invalid arg 'x-max-priority' for
 *      queue 'Q' in vhost '/' of queue type rabbit_quorum_queue".
 *  x-queue-type classic declares an ordinary queue.
 *  deliveries from a quorum queue carry the header x-delivery-count (a long), the number of times
 *      the message came back (nack/reject with requeue, channel close): through basic.get always
 *      (0 the first time), to a consumer only from the first redelivery on (absent the first
 *      time); the publisher's headers and delivery_mode 1 are delivered as published.
 *  with x-delivery-limit N a message is delivered N+1 times (x-delivery-count 0..N); when it
 *      comes back once more it is dead-lettered with reason delivery_limit: x-death [{count 1,
 *      reason delivery_limit, queue Q, time, exchange "", routing-keys [Q]}] and
 *      x-first-death-exchange "", x-first-death-queue Q, x-first-death-reason delivery_limit; the
 *      x-delivery-count header is not in the dead-lettered message.
 *  without x-delivery-limit RabbitMQ 3.10 has no limit (still delivered after 25 returns, with
 *      x-delivery-count 25); RabbitMQ 4.0 made the default 20, and so does Warren (issue 5):
 *      against warrend the 21st return dead-letters it. (Checked per broker: check_default_limit.)
 *  x-queue-type stream: RabbitMQ 3.10 creates a stream; Warren answers 406 PRECONDITION_FAILED
 *      (issue 5: "not supported yet") and creates nothing. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static int s_pid;
static char s_text[1024];
static bool s_external;

/* queue.declare with x-queue-type type (NULL: none), x-delivery-limit limit (< 0: none) and
 * x-dead-letter-exchange dlx (NULL: none). */
static amqp_rpc_reply_t declare(amqp_connection_state_t conn, amqp_channel_t ch, const char *q,
                                bool durable, bool exclusive, bool auto_delete, const char *type,
                                int limit, const char *dlx)
{
    amqp_table_entry_t e[3];
    int n = 0;
    if (type) {
        e[n].key = amqp_cstring_bytes("x-queue-type");
        e[n].value.kind = AMQP_FIELD_KIND_UTF8;
        e[n++].value.value.bytes = amqp_cstring_bytes(type);
    }
    if (limit >= 0) {
        e[n].key = amqp_cstring_bytes("x-delivery-limit");
        e[n].value.kind = AMQP_FIELD_KIND_I32;
        e[n++].value.value.i32 = limit;
    }
    if (dlx) {
        e[n].key = amqp_cstring_bytes("x-dead-letter-exchange");
        e[n].value.kind = AMQP_FIELD_KIND_UTF8;
        e[n++].value.value.bytes = amqp_cstring_bytes(dlx);
    }
    amqp_queue_declare(conn, ch, amqp_cstring_bytes(q), 0, durable, exclusive, auto_delete,
                       (amqp_table_t){.num_entries = n, .entries = e});
    return amqp_get_rpc_reply(conn);
}

static void expect_406(amqp_connection_state_t conn, amqp_rpc_reply_t r, const char *fmt,
                       const char *q)
{
    snprintf(s_text, sizeof s_text, fmt, q);
    harness_expect_channel_close(conn, 1, r, 406, s_text, 50, 10);
    harness_channel_open(conn, 1);
}

static void check_declare(amqp_connection_state_t conn)
{
    char q[64];
    snprintf(q, sizeof q, "it-quorum-decl-%d", s_pid);
    static const char inv[] = "PRECONDITION_FAILED - invalid property '%%s' for queue '%s' in "
                              "vhost '/'";
    static const struct {
        bool durable, exclusive, auto_delete;
        const char *property;
    } bad[] = {
        {false, false, false, "non-durable"},   {true, true, false, "exclusive-owner"},
        {true, false, true, "auto-delete"},     {false, true, false, "exclusive-owner"},
        {false, false, true, "auto-delete"},    {true, true, true, "auto-delete"},
        {false, true, true, "auto-delete"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char fmt[256];
        snprintf(fmt, sizeof fmt, inv, q);
        char text[512];
        snprintf(text, sizeof text, fmt, bad[k].property);
        harness_expect_channel_close(conn, 1,
                                     declare(conn, 1, q, bad[k].durable, bad[k].exclusive,
                                             bad[k].auto_delete, "quorum", -1, NULL),
                                     406, text, 50, 10);
        harness_channel_open(conn, 1);
    }
    CHECKF(harness_wait_queue_gone(conn, 1, q, 0), "%s exists after refused declares", q);
    harness_channel_open(conn, 1);

    CHECK_REPLY(declare(conn, 1, q, true, false, false, "quorum", -1, NULL));
    CHECK_REPLY(declare(conn, 1, q, true, false, false, "quorum", -1, NULL));
    CHECK_REPLY(harness_queue_peek(conn, 1, q, NULL, NULL));
    expect_406(conn, declare(conn, 1, q, true, false, false, "classic", -1, NULL),
               "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '%s' in vhost "
               "'/': received 'classic' but current is 'quorum'",
               q);
    expect_406(conn, declare(conn, 1, q, true, false, false, NULL, -1, NULL),
               "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '%s' in vhost "
               "'/': received none but current is the value 'quorum' of type 'longstr'",
               q);
    harness_queue_delete(conn, 1, q);

    amqp_table_entry_t e[2];
    e[0].key = amqp_cstring_bytes("x-queue-type");
    e[0].value.kind = AMQP_FIELD_KIND_UTF8;
    e[0].value.value.bytes = amqp_cstring_bytes("quorum");
    e[1].key = amqp_cstring_bytes("x-max-priority");
    e[1].value.kind = AMQP_FIELD_KIND_I32;
    e[1].value.value.i32 = 5;
    amqp_queue_declare(conn, 1, amqp_cstring_bytes(q), 0, 1, 0, 0,
                       (amqp_table_t){.num_entries = 2, .entries = e});
    expect_406(conn, amqp_get_rpc_reply(conn),
               "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '%s' in vhost '/' "
               "of queue type rabbit_quorum_queue",
               q);
    CHECKF(harness_wait_queue_gone(conn, 1, q, 0), "%s exists after a refused declare", q);
    harness_channel_open(conn, 1);

    /* classic: an ordinary (even exclusive, auto-delete, transient) queue. */
    CHECK_REPLY(declare(conn, 1, q, false, true, true, "classic", -1, NULL));
    harness_publish(conn, 1, "", q, "classic");
    char got[64];
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 1, 5000), 1);
    CHECK_EQ(harness_drain(conn, 1, q, got, sizeof got), 1);
    CHECK_STREQ(got, "classic");
    harness_queue_delete(conn, 1, q);
    harness_log("quorum/classic declarations: ok");
}

static void check_stream(amqp_connection_state_t conn)
{
    char q[64];
    snprintf(q, sizeof q, "it-quorum-stream-%d", s_pid);
    amqp_rpc_reply_t r = declare(conn, 1, q, true, false, false, "stream", -1, NULL);
    if (s_external) {
        CHECK_REPLY(r); /* RabbitMQ 3.10 has streams */
        harness_queue_delete(conn, 1, q);
        harness_log("stream: RabbitMQ creates it");
        return;
    }
    char buf[512];
    CHECKF(r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
               r.reply.id == AMQP_CHANNEL_CLOSE_METHOD,
           "x-queue-type stream: want channel.close 406, got %s",
           harness_reply_str(r, buf, sizeof buf));
    const amqp_channel_close_t *c = r.reply.decoded;
    harness_log("stream refused: %u %.*s", c->reply_code, (int)c->reply_text.len,
                (const char *)c->reply_text.bytes);
    CHECK_EQ(c->reply_code, 406);
    CHECK(c->class_id == 50 && c->method_id == 10);
    CHECK(c->reply_text.len > 22 && memcmp(c->reply_text.bytes, "PRECONDITION_FAILED - ", 22) == 0);
    amqp_channel_close_ok_t ok = {0};
    CHECK_AMQP(amqp_send_method(conn, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok));
    harness_channel_open(conn, 1);
    CHECKF(harness_wait_queue_gone(conn, 1, q, 0), "%s exists after x-queue-type stream", q);
    harness_channel_open(conn, 1);
}

/* Publish body to q with delivery_mode 1 and the header keep=me. */
static void publish_transient(amqp_connection_state_t conn, const char *q, const char *body)
{
    amqp_table_entry_t h = {.key = amqp_cstring_bytes("keep")};
    h.value.kind = AMQP_FIELD_KIND_UTF8;
    h.value.value.bytes = amqp_cstring_bytes("me");
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof p);
    p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG;
    p.delivery_mode = 1;
    p.headers = (amqp_table_t){.num_entries = 1, .entries = &h};
    harness_publish_props(conn, 1, "", q, false, &p, body);
}

/* basic.get (ack mode) on ch until a message comes (quorum queues count a publish a moment
 * later); checks body, redelivered, delivery_mode 1, keep=me and x-delivery-count; returns the
 * delivery tag. */
static uint64_t get_one(amqp_connection_state_t conn, amqp_channel_t ch, const char *q,
                        const char *body, int64_t count)
{
    harness_got_t g;
    CHECKF(harness_get_wait(conn, ch, q, false, 5000, &g),
           "%s: nothing to get after 5 s (want x-delivery-count %lld)", q, (long long)count);
    uint64_t tag = g.delivery_tag;
    CHECKF(g.redelivered == (count > 0), "redelivered %d at x-delivery-count %lld",
           g.redelivered, (long long)count);
    amqp_message_t msg = g.msg;
    CHECK(harness_bytes_is(msg.body, body));
    CHECK((msg.properties._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) &&
          msg.properties.delivery_mode == 1);
    CHECK(msg.properties._flags & AMQP_BASIC_HEADERS_FLAG);
    const amqp_field_value_t *keep = harness_table_get(&msg.properties.headers, "keep");
    CHECK(keep && keep->kind == AMQP_FIELD_KIND_UTF8 && harness_bytes_is(keep->value.bytes, "me"));
    const amqp_field_value_t *dc = harness_table_get(&msg.properties.headers, "x-delivery-count");
    CHECKF(dc && dc->kind == AMQP_FIELD_KIND_I64 && dc->value.i64 == count,
           "x-delivery-count %s (kind %c, %lld), want long %lld", dc ? "present" : "absent",
           dc ? dc->kind : '-', dc ? (long long)dc->value.i64 : 0LL, (long long)count);
    CHECK_EQ(msg.properties.headers.num_entries, 2);
    harness_got_free(&g);
    return tag;
}

/* The dead-lettered message in dlq: body, x-death for q with reason delivery_limit. */
static void expect_dead_lettered(amqp_connection_state_t conn, const char *dlq, const char *q,
                                 const char *body)
{
    harness_got_t g;
    CHECKF(harness_get_wait(conn, 1, dlq, true, 5000, &g),
           "%s was not dead-lettered to %s within 5 s", body, dlq);
    amqp_message_t msg = g.msg;
    CHECK(harness_bytes_is(msg.body, body));
    const amqp_table_t *h = &msg.properties.headers;
    CHECK(msg.properties._flags & AMQP_BASIC_HEADERS_FLAG);
    CHECKF(!harness_table_get(h, "x-delivery-count"), "x-delivery-count in a dead letter");
    const amqp_field_value_t *keep = harness_table_get(h, "keep");
    CHECK(keep && keep->kind == AMQP_FIELD_KIND_UTF8 && harness_bytes_is(keep->value.bytes, "me"));
    const amqp_field_value_t *v = harness_table_get(h, "x-first-death-reason");
    CHECK(v && v->kind == AMQP_FIELD_KIND_UTF8 && harness_bytes_is(v->value.bytes, "delivery_limit"));
    v = harness_table_get(h, "x-first-death-queue");
    CHECK(v && v->kind == AMQP_FIELD_KIND_UTF8 && harness_bytes_is(v->value.bytes, q));
    v = harness_table_get(h, "x-first-death-exchange");
    CHECK(v && v->kind == AMQP_FIELD_KIND_UTF8 && harness_bytes_is(v->value.bytes, ""));
    const amqp_field_value_t *xd = harness_table_get(h, "x-death");
    CHECK(xd && xd->kind == AMQP_FIELD_KIND_ARRAY && xd->value.array.num_entries == 1);
    const amqp_field_value_t *d0 = &xd->value.array.entries[0];
    CHECK(d0->kind == AMQP_FIELD_KIND_TABLE);
    const amqp_table_t *d = &d0->value.table;
    CHECK_EQ(d->num_entries, 6);
    v = harness_table_get(d, "count");
    CHECK(v && v->kind == AMQP_FIELD_KIND_I64 && v->value.i64 == 1);
    v = harness_table_get(d, "reason");
    CHECK(v && v->kind == AMQP_FIELD_KIND_UTF8 && harness_bytes_is(v->value.bytes, "delivery_limit"));
    v = harness_table_get(d, "queue");
    CHECK(v && v->kind == AMQP_FIELD_KIND_UTF8 && harness_bytes_is(v->value.bytes, q));
    v = harness_table_get(d, "time");
    CHECK(v && v->kind == AMQP_FIELD_KIND_TIMESTAMP);
    v = harness_table_get(d, "exchange");
    CHECK(v && v->kind == AMQP_FIELD_KIND_UTF8 && harness_bytes_is(v->value.bytes, ""));
    v = harness_table_get(d, "routing-keys");
    CHECK(v && v->kind == AMQP_FIELD_KIND_ARRAY && v->value.array.num_entries == 1 &&
          v->value.array.entries[0].kind == AMQP_FIELD_KIND_UTF8 &&
          harness_bytes_is(v->value.array.entries[0].value.bytes, q));
    harness_got_free(&g);
}

/* A quorum queue dead-lettering through dlx (a fanout bound to dlq). */
static void make_dlx(amqp_connection_state_t conn, const char *dlx, const char *dlq)
{
    harness_exchange_declare(conn, 1, dlx, "fanout", 0, amqp_empty_table);
    harness_queue_declare(conn, 1, dlq, 0, amqp_empty_table);
    harness_queue_bind(conn, 1, dlq, dlx, "", amqp_empty_table);
}

static void drop_dlx(amqp_connection_state_t conn, const char *dlx, const char *dlq)
{
    harness_queue_delete(conn, 1, dlq);
    harness_exchange_delete(conn, 1, dlx);
}

/* x-delivery-limit 2: three deliveries (nack requeue), the third nack dead-letters. With limit 1
 * the returns are channel closes of a consumer. */
static void check_delivery_limit(amqp_connection_state_t conn)
{
    char q[64], dlx[64], dlq[64];
    snprintf(q, sizeof q, "it-quorum-limit-%d", s_pid);
    snprintf(dlx, sizeof dlx, "it-quorum-dlx-%d", s_pid);
    snprintf(dlq, sizeof dlq, "it-quorum-dlq-%d", s_pid);
    make_dlx(conn, dlx, dlq);
    CHECK_REPLY(declare(conn, 1, q, true, false, false, "quorum", 2, dlx));
    publish_transient(conn, q, "poison");
    for (int n = 0; n <= 2; n++) {
        uint64_t tag = get_one(conn, 1, q, "poison", n);
        CHECK_AMQP(amqp_basic_nack(conn, 1, tag, 0, 1));
    }
    expect_dead_lettered(conn, dlq, q, "poison");
    uint32_t m = 99;
    CHECK_REPLY(harness_queue_peek(conn, 1, q, &m, NULL));
    CHECK_EQ(m, 0);
    harness_queue_delete(conn, 1, q);

    /* limit 1, returns by channel close of a consumer. */
    CHECK_REPLY(declare(conn, 1, q, true, false, false, "quorum", 1, dlx));
    publish_transient(conn, q, "closer");
    for (int n = 0; n <= 1; n++) {
        harness_channel_open(conn, 2);
        harness_consume(conn, 2, q, NULL, 0, amqp_empty_table);
        amqp_envelope_t env;
        struct timeval tv = {.tv_sec = 5};
        amqp_maybe_release_buffers(conn);
        CHECK_REPLY(amqp_consume_message(conn, &env, &tv, 0));
        CHECK(harness_bytes_is(env.message.body, "closer"));
        CHECK_EQ(env.redelivered, n > 0);
        const amqp_field_value_t *dc =
            harness_table_get(&env.message.properties.headers, "x-delivery-count");
        /* To a consumer the first delivery has no x-delivery-count (basic.get's has 0). */
        if (n == 0)
            CHECKF(!dc && env.message.properties.headers.num_entries == 1,
                   "first consumer delivery: x-delivery-count %s",
                   dc ? "present" : "absent, but other headers");
        else
            CHECKF(dc && dc->kind == AMQP_FIELD_KIND_I64 && dc->value.i64 == n &&
                       env.message.properties.headers.num_entries == 2,
                   "consumer delivery %d: x-delivery-count %lld", n,
                   dc ? (long long)dc->value.i64 : -1LL);
        amqp_destroy_envelope(&env);
        CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    }
    expect_dead_lettered(conn, dlq, q, "closer");
    harness_queue_delete(conn, 1, q);
    drop_dlx(conn, dlx, dlq);
    harness_log("x-delivery-limit and x-delivery-count, dead-lettered with delivery_limit: ok");
}

/* No x-delivery-limit: RabbitMQ 3.10 has no limit; Warren's default is 20 (RabbitMQ 4.0's). */
static void check_default_limit(amqp_connection_state_t conn)
{
    char q[64], dlx[64], dlq[64];
    snprintf(q, sizeof q, "it-quorum-default-%d", s_pid);
    snprintf(dlx, sizeof dlx, "it-quorum-ddlx-%d", s_pid);
    snprintf(dlq, sizeof dlq, "it-quorum-ddlq-%d", s_pid);
    make_dlx(conn, dlx, dlq);
    CHECK_REPLY(declare(conn, 1, q, true, false, false, "quorum", -1, dlx));
    publish_transient(conn, q, "again");
    int last = s_external ? 25 : 20;
    for (int n = 0; n <= last; n++) {
        uint64_t tag = get_one(conn, 1, q, "again", n);
        CHECK_AMQP(amqp_basic_nack(conn, 1, tag, 0, 1));
    }
    if (s_external) {
        /* RabbitMQ 3.10.8: no default limit, the 26th delivery says 26. */
        uint64_t tag = get_one(conn, 1, q, "again", 26);
        CHECK_AMQP(amqp_basic_ack(conn, 1, tag, 0));
        harness_log("no x-delivery-limit: RabbitMQ 3.10 redelivers without limit");
    } else {
        expect_dead_lettered(conn, dlq, q, "again");
        harness_log("no x-delivery-limit: warrend's default 20 dead-letters the 21st return");
    }
    uint32_t m = 99;
    CHECK_REPLY(harness_queue_peek(conn, 1, q, &m, NULL));
    CHECK_EQ(m, 0);
    harness_queue_delete(conn, 1, q);
    drop_dlx(conn, dlx, dlq);
}

int main(void)
{
    harness_broker_t b;
    amqp_connection_state_t conn = harness_begin(&b, 55, NULL);
    s_pid = (int)getpid();
    s_external = harness_external(&b);
    check_declare(conn);
    check_stream(conn);
    check_delivery_limit(conn);
    check_default_limit(conn);
    harness_disconnect(conn);
    return harness_finish(&b);
}
