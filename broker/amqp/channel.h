/* channel.h — one AMQP channel: basic.*, confirm.* and tx.* methods (exchange.* and queue.* go
 * to declare.c), content assembly of publishes, the unacked delivery ring, and the channel's
 * side of the consumer interface (consumer_ops). */
#ifndef WARREN_CHANNEL_H
#define WARREN_CHANNEL_H
#include <stdbool.h>
#include <stdint.h>
#include "broker/model/exchange.h"
#include "lib/list.h"
#include "broker/model/queue.h"
#include "lib/timer.h"
#include "protocol/codec.h"

struct err;
struct conn;
struct msg;
struct queue;
struct consumer;

enum channel_state { CH_OPEN, CH_CLOSING /* channel.close sent, waiting for close-ok */ };
enum content_state { CT_IDLE, CT_HEADER, CT_BODY };

/* One delivery awaiting ack; deliveries are numbered by tag, consecutively. */
struct delivery {
    struct qentry e;        /* as popped from q: message (ref), place, storage flags */
    struct queue *q;        /* ref */
    struct consumer *c;     /* ref, NULL for basic.get */
    uint64_t at;            /* wall-clock ms it was sent (consumer acknowledgement timeout) */
    bool live;              /* false once acked, or for no-ack deliveries */
    bool tx_settled;        /* acked/nacked/rejected in the open transaction: settled at
                             * tx.commit, live again after tx.rollback */
    bool own_timeout;       /* its queue had a consumer timeout of its own when sent */
};

struct channel {
    struct conn *conn; /* borrowed: owns us */
    uint16_t id;
    enum channel_state state;
    bool active; /* channel.flow */

    /* Publish being assembled. */
    enum content_state ct;
    bool mandatory;
    uint8_t pub_exchange_len, pub_rk_len;
    char pub_exchange[256], pub_rk[256];
    struct msg *building; /* ref */

    /* Unacked ring: tag of ring[head] is first_tag. */
    struct delivery *ring; /* owned */
    uint32_t cap, head, count, live;
    uint32_t consumer_live; /* live entries that came from consumers (not basic.get) */
    uint64_t first_tag, next_tag;

    struct list consumers;  /* of consumer.chlink */
    uint32_t prefetch;      /* basic.qos global=false: for consumers created afterwards */
    uint32_t global_prefetch;
    char last_queue[256];   /* name of the last declared queue ("" for none) */

    /* Publisher confirms: sequence numbers of publishes, and how far acks have gone. A publish
     * whose message waits for a storage batch is queued in `pending` with everything after
     * it, so that confirm_upto only passes a publish once every earlier one is durable. */
    bool confirm, tx;
    uint64_t publish_seq, confirm_upto, acked_upto;
    uint64_t published; /* basic.publish messages received whole (the API's channel stats) */
    struct pconfirm { uint64_t seq, batch; bool nack; } *pending; /* owned ring */
    uint32_t pending_cap, pending_head, pending_count;
    uint64_t tx_commit_batch; /* tx.commit-ok waits for this batch (0: nothing waits) */
    struct list wait_link;    /* in srv->waiting while pending or tx_commit_batch */
    struct list confirm_link; /* in conn.confirms while acks wait for the flush */

    /* Transaction: publishes (refs) and acks held until tx.commit. */
    struct msg **tx_msgs; /* owned array of refs */
    uint32_t tx_nmsgs, tx_msgs_cap;
    struct tx_ack { uint64_t tag; bool multiple; uint8_t how; } *tx_acks; /* owned */
    uint32_t tx_nacks, tx_acks_cap;
    struct route route;     /* scratch for routing */
    struct timer_item ack_timer; /* the earliest unacked delivery's timeout */
    uint32_t own_timeouts;  /* live deliveries with own_timeout: then every one is looked at */
    char reply_name[64];    /* direct reply-to: "amq.rabbitmq.reply-to.<token>", or "" */
    char reply_tag[256];
    uint8_t reply_tag_len;
};

struct channel *channel_new(struct conn *c, uint16_t id);
/* Tears the channel down: cancels its consumers, requeues unacked messages. Accepts NULL. */
void channel_free(struct channel *ch);
/* Handles one method frame. Returns 0 or an error for conn_fail(). */
int channel_handle_method(struct channel *ch, const struct amqp_method *m, struct err *err);
int channel_handle_header(struct channel *ch, const uint8_t *payload, uint32_t len, struct err *err);
int channel_handle_body(struct channel *ch, const uint8_t *payload, uint32_t len, struct err *err);
/* Storage batch `durable` is on disk: confirms and tx.commit-ok waiting for it go out. */
void channel_on_durable(struct channel *ch, uint64_t durable);
/* Storage failed for good: confirms already decided go out, then one basic.nack (multiple)
 * for every publish still unconfirmed; nothing more is confirmed on this channel. */
void channel_nack_pending(struct channel *ch);
/* Sends the publisher confirms decided since the last flush (one basic.ack, multiple). */
void channel_send_confirms(struct channel *ch);
/* Wakes every consumer of the channel (consumer_wake): its limits may have changed. */
void channel_kick_consumers(struct channel *ch);
#endif
