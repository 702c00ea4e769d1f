/* conn.c — owns a connection's socket, buffers, negotiation and heartbeats, and the
 * mapping of errors (code + struct err detail, as values) to AMQP closes (conn_fail). Does not own channels' logic (channel.c)
 * nor queues. Invariants: frames are parsed in place from `in` and nothing keeps a pointer
 * into it past the frame's handling; output leaves in one uv_write per loop turn; a
 * connection is freed only from the close callback of its last uv handle. */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "config.h"
#include "lib/array.h"
#include "broker/amqp/auth.h"
#include "broker/amqp/channel.h"
#include "broker/amqp/conn.h"
#include "broker/model/errors.h"
#include "lib/log.h"
#include "lib/peer.h"
#include "broker/model/msg.h"
#include "broker/model/params.h"
#include "broker/model/queue.h"
#include "broker/amqp/server.h"
#include "broker/model/vhost.h"
#include "protocol/frame.h"
#include "protocol/table.h"

#define BODY_COPY_MAX 2048 /* body frames smaller than this are copied, larger referenced */

static void close_socket(struct conn *c);
static void channels_teardown(struct conn *c);
static void on_close_timeout(uv_timer_t *t);
static void update_reading(struct conn *c);

/* ---- output ---------------------------------------------------------------------- */

static struct outbuf *fill_buf(struct conn *c)
{
    return &c->out[c->fill];
}

static void want_flush(struct conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    server_want_flush(c->srv, c);
    /* A client that makes us produce more than it reads (returns, replies, gets) is read no
     * more until its output drains; one that never reads is dropped. */
    size_t pending = conn_output_pending(c);
    if (!c->out_full && pending > CONN_OUTPUT_HIGH) {
        c->out_full = true;
        update_reading(c);
    }
    if (pending > CONN_OUTPUT_MAX && !c->close_after_flush) {
        log_warn("connection %llu (%s): %zu bytes of output not read by the client; closing it",
                 (unsigned long long)c->id, c->peer, pending);
        c->out[0].oom = c->out[1].oom = 1; /* conn_flush drops it at the end of the turn */
    }
}

size_t conn_output_pending(const struct conn *c)
{
    return c->out[0].bytes + c->out[1].bytes + (c->tls ? tls_pending(c->tls) : 0);
}

void conn_send_method(struct conn *c, uint16_t ch, const struct amqp_method *m)
{
    long size = amqp_method_size(m);
    if (size < 0) {
        log_error("connection %llu: cannot encode %s (%s); this is a bug, please report it",
                  (unsigned long long)c->id, amqp_method_name(m->id), amqp_strerror((int)size));
        return;
    }
    struct outbuf *ob = fill_buf(c);
    uint8_t *p = outbuf_reserve(ob, (size_t)size + AMQP_FRAME_OVERHEAD);
    if (!p)
        return;
    amqp_frame_header_write(p, AMQP_FRAME_METHOD, ch, (uint32_t)size);
    amqp_method_encode(m, p + AMQP_FRAME_HEADER_SIZE);
    p[AMQP_FRAME_HEADER_SIZE + size] = AMQP_FRAME_END;
    outbuf_commit(ob, (size_t)size + AMQP_FRAME_OVERHEAD);
    want_flush(c);
}

void conn_send_content(struct conn *c, uint16_t ch, const struct amqp_method *m, struct msg *msg)
{
    conn_send_method(c, ch, m);
    struct outbuf *ob = fill_buf(c);
    amqp_bytes_t hdr = msg_header(msg);
    uint8_t *p = outbuf_reserve(ob, hdr.len + AMQP_FRAME_OVERHEAD);
    if (!p)
        return;
    amqp_frame_header_write(p, AMQP_FRAME_HEADER, ch, hdr.len);
    memcpy(p + AMQP_FRAME_HEADER_SIZE, hdr.ptr, hdr.len);
    p[AMQP_FRAME_HEADER_SIZE + hdr.len] = AMQP_FRAME_END;
    outbuf_commit(ob, hdr.len + AMQP_FRAME_OVERHEAD);

    size_t chunk_max = c->frame_max - AMQP_FRAME_OVERHEAD;
    static const uint8_t frame_end = AMQP_FRAME_END;
    for (uint64_t off = 0; off < msg->body_size;) {
        size_t n = msg->body_size - off < chunk_max ? (size_t)(msg->body_size - off) : chunk_max;
        if (n < BODY_COPY_MAX) {
            p = outbuf_reserve(ob, n + AMQP_FRAME_OVERHEAD);
            if (!p)
                return;
            amqp_frame_header_write(p, AMQP_FRAME_BODY, ch, (uint32_t)n);
            memcpy(p + AMQP_FRAME_HEADER_SIZE, msg->body + off, n);
            p[AMQP_FRAME_HEADER_SIZE + n] = AMQP_FRAME_END;
            outbuf_commit(ob, n + AMQP_FRAME_OVERHEAD);
        } else {
            p = outbuf_reserve(ob, AMQP_FRAME_HEADER_SIZE);
            if (!p)
                return;
            amqp_frame_header_write(p, AMQP_FRAME_BODY, ch, (uint32_t)n);
            outbuf_commit(ob, AMQP_FRAME_HEADER_SIZE);
            outbuf_append_ref(ob, msg, msg->body + off, n);
            outbuf_append(ob, &frame_end, 1);
        }
        off += n;
    }
    want_flush(c);
}

static void send_heartbeat(struct conn *c)
{
    uint8_t f[AMQP_FRAME_OVERHEAD];
    amqp_frame_header_write(f, AMQP_FRAME_HEARTBEAT, 0, 0);
    f[AMQP_FRAME_HEADER_SIZE] = AMQP_FRAME_END;
    outbuf_append(fill_buf(c), f, sizeof f);
    want_flush(c);
}

/* The slot of channel id, allocating its page when `create`; NULL when absent. */
static struct channel **chslot(struct conn *c, uint16_t id, bool create)
{
    if (id < CONN_LOW_CHANNELS)
        return &c->low[id];
    if (!c->pages) {
        if (!create || !(c->pages = calloc(256, sizeof *c->pages)))
            return NULL;
    }
    struct channel ***page = &c->pages[id >> 8];
    if (!*page) {
        if (!create)
            return NULL;
        *page = calloc(256, sizeof **page);
        if (!*page)
            return NULL;
    }
    return &(*page)[id & 255];
}

/* Calls fn on every open channel's slot. */
static void each_channel(struct conn *c, void (*fn)(void *arg, struct channel **slot), void *arg)
{
    for (uint32_t i = 0; i < CONN_LOW_CHANNELS; i++)
        if (c->low[i])
            fn(arg, &c->low[i]);
    for (uint32_t p = 0; c->pages && p < 256; p++)
        for (uint32_t i = 0; c->pages[p] && i < 256; i++)
            if (c->pages[p][i])
                fn(arg, &c->pages[p][i]);
}

struct open_walk {
    void (*fn)(void *arg, struct channel *ch);
    void *arg;
};

static void if_open(void *arg, struct channel **slot)
{
    struct open_walk *w = arg;
    if ((*slot)->state == CH_OPEN)
        w->fn(w->arg, *slot);
}

void conn_each_channel(struct conn *c, void (*fn)(void *arg, struct channel *ch), void *arg)
{
    struct open_walk w = {fn, arg};
    each_channel(c, if_open, &w);
}

static struct channel *get_channel(struct conn *c, uint16_t id)
{
    struct channel **slot = chslot(c, id, false);
    return slot ? *slot : NULL;
}

/* Frees channel `id` and empties its slot. */
static void drop_channel(struct conn *c, uint16_t id)
{
    struct channel **slot = chslot(c, id, false);
    if (slot && *slot) {
        channel_free(*slot);
        *slot = NULL;
        c->nchannels--;
    }
}

static void wake_consumers(void *arg, struct channel **slot)
{
    (void)arg;
    channel_kick_consumers(*slot);
}

static void kick_consumer_queues(struct conn *c)
{
    each_channel(c, wake_consumers, NULL);
}

static void on_write_done(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    c->writing = false;
    if (c->tls)
        tls_written(c->tls);
    else
        outbuf_reset(&c->out[!c->fill]);
    if (c->state == CONN_CLOSED)
        return;
    if (status < 0) {
        log_info("connection %llu (%s): write failed: %s; closing", (unsigned long long)c->id,
                 c->peer, uv_strerror(status));
        close_socket(c);
        return;
    }
    if (c->throttled && conn_output_pending(c) < CONN_OUTPUT_HIGH / 2) {
        c->throttled = false;
        kick_consumer_queues(c);
    }
    if (c->out_full && conn_output_pending(c) < CONN_OUTPUT_HIGH / 2) {
        c->out_full = false;
        update_reading(c);
    }
    conn_flush(c);
}

void conn_want_confirms(struct conn *c, struct channel *ch)
{
    if (list_empty(&ch->confirm_link))
        list_insert_tail(&c->confirms, &ch->confirm_link);
    want_flush(c);
}

void conn_hold_until(struct conn *c, uint64_t batch)
{
    if (c->hold_batch < batch)
        c->hold_batch = batch;
    if (list_empty(&c->hold_link))
        list_insert_tail(&c->srv->held, &c->hold_link);
    update_reading(c);
}

static void process_input(struct conn *c);

void conn_on_durable(struct conn *c, uint64_t durable)
{
    if (!c->hold_batch || c->hold_batch > durable)
        return;
    c->hold_batch = 0;
    list_remove(&c->hold_link);
    want_flush(c);
    process_input(c); /* the frames that arrived meanwhile */
    if (c->state != CONN_CLOSED)
        update_reading(c);
}

static void nack_pending(void *arg, struct channel **slot)
{
    (void)arg;
    channel_nack_pending(*slot);
}

void conn_storage_failed(struct conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    each_channel(c, nack_pending, NULL);
    if (c->writing || c->hold_batch)
        return; /* a write is under way: what follows cannot overtake it */
    struct outbuf *ob = fill_buf(c);
    uv_buf_t b;
    if (c->tls && ob->niov && tls_write(c->tls, ob->iov, ob->niov) == 0 && tls_take(c->tls, &b))
        (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1); /* best effort */
    else if (!c->tls && ob->niov)
        (void)uv_try_write((uv_stream_t *)&c->tcp, ob->iov, ob->niov); /* best effort */
}

/* conn_flush over TLS: this turn's plaintext is encrypted into the session's buffer (with
 * close_notify at the end of a close) and that buffer is written. */
static void tls_flush(struct conn *c, struct outbuf *ob)
{
    if (ob->bytes) {
        int rc = tls_write(c->tls, ob->iov, ob->niov);
        outbuf_reset(ob);
        if (rc < 0) {
            log_info("connection %llu (%s): cannot encrypt output (TLS session not usable); "
                     "closing", (unsigned long long)c->id, c->peer);
            close_socket(c);
            return;
        }
    }
    if (c->close_after_flush && !c->tls_shut) {
        c->tls_shut = true;
        tls_shutdown(c->tls);
    }
    uv_buf_t b;
    if (!tls_take(c->tls, &b)) {
        if (c->close_after_flush)
            close_socket(c);
        return;
    }
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write_done);
    if (rc < 0) {
        log_info("connection %llu (%s): write failed: %s; closing", (unsigned long long)c->id,
                 c->peer, uv_strerror(rc));
        tls_written(c->tls);
        close_socket(c);
        return;
    }
    c->writing = true;
    c->last_send_ms = c->write_since_ms = uv_now(c->srv->loop);
    c->send_oct += b.len;
    c->send_cnt++;
}

void conn_flush(struct conn *c)
{
    while (!list_empty(&c->confirms)) {
        struct channel *ch = list_entry(c->confirms.next, struct channel, confirm_link);
        list_remove(&ch->confirm_link);
        channel_send_confirms(ch);
    }
    if (c->writing || c->state == CONN_CLOSED || c->hold_batch)
        return;
    struct outbuf *ob = fill_buf(c);
    if (ob->oom) {
        log_error("connection %llu (%s): out of memory for output; closing it",
                  (unsigned long long)c->id, c->peer);
        close_socket(c);
        return;
    }
    if (c->tls) {
        tls_flush(c, ob);
        return;
    }
    if (ob->bytes == 0) {
        if (c->close_after_flush)
            close_socket(c);
        return;
    }
    c->fill ^= 1;
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, ob->iov, ob->niov, on_write_done);
    if (rc < 0) {
        log_info("connection %llu (%s): write failed: %s; closing", (unsigned long long)c->id,
                 c->peer, uv_strerror(rc));
        outbuf_reset(ob);
        close_socket(c);
        return;
    }
    c->writing = true;
    c->last_send_ms = c->write_since_ms = uv_now(c->srv->loop);
    c->send_oct += ob->bytes;
    c->send_cnt++;
}

/* ---- errors ---------------------------------------------------------------------- */

static void send_close(struct conn *c, uint16_t ch, int rc, const char *detail, uint32_t method)
{
    const struct werr_info *e = err_info(rc);
    char text[256];
    int n = snprintf(text, sizeof text, "%s - %s", e->text, detail);
    if (n < 0 || (size_t)n >= sizeof text)
        n = sizeof text - 1;
    struct amqp_method m = {.id = ch ? AMQP_CHANNEL_CLOSE : AMQP_CONNECTION_CLOSE};
    /* channel.close and connection.close share one field layout. */
    m.u.connection_close.reply_code = e->reply_code;
    m.u.connection_close.reply_text = (amqp_bytes_t){(const uint8_t *)text, (uint32_t)n};
    m.u.connection_close.class_id = (uint16_t)(method >> 16);
    m.u.connection_close.method_id = (uint16_t)method;
    conn_send_method(c, ch, &m);
}

/* Handshake errors before tuning is done get no connection.close: like RabbitMQ, stop reading
 * and drop the socket after 3 s (which also slows down password guessing). */
static void silent_close(struct conn *c, int rc, const char *detail)
{
    log_warn("connection %llu (%s): handshake failed: %s - %s; closing in 3 s",
             (unsigned long long)c->id, c->peer, err_info(rc)->text, detail);
    c->state = CONN_CLOSING;
    c->read_done = true;
    update_reading(c);
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, on_close_timeout, 3000, 0);
}

void conn_fail(struct conn *c, uint16_t ch, int rc, const struct err *err, uint32_t method)
{
    if (c->state >= CONN_CLOSING)
        return;
    /* The detail: the text that came with the error, else the code's own name. */
    const char *detail = err && err->text[0] && err_is_werr(rc) ? err->text : err_str(rc);
    if (c->state < CONN_OPENING && rc != -WERR_LOGIN_REFUSED) {
        silent_close(c, rc, detail);
        return;
    }
    const struct werr_info *e = err_info(rc);
    if (!err_is_werr(rc))
        log_error("connection %llu (%s): internal error: %s", (unsigned long long)c->id,
                  c->peer, err_str(rc));
    struct channel **slot = ch ? chslot(c, ch, false) : NULL;
    if (e->scope == CHANNEL && slot && *slot) {
        struct channel *chan = *slot;
        log_debug("connection %llu: channel %u error %u: %s", (unsigned long long)c->id, ch,
                  e->reply_code, detail);
        send_close(c, ch, rc, detail, method);
        channel_free(chan);
        /* Keep a closing placeholder so frames until close-ok are dropped. */
        chan = channel_new(c, ch);
        if (chan)
            chan->state = CH_CLOSING;
        else
            c->nchannels--;
        *slot = chan;
        return;
    }
    log_warn("connection %llu (%s): closing with %u %s - %s", (unsigned long long)c->id, c->peer,
             e->reply_code, e->text, detail);
    channels_teardown(c);
    send_close(c, 0, rc, detail, method);
    c->state = CONN_CLOSING;
    /* Wait for close-ok, but not forever: reuse the timer as a close timeout. */
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, on_close_timeout, 3000, 0);
}

/* ---- lifetime -------------------------------------------------------------------- */

static void on_close_timeout(uv_timer_t *t)
{
    close_socket(t->data);
}

static void free_channel(void *arg, struct channel **slot)
{
    (void)arg;
    channel_free(*slot);
    *slot = NULL;
}

static void channels_teardown(struct conn *c)
{
    each_channel(c, free_channel, NULL);
    for (uint32_t p = 0; c->pages && p < 256; p++)
        free(c->pages[p]);
    free(c->pages);
    c->pages = NULL;
    c->nchannels = 0;
    /* Exclusive queues die with their owner. */
    struct vhost *vh = c->vhost;
    if (!vh)
        return;
    void *v;
    for (uint32_t it = 0; hmap_next(&vh->queues, &it, &v);) {
        struct queue *q = v;
        if (q->exclusive && q->owner == c)
            queue_delete(q);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    free(c->client_props);
    if (c->tls) {
        tls_free(c->tls);
        free(c->tls);
    }
    outbuf_free(&c->out[0]);
    outbuf_free(&c->out[1]);
    free(c->in);
    free(c);
}

static void close_socket(struct conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    c->state = CONN_CLOSED;
    channels_teardown(c);
    if (c->opened)
        c->srv->b.stats.connections_closed++;
    if (c->vhost) {
        c->vhost->nconnections--;
        c->vhost = NULL;
    }
    queue_flow_cancel(&c->flow);
    list_remove(&c->link);
    list_remove(&c->flush_link);
    list_remove(&c->pause_link);
    list_remove(&c->hold_link);
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void conn_shutdown(struct conn *c)
{
    if (c->state == CONN_OPEN) {
        struct err e;
        conn_fail(c, 0,
                  err_set(&e, -WERR_CONNECTION_FORCED,
                          "broker forced connection closure with reason 'shutdown'"),
                  &e, 0);
        c->close_after_flush = true;
        want_flush(c);
    } else {
        close_socket(c);
    }
}

/* ---- handshake ------------------------------------------------------------------- */

/* The configured mechanisms, without EXTERNAL unless the client presented a certificate (as
 * RabbitMQ offers it). */
static void offered_mechanisms(const struct conn *c, char *buf, size_t cap)
{
    const char *list = c->srv->cfg.auth_mechanisms;
    size_t n = 0;
    buf[0] = 0;
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, " ");
        bool external = len == 8 && !memcmp(p, "EXTERNAL", 8);
        if ((!external || (c->tls && tls_peer_has_cert(c->tls))) && n + len + 2 < cap)
            n += (size_t)snprintf(buf + n, cap - n, "%s%.*s", n ? " " : "", (int)len, p);
        p += len + (p[len] == ' ');
    }
}

static void send_start(struct conn *c)
{
    struct amqp_wbuf w = {0};
    size_t top = amqp_tw_begin(&w);
    amqp_tw_key(&w, "capabilities");
    size_t caps = amqp_tw_table(&w);
    static const char *const cap_names[] = {
        "publisher_confirms", "exchange_exchange_bindings", "basic.nack",
        "consumer_cancel_notify", "connection.blocked", "consumer_priorities",
        "authentication_failure_close", "per_consumer_qos", "direct_reply_to"};
    for (size_t i = 0; i < sizeof cap_names / sizeof cap_names[0]; i++) {
        amqp_tw_key(&w, cap_names[i]);
        amqp_tw_bool(&w, true);
    }
    amqp_tw_end(&w, caps);
    amqp_tw_key(&w, "cluster_name");
    amqp_tw_str(&w, "warren@localhost");
    amqp_tw_key(&w, "copyright");
    amqp_tw_str(&w, "Copyright (c) the Warren authors");
    amqp_tw_key(&w, "information");
    amqp_tw_str(&w, "Warren, an AMQP 0-9-1 broker compatible with RabbitMQ 3.x clients");
    amqp_tw_key(&w, "platform");
    amqp_tw_str(&w, "Linux (C17, libuv)");
    amqp_tw_key(&w, "product");
    amqp_tw_str(&w, "Warren");
    amqp_tw_key(&w, "version");
    amqp_tw_str(&w, WARREN_VERSION);
    amqp_tw_end(&w, top);
    if (w.failed) {
        close_socket(c);
        return;
    }
    struct amqp_method m = {.id = AMQP_CONNECTION_START};
    m.u.connection_start.version_major = 0;
    m.u.connection_start.version_minor = 9;
    m.u.connection_start.server_properties = amqp_tw_body(&w, top);
    char mechs[64];
    offered_mechanisms(c, mechs, sizeof mechs);
    m.u.connection_start.mechanisms = (amqp_bytes_t){(const uint8_t *)mechs,
                                                     (uint32_t)strlen(mechs)};
    m.u.connection_start.locales = AMQP_BYTES_LIT("en_US");
    conn_send_method(c, 0, &m);
    amqp_wbuf_free(&w);
    c->state = CONN_START;
}

static void read_client_capabilities(struct conn *c, amqp_bytes_t client_props)
{
    struct amqp_field caps, v;
    if (amqp_table_get(client_props, "capabilities", &caps) != 1 || caps.type != 'F')
        return;
    if (amqp_table_get(caps.v.bytes, "consumer_cancel_notify", &v) == 1 && v.type == 't')
        c->cap_consumer_cancel_notify = v.v.b;
    if (amqp_table_get(caps.v.bytes, "authentication_failure_close", &v) == 1 && v.type == 't')
        c->cap_auth_failure_close = v.v.b;
    if (amqp_table_get(caps.v.bytes, "connection.blocked", &v) == 1 && v.type == 't')
        c->cap_connection_blocked = v.v.b;
}

/* Sends the outcome of the login: connection.tune, or the refusal. */
static int finish_login(struct conn *c, int rc, struct err *err)
{
    if (rc < 0) {
        if (!c->cap_auth_failure_close) {
            /* Clients that did not ask for a close on auth failure expect the socket to drop. */
            silent_close(c, rc, err_str(rc));
            return 0;
        }
        err_set(err, rc,
                "Login was refused using authentication mechanism %s. For details see the "
                "broker logfile.",
                c->mechanism);
        conn_fail(c, 0, rc, err, 0); /* RabbitMQ names no method here */
        return 0;
    }
    struct amqp_method m = {.id = AMQP_CONNECTION_TUNE};
    m.u.connection_tune.channel_max = c->srv->cfg.channel_max;
    m.u.connection_tune.frame_max = c->srv->cfg.frame_max;
    m.u.connection_tune.heartbeat = c->srv->cfg.heartbeat;
    conn_send_method(c, 0, &m);
    c->state = CONN_TUNE;
    return 0;
}

static void on_timer(uv_timer_t *t);

static int on_start_ok(struct conn *c, const struct amqp_connection_start_ok *so, struct err *err)
{
    read_client_capabilities(c, so->client_properties);
    /* Kept for the management API (a table the codec validated). */
    if (so->client_properties.len && (c->client_props = malloc(so->client_properties.len))) {
        memcpy(c->client_props, so->client_properties.ptr, so->client_properties.len);
        c->client_props_len = so->client_properties.len;
    }
    const char *why = "";
    struct server *s = c->srv;
    char mechs[64], cert_user[256];
    offered_mechanisms(c, mechs, sizeof mechs);
    struct auth_request r = {.mechanism = so->mechanism, .response = so->response,
                             .loopback = c->loopback, .loopback_users = s->cfg.loopback_users,
                             .offered = mechs};
    if (c->tls && tls_peer_has_cert(c->tls)) {
        /* As RabbitMQ: a name from a certificate nobody verified proves nothing. */
        if (!s->cfg.tls.verify_peer)
            r.cert_refusal = "TLS configuration is unsafe";
        else if (tls_peer_name(c->tls, s->cfg.cert_login == CERT_LOGIN_DN, cert_user,
                               sizeof cert_user))
            r.cert_user = cert_user;
        else
            r.cert_refusal = "no name found";
    }
    int rc = auth_login(&s->b, &r, c->user, sizeof c->user, &why);
    if (rc == -WERR_COMMAND_INVALID)
        return err_set(err, rc, "%s '%.*s'", why, (int)so->mechanism.len,
                        (const char *)so->mechanism.ptr);
    snprintf(c->mechanism, sizeof c->mechanism, "%.*s", (int)so->mechanism.len,
             (const char *)so->mechanism.ptr);
    uint64_t now = uv_now(s->loop);
    uint64_t slot = auth_throttle_slot(&s->throttle, c->host, now);
    if (rc < 0) {
        log_warn("connection %llu (%s): user '%s' login refused (%s): %s",
                 (unsigned long long)c->id, c->peer, c->user, c->mechanism, why);
        auth_throttle_failed(&s->throttle, c->host, now);
    }
    if (slot > now) {
        /* Repeated failures from this address: the answer waits for its slot, and nothing
         * more is read from this client meanwhile. */
        c->auth_wait = true;
        c->auth_rc = rc;
        update_reading(c);
        uv_timer_stop(&c->timer);
        uv_timer_start(&c->timer, on_timer, slot - now, 0);
        return 0;
    }
    return finish_login(c, rc, err);
}

static int on_tune_ok(struct conn *c, const struct amqp_connection_tune_ok *t, struct err *err)
{
    const struct config *cfg = &c->srv->cfg;
    if (t->frame_max < AMQP_FRAME_MIN_SIZE)
        return err_set(err, -WERR_NOT_ALLOWED, "frame_max=%u < %u min size", t->frame_max,
                        AMQP_FRAME_MIN_SIZE);
    if (t->frame_max > cfg->frame_max)
        return err_set(err, -WERR_NOT_ALLOWED, "frame_max=%u > %u max size", t->frame_max,
                        cfg->frame_max);
    /* 0 means no limit, which is over any limit but 65535 (channel_max = 0 in the file). */
    if (t->channel_max > cfg->channel_max || (t->channel_max == 0 && cfg->channel_max < 65535))
        return err_set(err, -WERR_NOT_ALLOWED, "channel_max=%u%s > %u max size", t->channel_max,
                       t->channel_max ? "" : " (no limit)", cfg->channel_max);
    c->frame_max = t->frame_max ? t->frame_max : cfg->frame_max;
    c->channel_max = t->channel_max ? t->channel_max : cfg->channel_max;
    c->heartbeat = t->heartbeat;
    c->state = CONN_OPENING;
    return 0;
}

/* The user's limit `key` (max-connections, max-channels) from its user-limits, or -1. */
static long long user_limit(const struct conn *c, const char *key)
{
    const struct param *p = param_find(&c->srv->b, PARAM_USER_LIMITS, "", c->user);
    json_t *v = p ? json_object_get(p->value, key) : NULL;
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (long long)json_integer_value(v)
                                                            : -1;
}

/* How many connections user `user` has open, and how many channels they have. Walks every
 * connection: only done for users with a limit. */
static void user_usage(const struct server *s, const char *user, uint64_t *conns,
                       uint64_t *channels)
{
    *conns = *channels = 0;
    const struct list *pos;
    list_foreach(pos, &s->conns) {
        const struct conn *o = list_entry(pos, const struct conn, link);
        if (o->opened && o->state != CONN_CLOSED && !strcmp(o->user, user)) {
            (*conns)++;
            *channels += o->nchannels;
        }
    }
}

static int on_open(struct conn *c, const struct amqp_connection_open *o, struct err *err)
{
    struct server *s = c->srv;
    if (s->cfg.connection_max >= 0 &&
        s->b.stats.connections_opened - s->b.stats.connections_closed >=
            (uint64_t)s->cfg.connection_max)
        return err_set(err, -WERR_NOT_ALLOWED,
                       "connection refused: node connection limit (%lld) is reached",
                       (long long)s->cfg.connection_max);
    struct vhost *vh = hmap_get(&c->srv->b.vhosts, o->virtual_host.ptr, o->virtual_host.len);
    if (!vh)
        return err_set(err, -WERR_NOT_ALLOWED, "vhost %.*s not found", (int)o->virtual_host.len,
                        (const char *)o->virtual_host.ptr);
    if (vh->max_connections >= 0 && vh->nconnections >= (uint64_t)vh->max_connections)
        return err_set(err, -WERR_NOT_ALLOWED,
                       "access to vhost '%s' refused for user '%s': connection limit (%lld) is "
                       "reached",
                       vh->name, c->user, (long long)vh->max_connections);
    long long ulimit = user_limit(c, "max-connections");
    uint64_t used, chans;
    if (ulimit >= 0) {
        user_usage(s, c->user, &used, &chans);
        if (used >= (uint64_t)ulimit)
            return err_set(err, -WERR_NOT_ALLOWED,
                           "connection refused for user '%s': user connection limit (%lld) is "
                           "reached", c->user, ulimit);
    }
    access_init(&c->access, &c->srv->b, c->user, vh);
    if (!access_vhost_allowed(&c->access)) {
        log_warn("connection %llu (%s): user '%s' has no permissions in vhost '%s'",
                 (unsigned long long)c->id, c->peer, c->user, vh->name);
        return err_set(err, -WERR_NOT_ALLOWED, "access to vhost '%s' refused for user '%s'",
                       vh->name, c->user);
    }
    c->vhost = vh;
    vh->nconnections++;
    c->opened = true;
    c->srv->b.stats.connections_opened++;
    c->state = CONN_OPEN;
    struct amqp_method m = {.id = AMQP_CONNECTION_OPEN_OK};
    conn_send_method(c, 0, &m);
    uv_timer_stop(&c->timer);
    if (c->heartbeat) {
        uint64_t every = c->heartbeat * 1000ull / 2;
        uv_timer_start(&c->timer, on_timer, every, every);
    }
    log_info("connection %llu (%s): user '%s' opened vhost '%s'", (unsigned long long)c->id,
             c->peer, c->user, vh->name);
    return 0;
}

void conn_vhost_deleted(struct conn *c)
{
    if (c->state == CONN_OPEN) {
        struct err e;
        conn_fail(c, 0,
                  err_set(&e, -WERR_CONNECTION_FORCED, "vhost '%s' is deleted", c->vhost->name),
                  &e, 0);
    }
    channels_teardown(c); /* conn_fail's teardown, again: nothing of vh may stay */
    c->vhost->nconnections--;
    c->vhost = NULL;
}

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    uint64_t now = uv_now(c->srv->loop);
    if (c->auth_wait) {
        c->auth_wait = false;
        struct err e = {.text = ""};
        uv_timer_start(&c->timer, on_timer, c->srv->cfg.handshake_timeout_ms, 0);
        int rc = finish_login(c, c->auth_rc, &e);
        if (rc < 0)
            conn_fail(c, 0, rc, &e, 0);
        if (c->state == CONN_CLOSED)
            return;
        process_input(c); /* what the client sent meanwhile */
        if (c->state != CONN_CLOSED)
            update_reading(c);
        return;
    }
    if (c->tls && !c->tls->established) {
        log_warn("connection %llu (%s): closing: TLS handshake not completed within %u ms",
                 (unsigned long long)c->id, c->peer, c->srv->cfg.ssl_handshake_timeout_ms);
        close_socket(c);
        return;
    }
    if (c->state < CONN_OPEN) {
        log_warn("connection %llu (%s): closing: handshake not completed within %u ms",
                 (unsigned long long)c->id, c->peer, c->srv->cfg.handshake_timeout_ms);
        close_socket(c);
        return;
    }
    if (!c->heartbeat)
        return;
    uint64_t hb_ms = c->heartbeat * 1000ull;
    if (!c->reading) /* blocked or held by us: its heartbeats wait in the socket */
        c->last_recv_ms = now;
    if (now - c->last_recv_ms > 2 * hb_ms) {
        log_warn("connection %llu (%s): missed heartbeats from client, timeout: %us; closing",
                 (unsigned long long)c->id, c->peer, c->heartbeat);
        close_socket(c);
        return;
    }
    /* Every tick: TLS ciphertext buffers go back when nothing waits in them (a busy connection
     * makes them again, one realloc per tick; an idle one only heartbeats, in a small one). */
    if (c->tls && !c->writing)
        tls_trim(c->tls);
    if (now - c->last_send_ms >= hb_ms / 2)
        send_heartbeat(c);
}

/* ---- frame dispatch --------------------------------------------------------------- */

static int decode_error(int status, const struct amqp_frame *f, struct err *err)
{
    if (status == AMQP_E_METHOD)
        return err_set(err, -WERR_NOT_IMPLEMENTED, "unknown method (class %u, method %u)",
                        f->size >= 2 ? rd16(f->payload) : 0,
                        f->size >= 4 ? rd16(f->payload + 2) : 0);
    /* RabbitMQ reports undecodable arguments as a frame error. */
    return err_set(err, -WERR_FRAME_ERROR, "cannot decode %s on channel %u: %s",
                    f->size >= 4 ? amqp_method_name(rd32(f->payload)) : "method", f->channel,
                    amqp_strerror(status));
}

/* The client closed: like RabbitMQ, answer close-ok and keep the socket open, discarding
 * whatever else arrives (a client may have queued publishes behind its close), until the client
 * closes it or, at the latest, after the heartbeat timeout capped at 30 s. */
static void drain_after_close_ok(struct conn *c)
{
    struct amqp_method ok = {.id = AMQP_CONNECTION_CLOSE_OK};
    conn_send_method(c, 0, &ok);
    c->state = CONN_DRAINING;
    uint64_t wait_s = c->heartbeat && c->heartbeat < 30 ? c->heartbeat : 30;
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, on_close_timeout, wait_s * 1000, 0);
    update_reading(c);
}

static int handle_connection_method(struct conn *c, const struct amqp_method *m, struct err *err)
{
    switch (m->id) {
    case AMQP_CONNECTION_CLOSE:
        channels_teardown(c);
        drain_after_close_ok(c);
        return 0;
    case AMQP_CONNECTION_UPDATE_SECRET: {
        if (!auth_check_secret(&c->srv->b, c->user, m->u.connection_update_secret.new_secret)) {
            log_warn("connection %llu (%s): user '%s': connection.update-secret refused: "
                     "invalid credentials",
                     (unsigned long long)c->id, c->peer, c->user);
            return err_set(err, -WERR_NOT_ALLOWED,
                           "New secret was refused by one of the backends");
        }
        struct amqp_method ok = {.id = AMQP_CONNECTION_UPDATE_SECRET_OK};
        conn_send_method(c, 0, &ok);
        return 0;
    }
    case AMQP_CONNECTION_BLOCKED:
    case AMQP_CONNECTION_UNBLOCKED:
        return 0;
    default:
        if (m->id >> 16 == AMQP_CLASS_CONNECTION)
            return err_set(err, -WERR_COMMAND_INVALID, "%s not expected now",
                            amqp_method_name(m->id));
        return err_set(err, -WERR_CHANNEL_ERROR, "unexpected method in connection state running");
    }
}

static int handle_handshake(struct conn *c, const struct amqp_frame *f, struct err *err)
{
    if (f->type == AMQP_FRAME_HEARTBEAT)
        return 0;
    if (f->type != AMQP_FRAME_METHOD || f->channel != 0)
        return err_set(err, -WERR_UNEXPECTED_FRAME, "frame type %u on channel %u during handshake",
                        f->type, f->channel);
    struct amqp_method m;
    int st = amqp_method_decode(f->payload, f->size, &m);
    if (st < 0)
        return decode_error(st, f, err);
    if (m.id == AMQP_CONNECTION_CLOSE)
        return handle_connection_method(c, &m, err);
    switch (c->state) {
    case CONN_START:
        if (m.id == AMQP_CONNECTION_START_OK)
            return on_start_ok(c, &m.u.connection_start_ok, err);
        break;
    case CONN_TUNE:
        if (m.id == AMQP_CONNECTION_TUNE_OK)
            return on_tune_ok(c, &m.u.connection_tune_ok, err);
        break;
    case CONN_OPENING:
        if (m.id == AMQP_CONNECTION_OPEN)
            return on_open(c, &m.u.connection_open, err);
        break;
    default:
        break;
    }
    return err_set(err, -WERR_COMMAND_INVALID, "%s not expected during the handshake",
                    amqp_method_name(m.id));
}

/* While a connection.close is outstanding (ours, or the client's that we answered) only close
 * and close-ok matter; every other frame is dropped, as RabbitMQ does. */
static void handle_closing(struct conn *c, const struct amqp_frame *f)
{
    struct amqp_method m;
    if (f->type != AMQP_FRAME_METHOD || f->channel != 0 ||
        amqp_method_decode(f->payload, f->size, &m) < 0)
        return;
    if (m.id == AMQP_CONNECTION_CLOSE_OK) {
        close_socket(c);
    } else if (m.id == AMQP_CONNECTION_CLOSE && c->state == CONN_DRAINING) {
        struct amqp_method ok = {.id = AMQP_CONNECTION_CLOSE_OK};
        conn_send_method(c, 0, &ok);
    } else if (m.id == AMQP_CONNECTION_CLOSE) {
        drain_after_close_ok(c);
    }
}

static int handle_channel_frame(struct conn *c, const struct amqp_frame *f, struct err *err)
{
    uint16_t id = f->channel;
    struct channel *ch = get_channel(c, id);
    struct amqp_method m;
    if (f->type == AMQP_FRAME_METHOD) {
        int st = amqp_method_decode(f->payload, f->size, &m);
        if (st < 0)
            return decode_error(st, f, err);
    }
    if (ch && ch->state == CH_CLOSING) {
        if (f->type != AMQP_FRAME_METHOD)
            return 0;
        if (m.id == AMQP_CHANNEL_CLOSE_OK) {
            drop_channel(c, id);
        } else if (m.id == AMQP_CHANNEL_CLOSE) {
            struct amqp_method ok = {.id = AMQP_CHANNEL_CLOSE_OK};
            conn_send_method(c, id, &ok);
        }
        return 0;
    }
    if (!ch) {
        if (f->type != AMQP_FRAME_METHOD || m.id != AMQP_CHANNEL_OPEN)
            return err_set(err, -WERR_CHANNEL_ERROR, "expected 'channel.open'");
        if (c->nchannels >= c->channel_max) {
            err_set(err, -WERR_NOT_ALLOWED,
                     "number of channels opened (%u) has reached the negotiated channel_max (%u)",
                     c->nchannels, c->channel_max);
            conn_fail(c, 0, -WERR_NOT_ALLOWED, err, 0); /* RabbitMQ names no method here */
            return 0;
        }
        long long ulimit = user_limit(c, "max-channels");
        uint64_t conns, used;
        if (ulimit >= 0 && (user_usage(c->srv, c->user, &conns, &used), used >= (uint64_t)ulimit)) {
            err_set(err, -WERR_NOT_ALLOWED,
                    "number of channels opened for user '%s' has reached the maximum allowed "
                    "user limit of %lld", c->user, ulimit);
            conn_fail(c, 0, -WERR_NOT_ALLOWED, err, 0);
            return 0;
        }
        struct channel **slot = chslot(c, id, true);
        ch = slot ? channel_new(c, id) : NULL;
        if (!ch)
            return -ENOMEM;
        *slot = ch;
        c->nchannels++;
        struct amqp_method ok = {.id = AMQP_CHANNEL_OPEN_OK};
        c->srv->b.stats.channels_opened++;
        conn_send_method(c, id, &ok);
        return 0;
    }
    int rc;
    /* Content frames must follow their method without other frames on the channel between. */
    if (ch->ct == CT_HEADER && f->type != AMQP_FRAME_HEADER) {
        conn_fail(c, 0, err_set(err, -WERR_UNEXPECTED_FRAME, "expected content header for class 60, "
                                "got non content header frame instead"), err, AMQP_BASIC_PUBLISH);
        return 0;
    }
    if (ch->ct == CT_BODY && f->type != AMQP_FRAME_BODY) {
        conn_fail(c, 0, err_set(err, -WERR_UNEXPECTED_FRAME, "expected content body, "
                                "got non content body frame instead"), err, AMQP_BASIC_PUBLISH);
        return 0;
    }
    switch (f->type) {
    case AMQP_FRAME_METHOD:
        if (m.id == AMQP_CHANNEL_OPEN)
            return err_set(err, -WERR_CHANNEL_ERROR, "second 'channel.open' seen");
        if (m.id == AMQP_CHANNEL_CLOSE) {
            drop_channel(c, id);
            struct amqp_method ok = {.id = AMQP_CHANNEL_CLOSE_OK};
            conn_send_method(c, id, &ok);
            return 0;
        }
        if (m.id == AMQP_CHANNEL_CLOSE_OK)
            return 0;
        rc = channel_handle_method(ch, &m, err);
        if (rc < 0)
            conn_fail(c, id, rc, err, m.id);
        return 0;
    case AMQP_FRAME_HEADER:
    case AMQP_FRAME_BODY:
        if (ch->ct == CT_IDLE)
            return err_set(err, -WERR_UNEXPECTED_FRAME,
                            "expected method frame, got non method frame instead");
        rc = f->type == AMQP_FRAME_HEADER ? channel_handle_header(ch, f->payload, f->size, err)
                                          : channel_handle_body(ch, f->payload, f->size, err);
        if (rc < 0)
            conn_fail(c, id, rc, err, AMQP_BASIC_PUBLISH);
        return 0;
    default:
        return err_set(err, -WERR_UNEXPECTED_FRAME, "heartbeat frame on channel %u", id);
    }
}

/* Handles one frame; returns an error that closes the connection, or 0. */
static int handle_frame(struct conn *c, const struct amqp_frame *f, struct err *err)
{
    if (c->state >= CONN_CLOSING) {
        handle_closing(c, f);
        return 0;
    }
    if (c->state != CONN_OPEN)
        return handle_handshake(c, f, err);
    if (f->type == AMQP_FRAME_HEARTBEAT) {
        if (f->channel != 0)
            return err_set(err, -WERR_UNEXPECTED_FRAME, "heartbeat frame on channel %u",
                            f->channel);
        return 0;
    }
    if (f->channel == 0) {
        if (f->type != AMQP_FRAME_METHOD)
            return err_set(err, -WERR_UNEXPECTED_FRAME, "content frame on channel 0");
        struct amqp_method m;
        int st = amqp_method_decode(f->payload, f->size, &m);
        if (st < 0)
            return decode_error(st, f, err);
        return handle_connection_method(c, &m, err);
    }
    return handle_channel_frame(c, f, err);
}

/* ---- reading --------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Starts or stops reading to match the state: not after the last frame we want, not while
 * blocked by the memory alarm, not past this turn's read budget. */
static void update_reading(struct conn *c)
{
    bool want = c->state != CONN_CLOSED && !c->read_done && !c->auth_wait &&
                !c->hold_batch && !c->flow.q &&
                (c->state == CONN_DRAINING || /* input is only parsed for close/close-ok */
                 (!c->blocked && !c->out_full &&
                  (c->turn != c->srv->turn || c->turn_bytes < c->srv->cfg.read_budget)));
    if (want == c->reading)
        return;
    c->reading = want;
    if (!want) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        return;
    }
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0) {
        log_warn("connection %llu (%s): cannot read from the socket: %s; closing it",
                 (unsigned long long)c->id, c->peer, uv_strerror(rc));
        c->reading = false;
        close_socket(c);
    }
}

void conn_check_send_timeout(struct conn *c, uint64_t now)
{
    if (!c->writing || c->state == CONN_CLOSED ||
        now - c->write_since_ms < c->srv->cfg.send_timeout_ms)
        return;
    log_warn("connection %llu (%s): the client has not taken our output for %u ms "
             "(tcp_listen_options.send_timeout), %zu bytes waiting; closing it",
             (unsigned long long)c->id, c->peer, c->srv->cfg.send_timeout_ms,
             conn_output_pending(c));
    close_socket(c);
}

void conn_resume(struct conn *c)
{
    c->turn_bytes = 0;
    c->turn = c->srv->turn;
    update_reading(c);
}

void conn_set_blocked(struct conn *c, bool on)
{
    if (on == c->blocked || (on && (!c->publisher || c->state != CONN_OPEN)))
        return;
    c->blocked = on;
    if (c->cap_connection_blocked && c->state == CONN_OPEN) {
        struct amqp_method m = {.id = on ? AMQP_CONNECTION_BLOCKED : AMQP_CONNECTION_UNBLOCKED};
        if (on)
            m.u.connection_blocked.reason = amqp_cstr(c->srv->block_reason);
        conn_send_method(c, 0, &m);
    }
    update_reading(c);
}

static void on_flow_resume(struct flow_waiter *w)
{
    struct conn *c = (struct conn *)((char *)w - offsetof(struct conn, flow));
    update_reading(c);
}

void conn_flow_pause(struct conn *c, struct queue *q)
{
    if (c->flow.q || c->nconsumers || c->state != CONN_OPEN)
        return;
    c->flow.resume = on_flow_resume;
    queue_flow_wait(q, &c->flow);
    update_reading(c);
}

void conn_note_publish(struct conn *c)
{
    c->publisher = true;
    if ((c->srv->mem_alarm || c->srv->disk_alarm) && !c->blocked)
        conn_set_blocked(c, true);
}

/* Gives the input buffer back (to the server's pool when it is a standard one) once every byte
 * in it is handled, so that idle connections hold none. */
static void in_release(struct conn *c)
{
    if (!c->in || c->in_len)
        return;
    struct server *s = c->srv;
    if (c->in_cap == CONN_IN_BLOCK && s->in_nfree < CONN_IN_POOL_MAX &&
        array_reserve((void **)&s->in_free, &s->in_free_cap, s->in_nfree, sizeof *s->in_free,
                      8) == 0)
        s->in_free[s->in_nfree++] = c->in;
    else
        free(c->in);
    c->in = NULL;
    c->in_cap = 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct conn *c = h->data;
    struct server *s = c->srv;
    if (c->tls) { /* ciphertext: decrypted into c->in as soon as it is read */
        if (!s->tls_rbuf)
            s->tls_rbuf = malloc(CONN_IN_BLOCK);
        buf->base = (char *)s->tls_rbuf;
        buf->len = s->tls_rbuf ? CONN_IN_BLOCK : 0;
        return;
    }
    if (!c->in) {
        c->in = s->in_nfree ? s->in_free[--s->in_nfree] : malloc(CONN_IN_BLOCK);
        c->in_cap = c->in ? CONN_IN_BLOCK : 0;
    }
    /* No memory: libuv reports UV_ENOBUFS and the connection is closed. */
    buf->base = c->in ? (char *)c->in + c->in_len : NULL;
    buf->len = c->in ? c->in_cap - c->in_len : 0;
}

/* The frame at the start of the buffer is incomplete: makes room for all of it, unless its
 * header announces more than frame_max allows (input stopped on a held connection before the
 * frame was parsed, say): such a frame is refused once it is parsed, and gets no room. false on
 * OOM. */
static bool in_grow(struct conn *c)
{
    if (c->state == CONN_HEADER || c->in_len < AMQP_FRAME_HEADER_SIZE)
        return true;
    size_t need = (size_t)rd32(c->in + 3) + AMQP_FRAME_OVERHEAD;
    size_t max = (size_t)(c->state >= CONN_OPENING ? c->frame_max : AMQP_FRAME_MIN_SIZE) +
                 AMQP_FRAME_OVERHEAD;
    if (need <= c->in_cap || need > max)
        return true;
    uint8_t *bigger = realloc(c->in, need);
    if (!bigger)
        return false;
    c->in = bigger;
    c->in_cap = need;
    return true;
}

static void process_input(struct conn *c)
{
    size_t off = 0;
    if (c->state == CONN_HEADER) {
        int hc = amqp_protocol_header_check(c->in, c->in_len);
        if (hc == 0)
            return;
        if (hc < 0) {
            log_info("connection %llu (%s): bad protocol header; replying with ours and closing",
                     (unsigned long long)c->id, c->peer);
            outbuf_append(fill_buf(c), amqp_protocol_header, AMQP_PROTOCOL_HEADER_SIZE);
            c->close_after_flush = true;
            c->state = CONN_CLOSING;
            c->read_done = true;
            update_reading(c);
            want_flush(c);
            return;
        }
        off = AMQP_PROTOCOL_HEADER_SIZE;
        send_start(c);
    }
    /* Until tune-ok only the spec's frame-min-size is accepted (a peer that has not even logged
     * in must not make us buffer frame_max), then the negotiated frame_max. Like RabbitMQ, accept
     * payloads of up to that many octets (some old clients forget the 8 octets of overhead). */
    uint32_t frame_max = (c->state >= CONN_OPENING ? c->frame_max : AMQP_FRAME_MIN_SIZE) +
                         AMQP_FRAME_OVERHEAD;
    while (c->state != CONN_CLOSED && !c->close_after_flush && !c->hold_batch && !c->auth_wait) {
        struct amqp_frame f;
        struct err e = {.text = ""}, *err = &e; /* what went wrong with this frame, if anything */
        long n = amqp_frame_parse(c->in + off, c->in_len - off, frame_max, &f);
        if (n == 0)
            break;
        if (n < 0) {
            if (c->state >= CONN_CLOSING) { /* stop reading garbage after a close */
                off = c->in_len;
                break;
            }
            conn_fail(c, 0, err_set(err, -WERR_FRAME_ERROR, "%s", amqp_strerror((int)n)), err, 0);
            off = c->in_len;
            break;
        }
        off += (size_t)n;
        int rc = handle_frame(c, &f, err);
        if (rc < 0) {
            conn_fail(c, 0, rc, err,
                      f.type == AMQP_FRAME_METHOD && f.size >= 4 ? rd32(f.payload) : 0);
            off = c->in_len;
            break;
        }
        /* Deliver what this frame made deliverable before the next frame is handled. */
        if (c->srv->b.kick_head || !list_empty(&c->srv->b.ttl0))
            broker_dispatch(&c->srv->b);
        if (c->state >= CONN_OPENING)
            frame_max = c->frame_max + AMQP_FRAME_OVERHEAD;
    }
    if (c->state == CONN_CLOSED)
        return;
    if (off == c->in_len)
        c->in_len = 0;
    else if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    if (!in_grow(c)) {
        log_error("connection %llu (%s): out of memory for a %u-byte frame; closing it",
                  (unsigned long long)c->id, c->peer, rd32(c->in + 3));
        close_socket(c);
        return;
    }
    in_release(c);
}

/* Decrypts every byte OpenSSL can give into c->in (growing it as needed: what was read in one
 * go is at most a socket read's worth), so that nothing waits inside the session while the
 * connection does not read; then handles the frames as for a plain connection. */
static void tls_pump(struct conn *c, const void *cipher, size_t len)
{
    char why[320];
    bool was = c->tls->established;
    if (tls_feed(c->tls, cipher, len) < 0) {
        log_error("connection %llu (%s): out of memory for TLS input; closing it",
                  (unsigned long long)c->id, c->peer);
        close_socket(c);
        return;
    }
    long n;
    for (;;) {
        if (c->in_cap - c->in_len < 16384) {
            size_t cap = c->in_cap ? c->in_cap * 2 : CONN_IN_BLOCK;
            uint8_t *bigger = NULL;
            if (!c->in && c->srv->in_nfree)
                bigger = c->srv->in_free[--c->srv->in_nfree];
            else
                bigger = realloc(c->in, cap);
            if (!bigger) {
                log_error("connection %llu (%s): out of memory for TLS input; closing it",
                          (unsigned long long)c->id, c->peer);
                close_socket(c);
                return;
            }
            c->in = bigger;
            c->in_cap = cap;
        }
        n = tls_read(c->tls, c->in + c->in_len, c->in_cap - c->in_len, why, sizeof why);
        if (n <= 0)
            break;
        c->in_len += (size_t)n;
    }
    if (!was && c->tls->established) {
        log_debug("connection %llu (%s): TLS established (%s, %s)", (unsigned long long)c->id,
                  c->peer, tls_protocol(c->tls), tls_cipher(c->tls));
        uv_timer_start(&c->timer, on_timer, c->srv->cfg.handshake_timeout_ms, 0);
    }
    if (tls_pending(c->tls))
        want_flush(c); /* handshake messages, alerts, session tickets */
    if (n == TLS_ERROR) {
        log_info("connection %llu (%s): TLS %s failed: %s; closing", (unsigned long long)c->id,
                 c->peer, c->tls->established ? "session" : "handshake", why);
        c->read_done = true;
        c->close_after_flush = true; /* the alert OpenSSL wrote, if any, goes out first */
        c->tls_shut = true;
        c->in_len = 0;
        update_reading(c);
        want_flush(c);
        return;
    }
    if (c->in_len)
        process_input(c);
    else
        in_release(c);
    if (n == TLS_CLOSED && c->state != CONN_CLOSED) {
        if (c->state == CONN_OPEN)
            log_info("connection %llu (%s): client closed the TLS session without "
                     "connection.close", (unsigned long long)c->id, c->peer);
        close_socket(c);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (nread == 0) { /* nothing after all (EAGAIN) */
        in_release(c);
        return;
    }
    if (nread < 0) {
        if (c->state < CONN_CLOSING && nread != UV_EOF)
            log_info("connection %llu (%s): read failed: %s", (unsigned long long)c->id, c->peer,
                     uv_strerror((int)nread));
        else if (c->state == CONN_OPEN)
            log_info("connection %llu (%s): client closed the socket without connection.close",
                     (unsigned long long)c->id, c->peer);
        close_socket(c);
        return;
    }
    if (!c->tls)
        c->in_len += (size_t)nread;
    c->last_recv_ms = uv_now(c->srv->loop);
    if (c->turn != c->srv->turn) {
        c->turn = c->srv->turn;
        c->turn_bytes = 0;
    }
    c->turn_bytes += (size_t)nread;
    c->recv_oct += (uint64_t)nread;
    c->recv_cnt++;
    if (c->tls)
        tls_pump(c, buf->base, (size_t)nread);
    else
        process_input(c);
    if (c->state == CONN_CLOSED)
        return;
    /* One busy publisher must not take every loop turn: past the budget, wait for the next. */
    if (c->turn_bytes >= c->srv->cfg.read_budget) {
        update_reading(c);
        if (list_empty(&c->pause_link))
            list_insert_tail(&c->srv->paused, &c->pause_link);
    } else if (c->blocked) {
        update_reading(c);
    }
}

static void describe_peer(struct conn *c)
{
    struct peer p, l;
    peer_describe(&c->tcp, false, &p);
    peer_describe(&c->tcp, true, &l);
    c->loopback = p.loopback;
    c->peer_port = p.port;
    c->local_port = l.port;
    snprintf(c->peer, sizeof c->peer, "%s:%d", p.host, p.port);
    snprintf(c->host, sizeof c->host, "%s", p.host);
    snprintf(c->local_host, sizeof c->local_host, "%s", l.host);
    snprintf(c->name, sizeof c->name, "%s:%d -> %s:%d", p.host, p.port, l.host, l.port);
}

void conn_accept(struct server *s, uv_stream_t *listener, SSL_CTX *ctx)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        log_error("cannot accept a connection: out of memory");
        return;
    }
    c->srv = s;
    c->id = ++s->seq;
    c->out[0].pool = c->out[1].pool = &s->opool;
    list_init(&c->flush_link);
    list_init(&c->pause_link);
    list_init(&c->hold_link);
    list_init(&c->confirms);
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles_open = 2;
    list_insert_tail(&s->conns, &c->link);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
        close_socket(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    describe_peer(c);
    c->frame_max = s->cfg.frame_max;
    c->last_recv_ms = c->last_send_ms = uv_now(s->loop);
    uv_timeval64_t tv;
    c->connected_at = uv_gettimeofday(&tv) == 0 ? (uint64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000
                                                : 0;
    c->state = CONN_HEADER;
    if (ctx && (!(c->tls = malloc(sizeof *c->tls)) || tls_init(c->tls, ctx) < 0)) {
        log_error("cannot accept a TLS connection from %s: out of memory", c->peer);
        free(c->tls);
        c->tls = NULL;
        close_socket(c);
        return;
    }
    uv_timer_start(&c->timer, on_timer,
                   ctx ? s->cfg.ssl_handshake_timeout_ms : s->cfg.handshake_timeout_ms, 0);
    c->turn = s->turn;
    update_reading(c);
    log_debug("connection %llu: accepted from %s", (unsigned long long)c->id, c->peer);
}
