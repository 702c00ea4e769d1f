/* perf_hist.c — merge and percentile queries for the log-linear histogram in perf_hist.h.
 * Owns nothing beyond the caller's struct hist; recording is inline in the header. */
#include <math.h>
#include <string.h>

#include "perf_hist.h"

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof *h);
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    if (!src->count)
        return;
    if (!dst->count || src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
}

/* Lowest value of bucket i, and its width. */
static uint64_t bucket_low(unsigned i, uint64_t *ret_width)
{
    if (i < 2 * HIST_SUB) {
        *ret_width = 1;
        return i;
    }
    unsigned shift = i / HIST_SUB - 1;
    uint64_t mant = i % HIST_SUB + HIST_SUB;
    *ret_width = 1ull << shift;
    return mant << shift;
}

uint64_t hist_percentile(const struct hist *h, double p)
{
    if (!h->count)
        return 0;
    if (p >= 100.0)
        return h->max;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen < rank)
            continue;
        uint64_t width, v = bucket_low(i, &width);
        v += width / 2;
        if (v < h->min)
            v = h->min;
        if (v > h->max)
            v = h->max;
        return v;
    }
    return h->max;
}
