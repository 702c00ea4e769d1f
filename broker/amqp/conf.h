/* conf.h — reads RabbitMQ's new-style rabbitmq.conf (key = value, # comments) into struct
 * config. Owns the strings it reads (cfg->_owned) until conf_free(); does not own the defaults
 * (config_defaults() in server.c) nor the flags, which main.c applies afterwards so that they
 * override the file. */
#ifndef WARREN_CONF_H
#define WARREN_CONF_H
#include "broker/amqp/server.h"

/* Exit status of warrend when its configuration file cannot be used (sysexits' EX_CONFIG). */
#define CONF_EXIT 78

/* Applies the keys of the file at path on top of cfg. 0, or -1 after one log line
 * "path:line: problem" (or "path: problem" when the file cannot be read); cfg may then hold
 * some of the file's keys and must only be conf_free()d. The log level from log.console.level
 * is returned in *ret_log_level (-1 when the file sets none, CONF_LOG_NONE for "none"). */
#define CONF_LOG_NONE 100
int conf_load(struct config *cfg, const char *path, int *ret_log_level);

/* The listener named "default" (listeners.tcp.default, --port/--bind), created (every address,
 * port 5672) when the file removed it. NULL when there are already CONFIG_LISTENERS_MAX. */
struct config_listener *conf_default_listener(struct config *cfg);

/* Frees the strings conf_load() read. Accepts a cfg it never saw. */
void conf_free(struct config *cfg);

#endif
