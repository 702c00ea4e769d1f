/* 70-tenancy-defs — warrend --load-definitions with tests/fixtures/rabbitmq-export.json, a
 * RabbitMQ 3.10 export written by hand (users hashed with SHA-256, SHA-512 and MD5, all of which
 * RabbitMQ 3.10.8 imports and authenticates), issue 10. Warren-only: skipped against an external
 * broker. Covers (1) logins with each user's password, not with a wrong one nor with an empty
 * hash; (2) the imported entities and their properties, and routing through the imported bindings
 * (exchange to exchange, topic, headers, alternate exchange, dead-lettering, internal exchange,
 * topic permission); (3) the vhost limits; (4) vhost isolation; (5) vhost access at
 * connection.open; (6) user_id and the impersonator tag; (7) a restart with the same file, which
 * must write nothing; (8) bad files: exit 78, one line naming file, entry and reason, and not one
 * record of the data dir changed. Owns its temp dir of bad files. */
#include "harness.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <amqp_framing.h>
#include <lmdb.h>

/* The fixture's users and the passwords their hashes were made from. */
static const struct {
    const char *name, *pass, *vhost;
} s_users[] = {
    {"guest", "guest", "/"},              /* sha256 */
    {"admin", "admin-s3cret", "limited"}, /* sha256, administrator */
    {"alice", "alice-sha256-pw", "tenant-a"},
    {"bob", "bob-sha512-pw", "tenant-b"},
    {"carol", "carol-md5-pw", "tenant-a"},
    {"relay", "relay-pw", "tenant-a"}, /* sha256, impersonator */
    {"outsider", "outsider-pw", "tenant-b"}, /* sha512 */
};
#define NUSERS (sizeof s_users / sizeof s_users[0])

static char s_dir[1024];      /* owned: the bad definitions files, removed at the end */
static char s_fixture[4200];  /* the fixture's path */
static harness_broker_t s_b;

/* ---- connections ------------------------------------------------------------------------- */

static const char *pass_of(const char *user)
{
    for (size_t i = 0; i < NUSERS; i++)
        if (!strcmp(s_users[i].name, user))
            return s_users[i].pass;
    CHECKF(0, "no such fixture user %s", user);
    return NULL;
}

static amqp_connection_state_t open_user(const char *user, const char *vhost)
{
    return harness_open_as(&s_b, user, pass_of(user), vhost);
}

/* The login is refused: connection.close 403 as RabbitMQ sends it, class 0 method 0. */
static void expect_login_refused(const char *user, const char *pass)
{
    amqp_connection_state_t conn;
    amqp_rpc_reply_t r = harness_try_login_vhost(&s_b, user, pass, "/", &conn);
    harness_expect_connection_close(conn, r, 403, HARNESS_REFUSED_PLAIN, 0, 0);
}

/* connection.open of vhost is refused with 530 and exactly text (class 10 method 40). */
static void expect_open_refused(const char *user, const char *vhost, const char *text)
{
    amqp_connection_state_t conn;
    amqp_rpc_reply_t r = harness_try_login_vhost(&s_b, user, pass_of(user), vhost, &conn);
    harness_expect_connection_close(conn, r, 530, text, 10, 40);
}

/* queue.declare of queue (durable or not, with args) on channel 1 must get 406 with exactly
 * text; channel 1 is opened again. */
static void expect_declare_406(amqp_connection_state_t c, const char *queue, bool durable,
                               amqp_table_t args, const char *text)
{
    amqp_queue_declare(c, 1, amqp_cstring_bytes(queue), 0, durable, 0, 0, args);
    harness_expect_channel_reopen(c, 1, amqp_get_rpc_reply(c), 406, 50, 10, "%s", text);
}

static void close_conn(amqp_connection_state_t conn)
{
    CHECK_REPLY(amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS));
    harness_disconnect(conn);
}

/* Passive exchange.declare on ch: the reply, unchecked. */
static amqp_rpc_reply_t exchange_peek(amqp_connection_state_t conn, amqp_channel_t ch,
                                      const char *x)
{
    amqp_exchange_declare(conn, ch, amqp_cstring_bytes(x), amqp_cstring_bytes("direct"), 1, 0, 0,
                          0, amqp_empty_table);
    return amqp_get_rpc_reply(conn);
}

static void publish_persistent(amqp_connection_state_t conn, const char *exchange,
                               const char *key, const amqp_table_t *headers, const char *body)
{
    amqp_basic_properties_t p = {0};
    p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    p.delivery_mode = 2;
    if (headers) {
        p._flags |= AMQP_BASIC_HEADERS_FLAG;
        p.headers = *headers;
    }
    harness_publish_props(conn, 1, exchange, key, false, &p, body);
}

static void arg_bool(harness_args_t *a, const char *key, bool v)
{
    a->e[a->n].key = amqp_cstring_bytes(key);
    a->e[a->n].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    a->e[a->n].value.value.boolean = v;
    a->n++;
}

/* ---- (1) logins --------------------------------------------------------------------------- */

static void test_logins(void)
{
    for (size_t i = 0; i < NUSERS; i++) {
        close_conn(harness_open_as(&s_b, s_users[i].name, s_users[i].pass, s_users[i].vhost));
        char wrong[128];
        snprintf(wrong, sizeof wrong, "%s-wrong", s_users[i].pass);
        expect_login_refused(s_users[i].name, wrong);
    }
    /* 'locked' has an empty password_hash: no password logs it in, not even the empty one. */
    expect_login_refused("locked", "");
    expect_login_refused("locked", "guest");
    expect_login_refused("nobody", "guest");
    harness_log("(1) sha256, sha512 and md5 users log in with their passwords, not with wrong "
                "ones; the user with an empty password_hash cannot log in");
}

/* ---- (2) entities and routing --------------------------------------------------------------- */

static void test_entities(void)
{
    amqp_connection_state_t a = open_user("admin", "tenant-a");
    static const char *const queues[] = {"orders", "orders-dead", "audit", "eu-orders",
                                         "us-or-urgent", "unrouted", "ledger", "scratch"};
    for (size_t i = 0; i < sizeof queues / sizeof queues[0]; i++)
        CHECK_EQ(harness_queue_count(a, 1, queues[i]), 0);
    static const char *const xs[] = {"ingress", "ae", "events", "dlx", "by-region", "hidden"};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++)
        CHECK_REPLY(exchange_peek(a, 1, xs[i]));

    /* Properties: the same declaration is accepted, another one is not (RabbitMQ's texts). */
    harness_args_t args = {0};
    harness_arg_str(&args, "x-queue-type", "classic");
    harness_arg_int(&args, "x-message-ttl", 'l', 3600000);
    harness_arg_str(&args, "x-dead-letter-exchange", "dlx");
    harness_arg_str(&args, "x-dead-letter-routing-key", "dead");
    harness_queue_declare(a, 1, "orders", HARNESS_QUEUE_DURABLE, harness_args_table(&args));
    args.e[1].value.value.i64 = 1000;
    expect_declare_406(a, "orders", true, harness_args_table(&args),
                       "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for "
                       "queue 'orders' in vhost 'tenant-a': received '1000' but "
                       "current is '3600000'");
    harness_queue_declare(a, 1, "scratch", HARNESS_QUEUE_AUTO_DELETE, amqp_empty_table);
    expect_declare_406(a, "scratch", true, amqp_empty_table,
                       "PRECONDITION_FAILED - inequivalent arg 'durable' for queue "
                       "'scratch' in vhost 'tenant-a': received 'true' but current is "
                       "'false'");
    harness_args_t q = {0};
    harness_arg_str(&q, "x-queue-type", "quorum");
    harness_arg_int(&q, "x-delivery-limit", 'l', 5);
    harness_queue_declare(a, 1, "ledger", HARNESS_QUEUE_DURABLE, harness_args_table(&q));
    q.e[0].value.value.bytes = amqp_cstring_bytes("classic");
    expect_declare_406(a, "ledger", true, harness_args_table(&q),
                       "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for "
                       "queue 'ledger' in vhost 'tenant-a': received 'classic' but "
                       "current is 'quorum'");
    harness_args_t ae = {0};
    harness_arg_str(&ae, "alternate-exchange", "ae");
    harness_exchange_declare(a, 1, "ingress", "direct", HARNESS_EXCHANGE_DURABLE,
                             harness_args_table(&ae));
    harness_exchange_declare(a, 1, "hidden", "topic",
                             HARNESS_EXCHANGE_DURABLE | HARNESS_EXCHANGE_INTERNAL,
                             amqp_empty_table);
    amqp_exchange_declare(a, 1, amqp_cstring_bytes("events"), amqp_cstring_bytes("fanout"), 0, 1,
                          0, 0, amqp_empty_table);
    harness_expect_channel_reopen(a, 1, amqp_get_rpc_reply(a), 406, 40, 10,
                                  "PRECONDITION_FAILED - inequivalent arg 'type' for exchange "
                                  "'events' in vhost 'tenant-a': received 'fanout' but current "
                                  "is 'topic'");
    harness_log("(2) the imported queues and exchanges exist with their types, flags and "
                "arguments");

    /* ingress (direct) -> events (exchange binding) -> orders.* / # / hidden -> ledger;
     * an unroutable key goes to the alternate exchange ae -> unrouted. */
    harness_publish(a, 1, "ingress", "orders.created", "m1");
    harness_publish(a, 1, "ingress", "nowhere", "m2");
    harness_publish(a, 1, "events", "orders.paid", "m3");
    harness_publish(a, 1, "events", "payments.done", "m4");
    harness_args_t h = {0};
    harness_arg_str(&h, "region", "eu");
    harness_arg_str(&h, "kind", "order");
    amqp_table_t ht = harness_args_table(&h);
    harness_publish_headers(a, 1, "by-region", "", &ht, "h1"); /* all: eu-orders */
    h.n = 1;
    ht = harness_args_table(&h);
    harness_publish_headers(a, 1, "by-region", "", &ht, "h2"); /* region alone: nowhere */
    h.n = 0;
    arg_bool(&h, "urgent", true);
    ht = harness_args_table(&h);
    harness_publish_headers(a, 1, "by-region", "", &ht, "h3"); /* any: us-or-urgent */
    h.n = 0;
    harness_arg_str(&h, "region", "us");
    ht = harness_args_table(&h);
    harness_publish_headers(a, 1, "by-region", "", &ht, "h4"); /* any: us-or-urgent */
    harness_sync(a, 1);
    harness_expect_count(a, 1, "audit", 3, "audit");
    harness_expect_drain(a, 1, "audit", "m1 m3 m4", "topic '#'");
    harness_expect_drain(a, 1, "ledger", "m1", "events -> hidden -> ledger");
    harness_expect_drain(a, 1, "unrouted", "m2", "alternate exchange");
    harness_expect_drain(a, 1, "eu-orders", "h1", "headers x-match all");
    harness_expect_drain(a, 1, "us-or-urgent", "h3 h4", "headers x-match any");
    /* orders dead-letters through dlx (fanout) to orders-dead when a message is rejected. */
    harness_got_t g;
    CHECK(harness_get(a, 1, "orders", false, &g));
    CHECK_STREQ(g.body, "m1");
    CHECK_AMQP(amqp_basic_reject(a, 1, g.delivery_tag, 0));
    harness_got_free(&g);
    harness_expect_count(a, 1, "orders-dead", 1, "dead-lettered");
    CHECK(harness_get(a, 1, "orders-dead", true, &g));
    CHECK_STREQ(g.body, "m1");
    CHECK_STREQ(g.routing_key, "dead");
    harness_got_free(&g);
    harness_expect_drain(a, 1, "orders", "m3", "topic 'orders.*'");

    harness_publish(a, 1, "hidden", "orders.created", "x");
    harness_expect_channel_reopen(a, 1, harness_round_trip(a, 1), 403, 60, 40,
                                  "ACCESS_REFUSED - cannot publish to internal exchange 'hidden' "
                                  "in vhost 'tenant-a'");
    close_conn(a);

    /* alice's topic permission on events: write only to orders.* keys. Warren words it as
     * RabbitMQ 3.11+ ("write access to topic"); 3.10.8 says "access to topic". */
    amqp_connection_state_t al = open_user("alice", "tenant-a");
    harness_publish(al, 1, "events", "orders.alice", "t1");
    harness_sync(al, 1);
    harness_publish(al, 1, "events", "payments.x", "t2");
    harness_expect_channel_reopen(al, 1, harness_round_trip(al, 1), 403, 60, 40,
                                  "ACCESS_REFUSED - write access to topic 'payments.x' in "
                                  "exchange 'events' in vhost 'tenant-a' refused for user "
                                  "'alice'");
    harness_expect_drain(al, 1, "orders", "t1", "alice's permitted topic publish");
    harness_expect_drain(al, 1, "audit", "t1", "alice's permitted topic publish (audit)");
    close_conn(al);
    harness_log("(2) messages route through the imported exchange, topic, headers, "
                "alternate-exchange and dead-letter bindings; internal exchange and topic "
                "permission enforced");
}

/* ---- (3) vhost limits ----------------------------------------------------------------------- */

static void test_limits(void)
{
    amqp_connection_state_t c1 = open_user("admin", "limited");
    amqp_connection_state_t c2 = open_user("admin", "limited");
    expect_open_refused("admin", "limited",
                        "NOT_ALLOWED - access to vhost 'limited' refused for user 'admin': "
                        "connection limit (2) is reached");
    expect_open_refused("guest", "limited",
                        "NOT_ALLOWED - access to vhost 'limited' refused for user 'guest': "
                        "connection limit (2) is reached");
    /* lq1 is imported; the limit is 2 queues. */
    CHECK_EQ(harness_queue_count(c1, 1, "lq1"), 0);
    harness_queue_declare(c1, 1, "lq2", 0, amqp_empty_table);
    expect_declare_406(c1, "lq3", false, amqp_empty_table,
                       "PRECONDITION_FAILED - cannot declare queue 'lq3': queue limit "
                       "in vhost 'limited' (2) is reached");
    harness_queue_delete(c1, 1, "lq2");
    harness_queue_declare(c1, 1, "lq3", 0, amqp_empty_table);
    harness_queue_delete(c1, 1, "lq3");
    close_conn(c2);
    /* The closed connection no longer counts (the broker may see the close a moment later). */
    amqp_connection_state_t c3 = NULL;
    for (int i = 0; i < 100 && !c3; i++) {
        amqp_rpc_reply_t r =
            harness_try_login_vhost(&s_b, "admin", pass_of("admin"), "limited", &c3);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            amqp_destroy_connection(c3);
            c3 = NULL;
            usleep(10000);
        }
    }
    CHECKF(c3 != NULL, "a connection to 'limited' is still refused after one of two closed");
    harness_disconnect(c3);
    close_conn(c1);
    harness_log("(3) vhost-limits: max-connections 2 and max-queues 2 enforced with RabbitMQ's "
                "texts");
}

/* ---- (4) isolation and (5) vhost access ------------------------------------------------------ */

static void test_isolation(void)
{
    amqp_connection_state_t a = open_user("alice", "tenant-a");
    amqp_connection_state_t b = open_user("outsider", "tenant-b");
    harness_publish(a, 1, "events", "orders.in-a", "a1");
    harness_publish(b, 1, "events", "orders.in-b", "b1");
    harness_publish(b, 1, "", "orders", "b2");
    harness_publish(a, 1, "", "orders", "a2");
    harness_sync(a, 1);
    harness_sync(b, 1);
    harness_expect_count(a, 1, "orders", 2, "tenant-a orders");
    harness_expect_count(b, 1, "orders", 2, "tenant-b orders");
    harness_expect_drain(a, 1, "orders", "a1 a2", "tenant-a's orders");
    harness_expect_drain(b, 1, "orders", "b1 b2", "tenant-b's orders");
    harness_expect_drain(a, 1, "audit", "a1", "tenant-a's audit");
    /* Names of one vhost do not exist in another. */
    amqp_rpc_reply_t r = harness_queue_peek(b, 1, "audit", NULL, NULL);
    harness_expect_channel_reopen(b, 1, r, 404, 50, 10,
                                  "NOT_FOUND - no queue 'audit' in vhost 'tenant-b'");
    harness_expect_channel_reopen(b, 1, exchange_peek(b, 1, "ingress"), 404, 40, 10,
                                  "NOT_FOUND - no exchange 'ingress' in vhost 'tenant-b'");
    close_conn(a);
    close_conn(b);
    harness_log("(4) same queue and exchange names in tenant-a and tenant-b stay apart");

    expect_open_refused("outsider", "tenant-a",
                        "NOT_ALLOWED - access to vhost 'tenant-a' refused for user 'outsider'");
    expect_open_refused("alice", "/", "NOT_ALLOWED - access to vhost '/' refused for user 'alice'");
    expect_open_refused("carol", "tenant-b",
                        "NOT_ALLOWED - access to vhost 'tenant-b' refused for user 'carol'");
    expect_open_refused("alice", "evil", "NOT_ALLOWED - vhost evil not found");
    harness_log("(5) users without permissions in a vhost get 530 at connection.open");
}

/* ---- (6) user_id ---------------------------------------------------------------------------- */

static void publish_user_id(amqp_connection_state_t conn, const char *user_id, const char *body)
{
    amqp_basic_properties_t p = {0};
    p._flags = AMQP_BASIC_USER_ID_FLAG;
    p.user_id = amqp_cstring_bytes(user_id);
    harness_publish_props(conn, 1, "", "audit", false, &p, body);
}

static void test_user_id(void)
{
    amqp_connection_state_t a = open_user("alice", "tenant-a");
    publish_user_id(a, "alice", "u1");
    harness_sync(a, 1);
    publish_user_id(a, "bob", "u2");
    harness_expect_channel_reopen(a, 1, harness_round_trip(a, 1), 406, 60, 40,
                                  "PRECONDITION_FAILED - user_id property set to 'bob' but "
                                  "authenticated user was 'alice'");
    amqp_connection_state_t r = open_user("relay", "tenant-a");
    publish_user_id(r, "alice", "u3");
    publish_user_id(r, "nobody-at-all", "u4");
    harness_sync(r, 1);
    close_conn(r);
    harness_expect_count(a, 1, "audit", 3, "user_id publishes");
    static const char *const want[][2] = {{"u1", "alice"}, {"u3", "alice"},
                                          {"u4", "nobody-at-all"}};
    for (size_t i = 0; i < 3; i++) {
        harness_got_t g;
        CHECK(harness_get(a, 1, "audit", true, &g));
        CHECK_STREQ(g.body, want[i][0]);
        CHECK(g.msg.properties._flags & AMQP_BASIC_USER_ID_FLAG);
        CHECKF(harness_bytes_is(g.msg.properties.user_id, want[i][1]), "%s: user_id %.*s",
               g.body, (int)g.msg.properties.user_id.len,
               (const char *)g.msg.properties.user_id.bytes);
        harness_got_free(&g);
    }
    close_conn(a);
    harness_log("(6) another user's user_id is refused with 406; the impersonator may set any");
}

/* ---- (7) restart and (8) bad files: the data dir, record by record ------------------------- */

/* Every record of every database in the LMDB environment in dir (warrend stopped), except the
 * boot counter meta/epoch, which every start bumps. malloc'ed; *ret_len its size. */
static char *snapshot(const char *dir, size_t *ret_len)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi main_dbi;
    MDB_cursor *cur;
    MDB_val k, v;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    CHECK(out != NULL);
    CHECK_MDB(mdb_env_create(&env));
    CHECK_MDB(mdb_env_set_maxdbs(env, 64));
    CHECK_MDB(mdb_env_open(env, dir, MDB_RDONLY | MDB_NOLOCK, 0600));
    CHECK_MDB(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
    CHECK_MDB(mdb_dbi_open(txn, NULL, 0, &main_dbi));
    CHECK_MDB(mdb_cursor_open(txn, main_dbi, &cur));
    char names[32][64];
    int n = 0;
    while (mdb_cursor_get(cur, &k, &v, n ? MDB_NEXT : MDB_FIRST) == 0) {
        CHECK(n < 32 && k.mv_size < sizeof names[0]);
        memcpy(names[n], k.mv_data, k.mv_size);
        names[n++][k.mv_size] = 0;
    }
    mdb_cursor_close(cur);
    CHECKF(n >= 5, "only %d databases in %s", n, dir);
    for (int i = 0; i < n; i++) {
        MDB_dbi dbi;
        CHECK_MDB(mdb_dbi_open(txn, names[i], 0, &dbi));
        CHECK_MDB(mdb_cursor_open(txn, dbi, &cur));
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (!strcmp(names[i], "meta") && k.mv_size == 5 && !memcmp(k.mv_data, "epoch", 5))
                continue;
            fprintf(out, "%s %zu %zu:", names[i], k.mv_size, v.mv_size);
            fwrite(k.mv_data, 1, k.mv_size, out);
            fwrite(v.mv_data, 1, v.mv_size, out);
            fputc('\n', out);
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
    CHECK(fclose(out) == 0);
    *ret_len = len;
    return buf;
}

static void expect_same_data(const char *before, size_t before_len, const char *what)
{
    size_t len;
    char *now = snapshot(s_b.data_dir, &len);
    CHECKF(len == before_len && !memcmp(now, before, len),
           "%s: the data dir changed (%zu bytes of records before, %zu after)", what, before_len,
           len);
    free(now);
}

static const char *const s_defs_args[] = {"--load-definitions", s_fixture, NULL};

static void test_restart(void)
{
    /* Durable messages in three vhosts, and a queue declared at run time. */
    amqp_connection_state_t a = open_user("admin", "tenant-a");
    harness_args_t h = {0};
    harness_arg_str(&h, "region", "eu");
    harness_arg_str(&h, "kind", "order");
    amqp_table_t ht = harness_args_table(&h);
    publish_persistent(a, "by-region", "", &ht, "eu1");
    publish_persistent(a, "ingress", "orders.created", NULL, "in1");
    harness_queue_declare(a, 1, "runtime-q", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    publish_persistent(a, "", "runtime-q", NULL, "rt1");
    harness_sync(a, 1);
    close_conn(a);
    amqp_connection_state_t b = open_user("bob", "tenant-b");
    harness_queue_declare(b, 1, "bob-work", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    publish_persistent(b, "", "bob-work", NULL, "bw1");
    harness_sync(b, 1);
    close_conn(b);
    amqp_connection_state_t g = open_user("guest", "/");
    publish_persistent(g, "", "plain", NULL, "p1");
    publish_persistent(g, "", "plain", NULL, "p2");
    harness_sync(g, 1);
    harness_expect_count(g, 1, "plain", 2, "before the restart");
    close_conn(g);

    harness_broker_shutdown(&s_b);
    size_t len;
    char *before = snapshot(s_b.data_dir, &len);
    CHECKF(memmem(before, len, "runtime-q", 9) && memmem(before, len, "carol", 5),
           "the snapshot of the data dir misses records");
    harness_broker_respawn(&s_b, s_defs_args);
    harness_broker_shutdown(&s_b);
    expect_same_data(before, len, "a start with the same definitions");
    free(before);
    harness_broker_respawn(&s_b, s_defs_args);

    for (size_t i = 0; i < NUSERS; i++)
        close_conn(harness_open_as(&s_b, s_users[i].name, s_users[i].pass, s_users[i].vhost));
    expect_login_refused("locked", "");
    a = open_user("admin", "tenant-a");
    harness_expect_drain(a, 1, "eu-orders", "eu1", "eu-orders after the restart");
    harness_expect_drain(a, 1, "orders", "in1", "orders after the restart");
    harness_expect_drain(a, 1, "audit", "in1", "audit after the restart");
    harness_expect_drain(a, 1, "ledger", "in1", "ledger (quorum) after the restart");
    harness_expect_drain(a, 1, "runtime-q", "rt1", "runtime-q after the restart");
    harness_queue_delete(a, 1, "runtime-q");
    close_conn(a);
    b = open_user("bob", "tenant-b");
    harness_expect_drain(b, 1, "bob-work", "bw1", "bob-work after the restart");
    harness_queue_delete(b, 1, "bob-work");
    close_conn(b);
    g = open_user("guest", "/");
    harness_expect_drain(g, 1, "plain", "p1 p2", "plain after the restart");
    close_conn(g);
    amqp_connection_state_t c1 = open_user("admin", "limited");
    harness_queue_declare(c1, 1, "lq2", 0, amqp_empty_table);
    expect_declare_406(c1, "lq3", false, amqp_empty_table,
                       "PRECONDITION_FAILED - cannot declare queue 'lq3': queue limit "
                       "in vhost 'limited' (2) is reached");
    harness_queue_delete(c1, 1, "lq2");
    close_conn(c1);
    harness_log("(7) restart with the same file: nothing written, users, limits, entities and "
                "durable messages all still there");
}

/* Valid entries each bad file adds before its bad one: none of them may be imported. */
#define MALLORY                                                                                  \
    "{\"name\": \"mallory\", \"password_hash\": "                                                \
    "\"GvwdUtVTonv8DKSXYKJFXp950Ls4JgfyWKhdbAZxuMGiB1Lx\", \"hashing_algorithm\": "              \
    "\"rabbit_password_hashing_sha256\", \"tags\": [\"administrator\"], \"limits\": {}}"
#define EVIL_VHOST "{\"name\": \"evil\", \"limits\": [], \"metadata\": {\"description\": \"\"}}"
#define EVIL_PERM                                                                                \
    "{\"user\": \"mallory\", \"vhost\": \"tenant-a\", \"configure\": \".*\", \"write\": \".*\", " \
    "\"read\": \".*\"}"
#define EVIL_Q                                                                                   \
    "{\"name\": \"evil-q\", \"vhost\": \"tenant-a\", \"durable\": true, \"auto_delete\": false, " \
    "\"arguments\": {}}"
#define EVIL_X                                                                                   \
    "{\"name\": \"evil-x\", \"vhost\": \"tenant-a\", \"type\": \"fanout\", \"durable\": true, "   \
    "\"auto_delete\": false, \"internal\": false, \"arguments\": {}}"

/* A definitions file: the valid entries above, then extra users / permissions / queues /
 * bindings entries (each "" or ", {...}"). */
static const char *bad_defs(const char *name, const char *users, const char *perms,
                            const char *queues, const char *bindings)
{
    static char text[8192];
    snprintf(text, sizeof text,
             "{\"rabbit_version\": \"3.10.8\", \"rabbitmq_version\": \"3.10.8\",\n"
             " \"users\": [" MALLORY "%s],\n"
             " \"vhosts\": [" EVIL_VHOST "],\n"
             " \"permissions\": [" EVIL_PERM "%s],\n"
             " \"queues\": [" EVIL_Q "%s],\n"
             " \"exchanges\": [" EVIL_X "],\n"
             " \"bindings\": [{\"source\": \"evil-x\", \"vhost\": \"tenant-a\", \"destination\": "
             "\"evil-q\", \"destination_type\": \"queue\", \"routing_key\": \"\", \"arguments\": "
             "{}}%s]}\n",
             users, perms, queues, bindings);
    return harness_write_file(s_dir, name, text);
}

/* warrend with the bad file path on the data dir: it must exit 78 without listening, write
 * exactly one line to stderr, and change not one record of the data dir. Returns that line
 * (static storage). */
static const char *run_bad(const char *what, const char *path, const char *before,
                           size_t before_len)
{
    int port = harness_free_port();
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    const char *const args[] = {"--port",     portbuf,      "--bind",      "127.0.0.1",
                                "--data-dir", s_b.data_dir, "--log-level", "warn",
                                "--load-definitions", path, NULL};
    static char err[4096];
    bool listened = false;
    int status = harness_warrend_run_args(args, port, 10000, err, sizeof err, &listened);
    CHECKF(status != -1, "%s: warrend was still running after 10 s", what);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 78, "%s: status %d, want exit 78", what,
           status);
    CHECKF(!listened, "%s: warrend listened on %d", what, port);
    int lines = 0;
    for (const char *p = err; *p; p++)
        lines += *p == '\n';
    CHECKF(lines == 1, "%s: %d lines on stderr, want one: %s", what, lines, err);
    CHECKF(strstr(err, "; nothing was imported"), "%s: the line does not say that nothing was "
           "imported: %s", what, err);
    expect_same_data(before, before_len, what);
    return err;
}

/* run_bad(), and the line says "cannot load definitions: <path>: <detail>; nothing was
 * imported" (detail: "<entry>: <reason>"). */
static void expect_bad(const char *what, const char *path, const char *detail, const char *before,
                       size_t before_len)
{
    const char *err = run_bad(what, path, before, before_len);
    char want[2048];
    snprintf(want, sizeof want, "cannot load definitions: %s: %s; nothing was imported", path,
             detail);
    CHECKF(strstr(err, want), "%s: stderr does not say\n  %s\n  it says: %s", what, want, err);
    harness_log("(8) %s: exit 78, one line: ...%s", what, detail);
}

static void test_bad_files(void)
{
    harness_broker_shutdown(&s_b);
    size_t len;
    char *before = snapshot(s_b.data_dir, &len);
    CHECKF(memmem(before, len, "tenant-a", 8) && !memmem(before, len, "mallory", 7),
           "the snapshot of the data dir is not what the fixture imported");

    const char *p = bad_defs("algo.json",
                             ", {\"name\": \"trent\", \"password_hash\": "
                             "\"xFRAp9zGzOUzqVbCwQ3mbnwGNd2JA7wkYn41ESRgu63nNH6t\", "
                             "\"hashing_algorithm\": \"rabbit_password_hashing_sha1\", \"tags\": "
                             "[]}",
                             "", "", "");
    expect_bad("unknown hashing algorithm", p,
               "users[1] 'trent': unknown hashing_algorithm 'rabbit_password_hashing_sha1' "
               "(rabbit_password_hashing_sha256, _sha512 or _md5)",
               before, len);
    /* A SHA-256 hash (4 + 32 octets) said to be SHA-512 (4 + 64 octets). */
    p = bad_defs("hash-length.json",
                 ", {\"name\": \"trent\", \"password_hash\": "
                 "\"xFRAp9zGzOUzqVbCwQ3mbnwGNd2JA7wkYn41ESRgu63nNH6t\", \"hashing_algorithm\": "
                 "\"rabbit_password_hashing_sha512\", \"tags\": []}",
                 "", "", "");
    expect_bad("hash of the wrong length", p,
               "users[1] 'trent': password_hash is not a rabbit_password_hashing_sha512 hash "
               "(base64 of a 4-byte salt and the digest)",
               before, len);
    p = bad_defs("hash-base64.json",
                 ", {\"name\": \"trent\", \"password_hash\": \"not base64 at all!\", "
                 "\"hashing_algorithm\": \"rabbit_password_hashing_md5\", \"tags\": []}",
                 "", "", "");
    expect_bad("hash not base64", p,
               "users[1] 'trent': password_hash is not a rabbit_password_hashing_md5 hash "
               "(base64 of a 4-byte salt and the digest)",
               before, len);
    p = bad_defs("regex.json", "",
                 ", {\"user\": \"mallory\", \"vhost\": \"evil\", \"configure\": \".*\", "
                 "\"write\": \"^(orders\", \"read\": \".*\"}",
                 "", "");
    expect_bad("permission regex does not compile", p,
               "permissions[1] (user 'mallory', vhost 'evil'): write pattern '^(orders' is not a "
               "valid regular expression: missing closing parenthesis at offset 8",
               before, len);
    /* (A binding to a queue or exchange that is nowhere is left out, as RabbitMQ does: its own
     * rabbitmqctl export keeps the bindings of the internal exchanges it leaves out.) */
    p = bad_defs("binding.json", "", "", "",
                 ", {\"source\": \"evil-x\", \"vhost\": \"tenant-a\", \"destination\": "
                 "\"evil-q\", \"destination_type\": \"stream\", \"routing_key\": \"k\", "
                 "\"arguments\": {}}");
    expect_bad("binding with a bad destination type", p,
               "bindings[1] 'evil-x' -> stream 'evil-q' in vhost 'tenant-a': destination_type "
               "must be 'queue' or 'exchange'",
               before, len);
    p = bad_defs("queue-arg.json", "", "",
                 ", {\"name\": \"bad-q\", \"vhost\": \"tenant-a\", \"durable\": true, "
                 "\"auto_delete\": false, \"arguments\": {\"x-max-length\": \"ten\"}}",
                 "");
    expect_bad("queue with an invalid argument", p,
               "queues[1] 'bad-q' in vhost 'tenant-a': invalid arg 'x-max-length' for queue "
               "'bad-q' in vhost 'tenant-a': \"expected integer, got longstr\"",
               before, len);
    /* Queues that exist (durable, so kept in the data dir) with other flags or arguments. */
    p = bad_defs("queue-exists.json", "", "",
                 ", {\"name\": \"eu-orders\", \"vhost\": \"tenant-a\", \"durable\": false, "
                 "\"auto_delete\": false, \"arguments\": {\"x-queue-type\": \"classic\"}}",
                 "");
    expect_bad("queue that exists with other flags", p,
               "queues[1] 'eu-orders' in vhost 'tenant-a': inequivalent arg 'durable' for queue "
               "'eu-orders' in vhost 'tenant-a': received 'false' but current is 'true'",
               before, len);
    p = bad_defs("queue-args.json", "", "",
                 ", {\"name\": \"audit\", \"vhost\": \"tenant-a\", \"durable\": true, "
                 "\"auto_delete\": false, \"arguments\": {\"x-queue-type\": \"classic\", "
                 "\"x-max-length\": 10}}",
                 "");
    expect_bad("queue that exists with other arguments", p,
               "queues[1] 'audit' in vhost 'tenant-a': inequivalent arg 'x-max-length' for queue "
               "'audit' in vhost 'tenant-a': received '10' but current is '1000'",
               before, len);
    /* JSON errors are named by line and column: "<path>:3:1: not valid JSON: ...". */
    p = harness_write_file(s_dir, "syntax.json",
                           "{\"users\": [\n  " MALLORY ",\n],\n \"vhosts\": []}\n");
    const char *err = run_bad("invalid JSON", p, before, len);
    char want[1400];
    snprintf(want, sizeof want, "cannot load definitions: %s:3:", p);
    CHECKF(strstr(err, want) && strstr(err, ": not valid JSON: "),
           "invalid JSON: the line does not say '%s...: not valid JSON: ': %s", want, err);
    harness_log("(8) invalid JSON: exit 78, one line naming %s:3:", p);
    char missing[1200];
    snprintf(missing, sizeof missing, "%s/missing.json", s_dir);
    err = run_bad("missing file", missing, before, len);
    snprintf(want, sizeof want, "cannot load definitions: %s: ", missing);
    CHECKF(strstr(err, want) && strstr(err, ": No such file or directory; "),
           "missing file: the line does not say '%s...: No such file or directory': %s", want,
           err);
    harness_log("(8) missing file: exit 78, one line naming it and ENOENT");
    free(before);

    /* Nothing of the bad files exists; what the fixture imported still works. */
    harness_broker_respawn(&s_b, s_defs_args);
    expect_login_refused("mallory", "mallory-pw");
    expect_login_refused("trent", "trent-pw");
    expect_open_refused("alice", "evil", "NOT_ALLOWED - vhost evil not found");
    amqp_connection_state_t a = open_user("alice", "tenant-a");
    harness_expect_channel_reopen(a, 1, harness_queue_peek(a, 1, "evil-q", NULL, NULL), 404, 50,
                                  10, "NOT_FOUND - no queue 'evil-q' in vhost 'tenant-a'");
    harness_expect_channel_reopen(a, 1, exchange_peek(a, 1, "evil-x"), 404, 40, 10,
                                  "NOT_FOUND - no exchange 'evil-x' in vhost 'tenant-a'");
    CHECK_EQ(harness_queue_count(a, 1, "scratch"), 0);
    close_conn(a);
    for (size_t i = 0; i < NUSERS; i++)
        close_conn(harness_open_as(&s_b, s_users[i].name, s_users[i].pass, s_users[i].vhost));
    harness_log("(8) after the bad files: none of their users, vhosts, queues or exchanges "
                "exist; the imported users still log in");
}

/* The fixture: $WARREN_FIXTURE (meson sets it), else next to this source file. */
static void find_fixture(void)
{
    const char *env = getenv("WARREN_FIXTURE");
    if (env && *env) {
        snprintf(s_fixture, sizeof s_fixture, "%s", env);
    } else {
        const char *slash = strrchr(__FILE__, '/');
        int n = slash ? (int)(slash - __FILE__) : 1;
        snprintf(s_fixture, sizeof s_fixture, "%.*s/../fixtures/rabbitmq-export.json", n,
                 slash ? __FILE__ : ".");
    }
    CHECKF(access(s_fixture, R_OK) == 0, "the fixture %s: %s", s_fixture, strerror(errno));
}

int main(void)
{
    harness_watchdog(60);
    find_fixture();
    const char *tmp = getenv("TMPDIR");
    snprintf(s_dir, sizeof s_dir, "%s/warren-defs-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECKF(mkdtemp(s_dir) != NULL, "mkdtemp: %s", strerror(errno));
    harness_broker_start_args(&s_b, s_defs_args);
    if (harness_external(&s_b)) {
        fprintf(stderr,
                "SKIP: --load-definitions is Warren's; the broker under test is external\n");
        return 77;
    }
    test_logins();
    test_entities();
    test_limits();
    test_isolation();
    test_user_id();
    test_restart();
    test_bad_files();

    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    CHECK(system(cmd) == 0);
    return harness_finish(&s_b);
}
