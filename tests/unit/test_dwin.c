/* test_dwin.c — lib/dwin.h: the bounded sorted window and the min-heap of delayed delivery,
 * against a model (a plain sorted list). The window keeps key order through appends, middle
 * inserts, slides, pops at both ends and removals; with cap entries at most it holds exactly
 * the soonest when the latest is dropped after each overflowing insert (what delay.c does). The
 * heap pops in key order through random pushes, pops and removals by target. */
#include <stdbool.h>

#include "unit.h"

#include "lib/dwin.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int cmp_key(const void *a, const void *b)
{
    const struct dentry *x = a, *y = b;
    if (x->due != y->due)
        return x->due < y->due ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static void check_window(const struct dwin *w)
{
    for (uint32_t i = 1; i < w->n; i++)
        assert_true(dentry_before(&w->e[w->head + i - 1], w->e[w->head + i].due,
                                  w->e[w->head + i].id));
}

/* The window keeps the cap soonest of everything inserted, as delay.c uses it. */
static void test_window_keeps_soonest(void **state)
{
    (void)state;
    enum { CAP = 64, N = 5000 };
    struct dwin w;
    assert_rc(dwin_init(&w, CAP), 0);
    struct dentry *all = calloc(N, sizeof *all);
    uint32_t n = 0;
    uint64_t popped_upto = 0;
    for (uint32_t i = 0; i < N; i++) {
        struct dentry e = {.due = popped_upto + 1 + next_rand() % 1000, .id = i + 1};
        if (i % 3 == 0) /* mostly growing delays, as publishers with one delay produce */
            e.due = popped_upto + 1000 + i;
        all[n++] = e;
        dwin_insert(&w, &e);
        if (w.n > CAP) {
            struct dentry ev, max = *dwin_max(&w);
            dwin_pop_max(&w, &ev);
            assert_int_equal(ev.id, max.id);
            for (uint32_t k = 0; k < w.n; k++) /* it was the latest */
                assert_true(dentry_before(&w.e[w.head + k], ev.due, ev.id));
            /* drop it from the model too: the window is the soonest CAP of what it kept */
            for (uint32_t k = 0; k < n; k++)
                if (all[k].id == ev.id) {
                    all[k] = all[--n];
                    break;
                }
        }
        check_window(&w);
        if (next_rand() % 4 == 0 && w.n) {
            struct dentry got;
            dwin_pop_min(&w, &got);
            qsort(all, n, sizeof *all, cmp_key);
            assert_int_equal(got.id, all[0].id);
            all[0] = all[--n];
            popped_upto = got.due;
        }
        assert_int_equal(w.n, n);
    }
    qsort(all, n, sizeof *all, cmp_key);
    for (uint32_t k = 0; k < n; k++) {
        struct dentry got;
        dwin_pop_min(&w, &got);
        assert_int_equal(got.id, all[k].id);
    }
    assert_int_equal(w.n, 0);
    free(all);
    dwin_free(&w);
}

static uint32_t dropped;
static void count_drop(void *arg, struct dentry *e)
{
    (void)arg;
    (void)e;
    dropped++;
}

static void test_window_remove_target(void **state)
{
    (void)state;
    struct dwin w;
    assert_rc(dwin_init(&w, 16), 0);
    int a, b;
    for (uint32_t i = 0; i < 16; i++)
        dwin_insert(&w, &(struct dentry){.due = 100 - i, .id = i, .target = i % 2 ? &a : &b});
    dropped = 0;
    assert_int_equal(dwin_remove_target(&w, &a, count_drop, NULL), 8);
    assert_int_equal(dropped, 8);
    assert_int_equal(w.n, 8);
    check_window(&w);
    for (uint32_t i = 0; i < 8; i++)
        assert_ptr_equal(w.e[w.head + i].target, &b);
    assert_int_equal(dwin_min(&w)->due, 86);
    assert_int_equal(dwin_max(&w)->due, 100);
    dwin_free(&w);
}

static void test_heap_order(void **state)
{
    (void)state;
    struct dheap h = {0};
    int t[4];
    uint64_t last_due = 0, last_id = 0;
    uint32_t live = 0;
    for (uint32_t i = 0; i < 20000; i++) {
        struct dentry e = {.due = last_due + next_rand() % 500, .id = i + 1,
                           .target = &t[next_rand() % 4]};
        assert_rc(dheap_push(&h, &e), 0);
        live++;
        if (next_rand() % 3 == 0) {
            struct dentry got;
            dheap_pop(&h, &got);
            live--;
            assert_false(dentry_before(&got, last_due, last_id));
            last_due = got.due;
            last_id = got.id;
        }
        if (i == 10000) {
            dropped = 0;
            uint32_t gone = dheap_remove_target(&h, &t[2], count_drop, NULL);
            assert_int_equal(gone, dropped);
            live -= gone;
        }
    }
    assert_int_equal(h.n, live);
    for (uint32_t i = 0; i < live; i++) {
        struct dentry got;
        dheap_pop(&h, &got);
        assert_false(dentry_before(&got, last_due, last_id));
        last_due = got.due;
        last_id = got.id;
    }
    assert_null(dheap_min(&h));
    dheap_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_keeps_soonest),
        cmocka_unit_test(test_window_remove_target),
        cmocka_unit_test(test_heap_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
