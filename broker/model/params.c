/* params.c — runtime parameters and policies (params.h). Parameters live in b->params keyed by
 * "component\0vhost\0name"; each change is written to storage in the current batch. A policy
 * change re-applies the vhost's policies to its queues and exchanges at once.
 * Invariant: a stored policy always validated (pattern compiles, definition keys known and
 * well typed), so applying one cannot fail but for memory. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lib/log.h"
#include "broker/model/broker.h"
#include "broker/model/errors.h"
#include "broker/model/exchange.h"
#include "broker/model/jsontable.h"
#include "broker/model/params.h"
#include "broker/model/queue.h"
#include "broker/model/vhost.h"
#include "storage/batch.h"
#include "storage/records.h"

/* ---- keys ----------------------------------------------------------------------------------- */

/* The policy keys Warren applies: the queue (or exchange) argument each stands for, whether it
 * is a number where the lower value wins, and who may set it. */
static const struct policy_key {
    const char *key, *arg;
    enum { K_INT, K_STR, K_OVERFLOW } kind;
    bool lower_wins, queue, exchange, operator_ok;
} keys[] = {
    {"message-ttl", "x-message-ttl", K_INT, true, true, false, true},
    {"expires", "x-expires", K_INT, true, true, false, true},
    {"max-length", "x-max-length", K_INT, true, true, false, true},
    {"max-length-bytes", "x-max-length-bytes", K_INT, true, true, false, true},
    {"delivery-limit", "x-delivery-limit", K_INT, true, true, false, true},
    {"overflow", "x-overflow", K_OVERFLOW, false, true, false, false},
    {"dead-letter-exchange", "x-dead-letter-exchange", K_STR, false, true, false, false},
    {"dead-letter-routing-key", "x-dead-letter-routing-key", K_STR, false, true, false, false},
    {"alternate-exchange", "alternate-exchange", K_STR, false, false, true, false},
    {"consumer-timeout", "x-consumer-timeout", K_INT, false, true, false, false},
};
#define NKEYS (sizeof keys / sizeof keys[0])

static const struct policy_key *find_key(const char *k)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].key, k))
            return &keys[i];
    return NULL;
}

/* ---- the map -------------------------------------------------------------------------------- */

static size_t map_key(const char *c, const char *v, const char *n, char *buf, size_t size)
{
    int len = snprintf(buf, size, "%s%c%s%c%s", c, 0, v, 0, n);
    return len < 0 || (size_t)len >= size ? 0 : (size_t)len;
}

struct param *param_find(struct broker *b, const char *component, const char *vhost,
                         const char *name)
{
    char k[800];
    size_t n = map_key(component, vhost, name, k, sizeof k);
    return n ? hmap_get(&b->params, k, n) : NULL;
}

static void param_free(struct param *p)
{
    if (!p)
        return;
    free(p->key);
    pcre2_code_free(p->re);
    json_decref(p->value);
    free(p->component);
    free(p->vhost);
    free(p->name);
    free(p);
}

static bool is_policy(const char *component)
{
    return !strcmp(component, PARAM_POLICY) || !strcmp(component, PARAM_OPERATOR_POLICY);
}

/* Checks a policy's value and fills p's compiled fields. */
static int policy_parse(struct param *p, bool op, struct err *err)
{
    json_t *v = p->value, *pat = json_object_get(v, "pattern"),
           *def = json_object_get(v, "definition"), *prio = json_object_get(v, "priority"),
           *apply = json_object_get(v, "apply-to");
    if (!json_is_object(v) || !json_is_string(pat))
        return err_set(err, -EINVAL, "pattern is missing");
    if (!json_is_object(def) || !json_object_size(def))
        return err_set(err, -EINVAL, "definition must be a non-empty object");
    if (prio && !json_is_integer(prio))
        return err_set(err, -EINVAL, "priority must be an integer");
    p->priority = prio ? (int)json_integer_value(prio) : 0;
    const char *a = json_is_string(apply) ? json_string_value(apply) : "all";
    if (apply && !json_is_string(apply))
        return err_set(err, -EINVAL, "apply-to must be a string");
    p->apply_to = !strcmp(a, "queues") ? APPLY_QUEUES : !strcmp(a, "exchanges")
                  ? APPLY_EXCHANGES : APPLY_ALL;
    if (strcmp(a, "all") && strcmp(a, "queues") && strcmp(a, "exchanges"))
        return err_set(err, -EINVAL, "apply-to must be all, queues or exchanges, not '%s'", a);
    const char *k;
    json_t *x;
    json_object_foreach(def, k, x) {
        const struct policy_key *pk = find_key(k);
        if (!pk || (op && !pk->operator_ok)) {
            /* RabbitMQ's text shows the setting as an Erlang term: {<<"key">>,Value}. */
            char *val = json_is_string(x) ? NULL : json_dumps(x, JSON_COMPACT | JSON_ENCODE_ANY);
            int rc = err_set(err, -EINVAL, "Validation failed\n\n[{<<\"%s\">>,%s%s%s}] are not "
                             "recognised policy settings\n",
                             k, json_is_string(x) ? "<<\"" : "",
                             json_is_string(x) ? json_string_value(x) : val ? val : "?",
                             json_is_string(x) ? "\">>" : "");
            free(val);
            return rc;
        }
        if (pk->kind == K_INT && (!json_is_integer(x) || json_integer_value(x) < 0))
            return err_set(err, -EINVAL, "Validation failed\n\n%s must be a non-negative "
                           "integer", k);
        if (pk->kind != K_INT && !json_is_string(x))
            return err_set(err, -EINVAL, "Validation failed\n\n%s must be a string", k);
        if (pk->kind == K_OVERFLOW && strcmp(json_string_value(x), "drop-head") &&
            strcmp(json_string_value(x), "reject-publish") &&
            strcmp(json_string_value(x), "reject-publish-dlx"))
            return err_set(err, -EINVAL, "Validation failed\n\n%s must be drop-head, "
                           "reject-publish or reject-publish-dlx", k);
    }
    int code;
    PCRE2_SIZE off;
    if (!(p->re = pcre2_compile((PCRE2_SPTR)json_string_value(pat), PCRE2_ZERO_TERMINATED, 0,
                                &code, &off, NULL)))
        return err_set(err, -EINVAL, "pattern '%s' is not a valid regular expression",
                       json_string_value(pat));
    (void)pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE);
    return 0;
}

static void persist(struct broker *b, const struct param *p)
{
    if (!b->store || b->recovering)
        return;
    char *text = json_dumps(p->value, JSON_COMPACT | JSON_ENCODE_ANY);
    struct st_param r = {{p->component, strlen(p->component)}, {p->vhost, strlen(p->vhost)},
                         {p->name, strlen(p->name)}, {text, text ? strlen(text) : 0}};
    if (text)
        (void)storage_put_param(b->store, &r);
    free(text);
}

/* Makes the parameter (not yet in the map). */
static int make(const char *component, const char *vhost, const char *name, json_t *value,
                struct param **ret, struct err *err)
{
    if (strlen(component) > 255 || strlen(vhost) > 255 || strlen(name) > 255 || !name[0])
        return err_set(err, -EINVAL, "names must be 1 to 255 bytes long");
    struct param *p = calloc(1, sizeof *p);
    char k[800];
    size_t n = map_key(component, vhost, name, k, sizeof k);
    if (!p || !(p->component = strdup(component)) || !(p->vhost = strdup(vhost)) ||
        !(p->name = strdup(name)) || !(p->key = malloc(n))) {
        param_free(p);
        return -ENOMEM;
    }
    memcpy(p->key, k, n);
    p->key_len = n;
    p->value = json_incref(value);
    int rc = is_policy(component)
                 ? policy_parse(p, !strcmp(component, PARAM_OPERATOR_POLICY), err) : 0;
    if (rc < 0) {
        param_free(p);
        return rc;
    }
    *ret = p;
    return 0;
}

int param_check(const char *component, json_t *value, struct err *err)
{
    struct param *p;
    int rc = make(component, "v", "n", value, &p, err);
    if (rc == 0)
        param_free(p);
    return rc;
}

/* Puts p in the map, replacing (and freeing) one of the same key. */
static int insert(struct broker *b, struct param *p)
{
    struct param *old = hmap_del(&b->params, p->key, p->key_len);
    param_free(old);
    if (hmap_put(&b->params, p->key, p->key_len, p) < 0) {
        param_free(p);
        return -ENOMEM;
    }
    return 0;
}

int param_set(struct broker *b, const char *component, const char *vhost, const char *name,
              json_t *value, struct err *err)
{
    struct param *p, *old = param_find(b, component, vhost, name);
    if (old && json_equal(old->value, value))
        return 0; /* the same again: nothing changes, nothing is written */
    int rc = make(component, vhost, name, value, &p, err);
    if (rc < 0)
        return rc;
    if ((rc = insert(b, p)) < 0)
        return rc;
    persist(b, p);
    struct vhost *vh = is_policy(component) ? hmap_get(&b->vhosts, vhost, strlen(vhost)) : NULL;
    if (vh)
        policy_apply_vhost(b, vh);
    return 0;
}

/* Removes p from the map and from storage. */
static void unlink_param(struct broker *b, struct param *p)
{
    hmap_del(&b->params, p->key, p->key_len);
    if (b->store && !b->recovering)
        (void)storage_del_param(b->store, (struct st_bytes){p->component, strlen(p->component)},
                                (struct st_bytes){p->vhost, strlen(p->vhost)},
                                (struct st_bytes){p->name, strlen(p->name)});
}

void param_delete(struct broker *b, struct param *p)
{
    bool policy = is_policy(p->component);
    struct vhost *vh = policy ? hmap_get(&b->vhosts, p->vhost, strlen(p->vhost)) : NULL;
    unlink_param(b, p);
    param_free(p);
    if (vh)
        policy_apply_vhost(b, vh);
}

void param_each(struct broker *b, const char *component,
                void (*fn)(void *arg, const struct param *p), void *arg)
{
    void *v;
    for (uint32_t it = 0; hmap_next(&b->params, &it, &v);)
        if (!component || !strcmp(((struct param *)v)->component, component))
            fn(arg, v);
}

void params_forget_vhost(struct broker *b, const char *vhost)
{
    void *v;
    for (uint32_t it = 0; hmap_next(&b->params, &it, &v);) {
        struct param *p = v;
        if (!strcmp(p->vhost, vhost)) {
            unlink_param(b, p);
            param_free(p);
        }
    }
}

int params_recover(struct broker *b, const struct st_param *r)
{
    char c[256], vh[256], n[256];
    snprintf(c, sizeof c, "%.*s", (int)r->component.len, (const char *)r->component.p);
    snprintf(vh, sizeof vh, "%.*s", (int)r->vhost.len, (const char *)r->vhost.p);
    snprintf(n, sizeof n, "%.*s", (int)r->name.len, (const char *)r->name.p);
    json_error_t je;
    json_t *value = json_loadb(r->value.p, r->value.len, JSON_DECODE_ANY, &je);
    struct param *p;
    struct err err;
    int rc = value ? make(c, vh, n, value, &p, &err) : -EINVAL;
    json_decref(value);
    if (rc == -EINVAL) {
        log_error("stored parameter %s '%s' in vhost '%s' does not make sense any more (%s); "
                  "ignoring it", c, n, vh, value ? err.text : je.text);
        return 0;
    }
    return rc < 0 ? rc : insert(b, p);
}

void params_free_all(struct broker *b)
{
    void *v;
    for (uint32_t it = 0; hmap_next(&b->params, &it, &v);)
        param_free(v);
    hmap_free(&b->params);
}

/* ---- applying policies ------------------------------------------------------------------------ */

static bool matches(const struct param *p, const char *name, bool queue)
{
    if ((queue && p->apply_to == APPLY_EXCHANGES) || (!queue && p->apply_to == APPLY_QUEUES))
        return false;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    bool m = md && pcre2_match(p->re, (PCRE2_SPTR)name, strlen(name), 0, 0, md, NULL) >= 0;
    pcre2_match_data_free(md);
    return m;
}

/* The highest-priority policy of component in vhost that matches (ties: the greater name, so
 * that the choice does not depend on the map's order). */
static const struct param *best(struct broker *b, const char *component, const char *vhost,
                                const char *name, bool queue)
{
    const struct param *found = NULL;
    void *v;
    for (uint32_t it = 0; hmap_next(&b->params, &it, &v);) {
        const struct param *p = v;
        if (strcmp(p->component, component) || strcmp(p->vhost, vhost) ||
            !matches(p, name, queue))
            continue;
        if (!found || p->priority > found->priority ||
            (p->priority == found->priority && strcmp(p->name, found->name) > 0))
            found = p;
    }
    return found;
}

int policy_effective(struct broker *b, const struct vhost *vh, const char *name, bool queue,
                     amqp_bytes_t args, struct amqp_wbuf *w, amqp_bytes_t *ret_args,
                     const struct param **ret_policy, const struct param **ret_op)
{
    const struct param *pol = best(b, PARAM_POLICY, vh->name, name, queue);
    const struct param *op = queue ? best(b, PARAM_OPERATOR_POLICY, vh->name, name, true) : NULL;
    *ret_policy = pol;
    *ret_op = op;
    json_t *pd = pol ? json_object_get(pol->value, "definition") : NULL;
    json_t *od = op ? json_object_get(op->value, "definition") : NULL;
    size_t mark = amqp_tw_begin(w);
    /* The declared arguments, except those a lower policy value replaces. */
    struct amqp_table_iter it;
    amqp_bytes_t k;
    struct amqp_field f;
    amqp_table_iter_init(&it, args);
    for (;;) {
        const uint8_t *entry = it.p;
        if (amqp_table_next(&it, &k, &f) != 1)
            break;
        bool replaced = false;
        for (size_t i = 0; i < NKEYS && !replaced; i++) {
            if (!keys[i].lower_wins || strlen(keys[i].arg) != k.len ||
                memcmp(keys[i].arg, k.ptr, k.len))
                continue;
            int64_t have = f.type == 'l' || f.type == 'I' || f.type == 's' || f.type == 'b'
                               ? f.v.i : (int64_t)f.v.u;
            json_t *pv = json_object_get(pd, keys[i].key), *ov = json_object_get(od, keys[i].key);
            replaced = (json_is_integer(pv) && json_integer_value(pv) < have) ||
                       (json_is_integer(ov) && json_integer_value(ov) < have);
        }
        if (!replaced) {
            uint8_t *dst = amqp_wbuf_grow(w, (size_t)(it.p - entry)); /* (w->len moves on) */
            if (dst)
                memcpy(dst, entry, (size_t)(it.p - entry));
        }
    }
    /* Then the policy's keys the arguments do not set (or set higher), the operator policy's
     * numbers where lower than both. */
    for (size_t i = 0; i < NKEYS; i++) {
        const struct policy_key *pk = &keys[i];
        if ((queue && !pk->queue) || (!queue && !pk->exchange))
            continue;
        json_t *pv = json_object_get(pd, pk->key), *ov = json_object_get(od, pk->key);
        struct amqp_field cur;
        bool has = amqp_table_get(args, pk->arg, &cur) == 1;
        int64_t have = has ? (cur.type == 'l' || cur.type == 'I' || cur.type == 's' ||
                              cur.type == 'b' ? cur.v.i : (int64_t)cur.v.u) : INT64_MAX;
        if (pk->kind == K_INT && pk->lower_wins) {
            int64_t v = have;
            if (json_is_integer(pv) && json_integer_value(pv) < v)
                v = json_integer_value(pv);
            if (json_is_integer(ov) && json_integer_value(ov) < v)
                v = json_integer_value(ov);
            if (v != have) {
                amqp_tw_key(w, pk->arg);
                amqp_tw_int(w, 'l', v);
            }
        } else if (!has && pv) {
            amqp_tw_key(w, pk->arg);
            jt_put_value(w, pv);
        }
    }
    amqp_tw_end(w, mark);
    *ret_args = amqp_tw_body(w, mark);
    return w->failed ? -ENOMEM : 0;
}

void policy_apply_vhost(struct broker *b, struct vhost *vh)
{
    void *v;
    for (uint32_t it = 0; hmap_next(&vh->queues, &it, &v);)
        queue_apply_policies(v);
    for (uint32_t it = 0; hmap_next(&vh->exchanges, &it, &v);)
        exchange_apply_policies(v);
    (void)b;
}
