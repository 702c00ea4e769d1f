/* deadletter.c — owns the dead-lettered copy of a message: its headers (x-death, the first
 * and last death), its routing key, and where it goes. The original message is untouched (other
 * queues may hold it). Invariant: a message never enters a queue through a dead-letter cycle
 * that contains no rejection.
 *
 * x-death is an array of tables, newest first, one per (queue, reason); each table is
 *   count (long), reason, queue (longstr), time (timestamp), exchange (longstr),
 *   routing-keys (array of longstr), and original-expiration (longstr) when the message had a
 *   per-message TTL, which dead-lettering removes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "lib/array.h"
#include "broker/model/deadletter.h"
#include "broker/model/exchange.h"
#include "lib/log.h"
#include "broker/model/msg.h"
#include "broker/model/msgedit.h"
#include "broker/model/publish.h"
#include "broker/model/queue.h"
#include "broker/model/broker.h"
#include "lib/timer.h"
#include "broker/model/vhost.h"
#include "protocol/codec.h"
#include "protocol/table.h"

static const char *const reasons[] = {"rejected", "expired", "maxlen", "delivery_limit"};

static bool key_is(amqp_bytes_t k, const char *s)
{
    return amqp_bytes_eq_str(k, s);
}

/* ---- field tables as lists of entries ------------------------------------------------ */

/* One table entry: its key and its whole encoding (key included). */
struct ent {
    amqp_bytes_t key;
    const uint8_t *raw;
    size_t len;
};

struct ents {
    struct ent *v; /* owned */
    size_t n, cap;
    bool failed;
};

static void ents_add(struct ents *l, struct ent e)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct ent *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->failed = true;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = e;
}

/* Appends the entries of table t. */
static void ents_of(struct ents *l, amqp_bytes_t t)
{
    struct amqp_table_iter it;
    amqp_bytes_t k;
    struct amqp_field f;
    amqp_table_iter_init(&it, t);
    const uint8_t *at = it.p;
    while (amqp_table_next(&it, &k, &f) > 0) {
        ents_add(l, (struct ent){k, at, (size_t)(it.p - at)});
        at = it.p;
    }
}

static int ent_cmp(const void *a, const void *b)
{
    const struct ent *x = a, *y = b;
    size_t n = x->key.len < y->key.len ? x->key.len : y->key.len;
    int c = n ? memcmp(x->key.ptr, y->key.ptr, n) : 0;
    return c ? c : (x->key.len > y->key.len) - (x->key.len < y->key.len);
}

/* RabbitMQ keeps tables it writes sorted by key (rabbit_misc:sort_field_table). */
static void ents_sort(struct ents *l)
{
    qsort(l->v, l->n, sizeof *l->v, ent_cmp);
}

static void ents_write(struct amqp_wbuf *w, const struct ents *l)
{
    for (size_t i = 0; i < l->n; i++) {
        uint8_t *d = amqp_wbuf_grow(w, l->v[i].len);
        if (d)
            memcpy(d, l->v[i].raw, l->v[i].len);
    }
}

static bool get_str(amqp_bytes_t t, const char *key, amqp_bytes_t *ret)
{
    struct amqp_field f;
    if (amqp_table_get(t, key, &f) != 1 || f.type != 'S')
        return false;
    *ret = f.v.bytes;
    return true;
}

/* ---- x-death ------------------------------------------------------------------------- */

/* Writes the routing-keys array: the routing key, then the CC keys. */
static void write_routing_keys(struct amqp_wbuf *w, const struct msg *m, amqp_bytes_t headers)
{
    amqp_tw_key(w, "routing-keys");
    size_t arr = amqp_tw_array(w);
    amqp_tw_bytes(w, 'S', msg_routing_key(m));
    struct amqp_field v, e;
    struct amqp_table_iter it;
    if (amqp_table_get(headers, "CC", &v) == 1 && v.type == 'A') {
        amqp_table_iter_init(&it, v.v.bytes);
        while (amqp_array_next(&it, &e) > 0)
            if (e.type == 'S')
                amqp_tw_bytes(w, 'S', e.v.bytes);
    }
    amqp_tw_end(w, arr);
}

struct death {
    const struct queue *q;
    const struct msg *m;
    amqp_bytes_t headers, expiration;
    const char *reason;
};

/* The event's own fields, after count: reason, queue, time, exchange, routing-keys and
 * original-expiration (when the message had one). */
static void write_info(struct amqp_wbuf *w, const struct death *d)
{
    amqp_tw_key(w, "reason");
    amqp_tw_str(w, d->reason);
    amqp_tw_key(w, "queue");
    amqp_tw_bytes(w, 'S', (amqp_bytes_t){(const uint8_t *)d->q->name, d->q->name_len});
    amqp_tw_key(w, "time");
    amqp_tw_int(w, 'T', (int64_t)(timers_now() / 1000));
    amqp_tw_key(w, "exchange");
    amqp_tw_bytes(w, 'S', msg_exchange(d->m));
    write_routing_keys(w, d->m, d->headers);
    if (d->expiration.ptr) {
        amqp_tw_key(w, "original-expiration");
        amqp_tw_bytes(w, 'S', d->expiration);
    }
}

static bool same_event(amqp_bytes_t t, amqp_bytes_t q, amqp_bytes_t r)
{
    amqp_bytes_t tq, tr;
    bool hq = get_str(t, "queue", &tq), hr = get_str(t, "reason", &tr);
    return hq == (q.ptr != NULL) && hr == (r.ptr != NULL) && (!hq || amqp_bytes_eq(tq, q)) &&
           (!hr || amqp_bytes_eq(tr, r));
}

/* Writes one x-death table (as an array element) from `t`, with its count set to `count` when
 * count > 0 (added in front if t has none, replaced in place otherwise), keys sorted if `sort`. */
static void write_event(struct amqp_wbuf *w, amqp_bytes_t t, int64_t count, bool sort)
{
    struct amqp_wbuf cw = {0};
    struct ents l = {0};
    struct amqp_field f;
    bool has_count = amqp_table_get(t, "count", &f) == 1;
    if (count > 0) {
        amqp_tw_key(&cw, "count");
        amqp_tw_int(&cw, 'l', count);
    }
    if (count > 0 && !cw.failed && !has_count)
        ents_add(&l, (struct ent){AMQP_BYTES_LIT("count"), cw.data, cw.len});
    size_t first = l.n;
    ents_of(&l, t);
    for (size_t i = first; i < l.n && count > 0 && !cw.failed; i++)
        if (key_is(l.v[i].key, "count"))
            l.v[i] = (struct ent){l.v[i].key, cw.data, cw.len};
    if (sort)
        ents_sort(&l);
    size_t tbl = amqp_tw_table(w);
    ents_write(w, &l);
    amqp_tw_end(w, tbl);
    if (l.failed || cw.failed)
        w->failed = true;
    free(l.v);
    amqp_wbuf_free(&cw);
}

/* The x-death entry (key and array) for this death, as RabbitMQ 3.x's update_x_death_header
 * builds it: existing entries are regrouped by (queue, reason) — RabbitMQ's fold reverses them
 * when there are two or more —, the one for this event is taken out, its count raised (or a new
 * one made) and put in front with its keys sorted. */
static void write_x_death(struct amqp_wbuf *w, const struct death *d, bool *ret_first)
{
    struct amqp_field old;
    amqp_bytes_t qn = {(const uint8_t *)d->q->name, d->q->name_len}, rn = amqp_cstr(d->reason);
    bool present = amqp_table_get(d->headers, "x-death", &old) == 1;
    *ret_first = !present;
    amqp_tw_key(w, "x-death");
    size_t arr = amqp_tw_array(w);
    if (!present || old.type != 'A') { /* first death, or an x-death a client mangled */
        size_t tbl = amqp_tw_table(w);
        amqp_tw_key(w, "count");
        amqp_tw_int(w, 'l', 1);
        write_info(w, d);
        amqp_tw_end(w, tbl);
        amqp_tw_end(w, arr);
        return;
    }
    /* The old tables, in order. */
    amqp_bytes_t tables[256];
    size_t n = 0;
    struct amqp_table_iter it;
    struct amqp_field e;
    amqp_table_iter_init(&it, old.v.bytes);
    while (amqp_array_next(&it, &e) > 0 && n < 256)
        if (e.type == 'F')
            tables[n++] = e.v.bytes;
    /* Grouped: one per (queue, reason), the first of each, newest group first. */
    amqp_bytes_t grouped[256];
    int64_t gcount[256];
    size_t g = 0;
    for (size_t i = 0; i < n; i++) {
        amqp_bytes_t q = {0}, r = {0};
        get_str(tables[i], "queue", &q);
        get_str(tables[i], "reason", &r);
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = same_event(tables[k], q, r);
        if (seen)
            continue;
        int64_t same = 0;
        for (size_t k = 0; k < n; k++)
            same += same_event(tables[k], q, r);
        grouped[g] = tables[i];
        gcount[g++] = n >= 2 ? same : 0; /* RabbitMQ adds a count only where one is missing */
    }
    if (n >= 2) { /* the fold prepends: reverse */
        for (size_t i = 0; i < g / 2; i++) {
            amqp_bytes_t t = grouped[i];
            grouped[i] = grouped[g - 1 - i];
            grouped[g - 1 - i] = t;
            int64_t c = gcount[i];
            gcount[i] = gcount[g - 1 - i];
            gcount[g - 1 - i] = c;
        }
    }
    size_t match = g;
    for (size_t i = 0; i < g && match == g; i++)
        if (same_event(grouped[i], qn, rn))
            match = i;
    if (match < g) {
        struct amqp_field c;
        int64_t count = amqp_table_get(grouped[match], "count", &c) == 1 && strchr("bsIlL", c.type)
                            ? c.v.i
                            : gcount[match] ? gcount[match] : 0;
        write_event(w, grouped[match], count + 1, true);
    } else {
        struct amqp_wbuf nw = {0};
        amqp_tw_key(&nw, "count");
        amqp_tw_int(&nw, 'l', 1);
        write_info(&nw, d);
        write_event(w, (amqp_bytes_t){nw.data, (uint32_t)nw.len}, 0, true);
        if (nw.failed)
            w->failed = true;
        amqp_wbuf_free(&nw);
    }
    for (size_t i = 0; i < g; i++) {
        if (i == match)
            continue;
        struct amqp_field c;
        bool has = amqp_table_get(grouped[i], "count", &c) == 1;
        write_event(w, grouped[i], has ? 0 : gcount[i], false);
    }
    amqp_tw_end(w, arr);
}

static bool key_in(amqp_bytes_t k, const struct ents *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (amqp_bytes_eq(k, l->v[i].key))
            return true;
    return false;
}

struct dl_edit {
    const struct queue *q;
    const struct msg *m;
    const char *reason;
};

/* The dead-lettered copy's header: no expiration; headers with the new x-death, the
 * x-first-death-* on a first death, x-last-death-* always (RabbitMQ 3.13's), all sorted by key
 * as RabbitMQ writes its tables. */
static void edit_headers(struct amqp_basic_props *props, amqp_bytes_t headers,
                         struct amqp_wbuf *w, void *arg)
{
    struct dl_edit *dl = arg;
    struct death d = {dl->q, dl->m, headers,
                      (props->flags & AMQP_P_EXPIRATION) ? props->expiration
                                                         : (amqp_bytes_t){NULL, 0},
                      dl->reason};
    props->flags &= (uint16_t)~AMQP_P_EXPIRATION;
    /* The new entries, written first into nw; then everything is sorted into w. */
    struct amqp_wbuf nw = {0};
    bool first;
    write_x_death(&nw, &d, &first);
    amqp_bytes_t qn = {(const uint8_t *)d.q->name, d.q->name_len};
    static const char *const firsts[] = {"x-first-death-exchange", "x-first-death-queue",
                                         "x-first-death-reason"};
    static const char *const lasts[] = {"x-last-death-exchange", "x-last-death-queue",
                                        "x-last-death-reason"};
    for (int pass = first ? 0 : 1; pass < 2; pass++) {
        const char *const *names = pass ? lasts : firsts;
        amqp_tw_key(&nw, names[0]);
        amqp_tw_bytes(&nw, 'S', msg_exchange(d.m));
        amqp_tw_key(&nw, names[1]);
        amqp_tw_bytes(&nw, 'S', qn);
        amqp_tw_key(&nw, names[2]);
        amqp_tw_str(&nw, d.reason);
    }
    struct ents fresh = {0}, all = {0};
    if (!nw.failed)
        ents_of(&fresh, (amqp_bytes_t){nw.data, (uint32_t)nw.len});
    struct ents old = {0};
    ents_of(&old, headers);
    for (size_t i = 0; i < old.n; i++) /* with its own routing key, the copy drops CC */
        if (!key_in(old.v[i].key, &fresh) && !(d.q->opt.has_dlrk && key_is(old.v[i].key, "CC")))
            ents_add(&all, old.v[i]);
    for (size_t i = 0; i < fresh.n; i++)
        ents_add(&all, fresh.v[i]);
    ents_sort(&all);
    ents_write(w, &all);
    if (nw.failed || fresh.failed || old.failed || all.failed)
        w->failed = true;
    free(fresh.v);
    free(old.v);
    free(all.v);
    amqp_wbuf_free(&nw);
}

/* True when routing the copy (with its new x-death) to queue `target` closes a cycle of
 * deaths none of which was a rejection (RabbitMQ drops the copy for that queue). */
static bool is_cycle(const struct queue *target, amqp_bytes_t headers)
{
    struct amqp_field xd, e, fq, fr;
    if (amqp_table_get(headers, "x-death", &xd) != 1 || xd.type != 'A')
        return false;
    struct amqp_table_iter it;
    amqp_table_iter_init(&it, xd.v.bytes);
    bool rejected = false;
    while (amqp_array_next(&it, &e) > 0) {
        if (e.type != 'F')
            continue;
        if (amqp_table_get(e.v.bytes, "reason", &fr) == 1 && fr.type == 'S' &&
            amqp_bytes_eq_str(fr.v.bytes, "rejected"))
            rejected = true;
        if (amqp_table_get(e.v.bytes, "queue", &fq) == 1 && fq.type == 'S' &&
            amqp_bytes_eq(fq.v.bytes, (amqp_bytes_t){(const uint8_t *)target->name, target->name_len}))
            return !rejected;
    }
    return false;
}

/* The dead-lettered copy of m: new headers, no expiration, the DLX and its routing key. */
static struct msg *make_copy(const struct queue *q, const struct msg *m, const char *reason)
{
    struct dl_edit d = {q, m, reason};
    bool own_key = q->opt.has_dlrk;
    return msg_edit(m, q->opt.dlx, own_key ? q->opt.dlrk : msg_routing_key(m), !own_key,
                    edit_headers, &d);
}

/* Routes and enqueues one dead-lettered copy. */
static void deliver_copy(struct vhost *vh, struct msg *nm, enum dl_reason reason)
{
    struct exchange *x = vhost_exchange(vh, msg_exchange(nm));
    if (!x)
        return;
    struct route rt = {0}, *r = &rt;
    if (exchange_route(x, nm, r) == 0) {
        if (reason != DL_REJECTED) {
            struct amqp_content_header h;
            amqp_bytes_t hdr = msg_header(nm);
            amqp_content_header_decode(hdr.ptr, hdr.len, &h);
            uint32_t k = 0;
            for (uint32_t i = 0; i < r->n; i++)
                if (!is_cycle(r->q[i], h.props.headers))
                    r->q[k++] = r->q[i];
            r->n = k;
        }
        uint64_t batch;
        bool rejected;
        publish_enqueue(vh->broker, nm, r, &batch, &rejected);
    }
    route_free(r);
}

void deadletter(struct queue *q, const struct qentry *e, enum dl_reason reason)
{
    if (!q->opt.has_dlx)
        return;
    q->vhost->broker->stats.dead_lettered[reason]++;
    struct vhost *vh = q->vhost;
    struct broker *s = vh->broker;
    if (!vhost_exchange(vh, q->opt.dlx))
        return; /* a missing DLX drops the message, as in RabbitMQ */
    struct msg *nm = make_copy(q, e->m, reasons[reason]);
    if (!nm) {
        log_warn("queue '%s': cannot build the dead-lettered copy of a message (out of memory "
                 "or a malformed header); dropping it",
                 q->name);
        return;
    }
    /* Enqueueing a copy can overflow a queue that dead-letters in turn, and so on: nested
     * calls only queue their copy, and the outermost call delivers them all, one at a time,
     * so that the stack stays flat however long the chain. */
    struct dl_job job = {vh, nm, reason};
    if (array_reserve((void **)&s->dl_jobs, &s->dl_cap, s->dl_n, sizeof job, 16) < 0) {
        msg_unref(nm);
        return;
    }
    s->dl_jobs[s->dl_n++] = job;
    if (s->dl_busy)
        return;
    s->dl_busy = true;
    for (uint32_t i = 0; i < s->dl_n; i++) { /* dl_n grows while we go */
        job = s->dl_jobs[i];
        deliver_copy(job.vh, job.m, job.reason);
        msg_unref(job.m);
    }
    s->dl_n = 0;
    s->dl_busy = false;
}
