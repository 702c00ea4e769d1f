/* 60-ext-priority-restart — a durable priority queue across a restart of warrend (SIGTERM, then
 * SIGKILL after confirms, with a message unacked): its persistent messages come back in priority order, FIFO within a
 * priority, with their priority property; transient ones are gone; the x-max-priority argument
 * is kept. Skips against an external broker (it restarts warrend).
 * RabbitMQ 3.10.8 (checked by hand on a node restarted with rabbitmqctl stop_app/start_app, a
 * durable queue with x-max-priority 5 holding m0..m5 with priorities 0..5, odd ones persistent):
 *  after the restart the queue holds "m5 m3 m1": the persistent ones, highest priority first.
 *  a redeclare with the same x-max-priority is declare-ok, with another one 406 "PRECONDITION_
 *      FAILED - inequivalent arg 'x-max-priority' for queue 'Q' in vhost '/': received '3' but
 *      current is '5'" (as before the restart: 60-ext-priority). */
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
static amqp_connection_state_t s_conn; /* owned: channel 1 open, in confirm mode */
static char s_q[64], s_tq[64], s_text[512];
static harness_confirms_t s_confirms; /* channel 1's publishes and confirms */

enum { NO_PRIO = -1 };

static void reset_confirms(void)
{
    memset(&s_confirms, 0, sizeof s_confirms);
}

static void connect_confirm(void)
{
    s_conn = harness_open_confirms(&s_broker, &s_confirms);
}

static amqp_rpc_reply_t declare(const char *q, bool durable, int max)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("x-max-priority")};
    e.value.kind = AMQP_FIELD_KIND_I32;
    e.value.value.i32 = max;
    amqp_queue_declare(s_conn, 1, amqp_cstring_bytes(q), 0, durable, 0, 0,
                       (amqp_table_t){.num_entries = 1, .entries = &e});
    return amqp_get_rpc_reply(s_conn);
}

static void publish(const char *q, const char *body, int prio, bool persistent)
{
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof p);
    p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    p.delivery_mode = persistent ? 2 : 1;
    if (prio != NO_PRIO) {
        p._flags |= AMQP_BASIC_PRIORITY_FLAG;
        p.priority = (uint8_t)prio;
    }
    harness_publish_props(s_conn, 1, "", q, false, &p, body);
    s_confirms.published++;
}

/* Read basic.ack frames until every publish so far (at most 255) is confirmed. */
static void wait_confirms(void)
{
    harness_wait_confirms(s_conn, &s_confirms);
}

/* basic.get everything (no-ack) from q: "body/priority ..." (priority "-" when absent). */
static int drain_with_prio(const char *q, char *out, size_t cap)
{
    size_t len = 0;
    int n = 0;
    out[0] = '\0';
    for (;;) {
        amqp_rpc_reply_t r = amqp_basic_get(s_conn, 1, amqp_cstring_bytes(q), 1);
        CHECK_REPLY(r);
        if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
            return n;
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(s_conn, 1, &msg, 0));
        char prio[8] = "-";
        if (msg.properties._flags & AMQP_BASIC_PRIORITY_FLAG)
            snprintf(prio, sizeof prio, "%u", msg.properties.priority);
        CHECK((msg.properties._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) &&
              msg.properties.delivery_mode == 2);
        len += (size_t)snprintf(out + len, cap > len ? cap - len : 0, "%s%.*s/%s", n ? " " : "",
                                (int)msg.body.len, (const char *)msg.body.bytes, prio);
        amqp_destroy_message(&msg);
        n++;
    }
}

/* The mix of 60-ext-priority, persistent and transient: x-max-priority 5. */
static void publish_mix(const char *q)
{
    static const struct {
        const char *body;
        int prio;
        bool persistent;
    } mix[] = {
        {"a", NO_PRIO, true}, {"b", 3, true}, {"c", 5, true},  {"t1", 5, false},
        {"d", 1, true},       {"e", 9, true}, {"f", 5, true},  {"t2", 0, false},
        {"g", 0, true},       {"h", 3, true}, {"i", NO_PRIO, true}, {"j", 255, true},
        {"t3", 3, false},
    };
    for (size_t k = 0; k < sizeof mix / sizeof mix[0]; k++)
        publish(q, mix[k].body, mix[k].prio, mix[k].persistent);
}

static const char k_mix_order[] = "c/5 e/9 f/5 j/255 b/3 h/3 d/1 a/- g/0 i/-";

int main(void)
{
    harness_watchdog(55);
    harness_broker_start(&s_broker);
    harness_require_own_broker(&s_broker);
    snprintf(s_q, sizeof s_q, "it-prio-restart-%d", (int)getpid());
    snprintf(s_tq, sizeof s_tq, "it-prio-restart-transient-%d", (int)getpid());
    char got[512];

    /* 1. SIGTERM restart. */
    connect_confirm();
    CHECK_REPLY(declare(s_q, true, 5));
    CHECK_REPLY(declare(s_tq, false, 5));
    publish_mix(s_q);
    publish(s_tq, "gone", 5, true);
    wait_confirms();
    CHECK_EQ(harness_wait_message_count(s_conn, 1, s_q, 13, 5000), 13);
    amqp_destroy_connection(s_conn); /* no close handshake: warrend goes down under it anyway */
    harness_broker_restart(&s_broker);

    connect_confirm();
    CHECK_EQ(harness_wait_message_count(s_conn, 1, s_q, 10, 5000), 10);
    CHECKF(harness_wait_queue_gone(s_conn, 1, s_tq, 0), "transient queue %s survived", s_tq);
    harness_channel_open(s_conn, 1);
    harness_confirm_select(s_conn, 1);
    reset_confirms();
    CHECK_REPLY(declare(s_q, true, 5));
    snprintf(s_text, sizeof s_text,
             "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue '%s' in vhost "
             "'/': received '3' but current is '5'",
             s_q);
    harness_expect_channel_close(s_conn, 1, declare(s_q, true, 3), 406, s_text, 50, 10);
    harness_channel_open(s_conn, 1);
    harness_confirm_select(s_conn, 1);
    reset_confirms();
    /* New messages take their place among the recovered ones. */
    publish(s_q, "new5", 5, true);
    publish(s_q, "new2", 2, true);
    wait_confirms();
    CHECK_EQ(drain_with_prio(s_q, got, sizeof got), 12);
    CHECK_STREQ(got, "c/5 e/9 f/5 j/255 new5/5 b/3 h/3 new2/2 d/1 a/- g/0 i/-");
    harness_log("after a SIGTERM restart: %s", got);

    /* 2. SIGKILL after confirms, with one message (c/5) taken and left unacked. */
    publish_mix(s_q);
    wait_confirms();
    harness_channel_open(s_conn, 2);
    amqp_rpc_reply_t r = amqp_basic_get(s_conn, 2, amqp_cstring_bytes(s_q), 0);
    CHECK_REPLY(r);
    CHECK(r.reply.id == AMQP_BASIC_GET_OK_METHOD);
    amqp_message_t msg;
    CHECK_REPLY(amqp_read_message(s_conn, 2, &msg, 0));
    CHECK(msg.body.len == 1 && memcmp(msg.body.bytes, "c", 1) == 0);
    amqp_destroy_message(&msg);
    publish(s_q, "last", 0, true);
    wait_confirms();
    amqp_destroy_connection(s_conn);
    harness_broker_crash_restart(&s_broker);

    connect_confirm();
    CHECK_EQ(drain_with_prio(s_q, got, sizeof got), 11);
    harness_log("after a SIGKILL: %s", got);
    snprintf(s_text, sizeof s_text, "%s last/0", k_mix_order);
    CHECK_STREQ(got, s_text);
    harness_queue_delete(s_conn, 1, s_q);
    harness_disconnect(s_conn);
    harness_check_alive(&s_broker);
    CHECK(harness_broker_stop(&s_broker) == 0);
    harness_log("PASS");
    return 0;
}
