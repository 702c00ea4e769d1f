/* http.h — a small HTTP/1.1 server on the broker's libuv loop for the management API: requests
 * parsed by Debian's libhttp-parser, keep-alive, bodies up to HTTP_BODY_MAX (413 beyond, as
 * RabbitMQ's 20 MiB limit), responses written in request order. The handler runs synchronously
 * on the loop and fills a response; nothing here knows what the paths mean.
 * Owns the listener, its connections and their buffers. */
#ifndef WARREN_HTTP_H
#define WARREN_HTTP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "lib/list.h"
#include "lib/tls.h"

#define HTTP_BODY_MAX (20u << 20)

struct http_req {
    const char *method;   /* "GET", "PUT", ... */
    const char *path;     /* the raw path, not decoded ("/api/vhosts/%2F") */
    const char *query;    /* the raw query after '?', "" when none */
    const char *auth;     /* the Authorization header, NULL when absent */
    const char *reason;   /* the X-Reason header (connection closes), NULL when absent */
    const char *if_none_match; /* the If-None-Match header (up to 127 bytes), NULL when absent */
    bool xhr;             /* X-Requested-With: XMLHttpRequest (the console's requests) */
    const char *body;     /* NUL-terminated (the NUL is not counted) */
    size_t body_len;
    bool loopback;        /* the client connected from a loopback address */
    const char *peer;     /* "addr:port", for logs */
    void *conn;           /* the connection, for http_release() of a held response */
};

struct http_resp {
    int status;
    const char *content_type;   /* static; default application/json */
    char *body;                 /* owned (malloc), may be NULL */
    size_t body_len;
    char extra_headers[2048];   /* "Name: value\r\n" lines (Location, WWW-Authenticate) */
    const char *cache_control;  /* static; NULL: "no-cache" */
    bool hold;                  /* set by the handler: keep the response until http_release */
};

/* Sends the response the handler held for req->conn (kept in order: the connection reads no
 * further request meanwhile). Frees the connection when it closed in the meantime. */
void http_release(void *conn);

/* Sets resp's body to a copy of text; false when memory is short. */
bool http_resp_set(struct http_resp *resp, int status, const char *text);

typedef void (*http_handler)(const struct http_req *req, struct http_resp *resp, void *arg);

struct http_server {
    uv_tcp_t tcp;
    const char *what;       /* "management API", "Prometheus endpoint": for log lines */
    const char *key;        /* its configuration key, named when the port cannot be had */
    uv_loop_t *loop;        /* borrowed */
    http_handler handler;
    void *arg;
    struct list conns;      /* of http_conn.link */
    bool open;
    SSL_CTX *tls_ctx;       /* owned: HTTPS; NULL for plain HTTP */
    uint32_t idle_timeout_ms;    /* a connection idle between requests is closed */
    uint32_t request_timeout_ms; /* a request must arrive whole in this time, or 408 */
};

/* Listens on addr ("" = every IPv4 and IPv6 address) and port, over HTTPS with ctx when it is
 * not NULL (taken over: freed by http_stop, or here on failure). 0 or a libuv error (logged). */
int http_start(struct http_server *s, uv_loop_t *loop, const char *what, const char *key,
               const char *addr, int port, SSL_CTX *ctx, http_handler handler, void *arg);
/* Where a surface listens: plain HTTP on ip:port and/or HTTPS on ssl_ip:ssl_port with ssl_ctx
 * (a port <= 0: not that one; "" = every address). */
struct http_ports {
    const char *ip, *ssl_ip;
    int port, ssl_port;
    SSL_CTX *ssl_ctx; /* taken over by the surface's start function, even when it fails */
    uint32_t idle_timeout_ms, request_timeout_ms; /* for both listeners; 0: 120000 */
};
/* Sets s's timeouts from ports (called after http_start). */
void http_set_timeouts(struct http_server *s, const struct http_ports *ports);

/* Replaces the HTTPS context (SIGHUP): new connections use ctx, open ones keep theirs. */
void http_set_tls(struct http_server *s, SSL_CTX *ctx);
/* Closes the listener and every connection (the loop then runs out of their handles). */
void http_stop(struct http_server *s);

#endif
