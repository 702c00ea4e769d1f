/* channel.c — owns a channel's consumers, its unacked-delivery ring and the publish being
 * assembled. Does not own queues or messages (references only). Invariants: the ring holds
 * deliveries for tags [first_tag, first_tag + count) and its head entry is live (dead
 * entries are popped at once); `live` counts live entries; every live entry holds one
 * reference on its message, its queue and (if any) its consumer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "broker/channel.h"
#include "broker/conn.h"
#include "broker/errors.h"
#include "broker/msg.h"
#include "broker/queue.h"
#include "broker/server.h"
#include "broker/vhost.h"

#define STR(b) (int)(b).len, (const char *)(b).ptr

struct channel *channel_new(struct conn *c, uint16_t id)
{
    struct channel *ch = calloc(1, sizeof *ch);
    if (!ch)
        return NULL;
    ch->conn = c;
    ch->id = id;
    ch->active = true;
    ch->first_tag = ch->next_tag = 1;
    list_init(&ch->consumers);
    return ch;
}

/* ---- unacked ring -------------------------------------------------------------------- */

static struct delivery *ring_at(struct channel *ch, uint32_t i)
{
    return &ch->ring[(ch->head + i) & (ch->cap - 1)];
}

static int ring_push(struct channel *ch, struct delivery d)
{
    if (ch->count == ch->cap) {
        uint32_t cap = ch->cap ? ch->cap * 2 : 64;
        struct delivery *r = malloc(cap * sizeof *r);
        if (!r)
            return -ENOMEM;
        for (uint32_t i = 0; i < ch->count; i++)
            r[i] = *ring_at(ch, i);
        free(ch->ring);
        ch->ring = r;
        ch->cap = cap;
        ch->head = 0;
    }
    *ring_at(ch, ch->count++) = d;
    return 0;
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
}

enum settle { SETTLE_ACK, SETTLE_REQUEUE, SETTLE_DROP };

/* Ends one live delivery: the message is dropped or put back at its queue's head. */
static void settle(struct channel *ch, struct delivery *d, enum settle how)
{
    if (how == SETTLE_REQUEUE && !d->q->deleted && queue_push_front(d->q, d->m, true) == 0)
        queue_kick(d->q);
    if (d->c) {
        d->c->unacked--;
        if (d->c->q)
            queue_kick(d->c->q);
        consumer_unref(d->c);
    }
    msg_unref(d->m);
    queue_unref(d->q);
    d->live = false;
    ch->live--;
}

/* Settles tag (or every tag up to it when multiple; tag 0 + multiple means all). Requeued
 * messages go back newest first so that they keep their order at the queue head. */
static int settle_tags(struct channel *ch, uint64_t tag, bool multiple, enum settle how)
{
    uint32_t from, to; /* ring indexes, inclusive */
    if (multiple && tag == 0) {
        if (!ch->count)
            return 0;
        from = 0;
        to = ch->count - 1;
    } else {
        if (tag < ch->first_tag || tag - ch->first_tag >= ch->count ||
            !ring_at(ch, (uint32_t)(tag - ch->first_tag))->live)
            return conn_err(ch->conn, -WERR_PRECONDITION_FAILED, "unknown delivery tag %llu",
                            (unsigned long long)tag);
        to = (uint32_t)(tag - ch->first_tag);
        from = multiple ? 0 : to;
    }
    for (uint32_t i = to + 1; i-- > from;) {
        struct delivery *d = ring_at(ch, i);
        if (d->live)
            settle(ch, d, how);
    }
    ring_trim(ch);
    return 0;
}

/* ---- deliveries ---------------------------------------------------------------------- */

bool channel_can_deliver(const struct channel *ch, const struct consumer *c)
{
    if (ch->state != CH_OPEN || !ch->active || c->cancelled)
        return false;
    if (conn_output_pending(ch->conn) > CONN_OUTPUT_HIGH) {
        ch->conn->throttled = true;
        return false;
    }
    if (c->no_ack)
        return true;
    if (c->prefetch && c->unacked >= c->prefetch)
        return false;
    return !ch->global_prefetch || ch->live < ch->global_prefetch;
}

/* Assigns the next delivery tag, recording the delivery unless it needs no ack. */
static uint64_t track(struct channel *ch, struct consumer *c, struct queue *q, struct msg *m,
                      bool no_ack)
{
    uint64_t tag = ch->next_tag++;
    if (no_ack) {
        if (ch->count == 0 || ring_push(ch, (struct delivery){0}) < 0)
            ring_trim(ch);
        return tag;
    }
    struct delivery d = {msg_ref(m), q, c, true};
    if (ring_push(ch, d) < 0) {
        /* Out of memory: the message goes back rather than being lost. */
        msg_unref(m);
        ch->next_tag--;
        return 0;
    }
    queue_ref(q);
    if (c) {
        consumer_ref(c);
        c->unacked++;
    }
    ch->live++;
    return tag;
}

void channel_deliver(struct channel *ch, struct consumer *c, struct queue *q, struct msg *m,
                     bool redelivered)
{
    uint64_t tag = track(ch, c, q, m, c->no_ack);
    if (!tag) {
        queue_push_front(q, m, redelivered);
        return;
    }
    struct amqp_method d = {.id = AMQP_BASIC_DELIVER};
    d.u.basic_deliver.consumer_tag = (amqp_bytes_t){(const uint8_t *)c->tag, c->tag_len};
    d.u.basic_deliver.delivery_tag = tag;
    d.u.basic_deliver.redelivered = redelivered;
    d.u.basic_deliver.exchange = msg_exchange(m);
    d.u.basic_deliver.routing_key = msg_routing_key(m);
    conn_send_content(ch->conn, ch->id, &d, m);
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
    (void)ch;
    c->cancelled = true;
    list_remove(&c->chlink);
    if (c->q)
        queue_remove_consumer(c->q, c);
    consumer_unref(c);
}

void channel_consumer_cancelled(struct channel *ch, struct consumer *c)
{
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
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &ch->consumers)
        consumer_end(ch, list_entry(pos, struct consumer, chlink));
    settle_tags(ch, 0, true, SETTLE_REQUEUE);
    msg_unref(ch->building);
    route_free(&ch->route);
    free(ch->ring);
    free(ch);
}

/* ---- queue methods ------------------------------------------------------------------- */

/* Resolves the empty name to the channel's last declared queue. */
static int queue_name(struct channel *ch, amqp_bytes_t *name)
{
    if (name->len)
        return 0;
    if (!ch->last_queue[0])
        return conn_err(ch->conn, -WERR_NOT_FOUND, "no previously declared queue");
    *name = amqp_cstr(ch->last_queue);
    return 0;
}

/* Finds a queue this connection may use: 404 when missing, 405 when another connection's
 * exclusive queue. */
static int lookup_queue(struct channel *ch, amqp_bytes_t name, struct queue **ret)
{
    int rc = queue_name(ch, &name);
    if (rc < 0)
        return rc;
    struct vhost *vh = ch->conn->vhost;
    struct queue *q = vhost_queue(vh, name);
    if (!q)
        return conn_err(ch->conn, -WERR_NOT_FOUND, "no queue '%.*s' in vhost '%s'", STR(name),
                        vh->name);
    if (q->exclusive && q->owner != ch->conn)
        return conn_err(ch->conn, -WERR_RESOURCE_LOCKED,
                        "cannot obtain exclusive access to locked queue '%.*s' in vhost '%s'. "
                        "It could be originally declared on another connection or the "
                        "exclusive property value does not match that of the original "
                        "declaration.",
                        STR(name), vh->name);
    *ret = q;
    return 0;
}

static int inequivalent(struct channel *ch, const char *arg, struct queue *q, bool got, bool cur)
{
    return conn_err(ch->conn, -WERR_PRECONDITION_FAILED,
                    "inequivalent arg '%s' for queue '%s' in vhost '%s': received '%s' but "
                    "current is '%s'",
                    arg, q->name, q->vhost->name, got ? "true" : "false", cur ? "true" : "false");
}

static int on_queue_declare(struct channel *ch, const struct amqp_queue_declare *d)
{
    struct conn *c = ch->conn;
    struct vhost *vh = c->vhost;
    char gen[64];
    amqp_bytes_t name = d->queue;
    struct queue *q;
    if (name.len == 0 && !d->passive) {
        server_gen_name(c->srv, "amq.gen-", gen, sizeof gen);
        name = amqp_cstr(gen);
    }
    q = name.len ? vhost_queue(vh, name) : NULL;
    if (d->passive) {
        int rc = lookup_queue(ch, name, &q);
        if (rc < 0)
            return rc;
    } else if (q) {
        int rc = lookup_queue(ch, name, &q);
        if (rc < 0)
            return rc;
        if (q->durable != d->durable)
            return inequivalent(ch, "durable", q, d->durable, q->durable);
        if (q->auto_delete != d->auto_delete)
            return inequivalent(ch, "auto_delete", q, d->auto_delete, q->auto_delete);
        if (q->exclusive != d->exclusive)
            return inequivalent(ch, "exclusive", q, d->exclusive, q->exclusive);
    } else {
        if (name.len >= 4 && memcmp(name.ptr, "amq.", 4) == 0 && name.ptr != (const uint8_t *)gen)
            return conn_err(c, -WERR_ACCESS_REFUSED,
                            "queue name '%.*s' contains reserved prefix 'amq.*'", STR(name));
        q = queue_new(vh, name, d->arguments);
        if (!q)
            return -ENOMEM;
        q->durable = d->durable;
        q->exclusive = d->exclusive;
        q->auto_delete = d->auto_delete;
        q->owner = d->exclusive ? c : NULL;
        if (vhost_add_queue(vh, q) < 0) {
            queue_unref(q);
            return -ENOMEM;
        }
    }
    memcpy(ch->last_queue, q->name, (size_t)q->name_len + 1);
    if (d->no_wait)
        return 0;
    struct amqp_method m = {.id = AMQP_QUEUE_DECLARE_OK};
    m.u.queue_declare_ok.queue = (amqp_bytes_t){(const uint8_t *)q->name, q->name_len};
    m.u.queue_declare_ok.message_count = q->count;
    m.u.queue_declare_ok.consumer_count = q->consumer_count;
    conn_send_method(c, ch->id, &m);
    return 0;
}

static int on_queue_delete(struct channel *ch, const struct amqp_queue_delete *d)
{
    amqp_bytes_t name = d->queue;
    int rc = queue_name(ch, &name);
    if (rc < 0)
        return rc;
    uint32_t n = 0;
    if (vhost_queue(ch->conn->vhost, name)) { /* deleting a missing queue succeeds */
        struct queue *q;
        if ((rc = lookup_queue(ch, name, &q)) < 0)
            return rc;
        if (d->if_unused && q->consumer_count)
            return conn_err(ch->conn, -WERR_PRECONDITION_FAILED, "queue '%s' in vhost '%s' in use",
                            q->name, q->vhost->name);
        if (d->if_empty && q->count)
            return conn_err(ch->conn, -WERR_PRECONDITION_FAILED,
                            "queue '%s' in vhost '%s' is not empty", q->name, q->vhost->name);
        n = queue_delete(q);
    }
    if (!d->no_wait) {
        struct amqp_method m = {.id = AMQP_QUEUE_DELETE_OK};
        m.u.queue_delete_ok.message_count = n;
        conn_send_method(ch->conn, ch->id, &m);
    }
    return 0;
}

static int on_queue_purge(struct channel *ch, const struct amqp_queue_purge *p)
{
    struct queue *q;
    int rc = lookup_queue(ch, p->queue, &q);
    if (rc < 0)
        return rc;
    uint32_t n = queue_purge(q);
    if (!p->no_wait) {
        struct amqp_method m = {.id = AMQP_QUEUE_PURGE_OK};
        m.u.queue_purge_ok.message_count = n;
        conn_send_method(ch->conn, ch->id, &m);
    }
    return 0;
}

/* ---- basic methods ------------------------------------------------------------------- */

static int on_basic_qos(struct channel *ch, const struct amqp_basic_qos *q)
{
    if (q->prefetch_size != 0)
        return conn_err(ch->conn, -WERR_NOT_IMPLEMENTED, "prefetch_size!=0 (%u)",
                        q->prefetch_size);
    if (q->global)
        ch->global_prefetch = q->prefetch_count;
    else
        ch->prefetch = q->prefetch_count;
    struct amqp_method m = {.id = AMQP_BASIC_QOS_OK};
    conn_send_method(ch->conn, ch->id, &m);
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &ch->consumers)
        queue_kick(list_entry(pos, struct consumer, chlink)->q);
    return 0;
}

static int on_basic_consume(struct channel *ch, const struct amqp_basic_consume *bc)
{
    struct conn *c = ch->conn;
    struct queue *q;
    int rc = lookup_queue(ch, bc->queue, &q);
    if (rc < 0)
        return rc;
    char tag[256];
    amqp_bytes_t t = bc->consumer_tag;
    if (t.len == 0) {
        server_gen_name(c->srv, "amq.ctag-", tag, sizeof tag);
        t = amqp_cstr(tag);
    }
    if (find_consumer(ch, t))
        return conn_err(c, -WERR_NOT_ALLOWED, "attempt to reuse consumer tag '%.*s'", STR(t));
    if (q->exclusive_consumer || (bc->exclusive && q->consumer_count))
        return conn_err(c, -WERR_ACCESS_REFUSED, "queue '%s' in vhost '%s' in exclusive use",
                        q->name, q->vhost->name);
    struct consumer *cons = calloc(1, sizeof *cons);
    if (!cons)
        return -ENOMEM;
    cons->ch = ch;
    cons->refs = 1;
    cons->no_ack = bc->no_ack;
    cons->exclusive = bc->exclusive;
    cons->prefetch = ch->prefetch;
    cons->tag_len = (uint8_t)t.len;
    memcpy(cons->tag, t.ptr, t.len);
    list_insert_tail(&ch->consumers, &cons->chlink);
    if (!bc->no_wait) {
        struct amqp_method m = {.id = AMQP_BASIC_CONSUME_OK};
        m.u.basic_consume_ok.consumer_tag = t;
        conn_send_method(c, ch->id, &m);
    }
    queue_add_consumer(q, cons);
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
    return 0;
}

static int on_basic_get(struct channel *ch, const struct amqp_basic_get *g)
{
    struct queue *q;
    int rc = lookup_queue(ch, g->queue, &q);
    if (rc < 0)
        return rc;
    struct qentry e;
    if (!queue_pop(q, &e)) {
        struct amqp_method m = {.id = AMQP_BASIC_GET_EMPTY};
        conn_send_method(ch->conn, ch->id, &m);
        return 0;
    }
    uint64_t tag = track(ch, NULL, q, e.m, g->no_ack);
    if (!tag) {
        queue_push_front(q, e.m, e.redelivered);
        msg_unref(e.m);
        return -ENOMEM;
    }
    struct amqp_method m = {.id = AMQP_BASIC_GET_OK};
    m.u.basic_get_ok.delivery_tag = tag;
    m.u.basic_get_ok.redelivered = e.redelivered;
    m.u.basic_get_ok.exchange = msg_exchange(e.m);
    m.u.basic_get_ok.routing_key = msg_routing_key(e.m);
    m.u.basic_get_ok.message_count = q->count;
    conn_send_content(ch->conn, ch->id, &m, e.m);
    msg_unref(e.m);
    return 0;
}

static int on_basic_recover(struct channel *ch, bool requeue, bool reply)
{
    if (!requeue)
        return conn_err(ch->conn, -WERR_NOT_IMPLEMENTED, "requeue=false");
    settle_tags(ch, 0, true, SETTLE_REQUEUE);
    if (reply) {
        struct amqp_method m = {.id = AMQP_BASIC_RECOVER_OK};
        conn_send_method(ch->conn, ch->id, &m);
    }
    return 0;
}

static int on_basic_publish(struct channel *ch, const struct amqp_basic_publish *p)
{
    if (p->immediate)
        return conn_err(ch->conn, -WERR_NOT_IMPLEMENTED, "immediate=true");
    ch->pub_exchange_len = (uint8_t)p->exchange.len;
    memcpy(ch->pub_exchange, p->exchange.ptr, p->exchange.len);
    ch->pub_rk_len = (uint8_t)p->routing_key.len;
    memcpy(ch->pub_rk, p->routing_key.ptr, p->routing_key.len);
    ch->mandatory = p->mandatory;
    ch->ct = CT_HEADER;
    return 0;
}

static int publish_complete(struct channel *ch)
{
    struct msg *m = ch->building;
    ch->building = NULL;
    ch->ct = CT_IDLE;
    struct vhost *vh = ch->conn->vhost;
    amqp_bytes_t xname = msg_exchange(m);
    struct exchange *x = vhost_exchange(vh, xname);
    int rc = 0;
    if (!x) {
        rc = conn_err(ch->conn, -WERR_NOT_FOUND, "no exchange '%.*s' in vhost '%s'", STR(xname),
                      vh->name);
        goto out;
    }
    if ((rc = exchange_route(x, m, &ch->route)) < 0)
        goto out;
    for (uint32_t i = 0; i < ch->route.n; i++) {
        struct queue *q = ch->route.q[i];
        if ((rc = queue_push(q, m, false)) < 0)
            goto out;
        queue_kick(q);
    }
    if (ch->route.n == 0 && ch->mandatory) {
        struct amqp_method r = {.id = AMQP_BASIC_RETURN};
        r.u.basic_return.reply_code = 312;
        r.u.basic_return.reply_text = AMQP_BYTES_LIT("NO_ROUTE");
        r.u.basic_return.exchange = xname;
        r.u.basic_return.routing_key = msg_routing_key(m);
        conn_send_content(ch->conn, ch->id, &r, m);
    }
out:
    msg_unref(m);
    return rc;
}

int channel_handle_header(struct channel *ch, const uint8_t *payload, uint32_t len)
{
    struct conn *c = ch->conn;
    if (ch->ct != CT_HEADER)
        return conn_err(c, -WERR_UNEXPECTED_FRAME, "expected method frame, got non method frame instead");
    struct amqp_content_header h;
    int st = amqp_content_header_decode(payload, len, &h);
    if (st < 0)
        return conn_err(c, -WERR_SYNTAX_ERROR, "malformed content header: %s", amqp_strerror(st));
    if (h.body_size > c->srv->cfg.max_message_size) {
        ch->ct = CT_IDLE;
        return conn_err(c, -WERR_PRECONDITION_FAILED,
                        "message size %llu is larger than configured max size %llu",
                        (unsigned long long)h.body_size,
                        (unsigned long long)c->srv->cfg.max_message_size);
    }
    struct msg *m = msg_new((amqp_bytes_t){(const uint8_t *)ch->pub_exchange, ch->pub_exchange_len},
                            (amqp_bytes_t){(const uint8_t *)ch->pub_rk, ch->pub_rk_len},
                            (amqp_bytes_t){payload, len}, h.body_size);
    if (!m)
        return -ENOMEM;
    if (h.props.flags & AMQP_P_DELIVERY_MODE)
        m->delivery_mode = h.props.delivery_mode;
    if (h.props.flags & AMQP_P_PRIORITY)
        m->priority = h.props.priority;
    ch->building = m;
    if (h.body_size == 0)
        return publish_complete(ch);
    ch->ct = CT_BODY;
    return 0;
}

int channel_handle_body(struct channel *ch, const uint8_t *payload, uint32_t len)
{
    struct conn *c = ch->conn;
    if (ch->ct != CT_BODY)
        return conn_err(c, -WERR_UNEXPECTED_FRAME, "expected method frame, got non method frame instead");
    struct msg *m = ch->building;
    if (len > m->body_size - m->body_have)
        return conn_err(c, -WERR_FRAME_ERROR, "content body exceeds the declared size %llu",
                        (unsigned long long)m->body_size);
    memcpy(m->body + m->body_have, payload, len);
    m->body_have += len;
    if (m->body_have == m->body_size)
        return publish_complete(ch);
    return 0;
}

/* ---- dispatch ------------------------------------------------------------------------ */

int channel_handle_method(struct channel *ch, const struct amqp_method *m)
{
    struct conn *c = ch->conn;
    switch (m->id) {
    case AMQP_CHANNEL_FLOW: {
        if (!m->u.channel_flow.active)
            return conn_err(c, -WERR_NOT_IMPLEMENTED, "active=false");
        struct amqp_method ok = {.id = AMQP_CHANNEL_FLOW_OK};
        ok.u.channel_flow_ok.active = true;
        conn_send_method(c, ch->id, &ok);
        return 0;
    }
    case AMQP_QUEUE_DECLARE: return on_queue_declare(ch, &m->u.queue_declare);
    case AMQP_QUEUE_DELETE: return on_queue_delete(ch, &m->u.queue_delete);
    case AMQP_QUEUE_PURGE: return on_queue_purge(ch, &m->u.queue_purge);
    case AMQP_BASIC_QOS: return on_basic_qos(ch, &m->u.basic_qos);
    case AMQP_BASIC_CONSUME: return on_basic_consume(ch, &m->u.basic_consume);
    case AMQP_BASIC_CANCEL: return on_basic_cancel(ch, &m->u.basic_cancel);
    case AMQP_BASIC_PUBLISH: return on_basic_publish(ch, &m->u.basic_publish);
    case AMQP_BASIC_GET: return on_basic_get(ch, &m->u.basic_get);
    case AMQP_BASIC_ACK:
        return settle_tags(ch, m->u.basic_ack.delivery_tag, m->u.basic_ack.multiple, SETTLE_ACK);
    case AMQP_BASIC_REJECT:
        return settle_tags(ch, m->u.basic_reject.delivery_tag, false,
                           m->u.basic_reject.requeue ? SETTLE_REQUEUE : SETTLE_DROP);
    case AMQP_BASIC_NACK:
        return settle_tags(ch, m->u.basic_nack.delivery_tag, m->u.basic_nack.multiple,
                           m->u.basic_nack.requeue ? SETTLE_REQUEUE : SETTLE_DROP);
    case AMQP_BASIC_RECOVER: return on_basic_recover(ch, m->u.basic_recover.requeue, true);
    case AMQP_BASIC_RECOVER_ASYNC:
        return on_basic_recover(ch, m->u.basic_recover_async.requeue, false);
    default:
        return conn_err(c, -WERR_NOT_IMPLEMENTED, "%s is not implemented yet",
                        amqp_method_name(m->id));
    }
}
