/* declare.h — exchange.* and queue.* methods of a channel (declare, delete, bind, unbind,
 * purge). */
#ifndef WARREN_DECLARE_H
#define WARREN_DECLARE_H
#include "protocol/codec.h"

struct err;
struct channel;
struct queue;

/* Handles m if it is an exchange or queue method: 0, an error for conn_fail(), or 1 when m
 * is not one of them. */
int declare_method(struct channel *ch, const struct amqp_method *m, struct err *err);
/* Finds a queue the channel's connection may use (the empty name means the channel's last
 * declared queue): 0, or -WERR_NOT_FOUND (404) / -WERR_RESOURCE_LOCKED (405). */
int declare_lookup_queue(struct channel *ch, amqp_bytes_t name, struct queue **ret, struct err *err);

#endif
