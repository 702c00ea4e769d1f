/* main.c — warrend's entry point: flags, logging, the loop. Owns nothing past main(). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "config.h"
#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif
#include "lib/log.h"
#include "broker/admin/api.h"
#include "broker/admin/status.h"
#include "broker/ha/ha.h"
#include "broker/admin/metrics.h"
#include "broker/amqp/conf.h"
#include "broker/amqp/server.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: warrend [options]\n"
            "  --config FILE     read settings from FILE (RabbitMQ's rabbitmq.conf format);\n"
            "                    the flags below override it\n"
            "  --port N          AMQP port to listen on (default 5672)\n"
            "  --bind ADDR       address to listen on (default: every IPv4 and IPv6 address)\n"
            "  --data-dir DIR    where durable state is kept (default ./data)\n"
            "  --load-definitions FILE\n"
            "                    import a RabbitMQ definitions file (JSON) at start\n"
            "  --log-level L     error, warn, info or debug (default info)\n"
            "  --heartbeat S     heartbeat interval proposed to clients, 0 to disable (default 60)\n"
            "  --frame-max N     largest frame accepted, 4096..1048576 (default 131072)\n"
            "  --sync MODE       'fsync' (default): a confirm means the message is on disk;\n"
            "                    'none': no fsync — faster, but a crash or power loss can lose\n"
            "                    confirmed messages (unsafe, for tests and throwaway data)\n"
            "  --consumer-timeout MS\n"
            "                    close a channel whose oldest unacknowledged delivery is older\n"
            "                    (406, as RabbitMQ); 0 disables (default 1800000: 30 minutes)\n"
            "  --vm-memory-high-watermark F\n"
            "                    block publishers when queued messages use more than this\n"
            "                    fraction of physical memory (default 0.4, as RabbitMQ)\n"
            "  --management-port N\n"
            "                    port of the management HTTP API (default 15672)\n"
            "  --no-management   no management HTTP API\n"
            "  --prometheus-port N\n"
            "                    port of the Prometheus metrics (default 15692)\n"
            "  --no-prometheus   no Prometheus metrics endpoint\n"
            "  --ha MODE         'shared': active/standby on one data directory (ha.mode)\n"
            "  --version         print the version and exit\n");
}

/* Tells systemd (Type=notify) how warrend is doing: sd_notify(3), which does nothing when
 * NOTIFY_SOCKET is unset, as when warrend is not run by systemd; nothing at all in a build
 * without libsystemd. */
static void notify(const char *state)
{
#ifdef HAVE_LIBSYSTEMD
    int rc = sd_notify(0, state);
    if (rc < 0)
        log_warn("cannot tell systemd '%s': %s", state, strerror(-rc));
#else
    (void)state;
#endif
}

/* What main() sets up after server_start() and must close when the server stops. */
struct on_stop {
    struct admin *admin;     /* borrowed: main()'s; NULL without the management API */
    struct metrics *metrics; /* borrowed: main()'s; NULL without the Prometheus endpoint */
    struct server *srv;      /* borrowed: main()'s */
    struct ha_status *hstatus; /* borrowed: main()'s; NULL without ha.status_port */
    uv_signal_t sighup;
};

static void on_stop(void *arg)
{
    struct on_stop *st = arg;
    notify("STOPPING=1\nSTATUS=shutting down: closing connections");
    if (st->admin)
        admin_stop(st->admin);
    if (st->metrics)
        metrics_stop(st->metrics);
    if (st->hstatus)
        ha_status_stop(st->hstatus);
    uv_close((uv_handle_t *)&st->sighup, NULL);
}

/* Whether warrend goes on after starting an optional HTTP surface returned rc (1: not
 * configured): a port that was asked for must be had; the default one only warns when taken,
 * so that several brokers can run on one machine. */
static bool surface_started(int rc, bool explicit, const char *what, const char *key, int port)
{
    if (rc >= 0)
        return true;
    if (explicit)
        return false;
    log_warn("running without the %s (the default port %d is taken); set %s to choose another",
             what, port, key);
    return true;
}

/* The TLS context of an HTTP surface's HTTPS listener (ports->ssl_port > 0) from its
 * management.ssl.* / prometheus.ssl.* options. false after a log line when it cannot be made. */
static bool surface_tls(struct http_ports *ports, const struct tls_options *o, const char *what,
                        const char *prefix)
{
    if (ports->ssl_port <= 0)
        return true;
    char why[600];
    if (!(ports->ssl_ctx = tls_ctx_new(o, why, sizeof why))) {
        log_error("cannot start the %s over HTTPS: %s; fix %s.* in the configuration file", what,
                  why, prefix);
        return false;
    }
    return true;
}

/* The listeners /api/overview shows: AMQP's, the API's and Prometheus's. */
static void fill_listeners(struct admin *a, const struct config *cfg)
{
    for (unsigned i = 0; i < cfg->nlisteners && a->nlisteners < ADMIN_LISTENERS_MAX; i++) {
        struct admin_listener *l = &a->listeners[a->nlisteners++];
        l->protocol = cfg->listeners[i].tls ? "amqp/ssl" : "amqp";
        snprintf(l->ip, sizeof l->ip, "%s", cfg->listeners[i].addr[0] ? cfg->listeners[i].addr
                                                                       : "::");
        l->port = cfg->listeners[i].port;
    }
    const struct { const char *protocol, *ip; int port; } http[] = {
        {"http", cfg->mgmt_ip, cfg->mgmt_port},
        {"https", cfg->mgmt_ssl_ip, cfg->mgmt_ssl_port},
        {"http/prometheus", cfg->prom_ip, cfg->prom_port},
        {"https/prometheus", cfg->prom_ssl_ip, cfg->prom_ssl_port}};
    for (size_t i = 0; i < 4 && a->nlisteners < ADMIN_LISTENERS_MAX; i++)
        if (http[i].port > 0) {
            struct admin_listener *l = &a->listeners[a->nlisteners++];
            l->protocol = http[i].protocol;
            snprintf(l->ip, sizeof l->ip, "%s", http[i].ip[0] ? http[i].ip : "::");
            l->port = http[i].port;
        }
}

/* systemctl reload sends SIGHUP (whose default action would end warrend): the TLS certificates
 * and keys are read again; the rest of the configuration is read at start only. */
static void on_sighup(uv_signal_t *h, int signum)
{
    (void)signum;
    struct on_stop *st = h->data;
    const struct config *cfg = &st->srv->cfg;
    struct { struct http_server *http; const struct tls_options *o; const char *what; } https[] = {
        {st->admin ? &st->admin->https : NULL, &cfg->mgmt_tls, "management API"},
        {st->metrics ? &st->metrics->https : NULL, &cfg->prom_tls, "Prometheus endpoint"}};
    bool any = st->srv->tls_ctx != NULL;
    server_reload_tls(st->srv);
    for (size_t i = 0; i < 2; i++) {
        if (!https[i].http || !https[i].http->open)
            continue;
        any = true;
        char why[600];
        SSL_CTX *ctx = tls_ctx_new(https[i].o, why, sizeof why);
        if (!ctx) {
            log_error("SIGHUP: cannot reload the %s's HTTPS certificates: %s; still using the "
                      "old ones", https[i].what, why);
            continue;
        }
        http_set_tls(https[i].http, ctx);
        log_info("SIGHUP: reloaded the %s's HTTPS certificate and key", https[i].what);
    }
    if (!any)
        log_info("SIGHUP: nothing to reload (no TLS listener; the configuration is read at "
                 "start)");
}

static int parse_uint(const char *flag, const char *s, unsigned long min, unsigned long max,
                      unsigned long *ret)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max) {
        fprintf(stderr, "warrend: %s must be a number from %lu to %lu, not '%s'\n", flag, min,
                max, s);
        return -1;
    }
    *ret = v;
    return 0;
}

enum { O_CONFIG = 256 + 100 }; /* out of the way of main's option codes */

/* --config's argument, found before the other flags are applied (they override the file). */
static const char *find_config(int argc, char **argv, const struct option *opts)
{
    const char *path = NULL;
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1)
        if (opt == O_CONFIG)
            path = optarg;
    opterr = 1;
    optind = 0; /* glibc: start over */
    return path;
}

static bool standby_stopped;

static void on_standby_signal(uv_signal_t *h, int signum)
{
    (void)h;
    log_info("received signal %d while standby; stopping", signum);
    standby_stopped = true;
}

/* ha.mode = shared: serves the status endpoint (when configured) and waits for the lock on the
 * data directory before anything else is opened. 0 once this process is active; 1 when a
 * signal stopped it while standby; -1 or -CONF_EXIT after a log line. */
static int standby(uv_loop_t *loop, const struct config *cfg, struct ha *ha,
                   struct ha_status *hs, bool *hs_on)
{
    if (!cfg->sync) {
        log_error("ha.mode = shared needs synchronous commits: drop --sync none");
        return -CONF_EXIT;
    }
    if (cfg->ha_fence_deadline_ms <= cfg->ha_heartbeat_ms) {
        log_error("ha.fence_deadline (%u ms) must be longer than ha.heartbeat_interval (%u ms)",
                  cfg->ha_fence_deadline_ms, cfg->ha_heartbeat_ms);
        return -CONF_EXIT;
    }
    if (cfg->ha_status_port > 0) {
        if (ha_status_start(hs, loop, cfg->ha_status_ip, cfg->ha_status_port, &ha->active) < 0)
            return -1;
        *hs_on = true;
    }
    uv_signal_t sig[2];
    int signums[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        uv_signal_init(loop, &sig[i]);
        uv_signal_start(&sig[i], on_standby_signal, signums[i]);
    }
    ha_set_fencing(ha, cfg->ha_heartbeat_ms, cfg->ha_fence_deadline_ms);
    int rc = ha_start(ha, loop, cfg->data_dir, cfg->ha_poll_ms, cfg->ha_fence_command);
    if (rc == 0 && !ha->active)
        notify("STATUS=standby: waiting for the lock on the data directory");
    while (rc == 0 && !ha->active && !standby_stopped)
        uv_run(loop, UV_RUN_ONCE);
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&sig[i], NULL);
    if (rc == 0 && ha->active) {
        uv_run(loop, UV_RUN_NOWAIT); /* the signal handles' close callbacks */
        return 0;
    }
    ha_stop(ha);
    if (*hs_on)
        ha_status_stop(hs);
    uv_run(loop, UV_RUN_DEFAULT);
    return rc == -EINVAL ? -CONF_EXIT : rc < 0 ? -1 : 1; /* EINVAL: unsafe shared storage */
}

int main(int argc, char **argv)
{
    struct config cfg;
    config_defaults(&cfg);
    enum { O_PORT = 256, O_BIND, O_DATA, O_LOG, O_HB, O_FRAME, O_MEM, O_SYNC_MODE, O_CTIMEOUT, O_VERSION, O_HELP, O_DEFS, O_MGMT_PORT, O_NO_MGMT, O_PROM_PORT, O_NO_PROM, O_HA };
    static const struct option opts[] = {
        {"config", required_argument, NULL, O_CONFIG},
        {"port", required_argument, NULL, O_PORT},
        {"bind", required_argument, NULL, O_BIND},
        {"data-dir", required_argument, NULL, O_DATA},
        {"log-level", required_argument, NULL, O_LOG},
        {"heartbeat", required_argument, NULL, O_HB},
        {"frame-max", required_argument, NULL, O_FRAME},
        {"vm-memory-high-watermark", required_argument, NULL, O_MEM},
        {"sync", required_argument, NULL, O_SYNC_MODE},
        {"consumer-timeout", required_argument, NULL, O_CTIMEOUT},
        {"load-definitions", required_argument, NULL, O_DEFS},
        {"management-port", required_argument, NULL, O_MGMT_PORT},
        {"no-management", no_argument, NULL, O_NO_MGMT},
        {"prometheus-port", required_argument, NULL, O_PROM_PORT},
        {"no-prometheus", no_argument, NULL, O_NO_PROM},
        {"ha", required_argument, NULL, O_HA},
        {"version", no_argument, NULL, O_VERSION},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int opt, rc = 0;
    unsigned long v;
    int file_log_level = -1;
    const char *config_path = find_config(argc, argv, opts);
    if (config_path && conf_load(&cfg, config_path, &file_log_level) < 0) {
        rc = CONF_EXIT;
        goto out;
    }
    if (file_log_level >= 0 && file_log_level < LOG_LEVEL_MAX)
        log_threshold = (enum log_level)file_log_level;
    struct config_listener *dl;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case O_PORT:
            if (parse_uint("--port", optarg, 0, 65535, &v) < 0)
                { rc = 2; goto out; }
            if (!(dl = conf_default_listener(&cfg)))
                { fprintf(stderr, "warrend: more than %d listeners\n", CONFIG_LISTENERS_MAX); rc = 2; goto out; }
            dl->port = (int)v;
            break;
        case O_BIND:
            if (!(dl = conf_default_listener(&cfg)))
                { fprintf(stderr, "warrend: more than %d listeners\n", CONFIG_LISTENERS_MAX); rc = 2; goto out; }
            if (strlen(optarg) >= sizeof dl->addr) {
                fprintf(stderr, "warrend: --bind '%s' is not an IPv4 or IPv6 address\n", optarg);
                { rc = 2; goto out; }
            }
            snprintf(dl->addr, sizeof dl->addr, "%s", optarg);
            break;
        case O_CONFIG: break; /* read above */
        case O_DATA: cfg.data_dir = optarg; break;
        case O_DEFS: cfg.load_definitions = optarg; break;
        case O_MGMT_PORT:
            if (parse_uint("--management-port", optarg, 1, 65535, &v) < 0)
                { rc = 2; goto out; }
            cfg.mgmt_port = (int)v;
            cfg.mgmt_explicit = true;
            break;
        case O_NO_MGMT: cfg.mgmt_port = -1; break;
        case O_PROM_PORT:
            if (parse_uint("--prometheus-port", optarg, 1, 65535, &v) < 0)
                { rc = 2; goto out; }
            cfg.prom_port = (int)v;
            cfg.prom_explicit = true;
            break;
        case O_NO_PROM: cfg.prom_port = -1; break;
        case O_LOG: {
            int l = log_level_parse(optarg);
            if (l < 0) {
                fprintf(stderr, "warrend: --log-level must be error, warn, info or debug, not '%s'\n", optarg);
                { rc = 2; goto out; }
            }
            log_threshold = (enum log_level)l;
            file_log_level = -1; /* the flag wins over log.console.level = none */
            break;
        }
        case O_HB:
            if (parse_uint("--heartbeat", optarg, 0, 65535, &v) < 0)
                { rc = 2; goto out; }
            cfg.heartbeat = (uint16_t)v;
            break;
        case O_FRAME:
            if (parse_uint("--frame-max", optarg, 4096, 1048576, &v) < 0)
                { rc = 2; goto out; }
            cfg.frame_max = (uint32_t)v;
            break;
        case O_MEM: {
            char *end;
            double f = strtod(optarg, &end);
            if (*end || end == optarg || !(f > 0 && f <= 1)) {
                fprintf(stderr, "warrend: --vm-memory-high-watermark must be a fraction in (0, 1], "
                                "not '%s'\n", optarg);
                { rc = 2; goto out; }
            }
            cfg.memory_high_watermark = f;
            break;
        }
        case O_SYNC_MODE:
            if (strcmp(optarg, "fsync") != 0 && strcmp(optarg, "none") != 0) {
                fprintf(stderr, "warrend: --sync must be 'fsync' or 'none', not '%s'\n", optarg);
                { rc = 2; goto out; }
            }
            cfg.sync = strcmp(optarg, "fsync") == 0;
            break;
        case O_CTIMEOUT:
            if (parse_uint("--consumer-timeout", optarg, 0, 0xffffffffUL, &v) < 0)
                { rc = 2; goto out; }
            cfg.consumer_timeout_ms = v;
            break;
        case O_HA:
            if (strcmp(optarg, "shared") != 0 && strcmp(optarg, "none") != 0) {
                fprintf(stderr, "warrend: --ha must be 'shared' or 'none', not '%s'\n", optarg);
                { rc = 2; goto out; }
            }
            cfg.ha_shared = optarg[0] == 's';
            break;
        case O_VERSION: printf("warrend %s\n", WARREN_VERSION); { rc = 0; goto out; }
        case 'h':
        case O_HELP: usage(stdout); { rc = 0; goto out; }
        default: usage(stderr); { rc = 2; goto out; }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "warrend: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        { rc = 2; goto out; }
    }
    uv_loop_t *loop = uv_default_loop();
    struct server srv;
    struct ha ha = {.fd = -1};
    struct ha_status hstatus = {0};
    bool hstatus_on = false;
    if (cfg.ha_shared) {
        int hrc = standby(loop, &cfg, &ha, &hstatus, &hstatus_on);
        if (hrc != 0) {
            rc = hrc > 0 ? 0 : hrc == -CONF_EXIT ? CONF_EXIT : 1;
            goto out;
        }
    }
    if (!cfg.sync)
        log_warn("--sync=none: commits are not flushed to disk; a crash can lose confirmed "
                 "messages");
    if (server_start(&srv, loop, &cfg) < 0) {
        rc = srv.config_error ? CONF_EXIT : 1;
        goto out;
    }
    if (cfg.ha_shared) { /* /api/ha */
        srv.b.ha_describe = ha_describe;
        srv.b.ha_arg = &ha;
    }
    struct admin admin = {0};
    struct metrics metrics = {0};
    struct on_stop st = {0};
    fill_listeners(&admin, &cfg);
    admin.data_dir = cfg.data_dir; /* /api/nodes: disk_free, disk_free_limit */
    admin.disk_free_limit = srv.cfg.disk_free_limit;
    struct http_ports mports = {.ip = cfg.mgmt_ip, .port = cfg.mgmt_port,
                                .ssl_ip = cfg.mgmt_ssl_ip, .ssl_port = cfg.mgmt_ssl_port,
                                .idle_timeout_ms = cfg.mgmt_idle_timeout_ms,
                                .request_timeout_ms = cfg.mgmt_request_timeout_ms};
    struct http_ports pports = {.ip = cfg.prom_ip, .port = cfg.prom_port,
                                .ssl_ip = cfg.prom_ssl_ip, .ssl_port = cfg.prom_ssl_port,
                                .idle_timeout_ms = cfg.prom_idle_timeout_ms,
                                .request_timeout_ms = cfg.prom_request_timeout_ms};
    if (!surface_tls(&mports, &cfg.mgmt_tls, "management API", "management.ssl") ||
        !surface_tls(&pports, &cfg.prom_tls, "Prometheus endpoint", "prometheus.ssl")) {
        tls_ctx_free(mports.ssl_ctx);
        tls_ctx_free(pports.ssl_ctx);
        server_stop(&srv);
        uv_run(loop, UV_RUN_DEFAULT);
        server_free(&srv);
        rc = CONF_EXIT;
        goto out;
    }
    bool mgmt_explicit = cfg.mgmt_explicit || cfg.mgmt_ssl_port > 0;
    bool prom_explicit = cfg.prom_explicit || cfg.prom_ssl_port > 0;
    int arc = cfg.mgmt_port > 0 || cfg.mgmt_ssl_port > 0
                  ? admin_start(&admin, loop, &srv.b, &mports, srv.cfg.loopback_users) : 1;
    if (arc < 0 && mgmt_explicit) {
        tls_ctx_free(pports.ssl_ctx);
        pports.ssl_ctx = NULL;
    }
    int mrc = arc >= 0 || !mgmt_explicit
                  ? (cfg.prom_port > 0 || cfg.prom_ssl_port > 0
                         ? metrics_start(&metrics, loop, &srv.b, cfg.data_dir, &pports) : 1)
                  : 1;
    if (arc == 0)
        st.admin = &admin;
    if (mrc == 0)
        st.metrics = &metrics;
    if (!surface_started(arc, mgmt_explicit, "management API", "management.tcp.port",
                         cfg.mgmt_port) ||
        !surface_started(mrc, prom_explicit, "Prometheus endpoint", "prometheus.tcp.port",
                         cfg.prom_port)) {
        /* A port asked for cannot be had: stop, as for an AMQP listener. */
        if (st.admin)
            admin_stop(st.admin);
        if (st.metrics)
            metrics_stop(st.metrics);
        server_stop(&srv);
        uv_run(loop, UV_RUN_DEFAULT);
        server_free(&srv);
        rc = 1;
        goto out;
    }
    /* log.console.level = none: quiet once started (start-up errors were still shown). */
    if (file_log_level == CONF_LOG_NONE && !freopen("/dev/null", "w", stderr))
        log_warn("log.console.level = none: cannot redirect stderr to /dev/null");
    st.srv = &srv;
    st.hstatus = hstatus_on ? &hstatus : NULL;
    uv_signal_init(loop, &st.sighup);
    st.sighup.data = &st;
    uv_signal_start(&st.sighup, on_sighup, SIGHUP);
    srv.on_stop = on_stop;
    srv.on_stop_arg = &st;
    /* server_start() recovered the data directory and opened the listeners; the API is up. */
    char status[256] = "READY=1\nSTATUS=accepting AMQP connections on port";
    size_t n = strlen(status);
    for (unsigned i = 0; i < cfg.nlisteners && n < sizeof status; i++)
        n += (size_t)snprintf(status + n, sizeof status - n, "%s %d", i ? "," : "",
                              cfg.listeners[i].port);
    if (!cfg.nlisteners && n < sizeof status)
        n += (size_t)snprintf(status + n, sizeof status - n, "s: none (listeners.tcp = none)");
    if (st.admin && n < sizeof status)
        n += (size_t)snprintf(status + n, sizeof status - n, "; management API on port %d",
                              cfg.mgmt_port);
    if (st.metrics && n < sizeof status)
        snprintf(status + n, sizeof status - n, "; Prometheus on port %d", cfg.prom_port);
    notify(status);
    uv_run(loop, UV_RUN_DEFAULT);
    server_free(&srv);
    if (cfg.ha_shared) { /* storage is closed: the standby may take over now */
        ha_stop(&ha);
        log_info("ha: released the lock");
    }
    uv_loop_close(loop);
    log_info("warrend stopped");
out:
    conf_free(&cfg);
    return rc;
}
