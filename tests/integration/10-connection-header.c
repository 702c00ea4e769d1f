/* 10-connection-header — the 8-byte protocol header.
 * RabbitMQ 3.10.8: any header it does not speak gets exactly "AMQP\0\0\x09\x01" back and the
 * socket closed at once (no delay): "AMQP\0\0\x09\x00", "AMQP\0\0\x09\x02", "AMQP\0\0\x0a\x00",
 * AMQP 1.0 ("AMQP\0\x01\0\0", "AMQP\x03\x01\0\0" without the plugin), HTTP, a frame.
 * Not tested because Warren does not speak them: RabbitMQ also accepts the legacy 0-9
 * ("AMQP\x01\x01\x00\x09") and 0-8 ("AMQP\x01\x01\x08\x00", "AMQP\x01\x01\x09\x01") headers and
 * answers with a connection.start in that dialect.
 * A client that connects and sends nothing (or an incomplete header) is dropped after the
 * 10 s handshake timeout, with nothing sent. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const uint8_t our_header[8] = {'A', 'M', 'Q', 'P', 0, 0, 9, 1};

static void check_refused(const harness_broker_t *b, const char *what, const void *hdr, size_t n)
{
    int fd = raw_connect(b);
    CHECK(raw_send(fd, hdr, n) == 0);
    uint8_t got[8];
    ssize_t r = raw_recv(fd, got, 8, 5000);
    CHECKF(r == 8, "%s: got %zd bytes back, want 8", what, r);
    CHECKF(memcmp(got, our_header, 8) == 0,
           "%s: got %02x %02x %02x %02x %02x %02x %02x %02x, want AMQP 0 0 9 1", what, got[0],
           got[1], got[2], got[3], got[4], got[5], got[6], got[7]);
    size_t extra = 0;
    int rc = raw_wait_closed(fd, 3000, &extra);
    CHECKF(rc == 0, "%s: socket not closed within 3 s after the header", what);
    CHECKF(extra == 0, "%s: %zu bytes after the header", what, extra);
    close(fd);
    harness_log("%s: AMQP 0 0 9 1 and close", what);
}

/* A good header sent one byte at a time still gets connection.start. */
static void check_split_header(const harness_broker_t *b)
{
    int fd = raw_connect(b);
    for (int i = 0; i < 8; i++) {
        CHECK(raw_send(fd, our_header + i, 1) == 0);
        usleep(20000);
    }
    raw_frame_t f;
    int rc = raw_read_method(fd, &f, 5000);
    CHECKF(rc == 0, "no connection.start after a byte-by-byte header (%s)", strerror(-rc));
    CHECK_EQ(f.class_id, 10);
    CHECK_EQ(f.method_id, 10);
    raw_frame_free(&f);
    close(fd);
}

/* Connect and stay silent, or stop mid-header: dropped by the 10 s handshake timeout. Both
 * clients wait side by side. */
static void check_handshake_timeout(const harness_broker_t *b)
{
    int fd[2] = {raw_connect(b), raw_connect(b)};
    CHECK(raw_send(fd[1], "AMQP", 4) == 0);
    int64_t t0 = harness_now_ms();
    for (int i = 0; i < 2; i++) {
        size_t extra = 0;
        int rc = raw_wait_closed(fd[i], 15000, &extra);
        int64_t ms = harness_now_ms() - t0;
        harness_log("silent client %d: closed after %lld ms, %zu bytes", i, (long long)ms, extra);
        CHECKF(rc == 0, "silent client %d not dropped within 15 s", i);
        CHECKF(ms >= 9000, "silent client %d dropped after %lld ms, the handshake timeout is 10 s",
               i, (long long)ms);
        CHECK_EQ(extra, 0);
        close(fd[i]);
    }
}

int main(void)
{
    harness_watchdog(55);
    harness_broker_t b;
    harness_broker_start(&b);

    check_refused(&b, "AMQP 0 0 9 0", "AMQP\x00\x00\x09\x00", 8);
    check_refused(&b, "AMQP 0 0 9 2", "AMQP\x00\x00\x09\x02", 8);
    check_refused(&b, "AMQP 0 0 10 0", "AMQP\x00\x00\x0a\x00", 8);
    check_refused(&b, "AMQP 1.0", "AMQP\x00\x01\x00\x00", 8);
    check_refused(&b, "AMQP 1.0 SASL", "AMQP\x03\x01\x00\x00", 8);
    check_refused(&b, "HTTP request", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", 35);
    check_refused(&b, "HTTP/1.1", "HTTP/1.1", 8);
    check_refused(&b, "a heartbeat frame", "\x08\x00\x00\x00\x00\x00\x00\xce", 8);
    harness_check_alive(&b);

    check_split_header(&b);
    check_handshake_timeout(&b);
    return harness_finish(&b);
}
