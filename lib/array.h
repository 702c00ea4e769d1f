/* array.h — growth of the broker's plain arrays and power-of-two rings, in one place. */
#ifndef WARREN_ARRAY_H
#define WARREN_ARRAY_H
#include <stddef.h>
#include <stdint.h>

/* Makes room for one more element in *arr (n in use, *cap allocated, elem bytes each),
 * doubling it, or starting at first_cap. 0, or -ENOMEM with the array unchanged. */
int array_reserve(void **arr, uint32_t *cap, uint32_t n, size_t elem, uint32_t first_cap);
/* The same for a ring of `count` elements from *head (capacity a power of two): when full it
 * doubles, and the elements move to the front (*head becomes 0). */
int ring_reserve(void **arr, uint32_t *cap, uint32_t *head, uint32_t count, size_t elem,
                 uint32_t first_cap);

#endif
