/* crypt.c — owns the encryption keys of an open storage (one set for the writer thread, one for
 * the loop thread's page-in reads), the sealing and opening of message envelopes (crypt.h), the
 * open-time key check and the re-encryption steps of a key rotation. Does not own the records
 * (batch.c writes them, recover.c reads them) nor where keys come from (the broker).
 * Invariants: a key set is used by its own thread only (the writer's also by open and close,
 * while no writer runs); the writer's rotation state changes only with a committed transaction
 * (crypt__txn_abort puts it back); key bytes are wiped when a slot is dropped and at close. */
#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include "lib/byteorder.h"
#include "storage/crypt.h"
#include "storage/env.h"
#include "storage/schema.h"

#define SLOTS 3                  /* the key in use, a rotation's old one, one being loaded */
#define STEP_BYTES (4u << 20)    /* a re-encryption step stops after about this much */
#define SHRINK_ABOVE (1u << 20)  /* opening buffers larger than this are given back */
#define CHUNK (1 << 30)          /* EVP takes int lengths */
#define AAD_TAIL_MAX 9           /* 'm' and a message id; 'k' for a sealed old key */

static const MDB_val KEY_ID = {7, "enc_key"}, KEY_OLD = {7, "enc_old"};

struct slot {
    bool used;
    uint8_t id[CRYPT_ID_SIZE];
    uint8_t key[CRYPT_KEY_SIZE];
    EVP_CIPHER_CTX *ctx; /* owned: AES-256-GCM with this key's schedule */
};

/* One thread's keys: cur seals new records, old (during a rotation) still opens old ones. */
struct ring {
    struct slot slot[SLOTS];
    int cur, old; /* slot indices; old is -1 when there is none */
    uint8_t *buf; /* owned: opened plaintext */
    size_t cap;
};

/* The writer's rotation progress. */
struct rot {
    bool active;    /* records not under the current key may remain */
    bool finishing; /* the last step found no more records: done once committed */
    uint64_t next;  /* the message id to examine next */
    uint64_t examined, reencrypted, damaged;
};

struct st_crypt {
    struct ring w;                   /* writer thread */
    struct ring r;                   /* loop thread */
    uint8_t nonce[CRYPT_NONCE_SIZE]; /* writer: drawn at open */
    uint64_t sealed;                 /* writer: records sealed, the nonce counter (never undone) */
    struct rot rot, saved;           /* writer: progress, and as it was when the txn began */
    int saved_cur, saved_old;
    bool rotating;                   /* loop: a rotation runs (until storage_rotation_done) */
    uint64_t total;                  /* loop: message records when it started */
    /* Published by the writer after each commit while a rotation runs; read by the loop. */
    atomic_uint_fast64_t examined, reencrypted, damaged;
    atomic_bool done;
};

void crypt__wipe(void *p, size_t n)
{
    OPENSSL_cleanse(p, n);
}

/* SHA-256("warren at-rest key id v1" || key), first 8 bytes. false when OpenSSL fails. */
static bool key_id(const uint8_t key[CRYPT_KEY_SIZE], uint8_t id[CRYPT_ID_SIZE])
{
    static const char label[] = "warren at-rest key id v1";
    uint8_t in[sizeof label - 1 + CRYPT_KEY_SIZE], md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    memcpy(in, label, sizeof label - 1);
    memcpy(in + sizeof label - 1, key, CRYPT_KEY_SIZE);
    bool ok = EVP_Digest(in, sizeof in, md, &mdlen, EVP_sha256(), NULL) == 1;
    crypt__wipe(in, sizeof in);
    if (ok)
        memcpy(id, md, CRYPT_ID_SIZE);
    return ok;
}

static void id_hex(const uint8_t id[CRYPT_ID_SIZE], char hex[CRYPT_ID_HEX])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < CRYPT_ID_SIZE; i++) {
        hex[2 * i] = digits[id[i] >> 4];
        hex[2 * i + 1] = digits[id[i] & 15];
    }
    hex[2 * CRYPT_ID_SIZE] = 0;
}

void storage_key_id(const uint8_t key[CRYPT_KEY_SIZE], char hex[CRYPT_ID_HEX])
{
    uint8_t id[CRYPT_ID_SIZE];
    if (key_id(key, id))
        id_hex(id, hex);
    else
        snprintf(hex, CRYPT_ID_HEX, "?");
}

/* ---- keys ------------------------------------------------------------------------------------ */

static void slot_drop(struct slot *s)
{
    EVP_CIPHER_CTX_free(s->ctx);
    crypt__wipe(s, sizeof *s); /* used false, ctx NULL */
}

static int slot_load(struct slot *s, const uint8_t key[CRYPT_KEY_SIZE],
                     const uint8_t id[CRYPT_ID_SIZE])
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return -ENOMEM;
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, NULL, 1) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return STORAGE_E_CRYPTO;
    }
    slot_drop(s);
    s->ctx = ctx;
    memcpy(s->key, key, CRYPT_KEY_SIZE);
    memcpy(s->id, id, CRYPT_ID_SIZE);
    s->used = true;
    return 0;
}

static int ring_find(const struct ring *r, const uint8_t id[CRYPT_ID_SIZE])
{
    for (int i = 0; i < SLOTS; i++)
        if (r->slot[i].used && !memcmp(r->slot[i].id, id, CRYPT_ID_SIZE))
            return i;
    return -1;
}

/* The slot holding key (id), loaded into one that is neither cur nor old when absent. */
static int ring_take(struct ring *r, const uint8_t key[CRYPT_KEY_SIZE],
                     const uint8_t id[CRYPT_ID_SIZE], int *ret)
{
    int s = ring_find(r, id);
    if (s >= 0) {
        *ret = s;
        return 0;
    }
    for (s = 0; s == r->cur || s == r->old; s++)
        ;
    int rc = slot_load(&r->slot[s], key, id);
    if (rc == 0)
        *ret = s;
    return rc;
}

static void ring_free(struct ring *r)
{
    for (int i = 0; i < SLOTS; i++)
        slot_drop(&r->slot[i]);
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
}

/* Makes r->buf hold n bytes (at least one, so that it is never NULL). 0 or -ENOMEM. */
static int grow(struct ring *r, size_t n)
{
    if (r->cap >= n && r->buf)
        return 0;
    size_t cap = r->cap ? r->cap : 4096;
    while (cap < n) {
        if (cap > SIZE_MAX / 2)
            return -ENOMEM;
        cap *= 2;
    }
    uint8_t *p = realloc(r->buf, cap);
    if (!p)
        return -ENOMEM;
    r->buf = p;
    r->cap = cap;
    return 0;
}

/* ---- envelopes ------------------------------------------------------------------------------- */

/* Runs n bytes of in through ctx into out (both may be NULL for AAD). */
static bool update(EVP_CIPHER_CTX *ctx, uint8_t *out, const uint8_t *in, size_t n)
{
    while (n) {
        int len = n > CHUNK ? CHUNK : (int)n, got = 0;
        if (EVP_CipherUpdate(ctx, out, &got, in, len) != 1 || (out && got != len))
            return false;
        in += len;
        if (out)
            out += len;
        n -= (size_t)len;
    }
    return true;
}

/* Seals parts[0..nparts) into out with key k: head (magic, id, nonce), ciphertext, tag; the AAD
 * is the head then tail[0..tlen). Writer thread (the nonce counter is its own). */
static int seal(struct st_crypt *c, const struct slot *k, const uint8_t *tail, size_t tlen,
                const void *const *parts, const size_t *lens, int nparts, uint8_t *out)
{
    out[0] = CRYPT_MAGIC;
    memcpy(out + 1, k->id, CRYPT_ID_SIZE);
    uint8_t *nonce = out + 1 + CRYPT_ID_SIZE;
    memcpy(nonce, c->nonce, 4);
    store_be64(nonce + 4, load_be64(c->nonce + 4) + c->sealed++);
    EVP_CIPHER_CTX *ctx = k->ctx;
    uint8_t aad[CRYPT_HEAD_SIZE + AAD_TAIL_MAX]; /* one AAD update: each EVP call costs */
    assert(tlen <= AAD_TAIL_MAX);
    memcpy(aad, out, CRYPT_HEAD_SIZE);
    memcpy(aad + CRYPT_HEAD_SIZE, tail, tlen);
    int got;
    if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, 1) != 1 ||
        !update(ctx, NULL, aad, CRYPT_HEAD_SIZE + tlen))
        return STORAGE_E_CRYPTO;
    uint8_t *p = out + CRYPT_HEAD_SIZE;
    for (int i = 0; i < nparts; i++) {
        if (lens[i] && !update(ctx, p, parts[i], lens[i]))
            return STORAGE_E_CRYPTO;
        p += lens[i];
    }
    if (EVP_CipherFinal_ex(ctx, p, &got) != 1 || got != 0 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CRYPT_TAG_SIZE, p) != 1)
        return STORAGE_E_CRYPTO;
    return 0;
}

/* Opens the envelope v[0..len) (crypt__is_envelope) with one of r's keys into out (len -
 * CRYPT_OVERHEAD bytes); the AAD ends with tail. 0, or STORAGE_E_DECRYPT when no key of r has
 * its id or it fails authentication (out then holds nothing to use). */
static int open_env(struct ring *r, const uint8_t *tail, size_t tlen, const uint8_t *v, size_t len,
                    uint8_t *out)
{
    int s = ring_find(r, v + 1);
    if (s < 0)
        return STORAGE_E_DECRYPT;
    EVP_CIPHER_CTX *ctx = r->slot[s].ctx;
    uint8_t tag[CRYPT_TAG_SIZE], aad[CRYPT_HEAD_SIZE + AAD_TAIL_MAX];
    memcpy(tag, v + len - CRYPT_TAG_SIZE, CRYPT_TAG_SIZE);
    memcpy(aad, v, CRYPT_HEAD_SIZE);
    memcpy(aad + CRYPT_HEAD_SIZE, tail, tlen);
    int got;
    if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, v + 1 + CRYPT_ID_SIZE, 0) != 1 ||
        !update(ctx, NULL, aad, CRYPT_HEAD_SIZE + tlen) ||
        !update(ctx, out, v + CRYPT_HEAD_SIZE, len - CRYPT_OVERHEAD) ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CRYPT_TAG_SIZE, tag) != 1)
        return STORAGE_E_CRYPTO;
    return EVP_CipherFinal_ex(ctx, out + len - CRYPT_OVERHEAD, &got) == 1 ? 0 : STORAGE_E_DECRYPT;
}

/* The AAD tail of message record id: 'm' and the id. */
static void msg_tail(uint8_t tail[9], uint64_t id)
{
    tail[0] = 'm';
    store_be64(tail + 1, id);
}

/* ---- open ------------------------------------------------------------------------------------ */

static int get_meta(MDB_txn *txn, MDB_dbi meta, const MDB_val *key, void *out, size_t size,
                    bool *ret_found)
{
    MDB_val k = *key, v;
    int rc = mdb_get(txn, meta, &k, &v);
    *ret_found = rc == 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    if (v.mv_size != size)
        return STORAGE_E_CORRUPT;
    memcpy(out, v.mv_data, size);
    return 0;
}

/* The sealed old key of "enc_old": its id, then an envelope of the 32 key bytes. */
enum { OLD_SIZE = CRYPT_ID_SIZE + CRYPT_OVERHEAD + CRYPT_KEY_SIZE };

static int crypt_new(const uint8_t *key, const uint8_t id[CRYPT_ID_SIZE], struct st_crypt **ret)
{
    struct st_crypt *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->w.old = c->r.old = -1;
    int rc = slot_load(&c->w.slot[0], key, id);
    if (rc == 0)
        rc = slot_load(&c->r.slot[0], key, id);
    if (rc == 0 && RAND_bytes(c->nonce, sizeof c->nonce) != 1)
        rc = STORAGE_E_CRYPTO;
    if (rc) {
        ring_free(&c->w);
        ring_free(&c->r);
        free(c);
        return rc;
    }
    *ret = c;
    return 0;
}

/* Unwraps the old key of an unfinished rotation into both rings' slot 1 (old). */
static int resume(struct st_crypt *c, const uint8_t old[OLD_SIZE], uint64_t messages)
{
    uint8_t key[CRYPT_KEY_SIZE], id[CRYPT_ID_SIZE];
    const uint8_t *env = old + CRYPT_ID_SIZE;
    if (!crypt__is_envelope(env, OLD_SIZE - CRYPT_ID_SIZE))
        return STORAGE_E_CORRUPT;
    int rc = open_env(&c->w, (const uint8_t *)"k", 1, env, OLD_SIZE - CRYPT_ID_SIZE, key);
    if (rc == 0 && (!key_id(key, id) || memcmp(id, old, CRYPT_ID_SIZE) != 0))
        rc = STORAGE_E_CORRUPT;
    if (rc == 0 && (rc = slot_load(&c->w.slot[1], key, id)) == 0)
        rc = slot_load(&c->r.slot[1], key, id);
    crypt__wipe(key, sizeof key);
    if (rc)
        return rc == STORAGE_E_DECRYPT ? STORAGE_E_CORRUPT : rc;
    c->w.old = c->r.old = 1;
    c->rot.active = c->rotating = true;
    c->total = messages;
    return 0;
}

int crypt__check(struct storage *st, const uint8_t *key, struct storage_opts *o,
                 struct crypt_plan *plan)
{
    memset(plan, 0, sizeof *plan);
    uint8_t kid[CRYPT_ID_SIZE], sid[CRYPT_ID_SIZE], old[OLD_SIZE];
    bool have_id = false, have_old = false;
    if (key && !key_id(key, kid))
        return STORAGE_E_CRYPTO;
    MDB_txn *txn;
    MDB_dbi meta, msgs;
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return rc;
    if ((rc = mdb_dbi_open(txn, "meta", 0, &meta)) == 0 &&
        (rc = get_meta(txn, meta, &KEY_ID, sid, sizeof sid, &have_id)) == 0)
        rc = get_meta(txn, meta, &KEY_OLD, old, sizeof old, &have_old);
    if (rc == MDB_NOTFOUND) /* a new environment */
        rc = 0;
    if (rc == 0 && (rc = mdb_dbi_open(txn, "messages", 0, &msgs)) == 0) {
        MDB_stat ms;
        if ((rc = mdb_stat(txn, msgs, &ms)) == 0)
            o->messages = ms.ms_entries;
    } else if (rc == MDB_NOTFOUND) {
        rc = 0;
    }
    mdb_txn_abort(txn);
    if (rc)
        return rc;
    if (have_id)
        id_hex(sid, o->stored_key_id);
    if (have_old)
        id_hex(old, o->rotating_from);
    if (!key) {
        if (have_id && o->messages)
            return STORAGE_E_NOKEY;
        plan->del_id = have_id; /* no message needs a key any more */
        plan->del_old = have_old;
        return 0;
    }
    if (have_id && memcmp(sid, kid, sizeof kid) != 0) {
        if (o->messages)
            return have_old && !memcmp(old, kid, sizeof kid) ? STORAGE_E_ROTATING
                                                             : STORAGE_E_WRONGKEY;
        plan->del_old = have_old; /* nothing is stored under either key: start afresh */
        have_id = have_old = false;
    }
    if (!have_id) {
        plan->put_id = true;
        memcpy(plan->id, kid, sizeof kid);
    }
    struct st_crypt *c;
    if ((rc = crypt_new(key, kid, &c)) != 0)
        return rc;
    if (have_old && (rc = resume(c, old, o->messages)) != 0) {
        ring_free(&c->w);
        ring_free(&c->r);
        free(c);
        return rc;
    }
    st->crypt = c;
    return 0;
}

int crypt__apply_plan(struct storage *st, MDB_txn *txn, const struct crypt_plan *plan)
{
    MDB_val k, v;
    int rc = 0;
    if (plan->del_id) {
        k = KEY_ID;
        rc = mdb_del(txn, st->meta, &k, NULL);
    }
    if ((rc == 0 || rc == MDB_NOTFOUND) && plan->del_old) {
        k = KEY_OLD;
        rc = mdb_del(txn, st->meta, &k, NULL);
    }
    if ((rc == 0 || rc == MDB_NOTFOUND) && plan->put_id) {
        k = KEY_ID;
        v = (MDB_val){CRYPT_ID_SIZE, (void *)plan->id};
        rc = mdb_put(txn, st->meta, &k, &v, 0);
    }
    return rc == MDB_NOTFOUND ? 0 : rc;
}

void crypt__free(struct storage *st)
{
    struct st_crypt *c = st->crypt;
    if (!c)
        return;
    ring_free(&c->w);
    ring_free(&c->r);
    crypt__wipe(c->nonce, sizeof c->nonce);
    free(c);
    st->crypt = NULL;
}

/* ---- writer thread --------------------------------------------------------------------------- */

bool crypt__sealing(const struct storage *st)
{
    return st->crypt != NULL;
}

int crypt__seal_msg(struct storage *st, uint64_t msg_id, const void *head, size_t hlen,
                    const void *body, size_t blen, uint8_t *out)
{
    struct st_crypt *c = st->crypt;
    uint8_t tail[9];
    msg_tail(tail, msg_id);
    const void *parts[2] = {head, body};
    size_t lens[2] = {hlen, blen};
    return seal(c, &c->w.slot[c->w.cur], tail, sizeof tail, parts, lens, 2, out);
}

int crypt__apply_rotate(struct storage *st, MDB_txn *txn, const uint8_t key[CRYPT_KEY_SIZE])
{
    struct st_crypt *c = st->crypt;
    uint8_t id[CRYPT_ID_SIZE];
    int s, rc;
    if (!c)
        return EINVAL; /* storage_rotate_key refuses first */
    if (!key_id(key, id))
        return STORAGE_E_CRYPTO;
    if ((rc = ring_take(&c->w, key, id, &s)) != 0)
        return rc;
    c->rot = (struct rot){.active = true};
    if (s == c->w.cur) /* the same key: only records not under it are sealed again */
        return 0;
    const struct slot *prev = &c->w.slot[c->w.cur];
    uint8_t v[OLD_SIZE];
    memcpy(v, prev->id, CRYPT_ID_SIZE);
    const void *parts[1] = {prev->key};
    size_t lens[1] = {CRYPT_KEY_SIZE};
    if ((rc = seal(c, &c->w.slot[s], (const uint8_t *)"k", 1, parts, lens, 1,
                   v + CRYPT_ID_SIZE)) != 0)
        return rc;
    MDB_val k = KEY_OLD, val = {sizeof v, v};
    if ((rc = mdb_put(txn, st->meta, &k, &val, 0)) != 0)
        return rc;
    k = KEY_ID;
    val = (MDB_val){CRYPT_ID_SIZE, c->w.slot[s].id};
    if ((rc = mdb_put(txn, st->meta, &k, &val, 0)) != 0)
        return rc;
    c->w.old = c->w.cur;
    c->w.cur = s;
    return 0;
}

/* The last step found no more records: the old key is no longer needed. */
static int finish(struct storage *st, MDB_txn *txn)
{
    struct st_crypt *c = st->crypt;
    c->rot.finishing = true;
    if (c->w.old < 0)
        return 0;
    MDB_val k = KEY_OLD;
    int rc = mdb_del(txn, st->meta, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int crypt__apply_step(struct storage *st, MDB_txn *txn, size_t max)
{
    struct st_crypt *c = st->crypt;
    if (!c || !c->rot.active || c->rot.finishing)
        return 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->messages, &cur);
    if (rc)
        return rc;
    const struct slot *to = &c->w.slot[c->w.cur];
    size_t n = 0, bytes = 0;
    while (n < max && bytes < STEP_BYTES) {
        uint8_t k[8], tail[9];
        store_be64(k, c->rot.next);
        MDB_val key = {sizeof k, k}, val;
        if ((rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE)) == MDB_NOTFOUND) {
            rc = finish(st, txn);
            break;
        }
        if (rc)
            break;
        if (key.mv_size != 8) {
            rc = STORAGE_E_CORRUPT;
            break;
        }
        uint64_t id = load_be64(key.mv_data);
        const uint8_t *v = val.mv_data;
        size_t len = val.mv_size, plen;
        c->rot.next = id + 1;
        c->rot.examined++;
        n++;
        bool env = crypt__is_envelope(v, len);
        if (env && !memcmp(v + 1, to->id, CRYPT_ID_SIZE))
            continue; /* under the current key already */
        plen = env ? len - CRYPT_OVERHEAD : len;
        if ((rc = grow(&c->w, plen)) != 0)
            break;
        msg_tail(tail, id);
        if (env) {
            rc = open_env(&c->w, tail, sizeof tail, v, len, c->w.buf);
            if (rc == STORAGE_E_DECRYPT) { /* left as it is: page-in will report it */
                c->rot.damaged++;
                rc = 0;
                continue;
            }
            if (rc)
                break;
        } else { /* written before encryption was configured; copied out of the map first */
            memcpy(c->w.buf, v, len);
        }
        store_be64(k, id);
        key = (MDB_val){sizeof k, k};
        MDB_val nv = {plen + CRYPT_OVERHEAD, NULL};
        if ((rc = mdb_put(txn, st->messages, &key, &nv, MDB_RESERVE)) != 0)
            break;
        const void *parts[1] = {c->w.buf};
        if ((rc = seal(c, to, tail, sizeof tail, parts, &plen, 1, nv.mv_data)) != 0)
            break;
        c->rot.reencrypted++;
        bytes += plen;
    }
    mdb_cursor_close(cur);
    return rc;
}

void crypt__txn_begin(struct storage *st)
{
    struct st_crypt *c = st->crypt;
    if (!c)
        return;
    c->saved = c->rot;
    c->saved_cur = c->w.cur;
    c->saved_old = c->w.old;
}

void crypt__txn_abort(struct storage *st)
{
    struct st_crypt *c = st->crypt;
    if (!c)
        return;
    c->rot = c->saved;
    c->w.cur = c->saved_cur;
    c->w.old = c->saved_old;
}

void crypt__txn_commit(struct storage *st)
{
    struct st_crypt *c = st->crypt;
    if (!c)
        return;
    if (c->rot.active) {
        atomic_store(&c->examined, c->rot.examined);
        atomic_store(&c->reencrypted, c->rot.reencrypted);
        atomic_store(&c->damaged, c->rot.damaged);
    }
    if (c->rot.finishing) {
        if (c->w.old >= 0)
            slot_drop(&c->w.slot[c->w.old]);
        c->w.old = -1;
        c->rot.active = c->rot.finishing = false;
        atomic_store(&c->done, true);
    }
    if (c->w.cap > SHRINK_ABOVE) {
        free(c->w.buf);
        c->w.buf = NULL;
        c->w.cap = 0;
    }
}

/* ---- loop thread ----------------------------------------------------------------------------- */

int crypt__open_msg(struct storage *st, uint64_t msg_id, const void *val, size_t len,
                    const void **ret, size_t *ret_len)
{
    struct st_crypt *c = st->crypt;
    if (!crypt__is_envelope(val, len)) {
        *ret = val;
        *ret_len = len;
        return 0;
    }
    if (!c)
        return STORAGE_E_DECRYPT;
    size_t plen = len - CRYPT_OVERHEAD;
    uint8_t tail[9];
    msg_tail(tail, msg_id);
    int rc = grow(&c->r, plen);
    if (rc == 0)
        rc = open_env(&c->r, tail, sizeof tail, val, len, c->r.buf);
    if (rc == 0) {
        *ret = c->r.buf;
        *ret_len = plen;
    }
    return rc;
}

void crypt__scan_done(struct storage *st)
{
    struct st_crypt *c = st->crypt;
    if (c && c->r.cap > SHRINK_ABOVE) {
        free(c->r.buf);
        c->r.buf = NULL;
        c->r.cap = 0;
    }
}

/* Message records now (a short read transaction, under the map lock as every loop reader). */
static uint64_t count_messages(struct storage *st)
{
    MDB_txn *txn;
    MDB_stat ms = {0};
    pthread_rwlock_rdlock(&st->map_lock);
    if (mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn) == 0) {
        if (mdb_stat(txn, st->messages, &ms) != 0)
            ms.ms_entries = 0;
        mdb_txn_abort(txn);
    }
    pthread_rwlock_unlock(&st->map_lock);
    return ms.ms_entries;
}

int crypt__loop_rotate(struct storage *st, const uint8_t key[CRYPT_KEY_SIZE])
{
    struct st_crypt *c = st->crypt;
    uint8_t id[CRYPT_ID_SIZE];
    int s, rc;
    if (!c)
        return -EINVAL;
    if (c->rotating)
        return -EBUSY;
    if (!key_id(key, id))
        return STORAGE_E_CRYPTO;
    if ((rc = ring_take(&c->r, key, id, &s)) != 0)
        return rc;
    if (s != c->r.cur) {
        c->r.old = c->r.cur;
        c->r.cur = s;
    }
    c->total = count_messages(st);
    atomic_store(&c->examined, 0);
    atomic_store(&c->reencrypted, 0);
    atomic_store(&c->damaged, 0);
    atomic_store(&c->done, false);
    c->rotating = true;
    return 0;
}

void storage_crypt_status(struct storage *st, struct storage_crypt_status *ret)
{
    struct st_crypt *c = st->crypt;
    memset(ret, 0, sizeof *ret);
    if (!c)
        return;
    ret->enabled = true;
    id_hex(c->r.slot[c->r.cur].id, ret->key_id);
    if (c->r.old >= 0)
        id_hex(c->r.slot[c->r.old].id, ret->old_key_id);
    ret->rotating = c->rotating;
    ret->total = c->total;
    ret->examined = atomic_load(&c->examined);
    ret->reencrypted = atomic_load(&c->reencrypted);
    ret->damaged = atomic_load(&c->damaged);
}

bool storage_rotation_done(struct storage *st)
{
    struct st_crypt *c = st->crypt;
    if (!c || !c->rotating)
        return true;
    if (!atomic_exchange(&c->done, false))
        return false;
    if (c->r.old >= 0)
        slot_drop(&c->r.slot[c->r.old]);
    c->r.old = -1;
    c->rotating = false;
    return true;
}
