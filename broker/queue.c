/* queue.c — owns queue state: the ready ring, the consumer list, and dispatch. Does not own
 * message bodies (refcounted in msg.c) nor unacked deliveries (the channel's ring).
 * Invariants: ring holds `count` entries starting at `head` (mod cap, cap a power of two);
 * ready_bytes is the sum of their body sizes (and srv->queued_mem counts their memory); a deleted queue has no consumers and no
 * entries and is not in its vhost's map. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "broker/binding.h"
#include "broker/channel.h"
#include "broker/conn.h"
#include "broker/log.h"
#include "broker/msg.h"
#include "broker/persist.h"
#include "broker/queue.h"
#include "broker/server.h"
#include "broker/vhost.h"
#include "storage/batch.h"
#include "storage/env.h"
#include "storage/recover.h"

#define WINDOW 2048             /* ready messages a durable queue keeps in memory */
#define WINDOW_BYTES (8u << 20)  /* ... or this many body bytes, whichever comes first */
#define PAGE_IN 1024             /* messages read back from disk at a time */

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
    q->vhost = vh;
    q->refs = 1;
    q->next_seq = 1;
    list_init(&q->consumers);
    list_init(&q->bindings_in);
    list_init(&q->meta_link);
    list_init(&q->pend_link);
    return q;
}

void queue_ref(struct queue *q)
{
    q->refs++;
}

static void pend_clear(struct queue *q);

void queue_unref(struct queue *q)
{
    if (!q || --q->refs > 0)
        return;
    while (q->count) { /* no storage work: a deleted queue's records went with it */
        struct qentry e = q->ring[q->head];
        q->head = (q->head + 1) & (q->cap - 1);
        q->count--;
        q->vhost->srv->queued_mem -= msg_mem(e.m);
        msg_unref(e.m);
    }
    pend_clear(q);
    list_remove(&q->meta_link);
    free(q->pend);
    free(q->ring);
    free(q->args);
    free(q->name);
    free(q);
}

static struct storage *store(const struct queue *q)
{
    return q->vhost->srv->store;
}

static void meta_dirty(struct queue *q)
{
    if (!q->meta_dirty && q->store_id && store(q)) {
        q->meta_dirty = true;
        list_insert_tail(&q->vhost->srv->meta_dirty, &q->meta_link);
    }
}

void queue_flush_meta(struct queue *q)
{
    list_remove(&q->meta_link);
    q->meta_dirty = false;
    if (q->store_id && !q->deleted && store(q))
        storage_put_queue_meta(store(q), q->store_id, q->stored_count, q->delivered_seq);
}

/* ---- the in-memory window ------------------------------------------------------------- */

static int ring_grow(struct queue *q)
{
    uint32_t cap = q->cap ? q->cap * 2 : 16;
    struct qentry *ring = malloc(cap * sizeof *ring);
    if (!ring)
        return -ENOMEM;
    for (uint32_t i = 0; i < q->count; i++)
        ring[i] = q->ring[(q->head + i) & (q->cap - 1)];
    free(q->ring);
    q->ring = ring;
    q->cap = cap;
    q->head = 0;
    return 0;
}

static int ring_push(struct queue *q, struct qentry e)
{
    if (q->count == q->cap && ring_grow(q) < 0)
        return -ENOMEM;
    q->ring[(q->head + q->count) & (q->cap - 1)] = e;
    q->count++;
    q->ready_bytes += e.m->body_size;
    q->vhost->srv->queued_mem += msg_mem(e.m);
    return 0;
}

static bool window_full(const struct queue *q)
{
    return q->count >= WINDOW || q->ready_bytes >= WINDOW_BYTES;
}

/* ---- entries being written (pend) ------------------------------------------------------ */

static int pend_push(struct queue *q, struct pentry p)
{
    if (q->pend_count == q->pend_cap) {
        uint32_t cap = q->pend_cap ? q->pend_cap * 2 : 64;
        struct pentry *a = malloc(cap * sizeof *a);
        if (!a)
            return -ENOMEM;
        for (uint32_t i = 0; i < q->pend_count; i++)
            a[i] = q->pend[(q->pend_head + i) & (q->pend_cap - 1)];
        free(q->pend);
        q->pend = a;
        q->pend_cap = cap;
        q->pend_head = 0;
    }
    q->pend[(q->pend_head + q->pend_count) & (q->pend_cap - 1)] = p;
    if (q->pend_count++ == 0)
        list_insert_tail(&q->vhost->srv->pending_queues, &q->pend_link);
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
    while (q->pend_count && q->pend[q->pend_head].batch <= durable) {
        struct pentry p = pend_pop(q);
        if (q->disk_count == 0 && !window_full(q) && ring_push(q, p.e) == 0)
            continue; /* room in memory: keep it there */
        if (q->disk_count++ == 0)
            q->disk_head = p.e.seq;
        if (p.e.flags & QE_PERSISTENT)
            q->disk_persistent++;
        msg_unref(p.e.m);
    }
}

/* ---- push, pop, requeue ----------------------------------------------------------------- */

int queue_push(struct queue *q, struct msg *m)
{
    struct qentry e = {m, q->next_seq++, 0};
    struct storage *st = store(q);
    bool paged = false;
    if (q->store_id) {
        paged = q->disk_count || q->pend_count || window_full(q);
        uint64_t id = m->store_id;
        if (id) { /* persistent: written once by the publisher for all its durable queues */
            e.flags = QE_STORED | QE_PERSISTENT;
            q->stored_count++;
            meta_dirty(q);
        } else if (paged) { /* transient, but past the window: a copy of its own on disk */
            id = persist_msg(q->vhost->srv, m, 1, false);
            e.flags = QE_STORED;
        }
        if (e.flags & QE_STORED)
            storage_put_idx(st, q->store_id, e.seq, id,
                            e.flags & QE_PERSISTENT ? 0 : STORAGE_IDX_TRANSIENT);
    }
    msg_ref(m);
    int rc = paged ? pend_push(q, (struct pentry){e, storage_batch_no(st)}) : ring_push(q, e);
    if (rc < 0) {
        msg_unref(m);
        return rc;
    }
    return 0;
}

int queue_requeue(struct queue *q, const struct qentry *re)
{
    if (q->count == q->cap && ring_grow(q) < 0)
        return -ENOMEM;
    /* Requeued messages gather at the head; find the place among them (usually 0). */
    uint32_t mask = q->cap - 1, i = 0;
    while (i < q->count && q->ring[(q->head + i) & mask].seq < re->seq)
        i++;
    uint32_t head = (q->head - 1) & mask;
    for (uint32_t k = 0; k < i; k++)
        q->ring[(head + k) & mask] = q->ring[(q->head + k) & mask];
    q->ring[(head + i) & mask] = (struct qentry){msg_ref(re->m), re->seq,
                                                 (uint8_t)(re->flags | QE_REDELIVERED)};
    q->head = head;
    q->count++;
    q->ready_bytes += re->m->body_size;
    q->vhost->srv->queued_mem += msg_mem(re->m);
    return 0;
}

/* Reads the next part of the on-disk run into the window. */
static void page_in(struct queue *q)
{
    struct st_entry ents[64];
    while (q->disk_count && !window_full(q) && q->count < PAGE_IN) {
        size_t n = 0, want = q->disk_count < 64 ? (size_t)q->disk_count : 64;
        int rc = storage_read_queue(store(q), q->store_id, q->disk_head, want, ents, &n);
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
        for (size_t i = 0; i < n; i++) {
            struct st_entry *se = &ents[i];
            q->disk_head = se->seq + 1;
            if (se->stale) { /* a transient message from before the restart */
                storage_del_idx(store(q), q->store_id, se->seq);
                free(se->data);
                continue;
            }
            bool persistent = !(se->flags & STORAGE_IDX_TRANSIENT);
            q->disk_count--;
            if (persistent)
                q->disk_persistent--;
            struct msg *m = persist_msg_load(se->data, se->len);
            free(se->data);
            if (!m) {
                log_error("queue '%s': stored message %llu does not decode; dropping it",
                          q->name, (unsigned long long)se->msg_id);
                storage_del_idx(store(q), q->store_id, se->seq);
                if (persistent) {
                    q->stored_count--;
                    meta_dirty(q);
                }
                continue;
            }
            uint8_t flags = QE_STORED | (persistent ? QE_PERSISTENT : 0) |
                            (se->seq <= q->delivered_seq ? QE_REDELIVERED : 0);
            if (ring_push(q, (struct qentry){m, se->seq, flags}) < 0) { /* the ring owns m */
                log_error("out of memory paging in queue '%s'", q->name);
                exit(70);
            }
        }
    }
}

bool queue_pop(struct queue *q, struct qentry *ret)
{
    if (!q->count) {
        if (q->disk_count)
            page_in(q);
        while (!q->disk_count && q->pend_count && !window_full(q)) {
            /* Still being written, but in memory and next in order: the reference moves. */
            struct pentry p = q->pend[q->pend_head];
            if (ring_push(q, p.e) < 0)
                break;
            pend_pop(q);
        }
    }
    if (!q->count)
        return false;
    *ret = q->ring[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->count--;
    q->ready_bytes -= ret->m->body_size;
    q->vhost->srv->queued_mem -= msg_mem(ret->m);
    return true;
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
    if (!(e->flags & QE_STORED) || q->deleted || !store(q))
        return;
    storage_del_idx(store(q), q->store_id, e->seq);
    if (e->flags & QE_PERSISTENT) {
        q->stored_count--;
        meta_dirty(q);
    }
}

uint64_t queue_ready(const struct queue *q)
{
    return q->count + q->pend_count + q->disk_count;
}

uint32_t queue_purge(struct queue *q)
{
    uint64_t n = queue_ready(q);
    while (q->count) {
        struct qentry e = q->ring[q->head];
        q->head = (q->head + 1) & (q->cap - 1);
        q->count--;
        q->ready_bytes -= e.m->body_size;
        q->vhost->srv->queued_mem -= msg_mem(e.m);
        queue_settled(q, &e);
        msg_unref(e.m);
    }
    while (q->pend_count) {
        struct pentry p = pend_pop(q);
        queue_settled(q, &p.e);
        msg_unref(p.e.m);
    }
    if (q->disk_count && !q->deleted && store(q)) {
        storage_del_idx_from(store(q), q->store_id, q->disk_head);
        q->stored_count -= q->disk_persistent;
        meta_dirty(q);
    }
    q->disk_count = q->disk_persistent = 0;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

void queue_add_consumer(struct queue *q, struct consumer *c)
{
    c->q = q;
    queue_ref(q);
    list_insert_tail(&q->consumers, &c->qlink);
    q->consumer_count++;
    q->had_consumer = true;
    if (c->exclusive)
        q->exclusive_consumer = true;
    queue_kick(q);
}

/* Unlinks c from q without the auto-delete check. */
static void detach(struct queue *q, struct consumer *c)
{
    list_remove(&c->qlink);
    q->consumer_count--;
    if (c->exclusive)
        q->exclusive_consumer = false;
    c->q = NULL;
}

void queue_remove_consumer(struct queue *q, struct consumer *c)
{
    detach(q, c);
    /* Not while shutting down: a durable auto-delete queue outlives a restart. */
    if (q->auto_delete && q->had_consumer && q->consumer_count == 0 && !q->deleted &&
        !q->vhost->srv->stopping)
        queue_delete(q);
    queue_unref(q);
}

uint32_t queue_delete(struct queue *q)
{
    if (q->deleted)
        return 0;
    q->deleted = true;
    queue_ref(q); /* keep q alive through the teardown */
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &q->consumers) {
        struct consumer *c = list_entry(pos, struct consumer, qlink);
        detach(q, c);
        channel_consumer_cancelled(c->ch, c);
        queue_unref(q);
    }
    list_foreach_safe(pos, tmp, &q->bindings_in)
        binding_free(list_entry(pos, struct binding, dst_link));
    uint32_t n = queue_purge(q);
    persist_queue_deleted(q->vhost->srv, q);
    vhost_remove_queue(q->vhost, q);
    queue_unref(q);
    return n;
}

void queue_kick(struct queue *q)
{
    if (!q->kicked && !q->deleted && queue_ready(q) && q->consumer_count)
        server_kick_queue(q->vhost->srv, q);
}

void queue_dispatch(struct queue *q)
{
    while (queue_ready(q) && !list_empty(&q->consumers)) {
        /* Round-robin: try each consumer once, starting at the head of the list; a consumer
         * that takes a message moves to the tail. */
        struct consumer *chosen = NULL;
        struct list *pos, *tmp;
        list_foreach_safe(pos, tmp, &q->consumers) {
            struct consumer *c = list_entry(pos, struct consumer, qlink);
            if (channel_can_deliver(c->ch, c)) {
                chosen = c;
                break;
            }
        }
        if (!chosen)
            return;
        list_remove(&chosen->qlink);
        list_insert_tail(&q->consumers, &chosen->qlink);
        struct qentry e;
        if (!queue_pop(q, &e))
            return;
        channel_deliver(chosen->ch, chosen, q, &e);
        msg_unref(e.m);
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
