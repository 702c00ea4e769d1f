/* views.h — the AMQP surface's sessions_ops (sessions.h): server_start registers it in the
 * broker with the server as its argument. */
#ifndef WARREN_VIEWS_H
#define WARREN_VIEWS_H
#include "broker/model/sessions.h"

extern const struct session_ops amqp_session_ops;

#endif
