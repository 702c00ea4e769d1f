/* 10-connection-close-drain — the socket after a client's connection.close. A raw client
 * (hand-made handshake, frame_max 131072) sends connection.close; the server answers close-ok
 * and must then neither hang up at once nor act on anything that follows, until the client
 * closes its side or a timeout passes.
 * RabbitMQ 3.10.8 answers (asserted below):
 *  a) frames written behind connection.close in the same send() (five basic.publish with
 *     header and body, a channel.open on channel 2) are discarded: close-ok (channel 0, 4-octet
 *     payload) is the only frame that comes, channel 2 gets no open-ok, and none of the messages
 *     reaches the queue; a basic.publish written just before the close in that same send() is
 *     enqueued. The socket then stays open (nothing arrives for 500 ms, more writes are taken
 *     without EPIPE or a reset); when the client half-closes (shutdown SHUT_WR) the server
 *     closes at once (~2 ms; RabbitMQ sets SO_LINGER 0, so it is a reset, not a FIN; both
 *     count as closed here), having sent nothing more.
 *  b) after close-ok, 1.5 s of well-formed frames of every kind (publishes with content,
 *     queue.declare on a channel never opened, channel.open, heartbeat on channel 1, unknown
 *     frame type 7 on channel 0, unknown method 99.10 on channel 1; connection.close is the
 *     exception, see e) are read and dropped: nothing comes back, no reset; the client's
 *     shutdown then closes the socket at once. Bytes that are not AMQP frames at all (runs of 'A': a header
 *     announcing a 1.09 GB frame) are a fatal frame error even now: RabbitMQ logs
 *     "frame_error ... {frame_too_large,1094795585,131064}", sends nothing, waits 3 s and then
 *     closes, whether or not the client closed meanwhile. Asserted: nothing sent, the socket
 *     not reset while the client writes them for 1 s, closed within 10 s of the client's
 *     shutdown (a broker that just discards them until EOF passes too).
 *  c) a client that neither writes nor closes after close-ok is disconnected after
 *     min(heartbeat, 30) s counted from close-ok: tune-ok heartbeat 1 -> 1.0 s, 2 -> 2.0 s,
 *     5 -> 5.0 s, 0 -> 30.0 s (measured). Until then the heartbeat sender still runs: one
 *     heartbeat frame at heartbeat/2 s. Asserted with heartbeat 2: only heartbeat frames
 *     arrive, the socket is open for at least 1 s and closed within 10 s.
 *  d) other connections are unaffected throughout.
 *  e) a connection.close sent again after close-ok is answered with another close-ok
 *     (channel 0, 4 octets; a close written twice in one send() gets two), and the socket stays
 *     open; a connection.close-ok from the client then makes the server close at once (~1 ms,
 *     nothing sent). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The junk written after close-ok in case b: well-formed frames, each of which would mean
 * something (or be an error) on an open connection. */
static void junk_frame(wbuf_t *w, int i, const char *q)
{
    char body[32];
    switch (i % 6) {
    case 0:
        snprintf(body, sizeof body, "junk-%d", i);
        wb_publish(w, 1, "", q, body);
        break;
    case 1:
        wb_queue_declare(w, 9, q, 0); /* channel 9 was never opened */
        break;
    case 2:
        wb_channel_open(w, (uint16_t)(3 + i));
        break;
    case 3: {
        size_t m = wb_frame_begin(w, RAW_FRAME_HEARTBEAT, 1); /* heartbeat off channel 0 */
        wb_frame_end(w, m);
        break;
    }
    case 4: {
        size_t m = wb_frame_begin(w, 7, 0); /* no such frame type */
        wb_u32(w, 0);
        wb_frame_end(w, m);
        break;
    }
    default:
        wb_method(w, 1, 99, 10, NULL, 0); /* no such class */
        break;
    }
}

/* ---- socket checks --------------------------------------------------------------------------- */

/* Nothing may arrive on fd for ms: no byte, no EOF, no reset. */
static void expect_silence(int fd, int ms, const char *when)
{
    int64_t t0 = harness_now_ms();
    int64_t deadline = t0 + ms;
    for (;;) {
        int64_t left = deadline - harness_now_ms();
        if (left <= 0)
            return;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        CHECKF(pr >= 0, "poll: %s", strerror(errno));
        if (pr == 0)
            return;
        uint8_t buf[64];
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        long long at = (long long)(harness_now_ms() - t0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        CHECKF(n != 0, "%s: the server closed the socket (EOF after %lld ms); RabbitMQ keeps it "
                       "open until the client closes",
               when, at);
        CHECKF(n > 0, "%s: %s after %lld ms; RabbitMQ keeps the socket open", when,
               strerror(errno), at);
        char hex[3 * 16 + 1] = "";
        for (ssize_t i = 0; i < n && i < 16; i++)
            snprintf(hex + 3 * i, 4, " %02x", buf[i]);
        harness_fail(__FILE__, __LINE__, "nothing arrives",
                     "%s: the server sent %zd bytes after %lld ms:%s%s", when, n, at, hex,
                     n > 16 ? " ..." : "");
    }
}

/* A write that must be taken whole without EPIPE or ECONNRESET. */
static void send_ok(int fd, const void *p, size_t n, const char *what)
{
    int rc = raw_send(fd, p, n);
    CHECKF(rc == 0, "%s: send failed: %s (the server dropped the connection)", what,
           strerror(-rc));
}

/* The client half-closes; the server must then close too, within timeout_ms, sending nothing
 * more. Returns how long it took. */
static int64_t shutdown_and_wait(int fd, int timeout_ms, const char *what)
{
    CHECKF(shutdown(fd, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
    int64_t t0 = harness_now_ms();
    size_t extra = 0;
    int rc = raw_wait_closed(fd, timeout_ms, &extra);
    int64_t ms = harness_now_ms() - t0;
    CHECKF(rc == 0, "%s: socket still open %d ms after the client's shutdown", what, timeout_ms);
    CHECKF(extra == 0, "%s: the server sent %zu bytes after close-ok", what, extra);
    close(fd);
    return ms;
}

/* A raw connection (heartbeat as given) with channel 1 open, after connection.close and its
 * close-ok. pre (may be NULL) is written in the same send() before the close, post after it. */
static int closed_connection(const harness_broker_t *b, uint16_t heartbeat, const wbuf_t *pre,
                             const wbuf_t *post)
{
    int fd = raw_connect(b);
    raw_handshake(fd, 131072, heartbeat, NULL);
    raw_channel_open(fd, 1);
    wbuf_t w = {0};
    if (pre)
        wb_bytes(&w, pre->p, pre->len);
    wb_connection_close(&w, 200, "bye");
    if (post)
        wb_bytes(&w, post->p, post->len);
    send_ok(fd, w.p, w.len, "connection.close");
    wb_free(&w);
    raw_expect_close_ok(fd); /* the first frame after the client's connection.close */
    return fd;
}

/* ---- cases ----------------------------------------------------------------------------------- */

/* a) frames pipelined behind connection.close are dropped; the socket stays open until the
 * client closes. */
static void case_pipelined(const harness_broker_t *b, amqp_connection_state_t ctl, const char *q)
{
    wbuf_t pre = {0}, post = {0};
    wb_publish(&pre, 1, "", q, "before");
    for (int i = 1; i <= 5; i++) {
        char body[16];
        snprintf(body, sizeof body, "after-%d", i);
        wb_publish(&post, 1, "", q, body);
    }
    wb_channel_open(&post, 2);
    int fd = closed_connection(b, 0, &pre, &post);
    wb_free(&pre);
    wb_free(&post);
    harness_log("a) close-ok received; publishes and channel.open behind it written");

    expect_silence(fd, 500, "a) after close-ok");
    /* More writes are taken and ignored. */
    wbuf_t w = {0};
    wb_publish(&w, 1, "", q, "after-6");
    wb_channel_open(&w, 3);
    send_ok(fd, w.p, w.len, "a) publish after close-ok");
    wb_free(&w);
    expect_silence(fd, 300, "a) after a publish following close-ok");
    harness_log("a) socket still open 800 ms after close-ok, nothing sent");

    /* Only the message published before the close arrived. */
    harness_expect_count(ctl, 1, q, 1, "a) messages published around connection.close");
    harness_expect_drain(ctl, 1, q, "before", "a) messages published around connection.close");

    int64_t ms = shutdown_and_wait(fd, 5000, "a)");
    harness_log("a) the server closed %lld ms after the client's shutdown", (long long)ms);
}

/* b) after close-ok the client goes on writing: frames of every kind, then bytes that are not
 * frames. */
static void case_junk(const harness_broker_t *b, amqp_connection_state_t ctl, const char *q)
{
    int fd = closed_connection(b, 0, NULL, NULL);
    int sent = 0;
    int64_t t0 = harness_now_ms();
    for (int i = 0; harness_now_ms() - t0 < 1500; i++) {
        wbuf_t w = {0};
        junk_frame(&w, i, q);
        send_ok(fd, w.p, w.len, "b) junk frame after close-ok");
        wb_free(&w);
        sent++;
        expect_silence(fd, 50, "b) while the client writes frames after close-ok");
    }
    expect_silence(fd, 300, "b) after the junk frames");
    harness_log("b) %d frames written over 1.5 s after close-ok: nothing came back", sent);
    harness_expect_count(ctl, 1, q, 0, "b) publishes after close-ok");
    int64_t ms = shutdown_and_wait(fd, 5000, "b) frames");
    harness_log("b) the server closed %lld ms after the client's shutdown", (long long)ms);

    fd = closed_connection(b, 0, NULL, NULL);
    uint8_t garbage[1000];
    memset(garbage, 'A', sizeof garbage);
    t0 = harness_now_ms();
    for (int i = 0; harness_now_ms() - t0 < 1000; i++) {
        send_ok(fd, garbage, sizeof garbage, "b) garbage bytes after close-ok");
        expect_silence(fd, 50, "b) while the client writes garbage after close-ok");
    }
    harness_log("b) garbage written for 1 s after close-ok: nothing came back, no reset");
    ms = shutdown_and_wait(fd, 10000, "b) garbage");
    harness_log("b) the server closed %lld ms after the client's shutdown", (long long)ms);
}

/* c) a client that neither writes nor closes: the server closes after the heartbeat interval
 * (RabbitMQ: min(heartbeat, 30 s)); meanwhile only heartbeats may come. */
static void case_timeout(const harness_broker_t *b)
{
    int fd = closed_connection(b, 2, NULL, NULL);
    int64_t t0 = harness_now_ms();
    int heartbeats = 0;
    for (;;) {
        int64_t left = t0 + 10000 - harness_now_ms();
        CHECKF(left > 0, "c) socket still open 10 s after close-ok (heartbeat 2; RabbitMQ closes "
                         "it after 2 s)");
        raw_frame_t f;
        int rc = raw_read_frame(fd, &f, (int)left);
        if (rc == -EPIPE)
            break;
        CHECKF(rc == 0, "c) reading after close-ok: %s", strerror(-rc));
        CHECKF(f.type == RAW_FRAME_HEARTBEAT && f.channel == 0 && f.size == 0,
               "c) after close-ok the server sent frame type %u channel %u size %u (%u.%u); "
               "only heartbeats may come",
               f.type, f.channel, f.size, f.class_id, f.method_id);
        raw_frame_free(&f);
        heartbeats++;
    }
    int64_t ms = harness_now_ms() - t0;
    harness_log("c) idle client, heartbeat 2: the server closed %lld ms after close-ok (%d "
                "heartbeats before)",
                (long long)ms, heartbeats);
    CHECKF(ms >= 1000, "c) the server closed %lld ms after close-ok; RabbitMQ waits for the "
                       "client (here up to the 2 s heartbeat)",
           (long long)ms);
    close(fd);
}

/* e) a repeated connection.close is answered again; the client's close-ok ends it. */
static void case_repeat_close(const harness_broker_t *b)
{
    int fd = closed_connection(b, 0, NULL, NULL);
    wbuf_t w = {0};
    wb_connection_close(&w, 200, "bye");
    send_ok(fd, w.p, w.len, "e) second connection.close");
    wb_free(&w);
    raw_expect_close_ok(fd);
    expect_silence(fd, 300, "e) after the second close-ok");
    harness_log("e) second connection.close answered with close-ok, socket still open");
    wb_method(&w, 0, 10, 51, NULL, 0);
    send_ok(fd, w.p, w.len, "e) connection.close-ok from the client");
    wb_free(&w);
    int64_t t0 = harness_now_ms();
    size_t extra = 0;
    int rc = raw_wait_closed(fd, 5000, &extra);
    int64_t ms = harness_now_ms() - t0;
    CHECKF(rc == 0, "e) socket still open 5 s after the client's connection.close-ok (RabbitMQ "
                    "closes it at once)");
    CHECKF(extra == 0, "e) the server sent %zu bytes after the client's close-ok", extra);
    harness_log("e) the server closed %lld ms after the client's close-ok", (long long)ms);
    close(fd);
}

int main(void)
{
    harness_broker_t b;
    /* A rabbitmq-c connection that watches the queue and must keep working throughout. */
    amqp_connection_state_t ctl = harness_begin(&b, 50, "it-cd");
    const char *q = harness_name("q");
    harness_queue_declare(ctl, 1, q, 0, amqp_empty_table);

    case_pipelined(&b, ctl, q);
    case_junk(&b, ctl, q);
    case_timeout(&b);
    case_repeat_close(&b);

    /* d) the broker and other connections are fine. */
    harness_expect_count(ctl, 1, q, 0, "d) queue after all cases");
    harness_queue_delete(ctl, 1, q);
    CHECK_REPLY(amqp_channel_close(ctl, 1, AMQP_REPLY_SUCCESS));
    harness_disconnect(ctl);
    return harness_finish(&b);
}
