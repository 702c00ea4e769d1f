/* headers.c — owns the headers-exchange matching rule. A pattern value of type void means
 * "key present"; otherwise values match when equal as RabbitMQ's Erlang terms compare with
 * ==: numbers by value whatever their width, strings and byte arrays by bytes. Keys starting
 * with "x-" are ignored except by the *-with-x kinds; x-match and the filter policy arguments
 * (x-filter-policy, x-filter-policy-scope: see binding.h) are always ignored. */
#include <string.h>
#include "broker/model/headers.h"
#include "protocol/table.h"

enum headers_match headers_match_kind(amqp_bytes_t args)
{
    struct amqp_field v;
    if (amqp_table_get(args, "x-match", &v) != 1 || (v.type != 'S' && v.type != 'x'))
        return HM_ALL;
    if (amqp_bytes_eq_str(v.v.bytes, "any"))
        return HM_ANY;
    if (amqp_bytes_eq_str(v.v.bytes, "all-with-x"))
        return HM_ALL_WITH_X;
    if (amqp_bytes_eq_str(v.v.bytes, "any-with-x"))
        return HM_ANY_WITH_X;
    return HM_ALL;
}

static bool is_int(char t)
{
    return t && strchr("bBsuIilLT", t) != NULL; /* L: signed 64-bit, as l (table.h) */
}

static bool is_float(char t)
{
    return t == 'f' || t == 'd' || t == 'D';
}

static double as_double(const struct amqp_field *f)
{
    switch (f->type) {
    case 'f': return f->v.f;
    case 'd': return f->v.d;
    case 'D': {
        double v = f->v.dec.value;
        for (int i = 0; i < f->v.dec.scale; i++)
            v /= 10;
        return v;
    }
    case 'B': case 'u': case 'i': case 'T': return (double)f->v.u;
    default: return (double)f->v.i;
    }
}

static bool values_equal(const struct amqp_field *a, const struct amqp_field *b)
{
    if (is_int(a->type) && is_int(b->type)) {
        bool ua = strchr("BuiT", a->type) != NULL, ub = strchr("BuiT", b->type) != NULL;
        if (ua == ub)
            return ua ? a->v.u == b->v.u : a->v.i == b->v.i;
        int64_t s = ua ? b->v.i : a->v.i;
        uint64_t u = ua ? a->v.u : b->v.u;
        return s >= 0 && (uint64_t)s == u;
    }
    if ((is_int(a->type) || is_float(a->type)) && (is_int(b->type) || is_float(b->type)))
        return as_double(a) == as_double(b);
    bool sa = a->type == 'S' || a->type == 'x', sb = b->type == 'S' || b->type == 'x';
    if (sa && sb)
        return amqp_bytes_eq(a->v.bytes, b->v.bytes);
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case 't': return a->v.b == b->v.b;
    case 'V': return true;
    case 'F': case 'A': return amqp_bytes_eq(a->v.bytes, b->v.bytes);
    default: return false;
    }
}

bool headers_match(enum headers_match hm, amqp_bytes_t args, amqp_bytes_t msg_headers)
{
    bool all = hm == HM_ALL || hm == HM_ALL_WITH_X;
    bool with_x = hm == HM_ALL_WITH_X || hm == HM_ANY_WITH_X;
    struct amqp_table_iter it;
    amqp_bytes_t key;
    struct amqp_field pv, dv;
    amqp_table_iter_init(&it, args);
    while (amqp_table_next(&it, &key, &pv) > 0) {
        if (amqp_bytes_eq_str(key, "x-match") || amqp_bytes_eq_str(key, "x-filter-policy") ||
            amqp_bytes_eq_str(key, "x-filter-policy-scope"))
            continue;
        if (!with_x && key.len >= 2 && memcmp(key.ptr, "x-", 2) == 0)
            continue;
        /* By bytes: a key may hold a NUL, and RabbitMQ compares keys as binaries. */
        bool ok = amqp_table_get_bytes(msg_headers, key, &dv) == 1 &&
                  (pv.type == 'V' || values_equal(&pv, &dv));
        if (all && !ok)
            return false;
        if (!all && ok)
            return true;
    }
    return all;
}
