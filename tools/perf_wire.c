/* perf_wire.c — batched, non-blocking socket writes for warren-perf's publishers, ackers and
 * binders (see perf_wire.h). Owns the write buffer, never the socket. Every frame is encoded by
 * protocol/ (the broker's own codec) straight into the buffer; this file only reserves room,
 * frames the payloads and splits bodies. Invariant: buf[0..len) holds whole frames only. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "perf_wire.h"
#include "protocol/codec.h"
#include "protocol/frame.h"
#include "protocol/table.h"

int wbuf_init(struct wbuf *w, int fd, void *ssl, uint32_t frame_max, const atomic_bool *stop)
{
    memset(w, 0, sizeof *w);
    w->ssl = ssl;
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
        short wait = POLLOUT;
        ssize_t n;
        if (w->ssl) {
            /* A retry passes the same bytes again, as OpenSSL asks. */
            size_t done = 0;
            int ok = SSL_write_ex(w->ssl, w->buf + off, w->len - off, &done);
            int e = ok == 1 ? SSL_ERROR_NONE : SSL_get_error(w->ssl, ok);
            n = ok == 1 ? (ssize_t)done : -1;
            errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EPIPE;
            if (e == SSL_ERROR_WANT_READ)
                wait = POLLIN;
            ERR_clear_error();
        } else {
            n = send(w->fd, w->buf + off, w->len - off, MSG_NOSIGNAL);
        }
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
            struct pollfd p = {.fd = w->fd, .events = wait};
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

/* Write the header and end octet of a frame with a size-byte payload at dst; returns where
 * the payload goes. */
static uint8_t *frame_write(uint8_t *dst, uint8_t type, uint16_t ch, size_t size)
{
    amqp_frame_header_write(dst, type, ch, (uint32_t)size);
    dst[AMQP_FRAME_HEADER_SIZE + size] = AMQP_FRAME_END;
    return dst + AMQP_FRAME_HEADER_SIZE;
}

/* Append a frame in room reserved before; returns where its payload goes. */
static uint8_t *frame_put(struct wbuf *w, uint8_t type, uint16_t ch, size_t size)
{
    uint8_t *p = frame_write(w->buf + w->len, type, ch, size);
    w->len += AMQP_FRAME_OVERHEAD + size;
    return p;
}

/* A codec size error as -errno: a shortstr over 255 bytes, or (never, for the fixed methods
 * built here) an unknown method or property flag. */
static int codec_errno(long rc)
{
    return rc == AMQP_E_TOO_LONG ? -ENAMETOOLONG : -EINVAL;
}

/* Append one method frame. */
static int put_method(struct wbuf *w, uint16_t ch, const struct amqp_method *m)
{
    long size = amqp_method_size(m);
    if (size < 0)
        return codec_errno(size);
    int rc = reserve(w, AMQP_FRAME_OVERHEAD + (size_t)size);
    if (rc)
        return rc;
    amqp_method_encode(m, frame_put(w, AMQP_FRAME_METHOD, ch, (size_t)size));
    return 0;
}

int wire_pub_init(struct wire_pub *p, uint16_t ch, const char *exchange, const char *rkey,
                  uint8_t delivery_mode, const char *expiration, const char *hkey,
                  const char *hval, const char *idkey, size_t body_len)
{
    const struct amqp_method m = {
        .id = AMQP_BASIC_PUBLISH,
        .u.basic_publish = {.exchange = amqp_cstr(exchange), .routing_key = amqp_cstr(rkey)},
    };
    struct amqp_basic_props props = {.flags = AMQP_P_DELIVERY_MODE,
                                     .delivery_mode = delivery_mode};
    if (expiration) {
        props.flags |= AMQP_P_EXPIRATION;
        props.expiration = amqp_cstr(expiration);
    }
    struct amqp_wbuf hw = {0};
    static const char zeros[WIRE_ID_DIGITS + 1] = "0000000000000000";
    if (hkey || idkey) {
        if (hkey) {
            amqp_tw_key(&hw, hkey);
            amqp_tw_str(&hw, hval);
        }
        if (idkey) {
            amqp_tw_key(&hw, idkey);
            amqp_tw_str(&hw, zeros);
        }
        if (hw.failed)
            return -ENOMEM;
        props.flags |= AMQP_P_HEADERS;
        props.headers = (amqp_bytes_t){hw.data, (uint32_t)hw.len};
    }
    long msize = amqp_method_size(&m), hsize = amqp_content_header_size(&props);
    if (msize < 0 || hsize < 0) {
        amqp_wbuf_free(&hw);
        return codec_errno(msize < 0 ? msize : hsize);
    }
    size_t len = 2 * AMQP_FRAME_OVERHEAD + (size_t)msize + (size_t)hsize;
    uint8_t *head = malloc(len);
    if (!head) {
        amqp_wbuf_free(&hw);
        return -ENOMEM;
    }
    amqp_method_encode(&m, frame_write(head, AMQP_FRAME_METHOD, ch, (size_t)msize));
    uint8_t *hdr = head + AMQP_FRAME_OVERHEAD + msize;
    amqp_content_header_encode(&props, body_len,
                               frame_write(hdr, AMQP_FRAME_HEADER, ch, (size_t)hsize));
    amqp_wbuf_free(&hw);
    size_t id_off = 0;
    if (idkey) { /* the id's digits: the first run of them in the content header */
        uint8_t *at = memmem(hdr, len - (size_t)(hdr - head), zeros, WIRE_ID_DIGITS);
        id_off = at ? (size_t)(at - head) : 0;
    }
    *p = (struct wire_pub){.head = head, .head_len = len, .body_len = body_len, .channel = ch,
                           .id_off = id_off};
    return 0;
}

void wire_pub_free(struct wire_pub *p)
{
    free(p->head);
    p->head = NULL;
}

int wire_publish(struct wbuf *w, const struct wire_pub *p, const void *body, uint64_t id)
{
    /* Method and content header go in together, so a failed flush leaves no half message. */
    int rc = reserve(w, p->head_len);
    if (rc)
        return rc;
    memcpy(w->buf + w->len, p->head, p->head_len);
    if (p->id_off) /* fixed width: the frame sizes stay those of the template */
        for (uint8_t *d = w->buf + w->len + p->id_off + WIRE_ID_DIGITS; d > w->buf + w->len + p->id_off; id /= 10)
            *--d = (uint8_t)('0' + id % 10);
    w->len += p->head_len;

    const uint8_t *src = body;
    size_t len = p->body_len, max_chunk = w->frame_max - AMQP_FRAME_OVERHEAD;
    while (len > 0) {
        size_t chunk = len < max_chunk ? len : max_chunk;
        rc = reserve(w, AMQP_FRAME_OVERHEAD + chunk);
        if (rc)
            return rc;
        memcpy(frame_put(w, AMQP_FRAME_BODY, p->channel, chunk), src, chunk);
        src += chunk;
        len -= chunk;
    }
    return 0;
}

int wire_ack(struct wbuf *w, uint16_t ch, uint64_t tag, bool multiple)
{
    const struct amqp_method m = {.id = AMQP_BASIC_ACK,
                                  .u.basic_ack = {.delivery_tag = tag, .multiple = multiple}};
    return put_method(w, ch, &m);
}

int wire_queue_bind(struct wbuf *w, uint16_t ch, const char *queue, const char *exchange,
                    const char *key, bool nowait)
{
    const struct amqp_method m = {
        .id = AMQP_QUEUE_BIND,
        .u.queue_bind = {.queue = amqp_cstr(queue), .exchange = amqp_cstr(exchange),
                         .routing_key = amqp_cstr(key), .no_wait = nowait},
    };
    return put_method(w, ch, &m);
}

const char *wire_method_name(uint32_t id)
{
    return amqp_method_name(id);
}
