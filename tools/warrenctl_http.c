/* warrenctl_http.c — warrenctl's HTTP client for the management API: one libcurl handle with
 * basic auth, the response body collected and parsed as JSON, and the mapping from a failed
 * request to one sentence on stderr and an exit code. Does not build paths or print results.
 * Invariant: an api_resp is either zeroed or fully owned (text always set after api_send). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "warrenctl_http.h"

int api_open(struct api *a, const char *url, const char *user, const char *password)
{
    size_t n = strlen(url);
    while (n && url[n - 1] == '/')
        n--;
    a->url = strndup(url, n); /* a->cacert is the caller's to set */
    a->user = user;
    a->password = password;
    a->curl = curl_easy_init();
    if (!a->url || !a->curl) {
        api_close(a);
        return -ENOMEM;
    }
    return 0;
}

void api_close(struct api *a)
{
    free(a->url);
    a->url = NULL;
    if (a->curl)
        curl_easy_cleanup(a->curl);
    a->curl = NULL;
}

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    return fwrite(p, size, n, arg) * size;
}

int api_send(struct api *a, const char *method, const char *path, const char *body,
             const char *header, struct api_resp *r)
{
    memset(r, 0, sizeof *r);
    size_t len = 0;
    FILE *out = open_memstream(&r->text, &len);
    char *url = NULL;
    /* No Accept header: RabbitMQ answers an unknown path with 406 instead of 404 then. */
    struct curl_slist *hdr = NULL;
    if (body)
        hdr = curl_slist_append(hdr, "Content-Type: application/json");
    if (header)
        hdr = curl_slist_append(hdr, header);
    if (!out || ((body || header) && !hdr) || asprintf(&url, "%s%s", a->url, path) < 0) {
        snprintf(r->err, sizeof r->err, "out of memory");
        goto done;
    }
    CURL *c = a->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    curl_easy_setopt(c, CURLOPT_USERNAME, a->user);
    curl_easy_setopt(c, CURLOPT_PASSWORD, a->password);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    if (a->cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, a->cacert);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->err);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        if (!r->err[0])
            snprintf(r->err, sizeof r->err, "%s", curl_easy_strerror(rc));
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    }
done:
    if (out)
        fclose(out);
    if (!r->text)
        r->text = strdup("");
    if (r->status && r->text && r->text[0])
        r->json = json_loads(r->text, JSON_DECODE_ANY, NULL);
    curl_slist_free_all(hdr);
    free(url);
    return r->status ? 0 : -1;
}

void api_resp_free(struct api_resp *r)
{
    json_decref(r->json);
    free(r->text);
    memset(r, 0, sizeof *r);
}

/* The API's "reason" (or the raw body, first line) in buf. */
static const char *reason(const struct api_resp *r, char *buf, size_t size)
{
    json_t *why = json_object_get(r->json, "reason");
    if (json_is_string(why)) {
        snprintf(buf, size, "%s", json_string_value(why));
    } else if (why) {
        char *s = json_dumps(why, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(buf, size, "%s", s ? s : "?");
        free(s);
    } else {
        snprintf(buf, size, "%.*s", (int)strcspn(r->text ? r->text : "", "\r\n"),
                 r->text ? r->text : "");
    }
    return buf[0] ? buf : "no reason given";
}

int api_fail(const struct api *a, const char *method, const char *path,
             const struct api_resp *r, const char *what)
{
    char buf[512];
    const char *why;
    long s = r->status;
    if (!s) {
        fprintf(stderr, "warrenctl: cannot reach the management API at %s: %s.\n", a->url,
                r->err);
        return EXIT_UNAVAILABLE;
    }
    why = reason(r, buf, sizeof buf);
    if (s == 401 && (strstr(why, "administrator") || strstr(why, "management"))) {
        fprintf(stderr, "warrenctl: user '%s' may not do this (401 from the management API: "
                        "%s); it needs the administrator tag.\n", a->user, why);
        return EXIT_NOPERM;
    }
    if (s == 401) {
        fprintf(stderr, "warrenctl: the management API refused the credentials of user '%s' "
                        "(401: %s); check --user and --password.\n", a->user, why);
        return EXIT_NOPERM;
    }
    if (s == 404 && what) {
        fprintf(stderr, "warrenctl: %s was not found (%s %s answered 404).\n", what, method,
                path);
        return EXIT_DATA;
    }
    if (s == 404) {
        fprintf(stderr, "warrenctl: %s %s answered 404: this broker does not serve it.\n",
                method, path);
        return EXIT_DATA;
    }
    fprintf(stderr, "warrenctl: the broker refused %s %s with %ld: %s.\n", method, path, s,
            why);
    return s >= 500 ? EXIT_UNAVAILABLE : EXIT_DATA;
}

int api_call(struct api *a, const char *method, const char *path, const char *body,
             const char *header, const char *what, json_t **ret_json)
{
    struct api_resp r;
    int rc = 0;
    api_send(a, method, path, body, header, &r);
    if (r.status < 200 || r.status > 299)
        rc = api_fail(a, method, path, &r, what);
    else if (ret_json)
        *ret_json = json_incref(r.json);
    api_resp_free(&r);
    return rc;
}

void api_escape(FILE *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p))
            fputc(*p, out);
        else
            fprintf(out, "%%%02X", *p);
    }
}
