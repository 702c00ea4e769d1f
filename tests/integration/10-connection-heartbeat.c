/* 10-connection-heartbeat — negotiation, server heartbeats, timeout of a silent client.
 * Four clients run side by side for 6 s after their handshakes:
 *   A: raw, tune-ok heartbeat=1, then sends nothing: gets heartbeat frames (8 0 0 0 0 0 0 CE) and
 *      is disconnected once two intervals pass without a byte from it;
 *   B: raw, heartbeat=1, sends a heartbeat every 400 ms: gets heartbeats and stays connected;
 *   C: raw, heartbeat=0: gets no frame at all and stays connected;
 *   D: rabbitmq-c, heartbeat=0, publishes and gets a message every 100 ms throughout.
 * RabbitMQ 3.10.8: A's first heartbeat comes ~1 s after tune-ok; A is closed without a
 * connection.close frame (log: "missed heartbeats from client, timeout: 1s") about 2-3 s after
 * its last byte. RabbitMQ only times out a connection whose client asked for heartbeats in
 * tune-ok; the server's own tune proposes 60. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <poll.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

typedef struct client {
    const char *name;
    int fd;
    int64_t t_handshake; /* when our last byte went out */
    int64_t t_first_hb;  /* first server heartbeat, 0 if none */
    int64_t t_closed;    /* when the server closed it, 0 if still open */
    int64_t t_last_sent;
    int heartbeats;
    int other_frames;
    bool sends_heartbeats;
} client_t;

static void client_open(client_t *c, const harness_broker_t *b, const char *name, uint16_t hb,
                        bool sends)
{
    memset(c, 0, sizeof *c);
    c->name = name;
    c->sends_heartbeats = sends;
    c->fd = raw_connect(b);
    raw_tune_t tune;
    raw_handshake(c->fd, 131072, hb, &tune);
    CHECK_EQ(tune.heartbeat, 60); /* the server's proposal */
    c->t_handshake = c->t_last_sent = harness_now_ms();
}

static void client_poll(client_t *c, int64_t now)
{
    if (c->t_closed)
        return;
    if (c->sends_heartbeats && now - c->t_last_sent >= 400) {
        CHECK(raw_send(c->fd, "\x08\x00\x00\x00\x00\x00\x00\xce", 8) == 0);
        c->t_last_sent = now;
    }
    for (;;) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        if (poll(&pfd, 1, 0) <= 0)
            return;
        raw_frame_t f;
        int rc = raw_read_frame(c->fd, &f, 2000);
        if (rc == -EPIPE) {
            c->t_closed = harness_now_ms();
            harness_log("%s: closed by the server %lld ms after its last byte", c->name,
                        (long long)(c->t_closed - c->t_last_sent));
            return;
        }
        CHECKF(rc == 0, "%s: reading: %s", c->name, strerror(-rc));
        if (f.type == RAW_FRAME_HEARTBEAT) {
            CHECKF(f.channel == 0 && f.size == 0, "%s: heartbeat on channel %u size %u", c->name,
                   f.channel, f.size);
            if (!c->heartbeats++) {
                c->t_first_hb = harness_now_ms();
                harness_log("%s: first heartbeat %lld ms after tune-ok", c->name,
                            (long long)(c->t_first_hb - c->t_handshake));
            }
        } else {
            harness_log("%s: frame type %u on %u (%u.%u)", c->name, f.type, f.channel,
                        f.class_id, f.method_id);
            c->other_frames++;
        }
        raw_frame_free(&f);
    }
}

static void ping(amqp_connection_state_t conn, amqp_bytes_t q, int i)
{
    char body[32];
    int n = snprintf(body, sizeof body, "ping %d", i);
    harness_publish_get(conn, 1, q, (amqp_bytes_t){.len = (size_t)n, .bytes = body});
}

int main(void)
{
    harness_watchdog(50);
    harness_broker_t b;
    harness_broker_start(&b);

    /* rabbitmq-c: asks 1, the server proposes 60, the lower one wins. */
    amqp_connection_state_t hb = harness_connect(&b, 0, AMQP_DEFAULT_FRAME_SIZE, 1);
    CHECK_EQ(amqp_get_heartbeat(hb), 1);
    harness_disconnect(hb);
    hb = harness_connect(&b, 0, AMQP_DEFAULT_FRAME_SIZE, 120);
    CHECK_EQ(amqp_get_heartbeat(hb), 60);
    harness_disconnect(hb);

    amqp_connection_state_t d = harness_open(&b);
    amqp_bytes_t q = harness_queue_declare_anon(d, 1);

    client_t a, bb, c;
    client_open(&a, &b, "A (heartbeat 1, silent)", 1, false);
    client_open(&bb, &b, "B (heartbeat 1, sending)", 1, true);
    client_open(&c, &b, "C (heartbeat 0, silent)", 0, false);

    int64_t start = harness_now_ms(), next_ping = start;
    int pings = 0;
    for (int64_t now = start; now - start < 6000; now = harness_now_ms()) {
        client_poll(&a, now);
        client_poll(&bb, now);
        client_poll(&c, now);
        if (now >= next_ping) {
            ping(d, q, pings++);
            next_ping = now + 100;
        }
        /* Until the next ping is due, wait for the server's frames (or EOF) on A, B and C. */
        struct pollfd p[3] = {{.fd = a.t_closed ? -1 : a.fd, .events = POLLIN},
                              {.fd = bb.t_closed ? -1 : bb.fd, .events = POLLIN},
                              {.fd = c.t_closed ? -1 : c.fd, .events = POLLIN}};
        int64_t wait = next_ping - harness_now_ms();
        if (wait > 0)
            poll(p, 3, (int)wait);
    }

    /* A: heartbeats arrived within ~2 s, and A was dropped 2-4 s after its last byte. */
    CHECKF(a.heartbeats >= 1, "A got no heartbeat frame");
    CHECKF(a.t_first_hb - a.t_handshake <= 2500, "A's first heartbeat after %lld ms",
           (long long)(a.t_first_hb - a.t_handshake));
    CHECKF(a.t_closed != 0, "A (silent, heartbeat 1) was not disconnected within 6 s");
    int64_t a_idle = a.t_closed - a.t_last_sent;
    CHECKF(a_idle >= 1500 && a_idle <= 4500, "A dropped after %lld ms of silence, want 2-4 s",
           (long long)a_idle);
    CHECK_EQ(a.other_frames, 0); /* no connection.close: the socket is just closed */

    /* B: kept alive by its own heartbeats, and got the server's. */
    CHECKF(bb.t_closed == 0, "B sent heartbeats and was still disconnected");
    CHECKF(bb.heartbeats >= 3, "B got %d heartbeats in 6 s at 1 s intervals", bb.heartbeats);
    CHECK_EQ(bb.other_frames, 0);

    /* C: heartbeats off both ways. */
    CHECKF(c.t_closed == 0, "C (heartbeat 0) was disconnected");
    CHECK_EQ(c.heartbeats, 0);
    CHECK_EQ(c.other_frames, 0);

    CHECKF(pings >= 30, "only %d publish/get round trips on D in 6 s", pings);
    harness_log("D: %d publish/get round trips while A timed out; B got %d heartbeats in 6 s", pings,
                bb.heartbeats);

    close(a.fd);
    close(bb.fd);
    close(c.fd);
    amqp_bytes_free(q);
    harness_disconnect(d);
    return harness_finish(&b);
}
