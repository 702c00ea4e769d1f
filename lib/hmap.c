/* hmap.c — owns the slot array of a string-keyed map (linear probing, tombstones,
 * growth at 70% load including tombstones). Invariant: count <= used < cap * 0.7. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "lib/hmap.h"

static uint32_t hash_of(const void *key, size_t len)
{
    /* FNV-1a, then avoid the two reserved values. */
    const uint8_t *p = key;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h < 2 ? h + 2 : h;
}

static struct hmap_slot *find(const struct hmap *m, const void *key, size_t klen, uint32_t h)
{
    if (!m->cap)
        return NULL;
    for (uint32_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        struct hmap_slot *s = &m->slots[i];
        if (s->hash == 0)
            return NULL;
        if (s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0)
            return s;
    }
}

void *hmap_get(const struct hmap *m, const void *key, size_t klen)
{
    struct hmap_slot *s = find(m, key, klen, hash_of(key, klen));
    return s ? s->value : NULL;
}

static int grow(struct hmap *m)
{
    uint32_t cap = m->cap ? m->cap : 8;
    while ((m->count + 1) * 10 >= cap * 7)
        cap *= 2;
    struct hmap_slot *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -ENOMEM;
    for (uint32_t k = 0; k < m->cap; k++) {
        struct hmap_slot *s = &m->slots[k];
        if (s->hash < 2)
            continue;
        uint32_t i = s->hash & (cap - 1);
        while (slots[i].hash)
            i = (i + 1) & (cap - 1);
        slots[i] = *s;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    m->used = m->count;
    return 0;
}

int hmap_put(struct hmap *m, const void *key, size_t klen, void *value)
{
    uint32_t h = hash_of(key, klen);
    struct hmap_slot *s = find(m, key, klen, h);
    if (s) {
        s->key = key;
        s->value = value;
        return 0;
    }
    if ((m->used + 1) * 10 >= m->cap * 7) {
        int rc = grow(m);
        if (rc)
            return rc;
    }
    uint32_t i = h & (m->cap - 1);
    while (m->slots[i].hash >= 2)
        i = (i + 1) & (m->cap - 1);
    if (m->slots[i].hash == 0)
        m->used++;
    m->slots[i] = (struct hmap_slot){key, (uint32_t)klen, h, value};
    m->count++;
    return 0;
}

void *hmap_del(struct hmap *m, const void *key, size_t klen)
{
    struct hmap_slot *s = find(m, key, klen, hash_of(key, klen));
    if (!s)
        return NULL;
    void *v = s->value;
    *s = (struct hmap_slot){NULL, 0, 1, NULL};
    m->count--;
    return v;
}

void hmap_free(struct hmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof *m);
}

int hmap_next(const struct hmap *m, uint32_t *iter, void **ret_value)
{
    for (uint32_t i = *iter; i < m->cap; i++) {
        if (m->slots[i].hash >= 2) {
            *ret_value = m->slots[i].value;
            *iter = i + 1;
            return 1;
        }
    }
    *iter = m->cap;
    return 0;
}
