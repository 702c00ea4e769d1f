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
#include <string.h>
#include "broker/deadletter.h"
#include "broker/exchange.h"
#include "broker/log.h"
#include "broker/msg.h"
#include "broker/msgedit.h"
#include "broker/publish.h"
#include "broker/queue.h"
#include "broker/server.h"
#include "broker/timer.h"
#include "broker/vhost.h"
#include "protocol/codec.h"
#include "protocol/table.h"

static const char *const reasons[] = {"rejected", "expired", "maxlen", "delivery_limit"};

static bool key_is(amqp_bytes_t k, const char *s)
{
    return amqp_bytes_eq_str(k, s);
}

/* Copies one raw table or array entry (from `at` to the iterator's position) into w. */
static void copy_entry(struct amqp_wbuf *w, const uint8_t *at, const uint8_t *end)
{
    uint8_t *d = amqp_wbuf_grow(w, (size_t)(end - at));
    if (d)
        memcpy(d, at, (size_t)(end - at));
}

/* Writes the routing-keys array: the routing key, then the CC and BCC keys. */
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
    amqp_table_iter_init(&it, msg_bcc(m));
    while (amqp_array_next(&it, &e) > 0)
        if (e.type == 'S')
            amqp_tw_bytes(w, 'S', e.v.bytes);
    amqp_tw_end(w, arr);
}

/* Builds the new x-death array into w: the (queue, reason) entry first — a fresh one, or the
 * old one with its count raised — then the other old entries. */
static void write_x_death(struct amqp_wbuf *w, const struct queue *q, const struct msg *m,
                          amqp_bytes_t headers, const char *reason, amqp_bytes_t expiration,
                          uint64_t now_s)
{
    struct amqp_field old;
    bool has_old = amqp_table_get(headers, "x-death", &old) == 1 && old.type == 'A';
    amqp_bytes_t match = {NULL, 0};
    struct amqp_table_iter it;
    struct amqp_field e, f;
    if (has_old) { /* the entry for this (queue, reason), if any */
        amqp_table_iter_init(&it, old.v.bytes);
        while (amqp_array_next(&it, &e) > 0) {
            struct amqp_field fq, fr;
            if (e.type == 'F' && amqp_table_get(e.v.bytes, "queue", &fq) == 1 &&
                amqp_table_get(e.v.bytes, "reason", &fr) == 1 && fq.type == 'S' &&
                fr.type == 'S' && amqp_bytes_eq(fq.v.bytes, (amqp_bytes_t){(const uint8_t *)q->name, q->name_len}) &&
                amqp_bytes_eq_str(fr.v.bytes, reason)) {
                match = e.v.bytes;
                break;
            }
        }
    }
    amqp_tw_key(w, "x-death");
    size_t arr = amqp_tw_array(w);
    size_t tbl = amqp_tw_table(w);
    if (match.ptr) {
        int64_t count = 0;
        if (amqp_table_get(match, "count", &f) == 1 && strchr("bsIlL", f.type))
            count = f.v.i;
        amqp_tw_key(w, "count");
        amqp_tw_int(w, 'l', count + 1);
        amqp_bytes_t k;
        amqp_table_iter_init(&it, match);
        const uint8_t *at = it.p;
        while (amqp_table_next(&it, &k, &f) > 0) {
            if (!key_is(k, "count"))
                copy_entry(w, at, it.p);
            at = it.p;
        }
    } else {
        amqp_tw_key(w, "count");
        amqp_tw_int(w, 'l', 1);
        amqp_tw_key(w, "reason");
        amqp_tw_str(w, reason);
        amqp_tw_key(w, "queue");
        amqp_tw_bytes(w, 'S', (amqp_bytes_t){(const uint8_t *)q->name, q->name_len});
        amqp_tw_key(w, "time");
        amqp_tw_int(w, 'T', (int64_t)now_s);
        amqp_tw_key(w, "exchange");
        amqp_tw_bytes(w, 'S', msg_exchange(m));
        write_routing_keys(w, m, headers);
        if (expiration.ptr) {
            amqp_tw_key(w, "original-expiration");
            amqp_tw_bytes(w, 'S', expiration);
        }
    }
    amqp_tw_end(w, tbl);
    if (has_old) { /* the rest, in their order */
        amqp_table_iter_init(&it, old.v.bytes);
        const uint8_t *at = it.p;
        while (amqp_array_next(&it, &e) > 0) {
            if (!(e.type == 'F' && e.v.bytes.ptr == match.ptr))
                copy_entry(w, at, it.p);
            at = it.p;
        }
    }
    amqp_tw_end(w, arr);
}

static bool skip_death(amqp_bytes_t k)
{
    return key_is(k, "x-death") || (k.len > 13 && memcmp(k.ptr, "x-last-death-", 13) == 0);
}

struct dl_edit {
    const struct queue *q;
    const struct msg *m;
    const char *reason;
};

/* The dead-lettered copy's header: no expiration, headers plus the death records. */
static void edit_headers(struct amqp_basic_props *props, amqp_bytes_t headers,
                         struct amqp_wbuf *w, void *arg)
{
    struct dl_edit *d = arg;
    amqp_bytes_t expiration = (props->flags & AMQP_P_EXPIRATION) ? props->expiration
                                                                 : (amqp_bytes_t){NULL, 0};
    props->flags &= (uint16_t)~AMQP_P_EXPIRATION;
    struct amqp_field f;
    bool had_first = amqp_table_get(headers, "x-first-death-reason", &f) == 1;
    msg_copy_table(w, headers, skip_death);
    write_x_death(w, d->q, d->m, headers, d->reason, expiration, timers_now() / 1000);
    amqp_bytes_t qn = {(const uint8_t *)d->q->name, d->q->name_len};
    if (!had_first) {
        amqp_tw_key(w, "x-first-death-exchange");
        amqp_tw_bytes(w, 'S', msg_exchange(d->m));
        amqp_tw_key(w, "x-first-death-queue");
        amqp_tw_bytes(w, 'S', qn);
        amqp_tw_key(w, "x-first-death-reason");
        amqp_tw_str(w, d->reason);
    }
    amqp_tw_key(w, "x-last-death-exchange");
    amqp_tw_bytes(w, 'S', msg_exchange(d->m));
    amqp_tw_key(w, "x-last-death-queue");
    amqp_tw_bytes(w, 'S', qn);
    amqp_tw_key(w, "x-last-death-reason");
    amqp_tw_str(w, d->reason);
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

void deadletter(struct queue *q, const struct qentry *e, enum dl_reason reason)
{
    if (!q->opt.has_dlx)
        return;
    struct vhost *vh = q->vhost;
    struct server *s = vh->srv;
    struct exchange *x = vhost_exchange(vh, q->opt.dlx);
    if (!x)
        return; /* a missing DLX drops the message, as in RabbitMQ */
    struct msg *nm = make_copy(q, e->m, reasons[reason]);
    if (!nm) {
        log_warn("queue '%s': cannot build the dead-lettered copy of a message (out of memory "
                 "or a malformed header); dropping it",
                 q->name);
        return;
    }
    /* A route of its own: dead-lettering may nest (a drop-head queue dead-lettering into
     * another full one). Not a hot path. */
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
        publish_enqueue(s, nm, r, &batch, &rejected);
    }
    route_free(r);
    msg_unref(nm);
}
