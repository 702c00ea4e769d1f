/* test_table.c — protocol/table.h: the writer, the validator and the iterator, for every
 * type letter RabbitMQ uses (t b B s u I i l f d D S x T F A V), nesting limits and
 * malformed input. Golden bytes are written by hand from the AMQP 0-9-1 / RabbitMQ spec. */
#include <math.h>

#include "unit.h"

#include "protocol/table.h"

/* Finishes w (opened with amqp_tw_begin at `mark`) and returns the body. */
static amqp_bytes_t finish(struct amqp_wbuf *w, size_t mark)
{
    amqp_tw_end(w, mark);
    assert_false(w->failed);
    amqp_bytes_t b = amqp_tw_body(w, mark);
    assert_int_equal(rd32(w->data + mark - 4), b.len);
    return b;
}

static void next_entry(struct amqp_table_iter *it, const char *key, char type,
                       struct amqp_field *ret_v)
{
    amqp_bytes_t k;
    assert_rc(amqp_table_next(it, &k, ret_v), 1);
    if (!amqp_bytes_eq_str(k, key))
        fail_msg("key %.*s, want %s", (int)k.len, (const char *)k.ptr, key);
    assert_int_equal(ret_v->type, type);
}

static uint32_t float_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    return x;
}

static uint64_t double_bits(double d)
{
    uint64_t x;
    memcpy(&x, &d, 8);
    return x;
}

/* ---- every type letter ------------------------------------------------------------ */

static void test_every_type(void **state)
{
    (void)state;
    static const uint8_t bin[] = {0x00, 0xCE, 0xFF, 'S'};
    struct amqp_wbuf w = {0};
    size_t top = amqp_tw_begin(&w);
    amqp_tw_key(&w, "t1"); amqp_tw_bool(&w, true);
    amqp_tw_key(&w, "t0"); amqp_tw_bool(&w, false);
    amqp_tw_key(&w, "b-"); amqp_tw_int(&w, 'b', INT8_MIN);
    amqp_tw_key(&w, "b+"); amqp_tw_int(&w, 'b', INT8_MAX);
    amqp_tw_key(&w, "B"); amqp_tw_int(&w, 'B', UINT8_MAX);
    amqp_tw_key(&w, "s"); amqp_tw_int(&w, 's', INT16_MIN);
    amqp_tw_key(&w, "u"); amqp_tw_int(&w, 'u', UINT16_MAX);
    amqp_tw_key(&w, "I"); amqp_tw_int(&w, 'I', INT32_MIN);
    amqp_tw_key(&w, "i"); amqp_tw_int(&w, 'i', UINT32_MAX);
    amqp_tw_key(&w, "l-"); amqp_tw_int(&w, 'l', INT64_MIN);
    amqp_tw_key(&w, "l+"); amqp_tw_int(&w, 'l', INT64_MAX);
    amqp_tw_key(&w, "f"); amqp_tw_float(&w, -1.5, true);
    amqp_tw_key(&w, "fnan"); amqp_tw_float(&w, NAN, true);
    amqp_tw_key(&w, "d"); amqp_tw_float(&w, 0.1, false);
    amqp_tw_key(&w, "dinf"); amqp_tw_float(&w, -INFINITY, false);
    amqp_tw_key(&w, "D"); amqp_tw_decimal(&w, 255, UINT32_MAX);
    amqp_tw_key(&w, "S"); amqp_tw_str(&w, "caf\xc3\xa9");
    amqp_tw_key(&w, "S0"); amqp_tw_str(&w, "");
    amqp_tw_key(&w, "x"); amqp_tw_bytes(&w, 'x', (amqp_bytes_t){bin, sizeof bin});
    amqp_tw_key(&w, "T"); amqp_tw_int(&w, 'T', (int64_t)UINT64_MAX);
    amqp_tw_key(&w, "V"); amqp_tw_void(&w);
    amqp_tw_key(&w, "F");
    size_t f = amqp_tw_table(&w);
    amqp_tw_key(&w, "in"); amqp_tw_int(&w, 'I', 7);
    amqp_tw_end(&w, f);
    amqp_tw_key(&w, "A");
    size_t a = amqp_tw_array(&w);
    amqp_tw_int(&w, 'b', -1);
    amqp_tw_str(&w, "el");
    amqp_tw_void(&w);
    amqp_tw_end(&w, a);
    amqp_tw_key(&w, ""); amqp_tw_int(&w, 'u', 1); /* empty keys are legal on the wire */
    amqp_bytes_t tbl = finish(&w, top);
    assert_rc(amqp_table_validate(tbl, 0), 0);

    struct amqp_table_iter it;
    struct amqp_field v;
    amqp_table_iter_init(&it, tbl);
    next_entry(&it, "t1", 't', &v); assert_true(v.v.b);
    next_entry(&it, "t0", 't', &v); assert_false(v.v.b);
    next_entry(&it, "b-", 'b', &v); assert_true(v.v.i == INT8_MIN);
    next_entry(&it, "b+", 'b', &v); assert_true(v.v.i == INT8_MAX);
    next_entry(&it, "B", 'B', &v); assert_true(v.v.u == UINT8_MAX);
    next_entry(&it, "s", 's', &v); assert_true(v.v.i == INT16_MIN);
    next_entry(&it, "u", 'u', &v); assert_true(v.v.u == UINT16_MAX);
    next_entry(&it, "I", 'I', &v); assert_true(v.v.i == INT32_MIN);
    next_entry(&it, "i", 'i', &v); assert_true(v.v.u == UINT32_MAX);
    next_entry(&it, "l-", 'l', &v); assert_true(v.v.i == INT64_MIN);
    next_entry(&it, "l+", 'l', &v); assert_true(v.v.i == INT64_MAX);
    next_entry(&it, "f", 'f', &v); assert_true(v.v.f == -1.5f);
    next_entry(&it, "fnan", 'f', &v); assert_true(isnan(v.v.f));
    next_entry(&it, "d", 'd', &v); assert_int_equal(double_bits(v.v.d), double_bits(0.1));
    next_entry(&it, "dinf", 'd', &v); assert_true(isinf(v.v.d) && v.v.d < 0);
    next_entry(&it, "D", 'D', &v);
    assert_int_equal(v.v.dec.scale, 255);
    assert_int_equal(v.v.dec.value, UINT32_MAX);
    next_entry(&it, "S", 'S', &v); assert_true(amqp_bytes_eq_str(v.v.bytes, "caf\xc3\xa9"));
    next_entry(&it, "S0", 'S', &v); assert_int_equal(v.v.bytes.len, 0);
    next_entry(&it, "x", 'x', &v); assert_bytes_equal(v.v.bytes, ((amqp_bytes_t){bin, sizeof bin}));
    next_entry(&it, "T", 'T', &v); assert_true(v.v.u == UINT64_MAX);
    next_entry(&it, "V", 'V', &v);
    next_entry(&it, "F", 'F', &v);
    struct amqp_field in;
    assert_rc(amqp_table_get(v.v.bytes, "in", &in), 1);
    assert_true(in.type == 'I' && in.v.i == 7);
    next_entry(&it, "A", 'A', &v);
    struct amqp_table_iter ait;
    amqp_table_iter_init(&ait, v.v.bytes);
    assert_rc(amqp_array_next(&ait, &in), 1);
    assert_true(in.type == 'b' && in.v.i == -1);
    assert_rc(amqp_array_next(&ait, &in), 1);
    assert_true(in.type == 'S' && amqp_bytes_eq_str(in.v.bytes, "el"));
    assert_rc(amqp_array_next(&ait, &in), 1);
    assert_int_equal(in.type, 'V');
    assert_rc(amqp_array_next(&ait, &in), 0);
    next_entry(&it, "", 'u', &v); assert_true(v.v.u == 1);
    amqp_bytes_t k;
    assert_rc(amqp_table_next(&it, &k, &v), 0);
    assert_rc(amqp_table_next(&it, &k, &v), 0); /* stays at the end */
    amqp_wbuf_free(&w);
}

/* ---- golden bytes ------------------------------------------------------------------- */

static const uint8_t golden_table[] = {
    0x00, 0x00, 0x00, 0x4D,                         /* table length 77 */
    0x01, 'a', 't', 0x01,                           /* a: t true */
    0x01, 'n', 'I', 0xFF, 0xFF, 0xFF, 0xFE,         /* n: I -2 */
    0x01, 's', 'S', 0x00, 0x00, 0x00, 0x02, 'h', 'i', /* s: S "hi" */
    0x01, 'f', 'f', 0x3F, 0xC0, 0x00, 0x00,         /* f: f 1.5 */
    0x01, 'd', 'd', 0xBF, 0xD0, 0, 0, 0, 0, 0, 0,   /* d: d -0.25 */
    0x01, 'D', 'D', 0x02, 0x00, 0x00, 0x30, 0x39,   /* D: decimal 123.45 */
    0x01, 'T', 'T', 0, 0, 0, 0, 0x65, 0x53, 0xF1, 0x00, /* T: 1700000000 */
    0x01, 'A', 'A', 0x00, 0x00, 0x00, 0x0A,         /* A: [F{u: u 258}] */
    'F', 0x00, 0x00, 0x00, 0x05, 0x01, 'u', 'u', 0x01, 0x02,
    0x01, 'V', 'V',                                 /* V: void */
};

static void test_golden_write(void **state)
{
    (void)state;
    struct amqp_wbuf w = {0};
    size_t top = amqp_tw_begin(&w);
    amqp_tw_key(&w, "a"); amqp_tw_bool(&w, true);
    amqp_tw_key(&w, "n"); amqp_tw_int(&w, 'I', -2);
    amqp_tw_key(&w, "s"); amqp_tw_str(&w, "hi");
    amqp_tw_key(&w, "f"); amqp_tw_float(&w, 1.5, true);
    amqp_tw_key(&w, "d"); amqp_tw_float(&w, -0.25, false);
    amqp_tw_key(&w, "D"); amqp_tw_decimal(&w, 2, 12345);
    amqp_tw_key(&w, "T"); amqp_tw_int(&w, 'T', 1700000000);
    amqp_tw_key(&w, "A");
    size_t a = amqp_tw_array(&w);
    size_t f = amqp_tw_table(&w);
    amqp_tw_key(&w, "u"); amqp_tw_int(&w, 'u', 258);
    amqp_tw_end(&w, f);
    amqp_tw_end(&w, a);
    amqp_tw_key(&w, "V"); amqp_tw_void(&w);
    finish(&w, top);
    assert_int_equal(w.len, sizeof golden_table);
    assert_memory_equal(w.data, golden_table, sizeof golden_table);
    amqp_wbuf_free(&w);
    assert_null(w.data);
    amqp_wbuf_free(&w); /* twice is fine */
}

static void test_golden_read(void **state)
{
    (void)state;
    size_t n = sizeof golden_table - 4;
    uint8_t *p = unit_dup(golden_table + 4, n);
    amqp_bytes_t tbl = {p, (uint32_t)n};
    assert_rc(amqp_table_validate(tbl, 0), 0);
    struct amqp_field v;
    assert_rc(amqp_table_get(tbl, "a", &v), 1); assert_true(v.type == 't' && v.v.b);
    assert_rc(amqp_table_get(tbl, "n", &v), 1); assert_true(v.type == 'I' && v.v.i == -2);
    assert_rc(amqp_table_get(tbl, "s", &v), 1); assert_true(amqp_bytes_eq_str(v.v.bytes, "hi"));
    assert_rc(amqp_table_get(tbl, "f", &v), 1); assert_int_equal(float_bits(v.v.f), 0x3FC00000);
    assert_rc(amqp_table_get(tbl, "d", &v), 1); assert_true(v.v.d == -0.25);
    assert_rc(amqp_table_get(tbl, "D", &v), 1);
    assert_true(v.v.dec.scale == 2 && v.v.dec.value == 12345);
    assert_rc(amqp_table_get(tbl, "T", &v), 1); assert_true(v.v.u == 1700000000);
    assert_rc(amqp_table_get(tbl, "V", &v), 1); assert_int_equal(v.type, 'V');
    assert_rc(amqp_table_get(tbl, "A", &v), 1);
    assert_rc(amqp_array_validate(v.v.bytes, 0), 0);
    struct amqp_table_iter it;
    amqp_table_iter_init(&it, v.v.bytes);
    assert_rc(amqp_array_next(&it, &v), 1);
    assert_int_equal(v.type, 'F');
    assert_rc(amqp_table_get(v.v.bytes, "u", &v), 1);
    assert_true(v.type == 'u' && v.v.u == 258);
    free(p);
}

/* ---- lookup ------------------------------------------------------------------------- */

static void test_table_get(void **state)
{
    (void)state;
    struct amqp_wbuf w = {0};
    size_t top = amqp_tw_begin(&w);
    amqp_tw_key(&w, "x-match"); amqp_tw_str(&w, "all");
    amqp_tw_key(&w, "ab"); amqp_tw_int(&w, 'I', 1);
    amqp_tw_key(&w, "dup"); amqp_tw_int(&w, 'I', 1);
    amqp_tw_key(&w, "dup"); amqp_tw_int(&w, 'I', 2);
    amqp_tw_key(&w, "nested");
    size_t f = amqp_tw_table(&w);
    amqp_tw_key(&w, "hidden"); amqp_tw_bool(&w, true);
    amqp_tw_end(&w, f);
    amqp_tw_key(&w, "last"); amqp_tw_void(&w);
    amqp_bytes_t tbl = finish(&w, top);

    struct amqp_field v;
    memset(&v, 0x5A, sizeof v);
    assert_rc(amqp_table_get(tbl, "x-match", &v), 1);
    assert_true(amqp_bytes_eq_str(v.v.bytes, "all"));
    assert_rc(amqp_table_get(tbl, "dup", &v), 1);
    assert_true(v.v.i == 1); /* the first of duplicate keys wins */
    assert_rc(amqp_table_get(tbl, "last", &v), 1);
    assert_int_equal(v.type, 'V');
    memset(&v, 0x5A, sizeof v);
    assert_rc(amqp_table_get(tbl, "a", &v), 0);      /* prefix of "ab" */
    assert_rc(amqp_table_get(tbl, "abc", &v), 0);    /* "ab" is a prefix of it */
    assert_rc(amqp_table_get(tbl, "hidden", &v), 0); /* only top-level keys */
    assert_rc(amqp_table_get(tbl, "", &v), 0);
    assert_int_equal(v.type, 0x5A); /* untouched when absent */
    assert_rc(amqp_table_get((amqp_bytes_t){tbl.ptr, 0}, "ab", &v), 0);
    /* By bytes: the whole key, a NUL inside it included. */
    assert_rc(amqp_table_get_bytes(tbl, (amqp_bytes_t){(const uint8_t *)"ab", 2}, &v), 1);
    assert_rc(amqp_table_get_bytes(tbl, (amqp_bytes_t){(const uint8_t *)"ab\0", 3}, &v), 0);
    assert_rc(amqp_table_get_bytes(tbl, (amqp_bytes_t){(const uint8_t *)"a", 1}, &v), 0);
    amqp_wbuf_free(&w);

    /* An absent table, as in a zeroed struct amqp_method built by the broker. */
    static const amqp_bytes_t none = {NULL, 0};
    assert_rc(amqp_table_get(none, "x-match", &v), 0);
    assert_rc(amqp_table_validate(none, 0), 0);
    assert_rc(amqp_array_validate(none, 0), 0);
    struct amqp_table_iter it;
    amqp_bytes_t k;
    amqp_table_iter_init(&it, none);
    assert_rc(amqp_table_next(&it, &k, &v), 0);
    assert_rc(amqp_array_next(&it, &v), 0);
}

/* ---- nesting ------------------------------------------------------------------------ */

/* Writes a top-level table holding `levels` nested containers, each inside the previous;
 * arrays alternate with tables when `arrays`. Returns the top table's body. */
static amqp_bytes_t nest(struct amqp_wbuf *w, int levels, bool arrays)
{
    size_t marks[80];
    assert_true(levels < 80);
    size_t top = amqp_tw_begin(w);
    bool in_array = false;
    for (int i = 0; i < levels; i++) {
        if (!in_array)
            amqp_tw_key(w, "n");
        bool arr = arrays && i % 2 == 0;
        marks[i] = arr ? amqp_tw_array(w) : amqp_tw_table(w);
        in_array = arr;
    }
    if (!in_array)
        amqp_tw_key(w, "leaf");
    amqp_tw_str(w, "bottom");
    for (int i = levels - 1; i >= 0; i--)
        amqp_tw_end(w, marks[i]);
    return finish(w, top);
}

/* Iterates every value recursively; returns the deepest level reached. */
static int walk(amqp_bytes_t b, bool is_array, int depth, int *leaves)
{
    struct amqp_table_iter it;
    struct amqp_field v;
    amqp_bytes_t k;
    int rc, deepest = depth;
    amqp_table_iter_init(&it, b);
    while ((rc = is_array ? amqp_array_next(&it, &v) : amqp_table_next(&it, &k, &v)) > 0) {
        if (v.type == 'F' || v.type == 'A') {
            int d = walk(v.v.bytes, v.type == 'A', depth + 1, leaves);
            if (d > deepest)
                deepest = d;
        } else {
            ++*leaves;
        }
    }
    assert_rc(rc, 0);
    return deepest;
}

static void test_nesting_limit(void **state)
{
    (void)state;
    for (int arrays = 0; arrays < 2; arrays++) {
        for (int levels = 0; levels <= AMQP_TABLE_MAX_DEPTH + 2; levels++) {
            struct amqp_wbuf w = {0};
            amqp_bytes_t tbl = nest(&w, levels, arrays);
            /* The top table counts: it plus 31 nested containers is the limit. */
            int want = levels + 1 > AMQP_TABLE_MAX_DEPTH ? AMQP_E_DEPTH : 0;
            assert_rc(amqp_table_validate(tbl, 0), want);
            if (want == 0) {
                int leaves = 0;
                assert_int_equal(walk(tbl, false, 0, &leaves), levels);
                assert_int_equal(leaves, 1);
            }
            /* A caller that is already `d` deep gets d fewer levels. */
            if (levels == 10) {
                assert_rc(amqp_table_validate(tbl, AMQP_TABLE_MAX_DEPTH - 11), 0);
                assert_rc(amqp_table_validate(tbl, AMQP_TABLE_MAX_DEPTH - 10), AMQP_E_DEPTH);
            }
            amqp_wbuf_free(&w);
        }
    }
    /* Arrays: an array body at the limit is rejected directly too. */
    static const uint8_t arr[] = {'A', 0, 0, 0, 0};
    assert_rc(amqp_array_validate((amqp_bytes_t){arr, sizeof arr}, AMQP_TABLE_MAX_DEPTH - 2), 0);
    assert_rc(amqp_array_validate((amqp_bytes_t){arr, sizeof arr}, AMQP_TABLE_MAX_DEPTH - 1),
              AMQP_E_DEPTH);
    assert_rc(amqp_array_validate((amqp_bytes_t){arr, 0}, AMQP_TABLE_MAX_DEPTH), AMQP_E_DEPTH);
}

/* Tables in arrays in tables, several entries at each level. */
static void test_nested_mix(void **state)
{
    (void)state;
    struct amqp_wbuf w = {0};
    size_t top = amqp_tw_begin(&w);
    amqp_tw_key(&w, "before"); amqp_tw_int(&w, 'l', -1);
    amqp_tw_key(&w, "list");
    size_t a = amqp_tw_array(&w);
    for (int i = 0; i < 3; i++) {
        size_t f = amqp_tw_table(&w);
        amqp_tw_key(&w, "i"); amqp_tw_int(&w, 'I', i);
        amqp_tw_key(&w, "inner");
        size_t a2 = amqp_tw_array(&w);
        amqp_tw_str(&w, "s");
        size_t f2 = amqp_tw_table(&w);
        amqp_tw_end(&w, f2); /* empty table inside an array */
        size_t a3 = amqp_tw_array(&w);
        amqp_tw_end(&w, a3); /* empty array inside an array */
        amqp_tw_end(&w, a2);
        amqp_tw_end(&w, f);
    }
    amqp_tw_end(&w, a);
    amqp_tw_key(&w, "after"); amqp_tw_bool(&w, false);
    amqp_bytes_t tbl = finish(&w, top);
    assert_rc(amqp_table_validate(tbl, 0), 0);
    int leaves = 0;
    assert_int_equal(walk(tbl, false, 0, &leaves), 4);
    assert_int_equal(leaves, 2 + 3 * 2);

    struct amqp_field v, e;
    assert_rc(amqp_table_get(tbl, "after", &v), 1);
    assert_true(v.type == 't' && !v.v.b);
    assert_rc(amqp_table_get(tbl, "list", &v), 1);
    struct amqp_table_iter it;
    amqp_table_iter_init(&it, v.v.bytes);
    for (int i = 0; i < 3; i++) {
        assert_rc(amqp_array_next(&it, &e), 1);
        assert_int_equal(e.type, 'F');
        struct amqp_field x;
        assert_rc(amqp_table_get(e.v.bytes, "i", &x), 1);
        assert_true(x.v.i == i);
    }
    assert_rc(amqp_array_next(&it, &e), 0);
    amqp_wbuf_free(&w);
}

/* ---- malformed input ---------------------------------------------------------------- */

/* Validates a copy of p[0..n) in its own allocation, so ASan sees any over-read. */
static int validate_copy(const uint8_t *p, size_t n, bool array)
{
    uint8_t *c = unit_dup(p, n);
    amqp_bytes_t b = {c, (uint32_t)n};
    int rc = array ? amqp_array_validate(b, 0) : amqp_table_validate(b, 0);
    free(c);
    return rc;
}

static void test_truncated(void **state)
{
    (void)state;
    /* The golden table (body only) cut at every length: valid exactly at entry
     * boundaries (a shorter table), AMQP_E_SHORT everywhere else. */
    const uint8_t *body = golden_table + 4;
    size_t n = sizeof golden_table - 4;
    bool boundary[sizeof golden_table] = {false};
    struct amqp_table_iter it;
    amqp_bytes_t k;
    struct amqp_field v;
    amqp_table_iter_init(&it, (amqp_bytes_t){body, (uint32_t)n});
    boundary[0] = true;
    while (amqp_table_next(&it, &k, &v) > 0)
        boundary[it.p - body] = true;
    assert_true(boundary[n]);
    for (size_t cut = 0; cut <= n; cut++)
        assert_rc(validate_copy(body, cut, false), boundary[cut] ? 0 : AMQP_E_SHORT);

    /* Arrays: each element type cut short. */
    static const uint8_t arr[] = {'I', 0, 0, 0, 1, 'S', 0, 0, 0, 1, 'z', 'd', 1, 2, 3, 4, 5, 6, 7, 8,
                                  'D', 1, 0, 0, 0, 1, 'F', 0, 0, 0, 0, 'A', 0, 0, 0, 2, 'B', 9};
    static const size_t arr_ends[] = {0, 5, 11, 20, 26, 31, sizeof arr};
    size_t j = 0;
    for (size_t cut = 0; cut <= sizeof arr; cut++) {
        bool at = j < sizeof arr_ends / sizeof arr_ends[0] && arr_ends[j] == cut;
        j += at;
        assert_rc(validate_copy(arr, cut, true), at ? 0 : AMQP_E_SHORT);
    }
}

static void test_bad_input(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        const char *bytes;
        size_t len;
        int want;
    } cases[] = {
        {"type U (0-9-1 spec, not RabbitMQ)", "\x01k" "U\x00\x01", 5, AMQP_E_FIELD_TYPE},
        {"type Z", "\x01k" "Z", 3, AMQP_E_FIELD_TYPE},
        {"type NUL", "\x01k" "\x00", 3, AMQP_E_FIELD_TYPE},
        {"bad type after a good entry", "\x01k" "t\x01" "\x01j" "X", 7, AMQP_E_FIELD_TYPE},
        {"bad type in nested table", "\x01k" "F\x00\x00\x00\x03" "\x01j" "Z", 10,
         AMQP_E_FIELD_TYPE},
        {"key length past end", "\x09k", 2, AMQP_E_SHORT},
        {"key without type", "\x01k", 2, AMQP_E_SHORT},
        {"longstr length past end", "\x01k" "S\x00\x00\x00\x05" "abcd", 11, AMQP_E_SHORT},
        {"longstr length 4G", "\x01k" "S\xff\xff\xff\xff" "abcd", 11, AMQP_E_SHORT},
        {"nested length past end", "\x01k" "F\x00\x00\x01\x00" "\x01j" "V", 10, AMQP_E_SHORT},
        /* The inner table is inside the outer one's bytes, but its entry is not inside
         * its own length: the inner bound is what counts. */
        {"inner entry past inner end", "\x01k" "F\x00\x00\x00\x02" "\x01j" "V", 10,
         AMQP_E_SHORT},
        {"array length past end", "\x01k" "A\x00\x00\x00\x09" "t\x01", 10, AMQP_E_SHORT},
        {"bad type in array", "\x01k" "A\x00\x00\x00\x01" "U", 8, AMQP_E_FIELD_TYPE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = validate_copy((const uint8_t *)cases[i].bytes, cases[i].len, false);
        if (rc != cases[i].want)
            fail_msg("%s: got %d (%s), want %d", cases[i].what, rc, amqp_strerror(rc),
                     cases[i].want);
    }
    /* The iterator itself, used on bytes nobody validated, fails without over-reading. */
    uint8_t *p = unit_dup("\x01k" "S\x00\x00\x00\x05" "ab", 9);
    struct amqp_table_iter it;
    amqp_bytes_t k;
    struct amqp_field v;
    amqp_table_iter_init(&it, (amqp_bytes_t){p, 9});
    assert_rc(amqp_table_next(&it, &k, &v), AMQP_E_SHORT);
    amqp_table_iter_init(&it, (amqp_bytes_t){p + 2, 7});
    assert_rc(amqp_array_next(&it, &v), AMQP_E_SHORT);
    assert_rc(amqp_table_get((amqp_bytes_t){p, 9}, "k", &v), 0);
    free(p);
}

/* ---- writer ------------------------------------------------------------------------- */

static void test_writer_errors(void **state)
{
    (void)state;
    char key[257];
    memset(key, 'k', sizeof key - 1);
    key[256] = '\0';

    struct amqp_wbuf w = {0};
    size_t top = amqp_tw_begin(&w);
    amqp_tw_key(&w, key + 1); /* 255 bytes: the longest shortstr */
    amqp_tw_void(&w);
    amqp_bytes_t tbl = finish(&w, top);
    struct amqp_field v;
    assert_rc(amqp_table_get(tbl, key + 1, &v), 1);
    amqp_wbuf_free(&w);

    top = amqp_tw_begin(&w);
    amqp_tw_key(&w, key); /* 256 bytes: too long */
    assert_true(w.failed);
    amqp_tw_void(&w);
    amqp_tw_end(&w, top);
    assert_null(amqp_tw_body(&w, top).ptr);
    assert_null(amqp_wbuf_grow(&w, 1));
    amqp_wbuf_free(&w);
    assert_false(w.failed);

    /* Not an integer type letter. */
    static const char not_int[] = {'S', 'x', 'F', 'A', 'V', 'Z'};
    for (size_t i = 0; i < sizeof not_int; i++) {
        top = amqp_tw_begin(&w);
        amqp_tw_key(&w, "k");
        amqp_tw_int(&w, not_int[i], 1);
        assert_true(w.failed);
        amqp_wbuf_free(&w);
    }
}

static void test_writer_growth(void **state)
{
    (void)state;
    enum { N = 20000 };
    struct amqp_wbuf w = {0};
    size_t top = amqp_tw_begin(&w);
    char key[16];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k%d", i);
        amqp_tw_key(&w, key);
        amqp_tw_int(&w, 'l', (int64_t)i * 1000003);
    }
    amqp_bytes_t tbl = finish(&w, top);
    assert_rc(amqp_table_validate(tbl, 0), 0);
    struct amqp_table_iter it;
    amqp_bytes_t k;
    struct amqp_field v;
    int i = 0;
    amqp_table_iter_init(&it, tbl);
    while (amqp_table_next(&it, &k, &v) > 0) {
        snprintf(key, sizeof key, "k%d", i);
        assert_true(amqp_bytes_eq_str(k, key));
        assert_true(v.v.i == (int64_t)i * 1000003);
        i++;
    }
    assert_int_equal(i, N);
    assert_rc(amqp_table_get(tbl, "k19999", &v), 1);
    amqp_wbuf_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type),
        cmocka_unit_test(test_golden_write),
        cmocka_unit_test(test_golden_read),
        cmocka_unit_test(test_table_get),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_nested_mix),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_writer_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
