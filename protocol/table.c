/* table.c — owns field-table parsing, validation and building. Validation bounds the
 * nesting depth and checks every length before it is followed; the iterator then trusts
 * the validated bytes but still never reads past `end`. */
#include <stdlib.h>
#include "protocol/table.h"

/* Size of a fixed-width value of `type`, -1 for variable ones, -2 for unknown letters. */
static int fixed_size(char type)
{
    switch (type) {
    case 'V': return 0;
    case 't': case 'b': case 'B': return 1;
    case 's': case 'u': return 2;
    case 'I': case 'i': case 'f': return 4;
    case 'D': return 5;
    case 'l': case 'L': case 'd': case 'T': return 8;
    case 'S': case 'x': case 'F': case 'A': return -1;
    default: return -2;
    }
}

/* Reads one value of `type` at *pp; advances *pp. */
static int read_value(const uint8_t **pp, const uint8_t *end, char type, struct amqp_field *v)
{
    const uint8_t *p = *pp;
    int fs = fixed_size(type);
    if (fs == -2)
        return AMQP_E_FIELD_TYPE;
    size_t need = fs >= 0 ? (size_t)fs : 4;
    if ((size_t)(end - p) < need)
        return AMQP_E_SHORT;
    v->type = type;
    switch (type) {
    case 'V': break;
    case 't': v->v.b = p[0] != 0; break;
    case 'b': v->v.i = (int8_t)p[0]; break;
    case 'B': v->v.u = p[0]; break;
    case 's': v->v.i = (int16_t)rd16(p); break;
    case 'u': v->v.u = rd16(p); break;
    case 'I': v->v.i = (int32_t)rd32(p); break;
    case 'i': v->v.u = rd32(p); break;
    case 'l': case 'L': v->v.i = (int64_t)rd64(p); break;
    case 'T': v->v.u = rd64(p); break;
    case 'f': { uint32_t x = rd32(p); memcpy(&v->v.f, &x, 4); break; }
    case 'd': { uint64_t x = rd64(p); memcpy(&v->v.d, &x, 8); break; }
    case 'D': v->v.dec.scale = p[0]; v->v.dec.value = rd32(p + 1); break;
    default: { /* S x F A */
        uint32_t n = rd32(p);
        if ((size_t)(end - p - 4) < n)
            return AMQP_E_SHORT;
        v->v.bytes = (amqp_bytes_t){p + 4, n};
        need = 4 + (size_t)n;
    }
    }
    *pp = p + need;
    return 0;
}

int amqp_table_next(struct amqp_table_iter *it, amqp_bytes_t *ret_key, struct amqp_field *ret_val)
{
    if (it->p >= it->end)
        return 0;
    uint8_t klen = it->p[0];
    if ((size_t)(it->end - it->p) < 2u + klen) /* length, key, type letter */
        return AMQP_E_SHORT;
    const uint8_t *p = it->p + 1 + klen;
    char type = (char)*p++;
    int rc = read_value(&p, it->end, type, ret_val);
    if (rc < 0)
        return rc;
    *ret_key = (amqp_bytes_t){it->p + 1, klen};
    it->p = p;
    return 1;
}

int amqp_array_next(struct amqp_table_iter *it, struct amqp_field *ret_val)
{
    if (it->p >= it->end)
        return 0;
    const uint8_t *p = it->p;
    char type = (char)*p++;
    int rc = read_value(&p, it->end, type, ret_val);
    if (rc < 0)
        return rc;
    it->p = p;
    return 1;
}

static int validate_value(const struct amqp_field *v, int depth)
{
    if (v->type == 'F')
        return amqp_table_validate(v->v.bytes, depth + 1);
    if (v->type == 'A')
        return amqp_array_validate(v->v.bytes, depth + 1);
    return 0;
}

int amqp_table_validate(amqp_bytes_t tbl, int depth)
{
    if (depth >= AMQP_TABLE_MAX_DEPTH)
        return AMQP_E_DEPTH;
    struct amqp_table_iter it;
    amqp_bytes_t key;
    struct amqp_field v;
    int rc;
    amqp_table_iter_init(&it, tbl);
    while ((rc = amqp_table_next(&it, &key, &v)) > 0)
        if ((rc = validate_value(&v, depth)) < 0)
            return rc;
    return rc;
}

int amqp_array_validate(amqp_bytes_t arr, int depth)
{
    if (depth >= AMQP_TABLE_MAX_DEPTH)
        return AMQP_E_DEPTH;
    struct amqp_table_iter it;
    struct amqp_field v;
    int rc;
    amqp_table_iter_init(&it, arr);
    while ((rc = amqp_array_next(&it, &v)) > 0)
        if ((rc = validate_value(&v, depth)) < 0)
            return rc;
    return rc;
}

int amqp_table_get_bytes(amqp_bytes_t tbl, amqp_bytes_t key, struct amqp_field *ret_val)
{
    struct amqp_table_iter it;
    amqp_bytes_t k;
    struct amqp_field v;
    amqp_table_iter_init(&it, tbl);
    while (amqp_table_next(&it, &k, &v) > 0) {
        if (amqp_bytes_eq(k, key)) {
            *ret_val = v;
            return 1;
        }
    }
    return 0;
}

int amqp_table_get(amqp_bytes_t tbl, const char *key, struct amqp_field *ret_val)
{
    return amqp_table_get_bytes(tbl, amqp_cstr(key), ret_val);
}

void amqp_wbuf_free(struct amqp_wbuf *w)
{
    free(w->data);
    *w = (struct amqp_wbuf){0};
}

uint8_t *amqp_wbuf_grow(struct amqp_wbuf *w, size_t n)
{
    if (w->failed)
        return NULL;
    if (w->cap - w->len < n) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap - w->len < n)
            cap *= 2;
        uint8_t *d = realloc(w->data, cap);
        if (!d) {
            w->failed = true;
            return NULL;
        }
        w->data = d;
        w->cap = cap;
    }
    uint8_t *p = w->data + w->len;
    w->len += n;
    return p;
}

size_t amqp_tw_begin(struct amqp_wbuf *w)
{
    amqp_wbuf_grow(w, 4);
    return w->len;
}

void amqp_tw_end(struct amqp_wbuf *w, size_t mark)
{
    if (!w->failed)
        wr32(w->data + mark - 4, (uint32_t)(w->len - mark));
}

amqp_bytes_t amqp_tw_body(const struct amqp_wbuf *w, size_t mark)
{
    if (w->failed)
        return (amqp_bytes_t){NULL, 0};
    return (amqp_bytes_t){w->data + mark, (uint32_t)(w->len - mark)};
}

void amqp_tw_key(struct amqp_wbuf *w, const char *key)
{
    size_t n = strlen(key);
    if (n > 255) {
        w->failed = true;
        return;
    }
    uint8_t *p = amqp_wbuf_grow(w, 1 + n);
    if (p) {
        p[0] = (uint8_t)n;
        memcpy(p + 1, key, n);
    }
}

static uint8_t *put_type(struct amqp_wbuf *w, char type, size_t n)
{
    uint8_t *p = amqp_wbuf_grow(w, 1 + n);
    if (p)
        *p++ = (uint8_t)type;
    return p;
}

void amqp_tw_bool(struct amqp_wbuf *w, bool v)
{
    uint8_t *p = put_type(w, 't', 1);
    if (p)
        p[0] = v;
}

void amqp_tw_int(struct amqp_wbuf *w, char type, int64_t v)
{
    int n = fixed_size(type);
    uint8_t *p = put_type(w, type, n > 0 ? (size_t)n : 0);
    if (!p)
        return;
    switch (n) {
    case 1: p[0] = (uint8_t)v; break;
    case 2: wr16(p, (uint16_t)v); break;
    case 4: wr32(p, (uint32_t)v); break;
    case 8: wr64(p, (uint64_t)v); break;
    default: w->failed = true;
    }
}

void amqp_tw_float(struct amqp_wbuf *w, double v, bool single)
{
    uint8_t *p = put_type(w, single ? 'f' : 'd', single ? 4 : 8);
    if (!p)
        return;
    if (single) {
        float f = (float)v;
        uint32_t x;
        memcpy(&x, &f, 4);
        wr32(p, x);
    } else {
        uint64_t x;
        memcpy(&x, &v, 8);
        wr64(p, x);
    }
}

void amqp_tw_decimal(struct amqp_wbuf *w, uint8_t scale, uint32_t value)
{
    uint8_t *p = put_type(w, 'D', 5);
    if (p) {
        p[0] = scale;
        wr32(p + 1, value);
    }
}

void amqp_tw_bytes(struct amqp_wbuf *w, char type, amqp_bytes_t v)
{
    uint8_t *p = put_type(w, type, 4 + (size_t)v.len);
    if (p) {
        wr32(p, v.len);
        if (v.len)
            memcpy(p + 4, v.ptr, v.len);
    }
}

void amqp_tw_str(struct amqp_wbuf *w, const char *s)
{
    amqp_tw_bytes(w, 'S', amqp_cstr(s));
}

void amqp_tw_void(struct amqp_wbuf *w)
{
    put_type(w, 'V', 0);
}

size_t amqp_tw_table(struct amqp_wbuf *w)
{
    put_type(w, 'F', 0);
    return amqp_tw_begin(w);
}

size_t amqp_tw_array(struct amqp_wbuf *w)
{
    put_type(w, 'A', 0);
    return amqp_tw_begin(w);
}
