/* exchange.h — exchanges and routing. An exchange maps a message to the set of queues it
 * goes to, following exchange-to-exchange bindings and alternate exchanges; every queue
 * appears at most once per publish, and loops end because each exchange is visited once. */
#ifndef WARREN_EXCHANGE_H
#define WARREN_EXCHANGE_H
#include <stdbool.h>
#include <stdint.h>
#include "lib/hmap.h"
#include "lib/list.h"
#include "protocol/wire.h"

struct vhost;
struct queue;
struct msg;
struct binding;
struct topic_trie;
struct findex;
struct dedup;

/* EX_DEDUP: x-message-deduplication (dedup.h), routed as a fanout. EX_DELAYED
 * ("x-delayed-message") is only ever asked for: the exchange it makes routes as its
 * x-delayed-type says (type holds that) and has `delayed` set (delay.h). Stored by number. */
enum exchange_type { EX_DIRECT, EX_FANOUT, EX_TOPIC, EX_HEADERS, EX_DEDUP, EX_DELAYED,
                     EX_TYPE_MAX };

struct exchange {
    struct vhost *vhost; /* borrowed: owns us */
    char *name;          /* owned */
    uint8_t name_len;
    enum exchange_type type;
    bool durable, auto_delete, internal, deleted;
    bool delayed;        /* x-delayed-message: messages with x-delay wait first (delay.h) */
    uint64_t store_id;   /* id of the stored record (durable, declared by a client), else 0 */
    uint8_t *args;       /* owned copy of the declare arguments */
    uint32_t args_len;
    amqp_bytes_t alternate; /* borrowed from args: the alternate-exchange name, if any */
    struct list bindings;    /* of binding.src_link: where we are the source */
    struct list bindings_in; /* of binding.dst_link: where we are the destination */
    uint32_t nbindings;
    struct hmap by_id;          /* binding identity -> binding (see binding.h) */
    struct hmap direct;         /* direct: routing key -> struct dbucket (owned) */
    struct topic_trie *topic;   /* owned: topic exchanges */
    struct list plain;          /* fanout, headers: of binding.key_link, those not in findex */
    struct findex *findex;      /* owned: fanout, headers: bindings indexed by their filter
                                 * policy's exact strings (findex.h), NULL until one is */
    uint64_t visit;             /* route pass that last visited us */
    uint8_t *eff_args;          /* owned: args with the policies applied, NULL while none does */
    uint32_t eff_args_len;
    char policy[256];           /* the policy that applies ("" for none) */
    struct dedup *dedup;        /* owned: EX_DEDUP's cache (dedup.h), else NULL */
};

/* The routing result. Queues are borrowed: valid until the next loop turn. */
struct route {
    struct queue **q; /* owned array */
    uint32_t n, cap;
    struct exchange **stack; /* owned: exchanges still to walk */
    uint32_t ns, stack_cap;
    amqp_bytes_t *keys;      /* owned array: routing key + CC + BCC (borrowed bytes) */
    uint32_t nkeys, keys_cap;
    int oom;
    uint32_t deduplicated; /* duplicates a dedup exchange dropped (not routed, not returned) */
};
void route_free(struct route *r);

/* Looks up the type by its AMQP name ("direct", ...); -1 when unknown. */
int exchange_type_parse(amqp_bytes_t name);
/* Applies the policies of x's vhost to x again (alternate-exchange). */
void exchange_apply_policies(struct exchange *x);
const char *exchange_type_name(enum exchange_type t);
/* The type as clients see it: "x-delayed-message" for a delayed exchange, else its type's. */
const char *exchange_type_shown(const struct exchange *x);
/* The routing type x-delayed-type names in args (EX_DELAYED excluded), or -1. */
int exchange_delayed_type(amqp_bytes_t args);
/* Creates an exchange (not yet in any vhost map). args is copied. NULL on OOM. EX_DELAYED
 * makes a delayed exchange routing as its x-delayed-type (validated before). */
struct exchange *exchange_new(struct vhost *vh, amqp_bytes_t name, enum exchange_type type,
                              bool durable, bool auto_delete, bool internal, amqp_bytes_t args);
/* Frees an exchange that has no bindings left. Accepts NULL. */
void exchange_free(struct exchange *x);
/* Deletes x: removes every binding from and to it, takes it out of the vhost and frees it. */
void exchange_delete(struct exchange *x);
/* Routes m published to x by its routing key plus its CC and BCC keys (sender-selected
 * distribution). Fills r->q. 0 or -ENOMEM. */
int exchange_route(struct exchange *x, const struct msg *m, struct route *r);

/* For binding.c: add b to / remove b from x's routing index. */
int exchange__index(struct exchange *x, struct binding *b);
void exchange__unindex(struct exchange *x, struct binding *b);
/* For binding.c: x lost a binding; deletes x if it is auto-delete and has none left. */
void exchange__binding_gone(struct exchange *x);

#endif
