/* msgedit.h — copies of a message with a rewritten content header, for the few places that
 * must change what a client sees: dead-lettering (x-death), quorum redeliveries
 * (x-delivery-count) and direct reply-to (reply_to). The body is copied once; the original
 * is untouched since other queues may hold it. */
#ifndef WARREN_MSGEDIT_H
#define WARREN_MSGEDIT_H
#include <stdbool.h>
#include "protocol/codec.h"
#include "protocol/table.h"

struct msg;

/* Called with the decoded properties (to change in place) and the old headers table; writes
 * the new headers table's entries into w. */
typedef void (*msg_edit_cb)(struct amqp_basic_props *props, amqp_bytes_t old_headers,
                            struct amqp_wbuf *w, void *arg);

/* A new message (refs 1) like m, published to `exchange` with `routing_key` (BCC keys kept
 * when keep_bcc), whose header is m's after cb. NULL on allocation failure or a header that
 * does not decode. */
struct msg *msg_edit(const struct msg *m, amqp_bytes_t exchange, amqp_bytes_t routing_key,
                     bool keep_bcc, msg_edit_cb cb, void *arg);
/* Copies the entries of table t except those for which skip(key) is true. */
void msg_copy_table(struct amqp_wbuf *w, amqp_bytes_t t, bool (*skip)(amqp_bytes_t key));

#endif
