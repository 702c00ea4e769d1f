/* api.c — the management API's routes over the model (api.h): authentication (HTTP basic
 * against the stored users; guest from loopback only; a management tag needed), the answer
 * shapes and status codes of RabbitMQ 3.10, and the tenancy endpoints (whoami, overview, vhosts,
 * users, permissions). Every change goes through the same model calls as the AMQP surface and
 * the definitions import, so the rules and texts are one set.
 * Invariant: a handler either answers with a status and a JSON body or leaves the default
 * 500; it never keeps anything of the request. */
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "config.h"
#include "lib/log.h"
#include "lib/strlist.h"
#include "broker/admin/api.h"
#include "broker/model/broker.h"
#include "broker/model/errors.h"
#include "broker/model/users.h"
#include "broker/model/vhost.h"

#define MAX_SEGS 8

struct call {
    struct admin *a;
    const struct http_req *req;
    struct http_resp *resp;
    struct user *user;          /* the authenticated user */
    char *seg[MAX_SEGS];        /* decoded path segments after /api (owned by segbuf) */
    int nseg;
    char segbuf[8192];
};

/* ---- answers -------------------------------------------------------------------------------- */

/* Answers status with j (consumed); 500 when it cannot be serialised. */
static void reply_json(struct call *c, int status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        http_resp_set(c->resp, 500, "{\"error\":\"internal_error\",\"reason\":\"out of memory\"}");
        return;
    }
    free(c->resp->body);
    c->resp->status = status;
    c->resp->body = text;
    c->resp->body_len = strlen(text);
}

static void reply_error(struct call *c, int status, const char *error, const char *reason)
{
    reply_json(c, status, json_pack("{s:s, s:s}", "error", error, "reason", reason));
}

static void not_found(struct call *c)
{
    reply_error(c, 404, "Object Not Found", "Not Found");
}

static void bad_request(struct call *c, const char *reason)
{
    reply_error(c, 400, "bad_request", reason);
}

static void no_content(struct call *c, int status)
{
    free(c->resp->body);
    c->resp->body = NULL;
    c->resp->body_len = 0;
    c->resp->status = status;
}

static void method_not_allowed(struct call *c, const char *allow)
{
    snprintf(c->resp->extra_headers, sizeof c->resp->extra_headers, "Allow: %s\r\n", allow);
    reply_error(c, 405, "Method Not Allowed", "Method Not Allowed");
}

static bool is(const struct call *c, const char *method)
{
    return strcmp(c->req->method, method) == 0;
}

/* ---- authentication ---------------------------------------------------------------------------- */

static void unauthorized(struct call *c, const char *reason)
{
    snprintf(c->resp->extra_headers, sizeof c->resp->extra_headers,
             "WWW-Authenticate: Basic realm=\"RabbitMQ Management\"\r\n");
    reply_error(c, 401, "not_authorized", reason);
}

/* The user of the request's basic credentials, or NULL (answered 401). */
static struct user *authenticate(struct call *c)
{
    const char *h = c->req->auth;
    if (!h || strncasecmp(h, "Basic ", 6) != 0) {
        unauthorized(c, "Not_Authorized");
        return NULL;
    }
    h += 6;
    size_t n = strlen(h);
    unsigned char raw[1536 + 3];
    if (n % 4 || n > 2048 || EVP_DecodeBlock(raw, (const unsigned char *)h, (int)n) < 0) {
        unauthorized(c, "Login failed");
        return NULL;
    }
    size_t len = n / 4 * 3;
    while (len && n && h[n - 1] == '=') { /* DecodeBlock counts padding as bytes */
        len--;
        n--;
    }
    char *colon = memchr(raw, ':', len);
    if (!colon) {
        unauthorized(c, "Login failed");
        return NULL;
    }
    size_t ulen = (size_t)(colon - (char *)raw);
    struct user *u = users_find(c->a->b, (const char *)raw, ulen);
    const char *pass = colon + 1;
    size_t plen = len - ulen - 1;
    const char *why = NULL;
    if (!u)
        why = "user does not exist";
    else if (password_check(u->hash, u->algo, pass, plen) != 1)
        why = "invalid credentials";
    else if (!c->req->loopback && strlist_has(c->a->loopback_users, u->name, strlen(u->name)))
        why = "user can only log in via localhost";
    OPENSSL_cleanse(raw, sizeof raw);
    if (why) {
        log_warn("management API (%s): user '%.*s' login refused: %s", c->req->peer, (int)ulen,
                 (const char *)raw, why);
        unauthorized(c, "Login failed");
        return NULL;
    }
    if (!(u->tag_bits & (USER_TAG_ADMINISTRATOR | USER_TAG_MONITORING | USER_TAG_POLICYMAKER |
                         USER_TAG_MANAGEMENT))) {
        unauthorized(c, "Not management user");
        return NULL;
    }
    return u;
}

static bool admin_only(struct call *c)
{
    if (c->user->tag_bits & USER_TAG_ADMINISTRATOR)
        return true;
    unauthorized(c, "Not administrator user");
    return false;
}

/* May the user see vhost (administrator and monitoring: every one; others: where they have
 * permissions)? */
static bool sees_vhost(const struct call *c, const char *vhost)
{
    return (c->user->tag_bits & (USER_TAG_ADMINISTRATOR | USER_TAG_MONITORING)) ||
           perm_find(c->user, vhost, strlen(vhost));
}

static bool sees_vhost_obj(const struct call *c, const void *vh)
{
    return sees_vhost(c, ((const struct vhost *)vh)->name);
}

/* ---- JSON of the model's objects --------------------------------------------------------------- */

static json_t *tags_json(const char *tags)
{
    json_t *a = json_array();
    for (const char *p = tags; a && p && *p;) {
        while (*p == ',' || *p == ' ')
            p++;
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m && p[m - 1] == ' ')
            m--;
        if (m)
            json_array_append_new(a, json_stringn(p, m));
        p += n;
    }
    return a;
}

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
                     tags_json(u->tags), "limits");
}

static json_t *perm_json(const void *v)
{
    const struct perm *p = v;
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "user", p->user->name, "vhost", p->vhost,
                     "configure", p->re[ACCESS_CONFIGURE].src, "write", p->re[ACCESS_WRITE].src,
                     "read", p->re[ACCESS_READ].src);
}

/* The request body as a JSON object (an empty body is {}); NULL after a 400. */
static json_t *body_object(struct call *c)
{
    if (!c->req->body_len)
        return json_object();
    json_error_t je;
    json_t *j = json_loadb(c->req->body, c->req->body_len, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        char why[200];
        snprintf(why, sizeof why, "failed to decode JSON: %s", je.text[0] ? je.text
                                                                        : "not an object");
        bad_request(c, why);
        return NULL;
    }
    return j;
}

/* A string member of o: its value, def when absent or null, NULL after a 400 when not a
 * string. */
static const char *member(struct call *c, json_t *o, const char *key, const char *def)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return def;
    if (json_is_string(v))
        return json_string_value(v);
    char why[128];
    snprintf(why, sizeof why, "'%s' must be a string", key);
    bad_request(c, why);
    return NULL;
}

/* Answers GET of a collection with to_json of every value of m that keep (NULL: all) lets
 * through; 405 for another method. */
static void list_map(struct call *c, const struct hmap *m, json_t *(*to_json)(const void *),
                     bool (*keep)(const struct call *, const void *))
{
    if (!is(c, "GET"))
        return method_not_allowed(c, "GET, HEAD");
    json_t *a = json_array();
    void *v;
    for (uint32_t it = 0; a && hmap_next(m, &it, &v);)
        if (!keep || keep(c, v))
            json_array_append_new(a, to_json(v));
    reply_json(c, 200, a);
}

/* ---- /api/whoami, /api/overview --------------------------------------------------------------- */

static void whoami(struct call *c)
{
    reply_json(c, 200, json_pack("{s:s, s:o}", "name", c->user->name, "tags",
                                 tags_json(c->user->tags)));
}

static void overview(struct call *c)
{
    size_t nq = 0, nx = 0;
    void *v;
    for (uint32_t it = 0; hmap_next(&c->a->b->vhosts, &it, &v);) {
        if (!sees_vhost(c, ((struct vhost *)v)->name))
            continue;
        nq += ((struct vhost *)v)->queues.count;
        nx += ((struct vhost *)v)->exchanges.count;
    }
    reply_json(c, 200, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:{s:I, s:I}}",
                                 "management_version", WARREN_VERSION, "rabbitmq_version",
                                 "3.10.8", "product_name", "Warren", "product_version",
                                 WARREN_VERSION, "node", "warren@localhost", "cluster_name",
                                 "warren@localhost", "object_totals", "queues", (json_int_t)nq,
                                 "exchanges", (json_int_t)nx));
}

/* ---- /api/vhosts --------------------------------------------------------------------------------- */

static void vhosts(struct call *c)
{
    struct broker *b = c->a->b;
    if (c->nseg == 1)
        return list_map(c, &b->vhosts, vhost_json, sees_vhost_obj);
    if (c->nseg != 2)
        return not_found(c);
    const char *name = c->seg[1];
    struct vhost *vh = hmap_get(&b->vhosts, name, strlen(name));
    if (is(c, "GET")) {
        if (!vh || !sees_vhost(c, name))
            return not_found(c);
        return reply_json(c, 200, vhost_json(vh));
    }
    if (is(c, "DELETE")) {
        if (!admin_only(c))
            return;
        if (!vh)
            return not_found(c);
        log_info("management API: user '%s' deletes vhost '%s'", c->user->name, name);
        broker_delete_vhost(b, vh);
        return no_content(c, 204);
    }
    if (!is(c, "PUT"))
        return method_not_allowed(c, "GET, PUT, DELETE, HEAD");
    if (!admin_only(c))
        return;
    if (!name[0] || strlen(name) > 255)
        return bad_request(c, "vhost names must be 1 to 255 bytes long");
    json_t *o = body_object(c);
    if (!o)
        return;
    const char *desc = member(c, o, "description", NULL);
    const char *dqt = desc || !json_object_get(o, "description")
                          ? member(c, o, "default_queue_type", NULL) : NULL;
    if (c->resp->status == 400) {
        json_decref(o);
        return;
    }
    bool created = !vh;
    if (!vh && !(vh = broker_add_vhost(b, name))) {
        json_decref(o);
        return reply_error(c, 500, "internal_error", "out of memory");
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
    no_content(c, created ? 201 : 204);
}

/* ---- /api/users ----------------------------------------------------------------------------------- */

static void users(struct call *c)
{
    struct broker *b = c->a->b;
    if (!admin_only(c))
        return;
    if (c->nseg == 1)
        return list_map(c, &b->users, user_json, NULL);
    if (c->nseg == 3 && !strcmp(c->seg[2], "permissions")) {
        struct user *u = users_find(b, c->seg[1], strlen(c->seg[1]));
        return u ? list_map(c, &u->perms, perm_json, NULL) : not_found(c);
    }
    if (c->nseg != 2)
        return not_found(c);
    const char *name = c->seg[1];
    struct user *u = users_find(b, name, strlen(name));
    if (is(c, "GET"))
        return u ? reply_json(c, 200, user_json(u)) : not_found(c);
    if (is(c, "DELETE")) {
        if (!u)
            return not_found(c);
        users_delete(b, u);
        return no_content(c, 204);
    }
    if (!is(c, "PUT"))
        return method_not_allowed(c, "GET, PUT, DELETE, HEAD");
    json_t *o = body_object(c);
    if (!o)
        return;
    const char *password = member(c, o, "password", NULL);
    const char *hash = c->resp->status == 400 ? NULL : member(c, o, "password_hash", NULL);
    const char *algo = c->resp->status == 400 ? NULL : member(c, o, "hashing_algorithm", NULL);
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
        return bad_request(c, "tags must be a string or a list of strings");
    }
    if (c->resp->status == 400) {
        json_decref(o);
        return;
    }
    if (!password && !hash) {
        json_decref(o);
        return bad_request(c, "password or password_hash must be set");
    }
    int a = algo ? password_algo_parse(algo) : PASSWORD_SHA256;
    struct err err = {""};
    bool created = !u;
    int rc = a < 0 ? err_set(&err, -EINVAL, "unknown hashing_algorithm '%s'", algo)
             : password ? users_put_password(b, name, password, tags, &err)
                        : users_put(b, name, hash, (enum password_algo)a, tags, &err);
    json_decref(o);
    if (rc < 0)
        return bad_request(c, err.text[0] ? err.text : strerror(-rc));
    no_content(c, created ? 201 : 204);
}

/* ---- /api/permissions ------------------------------------------------------------------------------- */

static void permissions(struct call *c)
{
    struct broker *b = c->a->b;
    if (!admin_only(c))
        return;
    if (c->nseg == 1) {
        if (!is(c, "GET"))
            return method_not_allowed(c, "GET, HEAD");
        json_t *a = json_array();
        void *u, *p;
        for (uint32_t it = 0; a && hmap_next(&b->users, &it, &u);)
            for (uint32_t jt = 0; hmap_next(&((struct user *)u)->perms, &jt, &p);)
                json_array_append_new(a, perm_json(p));
        return reply_json(c, 200, a);
    }
    if (c->nseg != 3)
        return not_found(c);
    const char *vhost = c->seg[1], *name = c->seg[2];
    struct user *u = users_find(b, name, strlen(name));
    struct perm *p = u ? perm_find(u, vhost, strlen(vhost)) : NULL;
    if (is(c, "GET"))
        return p ? reply_json(c, 200, perm_json(p)) : not_found(c);
    if (is(c, "DELETE")) {
        if (!p)
            return not_found(c);
        perm_clear(b, u, vhost);
        return no_content(c, 204);
    }
    if (!is(c, "PUT"))
        return method_not_allowed(c, "GET, PUT, DELETE, HEAD");
    if (!hmap_get(&b->vhosts, vhost, strlen(vhost)))
        return bad_request(c, "vhost_not_found");
    if (!u)
        return bad_request(c, "user_not_found");
    json_t *o = body_object(c);
    if (!o)
        return;
    const char *re[3];
    static const char *const keys[] = {"configure", "write", "read"};
    for (int i = 0; i < 3; i++) {
        if (!(re[i] = member(c, o, keys[i], NULL))) {
            if (c->resp->status != 400) {
                char why[64];
                snprintf(why, sizeof why, "%s is missing", keys[i]);
                bad_request(c, why);
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
        return bad_request(c, err.text);
    no_content(c, created ? 201 : 204);
}

/* ---- routing ------------------------------------------------------------------------------------ */

static int hex(char ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
           : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* Splits the path after "/api" into percent-decoded segments. false when it is not /api/... or
 * has too many segments or a bad escape. */
static bool split(struct call *c, const char *path)
{
    if (strncmp(path, "/api/", 5) != 0)
        return false;
    const char *p = path + 5;
    char *out = c->segbuf, *end = c->segbuf + sizeof c->segbuf - 1;
    c->nseg = 0;
    while (*p) {
        if (c->nseg == MAX_SEGS)
            return false;
        c->seg[c->nseg++] = out;
        while (*p && *p != '/') {
            if (out >= end)
                return false;
            if (*p == '%') {
                int h = hex(p[1]), l = h < 0 ? -1 : hex(p[2]);
                if (l < 0)
                    return false;
                *out++ = (char)(h * 16 + l);
                p += 3;
            } else {
                *out++ = *p++;
            }
        }
        *out++ = 0;
        if (*p == '/')
            p++;
        if (!*p && p[-1] == '/' && c->nseg == 0)
            break;
    }
    return c->nseg > 0;
}

static void handle(const struct http_req *req, struct http_resp *resp, void *arg)
{
    struct call c = {.a = arg, .req = req, .resp = resp};
    http_resp_set(resp, 500, "{\"error\":\"internal_error\",\"reason\":\"unhandled\"}");
    if (!split(&c, req->path))
        return not_found(&c);
    if (!(c.user = authenticate(&c)))
        return;
    const char *what = c.seg[0];
    if (!strcmp(what, "whoami") && c.nseg == 1)
        return whoami(&c);
    if (!strcmp(what, "overview") && c.nseg == 1)
        return overview(&c);
    if (!strcmp(what, "vhosts"))
        return vhosts(&c);
    if (!strcmp(what, "users"))
        return users(&c);
    if (!strcmp(what, "permissions"))
        return permissions(&c);
    not_found(&c);
}

int admin_start(struct admin *a, uv_loop_t *loop, struct broker *b, const char *addr, int port,
                const char *loopback_users)
{
    a->b = b;
    a->loopback_users = loopback_users;
    a->started_ms = uv_now(loop);
    return http_start(&a->http, loop, addr, port, handle, a);
}

void admin_stop(struct admin *a)
{
    http_stop(&a->http);
}
