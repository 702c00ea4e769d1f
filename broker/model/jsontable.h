/* jsontable.h — AMQP field tables and message properties as JSON, the way RabbitMQ's management
 * API and definitions files show them (rabbit_misc:to_amqp_table and back): strings (longstr),
 * integers (signed 64-bit), floats, booleans, null (void), objects (tables), arrays. Used by the
 * definitions import/export and the HTTP API. Owns nothing it is given; returns new JSON. */
#ifndef WARREN_JSONTABLE_H
#define WARREN_JSONTABLE_H
#include <jansson.h>
#include "protocol/codec.h"
#include "protocol/table.h"

/* Appends the entries of JSON object o (not the table's length) to w. Check w->failed. */
void jt_put_table(struct amqp_wbuf *w, json_t *o);
/* Appends one JSON value as a field value (type letter + bytes). */
void jt_put_value(struct amqp_wbuf *w, json_t *v);
/* A table body (validated) as a JSON object; NULL when memory is short. */
json_t *jt_table(amqp_bytes_t table);
/* A comma-separated tag list ("administrator, ops") as a JSON array of strings. */
json_t *jt_tags(const char *tags);
/* Message properties as RabbitMQ shows them ({"delivery_mode":2,"headers":{...},...}); NULL
 * when memory is short. */
json_t *jt_props(const struct amqp_basic_props *p);
/* Fills *p from a properties object in that shape, the headers table written to w (p->headers
 * points into w: keep w until p is encoded). 0, or -EINVAL with why naming the bad property. */
int jt_parse_props(json_t *o, struct amqp_basic_props *p, struct amqp_wbuf *w, const char **why);

#endif
