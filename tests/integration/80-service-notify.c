/* 80-service-notify.c — warrend under a pretend systemd (issue 11, "Installing as a service"):
 * the test binds an AF_UNIX datagram socket of its own and starts warrend with NOTIFY_SOCKET
 * naming it, as systemd does for Type=notify. Checks: READY=1 arrives only once recovery is done
 * (a data dir with durable queues and persistent messages) and the AMQP and management ports
 * accept at once; SIGHUP is logged and does not stop warrend (systemctl reload); SIGTERM sends
 * STOPPING=1 and warrend exits 0. Owns its socket dir; the broker is the harness's. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

enum { QUEUES = 200 };

static char s_sockdir[4096];
static char s_sockpath[4200];

static void cleanup_sock(void)
{
    if (s_sockpath[0])
        unlink(s_sockpath);
    if (s_sockdir[0])
        rmdir(s_sockdir);
}

/* The notify socket: a datagram socket bound to a path in a fresh temp dir. */
static int notify_socket(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(s_sockdir, sizeof s_sockdir, "%s/warren-notify-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECKF(mkdtemp(s_sockdir) != NULL, "mkdtemp %s: %s", s_sockdir, strerror(errno));
    atexit(cleanup_sock);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(s_sockpath, sizeof s_sockpath, "%s/notify", s_sockdir);
    CHECKF(strlen(s_sockpath) < sizeof sa.sun_path, "socket path too long: %s", s_sockpath);
    memcpy(sa.sun_path, s_sockpath, strlen(s_sockpath) + 1);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECKF(fd >= 0, "socket: %s", strerror(errno));
    CHECKF(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "bind %s: %s", s_sockpath,
           strerror(errno));
    return fd;
}

/* One datagram within timeout_ms, NUL-terminated in buf; false on timeout. */
static bool recv_notify(int fd, char *buf, size_t cap, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc;
    do
        rc = poll(&p, 1, timeout_ms);
    while (rc < 0 && errno == EINTR);
    if (rc <= 0)
        return false;
    ssize_t n = recv(fd, buf, cap - 1, 0);
    CHECKF(n >= 0, "recv: %s", strerror(errno));
    buf[n] = 0;
    return true;
}

/* Appends what warrend wrote to its stderr so far (the pipe is non-blocking) to log. */
static void read_log(int fd, char *log, size_t cap)
{
    size_t len = strlen(log);
    for (;;) {
        ssize_t n = read(fd, log + len, cap - 1 - len);
        if (n <= 0)
            break;
        fwrite(log + len, 1, (size_t)n, stderr);
        len += (size_t)n;
        log[len] = 0;
        if (len + 1 >= cap)
            break;
    }
}

/* Is a line of the datagram exactly line? */
static bool has_line(const char *msg, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = msg; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == 0))
            return true;
    return false;
}

int main(void)
{
    harness_watchdog(120);
    harness_broker_t b;
    harness_broker_start(&b);
    harness_require_own_broker(&b);
    harness_name_init("sn");

    /* Durable state for recovery to read: QUEUES durable queues, one persistent message each. */
    amqp_connection_state_t conn = harness_open(&b);
    amqp_basic_properties_t props = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG, .delivery_mode = 2};
    for (int i = 0; i < QUEUES; i++) {
        const char *q = harness_name("q%d", i);
        harness_queue_declare(conn, 1, q, HARNESS_QUEUE_DURABLE, amqp_empty_table);
        harness_publish_props(conn, 1, "", q, false, &props, "kept");
    }
    harness_sync(conn, 1);
    harness_disconnect(conn);
    harness_broker_shutdown(&b);

    /* warrend again on that data dir, as systemd would start it. */
    int nfd = notify_socket();
    CHECK(setenv("NOTIFY_SOCKET", s_sockpath, 1) == 0);
    int mport = harness_free_port();
    char port[16], mportbuf[16];
    snprintf(port, sizeof port, "%d", b.port);
    snprintf(mportbuf, sizeof mportbuf, "%d", mport);
    const char *const args[] = {"--port", port, "--bind", "127.0.0.1", "--data-dir", b.data_dir,
                                "--log-level", "info", "--management-port", mportbuf, NULL};
    int errp[2];
    CHECK(pipe2(errp, O_CLOEXEC) == 0);
    int64_t t0 = harness_now_ms();
    b.pid = harness_warrend_spawn(args, errp[1]);
    close(errp[1]);
    CHECK(fcntl(errp[0], F_SETFL, O_NONBLOCK) == 0);
    unsetenv("NOTIFY_SOCKET");

    static char log[1 << 16];
    char msg[1024];
    CHECKF(recv_notify(nfd, msg, sizeof msg, 30000), "no notification from warrend in 30 s");
    harness_log("got \"%s\" after %lld ms", msg, (long long)(harness_now_ms() - t0));
    /* The first datagram is READY=1: nothing was said before it. */
    CHECKF(has_line(msg, "READY=1"), "the first notification is \"%s\", not READY=1", msg);
    CHECKF(strstr(msg, "STATUS=accepting AMQP connections on port ") != NULL,
           "no STATUS in \"%s\"", msg);
    /* Right now, with no retry: both ports take a connection, and every durable queue is back
     * with its message. */
    int fd = raw_connect(&b);
    close(fd);
    harness_broker_t mgmt = b;
    mgmt.port = mport;
    fd = raw_connect(&mgmt);
    close(fd);
    /* warrend logged recovery and its listeners before it sent READY=1, so those lines are in
     * the pipe already. */
    read_log(errp[0], log, sizeof log);
    const char *rec = strstr(log, "recovered the data directory");
    const char *amqp = strstr(log, "listening for AMQP on 127.0.0.1 port");
    const char *api = strstr(log, "management API listening");
    CHECKF(rec && amqp && api, "READY=1 came before warrend logged recovery (%d), the AMQP "
                               "listener (%d) and the management API (%d)",
           !!rec, !!amqp, !!api);
    CHECK(rec < amqp);
    conn = harness_open(&b);
    for (int i = 0; i < QUEUES; i++)
        CHECK_EQ(harness_queue_count(conn, 1, harness_name("q%d", i)), 1);
    harness_log("all %d durable queues were recovered before READY=1", QUEUES);

    /* systemctl reload: SIGHUP must not stop warrend. */
    CHECK(kill(b.pid, SIGHUP) == 0);
    int64_t deadline = harness_now_ms() + 5000;
    while (!strstr(log, "SIGHUP: nothing to reload") && harness_now_ms() < deadline) {
        usleep(20000);
        read_log(errp[0], log, sizeof log);
    }
    CHECKF(strstr(log, "SIGHUP: nothing to reload (no TLS listener; the configuration is read at start)"),
           "warrend did not log SIGHUP");
    CHECK(harness_broker_alive(&b));
    harness_sync(conn, 1);
    CHECKF(!recv_notify(nfd, msg, sizeof msg, 0), "unexpected notification \"%s\"", msg);

    /* systemctl stop: STOPPING=1, then a clean exit. */
    CHECK(kill(b.pid, SIGTERM) == 0);
    CHECKF(recv_notify(nfd, msg, sizeof msg, 10000), "no STOPPING=1 within 10 s of SIGTERM");
    CHECKF(has_line(msg, "STOPPING=1"), "after SIGTERM: \"%s\", not STOPPING=1", msg);
    int status;
    CHECK(waitpid(b.pid, &status, 0) == b.pid);
    b.pid = 0;
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "warrend exited with %s %d on SIGTERM",
           WIFEXITED(status) ? "status" : "signal",
           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    read_log(errp[0], log, sizeof log);
    close(errp[0]);
    amqp_destroy_connection(conn);
    close(nfd);
    CHECK_EQ(harness_broker_stop(&b), 0);
    harness_log("PASS");
    return 0;
}
