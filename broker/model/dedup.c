/* dedup.c — owns the deduplication state of exchanges and queues (dedup.h): the id of a
 * message, the window, the cache (lib/dcache.h) and its copy in storage (schema.h's dedup).
 * Does not own routing (exchange.c routes a dedup exchange as a fanout once we admit) nor the
 * queue (queue.c and publish.c call in when a message enters or leaves).
 * Ids: the x-deduplication-header value (a string, bytes, or an integer as its decimal text);
 * ids up to 32 bytes are kept as they are, longer ones (any length) as their SHA-256, and a
 * body as its SHA-256, each in its own key space, so an entry is 34 bytes whatever the id.
 * Invariant: with disk persistence, a durable owner's stored entries are those of its cache
 * (within the storage batches in flight), except expired ones not yet replaced. */
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "broker/model/broker.h"
#include "broker/model/dedup.h"
#include "broker/model/errors.h"
#include "broker/model/exchange.h"
#include "broker/model/msg.h"
#include "broker/model/queue.h"
#include "broker/model/vhost.h"
#include "lib/log.h"
#include "lib/timer.h"
#include "protocol/codec.h"
#include "protocol/table.h"
#include "storage/batch.h"
#include "storage/recover.h"

enum key_kind { KEY_ID = 1, KEY_ID_SHA256 = 2, KEY_BODY_SHA256 = 3 };

/* ---- arguments ------------------------------------------------------------------------- */

static bool is_int(char t)
{
    return t && strchr("bsIlLBui", t) != NULL;
}

static int64_t int_of(const struct amqp_field *f)
{
    return strchr("Bui", f->type) ? (int64_t)f->v.u : f->v.i;
}

/* An integer argument or header: an integer field, or a longstr of decimal digits (the
 * plugin accepts both). false when it is neither. */
static bool get_int(const struct amqp_field *f, int64_t *ret)
{
    if (is_int(f->type)) {
        *ret = int_of(f);
        return true;
    }
    if (f->type != 'S' || f->v.bytes.len == 0 || f->v.bytes.len > 18)
        return false;
    int64_t n = 0;
    for (uint32_t i = 0; i < f->v.bytes.len; i++) {
        uint8_t c = ((const uint8_t *)f->v.bytes.ptr)[i];
        if (c < '0' || c > '9')
            return false;
        n = n * 10 + (c - '0');
    }
    *ret = n;
    return true;
}

/* A positive integer argument no larger than max: 0, 1 when absent, -1 when invalid. */
static int pos_int_arg(amqp_bytes_t args, const char *key, int64_t max, int64_t *ret)
{
    struct amqp_field v;
    if (amqp_table_get(args, key, &v) != 1)
        return 1;
    int64_t n;
    if (!get_int(&v, &n) || n <= 0 || n > max)
        return -1;
    *ret = n;
    return 0;
}

static int bool_arg(amqp_bytes_t args, const char *key, bool *ret)
{
    struct amqp_field v;
    if (amqp_table_get(args, key, &v) != 1)
        return 1;
    if (v.type != 't')
        return -1;
    *ret = v.v.b;
    return 0;
}

/* The checks both levels share: x-cache-size (required: `need_size`), x-cache-ttl,
 * x-cache-persistence, x-content-based-deduplication. */
static int check_common(struct err *err, amqp_bytes_t args, bool need_size)
{
    int64_t n;
    bool b;
    int rc = pos_int_arg(args, "x-cache-size", INT32_MAX, &n);
    if (rc < 0 || (rc == 1 && need_size))
        return err_set(err, -WERR_PRECONDITION_FAILED,
                       "Missing or invalid argument, 'x-cache-size' must be an integer greater "
                       "than 0");
    if (pos_int_arg(args, "x-cache-ttl", INT64_MAX / 2, &n) < 0)
        return err_set(err, -WERR_PRECONDITION_FAILED,
                       "Invalid argument, 'x-cache-ttl' must be an integer greater than 0");
    struct amqp_field v;
    if (amqp_table_get(args, "x-cache-persistence", &v) == 1 &&
        (v.type != 'S' ||
         (!amqp_bytes_eq_str(v.v.bytes, "disk") && !amqp_bytes_eq_str(v.v.bytes, "memory"))))
        return err_set(err, -WERR_PRECONDITION_FAILED,
                       "Invalid argument, 'x-cache-persistence' must be either 'disk' or "
                       "'memory'");
    if (bool_arg(args, "x-content-based-deduplication", &b) < 0)
        return err_set(err, -WERR_PRECONDITION_FAILED,
                       "Invalid argument, 'x-content-based-deduplication' must be a boolean");
    return 0;
}

int dedup_check_exchange_args(struct err *err, amqp_bytes_t args)
{
    return check_common(err, args, true);
}

int dedup_check_queue_args(struct err *err, amqp_bytes_t args)
{
    bool b = false, cb = false;
    if (bool_arg(args, "x-message-deduplication", &b) < 0)
        return err_set(err, -WERR_PRECONDITION_FAILED,
                       "Invalid argument, 'x-message-deduplication' must be a boolean");
    if (bool_arg(args, "x-content-based-deduplication", &cb) < 0)
        return err_set(err, -WERR_PRECONDITION_FAILED,
                       "Invalid argument, 'x-content-based-deduplication' must be a boolean");
    return b || cb ? check_common(err, args, false) : 0;
}

int dedup_new(amqp_bytes_t args, bool queue, struct dedup **ret)
{
    bool on = !queue, cb = false;
    if (queue)
        bool_arg(args, "x-message-deduplication", &on);
    bool_arg(args, "x-content-based-deduplication", &cb);
    if (!on && !(queue && cb)) {
        *ret = NULL;
        return 0;
    }
    struct dedup *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    int64_t size = 0, ttl = 0;
    pos_int_arg(args, "x-cache-size", INT32_MAX, &size);
    dcache_init(&d->cache, (uint32_t)size);
    d->queue = queue;
    d->content_based = cb;
    if (!queue && pos_int_arg(args, "x-cache-ttl", INT64_MAX / 2, &ttl) == 1 && cb)
        ttl = DEDUP_CONTENT_TTL_MS;
    d->ttl = ttl;
    struct amqp_field v;
    d->disk = true; /* only a durable owner has a storage id: memory for the others */
    if (amqp_table_get(args, "x-cache-persistence", &v) == 1 && v.type == 'S')
        d->disk = amqp_bytes_eq_str(v.v.bytes, "disk");
    *ret = d;
    return 0;
}

void dedup_free(struct dedup *d)
{
    if (!d)
        return;
    dcache_free(&d->cache);
    free(d);
}

/* ---- ids ----------------------------------------------------------------------------- */

static void sha256(const void *p, size_t n, uint8_t out[32])
{
    unsigned int len = 32;
    EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
}

/* The message's key, and its x-cache-ttl header (-1: none). false: it has no id. */
static bool msg_key(const struct dedup *d, const struct msg *m, struct dcache_key *k,
                    int64_t *ret_ttl)
{
    memset(k, 0, sizeof *k);
    *ret_ttl = -1;
    struct amqp_content_header h;
    amqp_bytes_t hdr = msg_header(m);
    amqp_bytes_t headers = {NULL, 0};
    if (amqp_content_header_decode(hdr.ptr, hdr.len, &h) == 0 && (h.props.flags & AMQP_P_HEADERS))
        headers = h.props.headers;
    struct amqp_field v;
    int64_t n;
    if (!d->queue && headers.len && amqp_table_get(headers, "x-cache-ttl", &v) == 1 &&
        get_int(&v, &n) && n > 0)
        *ret_ttl = n;
    if (headers.len && amqp_table_get(headers, "x-deduplication-header", &v) == 1) {
        char num[24];
        amqp_bytes_t id = {NULL, 0};
        if (v.type == 'S' || v.type == 'x') {
            id = v.v.bytes;
        } else if (is_int(v.type)) {
            int len = strchr("Bui", v.type) ? snprintf(num, sizeof num, "%" PRIu64, v.v.u)
                                            : snprintf(num, sizeof num, "%" PRId64, v.v.i);
            id = (amqp_bytes_t){(uint8_t *)num, (uint32_t)len};
        }
        if (id.ptr) {
            if (id.len <= sizeof k->b) {
                k->kind = KEY_ID;
                k->len = (uint8_t)id.len;
                if (id.len)
                    memcpy(k->b, id.ptr, id.len);
            } else {
                k->kind = KEY_ID_SHA256;
                k->len = 32;
                sha256(id.ptr, id.len, k->b);
            }
            return true;
        }
    }
    if (!d->content_based)
        return false;
    k->kind = KEY_BODY_SHA256;
    k->len = 32;
    sha256(m->body, m->body_size, k->b); /* one call over the body in place */
    return true;
}

/* ---- storage ------------------------------------------------------------------------- */

static struct storage *store_of(const struct dedup *d, struct broker *b, uint64_t owner)
{
    return d->disk && owner && b->store && !b->recovering ? b->store : NULL;
}

/* Mirrors an add (and the eviction it caused) in storage. Room is reserved first: when there
 * is none the entry stays in memory only (storage stays healthy). */
static void store_add(struct storage *st, uint64_t owner, const struct dcache_entry *e,
                      const struct dcache_key *evicted)
{
    if (!st || storage_reserve(st, 2, 2 * sizeof e->key) < 0)
        return;
    if (evicted)
        storage_del_dedup(st, owner, evicted, sizeof *evicted);
    storage_put_dedup(st, owner, &e->key, sizeof e->key, e->expires, e->seq);
}

static void store_del(struct storage *st, uint64_t owner, const struct dcache_key *k)
{
    if (st && storage_reserve(st, 1, sizeof *k) == 0)
        storage_del_dedup(st, owner, k, sizeof *k);
}

/* Remembers k (persist: in storage too, for a durable owner). Out of memory it is not
 * remembered and the message passes: better a duplicate than a loss. */
static void remember(struct dedup *d, struct storage *st, uint64_t owner,
                     const struct dcache_key *k, uint64_t expires, bool persist)
{
    struct dcache_key ev;
    int rc = dcache_add(&d->cache, k, expires, 0, &ev);
    if (rc < 0)
        return;
    const struct dcache_entry *e = dcache_find(&d->cache, k, 0);
    if (persist && e)
        store_add(st, owner, e, rc == 1 ? &ev : NULL);
    else if (rc == 1)
        store_del(st, owner, &ev);
}

/* ---- the two levels ------------------------------------------------------------------ */

bool dedup_exchange_admit(struct exchange *x, const struct msg *m)
{
    struct dedup *d = x->dedup;
    struct dcache_key k;
    int64_t ttl;
    if (!msg_key(d, m, &k, &ttl))
        return true;
    uint64_t now = timers_now();
    if (dcache_find(&d->cache, &k, now)) {
        d->deduplicated++;
        x->vhost->broker->stats.deduplicated++;
        return false;
    }
    if (ttl < 0)
        ttl = d->ttl;
    remember(d, store_of(d, x->vhost->broker, x->store_id), x->store_id, &k,
             ttl > 0 ? now + (uint64_t)ttl : 0, true);
    return true;
}

/* Only messages that survive a restart in q have their id stored. */
static bool kept(const struct queue *q, const struct msg *m)
{
    return m->delivery_mode == 2 || q->opt.quorum;
}

bool dedup_queue_admit(struct queue *q, const struct msg *m)
{
    struct dedup *d = q->dedup;
    struct dcache_key k;
    int64_t ttl;
    if (!msg_key(d, m, &k, &ttl))
        return true;
    if (dcache_find(&d->cache, &k, 0)) {
        d->deduplicated++;
        q->vhost->broker->stats.deduplicated++;
        return false;
    }
    remember(d, store_of(d, q->vhost->broker, q->store_id), q->store_id, &k, 0, kept(q, m));
    return true;
}

void dedup_queue_left(struct queue *q, const struct msg *m)
{
    struct dedup *d = q->dedup;
    struct dcache_key k;
    int64_t ttl;
    if (!msg_key(d, m, &k, &ttl) || !dcache_del(&d->cache, &k))
        return;
    if (kept(q, m) && !q->deleted) /* a deleted queue's entries go with its record */
        store_del(store_of(d, q->vhost->broker, q->store_id), q->store_id, &k);
}

void dedup_queue_purged(struct queue *q)
{
    struct dedup *d = q->dedup;
    struct storage *st = q->deleted ? NULL : store_of(d, q->vhost->broker, q->store_id);
    while (d->cache.count) {
        struct dcache_key k = d->cache.e[d->cache.oldest].key;
        dcache_del(&d->cache, &k);
        store_del(st, q->store_id, &k);
    }
}

/* ---- recovery ------------------------------------------------------------------------ */

struct rec_owner {
    uint64_t id;
    struct dedup *d;
};

struct rec_entry {
    struct dedup *d;
    uint64_t owner, expires, seq;
    struct dcache_key key;
};

struct rec {
    struct rec_owner *owners; /* owned, sorted by id */
    size_t nowners;
    struct rec_entry *e;      /* owned */
    size_t n, cap;
    uint64_t now;
    struct broker *b;
};

static int by_id(const void *a, const void *b)
{
    uint64_t x = ((const struct rec_owner *)a)->id, y = ((const struct rec_owner *)b)->id;
    return x < y ? -1 : x > y;
}

static int by_seq(const void *a, const void *b)
{
    uint64_t x = ((const struct rec_entry *)a)->seq, y = ((const struct rec_entry *)b)->seq;
    return x < y ? -1 : x > y;
}

static int on_entry(void *arg, uint64_t owner, const void *key, size_t klen, uint64_t expires,
                    uint64_t seq)
{
    struct rec *r = arg;
    struct rec_owner probe = {owner, NULL};
    struct rec_owner *o =
        r->nowners ? bsearch(&probe, r->owners, r->nowners, sizeof probe, by_id) : NULL;
    if (!o || klen != sizeof(struct dcache_key) || (expires && expires <= r->now)) {
        /* its owner is gone or is no longer kept on disk, or it expired: drop it */
        if (storage_reserve(r->b->store, 1, klen) == 0)
            storage_del_dedup(r->b->store, owner, key, klen);
        return 0;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        struct rec_entry *e = realloc(r->e, cap * sizeof *e);
        if (!e)
            return -ENOMEM;
        r->e = e;
        r->cap = cap;
    }
    struct rec_entry *e = &r->e[r->n++];
    e->d = o->d;
    e->owner = owner;
    e->expires = expires;
    e->seq = seq;
    memcpy(&e->key, key, sizeof e->key);
    return 0;
}

static int add_owner(struct rec *r, size_t *cap, uint64_t id, struct dedup *d)
{
    if (!d || !d->disk || !id)
        return 0;
    if (r->nowners == *cap) {
        size_t n = *cap ? *cap * 2 : 16;
        struct rec_owner *o = realloc(r->owners, n * sizeof *o);
        if (!o)
            return -ENOMEM;
        r->owners = o;
        *cap = n;
    }
    r->owners[r->nowners++] = (struct rec_owner){id, d};
    return 0;
}

int dedup_recover(struct broker *b)
{
    if (!b->store)
        return 0;
    struct rec r = {.now = timers_now(), .b = b};
    size_t cap = 0;
    int rc = 0;
    void *v, *w;
    for (uint32_t i = 0; rc == 0 && hmap_next(&b->vhosts, &i, &v);) {
        struct vhost *vh = v;
        for (uint32_t j = 0; rc == 0 && hmap_next(&vh->exchanges, &j, &w);)
            rc = add_owner(&r, &cap, ((struct exchange *)w)->store_id, ((struct exchange *)w)->dedup);
        for (uint32_t j = 0; rc == 0 && hmap_next(&vh->queues, &j, &w);)
            rc = add_owner(&r, &cap, ((struct queue *)w)->store_id, ((struct queue *)w)->dedup);
    }
    if (rc == 0) {
        if (r.nowners)
            qsort(r.owners, r.nowners, sizeof *r.owners, by_id);
        rc = storage_scan_dedup(b->store, on_entry, &r);
    }
    if (rc == 0) {
        if (r.n) /* each cache gets its entries in their order */
            qsort(r.e, r.n, sizeof *r.e, by_seq);
        for (size_t i = 0; i < r.n; i++) {
            struct dcache_key ev;
            if (dcache_add(&r.e[i].d->cache, &r.e[i].key, r.e[i].expires, r.e[i].seq, &ev) == 1 &&
                storage_reserve(b->store, 1, sizeof ev) == 0)
                storage_del_dedup(b->store, r.e[i].owner, &ev, sizeof ev);
        }
    }
    free(r.owners);
    free(r.e);
    return rc;
}
