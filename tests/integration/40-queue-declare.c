/* 40-queue-declare — queue.declare: named and server-named queues, passive, equivalence checks,
 * arguments and the durable flag kept, declare-ok counts, exclusive queues (owner only, deleted
 * with their connection), auto-delete queues and the reserved "amq." prefix.
 * RabbitMQ 3.10.8 answers (asserted below; Q is the queue name):
 *  passive declare of a missing queue: 404 "NOT_FOUND - no queue 'Q' in vhost '/'" (50.10)
 *  redeclare with another durable / auto_delete flag: 406 "PRECONDITION_FAILED - inequivalent
 *      arg 'durable' for queue 'Q' in vhost '/': received 'true' but current is 'false'" (and
 *      'auto_delete' likewise) (50.10)
 *  redeclare of a non-exclusive queue with exclusive=true: not a 406 but 405 "RESOURCE_LOCKED -
 *      cannot obtain exclusive access to locked queue 'Q' in vhost '/'. It could be originally
 *      declared on another connection or the exclusive property value does not match that of
 *      the original declaration." (50.10)
 *  redeclare with another x-message-ttl (1000 as 'I', then 2000 as 'I' or as 'l'): 406
 *      "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'Q' in vhost '/':
 *      received '2000' but current is '1000'" (50.10); 1000 as a 64-bit 'l' is equivalent;
 *      leaving the argument out: "... received none but current is the value '1000' of type
 *      'signedint'" (the value's type is named only when one side is missing).
 *  arguments RabbitMQ does not know (x-foo) are never compared on redeclare.
 *  invalid argument values: 406 "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue
 *      'Q' in vhost '/': {value_negative,-1}" (50.10) and no queue; the reasons for the other
 *      cases are in check_invalid_args(); a number as x-dead-letter-exchange is worded
 *      "invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'Q' in vhost '/'".
 *  another connection's exclusive queue: 405 with the RESOURCE_LOCKED text above for declare
 *      (active and passive, 50.10), basic.get (60.70), basic.consume (60.20), queue.delete
 *      (50.40), queue.purge (50.30) and queue.bind (50.20). The owning connection itself gets
 *      the same 405 when it redeclares its exclusive queue with exclusive=false.
 *  declare of "amq.x": 403 "ACCESS_REFUSED - queue name 'amq.x' contains reserved prefix
 *      'amq.*'" (50.10); a passive declare of a missing "amq.x" is a plain 404.
 *  declare-ok message_count counts ready messages only (not those delivered and unacked);
 *      consumer_count counts consumers.
 *  exclusive queue: deleted when its connection closes. auto-delete queue: kept while it never
 *      had a consumer; deleted when its last consumer is cancelled, not while one remains. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static char s_text[1024];

#define LOCKED_FMT                                                                                \
    "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '%s' in vhost '/'. It "    \
    "could be originally declared on another connection or the exclusive property value does "  \
    "not match that of the original declaration."

static amqp_rpc_reply_t declare(amqp_connection_state_t conn, amqp_channel_t ch, const char *name,
                                bool passive, bool durable, bool exclusive, bool auto_delete,
                                amqp_table_t args, amqp_queue_declare_ok_t **ret_ok)
{
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(conn, ch, amqp_cstring_bytes(name), passive,
                                                     durable, exclusive, auto_delete, args);
    if (ret_ok)
        *ret_ok = ok;
    return amqp_get_rpc_reply(conn);
}

static amqp_table_t ttl_args(amqp_table_entry_t *e, uint8_t kind, int64_t ttl)
{
    e->key = amqp_cstring_bytes("x-message-ttl");
    e->value.kind = kind;
    if (kind == AMQP_FIELD_KIND_I64)
        e->value.value.i64 = ttl;
    else
        e->value.value.i32 = (int32_t)ttl;
    return (amqp_table_t){.num_entries = 1, .entries = e};
}

static void check_named_and_server_named(amqp_connection_state_t conn, const char *q)
{
    amqp_queue_declare_ok_t *ok;
    CHECK_REPLY(declare(conn, 1, q, false, false, false, false, amqp_empty_table, &ok));
    CHECK(harness_bytes_is(ok->queue, q));
    CHECK_EQ(ok->message_count, 0);
    CHECK_EQ(ok->consumer_count, 0);
    /* Redeclaring the same way is fine, and so is a passive declare. */
    CHECK_REPLY(declare(conn, 1, q, false, false, false, false, amqp_empty_table, &ok));
    CHECK(harness_bytes_is(ok->queue, q));
    CHECK_REPLY(declare(conn, 1, q, true, false, false, false, amqp_empty_table, &ok));
    CHECK(harness_bytes_is(ok->queue, q));

    char n1[256], n2[256];
    CHECK_REPLY(declare(conn, 1, "", false, false, true, false, amqp_empty_table, &ok));
    snprintf(n1, sizeof n1, "%.*s", (int)ok->queue.len, (const char *)ok->queue.bytes);
    CHECK_EQ(ok->message_count, 0);
    CHECK_EQ(ok->consumer_count, 0);
    CHECK_REPLY(declare(conn, 1, "", false, false, true, false, amqp_empty_table, &ok));
    snprintf(n2, sizeof n2, "%.*s", (int)ok->queue.len, (const char *)ok->queue.bytes);
    harness_log("server-named queues: %s %s", n1, n2);
    CHECKF(strncmp(n1, "amq.gen-", 8) == 0 && strlen(n1) > 8, "name %s", n1);
    CHECKF(strncmp(n2, "amq.gen-", 8) == 0 && strlen(n2) > 8, "name %s", n2);
    CHECK(strcmp(n1, n2) != 0);
    /* A server-named queue is a real queue that can be declared passively by its name. */
    CHECK_REPLY(declare(conn, 1, n1, true, false, false, false, amqp_empty_table, &ok));
    CHECK(harness_bytes_is(ok->queue, n1));
    harness_queue_delete(conn, 1, n1);
    harness_queue_delete(conn, 1, n2);

    /* passive on a missing queue: 404 */
    char missing[128];
    snprintf(missing, sizeof missing, "%s-missing", q);
    snprintf(s_text, sizeof s_text, "NOT_FOUND - no queue '%s' in vhost '/'", missing);
    harness_expect_channel_close(
        conn, 1, declare(conn, 1, missing, true, false, false, false, amqp_empty_table, NULL),
        404, s_text, 50, 10);
    harness_channel_open(conn, 1);
    harness_log("named, server-named, passive: ok");
}

static void check_equivalence(amqp_connection_state_t conn, const char *q, const char *dq)
{
    amqp_table_entry_t e;
    amqp_queue_declare_ok_t *ok;
    CHECK_REPLY(declare(conn, 1, q, false, false, false, false,
                        ttl_args(&e, AMQP_FIELD_KIND_I32, 1000), &ok));
    /* The same arguments again: fine; 1000 as a 64-bit integer is the same value. */
    CHECK_REPLY(declare(conn, 1, q, false, false, false, false,
                        ttl_args(&e, AMQP_FIELD_KIND_I32, 1000), &ok));
    CHECK_REPLY(declare(conn, 1, q, false, false, false, false,
                        ttl_args(&e, AMQP_FIELD_KIND_I64, 1000), &ok));
    /* passive ignores flags and arguments */
    CHECK_REPLY(declare(conn, 1, q, true, true, false, true, amqp_empty_table, &ok));

    snprintf(s_text, sizeof s_text,
             "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '%s' in vhost '/': "
             "received 'true' but current is 'false'",
             q);
    harness_expect_channel_close(conn, 1,
                                 declare(conn, 1, q, false, true, false, false,
                                         ttl_args(&e, AMQP_FIELD_KIND_I32, 1000), NULL),
                                 406, s_text, 50, 10);
    harness_channel_open(conn, 1);

    snprintf(s_text, sizeof s_text,
             "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue '%s' in vhost '/': "
             "received 'true' but current is 'false'",
             q);
    harness_expect_channel_close(conn, 1,
                                 declare(conn, 1, q, false, false, false, true,
                                         ttl_args(&e, AMQP_FIELD_KIND_I32, 1000), NULL),
                                 406, s_text, 50, 10);
    harness_channel_open(conn, 1);

    /* exclusive=true on a queue that is not exclusive: RabbitMQ says 405, not 406. */
    snprintf(s_text, sizeof s_text, LOCKED_FMT, q);
    harness_expect_channel_close(conn, 1,
                                 declare(conn, 1, q, false, false, true, false,
                                         ttl_args(&e, AMQP_FIELD_KIND_I32, 1000), NULL),
                                 405, s_text, 50, 10);
    harness_channel_open(conn, 1);

    snprintf(s_text, sizeof s_text,
             "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '%s' in vhost "
             "'/': received '2000' but current is '1000'",
             q);
    harness_expect_channel_close(conn, 1,
                                 declare(conn, 1, q, false, false, false, false,
                                         ttl_args(&e, AMQP_FIELD_KIND_I32, 2000), NULL),
                                 406, s_text, 50, 10);
    harness_channel_open(conn, 1);

    /* a 64-bit 2000: another value of a compatible type */
    snprintf(s_text, sizeof s_text,
             "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '%s' in vhost "
             "'/': received '2000' but current is '1000'",
             q);
    harness_expect_channel_close(conn, 1,
                                 declare(conn, 1, q, false, false, false, false,
                                         ttl_args(&e, AMQP_FIELD_KIND_I64, 2000), NULL),
                                 406, s_text, 50, 10);
    harness_channel_open(conn, 1);

    snprintf(s_text, sizeof s_text,
             "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '%s' in vhost "
             "'/': received none but current is the value '1000' of type 'signedint'",
             q);
    harness_expect_channel_close(
        conn, 1, declare(conn, 1, q, false, false, false, false, amqp_empty_table, NULL), 406,
        s_text, 50, 10);
    harness_channel_open(conn, 1);

    /* Arguments RabbitMQ does not know are kept but never compared: any x-foo is fine. */
    amqp_table_entry_t two[2];
    two[0] = *ttl_args(&e, AMQP_FIELD_KIND_I32, 1000).entries;
    two[1].key = amqp_cstring_bytes("x-foo");
    two[1].value.kind = AMQP_FIELD_KIND_UTF8;
    two[1].value.value.bytes = amqp_cstring_bytes("other");
    CHECK_REPLY(declare(conn, 1, q, false, false, false, false,
                        (amqp_table_t){.num_entries = 2, .entries = two}, &ok));

    /* The queue is untouched by the failed redeclarations. */
    CHECK_REPLY(declare(conn, 1, q, false, false, false, false,
                        ttl_args(&e, AMQP_FIELD_KIND_I32, 1000), &ok));
    harness_queue_delete(conn, 1, q);

    /* The durable flag is kept: a durable queue refuses a non-durable redeclaration. */
    CHECK_REPLY(declare(conn, 1, dq, false, true, false, false, amqp_empty_table, &ok));
    CHECK_REPLY(declare(conn, 1, dq, false, true, false, false, amqp_empty_table, &ok));
    snprintf(s_text, sizeof s_text,
             "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '%s' in vhost '/': "
             "received 'false' but current is 'true'",
             dq);
    harness_expect_channel_close(
        conn, 1, declare(conn, 1, dq, false, false, false, false, amqp_empty_table, NULL), 406,
        s_text, 50, 10);
    harness_channel_open(conn, 1);
    harness_queue_delete(conn, 1, dq);
    harness_log("equivalence: ok");
}

/* message_count is the number of ready messages; consumer_count the number of consumers. */
/* Invalid values of arguments RabbitMQ knows: 406 on declare, and no queue. The text after
 * "invalid arg 'K' for queue 'Q' in vhost '/': " is RabbitMQ's Erlang term for the reason. */
static void check_invalid_args(amqp_connection_state_t conn, const char *q)
{
    static const struct {
        const char *key;
        char kind; /* 'I' signedint, 'S' longstr */
        int32_t i;
        const char *s;
        const char *reason; /* NULL: the "invalid type" wording */
    } cases[] = {
        {"x-message-ttl", 'I', -1, NULL, "{value_negative,-1}"},
        {"x-message-ttl", 'S', 0, "1000", "\"expected integer, got longstr\""},
        {"x-expires", 'I', 0, NULL, "{value_zero,0}"},
        {"x-max-length", 'I', -1, NULL, "{value_negative,-1}"},
        {"x-max-priority", 'I', 300, NULL, "{max_value_exceeded,300}"},
        {"x-queue-type", 'S', 0, "bogus", "\"unsupported queue type 'bogus'\""},
        {"x-overflow", 'S', 0, "nope", "invalid_overflow"},
        {"x-dead-letter-exchange", 'I', 5, NULL, NULL},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        amqp_table_entry_t e;
        e.key = amqp_cstring_bytes(cases[k].key);
        if (cases[k].kind == 'I') {
            e.value.kind = AMQP_FIELD_KIND_I32;
            e.value.value.i32 = cases[k].i;
        } else {
            e.value.kind = AMQP_FIELD_KIND_UTF8;
            e.value.value.bytes = amqp_cstring_bytes(cases[k].s);
        }
        if (cases[k].reason)
            snprintf(s_text, sizeof s_text,
                     "PRECONDITION_FAILED - invalid arg '%s' for queue '%s' in vhost '/': %s",
                     cases[k].key, q, cases[k].reason);
        else
            snprintf(s_text, sizeof s_text,
                     "PRECONDITION_FAILED - invalid type 'signedint' for arg '%s' in queue '%s' "
                     "in vhost '/'",
                     cases[k].key, q);
        harness_expect_channel_close(
            conn, 1,
            declare(conn, 1, q, false, false, false, false,
                    (amqp_table_t){.num_entries = 1, .entries = &e}, NULL),
            406, s_text, 50, 10);
        harness_channel_open(conn, 1);
    }
    CHECKF(harness_wait_queue_gone(conn, 1, q, 0), "queue %s declared with an invalid arg", q);
    harness_channel_open(conn, 1);
    harness_log("invalid arguments: ok");
}

static void check_counts(const harness_broker_t *b, amqp_connection_state_t conn, const char *q)
{
    amqp_queue_declare_ok_t *ok;
    CHECK_REPLY(declare(conn, 1, q, false, false, false, false, amqp_empty_table, &ok));
    for (int i = 0; i < 3; i++)
        harness_publish(conn, 1, "", q, "counted");
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 3, 5000), 3);
    CHECK_REPLY(declare(conn, 1, q, false, false, false, false, amqp_empty_table, &ok));
    CHECK_EQ(ok->message_count, 3);
    CHECK_EQ(ok->consumer_count, 0);

    /* Two consumers with prefetch 1 each hold one unacked message: 1 ready, 2 consumers. */
    amqp_connection_state_t c2 = harness_open(b);
    harness_qos(c2, 1, 1, false);
    for (int i = 0; i < 2; i++)
        harness_consume(c2, 1, q, NULL, 0, amqp_empty_table);
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 1, 5000), 1);
    CHECK_REPLY(declare(conn, 1, q, false, false, false, false, amqp_empty_table, &ok));
    CHECK_EQ(ok->message_count, 1);
    CHECK_EQ(ok->consumer_count, 2);
    uint32_t m = 99, c = 99;
    CHECK_REPLY(harness_queue_peek(conn, 1, q, &m, &c));
    CHECK_EQ(m, 1);
    CHECK_EQ(c, 2);
    harness_disconnect(c2);
    /* The two unacked messages went back when c2 closed. */
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 3, 5000), 3);
    CHECK_REPLY(harness_queue_peek(conn, 1, q, &m, &c));
    CHECK_EQ(c, 0);
    harness_queue_delete(conn, 1, q);
    harness_log("declare-ok counts: ok");
}

static void check_exclusive(const harness_broker_t *b, amqp_connection_state_t conn,
                            const char *q)
{
    amqp_connection_state_t owner = harness_open(b);
    amqp_queue_declare_ok_t *ok;
    CHECK_REPLY(declare(owner, 1, q, false, false, true, false, amqp_empty_table, &ok));
    /* The owner may use it freely. */
    CHECK_REPLY(declare(owner, 1, q, false, false, true, false, amqp_empty_table, &ok));
    CHECK_REPLY(declare(owner, 1, q, true, false, false, false, amqp_empty_table, &ok));
    harness_publish(owner, 1, "", q, "mine");
    CHECK_EQ(harness_wait_message_count(owner, 1, q, 1, 5000), 1);

    /* Everybody else: 405 on everything. */
    snprintf(s_text, sizeof s_text, LOCKED_FMT, q);
    amqp_bytes_t qb = amqp_cstring_bytes(q);

    harness_expect_channel_close(
        conn, 1, declare(conn, 1, q, false, false, true, false, amqp_empty_table, NULL), 405,
        s_text, 50, 10);
    harness_channel_open(conn, 1);
    harness_expect_channel_close(
        conn, 1, declare(conn, 1, q, false, false, false, false, amqp_empty_table, NULL), 405,
        s_text, 50, 10);
    harness_channel_open(conn, 1);
    harness_expect_channel_close(
        conn, 1, declare(conn, 1, q, true, false, false, false, amqp_empty_table, NULL), 405,
        s_text, 50, 10);
    harness_channel_open(conn, 1);

    harness_expect_channel_close(conn, 1, amqp_basic_get(conn, 1, qb, 1), 405, s_text, 60, 70);
    harness_channel_open(conn, 1);

    amqp_basic_consume(conn, 1, qb, amqp_empty_bytes, 0, 1, 0, amqp_empty_table);
    harness_expect_channel_close(conn, 1, amqp_get_rpc_reply(conn), 405, s_text, 60, 20);
    harness_channel_open(conn, 1);

    amqp_queue_delete(conn, 1, qb, 0, 0);
    harness_expect_channel_close(conn, 1, amqp_get_rpc_reply(conn), 405, s_text, 50, 40);
    harness_channel_open(conn, 1);

    amqp_queue_purge(conn, 1, qb);
    harness_expect_channel_close(conn, 1, amqp_get_rpc_reply(conn), 405, s_text, 50, 30);
    harness_channel_open(conn, 1);

    amqp_queue_bind(conn, 1, qb, amqp_cstring_bytes("amq.direct"), qb, amqp_empty_table);
    harness_expect_channel_close(conn, 1, amqp_get_rpc_reply(conn), 405, s_text, 50, 20);
    harness_channel_open(conn, 1);

    /* None of that touched the queue or its message. */
    uint32_t m = 0;
    CHECK_REPLY(harness_queue_peek(owner, 1, q, &m, NULL));
    CHECK_EQ(m, 1);

    /* The owner goes away: so does the queue. */
    harness_disconnect(owner);
    CHECKF(harness_wait_queue_gone(conn, 1, q, 5000),
           "exclusive queue %s still exists 5 s after its connection closed", q);
    harness_channel_open(conn, 1);
    harness_log("exclusive: ok");
}

static amqp_bytes_t consume(amqp_connection_state_t conn, amqp_channel_t ch, const char *q)
{
    amqp_basic_consume_ok_t *ok = amqp_basic_consume(conn, ch, amqp_cstring_bytes(q),
                                                     amqp_empty_bytes, 0, 1, 0, amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    return amqp_bytes_malloc_dup(ok->consumer_tag);
}

static void cancel(amqp_connection_state_t conn, amqp_channel_t ch, amqp_bytes_t tag)
{
    amqp_basic_cancel(conn, ch, tag);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    amqp_bytes_free(tag);
}

static void check_auto_delete(amqp_connection_state_t conn, const char *q)
{
    amqp_queue_declare_ok_t *ok;
    CHECK_REPLY(declare(conn, 1, q, false, false, false, true, amqp_empty_table, &ok));
    /* Never had a consumer: it stays, whatever happens around it. */
    harness_publish(conn, 1, "", q, "x");
    CHECK_EQ(harness_wait_message_count(conn, 1, q, 1, 5000), 1);
    harness_queue_purge(conn, 1, q);
    harness_expect_steady(conn, 1, q, -1, 200, "auto-delete queue that never had a consumer");

    /* Two consumers: cancelling one keeps it; cancelling the last deletes it. */
    harness_channel_open(conn, 2);
    amqp_bytes_t t1 = consume(conn, 2, q), t2 = consume(conn, 2, q);
    uint32_t c = 0;
    CHECK_REPLY(harness_queue_peek(conn, 1, q, NULL, &c));
    CHECK_EQ(c, 2);
    cancel(conn, 2, t1);
    harness_expect_steady(conn, 1, q, -1, 200, "auto-delete queue with a consumer left");
    CHECK_REPLY(harness_queue_peek(conn, 1, q, NULL, &c));
    CHECK_EQ(c, 1);
    cancel(conn, 2, t2);
    CHECKF(harness_wait_queue_gone(conn, 1, q, 5000),
           "auto-delete queue %s still exists 5 s after its last consumer was cancelled", q);
    harness_channel_open(conn, 1);

    /* Closing the consumer's channel counts as cancelling it. */
    CHECK_REPLY(declare(conn, 1, q, false, false, false, true, amqp_empty_table, &ok));
    amqp_bytes_free(consume(conn, 2, q));
    CHECK_REPLY(amqp_channel_close(conn, 2, AMQP_REPLY_SUCCESS));
    CHECKF(harness_wait_queue_gone(conn, 1, q, 5000),
           "auto-delete queue %s still exists 5 s after its consumer's channel closed", q);
    harness_channel_open(conn, 1);
    harness_log("auto-delete: ok");
}

/* Even the owner must redeclare its exclusive queue as exclusive (from any of its channels). */
static void check_exclusive_owner(amqp_connection_state_t conn, const char *q)
{
    amqp_queue_declare_ok_t *ok;
    CHECK_REPLY(declare(conn, 1, q, false, false, true, false, amqp_empty_table, &ok));
    harness_channel_open(conn, 2);
    CHECK_REPLY(declare(conn, 2, q, false, false, true, false, amqp_empty_table, &ok));
    CHECK_REPLY(declare(conn, 2, q, true, false, false, false, amqp_empty_table, &ok));
    snprintf(s_text, sizeof s_text, LOCKED_FMT, q);
    harness_expect_channel_close(
        conn, 2, declare(conn, 2, q, false, false, false, false, amqp_empty_table, NULL), 405,
        s_text, 50, 10);
    harness_queue_delete(conn, 1, q);
    harness_log("exclusive queue redeclared by its owner: ok");
}

static void check_reserved_prefix(amqp_connection_state_t conn)
{
    char name[64];
    snprintf(name, sizeof name, "amq.it-declare-%d", (int)getpid());
    snprintf(s_text, sizeof s_text,
             "ACCESS_REFUSED - queue name '%s' contains reserved prefix 'amq.*'", name);
    harness_expect_channel_close(
        conn, 1, declare(conn, 1, name, false, false, false, false, amqp_empty_table, NULL), 403,
        s_text, 50, 10);
    harness_channel_open(conn, 1);
    /* passive: no reserved-prefix check, just "not there" */
    snprintf(s_text, sizeof s_text, "NOT_FOUND - no queue '%s' in vhost '/'", name);
    harness_expect_channel_close(
        conn, 1, declare(conn, 1, name, true, false, false, false, amqp_empty_table, NULL), 404,
        s_text, 50, 10);
    harness_channel_open(conn, 1);
    harness_log("amq. prefix: ok");
}

int main(void)
{
    harness_broker_t b;
    amqp_connection_state_t conn = harness_begin(&b, 55, NULL);

    char q[64], q2[64], dq[64];
    snprintf(q, sizeof q, "it-declare-%d", (int)getpid());
    snprintf(q2, sizeof q2, "it-declare-args-%d", (int)getpid());
    snprintf(dq, sizeof dq, "it-declare-durable-%d", (int)getpid());

    check_named_and_server_named(conn, q);
    check_equivalence(conn, q2, dq);
    check_counts(&b, conn, q);
    check_exclusive(&b, conn, q);
    check_auto_delete(conn, q);
    check_reserved_prefix(conn);
    check_exclusive_owner(conn, q);
    check_invalid_args(conn, q2);
    harness_queue_delete(conn, 1, q); /* the first one; deleting a missing queue is fine too */

    harness_disconnect(conn);
    return harness_finish(&b);
}
