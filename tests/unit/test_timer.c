/* test_timer.c — lib/timer.h: the deadline heap on a real libuv loop. Items fire once each, in
 * deadline order; cancelled items never fire; rescheduling moves an item; scheduling cannot fail
 * for reserved slots, and reservations are counted. */
#include <stdbool.h>
#include <uv.h>

#include "unit.h"

#include "lib/timer.h"

enum { N = 500 };

struct item {
    struct timer_item t;
    int fired;
    uint64_t at; /* the deadline it had when it fired */
};

static struct item s_items[N];
static uint64_t s_order[N];
static int s_nfired;

static void on_fire(struct timer_item *it, uint64_t now)
{
    struct item *x = (struct item *)it;
    assert_true(x->t.when <= now);
    x->fired++;
    x->at = x->t.when;
    s_order[s_nfired++] = x->t.when;
}

static void test_heap_order_cancel_move(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct timers t = {0};
    timers_init(&t, &loop);
    assert_int_equal(timers_reserve(&t, N), 0);
    assert_true(t.cap >= N);
    assert_int_equal(t.reserved, N);

    uint64_t now = timers_now(), rng = 7;
    memset(s_items, 0, sizeof s_items);
    s_nfired = 0;
    for (int i = 0; i < N; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        timers_set(&t, &s_items[i].t, now + (rng >> 33) % 60, on_fire);
    }
    for (int i = 0; i < N; i += 10) /* every tenth is cancelled */
        timers_cancel(&t, &s_items[i].t);
    timers_set(&t, &s_items[1].t, now + 90, on_fire); /* moved later: fires last */
    timers_cancel(&t, &s_items[0].t); /* cancelling twice is harmless */
    assert_int_equal(t.n, N - N / 10);

    uv_run(&loop, UV_RUN_DEFAULT); /* returns when the heap is empty (the timer stops) */
    assert_int_equal(s_nfired, N - N / 10);
    for (int i = 0; i < N; i++)
        assert_int_equal(s_items[i].fired, i % 10 == 0 ? 0 : 1);
    for (int i = 1; i < s_nfired; i++)
        assert_true(s_order[i - 1] <= s_order[i]);
    assert_int_equal(s_items[1].at, now + 90);
    assert_int_equal(s_order[s_nfired - 1], now + 90);

    timers_unreserve(&t, N);
    assert_int_equal(t.reserved, 0);
    timers_close(&t);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    timers_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heap_order_cancel_move),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
