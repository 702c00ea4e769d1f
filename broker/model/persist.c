/* persist.c — owns the mapping between broker objects and storage records: which exchanges,
 * queues and bindings are durable, the stored form of a message, and start-up recovery.
 * Invariants: an object has a store_id exactly while its record is in storage; nothing is
 * written while recovering (the records are being read) or after storage is closed.
 *
 * Stored message: a 22-byte head — u8 version (1), u8 exchange_len, u8 rk_len,
 * u8 delivery_mode, u8 priority, u8 flags, u32 header_len, u32 bcc_len, u64 body_size — then
 * the message's own bytes (exchange, routing key, content header, BCC keys, body). Its first
 * byte, the version, is never 0xEC: storage seals these bytes in an envelope starting with 0xEC
 * when encryption at rest is on (storage/crypt.h) and tells the two apart by it. */
#include <errno.h>
#include <string.h>
#include "broker/model/binding.h"
#include "broker/model/dedup.h"
#include "broker/model/errors.h"
#include "broker/model/exchange.h"
#include "lib/log.h"
#include "broker/model/msg.h"
#include "broker/model/persist.h"
#include "broker/model/queue.h"
#include "broker/model/broker.h"
#include "broker/model/params.h"
#include "broker/model/users.h"
#include "broker/model/vhost.h"
#include "storage/batch.h"
#include "storage/env.h"
#include "storage/records.h"
#include "storage/recover.h"

#define MSG_HEAD 22

static bool writable(const struct broker *s)
{
    return s->store && !s->recovering;
}

static struct st_bytes sb(const void *p, size_t len)
{
    return (struct st_bytes){p, len};
}

static struct st_bytes sbs(const char *s)
{
    return sb(s, strlen(s));
}

/* ---- messages -------------------------------------------------------------------------- */

static void release_msg(void *m)
{
    msg_unref(m);
}

uint64_t persist_msg(struct broker *s, struct msg *m, uint32_t refs, bool set_store_id)
{
    uint8_t h[MSG_HEAD];
    h[0] = 1;
    h[1] = m->exchange_len;
    h[2] = m->rk_len;
    h[3] = m->delivery_mode;
    h[4] = m->priority;
    h[5] = m->flags;
    wr32(h + 6, m->header_len);
    wr32(h + 10, m->bcc_len);
    wr64(h + 14, m->body_size);
    uint64_t id = storage_new_id(s->store);
    if (set_store_id)
        m->store_id = id;
    size_t len = (size_t)(m->body - m->data) + m->body_size;
    storage_put_msg(s->store, id, refs, h, sizeof h, m->data, len, release_msg, msg_ref(m));
    return id;
}

int persist_reserve(struct broker *s, uint32_t nqueues)
{
    return storage_reserve(s->store, 1 + 3 * (size_t)nqueues, (1 + (size_t)nqueues) * MSG_HEAD);
}

int persist_msg_load(const void *data, size_t len, struct msg **ret)
{
    const uint8_t *p = data;
    if (len < MSG_HEAD || p[0] != 1)
        return -EINVAL;
    uint32_t hlen = rd32(p + 6), blen = rd32(p + 10);
    uint64_t body = rd64(p + 14);
    uint64_t need = (uint64_t)MSG_HEAD + p[1] + p[2] + hlen + blen + body;
    if (need != len)
        return -EINVAL;
    const uint8_t *d = p + MSG_HEAD;
    amqp_bytes_t ex = {d, p[1]}, rk = {d + p[1], p[2]}, hdr = {d + p[1] + p[2], hlen},
                 bcc = {hdr.ptr + hlen, blen};
    struct msg *m = msg_new(ex, rk, hdr, bcc, body);
    if (!m)
        return -ENOMEM;
    m->delivery_mode = p[3];
    m->priority = p[4];
    m->flags = p[5];
    if (body)
        memcpy(m->body, bcc.ptr + blen, body);
    m->body_have = body;
    *ret = m;
    return 0;
}

/* ---- entities ------------------------------------------------------------------------- */

void persist_exchange(struct broker *s, struct exchange *x)
{
    if (!writable(s) || !x->durable)
        return;
    if (!x->store_id)
        x->store_id = storage_new_id(s->store);
    uint8_t flags = ST_DURABLE | (x->auto_delete ? ST_AUTO_DELETE : 0) |
                    (x->internal ? ST_INTERNAL : 0);
    struct st_exchange r = {x->store_id, sbs(x->vhost->name), sb(x->name, x->name_len),
                            sb(x->args, x->args_len),
                            (uint8_t)(x->delayed ? EX_DELAYED : x->type), flags};
    storage_put_exchange(s->store, &r);
}

void persist_exchange_deleted(struct broker *s, struct exchange *x)
{
    if (writable(s) && x->store_id)
        storage_del_entity(s->store, 'x', x->store_id);
    x->store_id = 0;
}

void persist_queue(struct broker *s, struct queue *q)
{
    if (!writable(s) || !q->durable || q->exclusive)
        return;
    if (!q->store_id)
        q->store_id = storage_new_id(s->store);
    uint8_t flags = ST_DURABLE | (q->auto_delete ? ST_AUTO_DELETE : 0);
    struct st_queue r = {q->store_id, sbs(q->vhost->name), sb(q->name, q->name_len),
                         sb(q->args, q->args_len), flags, 0, 0, 0, 0};
    storage_put_queue(s->store, &r);
    storage_put_queue_meta(s->store, q->store_id, q->stored_count, q->delivered_seq);
}

void persist_queue_deleted(struct broker *s, struct queue *q)
{
    if (writable(s) && q->store_id)
        storage_del_entity(s->store, 'q', q->store_id);
    q->store_id = 0;
}

void persist_binding(struct broker *s, struct binding *b)
{
    if (!writable(s) || !b->src->durable)
        return;
    if (b->dq ? !b->dq->store_id : !b->dx->durable)
        return;
    if (!b->store_id)
        b->store_id = storage_new_id(s->store);
    amqp_bytes_t key = binding_key(b), args = binding_args(b);
    struct st_binding r = {b->store_id, sbs(b->src->vhost->name), sb(b->src->name, b->src->name_len),
                           b->dq ? sb(b->dq->name, b->dq->name_len) : sb(b->dx->name, b->dx->name_len),
                           sb(key.ptr, key.len), sb(args.ptr, args.len), b->dq ? 'q' : 'x'};
    storage_put_binding(s->store, &r);
}

void persist_binding_deleted(struct broker *s, struct binding *b)
{
    if (writable(s) && b->store_id)
        storage_del_entity(s->store, 'b', b->store_id);
    b->store_id = 0;
}

/* ---- recovery ------------------------------------------------------------------------- */

static amqp_bytes_t ab(struct st_bytes b)
{
    return (amqp_bytes_t){b.p, (uint32_t)b.len};
}

/* The vhost named by a record, created if this is the first record naming it. */
static struct vhost *record_vhost(struct broker *s, struct st_bytes name)
{
    struct vhost *vh = hmap_get(&s->vhosts, name.p, name.len);
    if (vh)
        return vh;
    char buf[256];
    snprintf(buf, sizeof buf, "%.*s", (int)name.len, (const char *)name.p);
    return broker_add_vhost(s, buf);
}

static int on_exchange(void *arg, const struct st_exchange *r)
{
    struct broker *s = arg;
    struct vhost *vh = record_vhost(s, r->vhost);
    if (!vh || r->type >= EX_TYPE_MAX)
        return vh ? STORAGE_E_CORRUPT : -ENOMEM;
    if (vhost_exchange(vh, ab(r->name)))
        return 0; /* a predeclared name: the built-in one stands */
    struct exchange *x = exchange_new(vh, ab(r->name), (enum exchange_type)r->type,
                                      r->flags & ST_DURABLE, r->flags & ST_AUTO_DELETE,
                                      r->flags & ST_INTERNAL, ab(r->args));
    if (!x || vhost_add_exchange(vh, x) < 0) {
        exchange_free(x);
        return -ENOMEM;
    }
    x->store_id = r->id;
    return 0;
}

static int on_queue(void *arg, const struct st_queue *r)
{
    struct broker *s = arg;
    struct vhost *vh = record_vhost(s, r->vhost);
    if (!vh)
        return -ENOMEM;
    struct queue *q = queue_new(vh, ab(r->name), ab(r->args));
    if (!q || vhost_add_queue(vh, q) < 0) {
        queue_unref(q);
        return -ENOMEM;
    }
    q->durable = true;
    q->auto_delete = r->flags & ST_AUTO_DELETE;
    q->store_id = r->id;
    q->stored_count = r->count;
    q->delivered_seq = r->delivered_seq;
    /* Above every seq ever delivered too, so that new messages are not taken for redeliveries. */
    q->next_seq = r->next_seq > r->delivered_seq + 1 ? r->next_seq : r->delivered_seq + 1;
    if (r->count) {
        q->disk_head = r->first_seq;
        q->disk_count = q->disk_persistent = r->count;
    }
    return 0;
}

static int on_binding(void *arg, const struct st_binding *r)
{
    struct broker *s = arg;
    struct vhost *vh = record_vhost(s, r->vhost);
    if (!vh)
        return -ENOMEM;
    struct exchange *src = vhost_exchange(vh, ab(r->src));
    struct queue *dq = r->dst_kind == 'q' ? vhost_queue(vh, ab(r->dst)) : NULL;
    struct exchange *dx = r->dst_kind == 'x' ? vhost_exchange(vh, ab(r->dst)) : NULL;
    if (!src || (!dq && !dx)) {
        log_warn("stored binding %llu names a missing exchange or queue; skipping it",
                 (unsigned long long)r->id);
        return 0;
    }
    struct binding *b;
    struct err err = {{0}};
    int rc = binding_add(src, dq, dx, ab(r->key), ab(r->args), &b, &err);
    if (rc == -WERR_PRECONDITION_FAILED) {
        log_warn("stored binding %llu is refused (%s); skipping it, bind it again with a valid "
                 "policy", (unsigned long long)r->id, err.text);
        return 0;
    }
    if (rc == 0 && b)
        b->store_id = r->id;
    return rc;
}

static int on_vhost(void *arg, const struct st_vhost *r)
{
    return users_recover_vhost(arg, r);
}

static int on_user(void *arg, const struct st_user *r)
{
    return users_recover_user(arg, r);
}

static int on_permission(void *arg, const struct st_permission *r)
{
    return users_recover_permission(arg, r);
}

static int on_topic_permission(void *arg, const struct st_topic_permission *r)
{
    return users_recover_topic_permission(arg, r);
}

static int on_param(void *arg, const struct st_param *r)
{
    return params_recover(arg, r);
}

int persist_recover(struct broker *s)
{
    static const struct st_recover_ops ops = {
        .exchange = on_exchange, .queue = on_queue, .binding = on_binding,
        .vhost = on_vhost, .user = on_user, .permission = on_permission,
        .topic_permission = on_topic_permission, .param = on_param};
    s->recovering = true;
    int rc = storage_recover(s->store, &ops, s);
    s->recovering = false;
    if (rc == 0)
        rc = dedup_recover(s); /* the deduplication caches of durable owners */
    if (rc)
        log_error("cannot recover the data directory: %s; restore it from a backup or move it "
                  "aside to start empty",
                  rc == -ENOMEM ? "out of memory" : storage_strerror(rc));
    return rc ? (rc < 0 ? rc : -EIO) : 0;
}
