/* perf_wire.h — warren-perf's hot-path writer: basic.publish (method and content header encoded
 * once per route by protocol/, copied before each body), basic.ack and pipelined queue.bind,
 * framed by protocol/ into a per-connection buffer and sent in batches on a rabbitmq-c socket.
 * rabbitmq-c owns the socket, the handshake, every RPC and all reading. Plain C strings only:
 * protocol/'s type names clash with rabbitmq-c's. Invariant: buf holds whole frames only;
 * `broken` is set once a flush gives up part-way, and then nothing more may be sent. */
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
    void *ssl;                /* borrowed: its OpenSSL session over TLS (SSL *), else NULL */
    const atomic_bool *stop;  /* borrowed: a blocked flush gives up once this is set */
    uint32_t frame_max;       /* negotiated; body frames carry at most frame_max - 8 bytes */
    size_t len;               /* bytes waiting in buf */
    bool broken;              /* a flush gave up mid-stream: the connection is unusable */
    uint8_t *buf;             /* owned: WBUF_CAP bytes */
} wbuf_t;

/* Set up w for socket fd (written through ssl, an SSL *, when not NULL: the same session
 * rabbitmq-c reads from, on the same thread). Returns 0 or -ENOMEM. */
int wbuf_init(struct wbuf *w, int fd, void *ssl, uint32_t frame_max, const atomic_bool *stop);

/* Release the buffer; accepts a zeroed or already-freed wbuf. */
void wbuf_free(struct wbuf *w);

/* Write every buffered byte, waiting for the socket as needed. Returns 0, -ECANCELED when *stop
 * was set while the socket could not take more (w->broken is then set), or -errno. */
int wbuf_flush(struct wbuf *w);

/* The frames every basic.publish to one route starts with, encoded once by protocol/: the
 * method frame, then a content header carrying delivery-mode (1 transient, 2 persistent),
 * expiration if set, and the body size. Read-only once built, so threads may share one. */
typedef struct wire_pub {
    uint8_t *head;   /* owned: method frame + content header frame, head_len bytes */
    size_t head_len;
    size_t body_len; /* every body sent with this template is this long */
    uint16_t channel;
    size_t id_off;   /* WIRE_ID_DIGITS digits in head patched with each publish's id; 0: none */
} wire_pub_t;

#define WIRE_ID_DIGITS 16

/* Build p for publishes on channel ch to exchange with routing key rkey; expiration is the
 * per-message TTL property (milliseconds as text) or NULL; hkey/hval one string header (hkey
 * NULL: none); idkey (NULL: none) a header holding a WIRE_ID_DIGITS-digit id that wire_publish
 * fills in. Without either there is no headers property. Returns 0, -ENAMETOOLONG when
 * exchange, rkey or expiration is over 255 bytes, or -ENOMEM; p is untouched on failure. */
int wire_pub_init(struct wire_pub *p, uint16_t ch, const char *exchange, const char *rkey,
                  uint8_t delivery_mode, const char *expiration, const char *hkey,
                  const char *hval, const char *idkey, size_t body_len);

/* Release p's frames; accepts an already-freed template. */
void wire_pub_free(struct wire_pub *p);

/* Append one basic.publish: p's frames (with id as the header value when p has an id field),
 * then p->body_len bytes of body split into body frames. Flushes first when the buffer cannot
 * take a frame. Returns 0 or a wbuf_flush error. */
int wire_publish(struct wbuf *w, const struct wire_pub *p, const void *body, uint64_t id);

/* Append one basic.ack on channel ch. Returns 0 or a wbuf_flush error. */
int wire_ack(struct wbuf *w, uint16_t ch, uint64_t tag, bool multiple);

/* Append one queue.bind on channel ch with empty arguments. With nowait the broker answers
 * nothing unless it closes the channel. Returns 0, -ENAMETOOLONG when queue, exchange or key is
 * over 255 bytes, or a wbuf_flush error. */
int wire_queue_bind(struct wbuf *w, uint16_t ch, const char *queue, const char *exchange,
                    const char *key, bool nowait);

/* The "class.method" name of method id ((class << 16) | method), "unknown" if there is none.
 * protocol/ and rabbitmq-c both export amqp_method_name(); in this binary the static
 * protocol/ one wins at link time, so callers name methods through here, on purpose. */
const char *wire_method_name(uint32_t id);

#endif
