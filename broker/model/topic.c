/* topic.c — owns the topic trie: its nodes, their child maps and value sets. Does not own the
 * values (borrowed) nor the keys it matches. One node per distinct pattern prefix; a node's
 * edge word is one of a literal word (in the parent's hash map), '*' or '#' (direct pointers).
 * Matching walks the trie carrying, per node, the set of key positions that can stand there,
 * so each node is visited at most once per call whatever the number of '#'.
 * Invariant: every node but the root holds a value or a child, and each stored pair sits in
 * the value set of exactly one node (the end of its pattern). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "lib/hmap.h"
#include "broker/model/topic.h"

#define TOPIC_WORDS_MAX (TOPIC_PATTERN_MAX + 1) /* "..." of 255 bytes has 256 words */
#define NONE UINT32_MAX /* no word, no slot */
/* Keys at least this long skip the position-set matcher (their scratch would not be worth
 * it, and 32-bit positions stay far from overflow): only CC/BCC header keys can be. */
#define FAST_KEY_MAX (1u << 24)
#define STACK_SCRATCH 8192 /* bytes: a key of < 64 words over any trie depth fits */

enum node_kind { NODE_ROOT, NODE_WORD, NODE_STAR, NODE_HASH };

/* A set of borrowed pointers: open addressing, linear probing, backward-shift deletion,
 * at most half full. VSET_EMPTY marks a free slot, so NULL is a storable value. */
struct vset {
    void **slots; /* owned; NULL while cap == 0 */
    uint32_t cap, count;
};
static const char vset_empty_;
#define VSET_EMPTY ((void *)&vset_empty_)

struct topic_node {
    struct topic_node *parent; /* borrowed: owns us; NULL for the root */
    struct topic_node *star;   /* owned: the child reached by '*', or NULL */
    struct topic_node *hash;   /* owned: the child reached by '#', or NULL */
    struct hmap words;         /* literal word -> child (owned); keys point at child->word */
    struct vset values;        /* the values of the pattern that ends here (borrowed) */
    uint32_t depth;            /* words from the root to here */
    uint32_t wlen;
    uint8_t kind;              /* enum node_kind */
    uint8_t word[];            /* NODE_WORD: the literal word, wlen bytes */
};

struct topic_trie {
    struct topic_node *root;               /* owned */
    size_t count;                          /* stored (pattern, value) pairs */
    uint32_t depth;                        /* most words in a stored pattern */
    uint32_t by_depth[TOPIC_WORDS_MAX + 1]; /* stored pairs by pattern word count */
};

/* ---- value sets ---------------------------------------------------------------------- */

static uint32_t vset_home(const void *v, uint32_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)v * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32) & (cap - 1);
}

static uint32_t vset_find(const struct vset *s, const void *v)
{
    if (!s->cap)
        return NONE;
    for (uint32_t i = vset_home(v, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (s->slots[i] == v)
            return i;
        if (s->slots[i] == VSET_EMPTY)
            return NONE;
    }
}

static int vset_resize(struct vset *s, uint32_t cap)
{
    void **slots = malloc(cap * sizeof *slots);
    if (!slots)
        return -ENOMEM;
    for (uint32_t i = 0; i < cap; i++)
        slots[i] = VSET_EMPTY;
    for (uint32_t k = 0; k < s->cap; k++) {
        if (s->slots[k] == VSET_EMPTY)
            continue;
        uint32_t i = vset_home(s->slots[k], cap);
        while (slots[i] != VSET_EMPTY)
            i = (i + 1) & (cap - 1);
        slots[i] = s->slots[k];
    }
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return 0;
}

/* 0, -EEXIST or -ENOMEM. */
static int vset_add(struct vset *s, void *v)
{
    if (vset_find(s, v) != NONE)
        return -EEXIST;
    if ((s->count + 1) * 2 > s->cap) {
        int rc = vset_resize(s, s->cap ? s->cap * 2 : 4);
        if (rc)
            return rc;
    }
    uint32_t i = vset_home(v, s->cap);
    while (s->slots[i] != VSET_EMPTY)
        i = (i + 1) & (s->cap - 1);
    s->slots[i] = v;
    s->count++;
    return 0;
}

/* 0 or -ENOENT. Frees the slots when the set becomes empty; shrinks it when it is sparse. */
static int vset_del(struct vset *s, const void *v)
{
    uint32_t i = vset_find(s, v);
    if (i == NONE)
        return -ENOENT;
    uint32_t mask = s->cap - 1;
    for (uint32_t j = (i + 1) & mask; s->slots[j] != VSET_EMPTY; j = (j + 1) & mask) {
        /* Move slots[j] back into the hole at i unless its home lies cyclically in (i, j]. */
        uint32_t home = vset_home(s->slots[j], s->cap);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            s->slots[i] = s->slots[j];
            i = j;
        }
    }
    s->slots[i] = VSET_EMPTY;
    if (--s->count == 0) {
        free(s->slots);
        *s = (struct vset){0};
    } else if (s->cap > 16 && s->count * 8 < s->cap) {
        (void)vset_resize(s, s->cap / 4); /* still at most half full; on ENOMEM stay big */
    }
    return 0;
}

/* ---- nodes --------------------------------------------------------------------------- */

static struct topic_node *node_new(struct topic_node *parent, enum node_kind kind,
                                   const uint8_t *word, uint32_t wlen)
{
    struct topic_node *nd = calloc(1, sizeof *nd + wlen);
    if (!nd)
        return NULL;
    nd->parent = parent;
    nd->kind = (uint8_t)kind;
    nd->depth = parent ? parent->depth + 1 : 0;
    nd->wlen = wlen;
    if (wlen)
        memcpy(nd->word, word, wlen);
    return nd;
}

static void node_free(struct topic_node *nd)
{
    if (!nd)
        return;
    void *v;
    for (uint32_t it = 0; hmap_next(&nd->words, &it, &v);)
        node_free(v);
    node_free(nd->star);
    node_free(nd->hash);
    hmap_free(&nd->words);
    free(nd->values.slots);
    free(nd);
}

static bool node_empty(const struct topic_node *nd)
{
    return !nd->values.count && !nd->words.count && !nd->star && !nd->hash;
}

/* Frees nd and its ancestors while they are empty (never the root). */
static void prune(struct topic_node *nd)
{
    while (nd->parent && node_empty(nd)) {
        struct topic_node *p = nd->parent;
        if (nd->kind == NODE_STAR)
            p->star = NULL;
        else if (nd->kind == NODE_HASH)
            p->hash = NULL;
        else
            hmap_del(&p->words, nd->word, nd->wlen);
        node_free(nd);
        nd = p;
    }
}

/* The word of s that starts at *pos (updated past it and its dot). s has words left. */
static amqp_bytes_t next_word(amqp_bytes_t s, uint32_t *pos)
{
    const uint8_t *p = s.ptr + *pos;
    const uint8_t *dot = memchr(p, '.', s.len - *pos);
    uint32_t len = dot ? (uint32_t)(dot - p) : s.len - *pos;
    *pos += len + 1;
    return (amqp_bytes_t){p, len};
}

static uint32_t count_words(amqp_bytes_t s)
{
    if (!s.len)
        return 0;
    uint32_t n = 1;
    for (const uint8_t *p = s.ptr, *end = s.ptr + s.len; (p = memchr(p, '.', (size_t)(end - p)));
         p++)
        n++;
    return n;
}

/* The child of nd along edge word w, or NULL. */
static struct topic_node *child_of(const struct topic_node *nd, amqp_bytes_t w)
{
    if (w.len == 1 && w.ptr[0] == '*')
        return nd->star;
    if (w.len == 1 && w.ptr[0] == '#')
        return nd->hash;
    return hmap_get(&nd->words, w.ptr, w.len);
}

/* The node where pattern ends, or NULL. */
static struct topic_node *find(const struct topic_trie *t, amqp_bytes_t pattern)
{
    struct topic_node *nd = t->root;
    uint32_t pos = 0, n = count_words(pattern);
    for (uint32_t i = 0; i < n && nd; i++)
        nd = child_of(nd, next_word(pattern, &pos));
    return nd;
}

/* ---- the trie ------------------------------------------------------------------------ */

struct topic_trie *topic_new(void)
{
    struct topic_trie *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->root = node_new(NULL, NODE_ROOT, NULL, 0);
    if (!t->root) {
        free(t);
        return NULL;
    }
    return t;
}

void topic_free(struct topic_trie *t)
{
    if (!t)
        return;
    node_free(t->root);
    free(t);
}

size_t topic_count(const struct topic_trie *t)
{
    return t->count;
}

int topic_add(struct topic_trie *t, amqp_bytes_t pattern, void *value)
{
    if (pattern.len > TOPIC_PATTERN_MAX)
        return -EINVAL;
    struct topic_node *nd = t->root;
    uint32_t pos = 0, n = count_words(pattern);
    int rc = 0;
    for (uint32_t i = 0; i < n; i++) {
        amqp_bytes_t w = next_word(pattern, &pos);
        struct topic_node *c = child_of(nd, w);
        if (c) {
            nd = c;
            continue;
        }
        enum node_kind kind = w.len == 1 && w.ptr[0] == '*'   ? NODE_STAR
                              : w.len == 1 && w.ptr[0] == '#' ? NODE_HASH
                                                              : NODE_WORD;
        c = node_new(nd, kind, w.ptr, kind == NODE_WORD ? w.len : 0);
        if (!c) {
            rc = -ENOMEM;
            goto fail;
        }
        if (kind == NODE_STAR) {
            nd->star = c;
        } else if (kind == NODE_HASH) {
            nd->hash = c;
        } else if ((rc = hmap_put(&nd->words, c->word, c->wlen, c)) < 0) {
            node_free(c);
            goto fail;
        }
        nd = c;
    }
    if ((rc = vset_add(&nd->values, value)) < 0)
        goto fail;
    t->count++;
    t->by_depth[n]++;
    if (n > t->depth)
        t->depth = n;
    return 0;
fail:
    prune(nd); /* drops the nodes this call created, leaves the rest */
    return rc;
}

int topic_remove(struct topic_trie *t, amqp_bytes_t pattern, void *value)
{
    if (pattern.len > TOPIC_PATTERN_MAX)
        return -ENOENT;
    struct topic_node *nd = find(t, pattern);
    if (!nd || vset_del(&nd->values, value) < 0)
        return -ENOENT;
    t->count--;
    t->by_depth[nd->depth]--;
    while (t->depth && !t->by_depth[t->depth])
        t->depth--;
    prune(nd);
    return 0;
}

/* ---- matching ------------------------------------------------------------------------ */

static void report(const struct topic_node *nd, topic_match_cb cb, void *arg)
{
    for (uint32_t i = 0; i < nd->values.cap; i++)
        if (nd->values.slots[i] != VSET_EMPTY)
            cb(nd->values.slots[i], arg);
}

/* The key split into words, and scratch for the position sets: a set holds one bit per
 * position 0..n (words consumed so far); bits above n are always clear. */
struct match {
    const uint8_t *key;    /* borrowed: the caller's routing key */
    const uint32_t *start; /* word i is key[start[i] .. start[i + 1] - 1); start[n] = len + 1 */
    const uint32_t *next;  /* next[i]: the next word equal to word i, or NONE */
    uint64_t *sets;        /* 2 * nw words per trie level: child positions, literal to-do */
    uint32_t n;            /* words in the key */
    uint32_t nw;           /* uint64_t words per set */
    uint64_t last_mask;    /* the valid bits of a set's last word */
    topic_match_cb cb;
    void *arg;
};

static bool set_get(const uint64_t *s, uint32_t i) { return s[i >> 6] >> (i & 63) & 1; }
static void set_add(uint64_t *s, uint32_t i) { s[i >> 6] |= (uint64_t)1 << (i & 63); }
static void set_del(uint64_t *s, uint32_t i) { s[i >> 6] &= ~((uint64_t)1 << (i & 63)); }

static uint32_t set_first(const uint64_t *s, uint32_t nw)
{
    for (uint32_t w = 0; w < nw; w++)
        if (s[w])
            return w * 64 + (uint32_t)__builtin_ctzll(s[w]);
    return NONE;
}

/* Visits nd, which the key's first i words lead to for every i in reach. */
static void visit(const struct match *m, const struct topic_node *nd, const uint64_t *reach)
{
    uint32_t nw = m->nw;
    uint64_t *child = m->sets + (size_t)nd->depth * 2 * nw, *todo = child + nw;
    if (set_get(reach, m->n) && nd->values.count)
        report(nd, m->cb, m->arg);
    if (nd->hash) {
        /* '#' can swallow any number of words: every position from the first onwards. */
        uint32_t lo = set_first(reach, nw);
        memset(child, 0, nw * sizeof *child);
        for (uint32_t w = lo >> 6; w < nw; w++)
            child[w] = ~(uint64_t)0;
        child[lo >> 6] &= ~(uint64_t)0 << (lo & 63);
        child[nw - 1] &= m->last_mask;
        visit(m, nd->hash, child);
    }
    if (nd->star) {
        uint64_t any = 0;
        for (uint32_t w = nw; w-- > 0;) {
            child[w] = reach[w] << 1 | (w ? reach[w - 1] >> 63 : 0);
            if (w == nw - 1)
                child[w] &= m->last_mask; /* position n + 1 does not exist */
            any |= child[w];
        }
        if (any)
            visit(m, nd->star, child);
    }
    if (!nd->words.count)
        return;
    memcpy(todo, reach, nw * sizeof *todo);
    set_del(todo, m->n);
    for (uint32_t i; (i = set_first(todo, nw)) != NONE;) {
        /* One lookup per distinct word: take every position holding the same word. */
        const struct topic_node *c = hmap_get(&nd->words, m->key + m->start[i],
                                              m->start[i + 1] - 1 - m->start[i]);
        if (c)
            memset(child, 0, nw * sizeof *child);
        for (uint32_t j = i; j != NONE; j = m->next[j]) {
            if (set_get(todo, j)) {
                set_del(todo, j);
                if (c)
                    set_add(child, j + 1);
            }
        }
        if (c)
            visit(m, c, child);
    }
}

static uint32_t word_hash(const uint8_t *p, uint32_t len)
{
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

void topic_match(const struct topic_trie *t, amqp_bytes_t key, topic_match_cb cb, void *arg)
{
    if (!t->count)
        return;
    if (key.len >= FAST_KEY_MAX) {
        topic__match_walk(t, key, cb, arg);
        return;
    }
    uint32_t n = count_words(key), nw = n / 64 + 1, levels = t->depth + 1, tab_cap = 2;
    while (tab_cap < 2 * n)
        tab_cap *= 2;
    /* Layout: root set, per-level sets, then start[n + 1], next[n], the word table. */
    size_t n64 = (size_t)nw * (1 + 2 * (size_t)levels);
    size_t size = n64 * 8 + ((size_t)n + 1 + n + tab_cap) * 4;
    uint64_t stack_buf[STACK_SCRATCH / 8];
    uint64_t *buf = stack_buf;
    if (size > sizeof stack_buf && !(buf = malloc(size))) {
        topic__match_walk(t, key, cb, arg);
        return;
    }
    uint32_t *start = (uint32_t *)(buf + n64), *next = start + n + 1, *tab = next + n;

    uint32_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        start[i] = pos;
        next_word(key, &pos);
    }
    start[n] = key.len + 1;
    /* next[]: walk backwards, the table maps each word to its latest (lowest) index + 1. */
    memset(tab, 0, tab_cap * sizeof *tab);
    for (uint32_t i = n; i-- > 0;) {
        const uint8_t *w = key.ptr + start[i];
        uint32_t wlen = start[i + 1] - 1 - start[i];
        uint32_t h = word_hash(w, wlen) & (tab_cap - 1);
        next[i] = NONE;
        for (; tab[h]; h = (h + 1) & (tab_cap - 1)) {
            uint32_t j = tab[h] - 1;
            if (start[j + 1] - 1 - start[j] == wlen && memcmp(key.ptr + start[j], w, wlen) == 0) {
                next[i] = j;
                break;
            }
        }
        tab[h] = i + 1;
    }

    uint32_t tail = (n + 1) & 63; /* valid bits in the last set word; 0 means all 64 */
    struct match m = {key.ptr, start, next, buf + nw, n, nw,
                      tail ? ((uint64_t)1 << tail) - 1 : ~(uint64_t)0, cb, arg};
    uint64_t *root = buf;
    memset(root, 0, nw * sizeof *root);
    set_add(root, 0);
    visit(&m, t->root, root);
    if (buf != stack_buf)
        free(buf);
}

/* ---- the allocation-free fallback -------------------------------------------------- */

/* Start of the word that ends at end (exclusive). */
static uint32_t word_start(const uint8_t *key, uint32_t end)
{
    while (end > 0 && key[end - 1] != '.')
        end--;
    return end;
}

/* Whether the pattern ending at leaf matches the key (n words): a wildcard match run
 * backwards (leaf to root, last key word to first) that retries only from the latest '#',
 * which is exact when one kind of wildcard spans any number of items. */
static bool pattern_matches(const struct topic_node *leaf, amqp_bytes_t key, uint64_t n)
{
    const struct topic_node *p = leaf, *star = NULL;
    uint32_t end = key.len, star_end = 0;
    uint64_t left = n, star_left = 0;
    while (left > 0) {
        uint32_t s = word_start(key.ptr, end);
        if (p->kind == NODE_STAR || (p->kind == NODE_WORD && p->wlen == end - s &&
                                     memcmp(p->word, key.ptr + s, p->wlen) == 0)) {
            p = p->parent;
            end = s ? s - 1 : 0;
            left--;
        } else if (p->kind == NODE_HASH) {
            star = p;
            p = p->parent;
            star_end = end;
            star_left = left;
        } else if (star) {
            /* The latest '#' swallows one more word; retry what lies before it. */
            uint32_t ss = word_start(key.ptr, star_end);
            star_end = ss ? ss - 1 : 0;
            star_left--;
            p = star->parent;
            end = star_end;
            left = star_left;
        } else {
            return false;
        }
    }
    while (p->kind == NODE_HASH)
        p = p->parent;
    return p->kind == NODE_ROOT;
}

static void walk(const struct topic_node *nd, amqp_bytes_t key, uint64_t n, topic_match_cb cb,
                 void *arg)
{
    if (nd->values.count && pattern_matches(nd, key, n))
        report(nd, cb, arg);
    void *v;
    for (uint32_t it = 0; hmap_next(&nd->words, &it, &v);)
        walk(v, key, n, cb, arg);
    if (nd->star)
        walk(nd->star, key, n, cb, arg);
    if (nd->hash)
        walk(nd->hash, key, n, cb, arg);
}

void topic__match_walk(const struct topic_trie *t, amqp_bytes_t key, topic_match_cb cb,
                       void *arg)
{
    uint64_t n = 0;
    if (key.len) {
        n = 1;
        for (uint32_t i = 0; i < key.len; i++)
            n += key.ptr[i] == '.';
    }
    walk(t->root, key, n, cb, arg);
}

/* ---- invariants ---------------------------------------------------------------------- */

struct check {
    size_t nodes, pairs;
    uint32_t deepest;
    uint32_t by_depth[TOPIC_WORDS_MAX + 1];
};

static int check_node(const struct topic_node *nd, struct check *c)
{
    c->nodes++;
    if (nd->parent && node_empty(nd))
        return -EUCLEAN;
    if (nd->depth > TOPIC_WORDS_MAX)
        return -EUCLEAN;
    if (nd->depth > c->deepest)
        c->deepest = nd->depth;
    uint32_t vals = 0;
    for (uint32_t i = 0; i < nd->values.cap; i++) {
        if (nd->values.slots[i] == VSET_EMPTY)
            continue;
        vals++;
        if (vset_find(&nd->values, nd->values.slots[i]) != i)
            return -EUCLEAN;
    }
    if (vals != nd->values.count || (nd->values.cap && vals * 2 > nd->values.cap))
        return -EUCLEAN;
    c->pairs += vals;
    c->by_depth[nd->depth] += vals;
    void *v;
    uint32_t kids = 0;
    for (uint32_t it = 0; hmap_next(&nd->words, &it, &v); kids++) {
        const struct topic_node *k = v;
        if (k->kind != NODE_WORD || k->parent != nd || k->depth != nd->depth + 1 ||
            hmap_get(&nd->words, k->word, k->wlen) != k ||
            (k->wlen == 1 && (k->word[0] == '*' || k->word[0] == '#')))
            return -EUCLEAN;
        int rc = check_node(k, c);
        if (rc)
            return rc;
    }
    if (kids != nd->words.count)
        return -EUCLEAN;
    const struct topic_node *special[2] = {nd->star, nd->hash};
    for (int i = 0; i < 2; i++) {
        const struct topic_node *k = special[i];
        if (!k)
            continue;
        if (k->kind != (i ? NODE_HASH : NODE_STAR) || k->parent != nd ||
            k->depth != nd->depth + 1)
            return -EUCLEAN;
        int rc = check_node(k, c);
        if (rc)
            return rc;
    }
    return 0;
}

int topic_check(const struct topic_trie *t, size_t *ret_nodes)
{
    struct check c = {0};
    if (t->root->parent || t->root->kind != NODE_ROOT || t->root->depth)
        return -EUCLEAN;
    int rc = check_node(t->root, &c);
    if (rc)
        return rc;
    if (c.pairs != t->count || c.deepest != t->depth ||
        memcmp(c.by_depth, t->by_depth, sizeof c.by_depth) != 0)
        return -EUCLEAN;
    if (ret_nodes)
        *ret_nodes = c.nodes;
    return 0;
}
