/* exchange.c — owns exchange objects and routing. Today only the default exchange routes
 * (to the queue named by the routing key); bindings for direct, fanout, topic and headers
 * exchanges come with the messaging-semantics work and plug into exchange_route(). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "broker/exchange.h"
#include "broker/msg.h"
#include "broker/queue.h"
#include "broker/vhost.h"

static const char *const type_names[EX_TYPE_MAX] = {"direct", "fanout", "topic", "headers"};

int exchange_type_parse(amqp_bytes_t name)
{
    for (int i = 0; i < EX_TYPE_MAX; i++)
        if (amqp_bytes_eq_str(name, type_names[i]))
            return i;
    return -1;
}

const char *exchange_type_name(enum exchange_type t)
{
    return t < EX_TYPE_MAX ? type_names[t] : "unknown";
}

struct exchange *exchange_new(struct vhost *vh, amqp_bytes_t name, enum exchange_type type,
                              bool durable, bool auto_delete, bool internal)
{
    struct exchange *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->name = malloc(name.len + 1);
    if (!x->name) {
        free(x);
        return NULL;
    }
    if (name.len)
        memcpy(x->name, name.ptr, name.len);
    x->name[name.len] = 0;
    x->name_len = (uint8_t)name.len;
    x->vhost = vh;
    x->type = type;
    x->durable = durable;
    x->auto_delete = auto_delete;
    x->internal = internal;
    return x;
}

void exchange_free(struct exchange *x)
{
    if (!x)
        return;
    free(x->name);
    free(x);
}

void route_free(struct route *r)
{
    free(r->q);
    memset(r, 0, sizeof *r);
}

static int route_add(struct route *r, struct queue *q)
{
    for (uint32_t i = 0; i < r->n; i++)
        if (r->q[i] == q)
            return 0;
    if (r->n == r->cap) {
        uint32_t cap = r->cap ? r->cap * 2 : 8;
        struct queue **a = realloc(r->q, cap * sizeof *a);
        if (!a)
            return -ENOMEM;
        r->q = a;
        r->cap = cap;
    }
    r->q[r->n++] = q;
    return 0;
}

int exchange_route(struct exchange *x, const struct msg *m, struct route *r)
{
    r->n = 0;
    if (x->name_len == 0) {
        struct queue *q = vhost_queue(x->vhost, msg_routing_key(m));
        return q ? route_add(r, q) : 0;
    }
    return 0;
}
