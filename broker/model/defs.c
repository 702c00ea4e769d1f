/* defs.c — imports RabbitMQ definitions (defs.h) with jansson. Two passes over the parsed
 * document: validate() checks every entry against the file and the broker (names, types,
 * hashes, patterns, queue arguments, equivalence with what exists, references) and changes
 * nothing; apply() then creates or updates only what differs, so that importing the same file
 * again writes nothing. Owns the parsed document for the duration of one import. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "lib/log.h"
#include "broker/model/args.h"
#include "broker/model/binding.h"
#include "broker/model/broker.h"
#include "broker/model/defs.h"
#include "broker/model/entity.h"
#include "broker/model/errors.h"
#include "broker/model/jsontable.h"
#include "broker/model/params.h"
#include "broker/model/exchange.h"
#include "broker/model/filter.h"
#include "broker/model/persist.h"
#include "broker/model/queue.h"
#include "broker/model/users.h"
#include "broker/model/vhost.h"
#include "protocol/table.h"
#include "storage/records.h"

struct import {
    struct broker *b;
    const char *path;
    json_t *root;        /* owned */
    bool pre36;          /* rabbit_version < 3.6.0: an absent hashing_algorithm means MD5 */
    struct err *err;     /* for the model's calls */
    char *why;           /* the caller's: "path: entry: reason" */
    size_t why_size;
    char entry[300];     /* the entry being looked at, for errors */
};

/* Formats "path: entry: reason" into err and returns -EINVAL. */
__attribute__((format(printf, 2, 3)))
static int bad(struct import *im, const char *fmt, ...)
{
    int n = snprintf(im->why, im->why_size, "%s: %s: ", im->path, im->entry);
    if (n >= 0 && (size_t)n < im->why_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(im->why + n, im->why_size - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static json_t *list(struct import *im, const char *key)
{
    json_t *a = json_object_get(im->root, key);
    return json_is_array(a) ? a : NULL;
}

/* A string member (def when absent); NULL, with an error, when present but not a string. */
static const char *str(struct import *im, json_t *o, const char *key, const char *def, int *rc)
{
    json_t *v = json_object_get(o, key);
    if (!v || (json_is_null(v) && def))
        return def;
    if (!json_is_string(v)) {
        *rc = bad(im, "'%s' is not a string", key);
        return NULL;
    }
    return json_string_value(v);
}

static bool flag(json_t *o, const char *key, bool def)
{
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

/* A name member: a string of 1..255 bytes (0..255 when may_be_empty). */
static const char *name(struct import *im, json_t *o, const char *key, bool may_be_empty,
                        int *rc)
{
    const char *s = str(im, o, key, NULL, rc);
    if (!s) {
        if (*rc == 0)
            *rc = bad(im, "'%s' is missing", key);
        return NULL;
    }
    if ((!s[0] && !may_be_empty) || strlen(s) > ST_KEY_NAME_MAX) {
        *rc = bad(im, "'%s' must be 1 to %d bytes long", key, ST_KEY_NAME_MAX);
        return NULL;
    }
    return s;
}

/* The "arguments" member as an AMQP table in w (empty when absent): 0, -EINVAL or -ENOMEM. */
static int arguments(struct import *im, json_t *o, struct amqp_wbuf *w, amqp_bytes_t *ret)
{
    json_t *a = json_object_get(o, "arguments");
    if (a && !json_is_object(a) && !json_is_null(a))
        return bad(im, "'arguments' is not an object");
    size_t mark = amqp_tw_begin(w);
    if (json_is_object(a))
        jt_put_table(w, a);
    amqp_tw_end(w, mark);
    if (w->failed)
        return -ENOMEM;
    *ret = amqp_tw_body(w, mark);
    return 0;
}

/* ---- lookups across the file and the broker ----------------------------------------------------- */

/* Is there an entry in list key whose member m1 is v1 (and m2 is v2, when m2)? */
static bool in_file(struct import *im, const char *key, const char *m1, const char *v1,
                    const char *m2, const char *v2)
{
    json_t *a = list(im, key), *e;
    size_t i;
    json_array_foreach(a, i, e) {
        json_t *x = json_object_get(e, m1), *y = m2 ? json_object_get(e, m2) : NULL;
        if (json_is_string(x) && !strcmp(json_string_value(x), v1) &&
            (!m2 || (json_is_string(y) && !strcmp(json_string_value(y), v2))))
            return true;
    }
    return false;
}

static bool vhost_known(struct import *im, const char *vhost)
{
    return hmap_get(&im->b->vhosts, vhost, strlen(vhost)) || in_file(im, "vhosts", "name", vhost,
                                                                       NULL, NULL);
}

static bool user_known(struct import *im, const char *user)
{
    return users_find(im->b, user, strlen(user)) || in_file(im, "users", "name", user, NULL, NULL);
}

/* ---- users ------------------------------------------------------------------------------------ */

/* The tags of a user entry, comma-joined into buf (a string or an array of strings). */
static int user_tags(struct import *im, json_t *u, char *buf, size_t size)
{
    json_t *t = json_object_get(u, "tags");
    buf[0] = 0;
    if (!t || json_is_null(t))
        return 0;
    if (json_is_string(t)) {
        if (json_string_length(t) >= size)
            return bad(im, "'tags' is too long");
        snprintf(buf, size, "%s", json_string_value(t));
        return 0;
    }
    if (!json_is_array(t))
        return bad(im, "'tags' is neither a string nor an array of strings");
    size_t i, n = 0;
    json_t *e;
    json_array_foreach(t, i, e) {
        if (!json_is_string(e))
            return bad(im, "'tags' is neither a string nor an array of strings");
        int k = snprintf(buf + n, size - n, "%s%s", n ? "," : "", json_string_value(e));
        if (k < 0 || (size_t)k >= size - n)
            return bad(im, "'tags' is too long");
        n += (size_t)k;
    }
    return 0;
}

struct user_def {
    const char *name, *hash, *password;
    enum password_algo algo;
    char tags[512];
};

static int user_def(struct import *im, size_t i, json_t *u, struct user_def *d)
{
    int rc = 0;
    snprintf(im->entry, sizeof im->entry, "users[%zu]", i);
    if (!json_is_object(u))
        return bad(im, "not an object");
    if (!(d->name = name(im, u, "name", false, &rc)))
        return rc;
    snprintf(im->entry, sizeof im->entry, "users[%zu] '%s'", i, d->name);
    d->hash = str(im, u, "password_hash", "", &rc);
    d->password = str(im, u, "password", NULL, &rc);
    const char *algo = str(im, u, "hashing_algorithm", NULL, &rc);
    if (rc < 0 || (rc = user_tags(im, u, d->tags, sizeof d->tags)) < 0)
        return rc;
    int a = algo ? password_algo_parse(algo) : im->pre36 ? PASSWORD_MD5 : PASSWORD_SHA256;
    if (a < 0)
        return bad(im, "unknown hashing_algorithm '%s' (rabbit_password_hashing_sha256, "
                   "_sha512 or _md5)", algo);
    d->algo = (enum password_algo)a;
    if (d->hash[0] && password_check(d->hash, d->algo, "", 0) < 0)
        return bad(im, "password_hash is not a %s hash (base64 of a 4-byte salt and the digest)",
                   password_algo_name(d->algo));
    return 0;
}

static int apply_user(struct import *im, const struct user_def *d)
{
    struct user *u = users_find(im->b, d->name, strlen(d->name));
    if (d->password && !d->hash[0]) { /* a clear-text password: hashed once, kept while it fits */
        if (u && !strcmp(u->tags, d->tags) &&
            password_check(u->hash, u->algo, d->password, strlen(d->password)) == 1)
            return 0;
        return users_put_password(im->b, d->name, d->password, d->tags, im->err);
    }
    if (u && u->algo == d->algo && !strcmp(u->hash, d->hash) && !strcmp(u->tags, d->tags))
        return 0;
    return users_put(im->b, d->name, d->hash, d->algo, d->tags, im->err);
}

/* ---- vhosts and their limits --------------------------------------------------------------------- */

/* The vhost-limits parameter of vhost in the file: its value object, or NULL. */
static json_t *vhost_limits(struct import *im, const char *vhost)
{
    json_t *a = list(im, "parameters"), *p;
    size_t i;
    json_array_foreach(a, i, p) {
        json_t *c = json_object_get(p, "component"), *v = json_object_get(p, "vhost");
        if (json_is_string(c) && !strcmp(json_string_value(c), "vhost-limits") &&
            json_is_string(v) && !strcmp(json_string_value(v), vhost))
            return json_object_get(p, "value");
    }
    return NULL;
}

static int limit_value(struct import *im, json_t *lim, const char *key, int64_t *ret)
{
    json_t *v = json_object_get(lim, key);
    *ret = -1;
    if (!v)
        return 0;
    if (!json_is_integer(v))
        return bad(im, "vhost-limits '%s' is not an integer", key);
    *ret = json_integer_value(v) < 0 ? -1 : json_integer_value(v);
    return 0;
}

static int check_limits(struct import *im)
{
    json_t *a = list(im, "parameters"), *p;
    size_t i;
    json_array_foreach(a, i, p) {
        snprintf(im->entry, sizeof im->entry, "parameters[%zu]", i);
        json_t *c = json_object_get(p, "component");
        if (!json_is_string(c) || strcmp(json_string_value(c), "vhost-limits") != 0)
            continue;
        int rc = 0;
        const char *vh = name(im, p, "vhost", false, &rc);
        if (!vh)
            return rc;
        if (!vhost_known(im, vh))
            return bad(im, "vhost '%s' is not defined", vh);
        json_t *v = json_object_get(p, "value");
        if (!json_is_object(v))
            return bad(im, "vhost-limits 'value' is not an object");
        const char *k;
        json_t *x;
        int64_t n;
        json_object_foreach(v, k, x) {
            if (strcmp(k, "max-connections") != 0 && strcmp(k, "max-queues") != 0)
                return bad(im, "unknown vhost limit '%s' (max-connections, max-queues)", k);
            if ((rc = limit_value(im, v, k, &n)) < 0)
                return rc;
        }
    }
    return 0;
}

static int apply_vhost(struct import *im, json_t *v)
{
    int rc = 0;
    const char *vname = name(im, v, "name", false, &rc);
    const char *desc = str(im, v, "description", NULL, &rc);
    json_t *meta = json_object_get(v, "metadata");
    const char *dqt = str(im, v, "default_queue_type", NULL, &rc);
    if (!dqt && json_is_object(meta))
        dqt = str(im, meta, "default_queue_type", NULL, &rc);
    if (!desc && json_is_object(meta))
        desc = str(im, meta, "description", NULL, &rc);
    json_t *lim = vhost_limits(im, vname);
    int64_t maxc = -1, maxq = -1;
    if (rc < 0 || (lim && ((rc = limit_value(im, lim, "max-connections", &maxc)) < 0 ||
                           (rc = limit_value(im, lim, "max-queues", &maxq)) < 0)))
        return rc;
    struct vhost *vh = hmap_get(&im->b->vhosts, vname, strlen(vname));
    bool same = vh && vh->max_connections == maxc && vh->max_queues == maxq &&
                !strcmp(vh->description ? vh->description : "", desc ? desc : "") &&
                !strcmp(vh->default_queue_type ? vh->default_queue_type : "", dqt ? dqt : "");
    if (same)
        return 0;
    if (!vh && !(vh = broker_add_vhost(im->b, vname)))
        return -ENOMEM;
    char *d = strdup(desc ? desc : ""), *q = strdup(dqt ? dqt : "");
    if (!d || !q) {
        free(d);
        free(q);
        return -ENOMEM;
    }
    free(vh->description);
    free(vh->default_queue_type);
    vh->description = d;
    vh->default_queue_type = q;
    vh->max_connections = maxc;
    vh->max_queues = maxq;
    users_persist_vhost(im->b, vh);
    im->b->access_gen++;
    return 0;
}

/* ---- permissions ------------------------------------------------------------------------------ */

static int perm_entry(struct import *im, const char *key, size_t i, json_t *p, bool topic,
                      const char **ret_user, const char **ret_vhost, const char **ret_x,
                      const char *ret_re[3])
{
    int rc = 0;
    snprintf(im->entry, sizeof im->entry, "%s[%zu]", key, i);
    if (!json_is_object(p))
        return bad(im, "not an object");
    const char *user = name(im, p, "user", false, &rc);
    const char *vhost = user ? name(im, p, "vhost", false, &rc) : NULL;
    const char *x = vhost && topic ? name(im, p, "exchange", true, &rc) : NULL;
    if (!vhost || (topic && !x))
        return rc;
    snprintf(im->entry, sizeof im->entry, "%s[%zu] (user '%s', vhost '%s')", key, i, user, vhost);
    if (!user_known(im, user))
        return bad(im, "user '%s' is not defined", user);
    if (!vhost_known(im, vhost))
        return bad(im, "vhost '%s' is not defined", vhost);
    static const char *const words[] = {"configure", "write", "read"};
    for (int k = topic ? 1 : 0; k < 3; k++) {
        if (!(ret_re[k] = str(im, p, words[k], NULL, &rc)))
            return rc < 0 ? rc : bad(im, "'%s' is missing", words[k]);
        struct err e;
        if (perm_check_pattern(ret_re[k], words[k], &e) < 0)
            return bad(im, "%s", e.text);
    }
    *ret_user = user;
    *ret_vhost = vhost;
    *ret_x = x;
    return 0;
}

static int apply_perm(struct import *im, const char *user, const char *vhost, const char *x,
                      const char *re[3])
{
    struct user *u = users_find(im->b, user, strlen(user));
    struct perm *p = perm_find(u, vhost, strlen(vhost));
    if (x) {
        struct topic_perm *t = p ? hmap_get(&p->topics, x, strlen(x)) : NULL;
        if (t && !strcmp(t->re[ACCESS_WRITE].src, re[1]) && !strcmp(t->re[ACCESS_READ].src, re[2]))
            return 0;
        return topic_perm_set(im->b, u, vhost, x, re[1], re[2], im->err);
    }
    if (p && !strcmp(p->re[0].src, re[0]) && !strcmp(p->re[1].src, re[1]) &&
        !strcmp(p->re[2].src, re[2]))
        return 0;
    return perm_set(im->b, u, vhost, re[0], re[1], re[2], im->err);
}

/* ---- exchanges, queues, bindings ------------------------------------------------------------- */

struct entity {
    const char *name, *vhost;
    json_t *o;
    struct amqp_wbuf w;  /* owns args */
    amqp_bytes_t args;
};

static int entity(struct import *im, const char *key, size_t i, json_t *o, struct entity *e)
{
    int rc = 0;
    memset(e, 0, sizeof *e);
    e->o = o;
    snprintf(im->entry, sizeof im->entry, "%s[%zu]", key, i);
    if (!json_is_object(o))
        return bad(im, "not an object");
    if (!(e->name = name(im, o, "name", false, &rc)) ||
        !(e->vhost = name(im, o, "vhost", false, &rc)))
        return rc;
    snprintf(im->entry, sizeof im->entry, "%s[%zu] '%s' in vhost '%s'", key, i, e->name,
             e->vhost);
    if (!vhost_known(im, e->vhost))
        return bad(im, "vhost '%s' is not defined", e->vhost);
    return arguments(im, o, &e->w, &e->args);
}

/* Validates an exchange entry (and, when apply, creates it if missing): the rules of
 * exchange.declare (entity.c). */
static int exchange_def(struct import *im, size_t i, json_t *o, bool apply)
{
    struct entity e;
    int rc = entity(im, "exchanges", i, o, &e);
    const char *type = rc < 0 ? NULL : str(im, o, "type", NULL, &rc);
    if (rc == 0 && !type)
        rc = bad(im, "'type' is missing");
    int t = type ? exchange_type_parse(amqp_cstr(type)) : -1;
    if (rc == 0 && t < 0)
        rc = bad(im, "unknown exchange type '%s'", type);
    bool durable = flag(o, "durable", true), ad = flag(o, "auto_delete", false),
         internal = flag(o, "internal", false);
    struct vhost *vh = rc < 0 ? NULL : hmap_get(&im->b->vhosts, e.vhost, strlen(e.vhost));
    struct exchange *x = vh ? vhost_exchange(vh, amqp_cstr(e.name)) : NULL;
    if (rc == 0 && x) {
        if (entity_exchange_equivalent(x, (enum exchange_type)t, durable, ad, internal, e.args,
                                       im->err) < 0)
            rc = bad(im, "%s", im->err->text);
    } else if (rc == 0) {
        if (entity_exchange_check_new(e.vhost, amqp_cstr(e.name), (enum exchange_type)t,
                                      e.args, im->err) < 0)
            rc = bad(im, "%s", im->err->text);
        else if (apply)
            rc = entity_exchange_create(vh, amqp_cstr(e.name), (enum exchange_type)t, durable,
                                        ad, internal, e.args, NULL);
    }
    amqp_wbuf_free(&e.w);
    return rc;
}

/* Validates a queue entry (and, when apply, creates it if missing): the rules of
 * queue.declare (entity.c). */
static int queue_def(struct import *im, size_t i, json_t *o, bool apply)
{
    struct entity e;
    int rc = entity(im, "queues", i, o, &e);
    bool durable = flag(o, "durable", true), ad = flag(o, "auto_delete", false);
    struct vhost *vh = rc < 0 ? NULL : hmap_get(&im->b->vhosts, e.vhost, strlen(e.vhost));
    struct queue *q = vh ? vhost_queue(vh, amqp_cstr(e.name)) : NULL;
    if (rc == 0 && entity_reserved_name("queue", amqp_cstr(e.name), im->err) < 0)
        rc = bad(im, "%s", im->err->text);
    else if (rc == 0 && q) {
        if (entity_queue_equivalent(q, durable, ad, false, e.args, im->err) < 0)
            rc = bad(im, "%s", im->err->text);
    } else if (rc == 0) {
        if (entity_queue_check_new(e.vhost, amqp_cstr(e.name), durable, ad, false, e.args,
                                   im->err) < 0)
            rc = bad(im, "%s", im->err->text);
        else if (apply)
            rc = entity_queue_create(vh, amqp_cstr(e.name), durable, ad, false, NULL, e.args,
                                     NULL);
    }
    amqp_wbuf_free(&e.w);
    return rc;
}

/* Does the file or the broker have that exchange (or queue when !exchange) in vhost? */
static bool entity_known(struct import *im, bool exchange, const char *vhost, const char *n)
{
    struct vhost *vh = hmap_get(&im->b->vhosts, vhost, strlen(vhost));
    if (vh && (exchange ? (void *)vhost_exchange(vh, amqp_cstr(n))
                        : (void *)vhost_queue(vh, amqp_cstr(n))))
        return true;
    return in_file(im, exchange ? "exchanges" : "queues", "name", n, "vhost", vhost);
}

static int binding_def(struct import *im, size_t i, json_t *o, bool apply)
{
    int rc = 0;
    struct amqp_wbuf w = {0};
    amqp_bytes_t args;
    snprintf(im->entry, sizeof im->entry, "bindings[%zu]", i);
    if (!json_is_object(o))
        return bad(im, "not an object");
    const char *src = name(im, o, "source", true, &rc);
    const char *vhost = src ? name(im, o, "vhost", false, &rc) : NULL;
    const char *dst = vhost ? name(im, o, "destination", false, &rc) : NULL;
    const char *dtype = dst ? str(im, o, "destination_type", NULL, &rc) : NULL;
    const char *key = dtype ? str(im, o, "routing_key", "", &rc) : NULL;
    if (!key)
        return rc < 0 ? rc : bad(im, "'destination_type' is missing");
    snprintf(im->entry, sizeof im->entry, "bindings[%zu] '%s' -> %s '%s' in vhost '%s'", i, src,
             dtype, dst, vhost);
    bool to_queue = !strcmp(dtype, "queue");
    if (!to_queue && strcmp(dtype, "exchange") != 0)
        return bad(im, "destination_type must be 'queue' or 'exchange'");
    if (!src[0])
        return 0; /* the default exchange's implicit bindings: nothing to import */
    if (!vhost_known(im, vhost))
        return bad(im, "vhost '%s' is not defined", vhost);
    /* As RabbitMQ: a binding whose end is in neither the file nor the broker is left out (its
     * own rabbitmqctl export leaves internal exchanges out but keeps their bindings). */
    if (!entity_known(im, true, vhost, src) || !entity_known(im, !to_queue, vhost, dst)) {
        if (apply)
            log_warn("definitions: %s: %s '%s' is not defined; skipping the binding", im->entry,
                     entity_known(im, true, vhost, src) ? dtype : "source exchange",
                     entity_known(im, true, vhost, src) ? dst : src);
        return 0;
    }
    if ((rc = arguments(im, o, &w, &args)) < 0)
        goto out;
    struct vhost *vh = hmap_get(&im->b->vhosts, vhost, strlen(vhost));
    struct exchange *x = vh ? vhost_exchange(vh, amqp_cstr(src)) : NULL;
    json_t *xdef = NULL; /* the source's type, from the broker or the file */
    bool headers = x ? x->type == EX_HEADERS : false;
    if (!x) {
        size_t j;
        json_t *e;
        json_array_foreach(list(im, "exchanges"), j, e) {
            json_t *n = json_object_get(e, "name"), *v = json_object_get(e, "vhost");
            if (json_is_string(n) && !strcmp(json_string_value(n), src) && json_is_string(v) &&
                !strcmp(json_string_value(v), vhost))
                xdef = json_object_get(e, "type");
        }
        headers = json_is_string(xdef) && !strcmp(json_string_value(xdef), "headers");
    }
    if (headers && args_check_x_match(im->err, args) < 0) {
        rc = bad(im, "%s", im->err->text);
        goto out;
    }
    struct filter *f = NULL;
    rc = binding_filter_compile(args, &f, im->err);
    filter_free(f);
    if (rc == -WERR_PRECONDITION_FAILED) {
        rc = bad(im, "invalid x-filter-policy: %s", im->err->text);
        goto out;
    }
    if (rc < 0)
        goto out;
    if (apply) {
        struct queue *dq = to_queue ? vhost_queue(vh, amqp_cstr(dst)) : NULL;
        struct exchange *dx = to_queue ? NULL : vhost_exchange(vh, amqp_cstr(dst));
        rc = entity_bind(x, dq, dx, amqp_cstr(key), args, im->err);
    }
out:
    amqp_wbuf_free(&w);
    return rc;
}

/* ---- the two passes ------------------------------------------------------------------------- */

static int for_each(struct import *im, const char *key, bool apply,
                    int (*fn)(struct import *, size_t, json_t *, bool))
{
    json_t *a = json_object_get(im->root, key), *e;
    if (a && !json_is_array(a)) {
        snprintf(im->entry, sizeof im->entry, "%s", key);
        return bad(im, "not an array");
    }
    size_t i;
    json_array_foreach(a, i, e) {
        int rc = fn(im, i, e, apply);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int user_pass(struct import *im, size_t i, json_t *u, bool apply)
{
    struct user_def d;
    int rc = user_def(im, i, u, &d);
    if (rc < 0 || !apply || (rc = apply_user(im, &d)) < 0)
        return rc;
    /* The user's limits (max-connections, max-channels), kept as RabbitMQ keeps them. */
    json_t *lim = json_object_get(u, "limits");
    if (json_is_object(lim) && json_object_size(lim))
        rc = param_set(im->b, PARAM_USER_LIMITS, "", d.name, lim, im->err);
    return rc;
}

static int vhost_pass(struct import *im, size_t i, json_t *v, bool apply)
{
    int rc = 0;
    snprintf(im->entry, sizeof im->entry, "vhosts[%zu]", i);
    if (!json_is_object(v))
        return bad(im, "not an object");
    const char *n = name(im, v, "name", false, &rc);
    if (!n)
        return rc;
    snprintf(im->entry, sizeof im->entry, "vhosts[%zu] '%s'", i, n);
    if (!str(im, v, "description", "", &rc))
        return rc;
    return apply ? apply_vhost(im, v) : 0;
}

static int perm_pass(struct import *im, size_t i, json_t *p, bool apply)
{
    const char *user, *vhost, *x, *re[3] = {NULL, NULL, NULL};
    int rc = perm_entry(im, "permissions", i, p, false, &user, &vhost, &x, re);
    return rc < 0 || !apply ? rc : apply_perm(im, user, vhost, NULL, re);
}

static int topic_pass(struct import *im, size_t i, json_t *p, bool apply)
{
    const char *user, *vhost, *x, *re[3] = {NULL, NULL, NULL};
    int rc = perm_entry(im, "topic_permissions", i, p, true, &user, &vhost, &x, re);
    return rc < 0 || !apply ? rc : apply_perm(im, user, vhost, x, re);
}

/* Every list in the order RabbitMQ imports them: users, vhosts, permissions, topic
 * permissions, (parameters, policies), queues, exchanges, bindings. */
/* The value a policy entry stores: its pattern, definition, priority and apply-to. */
static json_t *policy_value(json_t *e)
{
    json_t *v = json_object();
    static const char *const keys[] = {"pattern", "definition", "priority", "apply-to"};
    for (size_t i = 0; v && i < sizeof keys / sizeof keys[0]; i++)
        if (json_object_get(e, keys[i]))
            json_object_set(v, keys[i], json_object_get(e, keys[i]));
    return v;
}

/* policies[i], parameters[i] (other than vhost-limits, which vhost_pass applies) and
 * global_parameters[i]: validated, then set through params.c. */
static int param_entry(struct import *im, const char *list_name, size_t i, json_t *e, bool apply)
{
    int rc = 0;
    snprintf(im->entry, sizeof im->entry, "%s[%zu]", list_name, i);
    if (!json_is_object(e))
        return bad(im, "not an object");
    bool global = !strcmp(list_name, "global_parameters");
    bool policy = !strcmp(list_name, "policies");
    const char *pname = name(im, e, "name", false, &rc);
    const char *vhost = !pname || global ? "" : name(im, e, "vhost", false, &rc);
    const char *component = policy ? PARAM_POLICY : global ? PARAM_GLOBAL
                            : vhost ? str(im, e, "component", NULL, &rc) : NULL;
    if (!pname || !vhost || !component)
        return rc < 0 ? rc : bad(im, "'component' is missing");
    if (!policy && !global && !strcmp(component, "vhost-limits"))
        return 0;
    snprintf(im->entry, sizeof im->entry, "%s[%zu] '%s'%s%s%s", list_name, i, pname,
             vhost[0] ? " in vhost '" : "", vhost, vhost[0] ? "'" : "");
    if (!global && !vhost_known(im, vhost))
        return bad(im, "vhost '%s' is not defined", vhost);
    json_t *value = policy ? policy_value(e) : json_incref(json_object_get(e, "value"));
    if (!value)
        return bad(im, "'value' is missing");
    rc = apply ? param_set(im->b, component, vhost, pname, value, im->err)
               : param_check(component, value, im->err);
    json_decref(value);
    return rc == -EINVAL ? bad(im, "%s", im->err->text) : rc;
}

static int policy_pass(struct import *im, size_t i, json_t *e, bool apply)
{
    return param_entry(im, "policies", i, e, apply);
}

static int parameter_pass(struct import *im, size_t i, json_t *e, bool apply)
{
    return param_entry(im, "parameters", i, e, apply);
}

static int global_pass(struct import *im, size_t i, json_t *e, bool apply)
{
    return param_entry(im, "global_parameters", i, e, apply);
}

static int run(struct import *im, bool apply)
{
    int rc;
    if ((rc = for_each(im, "users", apply, user_pass)) < 0 ||
        (rc = for_each(im, "vhosts", apply, vhost_pass)) < 0 ||
        (!apply && (rc = check_limits(im)) < 0) ||
        (rc = for_each(im, "permissions", apply, perm_pass)) < 0 ||
        (rc = for_each(im, "topic_permissions", apply, topic_pass)) < 0 ||
        (rc = for_each(im, "parameters", apply, parameter_pass)) < 0 ||
        (rc = for_each(im, "global_parameters", apply, global_pass)) < 0 ||
        (rc = for_each(im, "policies", apply, policy_pass)) < 0 ||
        (rc = for_each(im, "queues", apply, queue_def)) < 0 ||
        (rc = for_each(im, "exchanges", apply, exchange_def)) < 0 ||
        (rc = for_each(im, "bindings", apply, binding_def)) < 0)
        return rc;
    return 0;
}

/* RabbitMQ before 3.6.0 stored MD5 hashes without saying so. */
static bool older_than_36(json_t *root)
{
    json_t *v = json_object_get(root, "rabbit_version");
    if (!json_is_string(v))
        v = json_object_get(root, "rabbitmq_version");
    int major = 0, minor = 0;
    if (!json_is_string(v) || sscanf(json_string_value(v), "%d.%d", &major, &minor) != 2)
        return false;
    return major < 3 || (major == 3 && minor < 6);
}

static int json_filter(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 5 && !strcmp(d->d_name + n - 5, ".json");
}

/* Reads path: one JSON file, or every *.json file of a directory in name order (as RabbitMQ
 * does), their lists joined into one document so that entries may refer across files. */
static json_t *load(const char *path, char *why, size_t why_size, int *rc)
{
    struct stat st;
    json_error_t je;
    if (stat(path, &st) != 0 || access(path, R_OK) != 0) {
        *rc = -errno;
        snprintf(why, why_size, "%s: cannot read it: %s", path, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) {
        json_t *root = json_load_file(path, 0, &je);
        if (!root) {
            *rc = -EINVAL;
            snprintf(why, why_size, "%s:%d:%d: not valid JSON: %s", path, je.line, je.column,
                     je.text);
        }
        return root;
    }
    struct dirent **names;
    int n = scandir(path, &names, json_filter, alphasort);
    if (n < 0) {
        *rc = -errno;
        snprintf(why, why_size, "%s: cannot list the directory: %s", path, strerror(errno));
        return NULL;
    }
    json_t *root = json_object();
    *rc = root ? 0 : -ENOMEM;
    for (int i = 0; i < n; i++) {
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", path, names[i]->d_name);
        json_t *part = *rc == 0 ? json_load_file(file, 0, &je) : NULL;
        if (*rc == 0 && !part) {
            *rc = -EINVAL;
            snprintf(why, why_size, "%s:%d:%d: not valid JSON: %s", file, je.line, je.column,
                     je.text);
        } else if (*rc == 0 && !json_is_object(part)) {
            *rc = -EINVAL;
            snprintf(why, why_size, "%s: top level: not a JSON object", file);
        }
        const char *k;
        json_t *v;
        json_object_foreach(*rc == 0 ? part : NULL, k, v) {
            json_t *have = json_object_get(root, k);
            if (json_is_array(have) && json_is_array(v))
                *rc = json_array_extend(have, v) == 0 ? *rc : -ENOMEM;
            else if (!have)
                *rc = json_object_set(root, k, v) == 0 ? *rc : -ENOMEM;
        }
        json_decref(part);
        free(names[i]);
    }
    free(names);
    if (*rc < 0) {
        if (*rc == -ENOMEM)
            snprintf(why, why_size, "%s: out of memory", path);
        json_decref(root);
        return NULL;
    }
    return root;
}

int defs_import_json(struct broker *b, json_t *root, const char *label, char *why,
                     size_t why_size)
{
    int rc;
    struct err err = {""};
    struct import im = {.b = b, .path = label, .root = root, .err = &err, .why = why,
                        .why_size = why_size};
    if (!json_is_object(root)) {
        snprintf(im.entry, sizeof im.entry, "top level");
        return bad(&im, "not a JSON object");
    }
    im.pre36 = older_than_36(root);
    rc = run(&im, false);
    if (rc == 0)
        rc = run(&im, true);
    if (rc == -ENOMEM)
        snprintf(why, why_size, "%s: out of memory while importing %s", label, im.entry);
    else if (rc < 0 && rc != -EINVAL) /* a model call refused: its text says why */
        snprintf(why, why_size, "%s: %s: %s", label, im.entry, err.text);
    if (rc < 0)
        return rc;
    log_info("imported definitions from %s: %zu users, %zu vhosts, %zu permissions, %zu topic "
             "permissions, %zu policies, %zu parameters, %zu exchanges, %zu queues, %zu "
             "bindings",
             label, json_array_size(list(&im, "users")), json_array_size(list(&im, "vhosts")),
             json_array_size(list(&im, "permissions")),
             json_array_size(list(&im, "topic_permissions")),
             json_array_size(list(&im, "policies")),
             json_array_size(list(&im, "parameters")) +
                 json_array_size(list(&im, "global_parameters")),
             json_array_size(list(&im, "exchanges")), json_array_size(list(&im, "queues")),
             json_array_size(list(&im, "bindings")));
    return 0;
}

int defs_import_file(struct broker *b, const char *path, char *why, size_t why_size)
{
    int rc = 0;
    json_t *root = load(path, why, why_size, &rc);
    if (!root)
        return rc;
    rc = defs_import_json(b, root, path, why, why_size);
    json_decref(root);
    return rc;
}

/* ---- export ------------------------------------------------------------------------------ */

/* Appends to the lists of d what vh holds: exchanges (not the built-in ones), non-exclusive
 * queues, bindings (not the default exchange's). with_vhost: each item names its vhost. */
static void export_entities(json_t *d, const struct vhost *vh, bool with_vhost)
{
    json_t *xs = json_object_get(d, "exchanges"), *qs = json_object_get(d, "queues"),
           *bs = json_object_get(d, "bindings");
    void *v;
    for (uint32_t it = 0; hmap_next(&vh->exchanges, &it, &v);) {
        const struct exchange *x = v;
        if (!x->name_len || !strncmp(x->name, "amq.", 4))
            continue;
        json_t *o = json_pack("{s:s, s:s, s:b, s:b, s:b, s:o}", "name", x->name, "type",
                              exchange_type_shown(x), "durable", x->durable, "auto_delete",
                              x->auto_delete, "internal", x->internal, "arguments",
                              jt_table((amqp_bytes_t){x->args, x->args_len}));
        if (o && with_vhost)
            json_object_set_new(o, "vhost", json_string(vh->name));
        json_array_append_new(xs, o);
        struct list *pos, *tmp;
        list_foreach_safe(pos, tmp, &((struct exchange *)x)->bindings) {
            const struct binding *bd = list_entry(pos, struct binding, src_link);
            amqp_bytes_t k = binding_key(bd);
            json_t *b = json_pack("{s:s, s:s, s:s, s:s%, s:o}", "source", x->name,
                                  "destination", bd->dq ? bd->dq->name : bd->dx->name,
                                  "destination_type", bd->dq ? "queue" : "exchange",
                                  "routing_key", (const char *)k.ptr, (size_t)k.len,
                                  "arguments", jt_table(binding_args(bd)));
            if (b && with_vhost)
                json_object_set_new(b, "vhost", json_string(vh->name));
            json_array_append_new(bs, b);
        }
    }
    for (uint32_t it = 0; hmap_next(&vh->queues, &it, &v);) {
        const struct queue *q = v;
        if (q->exclusive)
            continue;
        json_t *o = json_pack("{s:s, s:b, s:b, s:o}", "name", q->name, "durable", q->durable,
                              "auto_delete", q->auto_delete, "arguments",
                              jt_table((amqp_bytes_t){q->args, q->args_len}));
        if (o && with_vhost)
            json_object_set_new(o, "vhost", json_string(vh->name));
        json_array_append_new(qs, o);
    }
}

/* The vhost-limits parameter of vh, or NULL when it has no limits. */
static json_t *limits_param(const struct vhost *vh, bool with_vhost)
{
    if (vh->max_connections < 0 && vh->max_queues < 0)
        return NULL;
    json_t *val = json_object();
    if (vh->max_connections >= 0)
        json_object_set_new(val, "max-connections", json_integer(vh->max_connections));
    if (vh->max_queues >= 0)
        json_object_set_new(val, "max-queues", json_integer(vh->max_queues));
    json_t *p = json_pack("{s:s, s:s, s:o}", "component", "vhost-limits", "name", "limits",
                          "value", val);
    if (p && with_vhost)
        json_object_set_new(p, "vhost", json_string(vh->name));
    return p;
}

struct export_params {
    json_t *d;
    const char *only; /* a vhost, or NULL */
};

/* Policies, parameters and global parameters into their lists of the export. */
static void export_param(void *arg, const struct param *p)
{
    struct export_params *e = arg;
    bool global = !strcmp(p->component, PARAM_GLOBAL);
    if (!strcmp(p->component, PARAM_OPERATOR_POLICY) || !strcmp(p->component, PARAM_USER_LIMITS) ||
        (e->only && (global || strcmp(p->vhost, e->only))))
        return;
    json_t *o;
    if (!strcmp(p->component, PARAM_POLICY)) {
        o = json_deep_copy(p->value);
        if (o)
            json_object_set_new(o, "name", json_string(p->name));
    } else if (global) {
        o = json_pack("{s:s, s:O}", "name", p->name, "value", p->value);
    } else {
        o = json_pack("{s:s, s:s, s:O}", "component", p->component, "name", p->name, "value",
                      p->value);
    }
    if (o && !global && !e->only)
        json_object_set_new(o, "vhost", json_string(p->vhost));
    const char *list_name = !strcmp(p->component, PARAM_POLICY) ? "policies"
                            : global ? "global_parameters" : "parameters";
    json_array_append_new(json_object_get(e->d, list_name), o);
}

json_t *defs_export(struct broker *b, const struct vhost *only, const char *version)
{
    json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:[], s:[], s:[], s:[], s:[], s:[], s:[], s:[], "
                          "s:[], s:[]}",
                          "rabbit_version", "3.10.8", "rabbitmq_version", "3.10.8",
                          "product_name", "Warren", "product_version", version, "users", "vhosts",
                          "permissions", "topic_permissions", "parameters", "global_parameters",
                          "policies", "queues", "exchanges", "bindings");
    if (!d)
        return NULL;
    json_t *params = json_object_get(d, "parameters");
    void *v;
    if (only) {
        static const char *const drop[] = {"users", "vhosts", "permissions",
                                           "topic_permissions", "global_parameters"};
        for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
            json_object_del(d, drop[i]);
        json_t *p = limits_param(only, false);
        if (p)
            json_array_append_new(params, p);
        export_entities(d, only, false);
        struct export_params ep = {d, only->name};
        param_each(b, NULL, export_param, &ep);
        return d;
    }
    json_t *users = json_object_get(d, "users"), *vhosts = json_object_get(d, "vhosts"),
           *perms = json_object_get(d, "permissions"),
           *topics = json_object_get(d, "topic_permissions");
    for (uint32_t it = 0; hmap_next(&b->users, &it, &v);) {
        const struct user *u = v;
        const struct param *lim = param_find(b, PARAM_USER_LIMITS, "", u->name);
        json_array_append_new(users, json_pack("{s:s, s:s, s:s, s:o, s:o}", "name", u->name,
                                               "password_hash", u->hash, "hashing_algorithm",
                                               password_algo_name(u->algo), "tags",
                                               jt_tags(u->tags), "limits",
                                               lim ? json_deep_copy(lim->value)
                                                   : json_object()));
        void *pv;
        for (uint32_t jt = 0; hmap_next(&u->perms, &jt, &pv);) {
            const struct perm *p = pv;
            json_array_append_new(perms, json_pack("{s:s, s:s, s:s, s:s, s:s}", "user", u->name,
                                                   "vhost", p->vhost, "configure",
                                                   p->re[ACCESS_CONFIGURE].src, "write",
                                                   p->re[ACCESS_WRITE].src, "read",
                                                   p->re[ACCESS_READ].src));
            void *tv;
            for (uint32_t kt = 0; hmap_next(&p->topics, &kt, &tv);) {
                const struct topic_perm *t = tv;
                json_array_append_new(topics, json_pack("{s:s, s:s, s:s, s:s, s:s}", "user",
                                                        u->name, "vhost", p->vhost, "exchange",
                                                        t->exchange, "write",
                                                        t->re[ACCESS_WRITE].src, "read",
                                                        t->re[ACCESS_READ].src));
            }
        }
    }
    for (uint32_t it = 0; hmap_next(&b->vhosts, &it, &v);) {
        const struct vhost *vh = v;
        const char *desc = vh->description ? vh->description : "";
        json_t *o = json_pack("{s:s, s:s, s:[], s:{s:s, s:[]}}", "name", vh->name, "description",
                              desc, "tags", "metadata", "description", desc, "tags");
        if (o && vh->default_queue_type && vh->default_queue_type[0])
            json_object_set_new(o, "default_queue_type", json_string(vh->default_queue_type));
        json_array_append_new(vhosts, o);
        json_t *p = limits_param(vh, true);
        if (p)
            json_array_append_new(params, p);
        export_entities(d, vh, true);
    }
    struct export_params ep = {d, NULL};
    param_each(b, NULL, export_param, &ep);
    return d;
}
