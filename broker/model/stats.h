/* stats.h — message rates for the management API: every STATS_INTERVAL_MS the counters of the
 * broker and of each queue are sampled and their rates per second since the previous sample
 * kept beside them (RabbitMQ's *_details.rate over its 5 s window). Sampling walks every queue
 * once: nothing on the message path waits for it or pays for it but a counter increment. */
#ifndef WARREN_STATS_H
#define WARREN_STATS_H
#include <stdint.h>

#define STATS_INTERVAL_MS 5000

struct broker;

/* Takes a sample at now_ms (monotonic). */
void stats_sample(struct broker *b, uint64_t now_ms);

#endif
