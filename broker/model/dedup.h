/* dedup.h — message deduplication, the interface of the rabbitmq-message-deduplication plugin:
 * the exchange type x-message-deduplication (a fanout that routes a message only when its
 * x-deduplication-header id was not seen within the window) and the queue argument
 * x-message-deduplication (a message is not enqueued while another with its id is in the
 * queue). Warren adds x-content-based-deduplication: without the header, the SHA-256 of the
 * body is the id (SQS FIFO's content-based deduplication). Duplicates are dropped silently
 * (confirmed, never nacked) and counted. */
#ifndef WARREN_DEDUP_H
#define WARREN_DEDUP_H
#include <stdbool.h>
#include <stdint.h>
#include "lib/dcache.h"
#include "protocol/wire.h"

struct err;
struct broker;
struct exchange;
struct queue;
struct msg;

#define DEDUP_CONTENT_TTL_MS 300000 /* content-based without x-cache-ttl: SQS's 5 minutes */

struct dedup {
    struct dcache cache;   /* owned arrays */
    int64_t ttl;           /* the default window in ms (x-cache-ttl); 0: none */
    bool content_based;    /* x-content-based-deduplication */
    bool disk;             /* x-cache-persistence disk: entries mirrored in storage */
    bool queue;            /* queue-level: the ids of the messages in the queue */
    uint64_t deduplicated; /* duplicates dropped (messages_deduplicated in the HTTP API) */
};

/* Declare-time checks, with the plugin's texts (406): x-cache-size (required for the exchange
 * type, an integer > 0), x-cache-ttl (an integer > 0), x-cache-persistence ('disk' or
 * 'memory'), x-message-deduplication and x-content-based-deduplication (booleans). */
int dedup_check_exchange_args(struct err *err, amqp_bytes_t args);
int dedup_check_queue_args(struct err *err, amqp_bytes_t args);

/* The state for a new exchange of type x-message-deduplication, or a queue whose arguments
 * ask for deduplication (else *ret = NULL). Reads validated args. x-cache-persistence defaults
 * to disk, which applies to durable owners only (the others have no storage). 0 or -ENOMEM. */
int dedup_new(amqp_bytes_t args, bool queue, struct dedup **ret);
/* Frees d (its storage entries go with the entity's record). Accepts NULL. */
void dedup_free(struct dedup *d);

/* Exchange x (which has x->dedup): true when m is to be routed (it has no id, or its id is
 * new or expired: then it is remembered); false for a duplicate (counted). */
bool dedup_exchange_admit(struct exchange *x, const struct msg *m);
/* Queue q (q->dedup set): true when m may be enqueued (its id is remembered until it leaves
 * the queue); false for a duplicate (counted). */
bool dedup_queue_admit(struct queue *q, const struct msg *m);
/* m left q for good (acked, dropped, expired, dead-lettered): its id is forgotten. */
void dedup_queue_left(struct queue *q, const struct msg *m);
/* q was purged: every id is forgotten. */
void dedup_queue_purged(struct queue *q);

/* After recovery: loads the stored entries into the caches of durable exchanges and queues
 * (dropping expired ones). 0 or an error (logged by the caller). */
int dedup_recover(struct broker *b);

#endif
