/* replyto.c — owns the reply names of channels consuming amq.rabbitmq.reply-to (a map in the
 * server from name to channel). Invariant: a name is in the map exactly while its channel has
 * a reply consumer. */
#include <errno.h>
#include <string.h>
#include "broker/amqp/channel.h"
#include "broker/amqp/conn.h"
#include "broker/model/errors.h"
#include "broker/model/msg.h"
#include "broker/model/msgedit.h"
#include "broker/amqp/replyto.h"
#include "broker/amqp/server.h"

#define PREFIX REPLYTO_QUEUE "."

int replyto_consume(struct channel *ch, const struct amqp_basic_consume *bc, struct err *err)
{
    struct conn *c = ch->conn;
    if (!bc->no_ack)
        return err_set(err, -WERR_PRECONDITION_FAILED, "reply consumer cannot acknowledge");
    if (ch->reply_name[0])
        return err_set(err, -WERR_PRECONDITION_FAILED, "reply consumer already set");
    amqp_bytes_t t = bc->consumer_tag;
    char tag[64];
    if (!t.len) {
        server_gen_name(c->srv, "amq.ctag-", tag, sizeof tag);
        t = amqp_cstr(tag);
    }
    server_gen_name(c->srv, PREFIX, ch->reply_name, sizeof ch->reply_name);
    if (hmap_put(&c->srv->replies, ch->reply_name, strlen(ch->reply_name), ch) < 0) {
        ch->reply_name[0] = 0;
        return -ENOMEM;
    }
    memcpy(ch->reply_tag, t.ptr, t.len);
    ch->reply_tag_len = (uint8_t)t.len;
    if (!bc->no_wait) {
        struct amqp_method m = {.id = AMQP_BASIC_CONSUME_OK};
        m.u.basic_consume_ok.consumer_tag = t;
        conn_send_method(c, ch->id, &m);
    }
    return 0;
}

bool replyto_is_name(struct server *s, amqp_bytes_t name)
{
    return amqp_bytes_eq_str(name, REPLYTO_QUEUE) || hmap_get(&s->replies, name.ptr, name.len);
}

void replyto_forget(struct channel *ch)
{
    if (!ch->reply_name[0])
        return;
    hmap_del(&ch->conn->srv->replies, ch->reply_name, strlen(ch->reply_name));
    ch->reply_name[0] = 0;
}

bool replyto_cancel(struct channel *ch, amqp_bytes_t tag)
{
    if (!ch->reply_name[0] ||
        !amqp_bytes_eq(tag, (amqp_bytes_t){(const uint8_t *)ch->reply_tag, ch->reply_tag_len}))
        return false;
    replyto_forget(ch);
    return true;
}

static void set_reply_to(struct amqp_basic_props *props, amqp_bytes_t headers,
                         struct amqp_wbuf *w, void *arg)
{
    props->reply_to = amqp_cstr(arg);
    msg_copy_table(w, headers, NULL);
}

int replyto_rewrite(struct channel *ch, struct msg **m, struct err *err)
{
    struct amqp_content_header h;
    amqp_bytes_t hdr = msg_header(*m);
    if (amqp_content_header_decode(hdr.ptr, hdr.len, &h) < 0 ||
        !(h.props.flags & AMQP_P_REPLY_TO) || !amqp_bytes_eq_str(h.props.reply_to, REPLYTO_QUEUE))
        return 0;
    if (!ch->reply_name[0])
        return err_set(err, -WERR_PRECONDITION_FAILED, "fast reply consumer does not exist");
    struct msg *nm = msg_edit(*m, msg_exchange(*m), msg_routing_key(*m), true, set_reply_to,
                              ch->reply_name);
    if (!nm)
        return -ENOMEM;
    nm->flags = (*m)->flags & (uint8_t)~MSG_REPLY_PSEUDO;
    nm->ttl = (*m)->ttl;
    msg_unref(*m);
    *m = nm;
    return 0;
}

bool replyto_route(struct channel *ch, struct msg *m, bool *ret_delivered)
{
    amqp_bytes_t rk = msg_routing_key(m);
    *ret_delivered = false;
    if (m->exchange_len || rk.len <= sizeof PREFIX - 1 ||
        memcmp(rk.ptr, PREFIX, sizeof PREFIX - 1) != 0)
        return false;
    struct channel *to = hmap_get(&ch->conn->srv->replies, rk.ptr, rk.len);
    if (!to || to->state != CH_OPEN)
        return true;
    struct amqp_method d = {.id = AMQP_BASIC_DELIVER};
    d.u.basic_deliver.consumer_tag = (amqp_bytes_t){(const uint8_t *)to->reply_tag, to->reply_tag_len};
    /* RabbitMQ gives a reply the channel's next delivery tag without using it up. */
    d.u.basic_deliver.delivery_tag = to->next_tag;
    d.u.basic_deliver.exchange = msg_exchange(m);
    d.u.basic_deliver.routing_key = rk;
    conn_send_content(to->conn, to->id, &d, m);
    return true;
}
