/* 40-queue-publish-consume — queue.declare, 10,000 messages through the default exchange and
 * back with basic.consume + manual acks, then basic.get.
 * Bodies range from 0 octets to 1 MiB (deterministic sizes, including every frame boundary at
 * frame_max 131072, ~45 MB in all); every message but a few carries all 13 usable basic
 * properties (cluster-id is deprecated) with a headers table holding every field type
 * rabbitmq-c encodes, nested tables and arrays. Every delivery is checked in order, field by
 * field, and the total must be exactly 10,000.
 * Note 'L' (unsigned 64): RabbitMQ accepts it (its parser reads both 'l' and 'L' as signed 64,
 * see rabbit_binary_parser) and passes the property bytes through unchanged. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

#define NMSG 10000
#define MAX_BODY (1u << 20)
/* Delivery tags count per channel from 1: consume and get on channels of their own. */
#define CONSUME_CH 3
#define GET_CH 4

/* ---- what message i looks like -------------------------------------------------------------- */

static size_t body_size(int i)
{
    static const size_t special[] = {
        0,      1,      2,      7,      8,      255,    256,     4095,    4096,    65535,
        65536,  131063, 131064, 131065, 131071, 131072, 131073,  262127,  262128,  262129,
        393192, 524288, 999999, 1048575, MAX_BODY,
    };
    size_t nspecial = sizeof special / sizeof special[0];
    if ((size_t)i < nspecial)
        return special[i];
    if (i % 1000 == 999)
        return MAX_BODY;
    if (i % 100 == 50)
        return 100000 + ((size_t)i * 7919u) % 200000;
    return ((size_t)i * 2654435761u >> 7) % 2048;
}

static void fill_body(int i, uint8_t *p, size_t n)
{
    uint32_t x = (uint32_t)i * 2654435761u + 12345u;
    for (size_t j = 0; j < n; j++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[j] = (uint8_t)x;
    }
}

/* Storage for one message's properties (rabbitmq-c points into it). */
typedef struct props_buf {
    char ctype[64], corr[32], reply[32], msgid[32], type[16], str[32], bytes[8];
    amqp_table_entry_t top[20], inner[3], deeper[2], arr_table[2];
    amqp_field_value_t arr[5], inner_arr[3];
    amqp_basic_properties_t p;
} props_buf_t;

static amqp_field_value_t fv(char kind)
{
    amqp_field_value_t v;
    memset(&v, 0, sizeof v);
    v.kind = (uint8_t)kind;
    return v;
}

static void entry(amqp_table_entry_t *e, const char *key, amqp_field_value_t v)
{
    e->key = amqp_cstring_bytes(key);
    e->value = v;
}

static void build_headers(int i, props_buf_t *pb, amqp_table_t *ret)
{
    amqp_table_entry_t *t = pb->top;
    int n = 0;
    amqp_field_value_t v;

    v = fv(AMQP_FIELD_KIND_BOOLEAN), v.value.boolean = i & 1, entry(&t[n++], "bool", v);
    v = fv(AMQP_FIELD_KIND_I8), v.value.i8 = (int8_t)(i % 256 - 128), entry(&t[n++], "i8", v);
    v = fv(AMQP_FIELD_KIND_U8), v.value.u8 = (uint8_t)(255 - i % 256), entry(&t[n++], "u8", v);
    v = fv(AMQP_FIELD_KIND_I16), v.value.i16 = (int16_t)(-i), entry(&t[n++], "i16", v);
    v = fv(AMQP_FIELD_KIND_U16), v.value.u16 = (uint16_t)(65535 - i), entry(&t[n++], "u16", v);
    v = fv(AMQP_FIELD_KIND_I32), v.value.i32 = -2000000000 + i, entry(&t[n++], "i32", v);
    v = fv(AMQP_FIELD_KIND_U32), v.value.u32 = 4000000000u + (uint32_t)i, entry(&t[n++], "u32", v);
    v = fv(AMQP_FIELD_KIND_I64), v.value.i64 = INT64_MIN + i, entry(&t[n++], "i64", v);
    v = fv(AMQP_FIELD_KIND_U64), v.value.u64 = UINT64_MAX - (uint64_t)i, entry(&t[n++], "u64", v);
    v = fv(AMQP_FIELD_KIND_F32), v.value.f32 = 1.5f + (float)i, entry(&t[n++], "f32", v);
    v = fv(AMQP_FIELD_KIND_F64), v.value.f64 = -0.1 * i, entry(&t[n++], "f64", v);
    v = fv(AMQP_FIELD_KIND_DECIMAL), v.value.decimal.decimals = 2,
    v.value.decimal.value = 31415u + (uint32_t)i, entry(&t[n++], "decimal", v);
    snprintf(pb->str, sizeof pb->str, "sträng %d", i); /* UTF-8 */
    v = fv(AMQP_FIELD_KIND_UTF8), v.value.bytes = amqp_cstring_bytes(pb->str),
    entry(&t[n++], "utf8", v);
    memcpy(pb->bytes, "\x00\x01\xfe\xff\x00\x80\x7f", 7);
    pb->bytes[7] = (char)i;
    v = fv(AMQP_FIELD_KIND_BYTES), v.value.bytes.bytes = pb->bytes, v.value.bytes.len = 8,
    entry(&t[n++], "bytes", v);
    v = fv(AMQP_FIELD_KIND_VOID), entry(&t[n++], "void", v);
    v = fv(AMQP_FIELD_KIND_TIMESTAMP), v.value.u64 = 1700000000u + (uint64_t)i,
    entry(&t[n++], "timestamp", v);

    /* array: [i32, utf8, [bool, i64, void], {k: utf8, n: u8}, f64] */
    pb->inner_arr[0] = fv(AMQP_FIELD_KIND_BOOLEAN), pb->inner_arr[0].value.boolean = 1;
    pb->inner_arr[1] = fv(AMQP_FIELD_KIND_I64), pb->inner_arr[1].value.i64 = -(int64_t)i;
    pb->inner_arr[2] = fv(AMQP_FIELD_KIND_VOID);
    v = fv(AMQP_FIELD_KIND_UTF8), v.value.bytes = amqp_cstring_bytes("in array"),
    entry(&pb->arr_table[0], "k", v);
    v = fv(AMQP_FIELD_KIND_U8), v.value.u8 = (uint8_t)i, entry(&pb->arr_table[1], "n", v);
    pb->arr[0] = fv(AMQP_FIELD_KIND_I32), pb->arr[0].value.i32 = i;
    pb->arr[1] = fv(AMQP_FIELD_KIND_UTF8), pb->arr[1].value.bytes = amqp_cstring_bytes("two");
    pb->arr[2] = fv(AMQP_FIELD_KIND_ARRAY), pb->arr[2].value.array.num_entries = 3,
    pb->arr[2].value.array.entries = pb->inner_arr;
    pb->arr[3] = fv(AMQP_FIELD_KIND_TABLE), pb->arr[3].value.table.num_entries = 2,
    pb->arr[3].value.table.entries = pb->arr_table;
    pb->arr[4] = fv(AMQP_FIELD_KIND_F64), pb->arr[4].value.f64 = 2.5;
    v = fv(AMQP_FIELD_KIND_ARRAY), v.value.array.num_entries = 5, v.value.array.entries = pb->arr,
    entry(&t[n++], "array", v);
    v = fv(AMQP_FIELD_KIND_ARRAY), v.value.array.num_entries = 0, entry(&t[n++], "empty-array", v);

    /* table: {level: 1, deeper: {level: 2, list: [...]} , flag: false} */
    v = fv(AMQP_FIELD_KIND_I16), v.value.i16 = 2, entry(&pb->deeper[0], "level", v);
    v = fv(AMQP_FIELD_KIND_ARRAY), v.value.array.num_entries = 3,
    v.value.array.entries = pb->inner_arr, entry(&pb->deeper[1], "list", v);
    v = fv(AMQP_FIELD_KIND_I16), v.value.i16 = 1, entry(&pb->inner[0], "level", v);
    v = fv(AMQP_FIELD_KIND_TABLE), v.value.table.num_entries = 2,
    v.value.table.entries = pb->deeper, entry(&pb->inner[1], "deeper", v);
    v = fv(AMQP_FIELD_KIND_BOOLEAN), v.value.boolean = 0, entry(&pb->inner[2], "flag", v);
    v = fv(AMQP_FIELD_KIND_TABLE), v.value.table.num_entries = 3, v.value.table.entries = pb->inner,
    entry(&t[n++], "table", v);
    v = fv(AMQP_FIELD_KIND_TABLE), v.value.table.num_entries = 0, entry(&t[n++], "empty-table", v);

    CHECK(n <= (int)(sizeof pb->top / sizeof pb->top[0]));
    ret->num_entries = n;
    ret->entries = t;
}

/* Most messages carry all 13 properties; every 10th none, every 10th an odd subset. */
static void build_props(int i, props_buf_t *pb)
{
    amqp_basic_properties_t *p = &pb->p;
    memset(p, 0, sizeof *p);
    if (i % 10 == 3)
        return; /* no properties at all: flags 0 */

    snprintf(pb->ctype, sizeof pb->ctype, "application/x-warren-test; i=%d", i);
    snprintf(pb->corr, sizeof pb->corr, "corr-%d", i);
    snprintf(pb->reply, sizeof pb->reply, "reply-%d", i);
    snprintf(pb->msgid, sizeof pb->msgid, "msg-%d", i);
    snprintf(pb->type, sizeof pb->type, "type-%d", i % 5);
    p->content_type = amqp_cstring_bytes(pb->ctype);
    p->content_encoding = amqp_cstring_bytes(i % 2 ? "identity" : "");
    build_headers(i, pb, &p->headers);
    p->delivery_mode = (uint8_t)(i % 2 + 1);
    p->priority = (uint8_t)(i % 10);
    p->correlation_id = amqp_cstring_bytes(pb->corr);
    p->reply_to = amqp_cstring_bytes(pb->reply);
    p->expiration = amqp_cstring_bytes("3600000");
    p->message_id = amqp_cstring_bytes(pb->msgid);
    p->timestamp = 1600000000u + (uint64_t)i;
    p->type = amqp_cstring_bytes(pb->type);
    p->user_id = amqp_cstring_bytes("guest"); /* must match the login, or 406 */
    p->app_id = amqp_cstring_bytes("warren-it");
    p->_flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG |
                AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                AMQP_BASIC_PRIORITY_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG |
                AMQP_BASIC_REPLY_TO_FLAG | AMQP_BASIC_EXPIRATION_FLAG |
                AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_TYPE_FLAG |
                AMQP_BASIC_USER_ID_FLAG | AMQP_BASIC_APP_ID_FLAG;
    if (i % 10 == 7) /* a sparse set: every other property */
        p->_flags &= AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_HEADERS_FLAG |
                     AMQP_BASIC_PRIORITY_FLAG | AMQP_BASIC_REPLY_TO_FLAG |
                     AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_APP_ID_FLAG;
}

/* ---- comparison ---------------------------------------------------------------------------- */

static void check_props(int i, const amqp_basic_properties_t *want,
                        const amqp_basic_properties_t *got)
{
    char diff[512];
    const char *d = harness_props_diff(want, got, false, diff, sizeof diff);
    CHECKF(d == NULL, "message %d: %s", i, d);
}

/* ---- the test ------------------------------------------------------------------------------- */

static uint8_t s_body[MAX_BODY];

static amqp_bytes_t declare(amqp_connection_state_t conn, amqp_channel_t ch, const char *name,
                            bool passive, uint32_t *ret_messages, uint32_t *ret_consumers)
{
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(conn, ch, amqp_cstring_bytes(name), passive,
                                                     0, 0, 0, amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    CHECK(ok != NULL);
    if (ret_messages)
        *ret_messages = ok->message_count;
    if (ret_consumers)
        *ret_consumers = ok->consumer_count;
    return amqp_bytes_malloc_dup(ok->queue);
}

static void delete_queue(amqp_connection_state_t conn, amqp_channel_t ch, amqp_bytes_t q)
{
    amqp_queue_delete(conn, ch, q, 0, 0);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
}

static void check_declare(amqp_connection_state_t conn, const char *qname)
{
    uint32_t m = 99, c = 99;
    amqp_bytes_t q = declare(conn, 1, qname, false, &m, &c);
    CHECK(q.len == strlen(qname) && memcmp(q.bytes, qname, q.len) == 0);
    CHECK_EQ(m, 0);
    CHECK_EQ(c, 0);
    amqp_bytes_free(q);

    /* Server-named: amq.gen-XXXXXXXXXXXXXXXXXXXXXX (22 url-safe base64 characters). */
    q = declare(conn, 1, "", false, &m, &c);
    harness_log("server-named queue: %.*s", (int)q.len, (const char *)q.bytes);
    CHECKF(q.len > 8 && memcmp(q.bytes, "amq.gen-", 8) == 0, "queue name %.*s", (int)q.len,
           (const char *)q.bytes);
    CHECK_EQ(q.len, 30);
    CHECK_EQ(m, 0);
    CHECK_EQ(c, 0);
    amqp_bytes_t q2 = declare(conn, 1, "", false, NULL, NULL);
    CHECK(!harness_bytes_eq(q, q2));
    /* It is a real queue: publish to it by name and get the message back. */
    CHECK_AMQP(amqp_basic_publish(conn, 1, amqp_empty_bytes, q, 0, 0, NULL,
                                  amqp_cstring_bytes("to a server-named queue")));
    amqp_rpc_reply_t r = amqp_basic_get(conn, 1, q, 1);
    CHECK_REPLY(r);
    CHECK_EQ(r.reply.id, AMQP_BASIC_GET_OK_METHOD);
    amqp_message_t msg;
    CHECK_REPLY(amqp_read_message(conn, 1, &msg, 0));
    CHECK(harness_bytes_eq(msg.body, amqp_cstring_bytes("to a server-named queue")));
    amqp_destroy_message(&msg);
    delete_queue(conn, 1, q);
    delete_queue(conn, 1, q2);
    amqp_bytes_free(q);
    amqp_bytes_free(q2);
}

static void publish_all(amqp_connection_state_t conn, const char *qname)
{
    static props_buf_t pb;
    size_t total = 0;
    for (int i = 0; i < NMSG; i++) {
        size_t n = body_size(i);
        fill_body(i, s_body, n);
        build_props(i, &pb);
        amqp_bytes_t body = {.len = n, .bytes = s_body};
        CHECK_AMQP(amqp_basic_publish(conn, 1, amqp_empty_bytes, amqp_cstring_bytes(qname), 0, 0,
                                      &pb.p, body));
        total += n;
    }
    harness_log("published %d messages, %zu body octets", NMSG, total);
}

static void consume_all(const harness_broker_t *b, amqp_connection_state_t conn,
                        const char *qname)
{
    static props_buf_t pb;
    amqp_basic_consume_ok_t *cok = amqp_basic_consume(
        conn, CONSUME_CH, amqp_cstring_bytes(qname), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    amqp_bytes_t ctag = amqp_bytes_malloc_dup(cok->consumer_tag);
    harness_log("consumer tag %.*s", (int)ctag.len, (const char *)ctag.bytes);
    CHECKF(ctag.len > 9 && memcmp(ctag.bytes, "amq.ctag-", 9) == 0,
           "server-generated consumer tag %.*s", (int)ctag.len, (const char *)ctag.bytes);

    int count = 0;
    for (int i = 0; i < NMSG; i++) {
        amqp_envelope_t env;
        struct timeval tv = {.tv_sec = 15};
        amqp_maybe_release_buffers(conn);
        amqp_rpc_reply_t r = amqp_consume_message(conn, &env, &tv, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            char buf[512];
            CHECKF(0, "waiting for message %d of %d: %s%s", i, NMSG,
                   harness_reply_str(r, buf, sizeof buf),
                   harness_broker_alive(b) ? "" : " (warrend died)");
        }
        CHECK_EQ(env.channel, CONSUME_CH);
        CHECKF(env.delivery_tag == (uint64_t)i + 1, "message %d: delivery tag %llu", i,
               (unsigned long long)env.delivery_tag);
        CHECK(!env.redelivered);
        CHECK(harness_bytes_eq(env.consumer_tag, ctag));
        CHECK(env.exchange.len == 0);
        CHECK(env.routing_key.len == strlen(qname) &&
              memcmp(env.routing_key.bytes, qname, env.routing_key.len) == 0);

        size_t n = body_size(i);
        CHECKF(env.message.body.len == n, "message %d: body %zu octets, want %zu (out of order?)",
               i, env.message.body.len, n);
        fill_body(i, s_body, n);
        CHECKF(n == 0 || memcmp(env.message.body.bytes, s_body, n) == 0,
               "message %d: body differs", i);
        build_props(i, &pb);
        check_props(i, &pb.p, &env.message.properties);

        CHECK_AMQP(amqp_basic_ack(conn, CONSUME_CH, env.delivery_tag, 0));
        amqp_destroy_envelope(&env);
        count++;
    }
    CHECK_EQ(count, NMSG);

    /* Exactly NMSG: nothing more arrives. */
    harness_expect_quiet(conn, 300, "after the last message");

    amqp_basic_cancel_ok_t *cancel = amqp_basic_cancel(conn, CONSUME_CH, ctag);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    CHECK(harness_bytes_eq(cancel->consumer_tag, ctag));
    amqp_bytes_free(ctag);
    harness_log("consumed and acked %d messages in order, bodies and properties identical", count);
}

static void check_basic_get(amqp_connection_state_t conn)
{
    static props_buf_t pb;
    amqp_bytes_t q = declare(conn, GET_CH, "", false, NULL, NULL);

    amqp_rpc_reply_t r = amqp_basic_get(conn, GET_CH, q, 0);
    CHECK_REPLY(r);
    CHECKF(r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD, "basic.get on an empty queue: %s",
           amqp_method_name(r.reply.id));

    const int n = 3;
    for (int i = 0; i < n; i++) {
        build_props(i, &pb);
        size_t len = body_size(20 + i); /* 262128 and neighbours: multi-frame */
        fill_body(i, s_body, len);
        CHECK_AMQP(amqp_basic_publish(conn, GET_CH, amqp_empty_bytes, q, 0, 0, &pb.p,
                                      (amqp_bytes_t){.len = len, .bytes = s_body}));
    }
    for (int i = 0; i < n; i++) {
        r = amqp_basic_get(conn, GET_CH, q, 0);
        CHECK_REPLY(r);
        CHECKF(r.reply.id == AMQP_BASIC_GET_OK_METHOD, "basic.get %d: %s", i,
               amqp_method_name(r.reply.id));
        amqp_basic_get_ok_t *ok = r.reply.decoded;
        CHECK_EQ(ok->message_count, n - 1 - i);
        CHECK_EQ(ok->delivery_tag, i + 1);
        CHECK(!ok->redelivered);
        CHECK(ok->exchange.len == 0);
        CHECK(harness_bytes_eq(ok->routing_key, q));
        uint64_t tag = ok->delivery_tag;
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(conn, GET_CH, &msg, 0));
        size_t len = body_size(20 + i);
        fill_body(i, s_body, len);
        CHECK_EQ(msg.body.len, len);
        CHECK(memcmp(msg.body.bytes, s_body, len) == 0);
        build_props(i, &pb);
        check_props(i, &pb.p, &msg.properties);
        amqp_destroy_message(&msg);
        CHECK_AMQP(amqp_basic_ack(conn, GET_CH, tag, 0));
    }
    r = amqp_basic_get(conn, GET_CH, q, 1);
    CHECK_REPLY(r);
    CHECKF(r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD, "basic.get after draining: %s",
           amqp_method_name(r.reply.id));
    uint32_t m;
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)q.len, (const char *)q.bytes);
    amqp_bytes_free(declare(conn, GET_CH, name, true, &m, NULL));
    CHECK_EQ(m, 0);
    delete_queue(conn, GET_CH, q);
    amqp_bytes_free(q);
    harness_log("basic.get: get-empty, %d x get-ok with message_count %d..0, get-empty", n, n - 1);
}

int main(void)
{
    harness_broker_t b;
    amqp_connection_state_t conn = harness_begin(&b, 55, NULL);

    harness_channel_open(conn, 2);
    harness_channel_open(conn, CONSUME_CH);
    harness_channel_open(conn, GET_CH);
    char qname[64];
    snprintf(qname, sizeof qname, "it-publish-consume-%d", (int)getpid());
    check_declare(conn, qname);

    int64_t t0 = harness_now_ms();
    publish_all(conn, qname);
    /* Publishes are asynchronous (in RabbitMQ a passive declare right after them may not count
     * them all yet): wait until declare-ok shows them, and exactly them. */
    uint32_t m = harness_wait_message_count(conn, 1, qname, NMSG, 10000), c = 99;
    CHECK_EQ(m, NMSG);
    CHECK_REPLY(harness_queue_peek(conn, 1, qname, NULL, &c));
    CHECK_EQ(c, 0);
    int64_t t1 = harness_now_ms();
    consume_all(&b, conn, qname);
    int64_t t2 = harness_now_ms();
    harness_log("publish %lld ms, consume %lld ms", (long long)(t1 - t0), (long long)(t2 - t1));

    amqp_bytes_free(declare(conn, 2, qname, true, &m, &c));
    CHECK_EQ(m, 0);
    CHECK_EQ(c, 0);
    amqp_bytes_t q = amqp_cstring_bytes(qname);
    delete_queue(conn, 2, q);

    check_basic_get(conn);
    CHECK_REPLY(amqp_channel_close(conn, GET_CH, AMQP_REPLY_SUCCESS));
    CHECK_REPLY(amqp_channel_close(conn, CONSUME_CH, AMQP_REPLY_SUCCESS));
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    CHECK_REPLY(amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS));
    harness_disconnect(conn);

    CHECK(harness_broker_stop(&b) == 0);
    harness_log("PASS");
    return 0;
}
