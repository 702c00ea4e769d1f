/* msg.c — owns message allocation and lifetime. Invariant: refs > 0 while any queue,
 * unacked delivery, output buffer or channel under assembly holds the message. */
#include <stdlib.h>
#include "broker/model/msg.h"

struct msg *msg_new(amqp_bytes_t exchange, amqp_bytes_t routing_key, amqp_bytes_t header,
                    amqp_bytes_t bcc, uint64_t body_size)
{
    size_t fixed = (size_t)exchange.len + routing_key.len + header.len + bcc.len;
    struct msg *m = malloc(sizeof *m + fixed + body_size);
    if (!m)
        return NULL;
    m->refs = 1;
    m->exchange_len = (uint8_t)exchange.len;
    m->rk_len = (uint8_t)routing_key.len;
    m->delivery_mode = 0;
    m->priority = 0;
    m->flags = 0;
    m->header_len = header.len;
    m->bcc_len = bcc.len;
    m->store_id = 0;
    m->ttl = -1;
    m->body_size = body_size;
    m->body_have = 0;
    uint8_t *p = m->data;
    if (exchange.len)
        memcpy(p, exchange.ptr, exchange.len);
    p += exchange.len;
    if (routing_key.len)
        memcpy(p, routing_key.ptr, routing_key.len);
    p += routing_key.len;
    if (header.len)
        memcpy(p, header.ptr, header.len);
    p += header.len;
    if (bcc.len)
        memcpy(p, bcc.ptr, bcc.len);
    m->body = p + bcc.len;
    return m;
}

void msg_unref(struct msg *m)
{
    if (m && --m->refs == 0)
        free(m);
}
