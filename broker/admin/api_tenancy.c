/* api_tenancy.c — the management API's tenancy endpoints: /api/whoami,
 * /api/vhosts, /api/users and /api/permissions, in RabbitMQ 3.10's shapes. Changes go through
 * users.c and broker.c, as the definitions import's do. Owns nothing. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "config.h"
#include "lib/log.h"
#include "broker/admin/api_int.h"
#include "broker/model/broker.h"
#include "broker/model/defs.h"
#include "broker/model/errors.h"
#include "broker/model/jsontable.h"
#include "broker/model/params.h"
#include "broker/model/users.h"
#include "broker/model/vhost.h"

static json_t *vhost_json(const void *v)
{
    const struct vhost *vh = v;
    const char *desc = vh->description ? vh->description : "";
    const char *dqt = vh->default_queue_type && vh->default_queue_type[0]
                          ? vh->default_queue_type : "classic";
    return json_pack("{s:s, s:s, s:[], s:s, s:{s:s, s:[]}, s:b}", "name", vh->name,
                     "description", desc, "tags", "default_queue_type", dqt, "metadata",
                     "description", desc, "tags", "tracing", 0);
}

/* The broker of the request being answered, for user_json's look-up of the user's limits
 * (to_json callbacks get the object only; there is one loop thread). */
static struct broker *s_broker;

static json_t *user_json(const void *v)
{
    const struct user *u = v;
    const struct param *lim = s_broker ? param_find(s_broker, PARAM_USER_LIMITS, "", u->name)
                                       : NULL;
    return json_pack("{s:s, s:s, s:s, s:o, s:o}", "name", u->name, "password_hash", u->hash,
                     "hashing_algorithm", password_algo_name(u->algo), "tags",
                     jt_tags(u->tags), "limits",
                     lim ? json_deep_copy(lim->value) : json_object());
}

static json_t *perm_json(const void *v)
{
    const struct perm *p = v;
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "user", p->user->name, "vhost", p->vhost,
                     "configure", p->re[ACCESS_CONFIGURE].src, "write", p->re[ACCESS_WRITE].src,
                     "read", p->re[ACCESS_READ].src);
}

/* ---- /api/whoami, /api/overview --------------------------------------------------------------- */

void api_whoami(struct call *c)
{
    if (!api_is(c, "GET"))
        return api_method_not_allowed(c, "GET, HEAD");
    api_reply(c, 200, json_pack("{s:s, s:o}", "name", c->user->name, "tags",
                                 jt_tags(c->user->tags)));
}

/* ---- /api/vhosts --------------------------------------------------------------------------------- */

static json_t *topic_perms(struct broker *b, struct user *only, const char *vhost);

/* Every user's permission in vhost. */
static json_t *vhost_perms(struct broker *b, const char *vhost)
{
    json_t *a = json_array();
    void *u;
    for (uint32_t it = 0; a && hmap_next(&b->users, &it, &u);) {
        struct perm *p = perm_find(u, vhost, strlen(vhost));
        if (p)
            json_array_append_new(a, perm_json(p));
    }
    return a;
}

void api_vhosts(struct call *c)
{
    struct broker *b = c->a->b;
    if (c->nseg == 1)
        return api_list(c, &b->vhosts, vhost_json, api_sees_vhost_obj);
    if (c->nseg == 3 && (!strcmp(c->seg[2], "connections") || !strcmp(c->seg[2], "channels")))
        return api_vhost_sessions(c);
    if (c->nseg == 3 && (!strcmp(c->seg[2], "permissions") ||
                         !strcmp(c->seg[2], "topic-permissions"))) {
        if (!api_admin_only(c))
            return;
        if (!hmap_get(&b->vhosts, c->seg[1], strlen(c->seg[1])))
            return api_not_found(c);
        return api_send_list(c, c->seg[2][0] == 'p' ? vhost_perms(b, c->seg[1])
                                                    : topic_perms(b, NULL, c->seg[1]));
    }
    if (c->nseg != 2)
        return api_not_found(c);
    const char *name = c->seg[1];
    struct vhost *vh = hmap_get(&b->vhosts, name, strlen(name));
    if (api_is(c, "GET")) { /* one vhost: administrators only, as RabbitMQ 3.10 */
        if (!api_admin_only(c))
            return;
        return vh ? api_reply(c, 200, vhost_json(vh)) : api_not_found(c);
    }
    if (api_is(c, "DELETE")) {
        if (!api_admin_only(c))
            return;
        if (!vh)
            return api_not_found(c);
        log_info("management API: user '%s' deletes vhost '%s'", c->user->name, name);
        broker_delete_vhost(b, vh);
        return api_no_content(c, 204);
    }
    if (!api_is(c, "PUT"))
        return api_method_not_allowed(c, "GET, PUT, DELETE, HEAD");
    if (!api_admin_only(c))
        return;
    if (!name[0] || strlen(name) > 255)
        return api_bad_request(c, "vhost names must be 1 to 255 bytes long");
    json_t *o = api_body(c);
    if (!o)
        return;
    const char *desc = api_member(c, o, "description", NULL);
    const char *dqt = desc || !json_object_get(o, "description")
                          ? api_member(c, o, "default_queue_type", NULL) : NULL;
    if (c->resp->status == 400) {
        json_decref(o);
        return;
    }
    bool created = !vh;
    if (!vh && !(vh = broker_add_vhost(b, name))) {
        json_decref(o);
        return api_error(c, 500, "internal_error", "out of memory");
    }
    if (desc) {
        char *d = strdup(desc);
        if (d) {
            free(vh->description);
            vh->description = d;
        }
    }
    if (dqt) {
        char *d = strdup(dqt);
        if (d) {
            free(vh->default_queue_type);
            vh->default_queue_type = d;
        }
    }
    json_decref(o);
    users_persist_vhost(b, vh);
    b->access_gen++;
    if (created) {
        log_info("management API: user '%s' created vhost '%s'", c->user->name, name);
        /* RabbitMQ gives the creating user full permissions on a new vhost. */
        struct err err;
        if (perm_set(b, c->user, name, ".*", ".*", ".*", &err) < 0)
            log_warn("management API: cannot grant '%s' permissions on new vhost '%s': %s",
                     c->user->name, name, err.text);
    }
    api_no_content(c, created ? 201 : 204);
}

/* ---- /api/users ----------------------------------------------------------------------------------- */

static bool has_no_permissions(const struct call *c, const void *u)
{
    (void)c;
    return ((const struct user *)u)->perms.count == 0;
}

/* POST /api/users/bulk-delete {"users": [names]}: 204, names that do not exist ignored. */
static void bulk_delete(struct call *c)
{
    json_t *o = api_body(c);
    if (!o)
        return;
    json_t *names = json_object_get(o, "users");
    if (!json_is_array(names)) {
        json_decref(o);
        return api_bad_request(c, "users must be a list of names");
    }
    size_t i;
    json_t *n, *missing = NULL;
    json_array_foreach(names, i, n) {
        struct user *u = json_is_string(n) ? users_find(c->a->b, json_string_value(n),
                                                        json_string_length(n)) : NULL;
        if (u)
            users_delete(c->a->b, u);
        else if (!missing && json_is_string(n))
            missing = json_incref(n);
    }
    json_decref(o);
    if (missing) /* the others are deleted all the same, as in RabbitMQ */
        return api_reply(c, 400, json_pack("{s:s, s:[s, o]}", "error", "bad_request", "reason",
                                           "no_such_user", missing));
    api_no_content(c, 204);
}

/* Every topic permission of u (NULL: of every user) in vhost (NULL: every vhost). */
static json_t *topic_perms(struct broker *b, struct user *only, const char *vhost)
{
    json_t *a = json_array();
    void *uv, *pv, *tv;
    for (uint32_t it = 0; a && hmap_next(&b->users, &it, &uv);) {
        const struct user *u = uv;
        if (only && u != only)
            continue;
        for (uint32_t jt = 0; hmap_next(&u->perms, &jt, &pv);) {
            const struct perm *p = pv;
            if (vhost && strcmp(p->vhost, vhost) != 0)
                continue;
            for (uint32_t kt = 0; hmap_next(&p->topics, &kt, &tv);) {
                const struct topic_perm *t = tv;
                json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:s}", "user", u->name,
                                                   "vhost", p->vhost, "exchange", t->exchange,
                                                   "write", t->re[ACCESS_WRITE].src, "read",
                                                   t->re[ACCESS_READ].src));
            }
        }
    }
    return a;
}

static void delete_user(struct call *c, void *u)
{
    users_delete(c->a->b, u);
    api_no_content(c, 204);
}

void api_users(struct call *c)
{
    struct broker *b = c->a->b;
    s_broker = b;
    if (!api_admin_only(c))
        return;
    if (c->nseg == 1)
        return api_list(c, &b->users, user_json, NULL);
    if (c->nseg == 2 && !strcmp(c->seg[1], "without-permissions") && api_is(c, "GET"))
        return api_list(c, &b->users, user_json, has_no_permissions);
    if (c->nseg == 2 && !strcmp(c->seg[1], "bulk-delete") && api_is(c, "POST"))
        return bulk_delete(c);
    if (c->nseg == 3 && !strcmp(c->seg[2], "permissions")) {
        struct user *u = users_find(b, c->seg[1], strlen(c->seg[1]));
        return u ? api_list(c, &u->perms, perm_json, NULL) : api_not_found(c);
    }
    if (c->nseg == 3 && !strcmp(c->seg[2], "topic-permissions")) {
        struct user *u = users_find(b, c->seg[1], strlen(c->seg[1]));
        return u ? api_send_list(c, topic_perms(b, u, NULL)) : api_not_found(c);
    }
    if (c->nseg != 2)
        return api_not_found(c);
    const char *name = c->seg[1];
    struct user *u = users_find(b, name, strlen(name));
    if (api_one(c, u, user_json, delete_user))
        return;
    json_t *o = api_body(c);
    if (!o)
        return;
    const char *password = api_member(c, o, "password", NULL);
    const char *hash = c->resp->status == 400 ? NULL : api_member(c, o, "password_hash", NULL);
    const char *algo = c->resp->status == 400 ? NULL : api_member(c, o, "hashing_algorithm", NULL);
    json_t *t = json_object_get(o, "tags");
    char tags[512] = "";
    size_t n = 0;
    if (json_is_string(t)) {
        snprintf(tags, sizeof tags, "%s", json_string_value(t));
    } else if (json_is_array(t)) {
        size_t i;
        json_t *e;
        json_array_foreach(t, i, e)
            if (json_is_string(e) && n < sizeof tags)
                n += (size_t)snprintf(tags + n, sizeof tags - n, "%s%s", n ? "," : "",
                                      json_string_value(e));
    } else if (t && !json_is_null(t)) {
        json_decref(o);
        return api_bad_request(c, "tags must be a string or a list of strings");
    }
    if (c->resp->status == 400) {
        json_decref(o);
        return;
    }
    if (!password && !hash) {
        json_decref(o);
        return api_bad_request(c, "password or password_hash must be set");
    }
    int a = algo ? password_algo_parse(algo) : PASSWORD_SHA256;
    struct err err = {""};
    bool created = !u;
    int rc = a < 0 ? err_set(&err, -EINVAL, "unknown hashing_algorithm '%s'", algo)
             : password ? users_put_password(b, name, password, tags, &err)
                        : users_put(b, name, hash, (enum password_algo)a, tags, &err);
    json_decref(o);
    if (rc < 0)
        return api_bad_request(c, err.text[0] ? err.text : strerror(-rc));
    api_no_content(c, created ? 201 : 204);
}

/* ---- /api/permissions ------------------------------------------------------------------------------- */

void api_permissions(struct call *c)
{
    struct broker *b = c->a->b;
    if (!api_admin_only(c))
        return;
    if (c->nseg == 1) {
        if (!api_is(c, "GET"))
            return api_method_not_allowed(c, "GET, HEAD");
        json_t *a = json_array();
        void *u, *p;
        for (uint32_t it = 0; a && hmap_next(&b->users, &it, &u);)
            for (uint32_t jt = 0; hmap_next(&((struct user *)u)->perms, &jt, &p);)
                json_array_append_new(a, perm_json(p));
        return api_reply(c, 200, a);
    }
    if (c->nseg != 3)
        return api_not_found(c);
    const char *vhost = c->seg[1], *name = c->seg[2];
    struct user *u = users_find(b, name, strlen(name));
    struct perm *p = u ? perm_find(u, vhost, strlen(vhost)) : NULL;
    if (api_is(c, "GET"))
        return p ? api_reply(c, 200, perm_json(p)) : api_not_found(c);
    if (api_is(c, "DELETE")) {
        if (!p)
            return api_not_found(c);
        perm_clear(b, u, vhost);
        return api_no_content(c, 204);
    }
    if (!api_is(c, "PUT"))
        return api_method_not_allowed(c, "GET, PUT, DELETE, HEAD");
    if (!hmap_get(&b->vhosts, vhost, strlen(vhost)) || !u)
        return api_bad_request(c, "vhost_or_user_not_found");
    json_t *o = api_body(c);
    if (!o)
        return;
    const char *re[3];
    static const char *const keys[] = {"configure", "write", "read"};
    for (int i = 0; i < 3; i++) {
        if (!(re[i] = api_member(c, o, keys[i], NULL))) {
            if (c->resp->status != 400) {
                char why[64];
                snprintf(why, sizeof why, "%s is missing", keys[i]);
                api_bad_request(c, why);
            }
            json_decref(o);
            return;
        }
    }
    bool created = !p;
    struct err err = {""};
    int rc = perm_set(b, u, vhost, re[0], re[1], re[2], &err);
    json_decref(o);
    if (rc < 0)
        return api_bad_request(c, err.text);
    api_no_content(c, created ? 201 : 204);
}


/* ---- /api/definitions ------------------------------------------------------------------------ */

/* A per-vhost document names no vhost in its entries: they go to vh. */
static void into_vhost(json_t *d, const char *vh)
{
    static const char *const drop[] = {"users", "vhosts", "permissions", "topic_permissions",
                                       "global_parameters"};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
        json_object_del(d, drop[i]);
    static const char *const lists[] = {"queues", "exchanges", "bindings", "policies",
                                        "parameters"};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        size_t j;
        json_t *e;
        json_array_foreach(json_object_get(d, lists[i]), j, e)
            if (json_is_object(e))
                json_object_set_new(e, "vhost", json_string(vh));
    }
}

void api_definitions(struct call *c)
{
    struct broker *b = c->a->b;
    struct vhost *vh = NULL;
    if (c->nseg > 2)
        return api_not_found(c);
    if (c->nseg == 2 && !(vh = hmap_get(&b->vhosts, c->seg[1], strlen(c->seg[1]))))
        return api_not_found(c);
    if (!api_admin_only(c))
        return;
    if (api_is(c, "GET"))
        return api_reply(c, 200, defs_export(b, vh, WARREN_VERSION));
    if (!api_is(c, "POST"))
        return api_method_not_allowed(c, "GET, POST, HEAD");
    json_t *d = api_body(c);
    if (!d)
        return;
    if (vh)
        into_vhost(d, vh->name);
    char why[600];
    int rc = defs_import_json(b, d, "definitions", why, sizeof why);
    json_decref(d);
    if (rc < 0)
        return api_bad_request(c, why);
    log_info("management API: user '%s' imported definitions%s%s", c->user->name,
             vh ? " into vhost " : "", vh ? vh->name : "");
    api_no_content(c, 204);
}

/* ---- /api/topic-permissions ---------------------------------------------------------------- */

void api_topic_permissions(struct call *c)
{
    struct broker *b = c->a->b;
    if (!api_admin_only(c))
        return;
    if (c->nseg == 1)
        return api_is(c, "GET") ? api_send_list(c, topic_perms(b, NULL, NULL))
                                : api_method_not_allowed(c, "GET, HEAD");
    if (c->nseg != 3)
        return api_not_found(c);
    const char *vhost = c->seg[1];
    struct user *u = users_find(b, c->seg[2], strlen(c->seg[2]));
    if (api_is(c, "GET")) {
        json_t *a = u ? topic_perms(b, u, vhost) : NULL;
        if (!a || !json_array_size(a)) {
            json_decref(a);
            return api_not_found(c);
        }
        return api_send_list(c, a);
    }
    if (!hmap_get(&b->vhosts, vhost, strlen(vhost)))
        return api_bad_request(c, "vhost_not_found");
    if (!u)
        return api_bad_request(c, "user_not_found");
    if (api_is(c, "DELETE")) { /* all of that user's topic permissions in vhost */
        struct perm *p = perm_find(u, vhost, strlen(vhost));
        void *tv;
        for (uint32_t it = 0; p && hmap_next(&p->topics, &it, &tv);)
            topic_perm_clear(b, u, vhost, ((struct topic_perm *)tv)->exchange);
        return api_no_content(c, 204);
    }
    if (!api_is(c, "PUT"))
        return api_method_not_allowed(c, "GET, PUT, DELETE, HEAD");
    json_t *o = api_body(c);
    if (!o)
        return;
    const char *x = api_member(c, o, "exchange", NULL);
    const char *w = x ? api_member(c, o, "write", NULL) : NULL;
    const char *r = w ? api_member(c, o, "read", NULL) : NULL;
    if (!r) {
        json_decref(o);
        if (c->resp->status != 400)
            api_bad_request(c, "exchange, write and read are required");
        return;
    }
    struct perm *p = perm_find(u, vhost, strlen(vhost));
    bool created = !p || !hmap_get(&p->topics, x, strlen(x));
    struct err err = {""};
    int rc = topic_perm_set(b, u, vhost, x, w, r, &err);
    json_decref(o);
    if (rc < 0)
        return api_bad_request(c, err.text);
    api_no_content(c, created ? 201 : 204);
}

/* ---- small ones: hash_password, extensions, vhost-limits -------------------------------------- */

void api_auth(struct call *c)
{
    if (c->nseg != 3 || strcmp(c->seg[1], "hash_password") || !api_is(c, "GET"))
        return api_not_found(c);
    char hash[PASSWORD_HASH_MAX];
    if (password_hash(PASSWORD_SHA256, c->seg[2], strlen(c->seg[2]), hash, sizeof hash) < 0)
        return api_error(c, 500, "internal_error", "cannot hash the password");
    api_reply(c, 200, json_pack("{s:s}", "ok", hash));
}

void api_extensions(struct call *c)
{
    api_reply(c, 200, json_array());
}

static json_t *limits_json(const struct vhost *vh)
{
    json_t *v = json_object();
    if (vh->max_connections >= 0)
        json_object_set_new(v, "max-connections", json_integer(vh->max_connections));
    if (vh->max_queues >= 0)
        json_object_set_new(v, "max-queues", json_integer(vh->max_queues));
    return json_pack("{s:s, s:o}", "vhost", vh->name, "value", v);
}

/* /api/vhost-limits[/{vhost}[/{max-connections|max-queues}]]: GET, PUT {"value": N}, DELETE. */
void api_vhost_limits(struct call *c)
{
    struct broker *b = c->a->b;
    if (c->nseg == 1 || (c->nseg == 2 && api_is(c, "GET"))) {
        json_t *a = json_array();
        void *v;
        for (uint32_t it = 0; a && hmap_next(&b->vhosts, &it, &v);) {
            const struct vhost *vh = v;
            if ((c->nseg == 2 && strcmp(vh->name, c->seg[1])) || !api_sees_vhost(c, vh->name))
                continue;
            if (vh->max_connections >= 0 || vh->max_queues >= 0)
                json_array_append_new(a, limits_json(vh));
        }
        return api_send_list(c, a);
    }
    struct vhost *vh = c->nseg == 3 ? hmap_get(&b->vhosts, c->seg[1], strlen(c->seg[1])) : NULL;
    if (!vh)
        return c->nseg == 3 ? api_error(c, 404, "not_found", "vhost_not_found")
                            : api_not_found(c);
    if (!api_admin_only(c))
        return;
    int64_t *limit = !strcmp(c->seg[2], "max-connections") ? &vh->max_connections
                     : !strcmp(c->seg[2], "max-queues")    ? &vh->max_queues : NULL;
    if (!limit)
        return api_bad_request(c, "unknown limit (max-connections, max-queues)");
    if (api_is(c, "DELETE")) {
        *limit = -1;
    } else if (api_is(c, "PUT")) {
        json_t *o = api_body(c);
        if (!o)
            return;
        json_t *v = json_object_get(o, "value");
        if (!json_is_integer(v)) {
            json_decref(o);
            return api_bad_request(c, "value must be an integer");
        }
        *limit = json_integer_value(v) < 0 ? -1 : json_integer_value(v);
        json_decref(o);
    } else {
        return api_method_not_allowed(c, "PUT, DELETE");
    }
    users_persist_vhost(b, vh);
    api_no_content(c, 204);
}
