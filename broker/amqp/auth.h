/* auth.h — SASL PLAIN, AMQPLAIN and EXTERNAL (a TLS client certificate) against the broker's stored users (users.h), and the
 * throttle that slows down repeated login failures from one address. The users named in
 * loopback_users (guest by default) may log in from loopback addresses only, as in RabbitMQ. */
#ifndef WARREN_AUTH_H
#define WARREN_AUTH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lib/hmap.h"
#include "protocol/wire.h"

struct broker;

/* A start-ok to check. */
struct auth_request {
    amqp_bytes_t mechanism, response;
    bool loopback;              /* the client connects from a loopback address */
    const char *loopback_users; /* comma-separated: who may log in only when loopback */
    const char *offered;        /* the space-separated mechanisms offered to this client */
    const char *cert_user;      /* EXTERNAL: the user the client certificate names; NULL: none */
    const char *cert_refusal;   /* EXTERNAL: why there is no cert_user (NULL: no certificate) */
};

/* Checks a start-ok response. The user name (when the response has one) is copied into
 * ret_user either way, for the log. 0 on success; otherwise -WERR_LOGIN_REFUSED (bad
 * credentials, with why saying which: "invalid credentials") or -WERR_COMMAND_INVALID with why
 * "unknown authentication mechanism" (none Warren knows), "invalid authentication mechanism"
 * (not offered) or a malformed response. */
int auth_login(struct broker *b, const struct auth_request *r, char *ret_user, size_t user_size,
               const char **why);

/* Does password[0..len) belong to user (connection.update-secret's check)? */
bool auth_check_secret(struct broker *b, const char *user, amqp_bytes_t secret);

/* Failed logins from one address are answered at most AUTH_THROTTLE_RATE per second, however
 * many connections it opens; an address is forgotten AUTH_THROTTLE_FORGET_MS after its last
 * failure. At most AUTH_THROTTLE_MAX addresses are tracked (the oldest are forgotten first). */
#define AUTH_THROTTLE_RATE 200
#define AUTH_THROTTLE_FORGET_MS 60000
#define AUTH_THROTTLE_MAX 65536

struct auth_throttle {
    struct hmap addrs; /* address text -> struct auth_addr (owned) */
};

/* When (loop ms) may the outcome of a login from addr at now be sent? now for an address with
 * no recent failure; else the next free slot of that address, which this takes. */
uint64_t auth_throttle_slot(struct auth_throttle *t, const char *addr, uint64_t now);
/* A login from addr failed at now: tracks addr from then on. */
void auth_throttle_failed(struct auth_throttle *t, const char *addr, uint64_t now);
void auth_throttle_free(struct auth_throttle *t);

#endif
