/* defs.h — RabbitMQ definitions (the JSON of `rabbitmqctl export_definitions` and of the
 * management API's /api/definitions) imported into a broker: users (hashes and algorithms, tags
 * as a string or an array), vhosts (with limits from vhost-limits parameters), permissions,
 * topic permissions, exchanges, queues and bindings. Policies and other parameters are not
 * applied yet (one log line says so). Owns nothing after it returns.
 * Invariant: all or nothing — the whole file is parsed and validated before the first change,
 * and an import of what is already there changes nothing (idempotent). */
#ifndef WARREN_DEFS_H
#define WARREN_DEFS_H

#include <jansson.h>
#include <stddef.h>

struct broker;
struct vhost;

/* Imports the definitions at path: a file, or a directory whose *.json files are read in name
 * order and imported as one. 0, or an error with why (NUL-terminated, truncated to
 * why_size) naming the file, the entry ("queues[3] 'orders' in vhost '/'") and the reason:
 * -errno when the file cannot be read, -EINVAL when it does not parse or validate, -ENOMEM. */
int defs_import_file(struct broker *b, const char *path, char *why, size_t why_size);

/* Imports an already parsed definitions document (the HTTP API's POST /api/definitions); label
 * names it in messages. Same rules and returns as defs_import_file; root is not consumed. */
int defs_import_json(struct broker *b, json_t *root, const char *label, char *why,
                     size_t why_size);

/* Everything in RabbitMQ's definitions format (users with their hashes, vhosts, permissions,
 * topic permissions, vhost-limits parameters, exchanges, queues, bindings; policies and other
 * parameters empty), or with only set, that vhost's part without the vhost fields, as RabbitMQ's
 * per-vhost export. version is Warren's (product_version). NULL when memory is short. */
json_t *defs_export(struct broker *b, const struct vhost *only, const char *version);

#endif
