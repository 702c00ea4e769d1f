/* harness.c — broker process management, rabbitmq-c helpers and a raw AMQP codec for tests.
 * Owns the forked warrend (one per test process) and its temp data dir. Does not own any
 * rabbitmq-c connection it hands out (the test destroys it).
 * Invariant: s_current points at the started broker until harness_broker_stop(), so that
 * harness_fail() and the watchdog can always kill it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, nftw, prctl */
#endif
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

static harness_broker_t *s_current; /* borrowed: the test's broker, lives for the whole test */
static unsigned s_watchdog_seconds;

/* ---- assertions and logging -------------------------------------------------------------- */

static void kill_current_now(void)
{
    if (s_current && s_current->pid > 0) {
        kill(s_current->pid, SIGKILL);
        waitpid(s_current->pid, NULL, 0);
        s_current->pid = 0;
    }
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_data_dir(harness_broker_t *b)
{
    if (b->data_dir[0]) {
        nftw(b->data_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        b->data_dir[0] = '\0';
    }
}

void harness_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    fflush(stdout);
    fprintf(stderr, "%s:%d: CHECK failed: %s", file, line, expr);
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs(" (", stderr);
        vfprintf(stderr, fmt, ap);
        fputs(")", stderr);
        va_end(ap);
    }
    fputc('\n', stderr);
    if (s_current && s_current->pid > 0 && !harness_broker_alive(s_current))
        fprintf(stderr, "note: warrend (pid %d) is no longer running\n", (int)s_current->pid);
    kill_current_now();
    if (s_current)
        remove_data_dir(s_current);
    exit(1);
}

void harness_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

int64_t harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "watchdog: test did not finish in time, killing it\n";
    ssize_t rc = write(2, msg, sizeof msg - 1);
    (void)rc;
    if (s_current && s_current->pid > 0)
        kill(s_current->pid, SIGKILL);
    _exit(2);
}

void harness_watchdog(unsigned seconds)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    s_watchdog_seconds = seconds;
    alarm(seconds);
}

static const char *method_name(amqp_method_number_t id)
{
    const char *n = amqp_method_name(id);
    return n ? n : "?";
}

const char *harness_reply_str(amqp_rpc_reply_t r, char *buf, size_t n)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        snprintf(buf, n, "ok");
        break;
    case AMQP_RESPONSE_NONE:
        snprintf(buf, n, "no reply (missing RPC reply type)");
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(buf, n, "library error: %s", amqp_error_string2(r.library_error));
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            const amqp_connection_close_t *c = r.reply.decoded;
            snprintf(buf, n, "server connection.close %u %.*s (class %u method %u)",
                     c->reply_code, (int)c->reply_text.len, (const char *)c->reply_text.bytes,
                     c->class_id, c->method_id);
        } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            const amqp_channel_close_t *c = r.reply.decoded;
            snprintf(buf, n, "server channel.close %u %.*s (class %u method %u)", c->reply_code,
                     (int)c->reply_text.len, (const char *)c->reply_text.bytes, c->class_id,
                     c->method_id);
        } else {
            snprintf(buf, n, "unexpected server method %s (0x%08x)", method_name(r.reply.id),
                     r.reply.id);
        }
        break;
    default:
        snprintf(buf, n, "reply_type %d", (int)r.reply_type);
    }
    return buf;
}

/* ---- broker process ------------------------------------------------------------------------ */

int harness_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECKF(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECKF(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "bind: %s", strerror(errno));
    socklen_t len = sizeof sa;
    CHECKF(getsockname(fd, (struct sockaddr *)&sa, &len) == 0, "getsockname: %s",
           strerror(errno));
    close(fd);
    return ntohs(sa.sin_port);
}

bool harness_external(const harness_broker_t *b)
{
    return b->pid == 0;
}

bool harness_broker_alive(const harness_broker_t *b)
{
    if (b->pid <= 0)
        return true;
    return waitpid(b->pid, NULL, WNOHANG) == 0;
}

static int try_tcp_connect(const char *host, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        close(fd);
        return -EINVAL;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* One attempt: 0 when warrend listens; -EADDRINUSE-ish (-EAGAIN) when it died early, so the
 * caller may retry on another port (someone may have taken ours between probe and bind). */
static int spawn_once(harness_broker_t *b, const char *exe)
{
    b->port = harness_free_port();
    char port[16];
    snprintf(port, sizeof port, "%d", b->port);

    pid_t parent = getpid();
    pid_t pid = fork();
    CHECKF(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* Die with the test: a meson timeout kills the test, never leaves a broker behind. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        execl(exe, exe, "--port", port, "--bind", "127.0.0.1", "--data-dir", b->data_dir,
              "--log-level", "warn", (char *)NULL);
        fprintf(stderr, "harness: exec %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    b->pid = pid;

    int64_t deadline = harness_now_ms() + 10000;
    while (harness_now_ms() < deadline) {
        int status;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            b->pid = 0;
            if (WIFEXITED(status))
                fprintf(stderr, "harness: warrend exited with status %d before listening\n",
                        WEXITSTATUS(status));
            else
                fprintf(stderr, "harness: warrend killed by signal %d before listening\n",
                        WTERMSIG(status));
            return -EAGAIN;
        }
        int fd = try_tcp_connect(b->host, b->port);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    b->pid = 0;
    return -ETIMEDOUT;
}

void harness_broker_start(harness_broker_t *b)
{
    memset(b, 0, sizeof *b);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    const char *host = getenv("WARREN_TEST_HOST");
    const char *port = getenv("WARREN_TEST_PORT");
    if (host && *host && port && *port) {
        snprintf(b->host, sizeof b->host, "%s", host);
        b->port = atoi(port);
        harness_log("using external broker %s:%d", b->host, b->port);
        return;
    }

    const char *exe = getenv("WARREND");
    if (!exe || !*exe || access(exe, X_OK) != 0) {
        fprintf(stderr, "SKIP: no broker to test: WARREND is %s%s and WARREN_TEST_HOST/PORT "
                        "are not set\n",
                exe && *exe ? exe : "unset", exe && *exe ? " (not executable)" : "");
        exit(77);
    }
    snprintf(b->host, sizeof b->host, "127.0.0.1");

    const char *tmp = getenv("TMPDIR");
    snprintf(b->data_dir, sizeof b->data_dir, "%s/warren-it-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECKF(mkdtemp(b->data_dir) != NULL, "mkdtemp %s: %s", b->data_dir, strerror(errno));
    s_current = b;

    int rc = -EAGAIN;
    for (int attempt = 0; attempt < 3 && rc == -EAGAIN; attempt++)
        rc = spawn_once(b, exe);
    CHECKF(rc == 0, "warrend did not start listening (%s)",
           rc == -ETIMEDOUT ? "timed out after 10 s" : "it exited, see stderr");
    harness_log("started %s on 127.0.0.1:%d (pid %d, data %s)", exe, b->port, (int)b->pid,
                b->data_dir);
}

int harness_broker_stop(harness_broker_t *b)
{
    int ret = 0;
    if (b->pid > 0) {
        int status;
        pid_t w = waitpid(b->pid, &status, WNOHANG);
        if (w == b->pid) {
            fprintf(stderr, "harness: warrend died during the test (%s %d)\n",
                    WIFEXITED(status) ? "exit status" : "signal",
                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            ret = -1;
        } else {
            kill(b->pid, SIGTERM);
            int64_t deadline = harness_now_ms() + 5000;
            for (;;) {
                w = waitpid(b->pid, &status, WNOHANG);
                if (w == b->pid)
                    break;
                if (harness_now_ms() > deadline) {
                    fprintf(stderr, "harness: warrend ignored SIGTERM for 5 s, SIGKILL\n");
                    kill(b->pid, SIGKILL);
                    waitpid(b->pid, &status, 0);
                    ret = -1;
                    break;
                }
                usleep(10000);
            }
            if (ret == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0) &&
                !(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM)) {
                fprintf(stderr, "harness: warrend exited badly on SIGTERM (%s %d)\n",
                        WIFEXITED(status) ? "exit status" : "signal",
                        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
                ret = -1;
            }
        }
        b->pid = 0;
    }
    remove_data_dir(b);
    if (s_current == b)
        s_current = NULL;
    return ret;
}

const char *harness_write_file(const char *dir, const char *name, const char *text)
{
    static char paths[16][4200];
    static int next;
    char *path = paths[next++ % 16];
    snprintf(path, sizeof paths[0], "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECKF(f, "fopen %s: %s", path, strerror(errno));
    fputs(text, f);
    CHECK(fclose(f) == 0);
    return path;
}

/* ---- rabbitmq-c helpers ------------------------------------------------------------------- */

/* A new rabbitmq-c connection with its TCP socket opened to the broker (10 s at most), in
 * *ret_conn even when the connect fails. 0 or the negative amqp_status_enum of the connect. */
static int tcp_conn_open(const harness_broker_t *b, amqp_connection_state_t *ret_conn)
{
    amqp_connection_state_t conn = amqp_new_connection();
    CHECK(conn != NULL);
    amqp_socket_t *sock = amqp_tcp_socket_new(conn);
    CHECK(sock != NULL);
    struct timeval tv = {.tv_sec = 10};
    *ret_conn = conn;
    return amqp_socket_open_noblock(sock, b->host, b->port, &tv);
}

static amqp_rpc_reply_t try_login_on(const harness_broker_t *b, const char *user,
                                     const char *pass, const char *vhost, int channel_max,
                                     int frame_max, int heartbeat,
                                     amqp_connection_state_t *ret_conn)
{
    int st = tcp_conn_open(b, ret_conn);
    if (st < 0) {
        amqp_rpc_reply_t r;
        memset(&r, 0, sizeof r);
        r.reply_type = AMQP_RESPONSE_LIBRARY_EXCEPTION;
        r.library_error = st;
        return r;
    }
    return amqp_login(*ret_conn, vhost, channel_max, frame_max, heartbeat,
                      AMQP_SASL_METHOD_PLAIN, user, pass);
}

amqp_rpc_reply_t harness_try_login(const harness_broker_t *b, const char *user, const char *pass,
                                   int channel_max, int frame_max, int heartbeat,
                                   amqp_connection_state_t *ret_conn)
{
    return try_login_on(b, user, pass, "/", channel_max, frame_max, heartbeat, ret_conn);
}

amqp_rpc_reply_t harness_try_login_vhost(const harness_broker_t *b, const char *user,
                                         const char *pass, const char *vhost,
                                         amqp_connection_state_t *ret_conn)
{
    return try_login_on(b, user, pass, vhost, 0, AMQP_DEFAULT_FRAME_SIZE, 0, ret_conn);
}

amqp_connection_state_t harness_open_as(const harness_broker_t *b, const char *user,
                                        const char *pass, const char *vhost)
{
    amqp_connection_state_t conn;
    amqp_rpc_reply_t r = harness_try_login_vhost(b, user, pass, vhost, &conn);
    char buf[512];
    CHECKF(r.reply_type == AMQP_RESPONSE_NORMAL, "login %s/%s on vhost '%s': %s", user, pass,
           vhost, harness_reply_str(r, buf, sizeof buf));
    harness_channel_open(conn, 1);
    return conn;
}

amqp_connection_state_t harness_connect(const harness_broker_t *b, int channel_max, int frame_max,
                                        int heartbeat)
{
    amqp_connection_state_t conn;
    amqp_rpc_reply_t r =
        harness_try_login(b, "guest", "guest", channel_max, frame_max, heartbeat, &conn);
    CHECK_REPLY(r);
    return conn;
}

void harness_disconnect(amqp_connection_state_t conn)
{
    CHECK_REPLY(amqp_connection_close(conn, AMQP_REPLY_SUCCESS));
    CHECK_AMQP(amqp_destroy_connection(conn));
}

void harness_channel_open(amqp_connection_state_t conn, amqp_channel_t ch)
{
    amqp_channel_open(conn, ch);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
}

void harness_check_alive(const harness_broker_t *b)
{
    CHECKF(harness_broker_alive(b), "warrend is no longer running");
    amqp_connection_state_t conn = harness_connect(b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    harness_channel_open(conn, 1);
    amqp_bytes_t q = harness_queue_declare_anon(conn, 1);
    harness_publish_get(conn, 1, q, amqp_cstring_bytes("still alive"));
    amqp_bytes_free(q);
    CHECK_REPLY(amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS));
    harness_disconnect(conn);
}

void harness_expect_channel_close(amqp_connection_state_t conn, amqp_channel_t ch,
                                  amqp_rpc_reply_t r, uint16_t code, const char *text,
                                  uint16_t class_id, uint16_t method_id)
{
    char buf[512];
    CHECKF(r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD,
           "want channel.close %u on channel %u, got %s", code, ch,
           harness_reply_str(r, buf, sizeof buf));
    const amqp_channel_close_t *c = r.reply.decoded;
    harness_log("channel %u closed: %u %.*s (%u.%u)", ch, c->reply_code, (int)c->reply_text.len,
                (const char *)c->reply_text.bytes, c->class_id, c->method_id);
    CHECKF(c->reply_code == code, "reply code %u, want %u", c->reply_code, code);
    CHECKF(c->reply_text.len == strlen(text) &&
               memcmp(c->reply_text.bytes, text, c->reply_text.len) == 0,
           "text \"%.*s\", want \"%s\"", (int)c->reply_text.len, (const char *)c->reply_text.bytes,
           text);
    CHECKF(c->class_id == class_id && c->method_id == method_id,
           "class/method %u.%u, want %u.%u", c->class_id, c->method_id, class_id, method_id);
    amqp_channel_close_ok_t ok = {0};
    CHECK_AMQP(amqp_send_method(conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok));
}

void harness_expect_channel_reopen(amqp_connection_state_t conn, amqp_channel_t ch,
                                   amqp_rpc_reply_t r, uint16_t code, uint16_t class_id,
                                   uint16_t method_id, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    harness_expect_channel_close(conn, ch, r, code, text, class_id, method_id);
    harness_channel_open(conn, ch);
}

const amqp_field_value_t *harness_table_get(const amqp_table_t *t, const char *key)
{
    size_t kl = strlen(key);
    for (int i = 0; i < t->num_entries; i++) {
        const amqp_table_entry_t *e = &t->entries[i];
        if (e->key.len == kl && memcmp(e->key.bytes, key, kl) == 0)
            return &e->value;
    }
    return NULL;
}

bool harness_bytes_is(amqp_bytes_t b, const char *s)
{
    return b.len == strlen(s) && (b.len == 0 || memcmp(b.bytes, s, b.len) == 0);
}

bool harness_bytes_eq(amqp_bytes_t a, amqp_bytes_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.bytes, b.bytes, a.len) == 0);
}

static char s_name_prefix[64];

const char *harness_name_init(const char *tag)
{
    snprintf(s_name_prefix, sizeof s_name_prefix, "%s-%d", tag, (int)getpid());
    return s_name_prefix;
}

const char *harness_name(const char *fmt, ...)
{
    static char bufs[32][128];
    static unsigned next;
    CHECKF(s_name_prefix[0], "harness_name() before harness_name_init()");
    char *b = bufs[next++ % 32];
    int n = snprintf(b, sizeof bufs[0], "%s-", s_name_prefix);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b + n, sizeof bufs[0] - (size_t)n, fmt, ap);
    va_end(ap);
    return b;
}

/* ---- raw sockets ---------------------------------------------------------------------------- */

int raw_connect(const harness_broker_t *b)
{
    int fd = try_tcp_connect(b->host, b->port);
    CHECKF(fd >= 0, "connect %s:%d: %s", b->host, b->port, strerror(-fd));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int raw_send(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t raw_recv(int fd, void *buf, size_t len, int timeout_ms)
{
    uint8_t *p = buf;
    size_t got = 0;
    int64_t deadline = harness_now_ms() + timeout_ms;
    while (got < len) {
        int64_t left = deadline - harness_now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, (int)left);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (pr == 0)
            return -ETIMEDOUT;
        ssize_t n = recv(fd, p + got, len - got, 0);
        if (n == 0)
            return (ssize_t)got;
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            if (errno == ECONNRESET)
                return (ssize_t)got;
            return -errno;
        }
        got += (size_t)n;
    }
    return (ssize_t)got;
}

int raw_wait_closed(int fd, int timeout_ms, size_t *ret_discarded)
{
    size_t total = 0;
    uint8_t buf[4096];
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - harness_now_ms();
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            if (ret_discarded)
                *ret_discarded = total;
            return 0;
        }
        if (n > 0)
            total += (size_t)n;
    }
    if (ret_discarded)
        *ret_discarded = total;
    return -ETIMEDOUT;
}

void raw_frame_free(raw_frame_t *f)
{
    free(f->payload);
    f->payload = NULL;
}

int raw_read_frame(int fd, raw_frame_t *f, int timeout_ms)
{
    memset(f, 0, sizeof *f);
    uint8_t hdr[7];
    ssize_t n = raw_recv(fd, hdr, 7, timeout_ms);
    if (n < 0)
        return (int)n;
    if (n < 7)
        return -EPIPE;
    f->type = hdr[0];
    f->channel = (uint16_t)(hdr[1] << 8 | hdr[2]);
    f->size = (uint32_t)hdr[3] << 24 | (uint32_t)hdr[4] << 16 | (uint32_t)hdr[5] << 8 | hdr[6];
    if (f->size > 16u << 20)
        return -E2BIG;
    f->payload = malloc(f->size + 1u);
    CHECK(f->payload != NULL);
    n = raw_recv(fd, f->payload, f->size + 1u, timeout_ms);
    if (n < 0) {
        raw_frame_free(f);
        return (int)n;
    }
    if ((size_t)n < f->size + 1u) {
        raw_frame_free(f);
        return -EPIPE;
    }
    if (f->payload[f->size] != 0xCE) {
        raw_frame_free(f);
        return -EPROTO;
    }
    if (f->type == RAW_FRAME_METHOD && f->size >= 4) {
        f->class_id = (uint16_t)(f->payload[0] << 8 | f->payload[1]);
        f->method_id = (uint16_t)(f->payload[2] << 8 | f->payload[3]);
    }
    return 0;
}

int raw_read_method(int fd, raw_frame_t *f, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - harness_now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        int rc = raw_read_frame(fd, f, (int)left);
        if (rc < 0)
            return rc;
        if (f->type != RAW_FRAME_HEARTBEAT)
            return 0;
        raw_frame_free(f);
    }
}

void wb_free(wbuf_t *w)
{
    free(w->p);
    memset(w, 0, sizeof *w);
}

void wb_bytes(wbuf_t *w, const void *src, size_t n)
{
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n)
            cap *= 2;
        w->p = realloc(w->p, cap);
        CHECK(w->p != NULL);
        w->cap = cap;
    }
    if (n)
        memcpy(w->p + w->len, src, n);
    w->len += n;
}

void wb_u8(wbuf_t *w, uint8_t v)
{
    wb_bytes(w, &v, 1);
}

void wb_u16(wbuf_t *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    wb_bytes(w, b, 2);
}

void wb_u32(wbuf_t *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    wb_bytes(w, b, 4);
}

void wb_u64(wbuf_t *w, uint64_t v)
{
    wb_u32(w, (uint32_t)(v >> 32));
    wb_u32(w, (uint32_t)v);
}

void wb_shortstr(wbuf_t *w, const char *s)
{
    size_t n = strlen(s);
    CHECK(n < 256);
    wb_u8(w, (uint8_t)n);
    wb_bytes(w, s, n);
}

void wb_longstr(wbuf_t *w, const void *s, size_t n)
{
    wb_u32(w, (uint32_t)n);
    wb_bytes(w, s, n);
}

size_t wb_frame_begin(wbuf_t *w, uint8_t type, uint16_t channel)
{
    wb_u8(w, type);
    wb_u16(w, channel);
    size_t mark = w->len;
    wb_u32(w, 0);
    return mark;
}

void wb_frame_end(wbuf_t *w, size_t mark)
{
    uint32_t size = (uint32_t)(w->len - mark - 4);
    w->p[mark] = (uint8_t)(size >> 24);
    w->p[mark + 1] = (uint8_t)(size >> 16);
    w->p[mark + 2] = (uint8_t)(size >> 8);
    w->p[mark + 3] = (uint8_t)size;
    wb_u8(w, 0xCE);
}

void wb_method(wbuf_t *w, uint16_t channel, uint16_t class_id, uint16_t method_id,
               const void *args, size_t args_len)
{
    size_t m = wb_frame_begin(w, RAW_FRAME_METHOD, channel);
    wb_u16(w, class_id);
    wb_u16(w, method_id);
    wb_bytes(w, args, args_len);
    wb_frame_end(w, m);
}

static bool rb_need(rbuf_t *r, size_t n)
{
    if (r->err || r->len - r->off < n) {
        r->err = true;
        return false;
    }
    return true;
}

uint8_t rb_u8(rbuf_t *r)
{
    if (!rb_need(r, 1))
        return 0;
    return r->p[r->off++];
}

uint16_t rb_u16(rbuf_t *r)
{
    if (!rb_need(r, 2))
        return 0;
    uint16_t v = (uint16_t)(r->p[r->off] << 8 | r->p[r->off + 1]);
    r->off += 2;
    return v;
}

uint32_t rb_u32(rbuf_t *r)
{
    if (!rb_need(r, 4))
        return 0;
    const uint8_t *p = r->p + r->off;
    r->off += 4;
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t rb_u64(rbuf_t *r)
{
    uint64_t hi = rb_u32(r);
    return hi << 32 | rb_u32(r);
}

void rb_shortstr(rbuf_t *r, char *out, size_t cap)
{
    uint8_t n = rb_u8(r);
    if (!rb_need(r, n)) {
        if (cap)
            out[0] = '\0';
        return;
    }
    size_t c = n < cap - 1 ? n : cap - 1;
    memcpy(out, r->p + r->off, c);
    out[c] = '\0';
    r->off += n;
}

const uint8_t *rb_longstr(rbuf_t *r, uint32_t *ret_len)
{
    uint32_t n = rb_u32(r);
    if (!rb_need(r, n)) {
        *ret_len = 0;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    *ret_len = n;
    return p;
}

static int send_wbuf(int fd, wbuf_t *w)
{
    int rc = raw_send(fd, w->p, w->len);
    wb_free(w);
    return rc;
}

static bool contains_word(const uint8_t *s, uint32_t len, const char *word)
{
    size_t wl = strlen(word);
    for (uint32_t i = 0; i + wl <= len; i++) {
        if (memcmp(s + i, word, wl) == 0 && (i == 0 || s[i - 1] == ' ') &&
            (i + wl == len || s[i + wl] == ' '))
            return true;
    }
    return false;
}

int raw_start(int fd)
{
    int rc = raw_send(fd, "AMQP\x00\x00\x09\x01", 8);
    if (rc < 0)
        return rc;
    raw_frame_t f;
    rc = raw_read_method(fd, &f, 10000);
    if (rc < 0)
        return rc;
    rbuf_t r = {.p = f.payload, .len = f.size};
    rb_u32(&r);
    uint8_t major = rb_u8(&r), minor = rb_u8(&r);
    uint32_t n;
    rb_longstr(&r, &n); /* server-properties */
    const uint8_t *mech = rb_longstr(&r, &n);
    bool ok = f.channel == 0 && f.class_id == 10 && f.method_id == 10 && major == 0 &&
              minor == 9 && !r.err && contains_word(mech, n, "PLAIN") &&
              contains_word(mech, n, "AMQPLAIN");
    if (!ok)
        fprintf(stderr, "raw_start: unexpected connection.start (class %u method %u, %u-%u)\n",
                f.class_id, f.method_id, major, minor);
    raw_frame_free(&f);
    return ok ? 0 : -EPROTO;
}

int raw_send_start_ok(int fd, const char *mechanism, const void *response, size_t response_len,
                      bool auth_failure_close)
{
    wbuf_t props = {0}, args = {0}, frame = {0};
    wbuf_t caps = {0};
    if (auth_failure_close) {
        wb_shortstr(&caps, "authentication_failure_close");
        wb_u8(&caps, 't');
        wb_u8(&caps, 1);
    }
    wb_shortstr(&props, "product");
    wb_u8(&props, 'S');
    wb_longstr(&props, "warren-raw-test", 15);
    wb_shortstr(&props, "capabilities");
    wb_u8(&props, 'F');
    wb_longstr(&props, caps.p, caps.len);

    wb_longstr(&args, props.p, props.len); /* client-properties */
    wb_shortstr(&args, mechanism);
    wb_longstr(&args, response, response_len);
    wb_shortstr(&args, "en_US");
    wb_method(&frame, 0, 10, 11, args.p, args.len);
    wb_free(&caps);
    wb_free(&props);
    wb_free(&args);
    return send_wbuf(fd, &frame);
}

int raw_read_tune(int fd, raw_tune_t *ret, int timeout_ms)
{
    raw_frame_t f;
    int rc = raw_read_method(fd, &f, timeout_ms);
    if (rc < 0)
        return rc;
    rc = 0;
    if (f.channel != 0 || f.class_id != 10 || f.method_id != 30) {
        rc = -EPROTO;
    } else {
        rbuf_t r = {.p = f.payload, .len = f.size, .off = 4};
        ret->channel_max = rb_u16(&r);
        ret->frame_max = rb_u32(&r);
        ret->heartbeat = rb_u16(&r);
        if (r.err)
            rc = -EPROTO;
    }
    raw_frame_free(&f);
    return rc;
}

int raw_send_tune_ok(int fd, uint16_t channel_max, uint32_t frame_max, uint16_t heartbeat)
{
    wbuf_t args = {0}, frame = {0};
    wb_u16(&args, channel_max);
    wb_u32(&args, frame_max);
    wb_u16(&args, heartbeat);
    wb_method(&frame, 0, 10, 31, args.p, args.len);
    wb_free(&args);
    return send_wbuf(fd, &frame);
}

int raw_open_vhost(int fd, const char *vhost)
{
    wbuf_t args = {0}, frame = {0};
    wb_shortstr(&args, vhost);
    wb_shortstr(&args, ""); /* reserved-1 (capabilities) */
    wb_u8(&args, 0);        /* reserved-2 (insist) */
    wb_method(&frame, 0, 10, 40, args.p, args.len);
    wb_free(&args);
    int rc = send_wbuf(fd, &frame);
    if (rc < 0)
        return rc;
    raw_frame_t f;
    rc = raw_read_method(fd, &f, 10000);
    if (rc < 0)
        return rc;
    rc = (f.channel == 0 && f.class_id == 10 && f.method_id == 41) ? 0 : -EPROTO;
    raw_frame_free(&f);
    return rc;
}

void raw_handshake(int fd, uint32_t frame_max, uint16_t heartbeat, raw_tune_t *ret_tune)
{
    raw_tune_t tune;
    raw_login(fd, &tune);
    CHECK(raw_send_tune_ok(fd, tune.channel_max, frame_max, heartbeat) == 0);
    int rc = raw_open_vhost(fd, "/");
    CHECKF(rc == 0, "raw_open_vhost: %s", strerror(-rc));
    if (ret_tune)
        *ret_tune = tune;
}

void raw_channel_open(int fd, uint16_t ch)
{
    wbuf_t frame = {0};
    wb_channel_open(&frame, ch);
    CHECK(send_wbuf(fd, &frame) == 0);
    raw_frame_t f;
    int rc = raw_read_method(fd, &f, 10000);
    CHECKF(rc == 0, "channel.open-ok: %s", strerror(-rc));
    CHECKF(f.channel == ch && f.class_id == 20 && f.method_id == 11,
           "expected channel.open-ok on %u, got %u.%u on %u", ch, f.class_id, f.method_id,
           f.channel);
    raw_frame_free(&f);
}

int raw_expect_close(int fd, bool want_channel, raw_close_t *ret, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - harness_now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        raw_frame_t f;
        int rc = raw_read_method(fd, &f, (int)left);
        if (rc < 0)
            return rc;
        bool is_close = want_channel ? (f.class_id == 20 && f.method_id == 40)
                                     : (f.channel == 0 && f.class_id == 10 && f.method_id == 50);
        if (f.type == RAW_FRAME_METHOD && is_close) {
            rbuf_t r = {.p = f.payload, .len = f.size, .off = 4};
            memset(ret, 0, sizeof *ret);
            ret->channel = f.channel;
            ret->reply_code = rb_u16(&r);
            rb_shortstr(&r, ret->reply_text, sizeof ret->reply_text);
            ret->class_id = rb_u16(&r);
            ret->method_id = rb_u16(&r);
            bool bad = r.err;
            raw_frame_free(&f);
            return bad ? -EPROTO : 0;
        }
        harness_log("raw_expect_close: skipping frame type %u channel %u (%u.%u)", f.type,
                    f.channel, f.class_id, f.method_id);
        raw_frame_free(&f);
    }
}

void raw_finish_close(int fd)
{
    wbuf_t frame = {0};
    wb_method(&frame, 0, 10, 51, NULL, 0);
    /* The server may already have closed its end: a failed send is not an error here. */
    (void)send_wbuf(fd, &frame);
    int rc = raw_wait_closed(fd, 5000, NULL);
    CHECKF(rc == 0, "server did not close the socket within 5 s of close-ok");
}

/* ---- queue, consumer and connection-exception helpers (issue 3 tests) --------------------- */

void harness_expect_connection_close(amqp_connection_state_t conn, amqp_rpc_reply_t r,
                                     uint16_t code, const char *text, uint16_t class_id,
                                     uint16_t method_id)
{
    char buf[512];
    CHECKF(r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
               r.reply.id == AMQP_CONNECTION_CLOSE_METHOD,
           "want connection.close %u, got %s", code, harness_reply_str(r, buf, sizeof buf));
    const amqp_connection_close_t *c = r.reply.decoded;
    harness_log("connection closed: %u %.*s (%u.%u)", c->reply_code, (int)c->reply_text.len,
                (const char *)c->reply_text.bytes, c->class_id, c->method_id);
    CHECKF(c->reply_code == code, "reply code %u, want %u", c->reply_code, code);
    CHECKF(c->reply_text.len == strlen(text) &&
               memcmp(c->reply_text.bytes, text, c->reply_text.len) == 0,
           "text \"%.*s\", want \"%s\"", (int)c->reply_text.len, (const char *)c->reply_text.bytes,
           text);
    CHECKF(c->class_id == class_id && c->method_id == method_id,
           "class/method %u.%u, want %u.%u", c->class_id, c->method_id, class_id, method_id);
    amqp_connection_close_ok_t ok = {0};
    CHECK_AMQP(amqp_send_method(conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok));
    amqp_destroy_connection(conn);
}

amqp_connection_state_t harness_connect_caps(const harness_broker_t *b, const char *const *caps)
{
    amqp_table_entry_t cap_entries[16];
    int n = 0;
    for (; caps[n]; n++) {
        CHECK(n < 16);
        cap_entries[n].key = amqp_cstring_bytes(caps[n]);
        cap_entries[n].value.kind = AMQP_FIELD_KIND_BOOLEAN;
        cap_entries[n].value.value.boolean = 1;
    }
    amqp_table_entry_t prop;
    prop.key = amqp_cstring_bytes("capabilities");
    prop.value.kind = AMQP_FIELD_KIND_TABLE;
    prop.value.value.table.num_entries = n;
    prop.value.value.table.entries = cap_entries;
    amqp_table_t props = {.num_entries = 1, .entries = &prop};

    amqp_connection_state_t conn;
    int st = tcp_conn_open(b, &conn);
    CHECKF(st == 0, "connect %s:%d: %s", b->host, b->port, amqp_error_string2(st));
    CHECK_REPLY(amqp_login_with_properties(conn, "/", 0, AMQP_DEFAULT_FRAME_SIZE, 0, &props,
                                           AMQP_SASL_METHOD_PLAIN, "guest", "guest"));
    return conn;
}

amqp_rpc_reply_t harness_queue_peek(amqp_connection_state_t conn, amqp_channel_t ch,
                                    const char *queue, uint32_t *ret_messages,
                                    uint32_t *ret_consumers)
{
    amqp_queue_declare_ok_t *ok =
        amqp_queue_declare(conn, ch, amqp_cstring_bytes(queue), 1, 0, 0, 0, amqp_empty_table);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL && ok) {
        if (ret_messages)
            *ret_messages = ok->message_count;
        if (ret_consumers)
            *ret_consumers = ok->consumer_count;
    }
    return r;
}

uint32_t harness_wait_message_count(amqp_connection_state_t conn, amqp_channel_t ch,
                                    const char *queue, uint32_t want, int timeout_ms)
{
    uint32_t m = 0;
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        CHECK_REPLY(harness_queue_peek(conn, ch, queue, &m, NULL));
        if (m == want || harness_now_ms() >= deadline)
            return m;
        usleep(10000);
    }
}

bool harness_wait_queue_gone(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                             int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        amqp_rpc_reply_t r = harness_queue_peek(conn, ch, queue, NULL, NULL);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            char text[512];
            snprintf(text, sizeof text, "NOT_FOUND - no queue '%s' in vhost '/'", queue);
            harness_expect_channel_close(conn, ch, r, 404, text, 50, 10);
            return true;
        }
        if (harness_now_ms() >= deadline)
            return false;
        usleep(10000);
    }
}

int harness_next_frame(amqp_connection_state_t conn, amqp_frame_t *ret, int timeout_ms)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    return amqp_simple_wait_frame_noblock(conn, ret, &tv);
}

void harness_expect_quiet(amqp_connection_state_t conn, int ms, const char *what)
{
    amqp_frame_t f;
    int st = harness_next_frame(conn, &f, ms);
    if (st == AMQP_STATUS_TIMEOUT)
        return;
    CHECKF(st != 0, "%s: frame type %u on channel %u arrived (%s)", what, f.frame_type, f.channel,
           f.frame_type == AMQP_FRAME_METHOD ? method_name(f.payload.method.id) : "content");
    CHECKF(0, "%s: %s", what, amqp_error_string2(st));
}

/* ---- exchange-test helpers (issue 3) -------------------------------------------------------- */

void harness_sync(amqp_connection_state_t conn, amqp_channel_t ch)
{
    CHECK_REPLY(harness_round_trip(conn, ch));
}

static int drain(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue, bool marked,
                 char *out, size_t cap)
{
    size_t len = 0;
    int n = 0;
    if (cap)
        out[0] = '\0';
    for (;;) {
        amqp_rpc_reply_t r = amqp_basic_get(conn, ch, amqp_cstring_bytes(queue), 1);
        CHECK_REPLY(r);
        if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
            return n;
        CHECKF(r.reply.id == AMQP_BASIC_GET_OK_METHOD, "basic.get on '%s' answered %s", queue,
               method_name(r.reply.id));
        bool redelivered = ((const amqp_basic_get_ok_t *)r.reply.decoded)->redelivered;
        amqp_message_t msg;
        CHECK_REPLY(amqp_read_message(conn, ch, &msg, 0));
        int w = snprintf(out + len, cap > len ? cap - len : 0, "%s%.*s%s", n ? " " : "",
                         (int)msg.body.len, (const char *)msg.body.bytes,
                         marked && redelivered ? "r" : "");
        if (w > 0)
            len = len + (size_t)w < cap ? len + (size_t)w : (cap ? cap - 1 : 0);
        amqp_destroy_message(&msg);
        n++;
    }
}

int harness_drain(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue, char *out,
                  size_t cap)
{
    return drain(conn, ch, queue, false, out, cap);
}

int harness_drain_marked(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                         char *out, size_t cap)
{
    return drain(conn, ch, queue, true, out, cap);
}

void harness_expect_drain(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                          const char *want, const char *what)
{
    char got[4096];
    harness_drain(conn, ch, queue, got, sizeof got);
    CHECKF(strcmp(got, want) == 0, "%s: queue %s held \"%s\", want \"%s\"", what, queue, got,
           want);
}

void harness_expect_get(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                        const char *body, const char *exchange, const char *routing_key)
{
    amqp_rpc_reply_t r = amqp_basic_get(conn, ch, amqp_cstring_bytes(queue), 1);
    CHECK_REPLY(r);
    CHECKF(r.reply.id == AMQP_BASIC_GET_OK_METHOD, "queue %s is empty, want \"%s\"", queue, body);
    const amqp_basic_get_ok_t *ok = r.reply.decoded;
    CHECKF(harness_bytes_is(ok->exchange, exchange), "delivery names exchange '%.*s', want '%s'",
           (int)ok->exchange.len, (const char *)ok->exchange.bytes, exchange);
    CHECKF(harness_bytes_is(ok->routing_key, routing_key),
           "delivery has routing key '%.*s', want '%s'", (int)ok->routing_key.len,
           (const char *)ok->routing_key.bytes, routing_key);
    amqp_message_t msg;
    CHECK_REPLY(amqp_read_message(conn, ch, &msg, 0));
    CHECKF(harness_bytes_is(msg.body, body), "body '%.*s', want '%s'", (int)msg.body.len,
           (const char *)msg.body.bytes, body);
    amqp_destroy_message(&msg);
}

/* ---- restarts and crashes (issue 4 durability tests) --------------------------------------- */

void harness_require_own_broker(const harness_broker_t *b)
{
    if (b->pid == 0 && b->data_dir[0] == '\0') {
        fprintf(stderr, "SKIP: this test stops and restarts warrend on its data dir; an external "
                        "broker (WARREN_TEST_HOST) cannot be\n");
        exit(77);
    }
}

/* Fork and exec exe on data_dir and port; the child's stderr goes to err_fd when >= 0. */
/* fork + exec exe with argv (argv[0] included, NULL-ended); its stderr to err_fd when >= 0. The
 * child dies with us (PR_SET_PDEATHSIG). */
static pid_t spawn_argv(const char *exe, const char *const *argv, int err_fd)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    CHECKF(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (err_fd >= 0 && err_fd != 2) {
            dup2(err_fd, 2);
            close(err_fd);
        }
        execv(exe, (char *const *)argv);
        fprintf(stderr, "harness: exec %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    return pid;
}

static pid_t spawn_warrend(const char *exe, const char *data_dir, int port,
                           const char *const *extra, int err_fd)
{
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    const char *argv[40] = {exe,          "--port",      portbuf, "--bind", "127.0.0.1",
                            "--data-dir", data_dir,      "--log-level", "warn"};
    int n = 9;
    for (int i = 0; extra && extra[i]; i++) {
        CHECKF(n < 39, "too many extra warrend arguments");
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    return spawn_argv(exe, argv, err_fd);
}

static const char *warrend_exe(void)
{
    const char *exe = getenv("WARREND");
    CHECKF(exe && *exe, "WARREND is not set");
    return exe;
}

/* Wait for pid to exit within timeout_ms; 0 with *status, or -ETIMEDOUT. */
static int wait_exit(pid_t pid, int timeout_ms, int *status)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        pid_t w = waitpid(pid, status, WNOHANG);
        if (w == pid)
            return 0;
        CHECKF(w == 0, "waitpid %d: %s", (int)pid, strerror(errno));
        if (harness_now_ms() > deadline)
            return -ETIMEDOUT;
        usleep(5000);
    }
}

void harness_broker_shutdown(harness_broker_t *b)
{
    CHECKF(b->pid > 0, "harness_broker_shutdown: no warrend of ours is running");
    int status;
    pid_t w = waitpid(b->pid, &status, WNOHANG);
    CHECKF(w == 0, "warrend (pid %d) died before the shutdown (%s %d)", (int)b->pid,
           WIFEXITED(status) ? "exit status" : "signal",
           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    int64_t t0 = harness_now_ms();
    kill(b->pid, SIGTERM);
    int rc = wait_exit(b->pid, 10000, &status);
    CHECKF(rc == 0, "warrend (pid %d) ignored SIGTERM for 10 s", (int)b->pid);
    b->pid = 0;
    CHECKF((WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
               (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM),
           "warrend exited badly on SIGTERM (%s %d)", WIFEXITED(status) ? "exit status" : "signal",
           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    harness_log("warrend stopped by SIGTERM in %lld ms", (long long)(harness_now_ms() - t0));
}

void harness_broker_kill9(harness_broker_t *b)
{
    CHECKF(b->pid > 0, "harness_broker_kill9: no warrend of ours is running");
    int status;
    pid_t w = waitpid(b->pid, &status, WNOHANG);
    CHECKF(w == 0, "warrend (pid %d) died before the SIGKILL (%s %d)", (int)b->pid,
           WIFEXITED(status) ? "exit status" : "signal",
           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    kill(b->pid, SIGKILL);
    CHECKF(waitpid(b->pid, &status, 0) == b->pid, "waitpid: %s", strerror(errno));
    b->pid = 0;
}

/* Start warrend on b->port and wait until it listens: 0; -EAGAIN when it exited first. */
static int respawn_once(harness_broker_t *b, const char *const *extra)
{
    pid_t pid = spawn_warrend(warrend_exe(), b->data_dir, b->port, extra, -1);
    b->pid = pid;
    int64_t deadline = harness_now_ms() + 10000;
    while (harness_now_ms() < deadline) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            b->pid = 0;
            fprintf(stderr, "harness: restarted warrend %s %d before listening on %d\n",
                    WIFEXITED(status) ? "exited with status" : "was killed by signal",
                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), b->port);
            return -EAGAIN;
        }
        int fd = try_tcp_connect(b->host, b->port);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        usleep(5000);
    }
    harness_fail(__FILE__, __LINE__, "respawn", "warrend did not listen within 10 s of a restart");
}

void harness_broker_respawn(harness_broker_t *b, const char *const *extra_args)
{
    CHECKF(b->pid == 0 && b->data_dir[0], "harness_broker_respawn: warrend is running or external");
    int64_t t0 = harness_now_ms();
    int rc = -EAGAIN;
    for (int attempt = 0; attempt < 3 && rc == -EAGAIN; attempt++) {
        if (attempt)
            usleep(200000);
        rc = respawn_once(b, extra_args);
    }
    if (rc == -EAGAIN) {
        int old = b->port;
        b->port = harness_free_port();
        harness_log("port %d could not be had again: restarting on %d", old, b->port);
        rc = respawn_once(b, extra_args);
    }
    CHECKF(rc == 0, "warrend did not come back on its data dir %s (see its stderr above)",
           b->data_dir);
    harness_log("warrend restarted on its data dir in %lld ms (pid %d, port %d)",
                (long long)(harness_now_ms() - t0), (int)b->pid, b->port);
}

void harness_broker_restart(harness_broker_t *b)
{
    harness_broker_shutdown(b);
    harness_broker_respawn(b, NULL);
}

void harness_broker_crash_restart(harness_broker_t *b)
{
    harness_broker_kill9(b);
    harness_broker_respawn(b, NULL);
}

pid_t harness_warrend_spawn(const char *const *args, int err_fd)
{
    const char *argv[40] = {warrend_exe()};
    int n = 1;
    for (int i = 0; args && args[i]; i++) {
        CHECKF(n < 39, "too many warrend arguments");
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    return spawn_argv(argv[0], argv, err_fd);
}

int harness_warrend_run(const char *data_dir, int port, int timeout_ms, char *err, size_t cap,
                        bool *ret_listened)
{
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    const char *const args[] = {"--port",     portbuf,  "--bind",      "127.0.0.1",
                                "--data-dir", data_dir, "--log-level", "warn",
                                NULL};
    return harness_warrend_run_args(args, port, timeout_ms, err, cap, ret_listened);
}

int harness_warrend_run_args(const char *const *args, int port, int timeout_ms, char *err,
                             size_t cap, bool *ret_listened)
{
    int p[2];
    CHECKF(pipe2(p, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
    pid_t pid = harness_warrend_spawn(args, p[1]);
    close(p[1]);
    size_t len = 0;
    bool listened = false, eof = false;
    int status = 0, ret = -1;
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        if (!eof) {
            struct pollfd pfd = {.fd = p[0], .events = POLLIN};
            if (poll(&pfd, 1, 5) > 0) {
                char tmp[4096];
                ssize_t n = read(p[0], tmp, sizeof tmp);
                if (n <= 0) {
                    eof = true;
                } else {
                    fwrite(tmp, 1, (size_t)n, stderr);
                    size_t room = cap > len + 1 ? cap - len - 1 : 0;
                    size_t k = (size_t)n < room ? (size_t)n : room;
                    memcpy(err + len, tmp, k);
                    len += k;
                }
            }
        } else {
            usleep(5000);
        }
        if (waitpid(pid, &status, WNOHANG) == pid) {
            ret = status;
            break;
        }
        if (!listened) {
            int fd = try_tcp_connect("127.0.0.1", port);
            if (fd >= 0) {
                listened = true;
                close(fd);
            }
        }
        if (harness_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            break;
        }
    }
    /* What it wrote just before exiting. */
    for (;;) {
        char tmp[4096];
        ssize_t n = read(p[0], tmp, sizeof tmp);
        if (n <= 0)
            break;
        fwrite(tmp, 1, (size_t)n, stderr);
        size_t room = cap > len + 1 ? cap - len - 1 : 0;
        size_t k = (size_t)n < room ? (size_t)n : room;
        memcpy(err + len, tmp, k);
        len += k;
    }
    close(p[0]);
    if (cap)
        err[len] = '\0';
    if (ret_listened)
        *ret_listened = listened;
    return ret;
}

/* ---- queue arguments, typed tables and basic.get (issue 5 tests) --------------------------- */

void harness_arg_int(harness_args_t *a, const char *key, char kind, int64_t v)
{
    CHECK(a->n < (int)(sizeof a->e / sizeof a->e[0]));
    amqp_table_entry_t *e = &a->e[a->n++];
    e->key = amqp_cstring_bytes(key);
    e->value.kind = (uint8_t)kind;
    switch (kind) {
    case 'b':
        e->value.value.i8 = (int8_t)v;
        break;
    case 'B':
        e->value.value.u8 = (uint8_t)v;
        break;
    case 's':
        e->value.value.i16 = (int16_t)v;
        break;
    case 'u':
        e->value.value.u16 = (uint16_t)v;
        break;
    case 'I':
        e->value.value.i32 = (int32_t)v;
        break;
    case 'i':
        e->value.value.u32 = (uint32_t)v;
        break;
    case 'l':
        e->value.value.i64 = v;
        break;
    case 'L':
        e->value.value.u64 = (uint64_t)v;
        break;
    default:
        CHECKF(0, "harness_arg_int: kind '%c'", kind);
    }
}

void harness_arg_str(harness_args_t *a, const char *key, const char *s)
{
    CHECK(a->n < (int)(sizeof a->e / sizeof a->e[0]));
    amqp_table_entry_t *e = &a->e[a->n++];
    e->key = amqp_cstring_bytes(key);
    e->value.kind = AMQP_FIELD_KIND_UTF8;
    e->value.value.bytes = amqp_cstring_bytes(s);
}

amqp_table_t harness_args_table(harness_args_t *a)
{
    amqp_table_t t = {.num_entries = a->n, .entries = a->e};
    return t;
}

typedef struct fmt_out {
    char *buf;
    size_t cap, len;
} fmt_out_t;

static void fmt_put(fmt_out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fmt_put(fmt_out_t *o, const char *fmt, ...)
{
    if (o->len + 1 >= o->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (w > 0)
        o->len = o->len + (size_t)w < o->cap ? o->len + (size_t)w : o->cap - 1;
}

static void fmt_bytes(fmt_out_t *o, amqp_bytes_t b)
{
    fmt_put(o, "\"");
    for (size_t i = 0; i < b.len; i++) {
        unsigned char c = ((const unsigned char *)b.bytes)[i];
        if (c == '"' || c == '\\')
            fmt_put(o, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fmt_put(o, "\\x%02x", c);
        else
            fmt_put(o, "%c", c);
    }
    fmt_put(o, "\"");
}

static void fmt_table(fmt_out_t *o, const amqp_table_t *t, bool mask_time);

static void fmt_value(fmt_out_t *o, const amqp_field_value_t *v, bool mask_time)
{
    switch (v->kind) {
    case 't':
        fmt_put(o, "t%d", v->value.boolean ? 1 : 0);
        break;
    case 'b':
        fmt_put(o, "b%d", v->value.i8);
        break;
    case 'B':
        fmt_put(o, "B%u", v->value.u8);
        break;
    case 's':
        fmt_put(o, "s%d", v->value.i16);
        break;
    case 'u':
        fmt_put(o, "u%u", v->value.u16);
        break;
    case 'I':
        fmt_put(o, "I%d", v->value.i32);
        break;
    case 'i':
        fmt_put(o, "i%u", v->value.u32);
        break;
    case 'l':
        fmt_put(o, "l%lld", (long long)v->value.i64);
        break;
    case 'L':
        fmt_put(o, "L%llu", (unsigned long long)v->value.u64);
        break;
    case 'f':
        fmt_put(o, "f%g", (double)v->value.f32);
        break;
    case 'd':
        fmt_put(o, "d%g", v->value.f64);
        break;
    case 'D':
        fmt_put(o, "D%u:%u", v->value.decimal.decimals, v->value.decimal.value);
        break;
    case 'T':
        if (mask_time)
            fmt_put(o, "T*");
        else
            fmt_put(o, "T%llu", (unsigned long long)v->value.u64);
        break;
    case 'S':
    case 'x':
        fmt_put(o, "%c", v->kind);
        fmt_bytes(o, v->value.bytes);
        break;
    case 'V':
        fmt_put(o, "V");
        break;
    case 'A':
        fmt_put(o, "A[");
        for (int i = 0; i < v->value.array.num_entries; i++) {
            if (i)
                fmt_put(o, ",");
            fmt_value(o, &v->value.array.entries[i], mask_time);
        }
        fmt_put(o, "]");
        break;
    case 'F':
        fmt_put(o, "F");
        fmt_table(o, &v->value.table, mask_time);
        break;
    default:
        fmt_put(o, "?%c", v->kind);
    }
}

static void fmt_table(fmt_out_t *o, const amqp_table_t *t, bool mask_time)
{
    fmt_put(o, "{");
    for (int i = 0; i < t->num_entries; i++) {
        const amqp_table_entry_t *e = &t->entries[i];
        fmt_put(o, "%s%.*s:", i ? "," : "", (int)e->key.len, (const char *)e->key.bytes);
        fmt_value(o, &e->value, mask_time);
    }
    fmt_put(o, "}");
}

const char *harness_table_fmt(const amqp_table_t *t, bool mask_time, char *buf, size_t cap)
{
    fmt_out_t o = {.buf = buf, .cap = cap, .len = 0};
    if (cap)
        buf[0] = '\0';
    fmt_table(&o, t, mask_time);
    return buf;
}

static bool value_times_near(const amqp_field_value_t *v, int64_t now, int slack, int *n)
{
    switch (v->kind) {
    case 'T': {
        (*n)++;
        int64_t d = (int64_t)v->value.u64 - now;
        return d >= -slack && d <= slack;
    }
    case 'A':
        for (int i = 0; i < v->value.array.num_entries; i++)
            if (!value_times_near(&v->value.array.entries[i], now, slack, n))
                return false;
        return true;
    case 'F':
        for (int i = 0; i < v->value.table.num_entries; i++)
            if (!value_times_near(&v->value.table.entries[i].value, now, slack, n))
                return false;
        return true;
    default:
        return true;
    }
}

bool harness_table_times_near(const amqp_table_t *t, int slack_s, int *ret_n)
{
    int n = 0;
    bool ok = true;
    int64_t now = (int64_t)time(NULL);
    for (int i = 0; i < t->num_entries && ok; i++)
        ok = value_times_near(&t->entries[i].value, now, slack_s, &n);
    if (ret_n)
        *ret_n = n;
    return ok;
}

static void copy_bytes(char *dst, size_t cap, amqp_bytes_t b)
{
    snprintf(dst, cap, "%.*s", (int)b.len, (const char *)b.bytes);
}

bool harness_get(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue, bool no_ack,
                 harness_got_t *ret)
{
    amqp_rpc_reply_t r = amqp_basic_get(conn, ch, amqp_cstring_bytes(queue), no_ack);
    CHECK_REPLY(r);
    if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
        return false;
    CHECKF(r.reply.id == AMQP_BASIC_GET_OK_METHOD, "basic.get on '%s' answered %s", queue,
           method_name(r.reply.id));
    const amqp_basic_get_ok_t *ok = r.reply.decoded;
    harness_got_t g;
    memset(&g, 0, sizeof g);
    g.delivery_tag = ok->delivery_tag;
    g.redelivered = ok->redelivered;
    g.message_count = ok->message_count;
    copy_bytes(g.exchange, sizeof g.exchange, ok->exchange);
    copy_bytes(g.routing_key, sizeof g.routing_key, ok->routing_key);
    CHECK_REPLY(amqp_read_message(conn, ch, &g.msg, 0));
    copy_bytes(g.body, sizeof g.body, g.msg.body);
    *ret = g;
    return true;
}

bool harness_get_wait(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                      bool no_ack, int timeout_ms, harness_got_t *ret)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        if (harness_get(conn, ch, queue, no_ack, ret))
            return true;
        if (harness_now_ms() >= deadline)
            return false;
        usleep(10000);
    }
}

void harness_got_free(harness_got_t *g)
{
    amqp_destroy_message(&g->msg);
    memset(&g->msg, 0, sizeof g->msg);
}

const char *harness_got_headers(const harness_got_t *g)
{
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ % 8];
    if (!(g->msg.properties._flags & AMQP_BASIC_HEADERS_FLAG))
        return "-";
    return harness_table_fmt(&g->msg.properties.headers, true, b, sizeof bufs[0]);
}

static bool field_bytes_eq(const amqp_field_value_t *a, const amqp_field_value_t *b)
{
    return a && b && a->kind == AMQP_FIELD_KIND_UTF8 && b->kind == AMQP_FIELD_KIND_UTF8 &&
           a->value.bytes.len == b->value.bytes.len &&
           (a->value.bytes.len == 0 ||
            memcmp(a->value.bytes.bytes, b->value.bytes.bytes, a->value.bytes.len) == 0);
}

const char *harness_got_death_headers(const harness_got_t *g)
{
    static char bufs[8][4096];
    static int next;
    static const char *const last[3] = {"x-last-death-exchange", "x-last-death-queue",
                                        "x-last-death-reason"};
    static const char *const field[3] = {"exchange", "queue", "reason"};
    char *b = bufs[next++ % 8];
    if (!(g->msg.properties._flags & AMQP_BASIC_HEADERS_FLAG))
        return "-";
    const amqp_table_t *t = &g->msg.properties.headers;
    int present = 0;
    for (int i = 0; i < 3; i++)
        present += harness_table_get(t, last[i]) != NULL;
    if (present) {
        CHECKF(present == 3, "only %d of the three x-last-death-* headers", present);
        const amqp_field_value_t *xd = harness_table_get(t, "x-death");
        CHECKF(xd && xd->kind == AMQP_FIELD_KIND_ARRAY && xd->value.array.num_entries > 0 &&
                   xd->value.array.entries[0].kind == AMQP_FIELD_KIND_TABLE,
               "x-last-death-* without an x-death array");
        const amqp_table_t *e = &xd->value.array.entries[0].value.table;
        for (int i = 0; i < 3; i++)
            CHECKF(field_bytes_eq(harness_table_get(t, last[i]), harness_table_get(e, field[i])),
                   "%s is not x-death[0]'s %s", last[i], field[i]);
    }
    amqp_table_entry_t kept[128];
    amqp_table_t f = {.num_entries = 0, .entries = kept};
    for (int i = 0; i < t->num_entries; i++) {
        const amqp_bytes_t k = t->entries[i].key;
        bool skip = false;
        for (int j = 0; j < 3; j++)
            skip |= k.len == strlen(last[j]) && memcmp(k.bytes, last[j], k.len) == 0;
        if (!skip) {
            CHECK(f.num_entries < 128);
            kept[f.num_entries++] = t->entries[i];
        }
    }
    return harness_table_fmt(&f, true, b, sizeof bufs[0]);
}

/* ---- a broker with extra arguments (issue 5 consumer-timeout test) ------------------------ */

void harness_broker_start_args(harness_broker_t *b, const char *const *extra_args)
{
    const char *host = getenv("WARREN_TEST_HOST");
    const char *port = getenv("WARREN_TEST_PORT");
    if (host && *host && port && *port) {
        harness_broker_start(b);
        return;
    }
    memset(b, 0, sizeof *b);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *exe = getenv("WARREND");
    if (!exe || !*exe || access(exe, X_OK) != 0) {
        fprintf(stderr, "SKIP: no broker to test: WARREND is %s and WARREN_TEST_HOST/PORT are not "
                        "set\n",
                exe && *exe ? exe : "unset");
        exit(77);
    }
    snprintf(b->host, sizeof b->host, "127.0.0.1");
    const char *tmp = getenv("TMPDIR");
    snprintf(b->data_dir, sizeof b->data_dir, "%s/warren-it-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECKF(mkdtemp(b->data_dir) != NULL, "mkdtemp %s: %s", b->data_dir, strerror(errno));
    s_current = b;
    b->port = harness_free_port();
    harness_broker_respawn(b, extra_args); /* retries, and moves to a free port if need be */
    harness_log("started %s on 127.0.0.1:%d (pid %d, data %s) with extra arguments", exe, b->port,
                (int)b->pid, b->data_dir);
}

/* ---- entity wrappers ------------------------------------------------------------------------ */

void harness_queue_declare(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                           unsigned flags, amqp_table_t args)
{
    amqp_queue_declare(conn, ch, amqp_cstring_bytes(queue), 0, !!(flags & HARNESS_QUEUE_DURABLE),
                       !!(flags & HARNESS_QUEUE_EXCLUSIVE), !!(flags & HARNESS_QUEUE_AUTO_DELETE),
                       args);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
}

void harness_queue_delete(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue)
{
    amqp_queue_delete(conn, ch, amqp_cstring_bytes(queue), 0, 0);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
}

void harness_exchange_declare(amqp_connection_state_t conn, amqp_channel_t ch,
                              const char *exchange, const char *type, unsigned flags,
                              amqp_table_t args)
{
    amqp_exchange_declare(conn, ch, amqp_cstring_bytes(exchange), amqp_cstring_bytes(type), 0,
                          !!(flags & HARNESS_EXCHANGE_DURABLE),
                          !!(flags & HARNESS_EXCHANGE_AUTO_DELETE),
                          !!(flags & HARNESS_EXCHANGE_INTERNAL), args);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
}

void harness_exchange_delete(amqp_connection_state_t conn, amqp_channel_t ch,
                             const char *exchange)
{
    amqp_exchange_delete(conn, ch, amqp_cstring_bytes(exchange), 0);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
}

void harness_queue_bind(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                        const char *exchange, const char *key, amqp_table_t args)
{
    amqp_queue_bind(conn, ch, amqp_cstring_bytes(queue), amqp_cstring_bytes(exchange),
                    amqp_cstring_bytes(key), args);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
}

void harness_exchange_bind(amqp_connection_state_t conn, amqp_channel_t ch,
                           const char *destination, const char *source, const char *key)
{
    amqp_exchange_bind(conn, ch, amqp_cstring_bytes(destination), amqp_cstring_bytes(source),
                       amqp_cstring_bytes(key), amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
}

uint32_t harness_queue_count(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue)
{
    uint32_t n = 0;
    CHECK_REPLY(harness_queue_peek(conn, ch, queue, &n, NULL));
    return n;
}

void harness_expect_count(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                          uint32_t want, const char *what)
{
    uint32_t n = harness_wait_message_count(conn, ch, queue, want, 5000);
    CHECKF(n == want, "%s: queue %s holds %u messages, want %u", what, queue, n, want);
}

void harness_wait_confirms(amqp_connection_state_t conn, harness_confirms_t *c)
{
    CHECK(c->published < 256);
    while (c->confirmed < c->published) {
        amqp_frame_t f;
        amqp_maybe_release_buffers(conn);
        int st = harness_next_frame(conn, &f, 10000);
        CHECKF(st == 0, "waiting for confirms (%llu of %llu): %s",
               (unsigned long long)c->confirmed, (unsigned long long)c->published,
               amqp_error_string2(st));
        CHECKF(f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD,
               "got frame type %u (%s) while waiting for confirms", f.frame_type,
               f.frame_type == AMQP_FRAME_METHOD ? amqp_method_name(f.payload.method.id) : "-");
        amqp_basic_ack_t *ack = f.payload.method.decoded;
        CHECK(ack->delivery_tag >= 1 && ack->delivery_tag <= c->published);
        for (uint64_t t = ack->multiple ? 1 : ack->delivery_tag; t <= ack->delivery_tag; t++) {
            if (!c->acked[t]) {
                c->acked[t] = true;
                c->confirmed++;
            }
        }
    }
}

void harness_expect_maxlen_dead(amqp_connection_state_t conn, amqp_channel_t ch, const char *dlq,
                                const char *q, const char *bodies)
{
    harness_expect_first_deaths(conn, ch, dlq, q, "maxlen", bodies);
}

void harness_expect_first_deaths(amqp_connection_state_t conn, amqp_channel_t ch,
                                 const char *dlq, const char *q, const char *reason,
                                 const char *bodies)
{
    char want_h[1024];
    snprintf(want_h, sizeof want_h,
             "{x-death:A[F{count:l1,reason:S\"%s\",queue:S\"%s\",time:T*,exchange:S\"\","
             "routing-keys:A[S\"%s\"]}],x-first-death-exchange:S\"\",x-first-death-queue:S\"%s\","
             "x-first-death-reason:S\"%s\"}",
             reason, q, q, q, reason);
    uint32_t n = 0;
    for (const char *p = bodies; *p; p++)
        n += (*p == ' ');
    n += *bodies ? 1 : 0;
    harness_expect_count(conn, ch, dlq, n, "dead letters");
    char got[1024] = "";
    size_t len = 0;
    for (uint32_t i = 0; i < n; i++) {
        harness_got_t g;
        CHECK(harness_get(conn, ch, dlq, true, &g));
        const char *h = harness_got_death_headers(&g);
        CHECKF(strcmp(h, want_h) == 0, "dead letter '%s' headers\n  got  %s\n  want %s", g.body,
               h, want_h);
        len += (size_t)snprintf(got + len, sizeof got - len, "%s%s", i ? " " : "", g.body);
        harness_got_free(&g);
    }
    CHECKF(strcmp(got, bodies) == 0, "dead letters of %s: \"%s\", want \"%s\"", q, got, bodies);
}

uint64_t harness_expect_delivery(amqp_connection_state_t conn, const char *tag, int body,
                                 bool redel)
{
    char want[16];
    snprintf(want, sizeof want, "%d", body);
    return harness_expect_message(conn, 0, tag, want, redel);
}

void harness_expect_death_headers(const harness_got_t *g, const char *want, const char *what)
{
    const char *h = harness_got_death_headers(g);
    CHECKF(strcmp(h, want) == 0, "%s: headers\n  got  %s\n  want %s", what, h, want);
}

void harness_qos(amqp_connection_state_t conn, amqp_channel_t ch, uint16_t prefetch, bool global)
{
    amqp_basic_qos(conn, ch, 0, prefetch, global);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
}

void harness_publish_range(amqp_connection_state_t conn, const char *q, int first, int last)
{
    for (int i = first; i <= last; i++) {
        char body[16];
        snprintf(body, sizeof body, "%d", i);
        CHECK_AMQP(amqp_basic_publish(conn, 1, amqp_empty_bytes, amqp_cstring_bytes(q), 0, 0,
                                      NULL, amqp_cstring_bytes(body)));
    }
}

/* ---- shared building blocks (issue 9) -------------------------------------------------------- */

amqp_connection_state_t harness_open(const harness_broker_t *b)
{
    amqp_connection_state_t conn = harness_connect(b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    harness_channel_open(conn, 1);
    return conn;
}

amqp_connection_state_t harness_begin(harness_broker_t *b, unsigned watchdog_s, const char *tag)
{
    harness_watchdog(watchdog_s);
    harness_broker_start(b);
    if (tag)
        harness_name_init(tag);
    return harness_open(b);
}

int harness_finish(harness_broker_t *b)
{
    harness_check_alive(b);
    CHECK(harness_broker_stop(b) == 0);
    harness_log("PASS");
    return 0;
}

amqp_connection_state_t harness_reopen(harness_broker_t *b, amqp_connection_state_t conn,
                                       bool crash)
{
    if (crash)
        harness_broker_crash_restart(b);
    else
        harness_broker_restart(b);
    if (conn)
        amqp_destroy_connection(conn);
    return harness_open(b);
}

amqp_bytes_t harness_queue_declare_anon(amqp_connection_state_t conn, amqp_channel_t ch)
{
    amqp_queue_declare_ok_t *ok =
        amqp_queue_declare(conn, ch, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    CHECK(ok != NULL);
    return amqp_bytes_malloc_dup(ok->queue);
}

void harness_publish_get(amqp_connection_state_t conn, amqp_channel_t ch, amqp_bytes_t queue,
                         amqp_bytes_t body)
{
    CHECK_AMQP(amqp_basic_publish(conn, ch, amqp_empty_bytes, queue, 0, 0, NULL, body));
    amqp_rpc_reply_t r = amqp_basic_get(conn, ch, queue, 1);
    CHECK_REPLY(r);
    CHECKF(r.reply.id == AMQP_BASIC_GET_OK_METHOD, "basic.get after a publish: %s",
           method_name(r.reply.id));
    amqp_message_t msg;
    CHECK_REPLY(amqp_read_message(conn, ch, &msg, 0));
    CHECKF(harness_bytes_eq(msg.body, body), "got %zu octets back, published %zu (or others)",
           msg.body.len, body.len);
    amqp_destroy_message(&msg);
}

bool harness_queue_exists(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue)
{
    amqp_queue_bind(conn, ch, amqp_cstring_bytes(queue), amqp_cstring_bytes("amq.direct"),
                    amqp_cstring_bytes("probe"), amqp_empty_table);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return true;
    harness_expect_channel_reopen(conn, ch, r, 404, 50, 20,
                                  "NOT_FOUND - no queue '%s' in vhost '/'", queue);
    return false;
}

void harness_fill(amqp_connection_state_t conn, const char *queue, int first, int last)
{
    harness_queue_declare(conn, 1, queue, 0, amqp_empty_table);
    harness_queue_purge(conn, 1, queue);
    harness_publish_range(conn, queue, first, last);
    uint32_t want = (uint32_t)(last - first + 1);
    uint32_t n = harness_wait_message_count(conn, 1, queue, want, 5000);
    CHECKF(n == want, "queue %s holds %u messages, want %u", queue, n, want);
}

void harness_publish_words(amqp_connection_state_t conn, amqp_channel_t ch, const char *exchange,
                           const char *key, const char *words)
{
    char buf[1024];
    CHECKF(strlen(words) < sizeof buf, "harness_publish_words: %zu octets", strlen(words));
    snprintf(buf, sizeof buf, "%s", words);
    for (char *save = NULL, *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save))
        harness_publish(conn, ch, exchange, key, strcmp(w, "-") == 0 ? "" : w);
}

void harness_publish(amqp_connection_state_t conn, amqp_channel_t ch, const char *exchange,
                     const char *key, const char *body)
{
    harness_publish_props(conn, ch, exchange, key, false, NULL, body);
}

void harness_publish_props(amqp_connection_state_t conn, amqp_channel_t ch, const char *exchange,
                           const char *key, bool mandatory, const amqp_basic_properties_t *props,
                           const char *body)
{
    CHECK_AMQP(amqp_basic_publish(conn, ch, amqp_cstring_bytes(exchange), amqp_cstring_bytes(key),
                                  mandatory, 0, props, amqp_cstring_bytes(body)));
}

void harness_publish_headers(amqp_connection_state_t conn, amqp_channel_t ch,
                             const char *exchange, const char *key, const amqp_table_t *headers,
                             const char *body)
{
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof p);
    if (headers) {
        p._flags = AMQP_BASIC_HEADERS_FLAG;
        p.headers = *headers;
    }
    harness_publish_props(conn, ch, exchange, key, false, &p, body);
}

amqp_rpc_reply_t harness_round_trip(amqp_connection_state_t conn, amqp_channel_t ch)
{
    amqp_exchange_declare(conn, ch, amqp_cstring_bytes("amq.direct"), amqp_cstring_bytes("direct"),
                          1, 0, 0, 0, amqp_empty_table);
    return amqp_get_rpc_reply(conn);
}

void harness_confirm_select(amqp_connection_state_t conn, amqp_channel_t ch)
{
    amqp_confirm_select(conn, ch);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
}

void harness_tx(amqp_connection_state_t conn, amqp_channel_t ch, char what)
{
    CHECKF(what == 's' || what == 'c' || what == 'r', "harness_tx: '%c'", what);
    if (what == 's')
        amqp_tx_select(conn, ch);
    else if (what == 'c')
        amqp_tx_commit(conn, ch);
    else
        amqp_tx_rollback(conn, ch);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
}

uint32_t harness_queue_purge(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue)
{
    amqp_queue_purge_ok_t *ok = amqp_queue_purge(conn, ch, amqp_cstring_bytes(queue));
    CHECK_REPLY(amqp_get_rpc_reply(conn));
    CHECK(ok != NULL);
    return ok->message_count;
}

void harness_queue_unbind(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                          const char *exchange, const char *key, amqp_table_t args)
{
    amqp_queue_unbind(conn, ch, amqp_cstring_bytes(queue), amqp_cstring_bytes(exchange),
                      amqp_cstring_bytes(key), args);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
}

void harness_exchange_unbind(amqp_connection_state_t conn, amqp_channel_t ch,
                             const char *destination, const char *source, const char *key)
{
    amqp_exchange_unbind(conn, ch, amqp_cstring_bytes(destination), amqp_cstring_bytes(source),
                         amqp_cstring_bytes(key), amqp_empty_table);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
}

void harness_consume(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                     const char *tag, unsigned flags, amqp_table_t args)
{
    amqp_basic_consume(conn, ch, amqp_cstring_bytes(queue),
                       tag ? amqp_cstring_bytes(tag) : amqp_empty_bytes, 0,
                       !!(flags & HARNESS_CONSUME_NO_ACK), !!(flags & HARNESS_CONSUME_EXCLUSIVE),
                       args);
    CHECK_REPLY(amqp_get_rpc_reply(conn));
}

void harness_cancel(amqp_connection_state_t conn, amqp_channel_t ch, const char *tag)
{
    amqp_basic_cancel(conn, ch, amqp_cstring_bytes(tag));
    CHECK_REPLY(amqp_get_rpc_reply(conn));
}

bool harness_next_delivery(amqp_connection_state_t conn, int timeout_ms, amqp_envelope_t *ret)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    amqp_maybe_release_buffers(conn);
    amqp_rpc_reply_t r = amqp_consume_message(conn, ret, &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT)
        return false;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        amqp_frame_t f;
        CHECK_AMQP(harness_next_frame(conn, &f, 1000));
        CHECKF(0, "waiting for a delivery, got frame type %u on channel %u (%s)", f.frame_type,
               f.channel,
               f.frame_type == AMQP_FRAME_METHOD ? method_name(f.payload.method.id) : "-");
    }
    CHECK_REPLY(r);
    return true;
}

uint64_t harness_expect_message(amqp_connection_state_t conn, amqp_channel_t ch, const char *tag,
                                const char *body, bool redel)
{
    amqp_envelope_t env;
    CHECKF(harness_next_delivery(conn, 5000, &env), "no delivery of '%s' within 5 s", body);
    CHECKF((ch == 0 || env.channel == ch) && (!tag || harness_bytes_is(env.consumer_tag, tag)) &&
               harness_bytes_is(env.message.body, body) && (bool)env.redelivered == redel,
           "got '%.*s' (redelivered %d) for %.*s on channel %u, want '%s' (redelivered %d) for %s "
           "on channel %u",
           (int)env.message.body.len, (const char *)env.message.body.bytes, env.redelivered,
           (int)env.consumer_tag.len, (const char *)env.consumer_tag.bytes, env.channel, body,
           redel, tag ? tag : "any consumer", ch);
    uint64_t dt = env.delivery_tag;
    amqp_destroy_envelope(&env);
    return dt;
}

int harness_body_int(amqp_bytes_t body)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%.*s", (int)body.len, (const char *)body.bytes);
    return atoi(tmp);
}

void harness_read_return(amqp_connection_state_t conn, amqp_channel_t ch, const char *exchange,
                         const char *key, amqp_message_t *ret_msg)
{
    amqp_frame_t f;
    int st = harness_next_frame(conn, &f, 5000);
    CHECKF(st == 0, "no basic.return for %s/%s: %s", exchange, key, amqp_error_string2(st));
    CHECKF(f.frame_type == AMQP_FRAME_METHOD && f.channel == ch &&
               f.payload.method.id == AMQP_BASIC_RETURN_METHOD,
           "want basic.return on channel %u, got frame type %u (%s) on %u", ch, f.frame_type,
           f.frame_type == AMQP_FRAME_METHOD ? method_name(f.payload.method.id) : "-", f.channel);
    const amqp_basic_return_t *ret = f.payload.method.decoded;
    CHECK_EQ(ret->reply_code, 312);
    CHECKF(harness_bytes_is(ret->reply_text, "NO_ROUTE"), "reply text '%.*s'",
           (int)ret->reply_text.len, (const char *)ret->reply_text.bytes);
    CHECKF(harness_bytes_is(ret->exchange, exchange), "returned exchange '%.*s', want '%s'",
           (int)ret->exchange.len, (const char *)ret->exchange.bytes, exchange);
    CHECKF(harness_bytes_is(ret->routing_key, key), "returned routing key '%.*s', want '%s'",
           (int)ret->routing_key.len, (const char *)ret->routing_key.bytes, key);
    CHECK_REPLY(amqp_read_message(conn, ch, ret_msg, 0));
}

void harness_expect_return(amqp_connection_state_t conn, amqp_channel_t ch, const char *exchange,
                           const char *key, const char *body)
{
    amqp_message_t msg;
    harness_read_return(conn, ch, exchange, key, &msg);
    CHECKF(harness_bytes_is(msg.body, body), "returned body '%.*s', want '%s'", (int)msg.body.len,
           (const char *)msg.body.bytes, body);
    amqp_destroy_message(&msg);
}

void harness_expect_no_return(amqp_connection_state_t conn, amqp_channel_t ch, const char *what)
{
    harness_sync(conn, ch);
    if (amqp_frames_enqueued(conn)) {
        amqp_frame_t f;
        CHECK_AMQP(amqp_simple_wait_frame(conn, &f));
        CHECKF(0, "%s: unexpected %s on channel %u", what,
               f.frame_type == AMQP_FRAME_METHOD ? method_name(f.payload.method.id)
                                                 : "content frame",
               f.channel);
    }
}

void harness_expect_steady(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                           int64_t want, int ms, const char *what)
{
    int64_t t0 = harness_now_ms(), deadline = t0 + ms;
    for (;;) {
        uint32_t n = 0;
        amqp_rpc_reply_t r = harness_queue_peek(conn, ch, queue, &n, NULL);
        char buf[512];
        CHECKF(r.reply_type == AMQP_RESPONSE_NORMAL, "%s: queue %s gone after %lld ms (%s)", what,
               queue, (long long)(harness_now_ms() - t0), harness_reply_str(r, buf, sizeof buf));
        CHECKF(want < 0 || n == want, "%s: queue %s holds %u messages after %lld ms, want %lld",
               what, queue, n, (long long)(harness_now_ms() - t0), (long long)want);
        if (harness_now_ms() >= deadline)
            return;
        usleep(10000);
    }
}

/* ---- table and property comparison ----------------------------------------------------------- */

static bool table_eq_at(const amqp_table_t *a, const amqp_table_t *b, bool any_order,
                        const char *path, char *where, size_t cap);

static void set_where(char *where, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_where(char *where, size_t cap, const char *fmt, ...)
{
    if (!where || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(where, cap, fmt, ap);
    va_end(ap);
}

static bool value_eq_at(const amqp_field_value_t *a, const amqp_field_value_t *b, bool any_order,
                        const char *path, char *where, size_t cap)
{
    if (a->kind != b->kind) {
        set_where(where, cap, "%s: type '%c' != '%c'", path, a->kind, b->kind);
        return false;
    }
    bool eq = true;
    switch (a->kind) {
    case AMQP_FIELD_KIND_BOOLEAN:
        eq = !a->value.boolean == !b->value.boolean;
        break;
    case AMQP_FIELD_KIND_I8:
    case AMQP_FIELD_KIND_U8:
        eq = a->value.u8 == b->value.u8;
        break;
    case AMQP_FIELD_KIND_I16:
    case AMQP_FIELD_KIND_U16:
        eq = a->value.u16 == b->value.u16;
        break;
    case AMQP_FIELD_KIND_I32:
    case AMQP_FIELD_KIND_U32:
        eq = a->value.u32 == b->value.u32;
        break;
    case AMQP_FIELD_KIND_F32:
        eq = memcmp(&a->value.f32, &b->value.f32, sizeof(float)) == 0;
        break;
    case AMQP_FIELD_KIND_I64:
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
        eq = a->value.u64 == b->value.u64;
        break;
    case AMQP_FIELD_KIND_F64:
        eq = memcmp(&a->value.f64, &b->value.f64, sizeof(double)) == 0;
        break;
    case AMQP_FIELD_KIND_DECIMAL:
        eq = a->value.decimal.decimals == b->value.decimal.decimals &&
             a->value.decimal.value == b->value.decimal.value;
        break;
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        eq = harness_bytes_eq(a->value.bytes, b->value.bytes);
        break;
    case AMQP_FIELD_KIND_VOID:
        break;
    case AMQP_FIELD_KIND_ARRAY:
        if (a->value.array.num_entries != b->value.array.num_entries) {
            set_where(where, cap, "%s: %d entries != %d", path, a->value.array.num_entries,
                      b->value.array.num_entries);
            return false;
        }
        for (int k = 0; k < a->value.array.num_entries; k++) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s[%d]", path, k);
            if (!value_eq_at(&a->value.array.entries[k], &b->value.array.entries[k], any_order,
                             sub, where, cap))
                return false;
        }
        return true;
    case AMQP_FIELD_KIND_TABLE:
        return table_eq_at(&a->value.table, &b->value.table, any_order, path, where, cap);
    default:
        set_where(where, cap, "%s: unknown type '%c'", path, a->kind);
        return false;
    }
    if (!eq)
        set_where(where, cap, "%s: value differs (type '%c')", path, a->kind);
    return eq;
}

static bool table_eq_at(const amqp_table_t *a, const amqp_table_t *b, bool any_order,
                        const char *path, char *where, size_t cap)
{
    if (a->num_entries != b->num_entries) {
        set_where(where, cap, "%s: %d entries != %d", path[0] ? path : "table", a->num_entries,
                  b->num_entries);
        return false;
    }
    for (int k = 0; k < a->num_entries; k++) {
        const amqp_table_entry_t *e = &a->entries[k];
        char key[256], sub[512];
        snprintf(key, sizeof key, "%.*s", (int)e->key.len, (const char *)e->key.bytes);
        snprintf(sub, sizeof sub, "%s%s%s", path, path[0] ? "." : "", key);
        const amqp_field_value_t *other;
        if (any_order) {
            other = harness_table_get(b, key);
            if (!other) {
                set_where(where, cap, "%s: missing", sub);
                return false;
            }
        } else {
            if (!harness_bytes_is(b->entries[k].key, key)) {
                set_where(where, cap, "%s: key %.*s at position %d", sub,
                          (int)b->entries[k].key.len, (const char *)b->entries[k].key.bytes, k);
                return false;
            }
            other = &b->entries[k].value;
        }
        if (!value_eq_at(&e->value, other, any_order, sub, where, cap))
            return false;
    }
    return true;
}

bool harness_table_eq(const amqp_table_t *a, const amqp_table_t *b, bool any_order, char *where,
                      size_t cap)
{
    return table_eq_at(a, b, any_order, "", where, cap);
}

const char *harness_props_diff(const amqp_basic_properties_t *want,
                               const amqp_basic_properties_t *got, bool any_order, char *buf,
                               size_t cap)
{
    if (want->_flags != got->_flags) {
        snprintf(buf, cap, "property flags 0x%04x, want 0x%04x", got->_flags, want->_flags);
        return buf;
    }
    amqp_flags_t f = want->_flags;
    static const struct {
        amqp_flags_t flag;
        size_t offset;
        const char *name;
    } strs[] = {
#define PROP(flag, field) {flag, offsetof(amqp_basic_properties_t, field), #field}
        PROP(AMQP_BASIC_CONTENT_TYPE_FLAG, content_type),
        PROP(AMQP_BASIC_CONTENT_ENCODING_FLAG, content_encoding),
        PROP(AMQP_BASIC_CORRELATION_ID_FLAG, correlation_id),
        PROP(AMQP_BASIC_REPLY_TO_FLAG, reply_to),
        PROP(AMQP_BASIC_EXPIRATION_FLAG, expiration),
        PROP(AMQP_BASIC_MESSAGE_ID_FLAG, message_id),
        PROP(AMQP_BASIC_TYPE_FLAG, type),
        PROP(AMQP_BASIC_USER_ID_FLAG, user_id),
        PROP(AMQP_BASIC_APP_ID_FLAG, app_id),
        PROP(AMQP_BASIC_CLUSTER_ID_FLAG, cluster_id),
#undef PROP
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        if (!(f & strs[i].flag))
            continue;
        const amqp_bytes_t *w = (const void *)((const char *)want + strs[i].offset);
        const amqp_bytes_t *g = (const void *)((const char *)got + strs[i].offset);
        if (!harness_bytes_eq(*w, *g)) {
            snprintf(buf, cap, "%s \"%.*s\", want \"%.*s\"", strs[i].name, (int)g->len,
                     (const char *)g->bytes, (int)w->len, (const char *)w->bytes);
            return buf;
        }
    }
    if ((f & AMQP_BASIC_DELIVERY_MODE_FLAG) && want->delivery_mode != got->delivery_mode) {
        snprintf(buf, cap, "delivery_mode %u, want %u", got->delivery_mode, want->delivery_mode);
        return buf;
    }
    if ((f & AMQP_BASIC_PRIORITY_FLAG) && want->priority != got->priority) {
        snprintf(buf, cap, "priority %u, want %u", got->priority, want->priority);
        return buf;
    }
    if ((f & AMQP_BASIC_TIMESTAMP_FLAG) && want->timestamp != got->timestamp) {
        snprintf(buf, cap, "timestamp %llu, want %llu", (unsigned long long)got->timestamp,
                 (unsigned long long)want->timestamp);
        return buf;
    }
    if ((f & AMQP_BASIC_HEADERS_FLAG) &&
        !table_eq_at(&want->headers, &got->headers, any_order, "headers", buf, cap))
        return buf;
    return NULL;
}

amqp_table_t harness_dl_args(harness_args_t *a, long ttl, long maxlen, const char *dlx,
                             const char *dlrk)
{
    a->n = 0;
    if (ttl >= 0)
        harness_arg_int(a, "x-message-ttl", 'I', ttl);
    if (maxlen >= 0)
        harness_arg_int(a, "x-max-length", 'I', maxlen);
    if (dlx)
        harness_arg_str(a, "x-dead-letter-exchange", dlx);
    if (dlrk)
        harness_arg_str(a, "x-dead-letter-routing-key", dlrk);
    return harness_args_table(a);
}

void harness_ttl_queue(amqp_connection_state_t conn, const char *q, long ttl, const char *dlq)
{
    harness_queue_delete(conn, 1, q);
    harness_args_t a;
    harness_queue_declare(conn, 1, q, 0, harness_dl_args(&a, ttl, -1, dlq ? "" : NULL, dlq));
}

amqp_table_t harness_length_args(harness_args_t *a, long maxlen, long maxbytes, char bytes_kind,
                                 const char *overflow, const char *dlq)
{
    a->n = 0;
    if (maxlen >= 0)
        harness_arg_int(a, "x-max-length", 'I', maxlen);
    if (maxbytes >= 0)
        harness_arg_int(a, "x-max-length-bytes", bytes_kind, maxbytes);
    if (overflow)
        harness_arg_str(a, "x-overflow", overflow);
    if (dlq) {
        harness_arg_str(a, "x-dead-letter-exchange", "");
        harness_arg_str(a, "x-dead-letter-routing-key", dlq);
    }
    return harness_args_table(a);
}

amqp_connection_state_t harness_open_confirms(const harness_broker_t *b, harness_confirms_t *c)
{
    amqp_connection_state_t conn = harness_open(b);
    harness_confirm_select(conn, 1);
    memset(c, 0, sizeof *c);
    return conn;
}

/* ---- raw frames used by several tests -------------------------------------------------------- */

void wb_publish_method(wbuf_t *w, uint16_t channel, const char *exchange,
                       const char *routing_key)
{
    wbuf_t a = {0};
    wb_u16(&a, 0); /* reserved-1 */
    wb_shortstr(&a, exchange);
    wb_shortstr(&a, routing_key);
    wb_u8(&a, 0); /* mandatory immediate */
    wb_method(w, channel, 60, 40, a.p, a.len);
    wb_free(&a);
}

void wb_content_header(wbuf_t *w, uint16_t channel, uint64_t body_size)
{
    size_t m = wb_frame_begin(w, RAW_FRAME_HEADER, channel);
    wb_u16(w, 60); /* class basic */
    wb_u16(w, 0);  /* weight */
    wb_u64(w, body_size);
    wb_u16(w, 0); /* no properties */
    wb_frame_end(w, m);
}

void wb_content_body(wbuf_t *w, uint16_t channel, const void *p, size_t n)
{
    size_t m = wb_frame_begin(w, RAW_FRAME_BODY, channel);
    wb_bytes(w, p, n);
    wb_frame_end(w, m);
}

void wb_publish(wbuf_t *w, uint16_t channel, const char *exchange, const char *routing_key,
                const char *body)
{
    size_t n = strlen(body);
    wb_publish_method(w, channel, exchange, routing_key);
    wb_content_header(w, channel, n);
    if (n)
        wb_content_body(w, channel, body, n);
}

void wb_channel_open(wbuf_t *w, uint16_t channel)
{
    wb_method(w, channel, 20, 10, "", 1); /* reserved-1: empty shortstr */
}

void wb_queue_declare(wbuf_t *w, uint16_t channel, const char *name, uint8_t bits)
{
    wbuf_t a = {0};
    wb_u16(&a, 0); /* reserved-1 */
    wb_shortstr(&a, name);
    wb_u8(&a, bits);
    wb_u32(&a, 0); /* arguments: empty table */
    wb_method(w, channel, 50, 10, a.p, a.len);
    wb_free(&a);
}

void wb_connection_close(wbuf_t *w, uint16_t code, const char *text)
{
    wbuf_t a = {0};
    wb_u16(&a, code);
    wb_shortstr(&a, text);
    wb_u16(&a, 0);
    wb_u16(&a, 0);
    wb_method(w, 0, 10, 50, a.p, a.len);
    wb_free(&a);
}

void raw_send_wbuf(int fd, wbuf_t *w)
{
    int rc = send_wbuf(fd, w);
    CHECKF(rc == 0, "send: %s", strerror(-rc));
}

void raw_login(int fd, raw_tune_t *ret_tune)
{
    raw_tune_t tune;
    int rc = raw_start(fd);
    CHECKF(rc == 0, "raw_start: %s", strerror(-rc));
    CHECK(raw_send_start_ok(fd, "PLAIN", "\0guest\0guest", 12, true) == 0);
    rc = raw_read_tune(fd, &tune, 10000);
    CHECKF(rc == 0, "raw_read_tune: %s", strerror(-rc));
    if (ret_tune)
        *ret_tune = tune;
}

void raw_expect_close_ok(int fd)
{
    raw_frame_t f;
    int rc = raw_read_frame(fd, &f, 5000);
    CHECKF(rc == 0, "waiting for connection.close-ok: %s", strerror(-rc));
    CHECKF(f.type == RAW_FRAME_METHOD && f.channel == 0 && f.class_id == 10 && f.method_id == 51,
           "frame type %u channel %u %u.%u, want connection.close-ok 10.51 on channel 0", f.type,
           f.channel, f.class_id, f.method_id);
    CHECK_EQ(f.size, 4);
    raw_frame_free(&f);
}
