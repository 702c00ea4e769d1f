/* 50-durability-confirms — what a publisher was told is durable survives a SIGKILL of warrend:
 *  - publisher confirms: every persistent message to a durable queue that was confirmed (basic.ack,
 *    single or multiple) is there after the broker is killed with SIGKILL and started again on
 *    its data dir, in publish order, with its body intact; both when the kill comes right after
 *    the last confirm of two channels and in the middle of a stream of 20,000 publishes (the
 *    unconfirmed tail may or may not be there, but nothing else and nothing twice).
 *  - transactions: after tx.commit-ok the transaction's persistent messages survive a SIGKILL
 *    right after it; rolled-back ones and those published after the last commit do not come.
 *  - 3,000 confirmed messages, every tenth persistent, in a durable queue (past its in-memory
 *    window, so that transient ones are paged to disk too): after a SIGKILL exactly the 300
 *    persistent ones come back, in order. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static harness_broker_t s_broker;
static amqp_connection_state_t s_conn; /* owned */

static const amqp_basic_properties_t s_persistent = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
                                                     .delivery_mode = 2};

static void crash_restart(void)
{
    s_conn = harness_reopen(&s_broker, s_conn, true);
}

/* "<tag>-<i>;" padded to 20..520 bytes with a pattern that depends on i. */
static size_t make_body(char *out, const char *tag, int i)
{
    int n = snprintf(out, 64, "%s-%d;", tag, i);
    size_t len = 20 + (size_t)(i * 37 % 500);
    for (size_t k = (size_t)n; k < len; k++)
        out[k] = (char)('A' + (k * 7 + (size_t)i) % 26);
    return len;
}

static void publish(amqp_channel_t ch, const char *q, const char *tag, int i)
{
    char body[600];
    size_t len = make_body(body, tag, i);
    CHECK_AMQP(amqp_basic_publish(s_conn, ch, amqp_empty_bytes, amqp_cstring_bytes(q), 0, 0,
                                  &s_persistent, (amqp_bytes_t){len, body}));
}

/* Highest confirmed publish number per channel (confirms come in order on a channel). */
static uint64_t s_confirmed[4];

/* Handle one frame if one arrives within timeout_ms: 1 when it was a confirm, 0 on timeout. */
static int read_confirm(int timeout_ms)
{
    amqp_frame_t f;
    amqp_maybe_release_buffers(s_conn);
    int st = harness_next_frame(s_conn, &f, timeout_ms);
    if (st == AMQP_STATUS_TIMEOUT)
        return 0;
    CHECKF(st == 0, "waiting for confirms: %s", amqp_error_string2(st));
    CHECKF(f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD,
           "wanted basic.ack, got frame type %u (%s) on channel %u", f.frame_type,
           f.frame_type == AMQP_FRAME_METHOD ? amqp_method_name(f.payload.method.id) : "-",
           f.channel);
    CHECK(f.channel >= 1 && f.channel <= 3);
    amqp_basic_ack_t *ack = f.payload.method.decoded;
    CHECKF(ack->delivery_tag > s_confirmed[f.channel], "ack %llu on channel %u after %llu",
           (unsigned long long)ack->delivery_tag, f.channel,
           (unsigned long long)s_confirmed[f.channel]);
    CHECKF(ack->multiple || ack->delivery_tag == s_confirmed[f.channel] + 1,
           "single ack %llu skips past %llu", (unsigned long long)ack->delivery_tag,
           (unsigned long long)s_confirmed[f.channel]);
    s_confirmed[f.channel] = ack->delivery_tag;
    return 1;
}

/* Drain q with a consumer (no-ack) and check it holds <tag>-0 .. <tag>-(k-1) for a k with
 * min <= k <= max: in order, intact, nothing twice. Returns k. */
static int expect_sequence(const char *q, const char *tag, int min, int max)
{
    uint32_t n = harness_queue_count(s_conn, 1, q);
    CHECKF(n >= (uint32_t)min && n <= (uint32_t)max, "queue %s counts %u, want %d..%d", q, n, min,
           max);
    harness_channel_open(s_conn, 9);
    harness_consume(s_conn, 9, q, NULL, HARNESS_CONSUME_NO_ACK, amqp_empty_table);
    char want[600];
    for (int i = 0; i < (int)n; i++) {
        amqp_envelope_t env;
        struct timeval tv = {.tv_sec = 10};
        amqp_maybe_release_buffers(s_conn);
        amqp_rpc_reply_t r = amqp_consume_message(s_conn, &env, &tv, 0);
        CHECKF(r.reply_type == AMQP_RESPONSE_NORMAL, "queue %s: message %d of %u did not come", q,
               i, n);
        size_t len = make_body(want, tag, i);
        CHECKF(env.message.body.len == len && memcmp(env.message.body.bytes, want, len) == 0,
               "queue %s message %d: got %zu bytes \"%.*s...\", want %zu bytes \"%.*s...\"", q, i,
               env.message.body.len, 12, (const char *)env.message.body.bytes, len, 12, want);
        amqp_destroy_envelope(&env);
    }
    CHECK_REPLY(amqp_channel_close(s_conn, 9, AMQP_REPLY_SUCCESS));
    CHECK_EQ(harness_queue_count(s_conn, 1, q), 0);
    return (int)n;
}

/* Two confirm channels, 5,000 each, interleaved; SIGKILL right after the last confirm. */
static void confirms_then_kill(void)
{
    enum { EACH = 5000 };
    harness_queue_declare(s_conn, 1, "dq.a", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    harness_queue_declare(s_conn, 1, "dq.b", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    for (amqp_channel_t ch = 1; ch <= 2; ch++) {
        if (ch > 1)
            harness_channel_open(s_conn, ch);
        harness_confirm_select(s_conn, ch);
    }
    s_confirmed[1] = s_confirmed[2] = 0;
    for (int i = 0; i < EACH; i++) {
        publish(1, "dq.a", "a", i);
        publish(2, "dq.b", "b", i);
        while (read_confirm(0))
            ;
    }
    while (s_confirmed[1] < EACH || s_confirmed[2] < EACH)
        CHECKF(read_confirm(10000), "confirms stopped at %llu and %llu of %d",
               (unsigned long long)s_confirmed[1], (unsigned long long)s_confirmed[2], EACH);
    crash_restart();
    expect_sequence("dq.a", "a", EACH, EACH);
    expect_sequence("dq.b", "b", EACH, EACH);
    harness_log("2 x %d confirmed, SIGKILL right after the last confirm: all there, in order",
                EACH);
}

/* One confirm channel streaming 20,000 (at most 1,000 unconfirmed); SIGKILL once 5,000 are
 * confirmed, mid-stream. */
static void kill_mid_stream(void)
{
    enum { TOTAL = 20000, KILL_AT = 5000, WINDOW = 1000 };
    harness_queue_declare(s_conn, 1, "dq.c", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    harness_confirm_select(s_conn, 1);
    s_confirmed[1] = 0;
    int published = 0;
    while (s_confirmed[1] < KILL_AT) {
        if (published < TOTAL && published - (int)s_confirmed[1] < WINDOW) {
            publish(1, "dq.c", "c", published++);
            while (read_confirm(0))
                ;
        } else {
            CHECKF(read_confirm(10000), "confirms stopped at %llu",
                   (unsigned long long)s_confirmed[1]);
        }
    }
    int confirmed = (int)s_confirmed[1];
    crash_restart();
    int k = expect_sequence("dq.c", "c", confirmed, published);
    harness_log("stream: %d published, %d confirmed when SIGKILL came; %d there after the restart",
                published, confirmed, k);
}

static void tx(amqp_channel_t ch, char what)
{
    harness_tx(s_conn, ch, what);
}

/* tx: 1,000 committed, 10 rolled back, 500 committed, 10 uncommitted, SIGKILL. */
static void tx_then_kill(void)
{
    harness_queue_declare(s_conn, 1, "dq.tx", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    harness_channel_open(s_conn, 2);
    tx(2, 's');
    for (int i = 0; i < 1000; i++)
        publish(2, "dq.tx", "t", i);
    tx(2, 'c');
    for (int i = 0; i < 10; i++)
        publish(2, "dq.tx", "rolledback", i);
    tx(2, 'r');
    for (int i = 1000; i < 1500; i++)
        publish(2, "dq.tx", "t", i);
    tx(2, 'c');
    for (int i = 1500; i < 1510; i++)
        publish(2, "dq.tx", "t", i);
    harness_sync(s_conn, 1); /* the uncommitted ones have reached the broker */
    crash_restart();
    expect_sequence("dq.tx", "t", 1500, 1500);
    harness_log("tx: 1,500 committed in 2 commits survive a SIGKILL right after commit-ok; "
                "rolled-back and uncommitted ones do not");
}

/* Past the window: transient messages paged to disk must not come back after a crash. */
static void transient_paged_then_kill(void)
{
    enum { TOTAL = 3000 };
    harness_queue_declare(s_conn, 1, "dq.mixed", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    harness_confirm_select(s_conn, 1);
    s_confirmed[1] = 0;
    amqp_basic_properties_t transient = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
                                         .delivery_mode = 1};
    char body[600];
    int persistent = 0;
    for (int i = 0; i < TOTAL; i++) {
        if (i % 10 == 0) {
            publish(1, "dq.mixed", "m", persistent++);
        } else {
            size_t len = make_body(body, "transient", i);
            CHECK_AMQP(amqp_basic_publish(s_conn, 1, amqp_empty_bytes,
                                          amqp_cstring_bytes("dq.mixed"), 0, 0, &transient,
                                          (amqp_bytes_t){len, body}));
        }
        while (read_confirm(0))
            ;
    }
    while (s_confirmed[1] < TOTAL)
        CHECKF(read_confirm(10000), "confirms stopped at %llu of %d",
               (unsigned long long)s_confirmed[1], TOTAL);
    CHECK_EQ(harness_queue_count(s_conn, 1, "dq.mixed"), TOTAL);
    crash_restart();
    expect_sequence("dq.mixed", "m", persistent, persistent);
    harness_log("%d confirmed, %d of them persistent, SIGKILL: exactly the persistent ones came "
                "back",
                TOTAL, persistent);
}

int main(void)
{
    harness_watchdog(100);
    harness_broker_start(&s_broker);
    harness_require_own_broker(&s_broker);
    s_conn = harness_open(&s_broker);

    confirms_then_kill();
    kill_mid_stream();
    tx_then_kill();
    transient_paged_then_kill();

    harness_disconnect(s_conn);
    CHECK(harness_broker_stop(&s_broker) == 0);
    harness_log("PASS");
    return 0;
}
