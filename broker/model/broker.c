/* broker.c — owns the model's process state (broker.h): vhosts, the dispatch list and the
 * TTL-0 list. Does not own connections, listeners or output (the AMQP server does). */
#include <stdlib.h>
#include <string.h>
#include "broker/model/delay.h"
#include "broker/model/atrest.h"
#include "broker/model/broker.h"
#include "broker/model/msg.h"
#include "broker/model/params.h"
#include "broker/model/queue.h"
#include "broker/model/users.h"
#include "broker/model/vhost.h"
#include "storage/batch.h"
#include "storage/records.h"

void broker_init(struct broker *b, uv_loop_t *loop)
{
    memset(b, 0, sizeof *b);
    b->loop = loop;
    list_init(&b->meta_dirty);
    list_init(&b->pending_queues);
    list_init(&b->ttl0);
    list_init(&b->durable_waits);
}

void broker_wait_durable(struct broker *b, struct durable_wait *w, uint64_t batch)
{
    w->batch = batch;
    if (batch <= b->durable_batch) {
        list_init(&w->link);
        w->done(w);
        return;
    }
    list_insert_tail(&b->durable_waits, &w->link);
}

void broker_on_durable(struct broker *b, uint64_t durable)
{
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &b->durable_waits) {
        struct durable_wait *w = list_entry(pos, struct durable_wait, link);
        if (w->batch <= durable) {
            list_remove(&w->link);
            w->done(w);
        }
    }
}

void broker_free(struct broker *b)
{
    while (b->kick_head) {
        struct queue *q = b->kick_head;
        b->kick_head = q->kick_next;
        queue_unref(q);
    }
    delay_free(b); /* (its messages and target pointers first) */
    void *v;
    for (uint32_t it = 0; hmap_next(&b->vhosts, &it, &v);)
        vhost_free(v);
    hmap_free(&b->vhosts);
    users_free_all(b);
    params_free_all(b);
    for (uint32_t i = 0; i < b->dl_n; i++)
        msg_unref(b->dl_jobs[i].m);
    free(b->dl_jobs);
    timers_free(&b->timers);
    atrest_free(b->atrest);
    b->atrest = NULL;
    b->dl_jobs = NULL;
    b->dl_n = b->dl_cap = 0;
}

struct vhost *broker_add_vhost(struct broker *b, const char *name)
{
    struct vhost *vh = vhost_new(b, name);
    if (vh && hmap_put(&b->vhosts, vh->name, strlen(vh->name), vh) < 0) {
        vhost_free(vh);
        return NULL;
    }
    return vh;
}

void broker_delete_vhost(struct broker *b, struct vhost *vh)
{
    if (b->vhost_closing)
        b->vhost_closing(b, vh, b->vhost_closing_arg);
    uint32_t n = 0; /* dead-letter jobs into vh have nowhere to go */
    for (uint32_t i = 0; i < b->dl_n; i++) {
        if (b->dl_jobs[i].vh == vh)
            msg_unref(b->dl_jobs[i].m);
        else
            b->dl_jobs[n++] = b->dl_jobs[i];
    }
    b->dl_n = n;
    users_forget_vhost(b, vh->name);
    params_forget_vhost(b, vh->name);
    if (b->store)
        (void)storage_del_vhost(b->store, (struct st_bytes){vh->name, strlen(vh->name)});
    hmap_del(&b->vhosts, vh->name, strlen(vh->name));
    vhost_free(vh); /* deletes queues (their stored messages too), exchanges and bindings */
    b->access_gen++;
}

void broker_kick_queue(struct broker *b, struct queue *q)
{
    if (q->kicked)
        return;
    q->kicked = true;
    queue_ref(q);
    q->kick_next = b->kick_head;
    b->kick_head = q;
}

void broker_dispatch(struct broker *b)
{
    /* Dispatch may kick more queues (e.g. auto-delete), and TTL-0 expiry may dead-letter into
     * queues that then need a dispatch: loop until quiet. */
    do {
        while (b->kick_head) {
            struct queue *q = b->kick_head;
            b->kick_head = q->kick_next;
            q->kicked = false;
            if (!q->deleted)
                queue_dispatch(q);
            queue_unref(q);
        }
        while (!list_empty(&b->ttl0))
            queue_expire_ttl0(list_entry(b->ttl0.next, struct queue, ttl0_link));
    } while (b->kick_head);
}
