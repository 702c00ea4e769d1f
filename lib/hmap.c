/* hmap.c — owns the slot array of a string-keyed map (linear probing, tombstones,
 * growth at 70% load including tombstones). Invariant: count <= used < cap * 0.7. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <sys/random.h>
#include <time.h>
#include "lib/hmap.h"
#include "lib/siphash.h"

/* Client-chosen names (queues, routing keys) are hashed under a random key per process, so
 * that nobody can pick names that all probe one run of slots. */
static uint8_t s_key[16];
static bool s_keyed;

void hmap_seed(const uint8_t key[16])
{
    memcpy(s_key, key, sizeof s_key);
    s_keyed = true;
}

uint32_t hmap_hash(const void *key, size_t len)
{
    if (!s_keyed) {
        uint8_t k[16];
        if (getrandom(k, sizeof k, 0) != (ssize_t)sizeof k) { /* no entropy yet: rare */
            uint64_t t = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&s_key;
            for (size_t i = 0; i < sizeof k; i++)
                k[i] = (uint8_t)(t >> (8 * (i % 8)) ^ i);
        }
        hmap_seed(k);
    }
    uint32_t h = (uint32_t)siphash(s_key, key, len, 1, 3);
    return h < 2 ? h + 2 : h; /* 0 and 1 mark empty and deleted slots */
}

static struct hmap_slot *find(const struct hmap *m, const void *key, size_t klen, uint32_t h)
{
    if (!m->cap)
        return NULL;
    for (uint32_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        struct hmap_slot *s = &m->slots[i];
        if (s->hash == 0)
            return NULL;
        if (s->hash == h && s->klen == klen && (!klen || memcmp(s->key, key, klen) == 0))
            return s;
    }
}

void *hmap_get(const struct hmap *m, const void *key, size_t klen)
{
    struct hmap_slot *s = find(m, key, klen, hmap_hash(key, klen));
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
    uint32_t h = hmap_hash(key, klen);
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
    struct hmap_slot *s = find(m, key, klen, hmap_hash(key, klen));
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
