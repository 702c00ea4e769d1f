/* warrenctl.c — Warren's admin CLI: rabbitmqctl's verbs, options and column names over the
 * management HTTP API, so that there is one control path. Owns the command line (options
 * before or after the verb), the one table of verbs and their handlers; HTTP is
 * warrenctl_http.c, list output warrenctl_table.c. Each verb maps to the RabbitMQ API endpoint
 * it corresponds to. Invariant: a run ends with exit 0, or with one sentence on stderr and a
 * non-zero exit code (see warrenctl_http.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "warrenctl_http.h"
#include "warrenctl_table.h"

enum opt {
    OPT_URL, OPT_USER, OPT_PASSWORD, OPT_CACERT, OPT_VHOST, OPT_FORMATTER, OPT_QUIET,
    OPT_NO_HEADERS, OPT_HELP,                /* the options above are global; those below belong to verbs */
    OPT_PRIORITY, OPT_APPLY_TO, OPT_IF_UNUSED, OPT_IF_EMPTY, OPT_GLOBAL, OPT_TIMEOUT,
    OPT_DESCRIPTION, OPT_WAIT, OPT_MAX
};
#define OPTS_GLOBAL ((1u << OPT_PRIORITY) - 1)
#define O(x) (1u << OPT_##x)

static const struct option_def {
    const char *name;
    char short_name;
    bool takes_value;
    const char *env; /* environment variable giving the default */
    const char *def; /* default value */
} options[OPT_MAX] = {
    [OPT_URL] = {"url", 0, true, "WARRENCTL_URL", "http://localhost:15672"},
    [OPT_USER] = {"user", 0, true, "WARRENCTL_USER", "guest"},
    [OPT_PASSWORD] = {"password", 0, true, "WARRENCTL_PASSWORD", "guest"},
    [OPT_CACERT] = {"cacert", 0, true, "WARRENCTL_CACERT", NULL},
    [OPT_VHOST] = {"vhost", 'p', true, NULL, "/"},
    [OPT_FORMATTER] = {"formatter", 0, true, NULL, "table"},
    [OPT_QUIET] = {"quiet", 'q', false, NULL, NULL},
    [OPT_NO_HEADERS] = {"no-table-headers", 0, false, NULL, NULL},
    [OPT_HELP] = {"help", 'h', false, NULL, NULL},
    [OPT_PRIORITY] = {"priority", 0, true, NULL, "0"},
    [OPT_APPLY_TO] = {"apply-to", 0, true, NULL, "all"},
    [OPT_IF_UNUSED] = {"if-unused", 'u', false, NULL, NULL},
    [OPT_IF_EMPTY] = {"if-empty", 'e', false, NULL, NULL},
    [OPT_GLOBAL] = {"global", 0, false, NULL, NULL},
    [OPT_TIMEOUT] = {"timeout", 't', true, NULL, "300"},
    [OPT_DESCRIPTION] = {"description", 0, true, NULL, NULL},
    [OPT_WAIT] = {"wait", 0, false, NULL, NULL},
};

struct ctx {
    struct api api;
    const char *opt[OPT_MAX]; /* borrowed: argv, the environment or the defaults above */
    enum table_fmt fmt;
};

struct verb;
typedef int verb_run_cb(struct ctx *c, const struct verb *v, char **arg, int n);

/* One verb. Templates (path, banner, what, header) take %v for the vhost and %1..%9 for the
 * arguments; in a path they are percent-encoded. */
struct verb {
    const char *name;
    const char *args;   /* usage after the verb */
    int min, max;       /* positional arguments; max -1: any number */
    unsigned opts;      /* verb options it takes (O(...)) */
    verb_run_cb *run;
    const char *method; /* run_change: the request */
    const char *path;
    const char *banner; /* said first unless --quiet or a machine format */
    const char *what;   /* what a 404 means is missing */
    const char *keys;   /* run_change: body keys taking arguments 2, 3, ... */
    const char *header; /* run_change: an extra request header */
    const char *cols;   /* run_list: default columns */
    const char *map;    /* run_list: "column=api.path" (or "column==constant") where they differ */
};

static void usage_line(FILE *out, const struct verb *v)
{
    fprintf(out, "usage: warrenctl [--url URL] [--user USER] [--password PASS] %s%s%s\n",
            v ? v->name : "VERB", v && !v->args[0] ? "" : " ", v ? v->args : "[ARGS...]");
}

static int bad_usage(const struct verb *v, const char *why, const char *what)
{
    fprintf(stderr, "warrenctl: %s%s; ", why, what ? what : "");
    usage_line(stderr, v);
    return EXIT_USAGE;
}

static int no_memory(void)
{
    fprintf(stderr, "warrenctl: out of memory.\n");
    return EXIT_UNAVAILABLE;
}

/* tpl with %v and %1..%9 replaced (percent-encoded when escape); NULL when out of memory. */
static char *expand(const struct ctx *c, const char *tpl, char **arg, int n, bool escape)
{
    char *s = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&s, &len);
    if (!out)
        return NULL;
    for (const char *p = tpl; *p; p++) {
        const char *sub = NULL;
        if (p[0] == '%' && p[1] == 'v')
            sub = c->opt[OPT_VHOST];
        else if (p[0] == '%' && p[1] >= '1' && p[1] <= '9')
            sub = p[1] - '1' < n ? arg[p[1] - '1'] : "";
        if (!sub) {
            fputc(*p, out);
            continue;
        }
        if (escape)
            api_escape(out, sub);
        else
            fputs(sub, out);
        p++;
    }
    if (fclose(out) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

static void say(const struct ctx *c, const struct verb *v, char **arg, int n)
{
    if (!v->banner || c->opt[OPT_QUIET] || c->fmt != TABLE_FMT_TABLE)
        return;
    char *s = expand(c, v->banner, arg, n, false);
    if (s)
        printf("%s\n", s);
    free(s);
}

/* ---- generic verbs: one request, or one list --------------------------------------------------- */

/* The body of v's request: its keys from arguments 2.. plus --description; NULL for DELETE. */
static json_t *change_body(const struct ctx *c, const struct verb *v, char **arg, int n)
{
    if (!strcmp(v->method, "DELETE"))
        return NULL;
    json_t *o = json_object();
    const char *k = v->keys ? v->keys : "";
    for (int i = 1; o && *k && i < n; i++) {
        size_t len = strcspn(k, " ");
        char key[32];
        snprintf(key, sizeof key, "%.*s", (int)len, k);
        json_object_set_new(o, key, json_string(arg[i]));
        k += len + (k[len] == ' ');
    }
    if (o && c->opt[OPT_DESCRIPTION])
        json_object_set_new(o, "description", json_string(c->opt[OPT_DESCRIPTION]));
    return o;
}

/* One request from v's templates (add_vhost, delete_user, set_permissions, purge_queue, ...). */
static int run_change(struct ctx *c, const struct verb *v, char **arg, int n)
{
    char *path = expand(c, v->path, arg, n, true);
    char *what = v->what ? expand(c, v->what, arg, n, false) : NULL;
    char *header = v->header ? expand(c, v->header, arg, n, false) : NULL;
    json_t *body = change_body(c, v, arg, n);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    int rc = 0;
    if (path && (c->opt[OPT_IF_UNUSED] || c->opt[OPT_IF_EMPTY])) {
        char *q = NULL;
        rc = asprintf(&q, "%s?if-unused=%s&if-empty=%s", path,
                      c->opt[OPT_IF_UNUSED] ? "true" : "false",
                      c->opt[OPT_IF_EMPTY] ? "true" : "false") < 0;
        free(path);
        path = rc ? NULL : q;
    }
    if (!path || (v->what && !what) || (v->header && !header) || (body && !text)) {
        rc = no_memory();
    } else {
        say(c, v, arg, n);
        rc = api_call(&c->api, v->method, path, text, header, what, NULL);
    }
    free(path);
    free(what);
    free(header);
    free(text);
    json_decref(body);
    return rc;
}

#define MAX_COLS 64

/* A list (list_queues, list_users, ...): GET v->path?columns=..., shown with the columns named
 * by the arguments after the first v->min (or v->cols). */
static int run_list(struct ctx *c, const struct verb *v, char **arg, int n)
{
    struct column cols[MAX_COLS];
    char paths[MAX_COLS][128];
    size_t ncols = 0;
    char *names = NULL, *query = NULL, *path = expand(c, v->path, arg, n, true);
    size_t nlen = 0, qlen = 0;
    FILE *nf = open_memstream(&names, &nlen), *qf = open_memstream(&query, &qlen);
    for (int i = v->min; nf && i < n; i++)
        fprintf(nf, "%s ", arg[i]);
    if (nf && n <= v->min)
        fputs(v->cols, nf);
    int rc = (nf ? fclose(nf) : -1) | (qf ? 0 : -1);
    char *save = NULL;
    for (char *t = rc ? NULL : strtok_r(names, " ,", &save); t; t = strtok_r(NULL, " ,", &save)) {
        if (ncols == MAX_COLS) {
            rc = bad_usage(v, "too many columns", NULL);
            break;
        }
        snprintf(paths[ncols], sizeof paths[ncols], "%s", t);
        for (const char *m = v->map; m && *m; m += strcspn(m, " "), m += *m == ' ') {
            size_t tl = strlen(t);
            if (!strncmp(m, t, tl) && m[tl] == '=')
                snprintf(paths[ncols], sizeof paths[ncols], "%.*s", (int)strcspn(m + tl + 1, " "),
                         m + tl + 1);
        }
        cols[ncols] = (struct column){t, paths[ncols]};
        if (paths[ncols][0] != '=')
            fprintf(qf, "%s%s", ftell(qf) ? "," : "?columns=", paths[ncols]);
        ncols++;
    }
    if (qf && fclose(qf) != 0)
        rc = -1;
    json_t *rows = NULL;
    char *url = NULL;
    if (rc < 0 || !path || asprintf(&url, "%s%s", path, query ? query : "") < 0) {
        rc = no_memory();
    } else if (!rc) {
        char *what = v->what ? expand(c, v->what, arg, n, false) : NULL;
        say(c, v, arg, n);
        rc = api_call(&c->api, "GET", url, NULL, NULL, what, &rows);
        free(what);
    }
    if (!rc && !json_is_array(rows)) {
        fprintf(stderr, "warrenctl: GET %s did not answer with a JSON list.\n", url);
        rc = EXIT_UNAVAILABLE;
    }
    if (!rc && table_print(stdout, rows, cols, ncols, c->fmt, !c->opt[OPT_NO_HEADERS]) < 0)
        rc = no_memory();
    json_decref(rows);
    free(url);
    free(path);
    free(names);
    free(query);
    return rc;
}

/* ---- verbs with their own logic -------------------------------------------------------------- */

/* GET path into *ret (2xx) — the request as api_call, with the path built from v->path. */
static int get_json(struct ctx *c, const char *tpl, char **arg, int n, const char *what,
                    json_t **ret)
{
    char *path = expand(c, tpl, arg, n, true);
    char *w = what ? expand(c, what, arg, n, false) : NULL;
    int rc = path && (!what || w) ? api_call(&c->api, "GET", path, NULL, NULL, w, ret)
                                  : no_memory();
    free(path);
    free(w);
    return rc;
}

/* Sends body (consumed) as method to tpl's path. */
static int send_json(struct ctx *c, const char *method, const char *tpl, char **arg, int n,
                     json_t *body)
{
    char *path = expand(c, tpl, arg, n, true);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    int rc = path && text ? api_call(&c->api, method, path, text, NULL, NULL, NULL)
                          : no_memory();
    free(path);
    free(text);
    return rc;
}

static void print_json(json_t *j)
{
    json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
    putchar('\n');
}

static int run_status(struct ctx *c, const struct verb *v, char **arg, int n)
{
    static const char *const fields[][2] = {
        {"Product name", "product_name"}, {"Product version", "product_version"},
        {"RabbitMQ version", "rabbitmq_version"}, {"Management version", "management_version"},
        {"Cluster name", "cluster_name"}, {"Node", "node"},
        {"Connections", "object_totals.connections"}, {"Channels", "object_totals.channels"},
        {"Queues", "object_totals.queues"}, {"Exchanges", "object_totals.exchanges"},
        {"Consumers", "object_totals.consumers"}, {"Messages", "queue_totals.messages"},
        {"Messages ready", "queue_totals.messages_ready"},
        {"Messages unacknowledged", "queue_totals.messages_unacknowledged"},
    };
    json_t *o = NULL;
    int rc = get_json(c, v->path, arg, n, NULL, &o);
    if (!rc && c->fmt == TABLE_FMT_JSON)
        print_json(o);
    const char *node = json_string_value(json_object_get(o, "node"));
    if (!rc && c->fmt == TABLE_FMT_TABLE && !c->opt[OPT_QUIET])
        printf("Status of node %s ...\n", node ? node : "?");
    for (size_t i = 0; !rc && c->fmt != TABLE_FMT_JSON && i < sizeof fields / sizeof *fields;
         i++) {
        char *s = table_cell(o, fields[i][1]);
        if (s && s[0])
            printf(c->fmt == TABLE_FMT_TSV ? "%s\t%s\n" : "%s: %s\n", fields[i][0], s);
        free(s);
    }
    json_decref(o);
    return rc;
}

/* Polls GET v->path until it answers, for --timeout seconds; only an unreachable broker or a
 * 503 is waited for. */
static int run_await_startup(struct ctx *c, const struct verb *v, char **arg, int n)
{
    (void)arg, (void)n;
    char *end;
    double limit = strtod(c->opt[OPT_TIMEOUT], &end);
    if (*end || end == c->opt[OPT_TIMEOUT] || limit < 0)
        return bad_usage(v, "--timeout must be a number of seconds", NULL);
    struct timespec t0, now, pause = {0, 200 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct api_resp r;
        api_send(&c->api, "GET", v->path, NULL, NULL, &r);
        clock_gettime(CLOCK_MONOTONIC, &now);
        double spent = (double)(now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9;
        bool waiting = (r.status == 0 || r.status == 503) && spent < limit;
        int rc = r.status >= 200 && r.status <= 299 ? 0
                 : waiting ? -1 : api_fail(&c->api, "GET", v->path, &r, NULL);
        api_resp_free(&r);
        if (rc >= 0)
            return rc;
        nanosleep(&pause, NULL);
    }
}

/* GET /api/users/USER into *ret; 404 names the user. */
static int get_user(struct ctx *c, char **arg, int n, json_t **ret)
{
    return get_json(c, "/api/users/%1", arg, n, "user '%1'", ret);
}

static int run_add_user(struct ctx *c, const struct verb *v, char **arg, int n)
{
    struct api_resp r;
    char *path = expand(c, "/api/users/%1", arg, n, true);
    if (!path)
        return no_memory();
    api_send(&c->api, "GET", path, NULL, NULL, &r);
    int rc = r.status == 200 ? EXIT_DATA : r.status == 404 ? 0
             : api_fail(&c->api, "GET", path, &r, NULL);
    if (rc == EXIT_DATA)
        fprintf(stderr, "warrenctl: user '%s' already exists.\n", arg[0]);
    api_resp_free(&r);
    free(path);
    say(c, v, arg, n);
    return rc ? rc : send_json(c, "PUT", v->path, arg, n,
                               json_pack("{s:s, s:s}", "password", arg[1], "tags", ""));
}

static int run_change_password(struct ctx *c, const struct verb *v, char **arg, int n)
{
    json_t *u = NULL;
    int rc = get_user(c, arg, n, &u);
    say(c, v, arg, n);
    if (!rc)
        rc = send_json(c, "PUT", v->path, arg, n,
                       json_pack("{s:s, s:O}", "password", arg[1], "tags",
                                 json_object_get(u, "tags")));
    json_decref(u);
    return rc;
}

static int run_set_user_tags(struct ctx *c, const struct verb *v, char **arg, int n)
{
    json_t *u = NULL, *tags = json_array();
    int rc = get_user(c, arg, n, &u);
    for (int i = 1; tags && i < n; i++)
        json_array_append_new(tags, json_string(arg[i]));
    say(c, v, arg, n);
    /* RabbitMQ clears the password of a PUT without one: send the stored hash back. */
    if (!rc)
        rc = send_json(c, "PUT", v->path, arg, n,
                       json_pack("{s:O, s:O, s:O}", "password_hash",
                                 json_object_get(u, "password_hash"), "hashing_algorithm",
                                 json_object_get(u, "hashing_algorithm"), "tags", tags));
    json_decref(tags);
    json_decref(u);
    return rc;
}

/* GET /api/whoami with USER and PASS: a 401 for a missing tag still proves the password. */
static int run_authenticate_user(struct ctx *c, const struct verb *v, char **arg, int n)
{
    struct api a = {.cacert = c->api.cacert};
    struct api_resp r;
    if (api_open(&a, c->api.url, arg[0], arg[1]) < 0)
        return no_memory();
    say(c, v, arg, n);
    api_send(&a, "GET", v->path, NULL, NULL, &r);
    const char *why = json_string_value(json_object_get(r.json, "reason"));
    bool tag = r.status == 401 && why && (strstr(why, "management") || strstr(why, "administrator"));
    int rc = 0;
    if ((r.status >= 200 && r.status <= 299) || tag) {
        printf("Success\n");
    } else if (r.status == 401) {
        fprintf(stderr, "warrenctl: user '%s' failed to authenticate (401: %s).\n", arg[0],
                why ? why : "no reason given");
        rc = EXIT_NOPERM;
    } else {
        rc = api_fail(&a, "GET", v->path, &r, NULL);
    }
    api_resp_free(&r);
    api_close(&a);
    return rc;
}

/* set_policy and set_operator_policy: PUT v->path {pattern, definition, priority, apply-to}. */
static int run_set_policy(struct ctx *c, const struct verb *v, char **arg, int n)
{
    char *end;
    long prio = strtol(c->opt[OPT_PRIORITY], &end, 10);
    if (*end || end == c->opt[OPT_PRIORITY])
        return bad_usage(v, "--priority must be an integer", NULL);
    json_error_t je;
    json_t *def = json_loads(arg[2], 0, &je);
    if (!json_is_object(def)) {
        json_decref(def);
        fprintf(stderr, "warrenctl: the policy definition must be a JSON object (%s).\n",
                def ? "got another JSON value" : je.text);
        return EXIT_USAGE;
    }
    say(c, v, arg, n);
    return send_json(c, "PUT", v->path, arg, n,
                     json_pack("{s:s, s:o, s:I, s:s}", "pattern", arg[1], "definition", def,
                               "priority", (json_int_t)prio, "apply-to",
                               c->opt[OPT_APPLY_TO]));
}

/* GET the vhost's (or with --global every) connection, DELETE each with X-Reason. */
static int run_close_all_connections(struct ctx *c, const struct verb *v, char **arg, int n)
{
    json_t *conns = NULL, *conn;
    int rc = get_json(c, c->opt[OPT_GLOBAL] ? "/api/connections" : v->path, arg, n,
                      c->opt[OPT_GLOBAL] ? NULL : "vhost '%v'", &conns);
    char *header = expand(c, v->header, arg, n, false);
    size_t i;
    say(c, v, arg, n);
    json_array_foreach(conns, i, conn) {
        char *name[] = {(char *)json_string_value(json_object_get(conn, "name"))};
        char *path = name[0] ? expand(c, "/api/connections/%1", name, 1, true) : NULL;
        struct api_resp r;
        if (!path || !header) {
            free(path);
            rc = no_memory();
            break;
        }
        api_send(&c->api, "DELETE", path, NULL, header, &r);
        if (r.status != 404 && (r.status < 200 || r.status > 299) && !rc)
            rc = api_fail(&c->api, "DELETE", path, &r, NULL); /* 404: gone already, fine */
        api_resp_free(&r);
        free(path);
    }
    free(header);
    json_decref(conns);
    return rc;
}

static int run_export_definitions(struct ctx *c, const struct verb *v, char **arg, int n)
{
    json_t *defs = NULL;
    bool to_stdout = !strcmp(arg[0], "-");
    if (!to_stdout)
        say(c, v, arg, n);
    int rc = get_json(c, v->path, arg, n, NULL, &defs);
    if (!rc && to_stdout)
        print_json(defs);
    else if (!rc && json_dump_file(defs, arg[0], JSON_INDENT(2)) < 0) {
        fprintf(stderr, "warrenctl: cannot write %s: %s.\n", arg[0], strerror(errno));
        rc = EXIT_CANTCREATE;
    }
    json_decref(defs);
    return rc;
}

static int run_import_definitions(struct ctx *c, const struct verb *v, char **arg, int n)
{
    json_error_t je;
    bool from_stdin = !strcmp(arg[0], "-");
    json_t *defs = from_stdin ? json_loadf(stdin, 0, &je) : json_load_file(arg[0], 0, &je);
    if (!defs && je.line < 1) {
        fprintf(stderr, "warrenctl: cannot read %s: %s.\n", arg[0], je.text);
        return EXIT_NOINPUT;
    }
    if (!json_is_object(defs)) {
        fprintf(stderr, "warrenctl: %s is not a JSON object of definitions: %s (line %d).\n",
                from_stdin ? "standard input" : arg[0], defs ? "another JSON value" : je.text,
                je.line);
        json_decref(defs);
        return EXIT_DATA;
    }
    say(c, v, arg, n);
    return send_json(c, "POST", v->path, arg, n, defs);
}

static int run_hash_password(struct ctx *c, const struct verb *v, char **arg, int n)
{
    json_t *o = NULL;
    int rc = get_json(c, v->path, arg, n, NULL, &o);
    const char *hash = json_string_value(json_object_get(o, "ok"));
    if (!rc && c->fmt == TABLE_FMT_JSON) {
        print_json(o);
    } else if (!rc && hash) {
        say(c, v, arg, n);
        printf("%s\n", hash);
    } else if (!rc) {
        fprintf(stderr, "warrenctl: GET %s did not answer with {\"ok\": HASH}.\n", v->path);
        rc = EXIT_UNAVAILABLE;
    }
    json_decref(o);
    return rc;
}

/* --timeout as seconds into *ret; false (after the usage line) when it is not a number. */
static bool timeout_secs(struct ctx *c, const struct verb *v, double *ret)
{
    char *end;
    *ret = strtod(c->opt[OPT_TIMEOUT], &end);
    if (*end || end == c->opt[OPT_TIMEOUT] || *ret < 0) {
        bad_usage(v, "--timeout must be a number of seconds", NULL);
        return false;
    }
    return true;
}

static double since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (now.tv_nsec - t0->tv_nsec) / 1e9;
}

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* POST /api/warren/rotate-key, then GET /api/warren/encryption every 0.1 s while the broker
 * reads the key source (and, with --wait, until every stored message is re-encrypted), for
 * --timeout seconds at most. */
static int run_rotate_key(struct ctx *c, const struct verb *v, char **arg, int n)
{
    double limit;
    if (!timeout_secs(c, v, &limit))
        return EXIT_USAGE;
    say(c, v, arg, n);
    json_t *st = NULL;
    int rc = api_call(&c->api, "POST", v->path, "{}", NULL, "the key rotation endpoint", &st);
    if (rc)
        return rc;
    char before[64];
    snprintf(before, sizeof before, "%s", jstr(st, "key_id"));
    struct timespec t0, pause = {0, 100 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        const char *state = jstr(st, "state");
        if (!strcmp(state, "failed")) {
            fprintf(stderr, "warrenctl: the key rotation failed: %s.\n", jstr(st, "error"));
            rc = EXIT_DATA;
            break;
        }
        bool loading = !strcmp(state, "loading_key");
        if (!loading && !(c->opt[OPT_WAIT] && !strcmp(state, "rotating")))
            break;
        if (since(&t0) > limit) {
            fprintf(stderr, "warrenctl: the key rotation is still %s after %s s; warrenctl "
                            "encryption_status shows its progress.\n",
                    loading ? "reading the key" : "re-encrypting", c->opt[OPT_TIMEOUT]);
            rc = EXIT_UNAVAILABLE;
            break;
        }
        nanosleep(&pause, NULL);
        json_decref(st);
        st = NULL;
        if ((rc = get_json(c, "/api/warren/encryption", NULL, 0, NULL, &st)) != 0)
            break;
    }
    if (!rc && c->fmt == TABLE_FMT_JSON) {
        print_json(st);
    } else if (!rc && !c->opt[OPT_QUIET]) {
        const char *now = jstr(st, "key_id");
        if (strcmp(now, before))
            printf("Key id %s replaces %s for new messages.\n", now, before);
        else
            printf("The key source still gives key id %s: only stored messages not under it "
                   "(written before encryption was configured) are re-encrypted.\n", now);
        if (!strcmp(jstr(st, "state"), "rotating"))
            printf("Re-encrypting the stored messages in the background; warrenctl "
                   "encryption_status shows the progress.\n");
        else
            printf("Re-encrypted %lld of %lld stored messages in %.1f s.\n",
                   (long long)json_integer_value(json_object_get(st, "records_reencrypted")),
                   (long long)json_integer_value(json_object_get(st, "records_examined")),
                   (double)json_integer_value(json_object_get(st, "elapsed_ms")) / 1000);
    }
    json_decref(st);
    return rc;
}

/* A status endpoint's object as "Label: value" lines (tsv: label TAB value), the fields and
 * their labels from v->cols ("Label=key|Label=key|..."); --formatter json prints it whole. */
static int run_fields(struct ctx *c, const struct verb *v, char **arg, int n)
{
    json_t *o = NULL;
    int rc = get_json(c, v->path, arg, n, v->what, &o);
    if (!rc && c->fmt == TABLE_FMT_JSON)
        print_json(o);
    if (!rc && c->fmt == TABLE_FMT_TABLE)
        say(c, v, arg, n);
    for (const char *p = v->cols; !rc && c->fmt != TABLE_FMT_JSON && *p;) {
        size_t len = strcspn(p, "|"), eq = strcspn(p, "=");
        char label[64], key[64];
        snprintf(label, sizeof label, "%.*s", (int)eq, p);
        snprintf(key, sizeof key, "%.*s", (int)(len - eq - 1), p + eq + 1);
        char *s = table_cell(o, key);
        if (s && s[0] && strcmp(s, "null"))
            printf(c->fmt == TABLE_FMT_TSV ? "%s\t%s\n" : "%s: %s\n", label, s);
        free(s);
        p += len + (p[len] == '|');
    }
    json_decref(o);
    return rc;
}

static int run_help(struct ctx *c, const struct verb *v, char **arg, int n);

/* ---- the verbs ------------------------------------------------------------------------------- */

#define COLS "[COLUMN...]"
/* set_, clear_ and list_ of policies and operator policies: the same verbs on two paths. */
#define POLICY_VERBS(prefix, kind, api)                                                          \
    {.name = "set_" prefix "policy",                                                             \
     .args = "[-p VHOST] [--priority N] [--apply-to queues|exchanges|all] NAME PATTERN "         \
             "DEFINITION",                                                                       \
     .min = 3, .max = 3, .opts = O(PRIORITY) | O(APPLY_TO), .run = run_set_policy,               \
     .path = "/api/" api "/%v/%1",                                                               \
     .banner = "Setting " kind " \"%1\" for pattern \"%2\" to \"%3\" in vhost \"%v\" ..."},      \
    {.name = "clear_" prefix "policy", .args = "[-p VHOST] NAME", .min = 1, .max = 1,            \
     .run = run_change, .method = "DELETE", .path = "/api/" api "/%v/%1",                        \
     .banner = "Clearing " kind " \"%1\" on vhost \"%v\" ...",                                  \
     .what = kind " '%1' in vhost '%v'"},                                                        \
    {.name = "list_" prefix "policies", .args = "[-p VHOST] " COLS, .max = -1, .run = run_list,  \
     .path = "/api/" api "/%v", .banner = "Listing " kind " entries for vhost \"%v\" ...",       \
     .what = "vhost '%v'", .cols = "vhost name pattern apply-to definition priority"}
static const struct verb verbs[] = {
    {.name = "status", .args = "", .run = run_status, .path = "/api/overview"},
    {.name = "await_startup", .args = "[--timeout SECONDS]", .opts = O(TIMEOUT),
     .run = run_await_startup, .path = "/api/overview"},
    {.name = "list_queues", .args = "[-p VHOST] " COLS, .max = -1, .run = run_list,
     .path = "/api/queues/%v", .banner = "Listing queues for vhost %v ...",
     .what = "vhost '%v'", .cols = "name messages"},
    {.name = "list_exchanges", .args = "[-p VHOST] " COLS, .max = -1, .run = run_list,
     .path = "/api/exchanges/%v", .banner = "Listing exchanges for vhost %v ...",
     .what = "vhost '%v'", .cols = "name type"},
    {.name = "list_bindings", .args = "[-p VHOST] " COLS, .max = -1, .run = run_list,
     .path = "/api/bindings/%v", .banner = "Listing bindings for vhost %v ...",
     .what = "vhost '%v'",
     .cols = "source_name source_kind destination_name destination_kind routing_key arguments",
     .map = "source_name=source source_kind==exchange destination_name=destination "
            "destination_kind=destination_type"},
    {.name = "list_connections", .args = COLS, .max = -1, .run = run_list,
     .path = "/api/connections", .banner = "Listing connections ...",
     .cols = "user peer_host peer_port state"},
    {.name = "list_channels", .args = COLS, .max = -1, .run = run_list, .path = "/api/channels",
     .banner = "Listing channels ...", .cols = "pid user consumer_count messages_unacknowledged",
     .map = "pid=name"},
    {.name = "list_consumers", .args = "[-p VHOST] " COLS, .max = -1, .run = run_list,
     .path = "/api/consumers/%v", .banner = "Listing consumers in vhost %v ...",
     .what = "vhost '%v'",
     .cols = "queue_name channel_pid consumer_tag ack_required prefetch_count active arguments",
     .map = "queue_name=queue.name channel_pid=channel_details.name"},
    {.name = "list_users", .args = COLS, .max = -1, .run = run_list, .path = "/api/users",
     .banner = "Listing users ...", .cols = "user tags", .map = "user=name"},
    {.name = "add_user", .args = "USER PASSWORD", .min = 2, .max = 2, .run = run_add_user,
     .path = "/api/users/%1", .banner = "Adding user \"%1\" ..."},
    {.name = "delete_user", .args = "USER", .min = 1, .max = 1, .run = run_change,
     .method = "DELETE", .path = "/api/users/%1", .banner = "Deleting user \"%1\" ...",
     .what = "user '%1'"},
    {.name = "change_password", .args = "USER PASSWORD", .min = 2, .max = 2,
     .run = run_change_password, .path = "/api/users/%1",
     .banner = "Changing password for user \"%1\" ..."},
    {.name = "authenticate_user", .args = "USER PASSWORD", .min = 2, .max = 2,
     .run = run_authenticate_user, .path = "/api/whoami",
     .banner = "Authenticating user \"%1\" ..."},
    {.name = "set_user_tags", .args = "USER [TAG...]", .min = 1, .max = -1,
     .run = run_set_user_tags, .path = "/api/users/%1",
     .banner = "Setting tags for user \"%1\" ..."},
    {.name = "list_vhosts", .args = COLS, .max = -1, .run = run_list, .path = "/api/vhosts",
     .banner = "Listing vhosts ...", .cols = "name"},
    {.name = "add_vhost", .args = "[--description TEXT] VHOST", .min = 1, .max = 1,
     .opts = O(DESCRIPTION), .run = run_change, .method = "PUT", .path = "/api/vhosts/%1",
     .banner = "Adding vhost \"%1\" ..."},
    {.name = "delete_vhost", .args = "VHOST", .min = 1, .max = 1, .run = run_change,
     .method = "DELETE", .path = "/api/vhosts/%1", .banner = "Deleting vhost \"%1\" ...",
     .what = "vhost '%1'"},
    {.name = "set_permissions", .args = "[-p VHOST] USER CONF WRITE READ", .min = 4, .max = 4,
     .run = run_change, .method = "PUT", .path = "/api/permissions/%v/%1",
     .banner = "Setting permissions for user \"%1\" in vhost \"%v\" ...",
     .keys = "configure write read"},
    {.name = "clear_permissions", .args = "[-p VHOST] USER", .min = 1, .max = 1,
     .run = run_change, .method = "DELETE", .path = "/api/permissions/%v/%1",
     .banner = "Clearing permissions for user \"%1\" in vhost \"%v\" ...",
     .what = "the permission entry of user '%1' in vhost '%v'"},
    {.name = "list_permissions", .args = "[-p VHOST] " COLS, .max = -1, .run = run_list,
     .path = "/api/vhosts/%v/permissions", .banner = "Listing permissions for vhost \"%v\" ...",
     .what = "vhost '%v'", .cols = "user configure write read"},
    {.name = "list_user_permissions", .args = "USER", .min = 1, .max = 1, .run = run_list,
     .path = "/api/users/%1/permissions", .banner = "Listing permissions for user \"%1\" ...",
     .what = "user '%1'", .cols = "vhost configure write read"},
    {.name = "set_topic_permissions", .args = "[-p VHOST] USER EXCHANGE WRITE READ", .min = 4,
     .max = 4, .run = run_change, .method = "PUT", .path = "/api/topic-permissions/%v/%1",
     .banner = "Setting topic permissions on \"%2\" for user \"%1\" in vhost \"%v\" ...",
     .keys = "exchange write read"},
    {.name = "clear_topic_permissions", .args = "[-p VHOST] USER", .min = 1, .max = 1,
     .run = run_change, .method = "DELETE", .path = "/api/topic-permissions/%v/%1",
     .banner = "Clearing topic permissions for user \"%1\" in vhost \"%v\" ...",
     .what = "the topic permission entry of user '%1' in vhost '%v'"},
    {.name = "list_topic_permissions", .args = "[-p VHOST] " COLS, .max = -1, .run = run_list,
     .path = "/api/vhosts/%v/topic-permissions",
     .banner = "Listing topic permissions for vhost \"%v\" ...", .what = "vhost '%v'",
     .cols = "user exchange write read"},
    POLICY_VERBS("", "policy", "policies"),
    POLICY_VERBS("operator_", "operator policy", "operator-policies"),
    {.name = "purge_queue", .args = "[-p VHOST] QUEUE", .min = 1, .max = 1, .run = run_change,
     .method = "DELETE", .path = "/api/queues/%v/%1/contents",
     .banner = "Purging queue '%1' in vhost '%v' ...", .what = "queue '%1' in vhost '%v'"},
    {.name = "delete_queue", .args = "[-p VHOST] [--if-unused] [--if-empty] QUEUE", .min = 1,
     .max = 1, .opts = O(IF_UNUSED) | O(IF_EMPTY), .run = run_change, .method = "DELETE",
     .path = "/api/queues/%v/%1", .banner = "Deleting queue '%1' on vhost '%v' ...",
     .what = "queue '%1' in vhost '%v'"},
    {.name = "close_connection", .args = "NAME REASON", .min = 2, .max = 2, .run = run_change,
     .method = "DELETE", .path = "/api/connections/%1", .header = "X-Reason: %2",
     .banner = "Closing connection %1, reason: %2 ...", .what = "connection '%1'"},
    {.name = "close_all_connections", .args = "[-p VHOST | --global] REASON", .min = 1,
     .max = 1, .opts = O(GLOBAL), .run = run_close_all_connections,
     .path = "/api/vhosts/%v/connections", .header = "X-Reason: %1",
     .banner = "Closing all connections, reason: %1 ..."},
    {.name = "export_definitions", .args = "FILE|-", .min = 1, .max = 1,
     .run = run_export_definitions, .path = "/api/definitions",
     .banner = "Exporting definitions in JSON to a file at \"%1\" ..."},
    {.name = "import_definitions", .args = "FILE|-", .min = 1, .max = 1,
     .run = run_import_definitions, .path = "/api/definitions",
     .banner = "Importing definitions in JSON from a file at \"%1\" ..."},
    {.name = "rotate_key", .args = "[--wait] [--timeout SECONDS]", .opts = O(WAIT) | O(TIMEOUT),
     .run = run_rotate_key, .path = "/api/warren/rotate-key",
     .banner = "Rotating the encryption key ..."},
    {.name = "encryption_status", .args = "", .run = run_fields,
     .path = "/api/warren/encryption", .banner = "Encryption at rest ...",
     .what = "the encryption status endpoint",
     .cols = "Encryption at rest=state|Key id=key_id|Key source=key_source|"
             "Previous key id=previous_key_id|Last error=error|Records at start=records_total|"
             "Records examined=records_examined|Records re-encrypted=records_reencrypted|"
             "Records damaged=records_damaged|Rotations=rotations"},
    {.name = "ha_status", .args = "", .run = run_fields, .path = "/api/ha",
     .banner = "Active/standby ...", .what = "the HA status endpoint",
     .cols = "Mode=mode|Role=role|Epoch=epoch|Holder=holder|"
             "Heartbeat interval (ms)=heartbeat_interval|Fence deadline (ms)=fence_deadline|"
             "Last heartbeat (ms ago)=last_heartbeat_ms_ago"},
    {.name = "hash_password", .args = "PASSWORD", .min = 1, .max = 1, .run = run_hash_password,
     .path = "/api/auth/hash_password/%1", .banner = "Will hash provided password ..."},
    {.name = "help", .args = "", .run = run_help},
};
#define NVERBS (sizeof verbs / sizeof *verbs)

static int run_help(struct ctx *c, const struct verb *v, char **arg, int n)
{
    (void)c, (void)v, (void)arg, (void)n;
    usage_line(stdout, NULL);
    printf("\nOptions (before or after the verb): --url URL (WARRENCTL_URL, default %s), "
           "--user USER (WARRENCTL_USER, guest), --password PASS (WARRENCTL_PASSWORD, guest), "
           "--cacert FILE (WARRENCTL_CACERT: the CA an https:// --url is verified against), "
           "-p VHOST (/), --formatter table|json|tsv, -q/--quiet, --no-table-headers.\n"
           "\nVerbs:\n", options[OPT_URL].def);
    for (size_t i = 0; i < NVERBS; i++)
        printf("  %s %s\n", verbs[i].name, verbs[i].args);
    printf("\nExit codes: 0 ok, 64 usage, 65 refused or not found (400/404), 66 unreadable "
           "file, 69 broker unreachable or failing, 73 unwritable file, 77 not allowed "
           "(401).\n");
    return 0;
}

/* ---- command line ----------------------------------------------------------------------------- */

/* The option arg names ("--name", "--name=value", "-p", "-pvalue"); NULL when unknown.
 * *value points at an attached value or is NULL. */
static const struct option_def *find_option(const char *arg, const char **value)
{
    *value = NULL;
    for (int i = 0; i < OPT_MAX; i++) {
        const struct option_def *o = &options[i];
        size_t len = strlen(o->name);
        if (arg[1] == '-' && !strncmp(arg + 2, o->name, len) &&
            (arg[2 + len] == 0 || arg[2 + len] == '=')) {
            *value = arg[2 + len] ? arg + 3 + len : NULL;
            return o;
        }
        if (arg[1] != '-' && o->short_name && arg[1] == o->short_name) {
            *value = arg[2] ? arg + 2 : NULL;
            return o;
        }
    }
    return NULL;
}

/* Sorts argv into c->opt and the positional words pos (verb first). Returns 0, or the exit
 * code after saying what is wrong; *seen collects the options given. */
static int parse(struct ctx *c, int argc, char **argv, char **pos, int *npos, unsigned *seen)
{
    bool options_end = false;
    *npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *value;
        if (options_end || a[0] != '-' || !a[1]) {
            pos[(*npos)++] = argv[i];
            continue;
        }
        if (!strcmp(a, "--")) {
            options_end = true;
            continue;
        }
        const struct option_def *o = find_option(a, &value);
        if (!o)
            return bad_usage(NULL, "unknown option ", a);
        if (o->takes_value && !value && i + 1 == argc)
            return bad_usage(NULL, "this option needs a value: ", a);
        if (!o->takes_value && value)
            return bad_usage(NULL, "this option takes no value: ", a);
        c->opt[o - options] = o->takes_value ? (value ? value : argv[++i]) : "true";
        *seen |= 1u << (o - options);
    }
    for (int i = 0; i < OPT_MAX; i++) {
        const char *env = options[i].env ? getenv(options[i].env) : NULL;
        if (!c->opt[i])
            c->opt[i] = env && env[0] ? env : options[i].def;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct ctx c = {0};
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    int npos = 0, rc;
    unsigned seen = 0;
    const struct verb *v = NULL;
    if (!pos)
        return no_memory();
    if ((rc = parse(&c, argc, argv, pos, &npos, &seen)))
        goto out;
    for (size_t i = 0; npos && i < NVERBS; i++)
        if (!strcmp(verbs[i].name, pos[0]))
            v = &verbs[i];
    if (c.opt[OPT_HELP] || (npos && !strcmp(pos[0], "help"))) {
        rc = run_help(&c, NULL, NULL, 0);
        goto out;
    }
    int fmt = table_fmt_parse(c.opt[OPT_FORMATTER]);
    int nargs = npos - 1;
    if (!npos)
        rc = bad_usage(NULL, "no verb given (warrenctl --help lists them)", NULL);
    else if (!v)
        rc = bad_usage(NULL, "unknown verb: ", pos[0]);
    else if (nargs < v->min || (v->max >= 0 && nargs > v->max))
        rc = bad_usage(v, "wrong number of arguments for ", v->name);
    else if (seen & ~OPTS_GLOBAL & ~v->opts)
        rc = bad_usage(v, "this verb does not take --",
                       options[__builtin_ctz(seen & ~OPTS_GLOBAL & ~v->opts)].name);
    else if (fmt < 0)
        rc = bad_usage(v, "--formatter must be table, json or tsv, not ", c.opt[OPT_FORMATTER]);
    if (rc)
        goto out;
    c.fmt = (enum table_fmt)fmt;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    c.api.cacert = c.opt[OPT_CACERT];
    if (api_open(&c.api, c.opt[OPT_URL], c.opt[OPT_USER], c.opt[OPT_PASSWORD]) < 0)
        rc = no_memory();
    else
        rc = v->run(&c, v, pos + 1, nargs);
    api_close(&c.api);
    curl_global_cleanup();
out:
    free(pos);
    if (fflush(stdout) != 0 && !rc) {
        fprintf(stderr, "warrenctl: cannot write the output: %s.\n", strerror(errno));
        rc = EXIT_CANTCREATE;
    }
    return rc;
}
