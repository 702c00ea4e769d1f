/* args.h — declare-argument equivalence, as RabbitMQ checks it on redeclare: only the keys
 * it knows are compared, integers of any width compare by value. */
#ifndef WARREN_ARGS_H
#define WARREN_ARGS_H
#include "protocol/wire.h"

struct err;
extern const char *const args_queue_keys[];    /* NULL-terminated */
extern const char *const args_exchange_keys[]; /* NULL-terminated */

/* Compares cur (what the entity has) with got (what the redeclare sent) on `keys`. Returns 0,
 * or -WERR_PRECONDITION_FAILED with RabbitMQ's text in *err. `what` names the entity:
 * "queue 'q' in vhost '/'". */
int args_equivalent(struct err *err, const char *what, amqp_bytes_t cur, amqp_bytes_t got,
                    const char *const *keys);

/* Checks the values of the queue arguments RabbitMQ knows (x-message-ttl, x-expires,
 * x-max-length, x-max-priority, x-overflow, x-queue-type, x-dead-letter-*, ...): 0, or
 * -WERR_PRECONDITION_FAILED with RabbitMQ's text. `queue` and `vhost` name the queue. */
int args_check_queue(struct err *err, const char *queue, const char *vhost, amqp_bytes_t args);
struct queue_opts;
/* Fills o from validated queue arguments (defaults for what is absent). Byte strings in o
 * point into args. */
void args_queue_opts(amqp_bytes_t args, struct queue_opts *o);
/* RabbitMQ's name of a field type letter ("longstr", "signedint", ...). */
const char *args_type_name(char type);
/* Checks a headers-exchange binding's x-match argument: absent, or a longstr naming all, any,
 * all-with-x or any-with-x. 0 or -WERR_PRECONDITION_FAILED with RabbitMQ's text. */
int args_check_x_match(struct err *err, amqp_bytes_t args);

#endif
