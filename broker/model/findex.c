/* findex.c — owns an exchange's filter-policy index (findex.h): a hash map from (scope, key,
 * string) to the bucket of bindings whose policy requires that key to be one of its strings,
 * and the short list of distinct (scope, key) pairs a message is looked up by. A binding with
 * N strings has N entries, allocated together with it indexed and freed when it leaves.
 * Invariant: keys[] holds each (scope, key) of an indexed binding once, with refs = the number
 * of indexed bindings under it. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "broker/model/binding.h"
#include "broker/model/filter.h"
#include "broker/model/findex.h"
#include "lib/array.h"
#include "lib/hmap.h"
#include "protocol/table.h"

struct fkey {
    uint32_t refs;
    uint8_t scope;
    uint8_t len;
    char key[255];
};

struct fbucket {
    struct list entries; /* of findex_entry.link */
    uint32_t klen;
    uint8_t k[]; /* the map key points here */
};

struct findex {
    struct hmap buckets; /* bucket key (see make_key) -> struct fbucket (owned) */
    struct fkey *keys;   /* owned */
    uint32_t nkeys, keys_cap;
};

/* The bucket key: scope, key length, key, string. buf holds 2 + 255 + FINDEX_MAX_VALUE. */
#define BKEY_MAX (2 + 255 + FINDEX_MAX_VALUE)
static size_t make_key(uint8_t *buf, uint8_t scope, amqp_bytes_t key, amqp_bytes_t val)
{
    buf[0] = scope;
    buf[1] = (uint8_t)key.len;
    memcpy(buf + 2, key.ptr, key.len);
    if (val.len)
        memcpy(buf + 2 + key.len, val.ptr, val.len);
    return 2 + key.len + val.len;
}

static struct fkey *find_key(const struct findex *fi, uint8_t scope, amqp_bytes_t key)
{
    for (uint32_t i = 0; i < fi->nkeys; i++) {
        struct fkey *k = &fi->keys[i];
        if (k->scope == scope && k->len == key.len && memcmp(k->key, key.ptr, key.len) == 0)
            return k;
    }
    return NULL;
}

static void drop_entry(struct findex *fi, struct findex_entry *e, uint8_t scope, amqp_bytes_t key,
                       amqp_bytes_t val)
{
    list_remove(&e->link);
    uint8_t buf[BKEY_MAX];
    size_t n = make_key(buf, scope, key, val);
    struct fbucket *bk = hmap_get(&fi->buckets, buf, n);
    if (bk && list_empty(&bk->entries)) {
        hmap_del(&fi->buckets, buf, n);
        free(bk);
    }
}

static void unref_key(struct findex *fi, uint8_t scope, amqp_bytes_t key)
{
    struct fkey *k = find_key(fi, scope, key);
    if (k && --k->refs == 0)
        *k = fi->keys[--fi->nkeys];
}

int findex_add(struct findex **pfi, struct binding *b)
{
    amqp_bytes_t key;
    const amqp_bytes_t *vals;
    size_t n;
    if (!filter_exact_key(b->filter, &key, &vals, &n) || n == 0 || key.len > 255)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (vals[i].len > FINDEX_MAX_VALUE)
            return 0;
    struct findex *fi = *pfi;
    if (!fi && !(fi = *pfi = calloc(1, sizeof *fi)))
        return -ENOMEM;
    uint8_t scope = (uint8_t)filter_scope(b->filter);
    struct fkey *k = find_key(fi, scope, key);
    if (!k) {
        if (array_reserve((void **)&fi->keys, &fi->keys_cap, fi->nkeys, sizeof *fi->keys, 4) < 0)
            return -ENOMEM;
        k = &fi->keys[fi->nkeys++];
        *k = (struct fkey){.refs = 0, .scope = scope, .len = (uint8_t)key.len};
        memcpy(k->key, key.ptr, key.len);
    }
    struct findex_entry *ents = calloc(n, sizeof *ents);
    if (!ents) {
        if (k->refs == 0)
            fi->nkeys--;
        return -ENOMEM;
    }
    k->refs++;
    b->fent = ents;
    uint8_t buf[BKEY_MAX];
    for (size_t i = 0; i < n; i++) {
        size_t bl = make_key(buf, scope, key, vals[i]);
        struct fbucket *bk = hmap_get(&fi->buckets, buf, bl);
        if (!bk) {
            bk = malloc(sizeof *bk + bl);
            if (bk) {
                list_init(&bk->entries);
                bk->klen = (uint32_t)bl;
                memcpy(bk->k, buf, bl);
            }
            if (!bk || hmap_put(&fi->buckets, bk->k, bl, bk) < 0) {
                free(bk);
                while (i--)
                    drop_entry(fi, &ents[i], scope, key, vals[i]);
                unref_key(fi, scope, key);
                free(ents);
                b->fent = NULL;
                return -ENOMEM;
            }
        }
        ents[i].b = b;
        list_insert_tail(&bk->entries, &ents[i].link);
    }
    b->nfent = (uint32_t)n;
    return 1;
}

void findex_remove(struct findex *fi, struct binding *b)
{
    amqp_bytes_t key;
    const amqp_bytes_t *vals;
    size_t n;
    if (!b->nfent || !filter_exact_key(b->filter, &key, &vals, &n))
        return;
    uint8_t scope = (uint8_t)filter_scope(b->filter);
    for (size_t i = 0; i < n; i++)
        drop_entry(fi, &b->fent[i], scope, key, vals[i]);
    unref_key(fi, scope, key);
    free(b->fent);
    b->fent = NULL;
    b->nfent = 0;
}

void findex_free(struct findex *fi)
{
    if (!fi)
        return;
    void *v;
    for (uint32_t it = 0; hmap_next(&fi->buckets, &it, &v);)
        free(v);
    hmap_free(&fi->buckets);
    free(fi->keys);
    free(fi);
}

static void visit(const struct findex *fi, uint8_t scope, amqp_bytes_t key, amqp_bytes_t val,
                  void (*fn)(struct binding *b, void *arg), void *arg)
{
    if (val.len > FINDEX_MAX_VALUE)
        return;
    uint8_t buf[BKEY_MAX];
    size_t n = make_key(buf, scope, key, val);
    struct fbucket *bk = hmap_get(&fi->buckets, buf, n);
    if (!bk)
        return;
    struct list *pos;
    list_foreach(pos, &bk->entries)
        fn(list_entry(pos, struct findex_entry, link)->b, arg);
}

static void visit_field(const struct findex *fi, const struct fkey *k, const struct amqp_field *f,
                        void (*fn)(struct binding *b, void *arg), void *arg)
{
    amqp_bytes_t key = {(void *)k->key, k->len};
    if (f->type == 'S' || f->type == 'x') {
        visit(fi, k->scope, key, f->v.bytes, fn, arg);
    } else if (f->type == 'A') {
        struct amqp_table_iter it;
        struct amqp_field e;
        amqp_table_iter_init(&it, f->v.bytes);
        while (amqp_array_next(&it, &e) > 0)
            if (e.type == 'S' || e.type == 'x')
                visit(fi, k->scope, key, e.v.bytes, fn, arg);
    }
}

static void visit_json(const struct findex *fi, const struct fkey *k, const json_t *v,
                       void (*fn)(struct binding *b, void *arg), void *arg)
{
    amqp_bytes_t key = {(void *)k->key, k->len};
    if (json_is_string(v)) {
        visit(fi, k->scope, key, (amqp_bytes_t){(void *)json_string_value(v), json_string_length(v)},
              fn, arg);
    } else if (json_is_array(v)) {
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e)
            if (json_is_string(e))
                visit(fi, k->scope, key,
                      (amqp_bytes_t){(void *)json_string_value(e), json_string_length(e)}, fn, arg);
    }
}

void findex_candidates(const struct findex *fi, const struct findex_msg *m,
                       void (*fn)(struct binding *b, void *arg), void *arg)
{
    for (uint32_t i = 0; fi && i < fi->nkeys; i++) {
        const struct fkey *k = &fi->keys[i];
        if (k->scope == FILTER_SCOPE_BODY) {
            const json_t *body = m->body(m->arg);
            if (json_is_object(body))
                visit_json(fi, k, json_object_getn(body, k->key, k->len), fn, arg);
        } else {
            struct amqp_field f;
            if (amqp_table_get_bytes(m->headers, (amqp_bytes_t){(void *)k->key, k->len}, &f) == 1)
                visit_field(fi, k, &f, fn, arg);
        }
    }
}
