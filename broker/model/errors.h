/* errors.h — broker error codes generated from errors.def, and the detail text that travels
 * with them. A broker function returns 0, -errno, or -WERR_x (filling a struct err when it has
 * something to say); err_info() maps a code to its reply code, scope and text prefix, and
 * conn_fail() (conn.c) turns it into the one AMQP close it deserves. */
#ifndef WARREN_ERRORS_H
#define WARREN_ERRORS_H
#include <stdbool.h>
#include <stdint.h>

enum werr_scope { CHANNEL, CONNECTION };
enum werr {
    WERR_BASE_ = 1000, /* above every errno value */
#define WERR(name, code, scope, text) WERR_##name,
#include "broker/model/errors.def"
#undef WERR
    WERR_MAX_
};
struct werr_info {
    uint16_t reply_code;
    enum werr_scope scope;
    const char *text; /* "NOT_FOUND" */
};
/* The row for rc (a negative WERR code); -errno and unknown codes map to INTERNAL_ERROR. */
const struct werr_info *err_info(int rc);
/* A printable name for a return code: the AMQP text for WERR codes, else strerror. */
const char *err_str(int rc);
static inline bool err_is_werr(int rc) { return rc < -WERR_BASE_ && rc > -WERR_MAX_; }

/* An error's detail, carried as a value beside its code from where it is found to the one place
 * that turns it into channel.close or connection.close (conn_fail): "no queue 'q' in vhost '/'".
 * The caller owns it (on its stack, one per frame); nothing keeps it between frames. */
struct err {
    char text[256];
};
/* Formats e's detail and returns rc, so that `return err_set(err, -WERR_X, "...")` reads as one
 * step. */
int err_set(struct err *e, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
