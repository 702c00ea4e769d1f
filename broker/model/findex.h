/* findex.h — an exchange's index of the bindings whose filter policy names exact strings for
 * one key (filter_exact_key), so that a fanout or headers exchange with many policies, such as
 * one subscription per tenant, checks per message only the bindings whose strings the message
 * carries, not every policy. Owns the buckets and each indexed binding's entries; the bindings
 * stay their exchange's. Invariant: a binding is indexed (b->nfent > 0) exactly when it has one
 * entry in the bucket of each of its strings, and every bucket in the map is non-empty. */
#ifndef WARREN_FINDEX_H
#define WARREN_FINDEX_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lib/list.h"
#include "protocol/wire.h"

struct binding;
struct findex;

/* One string of an indexed binding: its place in that string's bucket. */
struct findex_entry {
    struct list link;   /* in the bucket's list */
    struct binding *b;  /* borrowed: the binding that owns this entry */
};

#define FINDEX_MAX_VALUE 1024 /* longer strings are not indexed (the policy is checked in full) */

/* Indexes b (b->filter is not NULL), creating *fi on first use. 1 when indexed, 0 when the
 * policy has no exact key to index by (the caller checks b on every message), -ENOMEM. */
int findex_add(struct findex **fi, struct binding *b);
/* Takes an indexed b out of fi. */
void findex_remove(struct findex *fi, struct binding *b);
/* Frees fi, which holds no binding. Accepts NULL. */
void findex_free(struct findex *fi);

/* The message's view for candidates: its headers table and, for body-scope policies, a lazily
 * parsed JSON body (json_t *, NULL when the body is not JSON) that the caller owns. */
struct findex_msg {
    amqp_bytes_t headers;
    const void *(*body)(void *arg); /* returns the parsed body (json_t *) or NULL */
    void *arg;
};

/* Calls fn for every indexed binding one of whose strings the message carries under the
 * binding's key (a string or byte-array value, or such an element of an array). A binding may
 * be passed more than once (a message that carries two of its strings): fn must not mind. */
void findex_candidates(const struct findex *fi, const struct findex_msg *m,
                       void (*fn)(struct binding *b, void *arg), void *arg);

#endif
