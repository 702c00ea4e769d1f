/* api_params.c — the management API's runtime parameters, in RabbitMQ 3.10's shapes:
 * /api/policies and /api/operator-policies (list, per vhost, GET/PUT/DELETE one: applied to the
 * vhost's queues and exchanges at once), /api/parameters/{component}/{vhost}/{name},
 * /api/global-parameters/{name} and /api/user-limits/{user}/{name}. Everything is kept by
 * params.c; nothing here keeps state. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include "broker/admin/api_int.h"
#include "broker/model/broker.h"
#include "broker/model/errors.h"
#include "broker/model/params.h"
#include "broker/model/users.h"
#include "broker/model/vhost.h"

static json_t *policy_json(const struct param *p)
{
    json_t *v = p->value;
    return json_pack("{s:s, s:s, s:O, s:s, s:O, s:i}", "vhost", p->vhost, "name", p->name,
                     "pattern", json_object_get(v, "pattern"), "apply-to",
                     p->apply_to == APPLY_QUEUES ? "queues"
                     : p->apply_to == APPLY_EXCHANGES ? "exchanges" : "all",
                     "definition", json_object_get(v, "definition"), "priority", p->priority);
}

static json_t *param_json(const struct param *p)
{
    if (!strcmp(p->component, PARAM_GLOBAL))
        return json_pack("{s:s, s:O}", "name", p->name, "value", p->value);
    if (!strcmp(p->component, PARAM_USER_LIMITS))
        return json_pack("{s:s, s:O}", "user", p->name, "value", p->value);
    return json_pack("{s:s, s:s, s:s, s:O}", "vhost", p->vhost, "component", p->component,
                     "name", p->name, "value", p->value);
}

static json_t *policy_json_v(const void *p)
{
    return policy_json(p);
}

static json_t *param_json_v(const void *p)
{
    return param_json(p);
}

static void delete_param(struct call *c, void *p)
{
    param_delete(c->a->b, p);
    api_no_content(c, 204);
}

/* What a listing collects: of one component (NULL: the vhost-scoped parameters of every
 * component but the policies), of one vhost (NULL: every one the user sees). */
struct listing {
    struct call *c;
    json_t *items;
    const char *component, *vhost;
    bool policies;
};

static void add(void *arg, const struct param *p)
{
    struct listing *l = arg;
    bool policy = !strcmp(p->component, PARAM_POLICY) ||
                  !strcmp(p->component, PARAM_OPERATOR_POLICY);
    if (l->component ? strcmp(p->component, l->component) != 0
                     : (policy || !strcmp(p->component, PARAM_GLOBAL) ||
                        !strcmp(p->component, PARAM_USER_LIMITS)))
        return;
    if ((l->vhost && strcmp(p->vhost, l->vhost)) ||
        (p->vhost[0] && !api_sees_vhost(l->c, p->vhost)))
        return;
    json_array_append_new(l->items, l->policies ? policy_json(p) : param_json(p));
}

static void list(struct call *c, const char *component, const char *vhost, bool policies)
{
    struct listing l = {c, json_array(), component, vhost, policies};
    if (l.items)
        param_each(c->a->b, component, add, &l);
    api_send_list(c, l.items);
}

/* May the user see or change the policies and parameters of vhost (administrator;
 * policymaker where it has permissions)? Else answers 401 as RabbitMQ does. */
static bool may_set_policy(struct call *c, const char *vhost, bool op)
{
    if (c->user->tag_bits & USER_TAG_ADMINISTRATOR)
        return true;
    if (op) {
        api_error(c, 401, "not_authorised", "Not administrator user");
        return false;
    }
    if ((c->user->tag_bits & USER_TAG_POLICYMAKER) && perm_find(c->user, vhost, strlen(vhost)))
        return true;
    api_error(c, 401, "not_authorised", "User not authorised to access object");
    return false;
}

/* GET/PUT/DELETE of one parameter. body_value: the PUT's value is the body's "value" member
 * (parameters) or the whole body (policies). */
static void one(struct call *c, const char *component, const char *vhost, const char *name,
                bool policies)
{
    struct broker *b = c->a->b;
    struct param *p = param_find(b, component, vhost, name);
    if (api_one(c, p, policies ? policy_json_v : param_json_v, delete_param))
        return;
    json_t *o = api_body(c);
    if (!o)
        return;
    json_t *value = policies ? o : json_object_get(o, "value");
    if (!value) {
        json_decref(o);
        return api_bad_request(c, "value is missing");
    }
    struct err err = {""};
    bool created = !p;
    int rc = param_set(b, component, vhost, name, value, &err);
    json_decref(o);
    if (rc < 0)
        return api_bad_request(c, err.text[0] ? err.text : "out of memory");
    api_no_content(c, created ? 201 : 204);
}

/* /api/policies and /api/operator-policies[/{vhost}[/{name}]]. */
void api_policies(struct call *c)
{
    bool op = !strcmp(c->seg[0], "operator-policies");
    const char *component = op ? PARAM_OPERATOR_POLICY : PARAM_POLICY;
    if (c->nseg > 3)
        return api_not_found(c);
    if (c->nseg >= 2 && !hmap_get(&c->a->b->vhosts, c->seg[1], strlen(c->seg[1])))
        return api_not_found(c);
    if (c->nseg >= 2 && !api_sees_vhost(c, c->seg[1]))
        return api_error(c, 401, "not_authorised", "User not authorised to access virtual host");
    if (c->nseg <= 2)
        return api_is(c, "GET") ? list(c, component, c->nseg == 2 ? c->seg[1] : NULL, true)
                                : api_method_not_allowed(c, "GET, HEAD");
    if (!may_set_policy(c, c->seg[1], op))
        return;
    one(c, component, c->seg[1], c->seg[2], true);
}

/* The vhost-limits component, which RabbitMQ's definitions and API also show as a parameter:
 * it is the vhost's own limits (the same as /api/vhost-limits), not a stored parameter. */
static void vhost_limits_param(struct call *c, const char *vhost)
{
    struct broker *b = c->a->b;
    struct vhost *vh = hmap_get(&b->vhosts, vhost, strlen(vhost));
    bool any = vh->max_connections >= 0 || vh->max_queues >= 0;
    if (api_is(c, "GET")) {
        if (!any)
            return api_not_found(c);
        json_t *v = json_object();
        if (vh->max_connections >= 0)
            json_object_set_new(v, "max-connections", json_integer(vh->max_connections));
        if (vh->max_queues >= 0)
            json_object_set_new(v, "max-queues", json_integer(vh->max_queues));
        return api_reply(c, 200, json_pack("{s:s, s:s, s:s, s:o}", "vhost", vh->name,
                                           "component", "vhost-limits", "name", "limits",
                                           "value", v));
    }
    int64_t maxc = -1, maxq = -1;
    if (api_is(c, "PUT")) {
        json_t *o = api_body(c);
        json_t *v = o ? json_object_get(o, "value") : NULL;
        json_t *mc = json_object_get(v, "max-connections"), *mq = json_object_get(v, "max-queues");
        if (!json_is_object(v) || (mc && !json_is_integer(mc)) || (mq && !json_is_integer(mq))) {
            json_decref(o);
            return c->resp->status == 400 ? (void)0
                : api_bad_request(c, "value must be {\"max-connections\": N, \"max-queues\": N}");
        }
        maxc = mc && json_integer_value(mc) >= 0 ? json_integer_value(mc) : -1;
        maxq = mq && json_integer_value(mq) >= 0 ? json_integer_value(mq) : -1;
        json_decref(o);
    } else if (!api_is(c, "DELETE")) {
        return api_method_not_allowed(c, "GET, PUT, DELETE, HEAD");
    } else if (!any) {
        return api_not_found(c);
    }
    vh->max_connections = maxc;
    vh->max_queues = maxq;
    users_persist_vhost(b, vh);
    api_no_content(c, api_is(c, "PUT") && !any ? 201 : 204);
}

/* /api/parameters[/{component}[/{vhost}[/{name}]]]. */
void api_parameters(struct call *c)
{
    if (c->nseg > 4)
        return api_not_found(c);
    const char *component = c->nseg >= 2 ? c->seg[1] : NULL;
    if (component && (!strcmp(component, PARAM_POLICY) ||
                      !strcmp(component, PARAM_OPERATOR_POLICY) ||
                      !strcmp(component, PARAM_GLOBAL) || !strcmp(component, PARAM_USER_LIMITS)))
        return api_not_found(c);
    if (c->nseg >= 3 && !hmap_get(&c->a->b->vhosts, c->seg[2], strlen(c->seg[2])))
        return api_not_found(c);
    if (c->nseg <= 3)
        return api_is(c, "GET") ? list(c, component, c->nseg == 3 ? c->seg[2] : NULL, false)
                                : api_method_not_allowed(c, "GET, HEAD");
    if (!may_set_policy(c, c->seg[2], false))
        return;
    if (!strcmp(component, "vhost-limits"))
        return vhost_limits_param(c, c->seg[2]);
    one(c, component, c->seg[2], c->seg[3], false);
}

/* /api/global-parameters[/{name}]: administrators. */
void api_global_parameters(struct call *c)
{
    if (!api_admin_only(c))
        return;
    if (c->nseg == 1)
        return api_is(c, "GET") ? list(c, PARAM_GLOBAL, NULL, false)
                                : api_method_not_allowed(c, "GET, HEAD");
    if (c->nseg != 2)
        return api_not_found(c);
    one(c, PARAM_GLOBAL, "", c->seg[1], false);
}

/* /api/user-limits[/{user}[/{max-connections|max-channels}]]: kept, shown and exported; not
 * enforced yet (the limits issue enforces them). */
void api_user_limits(struct call *c)
{
    struct broker *b = c->a->b;
    if (!api_admin_only(c))
        return;
    if (c->nseg == 1)
        return api_is(c, "GET") ? list(c, PARAM_USER_LIMITS, NULL, false)
                                : api_method_not_allowed(c, "GET, HEAD");
    const char *user = c->seg[1];
    if (!users_find(b, user, strlen(user)))
        return api_is(c, "GET") ? api_not_found(c)
                                : api_reply(c, 400, json_pack("{s:s, s:[s, s]}", "error",
                                                              "bad_request", "reason",
                                                              "no_such_user", user));
    struct param *p = param_find(b, PARAM_USER_LIMITS, "", user);
    if (c->nseg == 2) {
        if (!api_is(c, "GET"))
            return api_method_not_allowed(c, "GET, HEAD");
        json_t *a = json_array();
        if (p)
            json_array_append_new(a, param_json(p));
        return api_send_list(c, a);
    }
    const char *limit = c->seg[2];
    if (c->nseg != 3 || (strcmp(limit, "max-connections") && strcmp(limit, "max-channels")))
        return api_bad_request(c, "unknown limit (max-connections, max-channels)");
    json_t *v = p ? json_deep_copy(p->value) : json_object();
    if (!json_is_object(v)) {
        json_decref(v);
        v = json_object();
    }
    if (api_is(c, "DELETE")) {
        json_object_del(v, limit);
    } else if (api_is(c, "PUT")) {
        json_t *o = api_body(c);
        json_t *n = o ? json_object_get(o, "value") : NULL;
        if (!json_is_integer(n)) {
            json_decref(o);
            json_decref(v);
            return c->resp->status == 400 ? (void)0 : api_bad_request(c, "value must be an integer");
        }
        json_object_set(v, limit, n);
        json_decref(o);
    } else {
        json_decref(v);
        return api_method_not_allowed(c, "PUT, DELETE");
    }
    struct err err = {""};
    int rc = json_object_size(v) ? param_set(b, PARAM_USER_LIMITS, "", user, v, &err) : 0;
    if (!json_object_size(v) && p)
        param_delete(b, p);
    json_decref(v);
    if (rc < 0)
        return api_bad_request(c, err.text);
    api_no_content(c, 204);
}
