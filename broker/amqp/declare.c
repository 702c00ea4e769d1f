/* declare.c — the entity methods of a channel: exchange.declare/delete/bind/unbind and
 * queue.declare/bind/unbind/purge/delete, with RabbitMQ's checks and reply texts. Owns no
 * state: entities live in the vhost, bindings in binding.c. Every check runs before any
 * change, so a failed method changes nothing. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "broker/model/access.h"
#include "broker/model/entity.h"
#include "broker/model/binding.h"
#include "broker/amqp/channel.h"
#include "broker/amqp/conn.h"
#include "broker/amqp/declare.h"
#include "broker/model/errors.h"
#include "broker/model/exchange.h"
#include "broker/model/queue.h"
#include "broker/amqp/replyto.h"
#include "broker/amqp/server.h"
#include "broker/model/vhost.h"
#include "protocol/table.h"

#define STR(b) (int)(b).len, (const char *)(b).ptr

/* ---- lookups ------------------------------------------------------------------------- */

/* Resolves the empty name to the channel's last declared queue. */
static int queue_name(struct channel *ch, amqp_bytes_t *name, struct err *err)
{
    if (name->len)
        return 0;
    if (!ch->last_queue[0])
        return err_set(err, -WERR_NOT_FOUND, "no previously declared queue");
    *name = amqp_cstr(ch->last_queue);
    return 0;
}

/* RabbitMQ strips CR and LF from the names that exchange.* and queue.declare/bind/unbind/delete
 * carry ("lf_test\n" is lf_test), after the empty-name shortcut; basic.* and queue.purge keep
 * them. A stripped copy goes to buf (a shortstr's 255 octets). */
static amqp_bytes_t strip_cr_lf(amqp_bytes_t name, uint8_t *buf)
{
    if (!name.len || (!memchr(name.ptr, '\n', name.len) && !memchr(name.ptr, '\r', name.len)))
        return name;
    uint32_t n = 0;
    for (uint32_t i = 0; i < name.len && i < 255; i++)
        if (name.ptr[i] != '\n' && name.ptr[i] != '\r')
            buf[n++] = name.ptr[i];
    return (amqp_bytes_t){buf, n};
}

/* The queue a bind, unbind or delete names: the last declared one for "", else the name without
 * CR and LF (which may leave "": the queue '', not the shortcut). */
static int queue_target(struct channel *ch, amqp_bytes_t *name, uint8_t *buf, struct err *err)
{
    if (!name->len)
        return queue_name(ch, name, err);
    *name = strip_cr_lf(*name, buf);
    return 0;
}

static int lookup_queue(struct channel *ch, amqp_bytes_t name, struct queue **ret, struct err *err)
{
    struct vhost *vh = ch->conn->vhost;
    struct queue *q = vhost_queue(vh, name);
    if (!q)
        return err_set(err, -WERR_NOT_FOUND, "no queue '%.*s' in vhost '%s'", STR(name),
                        vh->name);
    if (q->exclusive && q->owner != ch->conn)
        return err_set(err, -WERR_RESOURCE_LOCKED,
                        "cannot obtain exclusive access to locked queue '%.*s' in vhost '%s'. "
                        "It could be originally declared on another connection or the "
                        "exclusive property value does not match that of the original "
                        "declaration.",
                        STR(name), vh->name);
    *ret = q;
    return 0;
}

/* May the channel's user do perm on the exchange or queue called name (obj when it exists)? */
static int allowed(struct channel *ch, enum access_perm perm, enum access_kind kind,
                   amqp_bytes_t name, const void *obj, struct err *err)
{
    return access_check(&ch->conn->access, perm, kind, name, obj, err);
}

int declare_lookup_queue(struct channel *ch, amqp_bytes_t name, struct queue **ret, struct err *err)
{
    int rc = queue_name(ch, &name, err);
    if (rc == 0)
        rc = allowed(ch, ACCESS_READ, ACCESS_QUEUE, name, vhost_queue(ch->conn->vhost, name), err);
    return rc < 0 ? rc : lookup_queue(ch, name, ret, err);
}

/* Declaring with an alternate or dead-letter exchange: read on what is declared and write on
 * that exchange, as in RabbitMQ (only when the argument is a string: other types are refused
 * by the argument checks). */
static int target_allowed(struct channel *ch, amqp_bytes_t args, const char *key,
                          enum access_kind kind, amqp_bytes_t name, struct err *err)
{
    struct amqp_field f;
    if (amqp_table_get(args, key, &f) != 1 || f.type != 'S')
        return 0;
    int rc = allowed(ch, ACCESS_READ, kind, name, NULL, err);
    return rc < 0 ? rc : allowed(ch, ACCESS_WRITE, ACCESS_EXCHANGE, f.v.bytes, NULL, err);
}

static int not_default(amqp_bytes_t xname, struct err *err)
{
    if (xname.len == 0)
        return err_set(err, -WERR_ACCESS_REFUSED,
                        "operation not permitted on the default exchange");
    return 0;
}

static int lookup_exchange(struct channel *ch, amqp_bytes_t name, struct exchange **ret, struct err *err)
{
    struct exchange *x = vhost_exchange(ch->conn->vhost, name);
    if (!x)
        return err_set(err, -WERR_NOT_FOUND, "no exchange '%.*s' in vhost '%s'", STR(name),
                        ch->conn->vhost->name);
    *ret = x;
    return 0;
}

static void reply(struct channel *ch, uint32_t id)
{
    struct amqp_method m = {.id = id};
    conn_send_method(ch->conn, ch->id, &m);
}

/* ---- exchanges ----------------------------------------------------------------------- */

static int exchange_declare(struct channel *ch, const struct amqp_exchange_declare *d, struct err *err)
{
    struct vhost *vh = ch->conn->vhost;
    int rc, type = 0;
    uint8_t buf[256];
    amqp_bytes_t name = strip_cr_lf(d->exchange, buf);
    /* RabbitMQ checks the type (a connection error) before the name. */
    if (!d->passive && (type = exchange_type_parse(d->type)) < 0)
        return err_set(err, -WERR_COMMAND_INVALID, "unknown exchange type '%.*s'",
                        STR(d->type));
    if ((rc = not_default(name, err)) < 0)
        return rc;
    if (d->passive) { /* needs no permission, as in RabbitMQ */
        struct exchange *x;
        if ((rc = lookup_exchange(ch, name, &x, err)) < 0)
            return rc;
        goto ok;
    }
    struct exchange *x = vhost_exchange(vh, name);
    if ((rc = allowed(ch, ACCESS_CONFIGURE, ACCESS_EXCHANGE, name, x, err)) < 0)
        return rc;
    if (x) {
        if ((rc = entity_exchange_equivalent(x, (enum exchange_type)type, d->durable,
                                             d->auto_delete, d->internal, d->arguments,
                                             err)) < 0)
            return rc;
        goto ok;
    }
    if ((rc = entity_exchange_check_new(vh->name, name, (enum exchange_type)type,
                                       d->arguments, err)) < 0 ||
        (rc = target_allowed(ch, d->arguments, "alternate-exchange", ACCESS_EXCHANGE, name,
                             err)) < 0 ||
        (rc = entity_exchange_create(vh, name, (enum exchange_type)type, d->durable,
                                     d->auto_delete, d->internal, d->arguments, NULL)) < 0)
        return rc;
ok:
    if (!d->no_wait)
        reply(ch, AMQP_EXCHANGE_DECLARE_OK);
    return 0;
}

static int exchange_delete_method(struct channel *ch, const struct amqp_exchange_delete *d, struct err *err)
{
    uint8_t buf[256];
    amqp_bytes_t name = strip_cr_lf(d->exchange, buf);
    int rc = not_default(name, err);
    if (rc < 0)
        return rc;
    if (name.len >= 4 && memcmp(name.ptr, "amq.", 4) == 0) /* before the permission check */
        return entity_exchange_delete(ch->conn->vhost, name, d->if_unused, err);
    struct exchange *x = vhost_exchange(ch->conn->vhost, name);
    if ((rc = allowed(ch, ACCESS_CONFIGURE, ACCESS_EXCHANGE, name, x, err)) < 0 ||
        (rc = entity_exchange_delete(ch->conn->vhost, name, d->if_unused, err)) < 0)
        return rc;
    if (!d->no_wait)
        reply(ch, AMQP_EXCHANGE_DELETE_OK);
    return 0;
}

/* exchange.bind and exchange.unbind share one layout. */
static int exchange_bind(struct channel *ch, const struct amqp_exchange_bind *b, bool bind, struct err *err)
{
    struct exchange *src = NULL, *dst = NULL;
    int rc;
    uint8_t sbuf[256], dbuf[256];
    amqp_bytes_t source = strip_cr_lf(b->source, sbuf);
    amqp_bytes_t destination = strip_cr_lf(b->destination, dbuf);
    struct vhost *vh = ch->conn->vhost;
    /* RabbitMQ's order: write on the destination, the default-exchange checks, read on the
     * source, the source's topic permission; then the lookups. */
    if ((rc = allowed(ch, ACCESS_WRITE, ACCESS_EXCHANGE, destination,
                      vhost_exchange(vh, destination), err)) < 0)
        return rc;
    if ((rc = not_default(destination, err)) < 0 || (rc = not_default(source, err)) < 0)
        return rc;
    src = vhost_exchange(vh, source);
    if ((rc = allowed(ch, ACCESS_READ, ACCESS_EXCHANGE, source, src, err)) < 0 ||
        (src && (rc = access_check_topic(&ch->conn->access, ACCESS_READ, src, b->routing_key,
                                         err)) < 0))
        return rc;
    if ((rc = lookup_exchange(ch, source, &src, err)) < 0 ||
        (rc = lookup_exchange(ch, destination, &dst, err)) < 0)
        return rc;
    if (bind)
        rc = entity_bind(src, NULL, dst, b->routing_key, b->arguments, err);
    else if (binding_remove(src, NULL, dst, b->routing_key, b->arguments) == -ENOENT)
        rc = 0; /* unbinding what is not bound succeeds */
    if (rc < 0)
        return rc;
    if (!b->no_wait)
        reply(ch, bind ? AMQP_EXCHANGE_BIND_OK : AMQP_EXCHANGE_UNBIND_OK);
    return 0;
}

/* ---- queues -------------------------------------------------------------------------- */

static int queue_declare(struct channel *ch, const struct amqp_queue_declare *d, struct err *err)
{
    struct conn *c = ch->conn;
    struct vhost *vh = c->vhost;
    char gen[64];
    uint8_t buf[256];
    amqp_bytes_t name = strip_cr_lf(d->queue, buf);
    struct queue *q;
    int rc;
    if (name.len == 0 && !d->passive) {
        server_gen_name(c->srv, "amq.gen-", gen, sizeof gen);
        name = amqp_cstr(gen);
    }
    if (d->passive && replyto_is_name(c->srv, name)) { /* the pseudo-queue, or a reply name */
        if (!d->no_wait) {
            struct amqp_method m = {.id = AMQP_QUEUE_DECLARE_OK};
            m.u.queue_declare_ok.queue = name;
            m.u.queue_declare_ok.consumer_count = 1;
            conn_send_method(c, ch->id, &m);
        }
        return 0;
    }
    if (d->passive) {
        if (name.len == 0) /* no last-queue shortcut here, as in RabbitMQ */
            return err_set(err, -WERR_NOT_FOUND, "no queue '' in vhost '%s'", vh->name);
        if ((rc = lookup_queue(ch, name, &q, err)) < 0)
            return rc;
    } else if ((name.ptr != (const uint8_t *)gen &&
                (rc = entity_reserved_name("queue", name, err)) < 0) ||
               (rc = allowed(ch, ACCESS_CONFIGURE, ACCESS_QUEUE, name, vhost_queue(vh, name),
                             err)) < 0) {
        return rc;
    } else if (vhost_queue(vh, name)) {
        if ((rc = lookup_queue(ch, name, &q, err)) < 0 ||
            (rc = entity_queue_equivalent(q, d->durable, d->auto_delete, d->exclusive,
                                          d->arguments, err)) < 0)
            return rc;
    } else {
        if ((rc = entity_queue_check_limit(vh, name, err)) < 0 ||
            (rc = target_allowed(ch, d->arguments, "x-dead-letter-exchange", ACCESS_QUEUE, name,
                                 err)) < 0 ||
            (rc = entity_queue_check_new(vh->name, name, d->durable, d->auto_delete, d->exclusive,
                                         d->arguments, err)) < 0 ||
            (rc = entity_queue_create(vh, name, d->durable, d->auto_delete, d->exclusive, c,
                                      d->arguments, &q)) < 0)
            return rc;
    }
    memcpy(ch->last_queue, q->name, (size_t)q->name_len + 1);
    queue_used(q);
    if (d->no_wait)
        return 0;
    struct amqp_method m = {.id = AMQP_QUEUE_DECLARE_OK};
    m.u.queue_declare_ok.queue = (amqp_bytes_t){(const uint8_t *)q->name, q->name_len};
    uint64_t ready = queue_ready(q);
    m.u.queue_declare_ok.message_count = ready > UINT32_MAX ? UINT32_MAX : (uint32_t)ready;
    m.u.queue_declare_ok.consumer_count = q->consumer_count;
    conn_send_method(c, ch->id, &m);
    return 0;
}

/* queue.bind and queue.unbind: same checks, then add or remove. */
static int queue_bind(struct channel *ch, amqp_bytes_t qname, amqp_bytes_t xname,
                      amqp_bytes_t key, amqp_bytes_t args, bool bind, struct err *err)
{
    struct queue *q = NULL;
    struct exchange *x = NULL;
    int rc;
    uint8_t qbuf[256], xbuf[256];
    bool shortcut = qname.len == 0;
    /* Empty queue name: the last declared queue, and then also the routing key. */
    if (shortcut && key.len == 0 && ch->last_queue[0])
        key = amqp_cstr(ch->last_queue);
    xname = strip_cr_lf(xname, xbuf);
    struct vhost *vh = ch->conn->vhost;
    /* RabbitMQ's order: write on the queue, the default-exchange check, read on the exchange,
     * its topic permission; then the lookups. */
    if ((rc = queue_target(ch, &qname, qbuf, err)) < 0 ||
        (rc = allowed(ch, ACCESS_WRITE, ACCESS_QUEUE, qname, vhost_queue(vh, qname), err)) < 0 ||
        (rc = not_default(xname, err)) < 0)
        return rc;
    x = vhost_exchange(vh, xname);
    if ((rc = allowed(ch, ACCESS_READ, ACCESS_EXCHANGE, xname, x, err)) < 0 ||
        (x && (rc = access_check_topic(&ch->conn->access, ACCESS_READ, x, key, err)) < 0))
        return rc;
    if ((rc = lookup_queue(ch, qname, &q, err)) < 0 ||
        (rc = lookup_exchange(ch, xname, &x, err)) < 0) {
        /* Unbinding from a missing queue or exchange succeeds, as in RabbitMQ. */
        if (!bind && rc == -WERR_NOT_FOUND && !shortcut) {
            err->text[0] = 0;
            return 0;
        }
        return rc;
    }
    if (bind)
        return entity_bind(x, q, NULL, key, args, err);
    binding_remove(x, q, NULL, key, args); /* unbinding what is not bound succeeds */
    return 0;
}

static int queue_delete_method(struct channel *ch, const struct amqp_queue_delete *d, struct err *err)
{
    uint8_t buf[256];
    amqp_bytes_t name = d->queue;
    int rc = queue_target(ch, &name, buf, err);
    if (rc < 0)
        return rc;
    if ((rc = allowed(ch, ACCESS_CONFIGURE, ACCESS_QUEUE, name, vhost_queue(ch->conn->vhost, name),
                      err)) < 0)
        return rc;
    uint32_t n = 0;
    if (vhost_queue(ch->conn->vhost, name)) { /* deleting a missing queue succeeds */
        struct queue *q;
        if ((rc = lookup_queue(ch, name, &q, err)) < 0 ||
            (rc = entity_queue_delete(q, d->if_unused, d->if_empty, &n, err)) < 0)
            return rc;
    }
    if (!d->no_wait) {
        struct amqp_method m = {.id = AMQP_QUEUE_DELETE_OK};
        m.u.queue_delete_ok.message_count = n;
        conn_send_method(ch->conn, ch->id, &m);
    }
    return 0;
}

static int queue_purge_method(struct channel *ch, const struct amqp_queue_purge *p, struct err *err)
{
    struct queue *q;
    int rc = declare_lookup_queue(ch, p->queue, &q, err);
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

int declare_method(struct channel *ch, const struct amqp_method *m, struct err *err)
{
    int rc;
    switch (m->id) {
    case AMQP_EXCHANGE_DECLARE: return exchange_declare(ch, &m->u.exchange_declare, err);
    case AMQP_EXCHANGE_DELETE: return exchange_delete_method(ch, &m->u.exchange_delete, err);
    case AMQP_EXCHANGE_BIND: return exchange_bind(ch, &m->u.exchange_bind, true, err);
    case AMQP_EXCHANGE_UNBIND: {
        const struct amqp_exchange_unbind *u = &m->u.exchange_unbind;
        struct amqp_exchange_bind b = {u->reserved_1, u->destination, u->source, u->routing_key,
                                       u->no_wait, u->arguments};
        return exchange_bind(ch, &b, false, err);
    }
    case AMQP_QUEUE_DECLARE: return queue_declare(ch, &m->u.queue_declare, err);
    case AMQP_QUEUE_BIND: {
        const struct amqp_queue_bind *b = &m->u.queue_bind;
        rc = queue_bind(ch, b->queue, b->exchange, b->routing_key, b->arguments, true, err);
        if (rc == 0 && !b->no_wait)
            reply(ch, AMQP_QUEUE_BIND_OK);
        return rc;
    }
    case AMQP_QUEUE_UNBIND: {
        const struct amqp_queue_unbind *b = &m->u.queue_unbind;
        rc = queue_bind(ch, b->queue, b->exchange, b->routing_key, b->arguments, false, err);
        if (rc == 0)
            reply(ch, AMQP_QUEUE_UNBIND_OK);
        return rc;
    }
    case AMQP_QUEUE_PURGE: return queue_purge_method(ch, &m->u.queue_purge, err);
    case AMQP_QUEUE_DELETE: return queue_delete_method(ch, &m->u.queue_delete, err);
    default: return 1;
    }
}
