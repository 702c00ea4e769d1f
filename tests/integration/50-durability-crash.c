/* 50-durability-crash — kill -9 never loses a confirmed message.
 * Each round: two publisher threads (one connection each, confirms, at most WINDOW unconfirmed)
 * stream persistent messages with unique sequence numbers and a checksummed body; thread 0 through
 * a durable fanout exchange to two durable queues, thread 1 straight to the first. After a random
 * 50-500 ms warrend gets SIGKILL. While it is down the LMDB environment is opened read-only and
 * checked against the invariants storage/schema.h states (every qindex entry names a stored
 * message, every stored message is named, msg_refs holds the count when above one, queue_meta
 * counts each queue's persistent entries). Then warrend is started again on the data dir, both
 * queues are drained (declare-ok's message_count must be what comes) and every sequence number
 * confirmed so far must have been seen in its queue(s) at least once, with an intact body.
 * Duplicates (a message whose no-ack delivery was not yet stored as acked) are allowed and
 * counted. At the end a clean restart must give back empty queues.
 * WARREN_CRASH_ROUNDS (default 20) sets the rounds, WARREN_CRASH_SEED the random seed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <amqp_framing.h>
#include <lmdb.h>

#define WINDOW 200
#define NTHREADS 2
#define NQUEUES 2

static harness_broker_t s_broker;
static const char *const s_queues[NQUEUES] = {"dq.crash1", "dq.crash2"};
static atomic_bool s_stop;

enum { ST_NONE, ST_PUBLISHED, ST_CONFIRMED };

/* One publisher's history over all rounds; n is its message number, 0-based. */
typedef struct publisher {
    int id;
    uint32_t next_n;    /* next number to publish */
    uint32_t cap;       /* of state and seen[] */
    uint8_t *state;     /* owned: ST_* per n */
    uint16_t *seen[NQUEUES]; /* owned: times n was delivered from each queue */
    uint64_t nacked, round_published, round_confirmed;
    pthread_t thread;
} publisher_t;

static publisher_t s_pubs[NTHREADS];

/* Which queues publisher p's messages reach. */
static bool reaches(int p, int q)
{
    return p == 0 || q == 0;
}

/* ---- bodies ------------------------------------------------------------------------------------ */

static uint32_t crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return ~c;
}

static uint64_t seq_of(int p, uint32_t n)
{
    return (uint64_t)p << 32 | n;
}

/* "s=<16 hex> l=<4 digits> " + l payload bytes + "c=<8 hex>" (crc32 of what precedes). */
#define HEAD_LEN 26
static size_t make_body(uint64_t seq, uint8_t *out)
{
    uint64_t x = seq * 0x9e3779b97f4a7c15ULL + 1;
    unsigned len = 16 + (unsigned)(x % 1985);
    snprintf((char *)out, HEAD_LEN + 1, "s=%016llx l=%04u ", (unsigned long long)seq, len);
    for (unsigned k = 0; k < len; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[HEAD_LEN + k] = (uint8_t)x;
    }
    size_t n = HEAD_LEN + len;
    char tail[16];
    snprintf(tail, sizeof tail, "c=%08x", crc32(out, n));
    memcpy(out + n, tail, 10);
    return n + 10;
}

/* The sequence number in a delivered body after checking all of it; fails the test when the
 * body is not one this test could have published. */
static uint64_t check_body(amqp_bytes_t b, const char *q)
{
    char head[HEAD_LEN + 1];
    CHECKF(b.len >= HEAD_LEN + 10, "%s: body of %zu bytes", q, b.len);
    memcpy(head, b.bytes, HEAD_LEN);
    head[HEAD_LEN] = '\0';
    unsigned long long seq;
    unsigned len;
    CHECKF(sscanf(head, "s=%16llx l=%4u ", &seq, &len) == 2, "%s: body starts \"%s\"", q, head);
    uint8_t want[HEAD_LEN + 2048];
    size_t n = make_body(seq, want);
    CHECKF(b.len == n && memcmp(b.bytes, want, n) == 0,
           "%s: body of seq %llx (%zu bytes, %zu expected) is damaged", q, seq, b.len, n);
    return seq;
}

/* ---- publishers -------------------------------------------------------------------------------- */

static void grow(publisher_t *p, uint32_t n)
{
    if (n < p->cap)
        return;
    uint32_t cap = p->cap ? p->cap : 65536;
    while (cap <= n)
        cap *= 2;
    p->state = realloc(p->state, cap);
    CHECK(p->state);
    memset(p->state + p->cap, 0, cap - p->cap);
    for (int q = 0; q < NQUEUES; q++) {
        p->seen[q] = realloc(p->seen[q], cap * sizeof(uint16_t));
        CHECK(p->seen[q]);
        memset(p->seen[q] + p->cap, 0, (cap - p->cap) * sizeof(uint16_t));
    }
    p->cap = cap;
}

/* Publishes until s_stop or the connection fails (the broker was killed): that is not an error
 * here. Anything the broker sends must be a well-formed confirm. */
static void *publisher_main(void *arg)
{
    publisher_t *p = arg;
    amqp_connection_state_t conn;
    amqp_rpc_reply_t r = harness_try_login(&s_broker, "guest", "guest", 0,
                                           AMQP_DEFAULT_FRAME_SIZE, 0, &conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) { /* killed before we got in */
        CHECKF(atomic_load(&s_stop), "publisher %d could not log in", p->id);
        amqp_destroy_connection(conn);
        return NULL;
    }
    amqp_channel_open(conn, 1);
    r = amqp_get_rpc_reply(conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        amqp_confirm_select(conn, 1);
        r = amqp_get_rpc_reply(conn);
    }
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        CHECKF(atomic_load(&s_stop), "publisher %d: channel.open / confirm.select failed",
               p->id);
        amqp_destroy_connection(conn);
        return NULL;
    }
    const uint32_t base = p->next_n; /* publish number k (from 1) is n = base + k - 1 */
    uint64_t published = 0, confirmed = 0;
    amqp_basic_properties_t props = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG, .delivery_mode = 2};
    uint8_t body[HEAD_LEN + 2048];
    amqp_bytes_t exchange = amqp_cstring_bytes(p->id == 0 ? "cx" : "");
    amqp_bytes_t key = amqp_cstring_bytes(p->id == 0 ? "" : s_queues[0]);
    while (!atomic_load(&s_stop)) {
        bool full = published - confirmed >= WINDOW;
        if (!full) {
            uint32_t n = p->next_n;
            grow(p, n);
            size_t len = make_body(seq_of(p->id, n), body);
            p->state[n] = ST_PUBLISHED;
            p->next_n++;
            published++;
            if (amqp_basic_publish(conn, 1, exchange, key, 0, 0, &props,
                                   (amqp_bytes_t){len, body}) < 0)
                break;
        }
        amqp_frame_t f;
        amqp_maybe_release_buffers(conn);
        struct timeval tv = {.tv_sec = 0, .tv_usec = full ? 50000 : 0};
        int st = amqp_simple_wait_frame_noblock(conn, &f, &tv);
        if (st == AMQP_STATUS_TIMEOUT)
            continue;
        if (st != 0)
            break; /* the broker is gone */
        CHECKF(f.frame_type == AMQP_FRAME_METHOD && f.channel == 1 &&
                   (f.payload.method.id == AMQP_BASIC_ACK_METHOD ||
                    f.payload.method.id == AMQP_BASIC_NACK_METHOD),
               "publisher %d: frame type %u (%s) on channel %u", p->id, f.frame_type,
               f.frame_type == AMQP_FRAME_METHOD ? amqp_method_name(f.payload.method.id) : "-",
               f.channel);
        bool ack = f.payload.method.id == AMQP_BASIC_ACK_METHOD;
        uint64_t tag = ack ? ((amqp_basic_ack_t *)f.payload.method.decoded)->delivery_tag
                           : ((amqp_basic_nack_t *)f.payload.method.decoded)->delivery_tag;
        bool multiple = ack ? ((amqp_basic_ack_t *)f.payload.method.decoded)->multiple
                            : ((amqp_basic_nack_t *)f.payload.method.decoded)->multiple;
        CHECKF(tag > confirmed && tag <= published,
               "publisher %d: %s %llu, %llu published, %llu settled", p->id,
               ack ? "ack" : "nack", (unsigned long long)tag, (unsigned long long)published,
               (unsigned long long)confirmed);
        CHECKF(multiple || tag == confirmed + 1, "publisher %d: single %s %llu skips past %llu",
               p->id, ack ? "ack" : "nack", (unsigned long long)tag,
               (unsigned long long)confirmed);
        for (uint64_t k = confirmed + 1; k <= tag; k++) {
            if (ack)
                p->state[base + k - 1] = ST_CONFIRMED;
            else
                p->nacked++;
        }
        confirmed = tag;
    }
    p->round_published = published;
    p->round_confirmed = confirmed;
    amqp_destroy_connection(conn);
    return NULL;
}

/* ---- the environment while warrend is down ------------------------------------------------- */

static uint64_t be64(const void *p)
{
    const uint8_t *b = p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct u64s {
    uint64_t *v; /* owned */
    size_t n, cap;
} u64s_t;

static void push(u64s_t *a, uint64_t x)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 4096;
        a->v = realloc(a->v, a->cap * sizeof *a->v);
        CHECK(a->v);
    }
    a->v[a->n++] = x;
}

/* Open the environment read-only and check the schema's invariants. Returns the number of
 * stored messages. */
static size_t check_env(int round)
{
    MDB_env *env;
    CHECK_MDB(mdb_env_create(&env));
    CHECK_MDB(mdb_env_set_maxdbs(env, 16));
    CHECK_MDB(mdb_env_open(env, s_broker.data_dir, MDB_RDONLY, 0));
    MDB_txn *txn;
    CHECK_MDB(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
    MDB_dbi messages, qindex, msg_refs, queue_meta;
    CHECK_MDB(mdb_dbi_open(txn, "messages", 0, &messages));
    CHECK_MDB(mdb_dbi_open(txn, "qindex", 0, &qindex));
    CHECK_MDB(mdb_dbi_open(txn, "msg_refs", 0, &msg_refs));
    CHECK_MDB(mdb_dbi_open(txn, "queue_meta", 0, &queue_meta));

    /* qindex: the message ids it names, sorted; persistent entries per queue (sorted by key). */
    u64s_t named = {0};
    MDB_cursor *cur;
    MDB_val k, v;
    CHECK_MDB(mdb_cursor_open(txn, qindex, &cur));
    uint64_t cur_q = 0, cur_persistent = 0;
    u64s_t qids = {0}, qcounts = {0};
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        CHECKF(k.mv_size == 16 && v.mv_size >= 9, "round %d: qindex entry %zu/%zu bytes", round,
               k.mv_size, v.mv_size);
        uint64_t q = be64(k.mv_data);
        if (q != cur_q) {
            if (cur_q) {
                push(&qids, cur_q);
                push(&qcounts, cur_persistent);
            }
            cur_q = q;
            cur_persistent = 0;
        }
        if (!(((const uint8_t *)v.mv_data)[8] & 1)) /* STORAGE_IDX_TRANSIENT */
            cur_persistent++;
        push(&named, be64(v.mv_data));
    }
    if (cur_q) {
        push(&qids, cur_q);
        push(&qcounts, cur_persistent);
    }
    mdb_cursor_close(cur);
    qsort(named.v, named.n, sizeof *named.v, cmp_u64);

    /* queue_meta's count per queue must be that queue's persistent entries. */
    for (size_t i = 0; i < qids.n; i++) {
        uint8_t kb[8];
        for (int b = 0; b < 8; b++)
            kb[b] = (uint8_t)(qids.v[i] >> (56 - 8 * b));
        MDB_val mk = {8, kb}, mv;
        int rc = mdb_get(txn, queue_meta, &mk, &mv);
        uint64_t meta = rc == 0 && mv.mv_size >= 8 ? be64(mv.mv_data) : 0;
        CHECKF(meta == qcounts.v[i],
               "round %d: queue id %llu has %llu persistent qindex entries but queue_meta counts "
               "%llu (recovery trusts queue_meta: the difference is lost or phantom)",
               round, (unsigned long long)qids.v[i], (unsigned long long)qcounts.v[i],
               (unsigned long long)meta);
    }

    /* messages: exactly the named ids; msg_refs: the count of each id named more than once. */
    size_t stored = 0, i = 0;
    CHECK_MDB(mdb_cursor_open(txn, messages, &cur));
    MDB_cursor *rcur;
    CHECK_MDB(mdb_cursor_open(txn, msg_refs, &rcur));
    MDB_val rk, rv;
    int rrc = mdb_cursor_get(rcur, &rk, &rv, MDB_FIRST);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t id = be64(k.mv_data);
        stored++;
        CHECKF(i < named.n && named.v[i] <= id,
               "round %d: message %llu is stored but no qindex entry names it", round,
               (unsigned long long)id);
        CHECKF(named.v[i] == id, "round %d: qindex names message %llu, which is not stored", round,
               (unsigned long long)named.v[i]);
        uint32_t refs = 0;
        while (i < named.n && named.v[i] == id) {
            refs++;
            i++;
        }
        CHECKF(rrc != 0 || be64(rk.mv_data) >= id,
               "round %d: msg_refs entry for %llu, not a stored message", round,
               (unsigned long long)be64(rk.mv_data));
        if (refs > 1) {
            CHECKF(rrc == 0 && be64(rk.mv_data) == id && rv.mv_size == 4,
                   "round %d: message %llu is named %u times but has no msg_refs entry", round,
                   (unsigned long long)id, refs);
            const uint8_t *p = rv.mv_data;
            uint32_t got = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
            CHECKF(got == refs, "round %d: message %llu is named %u times, msg_refs says %u",
                   round, (unsigned long long)id, refs, got);
            rrc = mdb_cursor_get(rcur, &rk, &rv, MDB_NEXT);
        } else {
            CHECKF(rrc != 0 || be64(rk.mv_data) != id,
                   "round %d: message %llu is named once but has a msg_refs entry", round,
                   (unsigned long long)id);
        }
    }
    CHECKF(i == named.n, "round %d: qindex names message %llu, which is not stored", round,
           (unsigned long long)(i < named.n ? named.v[i] : 0));
    CHECKF(rrc != 0, "round %d: msg_refs entry for %llu, not a stored message", round,
           (unsigned long long)be64(rk.mv_data));
    mdb_cursor_close(rcur);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    free(named.v);
    free(qids.v);
    free(qcounts.v);
    return stored;
}

/* ---- after a restart ---------------------------------------------------------------------- */

/* Drain queue q (count, then a no-ack consumer for that many, then basic.get until empty);
 * records what came. Returns how many came beyond declare-ok's count. */
static uint64_t drain(amqp_connection_state_t conn, int qi, uint64_t *ret_got, uint64_t *ret_dups)
{
    const char *q = s_queues[qi];
    uint32_t n = 0;
    CHECK_REPLY(harness_queue_peek(conn, 1, q, &n, NULL));
    amqp_basic_consume(conn, 1, amqp_cstring_bytes(q), amqp_cstring_bytes("drain"), 0, 1, 0,
                       amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    uint64_t got = 0, dups = 0, extra = 0;
    for (uint32_t i = 0; i < n; i++) {
        amqp_envelope_t env;
        struct timeval tv = {.tv_sec = 10};
        amqp_maybe_release_buffers(conn);
        amqp_rpc_reply_t r = amqp_consume_message(conn, &env, &tv, 0);
        CHECKF(r.reply_type == AMQP_RESPONSE_NORMAL, "%s: %u of %u counted messages came", q, i,
               n);
        uint64_t seq = check_body(env.message.body, q);
        int p = (int)(seq >> 32);
        uint32_t sn = (uint32_t)seq;
        CHECKF(p < NTHREADS && reaches(p, qi) && sn < s_pubs[p].next_n &&
                   s_pubs[p].state[sn] != ST_NONE,
               "%s: delivered seq %llx was never published there", q, (unsigned long long)seq);
        if (s_pubs[p].seen[qi][sn]++)
            dups++;
        got++;
        amqp_destroy_envelope(&env);
    }
    amqp_basic_cancel(conn, 1, amqp_cstring_bytes("drain"));
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    for (;;) { /* anything the count did not include */
        amqp_rpc_reply_t r = amqp_basic_get(conn, 1, amqp_cstring_bytes(q), 1);
        CHECK_REPLY(r);
        if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
            break;
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(conn, 1, &msg, 0));
        uint64_t seq = check_body(msg.body, q);
        int p = (int)(seq >> 32);
        CHECKF(p < NTHREADS && reaches(p, qi) && (uint32_t)seq < s_pubs[p].next_n,
               "%s: delivered seq %llx was never published there", q, (unsigned long long)seq);
        if (s_pubs[p].seen[qi][(uint32_t)seq]++)
            dups++;
        got++;
        extra++;
        amqp_destroy_message(&msg);
    }
    *ret_got = got;
    *ret_dups = dups;
    return extra;
}

/* Every message confirmed so far was seen in each queue it reaches. */
static void check_confirmed_seen(int round)
{
    uint64_t missing = 0;
    for (int p = 0; p < NTHREADS; p++)
        for (uint32_t n = 0; n < s_pubs[p].next_n; n++)
            for (int q = 0; q < NQUEUES; q++)
                if (s_pubs[p].state[n] == ST_CONFIRMED && reaches(p, q) && !s_pubs[p].seen[q][n]) {
                    if (missing++ < 10)
                        harness_log("round %d: LOST confirmed seq %llx in %s", round,
                                    (unsigned long long)seq_of(p, n), s_queues[q]);
                }
    CHECKF(missing == 0, "round %d: %llu confirmed messages are missing after SIGKILL and restart",
           round, (unsigned long long)missing);
}

int main(void)
{
    const char *env_rounds = getenv("WARREN_CRASH_ROUNDS");
    int rounds = env_rounds && atoi(env_rounds) > 0 ? atoi(env_rounds) : 20;
    const char *env_seed = getenv("WARREN_CRASH_SEED");
    unsigned seed = env_seed ? (unsigned)strtoul(env_seed, NULL, 0)
                             : (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    harness_watchdog(rounds <= 20 ? 170 : (unsigned)rounds * 8 + 60);
    harness_broker_start(&s_broker);
    harness_require_own_broker(&s_broker);
    harness_log("%d rounds, WARREN_CRASH_SEED=%u", rounds, seed);

    amqp_connection_state_t conn = harness_open(&s_broker);
    harness_exchange_declare(conn, 1, "cx", "fanout", HARNESS_EXCHANGE_DURABLE, amqp_empty_table);
    for (int q = 0; q < NQUEUES; q++) {
        harness_queue_declare(conn, 1, s_queues[q], HARNESS_QUEUE_DURABLE, amqp_empty_table);
        harness_queue_bind(conn, 1, s_queues[q], "cx", "", amqp_empty_table);
    }
    harness_disconnect(conn);
    /* The declarations are on disk before the first kill (a clean restart). */
    harness_broker_restart(&s_broker);

    uint64_t total_pub = 0, total_conf = 0, total_dups = 0, total_got = 0, total_unconf_seen = 0;
    int64_t t0 = harness_now_ms();
    for (int round = 1; round <= rounds; round++) {
        atomic_store(&s_stop, false);
        for (int p = 0; p < NTHREADS; p++) {
            s_pubs[p].id = p;
            CHECK(pthread_create(&s_pubs[p].thread, NULL, publisher_main, &s_pubs[p]) == 0);
        }
        usleep((useconds_t)(50 + rand() % 451) * 1000);
        harness_broker_kill9(&s_broker);
        atomic_store(&s_stop, true);
        uint64_t pub = 0, conf = 0;
        for (int p = 0; p < NTHREADS; p++) {
            pthread_join(s_pubs[p].thread, NULL);
            pub += s_pubs[p].round_published;
            conf += s_pubs[p].round_confirmed;
        }
        size_t stored = check_env(round);

        harness_broker_respawn(&s_broker, NULL);
        conn = harness_open(&s_broker);
        uint64_t got[NQUEUES], dups[NQUEUES], extra[NQUEUES];
        for (int q = 0; q < NQUEUES; q++)
            extra[q] = drain(conn, q, &got[q], &dups[q]);
        harness_disconnect(conn);
        harness_log("round %d: published %llu, confirmed %llu, %zu stored; came back %llu + %llu "
                    "(%llu + %llu again)",
                    round, (unsigned long long)pub, (unsigned long long)conf, stored,
                    (unsigned long long)got[0], (unsigned long long)got[1],
                    (unsigned long long)dups[0], (unsigned long long)dups[1]);
        check_confirmed_seen(round);
        CHECKF(extra[0] == 0 && extra[1] == 0,
               "round %d: declare-ok counted %llu and %llu fewer messages than came",
               round, (unsigned long long)extra[0], (unsigned long long)extra[1]);
        total_pub += pub;
        total_conf += conf;
        total_got += got[0] + got[1];
        total_dups += dups[0] + dups[1];
    }
    for (int p = 0; p < NTHREADS; p++)
        for (uint32_t n = 0; n < s_pubs[p].next_n; n++)
            if (s_pubs[p].state[n] == ST_PUBLISHED && s_pubs[p].seen[0][n])
                total_unconf_seen++;
    CHECKF(total_conf > 0, "no message was confirmed in %d rounds", rounds);

    /* A clean restart after the last drain: its no-ack deliveries are stored as acked. */
    conn = harness_reopen(&s_broker, NULL, false);
    for (int q = 0; q < NQUEUES; q++) {
        uint32_t n = 99;
        CHECK_REPLY(harness_queue_peek(conn, 1, s_queues[q], &n, NULL));
        CHECKF(n == 0, "%s holds %u messages after the last drain and a clean restart",
               s_queues[q], n);
    }
    harness_disconnect(conn);
    harness_log("%d rounds in %.1f s: %llu published, %llu confirmed (%llu nacked), %llu "
                "deliveries after restarts, %llu of them again, %llu unconfirmed ones kept; no "
                "confirmed message lost",
                rounds, (double)(harness_now_ms() - t0) / 1000, (unsigned long long)total_pub,
                (unsigned long long)total_conf,
                (unsigned long long)(s_pubs[0].nacked + s_pubs[1].nacked),
                (unsigned long long)total_got, (unsigned long long)total_dups,
                (unsigned long long)total_unconf_seen);
    CHECK(harness_broker_stop(&s_broker) == 0);
    for (int p = 0; p < NTHREADS; p++) {
        free(s_pubs[p].state);
        for (int q = 0; q < NQUEUES; q++)
            free(s_pubs[p].seen[q]);
    }
    harness_log("PASS");
    return 0;
}
