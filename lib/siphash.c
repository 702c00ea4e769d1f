/* siphash.c — owns nothing: SipHash-c-d over a byte string (see siphash.h). */
#include <string.h>
#include "lib/siphash.h"

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

/* n (<= 8) little-endian bytes as a number: one unaligned load on little-endian hosts. */
static inline uint64_t load_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    memcpy(&v, p, n);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v) >> (8 * (8 - n));
#endif
    return v;
}

#define SIPROUND(v0, v1, v2, v3)                                                                 \
    do {                                                                                         \
        v0 += v1;                                                                                \
        v1 = rotl(v1, 13);                                                                       \
        v1 ^= v0;                                                                                \
        v0 = rotl(v0, 32);                                                                       \
        v2 += v3;                                                                                \
        v3 = rotl(v3, 16);                                                                       \
        v3 ^= v2;                                                                                \
        v0 += v3;                                                                                \
        v3 = rotl(v3, 21);                                                                       \
        v3 ^= v0;                                                                                \
        v2 += v1;                                                                                \
        v1 = rotl(v1, 17);                                                                       \
        v1 ^= v2;                                                                                \
        v2 = rotl(v2, 32);                                                                       \
    } while (0)

uint64_t siphash(const uint8_t key[16], const void *data, size_t len, int c, int d)
{
    const uint8_t *p = data;
    uint64_t k0 = load_le(key, 8), k1 = load_le(key + 8, 8);
    uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
    size_t whole = len & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load_le(p + i, 8);
        v3 ^= m;
        for (int r = 0; r < c; r++)
            SIPROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    /* The last block: the remaining bytes, and the length's low byte on top. */
    uint64_t b = (uint64_t)len << 56 | (len > whole ? load_le(p + whole, len - whole) : 0);
    v3 ^= b;
    for (int r = 0; r < c; r++)
        SIPROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    for (int r = 0; r < d; r++)
        SIPROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}
