/* recover.c — owns the read side of storage: the start-up walk over tenancy records and
 * entities and the
 * page-in of queue messages. Start-up cost grows with the number of entities, not of
 * messages: per queue it reads one metadata record and two index keys (first and last).
 * Page-in hands each message's bytes, borrowed from the map (or, when encrypted, opened into
 * one reused buffer of crypt.c's), to the caller, which copies them once into its own object.
 * Invariant: no borrowed byte outlives the read transaction. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "storage/crypt.h"
#include "storage/env.h"
#include "storage/qindex.h"
#include "storage/records.h"
#include "storage/recover.h"
#include "storage/schema.h"

/* Fills the index-derived fields of q: count, delivered mark, seq range. */
static int queue_stats(struct storage *st, MDB_txn *txn, struct st_queue *q)
{
    uint8_t k[QINDEX_KEY_SIZE];
    store_be64(k, q->id);
    MDB_val key = {8, k}, val;
    struct qindex_meta meta;
    int rc = mdb_get(txn, st->queue_meta, &key, &val);
    if (rc == 0) {
        if ((rc = qindex_meta_decode(val.mv_data, val.mv_size, &meta)) != 0)
            return rc;
        q->count = meta.count;
        q->delivered_seq = meta.delivered_seq;
    } else if (rc != MDB_NOTFOUND) {
        return rc;
    }
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, st->qindex, &cur)) != 0)
        return rc;
    uint64_t kq, seq;
    qindex_key_encode(k, q->id, 0);
    key = (MDB_val){sizeof k, k};
    rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    if (rc == 0 && (rc = qindex_key_decode(key.mv_data, key.mv_size, &kq, &seq)) == 0 &&
        kq == q->id) {
        q->first_seq = seq;
        /* The last entry: just before the first key of the next queue id. */
        qindex_key_encode(k, q->id + 1, 0);
        key = (MDB_val){sizeof k, k};
        rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
        rc = mdb_cursor_get(cur, &key, &val, rc == 0 ? MDB_PREV : MDB_LAST);
        if (rc == 0 && (rc = qindex_key_decode(key.mv_data, key.mv_size, &kq, &seq)) == 0)
            q->next_seq = seq + 1;
    } else if (rc == 0 || rc == MDB_NOTFOUND) {
        q->count = 0;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int walk(struct storage *st, MDB_txn *txn, MDB_dbi dbi, char kind,
                const struct st_recover_ops *ops, void *arg)
{
    MDB_cursor *cur;
    MDB_val key, val;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc)
        return rc;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size != 8) {
            rc = STORAGE_E_CORRUPT;
            break;
        }
        uint64_t id = load_be64(key.mv_data);
        if (kind == 'x') {
            struct st_exchange x;
            if ((rc = st_exchange_decode(id, val.mv_data, val.mv_size, &x)) == 0)
                rc = ops->exchange(arg, &x);
        } else if (kind == 'q') {
            struct st_queue q;
            if ((rc = st_queue_decode(id, val.mv_data, val.mv_size, &q)) == 0 &&
                (rc = queue_stats(st, txn, &q)) == 0)
                rc = ops->queue(arg, &q);
        } else {
            struct st_binding b;
            if ((rc = st_binding_decode(id, val.mv_data, val.mv_size, &b)) == 0)
                rc = ops->binding(arg, &b);
        }
        if (rc)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Walks a tenancy table (kind 'v' 'u' 'p' 't'), when ops has its callback. */
static int walk_keyed(struct storage *st, MDB_txn *txn, char kind,
                      const struct st_recover_ops *ops, void *arg)
{
    MDB_dbi dbi = kind == 'v' ? st->vhosts : kind == 'u' ? st->users
                : kind == 'p' ? st->permissions : kind == 'r' ? st->params
                : st->topic_permissions;
    if ((kind == 'v' && !ops->vhost) || (kind == 'u' && !ops->user) ||
        (kind == 'p' && !ops->permission) || (kind == 't' && !ops->topic_permission) ||
        (kind == 'r' && !ops->param))
        return 0;
    MDB_cursor *cur;
    MDB_val key, val;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc)
        return rc;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        const uint8_t *k = key.mv_data, *v = val.mv_data;
        size_t kl = key.mv_size, vl = val.mv_size;
        if (kind == 'v') {
            struct st_vhost r;
            if ((rc = st_vhost_decode(k, kl, v, vl, &r)) == 0)
                rc = ops->vhost(arg, &r);
        } else if (kind == 'u') {
            struct st_user r;
            if ((rc = st_user_decode(k, kl, v, vl, &r)) == 0)
                rc = ops->user(arg, &r);
        } else if (kind == 'p') {
            struct st_permission r;
            if ((rc = st_permission_decode(k, kl, v, vl, &r)) == 0)
                rc = ops->permission(arg, &r);
        } else if (kind == 'r') {
            struct st_param r;
            if ((rc = st_param_decode(k, kl, v, vl, &r)) == 0)
                rc = ops->param(arg, &r);
        } else {
            struct st_topic_permission r;
            if ((rc = st_topic_permission_decode(k, kl, v, vl, &r)) == 0)
                rc = ops->topic_permission(arg, &r);
        }
        if (rc)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int storage_recover(struct storage *st, const struct st_recover_ops *ops, void *arg)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return rc;
    if ((rc = walk_keyed(st, txn, 'v', ops, arg)) == 0 &&
        (rc = walk_keyed(st, txn, 'u', ops, arg)) == 0 &&
        (rc = walk_keyed(st, txn, 'p', ops, arg)) == 0 &&
        (rc = walk_keyed(st, txn, 't', ops, arg)) == 0 &&
        (rc = walk_keyed(st, txn, 'r', ops, arg)) == 0 &&
        (rc = walk(st, txn, st->exchanges, 'x', ops, arg)) == 0 &&
        (rc = walk(st, txn, st->queues, 'q', ops, arg)) == 0)
        rc = walk(st, txn, st->bindings, 'b', ops, arg);
    mdb_txn_abort(txn);
    return rc;
}

int storage__read_msg(struct storage *st, MDB_txn *txn, uint64_t msg_id, const void **ret,
                      size_t *ret_len)
{
    uint8_t mk[8];
    store_be64(mk, msg_id);
    MDB_val mkey = {sizeof mk, mk}, mval;
    int rc = mdb_get(txn, st->messages, &mkey, &mval);
    if (rc)
        return rc == MDB_NOTFOUND ? STORAGE_E_CORRUPT : rc;
    return crypt__open_msg(st, msg_id, mval.mv_data, mval.mv_size, ret, ret_len);
}

int storage_scan_queue(struct storage *st, uint64_t qid, uint64_t from, size_t max,
                       st_entry_cb cb, void *arg, size_t *ret_n)
{
    size_t n = 0;
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    /* Held through the callbacks: the bytes they see are in the map, which must not move. */
    pthread_rwlock_rdlock(&st->map_lock);
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc) {
        pthread_rwlock_unlock(&st->map_lock);
        return rc;
    }
    if ((rc = mdb_cursor_open(txn, st->qindex, &cur)) != 0)
        goto out;
    uint8_t k[QINDEX_KEY_SIZE];
    qindex_key_encode(k, qid, from);
    MDB_val key = {sizeof k, k}, val;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == 0 && n < max;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        uint64_t kq, seq;
        struct qindex_val v;
        if ((rc = qindex_key_decode(key.mv_data, key.mv_size, &kq, &seq)) != 0)
            goto out;
        if (kq != qid)
            break;
        if ((rc = qindex_val_decode(val.mv_data, val.mv_size, &v)) != 0)
            goto out;
        struct st_entry e = {
            .seq = seq,
            .msg_id = v.msg_id,
            .flags = v.flags,
            .stale = qindex_val_stale(&v, st->epoch),
            .expires = v.expires,
            .returns = v.returns,
        };
        const void *data = NULL;
        size_t len = 0;
        if (!e.stale) { /* a stale entry's message is not read: it is to be dropped */
            rc = storage__read_msg(st, txn, e.msg_id, &data, &len);
            if (rc != 0 && rc != STORAGE_E_DECRYPT)
                goto out;
            e.err = rc; /* this one cannot be opened: the caller skips it */
        }
        e.len = len;
        if ((rc = cb(arg, &e, data, len)) < 0)
            goto out;
        n++;
        if (rc > 0) { /* the caller has had enough */
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

/* storage_read_queue's callback: a malloc'd copy of each message into out[n]. */
struct read_copy {
    struct st_entry *out; /* borrowed: the caller's array */
    size_t n;
};

static int read_copy(void *arg, const struct st_entry *e, const void *data, size_t len)
{
    struct read_copy *c = arg;
    struct st_entry *d = &c->out[c->n];
    *d = *e;
    if (data) {
        if (!(d->data = malloc(len ? len : 1)))
            return -ENOMEM;
        memcpy(d->data, data, len);
    }
    c->n++;
    return 0;
}

int storage_read_queue(struct storage *st, uint64_t qid, uint64_t from, size_t max,
                       struct st_entry *out, size_t *ret_n)
{
    struct read_copy c = {out, 0};
    size_t n;
    int rc = storage_scan_queue(st, qid, from, max, read_copy, &c, &n);
    if (rc) {
        while (c.n)
            free(out[--c.n].data);
    }
    *ret_n = c.n;
    return rc;
}

int storage_scan_dedup(struct storage *st, st_dedup_cb cb, void *arg)
{
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    pthread_rwlock_rdlock(&st->map_lock);
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc) {
        pthread_rwlock_unlock(&st->map_lock);
        return rc;
    }
    if ((rc = mdb_cursor_open(txn, st->dedup, &cur)) != 0)
        goto out;
    MDB_val key, val;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size <= 8 || val.mv_size != 16) {
            rc = STORAGE_E_CORRUPT;
            goto out;
        }
        const uint8_t *k = key.mv_data, *v = val.mv_data;
        if ((rc = cb(arg, load_be64(k), k + 8, key.mv_size - 8, load_be64(v), load_be64(v + 8))))
            goto out;
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
out:
    if (cur)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&st->map_lock);
    return rc;
}
