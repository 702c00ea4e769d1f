/* console.c — serves the web console's embedded files (console.h) from the management listener.
 * Owns no state; the asset table is generated (console_assets.c) and constant. Invariant: an
 * asset's ETag is the hash of the bytes served under it, so a 304 is right whenever it matches.
 * index.html is revalidated on every load (no-cache, then 304) and names the other files with
 * ?v=<their hash>, which the browser keeps without asking again (immutable): new bytes come
 * with a new index.html naming a new hash. Any other request of a file is revalidated. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "broker/admin/console.h"

/* The pages run only scripts and styles of their own origin, call only the API, and are not
 * framed by other sites. */
#define CONSOLE_HEADERS                                                                          \
    "X-Content-Type-Options: nosniff\r\n"                                                        \
    "X-Frame-Options: DENY\r\n"                                                                  \
    "Content-Security-Policy: default-src 'self'; img-src 'self' data:; "                       \
    "frame-ancestors 'none'\r\n"

const struct console_asset *console_find(const char *path)
{
    if (!strcmp(path, "/"))
        path = "/index.html";
    for (size_t i = 0; i < console_assets_count; i++)
        if (!strcmp(console_assets[i].path, path))
            return &console_assets[i];
    return NULL;
}

/* Does the If-None-Match list (comma-separated, maybe W/-prefixed, or "*") name etag? */
static bool etag_matches(const char *inm, const char *etag)
{
    size_t n = strlen(etag);
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (!strncmp(p, "W/", 2))
            p += 2;
        if (!strncmp(p, etag, n) && (p[n] == 0 || p[n] == ',' || p[n] == ' '))
            return true;
        while (*p && *p != ',')
            p++;
    }
    return false;
}

static void text(struct http_resp *resp, int status, const char *body)
{
    resp->content_type = "text/plain; charset=utf-8";
    http_resp_set(resp, status, body);
}

void console_serve(const struct http_req *req, struct http_resp *resp)
{
    const struct console_asset *a = console_find(req->path);
    if (!a) { /* as the API answers an unknown path */
        resp->content_type = "application/json";
        http_resp_set(resp, 404, "{\"error\":\"Object Not Found\",\"reason\":\"Not Found\"}");
        return;
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: GET, HEAD\r\n");
        return text(resp, 405, "Method Not Allowed\n");
    }
    snprintf(resp->extra_headers, sizeof resp->extra_headers, "ETag: %s\r\n" CONSOLE_HEADERS,
             a->etag);
    /* ?v=<hash> as index.html writes it: the ETag without its quotes. */
    size_t hl = strlen(a->etag) - 2;
    bool versioned = !strncmp(req->query, "v=", 2) && strlen(req->query + 2) == hl &&
                     !strncmp(req->query + 2, a->etag + 1, hl);
    resp->cache_control = versioned ? "public, max-age=31536000, immutable" : "no-cache";
    resp->content_type = a->content_type;
    if (req->if_none_match && etag_matches(req->if_none_match, a->etag)) {
        resp->status = 304;
        free(resp->body);
        resp->body = NULL;
        resp->body_len = 0;
        return;
    }
    resp->status = 200;
    free(resp->body);
    resp->body_len = a->len;
    resp->body = malloc(a->len ? a->len : 1); /* http_resp owns its body: a copy (no hot path) */
    if (!resp->body) {
        resp->body_len = 0;
        return text(resp, 503, "Out of memory\n");
    }
    memcpy(resp->body, a->data, a->len);
}
