/* test_qindex.c — storage/qindex.h: the queue-index key, value and queue_meta layouts. Round
 * trips at the edges, the key order LMDB relies on ((queue id, seq) numerically = memcmp),
 * the exact format-1 bytes, and every truncated or damaged value rejected with the outputs
 * left untouched. */
#include "unit_storage.h"

#include "storage/batch.h"
#include "storage/env.h"
#include "storage/qindex.h"

static const uint64_t edges[] = {0, 1, 0xff, 0x100, 0xffff, 0x10000, 0xffffffffu,
                                 0x100000000ull, 0x00ff00ff00ff00ffull, UINT64_MAX - 1,
                                 UINT64_MAX};
#define NEDGES (sizeof edges / sizeof edges[0])

static void key_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < NEDGES; i++) {
        for (size_t j = 0; j < NEDGES; j++) {
            uint8_t k[QINDEX_KEY_SIZE];
            uint64_t q = 0, s = 0;
            qindex_key_encode(k, edges[i], edges[j]);
            assert_st(qindex_key_decode(k, sizeof k, &q, &s), 0);
            assert_int_equal(q, edges[i]);
            assert_int_equal(s, edges[j]);
        }
    }
}

/* The format-1 bytes, pinned: changing them needs a STORAGE_FORMAT_VERSION bump. */
static void exact_bytes(void **state)
{
    (void)state;
    uint8_t k[QINDEX_KEY_SIZE], v[QINDEX_VAL_SIZE], m[QINDEX_META_SIZE];
    static const uint8_t want_k[QINDEX_KEY_SIZE] = {0, 0, 0, 0, 0, 0, 0x01, 0x02,
                                                    0, 0, 0, 0, 0, 0, 0x03, 0x04};
    static const uint8_t want_v[QINDEX_VAL_SIZE] = {
        0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, /* message id */
        0x01,                                           /* flags: transient */
        0x21, 0x22, 0x23, 0x24,                         /* epoch */
        0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, /* expiry */
        0x41, 0x42,                                     /* returns */
    };
    static const uint8_t want_m[QINDEX_META_SIZE] = {0, 0, 0, 0, 0, 0, 0, 5,
                                                     0, 0, 0, 0, 0, 0, 0x01, 0};
    qindex_key_encode(k, 0x0102, 0x0304);
    assert_memory_equal(k, want_k, sizeof k);
    qindex_val_encode(v, &(struct qindex_val){0x1112131415161718ull, STORAGE_IDX_TRANSIENT,
                                              0x21222324u, 0x3132333435363738ull, 0x4142});
    assert_memory_equal(v, want_v, sizeof v);
    qindex_meta_encode(m, &(struct qindex_meta){5, 256});
    assert_memory_equal(m, want_m, sizeof m);
}

struct kv {
    uint64_t q, s;
    uint8_t k[QINDEX_KEY_SIZE];
};

static int by_bytes(const void *a, const void *b)
{
    return memcmp(((const struct kv *)a)->k, ((const struct kv *)b)->k, QINDEX_KEY_SIZE);
}

/* LMDB's default order (memcmp, then length) must be numeric (queue id, seq) order: one
 * queue's entries contiguous, in seq order, and (qid + 1, 0) just past the last of qid. */
static void key_order(void **state)
{
    (void)state;
    enum { N = 4096 };
    struct kv *kv = calloc(N, sizeof *kv);
    assert_non_null(kv);
    uint64_t rnd = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < N; i++) {
        uint64_t r = unit_rand(&rnd);
        /* Few queue ids, seqs spread over every byte position (255 vs 256 and the like). */
        kv[i].q = i < NEDGES * NEDGES ? edges[i / NEDGES] : r % 5;
        kv[i].s = i < NEDGES * NEDGES ? edges[i % NEDGES] : unit_rand(&rnd) >> (r % 64);
        qindex_key_encode(kv[i].k, kv[i].q, kv[i].s);
    }
    qsort(kv, N, sizeof *kv, by_bytes);
    for (size_t i = 1; i < N; i++) {
        bool ordered = kv[i - 1].q < kv[i].q || (kv[i - 1].q == kv[i].q && kv[i - 1].s <= kv[i].s);
        if (!ordered)
            fail_msg("memcmp puts (%llu, %llu) before (%llu, %llu)",
                     (unsigned long long)kv[i - 1].q, (unsigned long long)kv[i - 1].s,
                     (unsigned long long)kv[i].q, (unsigned long long)kv[i].s);
    }
    /* The range bounds recover.c and batch.c position cursors with. */
    uint8_t lo[QINDEX_KEY_SIZE], last[QINDEX_KEY_SIZE], next[QINDEX_KEY_SIZE];
    for (uint64_t q = 1; q < 5; q++) {
        qindex_key_encode(lo, q, 0);
        qindex_key_encode(last, q, UINT64_MAX);
        qindex_key_encode(next, q + 1, 0);
        assert_true(memcmp(lo, last, sizeof lo) < 0);
        assert_true(memcmp(last, next, sizeof lo) < 0);
    }
    free(kv);
}

static void val_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < NEDGES; i++) {
        struct qindex_val in = {
            .msg_id = edges[i] ? edges[i] : 1,
            .flags = i & 1 ? STORAGE_IDX_TRANSIENT : 0,
            .epoch = (uint32_t)edges[NEDGES - 1 - i] ? (uint32_t)edges[NEDGES - 1 - i] : 7,
            .expires = edges[NEDGES - 1 - i],
            .returns = (uint16_t)edges[i],
        };
        struct qindex_val out;
        uint8_t v[QINDEX_VAL_SIZE];
        memset(&out, 0xa5, sizeof out);
        qindex_val_encode(v, &in);
        assert_st(qindex_val_decode(v, sizeof v, &out), 0);
        assert_int_equal(out.msg_id, in.msg_id);
        assert_int_equal(out.flags, in.flags);
        assert_int_equal(out.epoch, in.epoch);
        assert_int_equal(out.expires, in.expires);
        assert_int_equal(out.returns, in.returns);
    }
}

static void meta_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < NEDGES; i++) {
        struct qindex_meta in = {edges[i], edges[NEDGES - 1 - i]}, out = {0, 0};
        uint8_t m[QINDEX_META_SIZE];
        qindex_meta_encode(m, &in);
        assert_st(qindex_meta_decode(m, sizeof m, &out), 0);
        assert_int_equal(out.count, in.count);
        assert_int_equal(out.delivered_seq, in.delivered_seq);
    }
}

/* Every size but the right one is damage, in a buffer of exactly that size (ASan catches a
 * decoder reading past it); outputs stay untouched. */
static void wrong_sizes_rejected(void **state)
{
    (void)state;
    uint8_t good_v[QINDEX_VAL_SIZE];
    qindex_val_encode(good_v, &(struct qindex_val){42, 0, 1, 0, 0});
    for (size_t len = 0; len <= 2 * QINDEX_VAL_SIZE; len++) {
        uint8_t *p = malloc(len ? len : 1);
        assert_non_null(p);
        for (size_t i = 0; i < len; i++)
            p[i] = i < sizeof good_v ? good_v[i] : 0;
        struct qindex_val v = {.msg_id = 99, .epoch = 98};
        uint64_t q = 97, s = 96;
        struct qindex_meta m = {95, 94};
        if (len != QINDEX_VAL_SIZE) {
            assert_st(qindex_val_decode(p, len, &v), STORAGE_E_CORRUPT);
            assert_int_equal(v.msg_id, 99);
            assert_int_equal(v.epoch, 98);
        }
        if (len != QINDEX_KEY_SIZE) {
            assert_st(qindex_key_decode(p, len, &q, &s), STORAGE_E_CORRUPT);
            assert_int_equal(q, 97);
            assert_int_equal(s, 96);
        }
        if (len != QINDEX_META_SIZE) {
            assert_st(qindex_meta_decode(p, len, &m), STORAGE_E_CORRUPT);
            assert_int_equal(m.count, 95);
            assert_int_equal(m.delivered_seq, 94);
        }
        free(p);
    }
}

/* Right size, impossible content: message id 0, epoch 0, flag bits no version sets. */
static void damaged_values_rejected(void **state)
{
    (void)state;
    uint8_t v[QINDEX_VAL_SIZE];
    struct qindex_val out = {.msg_id = 99};
    qindex_val_encode(v, &(struct qindex_val){42, 0, 1, 0, 0});
    assert_st(qindex_val_decode(v, sizeof v, &out), 0);

    uint8_t bad[QINDEX_VAL_SIZE];
    memcpy(bad, v, sizeof v);
    memset(bad, 0, 8); /* message id 0 */
    out.msg_id = 99;
    assert_st(qindex_val_decode(bad, sizeof bad, &out), STORAGE_E_CORRUPT);
    assert_int_equal(out.msg_id, 99);

    memcpy(bad, v, sizeof v);
    memset(bad + 9, 0, 4); /* epoch 0 */
    assert_st(qindex_val_decode(bad, sizeof bad, &out), STORAGE_E_CORRUPT);

    for (int bit = 1; bit < 8; bit++) {
        memcpy(bad, v, sizeof v);
        bad[8] = (uint8_t)(1u << bit);
        assert_st(qindex_val_decode(bad, sizeof bad, &out), STORAGE_E_CORRUPT);
    }
    assert_int_equal(out.msg_id, 99);
}

static void stale_transient_only(void **state)
{
    (void)state;
    struct qindex_val persistent = {1, 0, 3, 0, 0}, transient = {1, STORAGE_IDX_TRANSIENT, 3, 0, 0};
    assert_false(qindex_val_stale(&persistent, 3));
    assert_false(qindex_val_stale(&persistent, 4));
    assert_false(qindex_val_stale(&transient, 3));
    assert_true(qindex_val_stale(&transient, 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_round_trip),
        cmocka_unit_test(exact_bytes),
        cmocka_unit_test(key_order),
        cmocka_unit_test(val_round_trip),
        cmocka_unit_test(meta_round_trip),
        cmocka_unit_test(wrong_sizes_rejected),
        cmocka_unit_test(damaged_values_rejected),
        cmocka_unit_test(stale_transient_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
