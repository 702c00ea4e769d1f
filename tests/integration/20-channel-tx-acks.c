/* 20-channel-tx-acks — acknowledgements inside a transaction (tx.select): an ack, nack or reject
 * in an uncommitted transaction settles the delivery tag at once as far as the channel's
 * bookkeeping goes (a second ack of it is an error, basic.recover leaves it alone), while the
 * queue only forgets the message at tx.commit (tx.rollback, or the channel closing, gives it
 * back). 20-channel-tx covers the plain commit/rollback/close cases.
 * RabbitMQ 3.10.8 answers (asserted below; three messages 1 2 3 fetched with basic.get, tags
 * 1 2 3, in a transaction on channel 2):
 *  - ack 1, ack 1 again: channel.close 406 "PRECONDITION_FAILED - unknown delivery tag 1"
 *    (60.80) at once, with nothing more sent (no tx.commit needed), exactly as outside a
 *    transaction; the transaction is discarded: all three are back in the queue, redelivered.
 *  - ack 2, ack 2 again, tx.commit: the answer to tx.commit is that channel.close (tag 2), not
 *    commit-ok; nothing was committed (all three back).
 *  - ack 3, then ack multiple=true up to 3: 406 "... unknown delivery tag 3" (60.80), although
 *    1 and 2 are still unacked. ack multiple up to 2, then ack 1: 406 "... tag 1"; ack multiple
 *    up to 2 twice: 406 "... tag 2".
 *  - fine: ack 2 then ack multiple up to 3 (commits all three away); ack 2, tx.rollback, ack 2
 *    again, tx.commit (2 gone, 1 and 3 back when the channel closes).
 *  - basic.recover(requeue=true) after an uncommitted ack of 2: only 1 and 3 go back to the
 *    queue (redelivered, to basic.get or to the channel's consumer); 2 does not come back, and
 *    tx.commit then removes it for good. After tx.rollback the ack is undone: 2 is unacked
 *    again and the next basic.recover requeues it (the queue holds 1 2 3 in order).
 *  - nack or reject (requeue true or false) of a tag in the transaction, then an ack of it:
 *    406 "... unknown delivery tag N" (60.80); nack multiple up to 2 then reject 1: 406
 *    "... tag 1" with class/method 60.90 (the reject). Nothing is committed (all three back,
 *    nothing dead-lettered). A nack with requeue=true in the transaction is not requeued by
 *    basic.recover either, only by tx.commit. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static amqp_connection_state_t s_conn;
static char s_q[128];

static void tx(char what)
{
    harness_tx(s_conn, 2, what);
}

/* The queue comes to hold exactly want (bodies, "r" for redelivered), taken from it. */
static void expect_queue(uint32_t n, const char *want, const char *what)
{
    harness_expect_count(s_conn, 1, s_q, n, what);
    char got[256];
    harness_drain_marked(s_conn, 1, s_q, got, sizeof got);
    CHECKF(strcmp(got, want) == 0, "%s: queue held \"%s\", want \"%s\"", what, got, want);
}

/* Publish 1 2 3, open channel 2 in a transaction and basic.get the three there: tags 1 2 3. */
static void setup(void)
{
    harness_publish_range(s_conn, s_q, 1, 3);
    harness_expect_count(s_conn, 1, s_q, 3, "published");
    harness_channel_open(s_conn, 2);
    tx('s');
    for (int i = 1; i <= 3; i++) {
        harness_got_t g;
        CHECKF(harness_get(s_conn, 2, s_q, false, &g), "get %d: empty", i);
        char want[4];
        snprintf(want, sizeof want, "%d", i);
        CHECK_STREQ(g.body, want);
        CHECK_EQ(g.delivery_tag, i);
        CHECK(!g.redelivered);
        harness_got_free(&g);
    }
}

/* The next frame, with nothing more sent, is channel.close 406 "unknown delivery tag tag" on
 * channel 2 for class 60 method method; close-ok is sent. A failure names the caller's line. */
#define expect_unknown_tag_now(tag, method) expect_unknown_tag_now_at(__LINE__, tag, method)

static void expect_unknown_tag_now_at(int line, uint64_t tag, uint16_t method)
{
    amqp_frame_t f;
    int st = harness_next_frame(s_conn, &f, 5000);
    if (st != 0)
        harness_fail(__FILE__, line, "channel.close", "no channel.close 406 (unknown delivery tag "
                     "%llu) within 5 s: %s", (unsigned long long)tag, amqp_error_string2(st));
    if (f.frame_type != AMQP_FRAME_METHOD || f.channel != 2 ||
        f.payload.method.id != AMQP_CHANNEL_CLOSE_METHOD)
        harness_fail(__FILE__, line, "channel.close",
                     "want channel.close 406 (unknown delivery tag %llu) on channel 2, got frame "
                     "type %u on channel %u (%s)", (unsigned long long)tag, f.frame_type,
                     f.channel, f.frame_type == AMQP_FRAME_METHOD
                                    ? amqp_method_name(f.payload.method.id) : "-");
    amqp_rpc_reply_t r = {.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION, .reply = f.payload.method};
    char text[128];
    snprintf(text, sizeof text, "PRECONDITION_FAILED - unknown delivery tag %llu",
             (unsigned long long)tag);
    harness_expect_channel_close(s_conn, 2, r, 406, text, 60, method);
}

/* ---- (a) acking a tag twice in a transaction ------------------------------------------------- */

static void check_double_acks(void)
{
    /* single ack twice: refused at once */
    setup();
    CHECK_AMQP(amqp_basic_ack(s_conn, 2, 1, 0));
    CHECK_AMQP(amqp_basic_ack(s_conn, 2, 1, 0));
    expect_unknown_tag_now(1, 80);
    expect_queue(3, "1r 2r 3r", "after the double ack closed the channel");

    /* followed by tx.commit: the commit is answered by the channel.close */
    setup();
    CHECK_AMQP(amqp_basic_ack(s_conn, 2, 2, 0));
    CHECK_AMQP(amqp_basic_ack(s_conn, 2, 2, 0));
    amqp_tx_commit(s_conn, 2);
    harness_expect_channel_close(s_conn, 2, amqp_get_rpc_reply(s_conn), 406,
                                 "PRECONDITION_FAILED - unknown delivery tag 2", 60, 80);
    expect_queue(3, "1r 2r 3r", "double ack then tx.commit: nothing committed");

    /* ack 3, then ack multiple up to 3 (1 and 2 still unacked) */
    setup();
    CHECK_AMQP(amqp_basic_ack(s_conn, 2, 3, 0));
    CHECK_AMQP(amqp_basic_ack(s_conn, 2, 3, 1));
    expect_unknown_tag_now(3, 80);
    expect_queue(3, "1r 2r 3r", "ack multiple up to an acked tag");

    /* ack multiple up to 2, then ack 1 */
    setup();
    CHECK_AMQP(amqp_basic_ack(s_conn, 2, 2, 1));
    CHECK_AMQP(amqp_basic_ack(s_conn, 2, 1, 0));
    expect_unknown_tag_now(1, 80);
    expect_queue(3, "1r 2r 3r", "single ack of a tag covered by a multiple ack");

    /* ack multiple up to 2, twice */
    setup();
    CHECK_AMQP(amqp_basic_ack(s_conn, 2, 2, 1));
    CHECK_AMQP(amqp_basic_ack(s_conn, 2, 2, 1));
    expect_unknown_tag_now(2, 80);
    expect_queue(3, "1r 2r 3r", "multiple ack twice");

    /* not errors: ack 2 then multiple up to 3; ack again after a rollback */
    setup();
    CHECK_AMQP(amqp_basic_ack(s_conn, 2, 2, 0));
    CHECK_AMQP(amqp_basic_ack(s_conn, 2, 3, 1));
    harness_sync(s_conn, 2);
    tx('c');
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));
    expect_queue(0, "", "ack 2 then ack multiple up to 3, committed");

    setup();
    CHECK_AMQP(amqp_basic_ack(s_conn, 2, 2, 0));
    tx('r');
    CHECK_AMQP(amqp_basic_ack(s_conn, 2, 2, 0));
    harness_sync(s_conn, 2);
    tx('c');
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));
    expect_queue(2, "1r 3r", "ack, rollback, ack again, commit");
    harness_log("(a) second ack of a tag in a transaction: 406 at once: ok");
}

/* ---- (b) basic.recover and tx.rollback after an uncommitted ack ------------------------------ */

static void check_recover(void)
{
    /* basic.get: recover puts back 1 and 3 only */
    setup();
    CHECK_AMQP(amqp_basic_ack(s_conn, 2, 2, 0));
    amqp_basic_recover(s_conn, 2, 1);
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));
    harness_expect_count(s_conn, 1, s_q, 2, "basic.recover after an uncommitted ack of 2");
    const char *want[] = {"1", "3"};
    for (int i = 0; i < 2; i++) {
        harness_got_t g;
        CHECKF(harness_get(s_conn, 2, s_q, false, &g), "recovered '%s' missing", want[i]);
        CHECKF(strcmp(g.body, want[i]) == 0 && g.redelivered,
               "after recover got '%s' (redelivered %d), want '%s' redelivered", g.body,
               g.redelivered, want[i]);
        CHECK_EQ(g.delivery_tag, 4 + i);
        harness_got_free(&g);
    }
    harness_got_t g;
    if (harness_get(s_conn, 2, s_q, false, &g)) {
        char body[64];
        snprintf(body, sizeof body, "%.60s", g.body);
        harness_got_free(&g);
        CHECKF(0, "basic.recover requeued '%s', acked in the open transaction", body);
    }
    tx('c');
    CHECK_EQ(harness_queue_count(s_conn, 1, s_q), 0);
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));
    expect_queue(2, "1r 3r", "recover, commit, close: 2 gone for good");

    /* a consumer: recover redelivers 1 and 3 to it, not 2 */
    harness_publish_range(s_conn, s_q, 1, 3);
    harness_expect_count(s_conn, 1, s_q, 3, "published");
    harness_channel_open(s_conn, 2);
    tx('s');
    harness_consume(s_conn, 2, s_q, "c", 0, amqp_empty_table);
    CHECK_EQ(harness_expect_delivery(s_conn, "c", 1, false), 1);
    CHECK_EQ(harness_expect_delivery(s_conn, "c", 2, false), 2);
    CHECK_EQ(harness_expect_delivery(s_conn, "c", 3, false), 3);
    CHECK_AMQP(amqp_basic_ack(s_conn, 2, 2, 0));
    amqp_basic_recover(s_conn, 2, 1);
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));
    CHECK_EQ(harness_expect_delivery(s_conn, "c", 1, true), 4);
    CHECK_EQ(harness_expect_delivery(s_conn, "c", 3, true), 5);
    harness_expect_quiet(s_conn, 300, "a redelivery of the message acked in the open transaction");
    tx('c');
    harness_cancel(s_conn, 2, "c");
    CHECK_EQ(harness_queue_count(s_conn, 1, s_q), 0);
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));
    expect_queue(2, "1r 3r", "consumer: recover, commit, close");

    /* rollback makes 2 unacked again: the next recover requeues it */
    setup();
    CHECK_AMQP(amqp_basic_ack(s_conn, 2, 2, 0));
    amqp_basic_recover(s_conn, 2, 1);
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));
    harness_expect_count(s_conn, 1, s_q, 2, "recover before the rollback");
    tx('r'); /* synchronous: the rollback has been done when rollback-ok comes */
    CHECK_EQ(harness_queue_count(s_conn, 1, s_q), 2);
    amqp_basic_recover(s_conn, 2, 1);
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));
    expect_queue(3, "1r 2r 3r", "recover after the rollback");
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));
    CHECK_EQ(harness_queue_count(s_conn, 1, s_q), 0);
    harness_log("(b) basic.recover skips uncommitted acks; rollback restores them: ok");
}

/* ---- (c) nack / reject, then ack ------------------------------------------------------------- */

static void check_nack_then_ack(void)
{
    static const struct {
        const char *what;
        char kind; /* 'n' nack, 'r' reject */
        uint64_t tag;
        bool multiple, requeue;
        uint64_t ack_tag;
        bool ack_multiple;
    } cases[] = {
        {"nack requeue=false, ack", 'n', 1, false, false, 1, false},
        {"nack requeue=true, ack", 'n', 1, false, true, 1, false},
        {"reject requeue=false, ack", 'r', 3, false, false, 3, false},
        {"reject requeue=true, ack multiple", 'r', 3, false, true, 3, true},
        {"nack multiple requeue=false, ack", 'n', 2, true, false, 1, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setup();
        if (cases[i].kind == 'n')
            CHECK_AMQP(amqp_basic_nack(s_conn, 2, cases[i].tag, cases[i].multiple,
                                       cases[i].requeue));
        else
            CHECK_AMQP(amqp_basic_reject(s_conn, 2, cases[i].tag, cases[i].requeue));
        CHECK_AMQP(amqp_basic_ack(s_conn, 2, cases[i].ack_tag, cases[i].ack_multiple));
        expect_unknown_tag_now(cases[i].ack_tag, 80);
        expect_queue(3, "1r 2r 3r", cases[i].what);
        harness_log("%s: 406: ok", cases[i].what);
    }

    /* nack multiple, then reject: the close names basic.reject */
    setup();
    CHECK_AMQP(amqp_basic_nack(s_conn, 2, 2, 1, 1));
    CHECK_AMQP(amqp_basic_reject(s_conn, 2, 1, 1));
    expect_unknown_tag_now(1, 90);
    expect_queue(3, "1r 2r 3r", "nack multiple, reject");

    /* nack requeue=true in the transaction: recover leaves it, commit requeues it */
    setup();
    CHECK_AMQP(amqp_basic_nack(s_conn, 2, 1, 0, 1));
    amqp_basic_recover(s_conn, 2, 1);
    CHECK_REPLY(amqp_get_rpc_reply(s_conn));
    harness_expect_count(s_conn, 1, s_q, 2, "recover after an uncommitted nack");
    CHECK_EQ(harness_queue_count(s_conn, 1, s_q), 2);
    tx('c');
    expect_queue(3, "1r 2r 3r", "uncommitted nack requeue=true: requeued at commit");
    CHECK_REPLY(amqp_channel_close(s_conn, 2, AMQP_REPLY_SUCCESS));
    CHECK_EQ(harness_queue_count(s_conn, 1, s_q), 0);
    harness_log("(c) ack after nack/reject in a transaction: 406: ok");
}

int main(void)
{
    harness_broker_t b;
    s_conn = harness_begin(&b, 55, "it-txa");
    snprintf(s_q, sizeof s_q, "%s", harness_name("q"));
    harness_queue_delete(s_conn, 1, s_q);
    harness_queue_declare(s_conn, 1, s_q, 0, amqp_empty_table);

    check_double_acks();
    check_recover();
    check_nack_then_ack();

    harness_queue_delete(s_conn, 1, s_q);
    harness_disconnect(s_conn);
    return harness_finish(&b);
}
