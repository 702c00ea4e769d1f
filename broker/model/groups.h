/* groups.h — x-message-groups: a queue's ready messages kept per group (the x-group-id header),
 * so that a group's messages go out in order and to one consumer at a time, while different
 * groups go to different consumers. queue.c calls this in place of its ring when the queue has
 * groups; nothing else does. */
#ifndef WARREN_GROUPS_H
#define WARREN_GROUPS_H
#include <stdbool.h>
#include <stdint.h>

struct consumer;
struct msg;
struct qentry;
struct groups;

/* NULL on OOM. */
struct groups *groups_new(void);
/* Frees the structure; its entries' message references must have been dropped already (the
 * queue pops every entry first). Accepts NULL, returns NULL. */
struct groups *groups_free(struct groups *gs);
/* Room for `extra` more entries than those ready now, and m's group interned (m NULL: room
 * only), so that a groups_insert of m that follows cannot fail. With ret_group it gets the
 * group's slot (for the groups_insert that follows at once); without, m's group is remembered
 * for the next call with ret_group for the same m (a publish reserves in every queue, then
 * pushes: one lookup, not two). 0 or -ENOMEM. */
int groups_reserve(struct groups *gs, const struct msg *m, uint32_t extra, uint32_t *ret_group)
    __attribute__((warn_unused_result));
/* The group groups_reserve returned got no entry after all (the entry was paged out): a group
 * with nothing ready and nothing out becomes idle, so the idle bound covers it. */
void groups_unused(struct groups *gs, uint32_t gi);
/* Adds e (the entry's message reference moves in) to the queue's order and to its group's,
 * at the tail or by seq (a requeue). e->group names the group: the one groups_take gave it, or
 * the one groups_reserve just returned; 0: the group its message's x-group-id names (looked
 * up). 0 or -ENOMEM (only for a new group or an entry with no room reserved). */
int groups_insert(struct groups *gs, const struct qentry *e, bool at_tail);
/* The oldest ready entry of any group (TTL, length limits), or NULL. */
struct qentry *groups_front(const struct groups *gs);
/* Removes the oldest ready entry into *ret, whatever its group (expiry, drop-head, purge).
 * false when empty. */
bool groups_pop_front(struct groups *gs, struct qentry *ret);
/* Takes the next entry consumer c may have: the head of a group c holds, else the head of a
 * group nobody holds (c then holds it). c NULL: basic.get, which holds the group until the
 * entry is done. The entry comes back marked QE_GROUP_OUT. false when c may have nothing. */
bool groups_take(struct groups *gs, struct consumer *c, struct qentry *ret);
/* e, taken by groups_take, is done with (settled, or back in the queue through
 * groups_insert): its group's count of entries out drops, and at zero the group is free for
 * any consumer. Returns true when a group with ready entries became free. */
bool groups_done(struct groups *gs, const struct qentry *e);
/* c leaves the queue: its groups stay held until their entries out are done, but no longer
 * wait for c. */
void groups_consumer_gone(struct groups *gs, struct consumer *c);
/* May some consumer take something now: a free group, or a held one with ready entries whose
 * holder is attached? (False: dispatch can stop without asking each consumer.) */
bool groups_takable(const struct groups *gs);
/* Groups that exist now (with ready entries or entries out). */
uint32_t groups_count(const struct groups *gs);
/* Checks the invariants (tests): every count matches its lists. 0 or -EINVAL. */
int groups_check(const struct groups *gs);

#endif
