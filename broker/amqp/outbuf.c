/* outbuf.c — owns output blocks (with a small free list: no malloc per write in steady
 * state) and the iovec list. Invariant: iov[] covers exactly the committed bytes of the
 * blocks and the referenced body slices, in order; bytes == sum of iov lengths. */
#include <stdlib.h>
#include <string.h>
#include "lib/array.h"
#include "broker/model/msg.h"
#include "broker/amqp/outbuf.h"

#define POOL_MAX 256

static struct oblock *block_new(struct opool *pool, size_t cap)
{
    struct oblock *b;
    if (cap == OUTBUF_BLOCK && pool->free) {
        b = pool->free;
        pool->free = b->next;
        pool->len--;
    } else {
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->cap = cap;
    }
    b->next = NULL;
    b->used = 0;
    return b;
}

static void block_free(struct opool *pool, struct oblock *b)
{
    if (b->cap == OUTBUF_BLOCK && pool->len < POOL_MAX) {
        b->next = pool->free;
        pool->free = b;
        pool->len++;
    } else {
        free(b);
    }
}

void opool_drain(struct opool *pool)
{
    while (pool->free) {
        struct oblock *b = pool->free;
        pool->free = b->next;
        free(b);
    }
    pool->len = 0;
}

static int push_iov(struct outbuf *ob, const uint8_t *p, size_t n)
{
    if (ob->niov) {
        uv_buf_t *last = &ob->iov[ob->niov - 1];
        if ((const uint8_t *)last->base + last->len == p) {
            last->len += n;
            return 0;
        }
    }
    if (array_reserve((void **)&ob->iov, &ob->iov_cap, ob->niov, sizeof *ob->iov, 16) < 0)
        return ob->oom = 1, -1;
    ob->iov[ob->niov++] = uv_buf_init((char *)p, (unsigned)n);
    return 0;
}

uint8_t *outbuf_reserve(struct outbuf *ob, size_t n)
{
    struct oblock *t = ob->tail;
    if (t && t->cap - t->used >= n)
        return t->data + t->used;
    struct oblock *b = block_new(ob->pool, n > OUTBUF_BLOCK ? n : OUTBUF_BLOCK);
    if (!b) {
        ob->oom = 1;
        return NULL;
    }
    if (t)
        t->next = b;
    else
        ob->head = b;
    ob->tail = b;
    return b->data;
}

void outbuf_commit(struct outbuf *ob, size_t n)
{
    struct oblock *t = ob->tail;
    if (push_iov(ob, t->data + t->used, n) == 0) {
        t->used += n;
        ob->bytes += n;
    }
}

void outbuf_append(struct outbuf *ob, const void *p, size_t n)
{
    uint8_t *dst = outbuf_reserve(ob, n);
    if (dst) {
        memcpy(dst, p, n);
        outbuf_commit(ob, n);
    }
}

void outbuf_append_ref(struct outbuf *ob, struct msg *m, const uint8_t *p, size_t n)
{
    if (array_reserve((void **)&ob->refs, &ob->refs_cap, ob->nrefs, sizeof *ob->refs, 16) < 0) {
        ob->oom = 1;
        return;
    }
    if (push_iov(ob, p, n) == 0) {
        ob->refs[ob->nrefs++] = msg_ref(m);
        ob->bytes += n;
    }
}

void outbuf_reset(struct outbuf *ob)
{
    for (uint32_t i = 0; i < ob->nrefs; i++)
        msg_unref(ob->refs[i]);
    ob->nrefs = 0;
    ob->niov = 0;
    ob->bytes = 0;
    /* Keep the first block when it is a standard one; return the rest to the pool. */
    struct oblock *keep = ob->head;
    if (keep && keep->cap != OUTBUF_BLOCK)
        keep = NULL;
    for (struct oblock *b = ob->head, *next; b; b = next) {
        next = b->next;
        if (b != keep)
            block_free(ob->pool, b);
    }
    if (keep) {
        keep->next = NULL;
        keep->used = 0;
    }
    ob->head = ob->tail = keep;
}

void outbuf_free(struct outbuf *ob)
{
    outbuf_reset(ob);
    if (ob->head)
        block_free(ob->pool, ob->head);
    free(ob->iov);
    free(ob->refs);
    struct opool *pool = ob->pool;
    memset(ob, 0, sizeof *ob);
    ob->pool = pool;
}
