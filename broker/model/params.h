/* params.h — RabbitMQ's runtime parameters: policies and operator policies (a pattern on
 * queue and/or exchange names, a priority and a definition of keys), vhost-scoped parameters of
 * other components, global parameters and user limits. Stored in storage's params table (JSON
 * values), recovered at start, changed by the management API and the definitions import.
 * Policies are compiled (PCRE2) and validated when set; policy_effective() says which policy
 * applies to a queue or exchange and what the resulting arguments are.
 * Owns every struct param (in b->params); queues and exchanges borrow nothing from here: their
 * effective arguments are their own copies (queue.c, exchange.c). */
#ifndef WARREN_PARAMS_H
#define WARREN_PARAMS_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include "protocol/table.h"

struct broker;
struct err;
struct queue;
struct exchange;
struct vhost;
struct st_param;

#define PARAM_POLICY "policy"
#define PARAM_OPERATOR_POLICY "operator_policy"
#define PARAM_GLOBAL "global"          /* global parameters: vhost "" */
#define PARAM_USER_LIMITS "user-limits" /* vhost "", name: the user */

enum policy_apply { APPLY_ALL, APPLY_QUEUES, APPLY_EXCHANGES };

struct param {
    char *key;                      /* owned: "component\0vhost\0name", the map's key */
    size_t key_len;
    char *component, *vhost, *name; /* owned */
    json_t *value;                  /* ref: the stored JSON (for a policy, its whole object) */
    /* Policies only. */
    void *re;                       /* owned pcre2_code of the pattern */
    enum policy_apply apply_to;
    int priority;
};

/* The parameter, or NULL. */
struct param *param_find(struct broker *b, const char *component, const char *vhost,
                         const char *name);
/* Sets (creates or replaces) a parameter; value is borrowed (a reference is taken). A policy's
 * value is {"pattern", "definition", "priority", "apply-to"}: validated (known keys with
 * values of the right type and range; the pattern must compile) and then applied to the
 * vhost's queues and exchanges at once. 0, -EINVAL with err saying why, or -ENOMEM. */
int param_set(struct broker *b, const char *component, const char *vhost, const char *name,
              json_t *value, struct err *err);
/* Would param_set accept value for component? 0 or -EINVAL with err saying why. */
int param_check(const char *component, json_t *value, struct err *err);
/* Deletes it (a policy's effects go at once). */
void param_delete(struct broker *b, struct param *p);
/* Every parameter through fn (component NULL: all). */
void param_each(struct broker *b, const char *component,
                void (*fn)(void *arg, const struct param *p), void *arg);
/* Deletes every parameter of vhost (deleted): broker_delete_vhost calls it. */
void params_forget_vhost(struct broker *b, const char *vhost);
int params_recover(struct broker *b, const struct st_param *r);
void params_free_all(struct broker *b);

/* The arguments a queue (or exchange) declared with args really has, the policies applied
 * (RabbitMQ's rules: for message-ttl, expires, max-length, max-length-bytes and delivery-limit
 * the lower of the argument and the policy, and of an operator policy's; for the other keys the
 * argument wins), written as a field table into w; *ret_policy and *ret_op get the names of the
 * policies that apply (NULL: none); *ret_args is the table (its entries, in w). 0 or -ENOMEM. */
int policy_effective(struct broker *b, const struct vhost *vh, const char *name, bool queue,
                     amqp_bytes_t args, struct amqp_wbuf *w, amqp_bytes_t *ret_args,
                     const struct param **ret_policy, const struct param **ret_op);
/* Applies the policies of vh again to every queue and exchange in it (after a change). */
void policy_apply_vhost(struct broker *b, struct vhost *vh);

#endif
