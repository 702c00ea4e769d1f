/* env.c — owns the LMDB environment, its lock file on the data dir, the named databases
 * (layouts in schema.h) and the id counter. Invariants: an environment is never used with a
 * format version it does not know; an open refused for its encryption key (crypt.h) writes
 * nothing (the key is checked in a read-only transaction first). */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include "storage/crypt.h"
#include "storage/env.h"
#include "storage/schema.h"

const char *storage_strerror(int rc)
{
    switch (rc) {
    case STORAGE_E_FORMAT:
        return "the data directory was written by an incompatible Warren version";
    case STORAGE_E_LOCKED:
        return "the data directory is in use by another warrend process";
    case STORAGE_E_CORRUPT:
        return "a stored record does not decode (the data directory is damaged)";
    case STORAGE_E_NOKEY:
        return "the data directory holds encrypted messages but no encryption key is configured";
    case STORAGE_E_WRONGKEY:
        return "the configured encryption key is not the one the stored messages are encrypted "
               "with";
    case STORAGE_E_ROTATING:
        return "the configured encryption key is the one an unfinished key rotation replaced";
    case STORAGE_E_DECRYPT:
        return "a stored message fails authentication (altered, or its key is not configured)";
    case STORAGE_E_CRYPTO:
        return "the cipher failed (OpenSSL)";
    default:
        return rc < 0 && rc > -4096 ? strerror(-rc) : mdb_strerror(rc);
    }
}

static int mkdir_p(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return -ENAMETOOLONG;
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(path, 0750) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(path, 0750) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Raises next_id above the last key of an id-keyed database. */
static int scan_ids(struct storage *st, MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc)
        return rc;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == 0 && k.mv_size >= 8 && load_be64(k.mv_data) >= st->next_id)
        st->next_id = load_be64(k.mv_data) + 1;
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int open_dbs(struct storage *st, const struct crypt_plan *plan)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc)
        return rc;
    struct { const char *name; MDB_dbi *dbi; } dbs[] = {
        {"meta", &st->meta}, {"exchanges", &st->exchanges}, {"queues", &st->queues},
        {"queue_meta", &st->queue_meta}, {"bindings", &st->bindings},
        {"messages", &st->messages}, {"msg_refs", &st->msg_refs}, {"qindex", &st->qindex},
        {"users", &st->users}, {"vhosts", &st->vhosts}, {"permissions", &st->permissions},
        {"topic_permissions", &st->topic_permissions}, {"params", &st->params},
        {"dedup", &st->dedup},
        {"delayed", &st->delayed},
    };
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++)
        if ((rc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE, dbs[i].dbi)) != 0)
            goto fail;
    st->next_id = 1;
    MDB_dbi idbs[] = {st->exchanges, st->queues, st->bindings, st->messages};
    for (size_t i = 0; i < sizeof idbs / sizeof idbs[0]; i++)
        if ((rc = scan_ids(st, txn, idbs[i])) != 0)
            goto fail;
    MDB_val key = {6, "format"}, val;
    rc = mdb_get(txn, st->meta, &key, &val);
    if (rc == MDB_NOTFOUND) {
        uint8_t v[4] = {0, 0, 0, STORAGE_FORMAT_VERSION};
        val = (MDB_val){sizeof v, v};
        rc = mdb_put(txn, st->meta, &key, &val, 0);
    } else if (rc == 0) {
        if (val.mv_size != 4 || load_be32(val.mv_data) != STORAGE_FORMAT_VERSION)
            rc = STORAGE_E_FORMAT;
    }
    if (rc)
        goto fail;
    MDB_val ekey = {5, "epoch"}, eval;
    rc = mdb_get(txn, st->meta, &ekey, &eval);
    st->epoch = rc == 0 && eval.mv_size == 4 ? load_be32(eval.mv_data) + 1 : 1;
    uint8_t ev[4];
    store_be32(ev, st->epoch);
    eval = (MDB_val){4, ev};
    if ((rc = mdb_put(txn, st->meta, &ekey, &eval, 0)) != 0)
        goto fail;
    MDB_val skey = {6, "seeded"}, sval;
    rc = mdb_get(txn, st->meta, &skey, &sval);
    if (rc && rc != MDB_NOTFOUND)
        goto fail;
    st->is_new = rc == MDB_NOTFOUND;
    if ((rc = crypt__apply_plan(st, txn, plan)) != 0)
        goto fail;
    return mdb_txn_commit(txn);
fail:
    mdb_txn_abort(txn);
    return rc;
}

uint64_t storage_new_id(struct storage *st)
{
    return st->next_id++;
}

bool storage_is_new(const struct storage *st)
{
    return st->is_new;
}

int storage_open(const char *dir, bool sync, struct storage **ret)
{
    struct storage_opts o = {.sync = sync};
    return storage_open_opts(dir, &o, ret);
}

int storage_open_opts(const char *dir, struct storage_opts *o, struct storage **ret)
{
    bool sync = o->sync;
    o->key_id[0] = o->stored_key_id[0] = o->rotating_from[0] = 0;
    o->messages = 0;
    if (o->key)
        storage_key_id(o->key, o->key_id);
    int rc = mkdir_p(dir);
    if (rc < 0)
        return rc;
    struct storage *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    st->sync = sync;
    st->nolock = o->nolock;
    st->lock_fd = -1;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cond, NULL);
    /* Writer first: the loop thread's page-in scans come one after another, and a lock that
     * lets a new reader in while a commit waits would starve the writer (confirms stall). */
    pthread_rwlockattr_t rwa;
    pthread_rwlockattr_init(&rwa);
    pthread_rwlockattr_setkind_np(&rwa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&st->map_lock, &rwa);
    pthread_rwlockattr_destroy(&rwa);
    st->done_tail = &st->done_head;
    if (!(st->dir = strdup(dir))) {
        rc = -ENOMEM;
        goto fail;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/warrend.lock", dir);
    st->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (st->lock_fd < 0) {
        rc = -errno;
        goto fail;
    }
    if (!st->nolock && flock(st->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK ? STORAGE_E_LOCKED : -errno;
        goto fail;
    }
    if ((rc = mdb_env_create(&st->env)) != 0)
        goto fail;
    mdb_env_set_maxdbs(st->env, 32); /* 15 in use (schema.h); not stored in the file */
    /* The map starts at 1 GiB (or the file's size, if larger) and doubles when full. */
    mdb_env_set_mapsize(st->env, (size_t)1 << 30);
    if ((rc = mdb_env_open(st->env, dir,
                           MDB_NOTLS | (sync ? 0 : MDB_NOSYNC) | (st->nolock ? MDB_NOLOCK : 0),
                           0640)) != 0)
        goto fail;
    struct crypt_plan plan;
    if ((rc = crypt__check(st, o->key, o, &plan)) != 0 || (rc = open_dbs(st, &plan)) != 0)
        goto fail;
    *ret = st;
    return 0;
fail:
    storage_close(st);
    return rc;
}

void storage_close(struct storage *st)
{
    if (!st)
        return;
    storage__batches_free(st); /* stops the writer thread first */
    if (st->env)
        mdb_env_close(st->env);
    crypt__free(st);
    if (st->lock_fd >= 0)
        close(st->lock_fd);
    pthread_rwlock_destroy(&st->map_lock);
    pthread_cond_destroy(&st->cond);
    pthread_mutex_destroy(&st->mu);
    free(st->dir);
    free(st);
}
