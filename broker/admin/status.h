/* status.h — the HA status endpoint: GET /health, 200 "active" or 503 "standby" (status.c). */
#ifndef WARREN_STATUS_H
#define WARREN_STATUS_H
#include <stdbool.h>
#include <uv.h>
#include "broker/admin/http.h"

struct ha_status {
    struct http_server http;
    const bool *active; /* borrowed: true while this process serves */
};

/* Listens on ip ("" = every address) and port. 0 or a libuv error (logged). */
int ha_status_start(struct ha_status *s, uv_loop_t *loop, const char *ip, int port,
                    const bool *active);
void ha_status_stop(struct ha_status *s);

#endif
