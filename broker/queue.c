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
#include "broker/msg.h"
#include "broker/queue.h"
#include "broker/server.h"
#include "broker/vhost.h"

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
    list_init(&q->consumers);
    list_init(&q->bindings_in);
    return q;
}

void queue_ref(struct queue *q)
{
    q->refs++;
}

void queue_unref(struct queue *q)
{
    if (!q || --q->refs > 0)
        return;
    queue_purge(q);
    free(q->ring);
    free(q->args);
    free(q->name);
    free(q);
}

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

int queue_push(struct queue *q, struct msg *m)
{
    if (q->count == q->cap && ring_grow(q) < 0)
        return -ENOMEM;
    q->ring[(q->head + q->count) & (q->cap - 1)] = (struct qentry){msg_ref(m), q->next_seq++, false};
    q->count++;
    q->ready_bytes += m->body_size;
    q->vhost->srv->queued_mem += msg_mem(m);
    return 0;
}

int queue_requeue(struct queue *q, struct msg *m, uint64_t seq)
{
    if (q->count == q->cap && ring_grow(q) < 0)
        return -ENOMEM;
    /* Requeued messages gather at the head; find the place among them (usually 0). */
    uint32_t mask = q->cap - 1, i = 0;
    while (i < q->count && q->ring[(q->head + i) & mask].seq < seq)
        i++;
    uint32_t head = (q->head - 1) & mask;
    for (uint32_t k = 0; k < i; k++)
        q->ring[(head + k) & mask] = q->ring[(q->head + k) & mask];
    q->ring[(head + i) & mask] = (struct qentry){msg_ref(m), seq, true};
    q->head = head;
    q->count++;
    q->ready_bytes += m->body_size;
    q->vhost->srv->queued_mem += msg_mem(m);
    return 0;
}

bool queue_pop(struct queue *q, struct qentry *ret)
{
    if (!q->count)
        return false;
    *ret = q->ring[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->count--;
    q->ready_bytes -= ret->m->body_size;
    q->vhost->srv->queued_mem -= msg_mem(ret->m);
    return true;
}

uint32_t queue_purge(struct queue *q)
{
    uint32_t n = q->count;
    struct qentry e;
    while (queue_pop(q, &e))
        msg_unref(e.m);
    return n;
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
    if (q->auto_delete && q->had_consumer && q->consumer_count == 0 && !q->deleted)
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
    vhost_remove_queue(q->vhost, q);
    queue_unref(q);
    return n;
}

void queue_kick(struct queue *q)
{
    if (!q->kicked && !q->deleted && q->count && q->consumer_count)
        server_kick_queue(q->vhost->srv, q);
}

void queue_dispatch(struct queue *q)
{
    while (q->count && !list_empty(&q->consumers)) {
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
        queue_pop(q, &e);
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
