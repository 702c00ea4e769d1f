/* api_sessions.c — the management API's view of client sessions, in RabbitMQ 3.10's shapes:
 * /api/connections (list, one, DELETE to close it with 320 and the X-Reason header),
 * /api/vhosts/{vhost}/connections, /api/connections/{name}/channels, /api/channels,
 * /api/vhosts/{vhost}/channels, /api/consumers[/{vhost}]. It knows the sessions only through
 * the model's session views (sessions.h), which the AMQP surface registers. Owns nothing. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include "broker/admin/api_int.h"
#include "broker/model/broker.h"
#include "broker/model/jsontable.h"
#include "broker/model/queue.h"
#include "broker/model/sessions.h"
#include "broker/model/users.h"
#include "broker/model/vhost.h"

/* What a request collects: the matching items, and who may see them. */
struct gather {
    struct call *c;
    json_t *items;
    const char *name; /* one connection by name (NULL: all) */
    bool found;       /* a session of that name exists, seen or not */
};

/* May the user see this session? (administrator, monitoring: all; others: their own.) */
static bool sees_session(const struct call *c, const struct session_view *v)
{
    return (c->user->tag_bits & (USER_TAG_ADMINISTRATOR | USER_TAG_MONITORING)) ||
           !strcmp(v->user, c->user->name);
}

static json_t *conn_json(const struct session_view *v)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:i, s:b, s:I, "
                     "s:i, s:I, s:i, s:I, s:I, s:I, s:I, s:I, s:o, s:s}",
                     "name", v->name, "node", "warren@localhost", "vhost", v->vhost, "user",
                     v->user, "user_who_performed_action", v->user, "protocol", v->protocol,
                     "auth_mechanism", v->auth_mechanism, "state", v->state, "host", v->host,
                     "port", v->port, "peer_host", v->peer_host, "peer_port", v->peer_port,
                     "ssl", v->ssl_protocol != NULL, "channels", (json_int_t)v->channels, "channel_max",
                     (int)v->channel_max, "frame_max", (json_int_t)v->frame_max, "timeout",
                     (int)v->heartbeat, "connected_at", (json_int_t)v->connected_at, "recv_oct",
                     (json_int_t)v->recv_oct, "recv_cnt", (json_int_t)v->recv_cnt, "send_oct",
                     (json_int_t)v->send_oct, "send_cnt", (json_int_t)v->send_cnt,
                     "client_properties", jt_table(v->client_properties), "type", "network");
    if (!o)
        return NULL;
    /* The name the client gave itself (client_properties.connection_name), as RabbitMQ. */
    json_t *given = json_object_get(json_object_get(o, "client_properties"), "connection_name");
    if (json_is_string(given))
        json_object_set(o, "user_provided_name", given);
    json_object_set_new(o, "send_pend", json_integer(0));
    /* TLS details (null on plain TCP, as RabbitMQ). */
    const char *tls[][2] = {{"ssl_protocol", v->ssl_protocol}, {"ssl_key_exchange", NULL},
                            {"ssl_cipher", v->ssl_cipher}, {"ssl_hash", NULL},
                            {"peer_cert_subject", v->peer_cert_subject[0] ? v->peer_cert_subject
                                                                         : NULL},
                            {"peer_cert_issuer", v->peer_cert_issuer[0] ? v->peer_cert_issuer
                                                                       : NULL},
                            {"peer_cert_validity", NULL}};
    for (size_t i = 0; i < sizeof tls / sizeof tls[0]; i++)
        json_object_set_new(o, tls[i][0], tls[i][1] ? json_string(tls[i][1]) : json_null());
    return o;
}

static json_t *channel_json(const struct channel_view *v)
{
    char name[160];
    snprintf(name, sizeof name, "%s (%u)", v->conn->name, v->number);
    json_t *o = json_pack("{s:s, s:i, s:s, s:{s:s, s:s, s:i}, s:s, s:s, s:s, s:I, s:I, s:I, s:I, "
                     "s:I, s:b, s:b}",
                     "name", name, "number", (int)v->number, "node", "warren@localhost",
                     "connection_details", "name", v->conn->name, "peer_host",
                     v->conn->peer_host, "peer_port", v->conn->peer_port, "vhost",
                     v->conn->vhost, "user", v->conn->user, "state", v->state,
                     "prefetch_count", (json_int_t)v->prefetch, "global_prefetch_count",
                     (json_int_t)v->global_prefetch, "messages_unacknowledged",
                     (json_int_t)v->unacked, "consumer_count", (json_int_t)v->consumers,
                     "messages_uncommitted", (json_int_t)v->uncommitted, "confirm", v->confirm,
                     "transactional", v->transactional);
    if (o) {
        json_object_set_new(o, "acks_uncommitted", json_integer(v->acks_uncommitted));
        json_object_set_new(o, "messages_unconfirmed", json_integer((json_int_t)v->unconfirmed));
        /* Counts only (no _details rates: nothing samples channels); the console derives
         * rates from two readings. */
        json_object_set_new(o, "message_stats",
                            json_pack("{s:I, s:I}", "publish", (json_int_t)v->published,
                                      "deliver_get", (json_int_t)v->delivered));
        json_object_set_new(o, "user_who_performed_action", json_string(v->conn->user));
    }
    return o;
}

static void add_conn(void *arg, const struct session_view *v)
{
    struct gather *g = arg;
    if ((!g->name || !strcmp(g->name, v->name)) && sees_session(g->c, v))
        json_array_append_new(g->items, conn_json(v));
}

static void add_channel(void *arg, const struct channel_view *v)
{
    struct gather *g = arg;
    if (sees_session(g->c, v->conn))
        json_array_append_new(g->items, channel_json(v));
}

/* The vhost named by segment i that the user may see (NULL: answered 404). */
static const char *vhost_name(struct call *c, int i)
{
    struct vhost *vh = hmap_get(&c->a->b->vhosts, c->seg[i], strlen(c->seg[i]));
    if (!vh || !api_sees_vhost(c, vh->name)) {
        api_not_found(c);
        return NULL;
    }
    return vh->name;
}

static json_t *connections(struct call *c, const char *vhost, const char *name)
{
    struct gather g = {.c = c, .items = json_array(), .name = name};
    const struct session_ops *ops = c->a->b->sessions;
    if (ops && g.items)
        ops->each(c->a->b->sessions_arg, vhost, add_conn, &g);
    return g.items;
}

static json_t *channels(struct call *c, const char *vhost, const char *conn)
{
    struct gather g = {.c = c, .items = json_array()};
    const struct session_ops *ops = c->a->b->sessions;
    if (ops && g.items)
        ops->each_channel(c->a->b->sessions_arg, vhost, conn, add_channel, &g);
    return g.items;
}

static void found(void *arg, const struct session_view *v)
{
    struct gather *g = arg;
    g->found |= !strcmp(v->name, g->name);
}

/* Is there a session called name, whoever may see it? */
static bool session_exists(struct call *c, const char *name)
{
    struct gather g = {.c = c, .name = name};
    const struct session_ops *ops = c->a->b->sessions;
    if (ops)
        ops->each(c->a->b->sessions_arg, NULL, found, &g);
    return g.found;
}

void api_connections(struct call *c)
{
    if (c->nseg == 1)
        return api_is(c, "GET") ? api_send_list(c, connections(c, NULL, NULL))
                                : api_method_not_allowed(c, "GET, HEAD");
    const char *name = c->seg[1];
    json_t *one = connections(c, NULL, name);
    if (!json_array_size(one)) {
        json_decref(one);
        return session_exists(c, name) ? api_error(c, 401, "not_authorised",
                                                   "User not authorised to access object")
                                       : api_not_found(c);
    }
    if (c->nseg == 3 && !strcmp(c->seg[2], "channels")) {
        json_decref(one);
        return api_send_list(c, channels(c, NULL, name));
    }
    if (c->nseg != 2) {
        json_decref(one);
        return api_not_found(c);
    }
    if (api_is(c, "GET"))
        return api_reply_first(c, one);
    json_decref(one);
    if (!api_is(c, "DELETE"))
        return api_method_not_allowed(c, "GET, DELETE, HEAD");
    const struct session_ops *ops = c->a->b->sessions;
    const char *reason = c->req->reason && c->req->reason[0] ? c->req->reason
                                                            : "Closed via management plugin";
    if (!ops || ops->close(c->a->b->sessions_arg, name, reason) < 0)
        return api_not_found(c);
    api_no_content(c, 204);
}

void api_channels(struct call *c)
{
    if (c->nseg != 1)
        return api_not_found(c);
    api_is(c, "GET") ? api_send_list(c, channels(c, NULL, NULL))
                     : api_method_not_allowed(c, "GET, HEAD");
}

/* /api/vhosts/{vhost}/connections and /channels (routed here by api_vhosts). */
void api_vhost_sessions(struct call *c)
{
    const char *vh = vhost_name(c, 1);
    if (!vh)
        return;
    if (!api_is(c, "GET"))
        return api_method_not_allowed(c, "GET, HEAD");
    api_send_list(c, !strcmp(c->seg[2], "connections") ? connections(c, vh, NULL)
                                                       : channels(c, vh, NULL));
}

/* ---- consumers ------------------------------------------------------------------------------- */

struct consumer_walk {
    struct gather *g;
    const struct consumer *co;
};

static void add_consumer(void *arg, const struct channel_view *v)
{
    struct consumer_walk *w = arg;
    const struct consumer *co = w->co;
    if (!sees_session(w->g->c, v->conn))
        return;
    char chname[160];
    snprintf(chname, sizeof chname, "%s (%u)", v->conn->name, v->number);
    json_array_append_new(
        w->g->items,
        json_pack("{s:s%, s:{s:s, s:s}, s:{s:s, s:i, s:s, s:s, s:i, s:s, s:s}, s:b, s:b, s:I, "
                  "s:b, s:s, s:{}}",
                  "consumer_tag", co->tag, (size_t)co->tag_len, "queue", "name", co->q->name,
                  "vhost", co->q->vhost->name, "channel_details", "name", chname, "number",
                  (int)v->number, "connection_name", v->conn->name, "peer_host",
                  v->conn->peer_host, "peer_port", v->conn->peer_port, "user", v->conn->user,
                  "node", "warren@localhost", "ack_required", !co->no_ack, "exclusive",
                  co->exclusive, "prefetch_count", (json_int_t)co->prefetch, "active",
                  !co->parked, "activity_status", co->parked ? "waiting" : "up", "arguments"));
}

void api_consumers(struct call *c)
{
    struct vhost *only = NULL;
    if (c->nseg > 2)
        return api_not_found(c);
    if (c->nseg == 2 && (!(only = hmap_get(&c->a->b->vhosts, c->seg[1], strlen(c->seg[1]))) ||
                         !api_sees_vhost(c, only->name)))
        return api_not_found(c);
    if (!api_is(c, "GET"))
        return api_method_not_allowed(c, "GET, HEAD");
    struct gather g = {.c = c, .items = json_array()};
    const struct session_ops *ops = c->a->b->sessions;
    void *v, *qv;
    for (uint32_t it = 0; ops && g.items && hmap_next(&c->a->b->vhosts, &it, &v);) {
        struct vhost *vh = v;
        if ((only && vh != only) || !api_sees_vhost(c, vh->name))
            continue;
        for (uint32_t jt = 0; hmap_next(&vh->queues, &jt, &qv);) {
            struct list *pos;
            list_foreach(pos, &((struct queue *)qv)->consumers) {
                struct consumer_walk w = {&g, list_entry(pos, struct consumer, qlink)};
                ops->consumer_channel(c->a->b->sessions_arg, w.co, add_consumer, &w);
            }
        }
    }
    api_send_list(c, g.items);
}
