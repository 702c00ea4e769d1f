/* timer.h — many deadlines on one uv timer: a binary min-heap of intrusive items (queue TTL
 * heads, x-expires, consumer acknowledgement timeouts), O(log n) to add, move or remove.
 * Times are wall-clock milliseconds (CLOCK_REALTIME) so that stored expiry times survive a
 * restart. */
#ifndef WARREN_TIMER_H
#define WARREN_TIMER_H
#include <stdint.h>
#include <uv.h>

struct timer_item;
typedef void (*timer_cb)(struct timer_item *item, uint64_t now);

struct timer_item {
    uint64_t when;   /* wall-clock ms */
    uint32_t idx;    /* position in the heap + 1; 0 when not scheduled */
    timer_cb fire;
};

struct timers {
    uv_timer_t uv;
    struct timer_item **heap; /* owned array of borrowed items */
    uint32_t n, cap;
    uint64_t armed;           /* `when` the uv timer is set for, 0 if none */
};

uint64_t timers_now(void);
void timers_init(struct timers *t, uv_loop_t *loop);
/* Closes the uv timer (the heap must be empty or its items abandoned). */
void timers_close(struct timers *t);
/* (Re)schedules item at `when`; item->fire runs from the loop when due. 0 or -ENOMEM. */
int timers_set(struct timers *t, struct timer_item *item, uint64_t when, timer_cb fire);
/* Unschedules item; harmless when it is not scheduled. */
void timers_cancel(struct timers *t, struct timer_item *item);

#endif
