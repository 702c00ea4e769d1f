/* binding.h — a binding from a source exchange to a destination queue or exchange, with its
 * routing key and arguments. Bindings are indexed by their source exchange's type (see
 * exchange.c) and listed on both ends so that deleting either end removes them. A binding
 * whose arguments hold x-filter-policy keeps that policy compiled (filter.h) for its life. */
#ifndef WARREN_BINDING_H
#define WARREN_BINDING_H
#include <stdbool.h>
#include <stdint.h>
#include "lib/list.h"
#include "protocol/wire.h"

struct err;
struct exchange;
struct filter;
struct findex_entry;
struct queue;

enum headers_match { HM_ALL, HM_ANY, HM_ALL_WITH_X, HM_ANY_WITH_X };

struct binding {
    struct exchange *src; /* borrowed: bindings are removed before their source is freed */
    struct queue *dq;     /* borrowed: destination queue, or NULL; same lifetime rule */
    struct exchange *dx;  /* borrowed: destination exchange, or NULL */
    struct filter *filter; /* owned: the compiled x-filter-policy, or NULL (matches all) */
    struct list src_link; /* in src->bindings */
    struct list dst_link; /* in dq->bindings_in or dx->bindings_in */
    struct list key_link; /* direct exchanges: in the routing key's bucket; fanout and headers:
                           * in the source's plain list unless the filter index holds it */
    struct findex_entry *fent; /* owned: its filter-index entries (findex.h), or NULL */
    uint32_t nfent;            /* their count: > 0 exactly while indexed */
    enum headers_match hm;
    uint64_t store_id; /* id of the stored record when both ends are durable, else 0 */
    uint8_t key_len;
    uint32_t args_len;
    /* The identity (the key of src->by_id): destination pointer, destination kind, key length,
     * key, args. */
    uint8_t data[];
};
#define BINDING_ID_HEAD (sizeof(void *) + 2)

static inline amqp_bytes_t binding_key(const struct binding *b)
{
    return (amqp_bytes_t){b->data + BINDING_ID_HEAD, b->key_len};
}
static inline amqp_bytes_t binding_args(const struct binding *b)
{
    return (amqp_bytes_t){b->data + BINDING_ID_HEAD + b->key_len, b->args_len};
}
static inline size_t binding_id_len(const struct binding *b)
{
    return BINDING_ID_HEAD + b->key_len + b->args_len;
}

/* Compiles the x-filter-policy in binding arguments args, scoped by x-filter-policy-scope
 * (MessageAttributes, the default, or MessageBody). 0 with *ret_filter set (NULL when args hold
 * no policy); -WERR_PRECONDITION_FAILED with err (may be NULL) naming the problem (a policy
 * that is not a longstr, a scope that is neither value, the compiler's text); -ENOMEM. */
int binding_filter_compile(amqp_bytes_t args, struct filter **ret_filter, struct err *err);

/* Binds src to exactly one of dq / dx (stored when both ends are durable). Binding the same
 * (source, destination, key, args) again is a no-op. *ret (may be NULL) gets the binding,
 * NULL when it existed. 0, -ENOMEM, or -WERR_PRECONDITION_FAILED when args hold an invalid
 * filter policy, with err (may be NULL) saying "invalid x-filter-policy for binding ...: why". */
int binding_add(struct exchange *src, struct queue *dq, struct exchange *dx, amqp_bytes_t key,
                amqp_bytes_t args, struct binding **ret, struct err *err);
/* Removes the matching binding; 0, or -ENOENT when there is none. The source exchange may
 * auto-delete as a result. */
int binding_remove(struct exchange *src, struct queue *dq, struct exchange *dx, amqp_bytes_t key,
                   amqp_bytes_t args);
/* Unlinks and frees b; the source may auto-delete. */
void binding_free(struct binding *b);

#endif
