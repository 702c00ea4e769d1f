/* exchange.c — owns exchange objects, their routing indexes and the routing walk.
 *   direct:  hash map routing key -> bucket list of bindings (O(1) per key)
 *   fanout:  the binding list
 *   topic:   a word trie (topic.c), cost independent of the number of bindings
 *   headers: the binding list, each checked with headers_match()
 *   x-message-deduplication: the binding list, once dedup.c admits the message (a duplicate
 *            routes nowhere, and counts as handled: no alternate exchange, no return)
 * Fanout, headers and deduplication exchanges keep the bindings whose filter policy names exact
 * strings for a key in a filter index (findex.h) instead of the list: a message checks only
 * those whose strings it carries, so 100,000 per-tenant policies cost about what 10 do.
 * The default exchange ("") has no bindings: it routes to the queue named by the key.
 * A binding with a filter policy (binding.h) matches only when the policy also matches (a
 * message every filter refuses is unroutable there: alternate exchange, mandatory return); the
 * headers table is decoded and the body parsed at most once per publish, only when a filter
 * needs them.
 * Invariant: every binding in x->bindings is in x's index exactly once (for fanout, headers
 * and deduplication: in x->plain or in x->findex). */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "lib/array.h"
#include "broker/model/binding.h"
#include "broker/model/dedup.h"
#include "broker/model/broker.h"
#include "broker/model/params.h"
#include "broker/model/exchange.h"
#include "broker/model/delay.h"
#include "broker/model/filter.h"
#include "broker/model/findex.h"
#include "broker/model/headers.h"
#include "broker/model/msg.h"
#include "broker/model/persist.h"
#include "broker/model/queue.h"
#include "broker/model/topic.h"
#include "broker/model/vhost.h"
#include "protocol/codec.h"
#include "protocol/table.h"

static const char *const type_names[EX_TYPE_MAX] = {"direct", "fanout", "topic", "headers",
                                                     "x-message-deduplication", "x-delayed-message"};

/* Direct exchanges: the bindings sharing one routing key. */
struct dbucket {
    struct list bindings; /* of binding.key_link */
    uint8_t key_len;
    uint8_t key[]; /* the map key points here */
};

int exchange_type_parse(amqp_bytes_t name)
{
    for (int i = 0; i < EX_TYPE_MAX; i++)
        if (amqp_bytes_eq_str(name, type_names[i]))
            return i;
    return -1;
}

const char *exchange_type_name(enum exchange_type t)
{
    return t < EX_TYPE_MAX ? type_names[t] : "unknown";
}

const char *exchange_type_shown(const struct exchange *x)
{
    return x->delayed ? type_names[EX_DELAYED] : exchange_type_name(x->type);
}

int exchange_delayed_type(amqp_bytes_t args)
{
    struct amqp_field f;
    if (amqp_table_get(args, "x-delayed-type", &f) != 1 || f.type != 'S')
        return -1;
    int t = exchange_type_parse(f.v.bytes);
    return t > EX_HEADERS ? -1 : t; /* the four built-in types (not dedup nor delayed) */
}

struct exchange *exchange_new(struct vhost *vh, amqp_bytes_t name, enum exchange_type type,
                              bool durable, bool auto_delete, bool internal, amqp_bytes_t args)
{
    struct exchange *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    if (type == EX_DELAYED) {
        int t = exchange_delayed_type(args);
        x->delayed = true;
        type = t < 0 ? EX_DIRECT : (enum exchange_type)t;
    }
    x->name = malloc(name.len + 1);
    x->args = args.len ? malloc(args.len) : NULL;
    if (type == EX_TOPIC)
        x->topic = topic_new();
    int drc = type == EX_DEDUP ? dedup_new(args, false, &x->dedup) : 0;
    if (!x->name || (args.len && !x->args) || (type == EX_TOPIC && !x->topic) || drc < 0) {
        exchange_free(x);
        return NULL;
    }
    if (name.len)
        memcpy(x->name, name.ptr, name.len);
    x->name[name.len] = 0;
    x->name_len = (uint8_t)name.len;
    if (args.len)
        memcpy(x->args, args.ptr, args.len);
    x->args_len = args.len;
    struct amqp_field ae;
    if (amqp_table_get((amqp_bytes_t){x->args, x->args_len}, "alternate-exchange", &ae) == 1 &&
        ae.type == 'S' && ae.v.bytes.len <= 255)
        x->alternate = ae.v.bytes;
    x->vhost = vh;
    x->type = type;
    x->durable = durable;
    x->auto_delete = auto_delete;
    x->internal = internal;
    list_init(&x->bindings);
    list_init(&x->bindings_in);
    list_init(&x->plain);
    return x;
}

void exchange_apply_policies(struct exchange *x)
{
    struct amqp_wbuf w = {0};
    const struct param *pol, *op;
    amqp_bytes_t args = {x->args, x->args_len};
    amqp_bytes_t body;
    if (policy_effective(x->vhost->broker, x->vhost, x->name, false, args, &w, &body, &pol,
                         &op) < 0) {
        amqp_wbuf_free(&w);
        return;
    }
    uint8_t *eff = pol ? malloc(body.len ? body.len : 1) : NULL;
    if (pol && !eff) {
        amqp_wbuf_free(&w);
        return;
    }
    if (eff)
        memcpy(eff, body.ptr, body.len);
    free(x->eff_args);
    x->eff_args = eff;
    x->eff_args_len = eff ? body.len : 0;
    amqp_wbuf_free(&w);
    struct amqp_field ae;
    x->alternate = (amqp_bytes_t){NULL, 0};
    if (amqp_table_get(eff ? (amqp_bytes_t){eff, x->eff_args_len} : args, "alternate-exchange",
                       &ae) == 1 && ae.type == 'S' && ae.v.bytes.len <= 255)
        x->alternate = ae.v.bytes;
    snprintf(x->policy, sizeof x->policy, "%s", pol ? pol->name : "");
}

void exchange_free(struct exchange *x)
{
    if (!x)
        return;
    void *v;
    for (uint32_t it = 0; hmap_next(&x->direct, &it, &v);)
        free(v);
    hmap_free(&x->direct);
    hmap_free(&x->by_id);
    topic_free(x->topic);
    findex_free(x->findex);
    dedup_free(x->dedup);
    free(x->args);
    free(x->eff_args);
    free(x->name);
    free(x);
}

void exchange_delete(struct exchange *x)
{
    if (x->deleted)
        return;
    x->deleted = true;
    x->vhost->broker->access_gen++; /* cached decisions about x (by address) are stale */
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &x->bindings)
        binding_free(list_entry(pos, struct binding, src_link));
    list_foreach_safe(pos, tmp, &x->bindings_in)
        binding_free(list_entry(pos, struct binding, dst_link));
    if (x->delayed)
        delay_target_gone(x->vhost->broker, 'x', x, x->store_id);
    persist_exchange_deleted(x->vhost->broker, x);
    vhost_remove_exchange(x->vhost, x);
    exchange_free(x);
}

void exchange__binding_gone(struct exchange *x)
{
    if (x->auto_delete && x->nbindings == 0 && !x->deleted)
        exchange_delete(x);
}

int exchange__index(struct exchange *x, struct binding *b)
{
    switch (x->type) {
    case EX_DIRECT: {
        amqp_bytes_t key = binding_key(b);
        struct dbucket *bk = hmap_get(&x->direct, key.ptr, key.len);
        if (!bk) {
            bk = malloc(sizeof *bk + key.len);
            if (!bk)
                return -ENOMEM;
            list_init(&bk->bindings);
            bk->key_len = (uint8_t)key.len;
            if (key.len)
                memcpy(bk->key, key.ptr, key.len);
            if (hmap_put(&x->direct, bk->key, bk->key_len, bk) < 0) {
                free(bk);
                return -ENOMEM;
            }
        }
        list_insert_tail(&bk->bindings, &b->key_link);
        return 0;
    }
    case EX_TOPIC:
        return topic_add(x->topic, binding_key(b), b);
    case EX_FANOUT:
    case EX_DEDUP:
    case EX_HEADERS: {
        int rc = b->filter ? findex_add(&x->findex, b) : 0;
        if (rc == 0)
            list_insert_tail(&x->plain, &b->key_link);
        return rc < 0 ? rc : 0;
    }
    default:
        return 0;
    }
}

void exchange__unindex(struct exchange *x, struct binding *b)
{
    if (x->type == EX_DIRECT) {
        list_remove(&b->key_link);
        amqp_bytes_t key = binding_key(b);
        struct dbucket *bk = hmap_get(&x->direct, key.ptr, key.len);
        if (bk && list_empty(&bk->bindings)) {
            hmap_del(&x->direct, key.ptr, key.len);
            free(bk);
        }
    } else if (x->type == EX_TOPIC) {
        topic_remove(x->topic, binding_key(b), b);
    } else if (b->nfent) {
        findex_remove(x->findex, b);
    } else {
        list_remove(&b->key_link);
    }
}

/* ---- routing ------------------------------------------------------------------------- */

void route_free(struct route *r)
{
    free(r->q);
    free(r->stack);
    free(r->keys);
    memset(r, 0, sizeof *r);
}

/* Room for one more element; notes a failure in *oom. */
static bool grow(void **arr, uint32_t *cap, uint32_t n, size_t elem, int *oom)
{
    if (array_reserve(arr, cap, n, elem, 8) == 0)
        return true;
    *oom = 1;
    return false;
}

static void add_key(struct route *r, amqp_bytes_t k)
{
    if (!grow((void **)&r->keys, &r->keys_cap, r->nkeys, sizeof *r->keys, &r->oom))
        return;
    r->keys[r->nkeys++] = k;
}

static void add_array_keys(struct route *r, amqp_bytes_t arr)
{
    struct amqp_field e;
    struct amqp_table_iter it;
    amqp_table_iter_init(&it, arr);
    while (amqp_array_next(&it, &e) > 0)
        if (e.type == 'S' && e.v.bytes.len <= 255)
            add_key(r, e.v.bytes);
}

/* The message's headers table, or empty. */
static amqp_bytes_t msg_headers(const struct msg *m)
{
    struct amqp_content_header h;
    amqp_bytes_t hdr = msg_header(m);
    if (amqp_content_header_decode(hdr.ptr, hdr.len, &h) == 0 && (h.props.flags & AMQP_P_HEADERS))
        return h.props.headers;
    return (amqp_bytes_t){NULL, 0};
}

/* r->keys = the routing key, then CC values, then BCC values. */
static void set_keys(struct route *r, const struct msg *m)
{
    r->nkeys = 0;
    add_key(r, msg_routing_key(m));
    if (m->flags & MSG_HAS_CC) {
        struct amqp_field v;
        if (amqp_table_get(msg_headers(m), "CC", &v) == 1 && v.type == 'A')
            add_array_keys(r, v.v.bytes);
    }
    if (m->bcc_len)
        add_array_keys(r, msg_bcc(m));
}

static void add_queue(struct route *r, struct queue *q, uint64_t pass)
{
    if (q->route_pass == pass || q->deleted)
        return;
    q->route_pass = pass;
    if (!grow((void **)&r->q, &r->cap, r->n, sizeof *r->q, &r->oom))
        return;
    r->q[r->n++] = q;
}

static void push_exchange(struct route *r, struct exchange *x, uint64_t pass)
{
    if (x->visit == pass || x->deleted)
        return;
    x->visit = pass;
    if (!grow((void **)&r->stack, &r->stack_cap, r->ns, sizeof *r->stack, &r->oom))
        return;
    r->stack[r->ns++] = x;
}

/* One publish's view of its message for filter policies, filled on first need. */
struct route_msg {
    const struct msg *m; /* borrowed: the message being routed */
    amqp_bytes_t headers;
    json_t *body; /* owned: the body parsed as JSON (NULL if it is not JSON) */
    bool have_headers, have_body;
};

static amqp_bytes_t rm_headers(struct route_msg *rm)
{
    if (!rm->have_headers) {
        rm->have_headers = true;
        rm->headers = msg_headers(rm->m);
    }
    return rm->headers;
}

static const void *rm_body(void *arg)
{
    struct route_msg *rm = arg;
    if (!rm->have_body) {
        rm->have_body = true;
        /* Integers as reals, as filter_match_body reads them. */
        rm->body = json_loadb((const char *)rm->m->body, rm->m->body_size,
                              JSON_DECODE_INT_AS_REAL, NULL);
    }
    return rm->body;
}

/* Does b's filter policy (b->filter is not NULL) accept the message? */
static bool filter_ok(struct route_msg *rm, const struct binding *b)
{
    if (filter_scope(b->filter) == FILTER_SCOPE_BODY)
        return filter_match_json(b->filter, rm_body(rm));
    return filter_match_table(b->filter, rm_headers(rm));
}

/* Walks with topic matches and filter-index candidates. */
struct topic_ctx {
    struct route *r;
    struct route_msg *rm;
    uint64_t pass;
    bool matched;
    enum exchange_type type;
};

/* Routes to b's destination when its filter (if any) accepts the message; true if so. */
static bool add_binding(struct route *r, struct route_msg *rm, struct binding *b, uint64_t pass)
{
    if (b->filter && !filter_ok(rm, b))
        return false;
    if (b->dq)
        add_queue(r, b->dq, pass);
    else
        push_exchange(r, b->dx, pass);
    return true;
}

static void on_topic_match(void *value, void *arg)
{
    struct topic_ctx *t = arg;
    if (add_binding(t->r, t->rm, value, t->pass))
        t->matched = true;
}

/* A binding the filter index picked: the exchange's own rule, then the whole policy. */
static void on_candidate(struct binding *b, void *arg)
{
    struct topic_ctx *t = arg;
    if ((t->type != EX_HEADERS || headers_match(b->hm, binding_args(b), rm_headers(t->rm))) &&
        add_binding(t->r, t->rm, b, t->pass))
        t->matched = true;
}

/* Fanout and headers: the bindings outside the filter index, then the index's candidates. */
static bool route_plain(struct exchange *x, struct route_msg *rm, struct route *r, uint64_t pass)
{
    struct topic_ctx t = {r, rm, pass, false, x->type};
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &x->plain)
        on_candidate(list_entry(pos, struct binding, key_link), &t);
    if (x->findex) {
        struct findex_msg fm = {rm_headers(rm), rm_body, rm};
        findex_candidates(x->findex, &fm, on_candidate, &t);
    }
    return t.matched;
}

/* Routes through one exchange's own bindings; true when any binding matched. */
static bool route_one(struct exchange *x, struct route_msg *rm, struct route *r, uint64_t pass)
{
    bool matched = false;
    struct list *pos, *tmp;
    if (x->name_len == 0) {
        for (uint32_t k = 0; k < r->nkeys; k++) {
            struct queue *q = vhost_queue(x->vhost, r->keys[k]);
            if (q) {
                matched = true;
                add_queue(r, q, pass);
            }
        }
        return matched;
    }
    switch (x->type) {
    case EX_DIRECT:
        for (uint32_t k = 0; k < r->nkeys; k++) {
            struct dbucket *bk = hmap_get(&x->direct, r->keys[k].ptr, r->keys[k].len);
            if (!bk)
                continue;
            list_foreach_safe(pos, tmp, &bk->bindings)
                if (add_binding(r, rm, list_entry(pos, struct binding, key_link), pass))
                    matched = true;
        }
        break;
    case EX_DEDUP:
        if (x->dedup && !dedup_exchange_admit(x, rm->m)) {
            r->deduplicated++;
            return true;
        }
        /* routed as a fanout */
        __attribute__((fallthrough));
    case EX_FANOUT:
    case EX_HEADERS:
        matched = route_plain(x, rm, r, pass);
        break;
    case EX_TOPIC: {
        struct topic_ctx t = {r, rm, pass, false, x->type};
        for (uint32_t k = 0; k < r->nkeys; k++)
            topic_match(x->topic, r->keys[k], on_topic_match, &t);
        matched = t.matched;
        break;
    }
    default:
        break;
    }
    return matched;
}

int exchange_route(struct exchange *x, const struct msg *m, struct route *r)
{
    struct vhost *vh = x->vhost;
    uint64_t pass = ++vh->route_pass;
    r->n = 0;
    r->ns = 0;
    r->oom = 0;
    r->deduplicated = 0;
    struct route_msg rm = {.m = m};
    set_keys(r, m);
    push_exchange(r, x, pass);
    while (r->ns) {
        struct exchange *e = r->stack[--r->ns];
        if (!route_one(e, &rm, r, pass) && e->alternate.len) {
            struct exchange *ae = vhost_exchange(vh, e->alternate);
            if (ae)
                push_exchange(r, ae, pass);
        }
    }
    json_decref(rm.body);
    return r->oom ? -ENOMEM : 0;
}
