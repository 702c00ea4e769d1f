/* vhost.h — a virtual host: the namespace of exchanges and queues, with its description and
 * limits (stored by users.c). Every lookup goes through a vhost. */
#ifndef WARREN_VHOST_H
#define WARREN_VHOST_H
#include "lib/hmap.h"
#include "protocol/wire.h"

struct broker;
struct queue;
struct exchange;

struct vhost {
    struct broker *broker; /* borrowed: owns us */
    char *name;         /* owned */
    char *description;  /* owned, may be NULL */
    char *default_queue_type; /* owned, may be NULL ("classic") */
    int64_t max_connections, max_queues; /* RabbitMQ's vhost limits; < 0: none */
    uint32_t nconnections; /* connections open in this vhost (the AMQP server counts them) */
    uint32_t refs;         /* the broker's map (until vhost_free) and each queue of it */
    struct hmap queues;    /* name -> queue (ref) */
    struct hmap exchanges; /* name -> exchange (owned) */
    uint64_t route_pass;   /* numbers routing walks, for visited marks */
};

struct vhost *vhost_new(struct broker *b, const char *name);
/* Deletes every queue and exchange of vh and drops the broker's reference: vh itself is freed
 * when the last queue that still has references (a delivery in flight, a kick) lets go. */
void vhost_free(struct vhost *vh);
void vhost_unref(struct vhost *vh);
struct queue *vhost_queue(struct vhost *vh, amqp_bytes_t name);
/* Adds q under its name; takes over the caller's reference. 0 or -ENOMEM. */
int vhost_add_queue(struct vhost *vh, struct queue *q);
/* Removes q from the map and drops the map's reference. */
void vhost_remove_queue(struct vhost *vh, struct queue *q);
struct exchange *vhost_exchange(struct vhost *vh, amqp_bytes_t name);
/* Adds x under its name (the map owns it from then on). 0 or -ENOMEM. */
int vhost_add_exchange(struct vhost *vh, struct exchange *x);
/* Takes x out of the map (exchange_delete frees it). */
void vhost_remove_exchange(struct vhost *vh, struct exchange *x);

#endif
