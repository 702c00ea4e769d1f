/* 50-durability-fanout-once — a persistent message routed to several durable queues is stored
 * once: checked in the LMDB environment itself (opened read-only with the lmdb API while warrend
 * is stopped), database by database as storage/schema.h lays them out:
 *   messages  one entry per stored message
 *   qindex    one entry per (durable queue, message)
 *   msg_refs  one entry per message named by more than one qindex entry, holding that number
 * and by behaviour (every queue still gives every message back, intact, after each restart).
 * The message leaves `messages` only when the last queue's entry goes: after acks from 1 and 2 of
 * its 3 queues it is still stored (refs 2, then no msg_refs entry), after the 3rd it is gone.
 * Transient messages and copies in non-durable queues are never stored. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>
#include <lmdb.h>

#define N 100     /* persistent messages through fx: 3 durable queues each */
#define T 50      /* transient messages through fx */
#define P 10      /* persistent messages through fx2: 1 durable queue, 1 non-durable */
#define BODY 1024 /* bytes per body */

static harness_broker_t s_broker;
static amqp_connection_state_t s_conn; /* owned: channel 1 open */

typedef struct db_counts {
    size_t messages, qindex, msg_refs;
    size_t message_bytes;     /* sum of the `messages` values */
    uint32_t refs_min, refs_max; /* over the msg_refs values */
} db_counts_t;

static size_t db_entries(MDB_txn *txn, const char *name, MDB_dbi *ret_dbi)
{
    MDB_dbi dbi;
    CHECK_MDB(mdb_dbi_open(txn, name, 0, &dbi));
    MDB_stat st;
    CHECK_MDB(mdb_stat(txn, dbi, &st));
    *ret_dbi = dbi;
    return st.ms_entries;
}

/* Open the stopped broker's environment read-only and count. */
static db_counts_t read_db(void)
{
    CHECKF(s_broker.pid == 0, "warrend must be stopped before its environment is read");
    db_counts_t c = {.refs_min = UINT32_MAX};
    MDB_env *env;
    CHECK_MDB(mdb_env_create(&env));
    CHECK_MDB(mdb_env_set_maxdbs(env, 16));
    CHECK_MDB(mdb_env_open(env, s_broker.data_dir, MDB_RDONLY, 0));
    MDB_txn *txn;
    CHECK_MDB(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
    MDB_dbi messages, qindex, msg_refs;
    c.messages = db_entries(txn, "messages", &messages);
    c.qindex = db_entries(txn, "qindex", &qindex);
    c.msg_refs = db_entries(txn, "msg_refs", &msg_refs);

    MDB_cursor *cur;
    MDB_val k, v;
    CHECK_MDB(mdb_cursor_open(txn, messages, &cur));
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        c.message_bytes += v.mv_size;
    mdb_cursor_close(cur);
    CHECK_MDB(mdb_cursor_open(txn, msg_refs, &cur));
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        CHECKF(v.mv_size == 4, "msg_refs value of %zu bytes", v.mv_size);
        const uint8_t *p = v.mv_data;
        uint32_t refs = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if (refs < c.refs_min)
            c.refs_min = refs;
        if (refs > c.refs_max)
            c.refs_max = refs;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    harness_log("LMDB: messages %zu (%zu bytes), qindex %zu, msg_refs %zu (values %u..%u)",
                c.messages, c.message_bytes, c.qindex, c.msg_refs,
                c.msg_refs ? c.refs_min : 0, c.refs_max);
    return c;
}

static void check_db(size_t messages, size_t qindex, size_t msg_refs, uint32_t refs,
                     const char *when)
{
    db_counts_t c = read_db();
    CHECKF(c.messages == messages, "%s: `messages` holds %zu entries, want %zu", when, c.messages,
           messages);
    CHECKF(c.qindex == qindex, "%s: `qindex` holds %zu entries, want %zu", when, c.qindex, qindex);
    CHECKF(c.msg_refs == msg_refs, "%s: `msg_refs` holds %zu entries, want %zu", when,
           c.msg_refs, msg_refs);
    if (msg_refs)
        CHECKF(c.refs_min == refs && c.refs_max == refs, "%s: msg_refs values %u..%u, want %u",
               when, c.refs_min, c.refs_max, refs);
    /* Each body once (plus its properties), not once per queue. */
    CHECKF(c.message_bytes >= messages * BODY && c.message_bytes <= messages * (BODY + 512),
           "%s: %zu messages take %zu bytes in `messages`, want %zu..%zu", when, messages,
           c.message_bytes, messages * BODY, messages * (BODY + 512));
}

static void stop(void)
{
    harness_disconnect(s_conn);
    harness_broker_shutdown(&s_broker);
}

static void start(void)
{
    harness_broker_respawn(&s_broker, NULL);
    s_conn = harness_open(&s_broker);
}

static void make_body(char *body, const char *tag, int i)
{
    int n = snprintf(body, BODY + 1, "%s-%d;", tag, i);
    for (int k = n; k < BODY; k++)
        body[k] = (char)('a' + (k + i) % 26);
    body[BODY] = '\0';
}

/* basic.get every message of q (no_ack=false) and ack each; the bodies must be tag-0..tag-(n-1)
 * in order, intact. */
static void take_and_ack(const char *q, const char *tag, int n)
{
    char want[BODY + 1];
    for (int i = 0; i < n; i++) {
        amqp_rpc_reply_t r = amqp_basic_get(s_conn, 1, amqp_cstring_bytes(q), 0);
        CHECK_REPLY(r);
        CHECKF(r.reply.id == AMQP_BASIC_GET_OK_METHOD, "queue %s empty after %d of %d", q, i, n);
        uint64_t dtag = ((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag;
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(s_conn, 1, &msg, 0));
        make_body(want, tag, i);
        CHECKF(msg.body.len == BODY && memcmp(msg.body.bytes, want, BODY) == 0,
               "queue %s message %d: %zu bytes \"%.12s...\", want \"%.12s...\"", q, i,
               msg.body.len, (const char *)msg.body.bytes, want);
        amqp_destroy_message(&msg);
        CHECK_AMQP(amqp_basic_ack(s_conn, 1, dtag, 0));
        amqp_maybe_release_buffers(s_conn);
    }
    amqp_rpc_reply_t r = amqp_basic_get(s_conn, 1, amqp_cstring_bytes(q), 0);
    CHECK_REPLY(r);
    CHECKF(r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD, "queue %s holds more than %d", q, n);
}

/* Publish with confirms and wait for all of them (a multiple ack may cover several). */
static void publish_confirmed(void)
{
    harness_confirm_select(s_conn, 1);
    char body[BODY + 1];
    amqp_basic_properties_t persistent = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
                                          .delivery_mode = 2};
    amqp_basic_properties_t transient = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
                                         .delivery_mode = 1};
    uint64_t published = 0;
    for (int i = 0; i < N; i++) {
        make_body(body, "p", i);
        CHECK_AMQP(amqp_basic_publish(s_conn, 1, amqp_cstring_bytes("fx"), amqp_empty_bytes, 0, 0,
                                      &persistent, (amqp_bytes_t){BODY, body}));
        published++;
        if (i % 2 == 0) { /* transient ones in between */
            make_body(body, "t", i / 2);
            CHECK_AMQP(amqp_basic_publish(s_conn, 1, amqp_cstring_bytes("fx"), amqp_empty_bytes,
                                          0, 0, &transient, (amqp_bytes_t){BODY, body}));
            published++;
        }
    }
    for (int i = 0; i < P; i++) {
        make_body(body, "q", i);
        CHECK_AMQP(amqp_basic_publish(s_conn, 1, amqp_cstring_bytes("fx2"), amqp_empty_bytes, 0,
                                      0, &persistent, (amqp_bytes_t){BODY, body}));
        published++;
    }
    CHECK_EQ(published, N + T + P);
    uint64_t confirmed = 0;
    while (confirmed < published) {
        amqp_frame_t f;
        int st = harness_next_frame(s_conn, &f, 10000);
        CHECKF(st == 0, "waiting for confirms (%llu of %llu): %s", (unsigned long long)confirmed,
               (unsigned long long)published, amqp_error_string2(st));
        CHECKF(f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD,
               "wanted basic.ack, got frame type %u (%s)", f.frame_type,
               f.frame_type == AMQP_FRAME_METHOD ? amqp_method_name(f.payload.method.id) : "-");
        amqp_basic_ack_t *ack = f.payload.method.decoded;
        CHECKF(ack->delivery_tag > confirmed && ack->delivery_tag <= published,
               "ack %llu after %llu", (unsigned long long)ack->delivery_tag,
               (unsigned long long)confirmed);
        CHECKF(ack->multiple || ack->delivery_tag == confirmed + 1, "single ack %llu skips one",
               (unsigned long long)ack->delivery_tag);
        confirmed = ack->delivery_tag;
    }
    harness_log("%d persistent + %d transient to 3 durable queues, %d persistent to 1 durable + 1 "
                "non-durable: all %llu confirmed",
                N, T, P, (unsigned long long)published);
}

static const char *const s_qs[] = {"fq1", "fq2", "fq3", "fq4", "nq"};

/* fx -> fq1, fq2, fq3 and fx2 -> fq4, nq; all durable except nq. */
static void declare_all(void)
{
    harness_exchange_declare(s_conn, 1, "fx", "fanout", HARNESS_EXCHANGE_DURABLE, amqp_empty_table);
    harness_exchange_declare(s_conn, 1, "fx2", "fanout",
                             HARNESS_EXCHANGE_DURABLE, amqp_empty_table);
    for (int i = 0; i < 5; i++) {
        harness_queue_declare(s_conn, 1, s_qs[i], i < 4 ? HARNESS_QUEUE_DURABLE : 0,
                              amqp_empty_table);
        harness_queue_bind(s_conn, 1, s_qs[i], i < 3 ? "fx" : "fx2", "", amqp_empty_table);
    }
}

int main(void)
{
    harness_watchdog(100);
    harness_broker_start(&s_broker);
    harness_require_own_broker(&s_broker);
    s_conn = harness_open(&s_broker);

    declare_all();
    stop();
    check_db(0, 0, 0, 0, "no message published yet");
    start();
    declare_all(); /* nq again */

    publish_confirmed();
    for (int i = 0; i < 3; i++)
        CHECK_EQ(harness_queue_count(s_conn, 1, s_qs[i]), N + T);
    CHECK_EQ(harness_queue_count(s_conn, 1, "fq4"), P);
    CHECK_EQ(harness_queue_count(s_conn, 1, "nq"), P);
    stop();
    check_db(N + P, 3 * N + P, N, 3, "after the publishes");

    start();
    for (int i = 0; i < 3; i++)
        CHECK_EQ(harness_queue_count(s_conn, 1, s_qs[i]), N);
    take_and_ack("fq1", "p", N);
    take_and_ack("fq4", "q", P);
    stop();
    check_db(N, 2 * N, N, 2, "after fq1 acked all");

    start();
    take_and_ack("fq2", "p", N);
    stop();
    check_db(N, N, 0, 0, "after fq1 and fq2 acked all");

    start();
    CHECK_EQ(harness_queue_count(s_conn, 1, "fq3"), N);
    take_and_ack("fq3", "p", N);
    stop();
    check_db(0, 0, 0, 0, "after all three acked all");

    start();
    for (int i = 0; i < 4; i++)
        CHECK_EQ(harness_queue_count(s_conn, 1, s_qs[i]), 0);
    harness_disconnect(s_conn);
    CHECK(harness_broker_stop(&s_broker) == 0);
    harness_log("PASS");
    return 0;
}
