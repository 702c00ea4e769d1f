/* binding.c — owns binding objects: creation, lookup by identity, removal from both ends, and
 * each binding's compiled filter policy (freed with the binding). Invariant: a binding is
 * linked in its source's list, identity map and routing index and in its destination's list,
 * or in none of them (freed). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "broker/model/binding.h"
#include "broker/model/errors.h"
#include "broker/model/exchange.h"
#include "broker/model/filter.h"
#include "broker/model/headers.h"
#include "broker/model/persist.h"
#include "broker/model/queue.h"
#include "broker/model/vhost.h"
#include "protocol/table.h"

/* Writes the identity of (dq | dx, key, args) into id (room for BINDING_ID_HEAD + key + args). */
static void write_id(uint8_t *id, struct queue *dq, struct exchange *dx, amqp_bytes_t key,
                     amqp_bytes_t args)
{
    void *dst = dq ? (void *)dq : (void *)dx;
    memcpy(id, &dst, sizeof dst);
    id[sizeof dst] = dq ? 'q' : 'x';
    id[sizeof dst + 1] = (uint8_t)key.len;
    if (key.len)
        memcpy(id + BINDING_ID_HEAD, key.ptr, key.len);
    if (args.len)
        memcpy(id + BINDING_ID_HEAD + key.len, args.ptr, args.len);
}

/* Looks the binding up by identity; -ENOMEM when a scratch buffer cannot be had. */
static int find(struct exchange *src, struct queue *dq, struct exchange *dx, amqp_bytes_t key,
                amqp_bytes_t args, struct binding **ret)
{
    uint8_t small[512];
    size_t n = BINDING_ID_HEAD + key.len + args.len;
    uint8_t *id = n <= sizeof small ? small : malloc(n);
    if (!id)
        return -ENOMEM;
    write_id(id, dq, dx, key, args);
    *ret = hmap_get(&src->by_id, id, n);
    if (id != small)
        free(id);
    return 0;
}

int binding_filter_compile(amqp_bytes_t args, struct filter **ret_filter, struct err *err)
{
    struct err scratch;
    struct amqp_field pol, sc;
    enum filter_scope scope = FILTER_SCOPE_ATTRIBUTES;
    if (!err)
        err = &scratch;
    if (amqp_table_get(args, "x-filter-policy-scope", &sc) == 1) {
        if (sc.type == 'S' && amqp_bytes_eq_str(sc.v.bytes, "MessageBody"))
            scope = FILTER_SCOPE_BODY;
        else if (sc.type != 'S' || !amqp_bytes_eq_str(sc.v.bytes, "MessageAttributes"))
            return err_set(err, -WERR_PRECONDITION_FAILED,
                           "x-filter-policy-scope must be the longstr MessageAttributes or "
                           "MessageBody");
    }
    if (amqp_table_get(args, "x-filter-policy", &pol) != 1) {
        *ret_filter = NULL;
        return 0;
    }
    if (pol.type != 'S')
        return err_set(err, -WERR_PRECONDITION_FAILED,
                       "x-filter-policy must be a longstr holding a JSON object");
    char why[sizeof err->text];
    int rc = filter_compile((const char *)pol.v.bytes.ptr, pol.v.bytes.len, scope, ret_filter, why,
                            sizeof why);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0) {
        const char *w = strncmp(why, "filter policy: ", 15) == 0 ? why + 15 : why;
        return err_set(err, -WERR_PRECONDITION_FAILED, "%s", w);
    }
    return 0;
}

int binding_add(struct exchange *src, struct queue *dq, struct exchange *dx, amqp_bytes_t key,
                amqp_bytes_t args, struct binding **ret, struct err *err)
{
    struct binding *b;
    struct filter *f;
    struct err why;
    int rc = find(src, dq, dx, key, args, &b);
    if (ret)
        *ret = NULL;
    if (rc < 0 || b)
        return rc;
    if ((rc = binding_filter_compile(args, &f, &why)) < 0) {
        if (rc != -ENOMEM && err)
            err_set(err, rc, "invalid x-filter-policy for binding of exchange '%.*s' to %s '%s' "
                    "in vhost '%s': %s", (int)src->name_len, src->name, dq ? "queue" : "exchange",
                    dq ? dq->name : dx->name, src->vhost->name, why.text);
        return rc;
    }
    b = calloc(1, sizeof *b + BINDING_ID_HEAD + key.len + args.len);
    if (!b) {
        filter_free(f);
        return -ENOMEM;
    }
    b->filter = f;
    b->src = src;
    b->dq = dq;
    b->dx = dx;
    b->key_len = (uint8_t)key.len;
    b->args_len = args.len;
    write_id(b->data, dq, dx, key, args);
    b->hm = headers_match_kind(binding_args(b));
    list_init(&b->key_link);
    if (hmap_put(&src->by_id, b->data, binding_id_len(b), b) < 0) {
        filter_free(b->filter);
        free(b);
        return -ENOMEM;
    }
    if (exchange__index(src, b) < 0) {
        hmap_del(&src->by_id, b->data, binding_id_len(b));
        filter_free(b->filter);
        free(b);
        return -ENOMEM;
    }
    list_insert_tail(&src->bindings, &b->src_link);
    src->nbindings++;
    list_insert_tail(dq ? &dq->bindings_in : &dx->bindings_in, &b->dst_link);
    persist_binding(src->vhost->broker, b);
    if (ret)
        *ret = b;
    return 0;
}

void binding_free(struct binding *b)
{
    struct exchange *src = b->src;
    persist_binding_deleted(src->vhost->broker, b);
    exchange__unindex(src, b);
    hmap_del(&src->by_id, b->data, binding_id_len(b));
    list_remove(&b->src_link);
    list_remove(&b->dst_link);
    src->nbindings--;
    filter_free(b->filter);
    free(b);
    exchange__binding_gone(src);
}

int binding_remove(struct exchange *src, struct queue *dq, struct exchange *dx, amqp_bytes_t key,
                   amqp_bytes_t args)
{
    struct binding *b;
    int rc = find(src, dq, dx, key, args, &b);
    if (rc < 0)
        return rc;
    if (!b)
        return -ENOENT;
    binding_free(b);
    return 0;
}
