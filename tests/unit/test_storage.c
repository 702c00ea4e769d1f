/* test_storage.c — storage/ through its public headers (env.h, batch.h, recover.h) on a real
 * LMDB environment in a temporary directory, with the writer thread running: group commit,
 * page-in with storage_scan_queue (borrowed bytes, no copy) and storage_read_queue, stale
 * transient entries after a reopen, damaged entries rejected, and out-of-memory while adding
 * writes: a failed storage_reserve() leaves storage healthy, reserved writes cannot fail, and a
 * lost write makes storage fail (sticky) instead of aborting. Tenancy records (users, vhosts,
 * permissions, topic permissions): recovered after a reopen in the documented order with every
 * field, replaced, deleted, composite keys that a plain concatenation would confuse, key limits,
 * storage_is_new() and a data dir written before these tables existed. Deduplication entries:
 * put, replaced, deleted, recovered, and deleted with their exchange or queue.
 *
 * Allocation failures are injected with the linker's --wrap for malloc, calloc and realloc
 * (tests/unit/meson.build): only calls from this file and the static storage library go
 * through the wrappers; LMDB, libc and cmocka allocate as usual. Also run under TSan. */
#include "unit_storage.h"

#include <errno.h>
#include <ftw.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "lib/byteorder.h"
#include "storage/batch.h"
#include "storage/env.h"
#include "storage/records.h"
#include "storage/recover.h"

/* ---- allocation failures ---------------------------------------------------------------- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

static atomic_bool s_fail_allocs; /* every wrapped allocation fails while set */
static atomic_uint s_failed_allocs;

static bool fail_now(void)
{
    if (!atomic_load(&s_fail_allocs))
        return false;
    atomic_fetch_add(&s_failed_allocs, 1);
    return true;
}

void *__wrap_malloc(size_t n)
{
    return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : __real_realloc(p, n);
}

/* ---- an environment with its writer thread ---------------------------------------------- */

struct env {
    char dir[64];
    struct storage *st; /* owned */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    unsigned notified; /* guarded by mu: notify calls so far */
    uint64_t durable;  /* loop side: newest durable batch */
    int failed;        /* loop side: the sticky error storage_collect reported */
    unsigned released; /* storage_put_msg release calls */
};

static void on_notify(void *arg)
{
    struct env *e = arg;
    pthread_mutex_lock(&e->mu);
    e->notified++;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->mu);
}

static void on_release(void *arg)
{
    ((struct env *)arg)->released++; /* storage_collect runs on this (the loop) thread */
}

static void env_open(struct env *e)
{
    e->durable = 0; /* batch numbers start again */
    e->failed = 0;
    assert_st(storage_open(e->dir, true, &e->st), 0);
    assert_st(storage_start(e->st, on_notify, e), 0);
}

static void env_close(struct env *e)
{
    storage_close(e->st);
    e->st = NULL;
}

static struct env *env_new(void)
{
    struct env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    snprintf(e->dir, sizeof e->dir, "/tmp/warren-unit-storage-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cond, NULL);
    env_open(e);
    return e;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void env_free(struct env *e)
{
    env_close(e);
    nftw(e->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    pthread_cond_destroy(&e->cond);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

/* Waits (5 s at most) for a notify after `seen` of them, then collects. */
static void wait_notify(struct env *e, unsigned seen)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&e->mu);
    while (e->notified == seen)
        if (pthread_cond_timedwait(&e->cond, &e->mu, &until) != 0)
            break;
    pthread_mutex_unlock(&e->mu);
    uint64_t d = storage_collect(e->st, &e->failed);
    if (d > e->durable)
        e->durable = d;
}

static unsigned notified(struct env *e)
{
    pthread_mutex_lock(&e->mu);
    unsigned n = e->notified;
    pthread_mutex_unlock(&e->mu);
    return n;
}

/* Submits what was added and waits until it is durable or storage failed. */
static void commit(struct env *e)
{
    uint64_t want = storage_batch_no(e->st);
    for (int i = 0; i < 100 && e->durable < want && !e->failed; i++) {
        unsigned seen = notified(e);
        if (storage_submit(e->st) || i > 0)
            wait_notify(e, seen);
    }
}

/* Message i: a 3-byte head "H" + i, then a body of 40 + i pattern bytes. */
static size_t msg_bytes(unsigned i, uint8_t *head, uint8_t *body)
{
    head[0] = 'H';
    store_be16(head + 1, (uint16_t)i);
    for (unsigned j = 0; j < 40 + i; j++)
        body[j] = (uint8_t)(i * 31 + j);
    return 40 + i;
}

/* Message i (< 64): its body lives in a static buffer, borrowed by the batch until released. */
static int put_msg_rc(struct env *e, uint64_t id, uint32_t refs, unsigned i)
{
    uint8_t head[3];
    static uint8_t bodies[64][200];
    assert_true(i < 64);
    size_t blen = msg_bytes(i, head, bodies[i]);
    return storage_put_msg(e->st, id, refs, head, sizeof head, bodies[i], blen, on_release, e);
}

static void put_msg(struct env *e, uint64_t id, uint32_t refs, unsigned i)
{
    assert_st(put_msg_rc(e, id, refs, i), 0);
}

static void check_msg(unsigned i, const void *data, size_t len)
{
    uint8_t head[3], body[200];
    size_t blen = msg_bytes(i, head, body);
    assert_int_equal(len, sizeof head + blen);
    assert_memory_equal(data, head, sizeof head);
    assert_memory_equal((const uint8_t *)data + sizeof head, body, blen);
}

/* A durable queue with messages 1..n at seqs 1..n (expiry 1000 i, returns i). */
static uint64_t fill_queue(struct env *e, unsigned n, uint8_t flags)
{
    uint64_t qid = storage_new_id(e->st);
    struct st_queue q = {.id = qid, .vhost = {"/", 1}, .name = {"q", 1}, .flags = ST_DURABLE};
    assert_st(storage_put_queue(e->st, &q), 0);
    for (unsigned i = 1; i <= n; i++) {
        uint64_t id = storage_new_id(e->st);
        put_msg(e, id, 1, i);
        assert_st(storage_put_idx(e->st, qid, i, id, flags, 1000ull * i, (uint16_t)i), 0);
    }
    assert_st(storage_put_queue_meta(e->st, qid, flags ? 0 : n, 0), 0);
    commit(e);
    assert_int_equal(e->failed, 0);
    return qid;
}

/* ---- page-in ------------------------------------------------------------------------------ */

struct seen {
    unsigned n;
    uint64_t seq[64];
    bool stale[64];
    int stop_at; /* return this from entry number stop_after (1-based), 0: never */
    unsigned stop_after;
    struct env *e;  /* when set: stale entries are deleted from the callback */
    uint64_t qid;
};

static int on_entry(void *arg, const struct st_entry *en, const void *data, size_t len)
{
    struct seen *s = arg;
    assert_true(s->n < 64);
    assert_null(en->data);
    assert_int_equal(en->len, len);
    s->seq[s->n] = en->seq;
    s->stale[s->n] = en->stale;
    if (en->stale) {
        assert_null(data);
        if (s->e) /* writes are allowed from the callback */
            assert_st(storage_del_idx(s->e->st, s->qid, en->seq), 0);
    } else {
        check_msg((unsigned)en->seq, data, len);
        assert_int_equal(en->expires, 1000 * en->seq);
        assert_int_equal(en->returns, en->seq);
    }
    s->n++;
    return s->stop_after && s->n == s->stop_after ? s->stop_at : 0;
}

static void scan_reads_in_place(void **state)
{
    (void)state;
    struct env *e = env_new();
    uint64_t qid = fill_queue(e, 10, 0);
    assert_int_equal(e->released, 10);

    struct seen s = {0};
    size_t n = 99;
    assert_st(storage_scan_queue(e->st, qid, 0, 64, on_entry, &s, &n), 0);
    assert_int_equal(n, 10);
    assert_int_equal(s.n, 10);
    for (unsigned i = 0; i < 10; i++) {
        assert_int_equal(s.seq[i], i + 1);
        assert_false(s.stale[i]);
    }

    /* from and max */
    s = (struct seen){0};
    assert_st(storage_scan_queue(e->st, qid, 5, 3, on_entry, &s, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(s.seq[0], 5);
    assert_int_equal(s.seq[2], 7);

    /* the callback stops the walk (> 0) or fails it (< 0, *ret_n untouched) */
    s = (struct seen){.stop_at = 1, .stop_after = 2};
    assert_st(storage_scan_queue(e->st, qid, 0, 64, on_entry, &s, &n), 0);
    assert_int_equal(n, 2);
    s = (struct seen){.stop_at = -42, .stop_after = 3};
    n = 77;
    assert_st(storage_scan_queue(e->st, qid, 0, 64, on_entry, &s, &n), -42);
    assert_int_equal(n, 77);
    assert_int_equal(s.n, 3);

    /* past the end, another queue id */
    s = (struct seen){0};
    assert_st(storage_scan_queue(e->st, qid, 11, 64, on_entry, &s, &n), 0);
    assert_int_equal(n, 0);
    assert_st(storage_scan_queue(e->st, qid + 1000, 0, 64, on_entry, &s, &n), 0);
    assert_int_equal(n, 0);

    /* the copying form sees the same */
    struct st_entry out[64];
    assert_st(storage_read_queue(e->st, qid, 3, 64, out, &n), 0);
    assert_int_equal(n, 8);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(out[i].seq, i + 3);
        check_msg((unsigned)out[i].seq, out[i].data, out[i].len);
        free(out[i].data);
    }

    /* deletions: the head acked, the tail purged */
    for (unsigned i = 1; i <= 3; i++)
        assert_st(storage_del_idx(e->st, qid, i), 0);
    assert_st(storage_del_idx_from(e->st, qid, 8), 0);
    commit(e);
    s = (struct seen){0};
    assert_st(storage_scan_queue(e->st, qid, 0, 64, on_entry, &s, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(s.seq[0], 4);
    assert_int_equal(s.seq[3], 7);
    env_free(e);
}

/* The copying form gives up cleanly when memory is short. */
static void read_queue_out_of_memory(void **state)
{
    (void)state;
    struct env *e = env_new();
    uint64_t qid = fill_queue(e, 5, 0);
    struct st_entry out[8];
    size_t n = 99;
    atomic_store(&s_fail_allocs, true);
    int rc = storage_read_queue(e->st, qid, 0, 8, out, &n);
    atomic_store(&s_fail_allocs, false);
    assert_st(rc, -ENOMEM);
    assert_int_equal(n, 0);
    env_free(e);
}

struct rec {
    unsigned queues;
    struct st_queue q; /* the last one (byte strings not kept) */
};

static int rec_exchange(void *arg, const struct st_exchange *x)
{
    (void)arg, (void)x;
    return 0;
}

static int rec_queue(void *arg, const struct st_queue *q)
{
    struct rec *r = arg;
    r->queues++;
    r->q = *q;
    return 0;
}

static int rec_binding(void *arg, const struct st_binding *b)
{
    (void)arg, (void)b;
    return 0;
}

/* Transient entries written before a restart come back stale, without bytes; persistent ones
 * come back whole, and recovery reports the queue's count and seq range. */
static void stale_after_reopen(void **state)
{
    (void)state;
    struct env *e = env_new();
    uint64_t qid = fill_queue(e, 4, 0);
    for (unsigned i = 5; i <= 6; i++) {
        uint64_t id = storage_new_id(e->st);
        put_msg(e, id, 1, i);
        assert_st(storage_put_idx(e->st, qid, i, id, STORAGE_IDX_TRANSIENT, 1000ull * i,
                                  (uint16_t)i),
                  0);
    }
    commit(e);
    env_close(e);
    env_open(e);

    static const struct st_recover_ops ops = {
        .exchange = rec_exchange, .queue = rec_queue, .binding = rec_binding};
    struct rec r = {0};
    assert_st(storage_recover(e->st, &ops, &r), 0);
    assert_int_equal(r.queues, 1);
    assert_int_equal(r.q.id, qid);
    assert_int_equal(r.q.count, 4);
    assert_int_equal(r.q.first_seq, 1);
    assert_int_equal(r.q.next_seq, 7);

    struct seen s = {.e = e, .qid = qid};
    size_t n;
    assert_st(storage_scan_queue(e->st, qid, 0, 64, on_entry, &s, &n), 0);
    assert_int_equal(n, 6);
    for (unsigned i = 0; i < 6; i++)
        assert_int_equal(s.stale[i], i >= 4);
    commit(e); /* the callback's deletions */
    s = (struct seen){0};
    assert_st(storage_scan_queue(e->st, qid, 0, 64, on_entry, &s, &n), 0);
    assert_int_equal(n, 4);
    env_free(e);
}

/* Opens the data dir's LMDB environment directly (storage closed) to damage it. */
static void lmdb_put_raw(const char *dir, const char *db, const void *k, size_t klen,
                         const void *v, size_t vlen)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    assert_int_equal(mdb_env_open(env, dir, 0, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
    MDB_val key = {klen, (void *)k}, val = {vlen, (void *)v};
    if (v)
        assert_int_equal(mdb_put(txn, dbi, &key, &val, 0), 0);
    else
        assert_int_equal(mdb_del(txn, dbi, &key, NULL), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* A truncated index value, and an entry whose message is missing, are reported. */
static void damaged_entries_rejected(void **state)
{
    (void)state;
    struct env *e = env_new();
    uint64_t qid = fill_queue(e, 3, 0);
    env_close(e);
    uint8_t k[16], v[22] = {0, 0, 0, 0, 0, 0, 0, 1};
    store_be64(k, qid);
    store_be64(k + 8, 2);
    lmdb_put_raw(e->dir, "qindex", k, sizeof k, v, sizeof v); /* seq 2: one byte short */
    env_open(e);
    struct seen s = {0};
    size_t n = 99;
    assert_st(storage_scan_queue(e->st, qid, 0, 64, on_entry, &s, &n), STORAGE_E_CORRUPT);
    assert_int_equal(n, 99);
    assert_int_equal(s.n, 1); /* seq 1 was fine */
    s = (struct seen){0};
    assert_st(storage_scan_queue(e->st, qid, 3, 64, on_entry, &s, &n), 0);
    assert_int_equal(n, 1);

    /* seq 3's message goes missing */
    struct st_entry out[4];
    assert_st(storage_read_queue(e->st, qid, 3, 4, out, &n), 0);
    uint8_t mk[8];
    store_be64(mk, out[0].msg_id);
    free(out[0].data);
    env_close(e);
    lmdb_put_raw(e->dir, "messages", mk, sizeof mk, NULL, 0);
    env_open(e);
    assert_st(storage_scan_queue(e->st, qid, 3, 64, on_entry, &s, &n), STORAGE_E_CORRUPT);
    assert_st(storage_read_queue(e->st, qid, 3, 4, out, &n), STORAGE_E_CORRUPT);
    assert_int_equal(n, 0);
    env_free(e);
}

/* ---- out of memory while adding writes -------------------------------------------------- */

/* A reservation that cannot be had changes nothing and leaves storage healthy. */
static void reserve_fails_softly(void **state)
{
    (void)state;
    struct env *e = env_new();
    uint64_t before = storage_writes(e->st);
    atomic_store(&s_fail_allocs, true);
    int rc = storage_reserve(e->st, 100000, 1 << 20);
    atomic_store(&s_fail_allocs, false);
    assert_st(rc, -ENOMEM);
    assert_int_equal(storage_writes(e->st), before);
    assert_st(storage_reserve(e->st, (size_t)-1 / 2, 0), -ENOMEM); /* absurd: refused too */
    uint64_t qid = fill_queue(e, 2, 0); /* commits */
    assert_int_equal(e->failed, 0);
    struct seen s = {0};
    size_t n;
    assert_st(storage_scan_queue(e->st, qid, 0, 64, on_entry, &s, &n), 0);
    assert_int_equal(n, 2);
    env_free(e);
}

static int count_entry(void *arg, const struct st_entry *en, const void *data, size_t len)
{
    (void)en, (void)data, (void)len;
    ++*(unsigned *)arg;
    return 0;
}

/* Writes covered by a reservation succeed with every allocation failing. */
static void reserved_writes_cannot_fail(void **state)
{
    (void)state;
    struct env *e = env_new();
    uint64_t qid = storage_new_id(e->st);
    struct st_queue q = {.id = qid, .vhost = {"/", 1}, .name = {"q", 1}, .flags = ST_DURABLE};
    enum { N = 600 }; /* more than a fresh batch's first 256 ops */
    assert_st(storage_reserve(e->st, 2 + 2 * N, st_queue_size(&q) + 3 * N), 0);
    unsigned before = atomic_load(&s_failed_allocs);
    atomic_store(&s_fail_allocs, true);
    int rc = storage_put_queue(e->st, &q);
    for (unsigned i = 1; i <= N && rc == 0; i++) {
        uint64_t id = storage_new_id(e->st);
        if ((rc = put_msg_rc(e, id, 1, i % 64)) == 0)
            rc = storage_put_idx(e->st, qid, i, id, 0, 0, 0);
    }
    if (rc == 0)
        rc = storage_put_queue_meta(e->st, qid, N, 0);
    atomic_store(&s_fail_allocs, false);
    assert_st(rc, 0);
    assert_int_equal(atomic_load(&s_failed_allocs), before); /* none was even tried */
    commit(e);
    assert_int_equal(e->failed, 0);
    assert_int_equal(e->released, N);
    unsigned count = 0;
    size_t n;
    assert_st(storage_scan_queue(e->st, qid, 0, 2 * N, count_entry, &count, &n), 0);
    assert_int_equal(n, N);
    assert_int_equal(count, N);
    env_free(e);
}

/* An unreserved write that cannot be added is lost: it returns -ENOMEM (never aborts), a
 * message's reference is released at once, the loop is notified, storage_collect reports the
 * sticky -ENOMEM, and the batch holding the writes before it is never committed. */
static void lost_write_fails_storage(void **state)
{
    (void)state;
    struct env *e = env_new();
    uint64_t qid = fill_queue(e, 2, 0); /* committed: there is no open batch */
    uint64_t id = storage_new_id(e->st);
    put_msg(e, id, 1, 3); /* a new open batch with room for 256 ops */
    assert_st(storage_put_idx(e->st, qid, 3, id, 0, 3000, 3), 0);
    unsigned released = e->released, seen = notified(e);

    atomic_store(&s_fail_allocs, true);
    int rc = 0;
    unsigned i;
    for (i = 0; i < 100000 && rc == 0; i++) /* until the ops array must grow */
        rc = storage_del_idx(e->st, qid, 1000 + i);
    assert_st(rc, -ENOMEM);
    assert_true(i > 1);
    assert_st(put_msg_rc(e, storage_new_id(e->st), 1, 4), -ENOMEM);
    atomic_store(&s_fail_allocs, false);
    assert_int_equal(e->released, released + 1); /* the refused message's, at once */

    wait_notify(e, seen); /* the lost write woke the loop */
    assert_st(e->failed, -ENOMEM);

    seen = notified(e);
    assert_int_equal(storage_submit(e->st), 1);
    wait_notify(e, seen); /* the writer refuses the batch but hands it back */
    assert_st(e->failed, -ENOMEM);
    assert_int_equal(e->released, released + 2); /* message 3's borrowed bytes */

    env_close(e);
    env_open(e);
    struct seen s = {0};
    size_t n;
    assert_st(storage_scan_queue(e->st, qid, 0, 64, on_entry, &s, &n), 0);
    assert_int_equal(n, 2); /* seq 3 never became durable */
    env_free(e);
}

/* ---- tenancy records ---------------------------------------------------------------------- */

#define B(s) ((struct st_bytes){(s), sizeof(s) - 1})

/* What storage_recover reported, as one log: each record a kind letter, then each field as
 * "<length>:<bytes>" (so any byte may appear in a field), then a newline. */
struct tlog {
    char buf[16384];
    size_t len;
};

static void tlog_add(struct tlog *t, const void *p, size_t n)
{
    assert_true(t->len + n <= sizeof t->buf);
    memcpy(t->buf + t->len, p, n);
    t->len += n;
}

static void tlog_field(struct tlog *t, struct st_bytes b)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%zu:", b.len);
    tlog_add(t, num, (size_t)n);
    tlog_add(t, b.p, b.len);
}

static void tlog_i64(struct tlog *t, int64_t v)
{
    char num[32];
    int n = snprintf(num, sizeof num, "%lld", (long long)v);
    tlog_field(t, (struct st_bytes){num, (size_t)n});
}

static int trec_vhost(void *arg, const struct st_vhost *v)
{
    struct tlog *t = arg;
    tlog_add(t, "v", 1);
    tlog_field(t, v->name);
    tlog_field(t, v->description);
    tlog_field(t, v->default_queue_type);
    tlog_i64(t, v->max_connections);
    tlog_i64(t, v->max_queues);
    tlog_add(t, "\n", 1);
    return 0;
}

static int trec_user(void *arg, const struct st_user *u)
{
    struct tlog *t = arg;
    tlog_add(t, "u", 1);
    tlog_field(t, u->name);
    tlog_field(t, u->password_hash);
    tlog_field(t, u->hashing);
    tlog_field(t, u->tags);
    tlog_add(t, "\n", 1);
    return 0;
}

static int trec_permission(void *arg, const struct st_permission *pm)
{
    struct tlog *t = arg;
    tlog_add(t, "p", 1);
    tlog_field(t, pm->user);
    tlog_field(t, pm->vhost);
    tlog_field(t, pm->configure);
    tlog_field(t, pm->write);
    tlog_field(t, pm->read);
    tlog_add(t, "\n", 1);
    return 0;
}

static int trec_topic_permission(void *arg, const struct st_topic_permission *tp)
{
    struct tlog *t = arg;
    tlog_add(t, "t", 1);
    tlog_field(t, tp->user);
    tlog_field(t, tp->vhost);
    tlog_field(t, tp->exchange);
    tlog_field(t, tp->write);
    tlog_field(t, tp->read);
    tlog_add(t, "\n", 1);
    return 0;
}

static int trec_exchange(void *arg, const struct st_exchange *x)
{
    struct tlog *t = arg;
    tlog_add(t, "x", 1);
    tlog_field(t, x->vhost);
    tlog_field(t, x->name);
    tlog_add(t, "\n", 1);
    return 0;
}

static int trec_queue(void *arg, const struct st_queue *q)
{
    struct tlog *t = arg;
    tlog_add(t, "q", 1);
    tlog_field(t, q->name);
    tlog_add(t, "\n", 1);
    return 0;
}

static int trec_binding(void *arg, const struct st_binding *b)
{
    struct tlog *t = arg;
    tlog_add(t, "b", 1);
    tlog_field(t, b->key);
    tlog_add(t, "\n", 1);
    return 0;
}

static const struct st_recover_ops s_tops = {
    .exchange = trec_exchange, .queue = trec_queue, .binding = trec_binding,
    .vhost = trec_vhost, .user = trec_user, .permission = trec_permission,
    .topic_permission = trec_topic_permission,
};

/* Recovers with s_tops and checks the log against want (a string literal). */
#define assert_recovered(e, want)                                                              \
    do {                                                                                       \
        struct tlog t_ = {.len = 0};                                                           \
        assert_st(storage_recover((e)->st, &s_tops, &t_), 0);                                  \
        if (t_.len != sizeof(want) - 1 || memcmp(t_.buf, want, t_.len) != 0)                   \
            fail_msg("recovered:\n%.*s\nwant:\n%s", (int)t_.len, t_.buf, want);               \
    } while (0)

static char s_long[301]; /* 300 'r': longer than a u8 length could say */

static void tenancy_fill(struct env *e)
{
    memset(s_long, 'r', 300);
    struct st_bytes lng = {s_long, 300};
    /* vhosts: "/" ; "" ; one with odd bytes and extreme limits */
    assert_st(storage_put_vhost(e->st, &(struct st_vhost){B("/"), B("Default virtual host"),
                                                           B("classic"), -1, -1}), 0);
    assert_st(storage_put_vhost(e->st, &(struct st_vhost){B(""), B(""), B(""), 0, 5}), 0);
    assert_st(storage_put_vhost(e->st, &(struct st_vhost){B("a\x01\xff|b"), lng, B("quorum"),
                                                           INT64_MAX, INT64_MIN}), 0);
    /* users: "gu" is a prefix of "guest" and "guest2" */
    assert_st(storage_put_user(e->st, &(struct st_user){B("guest"), B("WxYz0123+/abc="),
                                                         B("rabbit_password_hashing_sha256"),
                                                         B("administrator,monitoring")}), 0);
    assert_st(storage_put_user(e->st, &(struct st_user){B("gu"), B(""), B(""), B("")}), 0);
    assert_st(storage_put_user(e->st, &(struct st_user){B("guest2"), B("h"),
                                                         B("rabbit_password_hashing_md5"),
                                                         B("")}), 0);
    /* permissions: (gu, est/) and (guest, /) concatenate alike */
    assert_st(storage_put_permission(e->st, &(struct st_permission){B("guest"), B("/"), B(".*"),
                                                                     B(".*"), B(".*")}), 0);
    assert_st(storage_put_permission(e->st, &(struct st_permission){B("gu"), B("est/"), B(""),
                                                                     B("^amq\\."), lng}), 0);
    /* topic permissions: an empty exchange name; (gu, est/, x) vs (guest, /, x) */
    assert_st(storage_put_topic_permission(
                  e->st, &(struct st_topic_permission){B("guest"), B("/"), B("amq.topic"),
                                                       B("^a"), B("^b")}), 0);
    assert_st(storage_put_topic_permission(
                  e->st, &(struct st_topic_permission){B("guest"), B("/"), B(""), B(""),
                                                       B("")}), 0);
    assert_st(storage_put_topic_permission(
                  e->st, &(struct st_topic_permission){B("gu"), B("est/"), B("amq.topic"),
                                                       B("w"), B("r")}), 0);
    assert_st(storage_put_exchange(e->st, &(struct st_exchange){.id = storage_new_id(e->st),
                                                                .vhost = B("/"), .name = B("ex"),
                                                                .flags = ST_DURABLE}), 0);
}

#define R300 /* 300 r */ "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr" \
    "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr" \
    "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr" \
    "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr" \
    "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr" \
    "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr"

/* Each table in key order (a u8 length first: shorter names first), tables in the order
 * vhosts, users, permissions, topic permissions, then the entities. */
#define T_VHOSTS                                                                               \
    "v0:0:0:1:01:5\n"                                                                          \
    "v1:/20:Default virtual host7:classic2:-12:-1\n"                                           \
    "v5:a\x01\xff|b300:" R300 "6:quorum19:922337203685477580720:-9223372036854775808\n"
#define T_USERS_ALL                                                                            \
    "u2:gu0:0:0:\n"                                                                            \
    "u5:guest14:WxYz0123+/abc=30:rabbit_password_hashing_sha25624:administrator,monitoring\n"  \
    "u6:guest21:h27:rabbit_password_hashing_md50:\n"
#define T_PERMS_GU "p2:gu4:est/0:6:^amq\\.300:" R300 "\n"
#define T_PERMS_GUEST "p5:guest1:/2:.*2:.*2:.*\n"
#define T_TOPIC_GU "t2:gu4:est/9:amq.topic1:w1:r\n"
#define T_TOPIC_GUEST_EMPTY "t5:guest1:/0:0:0:\n"
#define T_TOPIC_GUEST "t5:guest1:/9:amq.topic2:^a2:^b\n"
#define T_EXCHANGE "x1:/2:ex\n"

/* Everything comes back after a reopen, field by field, in the documented order. */
static void tenancy_recovered(void **state)
{
    (void)state;
    struct env *e = env_new();
    tenancy_fill(e);
    commit(e);
    assert_int_equal(e->failed, 0);
    env_close(e);
    env_open(e);
    assert_recovered(e, T_VHOSTS T_USERS_ALL T_PERMS_GU T_PERMS_GUEST T_TOPIC_GU
                            T_TOPIC_GUEST_EMPTY T_TOPIC_GUEST T_EXCHANGE);
    /* Callers that know no tenancy (NULL callbacks) see the entities only. */
    struct tlog t = {.len = 0};
    static const struct st_recover_ops old_ops = {trec_exchange, trec_queue, trec_binding,
                                                  NULL, NULL, NULL, NULL, NULL};
    assert_st(storage_recover(e->st, &old_ops, &t), 0);
    assert_int_equal(t.len, sizeof T_EXCHANGE - 1);
    assert_memory_equal(t.buf, T_EXCHANGE, t.len);
    env_free(e);
}

/* Puts replace, deletes remove exactly their own key (not one a concatenation would match),
 * deleting what is not there is harmless, and nothing cascades. */
static void tenancy_replaced_and_deleted(void **state)
{
    (void)state;
    struct env *e = env_new();
    tenancy_fill(e);
    commit(e);
    assert_st(storage_put_user(e->st, &(struct st_user){B("guest2"), B("h2"), B("x"),
                                                         B("management")}), 0);
    assert_st(storage_del_user(e->st, B("gu")), 0);
    assert_st(storage_del_user(e->st, B("nobody")), 0);
    assert_st(storage_del_vhost(e->st, B("")), 0);
    assert_st(storage_del_vhost(e->st, B("a\x01\xff|b")), 0);
    assert_st(storage_del_permission(e->st, B("gu"), B("est/")), 0);
    assert_st(storage_del_permission(e->st, B("gue"), B("st/")), 0);
    assert_st(storage_del_topic_permission(e->st, B("guest"), B("/"), B("")), 0);
    assert_st(storage_del_topic_permission(e->st, B("gu"), B("est/amq."), B("topic")), 0);
    commit(e);
    assert_int_equal(e->failed, 0);
    env_close(e);
    env_open(e);
    /* The user "gu" is gone but its topic permission stays: no cascade. */
    assert_recovered(e, "v1:/20:Default virtual host7:classic2:-12:-1\n"
                        "u5:guest14:WxYz0123+/abc=30:rabbit_password_hashing_sha25624:"
                        "administrator,monitoring\n"
                        "u6:guest22:h21:x10:management\n" T_PERMS_GUEST T_TOPIC_GU T_TOPIC_GUEST
                            T_EXCHANGE);
    env_free(e);
}

/* Names too long for a key are refused up front with storage healthy; a key of exactly 511
 * bytes is stored. */
static void tenancy_key_limits(void **state)
{
    (void)state;
    struct env *e = env_new();
    static char n[256];
    memset(n, 'n', sizeof n);
    uint64_t writes = storage_writes(e->st);
    struct st_bytes n256 = {n, 256}, n255 = {n, 255}, n200 = {n, 200};
    assert_st(storage_put_user(e->st, &(struct st_user){.name = n256}), -ENAMETOOLONG);
    assert_st(storage_del_user(e->st, n256), -ENAMETOOLONG);
    assert_st(storage_put_vhost(e->st, &(struct st_vhost){.name = n256}), -ENAMETOOLONG);
    assert_st(storage_put_permission(e->st, &(struct st_permission){.user = n255, .vhost = n256}),
              -ENAMETOOLONG);
    /* each name fits, the three do not: 3 + 600 > 511 */
    struct st_topic_permission tp = {.user = n200, .vhost = n200, .exchange = n200};
    assert_st(storage_put_topic_permission(e->st, &tp), -ENAMETOOLONG);
    assert_st(storage_del_topic_permission(e->st, n200, n200, n200), -ENAMETOOLONG);
    assert_int_equal(storage_writes(e->st), writes);

    tp = (struct st_topic_permission){{n, 254}, {n, 254}, {n, 0}, B("w"), B("r")};
    assert_int_equal(st_key_size((struct st_bytes[]){tp.user, tp.vhost, tp.exchange}, 3), 511);
    assert_st(storage_put_topic_permission(e->st, &tp), 0);
    assert_st(storage_put_user(e->st, &(struct st_user){.name = n255}), 0);
    commit(e);
    assert_int_equal(e->failed, 0);
    env_close(e);
    env_open(e);
    struct tlog t = {.len = 0};
    assert_st(storage_recover(e->st, &s_tops, &t), 0);
    assert_true(t.len > 511 + 255);
    assert_memory_equal(t.buf, "u255:nnn", 8);
    assert_st(storage_del_topic_permission(e->st, tp.user, tp.vhost, tp.exchange), 0);
    assert_st(storage_del_user(e->st, n255), 0);
    commit(e);
    env_close(e);
    env_open(e);
    assert_recovered(e, "");
    env_free(e);
}

/* Tenancy writes covered by storage_reserve() cannot fail for want of memory. */
static void tenancy_reserved_writes(void **state)
{
    (void)state;
    struct env *e = env_new();
    struct st_user u = {B("guest"), B("hash"), B("rabbit_password_hashing_sha256"), B("")};
    struct st_vhost v = {B("/"), B(""), B(""), -1, -1};
    struct st_permission pm = {B("guest"), B("/"), B(".*"), B(".*"), B(".*")};
    struct st_bytes key[] = {B("guest"), B("/"), B("amq.topic")};
    size_t bytes = st_user_size(&u) + st_vhost_size(&v) + st_permission_size(&pm) +
                   st_key_size(key, 3);
    assert_st(storage_reserve(e->st, 5, bytes), 0);
    atomic_store(&s_fail_allocs, true);
    assert_st(storage_put_vhost(e->st, &v), 0);
    assert_st(storage_put_user(e->st, &u), 0);
    assert_st(storage_put_permission(e->st, &pm), 0);
    assert_st(storage_del_topic_permission(e->st, key[0], key[1], key[2]), 0);
    assert_st(storage_put_seeded(e->st), 0);
    atomic_store(&s_fail_allocs, false);
    commit(e);
    assert_int_equal(e->failed, 0);
    env_close(e);
    env_open(e);
    assert_false(storage_is_new(e->st));
    assert_recovered(e, "v1:/0:0:2:-12:-1\n"
                        "u5:guest4:hash30:rabbit_password_hashing_sha2560:\n"
                        "p5:guest1:/2:.*2:.*2:.*\n");
    env_free(e);
}

/* storage_is_new: true until a storage_put_seeded() is durable, as it was at open. */
static void tenancy_is_new(void **state)
{
    (void)state;
    struct env *e = env_new();
    assert_true(storage_is_new(e->st));
    env_close(e);
    env_open(e); /* not seeded yet (a crash before the seeding batch): still new */
    assert_true(storage_is_new(e->st));
    assert_st(storage_put_user(e->st, &(struct st_user){B("guest"), B(""), B(""), B("")}), 0);
    assert_st(storage_put_seeded(e->st), 0);
    commit(e);
    assert_int_equal(e->failed, 0);
    assert_true(storage_is_new(e->st)); /* as at open */
    env_close(e);
    env_open(e);
    assert_false(storage_is_new(e->st));
    env_close(e);
    env_open(e);
    assert_false(storage_is_new(e->st));
    env_free(e);
}

/* A tenancy record that does not decode is reported, and only by a walk that reads it. */
static void tenancy_damaged(void **state)
{
    (void)state;
    struct env *e = env_new();
    env_close(e);
    uint8_t k[] = {2, 'g', 'u'}, v[] = {0, 0, 0, 9, 'x'}; /* a string running past the end */
    lmdb_put_raw(e->dir, "users", k, sizeof k, v, sizeof v);
    env_open(e);
    struct tlog t = {.len = 0};
    assert_st(storage_recover(e->st, &s_tops, &t), STORAGE_E_CORRUPT);
    static const struct st_recover_ops no_users = {.exchange = trec_exchange,
                                                   .queue = trec_queue,
                                                   .binding = trec_binding,
                                                   .vhost = trec_vhost};
    t.len = 0;
    assert_st(storage_recover(e->st, &no_users, &t), 0);
    env_free(e);
}

/* A data dir written before the tenancy tables existed (format 1 with the eight entity and
 * message databases only, made here with the lmdb API): it opens, its entities come back, it
 * has no tenancy records and counts as new (to be seeded), and tenancy records stored in it
 * survive a reopen. */
static void tenancy_old_data_dir(void **state)
{
    (void)state;
    struct env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    snprintf(e->dir, sizeof e->dir, "/tmp/warren-unit-storage-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cond, NULL);

    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi[8];
    const char *names[] = {"meta", "exchanges", "queues", "queue_meta",
                           "bindings", "messages", "msg_refs", "qindex"};
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    assert_int_equal(mdb_env_open(env, e->dir, 0, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(mdb_dbi_open(txn, names[i], MDB_CREATE, &dbi[i]), 0);
    uint8_t fmt[4] = {0, 0, 0, 1}, epoch[4] = {0, 0, 0, 7}, id[8];
    MDB_val k = {6, "format"}, v = {4, fmt};
    assert_int_equal(mdb_put(txn, dbi[0], &k, &v, 0), 0);
    k = (MDB_val){5, "epoch"}, v = (MDB_val){4, epoch};
    assert_int_equal(mdb_put(txn, dbi[0], &k, &v, 0), 0);
    struct st_exchange x = {.id = 42, .vhost = B("/"), .name = B("old"), .flags = ST_DURABLE};
    uint8_t rec[64];
    assert_true(st_exchange_size(&x) <= sizeof rec);
    st_exchange_encode(&x, rec);
    store_be64(id, 42);
    k = (MDB_val){8, id}, v = (MDB_val){st_exchange_size(&x), rec};
    assert_int_equal(mdb_put(txn, dbi[1], &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    env_open(e);
    assert_true(storage_is_new(e->st));
    assert_true(storage_new_id(e->st) > 42);
    assert_recovered(e, "x1:/3:old\n");
    assert_st(storage_put_vhost(e->st, &(struct st_vhost){B("/"), B(""), B(""), -1, -1}), 0);
    assert_st(storage_put_seeded(e->st), 0);
    commit(e);
    assert_int_equal(e->failed, 0);
    env_close(e);
    env_open(e);
    assert_false(storage_is_new(e->st));
    assert_recovered(e, "v1:/0:0:2:-12:-1\nx1:/3:old\n");
    env_free(e);
}


/* Runtime parameters (policies among them) come back after a reopen with their exact key and
 * JSON value; a put under the same key replaces, a delete removes, and keys that only a
 * concatenation would confuse stay apart. */
struct params_seen {
    char buf[1024];
    size_t len;
};

static int trec_param(void *arg, const struct st_param *pr)
{
    struct params_seen *t = arg;
    int n = snprintf(t->buf + t->len, sizeof t->buf - t->len, "[%.*s|%.*s|%.*s=%.*s]",
                     (int)pr->component.len, (const char *)pr->component.p, (int)pr->vhost.len,
                     (const char *)pr->vhost.p, (int)pr->name.len, (const char *)pr->name.p,
                     (int)pr->value.len, (const char *)pr->value.p);
    t->len += (size_t)n;
    return 0;
}

static struct st_bytes sbs(const char *s)
{
    return (struct st_bytes){s, strlen(s)};
}

static void params_recovered(void **state)
{
    (void)state;
    struct env *e = env_new();
    struct st_param a = {sbs("policy"), sbs("/"), sbs("ttl"), sbs("{\"pattern\":\"^q\"}")};
    struct st_param b = {sbs("policy"), sbs("/t"), sbs("tl"), sbs("{}")};
    struct st_param g = {sbs("global"), sbs(""), sbs("cluster_name"), sbs("\"w\"")};
    assert_st(storage_put_param(e->st, &a), 0);
    assert_st(storage_put_param(e->st, &b), 0);
    assert_st(storage_put_param(e->st, &g), 0);
    commit(e);
    a.value = sbs("{\"pattern\":\".*\"}");
    assert_st(storage_put_param(e->st, &a), 0);
    assert_st(storage_del_param(e->st, g.component, g.vhost, g.name), 0);
    commit(e);
    env_close(e);
    env_open(e);
    static const struct st_recover_ops ops = {.param = trec_param};
    struct params_seen t = {.len = 0};
    assert_st(storage_recover(e->st, &ops, &t), 0);
    assert_string_equal(t.buf, "[policy|/|ttl={\"pattern\":\".*\"}][policy|/t|tl={}]");
    struct st_param big = {sbs("policy"), sbs("/"), sbs(""), sbs("{}")};
    char name[300];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = 0;
    big.name = sbs(name);
    assert_st(storage_put_param(e->st, &big), -ENAMETOOLONG);
    env_free(e);
}

/* ---- deduplication entries (schema.h's dedup) ---------------------------------------------- */

struct dedup_seen {
    char buf[256];
    size_t len;
};

static int trec_dedup(void *arg, uint64_t owner, const void *key, size_t klen, uint64_t expires,
                      uint64_t seq)
{
    struct dedup_seen *t = arg;
    t->len += (size_t)snprintf(t->buf + t->len, sizeof t->buf - t->len, "[%llu:%.*s:%llu:%llu]",
                               (unsigned long long)owner, (int)klen, (const char *)key,
                               (unsigned long long)expires, (unsigned long long)seq);
    return 0;
}

/* Put, replace, delete, and deletion with the owner: entries of exchange 7 and queue 9 survive a
 * reopen; deleting queue 9 (storage_del_entity) takes its entries and leaves exchange 7's and
 * binding 8's namesake owner alone; keys over STORAGE_DEDUP_KEY_MAX are refused. */
static void dedup_entries(void **state)
{
    (void)state;
    struct env *e = env_new();
    assert_st(storage_put_dedup(e->st, 7, "a", 1, 0, 1), 0);
    assert_st(storage_put_dedup(e->st, 7, "b", 1, 500, 2), 0);
    assert_st(storage_put_dedup(e->st, 9, "a", 1, 0, 1), 0);
    assert_st(storage_put_dedup(e->st, 9, "c", 1, 0, 2), 0);
    assert_st(storage_put_dedup(e->st, 8, "x", 1, 0, 1), 0);
    commit(e);
    assert_st(storage_put_dedup(e->st, 7, "b", 1, 900, 3), 0); /* replaced */
    assert_st(storage_del_dedup(e->st, 9, "c", 1), 0);
    assert_st(storage_del_dedup(e->st, 9, "zz", 2), 0); /* not there: nothing */
    commit(e);
    env_close(e);
    env_open(e);
    struct dedup_seen t = {.len = 0};
    assert_st(storage_scan_dedup(e->st, trec_dedup, &t), 0);
    assert_string_equal(t.buf, "[7:a:0:1][7:b:900:3][8:x:0:1][9:a:0:1]");
    assert_st(storage_del_entity(e->st, 'q', 9), 0);
    assert_st(storage_del_entity(e->st, 'b', 8), 0); /* bindings own no entries */
    commit(e);
    t.len = 0;
    t.buf[0] = 0;
    assert_st(storage_scan_dedup(e->st, trec_dedup, &t), 0);
    assert_string_equal(t.buf, "[7:a:0:1][7:b:900:3][8:x:0:1]");
    assert_st(storage_del_entity(e->st, 'x', 7), 0);
    commit(e);
    t.len = 0;
    t.buf[0] = 0;
    assert_st(storage_scan_dedup(e->st, trec_dedup, &t), 0);
    assert_string_equal(t.buf, "[8:x:0:1]");
    uint8_t big[STORAGE_DEDUP_KEY_MAX + 1] = {0};
    assert_st(storage_put_dedup(e->st, 7, big, sizeof big, 0, 1), -ENAMETOOLONG);
    assert_st(storage_del_dedup(e->st, 7, big, 0), -ENAMETOOLONG);
    env_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scan_reads_in_place),
        cmocka_unit_test(read_queue_out_of_memory),
        cmocka_unit_test(stale_after_reopen),
        cmocka_unit_test(damaged_entries_rejected),
        cmocka_unit_test(reserve_fails_softly),
        cmocka_unit_test(reserved_writes_cannot_fail),
        cmocka_unit_test(lost_write_fails_storage),
        cmocka_unit_test(tenancy_recovered),
        cmocka_unit_test(tenancy_replaced_and_deleted),
        cmocka_unit_test(tenancy_key_limits),
        cmocka_unit_test(tenancy_reserved_writes),
        cmocka_unit_test(tenancy_is_new),
        cmocka_unit_test(tenancy_damaged),
        cmocka_unit_test(tenancy_old_data_dir),
        cmocka_unit_test(params_recovered),
        cmocka_unit_test(dedup_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
