/* defs.c — placeholder until the definitions import lands. */
#include <errno.h>
#include "broker/model/defs.h"
#include "broker/model/errors.h"

int defs_import_file(struct broker *b, const char *path, struct err *err)
{
    (void)b;
    return err_set(err, -ENOSYS, "%s: definitions import is not built yet", path);
}
