/* wire.h — the borrowed byte-string type, the codec's error codes and short names for the
 * big-endian loads and stores of lib/byteorder.h. Owns nothing: every amqp_bytes_t points
 * into a buffer someone else owns (usually the frame being decoded).
 * Invariant: readers never look past the length they were given. */
#ifndef WARREN_WIRE_H
#define WARREN_WIRE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "lib/byteorder.h"

typedef struct amqp_bytes {
    const uint8_t *ptr; /* borrowed */
    uint32_t len;
} amqp_bytes_t;

#define AMQP_BYTES_LIT(s) ((amqp_bytes_t){(const uint8_t *)(s), sizeof(s) - 1})
static inline amqp_bytes_t amqp_cstr(const char *s)
{
    return (amqp_bytes_t){(const uint8_t *)s, s ? (uint32_t)strlen(s) : 0};
}
static inline bool amqp_bytes_eq(amqp_bytes_t a, amqp_bytes_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}
static inline bool amqp_bytes_eq_str(amqp_bytes_t a, const char *s)
{
    return amqp_bytes_eq(a, amqp_cstr(s));
}

/* Codec status codes: 0 or one of these (negative). */
enum amqp_status {
    AMQP_OK = 0,
    AMQP_E_SHORT = -1,       /* input ends inside a field */
    AMQP_E_FRAME_END = -2,   /* frame does not end with 0xCE */
    AMQP_E_FRAME_SIZE = -3,  /* frame larger than the negotiated frame_max */
    AMQP_E_FRAME_TYPE = -4,  /* unknown frame type */
    AMQP_E_METHOD = -5,      /* unknown class or method id */
    AMQP_E_FIELD_TYPE = -6,  /* unknown field-table type letter */
    AMQP_E_DEPTH = -7,       /* tables or arrays nested deeper than AMQP_TABLE_MAX_DEPTH */
    AMQP_E_TRAILING = -8,    /* bytes left over after the last field */
    AMQP_E_TOO_LONG = -9,    /* value too long for its wire type (shortstr > 255) */
    AMQP_E_SPACE = -10,      /* output buffer too small */
    AMQP_E_FLAGS = -11,      /* property flags name properties that do not exist */
    AMQP_E_CLASS = -12,      /* content header for a class that has no content */
    AMQP_E_HEADER = -13,     /* not the AMQP 0-9-1 protocol header */
    AMQP_STATUS_MIN = -13,
};
/* A short English description of an amqp_status value. */
const char *amqp_strerror(int status);

/* Short names for lib/byteorder.h's big-endian loads and stores, used across the codec. */
static inline uint16_t rd16(const uint8_t *p) { return load_be16(p); }
static inline uint32_t rd32(const uint8_t *p) { return load_be32(p); }
static inline uint64_t rd64(const uint8_t *p) { return load_be64(p); }
static inline void wr16(uint8_t *p, uint16_t v) { store_be16(p, v); }
static inline void wr32(uint8_t *p, uint32_t v) { store_be32(p, v); }
static inline void wr64(uint8_t *p, uint64_t v) { store_be64(p, v); }

#endif
