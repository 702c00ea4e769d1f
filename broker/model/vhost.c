/* vhost.c — owns a vhost's name maps: exchanges (owned) and queues (one reference each).
 * Invariant: a queue is in the map exactly while it is not deleted. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "broker/model/exchange.h"
#include "broker/model/queue.h"
#include "broker/model/vhost.h"

static int add_exchange(struct vhost *vh, const char *name, enum exchange_type type)
{
    struct exchange *x = exchange_new(vh, amqp_cstr(name), type, true, false, false,
                                      (amqp_bytes_t){NULL, 0});
    if (!x || vhost_add_exchange(vh, x) < 0) {
        exchange_free(x);
        return -ENOMEM;
    }
    return 0;
}

struct vhost *vhost_new(struct broker *b, const char *name)
{
    struct vhost *vh = calloc(1, sizeof *vh);
    if (!vh)
        return NULL;
    vh->broker = b;
    vh->refs = 1;
    vh->name = strdup(name);
    vh->max_connections = vh->max_queues = -1;
    /* The default exchange and RabbitMQ's predeclared ones. */
    if (!vh->name || add_exchange(vh, "", EX_DIRECT) < 0 ||
        add_exchange(vh, "amq.direct", EX_DIRECT) < 0 ||
        add_exchange(vh, "amq.fanout", EX_FANOUT) < 0 ||
        add_exchange(vh, "amq.topic", EX_TOPIC) < 0 ||
        add_exchange(vh, "amq.headers", EX_HEADERS) < 0 ||
        add_exchange(vh, "amq.match", EX_HEADERS) < 0) {
        vhost_free(vh);
        return NULL;
    }
    return vh;
}

void vhost_free(struct vhost *vh)
{
    if (!vh)
        return;
    void *v;
    for (uint32_t it = 0; hmap_next(&vh->queues, &it, &v);)
        queue_delete(v);
    for (uint32_t it = 0; hmap_next(&vh->exchanges, &it, &v);)
        exchange_delete(v);
    vhost_unref(vh);
}

void vhost_unref(struct vhost *vh)
{
    if (--vh->refs > 0)
        return;
    hmap_free(&vh->queues);
    hmap_free(&vh->exchanges);
    free(vh->name);
    free(vh->description);
    free(vh->default_queue_type);
    free(vh);
}

struct queue *vhost_queue(struct vhost *vh, amqp_bytes_t name)
{
    return hmap_get(&vh->queues, name.ptr, name.len);
}

int vhost_add_queue(struct vhost *vh, struct queue *q)
{
    return hmap_put(&vh->queues, q->name, q->name_len, q);
}

void vhost_remove_queue(struct vhost *vh, struct queue *q)
{
    if (hmap_get(&vh->queues, q->name, q->name_len) == q) {
        hmap_del(&vh->queues, q->name, q->name_len);
        queue_unref(q);
    }
}

struct exchange *vhost_exchange(struct vhost *vh, amqp_bytes_t name)
{
    return hmap_get(&vh->exchanges, name.ptr, name.len);
}

int vhost_add_exchange(struct vhost *vh, struct exchange *x)
{
    return hmap_put(&vh->exchanges, x->name, x->name_len, x);
}

void vhost_remove_exchange(struct vhost *vh, struct exchange *x)
{
    if (hmap_get(&vh->exchanges, x->name, x->name_len) == x)
        hmap_del(&vh->exchanges, x->name, x->name_len);
}
