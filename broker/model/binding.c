/* binding.c — owns binding objects: creation, lookup by identity, removal from both ends.
 * Invariant: a binding is linked in its source's list, identity map and routing index and in
 * its destination's list, or in none of them (freed). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "broker/model/binding.h"
#include "broker/model/exchange.h"
#include "broker/model/headers.h"
#include "broker/model/persist.h"
#include "broker/model/queue.h"
#include "broker/model/vhost.h"

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

int binding_add(struct exchange *src, struct queue *dq, struct exchange *dx, amqp_bytes_t key,
                amqp_bytes_t args, struct binding **ret)
{
    struct binding *b;
    int rc = find(src, dq, dx, key, args, &b);
    if (ret)
        *ret = NULL;
    if (rc < 0 || b)
        return rc;
    b = calloc(1, sizeof *b + BINDING_ID_HEAD + key.len + args.len);
    if (!b)
        return -ENOMEM;
    b->src = src;
    b->dq = dq;
    b->dx = dx;
    b->key_len = (uint8_t)key.len;
    b->args_len = args.len;
    write_id(b->data, dq, dx, key, args);
    b->hm = headers_match_kind(binding_args(b));
    list_init(&b->key_link);
    if (hmap_put(&src->by_id, b->data, binding_id_len(b), b) < 0) {
        free(b);
        return -ENOMEM;
    }
    if (exchange__index(src, b) < 0) {
        hmap_del(&src->by_id, b->data, binding_id_len(b));
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
