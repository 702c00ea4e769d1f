/* codec.c — owns the generic walk over field descriptors: bit packing, string and table
 * lengths, property flags. Owns no memory. Invariant: decode never reads outside
 * [payload, payload + len) and never writes outside the result struct; encode writes
 * exactly the number of bytes its *_size twin returned. */
#include "protocol/codec.h"
#include "protocol/table.h"

const char *amqp_strerror(int status)
{
    static const char *const msgs[] = {
        [0] = "ok",
        [-AMQP_E_SHORT] = "input ends inside a field",
        [-AMQP_E_FRAME_END] = "frame does not end with 0xCE",
        [-AMQP_E_FRAME_SIZE] = "frame larger than frame_max",
        [-AMQP_E_FRAME_TYPE] = "unknown frame type",
        [-AMQP_E_METHOD] = "unknown class or method",
        [-AMQP_E_FIELD_TYPE] = "unknown field table type",
        [-AMQP_E_DEPTH] = "field tables nested too deep",
        [-AMQP_E_TRAILING] = "unexpected bytes after the last field",
        [-AMQP_E_TOO_LONG] = "value too long for its field",
        [-AMQP_E_SPACE] = "output buffer too small",
        [-AMQP_E_FLAGS] = "unknown property flags",
        [-AMQP_E_CLASS] = "content header for a class without content",
        [-AMQP_E_HEADER] = "not an AMQP 0-9-1 protocol header",
    };
    if (status > 0 || status < AMQP_STATUS_MIN)
        return "unknown error";
    return msgs[-status];
}

/* Decodes `n` fields described by `fd` into `base`. For properties, `flags` selects which
 * are present (bit 15 first); for methods pass present == NULL and every field is read. */
static int decode_fields(const uint8_t **pp, const uint8_t *end, const struct amqp_field_desc *fd,
                         unsigned n, uint16_t flags, bool props, char *base)
{
    const uint8_t *p = *pp;
    unsigned bit = 8;        /* bit position in the current bit octet; 8 = none open */
    const uint8_t *bits = NULL;
    for (unsigned k = 0; k < n; k++) {
        if (props && !(flags & (1u << (15 - k))))
            continue;
        void *dst = base + fd[k].offset;
        size_t avail = (size_t)(end - p);
        if (fd[k].type == AMQP_F_BIT && !props) {
            if (bit == 8) {
                if (avail < 1)
                    return AMQP_E_SHORT;
                bits = p++;
                bit = 0;
            }
            *(bool *)dst = (*bits >> bit++) & 1;
            continue;
        }
        bit = 8;
        switch (fd[k].type) {
        case AMQP_F_OCTET:
            if (avail < 1) return AMQP_E_SHORT;
            *(uint8_t *)dst = *p++;
            break;
        case AMQP_F_SHORT:
            if (avail < 2) return AMQP_E_SHORT;
            *(uint16_t *)dst = rd16(p);
            p += 2;
            break;
        case AMQP_F_LONG:
            if (avail < 4) return AMQP_E_SHORT;
            *(uint32_t *)dst = rd32(p);
            p += 4;
            break;
        case AMQP_F_LONGLONG:
        case AMQP_F_TIMESTAMP:
            if (avail < 8) return AMQP_E_SHORT;
            *(uint64_t *)dst = rd64(p);
            p += 8;
            break;
        case AMQP_F_SHORTSTR: {
            if (avail < 1 || avail - 1 < p[0]) return AMQP_E_SHORT;
            *(amqp_bytes_t *)dst = (amqp_bytes_t){p + 1, p[0]};
            p += 1 + p[0];
            break;
        }
        case AMQP_F_LONGSTR:
        case AMQP_F_TABLE: {
            if (avail < 4 || avail - 4 < rd32(p)) return AMQP_E_SHORT;
            amqp_bytes_t b = {p + 4, rd32(p)};
            if (fd[k].type == AMQP_F_TABLE) {
                int rc = amqp_table_validate(b, 0);
                if (rc < 0)
                    return rc;
            }
            *(amqp_bytes_t *)dst = b;
            p += 4 + (size_t)b.len;
            break;
        }
        default: /* a bit property: present flag is the value, no payload */
            *(bool *)dst = true;
        }
    }
    *pp = p;
    return 0;
}

static long fields_size(const struct amqp_field_desc *fd, unsigned n, uint16_t flags, bool props,
                        const char *base)
{
    long size = 0;
    bool in_bits = false;
    unsigned bit = 0;
    for (unsigned k = 0; k < n; k++) {
        if (props && !(flags & (1u << (15 - k))))
            continue;
        const void *src = base + fd[k].offset;
        if (fd[k].type == AMQP_F_BIT && !props) {
            if (!in_bits || bit == 8) {
                size++;
                bit = 0;
                in_bits = true;
            }
            bit++;
            continue;
        }
        in_bits = false;
        switch (fd[k].type) {
        case AMQP_F_OCTET: size += 1; break;
        case AMQP_F_SHORT: size += 2; break;
        case AMQP_F_LONG: size += 4; break;
        case AMQP_F_LONGLONG:
        case AMQP_F_TIMESTAMP: size += 8; break;
        case AMQP_F_SHORTSTR:
            if (((const amqp_bytes_t *)src)->len > 255)
                return AMQP_E_TOO_LONG;
            size += 1 + ((const amqp_bytes_t *)src)->len;
            break;
        case AMQP_F_LONGSTR:
        case AMQP_F_TABLE: size += 4 + (long)((const amqp_bytes_t *)src)->len; break;
        default: break;
        }
    }
    return size;
}

static uint8_t *encode_fields(uint8_t *p, const struct amqp_field_desc *fd, unsigned n,
                              uint16_t flags, bool props, const char *base)
{
    uint8_t *bits = NULL;
    unsigned bit = 8;
    for (unsigned k = 0; k < n; k++) {
        if (props && !(flags & (1u << (15 - k))))
            continue;
        const void *src = base + fd[k].offset;
        if (fd[k].type == AMQP_F_BIT && !props) {
            if (bit == 8) {
                bits = p++;
                *bits = 0;
                bit = 0;
            }
            *bits |= (uint8_t)((*(const bool *)src ? 1 : 0) << bit++);
            continue;
        }
        bit = 8;
        const amqp_bytes_t *b = src;
        switch (fd[k].type) {
        case AMQP_F_OCTET: *p++ = *(const uint8_t *)src; break;
        case AMQP_F_SHORT: wr16(p, *(const uint16_t *)src); p += 2; break;
        case AMQP_F_LONG: wr32(p, *(const uint32_t *)src); p += 4; break;
        case AMQP_F_LONGLONG:
        case AMQP_F_TIMESTAMP: wr64(p, *(const uint64_t *)src); p += 8; break;
        case AMQP_F_SHORTSTR:
            *p++ = (uint8_t)b->len;
            if (b->len) memcpy(p, b->ptr, b->len);
            p += b->len;
            break;
        case AMQP_F_LONGSTR:
        case AMQP_F_TABLE:
            wr32(p, b->len);
            if (b->len) memcpy(p + 4, b->ptr, b->len);
            p += 4 + b->len;
            break;
        default: break;
        }
    }
    return p;
}

int amqp_method_decode(const uint8_t *payload, size_t len, struct amqp_method *ret_m)
{
    if (len < 4)
        return AMQP_E_SHORT;
    uint32_t id = rd32(payload);
    const struct amqp_method_desc *d = amqp_method_desc(id);
    if (!d)
        return AMQP_E_METHOD;
    struct amqp_method m;
    memset(&m, 0, sizeof m);
    m.id = id;
    const uint8_t *p = payload + 4;
    int rc = decode_fields(&p, payload + len, d->fields, d->nfields, 0, false, (char *)&m);
    if (rc < 0)
        return rc;
    if (p != payload + len)
        return AMQP_E_TRAILING;
    *ret_m = m;
    return 0;
}

long amqp_method_size(const struct amqp_method *m)
{
    const struct amqp_method_desc *d = amqp_method_desc(m->id);
    if (!d)
        return AMQP_E_METHOD;
    long n = fields_size(d->fields, d->nfields, 0, false, (const char *)m);
    return n < 0 ? n : n + 4;
}

long amqp_method_encode(const struct amqp_method *m, uint8_t *dst)
{
    long n = amqp_method_size(m);
    if (n < 0)
        return n;
    const struct amqp_method_desc *d = amqp_method_desc(m->id);
    wr32(dst, m->id);
    encode_fields(dst + 4, d->fields, d->nfields, 0, false, (const char *)m);
    return n;
}

const char *amqp_method_name(uint32_t id)
{
    const struct amqp_method_desc *d = amqp_method_desc(id);
    return d ? d->name : "unknown";
}

#define PROPS_MASK ((uint16_t)(0xFFFFu << (16 - AMQP_PROPS_COUNT)))

int amqp_content_header_decode(const uint8_t *payload, size_t len,
                               struct amqp_content_header *ret_h)
{
    if (len < 14)
        return AMQP_E_SHORT;
    struct amqp_content_header h;
    memset(&h, 0, sizeof h);
    h.class_id = rd16(payload);
    if (h.class_id != AMQP_CLASS_BASIC)
        return AMQP_E_CLASS;
    h.body_size = rd64(payload + 4);
    h.props.flags = rd16(payload + 12);
    if (h.props.flags & ~PROPS_MASK)
        return AMQP_E_FLAGS; /* includes the continuation bit: basic has only 14 properties */
    const uint8_t *p = payload + 14;
    int rc = decode_fields(&p, payload + len, amqp_props_desc, AMQP_PROPS_COUNT, h.props.flags,
                           true, (char *)&h.props);
    if (rc < 0)
        return rc;
    if (p != payload + len)
        return AMQP_E_TRAILING;
    *ret_h = h;
    return 0;
}

long amqp_content_header_size(const struct amqp_basic_props *props)
{
    if (props->flags & ~PROPS_MASK)
        return AMQP_E_FLAGS;
    long n = fields_size(amqp_props_desc, AMQP_PROPS_COUNT, props->flags, true,
                         (const char *)props);
    return n < 0 ? n : n + 14;
}

long amqp_content_header_encode(const struct amqp_basic_props *props, uint64_t body_size,
                                uint8_t *dst)
{
    long n = amqp_content_header_size(props);
    if (n < 0)
        return n;
    wr16(dst, AMQP_CLASS_BASIC);
    wr16(dst + 2, 0);
    wr64(dst + 4, body_size);
    wr16(dst + 12, props->flags);
    encode_fields(dst + 14, amqp_props_desc, AMQP_PROPS_COUNT, props->flags, true,
                  (const char *)props);
    return n;
}
