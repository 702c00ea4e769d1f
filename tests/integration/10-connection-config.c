/* 10-connection-config — warrend --config FILE (RabbitMQ's rabbitmq.conf format), issue 10.
 * Warren-only: skipped against an external broker. (1) listeners.tcp.default, heartbeat,
 * frame_max and channel_max from the file are what connection.tune says; (2) an unknown key, a
 * bad port, a bad value and a missing file stop warrend with status 78 before it listens, with
 * one line naming the file and line; (3) a flag overrides the file; (4) a plain port listens on
 * ::1 too. The harness always passes --port and --bind (which override the file), so (1), (2)
 * and (4) start warrend themselves with --config and --data-dir only. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "harness.h"

static char s_dir[1024]; /* owned: config files, removed at the end */

/* $WARREND --config conf --data-dir data_dir; its stderr to err_fd when >= 0. */
static pid_t spawn(const char *conf, const char *data_dir, int err_fd)
{
    const char *const args[] = {"--config", conf, "--data-dir", data_dir, NULL};
    return harness_warrend_spawn(args, err_fd);
}

/* A TCP connection to addr (an IPv4 or IPv6 literal) and port: the fd, or -1. */
static int tcp_connect(const char *addr, int port)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        len = sizeof *in4;
    } else {
        CHECK(inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        len = sizeof *in6;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void make_data_dir(harness_broker_t *b)
{
    snprintf(b->data_dir, sizeof b->data_dir, "%s/data-XXXXXX", s_dir);
    CHECKF(mkdtemp(b->data_dir) != NULL, "mkdtemp: %s", strerror(errno));
}

/* (1) and (4): the file's listener and tune values. */
static void test_file_values(void)
{
    harness_broker_t b = {0};
    make_data_dir(&b);
    snprintf(b.host, sizeof b.host, "127.0.0.1");
    b.port = harness_free_port();
    char text[2048];
    snprintf(text, sizeof text,
             "# rabbitmq.conf as an operator keeps it\n"
             "listeners.tcp.default = %d\n"
             "heartbeat = 7\n"
             "frame_max = 16384   # bytes\n"
             "channel_max = 99\n"
             "\n"
             "consumer_timeout = 900000\n"
             "max_message_size = 1048576\n"
             "vm_memory_high_watermark.relative = 0.5\n"
             "log.console.level = warning\n"
             "default_user = guest\n"
             "default_pass = guest\n"
             "default_vhost = /\n"
             "default_user_tags.administrator = true\n"
             "default_permissions.configure = .*\n"
             "default_permissions.write = .*\n"
             "default_permissions.read = .*\n"
             "loopback_users.guest = true\n"
             "disk_free_limit.absolute = 50MB\n",
             b.port);
    const char *conf = harness_write_file(s_dir, "values.conf", text);
    b.pid = spawn(conf, b.data_dir, -1);
    int64_t deadline = harness_now_ms() + 10000;
    int fd;
    while ((fd = tcp_connect("127.0.0.1", b.port)) < 0) {
        int status = 0;
        CHECKF(waitpid(b.pid, &status, WNOHANG) == 0, "warrend exited (status %d) before listening",
               status);
        CHECKF(harness_now_ms() < deadline, "warrend did not listen on %d within 10 s", b.port);
        usleep(10000);
    }
    close(fd);

    /* rabbitmq-c proposes more than the server: the negotiated values are the server's. */
    amqp_connection_state_t conn = harness_connect(&b, 0, 131072, 600);
    CHECK_EQ(amqp_get_channel_max(conn), 99);
    CHECK_EQ(amqp_get_frame_max(conn), 16384);
    CHECK_EQ(amqp_get_heartbeat(conn), 7);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    harness_log("(1) the file's listener, heartbeat, frame_max and channel_max are in the tune");

    /* (4) A port without an address listens on IPv6 too (when this machine has ::1). */
    if (!have_ipv6_loopback()) {
        harness_log("(4) skipped: this machine has no IPv6 loopback");
        CHECK_EQ(harness_broker_stop(&b), 0);
        return;
    }
    fd = tcp_connect("::1", b.port);
    CHECKF(fd >= 0, "connect [::1]:%d: %s", b.port, strerror(errno));
    CHECK_EQ(raw_start(fd), 0);
    raw_tune_t tune;
    raw_send_start_ok(fd, "PLAIN", "\0guest\0guest", 12, false);
    CHECK_EQ(raw_read_tune(fd, &tune, 5000), 0);
    CHECK_EQ(tune.channel_max, 99);
    CHECK_EQ(tune.frame_max, 16384);
    CHECK_EQ(tune.heartbeat, 7);
    close(fd);
    harness_log("(4) [::1]:%d answers the protocol header with connection.start", b.port);
    CHECK_EQ(harness_broker_stop(&b), 0);
}

/* (2) One bad configuration: warrend exits with 78 without listening, and its stderr names the
 * file and the line (want: "path:line:" or, for line 0, "path:"). */
static void expect_failure(const char *what, const char *conf, int line, int port)
{
    harness_broker_t b = {0};
    make_data_dir(&b);
    char err[4096];
    bool listened = false;
    const char *const args[] = {"--config", conf, "--data-dir", b.data_dir, NULL};
    int status = harness_warrend_run_args(args, port, 10000, err, sizeof err, &listened);
    CHECKF(status != -1, "%s: warrend was still running after 10 s", what);
    size_t len = strlen(err);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 78, "%s: status %d, want exit 78", what,
           status);
    CHECKF(!listened, "%s: warrend listened on %d", what, port);
    char want[4200];
    if (line)
        snprintf(want, sizeof want, "%s:%d: ", conf, line);
    else
        snprintf(want, sizeof want, "%s: ", conf);
    CHECKF(strstr(err, want), "%s: stderr does not name '%s': %s", what, want, err);
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += err[i] == '\n';
    CHECKF(lines == 1, "%s: %d lines on stderr, want one: %s", what, lines, err);
    CHECK(rmdir(b.data_dir) == 0 || errno == ENOENT || errno == ENOTEMPTY);
    harness_log("(2) %s: exit 78, not listening, stderr: %.*s", what, (int)len - 1, err);
}

static void test_failures(void)
{
    int port = harness_free_port();
    char text[1024];
    snprintf(text, sizeof text,
             "listeners.tcp.default = %d\n# a comment\nlistners.tcp.default = %d\n", port, port);
    expect_failure("unknown key", harness_write_file(s_dir, "unknown.conf", text), 3, port);
    snprintf(text, sizeof text, "heartbeat = 30\nlisteners.tcp.default = 99999\n");
    expect_failure("bad port", harness_write_file(s_dir, "port.conf", text), 2, port);
    snprintf(text, sizeof text, "listeners.tcp.default = %d\nheartbeat = abc\n", port);
    expect_failure("bad value", harness_write_file(s_dir, "value.conf", text), 2, port);
    snprintf(text, sizeof text, "listeners.tcp.default = %d\nthis is not a setting\n", port);
    expect_failure("not key = value", harness_write_file(s_dir, "syntax.conf", text), 2, port);
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/missing.conf", s_dir);
    expect_failure("missing file", missing, 0, port);
}

/* (3) Flags override the file: the harness's --port and --bind beat listeners.tcp.default, and
 * --heartbeat beats heartbeat, while frame_max still comes from the file. */
static void test_flag_overrides(harness_broker_t *b)
{
    amqp_connection_state_t conn = harness_connect(b, 0, 131072, 600);
    CHECK_EQ(amqp_get_heartbeat(conn), 9);
    CHECK_EQ(amqp_get_frame_max(conn), 16384);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    harness_log("(3) --port and --heartbeat override the file; frame_max comes from it");
}

int main(void)
{
    harness_watchdog(50);
    const char *tmp = getenv("TMPDIR");
    snprintf(s_dir, sizeof s_dir, "%s/warren-conf-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECKF(mkdtemp(s_dir) != NULL, "mkdtemp: %s", strerror(errno));

    int other = harness_free_port();
    char text[512];
    snprintf(text, sizeof text, "listeners.tcp.default = %d\nheartbeat = 7\nframe_max = 16384\n",
             other);
    const char *args[] = {"--config", harness_write_file(s_dir, "override.conf", text),
                          "--heartbeat", "9", NULL};
    harness_broker_t b;
    harness_broker_start_args(&b, args);
    if (harness_external(&b)) {
        fprintf(stderr, "SKIP: --config is Warren's; the broker under test is external\n");
        return 77;
    }
    test_flag_overrides(&b);
    int fd = tcp_connect("127.0.0.1", other);
    CHECKF(fd < 0, "the file's port %d is listened on although --port overrides it", other);
    CHECK_EQ(harness_broker_stop(&b), 0);

    test_file_values();
    test_failures();

    char cmd[4200 + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    CHECK(system(cmd) == 0);
    harness_log("PASS");
    return 0;
}
