/* inproc.c — the in-process broker of inproc.h and the client side of one exchange with it: a
 * libuv TCP client on the broker's own loop (so one thread runs both ends and a run is a
 * sequence of loop turns), a 1 ms timer deciding when the broker has said all it will.
 * Owns the scratch directory; the broker's objects are server.c's and api.c's. */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "broker/admin/http.h"
#include "broker/amqp/conn.h"
#include "lib/list.h"
#include "lib/log.h"
#include "tests/fuzz/inproc.h"

#define INPROC_MIN_FREE (1024ull << 20) /* free space wanted under the data directory */

static struct inproc *s_at_exit; /* removed at exit */
static FILE *s_trace;            /* the real stderr when $WARREN_FUZZ_TRACE is set, else NULL */

static void die(const char *what, int err)
{
    fprintf(stderr, "fuzz inproc: %s: %s\n", what, err ? strerror(err) : "failed");
    abort();
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_tree(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A loopback port free now (the management API takes a port, not 0). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        die("a free loopback port", errno);
    close(fd);
    return ntohs(a.sin_port);
}

static int tcp_port(uv_tcp_t *h)
{
    struct sockaddr_storage a;
    int len = sizeof a;
    if (uv_tcp_getsockname(h, (struct sockaddr *)&a, &len) < 0)
        die("getsockname", 0);
    return ntohs(((struct sockaddr_in *)&a)->sin_port);
}

static void on_stop(void *arg)
{
    struct inproc *ip = arg;
    admin_stop(&ip->admin);
}

static void boot(struct inproc *ip)
{
    struct config cfg;
    config_defaults(&cfg);
    cfg.listeners[0] = (struct config_listener){.name = "default", .addr = "127.0.0.1"};
    cfg.nlisteners = 1;
    cfg.data_dir = ip->data;
    cfg.sync = false;
    cfg.mgmt_port = cfg.prom_port = -1;
    cfg.disk_free_limit = 0; /* no disk alarm from a small tmpfs: publishers stay unblocked */
    if (server_start(&ip->srv, &ip->loop, &cfg) < 0)
        die("server_start", 0);
    /* libFuzzer owns SIGINT and SIGTERM (it prints its stats on them). */
    uv_signal_stop(&ip->srv.sig_int);
    uv_signal_stop(&ip->srv.sig_term);
    ip->amqp_port = tcp_port(&ip->srv.listeners[0]);
    if (ip->with_admin) {
        memset(&ip->admin, 0, sizeof ip->admin);
        ip->http_port = free_port();
        struct http_ports ports = {.ip = "127.0.0.1", .port = ip->http_port, .ssl_port = -1};
        if (admin_start(&ip->admin, &ip->loop, &ip->srv.b, &ports, ip->srv.cfg.loopback_users) < 0)
            die("admin_start", 0);
        ip->srv.on_stop = on_stop;
        ip->srv.on_stop_arg = ip;
    }
    ip->up = true;
}

static void at_exit(void)
{
    if (s_at_exit)
        inproc_stop(s_at_exit);
}

void inproc_start(struct inproc *ip, bool with_admin)
{
    memset(ip, 0, sizeof *ip);
    ip->with_admin = with_admin;
    if (getenv("WARREN_FUZZ_TRACE"))
        s_trace = stderr;
    if (!getenv("WARREN_FUZZ_LOG")) {
        /* The broker logs a line per connection: quiet. libFuzzer and the sanitizers write
         * through their own handle on fd 2, so their reports still show. */
        FILE *devnull = fopen("/dev/null", "w");
        if (devnull)
            stderr = devnull;
        else
            log_threshold = LOG_ERROR;
    }
    /* A tmpfs, unless it is small (a container's 64 MB /dev/shm): the broker's storage fails
     * for good when its disk fills, and 500 runs may keep that much. */
    const char *bases[] = {getenv("WARREN_FUZZ_DIR"), "/dev/shm", getenv("TMPDIR"), "/tmp"};
    for (size_t i = 0; i < sizeof bases / sizeof bases[0] && !ip->dir[0]; i++) {
        struct statvfs fs;
        if (!bases[i] || access(bases[i], W_OK) != 0)
            continue;
        if (i > 0 && (statvfs(bases[i], &fs) != 0 ||
                      (uint64_t)fs.f_bavail * fs.f_frsize < INPROC_MIN_FREE))
            continue;
        snprintf(ip->dir, sizeof ip->dir, "%s/warren-fuzz-XXXXXX", bases[i]);
        if (!mkdtemp(ip->dir))
            ip->dir[0] = 0;
    }
    if (!ip->dir[0])
        die("a scratch directory (set WARREN_FUZZ_DIR)", errno);
    snprintf(ip->data, sizeof ip->data, "%s/data", ip->dir);
    if (uv_loop_init(&ip->loop) < 0)
        die("uv_loop_init", 0);
    boot(ip);
    s_at_exit = ip;
    atexit(at_exit);
}

void inproc_restart(struct inproc *ip)
{
    if (ip->up) {
        server_stop(&ip->srv);
        uv_run(&ip->loop, UV_RUN_DEFAULT);
        server_free(&ip->srv);
        ip->up = false;
    }
    rm_tree(ip->data);
    boot(ip);
}

void inproc_stop(struct inproc *ip)
{
    if (ip->up) {
        server_stop(&ip->srv);
        uv_run(&ip->loop, UV_RUN_DEFAULT);
        server_free(&ip->srv);
        ip->up = false;
    }
    if (ip->dir[0])
        rm_tree(ip->dir);
    ip->dir[0] = 0;
    if (s_at_exit == ip)
        s_at_exit = NULL;
}

/* ---- one exchange ----------------------------------------------------------------------- */

struct xfer {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t timer;
    const uint8_t *data; /* borrowed: the fuzz input */
    size_t size, received;
    uint64_t start, last; /* loop ms: the start, the last progress */
    unsigned quiet_ms, max_ms;
    bool written, eof, done;
    int closes;           /* handles still closing */
};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char sink[65536]; /* read and dropped */
    *buf = uv_buf_init(sink, sizeof sink);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct xfer *x = s->data;
    if (n < 0) {
        x->eof = x->done = true;
        uv_read_stop(s);
        return;
    }
    x->received += (size_t)n;
    x->last = uv_now(s->loop);
}

static void on_written(uv_write_t *w, int status)
{
    (void)status; /* the broker may close before reading it all */
    struct xfer *x = w->data;
    x->written = true;
    x->last = uv_now(x->tcp.loop);
}

static void on_connect(uv_connect_t *c, int status)
{
    struct xfer *x = c->data;
    if (status < 0) {
        x->done = true;
        return;
    }
    uv_read_start((uv_stream_t *)&x->tcp, on_alloc, on_read);
    uv_buf_t b = uv_buf_init((char *)x->data, (unsigned)x->size);
    x->write.data = x;
    if (x->size == 0 || uv_write(&x->write, (uv_stream_t *)&x->tcp, &b, 1, on_written) < 0)
        x->written = true;
}

static void on_tick(uv_timer_t *t)
{
    struct xfer *x = t->data;
    uint64_t now = uv_now(t->loop);
    if (now - x->start >= x->max_ms ||
        (x->written && x->received && now - x->last >= x->quiet_ms))
        x->done = true;
}

static void on_closed(uv_handle_t *h)
{
    struct xfer *x = h->data;
    x->closes--;
}

/* Fast-forwards the clock of the broker's AMQP connections: a timer that is set (handshake
 * timeout, the 3 s close after a failed handshake, the close-ok wait, a throttled login's
 * answer, heartbeats) fires now, as it would once its time came. Only those timers: the queues'
 * and the storage's keep their time. */
static void warp_conn_timers(struct inproc *ip)
{
    struct list *pos;
    list_foreach(pos, &ip->srv.conns) {
        struct conn *c = list_entry(pos, struct conn, link);
        if (uv_is_active((uv_handle_t *)&c->timer) && c->timer.timer_cb)
            uv_timer_start(&c->timer, c->timer.timer_cb, 0, 0);
    }
}

/* Has the broker let go of every client connection? */
static bool broker_idle(struct inproc *ip)
{
    if (!list_empty(&ip->srv.conns))
        return false;
    return !ip->with_admin || list_empty(&ip->admin.http.conns);
}

size_t inproc_exchange(struct inproc *ip, int port, const uint8_t *data, size_t size,
                       unsigned quiet_ms, unsigned max_ms)
{
    struct xfer x = {.data = data, .size = size, .quiet_ms = quiet_ms, .max_ms = max_ms};
    uv_loop_t *loop = &ip->loop;
    uv_update_time(loop);
    x.start = x.last = uv_now(loop);
    uint64_t t0 = x.start;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    uv_tcp_init(loop, &x.tcp);
    uv_timer_init(loop, &x.timer);
    x.tcp.data = x.timer.data = x.connect.data = &x;
    uv_tcp_nodelay(&x.tcp, 1);
    if (uv_tcp_connect(&x.connect, &x.tcp, (struct sockaddr *)&addr, on_connect) < 0)
        x.done = true;
    uv_timer_start(&x.timer, on_tick, 1, 1);
    while (!x.done)
        uv_run(loop, UV_RUN_ONCE);
    x.closes = 2;
    uv_close((uv_handle_t *)&x.tcp, on_closed);
    /* The timer keeps ticking while the broker lets go of its end (a connection it reads from
     * sees the close at once; one that stopped reading waits for a timer, brought forward after
     * 2 ms), then closes. */
    x.start = uv_now(loop);
    x.done = false;
    x.written = false; /* only the deadline ends this phase */
    x.max_ms = 1000;
    while (x.closes > 1 || (!broker_idle(ip) && !x.done)) {
        uv_run(loop, UV_RUN_ONCE);
        if (!broker_idle(ip) && uv_now(loop) - x.start >= 2)
            warp_conn_timers(ip);
    }
    uv_close((uv_handle_t *)&x.timer, on_closed);
    while (x.closes > 0)
        uv_run(loop, UV_RUN_ONCE);
    if (s_trace)
        fprintf(s_trace, "inproc: wrote %zu, read %zu, %s after %llu ms%s\n", size, x.received,
                x.eof ? "closed by the broker" : "quiet or out of time",
                (unsigned long long)(uv_now(loop) - t0), broker_idle(ip) ? "" : "; restart");
    if (!broker_idle(ip))
        inproc_restart(ip); /* a connection that does not go: start afresh */
    /* Failed logins from 127.0.0.1 slow down the next ones: forget them between runs. */
    auth_throttle_free(&ip->srv.throttle);
    return x.received;
}
