/* entity.h — the entity rules every surface shares (AMQP methods, the management API, the
 * definitions import): what a declare must match when the exchange or queue exists, what a new
 * one must satisfy, how one is created (and stored), what a delete or a bind requires, each with
 * RabbitMQ's reply code and text. Split in steps so that a surface can put its permission checks
 * between them in RabbitMQ's order. Owns nothing; the objects live in their vhost. */
#ifndef WARREN_ENTITY_H
#define WARREN_ENTITY_H
#include <stdbool.h>
#include <stdint.h>
#include "broker/model/exchange.h"
#include "protocol/wire.h"

struct err;
struct queue;
struct vhost;

/* "exchange '<name>' contains reserved prefix 'amq.*'" (403) for names starting "amq."; kind is
 * "exchange" or "queue". */
int entity_reserved_name(const char *kind, amqp_bytes_t name, struct err *err);

/* Does existing exchange x match a redeclare with these properties? 0 or 406 "inequivalent
 * arg ..." (type, durable, auto_delete, internal, then the arguments RabbitMQ compares). */
int entity_exchange_equivalent(const struct exchange *x, enum exchange_type type, bool durable,
                               bool auto_delete, bool internal, amqp_bytes_t args,
                               struct err *err);
/* May a new exchange called name of that type be declared in vhost (a name: it may not exist
 * yet, for an import) with args? (reserved prefix; the type of alternate-exchange; the
 * arguments of x-message-deduplication; a delayed exchange's x-delayed-type.) 0 or the error. */
int entity_exchange_check_new(const char *vhost, amqp_bytes_t name, enum exchange_type type,
                              amqp_bytes_t args, struct err *err);
/* Creates the exchange, adds it to vh and stores it when durable. 0 or -ENOMEM. */
int entity_exchange_create(struct vhost *vh, amqp_bytes_t name, enum exchange_type type,
                           bool durable, bool auto_delete, bool internal, amqp_bytes_t args,
                           struct exchange **ret);
/* exchange.delete's rules for name in vh: the default and amq.* exchanges are refused (403),
 * if_unused refuses one with bindings (406); a missing one is no error. Deletes it. */
int entity_exchange_delete(struct vhost *vh, amqp_bytes_t name, bool if_unused,
                           struct err *err);

/* Does existing queue q match a redeclare? 0, 406 "inequivalent arg" (durable, auto_delete,
 * arguments) or 405 when the exclusive flag differs (RabbitMQ calls that a lock). */
int entity_queue_equivalent(const struct queue *q, bool durable, bool auto_delete,
                            bool exclusive, amqp_bytes_t args, struct err *err);
/* The vhost's max-queues: 406 "cannot declare queue ... queue limit ... is reached". */
int entity_queue_check_limit(const struct vhost *vh, amqp_bytes_t name, struct err *err);
/* May a new queue with these properties be declared in vhost (a name, as above)? (argument
 * values; quorum and stream rules.) 0 or 406 with RabbitMQ's text. */
int entity_queue_check_new(const char *vhost, amqp_bytes_t name, bool durable,
                           bool auto_delete, bool exclusive, amqp_bytes_t args, struct err *err);
/* Creates the queue (owner: the exclusive owner, or NULL), adds it to vh and stores it when
 * durable. 0 or -ENOMEM. */
int entity_queue_create(struct vhost *vh, amqp_bytes_t name, bool durable, bool auto_delete,
                        bool exclusive, void *owner, amqp_bytes_t args, struct queue **ret);
/* queue.delete's rules: if_unused refuses a queue with consumers, if_empty one with ready
 * messages (406). Deletes it; *ret_count gets the messages it held. */
int entity_queue_delete(struct queue *q, bool if_unused, bool if_empty, uint32_t *ret_count,
                        struct err *err);

/* Binds src to dq or dx with key and args (a headers source checks x-match first; an
 * x-filter-policy is compiled; binding what is bound is no error). 0, 406 or -ENOMEM. */
int entity_bind(struct exchange *src, struct queue *dq, struct exchange *dx, amqp_bytes_t key,
                amqp_bytes_t args, struct err *err);

#endif
