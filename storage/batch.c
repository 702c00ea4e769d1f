/* batch.c — owns write batches and the writer thread: group commit of everything the loop
 * added during a turn, in one LMDB write transaction, flushed before notify() runs.
 * Invariants: batches commit in number order, one at a time; a batch's borrowed message bytes
 * stay untouched until storage_collect() releases them on the loop thread; after the first
 * failed commit, or the first write lost for want of memory, nothing else is committed
 * (st->failed is sticky). Adding to a batch never aborts: it returns -ENOMEM. With a key
 * (crypt.h), a message is sealed straight into the space LMDB reserves for it, on the writer
 * thread: no copy and no allocation more than without one. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include "storage/batch.h"
#include "storage/crypt.h"
#include "storage/delayed.h"
#include "storage/env.h"
#include "storage/qindex.h"
#include "storage/records.h"
#include "storage/schema.h"

enum op_kind {
    OP_PUT_ENTITY, OP_DEL_ENTITY, OP_PUT_MSG, OP_PUT_IDX, OP_DEL_IDX, OP_DEL_IDX_FROM, OP_QMETA,
    OP_PUT_KEYED, OP_DEL_KEYED, /* tenancy records: key (and value) in the arena */
    OP_SEEDED,                  /* meta "seeded" */
    OP_ROTATE,                  /* a new key (crypt.h): body, an owned copy wiped when freed */
    OP_REENCRYPT,               /* a re-encryption step of at most a records */
    OP_PUT_DEDUP, OP_DEL_DEDUP, /* deduplication entries: a = owner, b = expiry, c = seq; the
                                 * key in the arena */
    OP_PUT_DELAYED, OP_DEL_DELAYED, OP_DEL_DELAYED_TARGET, /* delayed.h: a = due, b = id */
};

struct op {
    uint8_t kind;
    char ent;       /* 'x' 'q' 'b' for entity ops; 'u' 'v' 'p' 't' for keyed ops */
    uint8_t flags;  /* OP_PUT_IDX: STORAGE_IDX_* */
    uint32_t refs;  /* OP_PUT_MSG: index entries naming it; OP_PUT_IDX: returns */
    uint64_t a, b, c; /* ids, seqs: see the add functions; keyed ops: b = key size */
    size_t off, len;  /* entity record, message head or key + value in the arena;
                       * OP_PUT_IDX: off = expiry */
    const void *body; /* borrowed message bytes (the head is in the arena) */
    size_t hlen, blen;
    void (*release)(void *);
    void *release_arg;
};

struct st_batch {
    struct st_batch *next;
    uint64_t no;
    struct op *ops; /* owned */
    size_t nops, cap;
    uint8_t *arena; /* owned: copies of entity records */
    size_t alen, acap;
    int rc;
};

/* ---- building (loop thread) ---------------------------------------------------------- */

/* Makes room in the open batch (creating it) for nops more ops and nbytes more arena bytes.
 * 0, or -ENOMEM with nothing changed but spare capacity. */
static int batch_room(struct storage *st, size_t nops, size_t nbytes)
{
    struct st_batch *b = st->open;
    if (!b) {
        if (!(b = calloc(1, sizeof *b)))
            return -ENOMEM;
        b->no = st->batch_seq ? st->batch_seq : (st->batch_seq = 1);
        st->open = b;
    }
    if (b->cap - b->nops < nops) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->nops < nops) {
            if (cap > SIZE_MAX / 2 / sizeof *b->ops)
                return -ENOMEM;
            cap *= 2;
        }
        struct op *ops = realloc(b->ops, cap * sizeof *ops);
        if (!ops)
            return -ENOMEM;
        b->ops = ops;
        b->cap = cap;
    }
    if (b->acap - b->alen < nbytes) {
        size_t cap = b->acap ? b->acap : 4096;
        while (cap - b->alen < nbytes) {
            if (cap > SIZE_MAX / 2)
                return -ENOMEM;
            cap *= 2;
        }
        uint8_t *a = realloc(b->arena, cap);
        if (!a)
            return -ENOMEM;
        b->arena = a;
        b->acap = cap;
    }
    return 0;
}

int storage_reserve(struct storage *st, size_t nwrites, size_t nbytes)
{
    return batch_room(st, nwrites, nbytes);
}

/* A write found no room and is lost: what is stored would no longer match what the caller
 * believes, so storage fails as if a commit had (sticky; nothing more becomes durable). The
 * loop is woken to learn it from storage_collect. Returns rc. */
static int write_lost(struct storage *st, int rc)
{
    pthread_mutex_lock(&st->mu);
    if (!st->failed)
        st->failed = rc;
    void (*notify)(void *) = st->notify;
    void *notify_arg = st->notify_arg;
    pthread_mutex_unlock(&st->mu);
    if (notify)
        notify(notify_arg);
    return rc;
}

/* The next op of the open batch, after batch_room() made room for it. */
static struct op *add_op(struct storage *st, enum op_kind kind)
{
    struct st_batch *b = st->open;
    struct op *o = &b->ops[b->nops++];
    st->ops_added++;
    memset(o, 0, sizeof *o);
    o->kind = (uint8_t)kind;
    return o;
}

/* n bytes of the open batch's arena, after batch_room() made room for them. */
static uint8_t *arena(struct storage *st, size_t n, size_t *ret_off)
{
    struct st_batch *b = st->open;
    *ret_off = b->alen;
    b->alen += n;
    return b->arena + *ret_off;
}

static int put_entity(struct storage *st, char ent, uint64_t id, size_t size, uint8_t **ret)
{
    int rc = batch_room(st, 1, size);
    if (rc < 0)
        return write_lost(st, rc);
    size_t off;
    uint8_t *p = arena(st, size, &off);
    struct op *o = add_op(st, OP_PUT_ENTITY);
    o->ent = ent;
    o->a = id;
    o->off = off;
    o->len = size;
    *ret = p;
    return 0;
}

int storage_put_exchange(struct storage *st, const struct st_exchange *x)
{
    uint8_t *p;
    int rc = put_entity(st, 'x', x->id, st_exchange_size(x), &p);
    if (rc == 0)
        st_exchange_encode(x, p);
    return rc;
}

int storage_put_queue(struct storage *st, const struct st_queue *q)
{
    uint8_t *p;
    int rc = put_entity(st, 'q', q->id, st_queue_size(q), &p);
    if (rc == 0)
        st_queue_encode(q, p);
    return rc;
}

int storage_put_binding(struct storage *st, const struct st_binding *b)
{
    uint8_t *p;
    int rc = put_entity(st, 'b', b->id, st_binding_size(b), &p);
    if (rc == 0)
        st_binding_encode(b, p);
    return rc;
}

/* Adds a put of a tenancy record of `size` bytes (key first): the caller encodes it into
 * *ret_p and sets (*ret_op)->b to its key size. */
static int put_keyed(struct storage *st, char ent, size_t size, uint8_t **ret_p,
                     struct op **ret_op)
{
    int rc = batch_room(st, 1, size);
    if (rc < 0)
        return write_lost(st, rc);
    size_t off;
    *ret_p = arena(st, size, &off);
    struct op *o = add_op(st, OP_PUT_KEYED);
    o->ent = ent;
    o->off = off;
    o->len = size;
    *ret_op = o;
    return 0;
}

/* The next op of the open batch, or NULL after write_lost(). */
static struct op *new_op(struct storage *st, enum op_kind kind)
{
    int rc = batch_room(st, 1, 0);
    if (rc < 0) {
        write_lost(st, rc);
        return NULL;
    }
    return add_op(st, kind);
}

/* Adds a put of the record r: fits/size/encode are its records.h functions. */
#define PUT_KEYED(st, ent, r, fits, size, encode)                                              \
    do {                                                                                       \
        if (!fits(r))                                                                          \
            return -ENAMETOOLONG;                                                              \
        uint8_t *p_;                                                                           \
        struct op *o_;                                                                         \
        int rc_ = put_keyed(st, ent, size(r), &p_, &o_);                                       \
        if (rc_ == 0)                                                                          \
            o_->b = encode(r, p_);                                                             \
        return rc_;                                                                            \
    } while (0)

int storage_put_user(struct storage *st, const struct st_user *u)
{
    PUT_KEYED(st, 'u', u, st_user_fits, st_user_size, st_user_encode);
}

int storage_put_vhost(struct storage *st, const struct st_vhost *v)
{
    PUT_KEYED(st, 'v', v, st_vhost_fits, st_vhost_size, st_vhost_encode);
}

int storage_put_permission(struct storage *st, const struct st_permission *pm)
{
    PUT_KEYED(st, 'p', pm, st_permission_fits, st_permission_size, st_permission_encode);
}

int storage_put_topic_permission(struct storage *st, const struct st_topic_permission *tp)
{
    PUT_KEYED(st, 't', tp, st_topic_permission_fits, st_topic_permission_size,
              st_topic_permission_encode);
}

int storage_put_param(struct storage *st, const struct st_param *pr)
{
    PUT_KEYED(st, 'r', pr, st_param_fits, st_param_size, st_param_encode);
}

int storage_put_seeded(struct storage *st)
{
    return new_op(st, OP_SEEDED) ? 0 : -ENOMEM;
}

/* Adds a delete of the key made of names[0..n). */
static int del_keyed(struct storage *st, char ent, const struct st_bytes *names, size_t n)
{
    size_t klen = st_key_size(names, n);
    if (!klen)
        return -ENAMETOOLONG;
    int rc = batch_room(st, 1, klen);
    if (rc < 0)
        return write_lost(st, rc);
    size_t off;
    st_key_encode(names, n, arena(st, klen, &off));
    struct op *o = add_op(st, OP_DEL_KEYED);
    o->ent = ent;
    o->b = klen;
    o->off = off;
    o->len = klen;
    return 0;
}

int storage_del_user(struct storage *st, struct st_bytes name)
{
    return del_keyed(st, 'u', &name, 1);
}

int storage_del_vhost(struct storage *st, struct st_bytes name)
{
    return del_keyed(st, 'v', &name, 1);
}

int storage_del_permission(struct storage *st, struct st_bytes user, struct st_bytes vhost)
{
    struct st_bytes names[] = {user, vhost};
    return del_keyed(st, 'p', names, 2);
}

int storage_del_topic_permission(struct storage *st, struct st_bytes user, struct st_bytes vhost,
                                 struct st_bytes exchange)
{
    struct st_bytes names[] = {user, vhost, exchange};
    return del_keyed(st, 't', names, 3);
}

int storage_del_param(struct storage *st, struct st_bytes component, struct st_bytes vhost,
                      struct st_bytes name)
{
    struct st_bytes names[] = {component, vhost, name};
    return del_keyed(st, 'r', names, 3);
}

/* A deduplication entry's op: owner in a, its key copied into the arena. */
static struct op *dedup_op(struct storage *st, enum op_kind kind, uint64_t owner,
                           const void *key, size_t klen)
{
    int rc = batch_room(st, 1, klen);
    if (rc < 0) {
        write_lost(st, rc);
        return NULL;
    }
    size_t off;
    memcpy(arena(st, klen, &off), key, klen);
    struct op *o = add_op(st, kind);
    o->a = owner;
    o->off = off;
    o->len = klen;
    return o;
}

int storage_put_dedup(struct storage *st, uint64_t owner, const void *key, size_t klen,
                      uint64_t expires, uint64_t seq)
{
    if (klen == 0 || klen > STORAGE_DEDUP_KEY_MAX)
        return -ENAMETOOLONG;
    struct op *o = dedup_op(st, OP_PUT_DEDUP, owner, key, klen);
    if (!o)
        return -ENOMEM;
    o->b = expires;
    o->c = seq;
    return 0;
}

int storage_del_dedup(struct storage *st, uint64_t owner, const void *key, size_t klen)
{
    if (klen == 0 || klen > STORAGE_DEDUP_KEY_MAX)
        return -ENAMETOOLONG;
    return dedup_op(st, OP_DEL_DEDUP, owner, key, klen) ? 0 : -ENOMEM;
}

int storage_del_entity(struct storage *st, char kind, uint64_t id)
{
    struct op *o = new_op(st, OP_DEL_ENTITY);
    if (!o)
        return -ENOMEM;
    o->ent = kind;
    o->a = id;
    return 0;
}

int storage_put_msg(struct storage *st, uint64_t msg_id, uint32_t refs, const void *head,
                    size_t hlen, const void *body, size_t blen, void (*release)(void *),
                    void *release_arg)
{
    assert(hlen == 0 || *(const uint8_t *)head != CRYPT_MAGIC); /* reserved for envelopes */
    int rc = batch_room(st, 1, hlen);
    if (rc < 0) {
        if (release)
            release(release_arg);
        return write_lost(st, rc);
    }
    size_t off;
    uint8_t *copy = arena(st, hlen, &off);
    memcpy(copy, head, hlen);
    struct op *o = add_op(st, OP_PUT_MSG);
    o->a = msg_id;
    o->refs = refs;
    o->off = off;
    o->hlen = hlen;
    o->body = body;
    o->blen = blen;
    o->release = release;
    o->release_arg = release_arg;
    return 0;
}

int storage_put_idx(struct storage *st, uint64_t qid, uint64_t seq, uint64_t msg_id,
                    uint8_t flags, uint64_t expires, uint16_t returns)
{
    struct op *o = new_op(st, OP_PUT_IDX);
    if (!o)
        return -ENOMEM;
    o->a = qid;
    o->b = seq;
    o->c = msg_id;
    o->flags = flags;
    o->off = expires;
    o->refs = returns;
    return 0;
}

int storage_del_idx(struct storage *st, uint64_t qid, uint64_t seq)
{
    struct op *o = new_op(st, OP_DEL_IDX);
    if (!o)
        return -ENOMEM;
    o->a = qid;
    o->b = seq;
    return 0;
}

int storage_del_idx_from(struct storage *st, uint64_t qid, uint64_t from)
{
    struct op *o = new_op(st, OP_DEL_IDX_FROM);
    if (!o)
        return -ENOMEM;
    o->a = qid;
    o->b = from;
    return 0;
}

int storage_put_queue_meta(struct storage *st, uint64_t qid, uint64_t count,
                           uint64_t delivered_seq)
{
    struct op *o = new_op(st, OP_QMETA);
    if (!o)
        return -ENOMEM;
    o->a = qid;
    o->b = count;
    o->c = delivered_seq;
    return 0;
}

int storage_put_delayed(struct storage *st, uint64_t due, uint64_t msg_id, char kind,
                        uint64_t target, bool transient)
{
    struct op *o = new_op(st, OP_PUT_DELAYED);
    if (!o)
        return -ENOMEM;
    o->flags = transient;
    o->a = due;
    o->b = msg_id;
    o->ent = kind;
    o->c = target;
    return 0;
}

int storage_del_delayed(struct storage *st, uint64_t due, uint64_t msg_id)
{
    struct op *o = new_op(st, OP_DEL_DELAYED);
    if (!o)
        return -ENOMEM;
    o->a = due;
    o->b = msg_id;
    return 0;
}

int storage_del_delayed_target(struct storage *st, char kind, uint64_t target)
{
    struct op *o = new_op(st, OP_DEL_DELAYED_TARGET);
    if (!o)
        return -ENOMEM;
    o->ent = kind;
    o->c = target;
    return 0;
}

static void key_free(void *key)
{
    crypt__wipe(key, CRYPT_KEY_SIZE);
    free(key);
}

int storage_rotate_key(struct storage *st, const uint8_t key[CRYPT_KEY_SIZE])
{
    if (!st->crypt)
        return -EINVAL;
    /* A copy of its own, not in the arena: a growing arena is moved by realloc, which would
     * leave the key's bytes behind in freed memory. */
    uint8_t *copy = malloc(CRYPT_KEY_SIZE);
    if (!copy)
        return -ENOMEM;
    int rc = batch_room(st, 1, 0);
    if (rc == 0)
        rc = crypt__loop_rotate(st, key);
    if (rc) {
        free(copy);
        return rc;
    }
    memcpy(copy, key, CRYPT_KEY_SIZE);
    struct op *o = add_op(st, OP_ROTATE);
    o->body = copy;
    o->release = key_free;
    o->release_arg = copy;
    return 0;
}

int storage_reencrypt_step(struct storage *st, size_t max)
{
    struct op *o = new_op(st, OP_REENCRYPT);
    if (!o)
        return -ENOMEM;
    o->a = max;
    return 0;
}

uint64_t storage_writes(const struct storage *st)
{
    return st->ops_added;
}

uint64_t storage_batch_no(const struct storage *st)
{
    return st->batch_seq ? st->batch_seq : 1;
}

/* ---- committing (writer thread) ------------------------------------------------------ */

static MDB_dbi entity_dbi(struct storage *st, char ent)
{
    return ent == 'x' ? st->exchanges : ent == 'q' ? st->queues : st->bindings;
}

static MDB_dbi keyed_dbi(struct storage *st, char ent)
{
    switch (ent) {
    case 'u':
        return st->users;
    case 'v':
        return st->vhosts;
    case 'p':
        return st->permissions;
    case 'r':
        return st->params;
    default:
        return st->topic_permissions;
    }
}

/* One index entry less names msg_id: drop the message when it was the last. */
static int msg_deref(struct storage *st, MDB_txn *txn, uint64_t msg_id)
{
    uint8_t k[8];
    store_be64(k, msg_id);
    MDB_val key = {8, k}, val;
    int rc = mdb_get(txn, st->msg_refs, &key, &val);
    if (rc == 0 && val.mv_size == 4) {
        uint32_t n = load_be32(val.mv_data);
        if (n > 2) {
            uint8_t v[4];
            store_be32(v, n - 1);
            val = (MDB_val){4, v};
            return mdb_put(txn, st->msg_refs, &key, &val, 0);
        }
        return mdb_del(txn, st->msg_refs, &key, NULL);
    }
    if (rc != MDB_NOTFOUND)
        return rc;
    rc = mdb_del(txn, st->messages, &key, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Deletes qindex entries of qid from seq `from` on, dereferencing their messages. */
static int del_index_from(struct storage *st, MDB_txn *txn, uint64_t qid, uint64_t from)
{
    MDB_cursor *cur;
    uint8_t k[QINDEX_KEY_SIZE];
    qindex_key_encode(k, qid, from);
    MDB_val key = {sizeof k, k}, val;
    int rc = mdb_cursor_open(txn, st->qindex, &cur);
    if (rc)
        return rc;
    rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    while (rc == 0) {
        uint64_t kq, kseq;
        struct qindex_val v;
        if ((rc = qindex_key_decode(key.mv_data, key.mv_size, &kq, &kseq)) != 0 || kq != qid)
            break;
        if ((rc = qindex_val_decode(val.mv_data, val.mv_size, &v)) != 0)
            break;
        if ((rc = mdb_cursor_del(cur, 0)) != 0 || (rc = msg_deref(st, txn, v.msg_id)) != 0)
            break;
        /* After a delete the cursor rests on the next entry (or past the end). */
        rc = mdb_cursor_get(cur, &key, &val, MDB_GET_CURRENT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND || rc == EINVAL ? 0 : rc;
}

/* Deletes every deduplication entry of owner (its exchange or queue is deleted). */
static int del_dedup_all(struct storage *st, MDB_txn *txn, uint64_t owner)
{
    MDB_cursor *cur;
    uint8_t k[8];
    store_be64(k, owner);
    MDB_val key = {sizeof k, k}, val;
    int rc = mdb_cursor_open(txn, st->dedup, &cur);
    if (rc)
        return rc;
    rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    while (rc == 0 && key.mv_size > 8 && memcmp(key.mv_data, k, 8) == 0) {
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
        rc = mdb_cursor_get(cur, &key, &val, MDB_GET_CURRENT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND || rc == EINVAL ? 0 : rc;
}

/* Deletes the delayed entries of one target (a whole-database walk: targets are deleted
 * rarely, and the database is keyed by due time), dereferencing their messages. */
static int del_delayed_target(struct storage *st, MDB_txn *txn, char kind, uint64_t target)
{
    MDB_cursor *cur;
    MDB_val key, val;
    int rc = mdb_cursor_open(txn, st->delayed, &cur);
    if (rc)
        return rc;
    rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
    while (rc == 0) {
        const uint8_t *v = val.mv_data;
        if (key.mv_size == DELAYED_KEY_SIZE && val.mv_size >= DELAYED_VAL_SIZE &&
            (char)v[0] == kind && load_be64(v + 1) == target) {
            uint64_t id = load_be64((const uint8_t *)key.mv_data + 8);
            if ((rc = mdb_cursor_del(cur, 0)) != 0 || (rc = msg_deref(st, txn, id)) != 0)
                break;
            rc = mdb_cursor_get(cur, &key, &val, MDB_GET_CURRENT);
        } else {
            rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
        }
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND || rc == EINVAL ? 0 : rc;
}

static int apply_op(struct storage *st, MDB_txn *txn, const struct st_batch *b, const struct op *o)
{
    uint8_t k[QINDEX_KEY_SIZE], v[QINDEX_VAL_SIZE];
    MDB_val key = {8, k}, val;
    int rc;
    store_be64(k, o->a);
    switch (o->kind) {
    case OP_PUT_ENTITY:
        val = (MDB_val){o->len, b->arena + o->off};
        return mdb_put(txn, entity_dbi(st, o->ent), &key, &val, 0);
    case OP_DEL_ENTITY:
        rc = mdb_del(txn, entity_dbi(st, o->ent), &key, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
        if (o->ent != 'b' && (rc = del_dedup_all(st, txn, o->a)) != 0)
            return rc;
        if (o->ent != 'q')
            return 0;
        rc = mdb_del(txn, st->queue_meta, &key, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
        return del_index_from(st, txn, o->a, 0);
    case OP_PUT_MSG: {
        bool seal = crypt__sealing(st);
        val = (MDB_val){o->hlen + o->blen + (seal ? CRYPT_OVERHEAD : 0), NULL};
        if ((rc = mdb_put(txn, st->messages, &key, &val, MDB_RESERVE)) != 0)
            return rc;
        if (seal) {
            if ((rc = crypt__seal_msg(st, o->a, b->arena + o->off, o->hlen, o->body, o->blen,
                                      val.mv_data)) != 0)
                return rc;
        } else {
            memcpy(val.mv_data, b->arena + o->off, o->hlen);
            if (o->blen)
                memcpy((uint8_t *)val.mv_data + o->hlen, o->body, o->blen);
        }
        if (o->refs <= 1)
            return 0;
        store_be32(v, o->refs);
        val = (MDB_val){4, v};
        return mdb_put(txn, st->msg_refs, &key, &val, 0);
    }
    case OP_ROTATE:
        return crypt__apply_rotate(st, txn, o->body);
    case OP_REENCRYPT:
        return crypt__apply_step(st, txn, o->a);
    case OP_PUT_IDX:
        qindex_key_encode(k, o->a, o->b);
        key.mv_size = QINDEX_KEY_SIZE;
        qindex_val_encode(v, &(struct qindex_val){.msg_id = o->c, .flags = o->flags,
                                                  .epoch = st->epoch, .expires = o->off,
                                                  .returns = (uint16_t)o->refs});
        val = (MDB_val){QINDEX_VAL_SIZE, v};
        return mdb_put(txn, st->qindex, &key, &val, 0);
    case OP_DEL_IDX: {
        struct qindex_val iv;
        qindex_key_encode(k, o->a, o->b);
        key.mv_size = QINDEX_KEY_SIZE;
        rc = mdb_get(txn, st->qindex, &key, &val);
        if (rc == MDB_NOTFOUND)
            return 0;
        if (rc)
            return rc;
        if ((rc = qindex_val_decode(val.mv_data, val.mv_size, &iv)) != 0)
            return rc;
        if ((rc = mdb_del(txn, st->qindex, &key, NULL)) != 0)
            return rc;
        return msg_deref(st, txn, iv.msg_id);
    }
    case OP_DEL_IDX_FROM:
        return del_index_from(st, txn, o->a, o->b);
    case OP_PUT_KEYED:
        key = (MDB_val){o->b, b->arena + o->off};
        val = (MDB_val){o->len - o->b, b->arena + o->off + o->b};
        return mdb_put(txn, keyed_dbi(st, o->ent), &key, &val, 0);
    case OP_DEL_KEYED:
        key = (MDB_val){o->b, b->arena + o->off};
        rc = mdb_del(txn, keyed_dbi(st, o->ent), &key, NULL);
        return rc == MDB_NOTFOUND ? 0 : rc;
    case OP_SEEDED:
        key = (MDB_val){6, "seeded"};
        val = (MDB_val){0, ""};
        return mdb_put(txn, st->meta, &key, &val, 0);
    case OP_PUT_DEDUP:
    case OP_DEL_DEDUP: {
        uint8_t dk[8 + STORAGE_DEDUP_KEY_MAX];
        memcpy(dk, k, 8);
        memcpy(dk + 8, b->arena + o->off, o->len);
        key = (MDB_val){8 + o->len, dk};
        if (o->kind == OP_DEL_DEDUP) {
            rc = mdb_del(txn, st->dedup, &key, NULL);
            return rc == MDB_NOTFOUND ? 0 : rc;
        }
        store_be64(v, o->b);
        store_be64(v + 8, o->c);
        val = (MDB_val){16, v};
        return mdb_put(txn, st->dedup, &key, &val, 0);
    }
    case OP_PUT_DELAYED: {
        uint8_t dk[DELAYED_KEY_SIZE], dv[DELAYED_VAL_SIZE_T];
        delayed_key_encode(dk, o->a, o->b);
        dv[0] = (uint8_t)o->ent;
        store_be64(dv + 1, o->c);
        store_be32(dv + DELAYED_VAL_SIZE, st->epoch);
        key = (MDB_val){sizeof dk, dk};
        val = (MDB_val){o->flags ? DELAYED_VAL_SIZE_T : DELAYED_VAL_SIZE, dv};
        return mdb_put(txn, st->delayed, &key, &val, 0);
    }
    case OP_DEL_DELAYED: {
        uint8_t dk[DELAYED_KEY_SIZE];
        delayed_key_encode(dk, o->a, o->b);
        key = (MDB_val){sizeof dk, dk};
        rc = mdb_del(txn, st->delayed, &key, NULL);
        if (rc == MDB_NOTFOUND) /* gone with its target meanwhile */
            return 0;
        return rc ? rc : msg_deref(st, txn, o->b);
    }
    case OP_DEL_DELAYED_TARGET:
        return del_delayed_target(st, txn, o->ent, o->c);
    case OP_QMETA:
        qindex_meta_encode(v, &(struct qindex_meta){.count = o->b, .delivered_seq = o->c});
        val = (MDB_val){QINDEX_META_SIZE, v};
        return mdb_put(txn, st->queue_meta, &key, &val, 0);
    default:
        return EINVAL;
    }
}

static int commit_txn(struct storage *st, const struct st_batch *b);

/* One write transaction; under MDB_NOLOCK no read transaction may run meanwhile (LMDB would
 * reuse pages an old snapshot still shows), so it holds map_lock as the writer. */
static int commit_once(struct storage *st, const struct st_batch *b)
{
    if (!st->nolock)
        return commit_txn(st, b);
    pthread_rwlock_wrlock(&st->map_lock);
    int rc = commit_txn(st, b);
    pthread_rwlock_unlock(&st->map_lock);
    return rc;
}

static int commit_txn(struct storage *st, const struct st_batch *b)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc)
        return rc;
    crypt__txn_begin(st);
    for (size_t i = 0; i < b->nops; i++) {
        if ((rc = apply_op(st, txn, b, &b->ops[i])) != 0) {
            mdb_txn_abort(txn);
            crypt__txn_abort(st);
            return rc;
        }
    }
    if ((rc = mdb_txn_commit(txn)) != 0) {
        crypt__txn_abort(st);
        return rc;
    }
    crypt__txn_commit(st);
    return 0;
}

/* LMDB reports a write cut short by a full disk as EIO: tell that apart from a failing disk
 * by the free space left (less than the batch needs plus 64 MiB counts as full). */
static bool disk_nearly_full(struct storage *st, const struct st_batch *b)
{
    struct statvfs sv;
    if (!st->dir || statvfs(st->dir, &sv) != 0)
        return false;
    uint64_t need = (64u << 20) + b->alen;
    for (size_t i = 0; i < b->nops; i++)
        need += b->ops[i].blen + b->ops[i].hlen;
    return (uint64_t)sv.f_bavail * sv.f_frsize < need;
}

/* Commits b; grows the map when it is full and waits out a full disk. */
static int commit_batch(struct storage *st, const struct st_batch *b)
{
    for (;;) {
        int rc = commit_once(st, b);
        if (rc == MDB_MAP_FULL) {
            MDB_envinfo info;
            mdb_env_info(st->env, &info);
            pthread_rwlock_wrlock(&st->map_lock);
            rc = mdb_env_set_mapsize(st->env, info.me_mapsize * 2);
            pthread_rwlock_unlock(&st->map_lock);
            if (rc)
                return rc;
            continue;
        }
        if (rc == ENOSPC || rc == EDQUOT || (rc == EIO && disk_nearly_full(st, b))) {
            bool first = atomic_exchange(&st->disk_full, 1) == 0;
            pthread_mutex_lock(&st->mu);
            bool stop = st->closing;
            void (*notify)(void *) = st->notify;
            void *notify_arg = st->notify_arg;
            pthread_mutex_unlock(&st->mu);
            if (first && notify) /* let the loop block publishers now */
                notify(notify_arg);
            if (stop)
                return rc;
            sleep(1);
            continue;
        }
        atomic_store(&st->disk_full, 0); /* before writer_main's notify: the loop sees it */
        return rc;
    }
}

static void *writer_main(void *arg)
{
    struct storage *st = arg;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->inflight && !st->stopping)
            pthread_cond_wait(&st->cond, &st->mu);
        struct st_batch *b = st->inflight;
        if (!b)
            break;
        int failed = st->failed;
        pthread_mutex_unlock(&st->mu);
        int rc = failed ? failed : commit_batch(st, b);
        pthread_mutex_lock(&st->mu);
        b->rc = rc;
        if (rc && !st->failed)
            st->failed = rc;
        *st->done_tail = b;
        st->done_tail = &b->next;
        st->inflight = NULL;
        pthread_cond_broadcast(&st->cond);
        void (*notify)(void *) = st->notify;
        void *notify_arg = st->notify_arg;
        pthread_mutex_unlock(&st->mu);
        if (notify)
            notify(notify_arg);
        pthread_mutex_lock(&st->mu);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

int storage_start(struct storage *st, void (*notify)(void *arg), void *arg)
{
    st->notify = notify;
    st->notify_arg = arg;
    int rc = pthread_create(&st->thread, NULL, writer_main, st);
    if (rc)
        return -rc;
    st->thread_started = true;
    return 0;
}

int storage_submit(struct storage *st)
{
    int submitted = 0;
    pthread_mutex_lock(&st->mu);
    if (!st->inflight && st->open && st->open->nops && st->thread_started) {
        st->inflight = st->open;
        st->open = NULL;
        st->batch_seq++;
        pthread_cond_signal(&st->cond);
        submitted = 1;
    }
    pthread_mutex_unlock(&st->mu);
    return submitted;
}

static void batch_free(struct st_batch *b)
{
    for (size_t i = 0; i < b->nops; i++)
        if (b->ops[i].release) /* messages' references; a new key's copy is wiped */
            b->ops[i].release(b->ops[i].release_arg);
    free(b->ops);
    free(b->arena);
    free(b);
}

uint64_t storage_collect(struct storage *st, int *ret_failed)
{
    pthread_mutex_lock(&st->mu);
    struct st_batch *list = st->done_head;
    st->done_head = NULL;
    st->done_tail = &st->done_head;
    *ret_failed = st->failed;
    pthread_mutex_unlock(&st->mu);
    uint64_t durable = 0;
    while (list) {
        struct st_batch *b = list;
        list = b->next;
        if (b->rc == 0 && b->no > durable)
            durable = b->no;
        batch_free(b);
    }
    return durable;
}

int storage_disk_full(const struct storage *st)
{
    return atomic_load(&st->disk_full);
}

void storage__batches_free(struct storage *st)
{
    if (st->thread_started) {
        /* Commit what is left, without notifying a loop that may be gone. */
        pthread_mutex_lock(&st->mu);
        st->notify = NULL;
        st->closing = true; /* a commit stuck on a full disk gives up (it was never confirmed) */
        pthread_mutex_unlock(&st->mu);
        do { /* inflight is the writer's: read it under mu only */
            pthread_mutex_lock(&st->mu);
            while (st->inflight)
                pthread_cond_wait(&st->cond, &st->mu);
            pthread_mutex_unlock(&st->mu);
        } while (storage_submit(st));
        pthread_mutex_lock(&st->mu);
        st->stopping = true;
        pthread_cond_broadcast(&st->cond);
        pthread_mutex_unlock(&st->mu);
        pthread_join(st->thread, NULL);
        st->thread_started = false;
    }
    int failed;
    storage_collect(st, &failed);
    if (st->open) {
        batch_free(st->open);
        st->open = NULL;
    }
}
