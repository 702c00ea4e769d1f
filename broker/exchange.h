/* exchange.h — exchanges and routing. An exchange maps a message to the set of queues it
 * goes to; every queue appears at most once per publish. */
#ifndef WARREN_EXCHANGE_H
#define WARREN_EXCHANGE_H
#include <stdbool.h>
#include <stdint.h>
#include "protocol/wire.h"

struct vhost;
struct queue;
struct msg;

enum exchange_type { EX_DIRECT, EX_FANOUT, EX_TOPIC, EX_HEADERS, EX_TYPE_MAX };

struct exchange {
    struct vhost *vhost; /* borrowed: owns us */
    char *name;          /* owned */
    uint8_t name_len;
    enum exchange_type type;
    bool durable, auto_delete, internal;
};

/* The routing result: queues a message goes to (refs are not taken; valid until the
 * next loop turn). */
struct route {
    struct queue **q; /* owned array */
    uint32_t n, cap;
};
void route_free(struct route *r);

/* Looks up the type by its AMQP name ("direct", ...); -1 when unknown. */
int exchange_type_parse(amqp_bytes_t name);
const char *exchange_type_name(enum exchange_type t);
struct exchange *exchange_new(struct vhost *vh, amqp_bytes_t name, enum exchange_type type,
                              bool durable, bool auto_delete, bool internal);
void exchange_free(struct exchange *x);
/* Fills r (reset first) with the queues x routes m to. 0 or -ENOMEM. */
int exchange_route(struct exchange *x, const struct msg *m, struct route *r);

#endif
