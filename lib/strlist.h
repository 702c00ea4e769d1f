/* strlist.h — comma-separated name lists as the configuration keeps them ("guest,ops"):
 * membership only. Header-only; owns nothing. */
#ifndef WARREN_STRLIST_H
#define WARREN_STRLIST_H
#include <stdbool.h>
#include <string.h>

/* Is name[0..len) one of the names in list (NULL: the empty list)? */
static inline bool strlist_has(const char *list, const char *name, size_t len)
{
    for (const char *p = list; p && *p;) {
        size_t n = strcspn(p, ",");
        if (n == len && !memcmp(p, name, len))
            return true;
        p += n + (p[n] == ',');
    }
    return false;
}

#endif
