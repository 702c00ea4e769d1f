/* 70-tenancy-login — logins against the stored users (issue 10). Warren-only (config files,
 * warrend's log, a second local address): skipped against an external broker.
 * (c) connection.update-secret with the user's password: update-secret-ok, the connection goes
 *     on; with another: connection.close 530 "NOT_ALLOWED - New secret was refused by one of the
 *     backends" (10.70), logged with the user. (RabbitMQ 3.10.8's internal backend answers
 *     update-secret-ok to any secret: its users' state cannot expire. Warren re-checks.)
 * (b) the per-address throttle: 600 failed logins from 127.0.0.2 over 20 parallel connections
 *     take >= 2.5 s (at most 200 answers a second), while 127.0.0.1 is answered at once; the right
 *     password from 127.0.0.2 works again within 15 s; each failure is logged with user and reason.
 * (a) loopback_users, over AMQP and on the management API: guest/guest from a non-loopback
 *     address (192.0.2.77 on an interface the test creates and always removes) gets 403 like a
 *     bad password (401 from the API), from 127.0.0.1 it logs in;
 *     another user logs in from 192.0.2.77; loopback_users.guest = false and loopback_users = none
 *     let guest in from there. Needs root for the interface: exit 77 (after (b) and (c)) without.
 * Owns its warrend processes (spawned here, dying with the test), their data dirs, config and
 * log files under one temp dir, and the interface; all are removed on every way out. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SECRET_REFUSED "NOT_ALLOWED - New secret was refused by one of the backends"

#define REMOTE_ADDR "192.0.2.77" /* TEST-NET-1: never routed anywhere */
#define IFACE_PREFIX "warrent"   /* + our pid: at most 14 characters */

enum { FLOOD_CONNS = 20, FLOOD_EACH = 30, FLOOD_TOTAL = FLOOD_CONNS * FLOOD_EACH };

static char s_dir[1024];  /* owned: config files, logs and data dirs, removed at exit */
static char s_iface[2][16]; /* the interface (and its veth peer) we created, "" when none */

/* ---- cleanup on every way out ------------------------------------------------------------- */

static void run_quiet(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run_quiet(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd - 20, fmt, ap);
    va_end(ap);
    strcat(cmd, " >/dev/null 2>&1");
    int rc = system(cmd);
    (void)rc;
}

static int run_status(const char *cmd)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s >/dev/null 2>&1", cmd);
    int st = system(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void cleanup(void)
{
    if (s_iface[0][0]) {
        run_quiet("ip link del %s", s_iface[0]); /* takes a veth peer with it */
        s_iface[0][0] = s_iface[1][0] = '\0';
    }
    if (s_dir[0]) {
        run_quiet("rm -rf '%s'", s_dir);
        s_dir[0] = '\0';
    }
}

/* The watchdog and meson's SIGTERM: the interface must not outlive us (our warrends die with us
 * through PR_SET_PDEATHSIG). */
static void on_fatal_signal(int sig)
{
    static const char msg[] = "70-tenancy-login: watchdog or SIGTERM, cleaning up\n";
    ssize_t rc = write(2, msg, sizeof msg - 1);
    (void)rc;
    (void)sig;
    cleanup();
    _exit(2);
}

/* Interfaces left by an earlier run that was SIGKILLed (their pid no longer runs). */
static void remove_stale_interfaces(void)
{
    DIR *d = opendir("/sys/class/net");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, IFACE_PREFIX, strlen(IFACE_PREFIX)) != 0)
            continue;
        long pid = strtol(e->d_name + strlen(IFACE_PREFIX), NULL, 10);
        if (pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH)
            run_quiet("ip link del %s", e->d_name);
    }
    closedir(d);
}

/* A socket can be bound to addr (it is one of ours). */
static bool is_local_addr(const char *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Give this machine REMOTE_ADDR on an interface of its own: a dummy, else a veth pair. NULL
 * when it worked, else why not. */
static const char *make_interface(void)
{
    if (geteuid() != 0)
        return "not root: cannot create a network interface";
    if (run_status("ip -V") != 0)
        return "the ip command (iproute2) is not installed";
    remove_stale_interfaces();
    snprintf(s_iface[0], sizeof s_iface[0], IFACE_PREFIX "%d", (int)getpid());
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ip link add %s type dummy", s_iface[0]);
    if (run_status(cmd) != 0) {
        snprintf(s_iface[1], sizeof s_iface[1], "warrenp%d", (int)getpid());
        snprintf(cmd, sizeof cmd, "ip link add %s type veth peer name %s", s_iface[0],
                 s_iface[1]);
        if (run_status(cmd) != 0) {
            s_iface[0][0] = s_iface[1][0] = '\0';
            return "neither a dummy nor a veth interface can be created here";
        }
        snprintf(cmd, sizeof cmd, "ip link set %s up", s_iface[1]);
        CHECKF(run_status(cmd) == 0, "%s failed", cmd);
    }
    snprintf(cmd, sizeof cmd, "ip addr add " REMOTE_ADDR "/32 dev %s", s_iface[0]);
    CHECKF(run_status(cmd) == 0, "%s failed", cmd);
    snprintf(cmd, sizeof cmd, "ip link set %s up", s_iface[0]);
    CHECKF(run_status(cmd) == 0, "%s failed", cmd);
    CHECKF(is_local_addr(REMOTE_ADDR), "cannot bind " REMOTE_ADDR " after adding it to %s",
           s_iface[0]);
    harness_log("created %s%s%s with " REMOTE_ADDR, s_iface[0], s_iface[1][0] ? " and " : "",
                s_iface[1]);
    return NULL;
}

/* ---- our own warrend processes -------------------------------------------------------------- */

typedef struct srv {
    pid_t pid;
    int mport; /* its management API port (the API's basic auth has the same rules) */
    int port;
    char data[1100];
    char log[1100]; /* its stderr, appended */
} srv_t;

/* A TCP connection from src (NULL: any) to dst:port, TCP_NODELAY; the fd or -errno. */
static int tcp_from(const char *src, const char *dst, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (src) {
        CHECK(inet_pton(AF_INET, src, &sa.sin_addr) == 1);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            int e = errno;
            close(fd);
            return -e;
        }
    }
    sa.sin_port = htons((uint16_t)port);
    CHECK(inet_pton(AF_INET, dst, &sa.sin_addr) == 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* GET /api/whoami on s's management API from address src with user:pass: the HTTP status. */
static int api_whoami_from(const srv_t *s, const char *src, const char *dst, const char *user,
                           const char *pass)
{
    int fd = tcp_from(src, dst, s->mport);
    CHECKF(fd >= 0, "connect from %s to the API at %s:%d: %s", src, dst, s->mport,
           strerror(-fd));
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char cred[128], enc[200];
    int n = snprintf(cred, sizeof cred, "%s:%s", user, pass), k = 0;
    for (int i = 0; i < n; i += 3) { /* base64 of the credentials */
        uint32_t v = (uint32_t)(uint8_t)cred[i] << 16 |
                     (i + 1 < n ? (uint32_t)(uint8_t)cred[i + 1] << 8 : 0) |
                     (i + 2 < n ? (uint8_t)cred[i + 2] : 0);
        enc[k++] = b64[v >> 18 & 63];
        enc[k++] = b64[v >> 12 & 63];
        enc[k++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        enc[k++] = i + 2 < n ? b64[v & 63] : '=';
    }
    enc[k] = 0;
    char req[512];
    int len = snprintf(req, sizeof req,
                       "GET /api/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n"
                       "Connection: close\r\n\r\n", enc);
    CHECK(raw_send(fd, req, (size_t)len) == 0);
    char resp[13] = "";
    ssize_t got = raw_recv(fd, resp, 12, 5000);
    close(fd);
    CHECKF(got == 12 && !strncmp(resp, "HTTP/1.1 ", 9), "no HTTP answer from the API (%zd)", got);
    return atoi(resp + 9);
}

/* The whole log so far (malloc'ed, NUL-terminated). */
static char *read_log(const srv_t *s)
{
    FILE *f = fopen(s->log, "r");
    CHECKF(f, "fopen %s: %s", s->log, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    CHECK(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 1024) {
            cap *= 2;
            buf = realloc(buf, cap);
            CHECK(buf);
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/* How many lines of the log hold every one of the NULL-ended needles. */
static int log_count(const srv_t *s, const char *const *needles)
{
    char *log = read_log(s), *save = NULL;
    int n = 0;
    for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        bool all = true;
        for (int i = 0; needles[i] && all; i++)
            all = strstr(line, needles[i]) != NULL;
        n += all;
    }
    free(log);
    return n;
}

/* Start $WARREND with conf_text as its --config (NULL: none), listening on bind (NULL: no --bind,
 * i.e. every IPv4 and IPv6 address) on a free port, stderr to s->log; wait until it accepts on
 * 127.0.0.1. */
static void srv_start(srv_t *s, const char *name, const char *conf_text, const char *bind)
{
    memset(s, 0, sizeof *s);
    snprintf(s->data, sizeof s->data, "%s/data-%s", s_dir, name);
    CHECKF(mkdir(s->data, 0700) == 0, "mkdir %s: %s", s->data, strerror(errno));
    snprintf(s->log, sizeof s->log, "%s/%s.log", s_dir, name);
    int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    CHECKF(fd >= 0, "open %s: %s", s->log, strerror(errno));
    s->port = harness_free_port();
    s->mport = harness_free_port();
    char port[16], mport[16], conf_name[64];
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(mport, sizeof mport, "%d", s->mport);
    const char *args[20] = {"--port", port, "--data-dir", s->data, "--log-level", "info",
                            "--management-port", mport, "--no-prometheus"};
    int n = 9;
    if (bind) {
        args[n++] = "--bind";
        args[n++] = bind;
    }
    if (conf_text) {
        snprintf(conf_name, sizeof conf_name, "%s.conf", name);
        args[n++] = "--config";
        args[n++] = harness_write_file(s_dir, conf_name, conf_text);
    }
    args[n] = NULL;
    s->pid = harness_warrend_spawn(args, fd);
    close(fd);
    int64_t deadline = harness_now_ms() + 10000;
    for (;;) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            char *log = read_log(s);
            harness_fail(__FILE__, __LINE__, "srv_start", "%s: warrend exited (status %d) before "
                         "listening on %d; its log:\n%s", name, status, s->port, log);
        }
        int c = tcp_from(NULL, "127.0.0.1", s->port);
        if (c >= 0) {
            close(c);
            break;
        }
        CHECKF(harness_now_ms() < deadline, "%s: warrend did not listen on %d within 10 s", name,
               s->port);
        usleep(10000);
    }
    harness_log("%s: warrend pid %d on port %d (%s)", name, (int)s->pid, s->port,
                bind ? bind : "every address");
}

/* SIGTERM; it must exit cleanly within 5 s. */
static void srv_stop(srv_t *s)
{
    CHECK(s->pid > 0);
    CHECK(kill(s->pid, SIGTERM) == 0);
    int status = 0;
    int64_t deadline = harness_now_ms() + 5000;
    while (waitpid(s->pid, &status, WNOHANG) != s->pid) {
        CHECKF(harness_now_ms() < deadline, "warrend %d ignored SIGTERM for 5 s", (int)s->pid);
        usleep(5000);
    }
    CHECKF((WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
               (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM),
           "warrend %d exited badly (status %d)", (int)s->pid, status);
    s->pid = 0;
}

/* ---- raw logins ------------------------------------------------------------------------------ */

/* Log in as user/pass over fd (PLAIN, announcing authentication_failure_close) and open vhost
 * "/". 0 when open-ok came (the connection is open); 1 when a connection.close came instead,
 * into *ret (close-ok is not sent yet). Anything else fails the test. */
static int raw_try_login(int fd, const char *user, const char *pass, raw_close_t *ret)
{
    CHECK_EQ(raw_start(fd), 0);
    char resp[256];
    int len = snprintf(resp, sizeof resp, "%c%s%c%s", 0, user, 0, pass);
    CHECK_EQ(raw_send_start_ok(fd, "PLAIN", resp, (size_t)len, true), 0);
    raw_frame_t f;
    int rc = raw_read_method(fd, &f, 10000);
    CHECKF(rc == 0, "login %s: no answer to start-ok (%s)", user, strerror(-rc));
    if (f.class_id == 10 && f.method_id == 50) {
        rbuf_t r = {.p = f.payload, .len = f.size, .off = 4};
        memset(ret, 0, sizeof *ret);
        ret->reply_code = rb_u16(&r);
        rb_shortstr(&r, ret->reply_text, sizeof ret->reply_text);
        ret->class_id = rb_u16(&r);
        ret->method_id = rb_u16(&r);
        CHECK(!r.err);
        raw_frame_free(&f);
        return 1;
    }
    CHECKF(f.class_id == 10 && f.method_id == 30, "login %s: got %u.%u, want tune or close", user,
           f.class_id, f.method_id);
    rbuf_t r = {.p = f.payload, .len = f.size, .off = 4};
    uint16_t channel_max = rb_u16(&r);
    uint32_t frame_max = rb_u32(&r);
    raw_frame_free(&f);
    CHECK_EQ(raw_send_tune_ok(fd, channel_max, frame_max, 0), 0);
    rc = raw_open_vhost(fd, "/");
    CHECKF(rc == 0, "login %s: no open-ok for vhost / (%s)", user, strerror(-rc));
    return 0;
}

/* A TCP connection from src (NULL: any) to dst on s's port; the test fails without one. */
static int connect_from(const srv_t *s, const char *src, const char *dst)
{
    int fd = tcp_from(src, dst, s->port);
    CHECKF(fd >= 0, "connect from %s to %s:%d: %s", src ? src : "any", dst, s->port,
           strerror(-fd));
    return fd;
}

/* user/pass from src to the server must be refused with RabbitMQ's 403 (the socket closes
 * after our close-ok). */
static void expect_refused(const srv_t *s, const char *src, const char *dst, const char *user,
                           const char *pass)
{
    int fd = connect_from(s, src, dst);
    raw_close_t c;
    CHECKF(raw_try_login(fd, user, pass, &c) == 1, "%s/%s from %s logged in; want 403", user,
           pass, src ? src : "any");
    CHECKF(c.reply_code == 403 && strcmp(c.reply_text, HARNESS_REFUSED_PLAIN) == 0 &&
               c.class_id == 0 && c.method_id == 0,
           "%s/%s from %s: close %u \"%s\" (%u.%u), want 403 \"" HARNESS_REFUSED_PLAIN
           "\" (0.0)",
           user, pass, src ? src : "any", c.reply_code, c.reply_text, c.class_id, c.method_id);
    raw_finish_close(fd);
    close(fd);
}

/* user/pass from src must log in and open "/"; a channel opens too. */
static void expect_login(const srv_t *s, const char *src, const char *dst, const char *user,
                         const char *pass)
{
    int fd = connect_from(s, src, dst);
    raw_close_t c;
    CHECKF(raw_try_login(fd, user, pass, &c) == 0, "%s/%s from %s refused: %u %s", user, pass,
           src ? src : "any", c.reply_code, c.reply_text);
    raw_channel_open(fd, 1);
    close(fd);
}

/* ---- (c) connection.update-secret ------------------------------------------------------------ */

static void send_update_secret(int fd, const char *secret, const char *reason)
{
    wbuf_t a = {0}, w = {0};
    wb_longstr(&a, secret, strlen(secret));
    wb_shortstr(&a, reason);
    wb_method(&w, 0, 10, 70, a.p, a.len);
    wb_free(&a);
    raw_send_wbuf(fd, &w);
}

static void test_update_secret(const srv_t *s)
{
    int fd = tcp_from(NULL, "127.0.0.1", s->port);
    CHECKF(fd >= 0, "connect: %s", strerror(-fd));
    raw_close_t c;
    CHECK_EQ(raw_try_login(fd, "bob", "builder", &c), 0);
    raw_channel_open(fd, 1);

    send_update_secret(fd, "builder", "token refresh");
    raw_frame_t f;
    CHECK_EQ(raw_read_method(fd, &f, 5000), 0);
    CHECKF(f.channel == 0 && f.class_id == 10 && f.method_id == 71,
           "update-secret (right password): got %u.%u on channel %u, want update-secret-ok 10.71",
           f.class_id, f.method_id, f.channel);
    raw_frame_free(&f);
    /* The connection goes on: a declare on the open channel, and a new channel. */
    wbuf_t w = {0};
    wb_queue_declare(&w, 1, "", 4 | 8);
    raw_send_wbuf(fd, &w);
    CHECK_EQ(raw_read_method(fd, &f, 5000), 0);
    CHECKF(f.channel == 1 && f.class_id == 50 && f.method_id == 11,
           "after update-secret-ok: got %u.%u on channel %u, want queue.declare-ok", f.class_id,
           f.method_id, f.channel);
    raw_frame_free(&f);
    raw_channel_open(fd, 2);
    harness_log("(c) update-secret with the password: update-secret-ok, the connection goes on");

    send_update_secret(fd, "not-the-password", "token refresh");
    int rc = raw_expect_close(fd, false, &c, 5000);
    CHECKF(rc == 0, "update-secret (wrong): no connection.close (%s)", strerror(-rc));
    harness_log("(c) update-secret with another secret: %u %s (%u.%u)", c.reply_code,
                c.reply_text, c.class_id, c.method_id);
    CHECK_EQ(c.reply_code, 530);
    CHECK_STREQ(c.reply_text, SECRET_REFUSED);
    CHECK_EQ(c.class_id, 10);
    CHECK_EQ(c.method_id, 70);
    raw_finish_close(fd);
    close(fd);
    const char *const logged[] = {"user 'bob'", "update-secret refused", NULL};
    CHECKF(log_count(s, logged) == 1, "the log does not name bob's refused update-secret once");
    /* Nothing changed for the user: the password still logs in. */
    expect_login(s, NULL, "127.0.0.1", "bob", "builder");
}

/* ---- (b) the throttle ------------------------------------------------------------------------ */

static const srv_t *s_flood_srv;    /* borrowed: the server of test_throttle(), outlives the threads */
static int64_t s_answer_ms[FLOOD_TOTAL]; /* when each refusal arrived, in arrival order */
static atomic_int s_answers;

static void *flood_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < FLOOD_EACH; i++) {
        int fd = tcp_from("127.0.0.2", "127.0.0.1", s_flood_srv->port);
        CHECKF(fd >= 0, "connect from 127.0.0.2: %s", strerror(-fd));
        raw_close_t c;
        CHECKF(raw_try_login(fd, "bob", "wrong", &c) == 1, "bob/wrong logged in");
        int k = atomic_fetch_add(&s_answers, 1);
        s_answer_ms[k] = harness_now_ms();
        CHECKF(c.reply_code == 403 && strcmp(c.reply_text, HARNESS_REFUSED_PLAIN) == 0,
               "flood: close %u \"%s\", want 403", c.reply_code, c.reply_text);
        raw_finish_close(fd);
        close(fd);
    }
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void test_throttle(const srv_t *s)
{
    s_flood_srv = s;
    pthread_t th[FLOOD_CONNS];
    int64_t t0 = harness_now_ms();
    for (int i = 0; i < FLOOD_CONNS; i++)
        CHECK(pthread_create(&th[i], NULL, flood_thread, NULL) == 0);

    /* Meanwhile another address is answered at once: the throttle is per address. */
    while (atomic_load(&s_answers) < FLOOD_TOTAL / 4)
        usleep(5000);
    int64_t t1 = harness_now_ms();
    expect_login(s, "127.0.0.1", "127.0.0.1", "bob", "builder");
    expect_refused(s, "127.0.0.1", "127.0.0.1", "bob", "wrong");
    int64_t other_ms = harness_now_ms() - t1;
    int during = atomic_load(&s_answers);

    for (int i = 0; i < FLOOD_CONNS; i++)
        CHECK(pthread_join(th[i], NULL) == 0);
    int64_t flood_ms = harness_now_ms() - t0;
    harness_log("(b) %d refusals from 127.0.0.2 over %d connections took %lld ms; meanwhile "
                "127.0.0.1 logged in and was refused in %lld ms (after %d refusals)",
                FLOOD_TOTAL, FLOOD_CONNS, (long long)flood_ms, (long long)other_ms, during);
    CHECKF(flood_ms >= 2500, "%d failed logins from one address took %lld ms: more than 200 a "
           "second were answered", FLOOD_TOTAL, (long long)flood_ms);
    CHECKF(other_ms < 1000, "127.0.0.1 waited %lld ms behind 127.0.0.2's backlog",
           (long long)other_ms);
    CHECKF(during < FLOOD_TOTAL, "the flood was over before 127.0.0.1 was tried");

    /* No second holds more than ~200 answers (with slack for timer and thread wake-ups). */
    qsort(s_answer_ms, FLOOD_TOTAL, sizeof s_answer_ms[0], cmp_i64);
    int64_t tightest = INT64_MAX;
    for (int i = 0; i + 200 < FLOOD_TOTAL; i++)
        if (s_answer_ms[i + 200] - s_answer_ms[i] < tightest)
            tightest = s_answer_ms[i + 200] - s_answer_ms[i];
    harness_log("(b) the tightest 201 consecutive refusals spanned %lld ms", (long long)tightest);
    CHECKF(tightest >= 800, "201 refusals within %lld ms: faster than 200 a second",
           (long long)tightest);

    /* The right password from the same address works once the backlog is answered. */
    int64_t t2 = harness_now_ms();
    expect_login(s, "127.0.0.2", "127.0.0.1", "bob", "builder");
    int64_t ok_ms = harness_now_ms() - t2;
    harness_log("(b) bob/builder from 127.0.0.2 logged in %lld ms after the flood", (long long)ok_ms);
    CHECKF(ok_ms < 15000, "the right password took %lld ms", (long long)ok_ms);

    const char *const flood_lines[] = {"127.0.0.2:", "user 'bob' login refused (PLAIN): invalid "
                                       "credentials", NULL};
    int logged = log_count(s, flood_lines);
    CHECKF(logged == FLOOD_TOTAL, "%d log lines name bob, 127.0.0.2 and the reason, want %d",
           logged, FLOOD_TOTAL);
    const char *const unknown[] = {"user 'nobody' login refused (PLAIN): user does not exist",
                                   NULL};
    expect_refused(s, "127.0.0.1", "127.0.0.1", "nobody", "builder");
    CHECKF(log_count(s, unknown) == 1, "the log does not say that user 'nobody' does not exist");
    harness_log("(b) each refusal is logged with the user, the address and the reason");
}

/* ---- (a) guest only from loopback ------------------------------------------------------------ */

static void test_loopback(void)
{
    /* Default settings (loopback_users.guest = true), listening on every address. */
    static const char *const binds[] = {NULL, "0.0.0.0"};
    for (int i = 0; i < 2; i++) {
        srv_t s;
        srv_start(&s, i ? "loopback-v4" : "loopback-any", NULL, binds[i]);
        expect_refused(&s, REMOTE_ADDR, REMOTE_ADDR, "guest", "guest");
        const char *const why[] = {REMOTE_ADDR ":", "user 'guest' login refused (PLAIN):",
                                   "localhost", NULL};
        CHECKF(log_count(&s, why) == 1, "the log does not say guest may only log in via "
               "localhost (from " REMOTE_ADDR ")");
        expect_login(&s, "127.0.0.1", "127.0.0.1", "guest", "guest");
        /* The management API's basic auth has the same rule. */
        CHECK_EQ(api_whoami_from(&s, REMOTE_ADDR, REMOTE_ADDR, "guest", "guest"), 401);
        CHECK_EQ(api_whoami_from(&s, "127.0.0.1", "127.0.0.1", "guest", "guest"), 200);
        /* A wrong password from there is still just a wrong password. */
        expect_refused(&s, REMOTE_ADDR, REMOTE_ADDR, "guest", "nope");
        const char *const bad[] = {REMOTE_ADDR ":", "user 'guest' login refused (PLAIN): invalid "
                                   "credentials", NULL};
        CHECKF(log_count(&s, bad) == 1, "the log does not say the password was wrong");
        srv_stop(&s);
        harness_log("(a) %s: guest/guest from " REMOTE_ADDR " gets 403, from 127.0.0.1 logs in",
                    i ? "bound to 0.0.0.0" : "every address (dual-stack)");
    }

    srv_t s;
    srv_start(&s, "loopback-alice",
              "default_user = alice\ndefault_pass = wonderland\nloopback_users.guest = true\n",
              NULL);
    expect_login(&s, REMOTE_ADDR, REMOTE_ADDR, "alice", "wonderland");
    expect_login(&s, "127.0.0.1", "127.0.0.1", "alice", "wonderland");
    srv_stop(&s);
    harness_log("(a) another user logs in from " REMOTE_ADDR);

    static const char *const lifted[] = {"loopback_users.guest = false\n", "loopback_users = none\n"};
    for (int i = 0; i < 2; i++) {
        srv_start(&s, i ? "loopback-none" : "loopback-false", lifted[i], NULL);
        expect_login(&s, REMOTE_ADDR, REMOTE_ADDR, "guest", "guest");
        expect_login(&s, "127.0.0.1", "127.0.0.1", "guest", "guest");
        expect_refused(&s, REMOTE_ADDR, REMOTE_ADDR, "guest", "nope");
        CHECK_EQ(api_whoami_from(&s, REMOTE_ADDR, REMOTE_ADDR, "guest", "guest"), 200);
        srv_stop(&s);
        harness_log("(a) with %.*s guest logs in from " REMOTE_ADDR, (int)strlen(lifted[i]) - 1,
                    lifted[i]);
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = {.sa_handler = on_fatal_signal};
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    alarm(55);

    const char *host = getenv("WARREN_TEST_HOST");
    if (host && *host) {
        fprintf(stderr, "SKIP: config files, warrend's log and its listeners are Warren's; the "
                        "broker under test is external\n");
        return 77;
    }
    const char *exe = getenv("WARREND");
    if (!exe || !*exe || access(exe, X_OK) != 0) {
        fprintf(stderr, "SKIP: no broker to test: WARREND is %s\n", exe && *exe ? exe : "unset");
        return 77;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(s_dir, sizeof s_dir, "%s/warren-login-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECKF(mkdtemp(s_dir) != NULL, "mkdtemp: %s", strerror(errno));
    atexit(cleanup);

    CHECKF(is_local_addr("127.0.0.2"), "127.0.0.2 is not a local address (lo is not 127/8)");
    srv_t s;
    srv_start(&s, "bob", "default_user = bob\ndefault_pass = builder\n", "127.0.0.1");
    test_update_secret(&s);
    test_throttle(&s);
    srv_stop(&s);

    const char *why = make_interface();
    if (why) {
        fprintf(stderr, "SKIP: (a) needs a second, non-loopback local address: %s; (b) and (c) "
                        "passed\n", why);
        return 77;
    }
    test_loopback();
    cleanup();
    harness_log("PASS");
    return 0;
}
