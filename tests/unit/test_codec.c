/* test_codec.c — protocol/codec.h: every method in amqp_method_descs[] round-trips with
 * every field set; hand-written golden bytes (from the AMQP 0-9-1 spec) catch bugs a
 * symmetric round trip cannot; content headers with every property subset; malformed
 * input (truncation at every length, trailing bytes, bad tables) fails cleanly; and the
 * fixtures in tests/fixtures/ (written by tests/fuzz/make_corpus.py) decode as expected. */
#include "unit.h"

#include "protocol/codec.h"
#include "protocol/frame.h"
#include "protocol/table.h"

/* ---- generic filling and comparing by descriptor ------------------------------------ */

static struct amqp_wbuf small_table_buf;
static amqp_bytes_t small_table; /* a valid table with a nested table and an array */
static const uint8_t longstr_data[] = {0x00, 0xCE, 0xFF, 'L', 0x01, 0x80, 0x7F};
static char long_shortstr[256];

static int setup(void **state)
{
    (void)state;
    struct amqp_wbuf *w = &small_table_buf;
    size_t top = amqp_tw_begin(w);
    amqp_tw_key(w, "x-message-ttl"); amqp_tw_int(w, 'I', 60000);
    amqp_tw_key(w, "caps");
    size_t f = amqp_tw_table(w);
    amqp_tw_key(w, "basic.nack"); amqp_tw_bool(w, true);
    amqp_tw_end(w, f);
    amqp_tw_key(w, "list");
    size_t a = amqp_tw_array(w);
    amqp_tw_str(w, "a");
    amqp_tw_int(w, 'l', -5);
    amqp_tw_end(w, a);
    amqp_tw_end(w, top);
    if (w->failed)
        return -1;
    small_table = amqp_tw_body(w, top);
    memset(long_shortstr, 's', sizeof long_shortstr);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    amqp_wbuf_free(&small_table_buf);
    return 0;
}

/* Gives field k a value that differs from its default and from its neighbours'. `variant`
 * flips every bit and picks other string lengths, so each bit is seen both ways and
 * shortstrs reach 255 bytes. */
static void fill_fields(char *base, const struct amqp_field_desc *fd, unsigned n, unsigned variant)
{
    for (unsigned k = 0; k < n; k++) {
        void *dst = base + fd[k].offset;
        switch (fd[k].type) {
        case AMQP_F_OCTET: *(uint8_t *)dst = (uint8_t)(0xA0 + k + variant); break;
        case AMQP_F_SHORT: *(uint16_t *)dst = (uint16_t)(0xA1B0 + k + variant); break;
        case AMQP_F_LONG: *(uint32_t *)dst = 0xC1D2E3F0u + k + variant; break;
        case AMQP_F_LONGLONG:
        case AMQP_F_TIMESTAMP: *(uint64_t *)dst = 0x8102030405060700ull + k + variant; break;
        case AMQP_F_BIT: *(bool *)dst = (k + variant) % 2 == 1; break;
        case AMQP_F_SHORTSTR:
            *(amqp_bytes_t *)dst = variant ? (amqp_bytes_t){(const uint8_t *)long_shortstr, 255 - k}
                                           : amqp_cstr(fd[k].name);
            break;
        case AMQP_F_LONGSTR:
            *(amqp_bytes_t *)dst = (amqp_bytes_t){longstr_data, (uint32_t)(sizeof longstr_data - k % 3)};
            break;
        case AMQP_F_TABLE: *(amqp_bytes_t *)dst = small_table; break;
        default: fail_msg("field %s: unknown type %d", fd[k].name, fd[k].type);
        }
    }
}

/* Compares field by field; with `flags` (properties), absent fields must be zero in b. */
static void compare_fields(const char *what, const char *a, const char *b,
                           const struct amqp_field_desc *fd, unsigned n, bool props,
                           uint16_t flags)
{
    for (unsigned k = 0; k < n; k++) {
        bool present = !props || (flags & (1u << (15 - k)));
        const void *pa = a + fd[k].offset, *pb = b + fd[k].offset;
        bool same;
        switch (fd[k].type) {
        case AMQP_F_OCTET: same = *(const uint8_t *)pb == (present ? *(const uint8_t *)pa : 0); break;
        case AMQP_F_SHORT: same = *(const uint16_t *)pb == (present ? *(const uint16_t *)pa : 0); break;
        case AMQP_F_LONG: same = *(const uint32_t *)pb == (present ? *(const uint32_t *)pa : 0); break;
        case AMQP_F_LONGLONG:
        case AMQP_F_TIMESTAMP:
            same = *(const uint64_t *)pb == (present ? *(const uint64_t *)pa : 0);
            break;
        case AMQP_F_BIT: same = *(const bool *)pb == (present ? *(const bool *)pa : false); break;
        default: {
            amqp_bytes_t ba = present ? *(const amqp_bytes_t *)pa : (amqp_bytes_t){NULL, 0};
            same = amqp_bytes_eq(ba, *(const amqp_bytes_t *)pb);
        }
        }
        if (!same)
            fail_msg("%s: field %s differs after the round trip", what, fd[k].name);
    }
}

/* Encodes m into an exact-size buffer followed by canaries; checks size == encoded length
 * and that nothing is written past it. Returns the malloc'd bytes. */
static uint8_t *encode_checked(const struct amqp_method *m, size_t *ret_len)
{
    long size = amqp_method_size(m);
    if (size < 4)
        fail_msg("%s: amqp_method_size = %ld (%s)", amqp_method_name(m->id), size,
                 amqp_strerror((int)size));
    uint8_t *buf = malloc((size_t)size + 16);
    assert_non_null(buf);
    memset(buf, 0xA5, (size_t)size + 16);
    assert_rc(amqp_method_encode(m, buf), size);
    for (int i = 0; i < 16; i++)
        assert_int_equal(buf[size + i], 0xA5);
    *ret_len = (size_t)size;
    return buf;
}

/* ---- the descriptor table ----------------------------------------------------------- */

static void test_descriptors(void **state)
{
    (void)state;
    unsigned content = 0;
    for (unsigned i = 0; i < AMQP_METHOD_COUNT; i++) {
        const struct amqp_method_desc *d = &amqp_method_descs[i];
        assert_ptr_equal(amqp_method_desc(d->id), d);
        assert_string_equal(amqp_method_name(d->id), d->name);
        assert_non_null(strchr(d->name, '.'));
        assert_true(d->nfields == 0 || d->fields != NULL);
        for (unsigned j = 0; j < i; j++)
            assert_true(amqp_method_descs[j].id != d->id);
        content += d->content;
    }
    /* publish, return, deliver and get-ok carry content; nothing else does. */
    assert_int_equal(content, 4);
    assert_true(amqp_method_desc(AMQP_BASIC_PUBLISH)->content);
    assert_true(amqp_method_desc(AMQP_BASIC_RETURN)->content);
    assert_true(amqp_method_desc(AMQP_BASIC_DELIVER)->content);
    assert_true(amqp_method_desc(AMQP_BASIC_GET_OK)->content);
    assert_false(amqp_method_desc(AMQP_BASIC_GET)->content);
    /* Ids from the spec (class << 16 | method), including RabbitMQ's odd unbind-ok = 51. */
    assert_int_equal(AMQP_CONNECTION_START, (10 << 16) | 10);
    assert_int_equal(AMQP_EXCHANGE_UNBIND_OK, (40 << 16) | 51);
    assert_int_equal(AMQP_QUEUE_UNBIND, (50 << 16) | 50);
    assert_int_equal(AMQP_BASIC_NACK, (60 << 16) | 120);
    assert_int_equal(AMQP_CONFIRM_SELECT, (85 << 16) | 10);
    assert_int_equal(AMQP_TX_ROLLBACK_OK, (90 << 16) | 31);
    assert_string_equal(amqp_method_name(0), "unknown");
    assert_null(amqp_method_desc(0xFFFFFFFFu));
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(amqp_strerror(0), "ok");
    for (int s = -1; s >= AMQP_STATUS_MIN; s--) {
        const char *msg = amqp_strerror(s);
        assert_non_null(msg);
        assert_string_not_equal(msg, "unknown error");
        for (int t = -1; t > s; t--)
            assert_string_not_equal(msg, amqp_strerror(t));
    }
    assert_string_equal(amqp_strerror(1), "unknown error");
    assert_string_equal(amqp_strerror(AMQP_STATUS_MIN - 1), "unknown error");
    assert_string_equal(amqp_strerror(-10000), "unknown error");
}

/* ---- round trip of every method ------------------------------------------------------ */

static void round_trip(const struct amqp_method_desc *d, const struct amqp_method *m)
{
    size_t len;
    uint8_t *buf = encode_checked(m, &len);
    assert_int_equal(rd32(buf), d->id);
    struct amqp_method out;
    memset(&out, 0x5A, sizeof out);
    assert_rc(amqp_method_decode(buf, len, &out), 0);
    assert_int_equal(out.id, d->id);
    compare_fields(d->name, (const char *)m, (const char *)&out, d->fields, d->nfields, false, 0);

    /* Decoding then encoding gives the same bytes back. */
    size_t len2;
    uint8_t *buf2 = encode_checked(&out, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(buf, buf2, len);
    free(buf2);

    /* Malformed: every truncation is short, one extra byte is trailing. */
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *p = unit_dup(buf, cut);
        memset(&out, 0x5A, sizeof out);
        int rc = amqp_method_decode(p, cut, &out);
        if (rc != AMQP_E_SHORT)
            fail_msg("%s cut to %zu of %zu bytes: %d (%s)", d->name, cut, len, rc,
                     amqp_strerror(rc));
        assert_int_equal(out.id, 0x5A5A5A5A); /* ret_m untouched on failure */
        free(p);
    }
    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, buf, len);
    longer[len] = 0;
    assert_rc(amqp_method_decode(longer, len + 1, &out), AMQP_E_TRAILING);
    free(longer);
    free(buf);
}

static void test_every_method(void **state)
{
    (void)state;
    assert_true(AMQP_METHOD_COUNT > 40);
    for (unsigned i = 0; i < AMQP_METHOD_COUNT; i++) {
        const struct amqp_method_desc *d = &amqp_method_descs[i];
        for (unsigned variant = 0; variant < 2; variant++) {
            struct amqp_method m;
            memset(&m, 0, sizeof m);
            m.id = d->id;
            fill_fields((char *)&m, d->fields, d->nfields, variant);
            round_trip(d, &m);
        }
        /* Every field at its default: empty strings, zero numbers, bits clear. */
        struct amqp_method z;
        memset(&z, 0, sizeof z);
        z.id = d->id;
        round_trip(d, &z);
    }
}

/* Setting one field changes only that field: no two fields share storage or wire bytes. */
static void test_fields_independent(void **state)
{
    (void)state;
    for (unsigned i = 0; i < AMQP_METHOD_COUNT; i++) {
        const struct amqp_method_desc *d = &amqp_method_descs[i];
        struct amqp_method full;
        memset(&full, 0, sizeof full);
        fill_fields((char *)&full, d->fields, d->nfields, 1);
        for (unsigned k = 0; k < d->nfields; k++) {
            struct amqp_method m, out;
            memset(&m, 0, sizeof m);
            m.id = d->id;
            size_t sz = d->fields[k].type == AMQP_F_BIT ? sizeof(bool)
                      : d->fields[k].type >= AMQP_F_SHORTSTR ? sizeof(amqp_bytes_t)
                      : d->fields[k].type == AMQP_F_OCTET ? 1
                      : d->fields[k].type == AMQP_F_SHORT ? 2
                      : d->fields[k].type == AMQP_F_LONG ? 4 : 8;
            memcpy((char *)&m + d->fields[k].offset, (char *)&full + d->fields[k].offset, sz);
            if (d->fields[k].type == AMQP_F_BIT)
                *(bool *)((char *)&m + d->fields[k].offset) = true;
            size_t len;
            uint8_t *buf = encode_checked(&m, &len);
            assert_rc(amqp_method_decode(buf, len, &out), 0);
            compare_fields(d->name, (const char *)&m, (const char *)&out, d->fields, d->nfields,
                           false, 0);
            free(buf);
        }
    }
}

static void test_shortstr_limit(void **state)
{
    (void)state;
    struct amqp_method m;
    memset(&m, 0, sizeof m);
    m.id = AMQP_BASIC_PUBLISH;
    m.u.basic_publish.routing_key = (amqp_bytes_t){(const uint8_t *)long_shortstr, 255};
    round_trip(amqp_method_desc(m.id), &m);
    m.u.basic_publish.routing_key.len = 256;
    uint8_t buf[512];
    assert_rc(amqp_method_size(&m), AMQP_E_TOO_LONG);
    assert_rc(amqp_method_encode(&m, buf), AMQP_E_TOO_LONG);
}

static void test_unknown_method(void **state)
{
    (void)state;
    static const uint32_t ids[] = {
        0, 0x000A0000u, 0x003C00FFu, 0x00FF000Au, 0xFFFFFFFFu,
        0x003C0029u, /* between basic.publish (40) and basic.return (50) */
        0x00280029u, /* exchange.unbind-ok is 51, not 41 */
        0x000B000Au, /* class 11 */
        0x0055000Cu, /* confirm has no method 12 */
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        uint8_t p[8];
        wr32(p, ids[i]);
        wr32(p + 4, 0);
        struct amqp_method m;
        assert_rc(amqp_method_decode(p, 4, &m), AMQP_E_METHOD);
        assert_rc(amqp_method_decode(p, 8, &m), AMQP_E_METHOD);
        m.id = ids[i];
        assert_rc(amqp_method_size(&m), AMQP_E_METHOD);
        assert_rc(amqp_method_encode(&m, p), AMQP_E_METHOD);
        assert_string_equal(amqp_method_name(ids[i]), "unknown");
    }
}

/* ---- golden bytes, written by hand from the spec ----------------------------------- */

/* Decodes `bytes` (a static array: ASan guards globals too), re-encodes, and checks both
 * directions agree with the hand-written bytes. *ret_m borrows from `bytes`. */
static void golden(const uint8_t *bytes, size_t len, struct amqp_method *ret_m)
{
    assert_rc(amqp_method_decode(bytes, len, ret_m), 0);
    size_t n;
    uint8_t *enc = encode_checked(ret_m, &n);
    assert_int_equal(n, len);
    assert_memory_equal(enc, bytes, len);
    free(enc);
}

static void test_golden_methods(void **state)
{
    (void)state;
    struct amqp_method m;

    /* basic.publish: reserved-1, exchange "ex", routing-key "rk", mandatory=1 immediate=0.
     * Bits pack from the low-order bit of one octet. */
    static const uint8_t publish[] = {0x00, 0x3C, 0x00, 0x28, 0x00, 0x00, 0x02, 'e', 'x',
                                      0x02, 'r', 'k', 0x01};
    golden(publish, sizeof publish, &m);
    assert_int_equal(m.id, AMQP_BASIC_PUBLISH);
    assert_true(amqp_bytes_eq_str(m.u.basic_publish.exchange, "ex"));
    assert_true(amqp_bytes_eq_str(m.u.basic_publish.routing_key, "rk"));
    assert_true(m.u.basic_publish.mandatory);
    assert_false(m.u.basic_publish.immediate);

    /* The same built from a struct, immediate only: bit 1. */
    struct amqp_method b;
    memset(&b, 0, sizeof b);
    b.id = AMQP_BASIC_PUBLISH;
    b.u.basic_publish.exchange = amqp_cstr("ex");
    b.u.basic_publish.routing_key = amqp_cstr("rk");
    b.u.basic_publish.immediate = true;
    uint8_t out[64];
    assert_rc(amqp_method_encode(&b, out), sizeof publish);
    assert_memory_equal(out, publish, sizeof publish - 1);
    assert_int_equal(out[sizeof publish - 1], 0x02);

    /* queue.declare "q": passive=0 durable=1 exclusive=0 auto-delete=1 no-wait=1 in one
     * octet (bits 1, 3, 4 = 0x1A), then an empty arguments table. */
    static const uint8_t declare[] = {0x00, 0x32, 0x00, 0x0A, 0x00, 0x00, 0x01, 'q', 0x1A,
                                      0x00, 0x00, 0x00, 0x00};
    golden(declare, sizeof declare, &m);
    assert_int_equal(m.id, AMQP_QUEUE_DECLARE);
    assert_false(m.u.queue_declare.passive);
    assert_true(m.u.queue_declare.durable);
    assert_false(m.u.queue_declare.exclusive);
    assert_true(m.u.queue_declare.auto_delete);
    assert_true(m.u.queue_declare.no_wait);
    assert_int_equal(m.u.queue_declare.arguments.len, 0);

    /* connection.tune: channel-max 2047, frame-max 131072, heartbeat 60. */
    static const uint8_t tune[] = {0x00, 0x0A, 0x00, 0x1E, 0x07, 0xFF, 0x00, 0x02, 0x00, 0x00,
                                   0x00, 0x3C};
    golden(tune, sizeof tune, &m);
    assert_int_equal(m.u.connection_tune.channel_max, 2047);
    assert_int_equal(m.u.connection_tune.frame_max, 131072);
    assert_int_equal(m.u.connection_tune.heartbeat, 60);

    /* basic.deliver: consumer-tag, a longlong delivery-tag (big-endian), redelivered bit,
     * exchange "" and routing-key "rk": a bit between two non-bit fields. */
    static const uint8_t deliver[] = {0x00, 0x3C, 0x00, 0x3C, 0x04, 'c', 't', 'a', 'g',
                                      0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                                      0x01, 0x00, 0x02, 'r', 'k'};
    golden(deliver, sizeof deliver, &m);
    assert_true(m.u.basic_deliver.delivery_tag == 0x0102030405060708ull);
    assert_true(m.u.basic_deliver.redelivered);
    assert_int_equal(m.u.basic_deliver.exchange.len, 0);
    assert_true(amqp_bytes_eq_str(m.u.basic_deliver.routing_key, "rk"));

    /* basic.nack multiple=0 requeue=1. */
    static const uint8_t nack[] = {0x00, 0x3C, 0x00, 0x78, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0x02};
    golden(nack, sizeof nack, &m);
    assert_true(m.u.basic_nack.delivery_tag == 256);
    assert_false(m.u.basic_nack.multiple);
    assert_true(m.u.basic_nack.requeue);

    /* exchange.declare "x" type "fanout": passive=0 durable=1 auto-delete=0 internal=1
     * no-wait=0 (0x0A), arguments {"alternate-exchange": S "ae"}. */
    static const uint8_t xdecl[] = {0x00, 0x28, 0x00, 0x0A, 0x00, 0x00, 0x01, 'x',
                                    0x06, 'f', 'a', 'n', 'o', 'u', 't', 0x0A,
                                    0x00, 0x00, 0x00, 0x1A, 0x12, 'a', 'l', 't', 'e', 'r', 'n',
                                    'a', 't', 'e', '-', 'e', 'x', 'c', 'h', 'a', 'n', 'g', 'e',
                                    'S', 0x00, 0x00, 0x00, 0x02, 'a', 'e'};
    golden(xdecl, sizeof xdecl, &m);
    assert_true(m.u.exchange_declare.durable && m.u.exchange_declare.internal);
    assert_false(m.u.exchange_declare.passive || m.u.exchange_declare.auto_delete ||
                 m.u.exchange_declare.no_wait);
    struct amqp_field v;
    assert_rc(amqp_table_get(m.u.exchange_declare.arguments, "alternate-exchange", &v), 1);
    assert_true(v.type == 'S' && amqp_bytes_eq_str(v.v.bytes, "ae"));

    /* connection.close 320 "bye" caused by basic.publish (60, 40). */
    static const uint8_t close[] = {0x00, 0x0A, 0x00, 0x32, 0x01, 0x40, 0x03, 'b', 'y', 'e',
                                    0x00, 0x3C, 0x00, 0x28};
    golden(close, sizeof close, &m);
    assert_int_equal(m.u.connection_close.reply_code, 320);
    assert_int_equal(m.u.connection_close.class_id, 60);
    assert_int_equal(m.u.connection_close.method_id, 40);

    /* basic.qos prefetch-size 0, prefetch-count 10, global=1. */
    static const uint8_t qos[] = {0x00, 0x3C, 0x00, 0x0A, 0, 0, 0, 0, 0x00, 0x0A, 0x01};
    golden(qos, sizeof qos, &m);
    assert_int_equal(m.u.basic_qos.prefetch_count, 10);
    assert_true(m.u.basic_qos.global);

    /* channel.open-ok: an empty longstr. connection.start-ok's empty table. */
    static const uint8_t open_ok[] = {0x00, 0x14, 0x00, 0x0B, 0, 0, 0, 0};
    golden(open_ok, sizeof open_ok, &m);
    assert_int_equal(m.u.channel_open_ok.reserved_1.len, 0);

    /* Methods without fields are just the id. */
    static const uint8_t commit_ok[] = {0x00, 0x5A, 0x00, 0x15};
    golden(commit_ok, sizeof commit_ok, &m);
    assert_int_equal(m.id, AMQP_TX_COMMIT_OK);

    /* Unused high bits of a bit octet are ignored on decode (and written as 0). */
    static const uint8_t flow[] = {0x00, 0x14, 0x00, 0x14, 0xFE};
    assert_rc(amqp_method_decode(flow, sizeof flow, &m), 0);
    assert_false(m.u.channel_flow.active);
}

/* ---- malformed methods --------------------------------------------------------------- */

static int decode_copy(const uint8_t *p, size_t n)
{
    uint8_t *c = unit_dup(p, n);
    struct amqp_method m;
    int rc = amqp_method_decode(c, n, &m);
    free(c);
    return rc;
}

/* Writes the body of a table holding `levels` tables, each inside the previous (7 bytes
 * a level: key "n", 'F', length). Returns the bytes written. */
static size_t nested_tables(uint8_t *out, int levels)
{
    size_t n = 0;
    for (int l = 0; l < levels; l++) {
        out[n++] = 1;
        out[n++] = 'n';
        out[n++] = 'F';
        wr32(out + n, (uint32_t)(levels - l - 1) * 7);
        n += 4;
    }
    return n;
}

/* queue.declare "q" with the given arguments table body. */
static int declare_with_args(const uint8_t *args, uint32_t len)
{
    uint8_t buf[1024];
    static const uint8_t head[] = {0x00, 0x32, 0x00, 0x0A, 0x00, 0x00, 0x01, 'q', 0x00};
    assert_true(len + sizeof head + 4 <= sizeof buf);
    memcpy(buf, head, sizeof head);
    wr32(buf + sizeof head, len);
    memcpy(buf + sizeof head + 4, args, len);
    return decode_copy(buf, sizeof head + 4 + len);
}

static void test_bad_tables(void **state)
{
    (void)state;
    static const char *const letters = "UZX\x00"; /* 'L' is accepted, as RabbitMQ does */
    for (int i = 0; i < 4; i++) {
        uint8_t args[] = {0x01, 'k', (uint8_t)letters[i], 0, 0, 0, 0, 0, 0, 0, 0};
        assert_rc(declare_with_args(args, sizeof args), AMQP_E_FIELD_TYPE);
    }
    /* Nesting: the arguments table plus 31 nested tables is the limit. */
    for (int levels = 29; levels <= 34; levels++) {
        uint8_t args[512];
        size_t n = nested_tables(args, levels);
        assert_rc(declare_with_args(args, (uint32_t)n),
                  levels + 1 > AMQP_TABLE_MAX_DEPTH ? AMQP_E_DEPTH : 0);
    }
    /* Arrays count as levels too. */
    uint8_t arr[40 * 5 + 3] = {0x01, 'a'};
    size_t n = 2;
    for (int l = 0; l < 40; l++) {
        arr[n++] = 'A';
        wr32(arr + n, (uint32_t)(39 - l) * 5);
        n += 4;
    }
    assert_rc(declare_with_args(arr, (uint32_t)n), AMQP_E_DEPTH);
}

static void test_lengths_past_end(void **state)
{
    (void)state;
    /* basic.publish whose exchange shortstr claims 200 bytes. */
    static const uint8_t ss[] = {0x00, 0x3C, 0x00, 0x28, 0x00, 0x00, 0xC8, 'e', 'x', 0x00, 0x00};
    assert_rc(decode_copy(ss, sizeof ss), AMQP_E_SHORT);
    /* connection.secure with a 4 GiB challenge. */
    static const uint8_t ls[] = {0x00, 0x0A, 0x00, 0x14, 0xFF, 0xFF, 0xFF, 0xFF, 'a'};
    assert_rc(decode_copy(ls, sizeof ls), AMQP_E_SHORT);
    /* channel.open-ok with a longstr one byte too long. */
    static const uint8_t lo[] = {0x00, 0x14, 0x00, 0x0B, 0x00, 0x00, 0x00, 0x02, 'a'};
    assert_rc(decode_copy(lo, sizeof lo), AMQP_E_SHORT);
    /* queue.declare with an arguments table longer than what is left. */
    static const uint8_t tb[] = {0x00, 0x32, 0x00, 0x0A, 0x00, 0x00, 0x00, 0x00,
                                 0x00, 0x00, 0x00, 0x04, 0x01, 'k', 'V'};
    assert_rc(decode_copy(tb, sizeof tb), AMQP_E_SHORT);
    /* A table entry running past the table's own end, though inside the payload. */
    static const uint8_t te[] = {0x00, 0x32, 0x00, 0x0A, 0x00, 0x00, 0x00, 0x00,
                                 0x00, 0x00, 0x00, 0x03, 0x01, 'k', 'I', 0, 0, 0, 1};
    assert_rc(decode_copy(te, sizeof te), AMQP_E_SHORT);
    /* No id at all. */
    assert_rc(decode_copy(ss, 0), AMQP_E_SHORT);
    assert_rc(decode_copy(ss, 3), AMQP_E_SHORT);
}

/* ---- content headers ----------------------------------------------------------------- */

static void fill_props(struct amqp_basic_props *p, uint16_t flags)
{
    memset(p, 0, sizeof *p);
    fill_fields((char *)p, amqp_props_desc, AMQP_PROPS_COUNT, 0);
    p->flags = flags;
}

static uint8_t *header_checked(const struct amqp_basic_props *p, uint64_t body_size,
                               size_t *ret_len)
{
    long size = amqp_content_header_size(p);
    assert_true(size >= 14);
    uint8_t *buf = malloc((size_t)size + 16);
    assert_non_null(buf);
    memset(buf, 0xA5, (size_t)size + 16);
    assert_rc(amqp_content_header_encode(p, body_size, buf), size);
    for (int i = 0; i < 16; i++)
        assert_int_equal(buf[size + i], 0xA5);
    *ret_len = (size_t)size;
    return buf;
}

/* Decodes a private exact-size copy (for ASan); *ret_h must not be used past the return
 * except for its status and numbers, since its strings pointed into the freed copy. */
static int header_decode_copy(const uint8_t *p, size_t n, struct amqp_content_header *ret_h)
{
    uint8_t *c = unit_dup(p, n);
    int rc = amqp_content_header_decode(c, n, ret_h);
    free(c);
    return rc;
}

static void test_header_every_subset(void **state)
{
    (void)state;
    assert_int_equal(AMQP_PROPS_COUNT, 14);
    for (unsigned mask = 0; mask < (1u << AMQP_PROPS_COUNT); mask++) {
        struct amqp_basic_props p;
        fill_props(&p, (uint16_t)(mask << 2));
        uint64_t body_size = (uint64_t)mask * 0x100000001ull;
        size_t len;
        uint8_t *buf = header_checked(&p, body_size, &len);
        struct amqp_content_header h;
        assert_rc(amqp_content_header_decode(buf, len, &h), 0);
        assert_int_equal(h.class_id, AMQP_CLASS_BASIC);
        assert_true(h.body_size == body_size);
        assert_int_equal(h.props.flags, p.flags);
        compare_fields("props", (const char *)&p, (const char *)&h.props, amqp_props_desc,
                       AMQP_PROPS_COUNT, true, p.flags);
        free(buf);
    }
}

static void test_header_golden(void **state)
{
    (void)state;
    /* content-type "text/plain" (flag bit 15) and delivery-mode 2 (bit 12): flags 0x9000. */
    static const uint8_t golden[] = {0x00, 0x3C, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0x05,
                                     0x90, 0x00, 0x0A, 't', 'e', 'x', 't', '/', 'p', 'l', 'a',
                                     'i', 'n', 0x02};
    struct amqp_content_header h;
    assert_rc(amqp_content_header_decode(golden, sizeof golden, &h), 0);
    assert_true(h.body_size == 5);
    assert_int_equal(h.props.flags, AMQP_P_CONTENT_TYPE | AMQP_P_DELIVERY_MODE);
    assert_int_equal(h.props.delivery_mode, 2);
    assert_true(amqp_bytes_eq_str(h.props.content_type, "text/plain"));
    struct amqp_basic_props p;
    memset(&p, 0, sizeof p);
    p.flags = AMQP_P_CONTENT_TYPE | AMQP_P_DELIVERY_MODE;
    p.content_type = amqp_cstr("text/plain");
    p.delivery_mode = 2;
    p.priority = 9; /* not flagged: not written */
    size_t len;
    uint8_t *buf = header_checked(&p, 5, &len);
    assert_int_equal(len, sizeof golden);
    assert_memory_equal(buf, golden, len);
    free(buf);

    /* No properties: class, weight, body size, zero flags. */
    static const uint8_t none[] = {0x00, 0x3C, 0x00, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0x01,
                                   0x00, 0x00};
    assert_rc(amqp_content_header_decode(none, sizeof none, &h), 0);
    assert_true(h.body_size == 0x8000000000000001ull);
    memset(&p, 0, sizeof p);
    buf = header_checked(&p, 0x8000000000000001ull, &len);
    assert_int_equal(len, sizeof none);
    assert_memory_equal(buf, none, len);
    free(buf);

    /* timestamp (bit 6) and app-id (bit 3). */
    static const uint8_t ts[] = {0x00, 0x3C, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
                                 0x00, 0x48, 0, 0, 0, 0, 0x65, 0x53, 0xF1, 0x00, 0x01, 'a'};
    assert_rc(amqp_content_header_decode(ts, sizeof ts, &h), 0);
    assert_true(h.props.timestamp == 1700000000);
    assert_true(amqp_bytes_eq_str(h.props.app_id, "a"));
}

static void test_header_errors(void **state)
{
    (void)state;
    struct amqp_basic_props p;
    fill_props(&p, 0xFFFC);
    size_t len;
    uint8_t *buf = header_checked(&p, 1, &len);
    struct amqp_content_header h;
    memset(&h, 0x5A, sizeof h);

    for (size_t cut = 0; cut < len; cut++)
        assert_rc(header_decode_copy(buf, cut, &h), AMQP_E_SHORT);
    assert_int_equal(h.class_id, 0x5A5A); /* untouched on failure */

    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, buf, len);
    longer[len] = 'x';
    assert_rc(amqp_content_header_decode(longer, len + 1, &h), AMQP_E_TRAILING);
    free(longer);

    /* The continuation bit (0) and the unused bit 1: basic has 14 properties. */
    static const uint16_t bad_flags[] = {0x0001, 0x0002, 0x0003, 0xFFFF, 0x9001};
    for (size_t i = 0; i < sizeof bad_flags / sizeof bad_flags[0]; i++) {
        uint8_t *c = unit_dup(buf, len);
        wr16(c + 12, bad_flags[i]);
        assert_rc(amqp_content_header_decode(c, len, &h), AMQP_E_FLAGS);
        free(c);
        p.flags = bad_flags[i];
        assert_rc(amqp_content_header_size(&p), AMQP_E_FLAGS);
        uint8_t out[16];
        assert_rc(amqp_content_header_encode(&p, 0, out), AMQP_E_FLAGS);
    }

    /* Only basic (60) has content. */
    static const uint16_t classes[] = {0, 10, 20, 40, 50, 59, 61, 85, 90, 0xFFFF};
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
        uint8_t *c = unit_dup(buf, len);
        wr16(c, classes[i]);
        assert_rc(amqp_content_header_decode(c, len, &h), AMQP_E_CLASS);
        free(c);
    }
    free(buf);

    /* A bad headers table: unknown letter; nested one level too deep. */
    uint8_t hb[14 + 4 + 40 * 7] = {0x00, 0x3C, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0x00};
    static const uint8_t bad_entry[] = {0x01, 'k', 'U', 0x00, 0x01};
    wr32(hb + 14, sizeof bad_entry);
    memcpy(hb + 18, bad_entry, sizeof bad_entry);
    assert_rc(header_decode_copy(hb, 18 + sizeof bad_entry, &h), AMQP_E_FIELD_TYPE);
    for (int levels = 30; levels <= 40; levels++) {
        size_t n = nested_tables(hb + 18, levels);
        wr32(hb + 14, (uint32_t)n);
        assert_rc(header_decode_copy(hb, 18 + n, &h),
                  levels + 1 > AMQP_TABLE_MAX_DEPTH ? AMQP_E_DEPTH : 0);
    }
}

/* ---- fixtures -------------------------------------------------------------------------- */

/* Walks every frame of a fixture: decodes method and header frames and checks that
 * re-encoding gives the same bytes. Returns the first error (frame or decode) or 0, and
 * how many frames were handled before it. */
static int walk_fixture(const char *name, bool header, size_t *ret_frames)
{
    size_t len;
    uint8_t *buf = unit_fixture(name, &len);
    size_t off = 0, nframes = 0;
    int rc = 0;
    if (header) {
        assert_rc(amqp_protocol_header_check(buf, len), 1);
        off = AMQP_PROTOCOL_HEADER_SIZE;
    }
    while (off < len) {
        struct amqp_frame f;
        long n = amqp_frame_parse(buf + off, len - off, 131072, &f);
        if (n <= 0) {
            rc = n == 0 ? AMQP_E_SHORT : (int)n;
            break;
        }
        if (f.type == AMQP_FRAME_METHOD) {
            struct amqp_method m;
            if ((rc = amqp_method_decode(f.payload, f.size, &m)) < 0)
                break;
            size_t elen;
            uint8_t *enc = encode_checked(&m, &elen);
            assert_int_equal(elen, f.size);
            assert_memory_equal(enc, f.payload, elen);
            free(enc);
        } else if (f.type == AMQP_FRAME_HEADER) {
            struct amqp_content_header h;
            if ((rc = amqp_content_header_decode(f.payload, f.size, &h)) < 0)
                break;
            size_t elen;
            uint8_t *enc = header_checked(&h.props, h.body_size, &elen);
            assert_int_equal(elen, f.size);
            assert_memory_equal(enc, f.payload, elen);
            free(enc);
        }
        off += (size_t)n;
        nframes++;
    }
    free(buf);
    *ret_frames = nframes;
    return rc;
}

static void test_fixture_sessions(void **state)
{
    (void)state;
    size_t n;
    assert_rc(walk_fixture("frames/client-session.bin", true, &n), 0);
    assert_int_equal(n, 18);
    assert_rc(walk_fixture("frames/server-session.bin", false, &n), 0);
    assert_int_equal(n, 16);
    assert_rc(walk_fixture("frames/publish-all-props.bin", false, &n), 0);
    assert_int_equal(n, 4);
}

/* The values make_corpus.py wrote, read back through the codec. */
static void test_fixture_values(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = unit_fixture("frames/client-session.bin", &len);
    struct amqp_frame f;
    struct amqp_method m;
    struct amqp_field v, c;
    const uint8_t *p = buf + AMQP_PROTOCOL_HEADER_SIZE;
    long n = amqp_frame_parse(p, len - 8, 131072, &f);
    assert_true(n > 0);
    assert_rc(amqp_method_decode(f.payload, f.size, &m), 0);
    assert_int_equal(m.id, AMQP_CONNECTION_START_OK);
    assert_true(amqp_bytes_eq_str(m.u.connection_start_ok.mechanism, "PLAIN"));
    assert_bytes_equal(m.u.connection_start_ok.response, AMQP_BYTES_LIT("\0guest\0guest"));
    assert_true(amqp_bytes_eq_str(m.u.connection_start_ok.locale, "en_US"));
    assert_rc(amqp_table_get(m.u.connection_start_ok.client_properties, "capabilities", &v), 1);
    assert_int_equal(v.type, 'F');
    assert_rc(amqp_table_get(v.v.bytes, "publisher_confirms", &c), 1);
    assert_true(c.type == 't' && c.v.b);
    assert_rc(amqp_table_get(v.v.bytes, "connection.blocked", &c), 1);
    assert_true(c.type == 't' && !c.v.b);
    /* Skip to queue.declare, the 7th frame. */
    for (int i = 0; i < 6; i++) {
        p += n;
        n = amqp_frame_parse(p, len - (size_t)(p - buf), 131072, &f);
        assert_true(n > 0);
    }
    assert_rc(amqp_method_decode(f.payload, f.size, &m), 0);
    assert_int_equal(m.id, AMQP_QUEUE_DECLARE);
    assert_true(m.u.queue_declare.durable);
    assert_false(m.u.queue_declare.passive || m.u.queue_declare.exclusive ||
                 m.u.queue_declare.auto_delete || m.u.queue_declare.no_wait);
    assert_rc(amqp_table_get(m.u.queue_declare.arguments, "x-message-ttl", &v), 1);
    assert_true(v.type == 'I' && v.v.i == 60000);
    assert_rc(amqp_table_get(m.u.queue_declare.arguments, "x-max-length", &v), 1);
    assert_true(v.type == 'l' && v.v.i == 1000000);
    free(buf);

    buf = unit_fixture("frames/publish-all-props.bin", &len);
    n = amqp_frame_parse(buf, len, 131072, &f);
    assert_true(n > 0);
    assert_int_equal(f.channel, 3);
    assert_rc(amqp_method_decode(f.payload, f.size, &m), 0);
    assert_true(m.u.basic_publish.mandatory && !m.u.basic_publish.immediate);
    long n2 = amqp_frame_parse(buf + n, len - (size_t)n, 131072, &f);
    assert_true(n2 > 0);
    assert_int_equal(f.type, AMQP_FRAME_HEADER);
    struct amqp_content_header h;
    assert_rc(amqp_content_header_decode(f.payload, f.size, &h), 0);
    const struct amqp_basic_props *pp = &h.props;
    assert_int_equal(pp->flags, 0xFFFC);
    assert_true(h.body_size == 29);
    assert_true(amqp_bytes_eq_str(pp->content_type, "application/json"));
    assert_true(amqp_bytes_eq_str(pp->content_encoding, "gzip"));
    assert_int_equal(pp->delivery_mode, 2);
    assert_int_equal(pp->priority, 9);
    assert_true(amqp_bytes_eq_str(pp->correlation_id, "corr-1"));
    assert_true(amqp_bytes_eq_str(pp->reply_to, "amq.rabbitmq.reply-to"));
    assert_true(amqp_bytes_eq_str(pp->expiration, "60000"));
    assert_true(amqp_bytes_eq_str(pp->message_id, "msg-1"));
    assert_true(pp->timestamp == 1700000000);
    assert_true(amqp_bytes_eq_str(pp->type, "order.created"));
    assert_true(amqp_bytes_eq_str(pp->user_id, "guest"));
    assert_true(amqp_bytes_eq_str(pp->app_id, "warren-tests"));
    assert_true(amqp_bytes_eq_str(pp->reserved, "cluster-a"));
    assert_rc(amqp_table_get(pp->headers, "i64", &v), 1);
    assert_true(v.type == 'l' && v.v.i == INT64_MIN);
    assert_rc(amqp_table_get(pp->headers, "u32", &v), 1);
    assert_true(v.type == 'i' && v.v.u == UINT32_MAX);
    assert_rc(amqp_table_get(pp->headers, "str", &v), 1);
    assert_true(amqp_bytes_eq_str(v.v.bytes, "caf\xc3\xa9"));
    assert_rc(amqp_table_get(pp->headers, "dec", &v), 1);
    assert_true(v.type == 'D' && v.v.dec.scale == 2 && v.v.dec.value == 12345);
    assert_rc(amqp_table_get(pp->headers, "nested", &v), 1);
    assert_rc(amqp_table_get(v.v.bytes, "arr", &v), 1);
    struct amqp_table_iter it;
    amqp_table_iter_init(&it, v.v.bytes);
    assert_rc(amqp_array_next(&it, &c), 1);
    assert_true(c.type == 'I' && c.v.i == 1);
    assert_rc(amqp_array_next(&it, &c), 1);
    assert_true(c.type == 'S' && amqp_bytes_eq_str(c.v.bytes, "two"));
    assert_rc(amqp_array_next(&it, &c), 1);
    assert_rc(amqp_table_get(c.v.bytes, "deep", &v), 1);
    assert_int_equal(v.type, 'A');
    assert_rc(amqp_array_next(&it, &c), 0);
    free(buf);
}

/* Each broken fixture fails with the status its name says, after the good frames. */
static void test_fixture_broken(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int want;
        size_t frames_before;
    } cases[] = {
        {"broken/frame-end.bin", AMQP_E_FRAME_END, 1},
        {"broken/frame-size.bin", AMQP_E_FRAME_SIZE, 1},
        {"broken/frame-type.bin", AMQP_E_FRAME_TYPE, 1},
        {"broken/short.bin", AMQP_E_SHORT, 0},
        {"broken/short-table-length.bin", AMQP_E_SHORT, 0},
        {"broken/method.bin", AMQP_E_METHOD, 0},
        {"broken/trailing.bin", AMQP_E_TRAILING, 0},
        {"broken/field-type.bin", AMQP_E_FIELD_TYPE, 0},
        {"broken/depth.bin", AMQP_E_DEPTH, 0},
        {"broken/flags.bin", AMQP_E_FLAGS, 0},
        {"broken/class.bin", AMQP_E_CLASS, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        int rc = walk_fixture(cases[i].name, false, &n);
        if (rc != cases[i].want)
            fail_msg("%s: %d (%s), want %d (%s)", cases[i].name, rc, amqp_strerror(rc),
                     cases[i].want, amqp_strerror(cases[i].want));
        assert_int_equal(n, cases[i].frames_before);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptors),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_every_method),
        cmocka_unit_test(test_fields_independent),
        cmocka_unit_test(test_shortstr_limit),
        cmocka_unit_test(test_unknown_method),
        cmocka_unit_test(test_golden_methods),
        cmocka_unit_test(test_bad_tables),
        cmocka_unit_test(test_lengths_past_end),
        cmocka_unit_test(test_header_every_subset),
        cmocka_unit_test(test_header_golden),
        cmocka_unit_test(test_header_errors),
        cmocka_unit_test(test_fixture_sessions),
        cmocka_unit_test(test_fixture_values),
        cmocka_unit_test(test_fixture_broken),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
