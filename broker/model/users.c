/* users.c — owns users, their permissions and topic permissions (users.h), and writes them and
 * the vhosts' records to storage. Patterns are compiled once, when set or recovered; a match is
 * one pcre2_match with the broker's one match block (the loop is single-threaded).
 * Invariant: memory and the storage batch change together; a failed set changes neither. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lib/log.h"
#include "broker/model/broker.h"
#include "broker/model/errors.h"
#include "broker/model/users.h"
#include "broker/model/vhost.h"
#include "storage/batch.h"
#include "storage/env.h"
#include "storage/records.h"

static bool writable(const struct broker *b)
{
    return b->store && !b->recovering;
}

static struct st_bytes sbs(const char *s)
{
    return (struct st_bytes){s, s ? strlen(s) : 0};
}

static void changed(struct broker *b)
{
    b->access_gen++;
}

/* ---- patterns -------------------------------------------------------------------------- */

static void re_free(struct perm_re *re)
{
    pcre2_code_free(re->code);
    free(re->src);
    memset(re, 0, sizeof *re);
}

/* Compiles src (already expanded) into *re. empty_means: the pattern '' stands for ("" : grants
 * nothing; "^$" for topic permissions). 0, -EINVAL (err says why) or -ENOMEM. */
static int re_compile(struct perm_re *re, const char *given, const char *src, bool topic,
                      const char *what, struct err *err)
{
    memset(re, 0, sizeof *re);
    if (!(re->src = strdup(given)))
        return -ENOMEM;
    if (!src[0] && !topic) {
        re->kind = PERM_RE_NONE;
        return 0;
    }
    if (!src[0])
        src = "^$";
    static const char *const all[] = {".*", "^.*", ".*$", "^.*$"};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(src, all[i]) == 0) {
            re->kind = PERM_RE_ALL;
            return 0;
        }
    int code;
    PCRE2_SIZE off;
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED, 0, &code, &off, NULL);
    if (!c) {
        char msg[160];
        pcre2_get_error_message(code, (PCRE2_UCHAR *)msg, sizeof msg);
        re_free(re);
        return err_set(err, -EINVAL, "%s pattern '%s' is not a valid regular expression: %s at "
                       "offset %zu", what, src, msg, (size_t)off);
    }
    (void)pcre2_jit_compile(c, PCRE2_JIT_COMPLETE); /* interpreted when JIT is unavailable */
    re->kind = PERM_RE_PCRE;
    re->code = c;
    return 0;
}

int perm_check_pattern(const char *src, const char *what, struct err *err)
{
    struct perm_re re;
    int rc = re_compile(&re, src, src, false, what, err);
    if (rc == 0)
        re_free(&re);
    return rc;
}

bool perm_re_match(struct broker *b, const struct perm_re *re, const char *name, size_t len)
{
    if (re->kind != PERM_RE_PCRE)
        return re->kind == PERM_RE_ALL;
    if (!b->re_match && !(b->re_match = pcre2_match_data_create(1, NULL)))
        return false; /* out of memory: refuse rather than allow */
    return pcre2_match(re->code, (PCRE2_SPTR)name, len, 0, 0, b->re_match, NULL) >= 0;
}

/* Replaces every {username} and {vhost} in src (RabbitMQ's topic-permission variables). */
static char *expand(const char *src, const char *user, const char *vhost)
{
    size_t cap = strlen(src) + 1, n = 0;
    for (const char *p = src; (p = strchr(p, '{')); p++)
        cap += strlen(user) + strlen(vhost);
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (const char *p = src; *p;) {
        const char *v = !strncmp(p, "{username}", 10) ? user : !strncmp(p, "{vhost}", 7) ? vhost
                                                                                          : NULL;
        if (v) {
            memcpy(out + n, v, strlen(v));
            n += strlen(v);
            p += v == user ? 10 : 7;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = 0;
    return out;
}

/* ---- users ------------------------------------------------------------------------------ */

struct user *users_find(struct broker *b, const char *name, size_t len)
{
    return hmap_get(&b->users, name, len);
}

unsigned users_tag_bits(const char *tags)
{
    static const struct { const char *name; unsigned bit; } known[] = {
        {"administrator", USER_TAG_ADMINISTRATOR}, {"monitoring", USER_TAG_MONITORING},
        {"policymaker", USER_TAG_POLICYMAKER}, {"management", USER_TAG_MANAGEMENT},
        {"impersonator", USER_TAG_IMPERSONATOR},
    };
    unsigned bits = 0;
    for (const char *p = tags; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m && p[m - 1] == ' ')
            m--;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            if (m == strlen(known[i].name) && !memcmp(p, known[i].name, m))
                bits |= known[i].bit;
        p += n;
    }
    return bits;
}

static void persist_user(struct broker *b, const struct user *u)
{
    if (!writable(b))
        return;
    struct st_user r = {sbs(u->name), sbs(u->hash), sbs(password_algo_name(u->algo)),
                        sbs(u->tags)};
    (void)storage_put_user(b->store, &r);
}

static void perm_free(struct perm *p);

static void user_free(struct user *u)
{
    void *v;
    for (uint32_t it = 0; hmap_next(&u->perms, &it, &v);)
        perm_free(v);
    hmap_free(&u->perms);
    free(u->name);
    free(u->tags);
    free(u);
}

/* Creates or updates the user in memory; writes nothing. */
static int user_set(struct broker *b, const char *name, const char *hash,
                    enum password_algo algo, const char *tags, struct user **ret,
                    struct err *err)
{
    size_t len = strlen(name);
    if (len > ST_KEY_NAME_MAX)
        return err_set(err, -EINVAL, "user name of %zu bytes (at most %d)", len,
                       ST_KEY_NAME_MAX);
    if (!hash)
        hash = "";
    if (hash[0] && password_check(hash, algo, "", 0) < 0)
        return err_set(err, -EINVAL, "password_hash of user '%s' is not a %s hash", name,
                       password_algo_name(algo) ? password_algo_name(algo) : "known");
    char *t = strdup(tags ? tags : "");
    if (!t)
        return -ENOMEM;
    struct user *u = users_find(b, name, len);
    if (!u) {
        if (!(u = calloc(1, sizeof *u)) || !(u->name = strdup(name)) ||
            hmap_put(&b->users, u->name, len, u) < 0) {
            if (u)
                free(u->name);
            free(u);
            free(t);
            return -ENOMEM;
        }
    }
    snprintf(u->hash, sizeof u->hash, "%s", hash);
    u->algo = algo;
    free(u->tags);
    u->tags = t;
    u->tag_bits = users_tag_bits(t);
    *ret = u;
    changed(b);
    return 0;
}

int users_put(struct broker *b, const char *name, const char *hash, enum password_algo algo,
              const char *tags, struct err *err)
{
    struct user *u;
    int rc = user_set(b, name, hash, algo, tags, &u, err);
    if (rc == 0)
        persist_user(b, u);
    return rc;
}

int users_put_password(struct broker *b, const char *name, const char *password,
                       const char *tags, struct err *err)
{
    char hash[PASSWORD_HASH_MAX];
    int rc = password_hash(PASSWORD_SHA256, password, strlen(password), hash, sizeof hash);
    if (rc < 0)
        return err_set(err, rc == -EIO ? -EIO : -EINVAL, "cannot hash the password of user "
                       "'%s'", name);
    return users_put(b, name, hash, PASSWORD_SHA256, tags, err);
}

void users_delete(struct broker *b, struct user *u)
{
    if (writable(b)) {
        void *v;
        for (uint32_t it = 0; hmap_next(&u->perms, &it, &v);)
            perm_clear(b, u, ((struct perm *)v)->vhost);
        (void)storage_del_user(b->store, sbs(u->name));
    }
    hmap_del(&b->users, u->name, strlen(u->name));
    user_free(u);
    changed(b);
}

void users_free_all(struct broker *b)
{
    void *v;
    for (uint32_t it = 0; hmap_next(&b->users, &it, &v);)
        user_free(v);
    hmap_free(&b->users);
    pcre2_match_data_free(b->re_match);
    b->re_match = NULL;
}

/* ---- permissions ------------------------------------------------------------------------- */

static void topic_free(struct topic_perm *t)
{
    re_free(&t->re[ACCESS_WRITE]);
    re_free(&t->re[ACCESS_READ]);
    free(t->exchange);
    free(t);
}

static void perm_free(struct perm *p)
{
    void *v;
    for (uint32_t it = 0; hmap_next(&p->topics, &it, &v);)
        topic_free(v);
    hmap_free(&p->topics);
    for (int i = 0; i < ACCESS_PERM_MAX; i++)
        re_free(&p->re[i]);
    free(p->vhost);
    free(p);
}

struct perm *perm_find(const struct user *u, const char *vhost, size_t len)
{
    return hmap_get(&u->perms, vhost, len);
}

static void persist_perm(struct broker *b, const struct perm *p)
{
    if (!writable(b))
        return;
    struct st_permission r = {sbs(p->user->name), sbs(p->vhost), sbs(p->re[0].src),
                              sbs(p->re[1].src), sbs(p->re[2].src)};
    (void)storage_put_permission(b->store, &r);
}

static const char *const perm_names[] = {"configure", "write", "read"};

/* Compiles the three patterns into re[] (all or none). */
static int compile3(struct perm_re re[ACCESS_PERM_MAX], const char *const src[ACCESS_PERM_MAX],
                    struct err *err)
{
    for (int i = 0; i < ACCESS_PERM_MAX; i++) {
        int rc = re_compile(&re[i], src[i] ? src[i] : "", src[i] ? src[i] : "", false,
                            perm_names[i], err);
        if (rc < 0) {
            while (i--)
                re_free(&re[i]);
            return rc;
        }
    }
    return 0;
}

/* u's struct perm in vhost, created (granting nothing) when missing. */
static struct perm *perm_get(struct user *u, const char *vhost)
{
    struct perm *p = perm_find(u, vhost, strlen(vhost));
    if (p)
        return p;
    if (!(p = calloc(1, sizeof *p)) || !(p->vhost = strdup(vhost)) ||
        hmap_put(&u->perms, p->vhost, strlen(vhost), p) < 0) {
        if (p)
            free(p->vhost);
        free(p);
        return NULL;
    }
    p->user = u;
    for (int i = 0; i < ACCESS_PERM_MAX; i++)
        if (!(p->re[i].src = strdup(""))) {
            hmap_del(&u->perms, p->vhost, strlen(vhost));
            perm_free(p);
            return NULL;
        }
    return p;
}

static int perm_set_mem(struct broker *b, struct user *u, const char *vhost,
                        const char *const src[ACCESS_PERM_MAX], struct perm **ret,
                        struct err *err)
{
    struct perm_re re[ACCESS_PERM_MAX];
    int rc = compile3(re, src, err);
    if (rc < 0)
        return rc;
    struct perm *p = perm_get(u, vhost);
    if (!p) {
        for (int i = 0; i < ACCESS_PERM_MAX; i++)
            re_free(&re[i]);
        return -ENOMEM;
    }
    for (int i = 0; i < ACCESS_PERM_MAX; i++) {
        re_free(&p->re[i]);
        p->re[i] = re[i];
    }
    *ret = p;
    changed(b);
    return 0;
}

int perm_set(struct broker *b, struct user *u, const char *vhost, const char *configure,
             const char *write, const char *read, struct err *err)
{
    if (!hmap_get(&b->vhosts, vhost, strlen(vhost)))
        return err_set(err, -EINVAL, "vhost '%s' does not exist", vhost);
    const char *src[ACCESS_PERM_MAX] = {configure, write, read};
    struct perm *p;
    int rc = perm_set_mem(b, u, vhost, src, &p, err);
    if (rc == 0)
        persist_perm(b, p);
    return rc;
}

static void topic_del(struct broker *b, struct perm *p, struct topic_perm *t)
{
    if (writable(b))
        (void)storage_del_topic_permission(b->store, sbs(p->user->name), sbs(p->vhost),
                                           sbs(t->exchange));
    hmap_del(&p->topics, t->exchange, strlen(t->exchange));
    topic_free(t);
}

void perm_clear(struct broker *b, struct user *u, const char *vhost)
{
    struct perm *p = perm_find(u, vhost, strlen(vhost));
    if (!p)
        return;
    void *v;
    for (uint32_t it = 0; hmap_next(&p->topics, &it, &v);)
        topic_del(b, p, v);
    if (writable(b))
        (void)storage_del_permission(b->store, sbs(u->name), sbs(p->vhost));
    hmap_del(&u->perms, p->vhost, strlen(p->vhost));
    perm_free(p);
    changed(b);
}

static int topic_set_mem(struct broker *b, struct user *u, const char *vhost,
                         const char *exchange, const char *write, const char *read,
                         struct perm **ret_perm, struct err *err)
{
    struct topic_perm *t = calloc(1, sizeof *t);
    char *w = expand(write ? write : "", u->name, vhost);
    char *r = expand(read ? read : "", u->name, vhost);
    int rc = -ENOMEM;
    if (!t || !w || !r || !(t->exchange = strdup(exchange)))
        goto fail;
    if ((rc = re_compile(&t->re[ACCESS_WRITE], write ? write : "", w, true, "write", err)) < 0)
        goto fail;
    if ((rc = re_compile(&t->re[ACCESS_READ], read ? read : "", r, true, "read", err)) < 0)
        goto fail;
    struct perm *p = perm_get(u, vhost);
    rc = -ENOMEM;
    if (!p)
        goto fail;
    struct topic_perm *old = hmap_get(&p->topics, exchange, strlen(exchange));
    if (old) {
        hmap_del(&p->topics, exchange, strlen(exchange));
        topic_free(old);
    }
    if (hmap_put(&p->topics, t->exchange, strlen(exchange), t) < 0)
        goto fail;
    free(w);
    free(r);
    *ret_perm = p;
    changed(b);
    return 0;
fail:
    if (t)
        topic_free(t);
    free(w);
    free(r);
    return rc;
}

int topic_perm_set(struct broker *b, struct user *u, const char *vhost, const char *exchange,
                   const char *write, const char *read, struct err *err)
{
    if (!hmap_get(&b->vhosts, vhost, strlen(vhost)))
        return err_set(err, -EINVAL, "vhost '%s' does not exist", vhost);
    if (strlen(exchange) > ST_KEY_NAME_MAX)
        return err_set(err, -EINVAL, "exchange name of %zu bytes (at most %d)", strlen(exchange),
                       ST_KEY_NAME_MAX);
    bool had = perm_find(u, vhost, strlen(vhost)) != NULL;
    struct perm *p;
    int rc = topic_set_mem(b, u, vhost, exchange, write, read, &p, err);
    if (rc < 0 || !writable(b))
        return rc;
    if (!had) /* the '' permission created beside it is stored too, so that it comes back */
        persist_perm(b, p);
    struct st_topic_permission r = {sbs(u->name), sbs(vhost), sbs(exchange),
                                    sbs(write ? write : ""), sbs(read ? read : "")};
    (void)storage_put_topic_permission(b->store, &r);
    return 0;
}

void topic_perm_clear(struct broker *b, struct user *u, const char *vhost, const char *exchange)
{
    struct perm *p = perm_find(u, vhost, strlen(vhost));
    struct topic_perm *t = p ? hmap_get(&p->topics, exchange, strlen(exchange)) : NULL;
    if (t) {
        topic_del(b, p, t);
        changed(b);
    }
}

void users_forget_vhost(struct broker *b, const char *vhost)
{
    void *v;
    for (uint32_t it = 0; hmap_next(&b->users, &it, &v);)
        perm_clear(b, v, vhost);
}

/* ---- vhost records ------------------------------------------------------------------------ */

void users_persist_vhost(struct broker *b, const struct vhost *vh)
{
    if (!writable(b))
        return;
    struct st_vhost r = {sbs(vh->name), sbs(vh->description), sbs(vh->default_queue_type),
                         vh->max_connections, vh->max_queues};
    (void)storage_put_vhost(b->store, &r);
}

/* ---- recovery ----------------------------------------------------------------------------- */

/* A NUL-terminated copy of a record's bytes (records are not NUL-terminated). */
static char *cstr(struct st_bytes s)
{
    char *p = malloc(s.len + 1);
    if (p) {
        memcpy(p, s.p, s.len);
        p[s.len] = 0;
    }
    return p;
}

int users_recover_vhost(struct broker *b, const struct st_vhost *r)
{
    char *name = cstr(r->name), *desc = cstr(r->description), *dqt = cstr(r->default_queue_type);
    int rc = -ENOMEM;
    struct vhost *vh = name ? hmap_get(&b->vhosts, name, strlen(name)) : NULL;
    if (name && desc && dqt && (vh || (vh = broker_add_vhost(b, name)))) {
        free(vh->description);
        free(vh->default_queue_type);
        vh->description = desc;
        vh->default_queue_type = dqt;
        vh->max_connections = r->max_connections;
        vh->max_queues = r->max_queues;
        desc = dqt = NULL;
        rc = 0;
    }
    free(name);
    free(desc);
    free(dqt);
    return rc;
}

int users_recover_user(struct broker *b, const struct st_user *r)
{
    char *name = cstr(r->name), *hash = cstr(r->password_hash), *algo = cstr(r->hashing),
         *tags = cstr(r->tags);
    int rc = -ENOMEM;
    if (name && hash && algo && tags) {
        int a = password_algo_parse(algo);
        struct err err;
        struct user *u;
        rc = a < 0 ? -EINVAL : user_set(b, name, hash, (enum password_algo)a, tags, &u, &err);
        if (rc == -EINVAL) {
            log_error("stored user '%s' has a hash that does not decode (%s); it cannot log in "
                      "until its password is set again", name, algo);
            rc = user_set(b, name, "", PASSWORD_SHA256, tags, &u, &err);
        }
    }
    free(name);
    free(hash);
    free(algo);
    free(tags);
    return rc;
}

/* The user and vhost a permission record names, or 0 to skip it (logged). */
static int owner(struct broker *b, struct st_bytes user, struct st_bytes vhost, const char *what,
                 struct user **ret_u, char **ret_vhost)
{
    *ret_u = users_find(b, user.p, user.len);
    if (!*ret_u || !hmap_get(&b->vhosts, vhost.p, vhost.len)) {
        log_warn("stored %s of user '%.*s' in vhost '%.*s' names a missing user or vhost; "
                 "skipping it", what, (int)user.len, (const char *)user.p, (int)vhost.len,
                 (const char *)vhost.p);
        return 0;
    }
    return (*ret_vhost = cstr(vhost)) ? 1 : -ENOMEM;
}

int users_recover_permission(struct broker *b, const struct st_permission *r)
{
    struct user *u;
    char *vhost;
    int rc = owner(b, r->user, r->vhost, "permission", &u, &vhost);
    if (rc <= 0)
        return rc;
    char *src[ACCESS_PERM_MAX] = {cstr(r->configure), cstr(r->write), cstr(r->read)};
    rc = -ENOMEM;
    if (src[0] && src[1] && src[2]) {
        struct perm *p;
        struct err err;
        rc = perm_set_mem(b, u, vhost, (const char *const *)src, &p, &err);
        if (rc == -EINVAL) {
            log_error("stored permission of user '%s' in vhost '%s': %s; granting nothing "
                      "until it is set again", u->name, vhost, err.text);
            rc = perm_get(u, vhost) ? 0 : -ENOMEM;
        }
    }
    for (int i = 0; i < ACCESS_PERM_MAX; i++)
        free(src[i]);
    free(vhost);
    return rc;
}

int users_recover_topic_permission(struct broker *b, const struct st_topic_permission *r)
{
    struct user *u;
    char *vhost;
    int rc = owner(b, r->user, r->vhost, "topic permission", &u, &vhost);
    if (rc <= 0)
        return rc;
    char *x = cstr(r->exchange), *w = cstr(r->write), *rd = cstr(r->read);
    rc = -ENOMEM;
    if (x && w && rd) {
        struct perm *p;
        struct err err;
        rc = topic_set_mem(b, u, vhost, x, w, rd, &p, &err);
        if (rc == -EINVAL) {
            log_error("stored topic permission of user '%s' in vhost '%s' on exchange '%s': %s; "
                      "skipping it", u->name, vhost, x, err.text);
            rc = 0;
        }
    }
    free(x);
    free(w);
    free(rd);
    free(vhost);
    return rc;
}
