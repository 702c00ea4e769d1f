/* hmap.h — an open-addressing hash map from byte-string keys to pointers.
 * Owns its slot array only: keys and values are borrowed from the objects stored
 * (an entry's key must live as long as the entry, usually it is the object's name). */
#ifndef WARREN_HMAP_H
#define WARREN_HMAP_H
#include <stddef.h>
#include <stdint.h>

struct hmap_slot {
    const void *key; /* borrowed: owned by value */
    uint32_t klen;
    uint32_t hash; /* 0 = empty, 1 = deleted; real hashes are >= 2 */
    void *value;   /* borrowed */
};
struct hmap {
    struct hmap_slot *slots; /* owned */
    uint32_t cap, count, used; /* used counts tombstones too */
};

/* The slot hash of a key: SipHash-1-3 under a random per-process key (drawn at first use). */
uint32_t hmap_hash(const void *key, size_t klen);
/* Sets that key (tests; warrend lets the first hash draw one). */
void hmap_seed(const uint8_t key[16]);

/* Returns the value stored under key, or NULL. */
void *hmap_get(const struct hmap *m, const void *key, size_t klen);
/* Stores value under key (replacing any); 0 or -ENOMEM. */
int hmap_put(struct hmap *m, const void *key, size_t klen, void *value);
/* Removes key; returns the value it had, or NULL. */
void *hmap_del(struct hmap *m, const void *key, size_t klen);
void hmap_free(struct hmap *m);
/* Iteration: for (uint32_t i = 0; hmap_next(m, &i, &v); ) ... ; safe against hmap_del of the
 * current entry. */
int hmap_next(const struct hmap *m, uint32_t *iter, void **ret_value);

#endif
