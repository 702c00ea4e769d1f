/* warrenctl_http.h — warrenctl's one way to the broker: HTTP requests to the management API
 * (libcurl, basic auth, JSON bodies via jansson) and the one sentence a failed request becomes.
 * Owns the curl handle and each response; does not know verbs or output formats.
 * Invariant: every non-2xx answer or transport error is reported once, through api_fail(). */
#ifndef WARREN_TOOLS_WARRENCTL_HTTP_H
#define WARREN_TOOLS_WARRENCTL_HTTP_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

/* Exit codes (sysexits.h values, as rabbitmqctl uses them). */
enum {
    EXIT_USAGE = 64,       /* bad command line */
    EXIT_DATA = 65,        /* 400 or 404: the broker refused the data or lacks the object */
    EXIT_NOINPUT = 66,     /* a file to read is missing or unreadable */
    EXIT_UNAVAILABLE = 69, /* broker unreachable, or a 5xx */
    EXIT_CANTCREATE = 73,  /* a file to write cannot be written */
    EXIT_NOPERM = 77,      /* 401: wrong credentials or missing tag */
};

typedef struct api {
    char *url;            /* owned: base URL without a trailing '/' */
    const char *user;     /* borrowed: from argv or the environment, outlive the api */
    const char *password; /* borrowed: as user */
    const char *cacert;   /* borrowed: CA file for https:// (NULL: the system's) */
    CURL *curl;           /* owned: one handle, so that requests reuse the connection */
} api_t;

typedef struct api_resp {
    long status;                 /* HTTP status; 0 when the request did not get an answer */
    json_t *json;                /* owned: the parsed body, NULL when empty or not JSON */
    char *text;                  /* owned: the raw body, NUL-terminated (never NULL after send) */
    char err[CURL_ERROR_SIZE];   /* libcurl's reason when status is 0 */
} api_resp_t;

/* Prepares a for url (copied) with user and password (borrowed). -ENOMEM on failure. */
int api_open(struct api *a, const char *url, const char *user, const char *password);
void api_close(struct api *a);

/* Sends method path (path already encoded, starting with '/') with body (NULL: none) and one
 * extra header line (NULL: none). Fills *r (release with api_resp_free). Returns 0 when an
 * HTTP answer came back, whatever its status; -1 when the broker could not be reached. */
int api_send(struct api *a, const char *method, const char *path, const char *body,
             const char *header, struct api_resp *r);
void api_resp_free(struct api_resp *r);

/* Prints the one sentence r deserves on stderr ("warrenctl: ...") and returns the exit code.
 * what names the object a 404 means is missing ("vhost 'x'"); NULL: the path itself. */
int api_fail(const struct api *a, const char *method, const char *path,
             const struct api_resp *r, const char *what);

/* api_send, then api_fail unless the status is 2xx. Returns 0 or the exit code; on success
 * *ret_json (when not NULL) takes the parsed body (NULL when empty). */
int api_call(struct api *a, const char *method, const char *path, const char *body,
             const char *header, const char *what, json_t **ret_json);

/* s percent-encoded for one path segment (RFC 3986 unreserved characters kept), appended to
 * out (open_memstream). */
void api_escape(FILE *out, const char *s);

#endif
