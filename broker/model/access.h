/* access.h — RabbitMQ's access-control checks for one session (a user in a vhost): the
 * configure/write/read patterns of users.h applied to exchanges and queues, and topic
 * permissions applied to routing keys, with RabbitMQ's 403 texts. Decisions that allowed an
 * existing exchange or queue are cached (by its address) until anything in the tenancy or any
 * entity changes (b->access_gen), so that publishing through a permitted exchange is a
 * compare, not a regular expression.
 * Owns nothing but its cache; the user and vhost are looked up by name again whenever the
 * generation moves, so that a deleted user or permission is never used. */
#ifndef WARREN_ACCESS_H
#define WARREN_ACCESS_H
#include <stdbool.h>
#include <stdint.h>
#include "broker/model/users.h"
#include "protocol/wire.h"

struct broker;
struct vhost;
struct exchange;
struct err;

#define ACCESS_CACHE 8

struct access {
    struct broker *b;       /* borrowed */
    const char *user;       /* borrowed: the session's user name */
    const struct vhost *vh; /* borrowed: the session's vhost */
    struct perm *perm;      /* borrowed from the user: valid while gen == b->access_gen */
    uint64_t gen;
    struct { const void *obj; int what; } cache[ACCESS_CACHE]; /* allowed decisions */
    unsigned next;          /* the cache slot to fill next */
};

/* Sets a up for user (a name that must outlive a) in vh. */
void access_init(struct access *a, struct broker *b, const char *user, const struct vhost *vh);

enum access_kind { ACCESS_EXCHANGE, ACCESS_QUEUE };

/* May the session do `perm` on the exchange or queue called name? obj is the object when it
 * exists (the decision is then cached), else NULL. The default exchange ("") is checked as
 * "amq.default", as in RabbitMQ. 0, or -WERR_ACCESS_REFUSED with RabbitMQ's text:
 * "<perm> access to <kind> '<name>' in vhost '<vhost>' refused for user '<user>'". */
int access_check(struct access *a, enum access_perm perm, enum access_kind kind,
                 amqp_bytes_t name, const void *obj, struct err *err);

/* The topic permission check of a publish (write) or a queue/exchange bind (read) through x
 * with routing key: only topic exchanges are checked, and a user with no topic permission on
 * x may use every key. 0 or -WERR_ACCESS_REFUSED ("<perm> access to topic '<key>' in exchange
 * '<x>' in vhost '<vhost>' refused for user '<user>'"). */
int access_check_topic(struct access *a, enum access_perm perm, const struct exchange *x,
                       amqp_bytes_t key, struct err *err);

/* Has the session's user any permission in its vhost (connection.open's question)? */
bool access_vhost_allowed(struct access *a);

#endif
