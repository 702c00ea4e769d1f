/* errors.c — owns the error table built from errors.def. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "broker/model/errors.h"

static const struct werr_info table[] = {
#define WERR(name, code, scope, text) [WERR_##name - WERR_BASE_ - 1] = {code, scope, text},
#include "broker/model/errors.def"
#undef WERR
};

const struct werr_info *err_info(int rc)
{
    if (!err_is_werr(rc))
        return &table[WERR_INTERNAL_ERROR - WERR_BASE_ - 1];
    return &table[-rc - WERR_BASE_ - 1];
}

const char *err_str(int rc)
{
    if (err_is_werr(rc))
        return err_info(rc)->text;
    return strerror(-rc);
}

int err_set(struct err *e, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->text, sizeof e->text, fmt, ap);
    va_end(ap);
    return rc;
}
