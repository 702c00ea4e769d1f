/* 30-exchange-mandatory — basic.publish mandatory (basic.return) and sender-selected
 * distribution (the CC and BCC headers).
 * RabbitMQ 3.10.8 behaviour (asserted below):
 *  - mandatory and routed nowhere: basic.return 312 "NO_ROUTE" with the exchange and routing
 *    key as published, then the message with its properties and body unchanged (an empty body,
 *    a body over several frames); before the reply to any later method on that channel;
 *  - mandatory and routed: no basic.return; not mandatory and unroutable: dropped silently;
 *  - mandatory to a missing exchange: channel.close 404 "NOT_FOUND - no exchange 'X' in vhost
 *    '/'" (60.40), not a return;
 *  - CC and BCC (arrays; their longstr elements, others are ignored) are routing keys used in
 *    addition to the routing key, with the exchange's own type; each queue gets one copy;
 *  - BCC is removed from the message (deliveries and basic.return alike), CC is kept; the
 *    delivery's routing key is the published one;
 *  - CC or BCC not an array: channel.close 406 "PRECONDITION_FAILED - invalid message:
 *    {unacceptable_type_in_header,\"CC\",longstr}" (60.40), likewise "...\"BCC\",signedint}". */
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

/* After what was published so far on channel 1: no basic.return (or anything else) came. */
static void expect_no_return(const char *what)
{
    harness_expect_no_return(s_conn, 1, what);
}

/* The next queued frames are a basic.return 312 NO_ROUTE for x/key; *ret_msg gets the message
 * (amqp_destroy_message() it). Call harness_sync() first. */
static void read_return(const char *x, const char *key, amqp_message_t *ret_msg)
{
    CHECKF(amqp_frames_enqueued(s_conn), "no basic.return for %s/%s", x, key);
    harness_read_return(s_conn, 1, x, key, ret_msg);
}

/* ---- message properties --------------------------------------------------------------------- */

static amqp_field_value_t str_value(const char *s)
{
    amqp_field_value_t v = {.kind = AMQP_FIELD_KIND_UTF8};
    v.value.bytes = amqp_cstring_bytes(s);
    return v;
}

typedef struct props {
    amqp_basic_properties_t p;
    amqp_table_entry_t headers[4];
    amqp_field_value_t cc[4], bcc[4];
} props_t;

/* Properties with content-type, message-id, delivery-mode 2, priority 7, a header "keep"="me"
 * and, when not NULL, CC and BCC arrays of up to 4 longstr (a NULL-ended list). */
static void make_props(props_t *pp, const char *const *cc, const char *const *bcc)
{
    memset(pp, 0, sizeof *pp);
    amqp_basic_properties_t *p = &pp->p;
    p->_flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
                AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_PRIORITY_FLAG |
                AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
    p->content_type = amqp_cstring_bytes("text/x-warren");
    p->message_id = amqp_cstring_bytes("mid-42");
    p->delivery_mode = 2;
    p->priority = 7;
    p->timestamp = 1700000042;
    int n = 0;
    pp->headers[n].key = amqp_cstring_bytes("keep");
    pp->headers[n++].value = str_value("me");
    if (cc) {
        int k = 0;
        for (; cc[k]; k++)
            pp->cc[k] = str_value(cc[k]);
        pp->headers[n].key = amqp_cstring_bytes("CC");
        pp->headers[n].value.kind = AMQP_FIELD_KIND_ARRAY;
        pp->headers[n].value.value.array.num_entries = k;
        pp->headers[n++].value.value.array.entries = pp->cc;
    }
    if (bcc) {
        int k = 0;
        for (; bcc[k]; k++)
            pp->bcc[k] = str_value(bcc[k]);
        pp->headers[n].key = amqp_cstring_bytes("BCC");
        pp->headers[n].value.kind = AMQP_FIELD_KIND_ARRAY;
        pp->headers[n].value.value.array.num_entries = k;
        pp->headers[n++].value.value.array.entries = pp->bcc;
    }
    p->headers.num_entries = n;
    p->headers.entries = pp->headers;
}

/* msg carries make_props()'s properties; CC is there with exactly cc (or absent when NULL);
 * BCC is never there. */
static void check_props(const amqp_message_t *msg, const char *const *cc)
{
    const amqp_basic_properties_t *p = &msg->properties;
    CHECK(p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG);
    CHECK(harness_bytes_is(p->content_type, "text/x-warren"));
    CHECK(p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG);
    CHECK(harness_bytes_is(p->message_id, "mid-42"));
    CHECK((p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG) && p->delivery_mode == 2);
    CHECK((p->_flags & AMQP_BASIC_PRIORITY_FLAG) && p->priority == 7);
    CHECK((p->_flags & AMQP_BASIC_TIMESTAMP_FLAG) && p->timestamp == 1700000042);
    CHECK(p->_flags & AMQP_BASIC_HEADERS_FLAG);
    const amqp_field_value_t *keep = harness_table_get(&p->headers, "keep");
    CHECK(keep && keep->kind == AMQP_FIELD_KIND_UTF8 && harness_bytes_is(keep->value.bytes, "me"));
    CHECKF(harness_table_get(&p->headers, "BCC") == NULL, "the BCC header was delivered");
    const amqp_field_value_t *got = harness_table_get(&p->headers, "CC");
    if (!cc) {
        CHECK(got == NULL);
        CHECK_EQ(p->headers.num_entries, 1);
        return;
    }
    CHECKF(got && got->kind == AMQP_FIELD_KIND_ARRAY, "the CC header was not delivered");
    int k = 0;
    for (; cc[k]; k++) {
        CHECK(k < got->value.array.num_entries);
        const amqp_field_value_t *e = &got->value.array.entries[k];
        CHECK(e->kind == AMQP_FIELD_KIND_UTF8 && harness_bytes_is(e->value.bytes, cc[k]));
    }
    CHECK_EQ(got->value.array.num_entries, k);
    CHECK_EQ(p->headers.num_entries, 2);
}

/* One basic.get on q: body, routing key key, properties per check_props(cc). */
static void expect_get(const char *q, const char *body, const char *key, const char *const *cc)
{
    amqp_rpc_reply_t r = amqp_basic_get(s_conn, 1, amqp_cstring_bytes(q), 1);
    CHECK_REPLY(r);
    CHECKF(r.reply.id == AMQP_BASIC_GET_OK_METHOD, "queue %s is empty, want \"%s\"", q, body);
    const amqp_basic_get_ok_t *ok = r.reply.decoded;
    CHECKF(harness_bytes_is(ok->routing_key, key), "delivery routing key '%.*s', want '%s'",
           (int)ok->routing_key.len, (const char *)ok->routing_key.bytes, key);
    amqp_message_t msg;
    CHECK_REPLY(amqp_read_message(s_conn, 1, &msg, 0));
    CHECKF(harness_bytes_is(msg.body, body), "body '%.*s', want '%s'", (int)msg.body.len,
           (const char *)msg.body.bytes, body);
    check_props(&msg, cc);
    amqp_destroy_message(&msg);
}

/* ---- the tests ------------------------------------------------------------------------------ */

static void check_mandatory(void)
{
    const char *x = harness_name("direct"), *q = harness_name("q");
    harness_exchange_declare(s_conn, 1, x, "direct", 0, amqp_empty_table);
    harness_queue_declare(s_conn, 1, q, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_queue_bind(s_conn, 1, q, x, "k", amqp_empty_table);

    /* three bodies: empty, small, and one spanning three frames at frame_max 131072 */
    size_t sizes[3] = {0, 5, 300000};
    uint8_t *big = malloc(sizes[2]);
    CHECK(big != NULL);
    for (size_t i = 0; i < sizes[2]; i++)
        big[i] = (uint8_t)(i * 7 + i / 251);
    props_t pp;
    make_props(&pp, NULL, NULL);
    for (int i = 0; i < 3; i++) {
        amqp_bytes_t body = {.len = sizes[i], .bytes = i == 1 ? (void *)"hello" : big};
        CHECK_AMQP(amqp_basic_publish(s_conn, 1, amqp_cstring_bytes(x), amqp_cstring_bytes("nope"),
                                      1, 0, &pp.p, body));
        harness_sync(s_conn, 1);
        amqp_message_t msg;
        read_return(x, "nope", &msg);
        CHECK_EQ(msg.body.len, sizes[i]);
        CHECK(sizes[i] == 0 || memcmp(msg.body.bytes, body.bytes, sizes[i]) == 0);
        check_props(&msg, NULL);
        amqp_destroy_message(&msg);
        CHECKF(!amqp_frames_enqueued(s_conn), "more than one basic.return");
    }
    free(big);
    harness_log("mandatory, unroutable: basic.return 312 NO_ROUTE, message intact (0, 5, "
                "300000 octets)");

    /* through the default exchange to a queue that does not exist */
    const char *nq = harness_name("no-such-queue");
    harness_publish_props(s_conn, 1, "", nq, true, &pp.p, "to-nobody");
    harness_sync(s_conn, 1);
    amqp_message_t msg;
    read_return("", nq, &msg);
    CHECK(harness_bytes_is(msg.body, "to-nobody"));
    amqp_destroy_message(&msg);

    /* routable and mandatory: delivered, no return; unroutable, not mandatory: dropped */
    harness_publish_props(s_conn, 1, x, "k", true, &pp.p, "routed");
    harness_publish_props(s_conn, 1, x, "nope", false, &pp.p, "dropped");
    expect_no_return("mandatory routable / not mandatory unroutable");
    expect_get(q, "routed", "k", NULL);
    harness_expect_drain(s_conn, 1, q, "", "mandatory");

    /* to a missing exchange: a channel error, not a return */
    const char *nx = harness_name("no-such-exchange");
    harness_publish_props(s_conn, 1, nx, "k", true, NULL, "x");
    char text[256];
    snprintf(text, sizeof text, "NOT_FOUND - no exchange '%s' in vhost '/'", nx);
    harness_expect_channel_close(s_conn, 1, harness_round_trip(s_conn, 1), 404, text, 60, 40);
    harness_channel_open(s_conn, 1);
    harness_exchange_delete(s_conn, 1, x);
    harness_log("mandatory routable: no return; missing exchange: 404");
}

static void check_cc_bcc(void)
{
    const char *x = harness_name("cc"), *t = harness_name("cc-topic");
    const char *qa = harness_name("qa"), *qb = harness_name("qb"), *qc = harness_name("qc"),
               *qd = harness_name("qd");
    harness_exchange_declare(s_conn, 1, x, "direct", 0, amqp_empty_table);
    harness_exchange_declare(s_conn, 1, t, "topic", 0, amqp_empty_table);
    const char *qs[4] = {qa, qb, qc, qd};
    const char *keys[4] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) {
        harness_queue_declare(s_conn, 1, qs[i], HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
        harness_queue_bind(s_conn, 1, qs[i], x, keys[i], amqp_empty_table);
    }
    harness_queue_bind(s_conn, 1, qd, t, "t.*", amqp_empty_table);

    static const char *const cc_b[] = {"b", NULL};
    static const char *const bcc_c[] = {"c", NULL};
    static const char *const cc_bc[] = {"b", "c", NULL};
    static const char *const bcc_d[] = {"d", NULL};
    static const char *const cc_aa[] = {"a", "a", "zz", NULL};
    props_t pp;

    make_props(&pp, cc_b, NULL);
    harness_publish_props(s_conn, 1, x, "a", false, &pp.p, "cc");
    make_props(&pp, NULL, bcc_c);
    harness_publish_props(s_conn, 1, x, "a", false, &pp.p, "bcc");
    make_props(&pp, cc_bc, bcc_d);
    harness_publish_props(s_conn, 1, x, "zz", true, &pp.p, "both");
    make_props(&pp, cc_aa, NULL);
    harness_publish_props(s_conn, 1, x, "a", false, &pp.p, "dup");
    expect_no_return("CC/BCC routed");

    expect_get(qa, "cc", "a", cc_b);
    expect_get(qa, "bcc", "a", NULL);
    expect_get(qa, "dup", "a", cc_aa);
    harness_expect_drain(s_conn, 1, qa, "", "CC/BCC");
    expect_get(qb, "cc", "a", cc_b);
    expect_get(qb, "both", "zz", cc_bc);
    harness_expect_drain(s_conn, 1, qb, "", "CC/BCC");
    expect_get(qc, "bcc", "a", NULL);
    expect_get(qc, "both", "zz", cc_bc);
    harness_expect_drain(s_conn, 1, qc, "", "CC/BCC");
    expect_get(qd, "both", "zz", cc_bc);
    harness_expect_drain(s_conn, 1, qd, "", "CC/BCC");
    harness_log("CC/BCC add routing keys, one copy per queue, BCC stripped, CC kept");

    /* the default exchange: CC names queues; a topic exchange: CC keys are matched as keys */
    static const char *const cc_q[] = {NULL, NULL};
    const char *const cc_qb[] = {qb, NULL};
    make_props(&pp, cc_qb, cc_q);
    harness_publish_props(s_conn, 1, "", qa, false, &pp.p, "dflt");
    static const char *const bcc_t[] = {"t.x", "t.y.z", NULL};
    make_props(&pp, NULL, bcc_t);
    harness_publish_props(s_conn, 1, t, "u", false, &pp.p, "topic");
    expect_get(qa, "dflt", qa, cc_qb);
    expect_get(qb, "dflt", qa, cc_qb);
    expect_get(qd, "topic", "u", NULL);
    for (int i = 0; i < 4; i++)
        harness_expect_drain(s_conn, 1, qs[i], "", "CC via default and topic exchanges");

    /* mandatory, nothing routable by key, CC or BCC: the return has no BCC either */
    static const char *const cc_none[] = {"nope1", NULL};
    static const char *const bcc_none[] = {"nope2", NULL};
    make_props(&pp, cc_none, bcc_none);
    harness_publish_props(s_conn, 1, x, "nope", true, &pp.p, "ret");
    harness_sync(s_conn, 1);
    amqp_message_t msg;
    read_return(x, "nope", &msg);
    CHECK(harness_bytes_is(msg.body, "ret"));
    check_props(&msg, cc_none);
    amqp_destroy_message(&msg);
    CHECK(!amqp_frames_enqueued(s_conn));

    /* array elements that are not longstr are ignored */
    amqp_field_value_t mixed[3];
    mixed[0].kind = AMQP_FIELD_KIND_I32;
    mixed[0].value.i32 = 1;
    mixed[1] = str_value("b");
    mixed[2].kind = AMQP_FIELD_KIND_BYTES;
    mixed[2].value.bytes = amqp_cstring_bytes("c");
    make_props(&pp, NULL, NULL);
    pp.headers[1].key = amqp_cstring_bytes("CC");
    pp.headers[1].value.kind = AMQP_FIELD_KIND_ARRAY;
    pp.headers[1].value.value.array.num_entries = 3;
    pp.headers[1].value.value.array.entries = mixed;
    pp.p.headers.num_entries = 2;
    harness_publish_props(s_conn, 1, x, "none", false, &pp.p, "mixed");
    harness_expect_drain(s_conn, 1, qb, "mixed", "CC with mixed element types");
    harness_expect_drain(s_conn, 1, qc, "", "CC with mixed element types");

    /* CC that is not an array, BCC that is not an array: 406 */
    static const struct {
        const char *key;
        amqp_field_value_t v;
        const char *text;
    } bad[] = {
        {"CC", {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = {1, "b"}},
         "PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,\"CC\",longstr}"},
        {"BCC", {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 5},
         "PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,\"BCC\",signedint}"},
    };
    for (int i = 0; i < 2; i++) {
        make_props(&pp, NULL, NULL);
        pp.headers[1].key = amqp_cstring_bytes(bad[i].key);
        pp.headers[1].value = bad[i].v;
        pp.p.headers.num_entries = 2;
        harness_publish_props(s_conn, 1, x, "a", false, &pp.p, "bad");
        harness_expect_channel_close(s_conn, 1, harness_round_trip(s_conn, 1), 406, bad[i].text,
                                     60, 40);
        harness_channel_open(s_conn, 1);
    }
    harness_expect_drain(s_conn, 1, qa, "", "after the bad CC/BCC");
    harness_expect_drain(s_conn, 1, qb, "", "after the bad CC/BCC");

    harness_exchange_delete(s_conn, 1, x);
    harness_exchange_delete(s_conn, 1, t);
    harness_log("CC/BCC: default and topic exchanges, returns, odd types, 406");
}

int main(void)
{
    harness_broker_t b;
    s_conn = harness_begin(&b, 50, "it-xm");

    check_mandatory();
    check_cc_bcc();

    harness_disconnect(s_conn);
    return harness_finish(&b);
}
