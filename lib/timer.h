/* timer.h — many deadlines on one uv timer: a binary min-heap of intrusive items (queue TTL
 * heads, x-expires, consumer acknowledgement timeouts), O(log n) to add, move or remove.
 * Times are wall-clock milliseconds (CLOCK_REALTIME) so that stored expiry times survive a
 * restart. */
#ifndef WARREN_TIMER_H
#define WARREN_TIMER_H
#include <stdbool.h>
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
    uint32_t reserved;        /* heap slots promised to items (cap >= reserved) */
    uint64_t armed;           /* `when` the uv timer is set for, 0 if none */
    bool closed;              /* timers_close was called: nothing fires any more */
};

uint64_t timers_now(void);
void timers_init(struct timers *t, uv_loop_t *loop);
/* Closes the uv timer: scheduled items are abandoned and nothing fires any more (objects being
 * torn down may still schedule theirs). The heap stays until timers_free. */
void timers_close(struct timers *t);
/* Frees the heap, after timers_close and once no object holds a reservation. */
void timers_free(struct timers *t);
/* Promises n heap slots (0 or -ENOMEM): an object reserves one per timer item when it is
 * created, so that scheduling those items later cannot fail (a TTL that silently never fires).
 * timers_unreserve gives them back when the object goes. */
int timers_reserve(struct timers *t, uint32_t n) __attribute__((warn_unused_result));
void timers_unreserve(struct timers *t, uint32_t n);
/* (Re)schedules item at `when`; item->fire runs from the loop when due. Cannot fail while the
 * heap holds no more items than were reserved (asserted). */
void timers_set(struct timers *t, struct timer_item *item, uint64_t when, timer_cb fire);
/* Unschedules item; harmless when it is not scheduled. */
void timers_cancel(struct timers *t, struct timer_item *item);

#endif
