/* dcache.c — owns a deduplication cache's arrays (dcache.h). Invariants: every used entry is
 * in exactly one hash chain (that of its key's bucket) and in the order list; free entries are
 * in the free list only; count entries are used; count <= max when max is set. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "lib/dcache.h"
#include "lib/hmap.h"

void dcache_init(struct dcache *c, uint32_t max)
{
    memset(c, 0, sizeof *c);
    c->max = max;
    c->oldest = c->newest = c->free = DCACHE_NONE;
    c->next_seq = 1;
}

void dcache_free(struct dcache *c)
{
    free(c->e);
    free(c->bucket);
    dcache_init(c, c->max);
}

static uint32_t bucket_of(const struct dcache *c, const struct dcache_key *k)
{
    return hmap_hash(k, sizeof *k) & (c->nbucket - 1);
}

static bool same(const struct dcache_key *a, const struct dcache_key *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

static uint32_t lookup(const struct dcache *c, const struct dcache_key *k)
{
    if (!c->nbucket)
        return DCACHE_NONE;
    for (uint32_t i = c->bucket[bucket_of(c, k)]; i != DCACHE_NONE; i = c->e[i].hnext)
        if (same(&c->e[i].key, k))
            return i;
    return DCACHE_NONE;
}

const struct dcache_entry *dcache_find(const struct dcache *c, const struct dcache_key *k,
                                       uint64_t now)
{
    uint32_t i = lookup(c, k);
    if (i == DCACHE_NONE || (c->e[i].expires && c->e[i].expires <= now))
        return NULL;
    return &c->e[i];
}

/* Takes entry i out of its chain, the order list, and puts it on the free list. */
static void unlink_entry(struct dcache *c, uint32_t i)
{
    struct dcache_entry *e = &c->e[i];
    uint32_t *p = &c->bucket[bucket_of(c, &e->key)];
    while (*p != i)
        p = &c->e[*p].hnext;
    *p = e->hnext;
    if (e->older != DCACHE_NONE)
        c->e[e->older].newer = e->newer;
    else
        c->oldest = e->newer;
    if (e->newer != DCACHE_NONE)
        c->e[e->newer].older = e->older;
    else
        c->newest = e->older;
    e->hnext = c->free;
    c->free = i;
    c->count--;
}

/* Doubles the entry array (up to max) and rebuilds the chains. 0 or -ENOMEM, unchanged. */
static int grow(struct dcache *c)
{
    uint32_t cap = c->cap ? c->cap * 2 : 64;
    if (c->max && cap > c->max)
        cap = c->max;
    if (cap <= c->cap)
        return -ENOMEM;
    uint32_t nb = 1;
    while (nb < cap)
        nb *= 2;
    uint32_t *bucket = malloc((size_t)nb * sizeof *bucket);
    struct dcache_entry *e = realloc(c->e, (size_t)cap * sizeof *e);
    if (!bucket || !e) {
        free(bucket);
        if (e)
            c->e = e; /* the old entries are still valid in it */
        return -ENOMEM;
    }
    c->e = e;
    free(c->bucket);
    c->bucket = bucket;
    c->nbucket = nb;
    for (uint32_t b = 0; b < nb; b++)
        bucket[b] = DCACHE_NONE;
    for (uint32_t i = c->oldest; i != DCACHE_NONE; i = e[i].newer) {
        uint32_t b = bucket_of(c, &e[i].key);
        e[i].hnext = bucket[b];
        bucket[b] = i;
    }
    for (uint32_t i = cap; i-- > c->cap;) { /* new entries free, lowest index first */
        e[i].hnext = c->free;
        c->free = i;
    }
    c->cap = cap;
    return 0;
}

int dcache_add(struct dcache *c, const struct dcache_key *k, uint64_t expires, uint64_t seq,
               struct dcache_key *ret_evicted)
{
    int evicted = 0;
    uint32_t old = lookup(c, k);
    if (old != DCACHE_NONE)
        unlink_entry(c, old);
    else if (c->free == DCACHE_NONE && (!c->max || c->cap < c->max) && grow(c) < 0 &&
             c->count == 0)
        return -ENOMEM;
    if (c->free == DCACHE_NONE) { /* full: the oldest goes */
        if (ret_evicted)
            *ret_evicted = c->e[c->oldest].key;
        unlink_entry(c, c->oldest);
        evicted = 1;
    }
    uint32_t i = c->free;
    struct dcache_entry *e = &c->e[i];
    c->free = e->hnext;
    e->key = *k;
    e->expires = expires;
    e->seq = seq ? seq : c->next_seq;
    if (e->seq >= c->next_seq)
        c->next_seq = e->seq + 1;
    uint32_t b = bucket_of(c, k);
    e->hnext = c->bucket[b];
    c->bucket[b] = i;
    e->newer = DCACHE_NONE;
    e->older = c->newest;
    if (c->newest != DCACHE_NONE)
        c->e[c->newest].newer = i;
    else
        c->oldest = i;
    c->newest = i;
    c->count++;
    return evicted;
}

bool dcache_del(struct dcache *c, const struct dcache_key *k)
{
    uint32_t i = lookup(c, k);
    if (i == DCACHE_NONE)
        return false;
    unlink_entry(c, i);
    return true;
}

void dcache_clear(struct dcache *c)
{
    while (c->oldest != DCACHE_NONE)
        unlink_entry(c, c->oldest);
}

int dcache_check(const struct dcache *c)
{
    uint32_t n = 0, prev = DCACHE_NONE;
    for (uint32_t i = c->oldest; i != DCACHE_NONE; i = c->e[i].newer) {
        if (i >= c->cap || c->e[i].older != prev || n++ > c->cap ||
            lookup(c, &c->e[i].key) != i)
            return -1;
        prev = i;
    }
    if (prev != c->newest || n != c->count || (c->max && n > c->max))
        return -1;
    uint32_t nfree = 0;
    for (uint32_t i = c->free; i != DCACHE_NONE; i = c->e[i].hnext)
        if (i >= c->cap || nfree++ > c->cap)
            return -1;
    return n + nfree == c->cap ? 0 : -1;
}
