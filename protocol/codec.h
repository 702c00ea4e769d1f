/* codec.h — encodes and decodes AMQP methods and content headers by walking the
 * descriptor tables generated from protocol/amqp.tbl. Decoding borrows: strings and
 * tables in the result point into the input. Encoding writes into caller memory sized
 * by the matching *_size function. No allocation, no I/O. */
#ifndef WARREN_CODEC_H
#define WARREN_CODEC_H
#include "protocol/wire.h"

enum amqp_field_type {
    AMQP_F_OCTET, AMQP_F_SHORT, AMQP_F_LONG, AMQP_F_LONGLONG, AMQP_F_TIMESTAMP,
    AMQP_F_BIT, AMQP_F_SHORTSTR, AMQP_F_LONGSTR, AMQP_F_TABLE,
};
struct amqp_field_desc {
    const char *name;
    uint16_t offset; /* into struct amqp_method (methods) or struct amqp_basic_props */
    uint8_t type;    /* enum amqp_field_type */
};
struct amqp_method_desc {
    uint32_t id;
    const char *name; /* "basic.publish" */
    const struct amqp_field_desc *fields;
    uint8_t nfields;
    bool content; /* followed by a content header and body */
};

#include "protocol/methods_gen.h"

/* Decodes a method frame payload. Returns 0 or AMQP_E_SHORT, AMQP_E_METHOD,
 * AMQP_E_FIELD_TYPE, AMQP_E_DEPTH, AMQP_E_TRAILING. Tables are validated. */
int amqp_method_decode(const uint8_t *payload, size_t len, struct amqp_method *ret_m);
/* Bytes amqp_method_encode will write (class and method ids included), or AMQP_E_METHOD
 * for an unknown id, AMQP_E_TOO_LONG for a shortstr over 255 bytes. */
long amqp_method_size(const struct amqp_method *m);
/* Encodes m into dst (room for amqp_method_size(m) bytes). Returns the size or < 0. */
long amqp_method_encode(const struct amqp_method *m, uint8_t *dst);
/* The method's "class.method" name, "unknown" when it is not in the table. */
const char *amqp_method_name(uint32_t id);

/* A decoded content header frame payload. */
struct amqp_content_header {
    uint16_t class_id;
    uint64_t body_size;
    struct amqp_basic_props props;
};
/* Decodes a content header payload. Returns 0 or AMQP_E_SHORT, AMQP_E_CLASS (not basic),
 * AMQP_E_FLAGS, AMQP_E_FIELD_TYPE, AMQP_E_DEPTH, AMQP_E_TRAILING. */
int amqp_content_header_decode(const uint8_t *payload, size_t len,
                               struct amqp_content_header *ret_h);
/* Size, and encoding, of a basic content header payload (class 60, weight 0). */
long amqp_content_header_size(const struct amqp_basic_props *props);
long amqp_content_header_encode(const struct amqp_basic_props *props, uint64_t body_size,
                                uint8_t *dst);

#endif
