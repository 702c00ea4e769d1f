/* unit.h — shared helpers for the cmocka unit tests: the includes cmocka needs, an assert
 * that names the status code, a deterministic PRNG and a fixture loader. Owns nothing the
 * tests keep: fixture buffers belong to the caller (free them). Header-only, static inline. */
#ifndef WARREN_TESTS_UNIT_H
#define WARREN_TESTS_UNIT_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "protocol/wire.h"

#ifndef WARREN_FIXTURES
#error "WARREN_FIXTURES must name tests/fixtures (set by tests/unit/meson.build)"
#endif

/* Fails with file, line, the expression and both statuses spelled out. */
#define assert_rc(expr, want)                                                                  \
    do {                                                                                       \
        long rc_ = (long)(expr);                                                               \
        long want_ = (long)(want);                                                             \
        if (rc_ != want_)                                                                      \
            fail_msg("%s = %ld (%s), want %ld (%s)", #expr, rc_,                               \
                     rc_ > 0 ? "positive" : amqp_strerror((int)rc_), want_,                   \
                     want_ > 0 ? "positive" : amqp_strerror((int)want_));                      \
    } while (0)

#define assert_bytes_equal(a, b)                                                               \
    do {                                                                                       \
        amqp_bytes_t a_ = (a), b_ = (b);                                                       \
        if (!amqp_bytes_eq(a_, b_))                                                            \
            fail_msg("%s (%u bytes) != %s (%u bytes)", #a, a_.len, #b, b_.len);                \
    } while (0)

/* xorshift64*: reproducible "random" splits and values; no libc state. */
static inline uint64_t unit_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Reads tests/fixtures/<name> into a malloc'd buffer of exactly its size (so ASan sees
 * any read past the end); fails the test when the file is missing. */
static inline uint8_t *unit_fixture(const char *name, size_t *ret_len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", WARREN_FIXTURES, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open fixture %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    assert_true(n > 0);
    uint8_t *buf = malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *ret_len = (size_t)n;
    return buf;
}

/* A copy of p[0..n) in its own allocation of exactly n bytes (at least 1 for malloc). */
static inline uint8_t *unit_dup(const void *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    assert_non_null(d);
    if (n)
        memcpy(d, p, n);
    return d;
}

#endif
