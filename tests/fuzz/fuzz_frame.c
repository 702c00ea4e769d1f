/* fuzz_frame.c — libFuzzer target for the whole decode path a connection runs on its
 * input: optional protocol header, amqp_frame_parse (frame_max 131072), method and
 * content-header decoding, full recursive iteration of every decoded table, and
 * decode(encode(x)) == x for every method and header that decoded. Owns nothing between
 * runs. Invariant checked: anything that decodes re-encodes to the same size and back. */
#include <stdio.h>
#include <stdlib.h>

#include "protocol/codec.h"
#include "protocol/frame.h"
#include "protocol/table.h"

#define FRAME_MAX 131072

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Sums bytes so the compiler cannot drop the reads. */
static volatile uint8_t sink;

static void touch(amqp_bytes_t b)
{
    uint8_t x = 0;
    for (uint32_t i = 0; i < b.len; i++)
        x ^= b.ptr[i];
    sink ^= x;
}

static void walk_value(const struct amqp_field *v, int depth);

/* Iterates a validated table (or array) to the end; validation promised no errors. */
static void walk(amqp_bytes_t b, bool is_array, int depth)
{
    CHECK(depth < AMQP_TABLE_MAX_DEPTH);
    struct amqp_table_iter it;
    struct amqp_field v;
    amqp_bytes_t key;
    int rc, i = 0;
    amqp_table_iter_init(&it, b);
    while ((rc = is_array ? amqp_array_next(&it, &v) : amqp_table_next(&it, &key, &v)) > 0) {
        if (!is_array && i++ < 16) { /* lookups are linear: bound them to stay fast */
            touch(key);
            struct amqp_field first;
            /* Lookup by this key finds an entry of some type (the first one with it). */
            char k[256];
            memcpy(k, key.ptr, key.len);
            k[key.len] = '\0';
            if (memchr(key.ptr, 0, key.len) == NULL)
                CHECK(amqp_table_get(b, k, &first) == 1);
        }
        walk_value(&v, depth);
    }
    CHECK(rc == 0);
    CHECK(it.p == it.end);
}

static void walk_value(const struct amqp_field *v, int depth)
{
    switch (v->type) {
    case 'F': walk(v->v.bytes, false, depth + 1); break;
    case 'A': walk(v->v.bytes, true, depth + 1); break;
    case 'S':
    case 'x': touch(v->v.bytes); break;
    default: sink ^= (uint8_t)v->type;
    }
}

/* Walks every table field described by fd (all of them, or those flagged for props). */
static void walk_fields(const char *base, const struct amqp_field_desc *fd, unsigned n,
                        bool props, uint16_t flags)
{
    for (unsigned k = 0; k < n; k++) {
        if (props && !(flags & (1u << (15 - k))))
            continue;
        const amqp_bytes_t *b = (const amqp_bytes_t *)(base + fd[k].offset);
        if (fd[k].type == AMQP_F_TABLE) {
            CHECK(amqp_table_validate(*b, 0) == 0);
            walk(*b, false, 0);
        } else if (fd[k].type >= AMQP_F_SHORTSTR) {
            touch(*b);
        }
    }
}

static bool fields_equal(const char *a, const char *b, const struct amqp_field_desc *fd,
                         unsigned n, bool props, uint16_t flags)
{
    for (unsigned k = 0; k < n; k++) {
        if (props && !(flags & (1u << (15 - k))))
            continue;
        const char *pa = a + fd[k].offset, *pb = b + fd[k].offset;
        switch (fd[k].type) {
        case AMQP_F_OCTET: if (*(const uint8_t *)pa != *(const uint8_t *)pb) return false; break;
        case AMQP_F_SHORT: if (*(const uint16_t *)pa != *(const uint16_t *)pb) return false; break;
        case AMQP_F_LONG: if (*(const uint32_t *)pa != *(const uint32_t *)pb) return false; break;
        case AMQP_F_LONGLONG:
        case AMQP_F_TIMESTAMP:
            if (*(const uint64_t *)pa != *(const uint64_t *)pb) return false;
            break;
        case AMQP_F_BIT: if (*(const bool *)pa != *(const bool *)pb) return false; break;
        default:
            if (!amqp_bytes_eq(*(const amqp_bytes_t *)pa, *(const amqp_bytes_t *)pb))
                return false;
        }
    }
    return true;
}

static void method_frame(const struct amqp_frame *f)
{
    struct amqp_method m;
    if (amqp_method_decode(f->payload, f->size, &m) < 0)
        return;
    const struct amqp_method_desc *d = amqp_method_desc(m.id);
    CHECK(d != NULL);
    walk_fields((const char *)&m, d->fields, d->nfields, false, 0);

    long n = amqp_method_size(&m);
    CHECK(n == (long)f->size); /* decode consumed exactly the payload */
    uint8_t *buf = malloc((size_t)n);
    CHECK(buf != NULL);
    CHECK(amqp_method_encode(&m, buf) == n);
    struct amqp_method m2;
    CHECK(amqp_method_decode(buf, (size_t)n, &m2) == 0);
    CHECK(m2.id == m.id);
    CHECK(fields_equal((const char *)&m, (const char *)&m2, d->fields, d->nfields, false, 0));
    /* A second encode is byte-identical (canonical form reached in one step). */
    uint8_t *buf2 = malloc((size_t)n);
    CHECK(buf2 != NULL);
    CHECK(amqp_method_encode(&m2, buf2) == n);
    CHECK(memcmp(buf, buf2, (size_t)n) == 0);
    free(buf2);
    free(buf);
}

static void header_frame(const struct amqp_frame *f)
{
    struct amqp_content_header h;
    if (amqp_content_header_decode(f->payload, f->size, &h) < 0)
        return;
    CHECK(h.class_id == AMQP_CLASS_BASIC);
    walk_fields((const char *)&h.props, amqp_props_desc, AMQP_PROPS_COUNT, true, h.props.flags);

    long n = amqp_content_header_size(&h.props);
    CHECK(n == (long)f->size);
    uint8_t *buf = malloc((size_t)n);
    CHECK(buf != NULL);
    CHECK(amqp_content_header_encode(&h.props, h.body_size, buf) == n);
    struct amqp_content_header h2;
    CHECK(amqp_content_header_decode(buf, (size_t)n, &h2) == 0);
    CHECK(h2.body_size == h.body_size);
    CHECK(h2.props.flags == h.props.flags);
    CHECK(fields_equal((const char *)&h.props, (const char *)&h2.props, amqp_props_desc,
                       AMQP_PROPS_COUNT, true, h.props.flags));
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    int hc = amqp_protocol_header_check(data, size);
    if (hc == 1)
        off = AMQP_PROTOCOL_HEADER_SIZE;
    else if (hc == 0 && size > 0)
        return 0; /* a strict prefix of the header: nothing more to parse */

    while (off < size) {
        struct amqp_frame f;
        size_t left = size - off;
        long n = amqp_frame_parse(data + off, left, FRAME_MAX, &f);
        if (n == 0) {
            /* Needs more: so does every shorter prefix. */
            for (size_t k = 0; k < left && k <= AMQP_FRAME_HEADER_SIZE; k++)
                CHECK(amqp_frame_parse(data + off, k, FRAME_MAX, &f) == 0);
            break;
        }
        if (n < 0) {
            CHECK(n >= AMQP_STATUS_MIN);
            break;
        }
        CHECK((size_t)n <= left);
        CHECK((size_t)n == f.size + AMQP_FRAME_OVERHEAD);
        CHECK(f.payload == data + off + AMQP_FRAME_HEADER_SIZE);
        CHECK(data[off + (size_t)n - 1] == AMQP_FRAME_END);
        /* A complete frame is reported only once every byte of it is there. */
        CHECK(amqp_frame_parse(data + off, (size_t)n - 1, FRAME_MAX, &f) == 0);
        CHECK(amqp_frame_parse(data + off, (size_t)n, FRAME_MAX, &f) == n);
        switch (f.type) {
        case AMQP_FRAME_METHOD: method_frame(&f); break;
        case AMQP_FRAME_HEADER: header_frame(&f); break;
        case AMQP_FRAME_BODY: touch((amqp_bytes_t){f.payload, f.size}); break;
        case AMQP_FRAME_HEARTBEAT: break;
        default: CHECK(!"unknown frame type reported as a frame");
        }
        off += (size_t)n;
    }
    return 0;
}
