/* tls.c — owns OpenSSL server contexts built from rabbitmq.conf's ssl_options and the TLS
 * sessions of connections: a memory BIO holds received ciphertext, and a BIO of our own appends
 * what OpenSSL writes to the session's output buffer, so that no ciphertext is copied twice and
 * the caller sends it with one uv_write. Invariant: OpenSSL's thread-local error queue is empty
 * before and after every call into a session, so that one connection's failure never shows up
 * as another's. */
#include "lib/tls.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* ---- contexts ------------------------------------------------------------------------ */

static void openssl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    if (!e) {
        snprintf(buf, cap, "unknown error");
        return;
    }
    const char *reason = ERR_reason_error_string(e);
    if (reason)
        snprintf(buf, cap, "%s", reason);
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
}

static int password_cb(char *buf, int size, int rwflag, void *u)
{
    (void)rwflag;
    const char *pw = u;
    if (!pw)
        return 0;
    size_t n = strlen(pw);
    if (n > (size_t)size)
        return 0;
    memcpy(buf, pw, n);
    return (int)n;
}

/* Splits o->ciphers into TLS 1.2 cipher names and TLS 1.3 suites (TLS_*). */
static bool set_ciphers(SSL_CTX *ctx, const char *ciphers)
{
    char v12[1024] = "", v13[1024] = "";
    size_t n12 = 0, n13 = 0;
    for (const char *p = ciphers; *p;) {
        size_t len = strcspn(p, ":");
        bool is13 = strncmp(p, "TLS_", 4) == 0;
        char *dst = is13 ? v13 : v12;
        size_t *n = is13 ? &n13 : &n12;
        *n += (size_t)snprintf(dst + *n, sizeof v12 - *n, "%s%.*s", *n ? ":" : "", (int)len, p);
        if (*n >= sizeof v12)
            return false;
        p += len + (p[len] == ':');
    }
    if (n12 && SSL_CTX_set_cipher_list(ctx, v12) != 1)
        return false;
    if (n13 && SSL_CTX_set_ciphersuites(ctx, v13) != 1)
        return false;
    return true;
}

SSL_CTX *tls_ctx_new(const struct tls_options *o, char *err, size_t errlen)
{
    char why[256];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        openssl_reason(why, sizeof why);
        snprintf(err, errlen, "cannot create a TLS context: %s", why);
        return NULL;
    }
    unsigned v = o->versions ? o->versions : TLS_V12 | TLS_V13;
    SSL_CTX_set_min_proto_version(ctx, v & TLS_V12 ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, v & TLS_V13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    /* Hostile clients must not make us renegotiate; idle sessions give their buffers back. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 (o->honor_cipher_order ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"warren", 6);
    const char *what = "", *file = "";
    if (o->password) {
        SSL_CTX_set_default_passwd_cb(ctx, password_cb);
        SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)o->password);
    }
    if (!o->certfile || !o->keyfile) {
        snprintf(err, errlen, "TLS needs ssl_options.certfile and ssl_options.keyfile");
        goto fail_quiet;
    }
    what = "certfile", file = o->certfile;
    if (SSL_CTX_use_certificate_chain_file(ctx, o->certfile) != 1)
        goto fail;
    what = "keyfile", file = o->keyfile;
    if (SSL_CTX_use_PrivateKey_file(ctx, o->keyfile, SSL_FILETYPE_PEM) != 1)
        goto fail;
    if (SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    if (o->cacertfile) {
        what = "cacertfile", file = o->cacertfile;
        if (SSL_CTX_load_verify_locations(ctx, o->cacertfile, NULL) != 1)
            goto fail;
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->cacertfile);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
    }
    if (o->ciphers[0] && !set_ciphers(ctx, o->ciphers)) {
        what = "ciphers", file = o->ciphers;
        goto fail;
    }
    if (o->verify_peer) {
        if (!o->cacertfile) {
            snprintf(err, errlen, "verify = verify_peer needs a cacertfile to verify against");
            goto fail_quiet;
        }
        SSL_CTX_set_verify(ctx,
                           SSL_VERIFY_PEER |
                               (o->fail_if_no_peer_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                           NULL);
        if (o->depth > 0)
            SSL_CTX_set_verify_depth(ctx, o->depth);
    }
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL); /* o->password is borrowed */
    return ctx;
fail:
    openssl_reason(why, sizeof why);
    snprintf(err, errlen, "%s '%s' cannot be used: %s", what, file, why);
fail_quiet:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

void tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}

/* ---- the output BIO: appends to t->out[t->fill] ---------------------------------------- */

static BIO_METHOD *out_method;

static int out_write(BIO *b, const char *data, size_t len, size_t *written)
{
    struct tls *t = BIO_get_data(b);
    struct tls_buf *o = &t->out[t->fill];
    if (o->len + len > o->cap) {
        size_t cap = o->cap ? o->cap : 1024; /* a heartbeat's record fits */
        while (cap < o->len + len)
            cap *= 2;
        uint8_t *p = realloc(o->p, cap);
        if (!p) {
            t->oom = true;
            return 0;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, data, len);
    o->len += len;
    *written = len;
    return 1;
}

static long out_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int out_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *get_out_method(void)
{
    if (!out_method) { /* the loop's thread only */
        BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "warren-out");
        if (!m || BIO_meth_set_write_ex(m, out_write) != 1 ||
            BIO_meth_set_ctrl(m, out_ctrl) != 1 || BIO_meth_set_create(m, out_create) != 1) {
            BIO_meth_free(m);
            return NULL;
        }
        out_method = m;
    }
    return out_method;
}

/* ---- sessions ---------------------------------------------------------------------------- */

int tls_init(struct tls *t, SSL_CTX *ctx)
{
    *t = (struct tls){0};
    BIO_METHOD *m = get_out_method();
    BIO *wbio = m ? BIO_new(m) : NULL;
    t->rbio = BIO_new(BIO_s_mem());
    t->ssl = SSL_new(ctx);
    if (!wbio || !t->rbio || !t->ssl) {
        BIO_free(wbio);
        BIO_free(t->rbio);
        SSL_free(t->ssl);
        *t = (struct tls){0};
        ERR_clear_error();
        return -ENOMEM;
    }
    BIO_set_data(wbio, t);
    BIO_set_mem_eof_return(t->rbio, -1); /* empty means "more later", not end of file */
    SSL_set_bio(t->ssl, t->rbio, wbio);   /* the SSL owns both BIOs now */
    SSL_set_accept_state(t->ssl);
    return 0;
}

void tls_free(struct tls *t)
{
    SSL_free(t->ssl);
    free(t->out[0].p);
    free(t->out[1].p);
    *t = (struct tls){0};
}

int tls_feed(struct tls *t, const void *p, size_t n)
{
    while (n) {
        int chunk = n > (1u << 30) ? 1 << 30 : (int)n;
        if (BIO_write(t->rbio, p, chunk) != chunk) {
            ERR_clear_error();
            return -ENOMEM;
        }
        p = (const uint8_t *)p + chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

long tls_read(struct tls *t, void *dst, size_t cap, char *err, size_t errlen)
{
    if (!cap)
        return 0;
    size_t n = 0;
    int rc = SSL_read_ex(t->ssl, dst, cap, &n);
    if (!t->established && SSL_is_init_finished(t->ssl))
        t->established = true;
    if (rc == 1)
        return (long)n;
    switch (SSL_get_error(t->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        ERR_clear_error();
        return t->oom ? (snprintf(err, errlen, "out of memory"), TLS_ERROR) : 0;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return TLS_CLOSED;
    default: {
        char why[256];
        openssl_reason(why, sizeof why);
        long vr = SSL_get_verify_result(t->ssl);
        if (vr != X509_V_OK)
            snprintf(err, errlen, "%s (certificate: %s)", why,
                     X509_verify_cert_error_string(vr));
        else
            snprintf(err, errlen, "%s", why);
        return TLS_ERROR;
    }
    }
}

int tls_write(struct tls *t, const uv_buf_t *iov, unsigned n)
{
    if (!t->established || t->oom)
        return TLS_ERROR;
    /* Small pieces (frame headers, short bodies) are gathered into one record's worth, so that
     * a turn's output becomes few full records rather than many tiny ones. */
    uint8_t stage[16384];
    size_t staged = 0;
    for (unsigned i = 0; i <= n; i++) {
        const uint8_t *p = i < n ? (const uint8_t *)iov[i].base : NULL;
        size_t len = i < n ? iov[i].len : 0;
        bool last = i == n;
        if (!last && staged + len <= sizeof stage) {
            memcpy(stage + staged, p, len);
            staged += len;
            continue;
        }
        size_t w;
        if (staged && SSL_write_ex(t->ssl, stage, staged, &w) != 1)
            goto fail;
        staged = 0;
        if (last)
            break;
        if (len < sizeof stage) {
            memcpy(stage, p, len);
            staged = len;
        } else if (SSL_write_ex(t->ssl, p, len, &w) != 1) {
            goto fail;
        }
    }
    return t->oom ? TLS_ERROR : 0;
fail:
    ERR_clear_error();
    return TLS_ERROR;
}

void tls_shutdown(struct tls *t)
{
    if (t->established && !t->oom)
        (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
}

bool tls_take(struct tls *t, uv_buf_t *buf)
{
    if (t->in_flight || !t->out[t->fill].len)
        return false;
    struct tls_buf *o = &t->out[t->fill];
    *buf = uv_buf_init((char *)o->p, (unsigned)o->len);
    t->fill ^= 1;
    t->in_flight = true;
    return true;
}

void tls_written(struct tls *t)
{
    struct tls_buf *o = &t->out[!t->fill];
    o->len = 0;
    if (o->cap > (256u << 10)) { /* a burst: do not keep its buffer */
        free(o->p);
        *o = (struct tls_buf){0};
    }
    t->in_flight = false;
}

void tls_trim(struct tls *t)
{
    if (t->in_flight || tls_pending(t))
        return;
    for (int i = 0; i < 2; i++) {
        free(t->out[i].p);
        t->out[i] = (struct tls_buf){0};
    }
}

size_t tls_pending(const struct tls *t)
{
    return t->out[0].len + t->out[1].len;
}

bool tls_peer_has_cert(const struct tls *t)
{
    X509 *x = SSL_get0_peer_certificate(t->ssl);
    return x != NULL;
}

/* name in RFC 4514 form, most specific first ("CN=client,O=Example,C=US"), as RabbitMQ prints
 * certificate subjects and issuers. */
static bool name_text(X509_NAME *name, char *buf, size_t cap)
{
    bool ok = false;
    BIO *b = BIO_new(BIO_s_mem());
    if (b && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        char *p;
        long len = BIO_get_mem_data(b, &p);
        if (len >= 0 && (size_t)len < cap) {
            memcpy(buf, p, (size_t)len);
            buf[len] = 0;
            ok = true;
        }
    }
    BIO_free(b);
    return ok;
}

bool tls_peer_name(struct tls *t, bool whole_dn, char *buf, size_t cap)
{
    X509 *x = SSL_get0_peer_certificate(t->ssl);
    X509_NAME *name = x ? X509_get_subject_name(x) : NULL;
    if (!name || !cap)
        return false;
    bool ok = false;
    if (!whole_dn) {
        int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
        X509_NAME_ENTRY *e = i >= 0 ? X509_NAME_get_entry(name, i) : NULL;
        unsigned char *utf8 = NULL;
        int len = e ? ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e)) : -1;
        if (len >= 0 && (size_t)len < cap && !memchr(utf8, 0, (size_t)len)) {
            memcpy(buf, utf8, (size_t)len);
            buf[len] = 0;
            ok = true;
        }
        OPENSSL_free(utf8);
    } else {
        ok = name_text(name, buf, cap);
    }
    ERR_clear_error();
    return ok;
}

bool tls_peer_issuer(struct tls *t, char *buf, size_t cap)
{
    X509 *x = SSL_get0_peer_certificate(t->ssl);
    bool ok = x && cap && name_text(X509_get_issuer_name(x), buf, cap);
    ERR_clear_error();
    return ok;
}

const char *tls_protocol(const struct tls *t)
{
    return SSL_get_version(t->ssl);
}

const char *tls_cipher(const struct tls *t)
{
    return SSL_get_cipher_name(t->ssl);
}
