/* topic.h — the topic-exchange matcher: a word trie of binding patterns with RabbitMQ 3.x
 * semantics, matched in time that depends on the routing key and the trie paths it can reach,
 * not on the number of bindings. Owns its nodes; the values stored under patterns are borrowed
 * (the broker's bindings) and never freed here. Invariant: each stored (pattern, value) pair is
 * reported at most once per topic_match call.
 *
 * Words are split on '.' exactly as rabbit_exchange_type_topic:split_topic_key/1 does: ""
 * has no words, otherwise there is one word more than there are dots, and empty words are
 * words ("a..b" is a, "", b; "." is "", ""). In a pattern, a word that is exactly '*' matches
 * one word and exactly '#' matches zero or more; every other word (including "a*", "#a" and
 * the empty word) matches only an equal word. */
#ifndef WARREN_TOPIC_H
#define WARREN_TOPIC_H
#include <stddef.h>
#include "protocol/wire.h"

/* Longest pattern topic_add accepts: a binding key is an AMQP shortstr. */
#define TOPIC_PATTERN_MAX 255

struct topic_trie;
typedef struct topic_trie topic_trie_t;

/* Returns an empty trie, or NULL when out of memory. */
struct topic_trie *topic_new(void);
/* Frees the trie and its nodes; accepts NULL. Does not free the values. */
void topic_free(struct topic_trie *t);

/* Stores value (borrowed, may be NULL; must outlive its entry) under the binding pattern.
 * pattern is copied. Returns 0; -EEXIST when this (pattern, value) pair is already stored;
 * -EINVAL when pattern is longer than TOPIC_PATTERN_MAX bytes; -ENOMEM (the trie is unchanged). */
int topic_add(struct topic_trie *t, amqp_bytes_t pattern, void *value);
/* Removes the (pattern, value) pair and prunes the nodes it leaves empty. 0 or -ENOENT. */
int topic_remove(struct topic_trie *t, amqp_bytes_t pattern, void *value);

/* Called once per matching (pattern, value) pair; arg is topic_match's arg. */
typedef void (*topic_match_cb)(void *value, void *arg);
/* Calls cb(value, arg) once for every stored (pattern, value) pair whose pattern matches the
 * routing key `key` (any length), in no particular order. A value stored under two matching
 * patterns is reported twice; a pattern reachable along several paths ("#.#") is reported once.
 * cb must not add to or remove from t. Never fails: when a long key needs more scratch than
 * the stack holds and malloc fails, it falls back on topic__match_walk. */
void topic_match(const struct topic_trie *t, amqp_bytes_t key, topic_match_cb cb, void *arg);
/* The number of stored (pattern, value) pairs. */
size_t topic_count(const struct topic_trie *t);

/* Checks the trie's invariants (parent links, child maps, no empty node below the root,
 * counts, depth). Returns 0 or -EUCLEAN; stores the node count (root included) in
 * *ret_nodes when ret_nodes is not NULL. Walks the whole trie: for tests and debug builds. */
int topic_check(const struct topic_trie *t, size_t *ret_nodes);
/* The allocation-free matcher topic_match falls back on: visits every node and checks its
 * pattern against the key, so it costs O(nodes). Same contract as topic_match; exposed so the
 * unit tests can compare the two. */
void topic__match_walk(const struct topic_trie *t, amqp_bytes_t key, topic_match_cb cb,
                       void *arg);

#endif
