/* 40-queue-dispatch-order — a message published before a basic.cancel, basic.get, basic.ack or
 * passive queue.declare on the same connection reaches the queue's consumers first, even when all
 * these frames come in one TCP segment (one send(), so the broker reads them in one read).
 * Consumers, publishes and the pipelined methods go over a raw socket; a rabbitmq-c connection
 * declares the queues and reads their counts. The frames each case pipelines are on one channel
 * (the consumer's, where the method concerns a consumer): RabbitMQ keeps one channel's methods in
 * order towards a queue, but a publish on one channel and a cancel on another reach the queue in
 * no promised order (probed: the cancel overtook the publish 35 times in 200). Whatever the broker
 * sends back is read per channel, in order, until nothing more comes for 200 ms.
 * RabbitMQ 3.10.8 answers (asserted below; C, H1..H3 and L are consumer tags on a queue Q, "one
 * send" means the frames in [] were written with one send()):
 *  C (no prefetch limit, manual ack); one send [publish m1, cancel C]: basic.deliver of m1 to C,
 *      then cancel-ok; Q holds 0 messages; C acks m1 after the cancel and Q stays 0/0.
 *  C on one channel; one send [publish m1, basic.get Q] on another: C gets m1, the get answers
 *      get-empty; Q holds 0.
 *  C idle; one send [publish m2, passive queue.declare Q] on another channel: C gets m2,
 *      declare-ok says 0 messages and 1 consumer.
 *  C with prefetch 1 holding m1; one send [publish m2, cancel C]: only cancel-ok; m2 stays
 *      ready (Q holds 1) and a basic.get gets it.
 *  C with prefetch 1 holding m3; one send [ack m3, publish m4, cancel C]: the ack frees C's slot,
 *      C gets m4, then cancel-ok; Q holds 0.
 *  H1 (x-priority 10, prefetch 1) and L (no priority, no limit, another channel); one send
 *      [publish m1, publish m2, cancel H1] on H1's channel: m1 to H1, then cancel-ok; m2 to L.
 *  H2 (x-priority 10, prefetch 1) holding m3, L idle; one send [ack m3, publish m4, cancel H2]:
 *      m4 to H2 before cancel-ok, nothing to L.
 *  H3 holding m5, L idle; one send [ack m5, publish m6, publish m7, cancel H3]: m6 to H3, then
 *      cancel-ok; m7 to L; Q holds 0.
 *  (Acking a cancelled consumer's delivery gives its prefetch credit to a new consumer with the
 *  same tag on the channel, so each consumer here has a tag of its own.) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

enum { NCH = 8 };

/* What the broker sent on each channel during one step, rendered in order: "deliver C m1,
 * cancel-ok C". */
static char s_tr[NCH][1024];
/* Delivery tag of each message "m<k>" as last delivered or got. */
static uint64_t s_dtag[64];

/* ---- frames to pipeline ------------------------------------------------------------------ */

static void p_method(wbuf_t *w, uint16_t ch, uint16_t cls, uint16_t m, wbuf_t *args)
{
    wb_method(w, ch, cls, m, args->p, args->len);
    wb_free(args);
}

static void p_publish(wbuf_t *w, uint16_t ch, const char *q, const char *body)
{
    wb_publish(w, ch, "", q, body);
}

/* basic.consume with an x-priority argument when prio != NO_PRIO. */
enum { NO_PRIO = -1000 };

static void p_consume(wbuf_t *w, uint16_t ch, const char *q, const char *tag, int prio)
{
    wbuf_t a = {0};
    wb_u16(&a, 0);
    wb_shortstr(&a, q);
    wb_shortstr(&a, tag);
    wb_u8(&a, 0); /* no-local no-ack exclusive no-wait */
    if (prio == NO_PRIO) {
        wb_u32(&a, 0);
    } else {
        wbuf_t t = {0};
        wb_shortstr(&t, "x-priority");
        wb_u8(&t, 'I');
        wb_u32(&t, (uint32_t)prio);
        wb_u32(&a, (uint32_t)t.len);
        wb_bytes(&a, t.p, t.len);
        wb_free(&t);
    }
    p_method(w, ch, 60, 20, &a);
}

static void p_cancel(wbuf_t *w, uint16_t ch, const char *tag)
{
    wbuf_t a = {0};
    wb_shortstr(&a, tag);
    wb_u8(&a, 0);
    p_method(w, ch, 60, 30, &a);
}

static void p_get(wbuf_t *w, uint16_t ch, const char *q, bool no_ack)
{
    wbuf_t a = {0};
    wb_u16(&a, 0);
    wb_shortstr(&a, q);
    wb_u8(&a, no_ack);
    p_method(w, ch, 60, 70, &a);
}

static void p_ack(wbuf_t *w, uint16_t ch, uint64_t dtag, bool multiple)
{
    wbuf_t a = {0};
    wb_u64(&a, dtag);
    wb_u8(&a, multiple);
    p_method(w, ch, 60, 80, &a);
}

static void p_qos(wbuf_t *w, uint16_t ch, uint16_t prefetch)
{
    wbuf_t a = {0};
    wb_u32(&a, 0);
    wb_u16(&a, prefetch);
    wb_u8(&a, 0); /* per consumer */
    p_method(w, ch, 60, 10, &a);
}

static void p_declare_passive(wbuf_t *w, uint16_t ch, const char *q)
{
    wb_queue_declare(w, ch, q, 1); /* passive */
}

/* ---- reading what comes back --------------------------------------------------------------- */

static void tr_add(uint16_t ch, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tr_add(uint16_t ch, const char *fmt, ...)
{
    CHECKF(ch < NCH, "frame on channel %u", ch);
    size_t len = strlen(s_tr[ch]);
    if (len && len < sizeof s_tr[ch])
        len += (size_t)snprintf(s_tr[ch] + len, sizeof s_tr[ch] - len, ", ");
    va_list ap;
    va_start(ap, fmt);
    if (len < sizeof s_tr[ch])
        vsnprintf(s_tr[ch] + len, sizeof s_tr[ch] - len, fmt, ap);
    va_end(ap);
}

/* The content (header and body frames) after a deliver or get-ok on ch, as a string. */
static void read_content(int fd, uint16_t ch, char *body, size_t cap)
{
    raw_frame_t f;
    int rc = raw_read_frame(fd, &f, 5000);
    CHECKF(rc == 0, "content header: %s", strerror(-rc));
    CHECKF(f.type == RAW_FRAME_HEADER && f.channel == ch, "frame type %u on %u, want a header",
           f.type, f.channel);
    rbuf_t r = {.p = f.payload, .len = f.size};
    rb_u16(&r);
    rb_u16(&r);
    uint64_t size = rb_u64(&r);
    raw_frame_free(&f);
    CHECK(size < cap);
    size_t got = 0;
    while (got < size) {
        rc = raw_read_frame(fd, &f, 5000);
        CHECKF(rc == 0, "content body: %s", strerror(-rc));
        CHECKF(f.type == RAW_FRAME_BODY && f.channel == ch && got + f.size <= size,
               "frame type %u on %u, want a body", f.type, f.channel);
        memcpy(body + got, f.payload, f.size);
        got += f.size;
        raw_frame_free(&f);
    }
    body[got] = '\0';
}

static void remember_dtag(const char *body, uint64_t dtag)
{
    int k = body[0] == 'm' ? atoi(body + 1) : 0;
    if (k > 0 && k < 64)
        s_dtag[k] = dtag;
}

/* Read one method (with its content) and add it to its channel's transcript. */
static int read_event(int fd, int timeout_ms)
{
    raw_frame_t f;
    int rc = raw_read_method(fd, &f, timeout_ms);
    if (rc < 0)
        return rc;
    CHECKF(f.type == RAW_FRAME_METHOD, "frame type %u on %u, want a method", f.type, f.channel);
    rbuf_t r = {.p = f.payload, .len = f.size, .off = 4};
    uint16_t ch = f.channel;
    char tag[256], ex[256], rk[256], body[256];
    uint32_t id = (uint32_t)f.class_id << 16 | f.method_id;
    switch (id) {
    case 60 << 16 | 60: { /* basic.deliver */
        rb_shortstr(&r, tag, sizeof tag);
        uint64_t dtag = rb_u64(&r);
        uint8_t redelivered = rb_u8(&r);
        rb_shortstr(&r, ex, sizeof ex);
        rb_shortstr(&r, rk, sizeof rk);
        read_content(fd, ch, body, sizeof body);
        remember_dtag(body, dtag);
        tr_add(ch, "deliver %s %s%s", tag, body, redelivered ? " (redelivered)" : "");
        break;
    }
    case 60 << 16 | 71: { /* basic.get-ok */
        uint64_t dtag = rb_u64(&r);
        uint8_t redelivered = rb_u8(&r);
        rb_shortstr(&r, ex, sizeof ex);
        rb_shortstr(&r, rk, sizeof rk);
        uint32_t left = rb_u32(&r);
        read_content(fd, ch, body, sizeof body);
        remember_dtag(body, dtag);
        tr_add(ch, "get-ok %s%s left %u", body, redelivered ? " (redelivered)" : "", left);
        break;
    }
    case 60 << 16 | 72:
        tr_add(ch, "get-empty");
        break;
    case 60 << 16 | 31:
        rb_shortstr(&r, tag, sizeof tag);
        tr_add(ch, "cancel-ok %s", tag);
        break;
    case 60 << 16 | 30: /* the server cancelled a consumer */
        rb_shortstr(&r, tag, sizeof tag);
        tr_add(ch, "cancel %s", tag);
        break;
    case 60 << 16 | 21:
        rb_shortstr(&r, tag, sizeof tag);
        tr_add(ch, "consume-ok %s", tag);
        break;
    case 60 << 16 | 11:
        tr_add(ch, "qos-ok");
        break;
    case 50 << 16 | 11: {
        rb_shortstr(&r, tag, sizeof tag);
        uint32_t msgs = rb_u32(&r);
        uint32_t cons = rb_u32(&r);
        tr_add(ch, "declare-ok %u/%u", msgs, cons);
        break;
    }
    case 20 << 16 | 40: {
        uint16_t code = rb_u16(&r);
        rb_shortstr(&r, tag, sizeof tag);
        tr_add(ch, "channel.close %u %s", code, tag);
        break;
    }
    case 10 << 16 | 50: {
        uint16_t code = rb_u16(&r);
        rb_shortstr(&r, tag, sizeof tag);
        tr_add(ch, "connection.close %u %s", code, tag);
        break;
    }
    default:
        tr_add(ch, "method %u.%u", f.class_id, f.method_id);
        break;
    }
    CHECKF(!r.err, "short method %u.%u on %u", f.class_id, f.method_id, ch);
    raw_frame_free(&f);
    return 0;
}

/* Send w in one send(), then read exactly n methods (5 s) and check that nothing more comes for
 * 200 ms. The transcripts start empty. */
static void step(int fd, wbuf_t *w, int n, const char *what)
{
    memset(s_tr, 0, sizeof s_tr);
    CHECK(raw_send(fd, w->p, w->len) == 0);
    wb_free(w);
    int64_t deadline = harness_now_ms() + 5000;
    for (int i = 0; i < n; i++) {
        int64_t left = deadline - harness_now_ms();
        int rc = read_event(fd, left > 0 ? (int)left : 0);
        if (rc < 0) {
            char all[4096] = "";
            for (int c = 0; c < NCH; c++)
                if (s_tr[c][0])
                    snprintf(all + strlen(all), sizeof all - strlen(all), " [ch%d: %.900s]", c,
                             s_tr[c]);
            CHECKF(0, "%s: %d of %d replies came (%s):%s", what, i, n, strerror(-rc), all);
        }
    }
    int rc = read_event(fd, 200);
    if (rc == 0) {
        for (int c = 0; c < NCH; c++)
            if (s_tr[c][0])
                harness_log("  ch%d: %s", c, s_tr[c]);
        CHECKF(0, "%s: more than the %d replies expected came (above)", what, n);
    }
    CHECKF(rc == -ETIMEDOUT, "%s: %s", what, strerror(-rc));
}

/* Channel ch's transcript of the last step must be want. */
static void expect_tr(uint16_t ch, const char *want, const char *what)
{
    CHECKF(strcmp(s_tr[ch], want) == 0, "%s: channel %u\n  got  \"%s\"\n  want \"%s\"", what, ch,
           s_tr[ch], want);
}

/* ---- cases --------------------------------------------------------------------------------- */

static amqp_connection_state_t s_conn; /* rabbitmq-c: declares, counts, deletes */

static const char *fresh_queue(const char *what)
{
    const char *q = harness_name("%s", what);
    harness_queue_declare(s_conn, 1, q, 0, amqp_empty_table);
    harness_queue_purge(s_conn, 1, q);
    return q;
}

/* basic.consume on ch (after an optional qos when prefetch > 0) over the raw socket. */
static void consume(int fd, uint16_t ch, const char *q, const char *tag, int prio, int prefetch)
{
    wbuf_t w = {0};
    int n = 1;
    if (prefetch > 0) {
        p_qos(&w, ch, (uint16_t)prefetch);
        n++;
    }
    p_consume(&w, ch, q, tag, prio);
    step(fd, &w, n, "basic.consume");
    char want[256];
    snprintf(want, sizeof want, "%sconsume-ok %s", prefetch > 0 ? "qos-ok, " : "", tag);
    expect_tr(ch, want, "basic.consume");
}

static void check_cancel(int fd)
{
    const char *q = fresh_queue("cancel");
    raw_channel_open(fd, 1);
    consume(fd, 1, q, "C", NO_PRIO, 0);
    wbuf_t w = {0};
    p_publish(&w, 1, q, "m1");
    p_cancel(&w, 1, "C");
    step(fd, &w, 2, "publish + cancel");
    expect_tr(1, "deliver C m1, cancel-ok C", "publish + cancel");
    CHECK_EQ(harness_queue_count(s_conn, 1, q), 0);
    /* The delivery stays C's to ack after the cancel. */
    p_ack(&w, 1, s_dtag[1], false);
    p_declare_passive(&w, 1, q);
    step(fd, &w, 1, "ack after cancel");
    expect_tr(1, "declare-ok 0/0", "ack after cancel");
    harness_queue_delete(s_conn, 1, q);
    harness_log("publish then cancel in one read: the consumer gets the message first: ok");
}

static void check_get(int fd)
{
    const char *q = fresh_queue("get");
    raw_channel_open(fd, 2);
    raw_channel_open(fd, 3);
    consume(fd, 2, q, "C", NO_PRIO, 0);
    wbuf_t w = {0};
    p_publish(&w, 3, q, "m1");
    p_get(&w, 3, q, false);
    step(fd, &w, 2, "publish + get");
    expect_tr(2, "deliver C m1", "publish + get");
    expect_tr(3, "get-empty", "publish + get");
    CHECK_EQ(harness_queue_count(s_conn, 1, q), 0);

    /* The same with a passive queue.declare: the count is taken after the delivery. */
    p_publish(&w, 3, q, "m2");
    p_declare_passive(&w, 3, q);
    step(fd, &w, 2, "publish + passive declare");
    expect_tr(2, "deliver C m2", "publish + passive declare");
    expect_tr(3, "declare-ok 0/1", "publish + passive declare");

    p_ack(&w, 2, s_dtag[2], true);
    p_cancel(&w, 2, "C");
    step(fd, &w, 1, "ack + cancel");
    expect_tr(2, "cancel-ok C", "ack + cancel");
    CHECK_EQ(harness_queue_count(s_conn, 1, q), 0);
    harness_queue_delete(s_conn, 1, q);
    harness_log("publish then get / passive declare in one read: the consumer is served first: "
                "ok");
}

static void check_prefetch_full(int fd)
{
    const char *q = fresh_queue("full");
    raw_channel_open(fd, 4);
    consume(fd, 4, q, "C", NO_PRIO, 1);
    wbuf_t w = {0};
    p_publish(&w, 4, q, "m1");
    step(fd, &w, 1, "publish m1");
    expect_tr(4, "deliver C m1", "publish m1");

    /* Full: m2 is not C's, and stays ready after the cancel. */
    p_publish(&w, 4, q, "m2");
    p_cancel(&w, 4, "C");
    step(fd, &w, 1, "publish + cancel at the prefetch limit");
    expect_tr(4, "cancel-ok C", "publish + cancel at the prefetch limit");
    CHECK_EQ(harness_queue_count(s_conn, 1, q), 1);
    p_ack(&w, 4, s_dtag[1], false);
    p_get(&w, 4, q, true);
    step(fd, &w, 1, "get m2");
    expect_tr(4, "get-ok m2 left 0", "get m2");

    /* Full, but the ack before the publish frees the slot: C gets m4 before the cancel. */
    consume(fd, 4, q, "C", NO_PRIO, 0);
    p_publish(&w, 4, q, "m3");
    step(fd, &w, 1, "publish m3");
    expect_tr(4, "deliver C m3", "publish m3");
    p_ack(&w, 4, s_dtag[3], false);
    p_publish(&w, 4, q, "m4");
    p_cancel(&w, 4, "C");
    step(fd, &w, 2, "ack + publish + cancel at the prefetch limit");
    expect_tr(4, "deliver C m4, cancel-ok C", "ack + publish + cancel at the prefetch limit");
    CHECK_EQ(harness_queue_count(s_conn, 1, q), 0);
    p_ack(&w, 4, s_dtag[4], false);
    p_declare_passive(&w, 4, q);
    step(fd, &w, 1, "ack m4");
    expect_tr(4, "declare-ok 0/0", "ack m4");
    harness_queue_delete(s_conn, 1, q);
    harness_log("prefetch full: the message stays queued; an ack before it frees the slot: ok");
}

static void check_priorities(int fd)
{
    const char *q = fresh_queue("prio");
    raw_channel_open(fd, 5);
    raw_channel_open(fd, 6);
    consume(fd, 5, q, "H1", 10, 1);
    consume(fd, 6, q, "L", NO_PRIO, 0);

    /* m1 to H1 (first choice), m2 to L (H1 is full), then H1 goes. */
    wbuf_t w = {0};
    p_publish(&w, 5, q, "m1");
    p_publish(&w, 5, q, "m2");
    p_cancel(&w, 5, "H1");
    step(fd, &w, 3, "publish m1 m2 + cancel H1");
    expect_tr(5, "deliver H1 m1, cancel-ok H1", "publish m1 m2 + cancel H1");
    expect_tr(6, "deliver L m2", "publish m1 m2 + cancel H1");
    CHECK_EQ(harness_queue_count(s_conn, 1, q), 0);
    p_ack(&w, 5, s_dtag[1], false);
    p_ack(&w, 6, s_dtag[2], false);
    p_declare_passive(&w, 5, q);
    step(fd, &w, 1, "acks");
    expect_tr(5, "declare-ok 0/1", "acks");

    /* H2 full; ack, publish, cancel: the freed slot takes m4 before H2 goes. */
    consume(fd, 5, q, "H2", 10, 0);
    p_publish(&w, 5, q, "m3");
    step(fd, &w, 1, "publish m3");
    expect_tr(5, "deliver H2 m3", "publish m3");
    p_ack(&w, 5, s_dtag[3], false);
    p_publish(&w, 5, q, "m4");
    p_cancel(&w, 5, "H2");
    step(fd, &w, 2, "ack m3 + publish m4 + cancel H2");
    expect_tr(5, "deliver H2 m4, cancel-ok H2", "ack m3 + publish m4 + cancel H2");
    expect_tr(6, "", "ack m3 + publish m4 + cancel H2");
    p_ack(&w, 5, s_dtag[4], false);
    p_declare_passive(&w, 5, q);
    step(fd, &w, 1, "ack m4");
    expect_tr(5, "declare-ok 0/1", "ack m4");

    /* The same with two publishes: the second overflows to L. */
    consume(fd, 5, q, "H3", 10, 0);
    p_publish(&w, 5, q, "m5");
    step(fd, &w, 1, "publish m5");
    expect_tr(5, "deliver H3 m5", "publish m5");
    p_ack(&w, 5, s_dtag[5], false);
    p_publish(&w, 5, q, "m6");
    p_publish(&w, 5, q, "m7");
    p_cancel(&w, 5, "H3");
    step(fd, &w, 3, "ack m5 + publish m6 m7 + cancel H3");
    expect_tr(5, "deliver H3 m6, cancel-ok H3", "ack m5 + publish m6 m7 + cancel H3");
    expect_tr(6, "deliver L m7", "ack m5 + publish m6 m7 + cancel H3");
    CHECK_EQ(harness_queue_count(s_conn, 1, q), 0);

    p_ack(&w, 5, s_dtag[6], false);
    p_ack(&w, 6, s_dtag[7], true);
    p_cancel(&w, 6, "L");
    step(fd, &w, 1, "cancel L");
    expect_tr(6, "cancel-ok L", "cancel L");
    CHECK_EQ(harness_queue_count(s_conn, 1, q), 0);
    harness_queue_delete(s_conn, 1, q);
    harness_log("consumer priorities with pipelined publish, ack and cancel: ok");
}

int main(void)
{
    harness_broker_t b;
    s_conn = harness_begin(&b, 55, "it-dorder");

    int fd = raw_connect(&b);
    raw_handshake(fd, 131072, 0, NULL);
    check_cancel(fd);
    check_get(fd);
    check_prefetch_full(fd);
    check_priorities(fd);
    close(fd);

    harness_disconnect(s_conn);
    return harness_finish(&b);
}
