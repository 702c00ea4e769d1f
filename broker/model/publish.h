/* publish.h — putting a routed message into its queues, for basic.publish and for
 * dead-lettering alike. */
#ifndef WARREN_PUBLISH_H
#define WARREN_PUBLISH_H
#include <stdbool.h>
#include <stdint.h>

struct broker;
struct msg;
struct route;

/* Enqueues m on every queue in r; queues with x-delivery-delay are taken out of r first and
 * get m when its delay is over (delay.h; their storage batch is in *ret_batch too). A
 * persistent message bound for durable (or quorum) queues is written to storage once for all
 * of them, and *ret_batch gets the storage batch it waits for (0: none). Queues whose x-overflow refuses it are skipped and *ret_rejected set (for
 * reject-publish-dlx they dead-letter it). 0 or -ENOMEM. */
int publish_enqueue(struct broker *s, struct msg *m, struct route *r, uint64_t *ret_batch,
                    bool *ret_rejected);

#endif
