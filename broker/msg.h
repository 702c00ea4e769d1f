/* msg.h — a published message: one refcounted allocation holding the exchange name,
 * routing key, the content-header payload exactly as received (re-sent unchanged on
 * delivery) and the body. N queues hold N references, never N copies. */
#ifndef WARREN_MSG_H
#define WARREN_MSG_H
#include <stdbool.h>
#include <stdint.h>
#include "protocol/wire.h"

struct msg {
    uint32_t refs;
    uint8_t exchange_len, rk_len;
    uint8_t delivery_mode, priority; /* parsed from the header: what routing/storage need */
    uint32_t header_len;             /* content-header payload bytes */
    uint64_t body_size;
    uint64_t body_have; /* bytes of body received so far (== body_size once complete) */
    uint8_t *body;      /* borrowed: points into data[] */
    uint8_t data[];     /* exchange, routing key, header payload, body */
};

/* Allocates a message with room for the body; copies exchange, key and header.
 * Returns NULL on allocation failure. refs starts at 1 (the caller's). */
struct msg *msg_new(amqp_bytes_t exchange, amqp_bytes_t routing_key, amqp_bytes_t header,
                    uint64_t body_size);
static inline struct msg *msg_ref(struct msg *m) { m->refs++; return m; }
/* Drops one reference; frees at zero. Accepts NULL. */
void msg_unref(struct msg *m);
static inline amqp_bytes_t msg_exchange(const struct msg *m)
{
    return (amqp_bytes_t){m->data, m->exchange_len};
}
static inline amqp_bytes_t msg_routing_key(const struct msg *m)
{
    return (amqp_bytes_t){m->data + m->exchange_len, m->rk_len};
}
static inline amqp_bytes_t msg_header(const struct msg *m)
{
    return (amqp_bytes_t){m->data + m->exchange_len + m->rk_len, m->header_len};
}

#endif
