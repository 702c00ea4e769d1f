/* 70-tenancy-seed — what the first start of an empty data dir creates (issue 10), as RabbitMQ:
 * (1) default_user, default_pass, default_vhost and default_permissions.* from --config are the
 *     only user, vhost and permissions: app/s3cret opens appvh and may configure ^app-.* only,
 *     guest does not exist (403), "/" does not exist (530);
 * (2) seeding happens once: a restart on that data dir with other default_* values adds nothing;
 * (3) with definitions to load (load_definitions in the file, or --load-definitions) nothing is
 *     seeded, not even on a later start without them: only the file's user logs in;
 * (4) default_user_tags.<tag> = true/false parse (tags are not observable over AMQP yet); a value
 *     other than true/false stops warrend with 78.
 * Warren-only (config files, restarts): skipped against an external broker. Owns its temp dir
 * of config and definitions files, removed at the end; the harness owns warrend and its data. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <amqp_framing.h>

/* RabbitMQ's documented sha256 hash of "test12". */
#define TEST12_HASH "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"

static char s_dir[1024]; /* owned: config and definitions files, removed at the end */

/* user/pass must be refused at login: 403 with RabbitMQ's text, class and method 0. */
static void expect_refused(const harness_broker_t *b, const char *user, const char *pass)
{
    amqp_connection_state_t conn;
    amqp_rpc_reply_t r = harness_try_login_vhost(b, user, pass, "/", &conn);
    harness_expect_connection_close(conn, r, 403, HARNESS_REFUSED_PLAIN, 0, 0);
}

/* user/pass logs in but connection.open of vhost gets 530 "vhost ... not found". */
static void expect_no_vhost(const harness_broker_t *b, const char *user, const char *pass,
                            const char *vhost)
{
    amqp_connection_state_t conn;
    amqp_rpc_reply_t r = harness_try_login_vhost(b, user, pass, vhost, &conn);
    char text[300];
    snprintf(text, sizeof text, "NOT_ALLOWED - vhost %s not found", vhost);
    harness_expect_connection_close(conn, r, 530, text, 10, 40);
}

static amqp_rpc_reply_t declare(amqp_connection_state_t conn, const char *queue, bool durable)
{
    amqp_queue_declare(conn, 1, amqp_cstring_bytes(queue), 0, durable, 0, 0, amqp_empty_table);
    return amqp_get_rpc_reply(conn);
}

/* (1) The seeded user, vhost and permissions, and nothing else. */
static void test_seeded(const harness_broker_t *b)
{
    amqp_connection_state_t conn = harness_open_as(b, "app", "s3cret", "appvh");
    harness_expect_channel_reopen(conn, 1, declare(conn, "other", false), 403, 50, 10,
                                  "ACCESS_REFUSED - configure access to queue 'other' in vhost "
                                  "'appvh' refused for user 'app'");
    CHECK_REPLY(declare(conn, "app-1", true));
    harness_disconnect(conn);
    harness_log("(1) app/s3cret opens appvh, may declare app-1 but not other");

    expect_refused(b, "guest", "guest");
    expect_refused(b, "app", "guest");
    expect_no_vhost(b, "app", "s3cret", "/");
    harness_log("(1) guest does not exist, nor does vhost /");
}

/* (2) A restart with other default_* values: the data dir is not empty, nothing is seeded. */
static void test_seed_once(harness_broker_t *b, const char *conf)
{
    harness_broker_shutdown(b);
    const char *const args[] = {"--config", conf, NULL};
    harness_broker_respawn(b, args);
    amqp_connection_state_t conn = harness_open_as(b, "app", "s3cret", "appvh");
    uint32_t messages = 1;
    CHECK_REPLY(harness_queue_peek(conn, 1, "app-1", &messages, NULL));
    CHECK_EQ(messages, 0);
    harness_expect_channel_reopen(conn, 1, declare(conn, "other", false), 403, 50, 10,
                                  "ACCESS_REFUSED - configure access to queue 'other' in vhost "
                                  "'appvh' refused for user 'app'");
    harness_disconnect(conn);
    expect_refused(b, "ops", "0ps");
    expect_refused(b, "guest", "guest");
    expect_no_vhost(b, "app", "s3cret", "opsvh");
    expect_no_vhost(b, "app", "s3cret", "/");
    harness_log("(2) after a restart with default_user ops, default_vhost opsvh: app and appvh "
                "(and its queue app-1) as before, no ops, no opsvh");
}

/* (3) Definitions to load: the file's user only, on this start and the next. */
static void test_definitions(const char *const *args, const char *what)
{
    harness_broker_t b;
    harness_broker_start_args(&b, args);
    expect_refused(&b, "guest", "guest");
    expect_refused(&b, "app", "s3cret");
    amqp_connection_state_t conn = harness_open_as(&b, "d12", "test12", "/");
    CHECK_REPLY(declare(conn, harness_name("defs"), false));
    harness_disconnect(conn);
    expect_refused(&b, "d12", "test13");
    harness_log("(3) %s: guest is not created, d12/test12 from the definitions logs in", what);

    /* Not on a later start without definitions either: the data dir is no longer empty. */
    harness_broker_shutdown(&b);
    harness_broker_respawn(&b, NULL);
    expect_refused(&b, "guest", "guest");
    harness_disconnect(harness_open_as(&b, "d12", "test12", "/"));
    CHECK_EQ(harness_broker_stop(&b), 0);
    harness_log("(3) %s, restarted without definitions: still no guest, d12 kept", what);
}

/* (4) Tags parse; the seeded user logs in. A bad value stops warrend with 78. */
static void test_tags(void)
{
    const char *conf = harness_write_file(s_dir, "tags.conf",
                                          "default_user_tags.administrator = false\n"
                                          "default_user_tags.management = true\n"
                                          "default_user_tags.monitoring = true\n"
                                          "default_user_tags.policymaker = false\n"
                                          "default_user = tagged\n"
                                          "default_pass = t4gged\n");
    const char *const args[] = {"--config", conf, NULL};
    harness_broker_t b;
    harness_broker_start_args(&b, args);
    harness_disconnect(harness_open_as(&b, "tagged", "t4gged", "/"));
    CHECK_EQ(harness_broker_stop(&b), 0);
    harness_log("(4) default_user_tags.administrator/management/monitoring/policymaker = "
                "true/false parse; the default user logs in");

    char data[1100];
    snprintf(data, sizeof data, "%s/data-badtag", s_dir);
    const char *bad = harness_write_file(s_dir, "badtag.conf",
                                         "default_user = tagged\n"
                                         "default_user_tags.administrator = maybe\n");
    int port = harness_free_port();
    char portbuf[16], err[4096];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    const char *const bad_args[] = {"--config", bad, "--port", portbuf, "--bind", "127.0.0.1",
                                    "--data-dir", data, NULL};
    bool listened = true;
    int status = harness_warrend_run_args(bad_args, port, 10000, err, sizeof err, &listened);
    CHECKF(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 78,
           "default_user_tags.administrator = maybe: status %d, want exit 78", status);
    CHECKF(!listened, "warrend listened with a bad tag value");
    char want[1200];
    snprintf(want, sizeof want, "%s:2: ", bad);
    CHECKF(strstr(err, want), "stderr does not name %s: %s", want, err);
    harness_log("(4) default_user_tags.administrator = maybe: exit 78 naming line 2");
}

int main(void)
{
    harness_watchdog(55);
    const char *tmp = getenv("TMPDIR");
    snprintf(s_dir, sizeof s_dir, "%s/warren-seed-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECKF(mkdtemp(s_dir) != NULL, "mkdtemp: %s", strerror(errno));
    harness_name_init("ts");

    const char *conf1 = harness_write_file(s_dir, "app.conf",
                                           "default_user = app\n"
                                           "default_pass = s3cret\n"
                                           "default_vhost = appvh\n"
                                           "default_permissions.configure = ^app-.*\n"
                                           "default_permissions.write = ^app-.*\n"
                                           "default_permissions.read = ^app-.*\n");
    const char *const args1[] = {"--config", conf1, NULL};
    harness_broker_t b;
    harness_broker_start_args(&b, args1);
    if (harness_external(&b)) {
        fprintf(stderr, "SKIP: seeding is configured by warrend's --config; the broker under "
                        "test is external\n");
        return 77;
    }
    test_seeded(&b);
    test_seed_once(&b, harness_write_file(s_dir, "ops.conf",
                                          "default_user = ops\n"
                                          "default_pass = 0ps\n"
                                          "default_vhost = opsvh\n"
                                          "default_permissions.configure = .*\n"
                                          "default_permissions.write = .*\n"
                                          "default_permissions.read = .*\n"));
    CHECK_EQ(harness_broker_stop(&b), 0);

    const char *defs =
        harness_write_file(s_dir, "defs.json",
                           "{\"users\": [{\"name\": \"d12\", \"password_hash\": \"" TEST12_HASH
                           "\", \"hashing_algorithm\": \"rabbit_password_hashing_sha256\", "
                           "\"tags\": \"\"}],\n"
                           " \"vhosts\": [{\"name\": \"/\"}],\n"
                           " \"permissions\": [{\"user\": \"d12\", \"vhost\": \"/\", "
                           "\"configure\": \".*\", \"write\": \".*\", \"read\": \".*\"}]}\n");
    char text[1300];
    snprintf(text, sizeof text,
             "default_user = app\ndefault_pass = s3cret\nload_definitions = %s\n", defs);
    const char *const args_conf[] = {"--config", harness_write_file(s_dir, "defs.conf", text),
                                     NULL};
    test_definitions(args_conf, "load_definitions in the file (with default_user app)");
    const char *const args_flag[] = {"--load-definitions", defs, NULL};
    test_definitions(args_flag, "--load-definitions");

    test_tags();

    char cmd[1100 + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    CHECK(system(cmd) == 0);
    harness_log("PASS");
    return 0;
}
