/* test_crypt.c — encryption at rest in storage/ (crypt.h) through its public headers, on a real
 * LMDB environment with the writer thread running: sealed records never show their bytes in
 * data.mdb and read back whole; a wrong key, a missing key and the key an unfinished rotation
 * replaced are refused with data.mdb left byte for byte as it was; plain records written before
 * a key was configured stay readable; a record moved under another id or altered fails
 * authentication (reported per entry, not as a storage failure); rotation in bounded steps while
 * new records are written, resumed after a restart that has only the new key, and a pass with
 * the same key that seals the plain records. Also run under TSan (suite 'storage'). */
#include "unit_storage.h"

#include <errno.h>
#include <ftw.h>
#include <lmdb.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/byteorder.h"
#include "storage/batch.h"
#include "storage/crypt.h"
#include "storage/env.h"
#include "storage/records.h"
#include "storage/recover.h"

static const uint8_t KEY_A[32] = "0123456789abcdef0123456789ABCDEF";
static const uint8_t KEY_B[32] = "fedcba9876543210FEDCBA9876543210";
#define MARKER "WARREN-UNIT-SECRET-MARKER"

/* ---- an environment with its writer thread ---------------------------------------------- */

struct env {
    char dir[64];
    struct storage *st; /* owned */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    unsigned notified; /* guarded by mu */
    uint64_t durable;
    int failed;
    uint64_t qid;
    uint64_t next_seq;
};

static void on_notify(void *arg)
{
    struct env *e = arg;
    pthread_mutex_lock(&e->mu);
    e->notified++;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->mu);
}

/* Opens with key (NULL: none): the status storage_open_opts returned, o filled. */
static int env_try_open(struct env *e, const uint8_t *key, struct storage_opts *o)
{
    *o = (struct storage_opts){.sync = true, .key = key};
    e->durable = 0;
    e->failed = 0;
    int rc = storage_open_opts(e->dir, o, &e->st);
    if (rc == 0)
        assert_st(storage_start(e->st, on_notify, e), 0);
    return rc;
}

static void env_open(struct env *e, const uint8_t *key)
{
    struct storage_opts o;
    assert_st(env_try_open(e, key, &o), 0);
}

static void env_close(struct env *e)
{
    storage_close(e->st);
    e->st = NULL;
}

static struct env *env_new(const uint8_t *key)
{
    struct env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    snprintf(e->dir, sizeof e->dir, "/tmp/warren-unit-crypt-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cond, NULL);
    env_open(e, key);
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

static unsigned notified(struct env *e)
{
    pthread_mutex_lock(&e->mu);
    unsigned n = e->notified;
    pthread_mutex_unlock(&e->mu);
    return n;
}

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

/* Submits what was added and waits until it is durable; storage must stay healthy. */
static void commit(struct env *e)
{
    uint64_t want = storage_batch_no(e->st);
    for (int i = 0; i < 100 && e->durable < want && !e->failed; i++) {
        unsigned seen = notified(e);
        if (storage_submit(e->st) || i > 0)
            wait_notify(e, seen);
    }
    assert_st(e->failed, 0);
}

/* ---- messages ----------------------------------------------------------------------------- */

/* Message i: head "H" + u16 i, body MARKER "-i-" then 100 + i pattern bytes. */
static size_t msg_bytes(unsigned i, uint8_t head[3], uint8_t *body)
{
    head[0] = 'H';
    store_be16(head + 1, (uint16_t)i);
    size_t n = (size_t)snprintf((char *)body, 64, MARKER "-%u-", i);
    for (unsigned j = 0; j < 100 + i; j++)
        body[n + j] = (uint8_t)(i * 7 + j);
    return n + 100 + i;
}

static uint8_t s_bodies[256][512];

/* Adds messages first..last to the queue (creating it on first use) at seqs = their numbers. */
static void add_msgs(struct env *e, unsigned first, unsigned last)
{
    if (!e->qid) {
        e->qid = storage_new_id(e->st);
        struct st_queue q = {.id = e->qid, .vhost = {"/", 1}, .name = {"q", 1},
                             .flags = ST_DURABLE};
        assert_st(storage_put_queue(e->st, &q), 0);
    }
    for (unsigned i = first; i <= last; i++) {
        assert_true(i < 256);
        uint8_t head[3];
        size_t blen = msg_bytes(i, head, s_bodies[i]);
        uint64_t id = storage_new_id(e->st);
        assert_st(storage_put_msg(e->st, id, 1, head, sizeof head, s_bodies[i], blen, NULL, NULL),
                  0);
        assert_st(storage_put_idx(e->st, e->qid, i, id, 0, 0, 0), 0);
    }
    commit(e);
}

struct seen {
    unsigned ok, damaged;
    unsigned bad_seq[64];
};

static int on_entry(void *arg, const struct st_entry *en, const void *data, size_t len)
{
    struct seen *s = arg;
    if (en->err) {
        assert_st(en->err, STORAGE_E_DECRYPT);
        assert_null(data);
        assert_int_equal(len, 0);
        s->bad_seq[s->damaged++ % 64] = (unsigned)en->seq;
        return 0;
    }
    uint8_t head[3], body[512];
    size_t blen = msg_bytes((unsigned)en->seq, head, body);
    assert_int_equal(len, sizeof head + blen);
    assert_memory_equal(data, head, sizeof head);
    assert_memory_equal((const uint8_t *)data + sizeof head, body, blen);
    s->ok++;
    return 0;
}

/* Reads the whole queue back: every message must be whole but those counted damaged. */
static struct seen scan_all(struct env *e)
{
    struct seen s = {0};
    size_t n;
    assert_st(storage_scan_queue(e->st, e->qid, 0, 1000, on_entry, &s, &n), 0);
    assert_int_equal(n, s.ok + s.damaged);
    return s;
}

/* ---- the files, read while storage is closed --------------------------------------------- */

static char *read_file(const char *dir, size_t *ret_len)
{
    char path[128];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *ret_len = (size_t)n;
    return p;
}

static bool file_has_marker(const char *dir)
{
    size_t n;
    char *p = read_file(dir, &n);
    bool has = memmem(p, n, MARKER, sizeof MARKER - 1) != NULL;
    free(p);
    return has;
}

/* Counts the stored message records: sealed under key (NULL: any key), and plain ones. */
static void count_records(const char *dir, const uint8_t *key, unsigned *ret_sealed,
                          unsigned *ret_plain)
{
    char hex[CRYPT_ID_HEX];
    uint8_t id[CRYPT_ID_SIZE] = {0};
    if (key) {
        storage_key_id(key, hex);
        for (int i = 0; i < CRYPT_ID_SIZE; i++)
            sscanf(hex + 2 * i, "%2hhx", &id[i]);
    }
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    MDB_val k, v;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 32);
    assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "messages", 0, &dbi), 0);
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    *ret_sealed = *ret_plain = 0;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = v.mv_data;
        if (p[0] == CRYPT_MAGIC) {
            if (!key || !memcmp(p + 1, id, CRYPT_ID_SIZE))
                (*ret_sealed)++;
        } else {
            (*ret_plain)++;
        }
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

static void raw_messages(const char *dir, void (*fn)(MDB_txn *txn, MDB_dbi dbi))
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 32);
    assert_int_equal(mdb_env_open(env, dir, 0, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "messages", 0, &dbi), 0);
    fn(txn, dbi);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* An open that must be refused with want, leaving data.mdb exactly as it was. */
static void expect_refused(struct env *e, const uint8_t *key, int want, struct storage_opts *o)
{
    size_t n0, n1;
    char *before = read_file(e->dir, &n0);
    assert_st(env_try_open(e, key, o), want);
    assert_null(e->st);
    char *after = read_file(e->dir, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before);
    free(after);
}

static void rotate_until_done(struct env *e, size_t max)
{
    for (int i = 0; i < 10000; i++) {
        assert_st(storage_reencrypt_step(e->st, max), 0);
        commit(e);
        if (storage_rotation_done(e->st))
            return;
    }
    fail_msg("the rotation did not finish");
}

/* ---- tests ------------------------------------------------------------------------------- */

static void sealed_records_read_back(void **state)
{
    (void)state;
    struct env *e = env_new(KEY_A);
    add_msgs(e, 1, 40);
    struct seen s = scan_all(e);
    assert_int_equal(s.ok, 40);
    struct storage_crypt_status cs;
    storage_crypt_status(e->st, &cs);
    assert_true(cs.enabled);
    char id[CRYPT_ID_HEX];
    storage_key_id(KEY_A, id);
    assert_string_equal(cs.key_id, id);
    assert_false(cs.rotating);
    env_close(e);
    assert_false(file_has_marker(e->dir));
    unsigned sealed, plain;
    count_records(e->dir, KEY_A, &sealed, &plain);
    assert_int_equal(sealed, 40);
    assert_int_equal(plain, 0);
    /* The same key again reads them. */
    env_open(e, KEY_A);
    s = scan_all(e);
    assert_int_equal(s.ok, 40);
    env_free(e);
}

static void wrong_or_missing_key_changes_nothing(void **state)
{
    (void)state;
    struct env *e = env_new(KEY_A);
    add_msgs(e, 1, 5);
    env_close(e);
    struct storage_opts o;
    char a[CRYPT_ID_HEX], b[CRYPT_ID_HEX];
    storage_key_id(KEY_A, a);
    storage_key_id(KEY_B, b);
    expect_refused(e, KEY_B, STORAGE_E_WRONGKEY, &o);
    assert_string_equal(o.stored_key_id, a);
    assert_string_equal(o.key_id, b);
    assert_int_equal(o.messages, 5);
    expect_refused(e, NULL, STORAGE_E_NOKEY, &o);
    assert_string_equal(o.stored_key_id, a);
    assert_string_equal(o.key_id, "");
    env_open(e, KEY_A);
    assert_int_equal(scan_all(e).ok, 5);
    env_free(e);
}

/* Plain records from before a key was configured stay readable; new ones are sealed. */
static void plain_records_stay_readable(void **state)
{
    (void)state;
    struct env *e = env_new(NULL);
    add_msgs(e, 1, 5);
    env_close(e);
    assert_true(file_has_marker(e->dir)); /* the check above can see a marker */
    env_open(e, KEY_A);
    add_msgs(e, 6, 10);
    assert_int_equal(scan_all(e).ok, 10);
    env_close(e);
    unsigned sealed, plain;
    count_records(e->dir, KEY_A, &sealed, &plain);
    assert_int_equal(sealed, 5);
    assert_int_equal(plain, 5);
    struct storage_opts o;
    expect_refused(e, NULL, STORAGE_E_NOKEY, &o);
    /* A same-key pass seals the plain ones. */
    env_open(e, KEY_A);
    assert_st(storage_rotate_key(e->st, KEY_A), 0);
    rotate_until_done(e, 3);
    struct storage_crypt_status cs;
    storage_crypt_status(e->st, &cs);
    assert_int_equal(cs.examined, 10);
    assert_int_equal(cs.reencrypted, 5);
    assert_int_equal(cs.damaged, 0);
    assert_int_equal(scan_all(e).ok, 10);
    env_close(e);
    count_records(e->dir, KEY_A, &sealed, &plain);
    assert_int_equal(sealed, 10);
    assert_int_equal(plain, 0);
    env_free(e);
}

static uint64_t s_swap_from, s_swap_to, s_flip;

static void tamper(MDB_txn *txn, MDB_dbi dbi)
{
    uint8_t k[8], buf[1024];
    MDB_val key = {8, k}, val;
    store_be64(k, s_swap_from);
    assert_int_equal(mdb_get(txn, dbi, &key, &val), 0);
    memcpy(buf, val.mv_data, val.mv_size);
    store_be64(k, s_swap_to);
    val.mv_data = buf;
    assert_int_equal(mdb_put(txn, dbi, &key, &val, 0), 0);
    store_be64(k, s_flip);
    assert_int_equal(mdb_get(txn, dbi, &key, &val), 0);
    memcpy(buf, val.mv_data, val.mv_size);
    buf[CRYPT_HEAD_SIZE + 10] ^= 1;
    val.mv_data = buf;
    assert_int_equal(mdb_put(txn, dbi, &key, &val, 0), 0);
}

/* A record copied under another id, or altered, fails authentication: that entry is reported,
 * the others read, and storage stays healthy. */
static void moved_or_altered_records_fail(void **state)
{
    (void)state;
    struct env *e = env_new(KEY_A);
    uint64_t first = storage_new_id(e->st) + 2; /* after the queue's id */
    add_msgs(e, 1, 4);
    s_swap_from = first;     /* message 1 */
    s_swap_to = first + 1;   /* message 2 */
    s_flip = first + 2;      /* message 3 */
    env_close(e);
    raw_messages(e->dir, tamper);
    env_open(e, KEY_A);
    struct seen s = scan_all(e);
    assert_int_equal(s.ok, 2);
    assert_int_equal(s.damaged, 2);
    assert_int_equal(s.bad_seq[0], 2);
    assert_int_equal(s.bad_seq[1], 3);
    /* Rotation leaves them (counted) and finishes. */
    assert_st(storage_rotate_key(e->st, KEY_B), 0);
    rotate_until_done(e, 2);
    struct storage_crypt_status cs;
    storage_crypt_status(e->st, &cs);
    assert_int_equal(cs.damaged, 2);
    assert_int_equal(cs.reencrypted, 2);
    s = scan_all(e);
    assert_int_equal(s.ok, 2);
    assert_int_equal(s.damaged, 2);
    env_free(e);
}

static void rotation_while_writing(void **state)
{
    (void)state;
    struct env *e = env_new(KEY_A);
    add_msgs(e, 1, 60);
    assert_st(storage_rotate_key(e->st, KEY_B), 0);
    assert_st(storage_rotate_key(e->st, KEY_B), -EBUSY);
    struct storage_crypt_status cs;
    storage_crypt_status(e->st, &cs);
    char a[CRYPT_ID_HEX], b[CRYPT_ID_HEX];
    storage_key_id(KEY_A, a);
    storage_key_id(KEY_B, b);
    assert_true(cs.rotating);
    assert_string_equal(cs.key_id, b);
    assert_string_equal(cs.old_key_id, a);
    assert_int_equal(cs.total, 60);
    /* Steps of 7 records, with new messages and reads between them. */
    unsigned next = 61;
    for (int i = 0; i < 1000; i++) {
        assert_st(storage_reencrypt_step(e->st, 7), 0);
        if (next <= 80) {
            add_msgs(e, next, next + 1);
            next += 2;
        } else {
            commit(e);
        }
        assert_int_equal(scan_all(e).ok, next - 1);
        if (storage_rotation_done(e->st))
            break;
    }
    storage_crypt_status(e->st, &cs);
    assert_false(cs.rotating);
    assert_string_equal(cs.old_key_id, "");
    assert_true(cs.examined >= 60);
    assert_int_equal(cs.damaged, 0);
    add_msgs(e, next, next);
    env_close(e);
    unsigned sealed, plain;
    count_records(e->dir, KEY_B, &sealed, &plain);
    assert_int_equal(sealed, next);
    assert_int_equal(plain, 0);
    struct storage_opts o;
    expect_refused(e, KEY_A, STORAGE_E_WRONGKEY, &o);
    assert_string_equal(o.stored_key_id, b);
    assert_string_equal(o.rotating_from, "");
    env_open(e, KEY_B);
    assert_int_equal(scan_all(e).ok, next);
    env_free(e);
}

/* A restart in the middle of a rotation: the new key alone reads everything and finishes it;
 * the old key is refused as the one the rotation replaced. */
static void rotation_resumes_after_restart(void **state)
{
    (void)state;
    struct env *e = env_new(KEY_A);
    add_msgs(e, 1, 30);
    assert_st(storage_rotate_key(e->st, KEY_B), 0);
    assert_st(storage_reencrypt_step(e->st, 10), 0);
    commit(e);
    assert_false(storage_rotation_done(e->st));
    env_close(e);
    unsigned sealed, plain;
    count_records(e->dir, KEY_B, &sealed, &plain);
    assert_int_equal(sealed, 10);
    char a[CRYPT_ID_HEX], b[CRYPT_ID_HEX];
    storage_key_id(KEY_A, a);
    storage_key_id(KEY_B, b);
    struct storage_opts o;
    expect_refused(e, KEY_A, STORAGE_E_ROTATING, &o);
    assert_string_equal(o.stored_key_id, b);
    assert_string_equal(o.rotating_from, a);
    expect_refused(e, NULL, STORAGE_E_NOKEY, &o);
    env_open(e, KEY_B);
    struct storage_crypt_status cs;
    storage_crypt_status(e->st, &cs);
    assert_true(cs.rotating);
    assert_string_equal(cs.old_key_id, a);
    assert_int_equal(scan_all(e).ok, 30); /* the old key came back from "enc_old" */
    assert_st(storage_rotate_key(e->st, KEY_B), -EBUSY);
    rotate_until_done(e, 8);
    env_close(e);
    count_records(e->dir, KEY_B, &sealed, &plain);
    assert_int_equal(sealed, 30);
    expect_refused(e, KEY_A, STORAGE_E_WRONGKEY, &o);
    assert_string_equal(o.rotating_from, "");
    env_open(e, KEY_B);
    storage_crypt_status(e->st, &cs);
    assert_false(cs.rotating);
    assert_int_equal(scan_all(e).ok, 30);
    env_free(e);
}

/* Without messages, a data dir takes another key, or none; rotation needs a key. */
static void empty_store_takes_any_key(void **state)
{
    (void)state;
    struct env *e = env_new(KEY_A);
    assert_st(storage_rotate_key(e->st, KEY_A), 0);
    rotate_until_done(e, 10);
    env_close(e);
    env_open(e, KEY_B);
    env_close(e);
    env_open(e, NULL);
    assert_st(storage_rotate_key(e->st, KEY_B), -EINVAL);
    struct storage_crypt_status cs;
    storage_crypt_status(e->st, &cs);
    assert_false(cs.enabled);
    add_msgs(e, 1, 2);
    env_close(e);
    env_open(e, KEY_B); /* plain messages, no key recorded: fine */
    assert_int_equal(scan_all(e).ok, 2);
    env_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sealed_records_read_back),
        cmocka_unit_test(wrong_or_missing_key_changes_nothing),
        cmocka_unit_test(plain_records_stay_readable),
        cmocka_unit_test(moved_or_altered_records_fail),
        cmocka_unit_test(rotation_while_writing),
        cmocka_unit_test(rotation_resumes_after_restart),
        cmocka_unit_test(empty_store_takes_any_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
