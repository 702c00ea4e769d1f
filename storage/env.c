/* env.c — owns the LMDB environment, its lock file on the data dir, and the `meta` database.
 * Key layout of `meta` (keys are ASCII, values big-endian):
 *   "format" -> u32 format version (STORAGE_FORMAT_VERSION); checked at every open.
 * Invariant: an environment is never used with a format version it does not know. */
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
#include "storage/env.h"

struct storage {
    MDB_env *env; /* owned */
    MDB_dbi meta;
    int lock_fd;  /* owned: flock on <dir>/warrend.lock keeps a second process out */
};

const char *storage_strerror(int rc)
{
    switch (rc) {
    case STORAGE_E_FORMAT:
        return "the data directory was written by an incompatible Warren version";
    case STORAGE_E_LOCKED:
        return "the data directory is in use by another warrend process";
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

static int check_format(struct storage *st)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc)
        return rc;
    rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &st->meta);
    if (rc)
        goto fail;
    MDB_val key = {6, "format"}, val;
    rc = mdb_get(txn, st->meta, &key, &val);
    if (rc == MDB_NOTFOUND) {
        uint8_t v[4] = {0, 0, 0, STORAGE_FORMAT_VERSION};
        val = (MDB_val){sizeof v, v};
        rc = mdb_put(txn, st->meta, &key, &val, 0);
    } else if (rc == 0) {
        const uint8_t *p = val.mv_data;
        if (val.mv_size != 4 ||
            ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]) !=
                STORAGE_FORMAT_VERSION)
            rc = STORAGE_E_FORMAT;
    }
    if (rc)
        goto fail;
    return mdb_txn_commit(txn);
fail:
    mdb_txn_abort(txn);
    return rc;
}

int storage_open(const char *dir, struct storage **ret)
{
    int rc = mkdir_p(dir);
    if (rc < 0)
        return rc;
    struct storage *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    char path[4096];
    snprintf(path, sizeof path, "%s/warrend.lock", dir);
    st->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (st->lock_fd < 0) {
        rc = -errno;
        free(st);
        return rc;
    }
    if (flock(st->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK ? STORAGE_E_LOCKED : -errno;
        goto fail;
    }
    if ((rc = mdb_env_create(&st->env)) != 0)
        goto fail;
    mdb_env_set_maxdbs(st->env, 16);
    mdb_env_set_mapsize(st->env, (size_t)1 << 30);
    if ((rc = mdb_env_open(st->env, dir, MDB_NOTLS, 0640)) != 0)
        goto fail;
    if ((rc = check_format(st)) != 0)
        goto fail;
    *ret = st;
    return 0;
fail:
    if (st->env)
        mdb_env_close(st->env);
    close(st->lock_fd);
    free(st);
    return rc;
}

void storage_close(struct storage *st)
{
    if (!st)
        return;
    mdb_env_close(st->env);
    close(st->lock_fd);
    free(st);
}
