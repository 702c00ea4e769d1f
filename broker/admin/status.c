/* status.c — the HA status endpoint (ha.status_port) for load balancers: GET /health answers
 * 200 "active" while this process serves and 503 "standby" while it waits for the lock. Owns its
 * HTTP listener; borrows the flag it reports. */
#include <string.h>
#include "broker/admin/status.h"

static void handle(const struct http_req *req, struct http_resp *resp, void *arg)
{
    const struct ha_status *s = arg;
    resp->content_type = "text/plain";
    if (strcmp(req->path, "/health") != 0) {
        http_resp_set(resp, 404, "not found: GET /health\n");
        return;
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        http_resp_set(resp, 405, "GET /health\n");
        return;
    }
    if (*s->active)
        http_resp_set(resp, 200, "active\n");
    else
        http_resp_set(resp, 503, "standby\n");
}

int ha_status_start(struct ha_status *s, uv_loop_t *loop, const char *ip, int port,
                    const bool *active)
{
    s->active = active;
    return http_start(&s->http, loop, "HA status endpoint", "ha.status_port", ip, port, NULL,
                      handle, s);
}

void ha_status_stop(struct ha_status *s)
{
    http_stop(&s->http);
}
