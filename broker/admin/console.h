/* console.h — the web console's files (broker/admin/console/), embedded into warrend at build
 * time by tools/gen_console.py as a table of assets, served from the management listener at "/"
 * with ETags and caching headers. Owns nothing at run time: the table is constant. */
#ifndef WARREN_CONSOLE_H
#define WARREN_CONSOLE_H
#include <stddef.h>
#include "broker/admin/http.h"

struct console_asset {
    const char *path;          /* "/index.html" */
    const char *content_type;  /* "text/html; charset=utf-8" */
    const char *etag;          /* "\"<first 16 hex digits of the SHA-256 of the bytes>\"" */
    const unsigned char *data; /* the bytes */
    size_t len;
};

/* console_assets.c, generated. */
extern const struct console_asset console_assets[];
extern const size_t console_assets_count;

/* The asset for path ("/" is "/index.html"), or NULL. */
const struct console_asset *console_find(const char *path);

/* Answers a request outside /api/: GET or HEAD of an asset (304 when If-None-Match names its
 * ETag), 404 for an unknown path (the API's JSON error), 405 for another method. Needs no credentials: the files hold
 * no data; the page asks the API, which does. */
void console_serve(const struct http_req *req, struct http_resp *resp);

#endif
