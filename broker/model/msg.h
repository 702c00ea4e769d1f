/* msg.h — a published message: one refcounted allocation holding the exchange name,
 * routing key, the content-header payload exactly as received (re-sent unchanged on
 * delivery) and the body. N queues hold N references, never N copies. */
#ifndef WARREN_MSG_H
#define WARREN_MSG_H
#include <stdbool.h>
#include <stdint.h>
#include "protocol/wire.h"

enum msg_flag {
    MSG_MANDATORY = 1 << 0, /* basic.publish mandatory: return it when unroutable */
    MSG_HAS_CC = 1 << 1,    /* headers carry CC: extra routing keys */
    MSG_REPLY_PSEUDO = 1 << 2, /* reply_to is amq.rabbitmq.reply-to: rewrite before routing */
    MSG_DELAYED = 1 << 3,   /* it has waited its delay (delay.h): no queue delays it again */
};

struct msg {
    uint32_t refs;
    uint8_t exchange_len, rk_len;
    uint8_t delivery_mode, priority; /* parsed from the header: what routing/storage need */
    uint8_t flags;                   /* enum msg_flag */
    uint32_t header_len;             /* content-header payload bytes */
    uint32_t bcc_len;                /* BCC routing keys (array body), stripped from the header */
    uint64_t store_id;               /* id in storage once written for durable queues, else 0 */
    int64_t ttl;                     /* per-message TTL (expiration property) in ms, -1: none */
    uint64_t body_size;
    uint64_t body_have; /* bytes of body received so far (== body_size once complete) */
    uint8_t *body;      /* borrowed: points into data[] */
    uint8_t data[];     /* exchange, routing key, header payload, BCC array, body */
};

/* Allocates a message with room for the body; copies exchange, key, header and BCC keys.
 * Returns NULL on allocation failure. refs starts at 1 (the caller's). */
struct msg *msg_new(amqp_bytes_t exchange, amqp_bytes_t routing_key, amqp_bytes_t header,
                    amqp_bytes_t bcc, uint64_t body_size);
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

/* Memory a message takes, for the memory alarm. */
static inline uint64_t msg_mem(const struct msg *m)
{
    return sizeof *m + m->exchange_len + m->rk_len + m->header_len + m->bcc_len + m->body_size;
}
static inline amqp_bytes_t msg_bcc(const struct msg *m)
{
    return (amqp_bytes_t){m->data + m->exchange_len + m->rk_len + m->header_len, m->bcc_len};
}

#endif
