/* filter.c — owns compiled SNS subscription filter policies: the parser/validator (jansson) and
 * the matcher over an AMQP headers table or a JSON body. Does not own the policy text, the
 * message, nor where policies are stored (binding arguments). Invariant: a compiled filter is
 * valid (every operator known, operands typed, numbers in [-1e9, 1e9], at most 150
 * combinations, nesting only in body scope and at most 5 deep) and is never changed after
 * filter_compile, so matching needs no checks and table matching allocates nothing. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "broker/model/filter.h"
#include "protocol/table.h"

/* One condition of a key's list (OR within the list). */
enum fc_kind {
    FC_STR,       /* "v": exact string */
    FC_NUM,       /* 5: exact number (5 == 5.0) */
    FC_BOOL,      /* true / false */
    FC_NULL,      /* null: the key is present with a null (void) value */
    FC_PREFIX,    /* {"prefix": "v"} */
    FC_SUFFIX,    /* {"suffix": "v"} */
    FC_EQ_IC,     /* {"equals-ignore-case": "v"} (ASCII case folding) */
    FC_AB_VALUES, /* {"anything-but": v | [v...]} with strings and numbers */
    FC_AB_PREFIX, /* {"anything-but": {"prefix": "v"}} */
    FC_AB_SUFFIX, /* {"anything-but": {"suffix": "v"}} */
    FC_RANGE,     /* {"numeric": [op, n (, op, n)]} */
    FC_EXISTS,    /* {"exists": bool} */
    FC_CIDR,      /* {"cidr": "10.0.0.0/24"} or an IPv6 prefix */
};

struct fval {
    bool is_num;
    double num;
    amqp_bytes_t s; /* owned (malloc) when !is_num */
};

struct fcond {
    enum fc_kind kind;
    union {
        amqp_bytes_t s; /* owned: STR PREFIX SUFFIX EQ_IC AB_PREFIX AB_SUFFIX */
        double num;
        bool b; /* BOOL EXISTS */
        struct {
            double lo, hi; /* -INFINITY / INFINITY when open */
            bool lo_incl, hi_incl;
        } range;
        struct {
            struct fval *v; /* owned array */
            size_t n;
        } ab;
        struct {
            uint8_t addr[16];
            uint8_t bits;
            bool v6;
        } cidr;
    } u;
};

enum ft_kind {
    FT_LEAF,   /* key: [conditions] */
    FT_NESTED, /* key: {policy} (body scope) */
    FT_OR,     /* "$or": [{policy}, {policy}, ...] */
};

struct fexpr;

/* One term of an AND. */
struct fterm {
    enum ft_kind kind;
    amqp_bytes_t key;      /* owned, NUL-terminated copy; empty for FT_OR */
    struct fcond *conds;   /* owned, FT_LEAF */
    size_t nconds;
    amqp_bytes_t *exact;   /* owned array of borrowed strings (from conds): FT_LEAF with only
                            * FC_STR conditions, else NULL */
    struct fexpr *sub;     /* owned: one for FT_NESTED, nsub branches for FT_OR */
    size_t nsub;
};

/* AND of its terms. */
struct fexpr {
    struct fterm *terms; /* owned */
    size_t nterms;
};

struct filter {
    enum filter_scope scope;
    size_t combinations;
    struct fexpr root;
};

/* ---- compile ---------------------------------------------------------------------------- */

struct ctx {
    enum filter_scope scope;
    char *err;
    size_t errcap;
    char path[256]; /* dotted key path for messages */
};

static int fail(struct ctx *c, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct ctx *c, int rc, const char *fmt, ...)
{
    if (!c->errcap)
        return rc;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->path[0])
        snprintf(c->err, c->errcap, "filter policy: key '%s': %s", c->path, msg);
    else
        snprintf(c->err, c->errcap, "filter policy: %s", msg);
    return rc;
}

static int oom(struct ctx *c)
{
    return fail(c, -ENOMEM, "out of memory");
}

static const char *const reserved[] = {"prefix", "suffix", "equals-ignore-case", "anything-but",
                                       "numeric", "exists", "cidr"};

static bool is_reserved(const char *k)
{
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strcmp(k, reserved[i]) == 0)
            return true;
    return false;
}

static int dup_bytes(amqp_bytes_t *ret, const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        return -ENOMEM;
    memcpy(d, s, n);
    d[n] = 0;
    ret->ptr = (const uint8_t *)d;
    ret->len = (uint32_t)n;
    return 0;
}

static void free_bytes(amqp_bytes_t *b)
{
    free((void *)b->ptr);
    b->ptr = NULL;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static int check_num(struct ctx *c, const json_t *v)
{
    double d = json_number_value(v);
    if (!(d >= -FILTER_NUM_LIMIT && d <= FILTER_NUM_LIMIT))
        return fail(c, -EINVAL, "number %g out of range [-1e9, 1e9]", d);
    return 0;
}

/* A string operand of operator op (non-empty not required: SNS accepts "" as a prefix). */
static int string_operand(struct ctx *c, const char *op, const json_t *v, amqp_bytes_t *ret)
{
    if (!json_is_string(v))
        return fail(c, -EINVAL, "'%s' needs a string, not %s", op, type_name(v));
    if (dup_bytes(ret, json_string_value(v), json_string_length(v)) < 0)
        return oom(c);
    return 0;
}

static int compile_numeric(struct ctx *c, const json_t *v, struct fcond *fc)
{
    if (!json_is_array(v) || json_array_size(v) == 0)
        return fail(c, -EINVAL, "'numeric' needs an array like [\">\", 0, \"<=\", 150]");
    size_t n = json_array_size(v);
    if (n > 4)
        return fail(c, -EINVAL, "'numeric' takes one or two (operator, number) pairs, not %zu "
                                "values", n);
    fc->kind = FC_RANGE;
    fc->u.range.lo = -INFINITY;
    fc->u.range.hi = INFINITY;
    fc->u.range.lo_incl = fc->u.range.hi_incl = false;
    bool have_lo = false, have_hi = false;
    for (size_t i = 0; i < n; i += 2) {
        const json_t *op = json_array_get(v, i), *num = json_array_get(v, i + 1); /* or NULL */
        if (!json_is_string(op))
            return fail(c, -EINVAL, "numeric operator must be a string (=, <, <=, >, >=), "
                                    "not %s", type_name(op));
        const char *o = json_string_value(op);
        if (!json_is_number(num))
            return fail(c, -EINVAL, "numeric operator needs a number after '%s'", o);
        int rc = check_num(c, num);
        if (rc < 0)
            return rc;
        double d = json_number_value(num);
        if (strcmp(o, "=") == 0) {
            if (n != 2)
                return fail(c, -EINVAL, "numeric '=' cannot be combined with another operator");
            fc->u.range.lo = fc->u.range.hi = d;
            fc->u.range.lo_incl = fc->u.range.hi_incl = true;
        } else if (strcmp(o, ">") == 0 || strcmp(o, ">=") == 0) {
            if (have_lo)
                return fail(c, -EINVAL, "numeric range has two lower bounds");
            have_lo = true;
            fc->u.range.lo = d;
            fc->u.range.lo_incl = o[1] == '=';
        } else if (strcmp(o, "<") == 0 || strcmp(o, "<=") == 0) {
            if (have_hi)
                return fail(c, -EINVAL, "numeric range has two upper bounds");
            have_hi = true;
            fc->u.range.hi = d;
            fc->u.range.hi_incl = o[1] == '=';
        } else {
            return fail(c, -EINVAL, "unknown numeric operator '%s' (=, <, <=, >, >=)", o);
        }
    }
    if (have_lo && have_hi &&
        (fc->u.range.lo > fc->u.range.hi ||
         (fc->u.range.lo == fc->u.range.hi && !(fc->u.range.lo_incl && fc->u.range.hi_incl))))
        return fail(c, -EINVAL, "numeric range is empty (%g .. %g)", fc->u.range.lo,
                    fc->u.range.hi);
    return 0;
}

static int compile_anything_but(struct ctx *c, const json_t *v, struct fcond *fc)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        if (json_object_size(v) != 1)
            return fail(c, -EINVAL, "'anything-but' object needs exactly one of prefix, suffix");
        json_object_foreach((json_t *)v, k, x) {
            if (strcmp(k, "prefix") == 0)
                fc->kind = FC_AB_PREFIX;
            else if (strcmp(k, "suffix") == 0)
                fc->kind = FC_AB_SUFFIX;
            else
                return fail(c, -EINVAL, "unknown operator '%s' inside 'anything-but' (prefix, "
                                        "suffix)", k);
            return string_operand(c, k, x, &fc->u.s);
        }
    }
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (json_is_array(v) && n == 0)
        return fail(c, -EINVAL, "'anything-but' needs at least one value");
    fc->kind = FC_AB_VALUES;
    fc->u.ab.v = calloc(n, sizeof *fc->u.ab.v);
    if (!fc->u.ab.v)
        return oom(c);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        struct fval *fv = &fc->u.ab.v[fc->u.ab.n];
        if (json_is_string(e)) {
            if (dup_bytes(&fv->s, json_string_value(e), json_string_length(e)) < 0)
                return oom(c);
        } else if (json_is_number(e)) {
            int rc = check_num(c, e);
            if (rc < 0)
                return rc;
            fv->is_num = true;
            fv->num = json_number_value(e);
        } else {
            return fail(c, -EINVAL, "'anything-but' takes strings and numbers, not %s",
                        type_name(e));
        }
        fc->u.ab.n++;
    }
    return 0;
}

static int compile_cidr(struct ctx *c, const json_t *v, struct fcond *fc)
{
    if (!json_is_string(v))
        return fail(c, -EINVAL, "'cidr' needs a string like \"10.0.0.0/24\", not %s",
                    type_name(v));
    const char *s = json_string_value(v);
    const char *slash = strchr(s, '/');
    char addr[64];
    size_t alen = slash ? (size_t)(slash - s) : 0;
    if (!slash || alen == 0 || alen >= sizeof addr || strlen(s) != json_string_length(v))
        return fail(c, -EINVAL, "'cidr' needs address/prefix-length, not \"%s\"", s);
    memcpy(addr, s, alen);
    addr[alen] = 0;
    fc->kind = FC_CIDR;
    memset(fc->u.cidr.addr, 0, sizeof fc->u.cidr.addr);
    int max;
    if (inet_pton(AF_INET, addr, fc->u.cidr.addr) == 1) {
        fc->u.cidr.v6 = false;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, fc->u.cidr.addr) == 1) {
        fc->u.cidr.v6 = true;
        max = 128;
    } else {
        return fail(c, -EINVAL, "'cidr': \"%s\" is not an IPv4 or IPv6 address", addr);
    }
    const char *b = slash + 1;
    int bits = 0;
    if (!*b)
        return fail(c, -EINVAL, "'cidr' needs a prefix length after '/' in \"%s\"", s);
    for (; *b; b++) {
        if (*b < '0' || *b > '9' || bits > max)
            return fail(c, -EINVAL, "'cidr': bad prefix length in \"%s\"", s);
        bits = bits * 10 + (*b - '0');
    }
    if (bits > max)
        return fail(c, -EINVAL, "'cidr': prefix length %d exceeds %d in \"%s\"", bits, max, s);
    fc->u.cidr.bits = (uint8_t)bits;
    return 0;
}

static int compile_cond(struct ctx *c, const json_t *v, struct fcond *fc)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        fc->kind = FC_STR;
        if (dup_bytes(&fc->u.s, json_string_value(v), json_string_length(v)) < 0)
            return oom(c);
        return 0;
    case JSON_INTEGER:
    case JSON_REAL: {
        int rc = check_num(c, v);
        if (rc < 0)
            return rc;
        fc->kind = FC_NUM;
        fc->u.num = json_number_value(v);
        return 0;
    }
    case JSON_TRUE:
    case JSON_FALSE:
        fc->kind = FC_BOOL;
        fc->u.b = json_is_true(v);
        return 0;
    case JSON_NULL: fc->kind = FC_NULL; return 0;
    case JSON_ARRAY: return fail(c, -EINVAL, "a list cannot hold a list");
    case JSON_OBJECT: break;
    }
    if (json_object_size(v) != 1)
        return fail(c, -EINVAL, "an operator object needs exactly one operator, not %zu",
                    json_object_size(v));
    const char *op;
    json_t *x;
    json_object_foreach((json_t *)v, op, x) {
        if (strcmp(op, "prefix") == 0 || strcmp(op, "suffix") == 0 ||
            strcmp(op, "equals-ignore-case") == 0) {
            fc->kind = op[0] == 'p' ? FC_PREFIX : op[0] == 's' ? FC_SUFFIX : FC_EQ_IC;
            return string_operand(c, op, x, &fc->u.s);
        }
        if (strcmp(op, "anything-but") == 0)
            return compile_anything_but(c, x, fc);
        if (strcmp(op, "numeric") == 0)
            return compile_numeric(c, x, fc);
        if (strcmp(op, "exists") == 0) {
            if (!json_is_boolean(x))
                return fail(c, -EINVAL, "'exists' needs true or false, not %s", type_name(x));
            fc->kind = FC_EXISTS;
            fc->u.b = json_is_true(x);
            return 0;
        }
        if (strcmp(op, "cidr") == 0)
            return compile_cidr(c, x, fc);
        return fail(c, -EINVAL, "unknown operator '%s'", op);
    }
    return -EINVAL; /* not reached */
}

static void free_cond(struct fcond *fc)
{
    switch (fc->kind) {
    case FC_STR:
    case FC_PREFIX:
    case FC_SUFFIX:
    case FC_EQ_IC:
    case FC_AB_PREFIX:
    case FC_AB_SUFFIX: free_bytes(&fc->u.s); break;
    case FC_AB_VALUES:
        for (size_t i = 0; i < fc->u.ab.n; i++)
            if (!fc->u.ab.v[i].is_num)
                free_bytes(&fc->u.ab.v[i].s);
        free(fc->u.ab.v);
        break;
    default: break;
    }
}

static void free_expr(struct fexpr *e);

static void free_term(struct fterm *t)
{
    free_bytes(&t->key);
    for (size_t i = 0; i < t->nconds; i++)
        free_cond(&t->conds[i]);
    free(t->conds);
    free(t->exact);
    for (size_t i = 0; i < t->nsub; i++)
        free_expr(&t->sub[i]);
    free(t->sub);
}

static void free_expr(struct fexpr *e)
{
    for (size_t i = 0; i < e->nterms; i++)
        free_term(&e->terms[i]);
    free(e->terms);
    e->terms = NULL;
    e->nterms = 0;
}

#define COMBO_CAP 1000000u /* counts saturate here: only "> 150" matters */

static size_t sat_mul(size_t a, size_t b)
{
    return a && b > COMBO_CAP / a ? COMBO_CAP : a * b > COMBO_CAP ? COMBO_CAP : a * b;
}

static int compile_expr(struct ctx *c, const json_t *obj, int depth, struct fexpr *e,
                        size_t *ret_combos);

static int compile_leaf(struct ctx *c, const json_t *v, struct fterm *t, size_t *ret_combos)
{
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (n == 0)
        return fail(c, -EINVAL, "empty list (give at least one value or condition)");
    t->kind = FT_LEAF;
    t->conds = calloc(n, sizeof *t->conds);
    if (!t->conds)
        return oom(c);
    bool all_str = true;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        t->conds[i].kind = FC_NULL; /* nothing owned until compiled */
        int rc = compile_cond(c, e, &t->conds[i]);
        t->nconds = i + 1;
        if (rc < 0)
            return rc;
        all_str = all_str && t->conds[i].kind == FC_STR;
    }
    if (all_str) {
        t->exact = malloc(n * sizeof *t->exact);
        if (!t->exact)
            return oom(c);
        for (size_t i = 0; i < n; i++)
            t->exact[i] = t->conds[i].u.s;
    }
    *ret_combos = n;
    return 0;
}

/* "$or" is an operator only with an array of at least 2 objects none of which uses a reserved
 * keyword as a field name; otherwise it is an ordinary key (SNS). */
static bool is_or(const char *k, const json_t *v)
{
    if (strcmp(k, "$or") != 0 || !json_is_array(v) || json_array_size(v) < 2)
        return false;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_object(e))
            return false;
        const char *ek;
        json_t *ev;
        json_object_foreach(e, ek, ev)
            if (is_reserved(ek))
                return false;
    }
    return true;
}

static int compile_term(struct ctx *c, const char *k, size_t klen, const json_t *v, int depth,
                        struct fterm *t, size_t *ret_combos)
{
    if (is_or(k, v)) {
        size_t n = json_array_size(v), sum = 0;
        t->kind = FT_OR;
        t->sub = calloc(n, sizeof *t->sub);
        if (!t->sub)
            return oom(c);
        for (size_t i = 0; i < n; i++) {
            size_t cb = 0;
            t->nsub = i + 1;
            int rc = compile_expr(c, json_array_get(v, i), depth, &t->sub[i], &cb);
            if (rc < 0)
                return rc;
            sum = sum + cb > COMBO_CAP ? COMBO_CAP : sum + cb;
        }
        *ret_combos = sum;
        return 0;
    }
    if (dup_bytes(&t->key, k, klen) < 0)
        return oom(c);
    if (json_is_object(v)) {
        if (c->scope != FILTER_SCOPE_BODY)
            return fail(c, -EINVAL, "nested policies need scope MessageBody");
        if (depth + 1 > FILTER_MAX_DEPTH)
            return fail(c, -EINVAL, "nested deeper than %d levels", FILTER_MAX_DEPTH);
        t->kind = FT_NESTED;
        t->sub = calloc(1, sizeof *t->sub);
        if (!t->sub)
            return oom(c);
        t->nsub = 1;
        return compile_expr(c, v, depth + 1, t->sub, ret_combos);
    }
    return compile_leaf(c, v, t, ret_combos);
}

static int compile_expr(struct ctx *c, const json_t *obj, int depth, struct fexpr *e,
                        size_t *ret_combos)
{
    size_t n = json_object_size(obj), combos = 1;
    if (n == 0)
        return fail(c, -EINVAL, "empty object");
    e->terms = calloc(n, sizeof *e->terms);
    if (!e->terms)
        return oom(c);
    size_t plen = strlen(c->path);
    const char *k;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach((json_t *)obj, k, klen, v) {
        struct fterm *t = &e->terms[e->nterms++];
        size_t cb = 0;
        if (strcmp(k, "$or") != 0 || !is_or(k, v))
            snprintf(c->path + plen, sizeof c->path - plen, "%s%s", plen ? "." : "", k);
        int rc = compile_term(c, k, klen, v, depth, t, &cb);
        if (rc < 0)
            return rc;
        c->path[plen] = 0;
        combos = sat_mul(combos, cb);
    }
    *ret_combos = combos;
    return 0;
}

int filter_compile(const char *json, size_t len, enum filter_scope scope,
                   struct filter **ret_filter, char *err, size_t errcap)
{
    struct ctx c = {.scope = scope, .err = err, .errcap = errcap};
    if (errcap)
        err[0] = 0;
    if ((unsigned)scope >= FILTER_SCOPE_MAX)
        return fail(&c, -EINVAL, "unknown scope %d", (int)scope);
    if (len > FILTER_MAX_SIZE)
        return fail(&c, -EINVAL, "larger than 256 KiB (%zu bytes)", len);
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return fail(&c, -EINVAL, "not valid JSON: %s at line %d column %d", je.text, je.line,
                    je.column);
    int rc;
    struct filter *f = calloc(1, sizeof *f);
    if (!f) {
        rc = oom(&c);
        goto out;
    }
    f->scope = scope;
    if (!json_is_object(root)) {
        rc = fail(&c, -EINVAL, "must be a JSON object, not %s", type_name(root));
        goto out;
    }
    f->combinations = 1;
    if (json_object_size(root) > 0) {
        rc = compile_expr(&c, root, 1, &f->root, &f->combinations);
        if (rc < 0)
            goto out;
    }
    if (f->combinations > FILTER_MAX_COMBINATIONS) {
        c.path[0] = 0;
        rc = fail(&c, -EINVAL, "more than %d combinations (%s%zu)", FILTER_MAX_COMBINATIONS,
                  f->combinations >= COMBO_CAP ? "at least " : "", f->combinations);
        goto out;
    }
    *ret_filter = f;
    f = NULL;
    rc = 0;
out:
    filter_free(f);
    json_decref(root);
    return rc;
}

struct filter *filter_free(struct filter *f)
{
    if (f) {
        free_expr(&f->root);
        free(f);
    }
    return NULL;
}

enum filter_scope filter_scope(const struct filter *f)
{
    return f->scope;
}

size_t filter_combinations(const struct filter *f)
{
    return f->combinations;
}

int filter_exact_key(const struct filter *f, amqp_bytes_t *ret_key, const amqp_bytes_t **ret_vals,
                     size_t *ret_n)
{
    for (size_t i = 0; i < f->root.nterms; i++) {
        const struct fterm *t = &f->root.terms[i];
        if (t->kind == FT_LEAF && t->exact) {
            *ret_key = t->key;
            *ret_vals = t->exact;
            *ret_n = t->nconds;
            return 1;
        }
    }
    return 0;
}

/* ---- match ------------------------------------------------------------------------------ */

/* A message value seen through one lens, whether it came from a field table or from JSON. */
enum fv_kind { V_ABSENT, V_NULL, V_STR, V_NUM, V_BOOL, V_TARRAY, V_JARRAY, V_OBJECT };

struct mval {
    enum fv_kind k;
    amqp_bytes_t s;    /* V_STR; V_TARRAY: the array body */
    double num;        /* V_NUM */
    bool b;            /* V_BOOL */
    const json_t *j;   /* V_JARRAY */
};

static double dec_value(const struct amqp_field *fl)
{
    /* One division by an exact power of ten rounds as parsing "12.345" does, so a decimal
     * equals the policy's number written the same way. Unsigned, as headers.c and RabbitMQ. */
    double p = 1;
    for (int i = 0; i < fl->v.dec.scale; i++)
        p *= 10; /* exact up to 1e22 */
    return fl->v.dec.value / p;
}

static struct mval from_field(const struct amqp_field *fl)
{
    struct mval m = {.k = V_NUM};
    switch (fl->type) {
    case 'S':
    case 'x': m.k = V_STR; m.s = fl->v.bytes; break;
    case 'b':
    case 's':
    case 'I':
    case 'l':
    case 'L': m.num = (double)fl->v.i; break;
    case 'B':
    case 'u':
    case 'i':
    case 'T': m.num = (double)fl->v.u; break;
    case 'f': m.num = fl->v.f; break;
    case 'd': m.num = fl->v.d; break;
    case 'D': m.num = dec_value(fl); break;
    case 't': m.k = V_BOOL; m.b = fl->v.b; break;
    case 'A': m.k = V_TARRAY; m.s = fl->v.bytes; break;
    case 'F': m.k = V_OBJECT; break;
    default: m.k = V_NULL; break; /* V */
    }
    return m;
}

static struct mval from_json(const json_t *j)
{
    struct mval m = {.k = V_ABSENT};
    if (!j)
        return m;
    switch (json_typeof(j)) {
    case JSON_STRING:
        m.k = V_STR;
        m.s = (amqp_bytes_t){(const uint8_t *)json_string_value(j),
                             (uint32_t)json_string_length(j)};
        break;
    case JSON_INTEGER:
    case JSON_REAL: m.k = V_NUM; m.num = json_number_value(j); break;
    case JSON_TRUE:
    case JSON_FALSE: m.k = V_BOOL; m.b = json_is_true(j); break;
    case JSON_NULL: m.k = V_NULL; break;
    case JSON_ARRAY: m.k = V_JARRAY; m.j = j; break;
    case JSON_OBJECT: m.k = V_OBJECT; break;
    }
    return m;
}

static bool has_prefix(amqp_bytes_t s, amqp_bytes_t p)
{
    return s.len >= p.len && (p.len == 0 || memcmp(s.ptr, p.ptr, p.len) == 0);
}

static bool has_suffix(amqp_bytes_t s, amqp_bytes_t p)
{
    return s.len >= p.len && (p.len == 0 || memcmp(s.ptr + s.len - p.len, p.ptr, p.len) == 0);
}

static int ascii_lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch;
}

static bool eq_ignore_case(amqp_bytes_t a, amqp_bytes_t b)
{
    if (a.len != b.len)
        return false;
    for (uint32_t i = 0; i < a.len; i++)
        if (ascii_lower(a.ptr[i]) != ascii_lower(b.ptr[i]))
            return false;
    return true;
}

static bool in_cidr(const struct fcond *fc, amqp_bytes_t s)
{
    char buf[64];
    uint8_t a[16];
    if (s.len == 0 || s.len >= sizeof buf || memchr(s.ptr, 0, s.len))
        return false;
    memcpy(buf, s.ptr, s.len);
    buf[s.len] = 0;
    if (inet_pton(fc->u.cidr.v6 ? AF_INET6 : AF_INET, buf, a) != 1)
        return false;
    unsigned bits = fc->u.cidr.bits, full = bits / 8, rest = bits % 8;
    if (memcmp(a, fc->u.cidr.addr, full) != 0)
        return false;
    if (rest) {
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        return (a[full] & mask) == (fc->u.cidr.addr[full] & mask);
    }
    return true;
}

/* A condition against one non-array value (exists handled by the caller). */
static bool cond_scalar(const struct fcond *fc, const struct mval *m)
{
    switch (fc->kind) {
    case FC_STR: return m->k == V_STR && amqp_bytes_eq(m->s, fc->u.s);
    case FC_NUM: return m->k == V_NUM && m->num == fc->u.num;
    case FC_BOOL: return m->k == V_BOOL && m->b == fc->u.b;
    case FC_NULL: return m->k == V_NULL;
    case FC_PREFIX: return m->k == V_STR && has_prefix(m->s, fc->u.s);
    case FC_SUFFIX: return m->k == V_STR && has_suffix(m->s, fc->u.s);
    case FC_EQ_IC: return m->k == V_STR && eq_ignore_case(m->s, fc->u.s);
    case FC_AB_PREFIX: return m->k == V_STR && !has_prefix(m->s, fc->u.s);
    case FC_AB_SUFFIX: return m->k == V_STR && !has_suffix(m->s, fc->u.s);
    case FC_AB_VALUES:
        if (m->k == V_ABSENT || m->k == V_OBJECT)
            return false;
        for (size_t i = 0; i < fc->u.ab.n; i++) {
            const struct fval *v = &fc->u.ab.v[i];
            if (v->is_num ? m->k == V_NUM && m->num == v->num
                          : m->k == V_STR && amqp_bytes_eq(m->s, v->s))
                return false;
        }
        return true;
    case FC_RANGE:
        if (m->k != V_NUM)
            return false;
        if (m->num < fc->u.range.lo || (m->num == fc->u.range.lo && !fc->u.range.lo_incl))
            return false;
        if (m->num > fc->u.range.hi || (m->num == fc->u.range.hi && !fc->u.range.hi_incl))
            return false;
        return m->num == m->num; /* NaN matches no range */
    case FC_CIDR: return m->k == V_STR && in_cidr(fc, m->s);
    case FC_EXISTS: return false;
    }
    return false;
}

/* SNS: "exists": true needs a non-null, non-empty value; false is its negation. */
static bool present(const struct mval *m)
{
    switch (m->k) {
    case V_ABSENT:
    case V_NULL: return false;
    case V_STR: return m->s.len > 0;
    case V_TARRAY: return m->s.len > 0;
    case V_JARRAY: return json_array_size(m->j) > 0;
    default: return true;
    }
}

static bool cond_match(const struct fcond *fc, const struct mval *m)
{
    if (fc->kind == FC_EXISTS)
        return present(m) == fc->u.b;
    if (m->k == V_TARRAY) { /* any element */
        struct amqp_table_iter it;
        struct amqp_field el;
        amqp_table_iter_init(&it, m->s);
        while (amqp_array_next(&it, &el) == 1) {
            struct mval em = from_field(&el);
            if (cond_match(fc, &em))
                return true;
        }
        return false;
    }
    if (m->k == V_JARRAY) {
        size_t i;
        json_t *e;
        json_array_foreach(m->j, i, e) {
            struct mval em = from_json(e);
            if (cond_match(fc, &em))
                return true;
        }
        return false;
    }
    return cond_scalar(fc, m);
}

static bool leaf_match(const struct fterm *t, const struct mval *m)
{
    for (size_t i = 0; i < t->nconds; i++)
        if (cond_match(&t->conds[i], m))
            return true;
    return false;
}

static bool expr_table(const struct fexpr *e, amqp_bytes_t tbl)
{
    for (size_t i = 0; i < e->nterms; i++) {
        const struct fterm *t = &e->terms[i];
        bool ok = false;
        if (t->kind == FT_OR) {
            for (size_t b = 0; b < t->nsub && !ok; b++)
                ok = expr_table(&t->sub[b], tbl);
        } else if (t->kind == FT_LEAF) {
            struct amqp_field fl;
            struct mval m = {.k = V_ABSENT};
            if (amqp_table_get_bytes(tbl, t->key, &fl) == 1)
                m = from_field(&fl);
            ok = leaf_match(t, &m);
        }
        if (!ok)
            return false;
    }
    return true;
}

bool filter_match_table(const struct filter *f, amqp_bytes_t headers)
{
    if (f->root.nterms == 0)
        return true;
    if (f->scope != FILTER_SCOPE_ATTRIBUTES || headers.len == 0)
        return false;
    return expr_table(&f->root, headers);
}

/* obj: the JSON object at this level, or NULL when the body has none there. */
static bool expr_json(const struct fexpr *e, const json_t *obj)
{
    for (size_t i = 0; i < e->nterms; i++) {
        const struct fterm *t = &e->terms[i];
        bool ok = false;
        if (t->kind == FT_OR) {
            for (size_t b = 0; b < t->nsub && !ok; b++)
                ok = expr_json(&t->sub[b], obj);
        } else {
            const json_t *v = obj ? json_object_getn(obj, (const char *)t->key.ptr, t->key.len)
                                  : NULL;
            if (t->kind == FT_LEAF) {
                struct mval m = from_json(v);
                ok = leaf_match(t, &m);
            } else if (json_is_array(v) && json_array_size(v) > 0) {
                size_t j;
                json_t *el;
                json_array_foreach(v, j, el) {
                    if ((ok = expr_json(t->sub, json_is_object(el) ? el : NULL)))
                        break;
                }
            } else {
                ok = expr_json(t->sub, json_is_object(v) ? v : NULL);
            }
        }
        if (!ok)
            return false;
    }
    return true;
}

bool filter_match_json(const struct filter *f, const void *json_object)
{
    const json_t *o = json_object;
    if (f->root.nterms == 0)
        return true;
    if (f->scope != FILTER_SCOPE_BODY || !json_is_object(o) || json_object_size(o) == 0)
        return false;
    return expr_json(&f->root, o);
}

bool filter_match_body(const struct filter *f, const void *body, size_t len)
{
    if (f->root.nterms == 0)
        return true;
    if (f->scope != FILTER_SCOPE_BODY)
        return false;
    /* Integers as reals: numbers compare as doubles anyway, and an integer beyond 64 bits
     * must not make the whole body unreadable. */
    json_t *o = json_loadb(body, len, JSON_DECODE_INT_AS_REAL, NULL);
    if (!o)
        return false;
    bool ok = filter_match_json(f, o);
    json_decref(o);
    return ok;
}
