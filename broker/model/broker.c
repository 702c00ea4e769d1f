/* broker.c — owns the model's process state (broker.h): vhosts, the dispatch list and the
 * TTL-0 list. Does not own connections, listeners or output (the AMQP server does). */
#include <stdlib.h>
#include <string.h>
#include "broker/model/broker.h"
#include "broker/model/msg.h"
#include "broker/model/queue.h"
#include "broker/model/vhost.h"

void broker_init(struct broker *b, uv_loop_t *loop)
{
    memset(b, 0, sizeof *b);
    b->loop = loop;
    list_init(&b->meta_dirty);
    list_init(&b->pending_queues);
    list_init(&b->ttl0);
}

void broker_free(struct broker *b)
{
    while (b->kick_head) {
        struct queue *q = b->kick_head;
        b->kick_head = q->kick_next;
        queue_unref(q);
    }
    void *v;
    for (uint32_t it = 0; hmap_next(&b->vhosts, &it, &v);)
        vhost_free(v);
    hmap_free(&b->vhosts);
    for (uint32_t i = 0; i < b->dl_n; i++)
        msg_unref(b->dl_jobs[i].m);
    free(b->dl_jobs);
    timers_free(&b->timers);
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
