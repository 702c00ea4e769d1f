/* delayed.c — owns the `delayed` database's layout (schema.h, delayed.h) and its soonest-first
 * read. Writes happen in batch.c's ops, which keep the reference count of the named message.
 * Invariant: keys are big-endian (due, id), so cursor order is due order. */
#include <errno.h>
#include <pthread.h>
#include "storage/crypt.h"
#include "storage/delayed.h"
#include "storage/env.h"
#include "storage/schema.h"

void delayed_key_encode(uint8_t k[DELAYED_KEY_SIZE], uint64_t due, uint64_t msg_id)
{
    store_be64(k, due);
    store_be64(k + 8, msg_id);
}

int storage_scan_delayed(struct storage *st, uint64_t due, uint64_t msg_id, size_t max,
                         st_delayed_cb cb, void *arg, size_t *ret_n)
{
    size_t n = 0;
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    pthread_rwlock_rdlock(&st->map_lock); /* the bytes cb sees are in the map */
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc) {
        pthread_rwlock_unlock(&st->map_lock);
        return rc;
    }
    if ((rc = mdb_cursor_open(txn, st->delayed, &cur)) != 0)
        goto out;
    uint8_t k[DELAYED_KEY_SIZE];
    delayed_key_encode(k, due, msg_id);
    MDB_val key = {sizeof k, k}, val;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == 0 && n < max;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size != DELAYED_KEY_SIZE ||
            (val.mv_size != DELAYED_VAL_SIZE && val.mv_size != DELAYED_VAL_SIZE_T)) {
            rc = STORAGE_E_CORRUPT;
            goto out;
        }
        const uint8_t *kp = key.mv_data, *vp = val.mv_data;
        struct st_delayed e = {load_be64(kp), load_be64(kp + 8), (char)vp[0], load_be64(vp + 1),
                               val.mv_size == DELAYED_VAL_SIZE_T &&
                                   load_be32(vp + DELAYED_VAL_SIZE) != st->epoch};
        const void *data = NULL; /* a stale entry's message is not read: it is to be dropped */
        size_t len = 0;
        if (!e.stale && (rc = storage__read_msg(st, txn, e.msg_id, &data, &len)) != 0)
            goto out;
        if ((rc = cb(arg, &e, data, len)) < 0)
            goto out;
        n++;
        if (rc > 0) {
            rc = 0;
            break;
        }
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
out:
    if (cur)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&st->map_lock);
    crypt__scan_done(st);
    if (rc == 0)
        *ret_n = n;
    return rc;
}
