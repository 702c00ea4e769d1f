/* 10-connection-handshake — connection.start / tune / open as RabbitMQ 3.x does them.
 * Checks: server-properties (product, version, platform, the capabilities table), tune values
 * (channel_max 2047, frame_max 131072, heartbeat 60 proposed), what rabbitmq-c negotiates from
 * them, a smaller frame_max honoured end to end, and connection.close in both directions.
 * RabbitMQ 3.10.8 answers: tune 2047/131072/60. A tune-ok it cannot accept (frame_max 0,
 * 1024 < 4096, or 1 MiB > 131072) is a negotiation failure: it sends NO connection.close, it
 * waits 3 s (SILENT_CLOSE_DELAY, against login/negotiation floods) and closes the socket; its
 * log says "negotiated frame_max = 0 is higher than the maximum allowed value (131072)".
 * After a client connection.close it sends close-ok and leaves closing the socket to the client
 * (it closes it itself only after 30 s), so that is not asserted here. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, nftw, prctl */
#endif
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static void check_string_prop(const amqp_table_t *props, const char *key)
{
    const amqp_field_value_t *v = harness_table_get(props, key);
    CHECKF(v != NULL, "server-properties lack %s", key);
    CHECKF(v->kind == AMQP_FIELD_KIND_UTF8, "%s has type '%c', want 'S'", key, v->kind);
    CHECKF(v->value.bytes.len > 0, "%s is empty", key);
    harness_log("server-properties %s = %.*s", key, (int)v->value.bytes.len,
                (const char *)v->value.bytes.bytes);
}

static void check_server_properties(amqp_connection_state_t conn)
{
    const amqp_table_t *props = amqp_get_server_properties(conn);
    CHECK(props != NULL);
    check_string_prop(props, "product");
    check_string_prop(props, "version");
    check_string_prop(props, "platform");

    const amqp_field_value_t *caps = harness_table_get(props, "capabilities");
    CHECKF(caps != NULL, "server-properties lack capabilities");
    CHECKF(caps->kind == AMQP_FIELD_KIND_TABLE, "capabilities has type '%c'", caps->kind);
    static const char *const want[] = {
        "publisher_confirms",     "exchange_exchange_bindings", "basic.nack",
        "consumer_cancel_notify", "connection.blocked",         "authentication_failure_close",
        "per_consumer_qos",       "direct_reply_to",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const amqp_field_value_t *v = harness_table_get(&caps->value.table, want[i]);
        CHECKF(v != NULL, "capability %s missing", want[i]);
        CHECKF(v->kind == AMQP_FIELD_KIND_BOOLEAN, "capability %s has type '%c'", want[i],
               v->kind);
        CHECKF(v->value.boolean, "capability %s is false", want[i]);
    }
}

/* The server's connection.start and connection.tune, read by hand. */
static void check_raw_start_and_tune(const harness_broker_t *b)
{
    int fd = raw_connect(b);
    CHECK(raw_send(fd, "AMQP\x00\x00\x09\x01", 8) == 0);
    raw_frame_t f;
    CHECK(raw_read_method(fd, &f, 5000) == 0);
    CHECK_EQ(f.channel, 0);
    CHECK_EQ(f.class_id, 10);
    CHECK_EQ(f.method_id, 10);
    rbuf_t r = {.p = f.payload, .len = f.size, .off = 4};
    CHECK_EQ(rb_u8(&r), 0); /* version-major */
    CHECK_EQ(rb_u8(&r), 9); /* version-minor */
    uint32_t n;
    rb_longstr(&r, &n);
    const uint8_t *mech = rb_longstr(&r, &n);
    CHECK(!r.err);
    /* RabbitMQ: "PLAIN AMQPLAIN" (space separated, order unspecified). */
    CHECKF(memmem(mech, n, "PLAIN", 5) && memmem(mech, n, "AMQPLAIN", 8), "mechanisms %.*s",
           (int)n, (const char *)mech);
    const uint8_t *loc = rb_longstr(&r, &n);
    CHECK(!r.err);
    CHECKF(memmem(loc, n, "en_US", 5) != NULL, "locales %.*s", (int)n, (const char *)loc);
    raw_frame_free(&f);

    CHECK(raw_send_start_ok(fd, "PLAIN", "\0guest\0guest", 12, true) == 0);
    raw_tune_t tune;
    CHECK(raw_read_tune(fd, &tune, 5000) == 0);
    harness_log("tune: channel_max %u frame_max %u heartbeat %u", tune.channel_max,
                tune.frame_max, tune.heartbeat);
    CHECK_EQ(tune.channel_max, 2047);
    CHECK_EQ(tune.frame_max, 131072);
    CHECK_EQ(tune.heartbeat, 60);
    CHECK(raw_send_tune_ok(fd, 2047, 131072, 0) == 0);
    CHECK(raw_open_vhost(fd, "/") == 0);

    /* Client-initiated close: close-ok on channel 0, then the server closes the socket. */
    wbuf_t w = {0};
    wb_connection_close(&w, 200, "bye");
    raw_send_wbuf(fd, &w);
    raw_expect_close_ok(fd);
    /* Nothing may follow close-ok (EOF is fine, any byte is not). */
    size_t extra = 0;
    raw_wait_closed(fd, 300, &extra);
    CHECK_EQ(extra, 0);
    close(fd);
}

/* tune-ok values outside [4096, 131072] (and 0, "no limit", when the server has a limit):
 * no connection.close, the socket is closed after RabbitMQ's 3 s silent-close delay. */
static void check_bad_tune_ok(const harness_broker_t *b, uint16_t channel_max,
                              uint32_t frame_max)
{
    int fd = raw_connect(b);
    raw_tune_t tune;
    raw_login(fd, &tune);
    CHECK(raw_send_tune_ok(fd, channel_max, frame_max, 0) == 0);
    int64_t t0 = harness_now_ms();
    size_t extra = 0;
    int rc = raw_wait_closed(fd, 6000, &extra);
    int64_t ms = harness_now_ms() - t0;
    harness_log("tune-ok channel_max=%u frame_max=%u: socket closed after %lld ms, %zu bytes "
                "sent", channel_max, frame_max, (long long)ms, extra);
    CHECKF(rc == 0, "socket still open 6 s after tune-ok channel_max=%u frame_max=%u",
           channel_max, frame_max);
    CHECKF(extra == 0, "server sent %zu bytes (RabbitMQ sends nothing)", extra);
    CHECKF(ms >= 2000, "closed after %lld ms; RabbitMQ waits 3 s before closing", (long long)ms);
    close(fd);
}

int main(void)
{
    harness_watchdog(50);
    harness_broker_t b;
    harness_broker_start(&b);

    /* channel_max 0 = "no limit": the server's 2047 wins. rabbitmq-c cannot ask for frame_max 0
     * (it would size its buffers to 0), so ask for more than the server allows instead. */
    amqp_connection_state_t conn = harness_connect(&b, 0, 1 << 20, 0);
    check_server_properties(conn);
    CHECK_EQ(amqp_get_channel_max(conn), 2047);
    CHECK_EQ(amqp_get_frame_max(conn), 131072);
    CHECK_EQ(amqp_get_heartbeat(conn), 0);
    harness_channel_open(conn, 1);
    harness_channel_open(conn, 2047);
    CHECK_REPLY(amqp_channel_close(conn, 2047, AMQP_REPLY_SUCCESS));
    CHECK_REPLY(amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS));
    harness_disconnect(conn);

    /* A smaller frame_max is taken as asked, and a 100 KB message crosses it in 8 KB frames. */
    conn = harness_connect(&b, 16, 8192, 0);
    CHECK_EQ(amqp_get_frame_max(conn), 8192);
    CHECK_EQ(amqp_get_channel_max(conn), 16);
    harness_channel_open(conn, 1);
    amqp_bytes_t q = harness_queue_declare_anon(conn, 1);
    static uint8_t body[100000];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (uint8_t)(i * 31 + 7);
    harness_publish_get(conn, 1, q, (amqp_bytes_t){.len = sizeof body, .bytes = body});
    amqp_bytes_free(q);
    harness_disconnect(conn);

    check_raw_start_and_tune(&b);
    check_bad_tune_ok(&b, 2047, 0);
    check_bad_tune_ok(&b, 2047, 1024);
    check_bad_tune_ok(&b, 2047, 1 << 20);
    /* channel_max 0 means "no limit", higher than the server's 2047: refused as RabbitMQ. */
    check_bad_tune_ok(&b, 0, 131072);

    return harness_finish(&b);
}
