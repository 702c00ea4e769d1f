/* delay.h — delayed delivery: the x-delayed-message exchange (a message with a positive x-delay
 * header is routed when its delay is over) and the x-delivery-delay queue argument (each
 * message waits that long, or its own x-delay, before it is enqueued). Persistent messages
 * for durable targets are stored (storage/delayed.h) and survive restarts; others are stored
 * only when they leave the in-memory window, and dropped at the next start. Only a bounded
 * window of the soonest is in memory. */
#ifndef WARREN_DELAY_H
#define WARREN_DELAY_H
#include <stdbool.h>
#include <stdint.h>

struct broker;
struct exchange;
struct msg;
struct route;

/* Delayed messages kept in memory at most (the soonest), and about how many bytes they may
 * take (msg_mem; a larger message still fits, alone). */
#define DELAY_WINDOW 4096
#define DELAY_WINDOW_BYTES (8u << 20)

/* Starts delayed delivery on b (after recovery, with b->timers running): reads the soonest
 * stored entries. Until it runs (b->delay NULL) nothing is delayed. 0 or -ENOMEM. */
int delay_start(struct broker *b);
/* Drops what waits in memory (storage keeps its part). Accepts b->delay NULL. */
void delay_free(struct broker *b);

/* basic.publish to a delayed exchange x: holds m when its x-delay header is a positive
 * integer. Returns 1 when held (*ret_batch: the storage batch it waits for, 0 if none), 0 to
 * route it now, -ENOMEM (nothing held). */
int delay_hold_exchange(struct broker *b, struct exchange *x, struct msg *m,
                        uint64_t *ret_batch);
/* From publish_enqueue: takes out of r the queues with x-delivery-delay that m must wait for
 * (their delay, or m's own x-delay when it has one; not when m has waited already) and holds
 * m for each. *ret_batch as above. 0 or -ENOMEM (nothing held, r unchanged). */
int delay_take_queues(struct broker *b, struct msg *m, struct route *r, uint64_t *ret_batch);
/* The exchange ('x') or queue ('q') target is being deleted: its waiting messages are dropped,
 * in memory and (store_id != 0) in storage. Cheap when it never had any. */
void delay_target_gone(struct broker *b, char kind, void *target, uint64_t store_id);

#endif
