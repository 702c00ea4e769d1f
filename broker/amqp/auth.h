/* auth.h — SASL PLAIN and AMQPLAIN over the built-in user list. guest may log in from
 * loopback addresses only, as in RabbitMQ. */
#ifndef WARREN_AUTH_H
#define WARREN_AUTH_H
#include <stdbool.h>
#include <stddef.h>
#include "protocol/wire.h"

#define AUTH_MECHANISMS "PLAIN AMQPLAIN"

/* Checks a start-ok response. On success copies the user name into ret_user and returns 0;
 * otherwise returns -WERR_LOGIN_REFUSED (bad credentials) or -WERR_COMMAND_INVALID (unknown
 * mechanism, malformed response), with a reason for the log in why. */
int auth_login(amqp_bytes_t mechanism, amqp_bytes_t response, bool loopback, char *ret_user,
               size_t user_size, const char **why);

#endif
