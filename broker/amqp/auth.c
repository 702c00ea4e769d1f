/* auth.c — owns credential checks against the stored users and the per-address login throttle
 * (auth.h). Holds no user data itself: users.c does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "broker/amqp/auth.h"
#include "lib/strlist.h"
#include "broker/model/errors.h"
#include "broker/model/users.h"
#include "protocol/table.h"

/* pass NULL: the certificate vouched for the user (EXTERNAL), no password to check. */
static int check(struct broker *b, amqp_bytes_t name, const amqp_bytes_t *pass, bool loopback,
                 const char *loopback_users, const char **why)
{
    struct user *u = users_find(b, (const char *)name.ptr, name.len);
    if (!u) {
        *why = "user does not exist";
        return -WERR_LOGIN_REFUSED;
    }
    if (!pass) {
        /* EXTERNAL: the certificate is the credential. */
    } else if (!u->hash[0]) {
        *why = "user has no password and cannot log in with one";
        return -WERR_LOGIN_REFUSED;
    } else if (password_check(u->hash, u->algo, (const char *)pass->ptr, pass->len) != 1) {
        *why = "invalid credentials";
        return -WERR_LOGIN_REFUSED;
    }
    if (!loopback && strlist_has(loopback_users, u->name, strlen(u->name))) {
        *why = "user can only log in via localhost";
        return -WERR_LOGIN_REFUSED;
    }
    return 0;
}

static void copy_name(amqp_bytes_t user, char *ret_user, size_t user_size)
{
    size_t n = user.len < user_size - 1 ? user.len : user_size - 1;
    memcpy(ret_user, user.ptr, n);
    ret_user[n] = 0;
}

/* Is name one of the space-separated mechanisms in list? */
static bool offered(const char *list, amqp_bytes_t name)
{
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, " ");
        if (n == name.len && !memcmp(p, name.ptr, n))
            return true;
        p += n + (p[n] == ' ');
    }
    return false;
}

int auth_login(struct broker *b, const struct auth_request *r, char *ret_user, size_t user_size,
               const char **why)
{
    amqp_bytes_t user, pass;
    amqp_bytes_t mechanism = r->mechanism, response = r->response;
    ret_user[0] = 0;
    if (!amqp_bytes_eq_str(mechanism, "PLAIN") && !amqp_bytes_eq_str(mechanism, "AMQPLAIN") &&
        !amqp_bytes_eq_str(mechanism, "EXTERNAL")) {
        *why = "unknown authentication mechanism";
        return -WERR_COMMAND_INVALID;
    }
    if (!offered(r->offered, mechanism)) {
        *why = "invalid authentication mechanism";
        return -WERR_COMMAND_INVALID;
    }
    if (amqp_bytes_eq_str(mechanism, "EXTERNAL")) {
        /* The response (an authorisation identity, if any) is ignored, as RabbitMQ does. */
        if (!r->cert_user) {
            *why = r->cert_refusal ? r->cert_refusal : "connection has no peer certificate";
            return -WERR_LOGIN_REFUSED;
        }
        snprintf(ret_user, user_size, "%s", r->cert_user);
        user = (amqp_bytes_t){(const uint8_t *)r->cert_user, (uint32_t)strlen(r->cert_user)};
        return check(b, user, NULL, r->loopback, r->loopback_users, why);
    }
    if (amqp_bytes_eq_str(mechanism, "PLAIN")) {
        /* [authzid] NUL authcid NUL passwd */
        const uint8_t *p = response.ptr, *end = p + response.len;
        const uint8_t *z1 = response.len ? memchr(p, 0, response.len) : NULL;
        const uint8_t *z2 = z1 ? memchr(z1 + 1, 0, (size_t)(end - z1 - 1)) : NULL;
        if (!z2) {
            *why = "malformed PLAIN response";
            return -WERR_COMMAND_INVALID;
        }
        user = (amqp_bytes_t){z1 + 1, (uint32_t)(z2 - z1 - 1)};
        pass = (amqp_bytes_t){z2 + 1, (uint32_t)(end - z2 - 1)};
    } else {
        struct amqp_field login, pw;
        if (amqp_table_validate(response, 0) < 0 || amqp_table_get(response, "LOGIN", &login) != 1 ||
            amqp_table_get(response, "PASSWORD", &pw) != 1 || login.type != 'S' ||
            pw.type != 'S') {
            *why = "malformed AMQPLAIN response";
            return -WERR_COMMAND_INVALID;
        }
        user = login.v.bytes;
        pass = pw.v.bytes;
    }
    copy_name(user, ret_user, user_size);
    return check(b, user, &pass, r->loopback, r->loopback_users, why);
}

bool auth_check_secret(struct broker *b, const char *user, amqp_bytes_t secret)
{
    struct user *u = users_find(b, user, strlen(user));
    return u && u->hash[0] &&
           password_check(u->hash, u->algo, (const char *)secret.ptr, secret.len) == 1;
}

/* ---- throttle ------------------------------------------------------------------------------ */

struct auth_addr {
    uint64_t next_ms;      /* the next free answer slot */
    uint64_t last_fail_ms; /* forgotten AUTH_THROTTLE_FORGET_MS after this */
    char addr[];           /* the key */
};

#define SLOT_MS (1000 / AUTH_THROTTLE_RATE)

static void forget_old(struct auth_throttle *t, uint64_t now, bool all_but_newest)
{
    void *v;
    uint64_t newest = 0;
    for (uint32_t it = 0; all_but_newest && hmap_next(&t->addrs, &it, &v);)
        if (((struct auth_addr *)v)->last_fail_ms > newest)
            newest = ((struct auth_addr *)v)->last_fail_ms;
    for (uint32_t it = 0; hmap_next(&t->addrs, &it, &v);) {
        struct auth_addr *a = v;
        if (now - a->last_fail_ms > AUTH_THROTTLE_FORGET_MS ||
            (all_but_newest && a->last_fail_ms < newest)) {
            hmap_del(&t->addrs, a->addr, strlen(a->addr));
            free(a);
        }
    }
}

uint64_t auth_throttle_slot(struct auth_throttle *t, const char *addr, uint64_t now)
{
    struct auth_addr *a = hmap_get(&t->addrs, addr, strlen(addr));
    if (!a)
        return now;
    if (now - a->last_fail_ms > AUTH_THROTTLE_FORGET_MS) {
        hmap_del(&t->addrs, addr, strlen(addr));
        free(a);
        return now;
    }
    uint64_t slot = a->next_ms > now ? a->next_ms : now;
    a->next_ms = slot + SLOT_MS;
    return slot;
}

void auth_throttle_failed(struct auth_throttle *t, const char *addr, uint64_t now)
{
    struct auth_addr *a = hmap_get(&t->addrs, addr, strlen(addr));
    if (!a) {
        if (t->addrs.count >= AUTH_THROTTLE_MAX)
            forget_old(t, now, false);
        if (t->addrs.count >= AUTH_THROTTLE_MAX)
            forget_old(t, now, true);
        size_t n = strlen(addr);
        if (!(a = malloc(sizeof *a + n + 1)))
            return; /* untracked: not slowed down, which is the safe side for service */
        memcpy(a->addr, addr, n + 1);
        a->next_ms = now + SLOT_MS;
        if (hmap_put(&t->addrs, a->addr, n, a) < 0) {
            free(a);
            return;
        }
    }
    a->last_fail_ms = now;
}

void auth_throttle_free(struct auth_throttle *t)
{
    void *v;
    for (uint32_t it = 0; hmap_next(&t->addrs, &it, &v);)
        free(v);
    hmap_free(&t->addrs);
}
