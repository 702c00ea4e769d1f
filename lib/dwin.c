/* dwin.c — owns the two deadline sets of dwin.h: a sorted bounded window and a min-heap of
 * struct dentry values. Knows nothing of messages or storage. Invariant: window entries are in
 * key order in e[head .. head + n); heap entries satisfy the min-heap order on (due, id). */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "lib/dwin.h"

static bool before(const struct dentry *a, const struct dentry *b)
{
    return dentry_before(a, b->due, b->id);
}

int dwin_init(struct dwin *w, uint32_t cap)
{
    memset(w, 0, sizeof *w);
    if (!(w->e = calloc((size_t)cap + 1, sizeof *w->e)))
        return -ENOMEM;
    w->cap = cap;
    return 0;
}

void dwin_free(struct dwin *w)
{
    free(w->e);
    memset(w, 0, sizeof *w);
}

void dwin_insert(struct dwin *w, const struct dentry *e)
{
    assert(w->n <= w->cap);
    if (w->head + w->n == w->cap + 1) { /* no slot at the end: slide the live part down */
        memmove(w->e, w->e + w->head, (size_t)w->n * sizeof *w->e);
        w->head = 0;
    }
    struct dentry *base = w->e + w->head;
    /* The common case (delays that grow with time) appends: check the end first. */
    uint32_t lo = 0, hi = w->n;
    if (w->n && before(e, &base[w->n - 1])) {
        hi = w->n - 1;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (before(e, &base[mid]))
                hi = mid;
            else
                lo = mid + 1;
        }
    } else {
        lo = w->n;
    }
    memmove(base + lo + 1, base + lo, (size_t)(w->n - lo) * sizeof *base);
    base[lo] = *e;
    w->n++;
}

void dwin_pop_min(struct dwin *w, struct dentry *ret)
{
    assert(w->n);
    *ret = w->e[w->head];
    w->n--;
    w->head = w->n ? w->head + 1 : 0;
}

void dwin_pop_max(struct dwin *w, struct dentry *ret)
{
    assert(w->n);
    *ret = w->e[w->head + w->n - 1];
    w->n--;
    if (!w->n)
        w->head = 0;
}

uint32_t dwin_remove_target(struct dwin *w, const void *target,
                            void (*drop)(void *arg, struct dentry *e), void *arg)
{
    struct dentry *base = w->e + w->head;
    uint32_t k = 0;
    for (uint32_t i = 0; i < w->n; i++) {
        if (base[i].target == target)
            drop(arg, &base[i]);
        else
            base[k++] = base[i];
    }
    uint32_t gone = w->n - k;
    w->n = k;
    if (!k)
        w->head = 0;
    return gone;
}

void dheap_free(struct dheap *h)
{
    free(h->e);
    memset(h, 0, sizeof *h);
}

static void sift_down(struct dheap *h, uint32_t i)
{
    struct dentry x = h->e[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && before(&h->e[c + 1], &h->e[c]))
            c++;
        if (!before(&h->e[c], &x))
            break;
        h->e[i] = h->e[c];
        i = c;
    }
    h->e[i] = x;
}

int dheap_push(struct dheap *h, const struct dentry *e)
{
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 64;
        if (cap < h->cap)
            return -ENOMEM;
        struct dentry *ne = realloc(h->e, (size_t)cap * sizeof *ne);
        if (!ne)
            return -ENOMEM;
        h->e = ne;
        h->cap = cap;
    }
    uint32_t i = h->n++;
    while (i) {
        uint32_t p = (i - 1) / 2;
        if (!before(e, &h->e[p]))
            break;
        h->e[i] = h->e[p];
        i = p;
    }
    h->e[i] = *e;
    return 0;
}

void dheap_pop(struct dheap *h, struct dentry *ret)
{
    assert(h->n);
    *ret = h->e[0];
    h->e[0] = h->e[--h->n];
    if (h->n)
        sift_down(h, 0);
}

uint32_t dheap_remove_target(struct dheap *h, const void *target,
                             void (*drop)(void *arg, struct dentry *e), void *arg)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < h->n; i++) {
        if (h->e[i].target == target)
            drop(arg, &h->e[i]);
        else
            h->e[k++] = h->e[i];
    }
    uint32_t gone = h->n - k;
    h->n = k;
    if (gone)
        for (uint32_t i = h->n / 2; i-- > 0;)
            sift_down(h, i);
    return gone;
}
