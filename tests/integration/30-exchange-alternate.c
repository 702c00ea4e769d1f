/* 30-exchange-alternate — the alternate-exchange argument: where unroutable messages go.
 * RabbitMQ 3.10.8 behaviour (asserted below):
 *  - a message the exchange routes to nothing goes to its alternate exchange (AE), with the
 *    original routing key; the delivery names the exchange it was published to;
 *  - a routable message does not go to the AE;
 *  - mandatory + an AE that delivers it: no basic.return;
 *  - AE chains: the AE's own AE is used when the AE routes nothing too;
 *  - the AE may be internal;
 *  - an AE that does not exist (yet) is no error at declare or publish: the message is dropped
 *    (basic.return 312 NO_ROUTE when mandatory); once it is declared, it is used;
 *  - two exchanges that are each other's AE: dropped, returned when mandatory;
 *  - the AE is used per exchange: an exchange that routes to another exchange (which then routes
 *    nowhere) has routed, so its AE is not used; the destination's own AE is. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static amqp_connection_state_t s_conn;

/* declare x of type with alternate-exchange ae (none when NULL) */
static void xdeclare(const char *x, const char *type, const char *ae, int internal)
{
    amqp_table_entry_t e;
    e.key = amqp_cstring_bytes("alternate-exchange");
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = amqp_cstring_bytes(ae ? ae : "");
    amqp_table_t args = {.num_entries = ae ? 1 : 0, .entries = &e};
    harness_exchange_declare(s_conn, 1, x, type, internal ? HARNESS_EXCHANGE_INTERNAL : 0, args);
}

static void publish(const char *x, const char *key, const char *body, int mandatory)
{
    harness_publish_props(s_conn, 1, x, key, mandatory, NULL, body);
}

/* After the publishes so far on channel 1: no basic.return came. */
static void expect_no_return(const char *what)
{
    harness_expect_no_return(s_conn, 1, what);
}

/* After the publishes so far on channel 1: exactly one basic.return 312 NO_ROUTE of body. */
static void expect_return(const char *body, const char *x, const char *key)
{
    harness_sync(s_conn, 1);
    CHECKF(amqp_frames_enqueued(s_conn), "no basic.return for '%s'", body);
    harness_expect_return(s_conn, 1, x, key, body);
    CHECKF(!amqp_frames_enqueued(s_conn), "more than one basic.return");
}

static void check_basic(void)
{
    const char *x = harness_name("main"), *ae = harness_name("ae"), *q = harness_name("q"),
               *qae = harness_name("qae");
    xdeclare(ae, "fanout", NULL, 1); /* an internal AE is fine */
    xdeclare(x, "direct", ae, 0);
    harness_queue_declare(s_conn, 1, q, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_queue_declare(s_conn, 1, qae, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_queue_bind(s_conn, 1, q, x, "k", amqp_empty_table);
    harness_queue_bind(s_conn, 1, qae, ae, "", amqp_empty_table);

    publish(x, "k", "routed", 0);
    publish(x, "z", "unroutable", 0);
    publish(x, "k", "routed-m", 1);
    publish(x, "y", "unroutable-m", 1);
    expect_no_return("mandatory with an AE");
    harness_expect_drain(s_conn, 1, q, "routed routed-m", "routable messages");
    harness_expect_get(s_conn, 1, qae, "unroutable", x, "z");
    harness_expect_get(s_conn, 1, qae, "unroutable-m", x, "y");
    harness_expect_drain(s_conn, 1, qae, "", "the AE's queue");
    harness_log("AE: unroutable messages go to it, routable ones do not, no basic.return");

    /* without the AE's queue, the AE routes nothing: mandatory returns */
    harness_queue_unbind(s_conn, 1, qae, ae, "", amqp_empty_table);
    publish(x, "z", "lost", 1);
    expect_return("lost", x, "z");
    harness_expect_drain(s_conn, 1, qae, "", "after unbinding the AE's queue");
    harness_exchange_delete(s_conn, 1, x);
    harness_exchange_delete(s_conn, 1, ae);
}

static void check_chain(void)
{
    const char *x = harness_name("chain"), *ae2 = harness_name("ae2"), *ae3 = harness_name("ae3");
    const char *q2 = harness_name("q2"), *q3 = harness_name("q3");
    xdeclare(ae3, "fanout", NULL, 0);
    xdeclare(ae2, "direct", ae3, 0);
    xdeclare(x, "topic", ae2, 0);
    harness_queue_declare(s_conn, 1, q2, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_queue_declare(s_conn, 1, q3, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_queue_bind(s_conn, 1, q2, ae2, "only", amqp_empty_table);
    harness_queue_bind(s_conn, 1, q3, ae3, "", amqp_empty_table);
    publish(x, "only", "to-ae2", 1);
    publish(x, "other", "to-ae3", 1);
    expect_no_return("AE chain");
    harness_expect_get(s_conn, 1, q2, "to-ae2", x, "only");
    harness_expect_drain(s_conn, 1, q2, "", "first AE");
    harness_expect_get(s_conn, 1, q3, "to-ae3", x, "other");
    harness_expect_drain(s_conn, 1, q3, "", "second AE");
    harness_exchange_delete(s_conn, 1, x);
    harness_exchange_delete(s_conn, 1, ae2);
    harness_exchange_delete(s_conn, 1, ae3);
    harness_log("AE chain: the AE's AE takes what the AE cannot route");
}

static void check_missing_and_loop(void)
{
    const char *x = harness_name("x-missing-ae"), *missing = harness_name("not-yet"),
               *q = harness_name("late-q");
    xdeclare(x, "direct", missing, 0);
    publish(x, "k", "dropped", 0);
    publish(x, "k", "returned", 1);
    expect_return("returned", x, "k");

    xdeclare(missing, "fanout", NULL, 0);
    harness_queue_declare(s_conn, 1, q, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_queue_bind(s_conn, 1, q, missing, "", amqp_empty_table);
    publish(x, "k", "late", 1);
    expect_no_return("AE declared later");
    harness_expect_drain(s_conn, 1, q, "late", "AE declared after its user");
    harness_exchange_delete(s_conn, 1, missing);
    publish(x, "k", "gone-again", 1);
    expect_return("gone-again", x, "k");
    harness_exchange_delete(s_conn, 1, x);
    harness_log("AE missing: dropped (returned when mandatory); used once declared");

    const char *l1 = harness_name("loop1"), *l2 = harness_name("loop2");
    xdeclare(l1, "direct", l2, 0);
    xdeclare(l2, "fanout", l1, 0);
    publish(l1, "k", "loop-a", 1);
    expect_return("loop-a", l1, "k");
    publish(l2, "k", "loop-b", 1);
    expect_return("loop-b", l2, "k");
    harness_exchange_delete(s_conn, 1, l1);
    harness_exchange_delete(s_conn, 1, l2);
    harness_log("two exchanges as each other's AE: returned, no hang");
}

static void check_with_e2e(void)
{
    /* x7 (AE ae7) -> x8 (no bindings): x7 routed (to x8), so ae7 is not used */
    const char *x7 = harness_name("x7"), *x8 = harness_name("x8"), *ae7 = harness_name("ae7"),
               *q7 = harness_name("q7");
    xdeclare(ae7, "fanout", NULL, 0);
    xdeclare(x7, "direct", ae7, 0);
    xdeclare(x8, "fanout", NULL, 0);
    harness_queue_declare(s_conn, 1, q7, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_queue_bind(s_conn, 1, q7, ae7, "", amqp_empty_table);
    harness_exchange_bind(s_conn, 1, x8, x7, "k");
    publish(x7, "k", "to-x8", 1);
    expect_return("to-x8", x7, "k");
    publish(x7, "j", "to-ae7", 1);
    expect_no_return("x7 routes j nowhere");
    harness_expect_drain(s_conn, 1, q7, "to-ae7", "AE of an exchange that routed to an exchange");

    /* x9 -> x10 (AE ae10): x10 routes nothing, so its own AE is used */
    const char *x9 = harness_name("x9"), *x10 = harness_name("x10"), *ae10 = harness_name("ae10"),
               *q10 = harness_name("q10");
    xdeclare(ae10, "fanout", NULL, 0);
    xdeclare(x10, "direct", ae10, 0);
    xdeclare(x9, "fanout", NULL, 0);
    harness_queue_declare(s_conn, 1, q10, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_queue_bind(s_conn, 1, q10, ae10, "", amqp_empty_table);
    harness_exchange_bind(s_conn, 1, x10, x9, "");
    publish(x9, "k", "via-ae10", 1);
    expect_no_return("AE of the destination exchange");
    harness_expect_get(s_conn, 1, q10, "via-ae10", x9, "k");
    harness_expect_drain(s_conn, 1, q10, "", "AE of the destination exchange");
    for (const char *const *x = (const char *const[]){x7, x8, ae7, x9, x10, ae10, NULL}; *x; x++)
        harness_exchange_delete(s_conn, 1, *x);
    harness_log("AE with exchange bindings: used per exchange that routed nothing at all");
}

int main(void)
{
    harness_broker_t b;
    s_conn = harness_begin(&b, 50, "it-xa");

    check_basic();
    check_chain();
    check_missing_and_loop();
    check_with_e2e();

    harness_disconnect(s_conn);
    return harness_finish(&b);
}
