/* groups.c — owns the per-group order of an x-message-groups queue. Every ready entry sits in
 * a pooled slot on two index-linked lists: the queue's, by seq (what TTL, length limits and
 * purge take from), and its group's, by seq (what consumers take from). A group that nobody
 * holds and that has ready entries waits in the free FIFO; one held by an attached consumer
 * waits in that consumer's list (consumer._ghead), so a take is O(1) and never looks at a
 * blocked group. Does not own the queue's counts (queue.c keeps them) nor the consumers.
 * Invariants: a group exists while it has ready entries or entries out, or idle (neither) as
 * one of at most IDLE_MAX kept so that recurring ids are not interned anew each time (memory
 * stays bounded by the ready entries plus IDLE_MAX groups); holder != NULL iff
 * out > 0; a group is in the free FIFO iff it has ready entries and no holder, and in its
 * holder's list iff it has ready entries and the holder is a consumer still attached. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "broker/model/groups.h"
#include "broker/model/msg.h"
#include "broker/model/queue.h"
#include "lib/byteorder.h"
#include "lib/hmap.h"
#include "protocol/codec.h"
#include "protocol/table.h"

#define CHUNK 256     /* slots per pool chunk: slots never move, so keys may point into them */
#define INLINE_ID 48  /* group ids up to this long are kept in the group itself */
#define IDLE_MAX 16384 /* empty, unheld groups kept interned (about 2 MiB) */

/* basic.get's holder: not a consumer, never attached, never dereferenced. */
static const char get_holder_tag;
#define GET_HOLDER ((struct consumer *)(uintptr_t)&get_holder_tag)

struct gentry {
    struct qentry e;         /* e.group: its group's slot */
    uint32_t prev, next;     /* the queue's ready entries, by seq (next: free list too) */
    uint32_t gprev, gnext;   /* its group's ready entries, by seq */
};

enum where { W_NONE, W_FREE, W_HOLDER, W_IDLE };

struct group {
    uint32_t self;           /* its slot */
    uint32_t head, tail, count; /* its ready entries */
    uint32_t out;            /* entries taken and not done with */
    struct consumer *holder; /* borrowed: while out > 0 (each delivery out holds a reference
                              * on its consumer), GET_HOLDER for basic.get, else NULL */
    uint32_t prev, next;     /* in the free FIFO, the holder's list or the idle list (next:
                              * the pool's free list too) */
    uint8_t where;           /* enum where */
    uint32_t idlen;
    uint8_t *id;             /* inl, or owned when longer */
    uint8_t inl[INLINE_ID];
};

/* Fixed-size slots in chunks, numbered from 1 (0 is "none"), with a free list through the
 * 32-bit field at offset `link`. Capacity only grows (to the queue's peak), never per entry. */
struct pool {
    void **chunks; /* owned, and each chunk */
    uint32_t nchunks, chunks_cap, cap, used, free;
    size_t size, link;
};

struct groups {
    struct hmap ids;         /* group id -> struct group (keys point into the groups) */
    struct pool ents, grps;
    uint32_t qhead, qtail;   /* every ready entry, by seq */
    uint32_t fhead, ftail;   /* free groups with ready entries, in the order they became so */
    uint32_t nwaiting;       /* groups in their holder's list */
    uint32_t nidle, hand;    /* idle groups (no entries, no holder), kept so that a group that
                              * comes back is not interned again; past IDLE_MAX the clock
                              * hand (a slot number) finds one to free */
    const struct msg *last_m;     /* borrowed, never dereferenced: the message groups_reserve
                                   * last looked up, its group, and `frees` then */
    uint32_t last_gi;
    uint64_t frees, last_frees;   /* groups freed so far: a slot named before may be reused */
};

static void *slot(const struct pool *p, uint32_t i)
{
    i--;
    return (char *)p->chunks[i / CHUNK] + (size_t)(i % CHUNK) * p->size;
}

static uint32_t *link_of(const struct pool *p, uint32_t i)
{
    return (uint32_t *)((char *)slot(p, i) + p->link);
}

static int pool_room(struct pool *p, uint32_t n)
{
    while (p->cap - p->used < n) {
        if (p->nchunks == p->chunks_cap) {
            uint32_t nc = p->chunks_cap ? p->chunks_cap * 2 : 4;
            void **c = realloc(p->chunks, nc * sizeof *c);
            if (!c)
                return -ENOMEM;
            p->chunks = c;
            p->chunks_cap = nc;
        }
        void *c = calloc(CHUNK, p->size); /* (never-used group slots read as free: self 0) */
        if (!c)
            return -ENOMEM;
        p->chunks[p->nchunks++] = c;
        for (uint32_t k = CHUNK; k-- > 0;) {
            uint32_t i = p->cap + k + 1;
            *link_of(p, i) = p->free;
            p->free = i;
        }
        p->cap += CHUNK;
    }
    return 0;
}

static uint32_t pool_get(struct pool *p)
{
    if (!p->free && pool_room(p, 1) < 0)
        return 0;
    uint32_t i = p->free;
    p->free = *link_of(p, i);
    p->used++;
    return i;
}

static void pool_put(struct pool *p, uint32_t i)
{
    *link_of(p, i) = p->free;
    p->free = i;
    p->used--;
}

static void pool_free(struct pool *p)
{
    for (uint32_t i = 0; i < p->nchunks; i++)
        free(p->chunks[i]);
    free(p->chunks);
}

static struct gentry *E(const struct groups *gs, uint32_t i)
{
    return slot(&gs->ents, i);
}

static struct group *G(const struct groups *gs, uint32_t i)
{
    return slot(&gs->grps, i);
}

struct groups *groups_new(void)
{
    struct groups *gs = calloc(1, sizeof *gs);
    if (!gs)
        return NULL;
    gs->ents.size = sizeof(struct gentry);
    gs->ents.link = offsetof(struct gentry, next);
    gs->grps.size = sizeof(struct group);
    gs->grps.link = offsetof(struct group, next);
    return gs;
}

struct groups *groups_free(struct groups *gs)
{
    if (!gs)
        return NULL;
    void *v;
    for (uint32_t it = 0; hmap_next(&gs->ids, &it, &v);) {
        struct group *g = v;
        if (g->id != g->inl)
            free(g->id);
    }
    hmap_free(&gs->ids);
    pool_free(&gs->ents);
    pool_free(&gs->grps);
    free(gs);
    return NULL;
}

/* ---- group lists: the free FIFO and each holder's list ----------------------------------- */

static void gl_push(struct groups *gs, uint32_t *head, uint32_t *tail, uint32_t gi)
{
    struct group *g = G(gs, gi);
    g->next = 0;
    g->prev = *tail;
    if (*tail)
        G(gs, *tail)->next = gi;
    else
        *head = gi;
    *tail = gi;
}

static void gl_remove(struct groups *gs, uint32_t *head, uint32_t *tail, uint32_t gi)
{
    struct group *g = G(gs, gi);
    if (g->prev)
        G(gs, g->prev)->next = g->next;
    else
        *head = g->next;
    if (g->next)
        G(gs, g->next)->prev = g->prev;
    else
        *tail = g->prev;
    g->prev = g->next = 0;
}

static bool attached(const struct consumer *c)
{
    return c && c != GET_HOLDER && c->q;
}

/* Takes g out of whichever list it is in. */
static void unplace(struct groups *gs, struct group *g)
{
    if (g->where == W_FREE)
        gl_remove(gs, &gs->fhead, &gs->ftail, g->self);
    else if (g->where == W_HOLDER) {
        gl_remove(gs, &g->holder->_ghead, &g->holder->_gtail, g->self);
        gs->nwaiting--;
    } else if (g->where == W_IDLE) {
        gs->nidle--;
    }
    g->where = W_NONE;
}

/* Puts g (in no list) where its state says: free FIFO, its holder's list, or nowhere. */
static void place(struct groups *gs, struct group *g)
{
    if (!g->count)
        return;
    if (!g->holder) {
        gl_push(gs, &gs->fhead, &gs->ftail, g->self);
        g->where = W_FREE;
    } else if (attached(g->holder)) {
        gl_push(gs, &g->holder->_ghead, &g->holder->_gtail, g->self);
        g->where = W_HOLDER;
        gs->nwaiting++;
    }
}

/* ---- group ids ------------------------------------------------------------------------- */

/* The headers table of m's content header (checked when it was received or stored), found
 * without decoding the other properties: it follows content-type and content-encoding. */
static amqp_bytes_t headers_of(const struct msg *m)
{
    amqp_bytes_t h = msg_header(m);
    const uint8_t *p = h.ptr, *end = h.ptr + h.len;
    if (h.len < 14)
        return (amqp_bytes_t){NULL, 0};
    uint16_t flags = load_be16(p + 12);
    p += 14;
    if (!(flags & AMQP_P_HEADERS))
        return (amqp_bytes_t){NULL, 0};
    for (uint16_t bit = AMQP_P_CONTENT_TYPE; bit > AMQP_P_HEADERS; bit >>= 1)
        if (flags & bit) { /* a shortstr */
            if (p >= end || end - p < 1 + p[0])
                return (amqp_bytes_t){NULL, 0};
            p += 1 + p[0];
        }
    if (end - p < 4 || load_be32(p) > (size_t)(end - p - 4))
        return (amqp_bytes_t){NULL, 0};
    return (amqp_bytes_t){p + 4, load_be32(p)};
}

/* The group id of m: its x-group-id header as bytes (longstr, byte array) or as decimal text
 * (integers, so 7 and "7" are one group); absent, empty or any other type: the default
 * group (""). */
static amqp_bytes_t group_key(const struct msg *m, char *buf, size_t size)
{
    static const uint8_t none[1];
    amqp_bytes_t k = {none, 0};
    struct amqp_field v;
    if (amqp_table_get(headers_of(m), "x-group-id", &v) != 1)
        return k;
    if (v.type == 'S' || v.type == 'x')
        return v.v.bytes.len ? v.v.bytes : k;
    int n = -1;
    if (strchr("bsIlL", v.type))
        n = snprintf(buf, size, "%lld", (long long)v.v.i);
    else if (strchr("Bui", v.type))
        n = snprintf(buf, size, "%llu", (unsigned long long)v.v.u);
    if (n > 0)
        k = (amqp_bytes_t){(const uint8_t *)buf, (uint32_t)n};
    return k;
}

static void group_free(struct groups *gs, struct group *g)
{
    gs->frees++;
    hmap_del(&gs->ids, g->id, g->idlen);
    if (g->id != g->inl)
        free(g->id);
    uint32_t gi = g->self;
    g->self = 0; /* a free slot: the clock hand skips it */
    pool_put(&gs->grps, gi);
}

/* g has no ready entry and no holder: it stays interned, idle. Past IDLE_MAX idle groups the
 * clock hand frees the next idle one it meets: no list to keep in order, so going idle and
 * coming back touch no other group (the hand moves cap / idle slots per free on average). */
static void group_idle(struct groups *gs, struct group *g)
{
    g->where = W_IDLE;
    if (++gs->nidle <= IDLE_MAX)
        return;
    for (;;) {
        gs->hand = gs->hand % gs->grps.cap + 1;
        struct group *old = G(gs, gs->hand);
        if (old->self && old->where == W_IDLE && old != g) {
            unplace(gs, old);
            group_free(gs, old);
            return;
        }
    }
}

/* m's group, made when missing. 0 on OOM. */
static uint32_t group_of(struct groups *gs, const struct msg *m)
{
    char buf[32];
    amqp_bytes_t k = group_key(m, buf, sizeof buf);
    struct group *g = hmap_get(&gs->ids, k.ptr, k.len);
    if (g) {
        if (g->where == W_IDLE)
            unplace(gs, g);
        return g->self;
    }
    uint32_t gi = pool_get(&gs->grps);
    if (!gi)
        return 0;
    g = G(gs, gi);
    *g = (struct group){.self = gi, .idlen = k.len};
    g->id = k.len <= INLINE_ID ? g->inl : malloc(k.len);
    if (!g->id || (memcpy(g->id, k.ptr, k.len), hmap_put(&gs->ids, g->id, k.len, g) < 0)) {
        if (g->id != g->inl)
            free(g->id);
        pool_put(&gs->grps, gi);
        return 0;
    }
    return gi;
}

int groups_reserve(struct groups *gs, const struct msg *m, uint32_t extra, uint32_t *ret_group)
{
    if (pool_room(&gs->ents, extra) < 0)
        return -ENOMEM;
    if (!m)
        return 0;
    uint32_t gi;
    if (ret_group && m == gs->last_m && gs->frees == gs->last_frees) {
        gi = gs->last_gi; /* the publish's reserve looked it up: still there */
        struct group *g = G(gs, gi);
        if (g->where == W_IDLE)
            unplace(gs, g);
    } else if (!(gi = group_of(gs, m))) {
        return -ENOMEM;
    }
    gs->last_m = ret_group ? NULL : m;
    gs->last_gi = gi;
    gs->last_frees = gs->frees;
    if (ret_group)
        *ret_group = gi;
    return 0;
}

void groups_unused(struct groups *gs, uint32_t gi)
{
    struct group *g = gi ? G(gs, gi) : NULL;
    if (g && g->self == gi && !g->count && !g->out && g->where == W_NONE)
        group_idle(gs, g);
}

/* ---- entries --------------------------------------------------------------------------- */

int groups_insert(struct groups *gs, const struct qentry *e, bool at_tail)
{
    uint32_t gi = e->group ? e->group : group_of(gs, e->m);
    if (!gi)
        return -ENOMEM;
    struct group *g = G(gs, gi);
    if (g->where == W_IDLE) /* (went idle since it was reserved) */
        unplace(gs, g);
    uint32_t ei = pool_get(&gs->ents);
    if (!ei) {
        if (!g->count && !g->out && g->where == W_NONE)
            group_idle(gs, g);
        return -ENOMEM;
    }
    struct gentry *n = E(gs, ei);
    n->e = *e;
    n->e.group = gi;
    n->e.flags &= (uint8_t)~QE_GROUP_OUT;
    /* The group's order: before its first entry with a higher seq (a requeue is usually of the
     * group's oldest, so this stops at once). */
    uint32_t at = 0;
    if (!at_tail && g->tail && E(gs, g->tail)->e.seq > e->seq)
        for (at = g->head; E(gs, at)->e.seq < e->seq; at = E(gs, at)->gnext)
            ;
    n->gnext = at;
    n->gprev = at ? E(gs, at)->gprev : g->tail;
    /* The queue's order: before the first entry with a higher seq, found walking back from
     * that group successor (or from the tail), so a requeue passes only the entries published
     * between it and its group's next, not every older ready entry (a held group's backlog). */
    uint32_t qat = 0;
    if (!at_tail && gs->qtail && E(gs, gs->qtail)->e.seq > e->seq) {
        qat = at ? at : gs->qtail;
        while (E(gs, qat)->prev && E(gs, E(gs, qat)->prev)->e.seq > e->seq)
            qat = E(gs, qat)->prev;
    }
    n->next = qat;
    n->prev = qat ? E(gs, qat)->prev : gs->qtail;
    if (n->prev)
        E(gs, n->prev)->next = ei;
    else
        gs->qhead = ei;
    if (qat)
        E(gs, qat)->prev = ei;
    else
        gs->qtail = ei;
    if (n->gprev)
        E(gs, n->gprev)->gnext = ei;
    else
        g->head = ei;
    if (at)
        E(gs, at)->gprev = ei;
    else
        g->tail = ei;
    if (g->count++ == 0)
        place(gs, g);
    return 0;
}

/* Unlinks entry ei from both lists and frees its slot; *ret gets it. */
static struct group *remove_entry(struct groups *gs, uint32_t ei, struct qentry *ret)
{
    struct gentry *n = E(gs, ei);
    struct group *g = G(gs, n->e.group);
    *ret = n->e;
    if (n->prev)
        E(gs, n->prev)->next = n->next;
    else
        gs->qhead = n->next;
    if (n->next)
        E(gs, n->next)->prev = n->prev;
    else
        gs->qtail = n->prev;
    if (n->gprev)
        E(gs, n->gprev)->gnext = n->gnext;
    else
        g->head = n->gnext;
    if (n->gnext)
        E(gs, n->gnext)->gprev = n->gprev;
    else
        g->tail = n->gprev;
    pool_put(&gs->ents, ei);
    if (--g->count == 0)
        unplace(gs, g);
    return g;
}

struct qentry *groups_front(const struct groups *gs)
{
    return gs->qhead ? &E(gs, gs->qhead)->e : NULL;
}

bool groups_pop_front(struct groups *gs, struct qentry *ret)
{
    if (!gs->qhead)
        return false;
    struct group *g = remove_entry(gs, gs->qhead, ret);
    if (!g->count && !g->out)
        group_idle(gs, g);
    ret->group = 0; /* not taken: its group may be gone */
    return true;
}

bool groups_take(struct groups *gs, struct consumer *c, struct qentry *ret)
{
    uint32_t gi = c && c->_ghead ? c->_ghead : gs->fhead;
    if (!gi)
        return false;
    struct group *g = G(gs, gi);
    if (!g->holder) { /* a free group: c holds it from now on */
        unplace(gs, g);
        g->holder = c ? c : GET_HOLDER;
    }
    remove_entry(gs, g->head, ret);
    g->out++;
    ret->flags |= QE_GROUP_OUT;
    ret->group = gi;
    if (g->count && g->where == W_HOLDER) /* round-robin over the holder's groups */
        unplace(gs, g);
    if (g->count)
        place(gs, g);
    return true;
}

bool groups_done(struct groups *gs, const struct qentry *e)
{
    if (!(e->flags & QE_GROUP_OUT))
        return false;
    struct group *g = G(gs, e->group);
    if (--g->out)
        return false;
    unplace(gs, g);
    g->holder = NULL;
    if (!g->count) {
        group_idle(gs, g);
        return false;
    }
    place(gs, g);
    return true;
}

void groups_consumer_gone(struct groups *gs, struct consumer *c)
{
    while (c->_ghead) {
        uint32_t gi = c->_ghead;
        gl_remove(gs, &c->_ghead, &c->_gtail, gi);
        G(gs, gi)->where = W_NONE;
        gs->nwaiting--;
    }
}

bool groups_takable(const struct groups *gs)
{
    return gs->fhead || gs->nwaiting;
}

uint32_t groups_count(const struct groups *gs)
{
    return gs->grps.used - gs->nidle;
}

int groups_check(const struct groups *gs)
{
    uint32_t n = 0;
    uint64_t seq = 0;
    for (uint32_t i = gs->qhead; i; i = E(gs, i)->next, n++) {
        const struct gentry *x = E(gs, i);
        if ((n && x->e.seq <= seq) || (x->next && E(gs, x->next)->prev != i))
            return -EINVAL;
        seq = x->e.seq;
    }
    if (n != gs->ents.used)
        return -EINVAL;
    uint32_t total = 0, nw = 0, ni = 0;
    void *v;
    for (uint32_t it = 0; hmap_next(&gs->ids, &it, &v);) {
        const struct group *g = v;
        uint32_t k = 0;
        for (uint32_t i = g->head; i; i = E(gs, i)->gnext, k++)
            if (E(gs, i)->e.group != g->self)
                return -EINVAL;
        if (k != g->count || (!g->holder) != (!g->out))
            return -EINVAL;
        if ((g->where == W_IDLE) && (g->count || g->out))
            return -EINVAL;
        if ((g->where == W_FREE) != (g->count && !g->holder))
            return -EINVAL;
        if ((g->where == W_HOLDER) != (g->count && attached(g->holder)))
            return -EINVAL;
        nw += g->where == W_HOLDER;
        ni += g->where == W_IDLE;
        total += g->count;
    }
    return total == n && nw == gs->nwaiting && ni == gs->nidle && ni <= IDLE_MAX ? 0 : -EINVAL;
}
