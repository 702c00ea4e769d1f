/* deadletter.h — dead-lettering (x-dead-letter-exchange): a message that is rejected, expires,
 * overflows its queue or exceeds a delivery limit is republished to the queue's DLX with an
 * x-death history, as RabbitMQ 3.x does. */
#ifndef WARREN_DEADLETTER_H
#define WARREN_DEADLETTER_H

struct queue;
struct qentry;

enum dl_reason { DL_REJECTED, DL_EXPIRED, DL_MAXLEN, DL_DELIVERY_LIMIT };

/* Republishes e's message from q to q's dead-letter exchange, if q has one and it exists; the
 * caller still owns e (and settles it). Messages that would go round a cycle with no rejection
 * in it are dropped for the queues that close the cycle. */
void deadletter(struct queue *q, const struct qentry *e, enum dl_reason reason);

#endif
