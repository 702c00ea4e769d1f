/* publish.c — owns the step from a routing result to enqueued messages: overflow refusals,
 * deduplicating queues' refusals (dedup.h), the single storage write for all durable queues,
 * and the dispatch kicks. Invariant: a stored message's reference count equals the number of
 * queues that got an index entry for it. */
#include "broker/model/deadletter.h"
#include "broker/model/dedup.h"
#include "broker/model/delay.h"
#include "broker/model/exchange.h"
#include "broker/model/msg.h"
#include "broker/model/persist.h"
#include "broker/model/publish.h"
#include "broker/model/queue.h"
#include "broker/model/broker.h"
#include "storage/batch.h"

int publish_enqueue(struct broker *s, struct msg *m, struct route *r, uint64_t *ret_batch,
                    bool *ret_rejected)
{
    *ret_batch = 0;
    *ret_rejected = false;
    int rc;
    /* Queues with x-delivery-delay get it later (delay.c), checked (overflow) then. First:
     * the reservation below is for this publish's own writes. */
    if (s->delay && (rc = delay_take_queues(s, m, r, ret_batch)) < 0)
        return rc;
    uint32_t stored = 0; /* queues kept in storage: each may add writes */
    for (uint32_t i = 0; s->store && i < r->n; i++)
        stored += r->q[i]->store_id != 0;
    if (stored && (rc = persist_reserve(s, stored)) < 0)
        return rc; /* refused before anything changed; storage stays healthy */
    /* Queues that hold a message with its id already (x-message-deduplication) skip it: a
     * duplicate is accepted (confirmed), even by a full queue. The others remember the id. */
    uint32_t k = 0;
    for (uint32_t i = 0; i < r->n; i++)
        if (!r->q[i]->dedup || dedup_queue_admit(r->q[i], m))
            r->q[k++] = r->q[i];
    r->n = k;
    /* Queues that refuse it (x-overflow reject-publish*) are taken out, forgetting its id. */
    k = 0;
    for (uint32_t i = 0; i < r->n; i++) {
        struct queue *q = r->q[i];
        if (!queue_rejects(q, m)) {
            r->q[k++] = q;
            continue;
        }
        if (q->dedup)
            dedup_queue_left(q, m);
        *ret_rejected = true;
        if (q->opt.overflow == OVERFLOW_REJECT_PUBLISH_DLX) {
            struct qentry e = {m, 0, 0, 0, 0, 0};
            deadletter(q, &e, DL_MAXLEN);
        }
    }
    r->n = k;
    /* Room in every queue before anything is written: a publish that fails now fails whole,
     * and a stored message's count stays equal to its index entries. */
    for (uint32_t i = 0; i < r->n; i++)
        if ((rc = queue_reserve(r->q[i], m)) < 0) {
            for (uint32_t j = 0; j < r->n; j++) /* it is in none of them: ids forgotten */
                if (r->q[j]->dedup)
                    dedup_queue_left(r->q[j], m);
            return rc;
        }
    if (s->store) {
        uint32_t durable = 0;
        for (uint32_t i = 0; i < r->n; i++) /* quorum queues persist every message */
            durable += r->q[i]->store_id && (m->delivery_mode == 2 || r->q[i]->opt.quorum);
        if (durable) {
            persist_msg(s, m, durable, true);
            *ret_batch = storage_batch_no(s->store);
        }
    }
    for (uint32_t i = 0; i < r->n; i++) {
        if ((rc = queue_push(r->q[i], m)) < 0)
            return rc;
        r->q[i]->stat[QSTAT_PUBLISH]++;
        queue_kick(r->q[i]);
    }
    return 0;
}
