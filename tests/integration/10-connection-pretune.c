/* 10-connection-pretune — the frame size limit before connection.tune-ok. Until the client has
 * tuned the connection, frame_max is the spec's frame-min-size, 4096; a raw client sends a
 * connection.start-ok (padded with a big "x-pad" longstr in client-properties) whose frame
 * payload is just under, at and over that limit, and a bare frame header over it while the
 * server waits for tune-ok; after tune-ok with frame_max 131072 bigger frames are fine.
 * RabbitMQ 3.10.8 answers (asserted below):
 *  - start-ok payloads of 4088 (the spec's 4096 - 8), 4095 and 4096 octets are accepted:
 *    connection.tune 2047/131072/60 follows and the login completes. RabbitMQ lets payloads
 *    reach frame_max itself (FRAME_SIZE_FUDGE: 8 octets for clients that forget the frame
 *    overhead), so 4096 is the last size that passes.
 *  - 4097, 4100, 4104 (the fudge does not go further), 4105 and 100,000 octets are refused on
 *    the frame header alone: no connection.tune, no connection.close, not one octet is sent;
 *    the socket is closed 3.0 s later (SILENT_CLOSE_DELAY, as for every handshake error; a
 *    reset, since RabbitMQ sets SO_LINGER 0). Its log says
 *    {handshake_error,starting,0,{amqp_error,frame_error,
 *     "type 1, all octets = <<>>: {frame_too_large,4097,4088}",none}}.
 *    The same when only the 7-octet header announcing 4097 octets is sent, and when it comes
 *    after connection.tune, before tune-ok ({handshake_error,tuning,...}).
 *  - after tune-ok with frame_max 131072, a queue.declare frame of over 100,000 octets (a big
 *    arguments table) is accepted: queue.declare-ok names the queue.
 * Checked: refused sockets get nothing and close between 2 s and 8 s after the frame. */
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

/* A connection.start-ok (PLAIN guest/guest, locale en_US) whose frame payload is exactly
 * payload octets: client-properties hold product plus an "x-pad" longstr of the right size. */
static void start_ok_sized(wbuf_t *frame, size_t payload)
{
    /* payload = class+method 4 + table length 4 + table + "PLAIN" 6 + response 16 + "en_US" 6;
     * table = product entry (1+7 + 1 + 4+15 = 28) + pad entry (1+5 + 1 + 4+n = 11+n). */
    const size_t fixed = 4 + 4 + 6 + 16 + 6 + 28 + 11;
    CHECK(payload >= fixed);
    size_t n = payload - fixed;
    wbuf_t props = {0}, args = {0};
    wb_shortstr(&props, "product");
    wb_u8(&props, 'S');
    wb_longstr(&props, "warren-raw-test", 15);
    char *pad = malloc(n ? n : 1);
    CHECK(pad != NULL);
    memset(pad, 'p', n);
    wb_shortstr(&props, "x-pad");
    wb_u8(&props, 'S');
    wb_longstr(&props, pad, n);
    free(pad);
    wb_longstr(&args, props.p, props.len);
    wb_shortstr(&args, "PLAIN");
    wb_longstr(&args, "\0guest\0guest", 12);
    wb_shortstr(&args, "en_US");
    wb_method(frame, 0, 10, 11, args.p, args.len);
    wb_free(&props);
    wb_free(&args);
    CHECK_EQ(frame->len, payload + 8);
}

static void send_start_ok_sized(int fd, size_t payload)
{
    wbuf_t w = {0};
    start_ok_sized(&w, payload);
    CHECK(raw_send(fd, w.p, w.len) == 0);
    wb_free(&w);
}

/* A start-ok of this size passes: tune, tune-ok, open, then a clean close. */
static void check_accepted(const harness_broker_t *b, size_t payload)
{
    int fd = raw_connect(b);
    CHECK(raw_start(fd) == 0);
    send_start_ok_sized(fd, payload);
    raw_tune_t tune;
    int rc = raw_read_tune(fd, &tune, 5000);
    CHECKF(rc == 0, "start-ok with a %zu-octet payload: no connection.tune (%s); RabbitMQ "
                    "accepts payloads up to 4096 octets before tune-ok",
           payload, rc == -EPIPE ? "the socket was closed" : strerror(-rc));
    CHECK_EQ(tune.channel_max, 2047);
    CHECK_EQ(tune.frame_max, 131072);
    CHECK_EQ(tune.heartbeat, 60);
    CHECK(raw_send_tune_ok(fd, tune.channel_max, 131072, 0) == 0);
    CHECK(raw_open_vhost(fd, "/") == 0);
    raw_channel_open(fd, 1);
    harness_log("start-ok payload %zu octets: accepted, tune %u/%u/%u, open-ok", payload,
                tune.channel_max, tune.frame_max, tune.heartbeat);

    wbuf_t w = {0};
    wb_connection_close(&w, 200, "bye");
    raw_send_wbuf(fd, &w);
    raw_expect_close_ok(fd);
    close(fd);
}

/* ---- refused frames: watched all at once, since RabbitMQ waits 3 s on each ------------------- */

enum { MAX_REFUSED = 8 };

typedef struct refused {
    const char *what;
    int fd;
    int64_t sent_at;     /* when the oversized frame (header) had been written */
    int64_t closed_after; /* ms from sent_at to EOF/reset; -1 while open */
    uint8_t got[256];    /* what the server sent, if anything (first octets) */
    size_t got_len;      /* total octets the server sent */
} refused_t;

/* Describe what the server sent: the first frame's method (a connection.close's code and
 * text) when it starts with a method frame, else the first octets. */
static const char *describe_sent(const refused_t *r, char *buf, size_t cap)
{
    size_t n = r->got_len < sizeof r->got ? r->got_len : sizeof r->got;
    if (n >= 7 + 4 && r->got[0] == RAW_FRAME_METHOD) {
        rbuf_t rb = {.p = r->got, .len = n, .off = 7};
        unsigned class_id = rb_u16(&rb), method_id = rb_u16(&rb);
        if (class_id == 10 && method_id == 50) {
            unsigned code = rb_u16(&rb);
            char text[256];
            rb_shortstr(&rb, text, sizeof text);
            snprintf(buf, cap, "%zu octets, connection.close %u \"%s\"", r->got_len, code, text);
        } else {
            snprintf(buf, cap, "%zu octets, method %u.%u%s", r->got_len, class_id, method_id,
                     class_id == 10 && method_id == 30 ? " (connection.tune)" : "");
        }
        return buf;
    }
    size_t len = (size_t)snprintf(buf, cap, "%zu octets:", r->got_len);
    for (size_t i = 0; i < n && i < 16 && len + 4 < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, " %02x", r->got[i]);
    return buf;
}

/* Read from every refused socket until each is closed or 8 s have passed since its frame
 * (then it stays open: closed_after -1, fd kept for the caller to close). */
static void watch_refused(refused_t *rs, int n)
{
    for (;;) {
        struct pollfd p[MAX_REFUSED];
        int idx[MAX_REFUSED], np = 0;
        int64_t now = harness_now_ms(), wait = -1;
        for (int i = 0; i < n; i++) {
            if (rs[i].closed_after >= 0)
                continue;
            int64_t left = rs[i].sent_at + 8000 - now;
            if (left <= 0)
                continue;
            if (wait < 0 || left < wait)
                wait = left;
            p[np] = (struct pollfd){.fd = rs[i].fd, .events = POLLIN};
            idx[np++] = i;
        }
        if (np == 0)
            return;
        int pr = poll(p, (nfds_t)np, (int)wait);
        if (pr < 0 && errno == EINTR)
            continue;
        CHECKF(pr >= 0, "poll: %s", strerror(errno));
        for (int k = 0; k < np; k++) {
            if (!p[k].revents)
                continue;
            refused_t *r = &rs[idx[k]];
            uint8_t buf[4096];
            ssize_t got = recv(r->fd, buf, sizeof buf, MSG_DONTWAIT);
            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got > 0) {
                size_t have = r->got_len < sizeof r->got ? r->got_len : sizeof r->got;
                size_t c = sizeof r->got - have;
                if ((size_t)got < c)
                    c = (size_t)got;
                memcpy(r->got + have, buf, c);
                r->got_len += (size_t)got;
                continue;
            }
            CHECKF(got == 0 || errno == ECONNRESET, "%s: recv: %s", r->what, strerror(errno));
            r->closed_after = harness_now_ms() - r->sent_at;
            close(r->fd);
            r->fd = -1;
        }
    }
}

/* Socket i: protocol header, connection.start, then a start-ok of payload octets. */
static void refuse_start_ok(const harness_broker_t *b, refused_t *r, const char *what,
                            size_t payload)
{
    memset(r, 0, sizeof *r);
    r->what = what;
    r->closed_after = -1;
    r->fd = raw_connect(b);
    CHECK(raw_start(r->fd) == 0);
    wbuf_t w = {0};
    start_ok_sized(&w, payload);
    /* The server may give up before it has read all of a big frame: a send error is fine. */
    int rc = raw_send(r->fd, w.p, w.len);
    r->sent_at = harness_now_ms();
    wb_free(&w);
    if (rc != 0)
        harness_log("%s: send: %s", what, strerror(-rc));
}

/* Only the 7-octet header of a method frame announcing payload octets, at the given point of
 * the handshake (after connection.start, or after connection.tune). */
static void refuse_header(const harness_broker_t *b, refused_t *r, const char *what,
                          uint32_t payload, bool after_tune)
{
    memset(r, 0, sizeof *r);
    r->what = what;
    r->closed_after = -1;
    r->fd = raw_connect(b);
    if (after_tune)
        raw_login(r->fd, NULL);
    else
        CHECK(raw_start(r->fd) == 0);
    uint8_t h[7] = {RAW_FRAME_METHOD, 0, 0, (uint8_t)(payload >> 24), (uint8_t)(payload >> 16),
                    (uint8_t)(payload >> 8), (uint8_t)payload};
    CHECK(raw_send(r->fd, h, sizeof h) == 0);
    r->sent_at = harness_now_ms();
}

static void check_refused(const harness_broker_t *b)
{
    refused_t rs[MAX_REFUSED];
    int n = 0;
    refuse_start_ok(b, &rs[n++], "start-ok payload 4097", 4097);
    refuse_start_ok(b, &rs[n++], "start-ok payload 4100", 4100);
    refuse_start_ok(b, &rs[n++], "start-ok payload 4104", 4104);
    refuse_start_ok(b, &rs[n++], "start-ok payload 4105", 4105);
    refuse_start_ok(b, &rs[n++], "start-ok payload 100000", 100000);
    refuse_header(b, &rs[n++], "header announcing 4097 after start", 4097, false);
    refuse_header(b, &rs[n++], "header announcing 4097 before tune-ok", 4097, true);
    watch_refused(rs, n);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        char desc[512] = "nothing";
        if (rs[i].got_len)
            describe_sent(&rs[i], desc, sizeof desc);
        if (rs[i].closed_after >= 0)
            harness_log("%-40s -> socket closed after %lld ms, server sent %s", rs[i].what,
                        (long long)rs[i].closed_after, desc);
        else
            harness_log("%-40s -> socket still open after 8 s, server sent %s", rs[i].what,
                        desc);
        if (rs[i].got_len) {
            fprintf(stderr, "MISMATCH %s: server sent %s; RabbitMQ sends nothing (no tune, no "
                            "connection.close)\n",
                    rs[i].what, desc);
            bad++;
        }
        if (rs[i].closed_after < 0) {
            fprintf(stderr, "MISMATCH %s: socket still open after 8 s; RabbitMQ closes it "
                            "after 3 s\n",
                    rs[i].what);
            close(rs[i].fd);
            bad++;
        } else if (rs[i].closed_after < 2000) {
            fprintf(stderr, "MISMATCH %s: closed after %lld ms; RabbitMQ waits 3 s\n",
                    rs[i].what, (long long)rs[i].closed_after);
            bad++;
        }
    }
    CHECKF(bad == 0, "%d differences from RabbitMQ (MISMATCH lines above)", bad);
}

/* After tune-ok (frame_max 131072) a frame far over 4096 octets is fine: queue.declare with a
 * 100,000-octet arguments table. */
static void check_big_frame_after_tune(const harness_broker_t *b)
{
    int fd = raw_connect(b);
    raw_handshake(fd, 131072, 0, NULL);
    raw_channel_open(fd, 1);
    const char *q = harness_name("big-args");
    static char pad[100000];
    memset(pad, 'p', sizeof pad);
    wbuf_t table = {0}, a = {0}, w = {0};
    wb_shortstr(&table, "x-pad");
    wb_u8(&table, 'S');
    wb_longstr(&table, pad, sizeof pad);
    wb_u16(&a, 0);
    wb_shortstr(&a, q);
    wb_u8(&a, 0x04 | 0x08); /* exclusive, auto-delete */
    wb_longstr(&a, table.p, table.len);
    wb_method(&w, 1, 50, 10, a.p, a.len);
    size_t payload = w.len - 8;
    CHECK(raw_send(fd, w.p, w.len) == 0);
    wb_free(&table);
    wb_free(&a);
    wb_free(&w);
    raw_frame_t f;
    int rc = raw_read_method(fd, &f, 5000);
    CHECKF(rc == 0, "queue.declare of %zu octets after tune-ok: %s", payload,
           rc == -EPIPE ? "the socket was closed" : strerror(-rc));
    if (f.class_id == 10 && f.method_id == 50) {
        rbuf_t r = {.p = f.payload, .len = f.size, .off = 4};
        unsigned code = rb_u16(&r);
        char text[256];
        rb_shortstr(&r, text, sizeof text);
        harness_fail(__FILE__, __LINE__, "queue.declare-ok",
                     "queue.declare of %zu octets after tune-ok: connection.close %u \"%s\"",
                     payload, code, text);
    }
    CHECKF(f.channel == 1 && f.class_id == 50 && f.method_id == 11,
           "queue.declare of %zu octets: got %u.%u on channel %u, want declare-ok", payload,
           f.class_id, f.method_id, f.channel);
    rbuf_t r = {.p = f.payload, .len = f.size, .off = 4};
    char name[256];
    rb_shortstr(&r, name, sizeof name);
    CHECK(!r.err);
    CHECK_STREQ(name, q);
    raw_frame_free(&f);
    harness_log("queue.declare frame of %zu octets after tune-ok: declare-ok '%s'", payload,
                name);
    close(fd);
}

int main(void)
{
    harness_watchdog(45);
    harness_broker_t b;
    harness_broker_start(&b);
    harness_name_init("it-pt");

    check_accepted(&b, 4088);
    check_accepted(&b, 4095);
    check_accepted(&b, 4096);
    check_refused(&b);
    check_big_frame_after_tune(&b);

    return harness_finish(&b);
}
