/* test_args.c — broker/model/args.c, declare-argument equivalence: 64-bit 'L' integers are
 * integers (found by fuzz_table, tests/fuzz/: two 'L' values were compared as byte strings
 * through the field union, reading a length that was never set, so a redeclare with the same
 * 'L' argument could be refused or read wild memory). */
#include "unit.h"

#include "broker/model/args.h"
#include "broker/model/errors.h"
#include "protocol/table.h"

static amqp_bytes_t ttl(struct amqp_wbuf *w, char type, int64_t v)
{
    size_t mark = amqp_tw_begin(w);
    amqp_tw_key(w, "x-message-ttl");
    amqp_tw_int(w, type, v);
    amqp_tw_end(w, mark);
    assert_false(w->failed);
    return amqp_tw_body(w, mark);
}

static void test_long_L_equivalent(void **state)
{
    (void)state;
    struct amqp_wbuf a = {0}, b = {0}, c = {0}, d = {0};
    amqp_bytes_t L = ttl(&a, 'L', 1000), L2 = ttl(&b, 'L', 1000);
    amqp_bytes_t l = ttl(&c, 'l', 1000), other = ttl(&d, 'L', 2000);
    struct err err = {""};
    assert_int_equal(args_check_queue(&err, "q", "/", L), 0);
    assert_int_equal(args_equivalent(&err, "queue 'q' in vhost '/'", L, L2, args_queue_keys), 0);
    assert_int_equal(args_equivalent(&err, "queue 'q' in vhost '/'", L, l, args_queue_keys), 0);
    assert_int_equal(args_equivalent(&err, "queue 'q' in vhost '/'", l, L, args_queue_keys), 0);
    assert_int_equal(args_equivalent(&err, "queue 'q' in vhost '/'", L, other, args_queue_keys),
                     -WERR_PRECONDITION_FAILED);
    assert_string_equal(err.text, "inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': "
                                  "received '2000' but current is '1000'");
    amqp_wbuf_free(&a);
    amqp_wbuf_free(&b);
    amqp_wbuf_free(&c);
    amqp_wbuf_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_L_equivalent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
