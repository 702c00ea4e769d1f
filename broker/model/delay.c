/* delay.c — owns the messages that wait before routing (x-delayed-message exchanges) or before
 * enqueueing (x-delivery-delay queues), and the one timer that releases them. Does not own the
 * stored entries' layout (storage/delayed.c) nor routing (exchange.c, publish.c).
 * With storage, every waiting message is either in the window (lib/dwin.h: at most
 * DELAY_WINDOW of the soonest, in memory) or in storage only: a persistent message for a
 * durable target is written when it is published (it survives restarts); any other is written
 * only if it leaves the window, marked transient (dropped at the next start). The window is
 * refilled from a read transaction when it runs low. Without storage (tests of the model)
 * they wait in a heap in memory, counted in broker.queued_mem (the memory alarm bounds them).
 * Invariant: every stored entry with key (due, id) below the horizon is in the window or was
 * released (its deletion is in a batch); the horizon never passes an entry whose batch may not
 * be committed yet (the `pend` FIFO), so a refill never misses one. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "broker/model/broker.h"
#include "broker/model/delay.h"
#include "broker/model/exchange.h"
#include "broker/model/msg.h"
#include "broker/model/persist.h"
#include "broker/model/publish.h"
#include "broker/model/queue.h"
#include "broker/model/vhost.h"
#include "lib/array.h"
#include "lib/byteorder.h"
#include "lib/dwin.h"
#include "lib/log.h"
#include "protocol/codec.h"
#include "protocol/table.h"
#include "storage/batch.h"
#include "storage/delayed.h"
#include "storage/env.h"

#define HZ_ALL UINT64_MAX  /* horizon due: every stored entry is in the window */
#define RELEASE_BUDGET 4096 /* releases per timer run before yielding to the loop */

/* A target that has had messages wait for it. */
struct dtarget {
    void *ptr;        /* borrowed: the exchange or queue; the by_ptr key points here. It
                       * outlives us: its deletion calls delay_target_gone, which frees us */
    uint8_t skey[9];  /* kind, big-endian sid: the by_sid key */
    uint64_t sid;     /* its store id; for a target not stored, an id of this open (transient
                       * entries name it); 0: no storage */
    char kind;        /* 'x' or 'q' */
    bool stored;      /* storage may hold entries for it */
};

enum dentry_flag {
    DE_STORED = 1 << 0,    /* its entry is in storage (delete it when released) */
    DE_TRANSIENT = 1 << 1, /* not to survive a restart */
};

/* A stored entry not in the window whose batch may not be committed yet. */
struct pend {
    uint64_t due, id, batch;
};

struct delay {
    struct broker *b;           /* borrowed: owns us */
    struct timer_item timer;
    struct dwin win;            /* the soonest entries (each holds a message ref) */
    uint64_t win_bytes;         /* msg_mem() of their messages */
    bool bytes_full;            /* the last refill stopped at the byte bound: no other until a
                                 * release makes room */
    uint64_t hz_due, hz_id;     /* the horizon: stored keys below it are all in win */
    struct pend *pend;          /* owned FIFO ring: spilled or evicted, batch not yet known
                                 * durable; batch numbers never decrease along it */
    uint32_t pend_head, pend_n, pend_cap;
    bool refill_stuck;          /* the last refill could not move the horizon */
    struct dheap mem;           /* without storage: every entry (each holds a message ref) */
    uint64_t seq;               /* ids of entries in mem */
    struct hmap by_ptr, by_sid; /* -> struct dtarget (owned) */
    struct route route;         /* reused for each release */
};

/* ---- message header ------------------------------------------------------------------ */

/* m's x-delay header, any AMQP integer type: 1 with *ret, or 0 when it has none. */
static int msg_delay(const struct msg *m, int64_t *ret)
{
    struct amqp_content_header h;
    amqp_bytes_t hdr = msg_header(m);
    struct amqp_field f;
    if (amqp_content_header_decode(hdr.ptr, hdr.len, &h) != 0 ||
        !(h.props.flags & AMQP_P_HEADERS) ||
        amqp_table_get(h.props.headers, "x-delay", &f) != 1)
        return 0;
    if (strchr("bsIlL", f.type) && f.type)
        *ret = f.v.i;
    else if (strchr("Bui", f.type) && f.type)
        *ret = f.v.u > INT64_MAX ? INT64_MAX : (int64_t)f.v.u;
    else
        return 0;
    return 1;
}

static uint64_t due_after(int64_t delay)
{
    uint64_t now = timers_now();
    return (uint64_t)delay >= HZ_ALL - 1 - now ? HZ_ALL - 1 : now + (uint64_t)delay;
}

/* ---- targets --------------------------------------------------------------------------- */

/* The target record of an exchange or queue, made at its first delayed message: sid is its
 * store id, or (0, with storage) one of this open is drawn for its transient entries. */
static struct dtarget *target_get(struct delay *d, char kind, void *ptr, uint64_t sid)
{
    struct dtarget *t = hmap_get(&d->by_ptr, &ptr, sizeof ptr);
    if (t)
        return t;
    if (!(t = calloc(1, sizeof *t)))
        return NULL;
    if (!sid && d->b->store)
        sid = storage_new_id(d->b->store);
    t->ptr = ptr;
    t->kind = kind;
    t->sid = sid;
    t->skey[0] = (uint8_t)kind;
    store_be64(t->skey + 1, sid);
    if (hmap_put(&d->by_ptr, &t->ptr, sizeof t->ptr, t) < 0)
        goto fail;
    if (sid && hmap_put(&d->by_sid, t->skey, sizeof t->skey, t) < 0) {
        hmap_del(&d->by_ptr, &t->ptr, sizeof t->ptr);
        goto fail;
    }
    return t;
fail:
    free(t);
    return NULL;
}

static void target_free(struct delay *d, struct dtarget *t)
{
    hmap_del(&d->by_ptr, &t->ptr, sizeof t->ptr);
    if (t->sid)
        hmap_del(&d->by_sid, t->skey, sizeof t->skey);
    free(t);
}

/* ---- the pending FIFO ---------------------------------------------------------------- */

static void pend_drop_durable(struct delay *d)
{
    while (d->pend_n && d->pend[d->pend_head].batch <= d->b->durable_batch) {
        d->pend_head = (d->pend_head + 1) % d->pend_cap;
        d->pend_n--;
    }
}

static int pend_reserve(struct delay *d, uint32_t more)
{
    pend_drop_durable(d); /* (so it holds about a batch or two, not every spilled entry) */
    if (d->pend_cap - d->pend_n >= more)
        return 0;
    uint32_t cap = d->pend_cap ? d->pend_cap : 256;
    while (cap - d->pend_n < more)
        cap *= 2;
    struct pend *p = malloc((size_t)cap * sizeof *p);
    if (!p)
        return -ENOMEM;
    for (uint32_t i = 0; i < d->pend_n; i++)
        p[i] = d->pend[(d->pend_head + i) % d->pend_cap];
    free(d->pend);
    d->pend = p;
    d->pend_cap = cap;
    d->pend_head = 0;
    return 0;
}

/* Room reserved by pend_reserve. */
static void pend_push(struct delay *d, uint64_t due, uint64_t id)
{
    d->pend[(d->pend_head + d->pend_n++) % d->pend_cap] =
        (struct pend){due, id, storage_batch_no(d->b->store)};
}

/* Forgets the entries whose batch is durable; returns the smallest key left at or above the
 * horizon (HZ_ALL when none) in *ret_due, *ret_id. */
static void pend_prune(struct delay *d, uint64_t *ret_due, uint64_t *ret_id)
{
    pend_drop_durable(d);
    uint64_t due = HZ_ALL, id = 0;
    for (uint32_t i = 0; i < d->pend_n; i++) {
        const struct pend *p = &d->pend[(d->pend_head + i) % d->pend_cap];
        if ((p->due < due || (p->due == due && p->id < id)) &&
            !(p->due < d->hz_due || (p->due == d->hz_due && p->id < d->hz_id))) {
            due = p->due;
            id = p->id;
        }
    }
    *ret_due = due;
    *ret_id = id;
}

/* ---- the timer ---------------------------------------------------------------------------- */

static void on_timer(struct timer_item *item, uint64_t now);

static bool wants_refill(const struct delay *d)
{
    return d->hz_due != HZ_ALL && d->win.n < DELAY_WINDOW / 2 && !d->bytes_full;
}

static void arm(struct delay *d)
{
    uint64_t when = HZ_ALL;
    const struct dentry *a = dwin_min(&d->win), *h = dheap_min(&d->mem);
    if (a)
        when = a->due;
    if (h && h->due < when)
        when = h->due;
    if (wants_refill(d)) {
        uint64_t soon = timers_now() + (d->refill_stuck ? 2 : 0);
        if (soon < when)
            when = soon;
    }
    if (when == HZ_ALL)
        timers_cancel(&d->b->timers, &d->timer);
    else if (!d->timer.idx || d->timer.when != when)
        timers_set(&d->b->timers, &d->timer, when, on_timer);
}

/* ---- holding ----------------------------------------------------------------------------- */

/* Writes m for t (one reference: the entry), due at `due`; returns its id. Room reserved. */
static uint64_t store_entry(struct delay *d, struct msg *m, uint64_t due, struct dtarget *t,
                            bool transient)
{
    uint64_t id = persist_msg(d->b, m, 1, false);
    storage_put_delayed(d->b->store, due, id, t->kind, t->sid, transient);
    t->stored = true;
    return id;
}

/* The latest window entry goes to storage only (written now if it was not). */
static void evict_latest(struct delay *d)
{
    struct dentry ev;
    dwin_pop_max(&d->win, &ev);
    d->win_bytes -= msg_mem(ev.m);
    uint64_t id = ev.id;
    if (!(ev.flags & DE_STORED)) { /* under a new id: above the horizon set here, as it must */
        struct dtarget *t = hmap_get(&d->by_ptr, &ev.target, sizeof ev.target);
        id = store_entry(d, ev.m, ev.due, t, true);
    }
    d->hz_due = ev.due;
    d->hz_id = ev.id;
    pend_push(d, ev.due, id);
    msg_unref(ev.m);
}

/* Holds m for t until due: with storage in the window when below the horizon (else in storage
 * only), without it in the heap. Room reserved: hold_room(). */
static void hold(struct delay *d, struct msg *m, uint64_t due, struct dtarget *t,
                 bool persistent)
{
    if (!d->b->store) {
        struct dentry e = {due, ++d->seq, msg_ref(m), t->ptr, 0, t->kind, DE_TRANSIENT};
        dheap_push(&d->mem, &e); /* cannot fail: reserved */
        d->b->queued_mem += msg_mem(m);
        return;
    }
    struct dentry e = {due, 0, m, t->ptr, t->sid, t->kind, persistent ? DE_STORED : DE_TRANSIENT};
    e.id = persistent ? store_entry(d, m, due, t, false) : storage_new_id(d->b->store);
    if (!dentry_before(&e, d->hz_due, d->hz_id)) { /* storage only */
        uint64_t id = persistent ? e.id : store_entry(d, m, due, t, true);
        pend_push(d, due, id);
        return;
    }
    msg_ref(m);
    dwin_insert(&d->win, &e);
    d->win_bytes += msg_mem(m);
    /* At most two evictions a hold (so that the room reserved covers them): the byte bound
     * is reached again over the next holds. */
    for (int i = 0; i < 2 && (d->win.n > DELAY_WINDOW ||
                              (d->win_bytes > DELAY_WINDOW_BYTES && d->win.n > 1)); i++)
        evict_latest(d);
}

/* Room for n holds: each may write its entry and evict two. 0 or -ENOMEM. */
static int hold_room(struct delay *d, uint32_t n)
{
    if (!d->b->store) {
        struct dheap *h = &d->mem;
        while (h->cap - h->n < n) {
            uint32_t cap = h->cap ? h->cap * 2 : 64;
            struct dentry *ne = realloc(h->e, (size_t)cap * sizeof *ne);
            if (!ne)
                return -ENOMEM;
            h->e = ne;
            h->cap = cap;
        }
        return 0;
    }
    int rc = pend_reserve(d, 3 * n);
    return rc < 0 ? rc : persist_reserve(d->b, 3 * n);
}

int delay_hold_exchange(struct broker *b, struct exchange *x, struct msg *m,
                        uint64_t *ret_batch)
{
    struct delay *d = b->delay;
    int64_t delay;
    *ret_batch = 0;
    if (!d || !msg_delay(m, &delay) || delay <= 0)
        return 0;
    uint64_t due = due_after(delay);
    struct dtarget *t = target_get(d, 'x', x, x->store_id);
    int rc;
    if (!t)
        return -ENOMEM;
    if ((rc = hold_room(d, 1)) < 0)
        return rc;
    bool persistent = b->store && m->delivery_mode == 2 && x->store_id;
    hold(d, m, due, t, persistent);
    if (persistent)
        *ret_batch = storage_batch_no(b->store);
    arm(d);
    return 1;
}

int delay_take_queues(struct broker *b, struct msg *m, struct route *r, uint64_t *ret_batch)
{
    struct delay *d = b->delay;
    *ret_batch = 0;
    if (!d || (m->flags & MSG_DELAYED))
        return 0;
    uint32_t nq = 0;
    for (uint32_t i = 0; i < r->n; i++)
        nq += r->q[i]->opt.delivery_delay > 0;
    if (!nq)
        return 0;
    int64_t own;
    bool has_own = msg_delay(m, &own);
    if (has_own && own <= 0)
        return 0; /* x-delay 0 (or less): at once, whatever the queues say */
    int rc;
    for (uint32_t i = 0; i < r->n; i++)
        if (r->q[i]->opt.delivery_delay > 0 && !target_get(d, 'q', r->q[i], r->q[i]->store_id))
            return -ENOMEM;
    if ((rc = hold_room(d, nq)) < 0)
        return rc;
    uint32_t k = 0;
    bool stored = false;
    for (uint32_t i = 0; i < r->n; i++) {
        struct queue *q = r->q[i];
        if (q->opt.delivery_delay <= 0) {
            r->q[k++] = q;
            continue;
        }
        /* A record per queue: the key (due, message id) stays unique. */
        bool persistent = b->store && m->delivery_mode == 2 && q->store_id;
        hold(d, m, due_after(has_own ? own : q->opt.delivery_delay),
             target_get(d, 'q', q, q->store_id) /* (made above) */, persistent);
        stored |= persistent;
    }
    r->n = k;
    if (stored)
        *ret_batch = storage_batch_no(b->store);
    arm(d);
    return 0;
}

/* ---- releasing ---------------------------------------------------------------------------- */

/* e is due: route it (exchange) or enqueue it (queue) now; drops the entry's reference. */
/* A private copy of m (NULL on OOM). */
static struct msg *msg_copy(const struct msg *m)
{
    struct msg *c = msg_new(msg_exchange(m), msg_routing_key(m), msg_header(m), msg_bcc(m),
                            m->body_size);
    if (!c)
        return NULL;
    c->delivery_mode = m->delivery_mode;
    c->priority = m->priority;
    c->flags = m->flags;
    c->ttl = m->ttl;
    if (m->body_size)
        memcpy(c->body, m->body, m->body_size);
    c->body_have = m->body_have;
    return c;
}

static void release(struct delay *d, struct dentry *e)
{
    struct broker *b = d->b;
    struct msg *m = e->m;
    struct route *r = &d->route;
    if (b->store) {
        d->win_bytes -= msg_mem(m);
        d->bytes_full = false;
    } else {
        b->queued_mem -= msg_mem(m);
    }
    if (m->refs > 1) { /* others hold it (queues it went to at once): enqueueing sets its
                        * store_id, which must stay theirs */
        struct msg *c = msg_copy(m);
        if (c) {
            msg_unref(m);
            m = c;
        }
    }
    m->flags |= MSG_DELAYED;
    r->n = 0;
    r->oom = 0;
    int rc = 0;
    if (e->kind == 'x') {
        rc = exchange_route(e->target, m, r);
    } else if ((rc = array_reserve((void **)&r->q, &r->cap, r->n, sizeof *r->q, 8)) == 0) {
        r->q[r->n++] = e->target;
    }
    uint64_t batch;
    bool rejected;
    if (rc == 0)
        rc = publish_enqueue(b, m, r, &batch, &rejected);
    if (rc < 0)
        log_warn("a delayed message for %s '%s' is %s: out of memory", e->kind == 'x' ?
                 "exchange" : "queue", e->kind == 'x' ? ((struct exchange *)e->target)->name
                 : ((struct queue *)e->target)->name, e->flags & DE_STORED ?
                 "kept in storage for the next start" : "dropped");
    if ((e->flags & DE_STORED) && rc == 0) {
        if (storage_reserve(b->store, 1, 0) == 0)
            storage_del_delayed(b->store, e->due, e->id);
    }
    msg_unref(m);
}

/* refill's callback: one stored entry at or above the horizon. */
struct refill {
    struct delay *d;
    uint64_t lim_due, lim_id; /* stop before this key */
    uint64_t last_due, last_id;
    uint64_t stop_due, stop_id; /* hit_bytes: the first entry left unread */
    bool hit_limit, hit_bytes;
    uint32_t taken;
};

static int refill_entry(void *arg, const struct st_delayed *e, const void *data, size_t len)
{
    struct refill *f = arg;
    struct delay *d = f->d;
    if (!(e->due < f->lim_due || (e->due == f->lim_due && e->msg_id < f->lim_id))) {
        f->hit_limit = true;
        return 1;
    }
    if (d->win.n > 0 && d->win_bytes + len > DELAY_WINDOW_BYTES) { /* the byte bound */
        f->hit_bytes = true;
        f->stop_due = e->due;
        f->stop_id = e->msg_id;
        return 1;
    }
    f->last_due = e->due;
    f->last_id = e->msg_id;
    uint8_t skey[9];
    skey[0] = (uint8_t)e->kind;
    store_be64(skey + 1, e->target);
    struct dtarget *t = e->stale ? NULL : hmap_get(&d->by_sid, skey, sizeof skey);
    struct msg *m = NULL;
    int rc = t ? persist_msg_load(data, len, &m) : -EINVAL;
    if (rc == -ENOMEM) /* kept for a later refill */
        return rc;
    if (rc < 0) { /* stale, target gone, or unreadable */
        if (storage_reserve(d->b->store, 1, 0) == 0)
            storage_del_delayed(d->b->store, e->due, e->msg_id);
        return 0;
    }
    struct dentry de = {e->due, e->msg_id, m, t->ptr, t->sid, t->kind, DE_STORED};
    dwin_insert(&d->win, &de); /* appends: keys only grow, and the window has room */
    d->win_bytes += msg_mem(m);
    f->taken++;
    return 0;
}

/* Reads the soonest stored entries above the window into it, without passing an entry whose
 * batch may not be committed. */
static void refill(struct delay *d)
{
    uint64_t lim_due, lim_id;
    pend_prune(d, &lim_due, &lim_id);
    uint32_t room = DELAY_WINDOW - d->win.n;
    struct refill f = {.d = d, .lim_due = lim_due, .lim_id = lim_id};
    size_t n = 0;
    int rc = storage_scan_delayed(d->b->store, d->hz_due, d->hz_id, room, refill_entry, &f, &n);
    if (rc != 0 && rc != STORAGE_E_CORRUPT) { /* memory short, readers full...: retried soon */
        log_warn("cannot read delayed messages now (%s); retrying", rc == -ENOMEM ?
                 "out of memory" : storage_strerror(rc));
        if (f.taken) { /* those are in the window: read on after them */
            d->hz_due = f.last_due;
            d->hz_id = f.last_id + 1;
        }
        d->refill_stuck = true;
        return;
    }
    if (rc != 0) {
        log_error("cannot read delayed messages: %s; they wait until the next start",
                  storage_strerror(rc));
        d->hz_due = HZ_ALL; /* corrupt: what is stored stays for the next start */
        return;
    }
    uint64_t old_due = d->hz_due, old_id = d->hz_id;
    d->bytes_full = f.hit_bytes;
    if (f.hit_bytes) { /* the window is full by bytes: read on from the entry left */
        d->hz_due = f.stop_due;
        d->hz_id = f.stop_id;
    } else if (f.hit_limit || n < room) { /* everything below the limit is read */
        d->hz_due = lim_due;
        d->hz_id = lim_id;
    } else {
        d->hz_due = f.last_due;
        d->hz_id = f.last_id + 1;
    }
    d->refill_stuck = d->hz_due == old_due && d->hz_id == old_id;
}

static void on_timer(struct timer_item *item, uint64_t now)
{
    struct delay *d = (struct delay *)((char *)item - offsetof(struct delay, timer));
    uint32_t budget = RELEASE_BUDGET, refills = 4;
    bool more = false;
    if (d->b->store && wants_refill(d))
        refill(d), refills--;
    for (;;) {
        if (d->win.n == 0 && d->hz_due != HZ_ALL && refills && d->b->store) {
            refills--;
            refill(d);
        }
        const struct dentry *a = dwin_min(&d->win), *h = dheap_min(&d->mem);
        bool from_win = a && (!h || dentry_before(a, h->due, h->id));
        const struct dentry *e = from_win ? a : h;
        if (!e || e->due > now)
            break;
        if (budget == 0) {
            more = true;
            break;
        }
        budget--;
        struct dentry got;
        if (from_win)
            dwin_pop_min(&d->win, &got);
        else
            dheap_pop(&d->mem, &got);
        release(d, &got);
    }
    if (more) { /* more are due: a later loop turn (a timer due now would run in this one) */
        timers_set(&d->b->timers, &d->timer, now + 1, on_timer);
        return;
    }
    arm(d);
}

/* ---- life ------------------------------------------------------------------------------------ */

int delay_start(struct broker *b)
{
    struct delay *d = calloc(1, sizeof *d);
    if (!d || dwin_init(&d->win, DELAY_WINDOW) < 0 || timers_reserve(&b->timers, 1) < 0) {
        if (d)
            dwin_free(&d->win);
        free(d);
        return -ENOMEM;
    }
    d->b = b;
    b->delay = d;
    d->hz_due = b->store ? 0 : HZ_ALL; /* nothing read yet */
    void *vv, *v;
    for (uint32_t i = 0; hmap_next(&b->vhosts, &i, &vv);) {
        struct vhost *vh = vv;
        for (uint32_t j = 0; hmap_next(&vh->exchanges, &j, &v);) {
            struct exchange *x = v;
            struct dtarget *t = x->delayed && x->store_id ? target_get(d, 'x', x, x->store_id)
                                                          : NULL;
            if (x->delayed && x->store_id && !t)
                return -ENOMEM;
            if (t)
                t->stored = true;
        }
        for (uint32_t j = 0; hmap_next(&vh->queues, &j, &v);) {
            struct queue *q = v;
            struct dtarget *t = q->opt.delivery_delay > 0 && q->store_id
                                    ? target_get(d, 'q', q, q->store_id) : NULL;
            if (q->opt.delivery_delay > 0 && q->store_id && !t)
                return -ENOMEM;
            if (t)
                t->stored = true;
        }
    }
    if (b->store)
        refill(d);
    arm(d);
    return 0;
}

static void drop_stored(void *arg, struct dentry *e)
{
    struct delay *d = arg;
    d->win_bytes -= msg_mem(e->m);
    msg_unref(e->m);
}

static void drop_mem(void *arg, struct dentry *e)
{
    struct delay *d = arg;
    d->b->queued_mem -= msg_mem(e->m);
    msg_unref(e->m);
}

void delay_target_gone(struct broker *b, char kind, void *target, uint64_t store_id)
{
    struct delay *d = b->delay;
    struct dtarget *t = d ? hmap_get(&d->by_ptr, &target, sizeof target) : NULL;
    if (!t)
        return;
    dwin_remove_target(&d->win, target, drop_stored, d);
    dheap_remove_target(&d->mem, target, drop_mem, d);
    (void)store_id; /* (t->sid: the same, or the id its transient entries carry) */
    if (t->stored && b->store && !b->stopping)
        storage_del_delayed_target(b->store, kind, t->sid);
    target_free(d, t);
    arm(d);
}

void delay_free(struct broker *b)
{
    struct delay *d = b->delay;
    if (!d)
        return;
    timers_cancel(&b->timers, &d->timer);
    timers_unreserve(&b->timers, 1);
    struct dentry e;
    while (d->win.n) {
        dwin_pop_min(&d->win, &e);
        msg_unref(e.m);
    }
    while (d->mem.n) {
        dheap_pop(&d->mem, &e);
        msg_unref(e.m);
    }
    dwin_free(&d->win);
    dheap_free(&d->mem);
    void *v;
    for (uint32_t i = 0; hmap_next(&d->by_ptr, &i, &v);)
        free(v);
    hmap_free(&d->by_ptr);
    hmap_free(&d->by_sid);
    route_free(&d->route);
    free(d->pend);
    free(d);
    b->delay = NULL;
}
