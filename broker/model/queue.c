/* queue.c — owns queue state: the ready rings (one per priority; with x-message-groups the
 * group structure of groups.c instead, behind the same win_* calls), paging to and from storage,
 * TTL and length limits, the consumers (by priority, ready or parked) and dispatch, and the
 * publishers waiting for it to drain (flow control). Does not own message bodies (refcounted
 * in msg.c) nor unacked deliveries (the session's). Invariants: each ring holds `count` entries
 * from `head` (mod cap, a power of two); ready_bytes is the sum of their body sizes (and
 * broker.queued_mem counts their memory); every consumer is in exactly one list of its bucket;
 * a deleted queue has no consumers, no entries, no waiting publishers and is not in its
 * vhost's map. */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "broker/model/delay.h"
#include "broker/model/args.h"
#include "lib/array.h"
#include "broker/model/binding.h"
#include "broker/model/deadletter.h"
#include "broker/model/dedup.h"
#include "broker/model/groups.h"
#include "lib/log.h"
#include "broker/model/msg.h"
#include "broker/model/persist.h"
#include "broker/model/queue.h"
#include "broker/model/broker.h"
#include "broker/model/params.h"
#include "broker/model/vhost.h"
#include "storage/batch.h"
#include "storage/env.h"
#include "storage/recover.h"

#define WINDOW 2048             /* ready messages a durable queue keeps in memory */
#define WINDOW_BYTES (8u << 20)  /* ... or this many body bytes, whichever comes first */
#define PAGE_IN 1024             /* messages read back from disk at a time */
#define EXPIRE_BATCH 4096        /* expired messages handled per timer run (then it yields) */

static void arm_ttl(struct queue *q);
static void arm_expires(struct queue *q);

struct queue *queue_new(struct vhost *vh, amqp_bytes_t name, amqp_bytes_t args)
{
    struct queue *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->name = malloc(name.len + 1);
    q->args = args.len ? malloc(args.len) : NULL;
    if (!q->name || (args.len && !q->args)) {
        free(q->name);
        free(q->args);
        free(q);
        return NULL;
    }
    memcpy(q->name, name.ptr, name.len);
    q->name[name.len] = 0;
    q->name_len = (uint8_t)name.len;
    if (args.len)
        memcpy(q->args, args.ptr, args.len);
    q->args_len = args.len;
    args_queue_opts((amqp_bytes_t){q->args, q->args_len}, &q->opt);
    q->rings = calloc((size_t)q->opt.max_priority + 1, sizeof *q->rings);
    int drc = dedup_new((amqp_bytes_t){q->args, q->args_len}, true, &q->dedup);
    if (q->opt.message_groups)
        q->groups = groups_new();
    /* Heap room for the TTL, x-expires and flow timers, so that arming them cannot fail. */
    if (!q->rings || drc < 0 || (q->opt.message_groups && !q->groups) ||
        timers_reserve(&vh->broker->timers, 3) < 0) {
        dedup_free(q->dedup);
        groups_free(q->groups);
        free(q->rings);
        free(q->name);
        free(q->args);
        free(q);
        return NULL;
    }
    q->vhost = vh;
    vh->refs++; /* a deleted vhost stays allocated while a queue of it lives */
    q->refs = 1;
    q->next_seq = 1;
    list_init(&q->consumers);
    list_init(&q->bindings_in);
    list_init(&q->meta_link);
    list_init(&q->pend_link);
    list_init(&q->ttl0_link);
    list_init(&q->flow_waiters);
    return q;
}

void queue_ref(struct queue *q)
{
    q->refs++;
}

static void pend_clear(struct queue *q);
static bool win_pop(struct queue *q, struct qentry *ret);

void queue_unref(struct queue *q)
{
    if (!q || --q->refs > 0)
        return;
    struct qentry e;
    while (win_pop(q, &e)) /* no storage work: a deleted queue's records went with it */
        msg_unref(e.m);
    pend_clear(q);
    list_remove(&q->meta_link);
    list_remove(&q->ttl0_link);
    timers_cancel(&q->vhost->broker->timers, &q->ttl_timer);
    timers_cancel(&q->vhost->broker->timers, &q->expires_timer);
    timers_cancel(&q->vhost->broker->timers, &q->flow_timer);
    timers_unreserve(&q->vhost->broker->timers, 3);
    for (uint32_t i = 0; i <= q->opt.max_priority; i++)
        free(q->rings[i].e);
    free(q->rings);
    groups_free(q->groups);
    free(q->buckets);
    dedup_free(q->dedup);
    free(q->pend);
    free(q->args);
    free(q->eff_args);
    free(q->name);
    vhost_unref(q->vhost);
    free(q);
}

static struct storage *store(const struct queue *q)
{
    return q->vhost->broker->store;
}

static void meta_dirty(struct queue *q)
{
    if (!q->meta_dirty && q->store_id && store(q)) {
        q->meta_dirty = true;
        list_insert_tail(&q->vhost->broker->meta_dirty, &q->meta_link);
    }
}

void queue_flush_meta(struct queue *q)
{
    list_remove(&q->meta_link);
    q->meta_dirty = false;
    if (q->store_id && !q->deleted && store(q))
        storage_put_queue_meta(store(q), q->store_id, q->stored_count, q->delivered_seq);
}

/* ---- rings: the in-memory window ----------------------------------------------------- */

static struct qentry *qring_at(const struct qring *r, uint32_t i)
{
    return &r->e[(r->head + i) & (r->cap - 1)];
}

/* Inserts e by seq: at the tail for new entries, among the requeued ones near the head for a
 * requeue (requeued messages go back to their original place). */
/* Room for `extra` more entries beyond those in the ring and those held for a return. */
static int qring_room(struct qring *r, uint32_t extra)
{
    while (r->cap < r->count + r->held + extra) /* count = cap: grow (copying the live part) */
        if (ring_reserve((void **)&r->e, &r->cap, &r->head, r->cap, sizeof *r->e, 16) < 0)
            return -ENOMEM;
    return 0;
}

static int qring_insert(struct qring *r, struct qentry e, bool at_tail)
{
    if (qring_room(r, 1) < 0)
        return -ENOMEM;
    if (at_tail) {
        *qring_at(r, r->count++) = e;
        return 0;
    }
    uint32_t i = 0;
    while (i < r->count && qring_at(r, i)->seq < e.seq)
        i++;
    r->head = (r->head - 1) & (r->cap - 1);
    for (uint32_t k = 0; k < i; k++)
        *qring_at(r, k) = *qring_at(r, k + 1);
    *qring_at(r, i) = e;
    r->count++;
    return 0;
}

static struct qring *ring_for(struct queue *q, const struct msg *m)
{
    return &q->rings[m->priority < q->opt.max_priority ? m->priority : q->opt.max_priority];
}

static int win_insert(struct queue *q, struct qentry e, bool at_tail)
{
    int rc;
    if (!q->groups)
        rc = qring_insert(ring_for(q, e.m), e, at_tail);
    else if (at_tail && groups_reserve(q->groups, NULL, q->rings[0].held + 1, NULL) < 0)
        rc = -ENOMEM; /* (a new entry leaves the room kept for the held ones, as qring_room) */
    else
        rc = groups_insert(q->groups, &e, at_tail);
    if (rc < 0)
        return rc;
    q->count++;
    q->ready_bytes += e.m->body_size;
    q->vhost->broker->queued_mem += msg_mem(e.m);
    return 0;
}

/* The entry the next pop returns (highest priority first), or NULL. */
static struct qentry *win_front(const struct queue *q)
{
    if (q->groups)
        return groups_front(q->groups);
    for (int p = q->opt.max_priority; p >= 0; p--)
        if (q->rings[p].count)
            return qring_at(&q->rings[p], 0);
    return NULL;
}

/* ret left the window: the counts follow. */
static void win_took(struct queue *q, const struct qentry *ret)
{
    q->count--;
    q->ready_bytes -= ret->m->body_size;
    q->vhost->broker->queued_mem -= msg_mem(ret->m);
}

static bool win_pop(struct queue *q, struct qentry *ret)
{
    if (q->groups) {
        if (!groups_pop_front(q->groups, ret))
            return false;
        win_took(q, ret);
        return true;
    }
    for (int p = q->opt.max_priority; p >= 0; p--) {
        struct qring *r = &q->rings[p];
        if (!r->count)
            continue;
        *ret = *qring_at(r, 0);
        r->head = (r->head + 1) & (r->cap - 1);
        r->count--;
        win_took(q, ret);
        return true;
    }
    return false;
}

/* Priority queues are not paged: order across priorities needs every message at hand. */
static bool window_full(const struct queue *q)
{
    return !q->opt.max_priority && (q->count >= WINDOW || q->ready_bytes >= WINDOW_BYTES);
}

/* ---- entries being written (pend) ------------------------------------------------------ */

static int pend_push(struct queue *q, struct pentry p)
{
    if (ring_reserve((void **)&q->pend, &q->pend_cap, &q->pend_head, q->pend_count, sizeof p,
                     64) < 0)
        return -ENOMEM;
    q->pend[(q->pend_head + q->pend_count) & (q->pend_cap - 1)] = p;
    if (q->pend_count++ == 0)
        list_insert_tail(&q->vhost->broker->pending_queues, &q->pend_link);
    return 0;
}

static struct pentry pend_pop(struct queue *q)
{
    struct pentry p = q->pend[q->pend_head];
    q->pend_head = (q->pend_head + 1) & (q->pend_cap - 1);
    if (--q->pend_count == 0)
        list_remove(&q->pend_link);
    return p;
}

static void pend_clear(struct queue *q)
{
    while (q->pend_count)
        msg_unref(pend_pop(q).e.m);
}

void queue_on_durable(struct queue *q, uint64_t durable)
{
    bool was_empty = q->count == 0;
    while (q->pend_count && q->pend[q->pend_head].batch <= durable) {
        struct pentry p = pend_pop(q);
        if (q->disk_count == 0 && !window_full(q) && win_insert(q, p.e, true) == 0)
            continue; /* room in memory: keep it there */
        if (q->disk_count++ == 0)
            q->disk_head = p.e.seq;
        if (p.e.flags & QE_PERSISTENT)
            q->disk_persistent++;
        msg_unref(p.e.m);
    }
    if (was_empty)
        arm_ttl(q);
}

/* ---- push ------------------------------------------------------------------------------- */

bool queue_rejects(const struct queue *q, const struct msg *m)
{
    if (q->opt.overflow == OVERFLOW_DROP_HEAD)
        return false;
    return (q->opt.max_length >= 0 && queue_ready(q) >= (uint64_t)q->opt.max_length) ||
           (q->opt.max_length_bytes >= 0 &&
            q->bytes_all + m->body_size > (uint64_t)q->opt.max_length_bytes);
}

/* The message's expiry in this queue: the lower of the queue's and the message's TTL. */
static uint64_t expiry_of(const struct queue *q, const struct msg *m, uint64_t now)
{
    int64_t ttl = q->opt.message_ttl;
    if (m->ttl >= 0 && (ttl < 0 || m->ttl < ttl))
        ttl = m->ttl;
    return ttl < 0 ? 0 : now + (uint64_t)ttl;
}

static void drop_head_over_limit(struct queue *q);
static int reserve(struct queue *q, const struct msg *m, uint32_t *ret_group);

int queue_reserve(struct queue *q, const struct msg *m)
{
    return reserve(q, m, NULL);
}

/* queue_reserve, and for x-message-groups m's group into *ret_group (may be NULL). */
static int reserve(struct queue *q, const struct msg *m, uint32_t *ret_group)
{
    if (q->groups ? groups_reserve(q->groups, m, q->rings[0].held + 1, ret_group) < 0
                  : qring_room(ring_for(q, m), 1) < 0)
        return -ENOMEM;
    if (q->store_id && ring_reserve((void **)&q->pend, &q->pend_cap, &q->pend_head,
                                    q->pend_count, sizeof *q->pend, 64) < 0)
        return -ENOMEM;
    return 0;
}

int queue_push(struct queue *q, struct msg *m)
{
    /* Room first, so that nothing below fails halfway (a stored count, an index entry). */
    uint32_t group = 0; /* x-message-groups: m's group, looked up once */
    int rc = reserve(q, m, &group);
    if (rc < 0)
        return rc;
    struct storage *st = store(q);
    uint64_t now = timers_now();
    q->last_active = now;
    struct qentry e = {m, q->next_seq++, expiry_of(q, m, now), 0, 0, 0};
    if (e.expires == now && (q->opt.message_ttl == 0 || m->ttl == 0)) {
        /* TTL 0: delivered at once if a consumer can take it, else expired (server_dispatch). */
        e.flags |= QE_TTL0;
        if (list_empty(&q->ttl0_link))
            list_insert_tail(&q->vhost->broker->ttl0, &q->ttl0_link);
    }
    bool paged = false;
    if (q->store_id) {
        paged = q->disk_count || q->pend_count || window_full(q);
        uint64_t id = m->delivery_mode == 2 || q->opt.quorum ? m->store_id : 0;
        if (id) { /* persistent: written once by the publisher for all its durable queues */
            e.flags |= QE_STORED | QE_PERSISTENT;
            q->stored_count++;
            meta_dirty(q);
        } else if (paged) { /* transient, but past the window: a copy of its own on disk */
            id = persist_msg(q->vhost->broker, m, 1, false);
            e.flags |= QE_STORED;
        }
        if (e.flags & QE_STORED)
            storage_put_idx(st, q->store_id, e.seq, id,
                            e.flags & QE_PERSISTENT ? 0 : STORAGE_IDX_TRANSIENT, e.expires, 0);
    }
    msg_ref(m);
    if (!paged)
        e.group = group; /* (a paged entry's group may be gone by the time it is read back) */
    else if (q->groups)
        groups_unused(q->groups, group); /* looked up again when paged in */
    rc = paged ? pend_push(q, (struct pentry){e, storage_batch_no(st)}) : win_insert(q, e, true);
    assert(rc == 0); /* queue_reserve made room */
    q->bytes_all += m->body_size;
    if (!paged && win_front(q)->seq == e.seq)
        arm_ttl(q); /* it is the next one out */
    drop_head_over_limit(q);
    return 0;
}

int queue_hold(struct queue *q, const struct qentry *e)
{
    struct qring *r = ring_for(q, e->m);
    /* With groups the entry's place is a slot of the group pool (rings[0] counts the held). */
    if (q->groups ? groups_reserve(q->groups, NULL, r->held + 1, NULL) < 0
                  : qring_room(r, 1) < 0)
        return -ENOMEM;
    r->held++;
    q->unacked_bytes += e->m->body_size;
    return 0;
}

void queue_unhold(struct queue *q, const struct qentry *e)
{
    struct qring *r = ring_for(q, e->m);
    assert(r->held > 0);
    r->held--;
    q->unacked_bytes -= e->m->body_size;
}

int queue_requeue(struct queue *q, const struct qentry *re)
{
    struct qentry e = *re;
    e.flags |= QE_REDELIVERED;
    e.returns++;
    msg_ref(e.m);
    int rc = win_insert(q, e, false);
    if (rc < 0) {
        msg_unref(e.m);
        return rc;
    }
    if (q->groups)
        groups_done(q->groups, re); /* back at its group's head: the holder may let it go */
    q->bytes_all += e.m->body_size;
    /* A quorum queue's delivery count survives a restart: its index entry is updated. */
    if (q->opt.quorum && (e.flags & QE_STORED) && e.m->store_id && store(q))
        storage_put_idx(store(q), q->store_id, e.seq, e.m->store_id,
                        e.flags & QE_PERSISTENT ? 0 : STORAGE_IDX_TRANSIENT, e.expires, e.returns);
    if ((e.flags & QE_TTL0) && list_empty(&q->ttl0_link)) /* back, but only until the next dispatch */
        list_insert_tail(&q->vhost->broker->ttl0, &q->ttl0_link);
    arm_ttl(q);
    drop_head_over_limit(q);
    return 0;
}

/* ---- pop, page-in, expiry ------------------------------------------------------------ */

/* page_in's storage_scan_queue callback: one index entry, its message built straight from the
 * stored bytes (borrowed from the map until we return: persist_msg_load copies them once).
 * Out of memory stops the scan with the entry still counted on disk, to be read again later. */
static int page_in_entry(void *arg, const struct st_entry *se, const void *data, size_t len)
{
    struct queue *q = arg;
    if (se->stale) { /* a transient message from before the restart */
        q->disk_head = se->seq + 1;
        storage_del_idx(store(q), q->store_id, se->seq);
        return 0;
    }
    bool persistent = !(se->flags & STORAGE_IDX_TRANSIENT);
    struct msg *m = NULL;
    int rc = se->err ? se->err : persist_msg_load(data, len, &m);
    if (rc == -ENOMEM)
        return rc;
    q->disk_head = se->seq + 1;
    q->disk_count--;
    if (persistent)
        q->disk_persistent--;
    if (rc < 0) {
        log_error("queue '%s': stored message %llu %s; dropping it", q->name,
                  (unsigned long long)se->msg_id,
                  se->err ? "cannot be decrypted (its envelope fails authentication: altered, "
                            "or sealed with a key that is not configured)"
                          : "does not decode");
        storage_del_idx(store(q), q->store_id, se->seq);
        if (persistent) {
            q->stored_count--;
            meta_dirty(q);
        }
        return 0;
    }
    uint8_t flags = QE_STORED | (persistent ? QE_PERSISTENT : 0) |
                    (se->seq <= q->delivered_seq ? QE_REDELIVERED : 0);
    m->store_id = se->msg_id; /* for updates of its index entry (quorum returns) */
    struct qentry e = {m, se->seq, se->expires, se->returns, flags, 0};
    if (win_insert(q, e, true) < 0) { /* undo: the entry stays on disk */
        msg_unref(m);
        q->disk_head = se->seq;
        q->disk_count++;
        if (persistent)
            q->disk_persistent++;
        return -ENOMEM;
    }
    return 0; /* the window owns m */
}

/* Reads the next part of the on-disk run into the window. Out of memory leaves the rest on disk
 * (a later pop tries again): no client action stops the broker. Any other read failure is a
 * storage failure: sticky, and the broker stops so that a standby can take over. */
static void page_in(struct queue *q)
{
    /* A priority queue reads everything: order across priorities needs every message. */
    /* A group queue reads up to the window: the groups at its head may all be held. */
    while (q->disk_count && !window_full(q) &&
           (q->opt.max_priority || q->groups || q->count < PAGE_IN)) {
        size_t n = 0, want = q->disk_count < 64 ? (size_t)q->disk_count : 64;
        int rc = storage_scan_queue(store(q), q->store_id, q->disk_head, want, page_in_entry, q,
                                    &n);
        if (rc == -ENOMEM) {
            log_warn("out of memory reading queue '%s' back from storage; its remaining %llu "
                     "messages stay on disk until memory frees up",
                     q->name, (unsigned long long)q->disk_count);
            return;
        }
        if (rc) {
            log_error("cannot read queue '%s' back from storage: %s; stopping so that a standby "
                      "can take over",
                      q->name, storage_strerror(rc));
            exit(70);
        }
        if (n == 0) {
            log_error("queue '%s': %llu messages are missing from storage; dropping the count",
                      q->name, (unsigned long long)q->disk_count);
            q->disk_count = q->disk_persistent = 0;
            break;
        }
    }
}

/* Fills an empty window from disk or from entries still being written. */
static void refill(struct queue *q)
{
    if (q->disk_count) {
        page_in(q);
        return;
    }
    while (q->pend_count && !window_full(q)) {
        /* Still being written, but in memory and next in order: the reference moves. */
        struct pentry p = q->pend[q->pend_head];
        if (win_insert(q, p.e, true) < 0)
            break;
        pend_pop(q);
    }
}

static uint64_t loop_now(const struct queue *q)
{
    return uv_now(q->vhost->broker->loop);
}

bool queue_flow_high(const struct queue *q)
{
    return q->consumer_count && queue_ready(q) > QUEUE_FLOW_HIGH &&
           loop_now(q) - q->last_delivery < QUEUE_FLOW_IDLE_MS;
}

static void flow_release(struct queue *q, bool force);
static void on_flow_timer(struct timer_item *it, uint64_t now);

/* The waiting publishers' deadline: deliveries stopped for QUEUE_FLOW_IDLE_MS, let them go. */
static void arm_flow(struct queue *q)
{
    uint64_t idle = loop_now(q) - q->last_delivery;
    timers_set(&q->vhost->broker->timers, &q->flow_timer,
               timers_now() + (idle < QUEUE_FLOW_IDLE_MS ? QUEUE_FLOW_IDLE_MS - idle : 0),
               on_flow_timer);
}

static void on_flow_timer(struct timer_item *it, uint64_t now)
{
    (void)now;
    struct queue *q = (struct queue *)((char *)it - offsetof(struct queue, flow_timer));
    if (loop_now(q) - q->last_delivery >= QUEUE_FLOW_IDLE_MS)
        flow_release(q, true);
    else if (!list_empty(&q->flow_waiters))
        arm_flow(q);
}

void queue_flow_wait(struct queue *q, struct flow_waiter *w)
{
    queue_ref(q);
    w->q = q;
    bool first = list_empty(&q->flow_waiters);
    list_insert_tail(&q->flow_waiters, &w->link);
    if (first)
        arm_flow(q);
}

void queue_flow_cancel(struct flow_waiter *w)
{
    if (!w->q)
        return;
    list_remove(&w->link);
    queue_unref(w->q);
    w->q = NULL;
}

/* Lets the waiting publishers go once q has drained to the low mark, has no consumer left to
 * wait for, or is gone (or at once when `force`: its consumers stopped taking messages). */
static void flow_release(struct queue *q, bool force)
{
    if (list_empty(&q->flow_waiters) ||
        (!force && q->consumer_count && !q->deleted && queue_ready(q) > QUEUE_FLOW_LOW))
        return;
    timers_cancel(&q->vhost->broker->timers, &q->flow_timer);
    queue_ref(q);
    while (!list_empty(&q->flow_waiters)) {
        struct flow_waiter *w = list_entry(q->flow_waiters.next, struct flow_waiter, link);
        queue_flow_cancel(w);
        w->resume(w);
    }
    queue_unref(q);
}

/* Removes the front entry (known to exist) from the window. */
static struct qentry take_front(struct queue *q)
{
    struct qentry e;
    win_pop(q, &e);
    q->bytes_all -= e.m->body_size;
    flow_release(q, false);
    return e;
}

/* Drops expired entries at the front (dead-lettering them with reason expired). `strict`:
 * expiry at exactly now still counts as alive (TTL 0 gets its dispatch). Returns the number
 * handled, at most `max`. */
static uint32_t expire_front(struct queue *q, uint64_t now, bool strict, uint32_t max)
{
    uint32_t n = 0;
    while (n < max) {
        if (!q->count)
            refill(q);
        struct qentry *f = win_front(q);
        if (!f || !f->expires || (strict ? f->expires >= now || (f->flags & QE_TTL0)
                                         : f->expires > now))
            break;
        struct qentry e = take_front(q);
        queue_settled(q, &e);
        deadletter(q, &e, DL_EXPIRED);
        msg_unref(e.m);
        n++;
    }
    return n;
}

void queue_expire_ttl0(struct queue *q)
{
    list_remove(&q->ttl0_link);
    if (!q->deleted) {
        expire_front(q, timers_now(), false, UINT32_MAX);
        arm_ttl(q);
    }
}

static void on_ttl_timer(struct timer_item *it, uint64_t now)
{
    struct queue *q = (struct queue *)((char *)it - offsetof(struct queue, ttl_timer));
    if (q->deleted)
        return;
    struct qentry *f = win_front(q);
    if (f && (f->flags & QE_TTL0))
        return; /* handled at the end of the turn, after dispatch */
    if (expire_front(q, now, false, EXPIRE_BATCH) == EXPIRE_BATCH) {
        /* A long run of expired messages: go on in the next loop turn, publishers first. */
        timers_set(&q->vhost->broker->timers, &q->ttl_timer, now, on_ttl_timer);
        return;
    }
    arm_ttl(q);
}

/* Keeps the TTL timer on the expiry of the message that would be delivered next. When the
 * window is empty but the queue has a TTL and messages on disk, it looks again shortly (the
 * timer pages them in). */
static void arm_ttl(struct queue *q)
{
    struct timers *t = &q->vhost->broker->timers;
    struct qentry *f = win_front(q);
    if (!q->deleted && f && f->expires && !(f->flags & QE_TTL0))
        timers_set(t, &q->ttl_timer, f->expires, on_ttl_timer);
    else if (!q->deleted && !f && q->disk_count && q->opt.message_ttl >= 0)
        timers_set(t, &q->ttl_timer, timers_now() + 1, on_ttl_timer);
    else
        timers_cancel(t, &q->ttl_timer);
}

static void on_expires_timer(struct timer_item *it, uint64_t now)
{
    (void)now;
    struct queue *q = (struct queue *)((char *)it - offsetof(struct queue, expires_timer));
    if (!q->deleted && q->consumer_count == 0) {
        log_info("queue '%s' in vhost '%s' expired (x-expires %lld ms unused); deleting it",
                 q->name, q->vhost->name, (long long)q->opt.expires);
        queue_delete(q);
    }
}

static void arm_expires(struct queue *q)
{
    if (q->opt.expires > 0 && !q->deleted)
        timers_set(&q->vhost->broker->timers, &q->expires_timer,
                   timers_now() + (uint64_t)q->opt.expires, on_expires_timer);
}

void queue_used(struct queue *q)
{
    q->last_active = timers_now();
    arm_expires(q);
}

uint64_t queue_unacked(const struct queue *q)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i <= q->opt.max_priority; i++)
        n += q->rings[i].held;
    return n;
}

void queue_apply_policies(struct queue *q)
{
    struct amqp_wbuf w = {0};
    const struct param *pol, *op;
    amqp_bytes_t args = {q->args, q->args_len};
    amqp_bytes_t body;
    if (policy_effective(q->vhost->broker, q->vhost, q->name, true, args, &w, &body, &pol,
                         &op) < 0) {
        amqp_wbuf_free(&w);
        return;
    }
    uint8_t *eff = NULL;
    if ((pol || op) && !(eff = malloc(body.len ? body.len : 1))) {
        amqp_wbuf_free(&w);
        return;
    }
    if (eff)
        memcpy(eff, body.ptr, body.len);
    free(q->eff_args);
    q->eff_args = eff;
    q->eff_args_len = eff ? body.len : 0;
    amqp_wbuf_free(&w);
    struct queue_opts o;
    args_queue_opts(eff ? (amqp_bytes_t){eff, q->eff_args_len} : args, &o);
    /* What the queue was built with cannot change under it. */
    o.max_priority = q->opt.max_priority;
    o.quorum = q->opt.quorum;
    o.single_active = q->opt.single_active;
    o.message_groups = q->opt.message_groups;
    q->opt = o;
    snprintf(q->policy, sizeof q->policy, "%s", pol ? pol->name : "");
    snprintf(q->op_policy, sizeof q->op_policy, "%s", op ? op->name : "");
    drop_head_over_limit(q);
    if (q->vhost->broker->timers.uv.loop) { /* before the loop runs, queue_start_timers will */
        arm_expires(q);
        arm_ttl(q);
    }
}

void queue_start_timers(struct queue *q)
{
    arm_expires(q);
    if (q->disk_count) /* page the head in soon, to learn when it expires */
        timers_set(&q->vhost->broker->timers, &q->ttl_timer, timers_now(), on_ttl_timer);
}

/* x-message-groups: the next entry consumer c (NULL: basic.get) may have, reading more of the
 * disk run into the window while every group in memory is held by others. */
static bool take_group(struct queue *q, struct consumer *c, struct qentry *ret)
{
    while (!groups_take(q->groups, c, ret)) {
        uint32_t before = q->count;
        if (window_full(q) || !(q->disk_count || q->pend_count))
            return false;
        refill(q);
        if (q->count == before)
            return false;
    }
    win_took(q, ret);
    q->bytes_all -= ret->m->body_size;
    flow_release(q, false);
    return true;
}

static bool pop_for(struct queue *q, struct consumer *c, struct qentry *ret)
{
    expire_front(q, timers_now(), true, UINT32_MAX);
    if (!q->count)
        refill(q);
    if (q->groups) {
        if (!take_group(q, c, ret))
            return false;
    } else if (!q->count) {
        return false;
    } else {
        *ret = take_front(q);
    }
    arm_ttl(q);
    return true;
}

bool queue_pop(struct queue *q, struct qentry *ret)
{
    return pop_for(q, NULL, ret);
}

void queue_delivered(struct queue *q, const struct qentry *e)
{
    if ((e->flags & QE_STORED) && e->seq > q->delivered_seq) {
        q->delivered_seq = e->seq;
        meta_dirty(q);
    }
}

void queue_settled(struct queue *q, const struct qentry *e)
{
    if (q->dedup)
        dedup_queue_left(q, e->m);
    if (q->groups && groups_done(q->groups, e))
        queue_kick(q); /* its group is free for any consumer */
    if (!(e->flags & QE_STORED) || q->deleted || !store(q))
        return;
    storage_del_idx(store(q), q->store_id, e->seq);
    if (e->flags & QE_PERSISTENT) {
        q->stored_count--;
        meta_dirty(q);
    }
}

void queue_reject(struct queue *q, const struct qentry *e)
{
    queue_settled(q, e);
    deadletter(q, e, DL_REJECTED);
}

uint64_t queue_ready(const struct queue *q)
{
    return q->count + q->pend_count + q->disk_count;
}

/* x-overflow drop-head: the oldest ready messages go (dead-lettered as maxlen). */
static void drop_head_over_limit(struct queue *q)
{
    if (q->opt.overflow != OVERFLOW_DROP_HEAD)
        return;
    while ((q->opt.max_length >= 0 && queue_ready(q) > (uint64_t)q->opt.max_length) ||
           (q->opt.max_length_bytes >= 0 && q->bytes_all > (uint64_t)q->opt.max_length_bytes)) {
        if (!q->count)
            refill(q);
        if (!q->count)
            break;
        struct qentry e = take_front(q);
        queue_settled(q, &e);
        deadletter(q, &e, DL_MAXLEN);
        msg_unref(e.m);
    }
    arm_ttl(q);
}

uint32_t queue_purge(struct queue *q)
{
    uint64_t n = queue_ready(q);
    struct qentry e;
    while (win_pop(q, &e)) {
        queue_settled(q, &e);
        msg_unref(e.m);
    }
    while (q->pend_count) {
        struct pentry p = pend_pop(q);
        queue_settled(q, &p.e);
        msg_unref(p.e.m);
    }
    /* The entries above left the deduplication set one by one (queue_settled); those of a run
     * on disk are not read back, so then the whole set goes, the ids of delivered messages not
     * yet acked too (docs/sns-sqs.md). */
    if (q->dedup && q->disk_count)
        dedup_queue_purged(q);
    if (q->disk_count && !q->deleted && store(q)) {
        storage_del_idx_from(store(q), q->store_id, q->disk_head);
        q->stored_count -= q->disk_persistent;
        meta_dirty(q);
    }
    q->disk_count = q->disk_persistent = 0;
    q->bytes_all = 0;
    arm_ttl(q);
    flow_release(q, false);
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* The bucket for priority p, created (in order, highest first) when missing. NULL on OOM. */
static struct cbucket *bucket_for(struct queue *q, int32_t p)
{
    uint32_t i = 0;
    while (i < q->nbuckets && q->buckets[i]->priority > p)
        i++;
    if (i < q->nbuckets && q->buckets[i]->priority == p)
        return q->buckets[i];
    struct cbucket *b = malloc(sizeof *b);
    if (!b || array_reserve((void **)&q->buckets, &q->buckets_cap, q->nbuckets,
                            sizeof *q->buckets, 2) < 0) {
        free(b);
        return NULL;
    }
    *b = (struct cbucket){.priority = p};
    list_init(&b->ready);
    list_init(&b->parked);
    memmove(&q->buckets[i + 1], &q->buckets[i], (q->nbuckets - i) * sizeof *q->buckets);
    q->buckets[i] = b;
    q->nbuckets++;
    return b;
}

int queue_add_consumer(struct queue *q, struct consumer *c)
{
    struct cbucket *b = bucket_for(q, c->priority);
    if (!b)
        return -ENOMEM;
    c->q = q;
    c->bucket = b;
    c->parked = false;
    b->count++;
    list_insert_tail(&b->ready, &c->dlink);
    queue_ref(q);
    list_insert_tail(&q->consumers, &c->qlink);
    q->consumer_count++;
    q->had_consumer = true;
    if (c->exclusive)
        q->exclusive_consumer = true;
    if (q->opt.single_active && !q->active)
        q->active = c; /* the first one is active until it goes */
    queue_kick(q);
    return 0;
}

/* Unlinks c from q without the auto-delete check. */
static void detach(struct queue *q, struct consumer *c)
{
    if (q->groups)
        groups_consumer_gone(q->groups, c);
    if (q->active == c) {
        q->active = NULL;
        queue_kick(q); /* the next one takes over */
    }
    list_remove(&c->qlink);
    list_remove(&c->dlink);
    struct cbucket *b = c->bucket;
    if (--b->count == 0) { /* the last of its priority: the bucket goes */
        uint32_t i = 0;
        while (q->buckets[i] != b)
            i++;
        memmove(&q->buckets[i], &q->buckets[i + 1], (q->nbuckets - i - 1) * sizeof *q->buckets);
        q->nbuckets--;
        free(b);
    }
    c->bucket = NULL;
    q->consumer_count--;
    if (c->exclusive)
        q->exclusive_consumer = false;
    c->q = NULL;
}

void consumer_wake(struct consumer *c)
{
    if (!c->q)
        return;
    if (c->parked) {
        list_remove(&c->dlink);
        list_insert_tail(&c->bucket->ready, &c->dlink);
        c->parked = false;
    }
    queue_kick(c->q);
}

void queue_remove_consumer(struct queue *q, struct consumer *c)
{
    detach(q, c);
    flow_release(q, false); /* nobody left to wait for? */
    if (q->consumer_count == 0)
        queue_used(q); /* x-expires counts from the last consumer's departure */
    /* Not while shutting down: a durable auto-delete queue outlives a restart. */
    if (q->auto_delete && q->had_consumer && q->consumer_count == 0 && !q->deleted &&
        !q->vhost->broker->stopping)
        queue_delete(q);
    queue_unref(q);
}

uint32_t queue_delete(struct queue *q)
{
    if (q->deleted)
        return 0;
    q->deleted = true;
    q->vhost->broker->access_gen++; /* cached decisions about q (by address) are stale */
    queue_ref(q); /* keep q alive through the teardown */
    timers_cancel(&q->vhost->broker->timers, &q->ttl_timer);
    timers_cancel(&q->vhost->broker->timers, &q->expires_timer);
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &q->consumers) {
        struct consumer *c = list_entry(pos, struct consumer, qlink);
        detach(q, c);
        c->ops->cancelled(c);
        queue_unref(q);
    }
    list_foreach_safe(pos, tmp, &q->bindings_in)
        binding_free(list_entry(pos, struct binding, dst_link));
    uint32_t n = queue_purge(q); /* (releases the publishers waiting for q) */
    delay_target_gone(q->vhost->broker, 'q', q, q->store_id); /* its delayed messages */
    persist_queue_deleted(q->vhost->broker, q);
    vhost_remove_queue(q->vhost, q);
    queue_unref(q);
    return n;
}

void queue_kick(struct queue *q)
{
    if (!q->kicked && !q->deleted && queue_ready(q) && q->consumer_count)
        broker_kick_queue(q->vhost->broker, q);
}

/* The next consumer to serve: the head of the highest-priority bucket's ready list that can
 * take a delivery now. Those that cannot are parked on the way (each at most once until woken),
 * so a dispatch costs O(priorities + consumers that became full), not O(consumers). */
static struct consumer *next_consumer(struct queue *q)
{
    for (uint32_t i = 0; i < q->nbuckets; i++) {
        struct cbucket *b = q->buckets[i];
        while (!list_empty(&b->ready)) {
            struct consumer *c = list_entry(b->ready.next, struct consumer, dlink);
            if (c->ops->can_take(c)) {
                list_remove(&c->dlink); /* round-robin: to the tail */
                list_insert_tail(&b->ready, &c->dlink);
                return c;
            }
            list_remove(&c->dlink);
            list_insert_tail(&b->parked, &c->dlink);
            c->parked = true;
        }
    }
    return NULL;
}

void queue_dispatch(struct queue *q)
{
    uint32_t misses = 0; /* consumers in a row that had nothing (x-message-groups: held) */
    while (queue_ready(q) && q->consumer_count) {
        struct consumer *chosen;
        if (q->opt.single_active) {
            /* Single active consumer: it stays until it goes; then the waiting one with the
             * highest priority, the oldest first (the list is never rotated). */
            if (!q->active) {
                struct list *pos, *tmp;
                list_foreach_safe(pos, tmp, &q->consumers) {
                    struct consumer *c = list_entry(pos, struct consumer, qlink);
                    if (!q->active || c->priority > q->active->priority)
                        q->active = c;
                }
            }
            chosen = q->active;
            if (!chosen->ops->can_take(chosen))
                return;
        } else if (!(chosen = next_consumer(q))) {
            return;
        }
        struct qentry e;
        if (!pop_for(q, chosen, &e)) {
            /* With groups another consumer may still have something: its held groups. */
            if (!q->groups || q->opt.single_active || ++misses >= q->consumer_count ||
                !groups_takable(q->groups))
                return;
            continue;
        }
        misses = 0;
        chosen->ops->deliver(chosen, q, &e);
        msg_unref(e.m);
        q->last_delivery = loop_now(q);
    }
}

struct consumer *consumer_ref(struct consumer *c)
{
    c->refs++;
    return c;
}

void consumer_unref(struct consumer *c)
{
    if (c && --c->refs == 0)
        free(c);
}
