/* 50-durability-format — warrend refuses a data dir it must not use, clearly, and leaves it as
 * it was:
 *  - the `meta` database's "format" record says another version (the next one, or a record of
 *    another size): warrend exits non-zero without listening, its stderr names the data dir
 *    and says "version"; the environment is untouched (format and epoch records as they were);
 *    with the record put back, warrend starts and every stored message is there.
 *  - a second warrend on the data dir of a running one: exits non-zero without listening, its
 *    stderr names the data dir and says it is in use (or locked); the first one goes on serving
 *    and its data is intact after a clean restart. After a SIGKILL of the first, the lock is
 *    free again.
 * The records are read and written with the lmdb API while warrend is stopped. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <amqp_framing.h>
#include <lmdb.h>

#define NMSG 3

static harness_broker_t s_broker;

/* Read (and, when put is set, replace) a record of the meta database. Returns its old size and
 * copies at most cap bytes of it into old. */
static size_t meta_record(const char *key, uint8_t *old, size_t cap, const uint8_t *put,
                          size_t put_len)
{
    CHECKF(s_broker.pid == 0, "warrend must be stopped");
    MDB_env *env;
    CHECK_MDB(mdb_env_create(&env));
    CHECK_MDB(mdb_env_set_maxdbs(env, 16));
    CHECK_MDB(mdb_env_open(env, s_broker.data_dir, put ? 0 : MDB_RDONLY, 0640));
    MDB_txn *txn;
    CHECK_MDB(mdb_txn_begin(env, NULL, put ? 0 : MDB_RDONLY, &txn));
    MDB_dbi meta;
    CHECK_MDB(mdb_dbi_open(txn, "meta", 0, &meta));
    MDB_val k = {strlen(key), (void *)key}, v;
    CHECK_MDB(mdb_get(txn, meta, &k, &v));
    size_t len = v.mv_size;
    memcpy(old, v.mv_data, len < cap ? len : cap);
    if (put) {
        v = (MDB_val){put_len, (void *)put};
        CHECK_MDB(mdb_put(txn, meta, &k, &v, 0));
        CHECK_MDB(mdb_txn_commit(txn));
    } else {
        mdb_txn_abort(txn);
    }
    mdb_env_close(env);
    return len;
}

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return true;
    }
    return false;
}

static uint32_t stored_count(void)
{
    amqp_connection_state_t conn = harness_open(&s_broker);
    uint32_t n = 0;
    CHECK_REPLY(harness_queue_peek(conn, 1, "dq.keep", &n, NULL));
    harness_disconnect(conn);
    return n;
}

/* Run a warrend that must refuse; its stderr must name the data dir and one of the words. */
static void expect_refusal(const char *what, const char *word1, const char *word2)
{
    char err[8192];
    bool listened = true;
    int64_t t0 = harness_now_ms();
    int status = harness_warrend_run(s_broker.data_dir, harness_free_port(), 10000, err,
                                     sizeof err, &listened);
    CHECKF(status != -1, "%s: warrend was still running after 10 s (listening: %s)", what,
           listened ? "yes" : "no");
    CHECKF(!listened, "%s: warrend accepted connections before it exited", what);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) != 0,
           "%s: warrend should exit with a non-zero status, %s %d", what,
           WIFEXITED(status) ? "exit status" : "killed by signal",
           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    CHECKF(strstr(err, s_broker.data_dir) != NULL, "%s: stderr does not name the data dir %s: %s",
           what, s_broker.data_dir, err);
    CHECKF(contains_ci(err, word1) || (word2 && contains_ci(err, word2)),
           "%s: stderr says neither \"%s\" nor \"%s\": %s", what, word1, word2 ? word2 : "-", err);
    harness_log("%s: refused in %lld ms with exit status %d", what,
                (long long)(harness_now_ms() - t0), WEXITSTATUS(status));
}

static void check_format(void)
{
    harness_broker_shutdown(&s_broker);
    uint8_t format[16], epoch[16], tmp[16];
    size_t flen = meta_record("format", format, sizeof format, NULL, 0);
    CHECKF(flen == 4, "the format record has %zu bytes, schema.h says a u32", flen);
    size_t elen = meta_record("epoch", epoch, sizeof epoch, NULL, 0);
    uint32_t version =
        (uint32_t)format[0] << 24 | (uint32_t)format[1] << 16 | (uint32_t)format[2] << 8 | format[3];
    harness_log("format record: version %u", version);

    /* The next version. */
    uint32_t next = version + 1;
    uint8_t newer[4] = {(uint8_t)(next >> 24), (uint8_t)(next >> 16), (uint8_t)(next >> 8),
                        (uint8_t)next};
    meta_record("format", tmp, sizeof tmp, newer, 4);
    expect_refusal("format version + 1", "version", NULL);
    CHECK_EQ(meta_record("format", tmp, sizeof tmp, NULL, 0), 4);
    CHECKF(memcmp(tmp, newer, 4) == 0, "the refused start rewrote the format record");
    CHECK_EQ(meta_record("epoch", tmp, sizeof tmp, NULL, 0), elen);
    CHECKF(memcmp(tmp, epoch, elen) == 0, "the refused start changed the epoch record");

    /* A record of another size (a u64 holding the same version). */
    uint8_t wide[8] = {0, 0, 0, 0, format[0], format[1], format[2], format[3]};
    meta_record("format", tmp, sizeof tmp, wide, 8);
    expect_refusal("format record of 8 bytes", "version", NULL);
    CHECK_EQ(meta_record("format", tmp, sizeof tmp, NULL, 0), 8);

    /* Put back: the data is all there. */
    meta_record("format", tmp, sizeof tmp, format, 4);
    harness_broker_respawn(&s_broker, NULL);
    CHECK_EQ(stored_count(), NMSG);
    harness_log("format record put back: warrend starts, %d messages there", NMSG);
}

static void check_lock(void)
{
    expect_refusal("a second warrend on the same data dir", "in use", "lock");
    harness_check_alive(&s_broker);
    CHECK_EQ(stored_count(), NMSG);
    harness_broker_restart(&s_broker);
    CHECK_EQ(stored_count(), NMSG);
    /* A SIGKILL'ed owner holds no lock. */
    harness_broker_crash_restart(&s_broker);
    CHECK_EQ(stored_count(), NMSG);
    harness_log("lock: the first warrend serves on, intact; after SIGKILL the lock is free");
}

int main(void)
{
    harness_watchdog(60);
    harness_broker_start(&s_broker);
    harness_require_own_broker(&s_broker);

    amqp_connection_state_t conn = harness_open(&s_broker);
    harness_queue_declare(conn, 1, "dq.keep", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    amqp_basic_properties_t props = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG, .delivery_mode = 2};
    for (int i = 0; i < NMSG; i++)
        harness_publish_props(conn, 1, "", "dq.keep", false, &props, "kept");
    CHECK_EQ(harness_wait_message_count(conn, 1, "dq.keep", NMSG, 2000), NMSG);
    harness_disconnect(conn);

    check_lock();
    check_format();

    CHECK(harness_broker_stop(&s_broker) == 0);
    harness_log("PASS");
    return 0;
}
