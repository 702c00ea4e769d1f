/* 30-exchange-routing — which queues get which messages through direct, fanout, topic and
 * headers exchanges; auto-delete exchanges; internal exchanges.
 * Every queue is drained with basic.get until get-empty and its bodies compared in order, so a
 * missing, extra or duplicated delivery fails the test.
 * RabbitMQ 3.10.8 behaviour (asserted below):
 *  - direct: a message goes to every queue bound with its key, once per queue however many of
 *    the queue's bindings match; keys are case-sensitive.
 *  - topic: words split on '.', "" is zero words, empty words are words ("a..c" matches
 *    "a.*.c"), '*' is exactly one word, '#' zero or more ("a.#" matches "a").
 *  - headers: x-match all (also when x-match is absent) / any; binding keys starting with "x-"
 *    are ignored by all/any and compared by all-with-x / any-with-x; values compare with
 *    Erlang's == (int 1, long 1, unsigned byte 1 and double 1.0 are equal, string "1" is not);
 *    a void binding value matches the key's presence; all with no (non x-) keys matches
 *    everything, any with none matches nothing.
 *  - x-match "foo": 406 "PRECONDITION_FAILED - Invalid x-match field value <<\"foo\">>;
 *    expected all, any, all-with-x, or any-with-x" (50.20); x-match of type signedint: 406
 *    "PRECONDITION_FAILED - Invalid x-match field type signedint (value 1); expected longstr"
 *  - auto-delete: the exchange stays until the last binding with it as source goes (unbind,
 *    or deletion of the bound queue); then passive declare answers 404. A new auto-delete
 *    exchange with no bindings yet stays.
 *  - internal: basic.publish to it closes the channel with 403 "ACCESS_REFUSED - cannot publish
 *    to internal exchange 'X' in vhost '/'" (60.40); an exchange-to-exchange binding reaches it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

static amqp_connection_state_t s_conn;
static const char *s_prefix; /* borrowed: harness_name_init()'s, lives for the whole test */

static void qunbind(const char *q, const char *x, const char *key, amqp_table_t args)
{
    harness_queue_unbind(s_conn, 1, q, x, key, args);
}

static void publish(const char *x, const char *key, const char *body, const amqp_table_t *headers)
{
    harness_publish_headers(s_conn, 1, x, key, headers, body);
}

static void expect_close(uint16_t code, uint16_t cls, uint16_t mth, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The next synchronous method on channel 1 sees a channel.close; channel 1 is reopened. */
static void expect_close(uint16_t code, uint16_t cls, uint16_t mth, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(s_conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) /* an asynchronous method: ask again */
        r = harness_round_trip(s_conn, 1);
    harness_expect_channel_close(s_conn, 1, r, code, text, cls, mth);
    harness_channel_open(s_conn, 1);
}

static bool exchange_exists(const char *x)
{
    amqp_exchange_declare(s_conn, 1, amqp_cstring_bytes(x), amqp_empty_bytes, 1, 0, 0, 0,
                          amqp_empty_table);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(s_conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return true;
    char text[512];
    snprintf(text, sizeof text, "NOT_FOUND - no exchange '%s' in vhost '/'", x);
    harness_expect_channel_close(s_conn, 1, r, 404, text, 40, 10);
    harness_channel_open(s_conn, 1);
    return false;
}

/* ---- direct and fanout ---------------------------------------------------------------------- */

static void check_direct(void)
{
    const char *x = harness_name("direct");
    const char *q[4] = {harness_name("d0"), harness_name("d1"), harness_name("d2"),
                        harness_name("d3")};
    harness_exchange_declare(s_conn, 1, x, "direct", 0, amqp_empty_table);
    for (int i = 0; i < 4; i++)
        harness_queue_declare(s_conn, 1, q[i], HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_queue_bind(s_conn, 1, q[0], x, "a", amqp_empty_table);
    harness_queue_bind(s_conn, 1, q[1], x, "a", amqp_empty_table);
    harness_queue_bind(s_conn, 1, q[1], x, "a",
                       amqp_empty_table); /* the same binding twice is one binding */
    harness_queue_bind(s_conn, 1, q[2], x, "b", amqp_empty_table);
    harness_queue_bind(s_conn, 1, q[2], x, "c", amqp_empty_table);
    harness_queue_bind(s_conn, 1, q[3], x, "a", amqp_empty_table);
    harness_queue_bind(s_conn, 1, q[3], x, "b", amqp_empty_table);
    harness_queue_bind(s_conn, 1, q[3], x, "", amqp_empty_table);

    publish(x, "a", "m1", NULL);
    publish(x, "b", "m2", NULL);
    publish(x, "c", "m3", NULL);
    publish(x, "d", "m4", NULL);
    publish(x, "A", "m5", NULL);
    publish(x, "", "m6", NULL);
    publish(x, "a.b", "m7", NULL);
    harness_expect_drain(s_conn, 1, q[0], "m1", "direct");
    harness_expect_drain(s_conn, 1, q[1], "m1", "direct");
    harness_expect_drain(s_conn, 1, q[2], "m2 m3", "direct");
    harness_expect_drain(s_conn, 1, q[3], "m1 m2 m6", "direct");

    qunbind(q[3], x, "a", amqp_empty_table);
    qunbind(q[1], x, "a", amqp_empty_table);
    publish(x, "a", "m8", NULL);
    publish(x, "b", "m9", NULL);
    harness_expect_drain(s_conn, 1, q[0], "m8", "direct after unbind");
    harness_expect_drain(s_conn, 1, q[1], "", "direct after unbind");
    harness_expect_drain(s_conn, 1, q[2], "m9", "direct after unbind");
    harness_expect_drain(s_conn, 1, q[3], "m9", "direct after unbind");

    /* amq.direct is a direct exchange like any other */
    harness_queue_bind(s_conn, 1, q[0], "amq.direct", harness_name("amq-key"), amqp_empty_table);
    publish("amq.direct", harness_name("amq-key"), "m10", NULL);
    harness_expect_drain(s_conn, 1, q[0], "m10", "amq.direct");
    qunbind(q[0], "amq.direct", harness_name("amq-key"), amqp_empty_table);
    harness_exchange_delete(s_conn, 1, x);
    harness_log("direct: several queues per key, several keys per queue, one copy each");
}

static void check_fanout(void)
{
    const char *x = harness_name("fanout");
    const char *q[3] = {harness_name("f0"), harness_name("f1"), harness_name("f2")};
    harness_exchange_declare(s_conn, 1, x, "fanout", 0, amqp_empty_table);
    for (int i = 0; i < 3; i++)
        harness_queue_declare(s_conn, 1, q[i], HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_queue_bind(s_conn, 1, q[0], x, "", amqp_empty_table);
    harness_queue_bind(s_conn, 1, q[1], x, "one", amqp_empty_table);
    harness_queue_bind(s_conn, 1, q[1], x, "two",
                       amqp_empty_table); /* two bindings, still one copy */
    publish(x, "", "m1", NULL);
    publish(x, "whatever", "m2", NULL);
    harness_expect_drain(s_conn, 1, q[0], "m1 m2", "fanout");
    harness_expect_drain(s_conn, 1, q[1], "m1 m2", "fanout");
    harness_expect_drain(s_conn, 1, q[2], "", "fanout");
    qunbind(q[1], x, "one", amqp_empty_table);
    publish(x, "k", "m3", NULL);
    qunbind(q[1], x, "two", amqp_empty_table);
    publish(x, "k", "m4", NULL);
    harness_expect_drain(s_conn, 1, q[0], "m3 m4", "fanout after unbind");
    harness_expect_drain(s_conn, 1, q[1], "m3", "fanout after unbind");
    harness_exchange_delete(s_conn, 1, x);
    harness_log("fanout: every bound queue once, keys ignored");
}

/* ---- topic ---------------------------------------------------------------------------------- */

static void check_topic(void)
{
    static const char *const patterns[] = {"a.*.c", "a.#",   "#",     "*",     "a.b.c",
                                           "*.b.#", "#.c",   "a.*",   "",      "#.#",
                                           "a.#.c", "*.*",   "a.#.#.b.*"};
    static const char *const keys[] = {"a.b.c",   "a",     "a.b",       "a..c",  "",
                                       "b",       "x.b.c.d", "a.b.c.d", "c",     ".c",
                                       "a.b.c.", "a.x.y.b.z", "A.b.c"};
    /* want[i]: the indexes of keys[] whose messages (bodies "k<j>") pattern i gets */
    static const char *const want[] = {
        "k0 k3",
        "k0 k1 k2 k3 k7 k10 k11",
        "k0 k1 k2 k3 k4 k5 k6 k7 k8 k9 k10 k11 k12",
        "k1 k5 k8",
        "k0",
        "k0 k2 k6 k7 k10 k12",
        "k0 k3 k8 k9 k12",
        "k2",
        "k4",
        "k0 k1 k2 k3 k4 k5 k6 k7 k8 k9 k10 k11 k12",
        "k0 k3",
        "k2 k9",
        "k0 k11",
    };
    enum { NP = sizeof patterns / sizeof patterns[0], NK = sizeof keys / sizeof keys[0] };
    _Static_assert(sizeof want / sizeof want[0] == NP, "one answer per pattern");

    const char *x = harness_name("topic");
    harness_exchange_declare(s_conn, 1, x, "topic", 0, amqp_empty_table);
    char q[NP][128];
    for (int i = 0; i < NP; i++) {
        snprintf(q[i], sizeof q[i], "%s", harness_name("t%d", i));
        harness_queue_declare(s_conn, 1, q[i], HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
        harness_queue_bind(s_conn, 1, q[i], x, patterns[i], amqp_empty_table);
    }
    /* one queue, two overlapping patterns: one copy */
    const char *both = harness_name("t-both");
    harness_queue_declare(s_conn, 1, both, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_queue_bind(s_conn, 1, both, x, "a.#", amqp_empty_table);
    harness_queue_bind(s_conn, 1, both, x, "#.c", amqp_empty_table);

    for (int j = 0; j < NK; j++) {
        char body[16];
        snprintf(body, sizeof body, "k%d", j);
        publish(x, keys[j], body, NULL);
    }
    for (int i = 0; i < NP; i++) {
        char what[64];
        snprintf(what, sizeof what, "topic pattern \"%s\"", patterns[i]);
        harness_expect_drain(s_conn, 1, q[i], want[i], what);
    }
    harness_expect_drain(s_conn, 1, both, "k0 k1 k2 k3 k7 k8 k9 k10 k11 k12", "topic a.# + #.c");

    qunbind(q[2], x, "#", amqp_empty_table);
    qunbind(both, x, "a.#", amqp_empty_table);
    publish(x, "a.b.c", "after", NULL);
    harness_expect_drain(s_conn, 1, q[2], "", "topic after unbind #");
    harness_expect_drain(s_conn, 1, both, "after", "topic after unbind a.#");
    harness_exchange_delete(s_conn, 1, x);
    harness_log("topic: %d patterns x %d keys exactly as RabbitMQ", NP, NK);
}

/* ---- headers -------------------------------------------------------------------------------- */

typedef struct kv {
    const char *key;
    char kind; /* AMQP_FIELD_KIND_*: 'I' int, 'l' long, 'B' unsigned byte, 'd' double, 'S'
                  string, 'V' void */
    long long i;
    const char *s;
} kv_t;

/* A table from up to 4 kv_t (stops at key NULL), in static storage slot `slot`. */
static amqp_table_t table(int slot, const kv_t *kvs)
{
    static amqp_table_entry_t e[4][5];
    int n = 0;
    for (; n < 5 && kvs[n].key; n++) {
        amqp_field_value_t v;
        memset(&v, 0, sizeof v);
        v.kind = (uint8_t)kvs[n].kind;
        switch (kvs[n].kind) {
        case AMQP_FIELD_KIND_I32:
            v.value.i32 = (int32_t)kvs[n].i;
            break;
        case AMQP_FIELD_KIND_I64:
            v.value.i64 = kvs[n].i;
            break;
        case AMQP_FIELD_KIND_U8:
            v.value.u8 = (uint8_t)kvs[n].i;
            break;
        case AMQP_FIELD_KIND_I8:
            v.value.i8 = (int8_t)kvs[n].i;
            break;
        case AMQP_FIELD_KIND_F64:
            v.value.f64 = (double)kvs[n].i;
            break;
        case AMQP_FIELD_KIND_UTF8:
            v.value.bytes = amqp_cstring_bytes(kvs[n].s);
            break;
        default:
            break;
        }
        e[slot][n].key = amqp_cstring_bytes(kvs[n].key);
        e[slot][n].value = v;
    }
    amqp_table_t t = {.num_entries = n, .entries = e[slot]};
    return t;
}

#define KV_END {NULL, 0, 0, NULL}
#define S(k, v) {k, AMQP_FIELD_KIND_UTF8, 0, v}
#define I(k, v) {k, AMQP_FIELD_KIND_I32, v, NULL}
#define L(k, v) {k, AMQP_FIELD_KIND_I64, v, NULL}
#define U8(k, v) {k, AMQP_FIELD_KIND_U8, v, NULL}
#define I8(k, v) {k, AMQP_FIELD_KIND_I8, v, NULL}
#define D(k, v) {k, AMQP_FIELD_KIND_F64, v, NULL}
#define V(k) {k, AMQP_FIELD_KIND_VOID, 0, NULL}

static void check_headers(void)
{
    static const kv_t bindings[][5] = {
        {S("x-match", "all"), I("a", 1), S("b", "x"), KV_END},        /* h0 */
        {S("x-match", "any"), I("a", 1), S("b", "x"), KV_END},        /* h1 */
        {S("x-match", "all"), L("a", 1), KV_END},                     /* h2 long vs others */
        {S("x-match", "all"), V("c"), KV_END},                        /* h3 presence */
        {S("b", "x"), KV_END},                                        /* h4 no x-match: all */
        {S("x-match", "any"), KV_END},                                /* h5 nothing */
        {S("x-match", "all"), KV_END},                                /* h6 everything */
        {S("x-match", "all-with-x"), S("x-k", "v"), KV_END},          /* h7 */
        {S("x-match", "any-with-x"), S("x-k", "v"), I("a", 2), KV_END}, /* h8 */
        {S("x-match", "all"), S("x-k", "v"), KV_END},                 /* h9 x- ignored */
        {S("x-match", "any"), S("x-k", "v"), KV_END},                 /* h10 x- ignored */
        {S("x-match", "all"), S("a", "1"), KV_END},                   /* h11 string "1" */
        {S("x-match", "all"), D("a", 1), KV_END},                     /* h12 double 1.0 */
        {S("x-match", "all-with-x"), S("x-k", "v"), I("a", 2), KV_END}, /* h13 */
        {S("x-match", "any"), V("c"), S("b", "y"), KV_END},           /* h14 */
    };
    static const kv_t messages[][5] = {
        {I("a", 1), S("b", "x"), KV_END},  /* M0 */
        {L("a", 1), KV_END},               /* M1 */
        {S("b", "x"), I8("c", 5), KV_END}, /* M2 */
        {I("a", 2), S("x-k", "v"), KV_END}, /* M3 */
        {S("x-k", "v"), KV_END},           /* M4 */
        {KV_END},                          /* M5: no headers property at all */
        {S("a", "1"), V("c"), KV_END},     /* M6 */
        {U8("a", 1), KV_END},              /* M7 */
        {D("a", 1), S("b", "y"), KV_END},  /* M8 */
        {S("b", "X"), KV_END},             /* M9 */
    };
    static const char *const want[] = {
        "M0",
        "M0 M1 M2 M7 M8",
        "M0 M1 M7 M8",
        "M2 M6",
        "M0 M2",
        "",
        "M0 M1 M2 M3 M4 M5 M6 M7 M8 M9",
        "M3 M4",
        "M3 M4",
        "M0 M1 M2 M3 M4 M5 M6 M7 M8 M9",
        "",
        "M6",
        "M0 M1 M7 M8",
        "M3",
        "M2 M6 M8",
    };
    enum { NB = sizeof bindings / sizeof bindings[0], NM = sizeof messages / sizeof messages[0] };
    _Static_assert(sizeof want / sizeof want[0] == NB, "one answer per binding");

    const char *x = harness_name("headers");
    harness_exchange_declare(s_conn, 1, x, "headers", 0, amqp_empty_table);
    char q[NB][128];
    for (int i = 0; i < NB; i++) {
        snprintf(q[i], sizeof q[i], "%s", harness_name("h%d", i));
        harness_queue_declare(s_conn, 1, q[i], HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
        harness_queue_bind(s_conn, 1, q[i], x, "ignored", table(0, bindings[i]));
    }
    for (int j = 0; j < NM; j++) {
        char body[16];
        snprintf(body, sizeof body, "M%d", j);
        amqp_table_t h = table(1, messages[j]);
        publish(x, "any-key", body, j == 5 ? NULL : &h);
    }
    for (int i = 0; i < NB; i++) {
        char what[64];
        snprintf(what, sizeof what, "headers binding h%d", i);
        harness_expect_drain(s_conn, 1, q[i], want[i], what);
    }

    /* unbind needs the same arguments: other arguments unbind nothing */
    qunbind(q[6], x, "ignored", table(0, bindings[5]));
    publish(x, "k", "after", NULL);
    harness_expect_drain(s_conn, 1, q[6], "after", "headers after unbind with other args");
    qunbind(q[6], x, "ignored", table(0, bindings[6]));
    publish(x, "k", "after2", NULL);
    harness_expect_drain(s_conn, 1, q[6], "", "headers after unbind");

    /* invalid x-match */
    static const kv_t bad1[] = {S("x-match", "foo"), KV_END};
    amqp_queue_bind(s_conn, 1, amqp_cstring_bytes(q[0]), amqp_cstring_bytes(x),
                    amqp_empty_bytes, table(0, bad1));
    expect_close(406, 50, 20,
                 "PRECONDITION_FAILED - Invalid x-match field value <<\"foo\">>; expected all, "
                 "any, all-with-x, or any-with-x");
    static const kv_t bad2[] = {I("x-match", 1), KV_END};
    amqp_queue_bind(s_conn, 1, amqp_cstring_bytes(q[0]), amqp_cstring_bytes(x),
                    amqp_empty_bytes, table(0, bad2));
    expect_close(406, 50, 20,
                 "PRECONDITION_FAILED - Invalid x-match field type signedint (value 1); "
                 "expected longstr");

    /* amq.match and amq.headers are headers exchanges */
    static const kv_t mine[] = {S("x-match", "all"), S("it-owner", NULL), KV_END};
    kv_t own[3];
    memcpy(own, mine, sizeof own);
    own[1].s = s_prefix;
    harness_queue_bind(s_conn, 1, q[0], "amq.match", "", table(0, own));
    harness_queue_bind(s_conn, 1, q[1], "amq.headers", "", table(0, own));
    amqp_table_t h = table(1, own + 1);
    publish("amq.match", "", "via-match", &h);
    publish("amq.headers", "", "via-headers", &h);
    harness_expect_drain(s_conn, 1, q[0], "via-match", "amq.match");
    harness_expect_drain(s_conn, 1, q[1], "via-headers", "amq.headers");
    qunbind(q[0], "amq.match", "", table(0, own));
    qunbind(q[1], "amq.headers", "", table(0, own));
    harness_exchange_delete(s_conn, 1, x);
    harness_log("headers: all/any/all-with-x/any-with-x with typed values as RabbitMQ");
}

/* ---- auto-delete and internal ---------------------------------------------------------------- */

static void check_auto_delete(void)
{
    const char *x = harness_name("autodel");
    const char *q0 = harness_name("ad0"), *q1 = harness_name("ad1");
    harness_queue_declare(s_conn, 1, q0, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_queue_declare(s_conn, 1, q1, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_exchange_declare(s_conn, 1, x, "direct",
                             HARNESS_EXCHANGE_AUTO_DELETE, amqp_empty_table);
    CHECK(exchange_exists(x)); /* no binding yet: it stays */
    harness_queue_bind(s_conn, 1, q0, x, "k", amqp_empty_table);
    harness_queue_bind(s_conn, 1, q1, x, "k", amqp_empty_table);
    harness_queue_bind(s_conn, 1, q1, x, "k2", amqp_empty_table);
    qunbind(q1, x, "k", amqp_empty_table);
    CHECK(exchange_exists(x));
    qunbind(q0, x, "k", amqp_empty_table);
    CHECK(exchange_exists(x));
    publish(x, "k2", "m1", NULL);
    harness_expect_drain(s_conn, 1, q1, "m1", "auto-delete exchange");
    qunbind(q1, x, "k2", amqp_empty_table);
    CHECK(!exchange_exists(x));
    harness_log("auto-delete: gone when its last binding is unbound");

    /* the last binding also goes when the bound queue is deleted */
    const char *tmp = harness_name("ad-tmp");
    harness_exchange_declare(s_conn, 1, x, "fanout",
                             HARNESS_EXCHANGE_AUTO_DELETE, amqp_empty_table);
    harness_queue_declare(s_conn, 1, tmp, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_queue_bind(s_conn, 1, tmp, x, "", amqp_empty_table);
    harness_queue_delete(s_conn, 1, tmp);
    CHECK(!exchange_exists(x));

    /* and as the source of an exchange-to-exchange binding */
    const char *dst = harness_name("ad-dst");
    harness_exchange_declare(s_conn, 1, dst, "fanout", 0, amqp_empty_table);
    harness_exchange_declare(s_conn, 1, x, "fanout",
                             HARNESS_EXCHANGE_AUTO_DELETE, amqp_empty_table);
    harness_exchange_bind(s_conn, 1, dst, x, "");
    harness_exchange_unbind(s_conn, 1, dst, x, "");
    CHECK(!exchange_exists(x));
    CHECK(exchange_exists(dst));
    harness_exchange_delete(s_conn, 1, dst);
    harness_log("auto-delete: also when the bound queue goes, and for exchange bindings");
}

static void check_internal(void)
{
    const char *xi = harness_name("internal"), *front = harness_name("front"),
               *q = harness_name("int-q");
    harness_exchange_declare(s_conn, 1, xi, "fanout", HARNESS_EXCHANGE_INTERNAL, amqp_empty_table);
    harness_exchange_declare(s_conn, 1, front, "direct", 0, amqp_empty_table);
    harness_queue_declare(s_conn, 1, q, HARNESS_QUEUE_EXCLUSIVE, amqp_empty_table);
    harness_queue_bind(s_conn, 1, q, xi, "", amqp_empty_table);

    publish(xi, "k", "direct-to-internal", NULL);
    expect_close(403, 60, 40,
                 "ACCESS_REFUSED - cannot publish to internal exchange '%s' in vhost '/'", xi);
    /* the queue is exclusive to this connection, which survived */
    harness_expect_drain(s_conn, 1, q, "", "internal exchange, published to directly");

    harness_exchange_bind(s_conn, 1, xi, front, "in");
    publish(front, "in", "m1", NULL);
    publish(front, "out", "m2", NULL);
    harness_expect_drain(s_conn, 1, q, "m1", "internal exchange behind an exchange binding");
    harness_exchange_delete(s_conn, 1, front);
    harness_exchange_delete(s_conn, 1, xi);
    harness_log("internal: 403 on publish, reachable through an exchange binding");
}

int main(void)
{
    harness_broker_t b;
    s_conn = harness_begin(&b, 50, NULL);
    s_prefix = harness_name_init("it-xr");

    check_direct();
    check_fanout();
    check_topic();
    check_headers();
    check_auto_delete();
    check_internal();

    harness_disconnect(s_conn); /* the queues are exclusive: they go with it */
    return harness_finish(&b);
}
