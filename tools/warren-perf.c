/* warren-perf.c — a load generator for any AMQP 0-9-1 broker, in the spirit of RabbitMQ's
 * PerfTest: producers and consumers, each on its own connection and thread, over an exchange
 * and queues it declares itself (and deletes at the end unless --keep). Reports send, receive
 * and confirm rates and end-to-end latency from a CLOCK_MONOTONIC stamp at the start of each
 * body. Owns the options, the topology and the worker threads; rabbitmq-c owns each connection,
 * perf_wire.c the hot-path writes (frames encoded by protocol/), perf_hist.c the latency
 * histograms, perf_bind.c the keys of --extra-bindings.
 * Invariant: a worker's counters are written by that worker only (main reads them relaxed); its
 * histogram is read only after the worker has been joined. */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include) && __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/ssl_socket.h>
#include <rabbitmq-c/tcp_socket.h>
#else
#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#endif

#include <openssl/ssl.h>

#include "perf_bind.h"
#include "perf_hist.h"
#include "perf_opts.h"
#include "perf_wire.h"

#define CHANNEL 1
#define FLUSH_AT (32u * 1024u)        /* publishers write once this much is buffered */
#define POLL_NS 100000000ull          /* longest a worker waits before re-checking stop */
#define STOP_GRACE_S 5                /* how long main waits for workers after stop */
#define READY_TIMEOUT_S 30            /* how long connecting and consuming may take */
#define READ_EVERY_NS 10000000ull     /* a publisher without confirms reads at least this often */
#define MS_NS 1000000ull

/* One run: shared, read-mostly state and the coordination between main and the workers. */
struct run {
    const struct opts *o;     /* borrowed: main's, outlives the run */
    char (*qname)[256];       /* owned: queue i's name */
    char (*pubkey)[256];      /* owned: routing key that reaches queue i */
    char (*bindkey)[256];     /* owned: binding key of queue i */
    struct wire_pub *pub;     /* owned: the publish frames that reach queue i (o->queues),
                                 or with --header-values one per header value (queue i % queues) */
    unsigned npub;
    unsigned queues_declared; /* how many of qname[] exist because of us (main only) */
    bool exchange_declared;   /* main only */
    char xqname[256];         /* the queue holding --extra-bindings */
    bool extra_declared;      /* main only: xqname exists because of us */
    struct bind_result bound; /* main only: how the extra bindings went */
    double extra_delete_s;    /* main only: queue.delete of xqname took this long; < 0 = not */
    uint32_t run_id;          /* in every body we send, so leftovers are told apart */
    uint8_t delivery_mode;
    uint64_t t0;              /* when producers were let go (written before `go`) */
    atomic_bool stop;
    pthread_mutex_t lock;
    pthread_cond_t cond;      /* CLOCK_MONOTONIC; signalled on ready, go, fail */
    unsigned ready;           /* under lock: workers done with their set-up */
    bool go;                  /* under lock: producers may publish */
    bool failed;              /* under lock: error[] holds the first failure */
    char error[512];
    atomic_uint blocked;      /* connection.blocked notifications seen */
};

enum worker_kind { W_PRODUCER, W_CONSUMER };

struct worker {
    alignas(64) _Atomic uint64_t sent, confirmed, nacked, received; /* written by this worker */
    struct run *run;          /* borrowed: outlives every worker (joined or abandoned at exit) */
    enum worker_kind kind;
    unsigned id;
    pthread_t tid;
    bool started, joined;
    amqp_connection_state_t conn; /* owned */
    struct wbuf wb;           /* owned */
    struct hist hist;         /* consumer: delivery latency; producer: confirm latency */
    /* producer: confirm window, a ring of publish times indexed by tag % confirm, 0 = settled */
    uint64_t *pending;        /* owned */
    uint64_t next_tag;        /* delivery tag of the next publish (tags start at 1) */
    uint64_t low;             /* lowest tag that may be unsettled */
    uint64_t unflushed;       /* publishes in wb not yet counted in sent */
    uint64_t last_read;       /* when the producer last looked at its socket */
    /* read by main after join */
    uint64_t foreign;         /* deliveries not from this run (or shorter than HEADER_LEN) */
    uint64_t redelivered;
    uint64_t bad_confirms;    /* acks/nacks for unknown or already settled tags */
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* Print "warren-perf: <msg>." on stderr, without doubling a full stop the broker supplied. */
static void print_error(const char *msg)
{
    size_t len = strlen(msg);
    bool stop = len && (msg[len - 1] == '.' || msg[len - 1] == '!' || msg[len - 1] == '?');
    fprintf(stderr, "warren-perf: %s%s\n", msg, stop ? "" : ".");
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct timeval ns_to_tv(uint64_t ns)
{
    return (struct timeval){.tv_sec = (time_t)(ns / 1000000000ull),
                            .tv_usec = (suseconds_t)(ns % 1000000000ull / 1000)};
}

static void bump(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static uint64_t get(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* ---- run coordination --------------------------------------------------------------------- */

static void run_fail(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Record the first failure and stop everything. */
static void run_fail(struct run *r, const char *fmt, ...)
{
    pthread_mutex_lock(&r->lock);
    if (!r->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->error, sizeof r->error, fmt, ap);
        va_end(ap);
        r->failed = true;
    }
    atomic_store(&r->stop, true);
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static bool stopping(const struct run *r)
{
    return atomic_load_explicit(&r->stop, memory_order_relaxed);
}

static void worker_ready(struct worker *w)
{
    struct run *r = w->run;
    pthread_mutex_lock(&r->lock);
    r->ready++;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

/* Block until main lets producers go; false when the run stopped first. */
static bool wait_go(struct run *r)
{
    pthread_mutex_lock(&r->lock);
    while (!r->go && !stopping(r))
        pthread_cond_wait(&r->cond, &r->lock);
    bool go = r->go && !stopping(r);
    pthread_mutex_unlock(&r->lock);
    return go;
}

/* Wait until `want` workers are ready. Returns 0, or -1 on failure, interrupt or timeout. */
static int wait_ready(struct run *r, unsigned want)
{
    uint64_t deadline = now_ns() + READY_TIMEOUT_S * 1000000000ull;
    int rc = 0;
    pthread_mutex_lock(&r->lock);
    while (r->ready < want && !r->failed) {
        uint64_t now = now_ns();
        if (interrupted) {
            rc = -1;
            break;
        }
        if (now >= deadline) {
            snprintf(r->error, sizeof r->error,
                     "only %u of %u clients finished connecting within %d s; is the broker "
                     "overloaded?", r->ready, want, READY_TIMEOUT_S);
            r->failed = true;
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 200000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&r->cond, &r->lock, &ts);
    }
    if (r->failed)
        rc = -1;
    pthread_mutex_unlock(&r->lock);
    return rc;
}

/* ---- connections -------------------------------------------------------------------------- */

static void describe_close(const amqp_method_t *m, char *buf, size_t n)
{
    if (m->id == AMQP_CONNECTION_CLOSE_METHOD) {
        const amqp_connection_close_t *c = m->decoded;
        snprintf(buf, n, "the broker closed the connection: %u %.*s", c->reply_code,
                 (int)c->reply_text.len, (const char *)c->reply_text.bytes);
    } else if (m->id == AMQP_CHANNEL_CLOSE_METHOD) {
        const amqp_channel_close_t *c = m->decoded;
        snprintf(buf, n, "the broker closed the channel: %u %.*s", c->reply_code,
                 (int)c->reply_text.len, (const char *)c->reply_text.bytes);
    } else {
        snprintf(buf, n, "the broker answered with unexpected method %s",
                 wire_method_name(m->id));
    }
}

static void describe_reply(amqp_rpc_reply_t r, char *buf, size_t n)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL: snprintf(buf, n, "no error"); break;
    case AMQP_RESPONSE_NONE: snprintf(buf, n, "no reply from the broker"); break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(buf, n, "%s", amqp_error_string2(r.library_error));
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION: describe_close(&r.reply, buf, n); break;
    }
}

/* The reply code of the close that failed the last RPC on c, or 0. */
static unsigned reply_code(amqp_connection_state_t c)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
    if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION)
        return 0;
    if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD)
        return ((const amqp_connection_close_t *)r.reply.decoded)->reply_code;
    if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
        return ((const amqp_channel_close_t *)r.reply.decoded)->reply_code;
    return 0;
}

/* True when the last RPC on c succeeded; otherwise "<what> failed: <why>" goes to err. */
static bool rpc_ok(amqp_connection_state_t c, char *err, size_t n, const char *what)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return true;
    char why[300];
    describe_reply(r, why, sizeof why);
    snprintf(err, n, "%.380s failed: %s", what, why);
    return false;
}

/* rabbitmq-c reports any failed connect as "a socket error occurred". To say which, try
 * once more with a plain socket: returns the errno of the last address tried, or 0. */
static int probe_connect(const char *host, int port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai, *p;
    char portstr[16];
    int e = 0;
    snprintf(portstr, sizeof portstr, "%d", port);
    if (getaddrinfo(host, portstr, &hints, &ai) != 0)
        return 0;
    for (p = ai; p; p = p->ai_next) {
        int fd = socket(p->ai_family, p->ai_socktype | SOCK_NONBLOCK, p->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        e = 0;
        if (connect(fd, p->ai_addr, p->ai_addrlen) < 0) {
            e = errno;
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            socklen_t len = sizeof e;
            if (e == EINPROGRESS)
                e = poll(&pf, 1, 5000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0
                        ? e
                        : ETIMEDOUT;
        }
        close(fd);
        if (!e)
            break;
    }
    freeaddrinfo(ai);
    return e;
}

/* Connect, log in and open channel 1. Returns the connection, or NULL with one sentence in
 * err. name becomes the connection_name client property (shown by rabbitmqctl and logs). */
static bool run_opts_tls; /* --uri amqps://: set once, before any thread starts */

/* rabbitmq-c gives each TLS socket an SSL_CTX of its own (amqp_ssl_socket_get_context) but does
 * not hand out the SSL session made from it; this info callback, called with the session during
 * its handshake, records it in the context's app data. */
static void note_ssl(const SSL *ssl, int where, int ret)
{
    (void)where, (void)ret;
    SSL_CTX_set_app_data(SSL_get_SSL_CTX(ssl), (void *)ssl);
}

/* The OpenSSL session of a TLS connection, for perf_wire's writes; NULL over plain TCP. */
static void *perf_ssl(amqp_connection_state_t c)
{
    return run_opts_tls ? SSL_CTX_get_app_data((SSL_CTX *)amqp_ssl_socket_get_context(
                              amqp_get_socket(c)))
                        : NULL;
}

static amqp_connection_state_t perf_connect(const struct opts *o, const char *name, char *err,
                                            size_t n)
{
    amqp_connection_state_t c = amqp_new_connection();
    if (!c) {
        snprintf(err, n, "out of memory");
        return NULL;
    }
    amqp_socket_t *s = o->tls ? amqp_ssl_socket_new(c) : amqp_tcp_socket_new(c);
    if (s && o->tls) {
        SSL_CTX_set_info_callback(amqp_ssl_socket_get_context(s), note_ssl);
        amqp_ssl_socket_set_verify_peer(s, o->cacert != NULL);
        amqp_ssl_socket_set_verify_hostname(s, o->cacert != NULL);
        if (o->cacert && amqp_ssl_socket_set_cacert(s, o->cacert) != AMQP_STATUS_OK) {
            snprintf(err, n, "cannot use --cacert '%s' (not a PEM certificate file?)",
                     o->cacert);
            goto fail;
        }
    }
    struct timeval tv = {.tv_sec = 5};
    int rc = s ? amqp_socket_open_noblock(s, o->host, o->port, &tv) : AMQP_STATUS_NO_MEMORY;
    if (rc != AMQP_STATUS_OK) {
        int e = rc == AMQP_STATUS_SOCKET_ERROR ? probe_connect(o->host, o->port) : 0;
        snprintf(err, n, "cannot connect to %s:%d: %s", o->host, o->port,
                 e ? strerror(e) : amqp_error_string2(rc));
        goto fail;
    }
    amqp_table_entry_t caps[] = {
        {amqp_cstring_bytes("connection.blocked"), {AMQP_FIELD_KIND_BOOLEAN, {.boolean = 1}}},
        {amqp_cstring_bytes("consumer_cancel_notify"), {AMQP_FIELD_KIND_BOOLEAN, {.boolean = 1}}},
        {amqp_cstring_bytes("authentication_failure_close"),
         {AMQP_FIELD_KIND_BOOLEAN, {.boolean = 1}}},
    };
    amqp_table_entry_t props[] = {
        {amqp_cstring_bytes("connection_name"),
         {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes(name)}}},
        {amqp_cstring_bytes("capabilities"),
         {AMQP_FIELD_KIND_TABLE, {.table = {3, caps}}}},
    };
    amqp_table_t ptab = {2, props};
    struct timeval hs = {.tv_sec = 10};
    amqp_set_handshake_timeout(c, &hs);
    amqp_rpc_reply_t r = amqp_login_with_properties(c, o->vhost, 0, 131072, 0, &ptab,
                                                    AMQP_SASL_METHOD_PLAIN, o->user,
                                                    o->password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        char why[300];
        describe_reply(r, why, sizeof why);
        snprintf(err, n, "login to %s:%d as '%s' on vhost '%s' failed: %s", o->host, o->port,
                 o->user, o->vhost, why);
        goto fail;
    }
    struct timeval rpc = {.tv_sec = 10};
    amqp_set_rpc_timeout(c, &rpc);
    amqp_channel_open(c, CHANNEL);
    if (!rpc_ok(c, err, n, "channel.open"))
        goto fail;
    return c;
fail:
    amqp_destroy_connection(c);
    return NULL;
}

/* Close politely (bounded by the RPC timeout) and free. Accepts NULL. */
static void perf_disconnect(amqp_connection_state_t c, bool polite)
{
    if (!c)
        return;
    if (polite) {
        struct timeval rpc = {.tv_sec = 2};
        amqp_set_rpc_timeout(c, &rpc);
        (void)amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(c);
}

/* ---- topology ----------------------------------------------------------------------------- */

/* Names: queue i is "<prefix><i>"; direct routes by the queue name, topic by "perf.<i>.m"
 * against "perf.<i>.*", fanout ignores keys. Then the publish frames for each route. Returns 0
 * or a wire_pub_init error. */
static int make_names(struct run *r)
{
    const struct opts *o = r->o;
    r->qname = calloc(o->queues, sizeof *r->qname);
    r->pubkey = calloc(o->queues, sizeof *r->pubkey);
    r->bindkey = calloc(o->queues, sizeof *r->bindkey);
    if (!r->qname || !r->pubkey || !r->bindkey)
        return -ENOMEM;
    for (unsigned i = 0; i < o->queues; i++) {
        snprintf(r->qname[i], sizeof r->qname[i], "%s%u", o->queue_prefix, i);
        switch (o->ex_type) {
        case EX_DIRECT:
            strcpy(r->pubkey[i], r->qname[i]);
            strcpy(r->bindkey[i], r->qname[i]);
            break;
        case EX_TOPIC:
            snprintf(r->pubkey[i], sizeof r->pubkey[i], "perf.%u.m", i);
            snprintf(r->bindkey[i], sizeof r->bindkey[i], "perf.%u.*", i);
            break;
        case EX_FANOUT:
        case EX_DEDUP:
        case EX_TYPE_MAX: break;
        }
    }
    snprintf(r->xqname, sizeof r->xqname, "%sextra", o->queue_prefix);
    r->npub = o->header_values ? o->header_values : o->queues;
    r->pub = calloc(r->npub, sizeof *r->pub);
    if (!r->pub)
        return -ENOMEM;
    for (unsigned i = 0; i < r->npub; i++) {
        char v[16];
        snprintf(v, sizeof v, "t%u", i);
        int rc = wire_pub_init(&r->pub[i], CHANNEL, o->exchange, r->pubkey[i % o->queues],
                               r->delivery_mode, o->expiration,
                               o->header_values ? o->header_key : NULL, v,
                               o->dedup_ids ? "x-deduplication-header" : NULL, o->size);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Declare the queue for --extra-bindings and bind it that many times, timing it into r->bound.
 * The queue is durable with -f so that a persistent run also measures durable bindings.
 * Returns 0, or -1 with err set. */
static int declare_extra(struct run *r, amqp_connection_state_t c, char *err, size_t n)
{
    const struct opts *o = r->o;
    char what[400];
    amqp_queue_declare(c, CHANNEL, amqp_cstring_bytes(r->xqname), 0, o->persistent, 0, 0,
                       amqp_empty_table);
    snprintf(what, sizeof what, "queue.declare '%s'", r->xqname);
    if (!rpc_ok(c, err, n, what))
        return -1;
    r->extra_declared = true;
    if (!o->json && !o->quiet) {
        printf("binding %u extra %s to '%s' (no-wait, a round trip every %u)\n",
               o->extra_bindings, o->ex_type == EX_TOPIC ? "patterns" : "keys", r->xqname,
               BIND_BATCH);
        fflush(stdout);
    }
    struct bind_job job = {
        .conn = c,
        .ssl = perf_ssl(c),
        .channel = CHANNEL,
        .exchange = o->exchange,
        .queue = r->xqname,
        .avoid_prefix = o->queue_prefix,
        .type = o->ex_type,
        .seed = r->run_id,
        .count = o->extra_bindings,
        .stop = &r->stop,
        .interrupted = &interrupted,
        .progress = o->json || o->quiet ? NULL : stdout,
    };
    if (bind_extra(&job, &r->bound, err, n) < 0)
        return -1;
    if (!o->json) {
        printf("extra bindings: %u in %.3f s (%.0f/s)\n", r->bound.bound, r->bound.seconds,
               r->bound.seconds > 0 ? r->bound.bound / r->bound.seconds : 0.0);
        if (r->bound.stray_ok)
            printf("note: the broker answered %" PRIu64 " no-wait queue.bind with bind-ok\n",
                   r->bound.stray_ok);
        fflush(stdout);
    }
    return 0;
}

/* Declare the exchange, the queues and their bindings. Returns 0, or -1 with err set; what was
 * declared before a failure is recorded in r so that teardown() can remove it. */
static int declare_topology(struct run *r, char *err, size_t n)
{
    const struct opts *o = r->o;
    char what[400];
    amqp_connection_state_t c = perf_connect(o, "warren-perf setup", err, n);
    if (!c)
        return -1;
    if (o->declare_exchange) {
        amqp_table_entry_t size = {.key = amqp_cstring_bytes("x-cache-size"),
                                   .value = {.kind = AMQP_FIELD_KIND_I64,
                                             .value.i64 = o->dedup_cache}};
        amqp_table_t xargs = {o->ex_type == EX_DEDUP, &size};
        amqp_exchange_declare(c, CHANNEL, amqp_cstring_bytes(o->exchange),
                              amqp_cstring_bytes(opts_ex_type_names[o->ex_type]), 0, o->persistent,
                              0, 0, xargs);
        snprintf(what, sizeof what, "exchange.declare '%s' (%s)", o->exchange,
                 opts_ex_type_names[o->ex_type]);
        if (!rpc_ok(c, err, n, what)) {
            if (reply_code(c) == AMQP_NOT_IMPLEMENTED) {
                size_t len = strlen(err);
                snprintf(err + len, n - len, " (use --no-declare-exchange to publish through "
                                             "the default exchange instead)");
            }
            goto fail;
        }
        r->exchange_declared = true;
    }
    amqp_table_entry_t qargs[MAX_QUEUE_ARGS];
    for (unsigned k = 0; k < o->nqargs; k++) { /* --queue-arg: bool, long or string */
        const char *v = o->qarg_val[k];
        char *end;
        long long num = strtoll(v, &end, 10);
        qargs[k].key = amqp_cstring_bytes(o->qarg_key[k]);
        if (!strcmp(v, "true") || !strcmp(v, "false")) {
            qargs[k].value.kind = AMQP_FIELD_KIND_BOOLEAN;
            qargs[k].value.value.boolean = v[0] == 't';
        } else if (*v && !*end) {
            qargs[k].value.kind = AMQP_FIELD_KIND_I64;
            qargs[k].value.value.i64 = num;
        } else {
            qargs[k].value.kind = AMQP_FIELD_KIND_UTF8;
            qargs[k].value.value.bytes = amqp_cstring_bytes(v);
        }
    }
    amqp_table_t qtable = {(int)o->nqargs, qargs};
    for (unsigned i = 0; i < o->queues; i++) {
        amqp_queue_declare(c, CHANNEL, amqp_cstring_bytes(r->qname[i]), 0, o->persistent, 0, 0,
                           qtable);
        snprintf(what, sizeof what, "queue.declare '%s'", r->qname[i]);
        if (!rpc_ok(c, err, n, what))
            goto fail;
        r->queues_declared = i + 1;
        if (!o->declare_exchange)
            continue;
        amqp_queue_bind(c, CHANNEL, amqp_cstring_bytes(r->qname[i]),
                        amqp_cstring_bytes(o->exchange), amqp_cstring_bytes(r->bindkey[i]),
                        amqp_empty_table);
        snprintf(what, sizeof what, "queue.bind '%s' to '%s' with key '%s'", r->qname[i],
                 o->exchange, r->bindkey[i]);
        if (!rpc_ok(c, err, n, what))
            goto fail;
    }
    if (o->extra_bindings && declare_extra(r, c, err, n) < 0)
        goto fail;
    perf_disconnect(c, true);
    return 0;
fail:
    perf_disconnect(c, false);
    return -1;
}

/* After a channel-level error: acknowledge the close and reopen the channel. */
static bool reopen_channel(amqp_connection_state_t c)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
    if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION || r.reply.id != AMQP_CHANNEL_CLOSE_METHOD)
        return false;
    amqp_channel_close_ok_t ok = {0};
    if (amqp_send_method(c, CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != AMQP_STATUS_OK)
        return false;
    amqp_channel_open(c, CHANNEL);
    return amqp_get_rpc_reply(c).reply_type == AMQP_RESPONSE_NORMAL;
}

/* Delete what declare_topology() created. Prints one line per failure; returns the count. */
static int teardown(struct run *r)
{
    const struct opts *o = r->o;
    char err[700], what[300];
    int failures = 0;
    if (!r->queues_declared && !r->exchange_declared && !r->extra_declared)
        return 0;
    amqp_connection_state_t c = perf_connect(o, "warren-perf teardown", err, sizeof err);
    if (!c) {
        char msg[800];
        snprintf(msg, sizeof msg, "cannot remove the queues and exchange: %s", err);
        print_error(msg);
        return 1;
    }
    if (r->extra_declared) {
        /* first, and timed: deleting the queue drops every extra binding at once */
        struct timeval rpc = {.tv_sec = BIND_SYNC_TIMEOUT_S};
        amqp_set_rpc_timeout(c, &rpc);
        uint64_t t = now_ns();
        amqp_queue_delete_ok_t *ok = amqp_queue_delete(c, CHANNEL, amqp_cstring_bytes(r->xqname),
                                                       0, 0);
        snprintf(what, sizeof what, "queue.delete '%s' (with the extra bindings)", r->xqname);
        if (rpc_ok(c, err, sizeof err, what)) {
            r->extra_delete_s = (double)(now_ns() - t) / 1e9;
            if (ok && ok->message_count) {
                snprintf(err, sizeof err, "%u messages reached '%s', so an extra binding matched "
                         "a producer key (a bug in warren-perf or in the broker's routing)",
                         ok->message_count, r->xqname);
                print_error(err);
                failures++;
            }
        } else {
            print_error(err);
            failures++;
            if (!reopen_channel(c))
                goto out;
        }
    }
    for (unsigned i = 0; i < r->queues_declared; i++) {
        amqp_queue_delete(c, CHANNEL, amqp_cstring_bytes(r->qname[i]), 0, 0);
        snprintf(what, sizeof what, "queue.delete '%s'", r->qname[i]);
        if (rpc_ok(c, err, sizeof err, what))
            continue;
        print_error(err);
        failures++;
        if (!reopen_channel(c))
            goto out;
    }
    if (r->exchange_declared) {
        amqp_exchange_delete(c, CHANNEL, amqp_cstring_bytes(o->exchange), 0);
        snprintf(what, sizeof what, "exchange.delete '%s'", o->exchange);
        if (!rpc_ok(c, err, sizeof err, what)) {
            print_error(err);
            failures++;
        }
    }
out:
    perf_disconnect(c, true);
    return failures;
}

/* ---- producer ----------------------------------------------------------------------------- */

/* Settle confirm `tag` (ack or nack) if it is outstanding; false when it is not. */
static bool settle(struct worker *w, uint64_t tag, bool nack, uint64_t now)
{
    uint64_t *slot = &w->pending[tag % w->run->o->confirm];
    if (tag < w->low || tag >= w->next_tag || !*slot)
        return false;
    if (nack) {
        bump(&w->nacked, 1);
    } else {
        bump(&w->confirmed, 1);
        hist_record(&w->hist, now > *slot ? now - *slot : 0);
    }
    *slot = 0;
    return true;
}

static void on_confirm(struct worker *w, uint64_t tag, bool multiple, bool nack)
{
    uint64_t now = now_ns();
    if (tag >= w->next_tag) {
        w->bad_confirms++;
        if (!multiple)
            return;
        tag = w->next_tag - 1;
    }
    if (multiple) {
        for (uint64_t t = w->low; t <= tag; t++)
            settle(w, t, nack, now);
    } else if (!settle(w, tag, nack, now)) {
        w->bad_confirms++;
    }
    while (w->low < w->next_tag && !w->pending[w->low % w->run->o->confirm])
        w->low++;
}

/* Handle one frame arriving at a producer. Returns 0, or -1 after run_fail(). */
static int producer_frame(struct worker *w, const amqp_frame_t *f)
{
    if (f->frame_type != AMQP_FRAME_METHOD)
        return 0; /* content of a basic.return: nothing to do */
    const amqp_method_t *m = &f->payload.method;
    char why[300];
    switch (m->id) {
    case AMQP_BASIC_ACK_METHOD: {
        const amqp_basic_ack_t *a = m->decoded;
        if (w->pending)
            on_confirm(w, a->delivery_tag, a->multiple, false);
        return 0;
    }
    case AMQP_BASIC_NACK_METHOD: {
        const amqp_basic_nack_t *a = m->decoded;
        if (w->pending)
            on_confirm(w, a->delivery_tag, a->multiple, true);
        return 0;
    }
    case AMQP_CONNECTION_BLOCKED_METHOD:
        atomic_fetch_add(&w->run->blocked, 1);
        return 0;
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
        describe_close(m, why, sizeof why);
        run_fail(w->run, "producer %u: %s", w->id, why);
        return -1;
    default: return 0;
    }
}

/* Wait up to timeout_ns for a frame, then handle every frame already buffered.
 * Returns 0, or -1 after run_fail(). */
static int producer_poll(struct worker *w, uint64_t timeout_ns)
{
    amqp_connection_state_t c = w->conn;
    struct timeval tv = ns_to_tv(timeout_ns < POLL_NS ? timeout_ns : POLL_NS);
    for (bool first = true;; first = false) {
        if (!first) {
            if (!amqp_frames_enqueued(c) && !amqp_data_in_buffer(c))
                return 0;
            tv = (struct timeval){0};
        }
        amqp_frame_t f;
        int rc = amqp_simple_wait_frame_noblock(c, &f, &tv);
        if (rc == AMQP_STATUS_TIMEOUT)
            return 0;
        if (rc != AMQP_STATUS_OK) {
            if (!stopping(w->run))
                run_fail(w->run, "producer %u: lost the connection: %s", w->id,
                         amqp_error_string2(rc));
            return -1;
        }
        if (producer_frame(w, &f) < 0)
            return -1;
    }
}

/* Write what is buffered and count it as sent. Returns 0, or -1 after run_fail(). */
static int producer_write(struct worker *w)
{
    int rc = wbuf_flush(&w->wb);
    if (rc < 0) {
        if (!stopping(w->run))
            run_fail(w->run, "producer %u: cannot write to the broker: %s", w->id, strerror(-rc));
        return -1;
    }
    bump(&w->sent, w->unflushed);
    w->unflushed = 0;
    return 0;
}

/* Write, then read what the broker sent, waiting up to timeout_ns for the first frame. */
static int producer_flush(struct worker *w, uint64_t timeout_ns)
{
    if (producer_write(w) < 0)
        return -1;
    w->last_read = now_ns();
    return producer_poll(w, timeout_ns);
}

/* Write, and read if it is time: always with confirms (their latency is taken when read),
 * otherwise every READ_EVERY_NS, which is only to notice errors and connection.blocked. */
static int producer_write_and_maybe_read(struct worker *w, uint64_t now)
{
    if (w->pending || now - w->last_read >= READ_EVERY_NS || amqp_data_in_buffer(w->conn))
        return producer_flush(w, 0);
    return producer_write(w);
}

/* Wait until `due` (CLOCK_MONOTONIC ns) with nothing left unwritten. rabbitmq-c waits in whole
 * milliseconds, so long gaps read from the socket and the last stretch is slept exactly. */
static int producer_wait_until(struct worker *w, uint64_t now, uint64_t due)
{
    if (due - now >= 2 * MS_NS)
        return producer_flush(w, due - now - MS_NS);
    if (producer_write_and_maybe_read(w, now) < 0)
        return -1;
    struct timespec ts = {.tv_sec = (time_t)(due / 1000000000ull),
                          .tv_nsec = (long)(due % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
    return 0;
}

static void publish_loop(struct worker *w, uint8_t *body)
{
    struct run *r = w->run;
    const struct opts *o = r->o;
    unsigned q = w->id % r->npub;
    uint64_t base = r->t0, n = 0; /* rate schedule: message n is due at base + n / rate */
    uint64_t sent = 0;             /* this producer's publishes: the --dedup-ids sequence */

    if (o->rate) /* sleep to the microsecond, not the default 50 us slack */
        (void)prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    w->last_read = now_ns();
    while (!stopping(r)) {
        if (o->rate) {
            uint64_t due = base + (uint64_t)((double)n * 1e9 / o->rate);
            uint64_t now = now_ns();
            if (now < due) {
                if (producer_wait_until(w, now, due) < 0)
                    return;
                continue;
            }
            if (now - due > 1000000000ull) { /* fell behind by a second: do not burst */
                base = now;
                n = 0;
            }
        }
        if (o->confirm && w->next_tag - w->low >= o->confirm) {
            if (producer_flush(w, POLL_NS) < 0)
                return;
            continue;
        }
        uint64_t ts = now_ns();
        memcpy(body, &ts, sizeof ts);
        /* --dedup-ids: unique across producers (id in the top digits) and messages */
        int rc = wire_publish(&w->wb, &r->pub[q], body, (uint64_t)w->id * 1000000000000ull + sent++);
        if (rc < 0) {
            if (!stopping(r))
                run_fail(r, "producer %u: cannot write to the broker: %s", w->id, strerror(-rc));
            return;
        }
        if (o->confirm)
            w->pending[w->next_tag++ % o->confirm] = ts;
        w->unflushed++;
        n++;
        if (++q == r->npub)
            q = 0;
        if (w->wb.len >= FLUSH_AT && producer_write_and_maybe_read(w, ts) < 0)
            return;
    }
}

static void *producer_main(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->run;
    const struct opts *o = r->o;
    char name[64], err[700];
    uint8_t *body = NULL;

    snprintf(name, sizeof name, "warren-perf producer %u", w->id);
    w->conn = perf_connect(o, name, err, sizeof err);
    if (!w->conn)
        goto fail;
    w->next_tag = w->low = 1;
    if (o->confirm) {
        w->pending = calloc(o->confirm, sizeof *w->pending);
        if (!w->pending) {
            snprintf(err, sizeof err, "out of memory");
            goto fail;
        }
        amqp_confirm_select(w->conn, CHANNEL);
        if (!rpc_ok(w->conn, err, sizeof err, "confirm.select"))
            goto fail;
    }
    body = malloc(o->size);
    if (!body || wbuf_init(&w->wb, amqp_get_sockfd(w->conn), perf_ssl(w->conn),
                          (uint32_t)amqp_get_frame_max(w->conn),
                           &r->stop) < 0) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    memset(body, 'w', o->size);
    memcpy(body + 8, &r->run_id, sizeof r->run_id);
    worker_ready(w);
    if (wait_go(r))
        publish_loop(w, body);
    free(body);
    perf_disconnect(w->conn, !w->wb.broken);
    w->conn = NULL;
    return NULL;
fail:
    run_fail(r, "producer %u: %s", w->id, err);
    free(body);
    perf_disconnect(w->conn, false);
    w->conn = NULL;
    return NULL;
}

/* ---- consumer ----------------------------------------------------------------------------- */

struct delivery {
    bool active;      /* between basic.deliver and the last body byte */
    bool redelivered;
    bool stamped;     /* ts and run_id were read from the first body frame */
    uint64_t tag;
    uint64_t left;    /* body bytes still to come */
    uint64_t ts;
    uint32_t run_id;
};

struct acker {
    uint64_t unacked; /* deliveries received but not yet covered by an ack */
    uint64_t last_tag;
};

/* Queue an ack. Returns 0, or -1 after run_fail(). */
static int consumer_ack(struct worker *w, uint64_t tag, bool multiple)
{
    int rc = wire_ack(&w->wb, CHANNEL, tag, multiple);
    if (rc == 0)
        return 0;
    if (!stopping(w->run))
        run_fail(w->run, "consumer %u: cannot write acks to the broker: %s", w->id,
                 strerror(-rc));
    return -1;
}

/* A whole message has arrived: count it, time it, ack it as configured. */
static int delivery_done(struct worker *w, struct delivery *d, struct acker *a)
{
    const struct opts *o = w->run->o;
    uint64_t now = now_ns();
    bump(&w->received, 1);
    if (d->stamped && d->run_id == w->run->run_id)
        hist_record(&w->hist, now > d->ts ? now - d->ts : 0);
    else
        w->foreign++;
    if (d->redelivered)
        w->redelivered++;
    d->active = false;
    if (o->autoack)
        return 0;
    a->last_tag = d->tag;
    a->unacked++;
    if (o->multi_ack > 1 && a->unacked < o->multi_ack)
        return 0;
    a->unacked = 0;
    return consumer_ack(w, d->tag, o->multi_ack > 1);
}

static int consumer_frame(struct worker *w, const amqp_frame_t *f, struct delivery *d,
                          struct acker *a)
{
    char why[300];
    switch (f->frame_type) {
    case AMQP_FRAME_METHOD:
        switch (f->payload.method.id) {
        case AMQP_BASIC_DELIVER_METHOD: {
            const amqp_basic_deliver_t *m = f->payload.method.decoded;
            *d = (struct delivery){.active = true, .redelivered = m->redelivered,
                                   .tag = m->delivery_tag};
            return 0;
        }
        case AMQP_BASIC_CANCEL_METHOD:
            if (stopping(w->run))
                return 0;
            run_fail(w->run, "consumer %u: the broker cancelled the consumer (queue deleted?)",
                     w->id);
            return -1;
        case AMQP_CONNECTION_BLOCKED_METHOD: atomic_fetch_add(&w->run->blocked, 1); return 0;
        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD:
            describe_close(&f->payload.method, why, sizeof why);
            run_fail(w->run, "consumer %u: %s", w->id, why);
            return -1;
        default: return 0;
        }
    case AMQP_FRAME_HEADER:
        if (!d->active)
            return 0;
        d->left = f->payload.properties.body_size;
        return d->left ? 0 : delivery_done(w, d, a);
    case AMQP_FRAME_BODY: {
        if (!d->active)
            return 0;
        amqp_bytes_t b = f->payload.body_fragment;
        if (!d->stamped && b.len >= HEADER_LEN) {
            memcpy(&d->ts, b.bytes, sizeof d->ts);
            memcpy(&d->run_id, (const char *)b.bytes + 8, sizeof d->run_id);
            d->stamped = true;
        }
        d->left -= b.len < d->left ? b.len : d->left;
        return d->left ? 0 : delivery_done(w, d, a);
    }
    default: return 0;
    }
}

static void consume_loop(struct worker *w)
{
    amqp_connection_state_t c = w->conn;
    struct delivery d = {0};
    struct acker a = {0};

    while (!stopping(w->run)) {
        if (!amqp_frames_enqueued(c) && !amqp_data_in_buffer(c)) {
            /* about to block on the socket: recycle rabbitmq-c's pools and send our acks */
            amqp_maybe_release_buffers(c);
            int rc = w->wb.len ? wbuf_flush(&w->wb) : 0;
            if (rc < 0) {
                if (!stopping(w->run))
                    run_fail(w->run, "consumer %u: cannot write acks to the broker: %s", w->id,
                             strerror(-rc));
                return;
            }
        }
        amqp_frame_t f;
        struct timeval tv = ns_to_tv(POLL_NS);
        int rc = amqp_simple_wait_frame_noblock(c, &f, &tv);
        if (rc == AMQP_STATUS_TIMEOUT) {
            if (a.unacked) { /* idle: do not sit on a partial multi-ack batch */
                a.unacked = 0;
                if (consumer_ack(w, a.last_tag, true) < 0)
                    return;
            }
            continue;
        }
        if (rc != AMQP_STATUS_OK) {
            if (!stopping(w->run))
                run_fail(w->run, "consumer %u: lost the connection: %s", w->id,
                         amqp_error_string2(rc));
            return;
        }
        if (consumer_frame(w, &f, &d, &a) < 0)
            return;
    }
}

/* With at least as many consumers as queues, consumer i reads queue i % queues; otherwise it
 * reads every queue q with q % consumers == i. */
static bool consumes(const struct opts *o, unsigned consumer, unsigned q)
{
    if (o->consumers >= o->queues)
        return q == consumer % o->queues;
    return q % o->consumers == consumer;
}

static void *consumer_main(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->run;
    const struct opts *o = r->o;
    char name[64], err[700], what[300];

    snprintf(name, sizeof name, "warren-perf consumer %u", w->id);
    w->conn = perf_connect(o, name, err, sizeof err);
    if (!w->conn)
        goto fail;
    if (!o->autoack && o->prefetch) {
        amqp_basic_qos(w->conn, CHANNEL, 0, (uint16_t)o->prefetch, 0);
        if (!rpc_ok(w->conn, err, sizeof err, "basic.qos"))
            goto fail;
    }
    for (unsigned q = 0; q < o->queues; q++) {
        if (!consumes(o, w->id, q))
            continue;
        amqp_basic_consume(w->conn, CHANNEL, amqp_cstring_bytes(r->qname[q]), amqp_empty_bytes,
                           0, o->autoack, 0, amqp_empty_table);
        snprintf(what, sizeof what, "basic.consume on '%s'", r->qname[q]);
        if (!rpc_ok(w->conn, err, sizeof err, what))
            goto fail;
    }
    if (wbuf_init(&w->wb, amqp_get_sockfd(w->conn), perf_ssl(w->conn),
                          (uint32_t)amqp_get_frame_max(w->conn),
                  &r->stop) < 0) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    worker_ready(w);
    consume_loop(w);
    if (!w->wb.broken && w->wb.len)
        (void)wbuf_flush(&w->wb);
    perf_disconnect(w->conn, !w->wb.broken);
    w->conn = NULL;
    return NULL;
fail:
    run_fail(r, "consumer %u: %s", w->id, err);
    perf_disconnect(w->conn, false);
    w->conn = NULL;
    return NULL;
}

/* ---- main --------------------------------------------------------------------------------- */

struct totals {
    uint64_t sent, confirmed, nacked, received;
};

static struct totals sum_counters(struct worker *ws, unsigned n)
{
    struct totals t = {0};
    for (unsigned i = 0; i < n; i++) {
        t.sent += get(&ws[i].sent);
        t.confirmed += get(&ws[i].confirmed);
        t.nacked += get(&ws[i].nacked);
        t.received += get(&ws[i].received);
    }
    return t;
}

static int start_worker(struct worker *w, struct run *r, enum worker_kind kind, unsigned id)
{
    w->run = r;
    w->kind = kind;
    w->id = id;
    hist_init(&w->hist);
    int rc = pthread_create(&w->tid, NULL, kind == W_PRODUCER ? producer_main : consumer_main, w);
    if (rc) {
        run_fail(r, "cannot start a thread: %s", strerror(rc));
        return -1;
    }
    w->started = true;
    return 0;
}

/* Join every started worker, giving them STOP_GRACE_S in all. Returns how many did not stop. */
static unsigned join_workers(struct worker *ws, unsigned n)
{
    struct timespec deadline;
    unsigned stuck = 0;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += STOP_GRACE_S;
    for (unsigned i = 0; i < n; i++) {
        if (!ws[i].started)
            continue;
        if (pthread_timedjoin_np(ws[i].tid, NULL, &deadline) == 0)
            ws[i].joined = true;
        else
            stuck++;
    }
    return stuck;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* A duration in seconds, or null when negative (not measured). */
static void json_secs(FILE *f, double s)
{
    if (s < 0)
        fputs("null", f);
    else
        fprintf(f, "%.3f", s);
}

static void json_hist(FILE *f, const char *name, const struct hist *h)
{
    fprintf(f, ",\"%s\":", name);
    if (!h) {
        fputs("null", f);
        return;
    }
    fprintf(f,
            "{\"samples\":%" PRIu64 ",\"min\":%.3f,\"p50\":%.3f,\"p95\":%.3f,\"p99\":%.3f,"
            "\"max\":%.3f}",
            h->count, ms(h->count ? h->min : 0), ms(hist_percentile(h, 50)),
            ms(hist_percentile(h, 95)), ms(hist_percentile(h, 99)), ms(hist_percentile(h, 100)));
}

static void human_hist(const char *name, const struct hist *h)
{
    if (!h->count) {
        printf("%-16s no samples\n", name);
        return;
    }
    printf("%-16s min %.3f  p50 %.3f  p95 %.3f  p99 %.3f  max %.3f ms  (%" PRIu64 " samples)\n",
           name, ms(h->min), ms(hist_percentile(h, 50)), ms(hist_percentile(h, 95)),
           ms(hist_percentile(h, 99)), ms(h->max), h->count);
}

struct result {
    struct totals t;
    double secs;
    struct hist lat, conf;
    uint64_t foreign, redelivered, bad_confirms;
    unsigned stuck;
};

static void report_json(const struct run *r, const struct result *res)
{
    const struct opts *o = r->o;
    double s = res->secs > 0 ? res->secs : 1;
    printf("{\"tool\":\"warren-perf\",\"label\":");
    json_str(stdout, o->label ? o->label : "");
    printf(",\"host\":");
    json_str(stdout, o->host);
    printf(",\"port\":%d,\"producers\":%u,\"consumers\":%u,\"size\":%zu,\"queues\":%u",
           o->port, o->producers, o->consumers, o->size, o->queues);
    printf(",\"exchange_type\":\"%s\",\"exchange\":", opts_ex_type_names[o->ex_type]);
    json_str(stdout, o->exchange);
    printf(",\"persistent\":%s,\"confirm\":%u,\"autoack\":%s,\"prefetch\":%u,"
           "\"multi_ack_every\":%u,\"rate_limit\":%u,\"seconds\":%.3f",
           o->persistent ? "true" : "false", o->confirm, o->autoack ? "true" : "false",
           o->prefetch, o->multi_ack, o->rate, res->secs);
    printf(",\"extra_bindings\":%u,\"bind_seconds\":", r->bound.bound);
    json_secs(stdout, o->extra_bindings ? r->bound.seconds : -1);
    printf(",\"extra_delete_seconds\":");
    json_secs(stdout, r->extra_delete_s);
    printf(",\"stray_bind_ok\":%" PRIu64, r->bound.stray_ok);
    printf(",\"sent\":%" PRIu64 ",\"received\":%" PRIu64 ",\"confirmed\":%" PRIu64
           ",\"nacked\":%" PRIu64,
           res->t.sent, res->t.received, res->t.confirmed, res->t.nacked);
    printf(",\"sent_rate\":%.1f,\"recv_rate\":%.1f,\"confirm_rate\":%.1f",
           (double)res->t.sent / s, (double)res->t.received / s, (double)res->t.confirmed / s);
    json_hist(stdout, "latency_ms", &res->lat);
    json_hist(stdout, "confirm_latency_ms", o->confirm ? &res->conf : NULL);
    printf(",\"foreign\":%" PRIu64 ",\"redelivered\":%" PRIu64 ",\"bad_confirms\":%" PRIu64
           ",\"blocked\":%u,\"stuck_workers\":%u}\n",
           res->foreign, res->redelivered, res->bad_confirms, atomic_load(&r->blocked),
           res->stuck);
}

static void report_human(const struct run *r, const struct result *res)
{
    const struct opts *o = r->o;
    double s = res->secs > 0 ? res->secs : 1;
    printf("\nsummary over %.1f s:\n", res->secs);
    printf("%-16s %.0f msg/s  (%" PRIu64 " messages)\n", "sent", (double)res->t.sent / s,
           res->t.sent);
    printf("%-16s %.0f msg/s  (%" PRIu64 " messages)\n", "received",
           (double)res->t.received / s, res->t.received);
    if (o->confirm)
        printf("%-16s %.0f msg/s  (%" PRIu64 " confirmed, %" PRIu64 " nacked)\n", "confirmed",
               (double)res->t.confirmed / s, res->t.confirmed, res->t.nacked);
    human_hist("latency", &res->lat);
    if (o->confirm)
        human_hist("confirm latency", &res->conf);
    if (o->extra_bindings) {
        printf("%-16s %u bound in %.3f s", "extra bindings", r->bound.bound, r->bound.seconds);
        if (r->extra_delete_s >= 0)
            printf(", removed with their queue in %.3f s", r->extra_delete_s);
        printf("\n");
    }
    if (res->foreign)
        printf("note: %" PRIu64 " deliveries came from an earlier run and were not timed\n",
               res->foreign);
    if (res->redelivered)
        printf("note: %" PRIu64 " deliveries were flagged redelivered\n", res->redelivered);
    if (res->bad_confirms)
        printf("note: %" PRIu64 " confirms named unknown or already settled tags\n",
               res->bad_confirms);
    if (atomic_load(&r->blocked))
        printf("note: the broker blocked publishers %u times (resource alarm)\n",
               atomic_load(&r->blocked));
    if (res->stuck)
        printf("note: %u clients did not stop within %d s; their latencies are not included\n",
               res->stuck, STOP_GRACE_S);
}

static void print_banner(const struct opts *o)
{
    printf("warren-perf: %s:%d vhost '%s', %u producer%s -> ", o->host, o->port, o->vhost,
           o->producers, o->producers == 1 ? "" : "s");
    if (o->declare_exchange)
        printf("%s exchange '%s'", opts_ex_type_names[o->ex_type], o->exchange);
    else
        printf("default exchange");
    if (o->extra_bindings)
        printf(" (+%u extra bindings)", o->extra_bindings);
    printf(" -> %u queue%s -> %u consumer%s; %zu B%s, ", o->queues, o->queues == 1 ? "" : "s",
           o->consumers, o->consumers == 1 ? "" : "s", o->size, o->persistent ? " persistent" : "");
    if (o->autoack)
        printf("autoack");
    else
        printf("manual ack (prefetch %u, multi-ack %u)", o->prefetch,
               o->multi_ack > 1 ? o->multi_ack : 1);
    if (o->confirm)
        printf(", confirms (window %u)", o->confirm);
    if (o->rate)
        printf(", %u msg/s per producer", o->rate);
    if (o->seconds)
        printf(", %u s\n", o->seconds);
    else
        printf(", until Ctrl-C\n");
    fflush(stdout);
}

/* Let the load run until the deadline, an interrupt or a failure, printing progress each
 * second. Returns the counters at the moment it ended and the elapsed time. */
static struct totals run_load(struct run *r, struct worker *ws, unsigned n, double *ret_secs)
{
    const struct opts *o = r->o;
    uint64_t t0 = r->t0, deadline = o->seconds ? t0 + o->seconds * 1000000000ull : UINT64_MAX;
    uint64_t next = t0 + 1000000000ull, last_t = t0, now;
    struct totals last = {0}, t;

    for (;;) {
        now = now_ns();
        if (now >= deadline || interrupted || stopping(r))
            break;
        if (now >= next) {
            t = sum_counters(ws, n);
            double dt = (double)(now - last_t) / 1e9;
            if (!o->json && !o->quiet) {
                printf("%6.1fs  sent %.0f msg/s  received %.0f msg/s", (double)(now - t0) / 1e9,
                       (double)(t.sent - last.sent) / dt,
                       (double)(t.received - last.received) / dt);
                if (o->confirm)
                    printf("  confirmed %.0f msg/s", (double)(t.confirmed - last.confirmed) / dt);
                printf("\n");
                fflush(stdout);
            }
            last = t;
            last_t = now;
            next += 1000000000ull;
            continue;
        }
        uint64_t wake = next < deadline ? next : deadline;
        uint64_t nap = wake - now < POLL_NS ? wake - now : POLL_NS;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)nap};
        nanosleep(&ts, NULL);
    }
    now = now_ns();
    t = sum_counters(ws, n);
    *ret_secs = (double)(now - t0) / 1e9;
    return t;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct run r = {0};
    struct result res = {0};
    struct worker *ws = NULL;
    char err[700];
    int status = 0;

    opts_parse(&o, argc, argv);
    run_opts_tls = o.tls;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESETHAND};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    r.o = &o;
    r.extra_delete_s = -1;
    r.delivery_mode = o.persistent ? 2 : 1;
    if (getrandom(&r.run_id, sizeof r.run_id, 0) != sizeof r.run_id)
        r.run_id = (uint32_t)now_ns() ^ (uint32_t)getpid();
    pthread_mutex_init(&r.lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r.cond, &ca);
    int rc = make_names(&r);
    if (rc < 0)
        opts_die("cannot prepare the publishes: %s.", strerror(-rc));

    if (!o.json)
        print_banner(&o);
    if (declare_topology(&r, err, sizeof err) < 0) {
        print_error(err);
        if (!o.keep)
            teardown(&r);
        return 1;
    }

    unsigned n = o.consumers + o.producers;
    ws = aligned_alloc(alignof(struct worker), n * sizeof *ws);
    if (!ws)
        opts_die("out of memory.");
    memset(ws, 0, n * sizeof *ws);

    /* Consumers first, so that nothing published is missed; then producers. */
    for (unsigned i = 0; i < o.consumers; i++)
        if (start_worker(&ws[i], &r, W_CONSUMER, i) < 0)
            break;
    if (wait_ready(&r, o.consumers) == 0) {
        for (unsigned i = 0; i < o.producers; i++)
            if (start_worker(&ws[o.consumers + i], &r, W_PRODUCER, i) < 0)
                break;
    }
    if (!stopping(&r) && wait_ready(&r, n) == 0) {
        pthread_mutex_lock(&r.lock);
        r.t0 = now_ns();
        r.go = true;
        pthread_cond_broadcast(&r.cond);
        pthread_mutex_unlock(&r.lock);
        res.t = run_load(&r, ws, n, &res.secs);
    }

    atomic_store(&r.stop, true);
    pthread_mutex_lock(&r.lock);
    pthread_cond_broadcast(&r.cond);
    pthread_mutex_unlock(&r.lock);
    res.stuck = join_workers(ws, n);

    hist_init(&res.lat);
    hist_init(&res.conf);
    for (unsigned i = 0; i < n; i++) {
        if (!ws[i].joined)
            continue;
        hist_merge(ws[i].kind == W_CONSUMER ? &res.lat : &res.conf, &ws[i].hist);
        res.foreign += ws[i].foreign;
        res.redelivered += ws[i].redelivered;
        res.bad_confirms += ws[i].bad_confirms;
    }

    int cleanup_failures = o.keep ? 0 : teardown(&r);
    if (r.failed) {
        print_error(r.error);
        return 1;
    }
    if (interrupted && !r.go) {
        fprintf(stderr, "warren-perf: interrupted before the load started.\n");
        return 1;
    }
    if (o.json)
        report_json(&r, &res);
    else
        report_human(&r, &res);
    if (cleanup_failures)
        status = 1;
    if (res.stuck) {
        fflush(stdout);
        _exit(status); /* stuck threads still hold their connections; do not run atexit */
    }
    for (unsigned i = 0; i < n; i++) {
        free(ws[i].pending);
        wbuf_free(&ws[i].wb);
    }
    free(ws);
    free(r.qname);
    free(r.pubkey);
    free(r.bindkey);
    for (unsigned i = 0; r.pub && i < r.npub; i++)
        wire_pub_free(&r.pub[i]);
    free(r.pub);
    free(o.uri_copy);
    return status;
}
