/* records.c — owns the byte layout of entity records (see schema.h). Decoders check every
 * length against the record size: a damaged record is reported, never followed. */
#include <string.h>
#include "storage/env.h"
#include "storage/records.h"
#include "storage/schema.h"

static uint8_t *put_str8(uint8_t *p, struct st_bytes b)
{
    *p++ = (uint8_t)b.len;
    if (b.len)
        memcpy(p, b.p, b.len);
    return p + b.len;
}

static void put_rest(uint8_t *p, struct st_bytes b)
{
    if (b.len)
        memcpy(p, b.p, b.len);
}

/* Reads a u8-length string; NULL when it runs past end. */
static const uint8_t *get_str8(const uint8_t *p, const uint8_t *end, struct st_bytes *ret)
{
    if (p >= end || (size_t)(end - p - 1) < p[0])
        return NULL;
    *ret = (struct st_bytes){p + 1, p[0]};
    return p + 1 + p[0];
}

size_t st_exchange_size(const struct st_exchange *x)
{
    return 4 + x->vhost.len + x->name.len + x->args.len;
}

void st_exchange_encode(const struct st_exchange *x, uint8_t *p)
{
    *p++ = x->type;
    *p++ = x->flags;
    p = put_str8(p, x->vhost);
    p = put_str8(p, x->name);
    put_rest(p, x->args);
}

int st_exchange_decode(uint64_t id, const uint8_t *p, size_t len, struct st_exchange *ret)
{
    const uint8_t *end = p + len;
    if (len < 4)
        return STORAGE_E_CORRUPT;
    ret->id = id;
    ret->type = p[0];
    ret->flags = p[1];
    p += 2;
    if (!(p = get_str8(p, end, &ret->vhost)) || !(p = get_str8(p, end, &ret->name)))
        return STORAGE_E_CORRUPT;
    ret->args = (struct st_bytes){p, (size_t)(end - p)};
    return 0;
}

size_t st_queue_size(const struct st_queue *q)
{
    return 3 + q->vhost.len + q->name.len + q->args.len;
}

void st_queue_encode(const struct st_queue *q, uint8_t *p)
{
    *p++ = q->flags;
    p = put_str8(p, q->vhost);
    p = put_str8(p, q->name);
    put_rest(p, q->args);
}

int st_queue_decode(uint64_t id, const uint8_t *p, size_t len, struct st_queue *ret)
{
    const uint8_t *end = p + len;
    memset(ret, 0, sizeof *ret);
    if (len < 3)
        return STORAGE_E_CORRUPT;
    ret->id = id;
    ret->flags = *p++;
    if (!(p = get_str8(p, end, &ret->vhost)) || !(p = get_str8(p, end, &ret->name)))
        return STORAGE_E_CORRUPT;
    ret->args = (struct st_bytes){p, (size_t)(end - p)};
    return 0;
}

size_t st_binding_size(const struct st_binding *b)
{
    return 5 + b->vhost.len + b->src.len + b->dst.len + b->key.len + b->args.len;
}

void st_binding_encode(const struct st_binding *b, uint8_t *p)
{
    *p++ = (uint8_t)b->dst_kind;
    p = put_str8(p, b->vhost);
    p = put_str8(p, b->src);
    p = put_str8(p, b->dst);
    p = put_str8(p, b->key);
    put_rest(p, b->args);
}

int st_binding_decode(uint64_t id, const uint8_t *p, size_t len, struct st_binding *ret)
{
    const uint8_t *end = p + len;
    if (len < 5 || (p[0] != 'q' && p[0] != 'x'))
        return STORAGE_E_CORRUPT;
    ret->id = id;
    ret->dst_kind = (char)*p++;
    if (!(p = get_str8(p, end, &ret->vhost)) || !(p = get_str8(p, end, &ret->src)) ||
        !(p = get_str8(p, end, &ret->dst)) || !(p = get_str8(p, end, &ret->key)))
        return STORAGE_E_CORRUPT;
    ret->args = (struct st_bytes){p, (size_t)(end - p)};
    return 0;
}
