/* auth.c — owns credential checks. Holds no state between calls; the user list is built in
 * until the security work moves users into storage. */
#include <string.h>
#include "broker/amqp/auth.h"
#include "broker/model/errors.h"
#include "protocol/table.h"

struct user {
    const char *name, *password;
    bool loopback_only;
};
static const struct user users[] = {{"guest", "guest", true}};

static int check(amqp_bytes_t user, amqp_bytes_t pass, bool loopback, char *ret_user,
                 size_t user_size, const char **why)
{
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++) {
        if (!amqp_bytes_eq_str(user, users[i].name))
            continue;
        if (!amqp_bytes_eq_str(pass, users[i].password)) {
            *why = "invalid credentials";
            return -WERR_LOGIN_REFUSED;
        }
        if (users[i].loopback_only && !loopback) {
            *why = "user can only connect via localhost";
            return -WERR_LOGIN_REFUSED;
        }
        size_t n = user.len < user_size - 1 ? user.len : user_size - 1;
        memcpy(ret_user, user.ptr, n);
        ret_user[n] = 0;
        return 0;
    }
    *why = "user does not exist";
    return -WERR_LOGIN_REFUSED;
}

int auth_login(amqp_bytes_t mechanism, amqp_bytes_t response, bool loopback, char *ret_user,
               size_t user_size, const char **why)
{
    if (amqp_bytes_eq_str(mechanism, "PLAIN")) {
        /* [authzid] NUL authcid NUL passwd */
        const uint8_t *p = response.ptr, *end = p + response.len;
        const uint8_t *z1 = response.len ? memchr(p, 0, response.len) : NULL;
        const uint8_t *z2 = z1 ? memchr(z1 + 1, 0, (size_t)(end - z1 - 1)) : NULL;
        if (!z2) {
            *why = "malformed PLAIN response";
            return -WERR_COMMAND_INVALID;
        }
        amqp_bytes_t user = {z1 + 1, (uint32_t)(z2 - z1 - 1)};
        amqp_bytes_t pass = {z2 + 1, (uint32_t)(end - z2 - 1)};
        return check(user, pass, loopback, ret_user, user_size, why);
    }
    if (amqp_bytes_eq_str(mechanism, "AMQPLAIN")) {
        struct amqp_field login, pass;
        if (amqp_table_validate(response, 0) < 0 || amqp_table_get(response, "LOGIN", &login) != 1 ||
            amqp_table_get(response, "PASSWORD", &pass) != 1 || login.type != 'S' ||
            pass.type != 'S') {
            *why = "malformed AMQPLAIN response";
            return -WERR_COMMAND_INVALID;
        }
        return check(login.v.bytes, pass.v.bytes, loopback, ret_user, user_size, why);
    }
    *why = "unknown authentication mechanism";
    return -WERR_COMMAND_INVALID;
}
