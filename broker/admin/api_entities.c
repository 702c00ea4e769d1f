/* api_entities.c — the management API's entity endpoints, in RabbitMQ 3.10's shapes:
 * /api/exchanges (list, declare, delete, bindings/source|destination, publish), /api/queues
 * (list, declare, delete, contents, bindings, get) and /api/bindings (list, create, look up and
 * delete by properties key). Declares, deletes and binds go through entity.c, as AMQP's do,
 * and the user's permissions are checked by access.c as for an AMQP session. Owns nothing. */
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "lib/timer.h"
#include "lib/siphash.h"
#include "broker/admin/api_int.h"
#include "broker/model/access.h"
#include "broker/model/binding.h"
#include "broker/model/broker.h"
#include "broker/model/groups.h"
#include "broker/model/entity.h"
#include "broker/model/errors.h"
#include "broker/model/exchange.h"
#include "broker/model/jsontable.h"
#include "broker/model/msg.h"
#include "broker/model/params.h"
#include "broker/model/dedup.h"
#include "broker/model/publish.h"
#include "broker/model/queue.h"
#include "broker/model/users.h"
#include "broker/model/vhost.h"

/* ---- JSON ------------------------------------------------------------------------------------ */

/* A deduplicating exchange's or queue's counter and cache (dedup.h); `stored`: it is durable. */
static void api_dedup_json(json_t *o, const struct dedup *d, bool stored)
{
    json_object_set_new(o, "messages_deduplicated", json_integer((json_int_t)d->deduplicated));
    json_object_set_new(o, "deduplication_cache",
                        json_pack("{s:I, s:I, s:s}", "entries", (json_int_t)d->cache.count,
                                  "size", (json_int_t)d->cache.max, "persistence",
                                  d->disk && stored ? "disk" : "memory"));
}

static json_t *exchange_json(const void *v)
{
    const struct exchange *x = v;
    json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:b, s:b, s:o, s:s}", "name", x->name,
                          "vhost", x->vhost->name, "type", exchange_type_shown(x),
                          "durable", x->durable, "auto_delete", x->auto_delete, "internal",
                          x->internal, "arguments",
                          jt_table((amqp_bytes_t){x->args, x->args_len}),
                          "user_who_performed_action", "rmq-internal");
    if (o && x->policy[0])
        json_object_set_new(o, "policy", json_string(x->policy));
    if (o && x->dedup)
        api_dedup_json(o, x->dedup, x->store_id != 0);
    return o;
}

/* The policy keys that apply to q, as RabbitMQ's effective_policy_definition: the policy's
 * definition with the operator policy's lower limits. */
static json_t *effective_definition(const struct queue *q)
{
    struct broker *b = q->vhost->broker;
    const struct param *p = q->policy[0] ? param_find(b, PARAM_POLICY, q->vhost->name,
                                                      q->policy) : NULL;
    const struct param *op = q->op_policy[0] ? param_find(b, PARAM_OPERATOR_POLICY,
                                                          q->vhost->name, q->op_policy) : NULL;
    json_t *d = p ? json_deep_copy(json_object_get(p->value, "definition")) : json_object();
    const char *k;
    json_t *v;
    json_object_foreach(op ? json_object_get(op->value, "definition") : NULL, k, v) {
        json_t *have = json_object_get(d, k);
        if (!json_is_integer(have) || (json_is_integer(v) &&
                                       json_integer_value(v) < json_integer_value(have)))
            json_object_set(d, k, v);
    }
    return d;
}

static json_t *queue_json(const void *v)
{
    const struct queue *q = v;
    uint64_t ready = queue_ready((struct queue *)q), unacked = queue_unacked(q);
    json_t *o = json_pack("{s:s, s:s, s:b, s:b, s:b, s:o, s:s, s:s, s:s, s:I, s:I, s:I, s:I, "
                          "s:I, s:I, s:n, s:n, s:o}",
                     "name", q->name, "vhost", q->vhost->name, "durable", q->durable,
                     "auto_delete", q->auto_delete, "exclusive", q->exclusive, "arguments",
                     jt_table((amqp_bytes_t){q->args, q->args_len}), "node", "warren@localhost",
                     "state", "running", "type", q->opt.quorum ? "quorum" : "classic",
                     "messages", (json_int_t)(ready + unacked), "messages_ready",
                     (json_int_t)ready, "messages_unacknowledged", (json_int_t)unacked,
                     "consumers", (json_int_t)q->consumer_count, "message_bytes",
                     (json_int_t)q->bytes_all, "message_bytes_ready", (json_int_t)q->bytes_all,
                     "policy", "exclusive_consumer_tag", "effective_policy_definition",
                     effective_definition(q));
    if (o && q->policy[0])
        json_object_set_new(o, "policy", json_string(q->policy));
    if (o)
        json_object_set_new(o, "operator_policy",
                            q->op_policy[0] ? json_string(q->op_policy) : json_null());
    if (o) {
        json_object_set_new(o, "message_bytes_unacknowledged",
                            json_integer((json_int_t)q->unacked_bytes));
        json_object_set_new(o, "message_bytes_ram", json_integer((json_int_t)q->ready_bytes));
        json_object_set_new(o, "message_bytes", json_integer((json_int_t)(q->bytes_all +
                                                                          q->unacked_bytes)));
    }
    if (o && !q->consumer_count) { /* RabbitMQ's idle_since: since the last publish or get */
        char when[32];
        time_t secs = (time_t)((q->last_active ? q->last_active : timers_now()) / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        json_object_set_new(o, "idle_since", json_string(when));
    }
    if (o) /* what the queue holds in memory: its messages' bodies and the entries naming them */
        json_object_set_new(o, "memory",
                            json_integer((json_int_t)(sizeof *q + q->ready_bytes +
                                                      (uint64_t)q->count *
                                                          sizeof(struct qentry))));
    if (o && q->dedup)
        api_dedup_json(o, q->dedup, q->store_id != 0);
    if (o && q->groups) /* x-message-groups: the groups with messages ready or out */
        json_object_set_new(o, "message_groups", json_integer(groups_count(q->groups)));
    /* As RabbitMQ, message_stats only for a queue that has seen traffic. */
    if (o && (q->stat[QSTAT_PUBLISH] || q->stat[QSTAT_DELIVER_GET]))
        json_object_set_new(o, "message_stats", api_queue_message_stats(q));
    return o;
}

/* The properties key that names a binding in URLs, as RabbitMQ makes it: the routing key
 * URL-encoded (space as '+', every byte but letters, digits and "-_.~" as %XX; "~" when empty)
 * when it has no arguments, else that~hash-of-arguments. */
static void props_key(amqp_bytes_t key, amqp_bytes_t args, char *out, size_t size)
{
    size_t n = 0;
    for (uint32_t i = 0; i < key.len && n + 4 < size; i++) {
        uint8_t ch = key.ptr[i];
        bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     (ch >= '0' && ch <= '9') || strchr("-_.~", ch);
        n += (size_t)snprintf(out + n, size - n, ch == ' ' ? "+" : plain ? "%c" : "%%%02X", ch);
    }
    if (!key.len && !args.len && n + 2 < size)
        out[n++] = '~';
    out[n] = 0;
    if (!args.len)
        return;
    static const uint8_t k[16] = "warren-bindings";
    uint64_t h = siphash(k, args.ptr, args.len, 1, 3);
    snprintf(out + n, size - n, "~%016llx", (unsigned long long)h);
}

/* A boolean member, also when sent as the string "true" (rabbitmqadmin does); def when
 * absent. */
static bool flag_member(json_t *o, const char *key, bool def)
{
    json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        return !strcmp(json_string_value(v), "true");
    return v ? json_is_true(v) : def;
}

static json_t *binding_json(const char *vhost, const char *src, const char *dst, bool to_queue,
                            amqp_bytes_t key, amqp_bytes_t args)
{
    char pk[600];
    props_key(key, args, pk, sizeof pk);
    return json_pack("{s:s, s:s, s:s, s:s, s:s%, s:o, s:s}", "source", src, "vhost", vhost,
                     "destination", dst, "destination_type", to_queue ? "queue" : "exchange",
                     "routing_key", (const char *)key.ptr, (size_t)key.len, "arguments",
                     jt_table(args), "properties_key", pk);
}

static json_t *binding_obj_json(const struct binding *b)
{
    const char *dst = b->dq ? b->dq->name : b->dx->name;
    return binding_json(b->src->vhost->name, b->src->name, dst, b->dq != NULL, binding_key(b),
                        binding_args(b));
}

/* The default exchange's implicit binding to q, as RabbitMQ lists it. */
static json_t *default_binding_json(const struct queue *q)
{
    return binding_json(q->vhost->name, "", q->name, true,
                        (amqp_bytes_t){(const uint8_t *)q->name, q->name_len},
                        (amqp_bytes_t){NULL, 0});
}

/* ---- lookups and permissions ------------------------------------------------------------------ */

/* The vhost named by segment i that the user may see, or NULL (answered 404). */
static struct vhost *vhost_seg(struct call *c, int i)
{
    struct vhost *vh = hmap_get(&c->a->b->vhosts, c->seg[i], strlen(c->seg[i]));
    if (!vh) {
        api_not_found(c);
        return NULL;
    }
    if (!api_sees_vhost(c, vh->name)) {
        api_error(c, 401, "not_authorised", "User not authorised to access virtual host");
        return NULL;
    }
    return vh;
}

/* The exchange named in a URL: "amq.default" is the default exchange, as in RabbitMQ. */
static amqp_bytes_t exchange_seg(const char *name)
{
    return strcmp(name, "amq.default") ? amqp_cstr(name) : AMQP_BYTES_LIT("");
}

/* May the user do perm on the named exchange or queue of vh? Else answers 401 with
 * RabbitMQ's access-refused text (the management API reports refusals as not_authorised). */
static bool permitted(struct call *c, struct vhost *vh, enum access_perm perm,
                      enum access_kind kind, const char *name)
{
    struct access a;
    struct err err;
    access_init(&a, c->a->b, c->user->name, vh);
    if (access_check(&a, perm, kind, amqp_cstr(name), NULL, &err) == 0)
        return true;
    api_error(c, 401, "not_authorised", err.text);
    return false;
}

/* Answers a refusal from the model: 4xx by its AMQP code, with its text. */
static void model_error(struct call *c, int rc, const struct err *err)
{
    if (rc == -ENOMEM)
        return api_error(c, 500, "internal_error", "out of memory");
    int code = err_info(rc)->reply_code;
    api_error(c, code == 404 ? 404 : code == 403 ? 401 : 400,
              code == 403 ? "not_authorised" : "bad_request", err->text);
}

/* The queues (or exchanges) of each vhost the user sees, or of vh only, answered as a
 * collection whose JSON is made only for what is answered. */
static void send_entities(struct call *c, struct vhost *only, bool queues)
{
    size_t n = 0, k = 0;
    void *v, *ov;
    for (uint32_t it = 0; hmap_next(&c->a->b->vhosts, &it, &v);)
        if ((only && v == only) || (!only && api_sees_vhost(c, ((struct vhost *)v)->name)))
            n += queues ? ((struct vhost *)v)->queues.count : ((struct vhost *)v)->exchanges.count;
    struct api_item *items = malloc((n ? n : 1) * sizeof *items);
    if (!items)
        return api_error(c, 500, "internal_error", "out of memory");
    for (uint32_t it = 0; hmap_next(&c->a->b->vhosts, &it, &v);) {
        struct vhost *vh = v;
        if (!((only && vh == only) || (!only && api_sees_vhost(c, vh->name))))
            continue;
        const struct hmap *m = queues ? &vh->queues : &vh->exchanges;
        for (uint32_t jt = 0; k < n && hmap_next(m, &jt, &ov);)
            items[k++] = (struct api_item){
                queues ? ((struct queue *)ov)->name : ((struct exchange *)ov)->name, vh->name,
                NULL, ov, false};
    }
    api_send_objects(c, items, k, queues ? queue_json : exchange_json);
    free(items);
}

/* Every object of each vhost the user sees (or only vh), through each(). */
static json_t *collect(struct call *c, struct vhost *only,
                       void (*each)(struct call *, struct vhost *, json_t *))
{
    json_t *a = json_array();
    void *v;
    for (uint32_t it = 0; a && hmap_next(&c->a->b->vhosts, &it, &v);)
        if ((only && v == only) || (!only && api_sees_vhost(c, ((struct vhost *)v)->name)))
            each(c, v, a);
    return a;
}

static void each_binding(struct call *c, struct vhost *vh, json_t *a)
{
    (void)c;
    void *v;
    for (uint32_t it = 0; hmap_next(&vh->queues, &it, &v);)
        json_array_append_new(a, default_binding_json(v));
    for (uint32_t it = 0; hmap_next(&vh->exchanges, &it, &v);) {
        struct list *pos, *tmp;
        list_foreach_safe(pos, tmp, &((struct exchange *)v)->bindings)
            json_array_append_new(a, binding_obj_json(list_entry(pos, struct binding, src_link)));
    }
}

/* ---- /api/exchanges ------------------------------------------------------------------------------ */

static void exchange_put(struct call *c, struct vhost *vh, const char *name)
{
    json_t *o = api_body(c);
    if (!o)
        return;
    const char *type = api_member(c, o, "type", NULL);
    json_t *args = json_object_get(o, "arguments");
    struct amqp_wbuf w = {0};
    struct err err = {""};
    int rc, t;
    if (!type) {
        if (c->resp->status != 400)
            api_bad_request(c, "'type' is missing");
        goto out;
    }
    if ((t = exchange_type_parse(amqp_cstr(type))) < 0) {
        char why[300];
        snprintf(why, sizeof why, "unknown exchange type '%s'", type);
        api_bad_request(c, why);
        goto out;
    }
    if (args && !json_is_object(args)) {
        api_bad_request(c, "'arguments' must be an object");
        goto out;
    }
    size_t mark = amqp_tw_begin(&w);
    if (args)
        jt_put_table(&w, args);
    amqp_tw_end(&w, mark);
    amqp_bytes_t a = amqp_tw_body(&w, mark);
    bool durable = flag_member(o, "durable", false); /* absent: false, as RabbitMQ */
    bool ad = flag_member(o, "auto_delete", false);
    bool internal = flag_member(o, "internal", false);
    if (!name[0]) {
        api_error(c, 401, "not_authorised", "operation not permitted on the default exchange");
        goto out;
    }
    if (!permitted(c, vh, ACCESS_CONFIGURE, ACCESS_EXCHANGE, name))
        goto out;
    struct exchange *x = vhost_exchange(vh, amqp_cstr(name));
    rc = x ? entity_exchange_equivalent(x, (enum exchange_type)t, durable, ad, internal, a, &err)
           : entity_exchange_check_new(vh->name, amqp_cstr(name), (enum exchange_type)t, a, &err);
    if (rc == 0 && !x)
        rc = entity_exchange_create(vh, amqp_cstr(name), (enum exchange_type)t, durable, ad,
                                    internal, a, NULL);
    if (rc < 0)
        model_error(c, rc, &err);
    else
        api_no_content(c, x ? 204 : 201);
out:
    amqp_wbuf_free(&w);
    json_decref(o);
}

static void exchange_publish(struct call *c, struct vhost *vh, struct exchange *x)
{
    json_t *o = api_body(c);
    if (!o)
        return;
    const char *key = api_member(c, o, "routing_key", NULL);
    const char *payload = key ? api_member(c, o, "payload", NULL) : NULL;
    const char *enc = payload ? api_member(c, o, "payload_encoding", "string") : NULL;
    json_t *props = json_object_get(o, "properties");
    struct amqp_wbuf w = {0};
    unsigned char *raw = NULL;
    struct route r = {0};
    if (!enc) {
        if (c->resp->status != 400)
            api_bad_request(c, "routing_key, payload and payload_encoding are required");
        goto out;
    }
    size_t len = strlen(payload);
    const uint8_t *body = (const uint8_t *)payload;
    if (!strcmp(enc, "base64")) {
        raw = malloc(len / 4 * 3 + 3);
        int n = raw && len % 4 == 0 ? EVP_DecodeBlock(raw, (const unsigned char *)payload,
                                                      (int)len) : -1;
        if (n < 0) {
            api_bad_request(c, "payload is not base64");
            goto out;
        }
        while (len && payload[len - 1] == '=') {
            len--;
            n--;
        }
        body = raw;
        len = (size_t)n;
    } else if (strcmp(enc, "string") != 0) {
        api_bad_request(c, "payload_encoding must be string or base64");
        goto out;
    }
    struct amqp_basic_props p;
    const char *why = "";
    if (props && (!json_is_object(props) || jt_parse_props(props, &p, &w, &why) < 0)) {
        char msg[128];
        snprintf(msg, sizeof msg, "bad property '%s'", why);
        api_bad_request(c, msg);
        goto out;
    }
    if (!props)
        memset(&p, 0, sizeof p);
    if (!permitted(c, vh, ACCESS_WRITE, ACCESS_EXCHANGE, x->name))
        goto out;
    uint8_t hdr[65536];
    long hl = amqp_content_header_size(&p) <= (long)sizeof hdr
                  ? amqp_content_header_encode(&p, len, hdr) : -1;
    struct msg *m = hl < 0 ? NULL
                           : msg_new((amqp_bytes_t){(const uint8_t *)x->name, x->name_len},
                                     amqp_cstr(key), (amqp_bytes_t){hdr, (uint32_t)hl},
                                     (amqp_bytes_t){NULL, 0}, len);
    if (!m) {
        api_error(c, hl < 0 ? 400 : 500, hl < 0 ? "bad_request" : "internal_error",
                  hl < 0 ? "properties too large" : "out of memory");
        goto out;
    }
    memcpy(m->body, body, len);
    m->body_have = len;
    m->delivery_mode = p.delivery_mode;
    m->priority = p.priority;
    uint64_t batch;
    bool rejected;
    int rc = exchange_route(x, m, &r);
    if (rc == 0)
        rc = publish_enqueue(c->a->b, m, &r, &batch, &rejected);
    uint32_t routed = r.n;
    msg_unref(m);
    struct broker_stats *st = &c->a->b->stats; /* counted as AMQP's publishes are */
    st->received++;
    if (routed)
        st->routed++;
    else
        st->unroutable_dropped++;
    if (rc < 0)
        api_error(c, 500, "internal_error", "out of memory");
    else
        api_reply(c, 200, json_pack("{s:b}", "routed", routed > 0));
out:
    route_free(&r);
    free(raw);
    amqp_wbuf_free(&w);
    json_decref(o);
}

static void delete_exchange(struct call *c, void *obj)
{
    struct exchange *x = obj;
    char buf[8];
    struct err err = {""};
    int rc;
    if (!permitted(c, x->vhost, ACCESS_CONFIGURE, ACCESS_EXCHANGE, x->name))
        return;
    if ((rc = entity_exchange_delete(x->vhost, (amqp_bytes_t){(const uint8_t *)x->name,
                                                             x->name_len},
                                     !strcmp(api_param(c, "if-unused", buf, sizeof buf), "true"),
                                     &err)) < 0)
        return model_error(c, rc, &err);
    api_no_content(c, 204);
}

void api_exchanges(struct call *c)
{
    struct vhost *vh = NULL;
    if (c->nseg >= 2 && !(vh = vhost_seg(c, 1)))
        return;
    if (c->nseg <= 2)
        return api_is(c, "GET") ? send_entities(c, vh, false)
                                : api_method_not_allowed(c, "GET, HEAD");
    const char *name = c->seg[2];
    struct exchange *x = vhost_exchange(vh, exchange_seg(name));
    if (c->nseg == 3)
        return api_one(c, x, exchange_json, delete_exchange) ? (void)0 : exchange_put(c, vh, name);
    if (!x)
        return api_not_found(c);
    if (c->nseg == 4 && !strcmp(c->seg[3], "publish"))
        return api_is(c, "POST") ? exchange_publish(c, vh, x)
                                 : api_method_not_allowed(c, "POST");
    if (c->nseg == 5 && !strcmp(c->seg[3], "bindings") && api_is(c, "GET")) {
        bool source = !strcmp(c->seg[4], "source");
        if (!source && strcmp(c->seg[4], "destination") != 0)
            return api_not_found(c);
        json_t *a = json_array();
        struct list *pos, *tmp;
        list_foreach_safe(pos, tmp, source ? &x->bindings : &x->bindings_in)
            json_array_append_new(a, binding_obj_json(
                source ? list_entry(pos, struct binding, src_link)
                       : list_entry(pos, struct binding, dst_link)));
        return api_send_list(c, a);
    }
    api_not_found(c);
}

/* ---- /api/queues ---------------------------------------------------------------------------------- */

static void queue_put(struct call *c, struct vhost *vh, const char *name)
{
    json_t *o = api_body(c);
    if (!o)
        return;
    json_t *args = json_object_get(o, "arguments");
    struct amqp_wbuf w = {0};
    struct err err = {""};
    if (args && !json_is_object(args)) {
        api_bad_request(c, "'arguments' must be an object");
        goto out;
    }
    size_t mark = amqp_tw_begin(&w);
    if (args)
        jt_put_table(&w, args);
    amqp_tw_end(&w, mark);
    amqp_bytes_t a = amqp_tw_body(&w, mark);
    bool durable = flag_member(o, "durable", false); /* absent: false, as RabbitMQ */
    bool ad = flag_member(o, "auto_delete", false);
    int rc = entity_reserved_name("queue", amqp_cstr(name), &err);
    if (rc < 0) {
        model_error(c, rc, &err);
        goto out;
    }
    if (!permitted(c, vh, ACCESS_CONFIGURE, ACCESS_QUEUE, name))
        goto out;
    struct queue *q = vhost_queue(vh, amqp_cstr(name));
    if (q)
        rc = entity_queue_equivalent(q, durable, ad, false, a, &err);
    else if ((rc = entity_queue_check_limit(vh, amqp_cstr(name), &err)) == 0 &&
             (rc = entity_queue_check_new(vh->name, amqp_cstr(name), durable, ad, false, a,
                                          &err)) == 0)
        rc = entity_queue_create(vh, amqp_cstr(name), durable, ad, false, NULL, a, NULL);
    if (rc < 0)
        model_error(c, rc, &err);
    else
        api_no_content(c, q ? 204 : 201);
out:
    amqp_wbuf_free(&w);
    json_decref(o);
}

/* The body of a message as RabbitMQ's "get" shows it: text when it is valid UTF-8 (encoding
 * auto), else base64. */
static json_t *payload_json(const struct msg *m, bool base64, size_t truncate, const char **enc)
{
    size_t n = m->body_size < truncate ? (size_t)m->body_size : truncate;
    json_t *s = base64 ? NULL : json_stringn((const char *)m->body, n);
    if (s) {
        *enc = "string";
        return s;
    }
    char *b = malloc(4 * ((n + 2) / 3) + 1);
    if (!b)
        return NULL;
    EVP_EncodeBlock((unsigned char *)b, m->body, (int)n);
    *enc = "base64";
    s = json_string(b);
    free(b);
    return s;
}

static void queue_get(struct call *c, struct vhost *vh, struct queue *q)
{
    json_t *o = api_body(c);
    if (!o)
        return;
    const char *ackmode = api_member(c, o, "ackmode", NULL);
    const char *encoding = ackmode ? api_member(c, o, "encoding", "auto") : NULL;
    json_t *jn = json_object_get(o, "count"), *jt = json_object_get(o, "truncate");
    if (!encoding) {
        if (c->resp->status != 400)
            api_bad_request(c, "ackmode is required");
        return json_decref(o);
    }
    bool requeue = !strcmp(ackmode, "ack_requeue_true") || !strcmp(ackmode, "reject_requeue_true");
    bool drop = !strcmp(ackmode, "ack_requeue_false") || !strcmp(ackmode, "reject_requeue_false");
    json_int_t count = json_is_integer(jn) ? json_integer_value(jn)
                       : json_is_string(jn) ? atoll(json_string_value(jn)) : 1;
    json_int_t trunc = json_is_integer(jt) ? json_integer_value(jt)
                       : json_is_string(jt) ? atoll(json_string_value(jt)) : 50000000;
    if ((!requeue && !drop) || (strcmp(encoding, "auto") && strcmp(encoding, "base64"))) {
        api_bad_request(c, "ackmode must be ack_requeue_true|false or reject_requeue_true|false, "
                           "encoding auto or base64");
        return json_decref(o);
    }
    if (!permitted(c, vh, ACCESS_READ, ACCESS_QUEUE, q->name))
        return json_decref(o);
    json_t *a = json_array();
    struct qentry *taken = calloc(count > 0 ? (size_t)count : 1, sizeof *taken);
    json_int_t n = 0;
    while (a && taken && n < count && queue_pop(q, &taken[n])) {
        struct qentry *e = &taken[n++];
        struct amqp_content_header h;
        const char *enc = "string";
        json_t *props = amqp_content_header_decode(msg_header(e->m).ptr, msg_header(e->m).len,
                                                   &h) == 0 ? jt_props(&h.props) : json_object();
        amqp_bytes_t x = msg_exchange(e->m), rk = msg_routing_key(e->m);
        json_t *payload = payload_json(e->m, !strcmp(encoding, "base64"),
                                       trunc > 0 ? (size_t)trunc : 0, &enc);
        json_array_append_new(
            a, json_pack("{s:b, s:s%, s:s%, s:I, s:o, s:I, s:o, s:s}", "redelivered",
                         (e->flags & QE_REDELIVERED) != 0, "exchange", (const char *)x.ptr,
                         (size_t)x.len, "routing_key", (const char *)rk.ptr, (size_t)rk.len,
                         "message_count", (json_int_t)queue_ready(q), "properties",
                         props && json_object_size(props) ? props
                                                          : (json_decref(props), json_array()),
                         "payload_bytes",
                         (json_int_t)e->m->body_size, "payload",
                         payload ? payload : json_string(""), "payload_encoding", enc));
    }
    /* Settle what was taken: back to its place (redelivered) or gone, as RabbitMQ does. */
    for (json_int_t i = 0; i < n; i++) {
        if (requeue) {
            if (queue_requeue(q, &taken[i]) < 0)
                queue_settled(q, &taken[i]);
        } else {
            queue_delivered(q, &taken[i]);
            queue_settled(q, &taken[i]);
        }
        msg_unref(taken[i].m);
    }
    free(taken);
    if (requeue)
        queue_kick(q);
    json_decref(o); /* ackmode and encoding pointed into it */
    api_reply(c, 200, a);
}

static void delete_queue(struct call *c, void *obj)
{
    struct queue *q = obj;
    if (!permitted(c, q->vhost, ACCESS_CONFIGURE, ACCESS_QUEUE, q->name))
        return;
    char u[8], e[8];
    struct err err = {""};
    int rc = entity_queue_delete(q, !strcmp(api_param(c, "if-unused", u, sizeof u), "true"),
                                 !strcmp(api_param(c, "if-empty", e, sizeof e), "true"), NULL, &err);
    return rc < 0 ? model_error(c, rc, &err) : api_no_content(c, 204);
}

void api_queues(struct call *c)
{
    struct vhost *vh = NULL;
    if (c->nseg >= 2 && !(vh = vhost_seg(c, 1)))
        return;
    if (c->nseg <= 2)
        return api_is(c, "GET") ? send_entities(c, vh, true)
                                : api_method_not_allowed(c, "GET, HEAD");
    const char *name = c->seg[2];
    struct queue *q = vhost_queue(vh, amqp_cstr(name));
    if (c->nseg == 3)
        return api_one(c, q, queue_json, delete_queue) ? (void)0 : queue_put(c, vh, name);
    if (!q)
        return api_not_found(c);
    if (c->nseg == 4 && !strcmp(c->seg[3], "contents")) {
        if (!api_is(c, "DELETE"))
            return api_method_not_allowed(c, "DELETE");
        if (!permitted(c, vh, ACCESS_READ, ACCESS_QUEUE, name))
            return;
        queue_purge(q);
        return api_no_content(c, 204);
    }
    if (c->nseg == 4 && !strcmp(c->seg[3], "get"))
        return api_is(c, "POST") ? queue_get(c, vh, q) : api_method_not_allowed(c, "POST");
    if (c->nseg == 4 && !strcmp(c->seg[3], "bindings") && api_is(c, "GET")) {
        json_t *a = json_array();
        json_array_append_new(a, default_binding_json(q));
        struct list *pos, *tmp;
        list_foreach_safe(pos, tmp, &q->bindings_in)
            json_array_append_new(a, binding_obj_json(list_entry(pos, struct binding, dst_link)));
        return api_send_list(c, a);
    }
    api_not_found(c);
}

/* ---- /api/bindings --------------------------------------------------------------------------------- */

/* The bindings from x to dq/dx whose properties key is pk (NULL: all of them). */
static json_t *bindings_between(struct exchange *x, struct queue *dq, struct exchange *dx,
                                const char *pk, struct binding **ret_one)
{
    json_t *a = json_array();
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &x->bindings) {
        struct binding *b = list_entry(pos, struct binding, src_link);
        if (b->dq != dq || b->dx != dx)
            continue;
        char k[600];
        props_key(binding_key(b), binding_args(b), k, sizeof k);
        if (pk && strcmp(k, pk) != 0)
            continue;
        if (ret_one)
            *ret_one = b;
        json_array_append_new(a, binding_obj_json(b));
    }
    return a;
}

static void binding_post(struct call *c, struct vhost *vh, struct exchange *x, struct queue *dq,
                         struct exchange *dx)
{
    json_t *o = api_body(c);
    if (!o)
        return;
    const char *key = api_member(c, o, "routing_key", "");
    json_t *args = json_object_get(o, "arguments");
    struct amqp_wbuf w = {0};
    struct err err = {""};
    const char *dst = dq ? dq->name : dx->name;
    if (!key || (args && !json_is_object(args))) {
        if (c->resp->status != 400)
            api_bad_request(c, "'arguments' must be an object");
        goto out;
    }
    if (!permitted(c, vh, ACCESS_WRITE, dq ? ACCESS_QUEUE : ACCESS_EXCHANGE, dst) ||
        !permitted(c, vh, ACCESS_READ, ACCESS_EXCHANGE, x->name))
        goto out;
    size_t mark = amqp_tw_begin(&w);
    if (args)
        jt_put_table(&w, args);
    amqp_tw_end(&w, mark);
    amqp_bytes_t a = amqp_tw_body(&w, mark);
    int rc = w.failed ? -ENOMEM : entity_bind(x, dq, dx, amqp_cstr(key), a, &err);
    if (rc < 0) {
        model_error(c, rc, &err);
        goto out;
    }
    char pk[600];
    props_key(amqp_cstr(key), a, pk, sizeof pk);
    /* Location: the new binding's own URL. */
    char loc[1500];
    size_t n = (size_t)snprintf(loc, sizeof loc, "/api/bindings/");
    const char *parts[] = {vh->name, "e", x->name, dq ? "q" : "e", dst, pk};
    for (size_t i = 0; i < 6; i++) {
        for (const char *p = parts[i]; *p && n + 4 < sizeof loc; p++)
            n += (size_t)snprintf(loc + n, sizeof loc - n,
                                  (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                                          (*p >= '0' && *p <= '9') || strchr("-_.~", *p)
                                      ? "%c" : "%%%02X",
                                  (unsigned char)*p);
        if (i < 5 && n + 1 < sizeof loc)
            loc[n++] = '/';
    }
    loc[n] = 0;
    snprintf(c->resp->extra_headers, sizeof c->resp->extra_headers, "Location: %s\r\n", loc);
    api_no_content(c, 201);
out:
    amqp_wbuf_free(&w);
    json_decref(o);
}

void api_bindings(struct call *c)
{
    struct vhost *vh = NULL;
    if (c->nseg >= 2 && !(vh = vhost_seg(c, 1)))
        return;
    if (c->nseg <= 2)
        return api_is(c, "GET") ? api_send_list(c, collect(c, vh, each_binding))
                                : api_method_not_allowed(c, "GET, HEAD");
    /* /api/bindings/{vhost}/e/{source}/{q|e}/{destination}[/{props}] */
    if ((c->nseg != 6 && c->nseg != 7) || strcmp(c->seg[2], "e") ||
        (strcmp(c->seg[4], "q") && strcmp(c->seg[4], "e")))
        return api_not_found(c);
    bool to_queue = !strcmp(c->seg[4], "q");
    struct exchange *x = vhost_exchange(vh, exchange_seg(c->seg[3]));
    struct queue *dq = to_queue ? vhost_queue(vh, amqp_cstr(c->seg[5])) : NULL;
    struct exchange *dx = to_queue ? NULL : vhost_exchange(vh, exchange_seg(c->seg[5]));
    if (!x || (!dq && !dx))
        return api_not_found(c);
    if (c->nseg == 6) {
        if (api_is(c, "GET"))
            return api_send_list(c, bindings_between(x, dq, dx, NULL, NULL));
        return api_is(c, "POST") ? binding_post(c, vh, x, dq, dx)
                                 : api_method_not_allowed(c, "GET, POST, HEAD");
    }
    struct binding *b = NULL;
    json_t *one = bindings_between(x, dq, dx, c->seg[6], &b);
    if (!b) {
        json_decref(one);
        return api_not_found(c);
    }
    if (api_is(c, "GET"))
        return api_reply_first(c, one);
    json_decref(one);
    if (!api_is(c, "DELETE"))
        return api_method_not_allowed(c, "GET, DELETE, HEAD");
    if (!permitted(c, vh, ACCESS_WRITE, to_queue ? ACCESS_QUEUE : ACCESS_EXCHANGE, c->seg[5]) ||
        !permitted(c, vh, ACCESS_READ, ACCESS_EXCHANGE, x->name))
        return;
    /* The key and arguments live in b, which the removal frees: copy them first. */
    uint8_t key[256], *args = malloc(b->args_len ? b->args_len : 1);
    if (!args)
        return api_error(c, 500, "internal_error", "out of memory");
    uint32_t klen = b->key_len, alen = b->args_len;
    memcpy(key, binding_key(b).ptr, klen);
    memcpy(args, binding_args(b).ptr, alen);
    binding_remove(x, dq, dx, (amqp_bytes_t){key, klen}, (amqp_bytes_t){args, alen});
    free(args);
    api_no_content(c, 204);
}
