/* stats.c — the rate samples of stats.h. */
#include "broker/model/broker.h"
#include "broker/model/queue.h"
#include "broker/model/stats.h"
#include "broker/model/vhost.h"

static double rate(uint64_t now, uint64_t then, double secs)
{
    return secs > 0 ? (double)(now - then) / secs : 0;
}

void stats_sample(struct broker *b, uint64_t now_ms)
{
    struct broker_rates *r = &b->rates;
    const struct broker_stats *s = &b->stats, *p = &r->prev;
    double secs = r->at_ms ? (double)(now_ms - r->at_ms) / 1000 : 0;
    r->received = rate(s->received, p->received, secs);
    r->confirmed = rate(s->confirmed, p->confirmed, secs);
    r->delivered = rate(s->delivered, p->delivered, secs);
    r->redelivered = rate(s->redelivered, p->redelivered, secs);
    r->acknowledged = rate(s->acknowledged, p->acknowledged, secs);
    r->returned = rate(s->unroutable_returned, p->unroutable_returned, secs);
    r->dropped = rate(s->unroutable_dropped, p->unroutable_dropped, secs);
    r->prev = *s;
    r->at_ms = now_ms;
    void *v, *qv;
    for (uint32_t it = 0; hmap_next(&b->vhosts, &it, &v);)
        for (uint32_t jt = 0; hmap_next(&((struct vhost *)v)->queues, &jt, &qv);) {
            struct queue *q = qv;
            for (int i = 0; i < QSTAT_MAX; i++) {
                q->stat_rate[i] = (float)rate(q->stat[i], q->stat_prev[i], secs);
                q->stat_prev[i] = q->stat[i];
            }
        }
}
