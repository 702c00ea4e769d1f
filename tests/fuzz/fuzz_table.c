/* fuzz_table.c — libFuzzer target for AMQP field tables (protocol/table.c) and the model code
 * that reads them. The input is a table body (no length prefix), also tried as an array body.
 * Owns nothing between runs but a broker without storage holding one policy and one operator
 * policy (built once). Invariants checked, for a table that validates: iteration reaches the end
 * without error and every lookup finds its key; rewriting every entry through the table writer
 * gives the same entries (floats by bits, NaNs as NaNs); table -> JSON -> table -> JSON is a
 * fixed point; copying a table minus some keys, and the arguments a policy leaves, are valid
 * tables; a table matches (headers exchange) and is equivalent (declare arguments) to itself. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "broker/model/args.h"
#include "broker/model/broker.h"
#include "broker/model/errors.h"
#include "broker/model/headers.h"
#include "broker/model/jsontable.h"
#include "broker/model/msgedit.h"
#include "broker/model/params.h"
#include "broker/model/queue.h"
#include "lib/log.h"
#include "protocol/table.h"

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink; /* keeps reads from being optimised away */

/* What a walk of a validated table found. */
struct shape {
    unsigned entries;   /* top-level entries */
    bool nul_key;       /* some key (at any depth) holds a NUL: the writer takes C strings */
    bool nan;           /* some float (at any depth) is a NaN */
    bool top_nan;       /* ... at the top level */
    bool dup_key;       /* two top-level entries share a key (or there are more than 64) */
};

static void walk(amqp_bytes_t b, bool is_array, int depth, struct shape *sh);

static void walk_value(const struct amqp_field *v, int depth, struct shape *sh, bool top)
{
    bool nan = false;
    switch (v->type) {
    case 'F': walk(v->v.bytes, false, depth + 1, sh); break;
    case 'A': walk(v->v.bytes, true, depth + 1, sh); break;
    case 'S':
    case 'x':
        for (uint32_t i = 0; i < v->v.bytes.len; i++)
            sink ^= v->v.bytes.ptr[i];
        break;
    case 'f': nan = isnan(v->v.f); break;
    case 'd': nan = isnan(v->v.d); break;
    default: sink ^= (uint8_t)v->type;
    }
    sh->nan |= nan;
    if (top)
        sh->top_nan |= nan;
}

static void walk(amqp_bytes_t b, bool is_array, int depth, struct shape *sh)
{
    CHECK(depth < AMQP_TABLE_MAX_DEPTH);
    struct amqp_table_iter it;
    struct amqp_field v;
    amqp_bytes_t key;
    amqp_bytes_t seen[64];
    unsigned nseen = 0;
    int rc;
    amqp_table_iter_init(&it, b);
    while ((rc = is_array ? amqp_array_next(&it, &v) : amqp_table_next(&it, &key, &v)) > 0) {
        if (!is_array) {
            if (memchr(key.ptr, 0, key.len))
                sh->nul_key = true;
            if (depth == 0 && nseen == 64)
                sh->dup_key = true; /* unknown past 64 entries: assume some */
            if (depth == 0 && nseen < 64) {
                for (unsigned i = 0; i < nseen; i++)
                    if (amqp_bytes_eq(seen[i], key))
                        sh->dup_key = true;
                seen[nseen++] = key;
                /* Lookup finds an entry with this key: this one or an earlier one. */
                if (!memchr(key.ptr, 0, key.len)) {
                    char k[256];
                    memcpy(k, key.ptr, key.len);
                    k[key.len] = 0;
                    struct amqp_field got;
                    CHECK(amqp_table_get(b, k, &got) == 1);
                    CHECK(got.type == v.type || nseen > 1);
                }
            }
        }
        if (depth == 0)
            sh->entries++;
        walk_value(&v, depth, sh, depth == 0);
    }
    CHECK(rc == 0);
    CHECK(it.p == it.end);
}

/* ---- rewrite through the writer --------------------------------------------------------- */

static void rewrite(struct amqp_wbuf *w, amqp_bytes_t b, bool is_array);

static void rewrite_value(struct amqp_wbuf *w, const struct amqp_field *v)
{
    size_t mark;
    switch (v->type) {
    case 't': amqp_tw_bool(w, v->v.b); break;
    case 'b': case 's': case 'I': case 'l': case 'L': amqp_tw_int(w, v->type, v->v.i); break;
    case 'B': case 'u': case 'i': case 'T': amqp_tw_int(w, v->type, (int64_t)v->v.u); break;
    case 'f': amqp_tw_float(w, v->v.f, true); break;
    case 'd': amqp_tw_float(w, v->v.d, false); break;
    case 'D': amqp_tw_decimal(w, v->v.dec.scale, v->v.dec.value); break;
    case 'S': case 'x': amqp_tw_bytes(w, v->type, v->v.bytes); break;
    case 'V': amqp_tw_void(w); break;
    case 'F':
        mark = amqp_tw_table(w);
        rewrite(w, v->v.bytes, false);
        amqp_tw_end(w, mark);
        break;
    case 'A':
        mark = amqp_tw_array(w);
        rewrite(w, v->v.bytes, true);
        amqp_tw_end(w, mark);
        break;
    default: CHECK(!"a type letter validation let through");
    }
}

static void rewrite(struct amqp_wbuf *w, amqp_bytes_t b, bool is_array)
{
    struct amqp_table_iter it;
    struct amqp_field v;
    amqp_bytes_t key;
    amqp_table_iter_init(&it, b);
    while ((is_array ? amqp_array_next(&it, &v) : amqp_table_next(&it, &key, &v)) > 0) {
        if (!is_array) {
            char k[256];
            memcpy(k, key.ptr, key.len);
            k[key.len] = 0;
            amqp_tw_key(w, k);
        }
        rewrite_value(w, &v);
    }
}

static bool same_entries(amqp_bytes_t a, amqp_bytes_t b, bool is_array);

static bool same_value(const struct amqp_field *x, const struct amqp_field *y)
{
    if (x->type != y->type)
        return false;
    switch (x->type) {
    case 't': return x->v.b == y->v.b;
    case 'f': {
        /* A signalling NaN may come back quiet (the writer takes a double). */
        if (isnan(x->v.f))
            return isnan(y->v.f);
        return memcmp(&x->v.f, &y->v.f, sizeof x->v.f) == 0;
    }
    case 'd': return memcmp(&x->v.d, &y->v.d, sizeof x->v.d) == 0;
    case 'D': return x->v.dec.scale == y->v.dec.scale && x->v.dec.value == y->v.dec.value;
    case 'S': case 'x': return amqp_bytes_eq(x->v.bytes, y->v.bytes);
    case 'F': return same_entries(x->v.bytes, y->v.bytes, false);
    case 'A': return same_entries(x->v.bytes, y->v.bytes, true);
    case 'V': return true;
    case 'B': case 'u': case 'i': case 'T': return x->v.u == y->v.u;
    default: return x->v.i == y->v.i;
    }
}

static bool same_entries(amqp_bytes_t a, amqp_bytes_t b, bool is_array)
{
    struct amqp_table_iter ia, ib;
    struct amqp_field va, vb;
    amqp_bytes_t ka = {0}, kb = {0};
    amqp_table_iter_init(&ia, a);
    amqp_table_iter_init(&ib, b);
    for (;;) {
        int ra = is_array ? amqp_array_next(&ia, &va) : amqp_table_next(&ia, &ka, &va);
        int rb = is_array ? amqp_array_next(&ib, &vb) : amqp_table_next(&ib, &kb, &vb);
        if (ra != rb)
            return false;
        if (ra <= 0)
            return ra == 0;
        if (!amqp_bytes_eq(ka, kb) || !same_value(&va, &vb))
            return false;
    }
}

/* ---- the model's readers ---------------------------------------------------------------- */

static struct broker model;
static struct vhost *model_vh;
static uv_loop_t loop;

static bool skip_x(amqp_bytes_t key)
{
    return key.len >= 2 && key.ptr[0] == 'x' && key.ptr[1] == '-';
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_threshold = LOG_ERROR;
    uv_loop_init(&loop);
    broker_init(&model, &loop);
    model_vh = broker_add_vhost(&model, "/");
    CHECK(model_vh);
    struct err err = {""};
    json_t *pol = json_pack(
        "{s:s, s:{s:i, s:i, s:i, s:i, s:s, s:s, s:s, s:i, s:s, s:i}, s:i, s:s}", "pattern", ".*",
        "definition", "max-length", 10, "message-ttl", 60000, "expires", 3600000,
        "max-length-bytes", 1 << 20, "dead-letter-exchange", "dlx", "dead-letter-routing-key",
        "dead", "overflow", "reject-publish", "delivery-limit", 3, "alternate-exchange", "ae",
        "consumer-timeout", 5000, "priority", 1, "apply-to", "all");
    json_t *op = json_pack("{s:s, s:{s:i, s:i}, s:i, s:s}", "pattern", "^q", "definition",
                           "max-length", 5, "message-ttl", 1000, "priority", 0, "apply-to",
                           "queues");
    CHECK(pol && op);
    if (param_set(&model, PARAM_POLICY, "/", "p", pol, &err) < 0 ||
        param_set(&model, PARAM_OPERATOR_POLICY, "/", "op", op, &err) < 0) {
        fprintf(stderr, "fuzz_table: cannot set the policies: %s\n", err.text);
        abort();
    }
    json_decref(pol);
    json_decref(op);
    return 0;
}

static void json_fixed_point(amqp_bytes_t tbl)
{
    json_t *j1 = jt_table(tbl);
    CHECK(j1 != NULL);
    struct amqp_wbuf w = {0};
    size_t mark = amqp_tw_begin(&w);
    jt_put_table(&w, j1);
    amqp_tw_end(&w, mark);
    CHECK(!w.failed);
    amqp_bytes_t t2 = amqp_tw_body(&w, mark);
    CHECK(amqp_table_validate(t2, 0) == 0);
    json_t *j2 = jt_table(t2);
    CHECK(j2 != NULL);
    CHECK(json_equal(j1, j2));
    char *text = json_dumps(j1, JSON_COMPACT | JSON_ENSURE_ASCII);
    free(text);
    json_decref(j2);
    json_decref(j1);
    amqp_wbuf_free(&w);
}

static void model_readers(amqp_bytes_t tbl, const struct shape *sh)
{
    struct err err = {""};
    /* Declare arguments: checks, options, equivalence with itself. */
    if (args_check_queue(&err, "q", "/", tbl) == 0) {
        struct queue_opts o;
        args_queue_opts(tbl, &o);
        sink ^= (uint8_t)o.max_priority;
    }
    (void)args_check_x_match(&err, tbl);
    if (!sh->top_nan) {
        CHECK(args_equivalent(&err, "queue 'q' in vhost '/'", tbl, tbl, args_queue_keys) == 0);
        CHECK(args_equivalent(&err, "exchange 'x' in vhost '/'", tbl, tbl,
                              args_exchange_keys) == 0);
    }
    (void)args_equivalent(&err, "queue 'q' in vhost '/'", tbl, (amqp_bytes_t){0},
                          args_queue_keys);

    /* Headers exchange: every kind, against itself and against nothing. */
    enum headers_match kind = headers_match_kind(tbl);
    for (int hm = HM_ALL; hm <= HM_ANY_WITH_X; hm++) {
        bool self = headers_match((enum headers_match)hm, tbl, tbl);
        if (!sh->dup_key && !sh->top_nan && (hm == HM_ALL || hm == HM_ALL_WITH_X))
            CHECK(self);
        (void)headers_match((enum headers_match)hm, tbl, (amqp_bytes_t){0});
        (void)headers_match((enum headers_match)hm, (amqp_bytes_t){0}, tbl);
    }
    sink ^= (uint8_t)kind;

    /* Copy without the x- keys (dead-lettering and direct reply-to rewrite headers so). */
    struct amqp_wbuf w = {0};
    size_t mark = amqp_tw_begin(&w);
    msg_copy_table(&w, tbl, skip_x);
    amqp_tw_end(&w, mark);
    CHECK(!w.failed);
    CHECK(amqp_table_validate(amqp_tw_body(&w, mark), 0) == 0);
    amqp_wbuf_free(&w);

    /* The arguments a queue and an exchange have under the policies. */
    for (int queue = 0; queue < 2; queue++) {
        struct amqp_wbuf pw = {0};
        amqp_bytes_t eff;
        const struct param *pol, *op;
        CHECK(policy_effective(&model, model_vh, "q1", queue, tbl, &pw, &eff, &pol, &op) == 0);
        CHECK(pol != NULL);
        CHECK(amqp_table_validate(eff, 0) == 0);
        amqp_wbuf_free(&pw);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > UINT32_MAX)
        return 0;
    amqp_bytes_t b = {size ? data : NULL, (uint32_t)size};

    /* The iterator on bytes nobody validated still stays inside them. */
    struct amqp_table_iter it;
    struct amqp_field v;
    amqp_bytes_t key;
    amqp_table_iter_init(&it, b);
    while (amqp_table_next(&it, &key, &v) > 0)
        CHECK(it.p <= it.end);
    amqp_table_iter_init(&it, b);
    while (amqp_array_next(&it, &v) > 0)
        CHECK(it.p <= it.end);

    if (amqp_array_validate(b, 0) == 0) {
        struct shape sh = {0};
        walk(b, true, 0, &sh);
        if (!sh.nul_key) {
            struct amqp_wbuf w = {0};
            size_t mark = amqp_tw_begin(&w);
            rewrite(&w, b, true);
            amqp_tw_end(&w, mark);
            CHECK(!w.failed);
            amqp_bytes_t out = amqp_tw_body(&w, mark);
            CHECK(out.len == b.len);
            CHECK(same_entries(b, out, true));
            amqp_wbuf_free(&w);
        }
    }

    int rc = amqp_table_validate(b, 0);
    CHECK(rc == 0 || rc == AMQP_E_SHORT || rc == AMQP_E_FIELD_TYPE || rc == AMQP_E_DEPTH);
    if (rc < 0)
        return 0;
    struct shape sh = {0};
    walk(b, false, 0, &sh);
    if (!sh.nul_key) {
        struct amqp_wbuf w = {0};
        size_t mark = amqp_tw_begin(&w);
        rewrite(&w, b, false);
        amqp_tw_end(&w, mark);
        CHECK(!w.failed);
        amqp_bytes_t out = amqp_tw_body(&w, mark);
        CHECK(out.len == b.len);
        CHECK(same_entries(b, out, false));
        amqp_wbuf_free(&w);
    }
    json_fixed_point(b);
    model_readers(b, &sh);
    return 0;
}
