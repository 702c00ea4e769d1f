/* api_int.h — what the management API's files share: one request being answered (struct call),
 * the answers in RabbitMQ 3.10's shapes, and the checks of who may see what. Internal to
 * broker/admin/. */
#ifndef WARREN_API_INT_H
#define WARREN_API_INT_H
#include <stdbool.h>
#include <jansson.h>
#include "broker/admin/api.h"
#include "lib/hmap.h"

struct user;
struct queue;

#define MAX_SEGS 8

struct call {
    struct admin *a;
    const struct http_req *req;
    struct http_resp *resp;
    struct user *user;          /* the authenticated user */
    char *seg[MAX_SEGS];        /* decoded path segments after /api (in segbuf) */
    int nseg;
    char segbuf[8192];
};

/* Answers: status with j (consumed); RabbitMQ's error bodies; an empty 201/204. */
void api_reply(struct call *c, int status, json_t *j);
void api_error(struct call *c, int status, const char *error, const char *reason);
void api_not_found(struct call *c);                 /* 404 {"error":"Object Not Found",...} */
void api_bad_request(struct call *c, const char *reason); /* 400 {"error":"bad_request",...} */
void api_no_content(struct call *c, int status);
void api_method_not_allowed(struct call *c, const char *allow);
bool api_is(const struct call *c, const char *method);

/* true for an administrator; else answers 401 "Not administrator user". */
bool api_admin_only(struct call *c);
/* May the user see vhost (administrator, monitoring: all; others: where they have a
 * permission)? sees_vhost_obj takes a struct vhost. */
bool api_sees_vhost(const struct call *c, const char *vhost);
bool api_sees_vhost_obj(const struct call *c, const void *vh);

/* The query parameter name's value, percent-decoded, into buf ("" when absent). */
const char *api_param(const struct call *c, const char *name, char *buf, size_t size);
/* The request body as a JSON object ({} when empty); NULL after a 400. */
json_t *api_body(struct call *c);
/* A string member of o: its value, def when absent or null, NULL after a 400 (not a string). */
const char *api_member(struct call *c, json_t *o, const char *key, const char *def);
/* GET of a collection: to_json of every value of m that keep (NULL: all) lets through. */
void api_list(struct call *c, const struct hmap *m, json_t *(*to_json)(const void *),
              bool (*keep)(const struct call *, const void *));

/* Answers a collection (consumed) as RabbitMQ does, honouring the query parameters name and
 * use_regex (filter on "name"), sort and sort_reverse, page and page_size (then the answer is
 * {"items": [...], "page", "page_count", "page_size", "filtered_count", "item_count",
 * "total_count"}) and columns (a comma-separated list of the fields to keep). */
void api_send_list(struct call *c, json_t *items);

/* One member of a collection: its name and vhost (for the name filter and the default order)
 * and either its JSON already (a reference) or the object to_json() makes it from, which is
 * called only for the members answered (a page of 500 of 100,000 queues makes 500). */
struct api_item {
    const char *name, *vhost;
    json_t *json;
    const void *obj;
    bool json_is_key; /* set while sorting: json holds only the member sorted on */
};
/* api_send_list() over v[0..n) (the caller's array; the items' JSON references are taken). */
void api_send_objects(struct call *c, struct api_item *v, size_t n,
                      json_t *(*to_json)(const void *));

/* The GET and DELETE of one named resource, as every resource has them: obj NULL is 404, GET
 * answers to_json(obj), DELETE calls del(c, obj) (which answers); any method but PUT is 405.
 * True when the request is answered; false for a PUT, which the caller handles. */
bool api_one(struct call *c, void *obj, json_t *(*to_json)(const void *),
             void (*del)(struct call *c, void *obj));
/* Answers 200 with the first element of array (consumed). */
void api_reply_first(struct call *c, json_t *array);

/* The handlers, by first path segment. */
void api_whoami(struct call *c);
void api_overview(struct call *c); /* api_overview.c */
void api_vhosts(struct call *c);
void api_users(struct call *c);
void api_permissions(struct call *c);
void api_exchanges(struct call *c);
void api_queues(struct call *c);
void api_bindings(struct call *c);
void api_definitions(struct call *c);
void api_topic_permissions(struct call *c);
void api_auth(struct call *c);
void api_extensions(struct call *c);
void api_vhost_limits(struct call *c);
void api_connections(struct call *c);
void api_channels(struct call *c);
void api_consumers(struct call *c);
void api_nodes(struct call *c);
void api_policies(struct call *c); /* policies and operator-policies */
void api_parameters(struct call *c);
void api_global_parameters(struct call *c);
void api_user_limits(struct call *c);
void api_health(struct call *c);
void api_aliveness(struct call *c);
void api_warren(struct call *c); /* api_warren.c: /api/warren/encryption, /api/warren/rotate-key */
void api_ha(struct call *c);     /* api_warren.c: /api/ha */
/* {"publish": N, "publish_details": {"rate": R}, ...} of a queue (message_stats). */
json_t *api_queue_message_stats(const struct queue *q);
/* /api/vhosts/{vhost}/connections and /api/vhosts/{vhost}/channels. */
void api_vhost_sessions(struct call *c);

#endif
