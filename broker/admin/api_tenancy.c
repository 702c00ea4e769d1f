/* api_tenancy.c — the management API's tenancy endpoints: /api/whoami, /api/overview,
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

static json_t *user_json(const void *v)
{
    const struct user *u = v;
    return json_pack("{s:s, s:s, s:s, s:o, s:{}}", "name", u->name, "password_hash", u->hash,
                     "hashing_algorithm", password_algo_name(u->algo), "tags",
                     jt_tags(u->tags), "limits");
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
    api_reply(c, 200, json_pack("{s:s, s:o}", "name", c->user->name, "tags",
                                 jt_tags(c->user->tags)));
}

void api_overview(struct call *c)
{
    size_t nq = 0, nx = 0;
    void *v;
    for (uint32_t it = 0; hmap_next(&c->a->b->vhosts, &it, &v);) {
        if (!api_sees_vhost(c, ((struct vhost *)v)->name))
            continue;
        nq += ((struct vhost *)v)->queues.count;
        nx += ((struct vhost *)v)->exchanges.count;
    }
    api_reply(c, 200, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:{s:I, s:I}}",
                                 "management_version", WARREN_VERSION, "rabbitmq_version",
                                 "3.10.8", "product_name", "Warren", "product_version",
                                 WARREN_VERSION, "node", "warren@localhost", "cluster_name",
                                 "warren@localhost", "object_totals", "queues", (json_int_t)nq,
                                 "exchanges", (json_int_t)nx));
}

/* ---- /api/vhosts --------------------------------------------------------------------------------- */

void api_vhosts(struct call *c)
{
    struct broker *b = c->a->b;
    if (c->nseg == 1)
        return api_list(c, &b->vhosts, vhost_json, api_sees_vhost_obj);
    if (c->nseg != 2)
        return api_not_found(c);
    const char *name = c->seg[1];
    struct vhost *vh = hmap_get(&b->vhosts, name, strlen(name));
    if (api_is(c, "GET")) {
        if (!vh || !api_sees_vhost(c, name))
            return api_not_found(c);
        return api_reply(c, 200, vhost_json(vh));
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

void api_users(struct call *c)
{
    struct broker *b = c->a->b;
    if (!api_admin_only(c))
        return;
    if (c->nseg == 1)
        return api_list(c, &b->users, user_json, NULL);
    if (c->nseg == 3 && !strcmp(c->seg[2], "permissions")) {
        struct user *u = users_find(b, c->seg[1], strlen(c->seg[1]));
        return u ? api_list(c, &u->perms, perm_json, NULL) : api_not_found(c);
    }
    if (c->nseg != 2)
        return api_not_found(c);
    const char *name = c->seg[1];
    struct user *u = users_find(b, name, strlen(name));
    if (api_is(c, "GET"))
        return u ? api_reply(c, 200, user_json(u)) : api_not_found(c);
    if (api_is(c, "DELETE")) {
        if (!u)
            return api_not_found(c);
        users_delete(b, u);
        return api_no_content(c, 204);
    }
    if (!api_is(c, "PUT"))
        return api_method_not_allowed(c, "GET, PUT, DELETE, HEAD");
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
    if (!hmap_get(&b->vhosts, vhost, strlen(vhost)))
        return api_bad_request(c, "vhost_not_found");
    if (!u)
        return api_bad_request(c, "user_not_found");
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
