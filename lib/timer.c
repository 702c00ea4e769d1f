/* timer.c — owns the deadline heap and its one uv timer. Invariants: heap[i]->idx == i + 1;
 * every parent's `when` <= its children's; the uv timer is armed for heap[0] when n > 0. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include "lib/array.h"
#include "lib/timer.h"

uint64_t timers_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void place(struct timers *t, uint32_t i, struct timer_item *it)
{
    t->heap[i] = it;
    it->idx = i + 1;
}

static void sift_up(struct timers *t, uint32_t i)
{
    struct timer_item *it = t->heap[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (t->heap[p]->when <= it->when)
            break;
        place(t, i, t->heap[p]);
        i = p;
    }
    place(t, i, it);
}

static void sift_down(struct timers *t, uint32_t i)
{
    struct timer_item *it = t->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= t->n)
            break;
        if (c + 1 < t->n && t->heap[c + 1]->when < t->heap[c]->when)
            c++;
        if (it->when <= t->heap[c]->when)
            break;
        place(t, i, t->heap[c]);
        i = c;
    }
    place(t, i, it);
}

static void on_uv_timer(uv_timer_t *h);

static void arm(struct timers *t)
{
    if (t->closed)
        return;
    if (t->n == 0) {
        uv_timer_stop(&t->uv);
        t->armed = 0;
        return;
    }
    uint64_t when = t->heap[0]->when;
    if (t->armed == when)
        return;
    uint64_t now = timers_now();
    uv_timer_start(&t->uv, on_uv_timer, when > now ? when - now : 0, 0);
    t->armed = when;
}

static void remove_at(struct timers *t, uint32_t i)
{
    t->heap[i]->idx = 0;
    if (--t->n == i)
        return;
    place(t, i, t->heap[t->n]);
    sift_down(t, i);
    sift_up(t, t->heap[i]->idx - 1);
}

static void on_uv_timer(uv_timer_t *h)
{
    struct timers *t = h->data;
    t->armed = 0;
    uint64_t now = timers_now();
    /* Items may reschedule themselves (or others) from fire(); take one due item at a time. */
    while (t->n && t->heap[0]->when <= now) {
        struct timer_item *it = t->heap[0];
        remove_at(t, 0);
        it->fire(it, now);
    }
    arm(t);
}

void timers_init(struct timers *t, uv_loop_t *loop)
{
    uv_timer_init(loop, &t->uv);
    t->uv.data = t;
}

void timers_close(struct timers *t)
{
    for (uint32_t i = 0; i < t->n; i++)
        t->heap[i]->idx = 0;
    t->n = 0;
    t->closed = true; /* items may still be scheduled while objects are torn down: never fired */
    uv_close((uv_handle_t *)&t->uv, NULL);
}

void timers_free(struct timers *t)
{
    free(t->heap);
    t->heap = NULL;
    t->cap = t->n = t->reserved = 0;
}

int timers_reserve(struct timers *t, uint32_t n)
{
    while (t->cap < t->reserved + n)
        if (array_reserve((void **)&t->heap, &t->cap, t->cap, sizeof *t->heap, 64) < 0)
            return -ENOMEM;
    t->reserved += n;
    return 0;
}

void timers_unreserve(struct timers *t, uint32_t n)
{
    t->reserved -= n;
}

void timers_set(struct timers *t, struct timer_item *item, uint64_t when, timer_cb fire)
{
    item->fire = fire;
    if (item->idx) {
        uint64_t old = item->when;
        item->when = when;
        if (when < old)
            sift_up(t, item->idx - 1);
        else
            sift_down(t, item->idx - 1);
    } else {
        assert(t->n < t->cap); /* a slot was reserved for every item (timers_reserve) */
        item->when = when;
        place(t, t->n++, item);
        sift_up(t, t->n - 1);
    }
    arm(t);
}

void timers_cancel(struct timers *t, struct timer_item *item)
{
    if (!item->idx)
        return;
    remove_at(t, item->idx - 1);
    arm(t);
}
