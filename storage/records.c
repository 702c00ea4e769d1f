/* records.c — owns the byte layout of entity and tenancy records (see schema.h). Decoders
 * check every length against the record size: a damaged record is reported, never followed. */
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

/* ---- tenancy records: key = u8-length names, value = u32-length strings (schema.h) ---- */

size_t st_key_size(const struct st_bytes *names, size_t n)
{
    size_t size = 0;
    for (size_t i = 0; i < n; i++) {
        if (names[i].len > ST_KEY_NAME_MAX)
            return 0;
        size += 1 + names[i].len;
    }
    return size <= ST_KEY_MAX ? size : 0;
}

void st_key_encode(const struct st_bytes *names, size_t n, uint8_t *p)
{
    for (size_t i = 0; i < n; i++)
        p = put_str8(p, names[i]);
}

/* Decodes a key of exactly n names; 0 or STORAGE_E_CORRUPT. */
static int key_decode(const uint8_t *p, size_t len, struct st_bytes *names, size_t n)
{
    const uint8_t *end = p + len;
    for (size_t i = 0; i < n; i++)
        if (!(p = get_str8(p, end, &names[i])))
            return STORAGE_E_CORRUPT;
    return p == end ? 0 : STORAGE_E_CORRUPT;
}

static size_t val_size(const struct st_bytes *strs, size_t n)
{
    size_t size = 0;
    for (size_t i = 0; i < n; i++)
        size += 4 + strs[i].len;
    return size;
}

static bool val_fits(const struct st_bytes *strs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strs[i].len > UINT32_MAX)
            return false;
    return true;
}

static uint8_t *val_encode(const struct st_bytes *strs, size_t n, uint8_t *p)
{
    for (size_t i = 0; i < n; i++) {
        store_be32(p, (uint32_t)strs[i].len);
        p += 4;
        if (strs[i].len)
            memcpy(p, strs[i].p, strs[i].len);
        p += strs[i].len;
    }
    return p;
}

/* Decodes n u32-length strings that fill p[0..len) exactly; 0 or STORAGE_E_CORRUPT. */
static int val_decode(const uint8_t *p, size_t len, struct st_bytes *strs, size_t n)
{
    const uint8_t *end = p + len;
    for (size_t i = 0; i < n; i++) {
        if (end - p < 4 || (size_t)(end - p - 4) < load_be32(p))
            return STORAGE_E_CORRUPT;
        strs[i] = (struct st_bytes){p + 4, load_be32(p)};
        p += 4 + strs[i].len;
    }
    return p == end ? 0 : STORAGE_E_CORRUPT;
}

/* Each record as its key names and value strings, in schema.h's order. */
#define USER_PARTS(u)                                                                          \
    struct st_bytes key[] = {(u)->name};                                                       \
    struct st_bytes val[] = {(u)->password_hash, (u)->hashing, (u)->tags}
#define VHOST_PARTS(v)                                                                         \
    struct st_bytes key[] = {(v)->name};                                                       \
    struct st_bytes val[] = {(v)->description, (v)->default_queue_type}
#define PERMISSION_PARTS(pm)                                                                   \
    struct st_bytes key[] = {(pm)->user, (pm)->vhost};                                         \
    struct st_bytes val[] = {(pm)->configure, (pm)->write, (pm)->read}
#define TOPIC_PERMISSION_PARTS(tp)                                                             \
    struct st_bytes key[] = {(tp)->user, (tp)->vhost, (tp)->exchange};                         \
    struct st_bytes val[] = {(tp)->write, (tp)->read}
#define PARAM_PARTS(pr)                                                                        \
    struct st_bytes key[] = {(pr)->component, (pr)->vhost, (pr)->name};                        \
    struct st_bytes val[] = {(pr)->value}
#define N(a) (sizeof(a) / sizeof((a)[0]))

size_t st_user_size(const struct st_user *u)
{
    USER_PARTS(u);
    return st_key_size(key, N(key)) + val_size(val, N(val));
}

size_t st_user_encode(const struct st_user *u, uint8_t *p)
{
    USER_PARTS(u);
    st_key_encode(key, N(key), p);
    val_encode(val, N(val), p + st_key_size(key, N(key)));
    return st_key_size(key, N(key));
}

bool st_user_fits(const struct st_user *u)
{
    USER_PARTS(u);
    return st_key_size(key, N(key)) && val_fits(val, N(val));
}

int st_user_decode(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                   struct st_user *ret)
{
    struct st_bytes key[1], val[3];
    if (key_decode(k, klen, key, N(key)) || val_decode(v, vlen, val, N(val)))
        return STORAGE_E_CORRUPT;
    *ret = (struct st_user){key[0], val[0], val[1], val[2]};
    return 0;
}

/* A vhost's value starts with its two limits (i64 each), then its strings. */
size_t st_vhost_size(const struct st_vhost *v)
{
    VHOST_PARTS(v);
    return st_key_size(key, N(key)) + 16 + val_size(val, N(val));
}

size_t st_vhost_encode(const struct st_vhost *v, uint8_t *p)
{
    VHOST_PARTS(v);
    size_t klen = st_key_size(key, N(key));
    st_key_encode(key, N(key), p);
    p += klen;
    store_be64(p, (uint64_t)v->max_connections);
    store_be64(p + 8, (uint64_t)v->max_queues);
    val_encode(val, N(val), p + 16);
    return klen;
}

bool st_vhost_fits(const struct st_vhost *v)
{
    VHOST_PARTS(v);
    return st_key_size(key, N(key)) && val_fits(val, N(val));
}

int st_vhost_decode(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                    struct st_vhost *ret)
{
    struct st_bytes key[1], val[2];
    if (vlen < 16 || key_decode(k, klen, key, N(key)) || val_decode(v + 16, vlen - 16, val, N(val)))
        return STORAGE_E_CORRUPT;
    *ret = (struct st_vhost){.name = key[0], .description = val[0], .default_queue_type = val[1],
                             .max_connections = (int64_t)load_be64(v),
                             .max_queues = (int64_t)load_be64(v + 8)};
    return 0;
}

size_t st_permission_size(const struct st_permission *pm)
{
    PERMISSION_PARTS(pm);
    return st_key_size(key, N(key)) + val_size(val, N(val));
}

size_t st_permission_encode(const struct st_permission *pm, uint8_t *p)
{
    PERMISSION_PARTS(pm);
    st_key_encode(key, N(key), p);
    val_encode(val, N(val), p + st_key_size(key, N(key)));
    return st_key_size(key, N(key));
}

bool st_permission_fits(const struct st_permission *pm)
{
    PERMISSION_PARTS(pm);
    return st_key_size(key, N(key)) && val_fits(val, N(val));
}

int st_permission_decode(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                         struct st_permission *ret)
{
    struct st_bytes key[2], val[3];
    if (key_decode(k, klen, key, N(key)) || val_decode(v, vlen, val, N(val)))
        return STORAGE_E_CORRUPT;
    *ret = (struct st_permission){key[0], key[1], val[0], val[1], val[2]};
    return 0;
}

size_t st_topic_permission_size(const struct st_topic_permission *tp)
{
    TOPIC_PERMISSION_PARTS(tp);
    return st_key_size(key, N(key)) + val_size(val, N(val));
}

size_t st_topic_permission_encode(const struct st_topic_permission *tp, uint8_t *p)
{
    TOPIC_PERMISSION_PARTS(tp);
    st_key_encode(key, N(key), p);
    val_encode(val, N(val), p + st_key_size(key, N(key)));
    return st_key_size(key, N(key));
}

bool st_topic_permission_fits(const struct st_topic_permission *tp)
{
    TOPIC_PERMISSION_PARTS(tp);
    return st_key_size(key, N(key)) && val_fits(val, N(val));
}

int st_topic_permission_decode(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                               struct st_topic_permission *ret)
{
    struct st_bytes key[3], val[2];
    if (key_decode(k, klen, key, N(key)) || val_decode(v, vlen, val, N(val)))
        return STORAGE_E_CORRUPT;
    *ret = (struct st_topic_permission){key[0], key[1], key[2], val[0], val[1]};
    return 0;
}

size_t st_param_size(const struct st_param *pr)
{
    PARAM_PARTS(pr);
    return st_key_size(key, N(key)) + val_size(val, N(val));
}

size_t st_param_encode(const struct st_param *pr, uint8_t *p)
{
    PARAM_PARTS(pr);
    st_key_encode(key, N(key), p);
    val_encode(val, N(val), p + st_key_size(key, N(key)));
    return st_key_size(key, N(key));
}

bool st_param_fits(const struct st_param *pr)
{
    PARAM_PARTS(pr);
    return st_key_size(key, N(key)) && val_fits(val, N(val));
}

int st_param_decode(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                    struct st_param *ret)
{
    struct st_bytes key[3], val[1];
    if (key_decode(k, klen, key, N(key)) || val_decode(v, vlen, val, N(val)))
        return STORAGE_E_CORRUPT;
    *ret = (struct st_param){key[0], key[1], key[2], val[0]};
    return 0;
}
