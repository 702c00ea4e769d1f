/* dcache.h — a bounded set of fixed-size keys with an expiry each, for message deduplication:
 * a chained hash table over an array of entries plus a doubly linked list of the entries in
 * insertion order. Lookup, insert, delete and eviction of the oldest are O(1); a full cache
 * evicts its oldest entry to take a new one, so memory never exceeds `max` entries. The entry
 * array grows by doubling up to max (no allocation per insert, amortised O(1)). Knows nothing
 * of messages: a key is 34 opaque bytes (broker/model/dedup.c makes them). */
#ifndef WARREN_DCACHE_H
#define WARREN_DCACHE_H
#include <stdbool.h>
#include <stdint.h>

#define DCACHE_NONE UINT32_MAX

struct dcache_key {
    uint8_t kind, len; /* the maker's: what the bytes are and how many are used */
    uint8_t b[32];     /* unused bytes are zero: keys compare as 34 bytes */
};

struct dcache_entry {
    struct dcache_key key;
    uint32_t hnext;        /* next in its hash chain (or in the free list) */
    uint32_t older, newer; /* insertion order */
    uint64_t expires;      /* ms after which it is gone; 0: never */
    uint64_t seq;          /* insertion number (stored with it, to restore the order) */
};

struct dcache {
    struct dcache_entry *e; /* owned: [cap] */
    uint32_t *bucket;       /* owned: [nbucket] chain heads, nbucket a power of two >= cap */
    uint32_t cap, nbucket, count;
    uint32_t max;           /* entries at most; 0: no bound (grows with its content) */
    uint32_t oldest, newest, free;
    uint64_t next_seq;
};

/* An empty cache holding at most max entries (0: unbounded). Allocates nothing yet. */
void dcache_init(struct dcache *c, uint32_t max);
/* Frees the arrays; the cache is empty (and usable) again. */
void dcache_free(struct dcache *c);
/* The live entry for key (not expired at now), or NULL. */
const struct dcache_entry *dcache_find(const struct dcache *c, const struct dcache_key *k,
                                       uint64_t now);
/* Adds key with its expiry (0: never) as the newest entry; an entry already there for key
 * (expired or not) is replaced. When the cache is full (or its array cannot grow for want of
 * memory) the oldest entry goes first: its key is copied to *ret_evicted (may be NULL) and 1
 * returned. seq: its insertion number, 0 for the next one. 0, 1, or -ENOMEM (an empty cache
 * that cannot allocate; unchanged). */
int dcache_add(struct dcache *c, const struct dcache_key *k, uint64_t expires, uint64_t seq,
               struct dcache_key *ret_evicted);
/* Removes key; true if it was there. */
bool dcache_del(struct dcache *c, const struct dcache_key *k);
/* Empties the cache (keeps its arrays). */
void dcache_clear(struct dcache *c);
/* Checks the invariants (chains, order list, count); 0 or -1. For tests. */
int dcache_check(const struct dcache *c);

#endif
