/* auth.h — SASL PLAIN and AMQPLAIN against the broker's stored users (users.h), and the
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

#define AUTH_MECHANISMS "PLAIN AMQPLAIN"

/* Checks a start-ok response. The user name (when the response has one) is copied into
 * ret_user either way, for the log. 0 on success; otherwise -WERR_LOGIN_REFUSED (bad
 * credentials, with why saying which: "user 'x' - invalid credentials") or
 * -WERR_COMMAND_INVALID (unknown mechanism, malformed response). loopback_users: the
 * comma-separated users who may log in only when loopback is true. */
int auth_login(struct broker *b, amqp_bytes_t mechanism, amqp_bytes_t response, bool loopback,
               const char *loopback_users, char *ret_user, size_t user_size, const char **why);

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
