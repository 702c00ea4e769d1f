/* array.c — owns nothing: it reallocates arrays its callers own. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "lib/array.h"

int array_reserve(void **arr, uint32_t *cap, uint32_t n, size_t elem, uint32_t first_cap)
{
    if (n < *cap)
        return 0;
    uint32_t ncap = *cap ? *cap * 2 : first_cap;
    void *a = realloc(*arr, (size_t)ncap * elem);
    if (!a)
        return -ENOMEM;
    *arr = a;
    *cap = ncap;
    return 0;
}

int ring_reserve(void **arr, uint32_t *cap, uint32_t *head, uint32_t count, size_t elem,
                 uint32_t first_cap)
{
    if (count < *cap)
        return 0;
    uint32_t ncap = *cap ? *cap * 2 : first_cap;
    char *a = malloc((size_t)ncap * elem);
    if (!a)
        return -ENOMEM;
    if (count) { /* the part from head to the end, then the wrapped part */
        uint32_t first = *cap - *head < count ? *cap - *head : count;
        memcpy(a, (char *)*arr + (size_t)*head * elem, (size_t)first * elem);
        memcpy(a + (size_t)first * elem, *arr, (size_t)(count - first) * elem);
    }
    free(*arr);
    *arr = a;
    *cap = ncap;
    *head = 0;
    return 0;
}
