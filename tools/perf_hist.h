/* perf_hist.h — a log-linear latency histogram for warren-perf: fixed size, no allocation,
 * O(1) record. Owns only its own counters; one histogram per thread, merged at the end.
 * Invariant: count == sum of b[], and min <= every recorded value <= max.
 * Each power of two is split into HIST_SUB linear buckets, so a bucket is at most
 * 1/HIST_SUB (~3%) wide relative to its values; values below 2*HIST_SUB are exact. */
#ifndef WARREN_TOOLS_PERF_HIST_H
#define WARREN_TOOLS_PERF_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 5
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

typedef struct hist {
    uint64_t count;
    uint64_t min, max; /* meaningful only when count > 0 */
    uint64_t b[HIST_BUCKETS];
} hist_t;

/* Empty the histogram. */
void hist_init(struct hist *h);

/* Bucket index of value v (exposed for hist_record and tests). */
static inline unsigned hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = e - HIST_SUB_BITS;
    return (shift + 1) * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
}

/* Record one value. */
static inline void hist_record(struct hist *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    if (h->count++ == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

/* Add every value of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);

/* The value at percentile p (0 < p <= 100): the midpoint of the bucket holding the
 * ceil(p% * count)-th smallest value, clamped to [min, max]. 0 when the histogram is empty. */
uint64_t hist_percentile(const struct hist *h, double p);

#endif
