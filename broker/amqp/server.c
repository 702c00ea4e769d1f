/* server.c — owns the listeners, the connection list, the broker model it embeds (opening its
 * storage and vhost at start), the memory and disk alarms and the before-sleep hook.
 * Invariant: each loop turn ends with queue dispatch, then the storage batch submit, then one
 * flush per connection with output — in that order, so a confirm never leaves before the data
 * it confirms is durable. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <openssl/rand.h>
#include "broker/amqp/channel.h"
#include "broker/amqp/conn.h"
#include "broker/model/delay.h"
#include "broker/model/atrest.h"
#include "broker/model/errors.h"
#include "lib/log.h"
#include "broker/model/defs.h"
#include "broker/model/params.h"
#include "broker/model/persist.h"
#include "broker/model/queue.h"
#include "broker/amqp/server.h"
#include "broker/model/users.h"
#include "broker/model/vhost.h"
#include "broker/amqp/views.h"
#include "storage/batch.h"
#include "storage/env.h"

void config_defaults(struct config *cfg)
{
    *cfg = (struct config){
        .listeners = {{.name = "default", .addr = "", .port = 5672}},
        .nlisteners = 1,
        .data_dir = "./data",
        .sync = true,
        .channel_max = 2047,
        .frame_max = 131072,
        .heartbeat = 60,
        .handshake_timeout_ms = 10000,
        .max_message_size = 16u << 20, /* RabbitMQ 4's default */
        .connection_max = -1,
        .consumer_max_per_channel = -1,
        .memory_high_watermark = 0.4,
        .consumer_timeout_ms = 30 * 60 * 1000,
        .read_budget = 256u << 10,
        .default_user = "guest",
        .default_pass = "guest",
        .default_vhost = "/",
        .default_user_tags = "administrator",
        .default_perm_configure = ".*",
        .default_perm_write = ".*",
        .default_perm_read = ".*",
        .loopback_users = "guest",
        .disk_free_limit = 50000000, /* RabbitMQ's 50MB */
        .mgmt_port = 15672,
        .prom_port = 15692,
        .ssl_handshake_timeout_ms = 5000,
        .send_timeout_ms = 15000, /* RabbitMQ's tcp_listen_options.send_timeout */
        .mgmt_idle_timeout_ms = 120000, /* RabbitMQ's (cowboy's) defaults */
        .mgmt_request_timeout_ms = 120000,
        .prom_idle_timeout_ms = 120000,
        .prom_request_timeout_ms = 120000,
        .mgmt_ssl_port = -1,
        .prom_ssl_port = -1,
        .auth_mechanisms = "PLAIN AMQPLAIN",
        .ha_poll_ms = 100,
        .ha_heartbeat_ms = 1000,
        .ha_fence_deadline_ms = 10000,
        .ha_status_port = -1,
    };
}

/* Closes every connection in vh with 320 CONNECTION_FORCED before vh is deleted. */
static void close_vhost_conns(struct broker *b, struct vhost *vh, void *arg)
{
    struct server *s = arg;
    (void)b;
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &s->conns) {
        struct conn *c = list_entry(pos, struct conn, link);
        if (c->vhost == vh)
            conn_vhost_deleted(c);
    }
}

/* The default user, vhost and permissions from the configuration, on the first start of an
 * empty data directory (as RabbitMQ does; not when definitions are to be loaded). */
static int seed_tenancy(struct server *s)
{
    const struct config *cfg = &s->cfg;
    struct broker *b = &s->b;
    if (!storage_is_new(b->store))
        return 0;
    if (cfg->load_definitions) {
        log_info("Will not seed default virtual host and user: have definitions to load");
        return storage_put_seeded(b->store) < 0 ? -ENOMEM : 0;
    }
    const char *tags = cfg->default_user_tags;
    struct err err = {""};
    struct vhost *vh = hmap_get(&b->vhosts, cfg->default_vhost, strlen(cfg->default_vhost));
    if (!vh && !(vh = broker_add_vhost(b, cfg->default_vhost)))
        return -ENOMEM;
    if (!vh->description && !(vh->description = strdup("Default virtual host")))
        return -ENOMEM;
    users_persist_vhost(b, vh);
    int rc = users_put_password(b, cfg->default_user, cfg->default_pass, tags, &err);
    struct user *u = rc < 0 ? NULL : users_find(b, cfg->default_user, strlen(cfg->default_user));
    if (u)
        rc = perm_set(b, u, vh->name, cfg->default_perm_configure, cfg->default_perm_write,
                      cfg->default_perm_read, &err);
    if (rc == 0)
        rc = storage_put_seeded(b->store) < 0 ? -ENOMEM : 0;
    if (rc < 0) {
        log_error("cannot create the default user '%s' in vhost '%s': %s", cfg->default_user,
                  cfg->default_vhost, err.text[0] ? err.text : strerror(-rc));
        return rc;
    }
    log_info("created default user '%s' and vhost '%s'", cfg->default_user, cfg->default_vhost);
    return 0;
}

void server_want_flush(struct server *s, struct conn *c)
{
    if (list_empty(&c->flush_link))
        list_insert_tail(&s->flush, &c->flush_link);
}

void server_gen_name(struct server *s, const char *prefix, char *buf, size_t size)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t rnd[22];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        /* Fall back to the sequence: names must be unique, not secret. */
        uint64_t seq = ++s->seq;
        for (size_t i = 0; i < sizeof rnd; i++)
            rnd[i] = (uint8_t)(seq >> (8 * (i % 8))) + (uint8_t)i;
    }
    char tail[sizeof rnd + 1];
    for (size_t i = 0; i < sizeof rnd; i++)
        tail[i] = alphabet[rnd[i] & 63];
    tail[sizeof rnd] = 0;
    snprintf(buf, size, "%s%s", prefix, tail);
}

/* The resource alarms, as RabbitMQ's: memory while what warrend holds (queued messages and
 * connection buffers) is above the watermark (cleared below 80% of it), disk while the data
 * directory's filesystem has less than disk_free_limit free (or a commit waits for space).
 * Publishers are blocked while any alarm is in force. */
static void update_alarms(struct server *s)
{
    bool mem = s->mem_alarm;
    uint64_t held = s->b.queued_mem + s->conn_mem;
    if (!mem && held > s->mem_limit) {
        mem = true;
        log_warn("memory alarm: warrend holds %llu MiB (queued messages and connection "
                 "buffers), above vm_memory_high_watermark (%llu MiB); publishers are blocked "
                 "until consumers catch up",
                 (unsigned long long)(held >> 20), (unsigned long long)(s->mem_limit >> 20));
    } else if (mem && held < s->mem_limit / 10 * 8) {
        mem = false;
        log_info("memory alarm cleared; publishers may publish again");
    }
    bool full = storage_disk_full(s->b.store) != 0;
    bool low = s->disk_free != UINT64_MAX && s->disk_free < s->cfg.disk_free_limit;
    bool disk = full || low;
    if (disk && !s->disk_alarm) {
        if (low)
            log_warn("disk alarm: %llu MB free on the data directory's filesystem, below "
                     "disk_free_limit (%llu MB); publishers are blocked until space is freed",
                     (unsigned long long)(s->disk_free / 1000000),
                     (unsigned long long)(s->cfg.disk_free_limit / 1000000));
        else
            log_error("disk alarm: the data directory's disk is full; publishers are blocked "
                      "until space is freed");
    } else if (!disk && s->disk_alarm) {
        log_info("disk alarm cleared; publishers may publish again");
    }
    bool was = s->mem_alarm || s->disk_alarm, now = mem || disk;
    s->mem_alarm = s->b.alarm_memory = mem;
    s->disk_alarm = s->b.alarm_disk = disk;
    snprintf(s->block_reason, sizeof s->block_reason, "%s%s%s", mem ? "low on memory" : "",
             mem && disk ? " & " : "", disk ? "low on disk" : "");
    if (was == now)
        return;
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &s->conns)
        conn_set_blocked(list_entry(pos, struct conn, link), now);
}

/* Every second: free space on the data directory's filesystem and the memory connections
 * hold (walking every connection: not for each loop turn). */
static void on_alarm_timer(uv_timer_t *t)
{
    struct server *s = t->data;
    struct statvfs sv;
    s->disk_free = statvfs(s->cfg.data_dir, &sv) == 0 ? (uint64_t)sv.f_bavail * sv.f_frsize
                                                      : UINT64_MAX;
    uint64_t m = 0, now = uv_now(s->loop);
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &s->conns) {
        struct conn *c = list_entry(pos, struct conn, link);
        m += c->in_cap + conn_output_pending(c);
        conn_check_send_timeout(c, now);
    }
    s->conn_mem = m;
    update_alarms(s);
}

/* Hands the open batch to the writer thread, with the queue metadata that goes with its index
 * changes (both in one transaction, so that recovery's counts match the index). */
static void submit_batch(struct server *s)
{
    while (!list_empty(&s->b.meta_dirty))
        queue_flush_meta(list_entry(s->b.meta_dirty.next, struct queue, meta_link));
    storage_submit(s->b.store);
}

/* The writer thread committed one or more batches. */
static void on_store_done(uv_async_t *h)
{
    struct server *s = h->data;
    int failed = 0;
    uint64_t durable = storage_collect(s->b.store, &failed);
    if (durable > s->b.durable_batch)
        s->b.durable_batch = durable;
    if (failed) { /* sticky: confirm nothing more, nack what is pending, stop */
        log_error("storage failure: %s; stopping so that a standby can take over (unconfirmed "
                  "messages were nacked)",
                  storage_strerror(failed));
        struct list *pos, *tmp;
        list_foreach_safe(pos, tmp, &s->conns)
            conn_storage_failed(list_entry(pos, struct conn, link));
        exit(70);
    }
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &s->b.pending_queues)
        queue_on_durable(list_entry(pos, struct queue, pend_link), s->b.durable_batch);
    list_foreach_safe(pos, tmp, &s->waiting)
        channel_on_durable(list_entry(pos, struct channel, wait_link), s->b.durable_batch);
    list_foreach_safe(pos, tmp, &s->held)
        conn_on_durable(list_entry(pos, struct conn, hold_link), s->b.durable_batch);
    broker_on_durable(&s->b, s->b.durable_batch);
    submit_batch(s); /* what gathered meanwhile */
    update_alarms(s);
}

static void notify_loop(void *arg)
{
    uv_async_send(arg); /* runs on the writer thread */
}

/* Runs once per loop turn, before libuv blocks for I/O. */
static void on_before_sleep(uv_prepare_t *h)
{
    struct server *s = h->data;
    broker_dispatch(&s->b);
    update_alarms(s);
    /* Connections that used their read budget last turn may read again. */
    s->turn++;
    while (!list_empty(&s->paused)) {
        struct conn *c = list_entry(s->paused.next, struct conn, pause_link);
        list_remove(&c->pause_link);
        conn_resume(c);
    }
    /* Then hand this turn's writes to the storage thread, then flush. Confirms for persistent
     * messages are sent later, from on_store_done, once their batch is on disk. */
    submit_batch(s);
    while (!list_empty(&s->flush)) {
        struct conn *c = list_entry(s->flush.next, struct conn, flush_link);
        list_remove(&c->flush_link);
        conn_flush(c);
    }
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct server *s = listener->data;
    if (status < 0) {
        log_warn("accept failed: %s", uv_strerror(status));
        return;
    }
    size_t i = (size_t)((uv_tcp_t *)listener - s->listeners);
    conn_accept(s, listener, s->listener_tls[i] ? s->tls_ctx : NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct server *s = h->data;
    log_info("received signal %d; shutting down", signum);
    server_stop(s);
}

/* Opens s->listeners[s->nlisteners] for l and counts it. A listener without an address takes
 * every IPv4 and IPv6 address, as RabbitMQ: "::" dual-stack (libuv clears IPV6_V6ONLY unless
 * UV_TCP_IPV6ONLY is given), or 0.0.0.0 when the machine has no IPv6. 0 or a libuv error, after
 * a log line. */
static int listen_one(struct server *s, const struct config_listener *l)
{
    uv_tcp_t *h = &s->listeners[s->nlisteners];
    struct sockaddr_storage addr;
    const char *shown = l->addr;
    int rc;
    if (!l->addr[0]) {
        shown = "[::] (every IPv4 and IPv6 address)";
        uv_ip6_addr("::", l->port, (struct sockaddr_in6 *)&addr);
        rc = uv_tcp_init_ex(s->loop, h, AF_INET6);
        if (rc == UV_EAFNOSUPPORT) {
            shown = "0.0.0.0 (every IPv4 address; this machine has no IPv6)";
            uv_ip4_addr("0.0.0.0", l->port, (struct sockaddr_in *)&addr);
            rc = uv_tcp_init_ex(s->loop, h, AF_INET);
        }
        if (rc < 0) {
            log_error("cannot create a socket for port %d: %s", l->port, uv_strerror(rc));
            return rc;
        }
    } else {
        if (uv_ip4_addr(l->addr, l->port, (struct sockaddr_in *)&addr) != 0)
            uv_ip6_addr(l->addr, l->port, (struct sockaddr_in6 *)&addr);
        uv_tcp_init(s->loop, h);
    }
    h->data = s;
    s->listener_tls[s->nlisteners] = l->tls;
    rc = uv_tcp_bind(h, (struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)h, 511, on_connection);
    if (rc < 0) {
        log_error("cannot listen on %s port %d: %s; is another broker running on that port?",
                  shown, l->port, uv_strerror(rc));
        uv_close((uv_handle_t *)h, NULL);
        return rc;
    }
    s->nlisteners++;
    log_info("listening for AMQP%s on %s port %d", l->tls ? " over TLS" : "", shown, l->port);
    return 0;
}

int server_start(struct server *s, uv_loop_t *loop, const struct config *cfg)
{
    memset(s, 0, sizeof *s);
    broker_init(&s->b, loop);
    s->loop = loop;
    s->cfg = *cfg;
    list_init(&s->conns);
    list_init(&s->flush);
    list_init(&s->paused);
    list_init(&s->waiting);
    list_init(&s->held);
    s->mem_limit = cfg->memory_high_watermark_abs
                       ? cfg->memory_high_watermark_abs
                       : (uint64_t)((double)uv_get_total_memory() * cfg->memory_high_watermark);
    s->b.mem_limit = s->mem_limit;
    s->disk_free = UINT64_MAX;
    for (unsigned i = 0; i < cfg->nlisteners; i++) {
        const struct config_listener *l = &cfg->listeners[i];
        struct sockaddr_storage addr;
        if (l->addr[0] && uv_ip4_addr(l->addr, l->port, (struct sockaddr_in *)&addr) != 0 &&
            uv_ip6_addr(l->addr, l->port, (struct sockaddr_in6 *)&addr) != 0) {
            log_error("--bind '%s' is not an IPv4 or IPv6 address (names are not resolved)",
                      l->addr);
            return -EINVAL;
        }
    }
    for (unsigned i = 0; i < cfg->nlisteners; i++)
        if (cfg->listeners[i].tls && !s->tls_ctx) {
            char why[600];
            if (!(s->tls_ctx = tls_ctx_new(&cfg->tls, why, sizeof why))) {
                log_error("cannot start the AMQPS listener: %s; fix ssl_options.* in the "
                          "configuration file", why);
                s->config_error = true;
                broker_free(&s->b);
                return -EINVAL;
            }
        }
    /* Storage, with the encryption-at-rest key when one is configured; logs why it failed. */
    s->b.store_shared = cfg->ha_shared;
    int rc = atrest_open(&s->b, cfg->data_dir, cfg->sync, cfg->encryption_key_file,
                         cfg->encryption_key_command);
    if (rc < 0) {
        s->config_error = atrest_config_error(rc);
        tls_ctx_free(s->tls_ctx);
        s->tls_ctx = NULL;
        return rc;
    }
    s->b.vhost_closing = close_vhost_conns;
    s->b.vhost_closing_arg = s;
    s->b.sessions = &amqp_session_ops;
    s->b.sessions_arg = s;
    uint64_t t0 = uv_hrtime();
    if ((rc = persist_recover(&s->b)) < 0)
        goto fail;
    log_info("recovered the data directory in %.3f s", (double)(uv_hrtime() - t0) / 1e9);
    if ((rc = seed_tenancy(s)) < 0)
        goto fail;
    if (cfg->load_definitions) {
        char why[600];
        if ((rc = defs_import_file(&s->b, cfg->load_definitions, why, sizeof why)) < 0) {
            log_error("cannot load definitions: %s; nothing was imported: fix the file or "
                      "unset load_definitions",
                      why);
            s->config_error = true;
            goto fail;
        }
    }
    uv_async_init(loop, &s->store_async, on_store_done);
    s->store_async.data = s;
    if ((rc = storage_start(s->b.store, notify_loop, &s->store_async)) < 0) {
        log_error("cannot start the storage thread: %s", strerror(-rc));
        uv_close((uv_handle_t *)&s->store_async, NULL);
        goto fail;
    }
    /* SIGTERM handled before anything listens: a client (or a supervisor) that sees the port
     * open may stop us at once, and must get a clean stop. */
    uv_signal_init(loop, &s->sig_int);
    uv_signal_init(loop, &s->sig_term);
    s->sig_int.data = s->sig_term.data = s;
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    for (unsigned i = 0; i < cfg->nlisteners; i++) {
        if ((rc = listen_one(s, &cfg->listeners[i])) < 0) {
            while (s->nlisteners)
                uv_close((uv_handle_t *)&s->listeners[--s->nlisteners], NULL);
            uv_close((uv_handle_t *)&s->sig_int, NULL);
            uv_close((uv_handle_t *)&s->sig_term, NULL);
            uv_close((uv_handle_t *)&s->store_async, NULL);
            goto fail;
        }
    }
    if (!cfg->nlisteners)
        log_warn("no AMQP listener (listeners.tcp = none): clients cannot connect");
    timers_init(&s->b.timers, loop);
    uv_timer_init(loop, &s->alarm_timer);
    s->alarm_timer.data = s;
    uv_timer_start(&s->alarm_timer, on_alarm_timer, 0, 1000);
    void *vv, *qv;
    for (uint32_t it = 0; hmap_next(&s->b.vhosts, &it, &vv);) {
        for (uint32_t jt = 0; hmap_next(&((struct vhost *)vv)->queues, &jt, &qv);)
            queue_start_timers(qv);
        if (s->b.params.count) /* the stored policies, on the recovered queues and exchanges */
            policy_apply_vhost(&s->b, vv);
    }
    if ((rc = delay_start(&s->b)) < 0) { /* delayed messages: the timer, the soonest stored */
        log_error("cannot start delayed delivery: out of memory");
        goto fail;
    }
    uv_prepare_init(loop, &s->before_sleep);
    s->before_sleep.data = s;
    uv_prepare_start(&s->before_sleep, on_before_sleep);
    signal(SIGPIPE, SIG_IGN);
    log_info("warrend started, data in %s", cfg->data_dir);
    return 0;
fail:
    tls_ctx_free(s->tls_ctx);
    s->tls_ctx = NULL;
    /* Close storage first: freeing the objects below must not be taken for deleting them. */
    storage_close(s->b.store);
    s->b.store = NULL;
    broker_free(&s->b);
    return rc;
}

int server_reload_tls(struct server *s)
{
    if (!s->tls_ctx)
        return 0;
    char why[600];
    SSL_CTX *ctx = tls_ctx_new(&s->cfg.tls, why, sizeof why);
    if (!ctx) {
        log_error("SIGHUP: cannot reload the AMQPS certificates: %s; still using the old ones",
                  why);
        return -1;
    }
    tls_ctx_free(s->tls_ctx); /* open sessions hold their own reference */
    s->tls_ctx = ctx;
    log_info("SIGHUP: reloaded the AMQPS certificate and key");
    return 0;
}

void server_stop(struct server *s)
{
    if (s->b.stopping)
        return;
    s->b.stopping = true;
    for (unsigned i = 0; i < s->nlisteners; i++)
        uv_close((uv_handle_t *)&s->listeners[i], NULL);
    uv_close((uv_handle_t *)&s->sig_int, NULL);
    uv_close((uv_handle_t *)&s->sig_term, NULL);
    if (s->on_stop)
        s->on_stop(s->on_stop_arg);
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &s->conns)
        conn_shutdown(list_entry(pos, struct conn, link));
    /* Write the closes now: the before-sleep hook goes away with the listener. */
    while (!list_empty(&s->flush)) {
        struct conn *c = list_entry(s->flush.next, struct conn, flush_link);
        list_remove(&c->flush_link);
        conn_flush(c);
    }
    uv_close((uv_handle_t *)&s->before_sleep, NULL);
    uv_close((uv_handle_t *)&s->alarm_timer, NULL);
    uv_close((uv_handle_t *)&s->store_async, NULL);
    timers_close(&s->b.timers);
}

void server_free(struct server *s)
{
    /* Commit what the last turn wrote before freeing the objects it references. */
    while (!list_empty(&s->b.meta_dirty))
        queue_flush_meta(list_entry(s->b.meta_dirty.next, struct queue, meta_link));
    storage_close(s->b.store);
    s->b.store = NULL;
    broker_free(&s->b);
    hmap_free(&s->replies);
    auth_throttle_free(&s->throttle);
    tls_ctx_free(s->tls_ctx);
    s->tls_ctx = NULL;
    free(s->tls_rbuf);
    s->tls_rbuf = NULL;
    opool_drain(&s->opool);
    while (s->in_nfree)
        free(s->in_free[--s->in_nfree]);
    free(s->in_free);
}
