/* perf_wire.c — frame encoding and batched, non-blocking socket writes for warren-perf's
 * publishers and ackers (see perf_wire.h). Owns the write buffer, never the socket.
 * Frame layout (AMQP 0-9-1 §4.2.3): type u8, channel u16, size u32, payload, 0xCE. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "perf_wire.h"

enum {
    FRAME_METHOD = 1,
    FRAME_HEADER = 2,
    FRAME_BODY = 3,
    FRAME_END = 0xCE,
    FRAME_OVERHEAD = 8, /* 7-byte header + end octet */
    CLASS_QUEUE = 50,
    QUEUE_BIND = 20,
    CLASS_BASIC = 60,
    BASIC_PUBLISH = 40,
    BASIC_ACK = 80,
    PROP_DELIVERY_MODE = 1 << 12,
    PROP_EXPIRATION = 1 << 8,
};

int wbuf_init(struct wbuf *w, int fd, uint32_t frame_max, const atomic_bool *stop)
{
    memset(w, 0, sizeof *w);
    w->buf = malloc(WBUF_CAP);
    if (!w->buf)
        return -ENOMEM;
    w->fd = fd;
    w->stop = stop;
    if (frame_max == 0 || frame_max > WBUF_CAP / 2)
        frame_max = WBUF_CAP / 2;
    w->frame_max = frame_max;
    return 0;
}

void wbuf_free(struct wbuf *w)
{
    free(w->buf);
    w->buf = NULL;
    w->len = 0;
}

int wbuf_flush(struct wbuf *w)
{
    size_t off = 0;
    while (off < w->len) {
        ssize_t n = send(w->fd, w->buf + off, w->len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (atomic_load_explicit(w->stop, memory_order_relaxed)) {
                w->broken = true;
                w->len = 0;
                return -ECANCELED;
            }
            struct pollfd p = {.fd = w->fd, .events = POLLOUT};
            (void)poll(&p, 1, 100);
            continue;
        }
        int rc = n < 0 ? -errno : -EPIPE;
        w->broken = true;
        w->len = 0;
        return rc;
    }
    w->len = 0;
    return 0;
}

/* Make room for n bytes, flushing if needed. n never exceeds WBUF_CAP. */
static int reserve(struct wbuf *w, size_t n)
{
    if (w->len + n <= WBUF_CAP)
        return 0;
    return wbuf_flush(w);
}

static uint8_t *put8(uint8_t *p, uint8_t v)
{
    *p = v;
    return p + 1;
}

static uint8_t *put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static uint8_t *put32(uint8_t *p, uint32_t v)
{
    p = put16(p, (uint16_t)(v >> 16));
    return put16(p, (uint16_t)v);
}

static uint8_t *put64(uint8_t *p, uint64_t v)
{
    p = put32(p, (uint32_t)(v >> 32));
    return put32(p, (uint32_t)v);
}

static uint8_t *put_shortstr(uint8_t *p, const char *s, size_t len)
{
    p = put8(p, (uint8_t)len);
    memcpy(p, s, len);
    return p + len;
}

/* Write a frame header at p for a payload of size bytes; returns the payload start. */
static uint8_t *frame_open(uint8_t *p, uint8_t type, uint16_t ch, uint32_t size)
{
    p = put8(p, type);
    p = put16(p, ch);
    return put32(p, size);
}

int wire_publish(struct wbuf *w, uint16_t ch, const char *exchange, const char *rkey,
                 uint8_t delivery_mode, const char *expiration, const void *body, size_t len)
{
    size_t exlen = strlen(exchange), rklen = strlen(rkey);
    size_t xplen = expiration ? strlen(expiration) : 0;
    if (xplen > 255)
        xplen = 255;
    if (exlen > 255)
        exlen = 255;
    if (rklen > 255)
        rklen = 255;
    uint32_t method_size = 2 + 2 + 2 + 1 + (uint32_t)exlen + 1 + (uint32_t)rklen + 1;
    uint32_t header_size = 2 + 2 + 8 + 2 + 1 + (expiration ? 1 + (uint32_t)xplen : 0);
    int rc = reserve(w, 2 * FRAME_OVERHEAD + method_size + header_size);
    if (rc)
        return rc;

    uint8_t *p = w->buf + w->len;
    p = frame_open(p, FRAME_METHOD, ch, method_size);
    p = put16(p, CLASS_BASIC);
    p = put16(p, BASIC_PUBLISH);
    p = put16(p, 0); /* reserved-1 (ticket) */
    p = put_shortstr(p, exchange, exlen);
    p = put_shortstr(p, rkey, rklen);
    p = put8(p, 0); /* mandatory = immediate = false */
    p = put8(p, FRAME_END);

    p = frame_open(p, FRAME_HEADER, ch, header_size);
    p = put16(p, CLASS_BASIC);
    p = put16(p, 0); /* weight */
    p = put64(p, len);
    p = put16(p, PROP_DELIVERY_MODE | (expiration ? PROP_EXPIRATION : 0));
    p = put8(p, delivery_mode);
    if (expiration)
        p = put_shortstr(p, expiration, xplen);
    p = put8(p, FRAME_END);
    w->len = (size_t)(p - w->buf);

    const uint8_t *src = body;
    size_t max_chunk = w->frame_max - FRAME_OVERHEAD;
    while (len > 0) {
        size_t chunk = len < max_chunk ? len : max_chunk;
        rc = reserve(w, FRAME_OVERHEAD + chunk);
        if (rc)
            return rc;
        p = frame_open(w->buf + w->len, FRAME_BODY, ch, (uint32_t)chunk);
        memcpy(p, src, chunk);
        p = put8(p + chunk, FRAME_END);
        w->len = (size_t)(p - w->buf);
        src += chunk;
        len -= chunk;
    }
    return 0;
}

int wire_ack(struct wbuf *w, uint16_t ch, uint64_t tag, bool multiple)
{
    const uint32_t size = 2 + 2 + 8 + 1;
    int rc = reserve(w, FRAME_OVERHEAD + size);
    if (rc)
        return rc;
    uint8_t *p = frame_open(w->buf + w->len, FRAME_METHOD, ch, size);
    p = put16(p, CLASS_BASIC);
    p = put16(p, BASIC_ACK);
    p = put64(p, tag);
    p = put8(p, multiple ? 1 : 0);
    p = put8(p, FRAME_END);
    w->len = (size_t)(p - w->buf);
    return 0;
}

int wire_queue_bind(struct wbuf *w, uint16_t ch, const char *queue, const char *exchange,
                    const char *key, bool nowait)
{
    size_t qlen = strlen(queue), exlen = strlen(exchange), klen = strlen(key);
    if (qlen > 255)
        qlen = 255;
    if (exlen > 255)
        exlen = 255;
    if (klen > 255)
        klen = 255;
    /* class, method, reserved-1, three shortstrs, no-wait bit, empty table (u32 length 0) */
    uint32_t size = 2 + 2 + 2 + 1 + (uint32_t)qlen + 1 + (uint32_t)exlen + 1 + (uint32_t)klen +
                    1 + 4;
    int rc = reserve(w, FRAME_OVERHEAD + size);
    if (rc)
        return rc;
    uint8_t *p = frame_open(w->buf + w->len, FRAME_METHOD, ch, size);
    p = put16(p, CLASS_QUEUE);
    p = put16(p, QUEUE_BIND);
    p = put16(p, 0); /* reserved-1 (ticket) */
    p = put_shortstr(p, queue, qlen);
    p = put_shortstr(p, exchange, exlen);
    p = put_shortstr(p, key, klen);
    p = put8(p, nowait ? 1 : 0);
    p = put32(p, 0);
    p = put8(p, FRAME_END);
    w->len = (size_t)(p - w->buf);
    return 0;
}
