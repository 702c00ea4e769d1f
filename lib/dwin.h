/* dwin.h — deadline sets for delayed delivery, ordered by the key (due, id): a bounded sorted
 * window (the soonest entries of a larger set kept in storage: O(1) to take the soonest or
 * drop the latest, O(log n) search plus a bounded move to insert) and a growable min-heap (an
 * unbounded in-memory set: O(log n) push and pop). Entries are values (no allocation per
 * entry); their pointers are opaque here. Invariants: a window's entries are in key order;
 * a heap's parent key is never greater than its children's. */
#ifndef WARREN_DWIN_H
#define WARREN_DWIN_H
#include <stdbool.h>
#include <stdint.h>

struct dentry {
    uint64_t due, id; /* the key: wall-clock ms, then a unique id */
    void *m;          /* opaque (the delay module: a message reference) */
    void *target;     /* opaque (the delay module: the exchange or queue it goes to) */
    uint64_t sid;     /* opaque (the delay module: the target's stored id, 0: none) */
    char kind;        /* opaque (the delay module: 'x' or 'q') */
    uint8_t flags;    /* opaque (the delay module: enum dentry_flag) */
};

static inline bool dentry_before(const struct dentry *a, uint64_t due, uint64_t id)
{
    return a->due < due || (a->due == due && a->id < id);
}

/* A sorted window of at most cap entries, live in e[head .. head + n). */
struct dwin {
    struct dentry *e; /* owned, cap + 1 slots */
    uint32_t head, n, cap;
};

/* 0 or -ENOMEM. */
int dwin_init(struct dwin *w, uint32_t cap);
/* Frees the slots (the entries' pointers are the caller's). Accepts a zeroed window. */
void dwin_free(struct dwin *w);
/* Inserts e in key order. The window may hold cap + 1 entries for a moment: the caller then
 * drops the latest (dwin_pop_max) to get back to cap. Asserts n <= cap before. */
void dwin_insert(struct dwin *w, const struct dentry *e);
static inline const struct dentry *dwin_min(const struct dwin *w)
{
    return w->n ? &w->e[w->head] : 0;
}
static inline const struct dentry *dwin_max(const struct dwin *w)
{
    return w->n ? &w->e[w->head + w->n - 1] : 0;
}
/* Take the soonest / latest entry into *ret (n > 0). */
void dwin_pop_min(struct dwin *w, struct dentry *ret);
void dwin_pop_max(struct dwin *w, struct dentry *ret);
/* Removes every entry whose target is `target`, calling drop(arg, e) for each; the order of the
 * rest is kept. Returns how many went. */
uint32_t dwin_remove_target(struct dwin *w, const void *target,
                            void (*drop)(void *arg, struct dentry *e), void *arg);

/* A growable min-heap. */
struct dheap {
    struct dentry *e; /* owned */
    uint32_t n, cap;
};
void dheap_free(struct dheap *h);
/* 0 or -ENOMEM (nothing changed). */
int dheap_push(struct dheap *h, const struct dentry *e);
static inline const struct dentry *dheap_min(const struct dheap *h)
{
    return h->n ? &h->e[0] : 0;
}
void dheap_pop(struct dheap *h, struct dentry *ret);
/* As dwin_remove_target, then restores the heap order (O(n)). */
uint32_t dheap_remove_target(struct dheap *h, const void *target,
                             void (*drop)(void *arg, struct dentry *e), void *arg);

#endif
