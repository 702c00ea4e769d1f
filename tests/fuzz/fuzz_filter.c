/* fuzz_filter.c — libFuzzer target for SNS filter policies (broker/model/filter.c) and the
 * exact-key promise the filter index relies on (broker/model/findex.c). Input: one byte of
 * flags (bit 0: MessageBody scope), two bytes of policy length L (big-endian), the policy's
 * JSON text, then the message: a headers table body (no length prefix) for attribute scope,
 * the message body for body scope. Owns nothing between runs. Invariants checked: a compiled
 * policy has at most FILTER_MAX_COMBINATIONS combinations; matching never crashes on any table
 * that validates or any body; and when a policy with an exact key matches a message, the message
 * carries one of that key's strings there (a string or byte array, or such an array element;
 * for a body, a top-level string or an array holding one), as the index assumes. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/model/filter.h"
#include "protocol/table.h"

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool is_one_of(amqp_bytes_t v, const amqp_bytes_t *vals, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (vals[i].len == v.len && (v.len == 0 || memcmp(vals[i].ptr, v.ptr, v.len) == 0))
            return true;
    return false;
}

/* Does the table carry one of vals under key, as the index looks it up? */
static bool table_has(amqp_bytes_t tbl, amqp_bytes_t key, const amqp_bytes_t *vals, size_t n)
{
    struct amqp_field f;
    if (amqp_table_get_bytes(tbl, key, &f) != 1)
        return false;
    if (f.type == 'S' || f.type == 'x')
        return is_one_of(f.v.bytes, vals, n);
    if (f.type != 'A')
        return false;
    struct amqp_table_iter it;
    struct amqp_field e;
    amqp_table_iter_init(&it, f.v.bytes);
    while (amqp_array_next(&it, &e) > 0)
        if ((e.type == 'S' || e.type == 'x') && is_one_of(e.v.bytes, vals, n))
            return true;
    return false;
}

static bool json_str_one_of(const json_t *s, const amqp_bytes_t *vals, size_t n)
{
    return json_is_string(s) &&
           is_one_of((amqp_bytes_t){(void *)json_string_value(s), json_string_length(s)}, vals, n);
}

static bool body_has(const json_t *body, amqp_bytes_t key, const amqp_bytes_t *vals, size_t n)
{
    if (!json_is_object(body))
        return false;
    const json_t *v = json_object_getn(body, (const char *)key.ptr, key.len);
    if (json_str_one_of(v, vals, n))
        return true;
    size_t i;
    const json_t *e;
    if (json_is_array(v))
        json_array_foreach(v, i, e)
            if (json_str_one_of(e, vals, n))
                return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    enum filter_scope scope = (data[0] & 1) ? FILTER_SCOPE_BODY : FILTER_SCOPE_ATTRIBUTES;
    size_t plen = (size_t)data[1] << 8 | data[2];
    if (plen > size - 3)
        plen = size - 3;
    const char *policy = (const char *)data + 3;
    const uint8_t *msg = data + 3 + plen;
    size_t mlen = size - 3 - plen;
    struct filter *f = NULL;
    char err[256];
    if (filter_compile(policy, plen, scope, &f, err, sizeof err) != 0) {
        CHECK(f == NULL && err[0]);
        return 0;
    }
    CHECK(filter_scope(f) == scope);
    CHECK(filter_combinations(f) <= FILTER_MAX_COMBINATIONS);
    amqp_bytes_t key;
    const amqp_bytes_t *vals;
    size_t n;
    int exact = filter_exact_key(f, &key, &vals, &n);
    if (scope == FILTER_SCOPE_ATTRIBUTES) {
        amqp_bytes_t tbl = {(void *)msg, (uint32_t)mlen};
        if (mlen <= UINT32_MAX && amqp_table_validate(tbl, 0) == 0 &&
            filter_match_table(f, tbl) && exact)
            CHECK(table_has(tbl, key, vals, n));
    } else {
        bool m1 = filter_match_body(f, msg, mlen);
        json_t *body = json_loadb((const char *)msg, mlen, JSON_DECODE_INT_AS_REAL, NULL);
        CHECK(m1 == filter_match_json(f, body));
        if (m1 && exact)
            CHECK(body_has(body, key, vals, n));
        json_decref(body);
    }
    filter_free(f);
    return 0;
}
