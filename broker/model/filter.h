/* filter.h — SNS subscription filter policies (x-filter-policy) compiled once into a matcher.
 * Owns the compiled form only; the policy text, the headers table and the body stay the
 * caller's. Pure: no logging, no session, no regex; matching a table allocates nothing. */
#ifndef WARREN_FILTER_H
#define WARREN_FILTER_H
#include <stdbool.h>
#include <stddef.h>
#include "protocol/wire.h"

#define FILTER_MAX_COMBINATIONS 150 /* SNS: product of the value counts, $or branches summed */
#define FILTER_MAX_DEPTH 5          /* nested objects in a MessageBody policy, the top one is 1 */
#define FILTER_NUM_LIMIT 1e9        /* SNS: numbers in a policy lie in [-1e9, 1e9] */
#define FILTER_MAX_SIZE (256 * 1024) /* SNS: the policy's JSON text, in bytes */

/* What a policy is matched against (x-filter-policy-scope). */
enum filter_scope {
    FILTER_SCOPE_ATTRIBUTES, /* MessageAttributes (default): the message's headers table */
    FILTER_SCOPE_BODY,       /* MessageBody: the body parsed as JSON, nested keys allowed */
    FILTER_SCOPE_MAX,
};

struct filter;
typedef struct filter filter_t;

/* Parses the policy json[0..len) (a JSON object, UTF-8) and compiles it for scope.
 * Returns 0 with *ret_filter set (free with filter_free), or, with *ret_filter untouched:
 *   -EINVAL  the policy is refused; err (if errcap > 0) holds a NUL-terminated text naming
 *            the problem, e.g. "filter policy: key 'price': unknown operator 'gt'";
 *   -ENOMEM  allocation failed (err says so).
 * An empty object {} compiles to a filter that matches every message. */
int filter_compile(const char *json, size_t len, enum filter_scope scope,
                   struct filter **ret_filter, char *err, size_t errcap);

/* Frees f; accepts NULL; returns NULL. */
struct filter *filter_free(struct filter *f);

enum filter_scope filter_scope(const struct filter *f);

/* The policy's complexity as SNS counts it (at most FILTER_MAX_COMBINATIONS once compiled). */
size_t filter_combinations(const struct filter *f);

/* Scope attributes: true when the headers table (entries without the 4-byte length prefix,
 * already validated by amqp_table_validate as every decoded properties table is) satisfies f.
 * An empty table matches only the empty policy, as SNS matches nothing against no
 * attributes. Allocates nothing. A body-scope filter never matches here. */
bool filter_match_table(const struct filter *f, amqp_bytes_t headers);

/* Scope body: true when body[0..len) parses as a JSON object that satisfies f (invalid JSON,
 * or JSON that is not an object, does not match). Parses the body each call: callers with
 * several body-scope filters for one message should parse once with filter_match_json. */
bool filter_match_body(const struct filter *f, const void *body, size_t len);
/* Same against an already parsed json_t object (jansson; passed as void * to keep jansson
 * out of this header). */
bool filter_match_json(const struct filter *f, const void *json_object);

/* For an index over many policies: the first top-level key (in policy order, outside any $or)
 * whose every condition is an exact string. Returns 1 with *ret_key and *ret_vals[0..*ret_n)
 * (borrowed: valid until filter_free), 0 when the policy has no such key. Every message the
 * filter matches has under that key one of those strings exactly (for attributes: an S or x
 * value, or an A array holding one; for a body: a string, or an array holding one), so an
 * index may skip f for messages that have none of them. */
int filter_exact_key(const struct filter *f, amqp_bytes_t *ret_key, const amqp_bytes_t **ret_vals,
                     size_t *ret_n);

#endif
