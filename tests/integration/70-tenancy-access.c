/* 70-tenancy-access — RabbitMQ's access-control table, every row allowed and refused, against a
 * warrend started with --load-definitions (users, vhosts, permissions, topic permissions and a
 * few entities written by this test to a temp dir, removed at the end). Owns nothing but that
 * file and the entities it declares in its vhosts. Every refusal is checked for its exact code,
 * text and class/method ids, and the order of checks is RabbitMQ's (3.10.8 was the reference).
 * With WARREN_TEST_DEFS_OUT=FILE it only writes the definitions there (to import them into an
 * external broker: rabbitmqctl import_definitions FILE) and exits 0. */
#include "harness.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

#define VA "it-tenancy-a" /* ta-u's limited vhost */
#define VB "it-tenancy-b" /* ta-u may do anything here */
#define VC "it-tenancy-c" /* ta-u has no permissions here */
#define VNONE "it-tenancy-nosuch"
#define PASS "test12"

/* Permissions in VA of user ta-u: the first dash-separated word of a name lists what ta-u may
 * do with it ("cwr-..." everything, "w-..." write only, "x-..." nothing): */
#define U_CONF "^[a-z]*c[a-z]*-"
#define U_WRITE "^[a-z]*w[a-z]*-"
#define U_READ "^[a-z]*r[a-z]*-"

static const char s_defs[] =
    "{\n"
    " \"rabbit_version\": \"3.10.8\",\n"
    " \"users\": [\n"
    "  {\"name\": \"ta-admin\", \"password_hash\": \"%1$s\", \"hashing_algorithm\": \"%2$s\", "
    "\"tags\": []},\n"
    "  {\"name\": \"ta-u\", \"password_hash\": \"%1$s\", \"hashing_algorithm\": \"%2$s\", "
    "\"tags\": []},\n"
    "  {\"name\": \"ta-pub\", \"password_hash\": \"%1$s\", \"hashing_algorithm\": \"%2$s\", "
    "\"tags\": []},\n"
    "  {\"name\": \"ta-none\", \"password_hash\": \"%1$s\", \"hashing_algorithm\": \"%2$s\", "
    "\"tags\": []}\n"
    " ],\n"
    " \"vhosts\": [{\"name\": \"" VA "\"}, {\"name\": \"" VB "\"}, {\"name\": \"" VC "\"}],\n"
    " \"permissions\": [\n"
    "  {\"user\": \"ta-admin\", \"vhost\": \"" VA "\", \"configure\": \".*\", \"write\": \".*\", "
    "\"read\": \".*\"},\n"
    "  {\"user\": \"ta-admin\", \"vhost\": \"" VB "\", \"configure\": \".*\", \"write\": \".*\", "
    "\"read\": \".*\"},\n"
    "  {\"user\": \"ta-admin\", \"vhost\": \"" VC "\", \"configure\": \".*\", \"write\": \".*\", "
    "\"read\": \".*\"},\n"
    "  {\"user\": \"ta-u\", \"vhost\": \"" VA "\", \"configure\": \"" U_CONF "\", \"write\": \"" U_WRITE
    "\", \"read\": \"" U_READ "\"},\n"
    "  {\"user\": \"ta-u\", \"vhost\": \"" VB "\", \"configure\": \".*\", \"write\": \".*\", "
    "\"read\": \".*\"},\n"
    "  {\"user\": \"ta-pub\", \"vhost\": \"" VA "\", \"configure\": \"\", "
    "\"write\": \"^amq\\\\.default$\", \"read\": \"\"},\n"
    "  {\"user\": \"ta-none\", \"vhost\": \"" VA "\", \"configure\": \"\", \"write\": \"\", "
    "\"read\": \"\"}\n"
    " ],\n"
    " \"topic_permissions\": [\n"
    "  {\"user\": \"ta-u\", \"vhost\": \"" VA "\", \"exchange\": \"cwr-t1\", "
    "\"write\": \"^{username}\\\\.\", \"read\": \"^{vhost}\\\\.\"},\n"
    "  {\"user\": \"ta-u\", \"vhost\": \"" VA "\", \"exchange\": \"cwr-d\", "
    "\"write\": \"^nomatch$\", \"read\": \"^nomatch$\"}\n"
    " ],\n"
    " \"exchanges\": [\n"
    "  {\"name\": \"cwr-t1\", \"vhost\": \"" VA "\", \"type\": \"topic\", \"durable\": true, "
    "\"auto_delete\": false, \"internal\": false, \"arguments\": {}},\n"
    "  {\"name\": \"cwr-t2\", \"vhost\": \"" VA "\", \"type\": \"topic\", \"durable\": true, "
    "\"auto_delete\": false, \"internal\": false, \"arguments\": {}},\n"
    "  {\"name\": \"cwr-d\", \"vhost\": \"" VA "\", \"type\": \"direct\", \"durable\": true, "
    "\"auto_delete\": false, \"internal\": false, \"arguments\": {}},\n"
    "  {\"name\": \"cwr-t1\", \"vhost\": \"" VB "\", \"type\": \"topic\", \"durable\": true, "
    "\"auto_delete\": false, \"internal\": false, \"arguments\": {}}\n"
    " ],\n"
    " \"queues\": [\n"
    "  {\"name\": \"cwr-defq\", \"vhost\": \"" VA "\", \"durable\": true, \"auto_delete\": false, "
    "\"arguments\": {}}\n"
    " ],\n"
    " \"bindings\": [\n"
    "  {\"source\": \"cwr-t2\", \"vhost\": \"" VA "\", \"destination\": \"cwr-defq\", "
    "\"destination_type\": \"queue\", \"routing_key\": \"defs.#\", \"arguments\": {}}\n"
    " ]\n"
    "}\n";

/* sha256 hash of "test12" in RabbitMQ's stored form (base64 of salt || sha256(salt || pw)). */
#define HASH "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"

static harness_broker_t s_b;
static bool s_ext; /* external broker: RabbitMQ 3.10's texts, without the permission word */

static void write_defs(const char *path)
{
    FILE *f = fopen(path, "w");
    CHECKF(f, "fopen %s: %s", path, strerror(errno));
    fprintf(f, s_defs, HASH, "rabbit_password_hashing_sha256");
    CHECK(fclose(f) == 0);
}

/* A name of this run: "<perms>-<pid>-<suffix>" (perms as in U_CONF above). Rotating storage. */
static const char *nm(const char *perms, const char *suffix)
{
    static char bufs[32][128];
    static unsigned next;
    char *b = bufs[next++ % 32];
    snprintf(b, sizeof bufs[0], "%s-%d-%s", perms, (int)getpid(), suffix);
    return b;
}

/* The reply text of a refusal as current RabbitMQ words it ("ACCESS_REFUSED - configure access
 * to queue 'q' in vhost 'v' refused for user 'u'", topics "... access to topic 'k' in exchange
 * 'x' in vhost ..."). RabbitMQ 3.10 leaves the permission word out: against an external broker it
 * is stripped. Rotating storage. */
static const char *refusal(const char *fmt, ...)
{
    static char bufs[8][1024];
    static unsigned next;
    char *b = bufs[next++ % 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof bufs[0], fmt, ap);
    va_end(ap);
    static const char prefix[] = "ACCESS_REFUSED - ";
    static const char *const words[] = {"configure ", "write ", "read "};
    CHECKF(strncmp(b, prefix, strlen(prefix)) == 0, "refusal text \"%s\"", b);
    if (s_ext) {
        char *w = b + strlen(prefix);
        for (size_t i = 0; i < 3; i++)
            if (strncmp(w, words[i], strlen(words[i])) == 0) {
                memmove(w, w + strlen(words[i]), strlen(w + strlen(words[i])) + 1);
                break;
            }
    }
    return b;
}

/* "<perm> access to <kind> '<name>' in vhost '<vhost>' refused for user '<user>'" */
static const char *denied(const char *perm, const char *kind, const char *name, const char *vhost,
                          const char *user)
{
    return refusal("ACCESS_REFUSED - %s access to %s '%s' in vhost '%s' refused for user '%s'",
                   perm, kind, name, vhost, user);
}

static const char *topic_denied(const char *perm, const char *key, const char *exchange,
                                const char *vhost, const char *user)
{
    return refusal("ACCESS_REFUSED - %s access to topic '%s' in exchange '%s' in vhost '%s' "
                   "refused for user '%s'",
                   perm, key, exchange, vhost, user);
}

/* ---- connections ------------------------------------------------------------------------- */

/* user (password PASS) logged in on vhost, channel 1 open; the test fails otherwise. */
static amqp_connection_state_t open_as(const char *user, const char *vhost)
{
    return harness_open_as(&s_b, user, PASS, vhost);
}

/* ---- one method each on channel 1, the reply returned unchecked ------------------------------ */

static amqp_rpc_reply_t x_declare(amqp_connection_state_t c, const char *x, const char *type,
                                  bool passive, amqp_table_t args)
{
    amqp_exchange_declare(c, 1, amqp_cstring_bytes(x), amqp_cstring_bytes(type), passive, 0, 0, 0,
                          args);
    return amqp_get_rpc_reply(c);
}

static amqp_rpc_reply_t x_delete(amqp_connection_state_t c, const char *x)
{
    amqp_exchange_delete(c, 1, amqp_cstring_bytes(x), 0);
    return amqp_get_rpc_reply(c);
}

static amqp_rpc_reply_t q_declare(amqp_connection_state_t c, const char *q, bool passive,
                                  amqp_table_t args)
{
    amqp_queue_declare(c, 1, amqp_cstring_bytes(q), passive, 0, 0, 0, args);
    return amqp_get_rpc_reply(c);
}

static amqp_rpc_reply_t q_delete(amqp_connection_state_t c, const char *q)
{
    amqp_queue_delete(c, 1, amqp_cstring_bytes(q), 0, 0);
    return amqp_get_rpc_reply(c);
}

static amqp_rpc_reply_t q_bind(amqp_connection_state_t c, bool bind, const char *q, const char *x,
                               const char *key)
{
    if (bind)
        amqp_queue_bind(c, 1, amqp_cstring_bytes(q), amqp_cstring_bytes(x),
                        amqp_cstring_bytes(key), amqp_empty_table);
    else
        amqp_queue_unbind(c, 1, amqp_cstring_bytes(q), amqp_cstring_bytes(x),
                          amqp_cstring_bytes(key), amqp_empty_table);
    return amqp_get_rpc_reply(c);
}

static amqp_rpc_reply_t x_bind(amqp_connection_state_t c, bool bind, const char *dst,
                               const char *src, const char *key)
{
    if (bind)
        amqp_exchange_bind(c, 1, amqp_cstring_bytes(dst), amqp_cstring_bytes(src),
                           amqp_cstring_bytes(key), amqp_empty_table);
    else
        amqp_exchange_unbind(c, 1, amqp_cstring_bytes(dst), amqp_cstring_bytes(src),
                             amqp_cstring_bytes(key), amqp_empty_table);
    return amqp_get_rpc_reply(c);
}

/* basic.get that must not be answered with get-ok (a message would have to be read). */
static amqp_rpc_reply_t get_refused(amqp_connection_state_t c, const char *q)
{
    amqp_rpc_reply_t r = amqp_basic_get(c, 1, amqp_cstring_bytes(q), 1);
    CHECKF(!(r.reply_type == AMQP_RESPONSE_NORMAL && r.reply.id == AMQP_BASIC_GET_OK_METHOD),
           "basic.get on '%s' gave a message", q);
    return r;
}

static amqp_rpc_reply_t consume(amqp_connection_state_t c, const char *q)
{
    amqp_basic_consume(c, 1, amqp_cstring_bytes(q), amqp_empty_bytes, 0, 1, 0, amqp_empty_table);
    return amqp_get_rpc_reply(c);
}

static amqp_rpc_reply_t purge(amqp_connection_state_t c, const char *q)
{
    amqp_queue_purge(c, 1, amqp_cstring_bytes(q));
    return amqp_get_rpc_reply(c);
}

/* basic.publish, then a round trip: normal, or the channel.close the publish caused. */
static amqp_rpc_reply_t publish(amqp_connection_state_t c, const char *x, const char *key,
                                const char *body)
{
    harness_publish(c, 1, x, key, body);
    return harness_round_trip(c, 1);
}

/* A table with one longstr argument (borrowed strings, static storage: one at a time). */
static amqp_table_t arg1(const char *key, const char *value)
{
    static harness_args_t a;
    a.n = 0;
    harness_arg_str(&a, key, value);
    return harness_args_table(&a);
}

#define OK(r) CHECK_REPLY(r)

/* r is a 403 channel.close on channel 1 with this text and method; channel 1 is opened again. */
#define REFUSED(c, r, cls, mth, text)                                                             \
    harness_expect_channel_reopen((c), 1, (r), 403, (cls), (mth), "%s", (text))

/* r is a 404 channel.close; channel 1 is opened again. */
#define MISSING(c, r, cls, mth, kind, name, vhost)                                                \
    harness_expect_channel_reopen((c), 1, (r), 404, (cls), (mth), "NOT_FOUND - no %s '%s' in "    \
                                  "vhost '%s'", (kind), (name), (vhost))

/* ---- the table, row by row ------------------------------------------------------------------ */

/* The entities ta-u works on in VA, declared by ta-admin. */
static void setup(amqp_connection_state_t adm)
{
    /* the definitions' entities are there */
    OK(x_declare(adm, "cwr-t1", "topic", true, amqp_empty_table));
    OK(x_declare(adm, "cwr-t2", "topic", true, amqp_empty_table));
    OK(x_declare(adm, "cwr-d", "direct", true, amqp_empty_table));
    OK(q_declare(adm, "cwr-defq", true, amqp_empty_table));
    harness_queue_purge(adm, 1, "cwr-defq");
    harness_publish(adm, 1, "cwr-t2", "defs.x", "via-defs-binding");
    harness_expect_drain(adm, 1, "cwr-defq", "via-defs-binding", "binding from definitions");

    const char *perms[] = {"x", "r", "w"};
    for (int i = 0; i < 3; i++) {
        OK(x_declare(adm, nm(perms[i], "e"), "direct", false, amqp_empty_table));
        OK(q_declare(adm, nm(perms[i], "q"), false, amqp_empty_table));
    }
    /* what ta-u publishes to w-e reaches r-q */
    OK(q_bind(adm, true, nm("r", "q"), nm("w", "e"), "k"));
}

static void exchanges(amqp_connection_state_t u)
{
    /* exchange.declare: configure on the exchange */
    OK(x_declare(u, nm("c", "e1"), "direct", false, amqp_empty_table));
    OK(x_declare(u, nm("c", "e1"), "direct", false, amqp_empty_table));
    harness_expect_channel_reopen(u, 1, x_declare(u, nm("c", "e1"), "fanout", false,
                                                  amqp_empty_table),
                                  406, 40, 10,
                                  "PRECONDITION_FAILED - inequivalent arg 'type' for exchange "
                                  "'%s' in vhost '" VA "': received 'fanout' but current is "
                                  "'direct'",
                                  nm("c", "e1"));
    REFUSED(u, x_declare(u, nm("w", "e1"), "direct", false, amqp_empty_table), 40, 10,
            denied("configure", "exchange", nm("w", "e1"), VA, "ta-u"));
    /* configure is checked before anything about the existing exchange (no 406 here) */
    REFUSED(u, x_declare(u, nm("x", "e"), "fanout", false, amqp_empty_table), 40, 10,
            denied("configure", "exchange", nm("x", "e"), VA, "ta-u"));
    REFUSED(u, x_declare(u, nm("x", "e"), "direct", false, amqp_empty_table), 40, 10,
            denied("configure", "exchange", nm("x", "e"), VA, "ta-u"));
    /* passive declare needs no permission */
    OK(x_declare(u, nm("x", "e"), "direct", true, amqp_empty_table));
    MISSING(u, x_declare(u, nm("x", "none"), "direct", true, amqp_empty_table), 40, 10,
            "exchange", nm("x", "none"), VA);

    /* exchange.delete: configure on the exchange */
    REFUSED(u, x_delete(u, nm("x", "e")), 40, 20,
            denied("configure", "exchange", nm("x", "e"), VA, "ta-u"));
    REFUSED(u, x_delete(u, nm("rw", "e")), 40, 20,
            denied("configure", "exchange", nm("rw", "e"), VA, "ta-u"));
    OK(x_delete(u, nm("c", "e1")));
    MISSING(u, x_declare(u, nm("c", "e1"), "direct", true, amqp_empty_table), 40, 10, "exchange",
            nm("c", "e1"), VA);
    OK(x_declare(u, nm("x", "e"), "direct", true, amqp_empty_table)); /* still there */

    /* the default exchange is refused before any permission; configure comes before the
     * reserved-name check of a new exchange */
    harness_expect_channel_reopen(u, 1, x_declare(u, "", "direct", false, amqp_empty_table), 403,
                                  40, 10,
                                  "ACCESS_REFUSED - operation not permitted on the default "
                                  "exchange");
    harness_expect_channel_reopen(u, 1, x_delete(u, ""), 403, 40, 20,
                                  "ACCESS_REFUSED - operation not permitted on the default "
                                  "exchange");
    REFUSED(u, x_declare(u, "amq.ta", "direct", false, amqp_empty_table), 40, 10,
            denied("configure", "exchange", "amq.ta", VA, "ta-u"));
}

static void queues(amqp_connection_state_t u)
{
    /* queue.declare: configure on the queue */
    OK(q_declare(u, nm("c", "q1"), false, amqp_empty_table));
    OK(q_declare(u, nm("c", "q1"), false, amqp_empty_table));
    REFUSED(u, q_declare(u, nm("w", "q1"), false, amqp_empty_table), 50, 10,
            denied("configure", "queue", nm("w", "q1"), VA, "ta-u"));
    /* an existing, equivalent queue is refused all the same */
    REFUSED(u, q_declare(u, nm("x", "q"), false, amqp_empty_table), 50, 10,
            denied("configure", "queue", nm("x", "q"), VA, "ta-u"));
    /* passive declare needs no permission */
    OK(q_declare(u, nm("x", "q"), true, amqp_empty_table));
    MISSING(u, q_declare(u, nm("x", "none"), true, amqp_empty_table), 50, 10, "queue",
            nm("x", "none"), VA);

    /* queue.delete: configure on the queue */
    REFUSED(u, q_delete(u, nm("x", "q")), 50, 40,
            denied("configure", "queue", nm("x", "q"), VA, "ta-u"));
    REFUSED(u, q_delete(u, nm("wr", "q")), 50, 40,
            denied("configure", "queue", nm("wr", "q"), VA, "ta-u"));
    OK(q_delete(u, nm("c", "q1")));
    MISSING(u, q_declare(u, nm("c", "q1"), true, amqp_empty_table), 50, 10, "queue",
            nm("c", "q1"), VA);
    OK(q_declare(u, nm("x", "q"), true, amqp_empty_table)); /* still there */

    /* a queue's reserved name is refused before configure is checked */
    harness_expect_channel_reopen(u, 1, q_declare(u, "amq.ta", false, amqp_empty_table), 403, 50,
                                  10,
                                  "ACCESS_REFUSED - queue name 'amq.ta' contains reserved prefix "
                                  "'amq.*'");
    /* a server-named queue needs configure on the name it would get (amq.gen-...) */
    amqp_rpc_reply_t r = q_declare(u, "", false, amqp_empty_table);
    char buf[512];
    CHECKF(r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
               r.reply.id == AMQP_CHANNEL_CLOSE_METHOD,
           "server-named queue: %s", harness_reply_str(r, buf, sizeof buf));
    const amqp_channel_close_t *c = r.reply.decoded;
    const char *want = refusal("ACCESS_REFUSED - configure access to queue 'amq.gen-");
    snprintf(buf, sizeof buf, "%.*s", (int)c->reply_text.len, (const char *)c->reply_text.bytes);
    harness_log("channel 1 closed: %u %s (%u.%u)", c->reply_code, buf, c->class_id, c->method_id);
    CHECKF(c->reply_code == 403 && c->class_id == 50 && c->method_id == 10 &&
               strncmp(buf, want, strlen(want)) == 0 &&
               strstr(buf, "' in vhost '" VA "' refused for user 'ta-u'") != NULL,
           "server-named queue: %u %s (%u.%u)", c->reply_code, buf, c->class_id, c->method_id);
    amqp_channel_close_ok_t close_ok = {0};
    CHECK_AMQP(amqp_send_method(u, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok));
    harness_channel_open(u, 1);
}

typedef amqp_rpc_reply_t (*bind_fn)(amqp_connection_state_t c, bool bind, const char *dst,
                                     const char *src, const char *key);

/* A bind method and its unbind on class cls (methods m_bind, m_unbind) as ta-u: write on the
 * destination, a dst_kind named nm(<perm>, dst), then read on the source exchange. */
static void bind_rows(amqp_connection_state_t u, bind_fn bind, uint16_t cls, uint16_t m_bind,
                      uint16_t m_unbind, const char *dst, const char *dst_kind)
{
    for (int b = 1; b >= 0; b--) {
        uint16_t m = b ? m_bind : m_unbind;
        OK(bind(u, b, nm("w", dst), nm("r", "e"), "k"));
        REFUSED(u, bind(u, b, nm("r", dst), nm("r", "e"), "k"), cls, m,
                denied("write", dst_kind, nm("r", dst), VA, "ta-u"));
        REFUSED(u, bind(u, b, nm("w", dst), nm("w", "e"), "k"), cls, m,
                denied("read", "exchange", nm("w", "e"), VA, "ta-u"));
        /* lacking both: the destination's refusal */
        REFUSED(u, bind(u, b, nm("x", dst), nm("x", "e"), "k"), cls, m,
                denied("write", dst_kind, nm("x", dst), VA, "ta-u"));
        /* permissions before existence */
        REFUSED(u, bind(u, b, nm("x", "none"), nm("r", "e"), "k"), cls, m,
                denied("write", dst_kind, nm("x", "none"), VA, "ta-u"));
        REFUSED(u, bind(u, b, nm("w", dst), nm("x", "none"), "k"), cls, m,
                denied("read", "exchange", nm("x", "none"), VA, "ta-u"));
    }
}

static void bindings(amqp_connection_state_t u)
{
    /* queue.bind and queue.unbind: write on the queue, then read on the exchange */
    bind_rows(u, q_bind, 50, 20, 50, "q", "queue");
    /* the default exchange: write on the queue first, then the default-exchange refusal */
    REFUSED(u, q_bind(u, true, nm("x", "q"), "", "k"), 50, 20,
            denied("write", "queue", nm("x", "q"), VA, "ta-u"));
    harness_expect_channel_reopen(u, 1, q_bind(u, true, nm("w", "q"), "", "k"), 403, 50, 20,
                                  "ACCESS_REFUSED - operation not permitted on the default "
                                  "exchange");
    MISSING(u, q_bind(u, true, nm("w", "q"), nm("r", "none"), "k"), 50, 20, "exchange",
            nm("r", "none"), VA);
    MISSING(u, q_bind(u, true, nm("w", "none"), nm("r", "e"), "k"), 50, 20, "queue",
            nm("w", "none"), VA);

    /* exchange.bind and exchange.unbind: write on the destination, then read on the source */
    bind_rows(u, x_bind, 40, 30, 40, "e", "exchange");
}

static void messages(amqp_connection_state_t u)
{
    /* basic.publish: write on the exchange */
    OK(publish(u, nm("w", "e"), "k", "via-w"));
    REFUSED(u, publish(u, nm("r", "e"), "k", "lost"), 60, 40,
            denied("write", "exchange", nm("r", "e"), VA, "ta-u"));
    REFUSED(u, publish(u, nm("x", "none"), "k", "lost"), 60, 40,
            denied("write", "exchange", nm("x", "none"), VA, "ta-u"));
    MISSING(u, publish(u, nm("w", "none"), "k", "lost"), 60, 40, "exchange", nm("w", "none"),
            VA);
    /* the default exchange is checked as amq.default */
    REFUSED(u, publish(u, "", nm("r", "q"), "lost"), 60, 40,
            denied("write", "exchange", "amq.default", VA, "ta-u"));
    REFUSED(u, publish(u, "amq.direct", nm("r", "q"), "lost"), 60, 40,
            denied("write", "exchange", "amq.direct", VA, "ta-u"));

    /* basic.get: read on the queue */
    REFUSED(u, get_refused(u, nm("w", "q")), 60, 70,
            denied("read", "queue", nm("w", "q"), VA, "ta-u"));
    REFUSED(u, get_refused(u, nm("x", "none")), 60, 70,
            denied("read", "queue", nm("x", "none"), VA, "ta-u"));
    MISSING(u, get_refused(u, nm("r", "none")), 60, 70, "queue", nm("r", "none"), VA);
    harness_expect_get(u, 1, nm("r", "q"), "via-w", nm("w", "e"), "k");

    /* basic.consume: read on the queue */
    REFUSED(u, consume(u, nm("w", "q")), 60, 20,
            denied("read", "queue", nm("w", "q"), VA, "ta-u"));
    REFUSED(u, consume(u, nm("x", "none")), 60, 20,
            denied("read", "queue", nm("x", "none"), VA, "ta-u"));
    harness_consume(u, 1, nm("r", "q"), "ta-c", HARNESS_CONSUME_NO_ACK, amqp_empty_table);
    OK(publish(u, nm("w", "e"), "k", "consumed"));
    harness_expect_message(u, 1, "ta-c", "consumed", false);
    harness_cancel(u, 1, "ta-c");

    /* queue.purge: read on the queue */
    REFUSED(u, purge(u, nm("w", "q")), 50, 30, denied("read", "queue", nm("w", "q"), VA, "ta-u"));
    REFUSED(u, purge(u, nm("x", "q")), 50, 30, denied("read", "queue", nm("x", "q"), VA, "ta-u"));
    OK(publish(u, nm("w", "e"), "k", "purged"));
    CHECK_EQ(harness_wait_message_count(u, 1, nm("r", "q"), 1, 5000), 1);
    CHECK_EQ(harness_queue_purge(u, 1, nm("r", "q")), 1);
}

/* The other users of VA: ta-pub may only write amq.default, ta-none has '' everywhere. */
static void other_users(amqp_connection_state_t adm)
{
    amqp_connection_state_t p = open_as("ta-pub", VA);
    /* publishing to "" needs write on amq.default only, not on the queue */
    OK(publish(p, "", nm("x", "q"), "via-default"));
    harness_expect_drain(adm, 1, nm("x", "q"), "via-default", "ta-pub through amq.default");
    REFUSED(p, publish(p, "amq.direct", "k", "lost"), 60, 40,
            denied("write", "exchange", "amq.direct", VA, "ta-pub"));
    REFUSED(p, q_declare(p, nm("cwr", "q"), false, amqp_empty_table), 50, 10,
            denied("configure", "queue", nm("cwr", "q"), VA, "ta-pub"));
    harness_disconnect(p);

    /* '' matches nothing, but the user may still open the vhost and look */
    amqp_connection_state_t n = open_as("ta-none", VA);
    OK(q_declare(n, nm("x", "q"), true, amqp_empty_table));
    OK(x_declare(n, nm("x", "e"), "direct", true, amqp_empty_table));
    REFUSED(n, x_declare(n, nm("cwr", "e"), "direct", false, amqp_empty_table), 40, 10,
            denied("configure", "exchange", nm("cwr", "e"), VA, "ta-none"));
    REFUSED(n, q_declare(n, nm("cwr", "q"), false, amqp_empty_table), 50, 10,
            denied("configure", "queue", nm("cwr", "q"), VA, "ta-none"));
    REFUSED(n, publish(n, "", nm("x", "q"), "lost"), 60, 40,
            denied("write", "exchange", "amq.default", VA, "ta-none"));
    REFUSED(n, get_refused(n, nm("x", "q")), 60, 70,
            denied("read", "queue", nm("x", "q"), VA, "ta-none"));
    REFUSED(n, q_bind(n, true, nm("x", "q"), nm("x", "e"), "k"), 50, 20,
            denied("write", "queue", nm("x", "q"), VA, "ta-none"));
    harness_disconnect(n);
    harness_expect_drain(adm, 1, nm("x", "q"), "", "nothing else reached x-q");
}

/* alternate-exchange and x-dead-letter-exchange */
static void ae_dlx(amqp_connection_state_t u, amqp_connection_state_t adm)
{
    /* exchange.declare with an AE: read on the declared exchange, then write on the AE */
    OK(x_declare(u, nm("cr", "ae1"), "direct", false, arg1("alternate-exchange", nm("w", "ae"))));
    REFUSED(u, x_declare(u, nm("cr", "ae2"), "direct", false,
                         arg1("alternate-exchange", nm("r", "ae"))),
            40, 10, denied("write", "exchange", nm("r", "ae"), VA, "ta-u"));
    REFUSED(u, x_declare(u, nm("c", "ae3"), "direct", false,
                         arg1("alternate-exchange", nm("w", "ae"))),
            40, 10, denied("read", "exchange", nm("c", "ae3"), VA, "ta-u"));
    REFUSED(u, x_declare(u, nm("c", "ae4"), "direct", false,
                         arg1("alternate-exchange", nm("x", "ae"))),
            40, 10, denied("read", "exchange", nm("c", "ae4"), VA, "ta-u"));
    REFUSED(u, x_declare(u, nm("x", "ae5"), "direct", false,
                         arg1("alternate-exchange", nm("x", "ae"))),
            40, 10, denied("configure", "exchange", nm("x", "ae5"), VA, "ta-u"));
    /* only the refused ones were not declared */
    OK(x_declare(adm, nm("cr", "ae1"), "direct", true, amqp_empty_table));
    MISSING(adm, x_declare(adm, nm("cr", "ae2"), "direct", true, amqp_empty_table), 40, 10,
            "exchange", nm("cr", "ae2"), VA);
    MISSING(adm, x_declare(adm, nm("c", "ae3"), "direct", true, amqp_empty_table), 40, 10,
            "exchange", nm("c", "ae3"), VA);
    OK(x_delete(u, nm("cr", "ae1")));

    /* queue.declare with a DLX: read on the queue, then write on the DLX */
    OK(q_declare(u, nm("cr", "dl1"), false, arg1("x-dead-letter-exchange", nm("w", "dlx"))));
    REFUSED(u, q_declare(u, nm("cr", "dl2"), false, arg1("x-dead-letter-exchange", nm("r", "dlx"))),
            50, 10, denied("write", "exchange", nm("r", "dlx"), VA, "ta-u"));
    REFUSED(u, q_declare(u, nm("c", "dl3"), false, arg1("x-dead-letter-exchange", nm("w", "dlx"))),
            50, 10, denied("read", "queue", nm("c", "dl3"), VA, "ta-u"));
    REFUSED(u, q_declare(u, nm("c", "dl4"), false, arg1("x-dead-letter-exchange", nm("x", "dlx"))),
            50, 10, denied("read", "queue", nm("c", "dl4"), VA, "ta-u"));
    /* the default exchange as DLX is amq.default */
    REFUSED(u, q_declare(u, nm("cr", "dl5"), false, arg1("x-dead-letter-exchange", "")), 50, 10,
            denied("write", "exchange", "amq.default", VA, "ta-u"));
    OK(q_declare(adm, nm("cr", "dl1"), true, amqp_empty_table));
    MISSING(adm, q_declare(adm, nm("cr", "dl2"), true, amqp_empty_table), 50, 10, "queue",
            nm("cr", "dl2"), VA);
    MISSING(adm, q_declare(adm, nm("c", "dl3"), true, amqp_empty_table), 50, 10, "queue",
            nm("c", "dl3"), VA);
    OK(q_delete(u, nm("cr", "dl1")));
}

/* Topic permissions of ta-u in VA: cwr-t1 write "^{username}\." read "^{vhost}\.", cwr-d (a
 * direct exchange) "^nomatch$" both; cwr-t2 has none. */
static void topics(amqp_connection_state_t u, amqp_connection_state_t adm)
{
    const char *tq = nm("cwr", "tq");
    OK(q_declare(u, tq, false, amqp_empty_table));

    /* publish: the routing key against the write pattern, {username} expanded */
    OK(publish(u, "cwr-t1", "ta-u.x", "t1"));
    REFUSED(u, publish(u, "cwr-t1", "ta-ux", "lost"), 60, 40,
            topic_denied("write", "ta-ux", "cwr-t1", VA, "ta-u"));
    REFUSED(u, publish(u, "cwr-t1", "other.ta-u.x", "lost"), 60, 40,
            topic_denied("write", "other.ta-u.x", "cwr-t1", VA, "ta-u"));
    REFUSED(u, publish(u, "cwr-t1", "", "lost"), 60, 40,
            topic_denied("write", "", "cwr-t1", VA, "ta-u"));

    /* queue.bind / unbind: the binding key against the read pattern, {vhost} expanded */
    OK(q_bind(u, true, tq, "cwr-t1", VA ".#"));
    REFUSED(u, q_bind(u, true, tq, "cwr-t1", "ta-u.#"), 50, 20,
            topic_denied("read", "ta-u.#", "cwr-t1", VA, "ta-u"));
    REFUSED(u, q_bind(u, true, tq, "cwr-t1", "#"), 50, 20,
            topic_denied("read", "#", "cwr-t1", VA, "ta-u"));
    REFUSED(u, q_bind(u, false, tq, "cwr-t1", "#"), 50, 50,
            topic_denied("read", "#", "cwr-t1", VA, "ta-u"));
    OK(q_bind(u, false, tq, "cwr-t1", VA ".#"));
    /* exchange.bind with a topic source: the same read check */
    OK(x_bind(u, true, nm("w", "e"), "cwr-t1", VA ".k"));
    REFUSED(u, x_bind(u, true, nm("w", "e"), "cwr-t1", "k"), 40, 30,
            topic_denied("read", "k", "cwr-t1", VA, "ta-u"));
    REFUSED(u, x_bind(u, false, nm("w", "e"), "cwr-t1", "k"), 40, 40,
            topic_denied("read", "k", "cwr-t1", VA, "ta-u"));
    OK(x_bind(u, false, nm("w", "e"), "cwr-t1", VA ".k"));

    /* a topic permission on cwr-t1 does not restrict cwr-t2 */
    OK(q_bind(u, true, tq, "cwr-t2", "#"));
    OK(publish(u, "cwr-t2", "anything", "t2"));
    harness_expect_drain(u, 1, tq, "t2", "cwr-t2 is not restricted");
    OK(q_bind(u, false, tq, "cwr-t2", "#"));

    /* a non-topic exchange is never topic-checked, even with a topic permission on it */
    OK(q_bind(u, true, tq, "cwr-d", "k"));
    OK(publish(u, "cwr-d", "k", "d"));
    harness_expect_drain(u, 1, tq, "d", "cwr-d is not topic-checked");
    OK(q_bind(u, false, tq, "cwr-d", "k"));

    /* topic permissions are per user: ta-admin has none */
    OK(q_bind(adm, true, tq, "cwr-t1", "#"));
    OK(publish(adm, "cwr-t1", "k", "adm"));
    harness_expect_drain(adm, 1, tq, "adm", "ta-admin is not topic-checked");
    OK(q_delete(u, tq));
}

/* ta-u in VB: other permissions, no topic permission on VB's cwr-t1. */
static void other_vhost(void)
{
    amqp_connection_state_t u = open_as("ta-u", VB);
    const char *q = nm("x", "q");
    OK(q_declare(u, q, false, amqp_empty_table));
    OK(q_bind(u, true, q, "cwr-t1", "#"));
    OK(publish(u, "cwr-t1", "k", "b1"));
    OK(publish(u, "", q, "b2"));
    harness_expect_drain(u, 1, q, "b1 b2", "ta-u in " VB);
    OK(q_delete(u, q));
    harness_disconnect(u);
}

/* connection.open: a vhost without permissions, a vhost that does not exist. */
static void vhost_access(void)
{
    amqp_connection_state_t c;
    amqp_rpc_reply_t r = harness_try_login_vhost(&s_b, "ta-u", PASS, VC, &c);
    harness_expect_connection_close(
        c, r, 530, "NOT_ALLOWED - access to vhost '" VC "' refused for user 'ta-u'", 10, 40);
    r = harness_try_login_vhost(&s_b, "ta-u", PASS, VNONE, &c);
    harness_expect_connection_close(c, r, 530, "NOT_ALLOWED - vhost " VNONE " not found", 10, 40);
    r = harness_try_login_vhost(&s_b, "ta-pub", PASS, VB, &c);
    harness_expect_connection_close(
        c, r, 530, "NOT_ALLOWED - access to vhost '" VB "' refused for user 'ta-pub'", 10, 40);
    c = open_as("ta-admin", VC);
    harness_disconnect(c);
}

/* The same names in VA and VB are different entities. */
static void isolation(amqp_connection_state_t adm)
{
    amqp_connection_state_t ba = open_as("ta-admin", VB);
    const char *x = nm("cwr", "iso"), *q = nm("cwr", "iso");
    amqp_connection_state_t cs[2] = {adm, ba};
    for (int i = 0; i < 2; i++) {
        OK(x_declare(cs[i], x, i ? "fanout" : "direct", false, amqp_empty_table));
        OK(q_declare(cs[i], q, false, amqp_empty_table));
        OK(q_bind(cs[i], true, q, x, "k"));
    }
    OK(publish(adm, x, "k", "a1"));
    OK(publish(adm, "", q, "a2"));
    OK(publish(ba, x, "other", "b1"));
    CHECK_EQ(harness_wait_message_count(adm, 1, q, 2, 5000), 2);
    CHECK_EQ(harness_wait_message_count(ba, 1, q, 1, 5000), 1);
    harness_expect_drain(adm, 1, q, "a1 a2", VA " holds only its own");
    harness_expect_drain(ba, 1, q, "b1", VB " holds only its own");

    const char *only = nm("cwr", "only-a");
    OK(x_declare(adm, only, "topic", false, amqp_empty_table));
    OK(q_declare(adm, only, false, amqp_empty_table));
    MISSING(ba, x_declare(ba, only, "topic", true, amqp_empty_table), 40, 10, "exchange", only,
            VB);
    MISSING(ba, q_declare(ba, only, true, amqp_empty_table), 50, 10, "queue", only, VB);
    MISSING(ba, publish(ba, only, "k", "lost"), 60, 40, "exchange", only, VB);

    OK(q_delete(adm, q));
    OK(x_delete(adm, x));
    CHECK_EQ(harness_queue_count(ba, 1, q), 0);
    OK(x_declare(ba, x, "fanout", true, amqp_empty_table));
    OK(q_delete(ba, q));
    OK(x_delete(ba, x));
    OK(q_delete(adm, only));
    OK(x_delete(adm, only));
    harness_disconnect(ba);
}

static void cleanup(amqp_connection_state_t adm)
{
    const char *perms[] = {"x", "r", "w"};
    for (int i = 0; i < 3; i++) {
        OK(x_delete(adm, nm(perms[i], "e")));
        OK(q_delete(adm, nm(perms[i], "q")));
    }
}

int main(void)
{
    const char *out = getenv("WARREN_TEST_DEFS_OUT");
    if (out && *out) {
        write_defs(out);
        printf("definitions written to %s\n", out);
        return 0;
    }
    harness_watchdog(50);
    const char *tmp = getenv("TMPDIR");
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/warren-ta-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECKF(mkdtemp(dir) != NULL, "mkdtemp %s: %s", dir, strerror(errno));
    snprintf(path, sizeof path, "%s/definitions.json", dir);
    write_defs(path);
    harness_broker_start_args(&s_b, (const char *[]){"--load-definitions", path, NULL});
    s_ext = harness_external(&s_b);
    if (s_ext)
        harness_log("external broker: expecting RabbitMQ 3.10's texts (no permission word); the "
                    "definitions must have been imported (WARREN_TEST_DEFS_OUT)");

    vhost_access();
    amqp_connection_state_t adm = open_as("ta-admin", VA);
    amqp_connection_state_t u = open_as("ta-u", VA);
    setup(adm);
    exchanges(u);
    queues(u);
    bindings(u);
    messages(u);
    other_users(adm);
    ae_dlx(u, adm);
    topics(u, adm);
    other_vhost();
    isolation(adm);
    cleanup(adm);
    harness_disconnect(u);
    harness_disconnect(adm);

    /* the broker still serves (no guest here: the definitions replace it) and stops cleanly */
    CHECKF(harness_broker_alive(&s_b), "warrend is no longer running");
    amqp_connection_state_t a = open_as("ta-admin", VA);
    amqp_bytes_t q = harness_queue_declare_anon(a, 1);
    harness_publish_get(a, 1, q, amqp_cstring_bytes("still alive"));
    amqp_bytes_free(q);
    harness_disconnect(a);
    CHECK(harness_broker_stop(&s_b) == 0);
    CHECK(unlink(path) == 0);
    CHECK(rmdir(dir) == 0);
    harness_log("PASS");
    return 0;
}
