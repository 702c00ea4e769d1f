/* persist.h — the broker's side of durability: what of exchanges, queues, bindings and
 * persistent messages goes to storage, in which batch, and how it comes back at start-up.
 * Storage itself (storage/) knows nothing of broker objects; this file translates. */
#ifndef WARREN_PERSIST_H
#define WARREN_PERSIST_H
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct broker;
struct exchange;
struct queue;
struct binding;
struct msg;
struct st_entry;

/* Recreates the stored exchanges, queues and bindings (before the listener opens). 0 or an
 * error, already logged. */
int persist_recover(struct broker *s);

/* Entities: written when durable (bindings: when both ends are), removed when deleted. */
void persist_exchange(struct broker *s, struct exchange *x);
void persist_exchange_deleted(struct broker *s, struct exchange *x);
void persist_queue(struct broker *s, struct queue *q);
void persist_queue_deleted(struct broker *s, struct queue *q);
void persist_binding(struct broker *s, struct binding *b);
void persist_binding_deleted(struct broker *s, struct binding *b);

/* Writes m's bytes under a new id (m->store_id, unless id is given), referenced by `refs` index
 * entries that the caller adds in this batch. The batch holds a reference on m until it is
 * committed. Returns the id. */
uint64_t persist_msg(struct broker *s, struct msg *m, uint32_t refs, bool set_store_id);
/* Makes room in the storage batch for every write one publish to nqueues queues can add (the
 * message once; per queue an index entry, a transient copy past the window, a drop-head
 * deletion), so that none of them can fail. 0 or -ENOMEM (nothing changed). */
int persist_reserve(struct broker *s, uint32_t nqueues);
/* Rebuilds a message from stored bytes (one allocation, one copy) into *ret: 0, -EINVAL when
 * they do not decode, -ENOMEM when memory is short (*ret untouched on failure). */
int persist_msg_load(const void *data, size_t len, struct msg **ret);

#endif
