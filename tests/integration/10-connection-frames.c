/* 10-connection-frames — malformed and out-of-place frames over a raw socket, after a
 * hand-made handshake (frame_max 131072, heartbeat 0). Each case must end in a connection.close
 * with RabbitMQ's reply code, text and class/method ids; the client answers close-ok and the
 * server closes the socket; a fresh rabbitmq-c connection then still works.
 * The expectations in `cases` are what RabbitMQ 3.10.8 answers (texts are RabbitMQ's, where
 * they are stable; where RabbitMQ prints Erlang terms only the stable prefix is compared). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct frame_case {
    const char *name;
    bool open_channel_1; /* channel.open 1 before sending the bad bytes */
    void (*build)(wbuf_t *w);
    uint16_t code;
    const char *text_prefix; /* compared with strncmp over its length */
    uint16_t class_id, method_id;
} frame_case_t;

/* ---- builders ------------------------------------------------------------------------------ */

static void b_bad_frame_end(wbuf_t *w)
{
    wb_channel_open(w, 1);
    w->p[w->len - 1] = 0x00;
}

static void b_too_large(wbuf_t *w)
{
    /* A body frame whose payload is frame_max + 1. (RabbitMQ tolerates payloads up to frame_max
     * itself, 8 over the spec's limit, for old clients that forgot the frame overhead.) */
    static uint8_t big[131073];
    size_t m = wb_frame_begin(w, RAW_FRAME_BODY, 1);
    wb_bytes(w, big, sizeof big);
    wb_frame_end(w, m);
}

static void b_unknown_type(wbuf_t *w)
{
    size_t m = wb_frame_begin(w, 7, 0);
    wb_u32(w, 0);
    wb_frame_end(w, m);
}

static void b_header_without_publish(wbuf_t *w)
{
    wb_content_header(w, 1, 5);
}

static void b_body_without_publish(wbuf_t *w)
{
    wb_content_body(w, 1, "hello", 5);
}

static void b_method_before_header(wbuf_t *w)
{
    wb_publish_method(w, 1, "", "q");
    wb_queue_declare(w, 1, "q", 0);
}

static void b_method_before_body(wbuf_t *w)
{
    wb_publish_method(w, 1, "", "q");
    wb_content_header(w, 1, 5);
    wb_queue_declare(w, 1, "q", 0);
}

static void b_body_longer_than_header(wbuf_t *w)
{
    wb_publish_method(w, 1, "", "q");
    wb_content_header(w, 1, 5);
    wb_content_body(w, 1, "hello world", 11);
    wb_queue_declare(w, 1, "q", 0);
}

static void b_closed_channel(wbuf_t *w)
{
    wb_queue_declare(w, 5, "q", 0);
}

static void b_second_open(wbuf_t *w)
{
    wb_channel_open(w, 1);
}

static void b_truncated_declare(wbuf_t *w)
{
    /* queue.declare cut after the queue name: no flags octet, no arguments table. */
    wbuf_t a = {0};
    wb_u16(&a, 0);
    wb_shortstr(&a, "q");
    wb_method(w, 1, 50, 10, a.p, a.len);
    wb_free(&a);
}

static void b_bad_shortstr_length(wbuf_t *w)
{
    /* queue.declare whose name claims 200 octets but the frame ends after 3 */
    uint8_t a[] = {0, 0, 200, 'a', 'b', 'c'};
    wb_method(w, 1, 50, 10, a, sizeof a);
}

static void b_unknown_class(wbuf_t *w)
{
    wb_method(w, 1, 99, 10, NULL, 0);
}

static void b_unknown_method(wbuf_t *w)
{
    wb_method(w, 1, 50, 99, NULL, 0);
}

static void b_heartbeat_on_channel(wbuf_t *w)
{
    size_t m = wb_frame_begin(w, RAW_FRAME_HEARTBEAT, 1);
    wb_frame_end(w, m);
}

static void b_channel_method_on_zero(wbuf_t *w)
{
    wb_queue_declare(w, 0, "q", 0);
}

static void b_connection_method_on_channel(wbuf_t *w)
{
    wbuf_t a = {0};
    wb_shortstr(&a, "/");
    wb_shortstr(&a, "");
    wb_u8(&a, 0);
    wb_method(w, 1, 10, 40, a.p, a.len); /* connection.open on channel 1 */
    wb_free(&a);
}

static void b_header_wrong_class(wbuf_t *w)
{
    wb_publish_method(w, 1, "", "q");
    size_t m = wb_frame_begin(w, RAW_FRAME_HEADER, 1);
    wb_u16(w, 50); /* class queue: content headers belong to basic */
    wb_u16(w, 0);
    wb_u64(w, 5);
    wb_u16(w, 0);
    wb_frame_end(w, m);
}

/* ---- cases: RabbitMQ 3.10.8's answers ------------------------------------------------------- */

static const frame_case_t cases[] = {
    /* Texts that embed Erlang terms are compared up to the error name only. RabbitMQ says:
     * "FRAME_ERROR - type 1, all octets = <<0,20,0,10,0>>: {invalid_frame_end_marker,0}" */
    {"bad frame-end octet", false, b_bad_frame_end, 501, "FRAME_ERROR - ", 0, 0},
    /* "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,131073,131064}" */
    {"frame larger than frame_max", true, b_too_large, 501, "FRAME_ERROR - ", 0, 0},
    /* "FRAME_ERROR - type 7, all octets = <<0,0,0,0>>: unknown_frame" */
    {"unknown frame type 7", false, b_unknown_type, 501, "FRAME_ERROR - ", 0, 0},
    /* "UNEXPECTED_FRAME - type 8, all octets = <<>>" */
    {"heartbeat on channel 1", true, b_heartbeat_on_channel, 505, "UNEXPECTED_FRAME - ", 0, 0},
    {"content header without basic.publish", true, b_header_without_publish, 505,
     "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0},
    {"content body without basic.publish", true, b_body_without_publish, 505,
     "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0},
    {"method instead of content header", true, b_method_before_header, 505,
     "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame "
     "instead",
     60, 40},
    {"method instead of content body", true, b_method_before_body, 505,
     "UNEXPECTED_FRAME - expected content body, got non content body frame instead", 60, 40},
    /* RabbitMQ does not notice the overrun itself; it keeps waiting for body frames and fails
     * on the next method. A broker that refuses the body frame at once with 505 passes too. */
    {"body longer than the header said", true, b_body_longer_than_header, 505, "UNEXPECTED_FRAME",
     60, 40},
    {"content header of class 50", true, b_header_wrong_class, 505,
     "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead", 60,
     40},
    {"method on a channel never opened", false, b_closed_channel, 504,
     "CHANNEL_ERROR - expected 'channel.open'", 50, 10},
    {"second channel.open", true, b_second_open, 504, "CHANNEL_ERROR - second 'channel.open' seen",
     20, 10},
    {"queue.declare on channel 0", false, b_channel_method_on_zero, 504,
     "CHANNEL_ERROR - unexpected method in connection state running", 50, 10},
    {"connection.open on channel 1", true, b_connection_method_on_channel, 503,
     "COMMAND_INVALID - unimplemented method", 10, 40},
    /* RabbitMQ reports undecodable arguments as 501 FRAME_ERROR, not 502 SYNTAX_ERROR:
     * "FRAME_ERROR - cannot decode <<0,0,1,113>>" (the raw arguments, Erlang syntax). */
    {"truncated queue.declare", true, b_truncated_declare, 501, "FRAME_ERROR - ", 50, 10},
    /* "FRAME_ERROR - cannot decode <<0,0,200,97,98,99>>" */
    {"shortstr longer than the frame", true, b_bad_shortstr_length, 501, "FRAME_ERROR - ", 50,
     10},
    /* Unknown class or method ids crash RabbitMQ's reader ({unknown_method_id,{50,99}}): the
     * socket is closed at once with no connection.close. code 0 = expect exactly that from an
     * external broker. Warren answers with the protocol's error instead (see run_case). */
    {"unknown class 99", true, b_unknown_class, 0, NULL, 99, 10},
    {"unknown method queue.99", true, b_unknown_method, 0, NULL, 50, 99},
};

/* Runs one case; returns 1 (after printing what differs) when the answer is not RabbitMQ's, so
 * that one run lists every difference. The connection must end either way. */
static int run_case(const harness_broker_t *b, const frame_case_t *rc_case)
{
    /* Where RabbitMQ just drops the socket, Warren sends 540 NOT_IMPLEMENTED naming the method. */
    frame_case_t warren = *rc_case;
    if (warren.code == 0 && !harness_external(b)) {
        warren.code = 540;
        warren.text_prefix = "NOT_IMPLEMENTED - unknown method";
    }
    const frame_case_t *c = &warren;
    int fd = raw_connect(b);
    raw_handshake(fd, 131072, 0, NULL);
    if (c->open_channel_1)
        raw_channel_open(fd, 1);
    wbuf_t w = {0};
    c->build(&w);
    /* The server may close before it has read all of a large frame: a send error is fine. */
    int src = raw_send(fd, w.p, w.len);
    wb_free(&w);
    if (c->code == 0) {
        size_t extra = 0;
        int wc = raw_wait_closed(fd, 5000, &extra);
        harness_log("%-40s -> socket closed: %s, %zu bytes sent", c->name, wc ? "no" : "yes",
                    extra);
        close(fd);
        CHECKF(wc == 0, "%s: socket still open after 5 s", c->name);
        if (extra != 0) {
            fprintf(stderr, "MISMATCH %s: %zu bytes sent; RabbitMQ closes without a frame\n",
                    c->name, extra);
            return 1;
        }
        return 0;
    }
    raw_close_t cl;
    int rc = raw_expect_close(fd, false, &cl, 5000);
    if (rc != 0) {
        harness_log("%-40s -> no connection.close (%s; send %s)", c->name,
                    rc == -EPIPE ? "socket closed" : strerror(-rc), src ? strerror(-src) : "ok");
        close(fd);
        fprintf(stderr, "MISMATCH %s: no connection.close, want %u\n", c->name, c->code);
        return 1;
    }
    harness_log("%-40s -> %u \"%s\" (%u.%u)", c->name, cl.reply_code, cl.reply_text, cl.class_id,
                cl.method_id);
    int bad = 0;
    if (cl.reply_code != c->code) {
        fprintf(stderr, "MISMATCH %s: reply code %u, want %u\n", c->name, cl.reply_code, c->code);
        bad = 1;
    }
    if (strncmp(cl.reply_text, c->text_prefix, strlen(c->text_prefix)) != 0) {
        fprintf(stderr, "MISMATCH %s: text \"%s\", want it to start with \"%s\"\n", c->name,
                cl.reply_text, c->text_prefix);
        bad = 1;
    }
    if (cl.class_id != c->class_id || cl.method_id != c->method_id) {
        fprintf(stderr, "MISMATCH %s: class/method %u.%u, want %u.%u\n", c->name, cl.class_id,
                cl.method_id, c->class_id, c->method_id);
        bad = 1;
    }
    raw_finish_close(fd);
    close(fd);
    return bad;
}

/* Frames right at the limit are fine: a body frame with frame_max - 8 payload octets (the
 * spec's limit), and even frame_max octets (RabbitMQ's FRAME_SIZE_FUDGE for old clients that
 * forgot the 8 octets of frame overhead). The message comes back intact through basic.get. */
static void check_frame_size_ok(const harness_broker_t *b, size_t n)
{
    int fd = raw_connect(b);
    raw_handshake(fd, 131072, 0, NULL);
    raw_channel_open(fd, 1);
    wbuf_t w = {0}, a = {0};
    wb_queue_declare(&w, 1, "", 0x08); /* server-named, auto-delete */
    raw_send_wbuf(fd, &w);
    raw_frame_t f;
    CHECK(raw_read_method(fd, &f, 5000) == 0);
    CHECKF(f.class_id == 50 && f.method_id == 11, "queue.declare-ok expected, got %u.%u",
           f.class_id, f.method_id);
    rbuf_t r = {.p = f.payload, .len = f.size, .off = 4};
    char qname[256];
    rb_shortstr(&r, qname, sizeof qname);
    raw_frame_free(&f);

    uint8_t *body = malloc(n);
    CHECK(body != NULL);
    for (size_t i = 0; i < n; i++)
        body[i] = (uint8_t)i;
    wb_publish_method(&w, 1, "", qname);
    wb_content_header(&w, 1, n);
    wb_content_body(&w, 1, body, n);
    /* basic.get no-ack */
    wb_u16(&a, 0);
    wb_shortstr(&a, qname);
    wb_u8(&a, 1);
    wb_method(&w, 1, 60, 70, a.p, a.len);
    CHECK(raw_send(fd, w.p, w.len) == 0);
    wb_free(&w);
    wb_free(&a);
    CHECK(raw_read_method(fd, &f, 5000) == 0);
    CHECKF(f.class_id == 60 && f.method_id == 71, "basic.get-ok expected, got %u.%u", f.class_id,
           f.method_id);
    raw_frame_free(&f);
    CHECK(raw_read_frame(fd, &f, 5000) == 0);
    CHECK_EQ(f.type, RAW_FRAME_HEADER);
    raw_frame_free(&f);
    /* The server splits it by its own rule (131064 octets per body frame at most). */
    size_t got = 0;
    while (got < n) {
        CHECK(raw_read_frame(fd, &f, 5000) == 0);
        CHECK_EQ(f.type, RAW_FRAME_BODY);
        CHECKF(f.size <= 131072 - 8, "server sent a body frame of %u octets", f.size);
        CHECK(got + f.size <= n);
        CHECK(memcmp(f.payload, body + got, f.size) == 0);
        got += f.size;
        raw_frame_free(&f);
    }
    harness_log("body frame of %zu octets accepted and delivered", n);
    free(body);
    close(fd);
}

/* channel_max limits how many channels are open at once, not their numbers: with tune-ok
 * channel_max 2, channels 7 and 2047 open and a third is refused. */
static void check_channel_max(const harness_broker_t *b)
{
    int fd = raw_connect(b);
    raw_login(fd, NULL);
    CHECK(raw_send_tune_ok(fd, 2, 131072, 0) == 0);
    CHECK(raw_open_vhost(fd, "/") == 0);
    raw_channel_open(fd, 7);
    raw_channel_open(fd, 2047);
    wbuf_t w = {0};
    wb_channel_open(&w, 3);
    raw_send_wbuf(fd, &w);
    raw_close_t cl;
    int rc = raw_expect_close(fd, false, &cl, 5000);
    CHECKF(rc == 0, "third channel.open with channel_max 2: no connection.close (%s)",
           strerror(-rc));
    harness_log("third channel with channel_max 2 -> %u \"%s\" (%u.%u)", cl.reply_code,
                cl.reply_text, cl.class_id, cl.method_id);
    {
        CHECK_EQ(cl.reply_code, 530);
        CHECK_STREQ(cl.reply_text, "NOT_ALLOWED - number of channels opened (2) has reached the "
                                   "negotiated channel_max (2)");
        CHECK_EQ(cl.class_id, 0);
        CHECK_EQ(cl.method_id, 0);
    }
    raw_finish_close(fd);
    close(fd);
}

int main(void)
{
    harness_watchdog(55);
    harness_broker_t b;
    harness_broker_start(&b);

    int mismatches = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mismatches += run_case(&b, &cases[i]);
        harness_check_alive(&b);
    }
    CHECKF(mismatches == 0, "%d of %zu cases differ from RabbitMQ (MISMATCH lines above)",
           mismatches, sizeof cases / sizeof cases[0]);
    check_frame_size_ok(&b, 131072 - 8);
    check_frame_size_ok(&b, 131072);
    check_channel_max(&b);
    return harness_finish(&b);
}
