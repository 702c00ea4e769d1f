/* api_warren.c — Warren's own endpoints, which RabbitMQ's API has no counterpart for: the
 * encryption-at-rest status (GET /api/warren/encryption), key rotation (POST
 * /api/warren/rotate-key, which warrenctl rotate_key sends) and active/standby (GET /api/ha,
 * warrenctl ha_status). Administrators only. Owns
 * nothing: the model (broker/model/atrest.c) does the work; this file turns it into JSON.
 * Invariant: a rotation is only ever started here by a POST, and its answer (202) does not wait
 * for it: progress is polled with GET. */
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include "broker/admin/api_int.h"
#include "broker/model/atrest.h"
#include "broker/model/broker.h"

static json_t *str_or_null(const char *s)
{
    return s && s[0] ? json_string(s) : json_null();
}

/* The status, as GET /api/warren/encryption answers it. */
static json_t *status_json(struct broker *b)
{
    struct atrest_status s;
    atrest_status(b, &s);
    if (!s.enabled)
        return json_pack("{s:b, s:s}", "enabled", 0, "state", "off");
    /* The key file's path, not a key_command's text (it may hold a token). */
    bool file = !strcmp(s.source, "encryption.key_file");
    return json_pack("{s:b, s:s, s:s, s:o, s:s, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:o}",
                     "enabled", 1, "key_id", s.store.key_id, "key_source", s.source,
                     "key_file", file ? json_string(s.path) : json_null(),
                     "state", atrest_state_name(s.state),
                     "previous_key_id", str_or_null(s.store.old_key_id),
                     "error", str_or_null(s.error),
                     "records_total", (json_int_t)s.store.total,
                     "records_examined", (json_int_t)s.store.examined,
                     "records_reencrypted", (json_int_t)s.store.reencrypted,
                     "records_damaged", (json_int_t)s.store.damaged,
                     "rotations", (json_int_t)s.rotations,
                     "elapsed_ms",
                     s.started_ms ? json_integer((json_int_t)((s.finished_ms ? s.finished_ms
                                                                            : uv_now(b->loop)) -
                                                              s.started_ms))
                                  : json_null());
}

static void rotate_key(struct call *c)
{
    struct broker *b = c->a->b;
    if (api_is(c, "GET"))
        return api_reply(c, 200, status_json(b));
    if (!api_is(c, "POST"))
        return api_method_not_allowed(c, "GET, HEAD, POST");
    int rc = atrest_rotate(b);
    if (rc == -ENOTSUP)
        return api_bad_request(c, "encryption at rest is off: set encryption.key_file or "
                                  "encryption.key_command in the configuration file and restart");
    if (rc == -EBUSY)
        return api_error(c, 409, "conflict", "a key rotation is already in progress");
    if (rc < 0)
        return api_error(c, 500, "internal_error", "cannot start the key rotation");
    api_reply(c, 202, status_json(b));
}

void api_ha(struct call *c)
{
    if (c->nseg != 1)
        return api_not_found(c);
    if (!api_admin_only(c))
        return;
    if (!api_is(c, "GET"))
        return api_method_not_allowed(c, "GET, HEAD");
    struct broker *b = c->a->b;
    if (!b->ha_describe)
        return api_reply(c, 200, json_pack("{s:s}", "mode", "none"));
    struct ha_view v;
    b->ha_describe(b->ha_arg, &v);
    api_reply(c, 200, json_pack("{s:s, s:s, s:I, s:o, s:I, s:I, s:I}", "mode", "shared", "role",
                                v.active ? "active" : "standby", "epoch", (json_int_t)v.epoch,
                                "holder", str_or_null(v.holder), "heartbeat_interval",
                                (json_int_t)v.heartbeat_ms, "fence_deadline",
                                (json_int_t)v.fence_deadline_ms, "last_heartbeat_ms_ago",
                                (json_int_t)v.last_heartbeat_ago_ms));
}

void api_warren(struct call *c)
{
    if (c->nseg != 2)
        return api_not_found(c);
    if (!api_admin_only(c))
        return;
    if (!strcmp(c->seg[1], "encryption")) {
        if (!api_is(c, "GET"))
            return api_method_not_allowed(c, "GET, HEAD");
        return api_reply(c, 200, status_json(c->a->b));
    }
    if (!strcmp(c->seg[1], "rotate-key"))
        return rotate_key(c);
    api_not_found(c);
}
