/* 20-channel-confirms — publisher confirms: confirm.select, basic.ack with sequence numbers
 * counted per channel from the first publish after confirm.select, the multiple flag, unroutable
 * messages (acked too; with mandatory the basic.return comes first), and confirm/tx exclusion.
 * Every basic.ack frame is collected; each publish 1..N must be confirmed exactly once (a
 * multiple ack confirms every still unconfirmed number up to its tag) and no ack may name a
 * number that was not published or confirm nothing new.
 * RabbitMQ 3.10.8 answers (asserted below):
 *  confirm.select -> select-ok, also when repeated; publishes made before it are not numbered.
 *  a publish routed to two queues is acked once; when it is acked both queues hold it.
 *  unroutable messages are acked (never nacked); with mandatory the basic.return 312 "NO_ROUTE"
 *      arrives before the ack that covers it.
 *  confirm.select on a transactional channel: channel.close 406 "PRECONDITION_FAILED - cannot
 *      switch from tx to confirm mode" (85.10); tx.select on a confirm channel: 406
 *      "PRECONDITION_FAILED - cannot switch from confirm to tx mode" (90.10). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

#define N 1000

static char s_q[64], s_nowhere[64];

/* Message seq's fate: routed, unroutable, unroutable with mandatory. */
enum { ROUTED, UNROUTABLE, RETURNED };

static int fate(int seq)
{
    if (seq % 11 == 0)
        return RETURNED;
    if (seq % 7 == 0)
        return UNROUTABLE;
    return ROUTED;
}

typedef struct confirms {
    bool confirmed[N + 1];
    bool returned[N + 1];
    int nconfirmed, nreturned, nacks, nmultiple;
} confirms_t;

/* Read frames on ch until seqs 1..upto are all confirmed. */
static void collect(amqp_connection_state_t conn, amqp_channel_t ch, confirms_t *c, int upto)
{
    while (c->nconfirmed < upto) {
        amqp_frame_t f;
        amqp_maybe_release_buffers(conn);
        int st = harness_next_frame(conn, &f, 10000);
        CHECKF(st == 0, "waiting for confirms (%d of %d so far): %s", c->nconfirmed, upto,
               amqp_error_string2(st));
        CHECKF(f.frame_type == AMQP_FRAME_METHOD, "frame type %u outside a method", f.frame_type);
        CHECK_EQ(f.channel, ch);
        if (f.payload.method.id == AMQP_BASIC_RETURN_METHOD) {
            amqp_basic_return_t *ret = f.payload.method.decoded;
            CHECK_EQ(ret->reply_code, 312);
            CHECK(ret->reply_text.len == 8 && memcmp(ret->reply_text.bytes, "NO_ROUTE", 8) == 0);
            amqp_message_t msg;
            CHECK_REPLY(amqp_read_message(conn, ch, &msg, 0));
            int seq = harness_body_int(msg.body);
            amqp_destroy_message(&msg);
            CHECKF(seq >= 1 && seq <= upto && fate(seq) == RETURNED, "returned message %d", seq);
            CHECKF(!c->confirmed[seq], "basic.return for %d after its ack", seq);
            CHECKF(!c->returned[seq], "message %d returned twice", seq);
            c->returned[seq] = true;
            c->nreturned++;
            continue;
        }
        CHECKF(f.payload.method.id == AMQP_BASIC_ACK_METHOD, "got %s while waiting for acks",
               amqp_method_name(f.payload.method.id));
        amqp_basic_ack_t *ack = f.payload.method.decoded;
        int tag = (int)ack->delivery_tag;
        CHECKF(tag >= 1 && tag <= upto, "ack for sequence number %d, published 1..%d", tag, upto);
        c->nacks++;
        int newly = 0;
        if (ack->multiple) {
            c->nmultiple++;
            for (int s = 1; s <= tag; s++) {
                if (!c->confirmed[s]) {
                    c->confirmed[s] = true;
                    newly++;
                }
            }
        } else {
            CHECKF(!c->confirmed[tag], "sequence number %d acked twice", tag);
            c->confirmed[tag] = true;
            newly = 1;
        }
        CHECKF(newly > 0, "ack %d (multiple) confirms nothing new", tag);
        c->nconfirmed += newly;
    }
}

static void publish(amqp_connection_state_t conn, amqp_channel_t ch, int seq)
{
    char body[16];
    snprintf(body, sizeof body, "%d", seq);
    int f = fate(seq);
    harness_publish_props(conn, ch, "", f == ROUTED ? s_q : s_nowhere, f == RETURNED, NULL, body);
}

static void check_confirms(amqp_connection_state_t conn)
{
    static confirms_t c;
    memset(&c, 0, sizeof c);
    harness_channel_open(conn, 2);
    /* not numbered: published before confirm.select */
    harness_publish(conn, 2, "", s_q, "0");
    harness_confirm_select(conn, 2);
    harness_confirm_select(conn, 2); /* again: fine */
    for (int seq = 1; seq <= N; seq++)
        publish(conn, 2, seq);
    collect(conn, 2, &c, N);
    harness_expect_quiet(conn, 300, "after every publish was confirmed");
    int want_returned = 0, want_routed = 1; /* "0" */
    for (int s = 1; s <= N; s++) {
        CHECKF(c.confirmed[s], "message %d never confirmed", s);
        want_returned += fate(s) == RETURNED;
        want_routed += fate(s) == ROUTED;
        CHECKF(c.returned[s] == (fate(s) == RETURNED), "message %d: returned %d", s,
               c.returned[s]);
    }
    CHECK_EQ(c.nreturned, want_returned);
    harness_log("%d publishes: %d basic.ack frames (%d multiple), %d basic.return", N, c.nacks,
                c.nmultiple, c.nreturned);
    CHECK_EQ(harness_wait_message_count(conn, 1, s_q, (uint32_t)want_routed, 5000),
             want_routed);

    /* Another channel numbers its own publishes from 1. */
    static confirms_t c3;
    memset(&c3, 0, sizeof c3);
    harness_channel_open(conn, 3);
    harness_confirm_select(conn, 3);
    for (int seq = 1; seq <= 3; seq++)
        publish(conn, 3, seq);
    collect(conn, 3, &c3, 3);
    /* and channel 2 carries on from N + 1 */
    harness_publish(conn, 2, "", s_q, "late");
    amqp_frame_t f;
    CHECK_AMQP(harness_next_frame(conn, &f, 10000));
    CHECKF(f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD,
           "want basic.ack");
    CHECK_EQ(f.channel, 2);
    CHECK_EQ(((amqp_basic_ack_t *)f.payload.method.decoded)->delivery_tag, N + 1);
    CHECK_REPLY(amqp_channel_close(conn, 3, AMQP_REPLY_SUCCESS));
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    harness_log("confirms: ok");
}

/* A publish routed to several queues is still one sequence number, acked once. */
static void check_fanout(amqp_connection_state_t conn)
{
    char x[64], q[2][64];
    snprintf(x, sizeof x, "it-confirms-fan-%d", (int)getpid());
    harness_exchange_declare(conn, 1, x, "fanout", HARNESS_EXCHANGE_AUTO_DELETE, amqp_empty_table);
    for (int k = 0; k < 2; k++) {
        snprintf(q[k], sizeof q[k], "it-confirms-fan%d-%d", k, (int)getpid());
        harness_queue_declare(conn, 1, q[k], HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
        harness_queue_bind(conn, 1, q[k], x, "", amqp_empty_table);
    }
    static confirms_t c;
    memset(&c, 0, sizeof c);
    harness_channel_open(conn, 5);
    harness_confirm_select(conn, 5);
    for (int seq = 1; seq <= 50; seq++) {
        char body[16];
        snprintf(body, sizeof body, "%d", seq);
        harness_publish(conn, 5, x, "", body);
    }
    collect(conn, 5, &c, 50);
    harness_expect_quiet(conn, 300, "after 50 fanout publishes were confirmed");
    for (int k = 0; k < 2; k++) {
        uint32_t m = 0;
        CHECK_REPLY(harness_queue_peek(conn, 1, q[k], &m, NULL));
        CHECK_EQ(m, 50); /* confirmed means enqueued everywhere */
        harness_queue_delete(conn, 1, q[k]);
    }
    CHECK_REPLY(amqp_channel_close(conn, 5, AMQP_REPLY_SUCCESS));
    harness_log("fanout to 2 queues: 50 publishes, %d acks: ok", c.nacks);
}

static void check_tx_exclusion(amqp_connection_state_t conn)
{
    harness_channel_open(conn, 4);
    harness_tx(conn, 4, 's');
    amqp_confirm_select(conn, 4);
    harness_expect_channel_close(conn, 4, amqp_get_rpc_reply(conn), 406,
                                 "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
                                 85, 10);
    harness_channel_open(conn, 4);
    harness_confirm_select(conn, 4);
    amqp_tx_select(conn, 4);
    harness_expect_channel_close(conn, 4, amqp_get_rpc_reply(conn), 406,
                                 "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
                                 90, 10);
    harness_log("confirm and tx exclude each other: ok");
}

int main(void)
{
    harness_broker_t b;
    amqp_connection_state_t conn = harness_begin(&b, 55, NULL);
    snprintf(s_q, sizeof s_q, "it-confirms-%d", (int)getpid());
    snprintf(s_nowhere, sizeof s_nowhere, "it-confirms-nowhere-%d", (int)getpid());

    harness_queue_declare(conn, 1, s_q, 0, amqp_empty_table);
    check_confirms(conn);
    check_fanout(conn);
    check_tx_exclusion(conn);
    harness_queue_delete(conn, 1, s_q);
    harness_disconnect(conn);
    return harness_finish(&b);
}
