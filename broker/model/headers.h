/* headers.h — the headers exchange's match rule (x-match all / any / all-with-x /
 * any-with-x) as RabbitMQ 3.x applies it. Pure functions over field tables. */
#ifndef WARREN_HEADERS_H
#define WARREN_HEADERS_H
#include <stdbool.h>
#include "broker/model/binding.h"

/* The x-match kind named in binding arguments (default all). */
enum headers_match headers_match_kind(amqp_bytes_t binding_args);
/* True when message headers satisfy binding arguments under kind hm. */
bool headers_match(enum headers_match hm, amqp_bytes_t binding_args, amqp_bytes_t msg_headers);

#endif
