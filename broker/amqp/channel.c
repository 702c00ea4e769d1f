/* channel.c — owns a channel's consumers, its unacked-delivery ring and the publish being
 * assembled. Does not own queues or messages (references only). Invariants: the ring holds
 * deliveries for tags [first_tag, first_tag + count) and its head entry is live (dead
 * entries are popped at once); `live` counts live entries; every live entry holds one
 * reference on its message, its queue and (if any) its consumer. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "broker/model/delay.h"
#include "broker/model/args.h"
#include "lib/array.h"
#include "broker/amqp/channel.h"
#include "broker/model/users.h"
#include "broker/amqp/conn.h"
#include "broker/model/deadletter.h"
#include "broker/amqp/declare.h"
#include "broker/model/errors.h"
#include "broker/model/msg.h"
#include "broker/model/msgedit.h"
#include "broker/model/persist.h"
#include "broker/model/publish.h"
#include "broker/model/queue.h"
#include "broker/amqp/replyto.h"
#include "broker/amqp/server.h"
#include "broker/model/vhost.h"
#include "protocol/table.h"
#include "storage/batch.h"

#define STR(b) (int)(b).len, (const char *)(b).ptr

struct channel *channel_new(struct conn *c, uint16_t id)
{
    struct channel *ch = calloc(1, sizeof *ch);
    if (!ch || timers_reserve(&c->srv->b.timers, 1) < 0) { /* the ack timer's heap slot */
        free(ch);
        return NULL;
    }
    ch->conn = c;
    ch->id = id;
    ch->active = true;
    ch->first_tag = ch->next_tag = 1;
    list_init(&ch->consumers);
    list_init(&ch->confirm_link);
    list_init(&ch->wait_link);
    return ch;
}

static void tx_discard(struct channel *ch);

/* ---- unacked ring -------------------------------------------------------------------- */

static struct delivery *ring_at(struct channel *ch, uint32_t i)
{
    return &ch->ring[(ch->head + i) & (ch->cap - 1)];
}

static int ring_push(struct channel *ch, struct delivery d)
{
    if (ring_reserve((void **)&ch->ring, &ch->cap, &ch->head, ch->count, sizeof d, 64) < 0)
        return -ENOMEM;
    *ring_at(ch, ch->count++) = d;
    return 0;
}

/* The timeout that applies to d: its queue's own (x-consumer-timeout or a policy), else the
 * broker's consumer_timeout; 0: none. */
static uint64_t timeout_of(const struct channel *ch, const struct delivery *d)
{
    int64_t own = d->q->opt.consumer_timeout;
    return own >= 0 ? (uint64_t)own : ch->conn->srv->cfg.consumer_timeout_ms;
}

/* The live delivery whose timeout comes first, and when (0: none applies). Only the oldest
 * delivery can come first unless some queue has a timeout of its own. */
static uint64_t first_deadline(const struct channel *ch, const struct delivery **ret)
{
    uint64_t best = 0;
    *ret = NULL;
    for (uint32_t i = 0; i < ch->count; i++) {
        const struct delivery *d = &ch->ring[(ch->head + i) & (ch->cap - 1)];
        uint64_t t = d->live ? timeout_of(ch, d) : 0;
        if (t && (!best || d->at + t < best)) {
            best = d->at + t;
            *ret = d;
        }
        if (!ch->own_timeouts && d->live)
            break; /* every timeout is the broker's: the oldest is first */
    }
    return best;
}

static void arm_ack_timeout(struct channel *ch);

static void on_ack_timeout(struct timer_item *it, uint64_t now)
{
    struct channel *ch = (struct channel *)((char *)it - offsetof(struct channel, ack_timer));
    const struct delivery *d;
    uint64_t when = first_deadline(ch, &d);
    if (!when || when > now) { /* a timeout changed meanwhile (a policy): look again later */
        arm_ack_timeout(ch);
        return;
    }
    struct err e;
    conn_fail(ch->conn, ch->id,
              err_set(&e, -WERR_PRECONDITION_FAILED,
                      "delivery acknowledgement on channel %u timed out. Timeout value used: "
                      "%llu ms. This timeout value can be configured, see consumers doc guide "
                      "to learn more",
                      ch->id, (unsigned long long)timeout_of(ch, d)),
              &e, 0);
}

/* Keeps the acknowledgement timer on the delivery whose timeout comes first. */
static void arm_ack_timeout(struct channel *ch)
{
    struct server *s = ch->conn->srv;
    const struct delivery *d;
    uint64_t when = ch->state == CH_OPEN ? first_deadline(ch, &d) : 0;
    if (when)
        timers_set(&s->b.timers, &ch->ack_timer, when, on_ack_timeout);
    else
        timers_cancel(&s->b.timers, &ch->ack_timer);
}

/* Pops dead entries off the head so that the head is live (or the ring is empty). */
static void ring_trim(struct channel *ch)
{
    while (ch->count && !ch->ring[ch->head].live) {
        ch->head = (ch->head + 1) & (ch->cap - 1);
        ch->count--;
        ch->first_tag++;
    }
    if (!ch->count)
        ch->first_tag = ch->next_tag;
    arm_ack_timeout(ch);
}

enum settle { SETTLE_ACK, SETTLE_REQUEUE, SETTLE_DROP };

/* Which live deliveries of a range settle_range() ends. */
enum pick {
    PICK_ALL,  /* every one (the channel closes) */
    PICK_OPEN, /* those the open transaction has not settled (acks, recover) */
    PICK_TX,   /* those it has (tx.commit) */
};

static bool picked(const struct delivery *d, enum pick pick)
{
    return d->live && (pick == PICK_ALL || (pick == PICK_TX) == d->tx_settled);
}

/* A requeued message whose TTL ran out while it was unacked (TTL 0: at once) is not put back:
 * it expires, as in RabbitMQ. */
static bool expired(const struct qentry *e, uint64_t now)
{
    return e->expires && e->expires <= now;
}

/* Ends one live delivery: the message is dropped or put back at its queue's head. */
static void settle(struct channel *ch, struct delivery *d, enum settle how, uint64_t now)
{
    struct queue *q = d->q;
    if (how == SETTLE_ACK) {
        q->stat[QSTAT_ACK]++;
        ch->conn->srv->b.stats.acknowledged++;
    }
    queue_unhold(q, &d->e); /* its place comes back: a requeue below cannot fail */
    if (how == SETTLE_REQUEUE && expired(&d->e, now)) {
        queue_settled(q, &d->e);
        deadletter(q, &d->e, DL_EXPIRED);
    } else if (how == SETTLE_REQUEUE && q->opt.delivery_limit >= 0 &&
               d->e.returns + 1 > q->opt.delivery_limit) {
        /* x-delivery-limit: a message returned more often than allowed is dead-lettered. */
        queue_settled(q, &d->e);
        deadletter(q, &d->e, DL_DELIVERY_LIMIT);
    } else if (how == SETTLE_REQUEUE && !q->deleted && queue_requeue(q, &d->e) == 0) {
        queue_kick(q);
    } else if (how == SETTLE_DROP) {
        queue_reject(q, &d->e);
    } else {
        queue_settled(q, &d->e);
    }
    if (d->c) {
        d->c->unacked--;
        ch->consumer_live--;
        consumer_wake(d->c);
        consumer_unref(d->c);
    }
    msg_unref(d->e.m);
    queue_unref(d->q);
    d->live = false;
    ch->live--;
    ch->own_timeouts -= d->own_timeout;
}

/* Settles the deliveries at ring indexes [from, to] that `pick` selects. Dead letters (drops,
 * and requeues that expired) go oldest first so that they keep their order; requeued messages
 * go back newest first, each in front of the later ones. When that frees room under the
 * channel's global prefetch, every queue the channel consumes from gets its turn. */
static void settle_range(struct channel *ch, uint32_t from, uint32_t to, enum settle how,
                         enum pick pick)
{
    bool was_full = ch->global_prefetch && ch->consumer_live >= ch->global_prefetch;
    uint64_t now = timers_now();
    for (uint32_t i = from; i <= to; i++) {
        struct delivery *d = ring_at(ch, i);
        if (picked(d, pick) && (how != SETTLE_REQUEUE || expired(&d->e, now)))
            settle(ch, d, how, now);
    }
    if (how == SETTLE_REQUEUE)
        for (uint32_t i = to + 1; i-- > from;) {
            struct delivery *d = ring_at(ch, i);
            if (picked(d, pick))
                settle(ch, d, how, now);
        }
    ring_trim(ch);
    if (was_full && ch->consumer_live < ch->global_prefetch)
        channel_kick_consumers(ch);
}

/* The ring indexes that basic.ack/nack/reject of tag covers (every tag up to it when
 * multiple; tag 0 + multiple means all). The tag must name a live delivery that the open
 * transaction has not settled yet, else RabbitMQ's 406 "unknown delivery tag". Returns 1 when
 * there is nothing to settle. */
static int tag_range(struct channel *ch, uint64_t tag, bool multiple, uint32_t *ret_from,
                     uint32_t *ret_to, struct err *err)
{
    if (multiple && tag == 0) {
        if (!ch->count)
            return 1;
        *ret_from = 0;
        *ret_to = ch->count - 1;
        return 0;
    }
    const struct delivery *d = NULL;
    if (tag >= ch->first_tag && tag - ch->first_tag < ch->count)
        d = ring_at(ch, (uint32_t)(tag - ch->first_tag));
    if (!d || !d->live || d->tx_settled)
        return err_set(err, -WERR_PRECONDITION_FAILED, "unknown delivery tag %llu",
                        (unsigned long long)tag);
    *ret_to = (uint32_t)(tag - ch->first_tag);
    *ret_from = multiple ? 0 : *ret_to;
    return 0;
}

/* Every delivery goes back to its queue (channel close): nothing is left live. */
static void settle_all(struct channel *ch, enum pick pick)
{
    if (ch->count)
        settle_range(ch, 0, ch->count - 1, SETTLE_REQUEUE, pick);
}

/* ---- deliveries ---------------------------------------------------------------------- */

/* May consumer c take one more delivery now? */
static bool consumer_can_take(struct consumer *c)
{
    struct channel *ch = c->owner;
    if (ch->state != CH_OPEN || !ch->active || c->cancelled)
        return false;
    if (conn_output_pending(ch->conn) > CONN_OUTPUT_HIGH) {
        ch->conn->throttled = true;
        return false;
    }
    /* RabbitMQ's per-channel limit counts unacked consumer deliveries (not basic.get ones, not
     * no-ack ones), and while it is reached no-ack consumers of the channel wait too. */
    if (ch->global_prefetch && ch->consumer_live >= ch->global_prefetch)
        return false;
    return c->no_ack || !c->prefetch || c->unacked < c->prefetch;
}

void channel_kick_consumers(struct channel *ch)
{
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &ch->consumers)
        consumer_wake(list_entry(pos, struct consumer, chlink));
}

static bool is_delivery_count(amqp_bytes_t k)
{
    return amqp_bytes_eq_str(k, "x-delivery-count");
}

static void add_delivery_count(struct amqp_basic_props *props, amqp_bytes_t headers,
                               struct amqp_wbuf *w, void *arg)
{
    (void)props;
    msg_copy_table(w, headers, is_delivery_count);
    amqp_tw_key(w, "x-delivery-count");
    amqp_tw_int(w, 'l', *(const uint16_t *)arg);
}

/* Sends a content method for e. Quorum queues add x-delivery-count (the number of times it
 * came back): to every basic.get-ok, and to deliveries from the first return on. */
static void send_entry(struct channel *ch, struct queue *q, struct amqp_method *m,
                       const struct qentry *e)
{
    struct broker_stats *st = &ch->conn->srv->b.stats;
    bool redelivered = e->flags & QE_REDELIVERED;
    st->delivered++;
    st->redelivered += redelivered;
    q->stat[QSTAT_DELIVER_GET]++;
    q->stat[QSTAT_REDELIVER] += redelivered;
    struct msg *copy = NULL;
    if (q->opt.quorum && (e->returns || m->id == AMQP_BASIC_GET_OK))
        copy = msg_edit(e->m, msg_exchange(e->m), msg_routing_key(e->m), false,
                        add_delivery_count, (void *)&e->returns);
    conn_send_content(ch->conn, ch->id, m, copy ? copy : e->m);
    msg_unref(copy);
}

static uint64_t noack_tag(struct channel *ch)
{
    uint64_t tag = ch->next_tag++;
    if (ch->count == 0 || ring_push(ch, (struct delivery){0}) < 0)
        ring_trim(ch);
    return tag;
}

/* Assigns the next delivery tag, recording the delivery unless it needs no ack (then it is
 * settled at once). */
static uint64_t track(struct channel *ch, struct consumer *c, struct queue *q,
                      const struct qentry *e, bool no_ack)
{
    queue_delivered(q, e);
    if (no_ack) {
        queue_settled(q, e);
        return noack_tag(ch);
    }
    uint64_t tag = ch->next_tag++;
    struct delivery d = {*e, q, c, timers_now(), true, false, q->opt.consumer_timeout >= 0};
    if (queue_hold(q, e) < 0) { /* out of memory: it goes back (its slot is free) */
        ch->next_tag--;
        return 0;
    }
    msg_ref(e->m);
    if (ring_push(ch, d) < 0) {
        queue_unhold(q, e);
        msg_unref(e->m);
        ch->next_tag--;
        return 0;
    }
    queue_ref(q);
    if (c) {
        consumer_ref(c);
        c->unacked++;
        ch->consumer_live++;
    }
    ch->live++;
    ch->own_timeouts += d.own_timeout;
    if (ch->count == 1 || d.own_timeout) /* else the oldest one's timeout comes first */
        arm_ack_timeout(ch);
    return tag;
}

/* Sends basic.deliver for e (popped from q; the caller keeps its reference) to consumer c,
 * recording it unless no-ack. */
static void consumer_deliver(struct consumer *c, struct queue *q, const struct qentry *e)
{
    struct channel *ch = c->owner;
    struct msg *m = e->m;
    uint64_t tag = track(ch, c, q, e, c->no_ack);
    if (!tag) {
        queue_requeue(q, e);
        return;
    }
    struct amqp_method d = {.id = AMQP_BASIC_DELIVER};
    d.u.basic_deliver.consumer_tag = (amqp_bytes_t){(const uint8_t *)c->tag, c->tag_len};
    d.u.basic_deliver.delivery_tag = tag;
    d.u.basic_deliver.redelivered = (e->flags & QE_REDELIVERED) != 0;
    d.u.basic_deliver.exchange = msg_exchange(m);
    d.u.basic_deliver.routing_key = msg_routing_key(m);
    send_entry(ch, q, &d, e);
}

/* ---- consumers ----------------------------------------------------------------------- */

static struct consumer *find_consumer(struct channel *ch, amqp_bytes_t tag)
{
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &ch->consumers) {
        struct consumer *c = list_entry(pos, struct consumer, chlink);
        if (amqp_bytes_eq(tag, (amqp_bytes_t){(const uint8_t *)c->tag, c->tag_len}))
            return c;
    }
    return NULL;
}

/* Detaches c from its queue and from the channel, dropping the channel's reference. */
static void consumer_end(struct channel *ch, struct consumer *c)
{
    ch->conn->nconsumers--;
    c->cancelled = true;
    list_remove(&c->chlink);
    if (c->q)
        queue_remove_consumer(c->q, c);
    consumer_unref(c);
}

/* The queue was deleted: the client hears of it (basic.cancel) when it asked to. */
static void consumer_cancelled(struct consumer *c)
{
    struct channel *ch = c->owner;
    if (ch->conn->cap_consumer_cancel_notify && ch->state == CH_OPEN) {
        struct amqp_method m = {.id = AMQP_BASIC_CANCEL};
        m.u.basic_cancel.consumer_tag = (amqp_bytes_t){(const uint8_t *)c->tag, c->tag_len};
        m.u.basic_cancel.no_wait = true;
        conn_send_method(ch->conn, ch->id, &m);
    }
    consumer_end(ch, c);
}

void channel_free(struct channel *ch)
{
    if (!ch)
        return;
    if (ch->state == CH_OPEN) /* not the placeholders of closing channels */
        ch->conn->srv->b.stats.channels_closed++;
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &ch->consumers)
        consumer_end(ch, list_entry(pos, struct consumer, chlink));
    settle_all(ch, PICK_ALL);
    msg_unref(ch->building);
    tx_discard(ch);
    free(ch->tx_msgs);
    free(ch->tx_acks);
    list_remove(&ch->confirm_link);
    list_remove(&ch->wait_link);
    timers_cancel(&ch->conn->srv->b.timers, &ch->ack_timer);
    timers_unreserve(&ch->conn->srv->b.timers, 1);
    replyto_forget(ch);
    free(ch->pending);
    route_free(&ch->route);
    free(ch->ring);
    free(ch);
}

/* ---- basic methods ------------------------------------------------------------------- */

static int on_basic_qos(struct channel *ch, const struct amqp_basic_qos *q, struct err *err)
{
    if (q->prefetch_size != 0)
        return err_set(err, -WERR_NOT_IMPLEMENTED, "prefetch_size!=0 (%u)",
                        q->prefetch_size);
    if (q->global)
        ch->global_prefetch = q->prefetch_count;
    else
        ch->prefetch = q->prefetch_count;
    struct amqp_method m = {.id = AMQP_BASIC_QOS_OK};
    conn_send_method(ch->conn, ch->id, &m);
    channel_kick_consumers(ch);
    return 0;
}

static int on_basic_consume(struct channel *ch, const struct amqp_basic_consume *bc, struct err *err)
{
    struct conn *c = ch->conn;
    struct queue *q;
    int64_t max = c->srv->cfg.consumer_max_per_channel;
    if (max >= 0 && !find_consumer(ch, bc->consumer_tag)) {
        int64_t n = 0;
        struct list *pos;
        list_foreach(pos, &ch->consumers)
            n++;
        if (n >= max)
            return err_set(err, -WERR_NOT_ALLOWED, "reached maximum (%lld) of consumers per channel",
                           (long long)max);
    }
    if (amqp_bytes_eq_str(bc->queue, REPLYTO_QUEUE))
        return replyto_consume(ch, bc, err);
    int rc = declare_lookup_queue(ch, bc->queue, &q, err);
    if (rc < 0)
        return rc;
    char tag[256];
    amqp_bytes_t t = bc->consumer_tag;
    if (t.len == 0) {
        server_gen_name(c->srv, "amq.ctag-", tag, sizeof tag);
        t = amqp_cstr(tag);
    }
    if (find_consumer(ch, t))
        return err_set(err, -WERR_NOT_ALLOWED, "attempt to reuse consumer tag '%.*s'", STR(t));
    if (q->exclusive_consumer || (bc->exclusive && q->consumer_count))
        return err_set(err, -WERR_ACCESS_REFUSED, "queue '%s' in vhost '%s' in exclusive use",
                        q->name, q->vhost->name);
    struct amqp_field pr;
    int32_t prio = 0;
    if (amqp_table_get(bc->arguments, "x-priority", &pr) == 1) {
        if (!strchr("bBsuIilL", pr.type))
            return err_set(err, -WERR_PRECONDITION_FAILED,
                            "invalid arg 'x-priority' for queue '%s' in vhost '%s': \"expected "
                            "integer, got %s\"",
                            q->name, q->vhost->name, args_type_name(pr.type));
        prio = (int32_t)(strchr("Bui", pr.type) ? (int64_t)pr.v.u : pr.v.i);
    }
    struct consumer *cons = calloc(1, sizeof *cons);
    if (!cons)
        return -ENOMEM;
    static const struct consumer_ops ops = {consumer_can_take, consumer_deliver,
                                            consumer_cancelled};
    cons->ops = &ops;
    cons->owner = ch;
    cons->refs = 1;
    cons->no_ack = bc->no_ack;
    cons->exclusive = bc->exclusive;
    cons->prefetch = ch->prefetch;
    cons->priority = prio;
    cons->tag_len = (uint8_t)t.len;
    memcpy(cons->tag, t.ptr, t.len);
    if (queue_add_consumer(q, cons) < 0) {
        free(cons);
        return -ENOMEM;
    }
    list_insert_tail(&ch->consumers, &cons->chlink);
    c->nconsumers++;
    if (!bc->no_wait) {
        struct amqp_method m = {.id = AMQP_BASIC_CONSUME_OK};
        m.u.basic_consume_ok.consumer_tag = t;
        conn_send_method(c, ch->id, &m);
    }
    queue_used(q);
    return 0;
}

static int on_basic_cancel(struct channel *ch, const struct amqp_basic_cancel *bc)
{
    struct consumer *c = find_consumer(ch, bc->consumer_tag);
    if (!bc->no_wait) {
        struct amqp_method m = {.id = AMQP_BASIC_CANCEL_OK};
        m.u.basic_cancel_ok.consumer_tag = bc->consumer_tag;
        conn_send_method(ch->conn, ch->id, &m);
    }
    if (c)
        consumer_end(ch, c);
    else
        replyto_cancel(ch, bc->consumer_tag);
    return 0;
}

static int on_basic_get(struct channel *ch, const struct amqp_basic_get *g, struct err *err)
{
    struct queue *q;
    int rc = declare_lookup_queue(ch, g->queue, &q, err);
    if (rc < 0)
        return rc;
    struct qentry e;
    queue_used(q);
    if (!queue_pop(q, &e)) {
        struct amqp_method m = {.id = AMQP_BASIC_GET_EMPTY};
        conn_send_method(ch->conn, ch->id, &m);
        return 0;
    }
    uint64_t tag = track(ch, NULL, q, &e, g->no_ack);
    if (!tag) {
        queue_requeue(q, &e);
        msg_unref(e.m);
        return -ENOMEM;
    }
    struct amqp_method m = {.id = AMQP_BASIC_GET_OK};
    m.u.basic_get_ok.delivery_tag = tag;
    m.u.basic_get_ok.redelivered = (e.flags & QE_REDELIVERED) != 0;
    m.u.basic_get_ok.exchange = msg_exchange(e.m);
    m.u.basic_get_ok.routing_key = msg_routing_key(e.m);
    uint64_t ready = queue_ready(q);
    m.u.basic_get_ok.message_count = ready > UINT32_MAX ? UINT32_MAX : (uint32_t)ready;
    send_entry(ch, q, &m, &e);
    msg_unref(e.m);
    return 0;
}

static int on_basic_recover(struct channel *ch, bool requeue, bool reply, struct err *err)
{
    if (!requeue)
        return err_set(err, -WERR_NOT_IMPLEMENTED, "requeue=false");
    settle_all(ch, PICK_OPEN); /* not what the open transaction acked */
    if (reply) {
        struct amqp_method m = {.id = AMQP_BASIC_RECOVER_OK};
        conn_send_method(ch->conn, ch->id, &m);
    }
    return 0;
}

static int on_basic_publish(struct channel *ch, const struct amqp_basic_publish *p, struct err *err)
{
    if (p->immediate)
        return err_set(err, -WERR_NOT_IMPLEMENTED, "immediate=true");
    struct vhost *vh = ch->conn->vhost;
    struct exchange *x = vhost_exchange(vh, p->exchange);
    int rc = access_check(&ch->conn->access, ACCESS_WRITE, ACCESS_EXCHANGE, p->exchange, x, err);
    if (rc < 0)
        return rc;
    if (!x)
        return err_set(err, -WERR_NOT_FOUND, "no exchange '%.*s' in vhost '%s'",
                        STR(p->exchange), vh->name);
    if (x->internal)
        return err_set(err, -WERR_ACCESS_REFUSED,
                        "cannot publish to internal exchange '%s' in vhost '%s'", x->name, vh->name);
    if ((rc = access_check_topic(&ch->conn->access, ACCESS_WRITE, x, p->routing_key, err)) < 0)
        return rc;
    ch->pub_exchange_len = (uint8_t)p->exchange.len;
    memcpy(ch->pub_exchange, p->exchange.ptr, p->exchange.len);
    ch->pub_rk_len = (uint8_t)p->routing_key.len;
    memcpy(ch->pub_rk, p->routing_key.ptr, p->routing_key.len);
    ch->mandatory = p->mandatory;
    ch->ct = CT_HEADER;
    conn_note_publish(ch->conn);
    return 0;
}

/* Routes m to its queues (an exchange deleted since basic.publish routes nowhere), returning
 * it when mandatory and unroutable. A persistent message bound for durable queues is written
 * to storage once for all of them; *ret_batch gets the storage batch it waits for (0: none). */
static int publish_route(struct channel *ch, struct msg *m, uint64_t *ret_batch,
                         bool *ret_rejected)
{
    struct exchange *x = vhost_exchange(ch->conn->vhost, msg_exchange(m));
    int rc = 0;
    ch->route.n = 0;
    ch->route.deduplicated = 0;
    *ret_batch = 0;
    *ret_rejected = false;
    bool routed;
    if (replyto_route(ch, m, &routed)) {
        /* a reply: delivered straight to its requester, or returned when it is gone */
    } else if (x && x->delayed &&
               (rc = delay_hold_exchange(&ch->conn->srv->b, x, m, ret_batch)) != 0) {
        if (rc < 0)
            return rc;
        routed = true; /* held, routed when due: no mandatory return (docs/sns-sqs.md) */
    } else {
        if (x && (rc = exchange_route(x, m, &ch->route)) < 0)
            return rc;
        /* A duplicate a dedup exchange dropped was handled: not returned as unroutable. */
        routed = ch->route.n > 0 || ch->route.deduplicated;
    }
    if (ch->route.n && /* (a held message has none, and its batch in *ret_batch) */
        (rc = publish_enqueue(&ch->conn->srv->b, m, &ch->route, ret_batch, ret_rejected)) < 0)
        return rc;
    for (uint32_t i = 0; i < ch->route.n; i++)
        if (queue_flow_high(ch->route.q[i])) {
            conn_flow_pause(ch->conn, ch->route.q[i]);
            break;
        }
    struct broker_stats *st = &ch->conn->srv->b.stats;
    st->received++;
    st->received_confirm += ch->confirm;
    if (routed) /* a duplicate a dedup exchange dropped is counted by dedup.c only */
        st->routed += ch->route.n || !ch->route.deduplicated;
    else if (m->flags & MSG_MANDATORY)
        st->unroutable_returned++;
    else
        st->unroutable_dropped++;
    if (!routed && (m->flags & MSG_MANDATORY)) {
        struct amqp_method r = {.id = AMQP_BASIC_RETURN};
        r.u.basic_return.reply_code = 312;
        r.u.basic_return.reply_text = AMQP_BYTES_LIT("NO_ROUTE");
        r.u.basic_return.exchange = msg_exchange(m);
        r.u.basic_return.routing_key = msg_routing_key(m);
        conn_send_content(ch->conn, ch->id, &r, m);
    }
    return 0;
}

static void wait_durable(struct channel *ch)
{
    if (list_empty(&ch->wait_link))
        list_insert_tail(&ch->conn->srv->waiting, &ch->wait_link);
}

/* Publish number ch->publish_seq is routed; its confirm (a nack when a queue refused it) waits
 * for `batch` (0: nothing) and for every earlier publish. Confirms leave, coalesced into
 * multiple=true acks, when the connection flushes. */
static int confirm_publish(struct channel *ch, uint64_t batch, bool nack)
{
    if (batch == 0 && !nack && ch->pending_count == 0) {
        ch->confirm_upto = ch->publish_seq;
        conn_want_confirms(ch->conn, ch);
        return 0;
    }
    if (ring_reserve((void **)&ch->pending, &ch->pending_cap, &ch->pending_head,
                     ch->pending_count, sizeof *ch->pending, 64) < 0)
        return -ENOMEM;
    ch->pending[(ch->pending_head + ch->pending_count++) & (ch->pending_cap - 1)] =
        (struct pconfirm){ch->publish_seq, batch, nack};
    if (batch == 0)
        conn_want_confirms(ch->conn, ch);
    else
        wait_durable(ch);
    return 0;
}

void channel_on_durable(struct channel *ch, uint64_t durable)
{
    if (ch->pending_count && ch->pending[ch->pending_head].batch <= durable)
        conn_want_confirms(ch->conn, ch);
    if (ch->tx_commit_batch && ch->tx_commit_batch <= durable) {
        ch->tx_commit_batch = 0;
        struct amqp_method ok = {.id = AMQP_TX_COMMIT_OK};
        conn_send_method(ch->conn, ch->id, &ok);
    }
    if (!ch->pending_count && !ch->tx_commit_batch)
        list_remove(&ch->wait_link);
}

static void send_ack_upto(struct channel *ch)
{
    if (ch->confirm_upto <= ch->acked_upto)
        return;
    struct amqp_method m = {.id = AMQP_BASIC_ACK};
    m.u.basic_ack.delivery_tag = ch->confirm_upto;
    m.u.basic_ack.multiple = ch->confirm_upto - ch->acked_upto > 1;
    conn_send_method(ch->conn, ch->id, &m);
    ch->conn->srv->b.stats.confirmed += ch->confirm_upto - ch->acked_upto;
    ch->acked_upto = ch->confirm_upto;
}

void channel_send_confirms(struct channel *ch)
{
    if (ch->state != CH_OPEN)
        return;
    uint64_t durable = ch->conn->srv->b.durable_batch;
    while (ch->pending_count && ch->pending[ch->pending_head].batch <= durable) {
        struct pconfirm p = ch->pending[ch->pending_head];
        ch->pending_head = (ch->pending_head + 1) & (ch->pending_cap - 1);
        ch->pending_count--;
        if (p.nack) {
            send_ack_upto(ch); /* everything before it, then the nack itself */
            struct amqp_method m = {.id = AMQP_BASIC_NACK};
            m.u.basic_nack.delivery_tag = p.seq;
            conn_send_method(ch->conn, ch->id, &m);
            ch->acked_upto = p.seq;
        }
        ch->confirm_upto = p.seq;
    }
    send_ack_upto(ch);
    if (!ch->pending_count && !ch->tx_commit_batch)
        list_remove(&ch->wait_link);
}

void channel_nack_pending(struct channel *ch)
{
    if (ch->state != CH_OPEN || !ch->confirm)
        return;
    channel_send_confirms(ch); /* what is already known durable (or needs no disk) */
    if (ch->publish_seq <= ch->acked_upto)
        return;
    struct amqp_method m = {.id = AMQP_BASIC_NACK};
    m.u.basic_nack.delivery_tag = ch->publish_seq;
    m.u.basic_nack.multiple = ch->publish_seq - ch->acked_upto > 1;
    conn_send_method(ch->conn, ch->id, &m);
    ch->acked_upto = ch->confirm_upto = ch->publish_seq;
    ch->pending_count = 0;
}

static int publish_complete(struct channel *ch, struct err *err)
{
    struct msg *m = ch->building;
    ch->building = NULL;
    ch->ct = CT_IDLE;
    int rc = 0;
    if ((m->flags & MSG_REPLY_PSEUDO) && (rc = replyto_rewrite(ch, &m, err)) < 0) {
        msg_unref(m);
        return rc;
    }
    ch->published++;
    if (ch->tx) {
        if (array_reserve((void **)&ch->tx_msgs, &ch->tx_msgs_cap, ch->tx_nmsgs,
                          sizeof *ch->tx_msgs, 16) < 0) {
            msg_unref(m);
            return -ENOMEM;
        }
        ch->tx_msgs[ch->tx_nmsgs++] = m; /* the reference moves to the transaction */
        return 0;
    }
    uint64_t batch;
    bool rejected;
    rc = publish_route(ch, m, &batch, &rejected);
    if (rc == -ENOMEM) {
        /* Out of memory: the publish was refused whole (queues and storage make room before
         * anything changes). Under confirms it is nacked and the channel goes on; otherwise
         * the channel is closed so that the client learns it was not taken. */
        if (ch->confirm) {
            batch = 0;
            rejected = true;
            rc = 0;
        } else {
            rc = err_set(err, -WERR_NO_MEMORY,
                         "out of memory: the message was not enqueued, publish it again later");
        }
    }
    if (rc == 0 && ch->confirm) {
        ch->publish_seq++;
        rc = confirm_publish(ch, batch, rejected);
    }
    msg_unref(m);
    return rc;
}

/* Parses the expiration property (a per-message TTL in ms) as RabbitMQ does; on error
 * formats RabbitMQ's reason (its Erlang term) into why. */
static int parse_expiration(amqp_bytes_t s, int64_t *ret, char *why, size_t size)
{
    size_t i = 0;
    bool neg = false;
    if (i < s.len && (s.ptr[i] == '-' || s.ptr[i] == '+'))
        neg = s.ptr[i++] == '-';
    if (i == s.len || s.ptr[i] < '0' || s.ptr[i] > '9') {
        snprintf(why, size, "no_integer");
        return -1;
    }
    int64_t v = 0;
    for (; i < s.len && s.ptr[i] >= '0' && s.ptr[i] <= '9'; i++)
        v = v > INT64_MAX / 100 ? INT64_MAX / 10 : v * 10 + (s.ptr[i] - '0');
    if (neg)
        v = -v;
    if (i < s.len)
        snprintf(why, size, "{leftover_string,\"%.*s\"}", (int)(s.len - i), (const char *)s.ptr + i);
    else if (v < 0)
        snprintf(why, size, "{value_negative,%lld}", (long long)v);
    else if (v > 315360000000LL) /* RabbitMQ's ceiling: ten years */
        snprintf(why, size, "{value_too_large,%lld}", (long long)v);
    else {
        *ret = v;
        return 0;
    }
    return -1;
}

/* Builds, in w, a copy of the content header whose headers table lacks the BCC entry. */
static int strip_bcc(const struct amqp_content_header *h, struct amqp_wbuf *w)
{
    struct amqp_basic_props props = h->props;
    struct amqp_wbuf t = {0};
    struct amqp_table_iter it;
    amqp_bytes_t key;
    struct amqp_field v;
    amqp_table_iter_init(&it, props.headers);
    const uint8_t *at = it.p;
    while (amqp_table_next(&it, &key, &v) > 0) {
        if (!amqp_bytes_eq_str(key, "BCC")) {
            uint8_t *d = amqp_wbuf_grow(&t, (size_t)(it.p - at));
            if (d)
                memcpy(d, at, (size_t)(it.p - at));
        }
        at = it.p;
    }
    props.headers = (amqp_bytes_t){t.data, (uint32_t)t.len};
    long n = t.failed ? -1 : amqp_content_header_size(&props);
    uint8_t *d = n > 0 ? amqp_wbuf_grow(w, (size_t)n) : NULL;
    if (d)
        amqp_content_header_encode(&props, h->body_size, d);
    amqp_wbuf_free(&t);
    return d ? 0 : -ENOMEM;
}

/* May c's user publish with another user's user_id (the impersonator tag)? */
static bool user_is_impersonator(struct conn *c)
{
    struct user *u = users_find(&c->srv->b, c->user, strlen(c->user));
    return u && (u->tag_bits & USER_TAG_IMPERSONATOR);
}

int channel_handle_header(struct channel *ch, const uint8_t *payload, uint32_t len, struct err *err)
{
    struct conn *c = ch->conn;
    struct amqp_content_header h;
    int st = amqp_content_header_decode(payload, len, &h);
    if (st == AMQP_E_CLASS)
        return err_set(err, -WERR_UNEXPECTED_FRAME,
                        "expected content header for class 60, got one for class %u instead",
                        rd16(payload));
    if (st < 0)
        return err_set(err, -WERR_FRAME_ERROR, "cannot decode the content header: %s",
                        amqp_strerror(st));
    if (h.body_size > c->srv->cfg.max_message_size) {
        ch->ct = CT_IDLE;
        return err_set(err, -WERR_PRECONDITION_FAILED,
                        "message size %llu is larger than configured max size %llu",
                        (unsigned long long)h.body_size,
                        (unsigned long long)c->srv->cfg.max_message_size);
    }
    if ((h.props.flags & AMQP_P_USER_ID) && !amqp_bytes_eq_str(h.props.user_id, c->user) &&
        !user_is_impersonator(c)) {
        ch->ct = CT_IDLE;
        return err_set(err, -WERR_PRECONDITION_FAILED,
                        "user_id property set to '%.*s' but authenticated user was '%s'",
                        STR(h.props.user_id), c->user);
    }
    int64_t ttl = -1;
    char why[128];
    if ((h.props.flags & AMQP_P_EXPIRATION) &&
        parse_expiration(h.props.expiration, &ttl, why, sizeof why) < 0) {
        ch->ct = CT_IDLE;
        return err_set(err, -WERR_PRECONDITION_FAILED, "invalid expiration '%.*s': %s",
                        STR(h.props.expiration), why);
    }
    amqp_bytes_t header = {payload, len}, bcc = {NULL, 0};
    struct amqp_wbuf rebuilt = {0};
    struct amqp_field f;
    uint8_t flags = ch->mandatory ? MSG_MANDATORY : 0;
    if (h.props.flags & AMQP_P_HEADERS) {
        static const char *const sel[] = {"CC", "BCC"};
        for (int i = 0; i < 2; i++)
            if (amqp_table_get(h.props.headers, sel[i], &f) == 1 && f.type != 'A') {
                ch->ct = CT_IDLE;
                return err_set(err, -WERR_PRECONDITION_FAILED,
                                "invalid message: {unacceptable_type_in_header,\"%s\",%s}",
                                sel[i], args_type_name(f.type));
            }
        if (amqp_table_get(h.props.headers, "CC", &f) == 1)
            flags |= MSG_HAS_CC;
        if (amqp_table_get(h.props.headers, "BCC", &f) == 1) {
            bcc = f.v.bytes;
            if (strip_bcc(&h, &rebuilt) < 0)
                return -ENOMEM;
            header = (amqp_bytes_t){rebuilt.data, (uint32_t)rebuilt.len};
        }
    }
    struct msg *m = msg_new((amqp_bytes_t){(const uint8_t *)ch->pub_exchange, ch->pub_exchange_len},
                            (amqp_bytes_t){(const uint8_t *)ch->pub_rk, ch->pub_rk_len}, header,
                            bcc, h.body_size);
    amqp_wbuf_free(&rebuilt);
    if (!m)
        return -ENOMEM;
    m->flags = flags;
    if (h.props.flags & AMQP_P_DELIVERY_MODE)
        m->delivery_mode = h.props.delivery_mode;
    if (h.props.flags & AMQP_P_PRIORITY)
        m->priority = h.props.priority;
    m->ttl = ttl;
    if ((h.props.flags & AMQP_P_REPLY_TO) && amqp_bytes_eq_str(h.props.reply_to, REPLYTO_QUEUE))
        m->flags |= MSG_REPLY_PSEUDO;
    ch->building = m;
    if (h.body_size == 0)
        return publish_complete(ch, err);
    ch->ct = CT_BODY;
    return 0;
}

int channel_handle_body(struct channel *ch, const uint8_t *payload, uint32_t len, struct err *err)
{
    struct msg *m = ch->building;
    if (len > m->body_size - m->body_have)
        return err_set(err, -WERR_UNEXPECTED_FRAME, "content body exceeds the declared size %llu",
                        (unsigned long long)m->body_size);
    memcpy(m->body + m->body_have, payload, len);
    m->body_have += len;
    if (m->body_have == m->body_size)
        return publish_complete(ch, err);
    return 0;
}

/* ---- acks, transactions, confirms ---------------------------------------------------- */

/* basic.ack / nack / reject: settled now, or at tx.commit in a transaction. */
static int on_settle(struct channel *ch, uint64_t tag, bool multiple, enum settle how, struct err *err)
{
    uint32_t from = 0, to = 0;
    int rc = tag_range(ch, tag, multiple, &from, &to, err);
    if (rc)
        return rc < 0 ? rc : 0;
    if (!ch->tx) {
        settle_range(ch, from, to, how, PICK_OPEN);
        return 0;
    }
    /* In a transaction the deliveries are marked now (so that a second ack of a tag is
     * refused, and basic.recover leaves them alone) and settled at tx.commit. */
    if (array_reserve((void **)&ch->tx_acks, &ch->tx_acks_cap, ch->tx_nacks, sizeof *ch->tx_acks,
                      16) < 0)
        return -ENOMEM;
    ch->tx_acks[ch->tx_nacks++] = (struct tx_ack){tag, multiple, (uint8_t)how};
    for (uint32_t i = from; i <= to; i++) {
        struct delivery *d = ring_at(ch, i);
        if (d->live)
            d->tx_settled = true;
    }
    return 0;
}

/* tx.commit: each recorded ack settles the deliveries it marked, in order (a range holds only
 * deliveries marked by its own ack or by earlier ones, which are settled by then). */
static void tx_settle(struct channel *ch)
{
    for (uint32_t i = 0; i < ch->tx_nacks && ch->count; i++) {
        const struct tx_ack *a = &ch->tx_acks[i];
        uint32_t to = ch->count - 1; /* tag 0 + multiple: all */
        if (a->tag && a->tag < ch->first_tag)
            continue; /* settled already */
        if (a->tag)
            to = (uint32_t)(a->tag - ch->first_tag);
        settle_range(ch, a->multiple ? 0 : to, to, (enum settle)a->how, PICK_TX);
    }
}

/* tx.rollback: what the transaction acked is unacked again. */
static void tx_unmark(struct channel *ch)
{
    for (uint32_t i = 0; i < ch->count; i++)
        ring_at(ch, i)->tx_settled = false;
}

static void tx_discard(struct channel *ch)
{
    for (uint32_t i = 0; i < ch->tx_nmsgs; i++)
        msg_unref(ch->tx_msgs[i]);
    ch->tx_nmsgs = 0;
    ch->tx_nacks = 0;
}

static int on_tx(struct channel *ch, uint32_t id, struct err *err)
{
    struct amqp_method ok = {0};
    int rc = 0;
    if (id == AMQP_TX_SELECT) {
        if (ch->confirm)
            return err_set(err, -WERR_PRECONDITION_FAILED,
                            "cannot switch from confirm to tx mode");
        ch->tx = true;
        ok.id = AMQP_TX_SELECT_OK;
    } else if (!ch->tx) {
        return err_set(err, -WERR_PRECONDITION_FAILED, "channel is not transactional");
    } else if (id == AMQP_TX_COMMIT) {
        uint64_t wait = 0, batch;
        bool rejected;
        for (uint32_t i = 0; i < ch->tx_nmsgs && rc == 0; i++) {
            rc = publish_route(ch, ch->tx_msgs[i], &batch, &rejected);
            wait = batch > wait ? batch : wait;
        }
        tx_settle(ch);
        ok.id = AMQP_TX_COMMIT_OK;
        if (wait && rc == 0) { /* commit-ok once the persistent messages are on disk */
            tx_discard(ch);
            ch->tx_commit_batch = wait;
            wait_durable(ch);
            return 0;
        }
    } else {
        tx_unmark(ch);
        ok.id = AMQP_TX_ROLLBACK_OK;
    }
    tx_discard(ch);
    if (rc < 0)
        return rc;
    conn_send_method(ch->conn, ch->id, &ok);
    return 0;
}

static int on_confirm_select(struct channel *ch, const struct amqp_confirm_select *s, struct err *err)
{
    if (ch->tx)
        return err_set(err, -WERR_PRECONDITION_FAILED,
                        "cannot switch from tx to confirm mode");
    ch->confirm = true;
    if (!s->nowait) {
        struct amqp_method ok = {.id = AMQP_CONFIRM_SELECT_OK};
        conn_send_method(ch->conn, ch->id, &ok);
    }
    return 0;
}

/* ---- dispatch ------------------------------------------------------------------------ */

int channel_handle_method(struct channel *ch, const struct amqp_method *m, struct err *err)
{
    struct conn *c = ch->conn;
    switch (m->id) {
    case AMQP_CHANNEL_FLOW: {
        if (!m->u.channel_flow.active)
            return err_set(err, -WERR_NOT_IMPLEMENTED, "active=false");
        struct amqp_method ok = {.id = AMQP_CHANNEL_FLOW_OK};
        ok.u.channel_flow_ok.active = true;
        conn_send_method(c, ch->id, &ok);
        return 0;
    }
    case AMQP_BASIC_QOS: return on_basic_qos(ch, &m->u.basic_qos, err);
    case AMQP_BASIC_CONSUME: return on_basic_consume(ch, &m->u.basic_consume, err);
    case AMQP_BASIC_CANCEL: return on_basic_cancel(ch, &m->u.basic_cancel);
    case AMQP_BASIC_PUBLISH: return on_basic_publish(ch, &m->u.basic_publish, err);
    case AMQP_BASIC_GET: return on_basic_get(ch, &m->u.basic_get, err);
    case AMQP_BASIC_ACK:
        return on_settle(ch, m->u.basic_ack.delivery_tag, m->u.basic_ack.multiple, SETTLE_ACK, err);
    case AMQP_BASIC_REJECT:
        return on_settle(ch, m->u.basic_reject.delivery_tag, false,
                         m->u.basic_reject.requeue ? SETTLE_REQUEUE : SETTLE_DROP, err);
    case AMQP_BASIC_NACK:
        return on_settle(ch, m->u.basic_nack.delivery_tag, m->u.basic_nack.multiple,
                         m->u.basic_nack.requeue ? SETTLE_REQUEUE : SETTLE_DROP, err);
    case AMQP_TX_SELECT:
    case AMQP_TX_COMMIT:
    case AMQP_TX_ROLLBACK: return on_tx(ch, m->id, err);
    case AMQP_CONFIRM_SELECT: return on_confirm_select(ch, &m->u.confirm_select, err);
    case AMQP_BASIC_RECOVER: return on_basic_recover(ch, m->u.basic_recover.requeue, true, err);
    case AMQP_BASIC_RECOVER_ASYNC:
        return on_basic_recover(ch, m->u.basic_recover_async.requeue, false, err);
    default: {
        /* An entity change that reached storage is answered only once it is durable, as
         * RabbitMQ's declare-ok means: the connection holds its output and input until then. */
        struct storage *st = c->srv->b.store;
        uint64_t writes = st ? storage_writes(st) : 0;
        int rc = declare_method(ch, m, err);
        if (st && storage_writes(st) != writes)
            conn_hold_until(c, storage_batch_no(st));
        if (rc != 1)
            return rc;
        return err_set(err, -WERR_COMMAND_INVALID, "unimplemented method");
    }
    }
}
