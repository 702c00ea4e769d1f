/* test_topic.c — broker/topic.h: routing answers taken from RabbitMQ, add/remove/count,
 * pruning, one report per (pattern, value) pair, '#' blow-up guards, keys longer than a
 * shortstr, a 100k-binding trie and a randomized comparison with a reference matcher.
 * Every row of rabbit_rows[] was checked against RabbitMQ 3.10.8 (one queue bound per pattern
 * to a topic exchange, each key published once, deliveries read back with basic.get). */
#include <errno.h>
#include <stdbool.h>

#include "unit.h"

#include "broker/model/topic.h"

/* ---- helpers ------------------------------------------------------------------------- */

#define assert_errno(expr, want)                                                               \
    do {                                                                                       \
        int rc_ = (expr), want_ = (want);                                                      \
        if (rc_ != want_)                                                                      \
            fail_msg("%s = %d (%s), want %d (%s)", #expr, rc_, strerror(-rc_), want_,          \
                     strerror(-want_));                                                        \
    } while (0)

#define assert_trie_ok(t, want_nodes)                                                          \
    do {                                                                                       \
        size_t nodes_ = 0;                                                                     \
        assert_errno(topic_check((t), &nodes_), 0);                                            \
        if ((size_t)(want_nodes) != SIZE_MAX && nodes_ != (size_t)(want_nodes))                \
            fail_msg("%zu trie nodes, want %zu", nodes_, (size_t)(want_nodes));                \
    } while (0)
#define ANY_NODES SIZE_MAX

/* Expands "{x.}3y" to "x.x.x.y": long keys and patterns stay readable in the tables. */
static amqp_bytes_t expand(const char *spec, char *buf, size_t cap)
{
    size_t len = 0;
    for (const char *p = spec; *p;) {
        if (*p != '{') {
            assert_true(len < cap);
            buf[len++] = *p++;
            continue;
        }
        const char *unit = p + 1, *close = strchr(unit, '}');
        assert_non_null(close);
        char *end;
        unsigned long rep = strtoul(close + 1, &end, 10);
        for (unsigned long i = 0; i < rep; i++) {
            assert_true(len + (size_t)(close - unit) <= cap);
            memcpy(buf + len, unit, (size_t)(close - unit));
            len += (size_t)(close - unit);
        }
        p = end;
    }
    return (amqp_bytes_t){(const uint8_t *)buf, (uint32_t)len};
}

/* Counts reports per value; values are &base[i] or NULL. */
struct hits {
    const char *base; /* borrowed */
    uint32_t *count;  /* owned: one per value */
    size_t nvalues, nulls, total;
};

static void hits_init(struct hits *h, const char *base, size_t nvalues)
{
    h->base = base;
    h->nvalues = nvalues;
    h->nulls = h->total = 0;
    h->count = calloc(nvalues ? nvalues : 1, sizeof *h->count);
    assert_non_null(h->count);
}

static void hits_clear(struct hits *h)
{
    memset(h->count, 0, h->nvalues * sizeof *h->count);
    h->nulls = h->total = 0;
}

static void on_hit(void *value, void *arg)
{
    struct hits *h = arg;
    h->total++;
    if (!value) {
        h->nulls++;
        return;
    }
    uintptr_t i = (uintptr_t)value - (uintptr_t)h->base;
    if (i >= h->nvalues)
        fail_msg("reported a value that was never stored");
    h->count[i]++;
}

/* Matches key with both topic_match and topic__match_walk; they must agree. Leaves the
 * topic_match counts in h. */
static void match_both(const struct topic_trie *t, amqp_bytes_t key, struct hits *h)
{
    struct hits w;
    hits_init(&w, h->base, h->nvalues);
    hits_clear(h);
    topic_match(t, key, on_hit, h);
    topic__match_walk(t, key, on_hit, &w);
    if (w.total != h->total || w.nulls != h->nulls ||
        memcmp(w.count, h->count, h->nvalues * sizeof *h->count) != 0)
        fail_msg("topic_match (%zu reports) and topic__match_walk (%zu) disagree on key %.*s",
                 h->total, w.total, (int)key.len, (const char *)key.ptr);
    free(w.count);
}

/* The reference: RabbitMQ's split_topic_key/1 and the recursive definition of a match. */
struct words {
    uint32_t n;
    amqp_bytes_t w[TOPIC_PATTERN_MAX + 2];
};

static void split(amqp_bytes_t s, struct words *ret)
{
    ret->n = 0;
    if (!s.len)
        return;
    uint32_t from = 0;
    for (uint32_t i = 0; i <= s.len; i++) {
        if (i == s.len || s.ptr[i] == '.') {
            assert_true(ret->n < TOPIC_PATTERN_MAX + 2);
            ret->w[ret->n++] = (amqp_bytes_t){s.ptr + from, i - from};
            from = i + 1;
        }
    }
}

static bool ref_at(const struct words *p, uint32_t i, const struct words *k, uint32_t j)
{
    if (i == p->n)
        return j == k->n;
    if (amqp_bytes_eq_str(p->w[i], "#"))
        return ref_at(p, i + 1, k, j) || (j < k->n && ref_at(p, i, k, j + 1));
    if (j == k->n)
        return false;
    return (amqp_bytes_eq_str(p->w[i], "*") || amqp_bytes_eq(p->w[i], k->w[j])) &&
           ref_at(p, i + 1, k, j + 1);
}

static bool ref_match(amqp_bytes_t pattern, amqp_bytes_t key)
{
    static struct words p, k;
    split(pattern, &p);
    split(key, &k);
    return ref_at(&p, 0, &k, 0);
}

/* ---- what RabbitMQ does -------------------------------------------------------------- */

struct row {
    const char *pattern, *key; /* "{x.}3y" = "x.x.x.y" */
    int match;
};

/* Checked against RabbitMQ 3.10.8 (see the file header). Worth noting: "" has no words (so
 * "*" and "*.#" do not match it but "#" and "#.#" do), "." has two empty words, empty words
 * match only empty words or '*', and "a*", "**", "#a" are plain words. */
static const struct row rabbit_rows[] = {
    {"#", "", 1},
    {"#", "a", 1},
    {"#", ".", 1},
    {"#", "a.b.c", 1},
    {"#", "#", 1},
    {"*", "", 0},
    {"*", "a", 1},
    {"*", ".", 0},
    {"*", "a.b", 0},
    {"*", "*", 1},
    {"*", "#", 1},
    {"", "", 1},
    {"", "a", 0},
    {"", ".", 0},
    {".", "", 0},
    {".", ".", 1},
    {".", "..", 0},
    {"..", ".", 0},
    {"..", "..", 1},
    {"..", "...", 0},
    {"a", "a", 1},
    {"a", "b", 0},
    {"a", "a.", 0},
    {"a", ".a", 0},
    {"a", "*", 0},
    {"a", "ab", 0},
    {"a.b", "a.b", 1},
    {"a.b", "a.b.c", 0},
    {"a.b", "b.a", 0},
    {"a.b.c", "a.b.c", 1},
    {"a.b.c", "a.b", 0},
    {"a.#", "a", 1},
    {"a.#", "a.", 1},
    {"a.#", "a.b", 1},
    {"a.#", "a.b.c", 1},
    {"a.#", "b", 0},
    {"a.#", ".a", 0},
    {"a.#", "", 0},
    {"#.a", "a", 1},
    {"#.a", ".a", 1},
    {"#.a", "x.a.y", 0},
    {"#.a", "b.a", 1},
    {"#.a", "a.a.a", 1},
    {"#.a", "a.", 0},
    {"#.a", "", 0},
    {"a.*", "a", 0},
    {"a.*", "a.", 1},
    {"a.*", "a.b", 1},
    {"a.*", "a.b.c", 0},
    {"a.*", "a.*", 1},
    {"*.a", "a", 0},
    {"*.a", ".a", 1},
    {"*.a", "b.a", 1},
    {"*.*", "a", 0},
    {"*.*", ".", 1},
    {"*.*", "a.b", 1},
    {"*.*", "a.b.c", 0},
    {"*.*.*", "..", 1},
    {"*.*.*", "a.b.c", 1},
    {"*.*.*", "a.b", 0},
    {"a.*.b", "a..b", 1},
    {"a.*.b", "a.x.b", 1},
    {"a.*.b", "a.b", 0},
    {"a.*.b", "a.x.y.b", 0},
    {"a.#.b", "a.b", 1},
    {"a.#.b", "a..b", 1},
    {"a.#.b", "a.x.b", 1},
    {"a.#.b", "a.x.y.b", 1},
    {"a.#.b", "a.b.b", 1},
    {"a.#.b", "a.b.c", 0},
    {"a.#.b", "b.a.b", 0},
    {"a.#.c", "a.c", 1},
    {"a.#.c", "a.x.c", 1},
    {"a.#.c", "a.b.c.d", 0},
    {"a.#.a", "a", 0},
    {"a.#.a", "a.a", 1},
    {"a.#.a", "a.a.a", 1},
    {"a.#.a", "a.b.a", 1},
    {"#.a.#", "a", 1},
    {"#.a.#", "x.a.y", 1},
    {"#.a.#", "b", 0},
    {"#.a.#", "b.a", 1},
    {"#.b.#", "b", 1},
    {"#.b.#", "a.b.c.d", 1},
    {"#.#", "", 1},
    {"#.#", "a", 1},
    {"#.#", "a.b.c", 1},
    {"#.#.a", "a", 1},
    {"#.#.a", "b.a", 1},
    {"#.#.a", "a.b", 0},
    {"a.#.#", "a", 1},
    {"a.#.#", "a.b.c", 1},
    {"a.#.#.b", "a.b", 1},
    {"a.#.#.b", "a.x.y.b", 1},
    {"a.#.#.b", "a", 0},
    {"#.#.#.#.#.#", "", 1},
    {"#.#.#.#.#.#", "a.b.c.d", 1},
    {"#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.b", "b", 1},
    {"#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.b", "a.b.c.d", 0},
    {"#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.b", "x.b", 1},
    {"*.#", "", 0},
    {"*.#", "a", 1},
    {"*.#", "a.b.c", 1},
    {"#.*", "", 0},
    {"#.*", ".", 1},
    {"#.*", "a.b.c", 1},
    {"*.#.*", "a", 0},
    {"*.#.*", "a.b", 1},
    {"*.#.*", "a.b.c", 1},
    {"#.*.#", "", 0},
    {"#.*.#", "a", 1},
    {"a.#.*", "a", 0},
    {"a.#.*", "a.b", 1},
    {"a.*.#.b", "a.b", 0},
    {"a.*.#.b", "a.x.b", 1},
    {"a.*.#.b", "a.x.y.b", 1},
    {"*.*.#", "a", 0},
    {"*.*.#", "a.b", 1},
    {"#.*.*", "a..b", 1},
    {"*.#.*.#", "a", 0},
    {"*.#.*.#", "a.b", 1},
    {"a.", "a.", 1},
    {"a.", "a", 0},
    {"a.", "a.b", 0},
    {".a", ".a", 1},
    {".a", "a", 0},
    {"*.", "a.", 1},
    {"*.", "", 0},
    {"*.", "a", 0},
    {".*", ".a", 1},
    {".*", ".", 1},
    {"#.", "", 0},
    {"#.", "a", 0},
    {"#.", "a.", 1},
    {"#.", ".", 1},
    {".#", "", 0},
    {".#", ".", 1},
    {".#", ".a", 1},
    {".#", "a", 0},
    {"a*", "a", 0},
    {"a*", "a*", 1},
    {"a*", "ab", 0},
    {"*a", "a", 0},
    {"a.b*", "a.b", 0},
    {"a.b*", "a*.b", 0},
    {"**", "**", 1},
    {"**", "a", 0},
    {"a.**", "a.b", 0},
    {"##", "##", 1},
    {"##", "", 0},
    {"##", "a", 0},
    {"a.##", "a", 0},
    {"#a", "a", 0},
    {"#a", "#", 0},
    {"a#", "a", 0},
    {"a.#", "a.#", 1},
    {"#", "{a.}127b", 1},
    {"#", "{.}255", 1},
    {"#", "{x}255", 1},
    {"#", "{w.}127a", 1},
    {"*", "{a.}127b", 0},
    {"*", "{.}255", 0},
    {"*", "{x}255", 1},
    {"*", "{w.}127a", 0},
    {"a.#", "{a.}127b", 1},
    {"a.#", "{.}255", 0},
    {"a.#", "{x}255", 0},
    {"a.#", "{w.}127a", 0},
    {"#.a", "{a.}127b", 0},
    {"#.a", "{.}255", 0},
    {"#.a", "{x}255", 0},
    {"#.a", "{w.}127a", 1},
    {"#.b", "{a.}127b", 1},
    {"#.b", "{.}255", 0},
    {"#.b", "{x}255", 0},
    {"#.b", "{w.}127a", 0},
    {"a.#.b", "{a.}127b", 1},
    {"a.#.b", "{.}255", 0},
    {"a.#.b", "{x}255", 0},
    {"a.#.b", "{w.}127a", 0},
    {"#.a.#", "{a.}127b", 1},
    {"#.a.#", "{.}255", 0},
    {"#.a.#", "{x}255", 0},
    {"#.a.#", "{w.}127a", 1},
    {"{*.}127*", "{a.}127b", 1},
    {"{*.}127*", "{.}255", 0},
    {"{*.}127*", "{x}255", 0},
    {"{*.}127*", "{w.}127a", 1},
    {"{*.}127b", "{a.}127b", 1},
    {"{*.}127b", "{.}255", 0},
    {"{*.}127b", "{x}255", 0},
    {"{*.}127b", "{w.}127a", 0},
    {"{*.}126*", "{a.}127b", 0},
    {"{*.}126*", "{.}255", 0},
    {"{*.}126*", "{x}255", 0},
    {"{*.}126*", "{w.}127a", 0},
    {"#.{*.}126*", "{a.}127b", 1},
    {"#.{*.}126*", "{.}255", 1},
    {"#.{*.}126*", "{x}255", 0},
    {"#.{*.}126*", "{w.}127a", 1},
    {"{.}255", "{a.}127b", 0},
    {"{.}255", "{.}255", 1},
    {"{.}255", "{x}255", 0},
    {"{.}255", "{w.}127a", 0},
    {"#.#", "{a.}127b", 1},
    {"#.#", "{.}255", 1},
    {"#.#", "{x}255", 1},
    {"#.#", "{w.}127a", 1},
    {"*.#", "{a.}127b", 1},
    {"*.#", "{.}255", 1},
    {"*.#", "{x}255", 1},
    {"*.#", "{w.}127a", 1},
    {"#.*", "{a.}127b", 1},
    {"#.*", "{.}255", 1},
    {"#.*", "{x}255", 1},
    {"#.*", "{w.}127a", 1},
    {"{x}255", "{a.}127b", 0},
    {"{x}255", "{.}255", 0},
    {"{x}255", "{x}255", 1},
    {"{x}255", "{w.}127a", 0},
    {"*.#.a", "{a.}127b", 0},
    {"*.#.a", "{.}255", 0},
    {"*.#.a", "{x}255", 0},
    {"*.#.a", "{w.}127a", 1},
    {"w.#", "{a.}127b", 0},
    {"w.#", "{.}255", 0},
    {"w.#", "{x}255", 0},
    {"w.#", "{w.}127a", 1},
    {"w.#.b", "{a.}127b", 0},
    {"w.#.b", "{.}255", 0},
    {"w.#.b", "{x}255", 0},
    {"w.#.b", "{w.}127a", 0},
    {"#.#.a", "{a.}127b", 0},
    {"#.#.a", "{.}255", 0},
    {"#.#.a", "{x}255", 0},
    {"#.#.a", "{w.}127a", 1},
    {"#.", "{a.}127b", 0},
    {"#.", "{.}255", 1},
    {"#.", "{x}255", 0},
    {"#.", "{w.}127a", 0},
    {".#", "{a.}127b", 0},
    {".#", "{.}255", 1},
    {".#", "{x}255", 0},
    {".#", "{w.}127a", 0},
};
#define NROWS (sizeof rabbit_rows / sizeof rabbit_rows[0])

static void test_rabbitmq_rows(void **state)
{
    (void)state;
    static char pbuf[512], kbuf[512];
    char slot[1];
    struct hits h;
    hits_init(&h, slot, 1);
    for (size_t r = 0; r < NROWS; r++) {
        const struct row *row = &rabbit_rows[r];
        amqp_bytes_t p = expand(row->pattern, pbuf, sizeof pbuf);
        amqp_bytes_t k = expand(row->key, kbuf, sizeof kbuf);
        struct topic_trie *t = topic_new();
        assert_non_null(t);
        assert_errno(topic_add(t, p, &slot[0]), 0);
        assert_trie_ok(t, ANY_NODES);
        match_both(t, k, &h);
        if (h.total != (size_t)row->match)
            fail_msg("pattern \"%s\" key \"%s\": %zu reports, RabbitMQ routes %d", row->pattern,
                     row->key, h.total, row->match);
        if (ref_match(p, k) != (row->match != 0))
            fail_msg("the reference matcher disagrees with RabbitMQ on \"%s\" / \"%s\"",
                     row->pattern, row->key);
        topic_free(t);
    }
    free(h.count);
}

/* All the table's patterns in one trie: each key must reach exactly its own rows' values. */
static void test_rabbitmq_rows_together(void **state)
{
    (void)state;
    static char pbuf[512], kbuf[512];
    static char slot[NROWS];
    struct topic_trie *t = topic_new();
    assert_non_null(t);
    for (size_t r = 0; r < NROWS; r++)
        assert_errno(topic_add(t, expand(rabbit_rows[r].pattern, pbuf, sizeof pbuf), &slot[r]), 0);
    assert_int_equal(topic_count(t), NROWS);
    assert_trie_ok(t, ANY_NODES);
    struct hits h;
    hits_init(&h, slot, NROWS);
    for (size_t r = 0; r < NROWS; r++) {
        amqp_bytes_t k = expand(rabbit_rows[r].key, kbuf, sizeof kbuf);
        match_both(t, k, &h);
        for (size_t q = 0; q < NROWS; q++) {
            if (strcmp(rabbit_rows[q].key, rabbit_rows[r].key) != 0)
                continue;
            if (h.count[q] != (uint32_t)rabbit_rows[q].match)
                fail_msg("pattern \"%s\" key \"%s\": %u reports among all patterns, want %d",
                         rabbit_rows[q].pattern, rabbit_rows[q].key, h.count[q],
                         rabbit_rows[q].match);
        }
        for (size_t q = 0; q < NROWS; q++)
            assert_true(h.count[q] <= 1);
    }
    free(h.count);
    topic_free(t);
}

/* ---- add, remove, count -------------------------------------------------------------- */

static void test_add_remove(void **state)
{
    (void)state;
    char v[4];
    struct hits h;
    hits_init(&h, v, 4);
    struct topic_trie *t = topic_new();
    assert_non_null(t);
    assert_int_equal(topic_count(t), 0);
    topic_match(t, AMQP_BYTES_LIT("a"), on_hit, &h);
    assert_int_equal(h.total, 0);

    assert_errno(topic_add(t, AMQP_BYTES_LIT("a.b"), &v[0]), 0);
    assert_errno(topic_add(t, AMQP_BYTES_LIT("a.b"), &v[0]), -EEXIST);
    assert_errno(topic_add(t, AMQP_BYTES_LIT("a.b"), &v[1]), 0);
    assert_errno(topic_add(t, AMQP_BYTES_LIT("a.*"), &v[0]), 0);
    assert_errno(topic_add(t, AMQP_BYTES_LIT(""), &v[2]), 0);
    assert_errno(topic_add(t, AMQP_BYTES_LIT(""), &v[2]), -EEXIST);
    assert_errno(topic_add(t, AMQP_BYTES_LIT("a.b"), NULL), 0); /* NULL is a value too */
    assert_errno(topic_add(t, AMQP_BYTES_LIT("a.b"), NULL), -EEXIST);
    assert_int_equal(topic_count(t), 5);
    assert_trie_ok(t, 4); /* root, a, a.b, a.* */

    /* Patterns are copied: the caller's buffer may change afterwards. */
    char buf[] = "x.y";
    assert_errno(topic_add(t, (amqp_bytes_t){(const uint8_t *)buf, 3}, &v[3]), 0);
    memcpy(buf, "q.q", 3);
    match_both(t, AMQP_BYTES_LIT("x.y"), &h);
    assert_int_equal(h.count[3], 1);
    assert_errno(topic_remove(t, AMQP_BYTES_LIT("x.y"), &v[3]), 0);

    match_both(t, AMQP_BYTES_LIT("a.b"), &h);
    assert_int_equal(h.count[0], 2); /* "a.b" and "a.*" */
    assert_int_equal(h.count[1], 1);
    assert_int_equal(h.nulls, 1);
    assert_int_equal(h.total, 4);
    match_both(t, AMQP_BYTES_LIT(""), &h);
    assert_int_equal(h.count[2], 1);
    assert_int_equal(h.total, 1);

    assert_errno(topic_remove(t, AMQP_BYTES_LIT("a.b"), &v[2]), -ENOENT);  /* other value */
    assert_errno(topic_remove(t, AMQP_BYTES_LIT("a"), &v[0]), -ENOENT);    /* inner node */
    assert_errno(topic_remove(t, AMQP_BYTES_LIT("a.b.c"), &v[0]), -ENOENT);
    assert_errno(topic_remove(t, AMQP_BYTES_LIT("#"), &v[0]), -ENOENT);
    assert_errno(topic_remove(t, AMQP_BYTES_LIT("a.b"), NULL), 0);
    assert_errno(topic_remove(t, AMQP_BYTES_LIT("a.b"), NULL), -ENOENT);
    assert_errno(topic_remove(t, AMQP_BYTES_LIT("a.b"), &v[0]), 0);
    assert_errno(topic_remove(t, AMQP_BYTES_LIT("a.b"), &v[0]), -ENOENT);
    assert_int_equal(topic_count(t), 3);
    match_both(t, AMQP_BYTES_LIT("a.b"), &h);
    assert_int_equal(h.count[0], 1); /* only "a.*" now */
    assert_int_equal(h.count[1], 1);
    assert_int_equal(h.total, 2);

    assert_errno(topic_remove(t, AMQP_BYTES_LIT("a.b"), &v[1]), 0);
    assert_errno(topic_remove(t, AMQP_BYTES_LIT("a.*"), &v[0]), 0);
    assert_errno(topic_remove(t, AMQP_BYTES_LIT(""), &v[2]), 0);
    assert_int_equal(topic_count(t), 0);
    assert_trie_ok(t, 1);
    match_both(t, AMQP_BYTES_LIT("a.b"), &h);
    assert_int_equal(h.total, 0);
    free(h.count);
    topic_free(t);
    topic_free(NULL);
}

static void test_pattern_length(void **state)
{
    (void)state;
    static char buf[512];
    char v;
    struct topic_trie *t = topic_new();
    assert_non_null(t);
    /* 255 bytes is the most a binding key can hold; 256 words of '*' would need 511. */
    amqp_bytes_t max = expand("{*.}127*", buf, sizeof buf);
    assert_int_equal(max.len, 255);
    assert_errno(topic_add(t, max, &v), 0);
    amqp_bytes_t dots = expand("{.}255", buf, sizeof buf); /* 256 empty words */
    assert_errno(topic_add(t, dots, &v), 0);
    assert_trie_ok(t, 1 + 128 + 256);
    amqp_bytes_t too_long = expand("{.}256", buf, sizeof buf);
    assert_errno(topic_add(t, too_long, &v), -EINVAL);
    assert_errno(topic_remove(t, too_long, &v), -ENOENT);
    assert_int_equal(topic_count(t), 2);
    assert_errno(topic_remove(t, dots, &v), 0);
    assert_errno(topic_remove(t, expand("{*.}127*", buf, sizeof buf), &v), 0);
    assert_trie_ok(t, 1);
    topic_free(t);
}

/* ---- pruning ------------------------------------------------------------------------- */

static void test_prune(void **state)
{
    (void)state;
    char v[3];
    struct topic_trie *t = topic_new();
    assert_non_null(t);
    assert_errno(topic_add(t, AMQP_BYTES_LIT("a.b.c"), &v[0]), 0);
    assert_trie_ok(t, 4);
    assert_errno(topic_add(t, AMQP_BYTES_LIT("a.b"), &v[1]), 0);
    assert_trie_ok(t, 4);
    assert_errno(topic_add(t, AMQP_BYTES_LIT("a.#.*"), &v[2]), 0);
    assert_trie_ok(t, 6);
    assert_errno(topic_add(t, AMQP_BYTES_LIT("a.#.*"), &v[0]), 0);
    assert_trie_ok(t, 6);

    assert_errno(topic_remove(t, AMQP_BYTES_LIT("a.b.c"), &v[0]), 0);
    assert_trie_ok(t, 5); /* c goes; b keeps its value */
    assert_errno(topic_remove(t, AMQP_BYTES_LIT("a.b"), &v[1]), 0);
    assert_trie_ok(t, 4); /* b goes; a keeps its '#' child */
    assert_errno(topic_remove(t, AMQP_BYTES_LIT("a.#.*"), &v[2]), 0);
    assert_trie_ok(t, 4); /* a.#.* still holds v[0] */
    assert_errno(topic_remove(t, AMQP_BYTES_LIT("a.#.*"), &v[0]), 0);
    assert_trie_ok(t, 1);

    /* Empty words and wildcards prune the same way, and a re-added pattern works. */
    assert_errno(topic_add(t, AMQP_BYTES_LIT(".*.#."), &v[0]), 0);
    assert_errno(topic_add(t, AMQP_BYTES_LIT("."), &v[1]), 0);
    assert_trie_ok(t, 6);
    assert_errno(topic_remove(t, AMQP_BYTES_LIT(".*.#."), &v[0]), 0);
    assert_trie_ok(t, 3);
    assert_errno(topic_add(t, AMQP_BYTES_LIT(".*.#."), &v[0]), 0);
    struct hits h;
    hits_init(&h, v, 3);
    match_both(t, AMQP_BYTES_LIT(".x.y.z."), &h);
    assert_int_equal(h.count[0], 1);
    assert_int_equal(h.total, 1);
    match_both(t, AMQP_BYTES_LIT("."), &h);
    assert_int_equal(h.count[1], 1);
    assert_int_equal(h.total, 1);
    free(h.count);

    /* Many values on one node: the set grows, shrinks and goes away. */
    static char many[1000];
    for (int i = 0; i < 1000; i++)
        assert_errno(topic_add(t, AMQP_BYTES_LIT("m.#"), &many[i]), 0);
    assert_trie_ok(t, 8);
    for (int i = 0; i < 1000; i += 2)
        assert_errno(topic_remove(t, AMQP_BYTES_LIT("m.#"), &many[i]), 0);
    assert_trie_ok(t, 8);
    hits_init(&h, many, 1000);
    match_both(t, AMQP_BYTES_LIT("m"), &h);
    assert_int_equal(h.total, 500);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(h.count[i], (uint32_t)(i & 1));
    for (int i = 1; i < 1000; i += 2)
        assert_errno(topic_remove(t, AMQP_BYTES_LIT("m.#"), &many[i]), 0);
    assert_trie_ok(t, 6);
    free(h.count);
    topic_free(t);
}

/* ---- one report per stored pair ------------------------------------------------------ */

static void test_one_report_per_pair(void **state)
{
    (void)state;
    char v[2];
    struct hits h;
    hits_init(&h, v, 2);
    struct topic_trie *t = topic_new();
    assert_non_null(t);
    /* "#.#" reaches its node along many paths; it is still one pair. */
    assert_errno(topic_add(t, AMQP_BYTES_LIT("#.#"), &v[0]), 0);
    match_both(t, AMQP_BYTES_LIT("a.b.c.d.e"), &h);
    assert_int_equal(h.total, 1);
    /* The same value under several matching patterns: once per pattern. */
    assert_errno(topic_add(t, AMQP_BYTES_LIT("#"), &v[0]), 0);
    assert_errno(topic_add(t, AMQP_BYTES_LIT("a.#"), &v[0]), 0);
    assert_errno(topic_add(t, AMQP_BYTES_LIT("#.#.#.#"), &v[0]), 0);
    assert_errno(topic_add(t, AMQP_BYTES_LIT("*.#.*"), &v[0]), 0);
    assert_errno(topic_add(t, AMQP_BYTES_LIT("a.#.#.e"), &v[0]), 0);
    assert_errno(topic_add(t, AMQP_BYTES_LIT("#.a.#.e.#"), &v[1]), 0);
    match_both(t, AMQP_BYTES_LIT("a.b.c.d.e"), &h);
    assert_int_equal(h.count[0], 6);
    assert_int_equal(h.count[1], 1);
    match_both(t, AMQP_BYTES_LIT("a.e.a.e"), &h);
    assert_int_equal(h.count[0], 6);
    assert_int_equal(h.count[1], 1);
    match_both(t, AMQP_BYTES_LIT("b"), &h);
    assert_int_equal(h.count[0], 3); /* "#", "#.#", "#.#.#.#" */
    assert_int_equal(h.count[1], 0);
    match_both(t, AMQP_BYTES_LIT(""), &h);
    assert_int_equal(h.count[0], 3);
    free(h.count);
    topic_free(t);
}

/* ---- '#' blow-up and long keys ------------------------------------------------------- */

struct long_case {
    const char *pattern, *key;
    int match;
};

static void run_long_cases(const struct long_case *c, size_t n, char *pbuf, char *kbuf,
                           size_t cap)
{
    char slot[64];
    assert_true(n <= sizeof slot);
    struct topic_trie *t = topic_new();
    assert_non_null(t);
    for (size_t i = 0; i < n; i++)
        assert_errno(topic_add(t, expand(c[i].pattern, pbuf, cap), &slot[i]), 0);
    struct hits h;
    hits_init(&h, slot, n);
    for (size_t i = 0; i < n; i++) {
        match_both(t, expand(c[i].key, kbuf, cap), &h);
        if (h.count[i] != (uint32_t)c[i].match)
            fail_msg("\"%s\" on \"%.40s\"...: %u reports, want %d", c[i].pattern, c[i].key,
                     h.count[i], c[i].match);
    }
    free(h.count);
    topic_free(t);
}

/* Patterns full of '#' over keys of hundreds of words: a backtracking matcher would try
 * astronomically many splits; each node is visited once here. */
static void test_hash_blowup(void **state)
{
    (void)state;
    static char pbuf[512], kbuf[512];
    static const struct long_case c[] = {
        {"{#.}127#", "{a.}127b", 1},
        {"{#.}127#", "{.}255", 1},
        {"{#.}127#", "", 1},
        {"#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.b", "{a.}127b", 1},
        {"#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.b", "{.}255", 0},
        {"#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.c", "{a.}127b", 0},
        {"{#.*.}63#", "{a.}127b", 1},
        {"{#.*.}63#", "{.}61", 0},      /* 62 words: one too few */
        {"{#.*.}63#", "{.}62", 1},      /* 63 words */
        {"{#.a.}63#", "{a.}127b", 1},
        {"{#.a.}63#", "{a.}61b", 0},    /* 62 a's are one too few */
        {"{#.b.}63#", "{a.}127b", 0},
        {"{*.}127*", "{a.}127b", 1},    /* exactly 128 words */
        {"{*.}126*.#", "{.}255", 1},
        {"{*.}126*", "{a.}127b", 0},
        {"#.{*.}126*", "{a.}127b", 1},
        {"{a.}126#", "{a.}127b", 1},
    };
    run_long_cases(c, sizeof c / sizeof c[0], pbuf, kbuf, sizeof pbuf);
}

/* Keys longer than a shortstr (CC/BCC headers are longstrs): the scratch comes from malloc,
 * and past 16 MiB the walk takes over. */
static void test_long_keys(void **state)
{
    (void)state;
    static char pbuf[512];
    size_t cap = 17u << 20;
    char *kbuf = malloc(cap);
    assert_non_null(kbuf);
    static const struct long_case c[] = {
        {"#.z", "{a.}50000z", 1},
        {"a.#", "{a.}50000z", 1},
        {"*.z", "{a.}50000z", 0},
        {"#.a.z", "{a.}50000z", 1},
        {"#.a.#.a.#", "{a.}50000z", 1},
        {"#.#.#.#.z.#", "{a.}50000z", 1},
        {"{*.}127*", "{a.}50000z", 0},
        {"#.{*.}126*", "{a.}50000z", 1},
        {"{a.}100#.a.z", "{a.}50000z", 1},
        {"#.b.#", "{a.}50000z", 0},
        {"#.x", "{ab.}5592406x", 1},    /* 16 MiB + 1: the walk */
        {"*.#.*.x", "{ab.}5592406x", 1},
        {"ab.#.ab", "{ab.}5592406x", 0},
    };
    run_long_cases(c, sizeof c / sizeof c[0], pbuf, kbuf, cap);
    free(kbuf);
}

/* ---- 100k bindings ------------------------------------------------------------------- */

#define MANY 100000

static amqp_bytes_t many_pattern(uint32_t i, char *buf, size_t cap)
{
    int n;
    switch (i % 5) {
    case 0: n = snprintf(buf, cap, "s%u.t%u", i, i % 7); break;
    case 1: n = snprintf(buf, cap, "s%u.*", i / 5); break;
    case 2: n = snprintf(buf, cap, "s%u.#.e%u", i / 50, i % 3); break;
    case 3: n = snprintf(buf, cap, "*.t%u.#", i % 7); break;
    default: n = snprintf(buf, cap, "#.k%u", i / 5); break;
    }
    return (amqp_bytes_t){(const uint8_t *)buf, (uint32_t)n};
}

static void check_many(const struct topic_trie *t, const bool *stored, struct hits *h,
                       const char *key)
{
    char pbuf[64];
    amqp_bytes_t k = amqp_cstr(key);
    hits_clear(h);
    topic_match(t, k, on_hit, h);
    size_t want = 0;
    for (uint32_t i = 0; i < MANY; i++) {
        bool m = stored[i] && ref_match(many_pattern(i, pbuf, sizeof pbuf), k);
        want += m;
        if (h->count[i] != (uint32_t)m)
            fail_msg("key %s, binding %u (%s): %u reports, want %d", key, i, pbuf, h->count[i], m);
    }
    assert_int_equal(h->total, want);
}

static void test_many_bindings(void **state)
{
    (void)state;
    static const char *const keys[] = {
        "s10.t3", "s10.t4", "s15.x", "s3.t1.e0", "s3.e2", "s3.k5.e1", "q.t3", "q.t3.z.z",
        "x.y.k77", "k77", "s5.t5.k99.e0", "", "s19999.t1", "t3",
    };
    static char vals[MANY];
    bool *stored = calloc(MANY, sizeof *stored);
    assert_non_null(stored);
    char pbuf[64];
    struct topic_trie *t = topic_new();
    assert_non_null(t);
    for (uint32_t i = 0; i < MANY; i++) {
        assert_errno(topic_add(t, many_pattern(i, pbuf, sizeof pbuf), &vals[i]), 0);
        stored[i] = true;
    }
    assert_int_equal(topic_count(t), MANY);
    assert_trie_ok(t, ANY_NODES);
    struct hits h;
    hits_init(&h, vals, MANY);
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        check_many(t, stored, &h, keys[k]);

    for (uint32_t i = 1; i < MANY; i += 2) {
        assert_errno(topic_remove(t, many_pattern(i, pbuf, sizeof pbuf), &vals[i]), 0);
        stored[i] = false;
    }
    assert_int_equal(topic_count(t), MANY / 2);
    assert_trie_ok(t, ANY_NODES);
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        check_many(t, stored, &h, keys[k]);

    for (uint32_t i = 0; i < MANY; i += 2)
        assert_errno(topic_remove(t, many_pattern(i, pbuf, sizeof pbuf), &vals[i]), 0);
    assert_int_equal(topic_count(t), 0);
    assert_trie_ok(t, 1);
    free(h.count);
    free(stored);
    topic_free(t);
}

/* ---- random patterns against the reference ------------------------------------------- */

static amqp_bytes_t random_words(uint64_t *rng, const char *const *alphabet, size_t nalpha,
                                 uint32_t max_words, char *buf, size_t cap)
{
    uint32_t n = (uint32_t)(unit_rand(rng) % (max_words + 1)), len = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *w = alphabet[unit_rand(rng) % nalpha];
        size_t wl = strlen(w);
        assert_true(len + wl + 1 < cap);
        if (i)
            buf[len++] = '.';
        memcpy(buf + len, w, wl);
        len += (uint32_t)wl;
    }
    return (amqp_bytes_t){(const uint8_t *)buf, len};
}

#define RPATTERNS 400

static void test_random_against_reference(void **state)
{
    (void)state;
    static const char *const pwords[] = {"a", "b", "", "*", "#", "#", "*", "ab"};
    static const char *const kwords[] = {"a", "b", "", "*", "#", "ab"};
    static char pat[RPATTERNS][64];
    static uint32_t plen[RPATTERNS];
    static bool stored[RPATTERNS];
    static char vals[RPATTERNS];
    char kbuf[64];
    uint64_t rng = 0x70b1c5eedULL;
    for (int round = 0; round < 4; round++) {
        struct topic_trie *t = topic_new();
        assert_non_null(t);
        for (int i = 0; i < RPATTERNS; i++) {
            plen[i] = random_words(&rng, pwords, 8, 6, pat[i], sizeof pat[i]).len;
            int rc = topic_add(t, (amqp_bytes_t){(const uint8_t *)pat[i], plen[i]}, &vals[i]);
            assert_errno(rc, 0);
            stored[i] = true;
        }
        for (int i = 0; i < RPATTERNS; i++) {
            if (unit_rand(&rng) % 3 == 0) {
                amqp_bytes_t p = {(const uint8_t *)pat[i], plen[i]};
                assert_errno(topic_remove(t, p, &vals[i]), 0);
                assert_errno(topic_remove(t, p, &vals[i]), -ENOENT);
                stored[i] = false;
            }
        }
        assert_trie_ok(t, ANY_NODES);
        struct hits h;
        hits_init(&h, vals, RPATTERNS);
        for (int k = 0; k < 1500; k++) {
            amqp_bytes_t key = random_words(&rng, kwords, 6, 7, kbuf, sizeof kbuf);
            match_both(t, key, &h);
            for (int i = 0; i < RPATTERNS; i++) {
                amqp_bytes_t p = {(const uint8_t *)pat[i], plen[i]};
                bool m = stored[i] && ref_match(p, key);
                if (h.count[i] != (uint32_t)m)
                    fail_msg("pattern \"%.*s\" key \"%.*s\": %u reports, want %d", (int)plen[i],
                             pat[i], (int)key.len, kbuf, h.count[i], m);
            }
        }
        free(h.count);
        topic_free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rabbitmq_rows),
        cmocka_unit_test(test_rabbitmq_rows_together),
        cmocka_unit_test(test_add_remove),
        cmocka_unit_test(test_pattern_length),
        cmocka_unit_test(test_prune),
        cmocka_unit_test(test_one_report_per_pair),
        cmocka_unit_test(test_hash_blowup),
        cmocka_unit_test(test_long_keys),
        cmocka_unit_test(test_many_bindings),
        cmocka_unit_test(test_random_against_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
