/* conf.c — owns reading rabbitmq.conf (new-style: key = value, # comments, no sections) with
 * inih, checking each key and value and storing it in struct config. Does not own the defaults
 * (server.c) nor the flags (main.c, applied after the file so that they override it).
 * Invariant: the first problem stops the parse and is logged once, as "file:line: problem". */
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <uv.h>
#include "broker/amqp/conf.h"
#include "lib/strlist.h"

static bool list_set(char *buf, size_t cap, const char *name, bool on);
#include "lib/log.h"

#define CONF_MECH_MAX 8

struct conf_parse {
    struct config *cfg;   /* borrowed: the caller's */
    char err[512];        /* the first problem; "" while there is none */
    bool listeners_none;  /* listeners.tcp = none: wins over listeners.tcp.<name>, as RabbitMQ */
    int log_level;        /* -1, a log_level or CONF_LOG_NONE */
    char mechs[CONF_MECH_MAX][16]; /* auth_mechanisms.N, by N ("" where not given) */
};

static int fail(struct conf_parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct conf_parse *p, const char *fmt, ...)
{
    if (!p->err[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err, sizeof p->err, fmt, ap);
        va_end(ap);
    }
    return 0; /* inih: error */
}

static int set_str(struct conf_parse *p, const char **field, const char *v)
{
    struct config *cfg = p->cfg;
    char **owned = realloc(cfg->_owned, (cfg->_nowned + 1) * sizeof *owned);
    if (!owned)
        return fail(p, "out of memory");
    cfg->_owned = owned;
    char *s = strdup(v);
    if (!s)
        return fail(p, "out of memory");
    owned[cfg->_nowned++] = s;
    *field = s;
    return 1;
}

/* An unsigned integer in [min, max] (decimal, nothing else on the line). */
static bool parse_u64(const char *v, uint64_t min, uint64_t max, uint64_t *ret)
{
    if (*v < '0' || *v > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end || n < min || n > max)
        return false;
    *ret = n;
    return true;
}

static bool parse_bool(const char *v, bool *ret)
{
    if (strcmp(v, "true") == 0)
        *ret = true;
    else if (strcmp(v, "false") == 0)
        *ret = false;
    else
        return false;
    return true;
}

/* RabbitMQ's information units: plain bytes, k/kiB/M/MiB/G/GiB/T/TiB (powers of 1024) or
 * kB/MB/GB/TB (powers of 1000). */
static bool parse_bytes(const char *v, uint64_t *ret)
{
    static const struct { const char *unit; uint64_t mul; } units[] = {
        {"", 1},
        {"k", 1ull << 10}, {"kiB", 1ull << 10}, {"K", 1ull << 10}, {"KiB", 1ull << 10},
        {"M", 1ull << 20}, {"MiB", 1ull << 20}, {"G", 1ull << 30}, {"GiB", 1ull << 30},
        {"T", 1ull << 40}, {"TiB", 1ull << 40},
        {"kB", 1000}, {"KB", 1000}, {"MB", 1000000}, {"GB", 1000000000ull},
        {"TB", 1000000000000ull},
    };
    if (*v < '0' || *v > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno)
        return false;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].unit) == 0) {
            if (n > UINT64_MAX / units[i].mul)
                return false;
            *ret = n * units[i].mul;
            return true;
        }
    return false;
}

/* "5672", "1.2.3.4:5672", "[::1]:5672" or "::1:5672" (the last colon splits, as RabbitMQ). */
static int parse_listener(struct conf_parse *p, const char *key, const char *name, const char *v,
                          bool tls)
{
    struct config_listener l = {.tls = tls};
    snprintf(l.name, sizeof l.name, "%s", name);
    if (strlen(name) >= sizeof l.name)
        return fail(p, "listener name '%s' is longer than %zu characters", name,
                    sizeof l.name - 1);
    const char *colon = strrchr(v, ':');
    const char *port = colon ? colon + 1 : v;
    uint64_t n;
    if (!parse_u64(port, 1, 65535, &n))
        return fail(p, "%s: '%s' is not a port (1..65535) nor address:port", key, v);
    l.port = (int)n;
    if (colon) {
        const char *a = v;
        size_t len = (size_t)(colon - v);
        if (len >= 2 && a[0] == '[' && a[len - 1] == ']') {
            a++;
            len -= 2;
        }
        if (len == 0 || len >= sizeof l.addr)
            return fail(p, "%s: '%s' is not address:port", key, v);
        memcpy(l.addr, a, len);
        l.addr[len] = 0;
        unsigned char buf[16];
        if (uv_inet_pton(AF_INET, l.addr, buf) != 0 && uv_inet_pton(AF_INET6, l.addr, buf) != 0)
            return fail(p, "%s: '%s' is not an IPv4 or IPv6 address (names are not resolved)",
                        key, l.addr);
    }
    struct config *cfg = p->cfg;
    for (unsigned i = 0; i < cfg->nlisteners; i++)
        if (strcmp(cfg->listeners[i].name, l.name) == 0 && cfg->listeners[i].tls == tls) {
            cfg->listeners[i] = l;
            return 1;
        }
    if (cfg->nlisteners == CONFIG_LISTENERS_MAX)
        return fail(p, "%s: more than %d listeners", key, CONFIG_LISTENERS_MAX);
    cfg->listeners[cfg->nlisteners++] = l;
    return 1;
}

/* What follows prefix in key, or NULL when key does not start with it. */
static const char *after(const char *key, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(key, prefix, n) == 0 ? key + n : NULL;
}

static bool valid_ip(const char *v, size_t cap)
{
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    return strlen(v) < cap && (uv_ip4_addr(v, 0, &a4) == 0 || uv_ip6_addr(v, 0, &a6) == 0);
}

/* ssl_options.<sub> (or management.ssl.<sub>, prometheus.ssl.<sub>) into o. Files must be
 * readable now, so that the error names this line. */
static int parse_tls_key(struct conf_parse *p, struct tls_options *o, const char *key,
                         const char *sub, const char *v)
{
    uint64_t n;
    bool b;
    const char **file = !strcmp(sub, "cacertfile") ? &o->cacertfile
                        : !strcmp(sub, "certfile") ? &o->certfile
                        : !strcmp(sub, "keyfile")  ? &o->keyfile
                                                   : NULL;
    if (file) {
        if (access(v, R_OK) != 0)
            return fail(p, "%s: cannot read '%s': %s", key, v, strerror(errno));
        return set_str(p, file, v);
    }
    if (!strcmp(sub, "password"))
        return set_str(p, &o->password, v);
    if (!strcmp(sub, "verify")) {
        if (strcmp(v, "verify_peer") && strcmp(v, "verify_none"))
            return fail(p, "%s: '%s' is not verify_peer or verify_none", key, v);
        o->verify_peer = v[7] == 'p';
        return 1;
    }
    if (!strcmp(sub, "fail_if_no_peer_cert") || !strcmp(sub, "honor_cipher_order")) {
        if (!parse_bool(v, &b))
            return fail(p, "%s: '%s' is not true or false", key, v);
        *(sub[0] == 'f' ? &o->fail_if_no_peer_cert : &o->honor_cipher_order) = b;
        return 1;
    }
    if (!strcmp(sub, "depth")) {
        if (!parse_u64(v, 0, 100, &n))
            return fail(p, "%s: '%s' is not a number from 0 to 100", key, v);
        o->depth = (int)n;
        return 1;
    }
    if (!strncmp(sub, "versions.", 9) && sub[9]) {
        if (!strcmp(v, "tlsv1.2"))
            o->versions |= TLS_V12;
        else if (!strcmp(v, "tlsv1.3"))
            o->versions |= TLS_V13;
        else
            return fail(p, "%s: '%s' is not supported (only tlsv1.2 and tlsv1.3 are)", key, v);
        return 1;
    }
    if (!strncmp(sub, "ciphers.", 8) && sub[8]) {
        size_t len = strlen(o->ciphers);
        if (!v[0] || strchr(v, ':') ||
            len + 1 + strlen(v) >= sizeof o->ciphers)
            return fail(p, "%s: '%s' is not one cipher name (or the list is too long)", key, v);
        snprintf(o->ciphers + len, sizeof o->ciphers - len, "%s%s", len ? ":" : "", v);
        return 1;
    }
    return fail(p, "unknown key '%s'", key);
}

static int on_key(void *user, const char *section, const char *key, const char *v)
{
    struct conf_parse *p = user;
    struct config *cfg = p->cfg;
    uint64_t n;
    bool b;
    if (section[0])
        return fail(p, "sections ([%s]) are not part of rabbitmq.conf", section);
    if (strcmp(key, "listeners.tcp") == 0) {
        if (strcmp(v, "none") != 0)
            return fail(p, "listeners.tcp: only 'none' may be given here, not '%s' (use "
                           "listeners.tcp.default = PORT)", v);
        p->listeners_none = true;
        return 1;
    }
    if (strncmp(key, "listeners.tcp.", 14) == 0 && key[14])
        return parse_listener(p, key, key + 14, v, false);
    if (strncmp(key, "listeners.ssl.", 14) == 0 && key[14])
        return parse_listener(p, key, key + 14, v, true);
    if (!strcmp(key, "management.ssl.port") || !strcmp(key, "prometheus.ssl.port")) {
        if (!parse_u64(v, 1, 65535, &n))
            return fail(p, "%s: '%s' is not a port (1..65535)", key, v);
        *(key[0] == 'm' ? &cfg->mgmt_ssl_port : &cfg->prom_ssl_port) = (int)n;
        return 1;
    }
    if (!strcmp(key, "management.ssl.ip") || !strcmp(key, "prometheus.ssl.ip")) {
        char *ip = key[0] == 'm' ? cfg->mgmt_ssl_ip : cfg->prom_ssl_ip;
        if (!valid_ip(v, sizeof cfg->mgmt_ssl_ip))
            return fail(p, "%s: '%s' is not an IPv4 or IPv6 address", key, v);
        snprintf(ip, sizeof cfg->mgmt_ssl_ip, "%s", v);
        return 1;
    }
    const char *sub;
    if ((sub = after(key, "ssl_options.")))
        return parse_tls_key(p, &cfg->tls, key, sub, v);
    if ((sub = after(key, "management.ssl.")))
        return parse_tls_key(p, &cfg->mgmt_tls, key, sub, v);
    if ((sub = after(key, "prometheus.ssl.")))
        return parse_tls_key(p, &cfg->prom_tls, key, sub, v);
    if (strcmp(key, "ssl_handshake_timeout") == 0 || strcmp(key, "handshake_timeout") == 0 ||
        strcmp(key, "tcp_listen_options.send_timeout") == 0 ||
        strcmp(key, "management.tcp.idle_timeout") == 0 ||
        strcmp(key, "management.tcp.request_timeout") == 0 ||
        strcmp(key, "prometheus.tcp.idle_timeout") == 0 ||
        strcmp(key, "prometheus.tcp.request_timeout") == 0) {
        uint32_t *field = key[0] == 's'   ? &cfg->ssl_handshake_timeout_ms
                          : key[0] == 'h' ? &cfg->handshake_timeout_ms
                          : key[0] == 't' ? &cfg->send_timeout_ms
                          : key[0] == 'm' ? (strstr(key, "idle") ? &cfg->mgmt_idle_timeout_ms
                                                                : &cfg->mgmt_request_timeout_ms)
                                          : (strstr(key, "idle") ? &cfg->prom_idle_timeout_ms
                                                                : &cfg->prom_request_timeout_ms);
        if (!parse_u64(v, 1, 3600000, &n))
            return fail(p, "%s: '%s' is not a number of milliseconds (1..3600000)", key, v);
        *field = (uint32_t)n;
        return 1;
    }
    if (strcmp(key, "ssl_cert_login_from") == 0) {
        if (strcmp(v, "common_name") == 0)
            cfg->cert_login = CERT_LOGIN_CN;
        else if (strcmp(v, "distinguished_name") == 0)
            cfg->cert_login = CERT_LOGIN_DN;
        else
            return fail(p, "ssl_cert_login_from: '%s' is not common_name or distinguished_name",
                        v);
        return 1;
    }
    if (strncmp(key, "auth_mechanisms.", 16) == 0) {
        if (!parse_u64(key + 16, 1, CONF_MECH_MAX, &n))
            return fail(p, "%s: auth_mechanisms.N takes N from 1 to %d", key, CONF_MECH_MAX);
        if (strcmp(v, "PLAIN") && strcmp(v, "AMQPLAIN") && strcmp(v, "EXTERNAL"))
            return fail(p, "%s: '%s' is not PLAIN, AMQPLAIN or EXTERNAL", key, v);
        snprintf(p->mechs[n - 1], sizeof p->mechs[0], "%s", v);
        return 1;
    }
    if (strcmp(key, "encryption.key_file") == 0 || strcmp(key, "encryption.key_command") == 0) {
        if (!v[0])
            return fail(p, "%s is empty", key);
        if (key[15] == 'f' && access(v, R_OK) != 0)
            return fail(p, "%s: cannot read '%s': %s", key, v, strerror(errno));
        return set_str(p, key[15] == 'f' ? &cfg->encryption_key_file
                                         : &cfg->encryption_key_command, v);
    }
    if (strcmp(key, "heartbeat") == 0) {
        if (!parse_u64(v, 0, 65535, &n))
            return fail(p, "heartbeat: '%s' is not a number of seconds (0..65535)", v);
        cfg->heartbeat = (uint16_t)n;
        return 1;
    }
    if (strcmp(key, "frame_max") == 0) {
        if (!parse_u64(v, 4096, 1048576, &n))
            return fail(p, "frame_max: '%s' is not a number from 4096 to 1048576", v);
        cfg->frame_max = (uint32_t)n;
        return 1;
    }
    if (strcmp(key, "channel_max") == 0) {
        if (!parse_u64(v, 0, 65535, &n))
            return fail(p, "channel_max: '%s' is not a number from 0 to 65535", v);
        cfg->channel_max = n ? (uint16_t)n : 65535; /* 0: no limit, as RabbitMQ */
        return 1;
    }
    if (strcmp(key, "max_message_size") == 0) {
        if (!parse_u64(v, 1, 536870912, &n))
            return fail(p, "max_message_size: '%s' is not a number of bytes from 1 to "
                           "536870912", v);
        cfg->max_message_size = n;
        return 1;
    }
    if (strcmp(key, "connection_max") == 0 || strcmp(key, "consumer_max_per_channel") == 0) {
        int64_t *field = strcmp(key, "connection_max") == 0 ? &cfg->connection_max
                                                            : &cfg->consumer_max_per_channel;
        if (strcmp(v, "infinity") == 0)
            *field = -1;
        else if (parse_u64(v, 0, INT64_MAX, &n))
            *field = (int64_t)n;
        else
            return fail(p, "%s: '%s' is not a number or infinity", key, v);
        return 1;
    }
    if (strcmp(key, "ha.mode") == 0) {
        if (strcmp(v, "shared") && strcmp(v, "none"))
            return fail(p, "ha.mode: '%s' is not shared or none", v);
        cfg->ha_shared = v[0] == 's';
        return 1;
    }
    if (strcmp(key, "ha.heartbeat_interval") == 0 || strcmp(key, "ha.fence_deadline") == 0) {
        if (!parse_u64(v, 10, 600000, &n))
            return fail(p, "%s: '%s' is not a number of milliseconds (10..600000)", key, v);
        *(key[3] == 'h' ? &cfg->ha_heartbeat_ms : &cfg->ha_fence_deadline_ms) = (uint32_t)n;
        return 1;
    }
    if (strcmp(key, "ha.lock_poll_interval") == 0) {
        if (!parse_u64(v, 10, 60000, &n))
            return fail(p, "ha.lock_poll_interval: '%s' is not a number of milliseconds "
                           "(10..60000)", v);
        cfg->ha_poll_ms = (uint32_t)n;
        return 1;
    }
    if (strcmp(key, "ha.status_port") == 0) {
        if (!parse_u64(v, 1, 65535, &n))
            return fail(p, "ha.status_port: '%s' is not a port (1..65535)", v);
        cfg->ha_status_port = (int)n;
        return 1;
    }
    if (strcmp(key, "ha.status_ip") == 0) {
        if (!valid_ip(v, sizeof cfg->ha_status_ip))
            return fail(p, "ha.status_ip: '%s' is not an IPv4 or IPv6 address", v);
        snprintf(cfg->ha_status_ip, sizeof cfg->ha_status_ip, "%s", v);
        return 1;
    }
    if (strcmp(key, "ha.fence_command") == 0) {
        if (!v[0])
            return fail(p, "ha.fence_command is empty");
        return set_str(p, &cfg->ha_fence_command, v);
    }
    if (strcmp(key, "consumer_timeout") == 0) {
        if (!parse_u64(v, 0, 0xffffffffu, &n))
            return fail(p, "consumer_timeout: '%s' is not a number of milliseconds", v);
        cfg->consumer_timeout_ms = n;
        return 1;
    }
    if (strcmp(key, "vm_memory_high_watermark.absolute") == 0) {
        if (!parse_bytes(v, &cfg->memory_high_watermark_abs) || !cfg->memory_high_watermark_abs)
            return fail(p, "vm_memory_high_watermark.absolute: '%s' is not a size (bytes, or a "
                           "number with kB, MB, GB, k, M, G, kiB, MiB or GiB)", v);
        return 1;
    }
    if (strcmp(key, "vm_memory_high_watermark.relative") == 0) {
        char *end;
        double f = strtod(v, &end);
        if (*end || end == v || !(f > 0 && f <= 1))
            return fail(p, "vm_memory_high_watermark.relative: '%s' is not a fraction in (0, 1]",
                        v);
        cfg->memory_high_watermark = f;
        return 1;
    }
    if (strcmp(key, "log.console.level") == 0) {
        static const struct { const char *name; int level; } levels[] = {
            {"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"notice", LOG_INFO},
            {"warning", LOG_WARN}, {"error", LOG_ERROR}, {"critical", LOG_ERROR},
            {"alert", LOG_ERROR}, {"emergency", LOG_ERROR}, {"none", CONF_LOG_NONE},
        };
        for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
            if (strcmp(v, levels[i].name) == 0) {
                p->log_level = levels[i].level;
                return 1;
            }
        return fail(p, "log.console.level: '%s' is not debug, info, warning, error, critical or "
                       "none", v);
    }
    if (!strcmp(key, "management.tcp.port") || !strcmp(key, "prometheus.tcp.port")) {
        bool mgmt = key[0] == 'm';
        int *port = mgmt ? &cfg->mgmt_port : &cfg->prom_port;
        if (strcmp(v, "none") == 0) {
            *port = -1;
            return 1;
        }
        if (!parse_u64(v, 1, 65535, &n))
            return fail(p, "%s: '%s' is not a port (1..65535) or none", key, v);
        *port = (int)n;
        *(mgmt ? &cfg->mgmt_explicit : &cfg->prom_explicit) = true;
        return 1;
    }
    if (!strcmp(key, "management.tcp.ip") || !strcmp(key, "prometheus.tcp.ip")) {
        bool mgmt = key[0] == 'm';
        char *ip = mgmt ? cfg->mgmt_ip : cfg->prom_ip;
        if (!valid_ip(v, sizeof cfg->mgmt_ip))
            return fail(p, "%s: '%s' is not an IPv4 or IPv6 address", key, v);
        snprintf(ip, sizeof cfg->mgmt_ip, "%s", v);
        *(mgmt ? &cfg->mgmt_explicit : &cfg->prom_explicit) = true;
        return 1;
    }
    if (strcmp(key, "data_dir") == 0) {
        if (!v[0])
            return fail(p, "data_dir is empty");
        return set_str(p, &cfg->data_dir, v);
    }
    /* Stored for the tenancy work. */
    if (strcmp(key, "default_user") == 0 || strcmp(key, "default_pass") == 0 ||
        strcmp(key, "default_vhost") == 0) {
        if (!v[0])
            return fail(p, "%s is empty", key);
        return set_str(p, key[8] == 'u' ? &cfg->default_user
                          : key[8] == 'p' ? &cfg->default_pass : &cfg->default_vhost, v);
    }
    if (strncmp(key, "default_user_tags.", 18) == 0 && key[18]) {
        /* Any tag, as RabbitMQ's schema (default_user_tags.$tag); the known ones mean something. */
        if (!parse_bool(v, &b))
            return fail(p, "%s: '%s' is not true or false", key, v);
        if (!list_set(cfg->default_user_tags, sizeof cfg->default_user_tags, key + 18, b))
            return fail(p, "%s: too many default_user_tags", key);
        return 1;
    }
    if (strcmp(key, "default_permissions.configure") == 0)
        return set_str(p, &cfg->default_perm_configure, v);
    if (strcmp(key, "default_permissions.write") == 0)
        return set_str(p, &cfg->default_perm_write, v);
    if (strcmp(key, "default_permissions.read") == 0)
        return set_str(p, &cfg->default_perm_read, v);
    if (strcmp(key, "loopback_users") == 0) {
        if (strcmp(v, "none") != 0)
            return fail(p, "loopback_users: only 'none' may be given here, not '%s'", v);
        cfg->loopback_users[0] = 0;
        return 1;
    }
    if (strncmp(key, "loopback_users.", 15) == 0 && key[15]) {
        /* loopback_users.$user = true|false, as RabbitMQ's schema. */
        if (!parse_bool(v, &b))
            return fail(p, "%s: '%s' is not true or false", key, v);
        if (!list_set(cfg->loopback_users, sizeof cfg->loopback_users, key + 15, b))
            return fail(p, "%s: too many loopback_users", key);
        return 1;
    }
    if (strcmp(key, "disk_free_limit.absolute") == 0) {
        if (!parse_bytes(v, &cfg->disk_free_limit))
            return fail(p, "disk_free_limit.absolute: '%s' is not a size (bytes, or a number "
                           "with kB, MB, GB, k, M, G, kiB, MiB or GiB)", v);
        return 1;
    }
    if (strcmp(key, "load_definitions") == 0) {
        if (!v[0])
            return fail(p, "load_definitions is empty");
        if (access(v, R_OK) != 0)
            return fail(p, "load_definitions: cannot read '%s': %s", v, strerror(errno));
        return set_str(p, &cfg->load_definitions, v);
    }
    return fail(p, "unknown key '%s'", key);
}

/* Adds name to (on) or removes it from (!on) the comma-separated list in buf. false when it
 * does not fit (or contains a comma). */
static bool list_set(char *buf, size_t cap, const char *name, bool on)
{
    size_t len = strlen(name);
    if (strchr(name, ','))
        return false;
    bool has = strlist_has(buf, name, len);
    if (on && !has) {
        size_t n = strlen(buf);
        if (n + (n > 0) + len + 1 > cap)
            return false;
        snprintf(buf + n, cap - n, "%s%s", n ? "," : "", name);
    } else if (!on && has) {
        char out[512] = "";
        size_t o = 0;
        for (const char *p = buf; *p;) {
            size_t n = strcspn(p, ",");
            if (!(n == len && !memcmp(p, name, len)))
                o += (size_t)snprintf(out + o, sizeof out - o, "%s%.*s", o ? "," : "", (int)n, p);
            p += n + (p[n] == ',');
        }
        snprintf(buf, cap, "%s", out);
    }
    return true;
}

int conf_load(struct config *cfg, const char *path, int *ret_log_level)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        log_error("%s: cannot read the configuration file: %s", path, strerror(errno));
        return -1;
    }
    /* rabbitmq.conf: '#' comments (also after a value, preceded by a space); an indented line
     * is a line of its own, not a continuation; lines of any length. These knobs are
     * variables in Debian's libinih (upstream has them as compile-time macros). */
    ini_start_comment_prefixes = (char *)"#";
    ini_inline_comment_prefixes = (char *)"#";
    ini_allow_inline_comments = true;
    ini_allow_multiline = false;
    ini_stop_on_first_error = true;
    ini_use_stack = false;
    ini_allow_realloc = true;
    ini_max_line = 1 << 16;
    struct conf_parse p = {.cfg = cfg, .log_level = -1};
    int line = ini_parse_file(f, on_key, &p);
    int read_err = ferror(f);
    fclose(f);
    if (line > 0) {
        log_error("%s:%d: %s", path, line,
                  p.err[0] ? p.err : "expected 'key = value' (or a # comment)");
        return -1;
    }
    if (line < 0 || read_err) {
        log_error("%s: cannot read the configuration file: %s", path,
                  line == -2 ? "out of memory" : "read error");
        return -1;
    }
    if (p.listeners_none) { /* the AMQPS listeners stay */
        unsigned kept = 0;
        for (unsigned i = 0; i < cfg->nlisteners; i++)
            if (cfg->listeners[i].tls)
                cfg->listeners[kept++] = cfg->listeners[i];
        cfg->nlisteners = kept;
    }
    char mechs[sizeof cfg->auth_mechanisms] = "";
    for (int i = 0, n = 0; i < CONF_MECH_MAX; i++) {
        bool dup = false;
        for (int j = 0; j < i; j++)
            dup |= strcmp(p.mechs[i], p.mechs[j]) == 0;
        if (p.mechs[i][0] && !dup) /* 3 x at most 8 names of at most 8 characters fit */
            n += snprintf(mechs + n, sizeof mechs - (size_t)n, "%s%s", n ? " " : "", p.mechs[i]);
    }
    if (mechs[0])
        snprintf(cfg->auth_mechanisms, sizeof cfg->auth_mechanisms, "%s", mechs);
    *ret_log_level = p.log_level;
    return 0;
}

struct config_listener *conf_default_listener(struct config *cfg)
{
    for (unsigned i = 0; i < cfg->nlisteners; i++)
        if (strcmp(cfg->listeners[i].name, "default") == 0 && !cfg->listeners[i].tls)
            return &cfg->listeners[i];
    if (cfg->nlisteners == CONFIG_LISTENERS_MAX)
        return NULL;
    struct config_listener *l = &cfg->listeners[cfg->nlisteners++];
    *l = (struct config_listener){.name = "default", .port = 5672};
    return l;
}

void conf_free(struct config *cfg)
{
    while (cfg->_nowned)
        free(cfg->_owned[--cfg->_nowned]);
    free(cfg->_owned);
    cfg->_owned = NULL;
}
