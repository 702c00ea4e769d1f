/* msgedit.c — owns header rewriting: decode the stored content header, let the caller change
 * properties and headers, encode it again into a new message. */
#include <string.h>
#include "broker/model/msg.h"
#include "broker/model/msgedit.h"

void msg_copy_table(struct amqp_wbuf *w, amqp_bytes_t t, bool (*skip)(amqp_bytes_t key))
{
    struct amqp_table_iter it;
    amqp_bytes_t k;
    struct amqp_field f;
    amqp_table_iter_init(&it, t);
    const uint8_t *at = it.p;
    while (amqp_table_next(&it, &k, &f) > 0) {
        if (!skip || !skip(k)) {
            uint8_t *d = amqp_wbuf_grow(w, (size_t)(it.p - at));
            if (d)
                memcpy(d, at, (size_t)(it.p - at));
        }
        at = it.p;
    }
}

struct msg *msg_edit(const struct msg *m, amqp_bytes_t exchange, amqp_bytes_t routing_key,
                     bool keep_bcc, msg_edit_cb cb, void *arg)
{
    struct amqp_content_header h;
    amqp_bytes_t hdr = msg_header(m);
    if (amqp_content_header_decode(hdr.ptr, hdr.len, &h) < 0)
        return NULL;
    amqp_bytes_t old = (h.props.flags & AMQP_P_HEADERS) ? h.props.headers : (amqp_bytes_t){0};
    struct amqp_wbuf tw = {0}, hw = {0};
    struct amqp_basic_props props = h.props;
    cb(&props, old, &tw, arg);
    struct msg *nm = NULL;
    if (tw.failed)
        goto out;
    if (tw.len) {
        props.flags |= AMQP_P_HEADERS;
        props.headers = (amqp_bytes_t){tw.data, (uint32_t)tw.len};
    } else {
        props.flags &= (uint16_t)~AMQP_P_HEADERS;
    }
    long n = amqp_content_header_size(&props);
    uint8_t *d = n > 0 ? amqp_wbuf_grow(&hw, (size_t)n) : NULL;
    if (!d)
        goto out;
    amqp_content_header_encode(&props, m->body_size, d);
    nm = msg_new(exchange, routing_key, (amqp_bytes_t){hw.data, (uint32_t)hw.len},
                 keep_bcc ? msg_bcc(m) : (amqp_bytes_t){NULL, 0}, m->body_size);
    if (!nm)
        goto out;
    nm->delivery_mode = m->delivery_mode;
    nm->priority = m->priority;
    nm->flags = keep_bcc ? (m->flags & MSG_HAS_CC) : 0;
    if (m->body_size)
        memcpy(nm->body, m->body, m->body_size);
    nm->body_have = m->body_size;
out:
    amqp_wbuf_free(&tw);
    amqp_wbuf_free(&hw);
    return nm;
}
