/* test_storage.c — storage/ through its public headers (env.h, batch.h, recover.h) on a real
 * LMDB environment in a temporary directory, with the writer thread running: group commit,
 * page-in with storage_scan_queue (borrowed bytes, no copy) and storage_read_queue, stale
 * transient entries after a reopen, damaged entries rejected, and out-of-memory while adding
 * writes: a failed storage_reserve() leaves storage healthy, reserved writes cannot fail, and a
 * lost write makes storage fail (sticky) instead of aborting.
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

    static const struct st_recover_ops ops = {rec_exchange, rec_queue, rec_binding};
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
