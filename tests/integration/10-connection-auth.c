/* 10-connection-auth — SASL PLAIN and AMQPLAIN, refused logins, unknown vhost.
 * What RabbitMQ 3.10.8 answers (checked here):
 *  - bad password or unknown user, client announcing authentication_failure_close (rabbitmq-c
 *    and pika do): connection.close 403 "ACCESS_REFUSED - Login was refused using
 *    authentication mechanism PLAIN. For details see the broker logfile." class 0 method 0;
 *    the socket is closed once the client sends close-ok.
 *  - same without that capability: nothing is sent; the socket is closed after 3 s.
 *  - unknown mechanism, or a PLAIN response without the two NULs: nothing sent, closed after 3 s.
 *  - AMQPLAIN: the response is a field table's content without its length prefix, LOGIN and
 *    PASSWORD as longstr; a bad password gets the same 403 naming AMQPLAIN.
 *  - connection.open of a vhost that does not exist: connection.close 530
 *    "NOT_ALLOWED - vhost /nope not found" class 10 method 40. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <amqp_framing.h>

#define REFUSED_AMQPLAIN                                                                          \
    "ACCESS_REFUSED - Login was refused using authentication mechanism AMQPLAIN. For details "   \
    "see the broker logfile."

static void check_rabbitmq_c_refused(const harness_broker_t *b, const char *user, const char *pass)
{
    amqp_connection_state_t conn;
    amqp_rpc_reply_t r = harness_try_login(b, user, pass, 0, AMQP_DEFAULT_FRAME_SIZE, 0, &conn);
    char buf[512];
    harness_log("rabbitmq-c login %s/%s: %s", user, pass, harness_reply_str(r, buf, sizeof buf));
    CHECKF(r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION, "login %s/%s: %s", user, pass, buf);
    CHECK_EQ(r.reply.id, AMQP_CONNECTION_CLOSE_METHOD);
    const amqp_connection_close_t *c = r.reply.decoded;
    CHECK_EQ(c->reply_code, AMQP_ACCESS_REFUSED);
    CHECK(c->reply_text.len == strlen(HARNESS_REFUSED_PLAIN) &&
          memcmp(c->reply_text.bytes, HARNESS_REFUSED_PLAIN, c->reply_text.len) == 0);
    CHECK_EQ(c->class_id, 0);
    CHECK_EQ(c->method_id, 0);
    amqp_destroy_connection(conn);
}

/* Drive start-ok by hand and expect a 403 connection.close with `text`. */
static void check_raw_refused(const harness_broker_t *b, const char *mech, const void *resp,
                              size_t len, const char *text)
{
    int fd = raw_connect(b);
    CHECK(raw_start(fd) == 0);
    CHECK(raw_send_start_ok(fd, mech, resp, len, true) == 0);
    raw_close_t c;
    int rc = raw_expect_close(fd, false, &c, 5000);
    CHECKF(rc == 0, "%s: no connection.close (%s)", mech, strerror(-rc));
    harness_log("raw %s refused: %u %s (%u.%u)", mech, c.reply_code, c.reply_text, c.class_id,
                c.method_id);
    CHECK_EQ(c.reply_code, 403);
    CHECK_STREQ(c.reply_text, text);
    CHECK_EQ(c.class_id, 0);
    CHECK_EQ(c.method_id, 0);
    raw_finish_close(fd);
    close(fd);
}

/* Nothing comes back; the socket is closed after RabbitMQ's 3 s anti-flood delay. */
static void check_raw_silent_close(const harness_broker_t *b, const char *what, const char *mech,
                                   const void *resp, size_t len, bool auth_failure_close)
{
    int fd = raw_connect(b);
    CHECK(raw_start(fd) == 0);
    CHECK(raw_send_start_ok(fd, mech, resp, len, auth_failure_close) == 0);
    int64_t t0 = harness_now_ms();
    size_t extra = 0;
    int rc = raw_wait_closed(fd, 6000, &extra);
    int64_t ms = harness_now_ms() - t0;
    harness_log("%s: closed after %lld ms, %zu bytes", what, (long long)ms, extra);
    CHECKF(rc == 0, "%s: socket still open after 6 s", what);
    CHECKF(extra == 0, "%s: server sent %zu bytes, RabbitMQ sends none", what, extra);
    CHECKF(ms >= 2000, "%s: closed after %lld ms, RabbitMQ waits 3 s", what, (long long)ms);
    close(fd);
}

static void amqplain_response(wbuf_t *w, const char *user, const char *pass)
{
    wb_shortstr(w, "LOGIN");
    wb_u8(w, 'S');
    wb_longstr(w, user, strlen(user));
    wb_shortstr(w, "PASSWORD");
    wb_u8(w, 'S');
    wb_longstr(w, pass, strlen(pass));
}

static void check_amqplain_ok(const harness_broker_t *b)
{
    wbuf_t resp = {0};
    amqplain_response(&resp, "guest", "guest");
    int fd = raw_connect(b);
    CHECK(raw_start(fd) == 0);
    CHECK(raw_send_start_ok(fd, "AMQPLAIN", resp.p, resp.len, true) == 0);
    raw_tune_t tune;
    int rc = raw_read_tune(fd, &tune, 5000);
    CHECKF(rc == 0, "AMQPLAIN guest/guest: no connection.tune (%s)", strerror(-rc));
    CHECK_EQ(tune.frame_max, 131072);
    CHECK(raw_send_tune_ok(fd, tune.channel_max, tune.frame_max, 0) == 0);
    CHECK(raw_open_vhost(fd, "/") == 0);
    raw_channel_open(fd, 1);
    close(fd);
    wb_free(&resp);
}

static void check_unknown_vhost(const harness_broker_t *b)
{
    int fd = raw_connect(b);
    raw_tune_t tune;
    raw_login(fd, &tune);
    CHECK(raw_send_tune_ok(fd, tune.channel_max, tune.frame_max, 0) == 0);
    wbuf_t args = {0}, frame = {0};
    wb_shortstr(&args, "/nope");
    wb_shortstr(&args, "");
    wb_u8(&args, 0);
    wb_method(&frame, 0, 10, 40, args.p, args.len);
    CHECK(raw_send(fd, frame.p, frame.len) == 0);
    raw_close_t c;
    int rc = raw_expect_close(fd, false, &c, 5000);
    CHECKF(rc == 0, "open /nope: no connection.close (%s)", strerror(-rc));
    harness_log("open /nope: %u %s (%u.%u)", c.reply_code, c.reply_text, c.class_id, c.method_id);
    CHECK_EQ(c.reply_code, 530);
    CHECK_STREQ(c.reply_text, "NOT_ALLOWED - vhost /nope not found");
    CHECK_EQ(c.class_id, 10);
    CHECK_EQ(c.method_id, 40);
    raw_finish_close(fd);
    close(fd);
    wb_free(&args);
    wb_free(&frame);
}

int main(void)
{
    harness_watchdog(55);
    harness_broker_t b;
    harness_broker_start(&b);

    check_rabbitmq_c_refused(&b, "guest", "wrong");
    check_rabbitmq_c_refused(&b, "nobody", "guest");
    harness_disconnect(harness_connect(&b, 0, AMQP_DEFAULT_FRAME_SIZE, 0));

    check_raw_refused(&b, "PLAIN", "\0guest\0wrong", 12, HARNESS_REFUSED_PLAIN);
    check_raw_refused(&b, "PLAIN", "\0nobody\0guest", 13, HARNESS_REFUSED_PLAIN);
    wbuf_t resp = {0};
    amqplain_response(&resp, "guest", "wrong");
    check_raw_refused(&b, "AMQPLAIN", resp.p, resp.len, REFUSED_AMQPLAIN);
    wb_free(&resp);
    check_amqplain_ok(&b);
    check_unknown_vhost(&b);

    check_raw_silent_close(&b, "wrong password, no authentication_failure_close", "PLAIN",
                           "\0guest\0wrong", 12, false);
    check_raw_silent_close(&b, "unknown mechanism FOO", "FOO", "\0guest\0guest", 12, true);
    check_raw_silent_close(&b, "PLAIN response without NULs", "PLAIN", "guestguest", 10, true);

    return harness_finish(&b);
}
