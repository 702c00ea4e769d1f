/* 70-tenancy-vhost-delete — deleting a vhost (issue 10) through the management API
 * (DELETE /api/vhosts/{name}, driven with curl): its live connections are closed with 320
 * "CONNECTION_FORCED - vhost 'v' is deleted" (RabbitMQ 3.10's text, checked against
 * rabbitmqctl delete_vhost), connections to other vhosts keep working, its exchanges, queues,
 * bindings, stored messages and permissions are gone — also after a restart, and when a vhost
 * of the same name is created again. Also: user tags, known or not, are kept and shown.
 * Warren-only (it starts warrend with its API port). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include "harness.h"

static harness_broker_t s_b;
static int s_api_port;

/* Runs curl with method on /api/path (body may be NULL); returns the HTTP status and copies the
 * response body into out. */
static int api(const char *method, const char *path, const char *body, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "curl -s -u guest:guest -X %s -H 'content-type: application/json' %s%s%s "
             "-w '\\n%%{http_code}' 'http://127.0.0.1:%d/api/%s'",
             method, body ? "-d '" : "", body ? body : "", body ? "'" : "", s_api_port, path);
    FILE *p = popen(cmd, "r");
    CHECKF(p, "popen curl: %s", strerror(errno));
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    CHECKF(pclose(p) == 0, "curl %s %s failed: %s", method, path, buf);
    char *nl = strrchr(buf, '\n');
    CHECKF(nl, "curl %s %s: no status in '%s'", method, path, buf);
    *nl = 0;
    if (out)
        snprintf(out, cap, "%s", buf);
    return atoi(nl + 1);
}

static amqp_connection_state_t open_vhost(const char *vhost)
{
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *sock = amqp_tcp_socket_new(conn);
    CHECK(sock != NULL);
    struct timeval tv = {.tv_sec = 10};
    CHECK_AMQP(amqp_socket_open_noblock(sock, s_b.host, s_b.port, &tv));
    CHECK_REPLY(amqp_login(conn, vhost, 0, AMQP_DEFAULT_FRAME_SIZE, 0, AMQP_SASL_METHOD_PLAIN,
                           "guest", "guest"));
    harness_channel_open(conn, 1);
    return conn;
}

/* conn must get connection.close 320 with text (after any deliveries); answers close-ok. */
static void expect_forced_close(amqp_connection_state_t conn, const char *text)
{
    amqp_frame_t f;
    struct timeval tv = {.tv_sec = 5};
    int rc;
    do { /* deliveries sent before the deletion come first */
        rc = amqp_simple_wait_frame_noblock(conn, &f, &tv);
        CHECKF(rc == AMQP_STATUS_OK, "waiting for connection.close: %s", amqp_error_string2(rc));
        CHECKF(f.frame_type != AMQP_FRAME_METHOD || f.payload.method.id ==
               AMQP_CONNECTION_CLOSE_METHOD || f.payload.method.id == AMQP_BASIC_DELIVER_METHOD,
               "got method 0x%08x instead of connection.close", f.payload.method.id);
    } while (f.frame_type != AMQP_FRAME_METHOD ||
             f.payload.method.id != AMQP_CONNECTION_CLOSE_METHOD);
    amqp_connection_close_t *m = f.payload.method.decoded;
    CHECK_EQ(m->reply_code, 320);
    CHECKF(harness_bytes_is(m->reply_text, text), "close text '%.*s', want '%s'",
           (int)m->reply_text.len, (const char *)m->reply_text.bytes, text);
    amqp_connection_close_ok_t ok = {0};
    CHECK_AMQP(amqp_send_method(conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok));
    amqp_destroy_connection(conn);
}

/* A passive queue.declare of q on channel 1 must get 404 (channel 1 is opened again). */
static void expect_no_queue(amqp_connection_state_t conn, const char *q, const char *vhost)
{
    amqp_queue_declare(conn, 1, amqp_cstring_bytes(q), 1, 0, 0, 0, amqp_empty_table);
    harness_expect_channel_reopen(conn, 1, amqp_get_rpc_reply(conn), 404, 50, 10,
                                  "NOT_FOUND - no queue '%s' in vhost '%s'", q, vhost);
}

static void publish_persistent(amqp_connection_state_t conn, const char *x, const char *key,
                               int n)
{
    harness_confirms_t c = {0};
    harness_confirm_select(conn, 1);
    amqp_basic_properties_t props = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
                                     .delivery_mode = 2};
    for (int i = 0; i < n; i++) {
        harness_publish_props(conn, 1, x, key, false, &props, "kept until the vhost goes");
        c.published++;
    }
    harness_wait_confirms(conn, &c);
}

int main(void)
{
    harness_watchdog(60);
    harness_name_init("vd");
    char port[16], out[65536];
    s_api_port = harness_free_port();
    snprintf(port, sizeof port, "%d", s_api_port);
    const char *args[] = {"--management-port", port, NULL};
    harness_broker_start_args(&s_b, args);
    harness_require_own_broker(&s_b);

    /* Tags RabbitMQ knows and others are kept and shown. */
    CHECK_EQ(api("PUT", "users/ops", "{\"password\":\"pw\",\"tags\":\"monitoring,on-call\"}",
                 NULL, 0), 201);
    CHECK_EQ(api("GET", "users/ops", NULL, out, sizeof out), 200);
    CHECKF(strstr(out, "\"tags\":[\"monitoring\",\"on-call\"]"), "users/ops: %s", out);
    CHECKF(strstr(out, "\"hashing_algorithm\":\"rabbit_password_hashing_sha256\""),
           "users/ops: %s", out);

    CHECK_EQ(api("PUT", "vhosts/shop", NULL, NULL, 0), 201);
    CHECK_EQ(api("PUT", "permissions/shop/guest", "{\"configure\":\".*\",\"write\":\".*\","
                 "\"read\":\".*\"}", NULL, 0), 204); /* the creator already has them */

    amqp_connection_state_t shop = open_vhost("shop"), shop2 = open_vhost("shop");
    amqp_connection_state_t root = open_vhost("/");
    /* The same names in both vhosts. */
    amqp_connection_state_t conns[2] = {shop, root};
    for (int i = 0; i < 2; i++) {
        harness_exchange_declare(conns[i], 1, "orders", "topic", HARNESS_EXCHANGE_DURABLE,
                                 amqp_empty_table);
        harness_queue_declare(conns[i], 1, "billing", HARNESS_QUEUE_DURABLE, amqp_empty_table);
        amqp_queue_bind(conns[i], 1, amqp_cstring_bytes("billing"), amqp_cstring_bytes("orders"),
                        amqp_cstring_bytes("eu.#"), amqp_empty_table);
        CHECK_REPLY(amqp_get_rpc_reply(conns[i]));
        publish_persistent(conns[i], "orders", "eu.new", 20);
    }
    harness_expect_count(shop, 1, "billing", 20, "shop before the deletion");
    /* A consumer with unacknowledged deliveries on the vhost to be deleted. */
    amqp_basic_qos(shop2, 1, 0, 5, 0);
    CHECK_REPLY(amqp_get_rpc_reply(shop2));
    harness_consume(shop2, 1, "billing", "c1", 0, amqp_empty_table);

    CHECK_EQ(api("DELETE", "vhosts/shop", NULL, NULL, 0), 204);
    expect_forced_close(shop, "CONNECTION_FORCED - vhost 'shop' is deleted");
    expect_forced_close(shop2, "CONNECTION_FORCED - vhost 'shop' is deleted");
    CHECK_EQ(api("GET", "vhosts/shop", NULL, NULL, 0), 404);
    CHECK_EQ(api("DELETE", "vhosts/shop", NULL, NULL, 0), 404);
    CHECK_EQ(api("GET", "permissions/shop/guest", NULL, NULL, 0), 404);

    /* The other vhost's connection and its same-named objects are untouched. */
    harness_expect_count(root, 1, "billing", 20, "/ after the deletion of shop");
    amqp_basic_properties_t persistent = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
                                          .delivery_mode = 2};
    harness_publish_props(root, 1, "orders", "eu.more", false, &persistent, "one more");
    harness_expect_count(root, 1, "billing", 21, "/ after one more publish");

    /* A new vhost of the same name starts empty, and has no permissions of the old one
     * (but its creator gets full ones, as in RabbitMQ). */
    CHECK_EQ(api("PUT", "vhosts/shop", NULL, NULL, 0), 201);
    shop = open_vhost("shop");
    expect_no_queue(shop, "billing", "shop");
    amqp_exchange_declare(shop, 1, amqp_cstring_bytes("orders"), amqp_cstring_bytes("topic"), 1,
                          0, 0, 0, amqp_empty_table);
    harness_expect_channel_reopen(shop, 1, amqp_get_rpc_reply(shop), 404, 40, 10,
                                  "NOT_FOUND - no exchange 'orders' in vhost 'shop'");
    harness_disconnect(shop);
    CHECK_EQ(api("DELETE", "vhosts/shop", NULL, NULL, 0), 204);
    harness_disconnect(root);

    /* After a restart: shop is still gone, / keeps its 21 messages. */
    harness_broker_shutdown(&s_b);
    harness_broker_respawn(&s_b, args);
    CHECK_EQ(api("GET", "vhosts", NULL, out, sizeof out), 200);
    CHECKF(!strstr(out, "\"shop\""), "vhost shop is back after a restart: %s", out);
    root = open_vhost("/");
    harness_expect_count(root, 1, "billing", 21, "/ after a restart");
    harness_disconnect(root);
    CHECK_EQ(api("PUT", "vhosts/shop", NULL, NULL, 0), 201);
    shop = open_vhost("shop");
    expect_no_queue(shop, "billing", "shop");
    harness_disconnect(shop);

    harness_check_alive(&s_b);
    CHECK(harness_broker_stop(&s_b) == 0);
    harness_log("PASS");
    return 0;
}
