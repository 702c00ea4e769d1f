/* tls.h — TLS server sessions over any byte stream, on OpenSSL with a memory BIO in and a
 * buffer-appending BIO out: ciphertext comes in through tls_feed(), plaintext goes out through
 * tls_read(); plaintext goes in through tls_write() and ciphertext leaves through tls_take() /
 * tls_written(). Nothing here blocks or touches a socket, so the libuv loop owns all I/O.
 * A struct tls owns its SSL and its two ciphertext buffers and holds a reference to the
 * SSL_CTX it was made from (a context replaced by tls_ctx_new on reload lives on in the
 * sessions that use it). Invariant: ciphertext leaves in the order OpenSSL produced it, at most
 * one buffer in flight at a time. */
#ifndef WARREN_TLS_H
#define WARREN_TLS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct bio_st BIO;

#define TLS_V12 1u
#define TLS_V13 2u

/* rabbitmq.conf's ssl_options.* (and management.ssl.*, prometheus.ssl.*). Strings borrowed. */
struct tls_options {
    const char *cacertfile, *certfile, *keyfile, *password;
    bool verify_peer;          /* verify = verify_peer (default verify_none) */
    bool fail_if_no_peer_cert; /* with verify_peer: refuse clients without a certificate */
    bool honor_cipher_order;   /* the server's cipher order wins */
    unsigned versions;         /* TLS_V12 | TLS_V13; 0: both */
    int depth;                 /* certificate chain depth; 0: OpenSSL's default */
    char ciphers[1024];        /* colon-separated, in order: TLS 1.2 names and TLS_* suites */
};

/* A new server context from o, or NULL after writing one sentence into err (which key or file
 * is wrong and OpenSSL's reason). */
SSL_CTX *tls_ctx_new(const struct tls_options *o, char *err, size_t errlen);
void tls_ctx_free(SSL_CTX *ctx);

struct tls_buf {
    uint8_t *p;
    size_t len, cap;
};

struct tls {
    SSL *ssl;
    BIO *rbio;             /* ciphertext received, not yet decrypted */
    struct tls_buf out[2]; /* ciphertext: out[fill] collects, out[!fill] is in flight */
    int fill;
    bool in_flight;
    bool oom;              /* the output buffer could not grow: the session is unusable */
    bool established;      /* the handshake completed */
};

/* 0, or -ENOMEM. */
int tls_init(struct tls *t, SSL_CTX *ctx);
void tls_free(struct tls *t);

/* Ciphertext from the peer. 0, or -ENOMEM. */
int tls_feed(struct tls *t, const void *p, size_t n);

#define TLS_CLOSED (-1) /* the peer sent close_notify */
#define TLS_ERROR (-2)  /* fatal: handshake failure, bad record, ...; err says what */
/* Decrypts up to cap bytes into dst (driving the handshake): the count, 0 when more ciphertext
 * is needed, TLS_CLOSED or TLS_ERROR (one sentence in err). */
long tls_read(struct tls *t, void *dst, size_t cap, char *err, size_t errlen);

/* Encrypts the plaintext of iov[0..n) (small pieces are gathered into full records). 0, or
 * TLS_ERROR when the session cannot send (not established, or out of memory). */
int tls_write(struct tls *t, const uv_buf_t *iov, unsigned n);

/* Queues close_notify (best effort). */
void tls_shutdown(struct tls *t);

/* The ciphertext to send next, which is then in flight until tls_written(); false when there
 * is none or a buffer is already in flight. */
bool tls_take(struct tls *t, uv_buf_t *buf);
void tls_written(struct tls *t);
/* Gives the ciphertext buffers back while nothing waits or is in flight (an idle session then
 * holds only OpenSSL's state); they are made again by the next output. */
void tls_trim(struct tls *t);
/* Ciphertext bytes waiting or in flight. */
size_t tls_pending(const struct tls *t);

/* The client certificate's subject common name, or its whole distinguished name in RFC 4514
 * form ("CN=client,O=Example,C=US", most specific first, as RabbitMQ prints it). false when the
 * client sent no certificate (or the name does not fit). */
bool tls_peer_name(struct tls *t, bool whole_dn, char *buf, size_t cap);
/* The issuer's distinguished name, in the same form. */
bool tls_peer_issuer(struct tls *t, char *buf, size_t cap);
/* "TLSv1.3", and the cipher's name; for the management API. */
const char *tls_protocol(const struct tls *t);
const char *tls_cipher(const struct tls *t);
bool tls_peer_has_cert(const struct tls *t);

#endif
