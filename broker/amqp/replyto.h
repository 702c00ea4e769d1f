/* replyto.h — RabbitMQ's direct reply-to: a requester consumes the pseudo-queue
 * amq.rabbitmq.reply-to (no-ack), publishes requests whose reply_to is rewritten to a name
 * that routes back to its channel, and replies published to that name through the default
 * exchange go straight to it, with no queue in between. */
#ifndef WARREN_REPLYTO_H
#define WARREN_REPLYTO_H
#include <stdbool.h>
#include "protocol/codec.h"

#define REPLYTO_QUEUE "amq.rabbitmq.reply-to"

struct err;
struct channel;
struct server;
struct msg;

/* basic.consume of amq.rabbitmq.reply-to. 0 or an error for conn_fail(). */
int replyto_consume(struct channel *ch, const struct amqp_basic_consume *bc, struct err *err);
/* basic.cancel: true when tag named the reply consumer (now gone). */
bool replyto_cancel(struct channel *ch, amqp_bytes_t tag);
/* A publish with reply_to = amq.rabbitmq.reply-to gets the channel's reply name instead:
 * *m may be replaced by a rewritten copy (its reference moves). 0, -ENOMEM, or 406 when the
 * channel does not consume the pseudo-queue. */
int replyto_rewrite(struct channel *ch, struct msg **m, struct err *err);
/* A publish to the default exchange: when its routing key is a reply name, delivers it to
 * that requester (if still there) and returns true. *ret_delivered is always false: RabbitMQ
 * routes a reply outside any queue, so a mandatory one is also returned (312 NO_ROUTE). */
bool replyto_route(struct channel *ch, struct msg *m, bool *ret_delivered);
/* True for amq.rabbitmq.reply-to itself and for a live reply name. */
bool replyto_is_name(struct server *s, amqp_bytes_t name);
/* The channel closes: its reply name stops routing. */
void replyto_forget(struct channel *ch);

#endif
