/* api.c — the management API's front (api.h): routing of /api/... paths to the handlers of
 * api_tenancy.c and api_entities.c, authentication (HTTP basic against the stored users; the
 * loopback-only users; a management tag needed), and the answers every handler shares (api_int.h):
 * RabbitMQ 3.10's status codes and error bodies, request bodies as JSON objects.
 * Invariant: a handler either answers with a status and a JSON body or leaves the default 500;
 * nothing of a request is kept after it is answered. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <jansson.h>
#include <pcre2.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lib/log.h"
#include "lib/strlist.h"
#include "broker/admin/api_int.h"
#include "broker/admin/console.h"
#include "broker/model/broker.h"
#include "broker/model/users.h"
#include "broker/model/vhost.h"
#include "broker/model/stats.h"
#include "storage/batch.h"

/* ---- answers -------------------------------------------------------------------------------- */

/* Answers status with j (consumed); 500 when it cannot be serialised. */
void api_reply(struct call *c, int status, json_t *j)
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

void api_error(struct call *c, int status, const char *error, const char *reason)
{
    api_reply(c, status, json_pack("{s:s, s:s}", "error", error, "reason", reason));
}

void api_not_found(struct call *c)
{
    api_error(c, 404, "Object Not Found", "Not Found");
}

void api_bad_request(struct call *c, const char *reason)
{
    api_error(c, 400, "bad_request", reason);
}

void api_no_content(struct call *c, int status)
{
    free(c->resp->body);
    c->resp->body = NULL;
    c->resp->body_len = 0;
    c->resp->status = status;
}

void api_method_not_allowed(struct call *c, const char *allow)
{
    snprintf(c->resp->extra_headers, sizeof c->resp->extra_headers, "Allow: %s\r\n", allow);
    api_error(c, 405, "Method Not Allowed", "Method Not Allowed");
}

bool api_is(const struct call *c, const char *method)
{
    return strcmp(c->req->method, method) == 0 ||
           (!strcmp(method, "GET") && !strcmp(c->req->method, "HEAD")); /* HEAD is a GET */
}

/* ---- authentication ---------------------------------------------------------------------------- */

/* 401 with WWW-Authenticate. RabbitMQ spells the error "not_authorized" for a failed login
 * and "not_authorised" for a user whose tags do not allow the request. A script's request
 * (X-Requested-With: XMLHttpRequest, as the console sends) gets no challenge: a browser would
 * answer one with its own log-in dialog instead of the page's message. */
static void unauthorized(struct call *c, const char *error, const char *reason)
{
    if (!c->req->xhr)
        snprintf(c->resp->extra_headers, sizeof c->resp->extra_headers,
                 "WWW-Authenticate: Basic realm=\"RabbitMQ Management\"\r\n");
    api_error(c, 401, error, reason);
}

/* The user of the request's basic credentials, or NULL (answered 401). */
static struct user *authenticate(struct call *c)
{
    const char *h = c->req->auth;
    if (!h || strncasecmp(h, "Basic ", 6) != 0) {
        unauthorized(c, "not_authorized", "Not_Authorized");
        return NULL;
    }
    h += 6;
    size_t n = strlen(h);
    unsigned char raw[1536 + 3];
    if (n % 4 || n > 2048 || EVP_DecodeBlock(raw, (const unsigned char *)h, (int)n) < 0) {
        unauthorized(c, "not_authorized", "Login failed");
        return NULL;
    }
    size_t len = n / 4 * 3;
    while (len && n && h[n - 1] == '=') { /* DecodeBlock counts padding as bytes */
        len--;
        n--;
    }
    char *colon = memchr(raw, ':', len);
    if (!colon) {
        unauthorized(c, "not_authorized", "Login failed");
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
    if (why)
        log_warn("management API (%s): user '%.*s' login refused: %s", c->req->peer, (int)ulen,
                 (const char *)raw, why);
    OPENSSL_cleanse(raw, sizeof raw);
    if (why) {
        unauthorized(c, "not_authorized", "Login failed");
        return NULL;
    }
    if (!(u->tag_bits & (USER_TAG_ADMINISTRATOR | USER_TAG_MONITORING | USER_TAG_POLICYMAKER |
                         USER_TAG_MANAGEMENT))) {
        unauthorized(c, "not_authorised", "Not management user");
        return NULL;
    }
    return u;
}

bool api_one(struct call *c, void *obj, json_t *(*to_json)(const void *),
             void (*del)(struct call *c, void *obj))
{
    if (api_is(c, "PUT"))
        return false;
    if (!api_is(c, "GET") && !api_is(c, "DELETE"))
        api_method_not_allowed(c, "GET, PUT, DELETE, HEAD");
    else if (!obj)
        api_not_found(c);
    else if (api_is(c, "GET"))
        api_reply(c, 200, to_json(obj));
    else
        del(c, obj);
    return true;
}

void api_reply_first(struct call *c, json_t *array)
{
    json_t *first = json_incref(json_array_get(array, 0));
    json_decref(array);
    api_reply(c, 200, first);
}

bool api_admin_only(struct call *c)
{
    if (c->user->tag_bits & USER_TAG_ADMINISTRATOR)
        return true;
    unauthorized(c, "not_authorised", "Not administrator user");
    return false;
}

/* May the user see vhost (administrator and monitoring: every one; others: where they have
 * permissions)? */
bool api_sees_vhost(const struct call *c, const char *vhost)
{
    return (c->user->tag_bits & (USER_TAG_ADMINISTRATOR | USER_TAG_MONITORING)) ||
           perm_find(c->user, vhost, strlen(vhost));
}

bool api_sees_vhost_obj(const struct call *c, const void *vh)
{
    return api_sees_vhost(c, ((const struct vhost *)vh)->name);
}


/* The request body as a JSON object (an empty body is {}); NULL after a 400. */
json_t *api_body(struct call *c)
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
        api_bad_request(c, why);
        return NULL;
    }
    return j;
}

/* A string member of o: its value, def when absent or null, NULL after a 400 when not a
 * string. */
const char *api_member(struct call *c, json_t *o, const char *key, const char *def)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return def;
    if (json_is_string(v))
        return json_string_value(v);
    char why[128];
    snprintf(why, sizeof why, "'%s' must be a string", key);
    api_bad_request(c, why);
    return NULL;
}

/* Answers GET of a collection with to_json of every value of m that keep (NULL: all) lets
 * through; 405 for another method. */
void api_list(struct call *c, const struct hmap *m, json_t *(*to_json)(const void *),
                     bool (*keep)(const struct call *, const void *))
{
    if (!api_is(c, "GET"))
        return api_method_not_allowed(c, "GET, HEAD");
    json_t *a = json_array();
    void *v;
    for (uint32_t it = 0; a && hmap_next(m, &it, &v);)
        if (!keep || keep(c, v))
            json_array_append_new(a, to_json(v));
    api_send_list(c, a);
}

static int hexval(char ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
           : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* ---- collections: filter, sort, page, columns ------------------------------------------------- */

/* The query parameter's value percent-decoded into buf ("" when absent). */
const char *api_param(const struct call *c, const char *name, char *buf, size_t size)
{
    size_t n = strlen(name), o = 0;
    buf[0] = 0;
    for (const char *p = c->req->query; p && *p;) {
        size_t len = strcspn(p, "&");
        if (len > n && p[n] == '=' && !strncmp(p, name, n)) {
            o = 0;
            for (const char *q = p + n + 1; q < p + len && o + 1 < size; q++) {
                int h, l;
                if (*q == '%' && q + 2 < p + len && (h = hexval(q[1])) >= 0 &&
                    (l = hexval(q[2])) >= 0) {
                    buf[o++] = (char)(h * 16 + l);
                    q += 2;
                } else {
                    buf[o++] = *q == '+' ? ' ' : *q;
                }
            }
            buf[o] = 0;
        }
        p += len + (p[len] == '&');
    }
    return buf;
}

static const char *s_sort_key; /* NULL: by vhost, then name */
static int s_sort_dir;

static int compare_json(json_t *a, json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) < json_number_value(b) ? -1 : json_number_value(a) >
                                                                    json_number_value(b);
    return strcmp(json_is_string(a) ? json_string_value(a) : "",
                  json_is_string(b) ? json_string_value(b) : "");
}

static int compare_items(const void *pa, const void *pb)
{
    const struct api_item *a = pa, *b = pb;
    int r;
    if (!s_sort_key) {
        r = strcmp(a->vhost ? a->vhost : "", b->vhost ? b->vhost : "");
        r = r ? r : strcmp(a->name ? a->name : "", b->name ? b->name : "");
    } else if (!strcmp(s_sort_key, "name")) {
        r = strcmp(a->name ? a->name : "", b->name ? b->name : "");
    } else {
        r = compare_json(a->json_is_key ? a->json : json_object_get(a->json, s_sort_key),
                         b->json_is_key ? b->json : json_object_get(b->json, s_sort_key));
    }
    return r * s_sort_dir;
}

/* Keeps only the comma-separated columns of an item; a dotted column ("queue.name") keeps its
 * whole top-level member. */
static void keep_columns(json_t *it, const char *columns)
{
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(it, tmp, k, v) {
        size_t len = strlen(k);
        bool keep = false;
        for (const char *p = columns; *p && !keep;) { /* "queue.name" keeps "queue" */
            size_t n = strcspn(p, ",");
            keep = n >= len && !memcmp(p, k, len) && (n == len || p[len] == '.');
            p += n + (p[n] == ',');
        }
        if (!keep)
            json_object_del(it, k);
    }
}

/* Drops the items whose name does not match the name parameter (a substring, or with
 * use_regex=true a PCRE2 pattern). The new count, or -1 after a 400. */
static long filter_names(struct call *c, struct api_item *v, size_t n)
{
    char name[256], regex[8];
    if (!api_param(c, "name", name, sizeof name)[0])
        return (long)n;
    pcre2_code *code = NULL;
    if (!strcmp(api_param(c, "use_regex", regex, sizeof regex), "true")) {
        int e;
        PCRE2_SIZE off;
        if (!(code = pcre2_compile((PCRE2_SPTR)name, PCRE2_ZERO_TERMINATED, 0, &e, &off, NULL))) {
            api_bad_request(c, "name is not a valid regular expression");
            return -1;
        }
    }
    pcre2_match_data *md = code ? pcre2_match_data_create_from_pattern(code, NULL) : NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = v[i].name ? v[i].name : "";
        bool match = code ? md && pcre2_match(code, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL) >= 0
                          : strstr(s, name) != NULL;
        if (match)
            v[k++] = v[i];
        else
            json_decref(v[i].json);
    }
    pcre2_match_data_free(md);
    pcre2_code_free(code);
    return (long)k;
}

/* The collection answer of api_send_list() over v[0..n): filtered, sorted and paged on the
 * items, JSON made only for what is answered. Takes over the items' JSON references. */
static void send_items(struct call *c, struct api_item *v, size_t n,
                       json_t *(*to_json)(const void *))
{
    char sort[64], rev[8], page_s[16], size_s[16], columns[512];
    size_t total = n;
    long kept = filter_names(c, v, n);
    json_t *out = NULL;
    if (kept < 0)
        goto done;
    n = (size_t)kept;
    s_sort_key = api_param(c, "sort", sort, sizeof sort)[0] && strcmp(sort, "vhost") ? sort : NULL;
    s_sort_dir = !strcmp(api_param(c, "sort_reverse", rev, sizeof rev), "true") ? -1 : 1;
    /* Sorting by a field needs every item's value of it: each object's JSON is made, its
     * member kept and the rest freed at once, so 100,000 queues never hold 100,000 objects. */
    if (s_sort_key && strcmp(s_sort_key, "name"))
        for (size_t i = 0; i < n; i++)
            if (!v[i].json) {
                json_t *j = to_json(v[i].obj);
                v[i].json = json_incref(json_object_get(j, s_sort_key));
                v[i].json_is_key = true;
                json_decref(j);
            }
    qsort(v, n, sizeof *v, compare_items);
    bool paged = api_param(c, "page", page_s, sizeof page_s)[0];
    long page = paged ? atol(page_s) : 1;
    long size = paged ? (api_param(c, "page_size", size_s, sizeof size_s)[0] ? atol(size_s) : 100)
                      : (long)(n ? n : 1);
    if (paged && (page < 1 || size < 1 || size > 500)) {
        api_error(c, 400, "invalid_pagination_parameters",
                  "page must be 1 or more, page_size 1 to 500");
        goto done;
    }
    size_t pages = (n + (size_t)size - 1) / (size_t)size;
    if (paged && pages && (size_t)page > pages) {
        api_error(c, 400, "page_out_of_range", "page out of range");
        goto done;
    }
    api_param(c, "columns", columns, sizeof columns);
    char nostats[8];
    bool no_stats = !strcmp(api_param(c, "disable_stats", nostats, sizeof nostats), "true");
    out = json_array();
    size_t lo = (size_t)(page - 1) * (size_t)size, hi = lo + (size_t)size;
    for (size_t i = lo; out && i < n && i < hi; i++) {
        json_t *j = v[i].json && !v[i].json_is_key ? json_incref(v[i].json) : to_json(v[i].obj);
        if (j && no_stats) /* RabbitMQ's disable_stats=true: the objects without statistics */
            json_object_del(j, "message_stats");
        if (j && columns[0])
            keep_columns(j, columns);
        json_array_append_new(out, j);
    }
    if (!paged) {
        api_reply(c, 200, out);
        out = NULL;
    } else {
        api_reply(c, 200, json_pack("{s:I, s:I, s:o, s:I, s:I, s:I, s:I}", "filtered_count",
                                    (json_int_t)n, "item_count",
                                    (json_int_t)json_array_size(out), "items", out, "page",
                                    (json_int_t)page, "page_count", (json_int_t)pages,
                                    "page_size", (json_int_t)size, "total_count",
                                    (json_int_t)total));
        out = NULL;
    }
done:
    json_decref(out);
    for (size_t i = 0; i < n; i++)
        json_decref(v[i].json);
}

void api_send_list(struct call *c, json_t *items)
{
    if (!items)
        return api_error(c, 500, "internal_error", "out of memory");
    size_t n = json_array_size(items);
    struct api_item *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) {
        json_decref(items);
        return api_error(c, 500, "internal_error", "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        json_t *j = json_array_get(items, i);
        json_t *name = json_object_get(j, "name"), *vhost = json_object_get(j, "vhost");
        v[i] = (struct api_item){json_is_string(name) ? json_string_value(name) : NULL,
                             json_is_string(vhost) ? json_string_value(vhost) : NULL,
                             json_incref(j), NULL, false};
    }
    send_items(c, v, n, NULL);
    free(v);
    json_decref(items); /* after send_items: the names point into it */
}

void api_send_objects(struct call *c, struct api_item *v, size_t n,
                      json_t *(*to_json)(const void *))
{
    send_items(c, v, n, to_json);
}

/* ---- routing ------------------------------------------------------------------------------------ */


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
                int h = hexval(p[1]), l = h < 0 ? -1 : hexval(p[2]);
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

/* A reply that waits until the change it reports is durable, as AMQP's replies do. */
struct held {
    struct durable_wait w;
    struct list link; /* in admin.held */
    void *conn;
};

static void held_done(struct durable_wait *w)
{
    struct held *h = (struct held *)w;
    list_remove(&h->link);
    http_release(h->conn);
    free(h);
}

static void route(struct call *c);

static void handle(const struct http_req *req, struct http_resp *resp, void *arg)
{
    struct admin *a = arg;
    struct storage *st = a->b->store;
    uint64_t writes = st ? storage_writes(st) : 0;
    if (strncmp(req->path, "/api/", 5) != 0 && strcmp(req->path, "/api") != 0)
        return console_serve(req, resp); /* the web console's files */
    struct call c = {.a = a, .req = req, .resp = resp};
    route(&c);
    if (!st || storage_writes(st) == writes)
        return;
    uint64_t batch = storage_batch_no(st);
    struct held *h = batch > a->b->durable_batch ? malloc(sizeof *h) : NULL;
    if (!h)
        return; /* already durable, or no memory to wait: answered now */
    h->conn = req->conn;
    h->w.done = held_done;
    list_insert_tail(&a->held, &h->link);
    resp->hold = true;
    broker_wait_durable(a->b, &h->w, batch);
}

/* Authenticates the request and hands it to the handler of its first path segment. */
static void route(struct call *c)
{
    http_resp_set(c->resp, 500, "{\"error\":\"internal_error\",\"reason\":\"unhandled\"}");
    if (!split(c, c->req->path))
        return api_not_found(c);
    if (!(c->user = authenticate(c)))
        return;
    const char *what = c->seg[0];
    static const struct { const char *name; void (*fn)(struct call *); } routes[] = {
        {"whoami", api_whoami}, {"overview", api_overview}, {"vhosts", api_vhosts},
        {"users", api_users}, {"permissions", api_permissions},
        {"exchanges", api_exchanges}, {"queues", api_queues}, {"bindings", api_bindings},
        {"definitions", api_definitions}, {"topic-permissions", api_topic_permissions},
        {"auth", api_auth}, {"extensions", api_extensions}, {"vhost-limits", api_vhost_limits},
        {"connections", api_connections}, {"channels", api_channels},
        {"nodes", api_nodes}, {"health", api_health}, {"aliveness-test", api_aliveness},
        {"policies", api_policies}, {"operator-policies", api_policies},
        {"parameters", api_parameters}, {"global-parameters", api_global_parameters},
        {"user-limits", api_user_limits},
        {"consumers", api_consumers},
        {"warren", api_warren}, {"ha", api_ha},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(what, routes[i].name))
            return routes[i].fn(c);
    api_not_found(c);
}

static void on_sample(uv_timer_t *t)
{
    struct admin *a = t->data;
    stats_sample(a->b, uv_now(t->loop));
}

int admin_start(struct admin *a, uv_loop_t *loop, struct broker *b, const struct http_ports *ports,
                const char *loopback_users)
{
    a->b = b;
    list_init(&a->held);
    a->loopback_users = loopback_users;
    a->started_ms = uv_now(loop);
    int rc = ports->port > 0 ? http_start(&a->http, loop, "management API", "management.tcp.port",
                                          ports->ip, ports->port, NULL, handle, a)
                             : 0;
    if (rc == 0 && ports->ssl_port > 0)
        rc = http_start(&a->https, loop, "management API", "management.ssl.port", ports->ssl_ip,
                        ports->ssl_port, ports->ssl_ctx, handle, a);
    else
        tls_ctx_free(ports->ssl_ctx);
    if (rc < 0) {
        http_stop(&a->http);
        return rc;
    }
    http_set_timeouts(&a->http, ports);
    http_set_timeouts(&a->https, ports);
    uv_timer_init(loop, &a->sampler);
    a->sampler.data = a;
    uv_timer_start(&a->sampler, on_sample, 0, STATS_INTERVAL_MS);
    return 0;
}

void admin_stop(struct admin *a)
{
    uv_close((uv_handle_t *)&a->sampler, NULL);
    /* Replies still waiting for storage are sent now: the server is going down. */
    while (!list_empty(&a->held)) {
        struct held *h = list_entry(a->held.next, struct held, link);
        list_remove(&h->w.link);
        held_done(&h->w);
    }
    http_stop(&a->http);
    http_stop(&a->https);
}
