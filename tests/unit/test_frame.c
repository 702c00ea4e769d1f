/* test_frame.c — protocol/frame.h: the protocol header check and the frame reader. A
 * simulated connection input buffer accumulates bytes in arbitrary splits and calls
 * amqp_frame_parse until it needs more; every split must yield the same frames. */
#include "unit.h"

#include "protocol/frame.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif
#ifdef HAVE_ASAN
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#endif

#define FRAME_MAX 131072

/* One frame as the reader saw it, payload copied out (the input buffer moves on). */
struct seen {
    uint8_t type;
    uint16_t channel;
    uint32_t size;
    uint8_t *payload; /* owned */
};

/* What a connection does with its input: an optional protocol header, then frames. The
 * spare capacity past `len` is poisoned, so ASan flags any read beyond the bytes held. */
struct reader {
    uint8_t *buf; /* owned */
    size_t len, cap;
    uint32_t frame_max;
    bool want_header;
    int err; /* first error, sticky */
    struct seen frames[64];
    size_t nframes;
};

static void reader_init(struct reader *r, uint32_t frame_max, bool want_header)
{
    memset(r, 0, sizeof *r);
    r->frame_max = frame_max;
    r->want_header = want_header;
}

static void reader_free(struct reader *r)
{
    ASAN_UNPOISON_MEMORY_REGION(r->buf, r->cap);
    free(r->buf);
    for (size_t i = 0; i < r->nframes; i++)
        free(r->frames[i].payload);
    memset(r, 0, sizeof *r);
}

static void reader_consume(struct reader *r, size_t n)
{
    memmove(r->buf, r->buf + n, r->len - n);
    r->len -= n;
    ASAN_POISON_MEMORY_REGION(r->buf + r->len, r->cap - r->len);
}

/* Appends p[0..n) and parses as much as the buffer now holds. */
static void reader_feed(struct reader *r, const uint8_t *p, size_t n)
{
    if (r->err)
        return;
    if (!r->buf || r->cap - r->len < n) { /* never do arithmetic on a NULL buf */
        size_t cap = r->cap ? r->cap : 64;
        while (cap - r->len < n)
            cap *= 2;
        ASAN_UNPOISON_MEMORY_REGION(r->buf, r->cap);
        r->buf = realloc(r->buf, cap);
        assert_non_null(r->buf);
        r->cap = cap;
    }
    ASAN_UNPOISON_MEMORY_REGION(r->buf + r->len, n);
    if (n)
        memcpy(r->buf + r->len, p, n);
    r->len += n;
    ASAN_POISON_MEMORY_REGION(r->buf + r->len, r->cap - r->len);
    if (r->want_header) {
        int rc = amqp_protocol_header_check(r->buf, r->len);
        if (rc <= 0) {
            r->err = rc;
            return;
        }
        reader_consume(r, AMQP_PROTOCOL_HEADER_SIZE);
        r->want_header = false;
    }
    for (;;) {
        struct amqp_frame f;
        long rc = amqp_frame_parse(r->buf, r->len, r->frame_max, &f);
        if (rc == 0)
            return;
        if (rc < 0) {
            r->err = (int)rc;
            return;
        }
        assert_true((size_t)rc <= r->len);
        assert_int_equal(rc, f.size + AMQP_FRAME_OVERHEAD);
        assert_ptr_equal(f.payload, r->buf + AMQP_FRAME_HEADER_SIZE);
        assert_true(r->nframes < sizeof r->frames / sizeof r->frames[0]);
        struct seen *s = &r->frames[r->nframes++];
        s->type = f.type;
        s->channel = f.channel;
        s->size = f.size;
        s->payload = unit_dup(f.payload, f.size);
        reader_consume(r, (size_t)rc);
    }
}

static void assert_same_frames(const struct reader *a, const struct reader *b)
{
    assert_int_equal(a->err, b->err);
    assert_int_equal(a->nframes, b->nframes);
    for (size_t i = 0; i < a->nframes; i++) {
        assert_int_equal(a->frames[i].type, b->frames[i].type);
        assert_int_equal(a->frames[i].channel, b->frames[i].channel);
        assert_int_equal(a->frames[i].size, b->frames[i].size);
        if (a->frames[i].size)
            assert_memory_equal(a->frames[i].payload, b->frames[i].payload, a->frames[i].size);
    }
}

/* Appends one frame to out (room assumed); returns the bytes written. */
static size_t put_frame(uint8_t *out, uint8_t type, uint16_t channel, const uint8_t *payload,
                        uint32_t size)
{
    amqp_frame_header_write(out, type, channel, size);
    if (size)
        memcpy(out + AMQP_FRAME_HEADER_SIZE, payload, size);
    out[AMQP_FRAME_HEADER_SIZE + size] = AMQP_FRAME_END;
    return size + AMQP_FRAME_OVERHEAD;
}

/* A stream of frames of awkward sizes (0, 1, around the header size, up to frame_max),
 * every type and channels 0..65535; payload bytes include 0xCE to catch scanning for it. */
static uint8_t *synthetic_stream(size_t *ret_len, size_t *ret_nframes)
{
    static const uint32_t sizes[] = {0, 1, 6, 7, 8, 9, 100, 4088, 0, 65536, 3, FRAME_MAX - 8};
    static const uint8_t types[] = {AMQP_FRAME_METHOD, AMQP_FRAME_HEADER, AMQP_FRAME_BODY};
    size_t n = sizeof sizes / sizeof sizes[0], total = 0;
    for (size_t i = 0; i < n; i++)
        total += sizes[i] + AMQP_FRAME_OVERHEAD;
    uint8_t *out = malloc(total);
    uint8_t *payload = malloc(FRAME_MAX);
    assert_non_null(out);
    assert_non_null(payload);
    for (size_t i = 0; i < FRAME_MAX; i++)
        payload[i] = (uint8_t)(i * 7 + 0xCE);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t type = sizes[i] == 0 ? AMQP_FRAME_HEARTBEAT : types[i % 3];
        uint16_t channel = type == AMQP_FRAME_HEARTBEAT ? 0 : (uint16_t)(i == 3 ? 65535 : i);
        payload[0] = (uint8_t)i;
        off += put_frame(out + off, type, channel, payload, sizes[i]);
    }
    free(payload);
    assert_int_equal(off, total);
    *ret_len = total;
    *ret_nframes = n;
    return out;
}

/* Feeds buf in pieces whose lengths come from `rng` (1..max_piece bytes). */
static void feed_random(struct reader *r, const uint8_t *buf, size_t len, uint64_t *rng,
                        size_t max_piece)
{
    size_t off = 0;
    while (off < len) {
        size_t piece = 1 + (size_t)(unit_rand(rng) % max_piece);
        if (piece > len - off)
            piece = len - off;
        reader_feed(r, buf + off, piece);
        off += piece;
    }
}

/* ---- protocol header ---------------------------------------------------------------- */

static void test_protocol_header_good(void **state)
{
    (void)state;
    static const uint8_t hdr[] = {'A', 'M', 'Q', 'P', 0, 0, 9, 1, AMQP_FRAME_METHOD};
    assert_memory_equal(amqp_protocol_header, hdr, AMQP_PROTOCOL_HEADER_SIZE);
    assert_rc(amqp_protocol_header_check(hdr, 8), 1);
    assert_rc(amqp_protocol_header_check(hdr, sizeof hdr), 1); /* a frame may follow */
}

static void test_protocol_header_partial(void **state)
{
    (void)state;
    for (size_t n = 0; n < AMQP_PROTOCOL_HEADER_SIZE; n++) {
        uint8_t *p = unit_dup(amqp_protocol_header, n);
        assert_rc(amqp_protocol_header_check(p, n), 0);
        free(p);
    }
    assert_rc(amqp_protocol_header_check(NULL, 0), 0); /* an empty input buffer */
}

static void test_protocol_header_bad(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {"AMQP\0\0\x09\x00", 8},  /* 0-9 without the revision */
        {"AMQP\0\0\x08\x00", 8},  /* 0-8 */
        {"AMQP\x01\x01\x00\x0a", 8}, /* 0-10 */
        {"AMQP\x00\x01\x00\x00", 8}, /* 1-0 */
        {"HTTP/1.1", 8},
        {"GET / HTTP/1.1\r\n", 16},
        {"H", 1},                 /* wrong from the first byte: fail early */
        {"AMQ!", 4},
        {"\x01\x00\x00\x00\x00\x00\x04", 7}, /* a frame instead of the header */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t *p = unit_dup(bad[i].bytes, bad[i].len);
        assert_rc(amqp_protocol_header_check(p, bad[i].len), AMQP_E_HEADER);
        free(p);
    }
}

/* ---- frame layout ----------------------------------------------------------------- */

static void test_header_write_golden(void **state)
{
    (void)state;
    uint8_t out[8] = {0};
    static const uint8_t want[7] = {0x02, 0x01, 0x02, 0x0A, 0x0B, 0x0C, 0x0D};
    amqp_frame_header_write(out, AMQP_FRAME_HEADER, 0x0102, 0x0A0B0C0D);
    assert_memory_equal(out, want, 7);
    assert_int_equal(out[7], 0); /* writes exactly 7 bytes */
}

static void test_parse_golden(void **state)
{
    (void)state;
    static const uint8_t heartbeat[] = {0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xCE};
    /* connection.tune on channel 0: 2047 channels, 131072 frame_max, 60 s heartbeat */
    static const uint8_t tune[] = {0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0C,
                                   0x00, 0x0A, 0x00, 0x1E, 0x07, 0xFF, 0x00, 0x02,
                                   0x00, 0x00, 0x00, 0x3C, 0xCE};
    struct amqp_frame f;
    uint8_t *p = unit_dup(heartbeat, sizeof heartbeat);
    assert_rc(amqp_frame_parse(p, sizeof heartbeat, FRAME_MAX, &f), 8);
    assert_int_equal(f.type, AMQP_FRAME_HEARTBEAT);
    assert_int_equal(f.channel, 0);
    assert_int_equal(f.size, 0);
    free(p);

    p = unit_dup(tune, sizeof tune);
    assert_rc(amqp_frame_parse(p, sizeof tune, FRAME_MAX, &f), sizeof tune);
    assert_int_equal(f.type, AMQP_FRAME_METHOD);
    assert_int_equal(f.size, 12);
    assert_ptr_equal(f.payload, p + 7);
    assert_int_equal(rd32(f.payload), 0x000A001E);
    free(p);

    /* Channel and size are big-endian. */
    static const uint8_t body[] = {0x03, 0xAB, 0xCD, 0x00, 0x00, 0x00, 0x01, 'x', 0xCE};
    p = unit_dup(body, sizeof body);
    assert_rc(amqp_frame_parse(p, sizeof body, FRAME_MAX, &f), sizeof body);
    assert_int_equal(f.channel, 0xABCD);
    assert_int_equal(f.payload[0], 'x');
    free(p);
}

static void test_parse_needs_more(void **state)
{
    (void)state;
    uint8_t frame[64 + AMQP_FRAME_OVERHEAD], payload[64];
    memset(payload, AMQP_FRAME_END, sizeof payload); /* 0xCE inside must not end the frame */
    size_t n = put_frame(frame, AMQP_FRAME_BODY, 5, payload, sizeof payload);
    struct amqp_frame f;
    memset(&f, 0x5A, sizeof f);
    for (size_t len = 0; len < n; len++) {
        uint8_t *p = unit_dup(frame, len);
        assert_rc(amqp_frame_parse(p, len, FRAME_MAX, &f), 0);
        free(p);
    }
    assert_int_equal(f.type, 0x5A); /* untouched until a frame is complete */
    assert_rc(amqp_frame_parse(frame, n, FRAME_MAX, &f), n);
}

static void test_frame_end_bad(void **state)
{
    (void)state;
    uint8_t frame[16];
    static const uint8_t payload[4] = {1, 2, 3, 4};
    size_t n = put_frame(frame, AMQP_FRAME_BODY, 1, payload, sizeof payload);
    static const uint8_t ends[] = {0x00, 0xCD, 0xCF, 0xFF, 0x0E};
    struct amqp_frame f;
    for (size_t i = 0; i < sizeof ends; i++) {
        frame[n - 1] = ends[i];
        uint8_t *p = unit_dup(frame, n);
        assert_rc(amqp_frame_parse(p, n, FRAME_MAX, &f), AMQP_E_FRAME_END);
        assert_rc(amqp_frame_parse(p, n - 1, FRAME_MAX, &f), 0); /* not seen yet */
        free(p);
    }
    /* A heartbeat whose end octet is wrong. */
    static const uint8_t hb[] = {0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    assert_rc(amqp_frame_parse(hb, sizeof hb, FRAME_MAX, &f), AMQP_E_FRAME_END);
}

static void test_frame_size(void **state)
{
    (void)state;
    uint8_t hdr[AMQP_FRAME_HEADER_SIZE];
    struct amqp_frame f;
    /* Exactly frame_max in total is fine, one more byte is not, and that is known from the
     * 7-byte header alone, before any payload is buffered. */
    static const uint32_t maxes[] = {AMQP_FRAME_MIN_SIZE, FRAME_MAX, 1u << 20};
    for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++) {
        amqp_frame_header_write(hdr, AMQP_FRAME_BODY, 1, maxes[i] - AMQP_FRAME_OVERHEAD);
        assert_rc(amqp_frame_parse(hdr, sizeof hdr, maxes[i], &f), 0);
        amqp_frame_header_write(hdr, AMQP_FRAME_BODY, 1, maxes[i] - AMQP_FRAME_OVERHEAD + 1);
        assert_rc(amqp_frame_parse(hdr, sizeof hdr, maxes[i], &f), AMQP_E_FRAME_SIZE);
        assert_rc(amqp_frame_parse(hdr, sizeof hdr - 1, maxes[i], &f), 0);
    }
    /* Sizes near 2^32 must not wrap around the +8. */
    static const uint32_t huge[] = {0xFFFFFFFFu, 0xFFFFFFF8u, 0xFFFFFFF7u, 0x80000000u};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        amqp_frame_header_write(hdr, AMQP_FRAME_METHOD, 0, huge[i]);
        assert_rc(amqp_frame_parse(hdr, sizeof hdr, FRAME_MAX, &f), AMQP_E_FRAME_SIZE);
        assert_rc(amqp_frame_parse(hdr, sizeof hdr, 0xFFFFFFFFu, &f), AMQP_E_FRAME_SIZE);
        assert_rc(amqp_frame_parse(hdr, sizeof hdr, 0, &f), AMQP_E_FRAME_SIZE);
    }
    /* frame_max 0: no negotiated limit, a large frame just needs more bytes. */
    amqp_frame_header_write(hdr, AMQP_FRAME_BODY, 1, 10u << 20);
    assert_rc(amqp_frame_parse(hdr, sizeof hdr, 0, &f), 0);
}

static void test_frame_type(void **state)
{
    (void)state;
    struct amqp_frame f;
    for (unsigned t = 0; t < 256; t++) {
        uint8_t frame[AMQP_FRAME_OVERHEAD];
        put_frame(frame, (uint8_t)t, 0, NULL, 0);
        bool known = t == AMQP_FRAME_METHOD || t == AMQP_FRAME_HEADER || t == AMQP_FRAME_BODY ||
                     t == AMQP_FRAME_HEARTBEAT;
        assert_rc(amqp_frame_parse(frame, sizeof frame, FRAME_MAX, &f),
                  known ? AMQP_FRAME_OVERHEAD : AMQP_E_FRAME_TYPE);
        if (!known) /* known from the header, before the payload arrives */
            assert_rc(amqp_frame_parse(frame, AMQP_FRAME_HEADER_SIZE, FRAME_MAX, &f),
                      AMQP_E_FRAME_TYPE);
    }
    /* A second protocol header or an HTTP request in the frame stream. */
    assert_rc(amqp_frame_parse(amqp_protocol_header, 8, FRAME_MAX, &f), AMQP_E_FRAME_TYPE);
    assert_rc(amqp_frame_parse((const uint8_t *)"HTTP/1.1", 8, FRAME_MAX, &f), AMQP_E_FRAME_TYPE);
}

/* ---- splits: a stream must parse the same however the bytes arrive ----------------- */

static void check_all_splits(const uint8_t *buf, size_t len, bool header, size_t want_frames,
                             int want_err)
{
    struct reader whole, r;
    reader_init(&whole, FRAME_MAX, header);
    reader_feed(&whole, buf, len);
    assert_int_equal(whole.nframes, want_frames);
    assert_rc(whole.err, want_err);

    /* one byte at a time */
    reader_init(&r, FRAME_MAX, header);
    for (size_t i = 0; i < len; i++)
        reader_feed(&r, buf + i, 1);
    assert_same_frames(&whole, &r);
    reader_free(&r);

    /* every two-piece split, with an empty read in the middle */
    for (size_t cut = 0; cut <= len; cut += 1 + cut / 64) {
        reader_init(&r, FRAME_MAX, header);
        reader_feed(&r, buf, cut);
        reader_feed(&r, buf + cut, 0);
        reader_feed(&r, buf + cut, len - cut);
        assert_same_frames(&whole, &r);
        reader_free(&r);
    }

    /* random splits, small and large pieces */
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (int round = 0; round < 200; round++) {
        reader_init(&r, FRAME_MAX, header);
        feed_random(&r, buf, len, &rng, round % 2 ? 16 : 4096);
        assert_same_frames(&whole, &r);
        reader_free(&r);
    }
    reader_free(&whole);
}

static void test_split_synthetic(void **state)
{
    (void)state;
    size_t len, n;
    uint8_t *buf = synthetic_stream(&len, &n);
    struct reader r;
    reader_init(&r, FRAME_MAX, false);
    reader_feed(&r, buf, len);
    assert_rc(r.err, 0);
    assert_int_equal(r.nframes, n);
    assert_int_equal(r.len, 0);
    assert_int_equal(r.frames[3].channel, 65535);
    assert_int_equal(r.frames[n - 1].size, FRAME_MAX - 8);
    for (size_t i = 0; i < n; i++)
        if (r.frames[i].size)
            assert_int_equal(r.frames[i].payload[0], i);
    reader_free(&r);
    check_all_splits(buf, len, false, n, 0);
    free(buf);
}

/* The fixture is what a client sends: the protocol header, then 18 frames. */
static const struct {
    uint8_t type;
    uint16_t channel;
    uint32_t method; /* class << 16 | method, for method frames */
} client_session[] = {
    {1, 0, 0x000A000B}, {1, 0, 0x000A001F}, {1, 0, 0x000A0028}, {1, 1, 0x0014000A},
    {1, 1, 0x0055000A}, {1, 1, 0x0028000A}, {1, 1, 0x0032000A}, {1, 1, 0x00320014},
    {1, 1, 0x003C000A}, {1, 1, 0x003C0014}, {1, 1, 0x003C0028}, {2, 1, 0},
    {3, 1, 0},          {8, 0, 0},          {1, 1, 0x003C0050}, {1, 1, 0x003C0078},
    {1, 1, 0x00140028}, {1, 0, 0x000A0032},
};

static void test_split_fixture(void **state)
{
    (void)state;
    size_t len, n = sizeof client_session / sizeof client_session[0];
    uint8_t *buf = unit_fixture("frames/client-session.bin", &len);
    struct reader r;
    reader_init(&r, FRAME_MAX, true);
    reader_feed(&r, buf, len);
    assert_rc(r.err, 0);
    assert_int_equal(r.nframes, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(r.frames[i].type, client_session[i].type);
        assert_int_equal(r.frames[i].channel, client_session[i].channel);
        if (r.frames[i].type == AMQP_FRAME_METHOD)
            assert_int_equal(rd32(r.frames[i].payload), client_session[i].method);
    }
    assert_int_equal(r.frames[12].size, 5);
    assert_memory_equal(r.frames[12].payload, "hello", 5);
    reader_free(&r);
    check_all_splits(buf, len, true, n, 0);
    free(buf);
}

/* An error mid-stream: the frames before it are delivered, then the error, whatever the
 * split. Covers a bad frame end, an oversized frame and a bad protocol header. */
static void test_split_errors(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = unit_fixture("frames/client-session.bin", &len);

    /* Corrupt the end octet of frame 5 (confirm.select). */
    size_t off = AMQP_PROTOCOL_HEADER_SIZE;
    for (int i = 0; i < 4; i++)
        off += rd32(buf + off + 3) + AMQP_FRAME_OVERHEAD;
    size_t end = off + rd32(buf + off + 3) + AMQP_FRAME_OVERHEAD - 1;
    assert_int_equal(buf[end], AMQP_FRAME_END);
    buf[end] = 0;
    check_all_splits(buf, len, true, 4, AMQP_E_FRAME_END);

    /* Make frame 5 claim a size over frame_max: rejected from its header. */
    buf[end] = AMQP_FRAME_END;
    wr32(buf + off + 3, FRAME_MAX);
    check_all_splits(buf, len, true, 4, AMQP_E_FRAME_SIZE);
    wr32(buf + off + 3, 5);

    /* Unknown frame type. */
    buf[off] = 7;
    check_all_splits(buf, len, true, 4, AMQP_E_FRAME_TYPE);

    /* A bad protocol header stops everything. */
    buf[off] = AMQP_FRAME_METHOD;
    buf[7] = 0;
    check_all_splits(buf, len, true, 0, AMQP_E_HEADER);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_protocol_header_good),
        cmocka_unit_test(test_protocol_header_partial),
        cmocka_unit_test(test_protocol_header_bad),
        cmocka_unit_test(test_header_write_golden),
        cmocka_unit_test(test_parse_golden),
        cmocka_unit_test(test_parse_needs_more),
        cmocka_unit_test(test_frame_end_bad),
        cmocka_unit_test(test_frame_size),
        cmocka_unit_test(test_frame_type),
        cmocka_unit_test(test_split_synthetic),
        cmocka_unit_test(test_split_fixture),
        cmocka_unit_test(test_split_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
