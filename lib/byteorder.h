/* byteorder.h — big-endian (network order) loads and stores of 16, 32 and 64-bit integers at
 * any alignment: the AMQP wire format and every stored key and value use this order. Owns
 * nothing; header-only. Invariant: each function touches exactly its 2, 4 or 8 bytes at p.
 * Written with shifts, not bswap or casts, so it is alignment- and host-order-independent;
 * compilers turn each into one load or store plus a byte swap. */
#ifndef WARREN_BYTEORDER_H
#define WARREN_BYTEORDER_H
#include <stdint.h>

static inline uint16_t load_be16(const void *p)
{
    const uint8_t *b = p;
    return (uint16_t)(b[0] << 8 | b[1]);
}

static inline uint32_t load_be32(const void *p)
{
    const uint8_t *b = p;
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static inline uint64_t load_be64(const void *p)
{
    const uint8_t *b = p;
    return (uint64_t)load_be32(b) << 32 | load_be32(b + 4);
}

static inline void store_be16(void *p, uint16_t v)
{
    uint8_t *b = p;
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
}

static inline void store_be32(void *p, uint32_t v)
{
    uint8_t *b = p;
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

static inline void store_be64(void *p, uint64_t v)
{
    uint8_t *b = p;
    store_be32(b, (uint32_t)(v >> 32));
    store_be32(b + 4, (uint32_t)v);
}

#endif
