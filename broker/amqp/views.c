/* views.c — the AMQP surface's sessions as the model's session views (sessions.h), for the
 * management API: connections and channels listed on demand from the server's connection list,
 * and a connection closed by name. Owns nothing; a view lives for one callback. */
#include <errno.h>
#include <string.h>
#include "broker/amqp/channel.h"
#include "broker/amqp/conn.h"
#include "broker/amqp/server.h"
#include "broker/amqp/views.h"
#include "broker/model/errors.h"
#include "broker/model/queue.h"
#include "broker/model/sessions.h"
#include "broker/model/vhost.h"

static const char *const state_names[] = {
    [CONN_HEADER] = "starting", [CONN_START] = "starting", [CONN_TUNE] = "tuning",
    [CONN_OPENING] = "opening", [CONN_OPEN] = "running",   [CONN_CLOSING] = "closing",
    [CONN_DRAINING] = "closing", [CONN_CLOSED] = "closed",
};

static void conn_view(struct conn *c, struct session_view *v)
{
    *v = (struct session_view){
        .name = c->name, .user = c->user, .vhost = c->vhost ? c->vhost->name : "",
        .protocol = "AMQP 0-9-1", .auth_mechanism = c->mechanism,
        .state = c->blocked ? "blocked" : c->flow.q ? "flow" : state_names[c->state],
        .peer_host = c->host, .host = c->local_host, .peer_port = c->peer_port,
        .port = c->local_port, .channels = c->nchannels, .channel_max = c->channel_max,
        .heartbeat = c->heartbeat, .frame_max = c->frame_max, .connected_at = c->connected_at,
        .recv_oct = c->recv_oct, .recv_cnt = c->recv_cnt, .send_oct = c->send_oct,
        .send_cnt = c->send_cnt,
        .client_properties = {c->client_props, c->client_props_len},
    };
    if (c->tls && c->tls->established) {
        /* RabbitMQ spells the protocol "tlsv1.3". */
        static char proto[16];
        const char *p = tls_protocol(c->tls);
        size_t i = 0;
        for (; p[i] && i < sizeof proto - 1; i++)
            proto[i] = p[i] >= 'A' && p[i] <= 'Z' ? (char)(p[i] - 'A' + 'a') : p[i];
        proto[i] = 0;
        v->ssl_protocol = proto;
        v->ssl_cipher = tls_cipher(c->tls);
        if (!tls_peer_name(c->tls, true, v->peer_cert_subject, sizeof v->peer_cert_subject))
            v->peer_cert_subject[0] = 0;
        if (!tls_peer_issuer(c->tls, v->peer_cert_issuer, sizeof v->peer_cert_issuer))
            v->peer_cert_issuer[0] = 0;
    }
}

static void channel_view(struct channel *ch, const struct session_view *cv, struct channel_view *v)
{
    uint32_t consumers = 0;
    struct list *pos;
    list_foreach(pos, &ch->consumers)
        consumers++;
    *v = (struct channel_view){
        .conn = cv, .number = ch->id, .state = ch->state == CH_OPEN ? "running" : "closing",
        .prefetch = ch->prefetch, .global_prefetch = ch->global_prefetch, .unacked = ch->live,
        .consumers = consumers, .uncommitted = ch->tx_nmsgs, .acks_uncommitted = ch->tx_nacks,
        .unconfirmed = ch->confirm ? ch->publish_seq - ch->acked_upto : 0,
        .published = ch->published, .delivered = ch->next_tag - 1,
        .confirm = ch->confirm, .transactional = ch->tx,
    };
}

static bool in_vhost(const struct conn *c, const char *vhost)
{
    return !vhost || (c->vhost && !strcmp(c->vhost->name, vhost));
}

static void each(void *arg, const char *vhost,
                 void (*fn)(void *fn_arg, const struct session_view *), void *fn_arg)
{
    struct server *s = arg;
    struct list *pos;
    list_foreach(pos, &s->conns) {
        struct conn *c = list_entry(pos, struct conn, link);
        if (c->state == CONN_CLOSED || !in_vhost(c, vhost))
            continue;
        struct session_view v;
        conn_view(c, &v);
        fn(fn_arg, &v);
    }
}

struct channel_walk {
    const struct session_view *cv;
    void (*fn)(void *fn_arg, const struct channel_view *);
    void *fn_arg;
};

static void one_channel(void *arg, struct channel *ch)
{
    struct channel_walk *w = arg;
    struct channel_view v;
    channel_view(ch, w->cv, &v);
    w->fn(w->fn_arg, &v);
}

static void each_channel(void *arg, const char *vhost, const char *conn,
                         void (*fn)(void *fn_arg, const struct channel_view *), void *fn_arg)
{
    struct server *s = arg;
    struct list *pos;
    list_foreach(pos, &s->conns) {
        struct conn *c = list_entry(pos, struct conn, link);
        if (c->state != CONN_OPEN || !in_vhost(c, vhost) || (conn && strcmp(c->name, conn)))
            continue;
        struct session_view cv;
        conn_view(c, &cv);
        struct channel_walk w = {&cv, fn, fn_arg};
        conn_each_channel(c, one_channel, &w);
    }
}

static void consumer_channel(void *arg, const struct consumer *co,
                             void (*fn)(void *fn_arg, const struct channel_view *), void *fn_arg)
{
    (void)arg;
    struct channel *ch = co->owner;
    if (!ch || !ch->conn)
        return;
    struct session_view cv;
    struct channel_view v;
    conn_view(ch->conn, &cv);
    channel_view(ch, &cv, &v);
    fn(fn_arg, &v);
}

static int close_named(void *arg, const char *name, const char *reason)
{
    struct server *s = arg;
    struct list *pos;
    list_foreach(pos, &s->conns) {
        struct conn *c = list_entry(pos, struct conn, link);
        if (c->state == CONN_CLOSED || strcmp(c->name, name) != 0)
            continue;
        struct err e;
        conn_fail(c, 0, err_set(&e, -WERR_CONNECTION_FORCED, "%s", reason), &e, 0);
        return 0;
    }
    return -ENOENT;
}

const struct session_ops amqp_session_ops = {
    .each = each, .each_channel = each_channel, .consumer_channel = consumer_channel,
    .close = close_named,
};
