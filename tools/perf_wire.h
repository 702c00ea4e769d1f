/* perf_wire.h — the hot-path writer of warren-perf: encodes basic.publish (method, content
 * header, body frames), basic.ack and pipelined queue.bind straight into a per-connection buffer and writes it to the
 * socket of a rabbitmq-c connection in batches. rabbitmq-c still owns the socket, the handshake,
 * every RPC and all reading; this only adds bytes to the outgoing stream.
 * Invariant: buf holds whole frames only, so the stream stays valid between flushes; `broken`
 * is set once a flush gives up part-way, after which nothing more may be sent on the socket. */
#ifndef WARREN_TOOLS_PERF_WIRE_H
#define WARREN_TOOLS_PERF_WIRE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Big enough for one body frame at the largest frame_max warren-perf asks for (131072). */
#define WBUF_CAP (256u * 1024u)

typedef struct wbuf {
    int fd;                   /* borrowed: the rabbitmq-c connection's socket (non-blocking) */
    const atomic_bool *stop;  /* borrowed: a blocked flush gives up once this is set */
    uint32_t frame_max;       /* negotiated; body frames carry at most frame_max - 8 bytes */
    size_t len;               /* bytes waiting in buf */
    bool broken;              /* a flush gave up mid-stream: the connection is unusable */
    uint8_t *buf;             /* owned: WBUF_CAP bytes */
} wbuf_t;

/* Set up w for socket fd. Returns 0 or -ENOMEM. */
int wbuf_init(struct wbuf *w, int fd, uint32_t frame_max, const atomic_bool *stop);

/* Release the buffer; accepts a zeroed or already-freed wbuf. */
void wbuf_free(struct wbuf *w);

/* Write every buffered byte, waiting for the socket as needed. Returns 0, -ECANCELED when *stop
 * was set while the socket could not take more (w->broken is then set), or -errno. */
int wbuf_flush(struct wbuf *w);

/* Append one basic.publish on channel ch with a content header carrying only delivery-mode
 * (1 transient, 2 persistent), then the body split into frames. Flushes first when the buffer
 * cannot take a frame. exchange and rkey are at most 255 bytes; expiration is the per-message
 * TTL property (milliseconds as text) or NULL. Returns 0 or a wbuf_flush error. */
int wire_publish(struct wbuf *w, uint16_t ch, const char *exchange, const char *rkey,
                 uint8_t delivery_mode, const char *expiration, const void *body, size_t len);

/* Append one basic.ack on channel ch. Returns 0 or a wbuf_flush error. */
int wire_ack(struct wbuf *w, uint16_t ch, uint64_t tag, bool multiple);

/* Append one queue.bind on channel ch with empty arguments; queue, exchange and key are at most
 * 255 bytes. With nowait the broker answers nothing unless it closes the channel. Returns 0 or
 * a wbuf_flush error. */
int wire_queue_bind(struct wbuf *w, uint16_t ch, const char *queue, const char *exchange,
                    const char *key, bool nowait);

#endif
