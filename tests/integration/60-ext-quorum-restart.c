/* 60-ext-quorum-restart — a quorum queue across a restart of warrend (SIGTERM, then SIGKILL after
 * confirms): every message is kept, also those published with delivery_mode 1 or none, in order
 * and with their properties; delivery counts (x-delivery-count, x-delivery-limit) carry on.
 * Skips against an external broker (it restarts warrend).
 * RabbitMQ 3.10.8 (checked by hand on a node restarted with rabbitmqctl stop_app/start_app):
 *  a quorum queue holding m0..m5, half of them delivery_mode 1, has all six after the restart,
 *      in order (a classic durable queue beside it keeps only the delivery_mode 2 ones).
 *  a message returned twice before the restart is delivered after it with x-delivery-count 2
 *      and redelivered set. */
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
static amqp_connection_state_t s_conn; /* owned: channel 1 open, in confirm mode */
static char s_q[64], s_q2[64], s_lq[64], s_dlx[64], s_dlq[64];
static harness_confirms_t s_confirms; /* channel 1's publishes and confirms */

static void connect_confirm(void)
{
    s_conn = harness_open_confirms(&s_broker, &s_confirms);
}

/* A durable quorum queue, with x-delivery-limit and a DLX when limit >= 0. */
static void declare_quorum(const char *q, int limit)
{
    amqp_table_entry_t e[3];
    e[0].key = amqp_cstring_bytes("x-queue-type");
    e[0].value.kind = AMQP_FIELD_KIND_UTF8;
    e[0].value.value.bytes = amqp_cstring_bytes("quorum");
    e[1].key = amqp_cstring_bytes("x-delivery-limit");
    e[1].value.kind = AMQP_FIELD_KIND_I32;
    e[1].value.value.i32 = limit;
    e[2].key = amqp_cstring_bytes("x-dead-letter-exchange");
    e[2].value.kind = AMQP_FIELD_KIND_UTF8;
    e[2].value.value.bytes = amqp_cstring_bytes(s_dlx);
    harness_queue_declare(s_conn, 1, q, HARNESS_QUEUE_DURABLE,
                          (amqp_table_t){.num_entries = limit >= 0 ? 3 : 1, .entries = e});
}

/* delivery_mode dm (0: the property is absent), with a header and a message-id. */
static void publish(const char *q, const char *body, int dm)
{
    amqp_table_entry_t h = {.key = amqp_cstring_bytes("keep")};
    h.value.kind = AMQP_FIELD_KIND_UTF8;
    h.value.value.bytes = amqp_cstring_bytes(body);
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof p);
    p._flags = AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
    p.headers = (amqp_table_t){.num_entries = 1, .entries = &h};
    p.message_id = amqp_cstring_bytes(body);
    if (dm) {
        p._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
        p.delivery_mode = (uint8_t)dm;
    }
    harness_publish_props(s_conn, 1, "", q, false, &p, body);
    s_confirms.published++;
}

static void wait_confirms(void)
{
    harness_wait_confirms(s_conn, &s_confirms);
}

/* basic.get (ack mode, polling up to 5 s) of q: must be body with delivery mode dm (0: absent),
 * x-delivery-count count (basic.get always has it) and redelivered when count > 0; returns the
 * delivery tag. */
static uint64_t get_one(const char *q, const char *body, int dm, int64_t count)
{
    harness_got_t g;
    CHECKF(harness_get_wait(s_conn, 1, q, false, 5000, &g), "%s: no %s after 5 s", q, body);
    uint64_t tag = g.delivery_tag;
    bool redelivered = g.redelivered;
    amqp_message_t msg = g.msg;
    CHECKF(harness_bytes_is(msg.body, body), "got %.*s, want %s", (int)msg.body.len,
           (const char *)msg.body.bytes, body);
    CHECKF(redelivered == (count > 0), "%s: redelivered %d", body, redelivered);
    if (dm)
        CHECKF((msg.properties._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) &&
                   msg.properties.delivery_mode == dm,
               "%s: delivery_mode %u, want %d", body, msg.properties.delivery_mode, dm);
    else
        CHECKF(!(msg.properties._flags & AMQP_BASIC_DELIVERY_MODE_FLAG), "%s: delivery_mode %u",
               body, msg.properties.delivery_mode);
    CHECK((msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) &&
          harness_bytes_is(msg.properties.message_id, body));
    const amqp_field_value_t *keep = harness_table_get(&msg.properties.headers, "keep");
    CHECK(keep && keep->kind == AMQP_FIELD_KIND_UTF8 && harness_bytes_is(keep->value.bytes, body));
    const amqp_field_value_t *dc = harness_table_get(&msg.properties.headers, "x-delivery-count");
    CHECKF(dc && dc->kind == AMQP_FIELD_KIND_I64 && dc->value.i64 == count,
           "%s: x-delivery-count %lld, want %lld", body, dc ? (long long)dc->value.i64 : -1LL,
           (long long)count);
    harness_got_free(&g);
    return tag;
}

static void expect_empty(const char *q)
{
    amqp_rpc_reply_t r = amqp_basic_get(s_conn, 1, amqp_cstring_bytes(q), 1);
    CHECK_REPLY(r);
    CHECKF(r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD, "%s is not empty", q);
}

int main(void)
{
    harness_watchdog(55);
    harness_broker_start(&s_broker);
    harness_require_own_broker(&s_broker);
    int pid = (int)getpid();
    snprintf(s_q, sizeof s_q, "it-quorum-restart-%d", pid);
    snprintf(s_q2, sizeof s_q2, "it-quorum-restart-kill-%d", pid);
    snprintf(s_lq, sizeof s_lq, "it-quorum-restart-limit-%d", pid);
    snprintf(s_dlx, sizeof s_dlx, "it-quorum-restart-dlx-%d", pid);
    snprintf(s_dlq, sizeof s_dlq, "it-quorum-restart-dlq-%d", pid);

    connect_confirm();
    harness_exchange_declare(s_conn, 1, s_dlx, "fanout",
                             HARNESS_EXCHANGE_DURABLE, amqp_empty_table);
    harness_queue_declare(s_conn, 1, s_dlq, HARNESS_QUEUE_DURABLE, amqp_empty_table);
    harness_queue_bind(s_conn, 1, s_dlq, s_dlx, "", amqp_empty_table);
    declare_quorum(s_q, -1);
    declare_quorum(s_q2, -1);
    declare_quorum(s_lq, 3);

    /* 1. SIGTERM: m0 (dm 1), m1 (dm 2), m2 (none), m3 (dm 1); "p" returned twice. */
    publish(s_q, "m0", 1);
    publish(s_q, "m1", 2);
    publish(s_q, "m2", 0);
    publish(s_q, "m3", 1);
    publish(s_lq, "p", 1);
    wait_confirms();
    for (int n = 0; n < 2; n++)
        CHECK_AMQP(amqp_basic_nack(s_conn, 1, get_one(s_lq, "p", 1, n), 0, 1));
    harness_sync(s_conn, 1);
    CHECK_EQ(harness_wait_message_count(s_conn, 1, s_lq, 1, 5000), 1);
    amqp_destroy_connection(s_conn);
    harness_broker_restart(&s_broker);

    connect_confirm();
    uint32_t m = 0;
    CHECK_REPLY(harness_queue_peek(s_conn, 1, s_q, &m, NULL));
    CHECK_EQ(m, 4);
    get_one(s_q, "m0", 1, 0);
    get_one(s_q, "m1", 2, 0);
    get_one(s_q, "m2", 0, 0);
    get_one(s_q, "m3", 1, 0);
    CHECK_AMQP(amqp_basic_ack(s_conn, 1, 0, 1));
    /* p's count carries on: 2 now, the limit of 3 lets it come once more, then it dies. */
    CHECK_AMQP(amqp_basic_nack(s_conn, 1, get_one(s_lq, "p", 1, 2), 0, 1));
    CHECK_AMQP(amqp_basic_nack(s_conn, 1, get_one(s_lq, "p", 1, 3), 0, 1));
    harness_got_t g;
    CHECKF(harness_get_wait(s_conn, 1, s_dlq, true, 5000, &g),
           "p was not dead-lettered after the restart");
    CHECK(harness_bytes_is(g.msg.body, "p"));
    const amqp_field_value_t *v =
        harness_table_get(&g.msg.properties.headers, "x-first-death-reason");
    CHECK(v && v->kind == AMQP_FIELD_KIND_UTF8 &&
          harness_bytes_is(v->value.bytes, "delivery_limit"));
    harness_got_free(&g);
    expect_empty(s_lq);
    harness_log("after a SIGTERM restart: all four kept, delivery count carried on: ok");

    /* 2. SIGKILL after confirms: m4 (dm 1) and m5 (none) in another quorum queue (whether the
     * acks above are stored before a SIGKILL is not the point here). */
    publish(s_q2, "m4", 1);
    publish(s_q2, "m5", 0);
    wait_confirms();
    amqp_destroy_connection(s_conn);
    harness_broker_crash_restart(&s_broker);

    connect_confirm();
    get_one(s_q2, "m4", 1, 0);
    get_one(s_q2, "m5", 0, 0);
    CHECK_AMQP(amqp_basic_ack(s_conn, 1, 0, 1));
    expect_empty(s_q2);
    harness_log("after a SIGKILL: confirmed delivery_mode 1 messages kept: ok");

    harness_queue_delete(s_conn, 1, s_q2);
    harness_queue_delete(s_conn, 1, s_q);
    harness_queue_delete(s_conn, 1, s_lq);
    harness_queue_delete(s_conn, 1, s_dlq);
    harness_exchange_delete(s_conn, 1, s_dlx);
    harness_disconnect(s_conn);
    harness_check_alive(&s_broker);
    CHECK(harness_broker_stop(&s_broker) == 0);
    harness_log("PASS");
    return 0;
}
