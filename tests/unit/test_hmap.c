/* test_hmap.c — lib/hmap.h and lib/siphash.h: SipHash-2-4 against the paper's test vectors, the
 * map's keyed hash (a name hashes differently under another key, so clients cannot aim names at
 * one slot), and put/get/del/next through growth and tombstones against a plain array model. */
#include <stdbool.h>

#include "unit.h"

#include "lib/hmap.h"
#include "lib/siphash.h"

static const uint8_t key_0_15[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

static void test_siphash_vectors(void **state)
{
    (void)state;
    uint8_t msg[64];
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    /* SipHash-2-4, key 00..0f: the empty message, and the paper's 15-byte example. */
    assert_int_equal(siphash(key_0_15, msg, 0, 2, 4), 0x726fdb47dd0e0e31ull);
    assert_int_equal(siphash(key_0_15, msg, 15, 2, 4), 0xa129ca6149be45e5ull);
    /* Every length differs from its neighbours (the length is part of the last block). */
    for (size_t n = 1; n < 64; n++)
        assert_true(siphash(key_0_15, msg, n, 1, 3) != siphash(key_0_15, msg, n - 1, 1, 3));
}

static void test_keyed(void **state)
{
    (void)state;
    uint8_t k1[16] = {1}, k2[16] = {2};
    static const char *const names[] = {"orders", "amq.gen-abc", "", "a.b.c", "q1"};
    int differ = 0;
    for (size_t i = 0; i < 5; i++) {
        hmap_seed(k1);
        uint32_t a = hmap_hash(names[i], strlen(names[i]));
        hmap_seed(k2);
        uint32_t b = hmap_hash(names[i], strlen(names[i]));
        assert_true(a >= 2 && b >= 2); /* 0 and 1 mark empty and deleted slots */
        differ += a != b;
    }
    assert_int_equal(differ, 5);
}

static void test_map_model(void **state)
{
    (void)state;
    enum { N = 5000 };
    static char keys[N][16];
    static bool in[N];
    struct hmap m = {0};
    uint64_t rng = 42;
    for (int i = 0; i < N; i++)
        snprintf(keys[i], sizeof keys[i], "k%d", i);
    for (int step = 0; step < 50000; step++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        int i = (int)((rng >> 33) % N);
        size_t len = strlen(keys[i]);
        switch ((rng >> 20) % 3) {
        case 0:
            assert_int_equal(hmap_put(&m, keys[i], len, keys[i]), 0);
            in[i] = true;
            break;
        case 1:
            assert_ptr_equal(hmap_del(&m, keys[i], len), in[i] ? keys[i] : NULL);
            in[i] = false;
            break;
        default:
            assert_ptr_equal(hmap_get(&m, keys[i], len), in[i] ? keys[i] : NULL);
        }
    }
    uint32_t want = 0, seen = 0;
    for (int i = 0; i < N; i++)
        want += in[i];
    void *v;
    for (uint32_t it = 0; hmap_next(&m, &it, &v);) {
        int i = atoi((const char *)v + 1);
        assert_true(in[i]);
        seen++;
    }
    assert_int_equal(seen, want);
    assert_int_equal(m.count, want);
    hmap_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash_vectors),
        cmocka_unit_test(test_keyed),
        cmocka_unit_test(test_map_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
