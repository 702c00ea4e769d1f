/* http.c — the HTTP/1.1 server of http.h. One struct http_conn per client: libhttp-parser is fed
 * every byte read, the request (URL, Authorization, body) accumulates in the connection, and on
 * message-complete the handler answers at once; the answer is written with one uv_write. Over
 * HTTPS (lib/tls.h) what is read is decrypted before it is parsed, and answers are encrypted
 * into the session's buffer, which leaves with one uv_write at a time.
 * Invariant: a connection's buffers never exceed HTTP_URL_MAX + HTTP_BODY_MAX; a request past
 * either is answered 414/413 and the connection is closed. */
#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lib/log.h"
#include "lib/peer.h"
#include "lib/tls.h"
#include "broker/admin/http.h"

#define HTTP_URL_MAX 8192
#define HTTP_AUTH_MAX 2048

struct http_conn {
    uv_tcp_t tcp;
    struct http_server *srv; /* borrowed */
    struct list link;        /* in srv->conns */
    http_parser parser;
    char peer[64];
    bool loopback;
    bool closing;
    bool too_large;          /* the current request went past a limit: answered, then closed */
    int too_large_status;
    char *url;               /* owned */
    size_t url_len, url_cap;
    char auth[HTTP_AUTH_MAX];
    size_t auth_len;
    bool has_auth;
    char reason[256];        /* X-Reason */
    size_t reason_len;
    bool has_reason;
    char inm[128];           /* If-None-Match, first 127 bytes */
    size_t inm_len;
    bool has_inm;
    char xrw[16];            /* X-Requested-With, first 15 bytes */
    size_t xrw_len;
    char field[32];          /* the header field being read (enough for the ones we want) */
    size_t field_len;
    bool field_too_long;
    bool in_value;           /* the last header callback was a value */
    enum { H_OTHER, H_AUTH, H_EXPECT, H_REASON, H_INM, H_XRW } hdr;
    char *body;              /* owned */
    size_t body_len, body_cap;
    int pending_writes;
    bool held;               /* a response waits for http_release(); nothing more is parsed */
    bool orphan;             /* closed while held: http_release() frees it */
    struct http_resp held_resp;
    bool held_keep_alive, held_head;
    char *unparsed;          /* owned: input read after the held request */
    size_t unparsed_len;
    struct tls *tls;         /* owned: HTTPS session; NULL over plain TCP */
    uv_write_t tls_wreq;     /* the ciphertext write in flight */
    bool tls_writing;
    bool responded;          /* an answer went out: keep-alive decides from now on */
    uv_timer_t timer;        /* idle_timeout between requests, request_timeout during one */
    int handles;             /* uv handles (tcp, timer) not yet closed */
    bool in_request;         /* a request's first byte came, its end did not */
};

struct http_write {
    uv_write_t req;
    struct http_conn *c;
    char *buf; /* owned */
};

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Request Entity Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

bool http_resp_set(struct http_resp *resp, int status, const char *text)
{
    free(resp->body);
    resp->status = status;
    resp->body_len = strlen(text);
    resp->body = malloc(resp->body_len + 1);
    if (!resp->body) {
        resp->body_len = 0;
        return false;
    }
    memcpy(resp->body, text, resp->body_len + 1);
    return true;
}

/* ---- lifetime ----------------------------------------------------------------------------- */

static void conn_free(struct http_conn *c)
{
    if (c->tls) {
        tls_free(c->tls);
        free(c->tls);
    }
    free(c->url);
    free(c->body);
    free(c->held_resp.body);
    free(c->unparsed);
    free(c);
}

static void on_closed(uv_handle_t *h)
{
    struct http_conn *c = h->data;
    if (--c->handles > 0)
        return;
    if (c->held)
        c->orphan = true; /* http_release() will free it */
    else
        conn_free(c);
}

static void conn_close(struct http_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    list_remove(&c->link);
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    uv_close((uv_handle_t *)&c->timer, on_closed);
}

static void on_timeout(uv_timer_t *t);

/* Between requests the connection may stay idle for idle_timeout_ms; a request, once begun,
 * must arrive whole within request_timeout_ms; an answer waiting for storage stops the clock. */
static void arm_timer(struct http_conn *c)
{
    if (c->closing)
        return;
    if (c->held) {
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, on_timeout,
                   c->in_request ? c->srv->request_timeout_ms : c->srv->idle_timeout_ms, 0);
}

static void refuse(struct http_conn *c, int status, const char *why);

static void on_timeout(uv_timer_t *t)
{
    struct http_conn *c = t->data;
    if (c->closing || c->too_large)
        return;
    if (!c->in_request) {
        conn_close(c);
        return;
    }
    log_info("%s: a request from %s did not arrive whole within %u ms; answering 408 and "
             "closing", c->srv->what, c->peer, c->srv->request_timeout_ms);
    refuse(c, 408, "the request did not arrive whole in time");
}

static void on_written(uv_write_t *req, int status)
{
    struct http_write *w = (struct http_write *)req;
    struct http_conn *c = w->c;
    free(w->buf);
    free(w);
    c->pending_writes--;
    /* The parser's keep-alive is the latest request's: while that one's answer is held, an
     * earlier answer (or a 100 Continue) written now must not close (found by fuzz_http). */
    if (status < 0 || (c->too_large && !c->pending_writes) ||
        (!http_should_keep_alive(&c->parser) && !c->pending_writes && !c->held))
        conn_close(c);
}

static void on_tls_written(uv_write_t *req, int status);

/* Starts writing the session's ciphertext unless a write is in flight. */
static void tls_send(struct http_conn *c)
{
    uv_buf_t b;
    if (c->tls_writing || c->closing || !tls_take(c->tls, &b))
        return;
    c->tls_wreq.data = c;
    if (uv_write(&c->tls_wreq, (uv_stream_t *)&c->tcp, &b, 1, on_tls_written) < 0) {
        tls_written(c->tls);
        conn_close(c);
        return;
    }
    c->tls_writing = true;
}

static void on_tls_written(uv_write_t *req, int status)
{
    struct http_conn *c = req->data;
    c->tls_writing = false;
    tls_written(c->tls);
    if (status < 0) {
        conn_close(c);
        return;
    }
    tls_send(c);
    if (!c->tls_writing && c->responded && !c->held &&
        (c->too_large || !http_should_keep_alive(&c->parser)))
        conn_close(c);
}

/* Writes status line, headers and body as one buffer; cache NULL is "no-cache". body NULL
 * (HEAD) sends body_len as the Content-Length and no body; a 304 has no Content-Length. */
static void send_raw(struct http_conn *c, int status, const char *ctype, const char *extra,
                     const char *cache, const char *body, size_t body_len, bool keep_alive)
{
    char head[3072], clen[48] = "";
    if (status != 304)
        snprintf(clen, sizeof clen, "Content-Length: %zu\r\n", body_len);
    int n = status == 100
                ? snprintf(head, sizeof head, "HTTP/1.1 100 Continue\r\n\r\n")
                : snprintf(head, sizeof head,
                           "HTTP/1.1 %d %s\r\nServer: Warren\r\n%s%s%s%s"
                           "Cache-Control: %s\r\n%s%s\r\n",
                           status, reason(status), ctype ? "Content-Type: " : "",
                           ctype ? ctype : "", ctype ? "\r\n" : "", clen,
                           cache ? cache : "no-cache", extra ? extra : "",
                           keep_alive ? "" : "Connection: close\r\n");
    if (n < 0 || (size_t)n >= sizeof head)
        n = 0;
    if (status != 100)
        c->responded = true;
    if (c->tls) {
        uv_buf_t parts[2] = {uv_buf_init(head, (unsigned)n),
                             uv_buf_init((char *)body, body ? (unsigned)body_len : 0)};
        if (tls_write(c->tls, parts, body && body_len ? 2 : 1) < 0) {
            log_error("%s: cannot encrypt a response to %s; closing the connection",
                      c->srv->what, c->peer);
            conn_close(c);
            return;
        }
        tls_send(c);
        return;
    }
    struct http_write *w = malloc(sizeof *w);
    size_t blen = body ? body_len : 0; /* a HEAD answer: the length, not the body */
    char *buf = w ? malloc((size_t)n + blen) : NULL;
    if (!buf) {
        free(w);
        log_error("%s: out of memory for a response to %s; closing the connection",
                  c->srv->what, c->peer);
        conn_close(c);
        return;
    }
    memcpy(buf, head, (size_t)n);
    if (blen)
        memcpy(buf + n, body, blen);
    w->c = c;
    w->buf = buf;
    uv_buf_t b = uv_buf_init(buf, (unsigned)((size_t)n + blen));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
        free(buf);
        free(w);
        conn_close(c);
        return;
    }
    c->pending_writes++;
}

static void send_resp(struct http_conn *c, struct http_resp *resp, bool head, bool keep_alive)
{
    bool typed = resp->body_len || (resp->status != 204 && resp->status != 304);
    send_raw(c, resp->status, typed ? resp->content_type : NULL, resp->extra_headers,
             resp->cache_control, head ? NULL : resp->body, resp->body_len,
             keep_alive);
    free(resp->body);
    resp->body = NULL;
}

/* Refuses the request in progress with status and closes once that is written. */
static void refuse(struct http_conn *c, int status, const char *why)
{
    if (c->too_large)
        return;
    c->too_large = true;
    char body[256];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"reason\":\"%s\"}",
                     status == 413 ? "payload_too_large" : "bad_request", why);
    send_raw(c, status, "application/json", NULL, NULL, body, (size_t)n, false);
}

/* ---- parser callbacks ------------------------------------------------------------------- */

static int grow(char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    char *q = realloc(*p, n);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct http_conn *c = p->data;
    c->in_request = true;
    arm_timer(c);
    c->url_len = c->body_len = c->auth_len = c->field_len = 0;
    c->has_auth = c->has_reason = c->in_value = c->field_too_long = false;
    c->has_inm = false;
    c->reason_len = c->inm_len = c->xrw_len = 0;
    c->hdr = H_OTHER;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    if (c->url_len + len > HTTP_URL_MAX) {
        refuse(c, 414, "URI too long");
        return 1;
    }
    if (grow(&c->url, &c->url_cap, c->url_len + len + 1) < 0)
        return 1;
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    c->url[c->url_len] = 0;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    if (c->in_value) { /* a new field begins */
        c->in_value = false;
        c->field_len = 0;
        c->field_too_long = false;
    }
    if (c->field_len + len >= sizeof c->field) {
        c->field_too_long = true;
        return 0;
    }
    memcpy(c->field + c->field_len, at, len);
    c->field_len += len;
    c->field[c->field_len] = 0;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    if (!c->in_value) { /* the first piece of this value: which header is it? */
        c->in_value = true;
        c->hdr = H_OTHER;
        if (!c->field_too_long && !strcasecmp(c->field, "authorization")) {
            c->hdr = H_AUTH;
            c->has_auth = true;
            c->auth_len = 0;
        } else if (!c->field_too_long && !strcasecmp(c->field, "expect")) {
            c->hdr = H_EXPECT;
        } else if (!c->field_too_long && !strcasecmp(c->field, "x-reason")) {
            c->hdr = H_REASON;
            c->has_reason = true;
            c->reason_len = 0;
        } else if (!c->field_too_long && !strcasecmp(c->field, "if-none-match")) {
            c->hdr = H_INM;
            c->has_inm = true;
            c->inm_len = 0;
        } else if (!c->field_too_long && !strcasecmp(c->field, "x-requested-with")) {
            c->hdr = H_XRW;
            c->xrw_len = 0;
        }
    }
    if (c->hdr == H_AUTH) {
        if (c->auth_len + len >= sizeof c->auth) {
            refuse(c, 400, "Authorization header too long");
            return 1;
        }
        memcpy(c->auth + c->auth_len, at, len);
        c->auth_len += len;
        c->auth[c->auth_len] = 0;
    } else if (c->hdr == H_REASON) { /* kept up to its first 255 bytes */
        size_t n = len < sizeof c->reason - 1 - c->reason_len ? len
                                                               : sizeof c->reason - 1 - c->reason_len;
        memcpy(c->reason + c->reason_len, at, n);
        c->reason_len += n;
        c->reason[c->reason_len] = 0;
    } else if (c->hdr == H_INM) { /* kept up to its first 127 bytes */
        size_t n = len < sizeof c->inm - 1 - c->inm_len ? len : sizeof c->inm - 1 - c->inm_len;
        memcpy(c->inm + c->inm_len, at, n);
        c->inm_len += n;
        c->inm[c->inm_len] = 0;
    } else if (c->hdr == H_XRW) { /* kept up to its first 15 bytes, maybe in pieces */
        size_t n = len < sizeof c->xrw - 1 - c->xrw_len ? len : sizeof c->xrw - 1 - c->xrw_len;
        memcpy(c->xrw + c->xrw_len, at, n);
        c->xrw_len += n;
        c->xrw[c->xrw_len] = 0;
    } else if (c->hdr == H_EXPECT && len >= 3 && !strncmp(at, "100", 3)) {
        send_raw(c, 100, NULL, NULL, NULL, NULL, 0, true);
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    if (p->content_length != ULLONG_MAX && p->content_length > HTTP_BODY_MAX) {
        refuse(c, 413, "request body larger than 20 MiB");
        return 1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    if (c->body_len + len > HTTP_BODY_MAX) { /* a chunked body past the limit */
        refuse(c, 413, "request body larger than 20 MiB");
        return 1;
    }
    if (grow(&c->body, &c->body_cap, c->body_len + len + 1) < 0)
        return 1;
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    c->body[c->body_len] = 0;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (!c->url || http_parser_parse_url(c->url, c->url_len, 0, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH))) {
        refuse(c, 400, "malformed request target");
        return 1;
    }
    /* Path and query, NUL-terminated in place (the URL buffer is ours until the next request). */
    char *path = c->url + u.field_data[UF_PATH].off;
    char *query = "";
    if (u.field_set & (1 << UF_QUERY)) {
        query = c->url + u.field_data[UF_QUERY].off;
        query[u.field_data[UF_QUERY].len] = 0;
    }
    path[u.field_data[UF_PATH].len] = 0;
    if (!c->body && grow(&c->body, &c->body_cap, 1) < 0)
        return 1;
    c->body[c->body_len] = 0;
    struct http_req req = {
        .method = http_method_str((enum http_method)p->method), .path = path, .query = query,
        .auth = c->has_auth ? c->auth : NULL, .reason = c->has_reason ? c->reason : NULL,
        .if_none_match = c->has_inm ? c->inm : NULL,
        .xhr = c->xrw_len == 14 && !strncasecmp(c->xrw, "XMLHttpRequest", 14),
        .body = c->body, .body_len = c->body_len,
        .loopback = c->loopback, .peer = c->peer, .conn = c};
    struct http_resp resp = {.status = 200, .content_type = "application/json"};
    c->srv->handler(&req, &resp, c->srv->arg);
    bool head = p->method == HTTP_HEAD;
    if (resp.hold) { /* answered by http_release(); parse nothing more until then */
        c->held = true;
        c->held_resp = resp;
        c->held_keep_alive = http_should_keep_alive(p);
        c->held_head = head;
        uv_read_stop((uv_stream_t *)&c->tcp);
        http_parser_pause(p, 1);
    } else {
        send_resp(c, &resp, head, http_should_keep_alive(p));
    }
    c->in_request = false;
    arm_timer(c);
    /* Shrink what a large request grew, so an idle connection holds little. */
    if (c->body_cap > 65536) {
        free(c->body);
        c->body = NULL;
        c->body_cap = 0;
    }
    c->body_len = 0;
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- I/O ------------------------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    static char block[65536]; /* parsed at once, never kept: one buffer serves every read */
    (void)suggested;
    *buf = uv_buf_init(block, sizeof block);
}

static void parse(struct http_conn *c, const char *p, size_t n);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

void http_release(void *conn)
{
    struct http_conn *c = conn;
    c->held = false;
    if (c->orphan) {
        conn_free(c);
        return;
    }
    send_resp(c, &c->held_resp, c->held_head, c->held_keep_alive);
    if (c->closing)
        return;
    arm_timer(c);
    http_parser_pause(&c->parser, 0);
    char *rest = c->unparsed;
    size_t len = c->unparsed_len;
    c->unparsed = NULL;
    c->unparsed_len = 0;
    if (rest)
        parse(c, rest, len);
    free(rest);
    if (!c->held && !c->closing && !c->too_large &&
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        conn_close(c);
}

/* HTTPS: decrypts all that arrived and parses it; sends what the session has to send. */
static void tls_input(struct http_conn *c, const char *p, size_t n)
{
    static char plain[65536]; /* parsed at once, never kept */
    char why[320];
    if (tls_feed(c->tls, p, n) < 0) {
        conn_close(c);
        return;
    }
    for (;;) {
        long r = tls_read(c->tls, plain, sizeof plain, why, sizeof why);
        if (r == TLS_ERROR) {
            log_info("%s: TLS %s with %s failed: %s; closing", c->srv->what,
                     c->tls->established ? "session" : "handshake", c->peer, why);
            c->too_large = true; /* nothing more is parsed; closed once the alert is out */
            c->responded = true;
            break;
        }
        if (r == TLS_CLOSED) {
            conn_close(c);
            return;
        }
        if (r == 0)
            break;
        parse(c, plain, (size_t)r);
        if (c->closing)
            return;
    }
    tls_send(c);
    if (c->too_large && !c->tls_writing)
        conn_close(c);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct http_conn *c = s->data;
    if (n < 0) {
        conn_close(c);
        return;
    }
    if (n == 0 || c->closing || c->too_large)
        return;
    if (c->tls)
        tls_input(c, buf->base, (size_t)n);
    else
        parse(c, buf->base, (size_t)n);
}

/* Feeds input to the parser; what follows a held request is kept for http_release(). */
static void parse(struct http_conn *c, const char *p, size_t n)
{
    size_t done = http_parser_execute(&c->parser, &settings, p, n);
    if (c->too_large || c->closing)
        return;
    if (c->held) {
        if (done < n) { /* appended: over TLS more may be decrypted after the hold began */
            char *keep = realloc(c->unparsed, c->unparsed_len + (n - done));
            if (!keep) {
                conn_close(c);
                return;
            }
            memcpy(keep + c->unparsed_len, p + done, n - done);
            c->unparsed = keep;
            c->unparsed_len += n - done;
        }
        return;
    }
    if (done != n || HTTP_PARSER_ERRNO(&c->parser) != HPE_OK) {
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        char why[160];
        snprintf(why, sizeof why, "malformed HTTP request: %s", http_errno_description(e));
        refuse(c, 400, why);
    }
}

static void describe_peer(struct http_conn *c)
{
    struct peer p;
    peer_describe(&c->tcp, false, &p);
    c->loopback = p.loopback;
    snprintf(c->peer, sizeof c->peer, "%s:%d", p.host, p.port);
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct http_server *s = listener->data;
    if (status < 0)
        return;
    struct http_conn *c = calloc(1, sizeof *c);
    if (!c) {
        log_error("%s: cannot accept a connection: out of memory", s->what);
        return;
    }
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    list_insert_tail(&s->conns, &c->link);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    describe_peer(c);
    if (s->tls_ctx && (!(c->tls = malloc(sizeof *c->tls)) || tls_init(c->tls, s->tls_ctx) < 0)) {
        log_error("%s: cannot accept a TLS connection from %s: out of memory", s->what, c->peer);
        free(c->tls);
        c->tls = NULL;
        conn_close(c);
        return;
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    arm_timer(c);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        conn_close(c);
}

int http_start(struct http_server *s, uv_loop_t *loop, const char *what, const char *key,
               const char *addr, int port, SSL_CTX *ctx, http_handler handler, void *arg)
{
    memset(s, 0, sizeof *s);
    s->tls_ctx = ctx;
    s->idle_timeout_ms = s->request_timeout_ms = 120000;
    s->what = what;
    s->key = key;
    s->loop = loop;
    s->handler = handler;
    s->arg = arg;
    list_init(&s->conns);
    struct sockaddr_storage sa;
    int rc = addr[0] ? uv_ip4_addr(addr, port, (struct sockaddr_in *)&sa) : -EINVAL;
    if (rc < 0)
        rc = uv_ip6_addr(addr[0] ? addr : "::", port, (struct sockaddr_in6 *)&sa);
    if (rc < 0) {
        log_error("%s: '%s' is not an IPv4 or IPv6 address", what, addr);
        tls_ctx_free(ctx);
        s->tls_ctx = NULL;
        return rc;
    }
    uv_tcp_init(loop, &s->tcp);
    s->tcp.data = s;
    s->open = true;
    if ((rc = uv_tcp_bind(&s->tcp, (struct sockaddr *)&sa, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&s->tcp, 128, on_connection)) < 0) {
        log_error("%s: cannot listen on %s port %d: %s; free the port or set %s", what,
                  addr[0] ? addr : "[::]", port, uv_strerror(rc), key);
        uv_close((uv_handle_t *)&s->tcp, NULL);
        s->open = false;
        tls_ctx_free(ctx);
        s->tls_ctx = NULL;
        return rc;
    }
    log_info("%s listening on %s port %d%s", what, addr[0] ? addr : "[::]", port,
             ctx ? " (HTTPS)" : "");
    return 0;
}

void http_set_timeouts(struct http_server *s, const struct http_ports *ports)
{
    if (ports->idle_timeout_ms)
        s->idle_timeout_ms = ports->idle_timeout_ms;
    if (ports->request_timeout_ms)
        s->request_timeout_ms = ports->request_timeout_ms;
}

void http_set_tls(struct http_server *s, SSL_CTX *ctx)
{
    tls_ctx_free(s->tls_ctx); /* open sessions keep a reference of their own */
    s->tls_ctx = ctx;
}

void http_stop(struct http_server *s)
{
    if (!s->open)
        return;
    s->open = false;
    uv_close((uv_handle_t *)&s->tcp, NULL);
    while (!list_empty(&s->conns))
        conn_close(list_entry(s->conns.next, struct http_conn, link));
    tls_ctx_free(s->tls_ctx);
    s->tls_ctx = NULL;
}
