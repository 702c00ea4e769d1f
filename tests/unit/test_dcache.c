/* test_dcache.c — lib/dcache.h, the deduplication cache: insert and hit, expiry (an expired key
 * is absent and may be added again), eviction of the oldest when full (in insertion order, a
 * re-added key becoming the newest), delete from the middle, growth from empty to the bound,
 * and a random run against a plain array model with dcache_check() after every step. */
#include <stdbool.h>

#include "unit.h"

#include "lib/dcache.h"

static struct dcache_key key(unsigned n)
{
    struct dcache_key k = {0};
    k.len = (uint8_t)snprintf((char *)k.b, sizeof k.b, "id-%u", n);
    return k;
}

static void test_insert_hit(void **state)
{
    (void)state;
    struct dcache c;
    dcache_init(&c, 8);
    struct dcache_key a = key(1), b = key(2);
    assert_null(dcache_find(&c, &a, 0));
    assert_rc(dcache_add(&c, &a, 0, 0, NULL), 0);
    assert_non_null(dcache_find(&c, &a, 1000));
    assert_null(dcache_find(&c, &b, 1000));
    assert_rc(dcache_add(&c, &b, 0, 0, NULL), 0);
    assert_int_equal(c.count, 2);
    assert_true(dcache_del(&c, &a));
    assert_false(dcache_del(&c, &a));
    assert_null(dcache_find(&c, &a, 0));
    assert_non_null(dcache_find(&c, &b, 0));
    assert_rc(dcache_check(&c), 0);
    dcache_free(&c);
}

static void test_expiry(void **state)
{
    (void)state;
    struct dcache c;
    dcache_init(&c, 8);
    struct dcache_key a = key(1);
    assert_rc(dcache_add(&c, &a, 100, 0, NULL), 0);
    assert_non_null(dcache_find(&c, &a, 99));
    assert_null(dcache_find(&c, &a, 100)); /* expired at its expiry */
    /* Added again: replaces the expired entry, not a second one. */
    assert_rc(dcache_add(&c, &a, 300, 0, NULL), 0);
    assert_int_equal(c.count, 1);
    assert_non_null(dcache_find(&c, &a, 200));
    assert_rc(dcache_check(&c), 0);
    dcache_free(&c);
}

static void test_eviction_order(void **state)
{
    (void)state;
    struct dcache c;
    dcache_init(&c, 3);
    struct dcache_key ev;
    for (unsigned i = 1; i <= 3; i++) {
        struct dcache_key k = key(i);
        assert_rc(dcache_add(&c, &k, 0, 0, &ev), 0);
    }
    struct dcache_key k1 = key(1), k2 = key(2), k4 = key(4), k5 = key(5);
    /* 1 is re-added: it becomes the newest, so 2 is now the oldest. */
    assert_rc(dcache_add(&c, &k1, 0, 0, &ev), 0);
    assert_rc(dcache_add(&c, &k4, 0, 0, &ev), 1);
    assert_memory_equal(&ev, &k2, sizeof ev);
    assert_null(dcache_find(&c, &k2, 0));
    assert_rc(dcache_add(&c, &k5, 0, 0, &ev), 1);
    struct dcache_key k3 = key(3);
    assert_memory_equal(&ev, &k3, sizeof ev);
    assert_int_equal(c.count, 3);
    assert_non_null(dcache_find(&c, &k1, 0));
    assert_non_null(dcache_find(&c, &k4, 0));
    assert_non_null(dcache_find(&c, &k5, 0));
    /* A delete in the middle keeps the order of the rest: 1, 5 remain; 1 is the oldest. */
    assert_true(dcache_del(&c, &k4));
    struct dcache_key k6 = key(6), k7 = key(7);
    assert_rc(dcache_add(&c, &k6, 0, 0, &ev), 0);
    assert_rc(dcache_add(&c, &k7, 0, 0, &ev), 1);
    assert_memory_equal(&ev, &k1, sizeof ev);
    assert_rc(dcache_check(&c), 0);
    /* seq numbers follow insertion and can be given (a restart restores them). */
    assert_true(dcache_find(&c, &k7, 0)->seq > dcache_find(&c, &k6, 0)->seq);
    dcache_clear(&c);
    assert_int_equal(c.count, 0);
    assert_rc(dcache_check(&c), 0);
    dcache_free(&c);
}

static void test_growth_bounded(void **state)
{
    (void)state;
    struct dcache c;
    dcache_init(&c, 1000);
    for (unsigned i = 0; i < 100000; i++) {
        struct dcache_key k = key(i);
        assert_true(dcache_add(&c, &k, 0, 0, NULL) >= 0);
    }
    assert_int_equal(c.count, 1000);
    assert_int_equal(c.cap, 1000); /* never beyond the bound */
    struct dcache_key last = key(99999), gone = key(98999);
    assert_non_null(dcache_find(&c, &last, 0));
    assert_null(dcache_find(&c, &gone, 0));
    assert_rc(dcache_check(&c), 0);
    dcache_free(&c);
    /* Unbounded: grows with its content. */
    dcache_init(&c, 0);
    for (unsigned i = 0; i < 5000; i++) {
        struct dcache_key k = key(i);
        assert_rc(dcache_add(&c, &k, 0, 0, NULL), 0);
    }
    assert_int_equal(c.count, 5000);
    assert_rc(dcache_check(&c), 0);
    dcache_free(&c);
}

static void test_model(void **state)
{
    (void)state;
    enum { N = 64, MAX = 16 };
    uint64_t order[N]; /* insertion number per key, 0: absent */
    memset(order, 0, sizeof order);
    uint64_t clock = 0;
    struct dcache c;
    dcache_init(&c, MAX);
    srand(7);
    for (int step = 0; step < 20000; step++) {
        unsigned i = (unsigned)rand() % N;
        struct dcache_key k = key(i), ev;
        if (rand() % 3) {
            int rc = dcache_add(&c, &k, 0, 0, &ev);
            assert_true(rc >= 0);
            order[i] = ++clock;
            if (rc == 1) { /* the model's oldest present key went */
                unsigned o = N;
                for (unsigned j = 0; j < N; j++)
                    if (order[j] && j != i && (o == N || order[j] < order[o]))
                        o = j;
                struct dcache_key ko = key(o);
                assert_memory_equal(&ev, &ko, sizeof ev);
                order[o] = 0;
            }
        } else {
            assert_int_equal(dcache_del(&c, &k), order[i] != 0);
            order[i] = 0;
        }
        unsigned present = 0;
        for (unsigned j = 0; j < N; j++) {
            struct dcache_key kj = key(j);
            assert_int_equal(dcache_find(&c, &kj, 0) != NULL, order[j] != 0);
            present += order[j] != 0;
        }
        assert_int_equal(c.count, present);
        assert_rc(dcache_check(&c), 0);
    }
    dcache_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_insert_hit),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_eviction_order),
        cmocka_unit_test(test_growth_bounded),
        cmocka_unit_test(test_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
