/* test_headers.c — broker/model/headers.c, the headers exchange's match rule, on tables built
 * with the table writer: keys compared as bytes (a NUL inside a key included) and 64-bit 'L'
 * integers compared by value like the other integer types. Both were found by fuzz_table
 * (tests/fuzz/): a table did not match itself. */
#include "unit.h"

#include "broker/model/headers.h"
#include "protocol/table.h"

/* A one-entry table {key[0..klen): value} with value written by put. */
static amqp_bytes_t one(struct amqp_wbuf *w, const char *key, size_t klen,
                        void (*put)(struct amqp_wbuf *w, int64_t v), int64_t v)
{
    size_t mark = amqp_tw_begin(w);
    uint8_t *p = amqp_wbuf_grow(w, 1 + klen);
    assert_non_null(p);
    p[0] = (uint8_t)klen; /* the writer's amqp_tw_key takes a C string: write the key here */
    memcpy(p + 1, key, klen);
    put(w, v);
    amqp_tw_end(w, mark);
    assert_false(w->failed);
    amqp_bytes_t t = amqp_tw_body(w, mark);
    assert_rc(amqp_table_validate(t, 0), 0);
    return t;
}

static void put_str_v(struct amqp_wbuf *w, int64_t v) { (void)v; amqp_tw_str(w, "v"); }
static void put_L(struct amqp_wbuf *w, int64_t v) { amqp_tw_int(w, 'L', v); }
static void put_l(struct amqp_wbuf *w, int64_t v) { amqp_tw_int(w, 'l', v); }
static void put_I(struct amqp_wbuf *w, int64_t v) { amqp_tw_int(w, 'I', v); }

/* A key holding a NUL is compared whole, not up to the NUL. */
static void test_key_with_nul(void **state)
{
    (void)state;
    struct amqp_wbuf a = {0}, b = {0}, c = {0};
    amqp_bytes_t bind = one(&a, "k\0z", 3, put_str_v, 0);
    amqp_bytes_t same = one(&b, "k\0z", 3, put_str_v, 0);
    amqp_bytes_t prefix = one(&c, "k", 1, put_str_v, 0);
    for (int hm = HM_ALL; hm <= HM_ANY_WITH_X; hm++) {
        assert_true(headers_match((enum headers_match)hm, bind, same));
        assert_false(headers_match((enum headers_match)hm, bind, prefix));
    }
    amqp_wbuf_free(&a);
    amqp_wbuf_free(&b);
    amqp_wbuf_free(&c);
}

/* 'L' matches itself and the other integer types of the same value. */
static void test_long_L(void **state)
{
    (void)state;
    struct amqp_wbuf a = {0}, b = {0}, c = {0}, d = {0};
    amqp_bytes_t L5 = one(&a, "n", 1, put_L, 5);
    amqp_bytes_t l5 = one(&b, "n", 1, put_l, 5);
    amqp_bytes_t I5 = one(&c, "n", 1, put_I, 5);
    amqp_bytes_t L6 = one(&d, "n", 1, put_L, 6);
    assert_true(headers_match(HM_ALL, L5, L5));
    assert_true(headers_match(HM_ALL, L5, l5));
    assert_true(headers_match(HM_ALL, l5, L5));
    assert_true(headers_match(HM_ANY, I5, L5));
    assert_false(headers_match(HM_ALL, L5, L6));
    amqp_wbuf_free(&a);
    amqp_wbuf_free(&b);
    amqp_wbuf_free(&c);
    amqp_wbuf_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_with_nul),
        cmocka_unit_test(test_long_L),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
