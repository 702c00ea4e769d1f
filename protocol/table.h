/* table.h — AMQP field tables and arrays with RabbitMQ's type letters:
 *   t bool  b int8  B uint8  s int16  u uint16  I int32  i uint32  l int64
 *   L 64-bit (rabbitmq-c's uint64; RabbitMQ reads it as int64, and so do we)
 *   f float  d double  D decimal  S longstr  x bytes  T timestamp  F table  A array  V void
 * Tables stay in their wire form (amqp_bytes_t, without the 4-byte length prefix) and are
 * read through an iterator, so decoding allocates nothing. A writer builds new ones. */
#ifndef WARREN_TABLE_H
#define WARREN_TABLE_H
#include "protocol/wire.h"

#define AMQP_TABLE_MAX_DEPTH 32 /* deeper nesting is rejected as hostile */

struct amqp_field {
    char type; /* one of the letters above */
    union {
        bool b;
        int64_t i;  /* b s I l L */
        uint64_t u; /* B u i T */
        float f;
        double d;
        struct { uint8_t scale; uint32_t value; } dec;
        amqp_bytes_t bytes; /* S x, and the body (no length prefix) of F and A */
    } v;
};

/* Checks that tbl (entries only, no length prefix) is a well-formed table: lengths inside
 * bounds, known type letters, nesting at most AMQP_TABLE_MAX_DEPTH - depth. Returns 0 or
 * AMQP_E_SHORT / AMQP_E_FIELD_TYPE / AMQP_E_DEPTH. */
int amqp_table_validate(amqp_bytes_t tbl, int depth);
/* Same for the body of an array. */
int amqp_array_validate(amqp_bytes_t arr, int depth);

/* Iterates a validated table or array. */
struct amqp_table_iter {
    const uint8_t *p, *end;
};
static inline void amqp_table_iter_init(struct amqp_table_iter *it, amqp_bytes_t b)
{
    it->p = b.ptr;
    it->end = b.len ? b.ptr + b.len : b.ptr; /* b.ptr may be NULL: no NULL + 0 (UB) */
}
/* Next table entry: 1 with *ret_key and *ret_val set, 0 at the end, < 0 on malformed input. */
int amqp_table_next(struct amqp_table_iter *it, amqp_bytes_t *ret_key, struct amqp_field *ret_val);
/* Next array element, same return convention. */
int amqp_array_next(struct amqp_table_iter *it, struct amqp_field *ret_val);
/* Looks key up in a validated table: 1 and *ret_val when present (the first entry with that
 * key), 0 when not. */
int amqp_table_get(amqp_bytes_t tbl, const char *key, struct amqp_field *ret_val);
/* Same for a key that is any bytes (a key from another table may hold a NUL). */
int amqp_table_get_bytes(amqp_bytes_t tbl, amqp_bytes_t key, struct amqp_field *ret_val);

/* A growable output buffer for building tables (and anything else). On allocation
 * failure `failed` is set and further writes are ignored; check it once at the end. */
struct amqp_wbuf {
    uint8_t *data; /* owned (malloc) */
    size_t len, cap;
    bool failed;
};
void amqp_wbuf_free(struct amqp_wbuf *w);
uint8_t *amqp_wbuf_grow(struct amqp_wbuf *w, size_t n); /* room for n more bytes, or NULL */
/* Opens a nested table or array value (writes a placeholder length); returns a mark for _end. */
size_t amqp_tw_begin(struct amqp_wbuf *w);
void amqp_tw_end(struct amqp_wbuf *w, size_t mark);
void amqp_tw_key(struct amqp_wbuf *w, const char *key); /* table entries: key then one value */
void amqp_tw_bool(struct amqp_wbuf *w, bool v);
void amqp_tw_int(struct amqp_wbuf *w, char type, int64_t v);  /* b B s u I i l T */
void amqp_tw_float(struct amqp_wbuf *w, double v, bool single); /* d, or f when single */
void amqp_tw_decimal(struct amqp_wbuf *w, uint8_t scale, uint32_t value);
void amqp_tw_bytes(struct amqp_wbuf *w, char type, amqp_bytes_t v); /* S or x */
void amqp_tw_str(struct amqp_wbuf *w, const char *s);              /* S */
void amqp_tw_void(struct amqp_wbuf *w);
/* Writes a nested value as its type letter + begin; close with amqp_tw_end. */
size_t amqp_tw_table(struct amqp_wbuf *w);
size_t amqp_tw_array(struct amqp_wbuf *w);
/* The table/array body between mark and the end of the buffer. */
amqp_bytes_t amqp_tw_body(const struct amqp_wbuf *w, size_t mark);

#endif
