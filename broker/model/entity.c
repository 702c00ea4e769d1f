/* entity.c — the shared entity rules (entity.h), with RabbitMQ's texts. Every check runs before
 * any change, so a refused declare, delete or bind changes nothing. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "broker/model/args.h"
#include "broker/model/binding.h"
#include "broker/model/broker.h"
#include "broker/model/dedup.h"
#include "broker/model/entity.h"
#include "broker/model/errors.h"
#include "broker/model/persist.h"
#include "broker/model/queue.h"
#include "broker/model/vhost.h"
#include "protocol/table.h"

#define STR(b) (int)(b).len, (const char *)(b).ptr

static const char *tf(bool b)
{
    return b ? "true" : "false";
}

static int inequivalent(const char *arg, const char *what, const char *got, const char *cur,
                        struct err *err)
{
    return err_set(err, -WERR_PRECONDITION_FAILED,
                   "inequivalent arg '%s' for %s: received '%s' but current is '%s'", arg, what,
                   got, cur);
}

int entity_reserved_name(const char *kind, amqp_bytes_t name, struct err *err)
{
    if (name.len >= 4 && memcmp(name.ptr, "amq.", 4) == 0)
        return err_set(err, -WERR_ACCESS_REFUSED,
                       "%s name '%.*s' contains reserved prefix 'amq.*'", kind, STR(name));
    return 0;
}

/* ---- exchanges ------------------------------------------------------------------------------ */

int entity_exchange_equivalent(const struct exchange *x, enum exchange_type type, bool durable,
                               bool auto_delete, bool internal, amqp_bytes_t args,
                               struct err *err)
{
    char what[400];
    snprintf(what, sizeof what, "exchange '%s' in vhost '%s'", x->name, x->vhost->name);
    if (type == EX_DELAYED ? !x->delayed : (x->delayed || x->type != type))
        return inequivalent("type", what, exchange_type_name(type), exchange_type_shown(x),
                            err);
    if (x->durable != durable)
        return inequivalent("durable", what, tf(durable), tf(x->durable), err);
    if (x->auto_delete != auto_delete)
        return inequivalent("auto_delete", what, tf(auto_delete), tf(x->auto_delete), err);
    if (x->internal != internal)
        return inequivalent("internal", what, tf(internal), tf(x->internal), err);
    return args_equivalent(err, what, (amqp_bytes_t){x->args, x->args_len}, args,
                           args_exchange_keys);
}

int entity_exchange_check_new(const char *vhost, amqp_bytes_t name, enum exchange_type type,
                              amqp_bytes_t args, struct err *err)
{
    int rc = entity_reserved_name("exchange", name, err);
    if (rc < 0)
        return rc;
    if (type == EX_DEDUP && (rc = dedup_check_exchange_args(err, args)) < 0)
        return rc;
    if (type == EX_DELAYED && exchange_delayed_type(args) < 0) /* the plugin's text */
        return err_set(err, -WERR_PRECONDITION_FAILED,
                       "Invalid argument, 'x-delayed-type' must be an existing exchange type");
    struct amqp_field ae;
    if (amqp_table_get(args, "alternate-exchange", &ae) == 1 && ae.type != 'S')
        return err_set(err, -WERR_PRECONDITION_FAILED,
                       "invalid type '%s' for arg 'alternate-exchange' in exchange '%.*s' in "
                       "vhost '%s'",
                       args_type_name(ae.type), STR(name), vhost);
    return 0;
}

int entity_exchange_create(struct vhost *vh, amqp_bytes_t name, enum exchange_type type,
                           bool durable, bool auto_delete, bool internal, amqp_bytes_t args,
                           struct exchange **ret)
{
    struct exchange *x = exchange_new(vh, name, type, durable, auto_delete, internal, args);
    if (!x)
        return -ENOMEM;
    if (vhost_add_exchange(vh, x) < 0) {
        exchange_free(x);
        return -ENOMEM;
    }
    persist_exchange(vh->broker, x);
    exchange_apply_policies(x);
    if (ret)
        *ret = x;
    return 0;
}

int entity_exchange_delete(struct vhost *vh, amqp_bytes_t name, bool if_unused,
                           struct err *err)
{
    if (name.len == 0)
        return err_set(err, -WERR_ACCESS_REFUSED,
                       "operation not permitted on the default exchange");
    if (name.len >= 4 && memcmp(name.ptr, "amq.", 4) == 0)
        return err_set(err, -WERR_ACCESS_REFUSED,
                       "deletion of system exchange '%.*s' in vhost '%s' not allowed", STR(name),
                       vh->name);
    struct exchange *x = vhost_exchange(vh, name);
    if (!x) /* deleting a missing exchange succeeds, as in RabbitMQ 3.x */
        return 0;
    if (if_unused && x->nbindings)
        return err_set(err, -WERR_PRECONDITION_FAILED, "exchange '%s' in vhost '%s' in use",
                       x->name, vh->name);
    exchange_delete(x);
    return 0;
}

/* ---- queues ---------------------------------------------------------------------------------- */

int entity_queue_equivalent(const struct queue *q, bool durable, bool auto_delete,
                            bool exclusive, amqp_bytes_t args, struct err *err)
{
    char what[400];
    snprintf(what, sizeof what, "queue '%s' in vhost '%s'", q->name, q->vhost->name);
    if (q->durable != durable)
        return inequivalent("durable", what, tf(durable), tf(q->durable), err);
    if (q->auto_delete != auto_delete)
        return inequivalent("auto_delete", what, tf(auto_delete), tf(q->auto_delete), err);
    if (exclusive != q->exclusive) /* RabbitMQ calls this a lock, not an inequivalence */
        return err_set(err, -WERR_RESOURCE_LOCKED,
                       "cannot obtain exclusive access to locked queue '%s' in vhost '%s'. It "
                       "could be originally declared on another connection or the exclusive "
                       "property value does not match that of the original declaration.",
                       q->name, q->vhost->name);
    return args_equivalent(err, what, (amqp_bytes_t){q->args, q->args_len}, args,
                           args_queue_keys);
}

int entity_queue_check_limit(const struct vhost *vh, amqp_bytes_t name, struct err *err)
{
    if (vh->max_queues >= 0 && vh->queues.count >= (uint64_t)vh->max_queues)
        return err_set(err, -WERR_PRECONDITION_FAILED,
                       "cannot declare queue '%.*s': queue limit in vhost '%s' (%lld) is reached",
                       STR(name), vh->name, (long long)vh->max_queues);
    return 0;
}

int entity_queue_check_new(const char *vhost, amqp_bytes_t name, bool durable,
                           bool auto_delete, bool exclusive, amqp_bytes_t args, struct err *err)
{
    char qname[256];
    snprintf(qname, sizeof qname, "%.*s", STR(name));
    int rc = args_check_queue(err, qname, vhost, args);
    if (rc < 0)
        return rc;
    struct amqp_field qt;
    if (amqp_table_get(args, "x-queue-type", &qt) != 1 || qt.type != 'S')
        return 0;
    if (amqp_bytes_eq_str(qt.v.bytes, "stream"))
        return err_set(err, -WERR_PRECONDITION_FAILED,
                       "queue type 'stream' is not supported yet (queue '%s' in vhost '%s')",
                       qname, vhost);
    if (!amqp_bytes_eq_str(qt.v.bytes, "quorum"))
        return 0;
    /* A quorum queue is durable, shared and explicit about its lifetime. */
    const char *bad = auto_delete ? "auto-delete" : exclusive ? "exclusive-owner"
                      : !durable ? "non-durable" : NULL;
    if (bad)
        return err_set(err, -WERR_PRECONDITION_FAILED,
                       "invalid property '%s' for queue '%s' in vhost '%s'", bad, qname,
                       vhost);
    if (amqp_table_get(args, "x-max-priority", &qt) == 1)
        return err_set(err, -WERR_PRECONDITION_FAILED,
                       "invalid arg 'x-max-priority' for queue '%s' in vhost '%s' of queue type "
                       "rabbit_quorum_queue",
                       qname, vhost);
    return 0;
}

int entity_queue_create(struct vhost *vh, amqp_bytes_t name, bool durable, bool auto_delete,
                        bool exclusive, void *owner, amqp_bytes_t args, struct queue **ret)
{
    struct queue *q = queue_new(vh, name, args);
    if (!q)
        return -ENOMEM;
    q->durable = durable;
    q->exclusive = exclusive;
    q->auto_delete = auto_delete;
    q->owner = exclusive ? owner : NULL;
    if (vhost_add_queue(vh, q) < 0) {
        queue_unref(q);
        return -ENOMEM;
    }
    persist_queue(vh->broker, q);
    queue_apply_policies(q);
    if (ret)
        *ret = q;
    return 0;
}

int entity_queue_delete(struct queue *q, bool if_unused, bool if_empty, uint32_t *ret_count,
                        struct err *err)
{
    if (if_unused && q->consumer_count)
        return err_set(err, -WERR_PRECONDITION_FAILED, "queue '%s' in vhost '%s' in use",
                       q->name, q->vhost->name);
    if (if_empty && queue_ready(q))
        return err_set(err, -WERR_PRECONDITION_FAILED, "queue '%s' in vhost '%s' not empty",
                       q->name, q->vhost->name);
    uint32_t n = queue_delete(q);
    if (ret_count)
        *ret_count = n;
    return 0;
}

/* ---- bindings ---------------------------------------------------------------------------------- */

int entity_bind(struct exchange *src, struct queue *dq, struct exchange *dx, amqp_bytes_t key,
                amqp_bytes_t args, struct err *err)
{
    int rc;
    if (src->type == EX_HEADERS && (rc = args_check_x_match(err, args)) < 0)
        return rc;
    return binding_add(src, dq, dx, key, args, NULL, err);
}
