/* 60-ext-length-reject — x-overflow reject-publish and reject-publish-dlx: a full queue refuses
 * new messages instead of dropping old ones; under publisher confirms the publisher gets
 * basic.nack for them.
 * RabbitMQ 3.10.8 answers (asserted below):
 *  - a publish is refused when the queue would then hold more than x-max-length ready messages
 *    or more than x-max-length-bytes ready body bytes (with limit 5 bytes holding "aa" "bb":
 *    "c" is taken, then "d" refused, then an empty body taken);
 *  - without confirms the refused message just vanishes; under confirms it is basic.nack'ed
 *    and the others acked, each tag exactly once (a nack may be multiple=true, covering tags
 *    already acked: seen for a mandatory publish);
 *  - reject-publish never dead-letters; reject-publish-dlx dead-letters the refused message
 *    (reason "maxlen", same x-death layout as any first death) and still nacks it;
 *  - a message routed to a full queue and to one with room: the second queue gets it, the
 *    publisher still gets basic.nack;
 *  - mandatory publish to a full queue: basic.nack, no basic.return (it was routed);
 *  - unacked messages do not count; once the queue drains publishes are accepted again. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

#define MAXPUB 64

static amqp_connection_state_t s_conn;
static uint64_t s_seq; /* publishes so far on the confirm channel 2 */

static void qdeclare(const char *q, long maxlen, long maxbytes, const char *overflow,
                     const char *dlq)
{
    harness_queue_delete(s_conn, 1, q);
    harness_args_t a;
    harness_queue_declare(s_conn, 1, q, 0,
                          harness_length_args(&a, maxlen, maxbytes, 'l', overflow, dlq));
}

/* Publish on channel 1 (no confirms) the space-separated words of bodies. */
static void publish_plain(const char *q, const char *bodies)
{
    harness_publish_words(s_conn, 1, "", q, bodies);
}

/* Publish on the confirm channel 2 the space-separated words of bodies ("-" is an empty body)
 * through exchange x with key (NULL: each to the queue named key through ""), then wait for
 * every confirm and return "a" or "n" per publish ("aann"). Any basic.return fails the test. */
static const char *publish_confirmed(const char *x, const char *key, const char *bodies,
                                     bool mandatory)
{
    static char result[MAXPUB + 1];
    char buf[512];
    snprintf(buf, sizeof buf, "%s", bodies);
    uint64_t first = s_seq + 1;
    int n = 0;
    for (char *save = NULL, *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        CHECK(n < MAXPUB);
        const char *body = strcmp(w, "-") == 0 ? "" : w;
        harness_publish_props(s_conn, 2, x, key, mandatory, NULL, body);
        result[n++] = '?';
        s_seq++;
    }
    result[n] = '\0';
    int pending = n;
    while (pending > 0) {
        amqp_frame_t f;
        int rc = harness_next_frame(s_conn, &f, 5000);
        CHECKF(rc == 0, "waiting for %d confirms: %s", pending, amqp_error_string2(rc));
        CHECKF(f.frame_type == AMQP_FRAME_METHOD && f.channel == 2,
               "unexpected frame type %u on channel %u", f.frame_type, f.channel);
        uint64_t tag;
        bool multiple;
        char what;
        if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            const amqp_basic_ack_t *a = f.payload.method.decoded;
            tag = a->delivery_tag;
            multiple = a->multiple;
            what = 'a';
        } else if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
            const amqp_basic_nack_t *a = f.payload.method.decoded;
            tag = a->delivery_tag;
            multiple = a->multiple;
            what = 'n';
        } else {
            CHECKF(0, "unexpected %s on the confirm channel",
                   amqp_method_name(f.payload.method.id));
        }
        CHECKF(tag >= first && tag < first + (uint64_t)n, "confirm for tag %llu, want %llu..%llu",
               (unsigned long long)tag, (unsigned long long)first,
               (unsigned long long)(first + (uint64_t)n - 1));
        int hi = (int)(tag - first);
        int lo = multiple ? 0 : hi;
        bool any = false;
        for (int i = lo; i <= hi; i++) {
            if (result[i] != '?') {
                CHECKF(multiple, "tag %llu confirmed twice", (unsigned long long)(first + i));
                continue;
            }
            result[i] = what;
            pending--;
            any = true;
        }
        CHECKF(any, "confirm for tag %llu confirms nothing new", (unsigned long long)tag);
    }
    return result;
}

static void expect_confirms(const char *x, const char *key, const char *bodies, bool mandatory,
                            const char *want, const char *what)
{
    const char *got = publish_confirmed(x, key, bodies, mandatory);
    CHECKF(strcmp(got, want) == 0, "%s: confirms \"%s\", want \"%s\"", what, got, want);
}

static void check_reject_publish(void)
{
    const char *dlq = harness_name("dlq"), *q = harness_name("rp");
    qdeclare(dlq, -1, -1, NULL, NULL);
    qdeclare(q, 2, -1, "reject-publish", dlq);

    /* no confirms: the refused ones vanish, nothing is dead-lettered */
    publish_plain(q, "1 2 3 4");
    harness_expect_count(s_conn, 1, q, 2, "reject-publish, no confirms");
    harness_expect_drain(s_conn, 1, q, "1 2", "reject-publish, no confirms");

    /* confirms: ack ack nack nack */
    expect_confirms("", q, "1 2 3 4", false, "aann", "reject-publish x-max-length 2");
    harness_expect_drain(s_conn, 1, q, "1 2", "reject-publish under confirms");
    harness_expect_steady(s_conn, 1, dlq, 0, 100, "refused publishes dead-lettered");

    /* drained: accepted again */
    expect_confirms("", q, "5 6 7", false, "aan", "reject-publish after draining");
    harness_expect_drain(s_conn, 1, q, "5 6", "reject-publish after draining");

    /* unacked do not count */
    expect_confirms("", q, "1 2", false, "aa", "refill");
    harness_channel_open(s_conn, 3);
    harness_got_t g;
    CHECK(harness_get(s_conn, 3, q, false, &g));
    harness_got_free(&g);
    CHECK(harness_get(s_conn, 3, q, false, &g));
    harness_got_free(&g);
    expect_confirms("", q, "3 4 5", false, "aan", "two unacked, x-max-length 2");
    CHECK_REPLY(amqp_channel_close(s_conn, 3, AMQP_REPLY_SUCCESS));
    /* the two unacked come back, over the limit: requeue is not a publish, they all stay */
    harness_expect_count(s_conn, 1, q, 4, "unacked requeued on channel close");
    harness_expect_drain(s_conn, 1, q, "1 2 3 4", "requeued over a reject-publish limit");

    /* bytes: "aa" "bb" "c" fit 5, "d" does not, an empty body does */
    const char *qb = harness_name("rp-bytes");
    qdeclare(qb, -1, 5, "reject-publish", NULL);
    expect_confirms("", qb, "aa bb c d -", false, "aaana", "reject-publish x-max-length-bytes 5");
    harness_expect_drain(s_conn, 1, qb, "aa bb c ", "reject-publish x-max-length-bytes 5");

    harness_queue_delete(s_conn, 1, q);
    harness_queue_delete(s_conn, 1, qb);
    harness_queue_delete(s_conn, 1, dlq);
    harness_log("reject-publish: nacks, no dead letters, bytes, unacked: ok");
}

static void check_reject_publish_dlx(void)
{
    const char *dlq = harness_name("x-dlq"), *q = harness_name("rpx");
    qdeclare(dlq, -1, -1, NULL, NULL);
    qdeclare(q, 2, -1, "reject-publish-dlx", dlq);

    publish_plain(q, "1 2 3 4");
    harness_expect_maxlen_dead(s_conn, 1, dlq, q, "3 4");
    harness_expect_drain(s_conn, 1, q, "1 2", "reject-publish-dlx, no confirms");

    expect_confirms("", q, "5 6 7 8", false, "aann", "reject-publish-dlx under confirms");
    harness_expect_maxlen_dead(s_conn, 1, dlq, q, "7 8");
    harness_expect_drain(s_conn, 1, q, "5 6", "reject-publish-dlx under confirms");

    harness_queue_delete(s_conn, 1, q);
    harness_queue_delete(s_conn, 1, dlq);
    harness_log("reject-publish-dlx: nacked and dead-lettered: ok");
}

static void check_fanout_and_mandatory(void)
{
    const char *x = harness_name("fan"), *full = harness_name("full"), *room = harness_name("room");
    harness_exchange_declare(s_conn, 1, x, "fanout",
                             HARNESS_EXCHANGE_AUTO_DELETE, amqp_empty_table);
    qdeclare(full, 1, -1, "reject-publish", NULL);
    qdeclare(room, -1, -1, NULL, NULL);
    harness_queue_bind(s_conn, 1, full, x, "", amqp_empty_table);
    harness_queue_bind(s_conn, 1, room, x, "", amqp_empty_table);

    expect_confirms(x, "", "f1 f2", false, "an", "fanout to a full queue and one with room");
    harness_expect_drain(s_conn, 1, full, "f1", "the full queue");
    harness_expect_drain(s_conn, 1, room, "f1 f2", "the queue with room");

    /* mandatory: routed, so no basic.return; nacked */
    expect_confirms("", full, "m1 m2", true, "an", "mandatory to a full queue");
    harness_sync(s_conn, 2);
    CHECKF(!amqp_frames_enqueued(s_conn), "a frame (basic.return?) after a mandatory nack");
    harness_expect_drain(s_conn, 1, full, "m1", "mandatory");

    harness_queue_delete(s_conn, 1, full);
    harness_queue_delete(s_conn, 1, room);
    harness_exchange_delete(s_conn, 1, x);
    harness_log("reject-publish with fanout and mandatory: ok");
}

int main(void)
{
    harness_broker_t b;
    s_conn = harness_begin(&b, 55, "it-lenrej");
    harness_channel_open(s_conn, 2);
    harness_confirm_select(s_conn, 2);

    check_reject_publish();
    check_reject_publish_dlx();
    check_fanout_and_mandatory();

    harness_disconnect(s_conn);
    return harness_finish(&b);
}
