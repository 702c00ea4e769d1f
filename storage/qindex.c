/* qindex.c — owns the byte layout of queue-index keys, values and queue metadata (qindex.h).
 * Does not own any LMDB access: batch.c writes and recover.c reads, with these encodings.
 * Invariant: every decoder checks the exact size first and reports damage as
 * STORAGE_E_CORRUPT, leaving its outputs untouched. */
#include <assert.h>
#include "lib/byteorder.h"
#include "storage/batch.h"
#include "storage/env.h"
#include "storage/qindex.h"

enum { KNOWN_FLAGS = STORAGE_IDX_TRANSIENT };

void qindex_key_encode(uint8_t key[QINDEX_KEY_SIZE], uint64_t qid, uint64_t seq)
{
    store_be64(key, qid);
    store_be64(key + 8, seq);
}

int qindex_key_decode(const void *key, size_t len, uint64_t *ret_qid, uint64_t *ret_seq)
{
    const uint8_t *p = key;
    if (len != QINDEX_KEY_SIZE)
        return STORAGE_E_CORRUPT;
    *ret_qid = load_be64(p);
    *ret_seq = load_be64(p + 8);
    return 0;
}

void qindex_val_encode(uint8_t val[QINDEX_VAL_SIZE], const struct qindex_val *v)
{
    assert(v->msg_id && v->epoch && !(v->flags & ~KNOWN_FLAGS));
    store_be64(val, v->msg_id);
    val[8] = v->flags;
    store_be32(val + 9, v->epoch);
    store_be64(val + 13, v->expires);
    store_be16(val + 21, v->returns);
}

int qindex_val_decode(const void *val, size_t len, struct qindex_val *ret)
{
    const uint8_t *p = val;
    if (len != QINDEX_VAL_SIZE)
        return STORAGE_E_CORRUPT;
    struct qindex_val v = {
        .msg_id = load_be64(p),
        .flags = p[8],
        .epoch = load_be32(p + 9),
        .expires = load_be64(p + 13),
        .returns = load_be16(p + 21),
    };
    if (!v.msg_id || !v.epoch || (v.flags & ~KNOWN_FLAGS))
        return STORAGE_E_CORRUPT;
    *ret = v;
    return 0;
}

bool qindex_val_stale(const struct qindex_val *v, uint32_t epoch)
{
    return (v->flags & STORAGE_IDX_TRANSIENT) && v->epoch != epoch;
}

void qindex_meta_encode(uint8_t val[QINDEX_META_SIZE], const struct qindex_meta *m)
{
    store_be64(val, m->count);
    store_be64(val + 8, m->delivered_seq);
}

int qindex_meta_decode(const void *val, size_t len, struct qindex_meta *ret)
{
    const uint8_t *p = val;
    if (len != QINDEX_META_SIZE)
        return STORAGE_E_CORRUPT;
    ret->count = load_be64(p);
    ret->delivered_seq = load_be64(p + 8);
    return 0;
}
