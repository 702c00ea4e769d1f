/* test_delayed.c — storage/delayed.h and its batch ops (storage_put_delayed, storage_del_delayed,
 * storage_del_delayed_target) on a real LMDB environment with the writer thread: entries come
 * back in due order with their message's bytes, from any key; a delayed entry counts as a
 * reference of its message (the message stays while a queue-index entry still names it, and goes
 * with the last reference); deleting a target's entries leaves the others; a transient entry is
 * stale after a reopen (no bytes), a persistent one is not. */
#include "unit_storage.h"

#include <ftw.h>
#include <lmdb.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "lib/byteorder.h"
#include "storage/batch.h"
#include "storage/delayed.h"
#include "storage/env.h"
#include "storage/recover.h"

struct env {
    char dir[64];
    struct storage *st; /* owned */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    unsigned notified; /* guarded by mu */
    uint64_t durable;
    int failed;
};

static void on_notify(void *arg)
{
    struct env *e = arg;
    pthread_mutex_lock(&e->mu);
    e->notified++;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->mu);
}

static void env_open(struct env *e)
{
    e->durable = 0;
    assert_st(storage_open(e->dir, true, &e->st), 0);
    assert_st(storage_start(e->st, on_notify, e), 0);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Submits what was added and waits (5 s at most) until it is durable. */
static void commit(struct env *e)
{
    uint64_t want = storage_batch_no(e->st);
    for (int i = 0; i < 100 && e->durable < want && !e->failed; i++) {
        pthread_mutex_lock(&e->mu);
        unsigned seen = e->notified;
        pthread_mutex_unlock(&e->mu);
        if (storage_submit(e->st) || i > 0) {
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
    }
    assert_int_equal(e->failed, 0);
}

/* Message i: "M" then i as one byte, then 20 bytes of i. */
static void put_msg(struct env *e, uint64_t id, uint32_t refs, unsigned i)
{
    static uint8_t bodies[16][20];
    uint8_t head[2] = {'M', (uint8_t)i};
    memset(bodies[i], (int)i, sizeof bodies[i]);
    assert_st(storage_put_msg(e->st, id, refs, head, sizeof head, bodies[i], sizeof bodies[i],
                              NULL, NULL),
              0);
}

struct seen {
    struct env *e;
    unsigned n;
    struct st_delayed d[16];
    int msg[16];    /* the i of the message's bytes, -1 for none */
    bool drop_stale;
};

static int on_delayed(void *arg, const struct st_delayed *d, const void *data, size_t len)
{
    struct seen *s = arg;
    assert_true(s->n < 16);
    s->d[s->n] = *d;
    s->msg[s->n] = -1;
    if (data) {
        const uint8_t *p = data;
        assert_int_equal(len, 22);
        assert_int_equal(p[0], 'M');
        for (unsigned j = 0; j < 20; j++)
            assert_int_equal(p[2 + j], p[1]);
        s->msg[s->n] = p[1];
    } else {
        assert_true(d->stale);
        if (s->drop_stale) /* writes are allowed from the callback */
            assert_st(storage_del_delayed(s->e->st, d->due, d->msg_id), 0);
    }
    s->n++;
    return 0;
}

static struct seen scan(struct env *e, uint64_t due, uint64_t id, size_t max)
{
    struct seen s = {.e = e};
    size_t n = 99;
    assert_st(storage_scan_delayed(e->st, due, id, max, on_delayed, &s, &n), 0);
    assert_int_equal(n, s.n);
    return s;
}

/* Whether `messages` still holds id (storage closed: read with LMDB directly). */
static bool has_msg(const char *dir, uint64_t id)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    uint8_t k[8];
    store_be64(k, id);
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 32);
    assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "messages", 0, &dbi), 0);
    MDB_val key = {8, k}, val;
    int rc = mdb_get(txn, dbi, &key, &val);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return rc == 0;
}

static void delayed_entries(void **state)
{
    (void)state;
    struct env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    snprintf(e->dir, sizeof e->dir, "/tmp/warren-unit-delayed-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cond, NULL);
    env_open(e);

    /* Four messages for two targets, due out of id order; message 4 also in a queue. */
    uint64_t id[5];
    static const uint64_t due[5] = {0, 3000, 1000, 2000, 1000};
    for (unsigned i = 1; i <= 4; i++) {
        id[i] = storage_new_id(e->st);
        put_msg(e, id[i], i == 4 ? 2 : 1, i);
        assert_st(storage_put_delayed(e->st, due[i], id[i], i % 2 ? 'x' : 'q', i % 2 ? 7 : 8,
                                      false),
                  0);
    }
    assert_st(storage_put_idx(e->st, 99, 1, id[4], 0, 0, 0), 0);
    uint64_t tid = storage_new_id(e->st); /* a transient one */
    put_msg(e, tid, 1, 5);
    assert_st(storage_put_delayed(e->st, 500, tid, 'x', 7, true), 0);
    commit(e);

    struct seen s = scan(e, 0, 0, 16); /* due order: 500, 1000 (ids 2, 4), 2000, 3000 */
    assert_int_equal(s.n, 5);
    static const int order[5] = {5, 2, 4, 3, 1};
    for (unsigned i = 0; i < 5; i++) {
        assert_int_equal(s.msg[i], order[i]);
        assert_false(s.d[i].stale);
    }
    assert_int_equal(s.d[1].kind, 'q');
    assert_int_equal(s.d[1].target, 8);
    assert_int_equal(s.d[3].kind, 'x');
    assert_int_equal(s.d[3].target, 7);
    s = scan(e, 1000, id[4], 2); /* from a key, at most 2 */
    assert_int_equal(s.n, 2);
    assert_int_equal(s.msg[0], 4);
    assert_int_equal(s.msg[1], 3);

    /* Released: message 4 stays for its queue entry, message 2 goes. Target 7's entries go
     * together (messages 1, 3 and the transient one), target 8's stay. */
    assert_st(storage_del_delayed(e->st, due[4], id[4]), 0);
    assert_st(storage_del_delayed(e->st, due[2], id[2]), 0);
    assert_st(storage_del_delayed(e->st, due[2], id[2]), 0); /* again: nothing */
    commit(e);
    s = scan(e, 0, 0, 16);
    assert_int_equal(s.n, 3);
    assert_st(storage_del_delayed_target(e->st, 'x', 7), 0);
    assert_st(storage_del_delayed_target(e->st, 'q', 7), 0); /* same id, other kind: none */
    commit(e);
    s = scan(e, 0, 0, 16);
    assert_int_equal(s.n, 0);
    storage_close(e->st);
    assert_true(has_msg(e->dir, id[4]));
    for (unsigned i = 1; i <= 3; i++)
        assert_false(has_msg(e->dir, id[i]));
    assert_false(has_msg(e->dir, tid));

    /* A transient entry is stale after a reopen (dropped from the callback), a persistent one
     * is not. */
    env_open(e);
    uint64_t p = storage_new_id(e->st), t = storage_new_id(e->st);
    put_msg(e, p, 1, 6);
    assert_st(storage_put_delayed(e->st, 100, p, 'q', 8, false), 0);
    put_msg(e, t, 1, 7);
    assert_st(storage_put_delayed(e->st, 200, t, 'q', 8, true), 0);
    commit(e);
    s = scan(e, 0, 0, 16);
    assert_int_equal(s.n, 2);
    assert_false(s.d[1].stale); /* same open */
    storage_close(e->st);
    env_open(e);
    s = (struct seen){.e = e, .drop_stale = true};
    size_t n;
    assert_st(storage_scan_delayed(e->st, 0, 0, 16, on_delayed, &s, &n), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.msg[0], 6);
    assert_false(s.d[0].stale);
    assert_true(s.d[1].stale);
    assert_int_equal(s.msg[1], -1);
    commit(e);
    s = scan(e, 0, 0, 16);
    assert_int_equal(s.n, 1);
    storage_close(e->st);
    assert_false(has_msg(e->dir, t));
    assert_true(has_msg(e->dir, p));

    nftw(e->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    pthread_cond_destroy(&e->cond);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(delayed_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
