/* perf_bind.c — generates warren-perf's extra binding keys and sends them as pipelined no-wait
 * queue.bind frames with a passive queue.declare round trip per batch (see perf_bind.h). Owns
 * a write buffer for the duration of bind_extra(), never the connection.
 * Why the keys cannot match: every generated word is a letter from LEADS followed by base-36
 * digits, so it is never "m", never "perf" and never a decimal number; each topic shape below
 * puts such a word where the producers' "perf.<decimal>.m" has "perf", the number or "m". */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "perf_bind.h"
#include "perf_wire.h"

/* First letters of generated words: neither 'm' nor 'p', so no word is "m" or "perf". */
static const char LEADS[] = "abcdefghijkl";
static const char B36[] = "0123456789abcdefghijklmnopqrstuvwxyz";

#define TOPIC_SHAPES 10

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A bijection on 32 bits (Chris Wellons' lowbias32): distinct inputs stay distinct. */
static uint32_t mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/* Append a word: lead, then v in base 36 (at most 1 + 7 bytes). Distinct v give distinct
 * words whatever the lead, since the lead is always exactly one byte. */
static char *put_word(char *p, char lead, uint32_t v)
{
    char tmp[8];
    int k = 0;
    *p++ = lead;
    do {
        tmp[k++] = B36[v % 36];
        v /= 36;
    } while (v);
    while (k)
        *p++ = tmp[--k];
    return p;
}

static char *put_str(char *p, const char *s)
{
    size_t len = strlen(s);
    memcpy(p, s, len);
    return p + len;
}

void bind_key(enum ex_type t, uint32_t seed, uint32_t j, const char *avoid_prefix,
              char buf[BIND_KEY_MAX])
{
    uint32_t x = mix32(j ^ seed); /* unique per j: makes the key unique */
    uint32_t r1 = mix32(x + 0x9e3779b9u), r2 = mix32(x + 0x3c6ef372u);
    char lu = LEADS[r1 % (sizeof LEADS - 1)], l1 = LEADS[r2 % (sizeof LEADS - 1)];
    char *p = buf;

    if (t != EX_TOPIC) {
        /* "<unique>.<random>"; a producer key is "<prefix><decimal>", which this could only
         * be if it starts with the prefix and ends in digits: then add a '~', which no other
         * key holds, so keys stay distinct. */
        p = put_word(p, lu, x);
        *p++ = '.';
        p = put_word(p, l1, r1 % (36u * 36u * 36u));
        *p = '\0';
        size_t plen = strlen(avoid_prefix);
        if (plen && !strncmp(buf, avoid_prefix, plen) && buf[plen] &&
            strspn(buf + plen, "0123456789") == strlen(buf + plen)) {
            *p++ = '~';
            *p = '\0';
        }
        return;
    }
    /* u is the unique word; a producer key is "perf.<decimal>.m". Each shape has its own
     * arrangement of literals, '*' and '#', so shapes never coincide either. */
    switch (j % TOPIC_SHAPES) {
    case 0: /* u.w.w: first word is not "perf" */
        p = put_word(p, lu, x);
        *p++ = '.';
        p = put_word(p, l1, r1 % 46656u);
        *p++ = '.';
        p = put_word(p, l1, r2 % 46656u);
        break;
    case 1: /* u.*.w */
        p = put_word(p, lu, x);
        p = put_str(p, ".*.");
        p = put_word(p, l1, r2 % 46656u);
        break;
    case 2: /* u.# */
        p = put_word(p, lu, x);
        p = put_str(p, ".#");
        break;
    case 3: /* *.u.#: second word is not a number */
        p = put_str(p, "*.");
        p = put_word(p, lu, x);
        p = put_str(p, ".#");
        break;
    case 4: /* #.u: last word is not "m" */
        p = put_str(p, "#.");
        p = put_word(p, lu, x);
        break;
    case 5: /* #.u.*: second-to-last word is not a number */
        p = put_str(p, "#.");
        p = put_word(p, lu, x);
        p = put_str(p, ".*");
        break;
    case 6: /* perf.*.u: third word is not "m" */
        p = put_str(p, "perf.*.");
        p = put_word(p, lu, x);
        break;
    case 7: /* perf.u.#: second word is not a number */
        p = put_str(p, "perf.");
        p = put_word(p, lu, x);
        p = put_str(p, ".#");
        break;
    case 8: /* perf.#.u: last word is not "m" */
        p = put_str(p, "perf.#.");
        p = put_word(p, lu, x);
        break;
    default: /* perf.<n>.m.u: one word longer than any producer key, sharing its prefix */
        p += sprintf(p, "perf.%u.m.", r2 % 1000u);
        p = put_word(p, lu, x);
        break;
    }
    *p = '\0';
}

/* Print "<what> failed: the broker closed the channel|connection: <code> <text>" into err. */
static void describe_close(const amqp_method_t *m, const char *what, char *err, size_t n)
{
    bool conn = m->id == AMQP_CONNECTION_CLOSE_METHOD;
    const amqp_bytes_t *text;
    unsigned code;
    if (conn) {
        const amqp_connection_close_t *c = m->decoded;
        code = c->reply_code;
        text = &c->reply_text;
    } else {
        const amqp_channel_close_t *c = m->decoded;
        code = c->reply_code;
        text = &c->reply_text;
    }
    snprintf(err, n, "%s failed: the broker closed the %s: %u %.*s", what,
             conn ? "connection" : "channel", code, (int)text->len, (const char *)text->bytes);
}

/* Flush the batch [first, end), then send a passive queue.declare and wait for its answer:
 * channels are ordered, so declare-ok means every bind before it was applied. Counts bind-ok
 * replies to no-wait binds in *stray. Returns 0, or -1 with err set. */
static int sync_batch(const struct bind_job *job, struct wbuf *wb, unsigned first, unsigned end,
                      uint64_t *stray, char *err, size_t n)
{
    amqp_connection_state_t c = job->conn;
    char what[120];
    snprintf(what, sizeof what, "queue.bind (no-wait) of extra bindings %u-%u", first, end - 1);
    int rc = wbuf_flush(wb);
    if (rc < 0) {
        snprintf(err, n, "%s failed: cannot write to the broker: %s", what, strerror(-rc));
        return -1;
    }
    amqp_queue_declare_t d = {.queue = amqp_cstring_bytes(job->queue), .passive = 1};
    rc = amqp_send_method(c, job->channel, AMQP_QUEUE_DECLARE_METHOD, &d);
    if (rc != AMQP_STATUS_OK) {
        snprintf(err, n, "%s failed: cannot write to the broker: %s", what,
                 amqp_error_string2(rc));
        return -1;
    }
    uint64_t deadline = now_ns() + BIND_SYNC_TIMEOUT_S * 1000000000ull;
    for (;;) {
        amqp_frame_t f;
        struct timeval tv = {.tv_sec = 1};
        rc = amqp_simple_wait_frame_noblock(c, &f, &tv);
        if (rc == AMQP_STATUS_TIMEOUT) {
            if (*job->interrupted) {
                snprintf(err, n, "interrupted while the broker applied extra bindings %u-%u",
                         first, end - 1);
                return -1;
            }
            if (now_ns() >= deadline) {
                snprintf(err, n, "%s: the broker did not answer the passive queue.declare "
                         "that follows them within %d s", what, BIND_SYNC_TIMEOUT_S);
                return -1;
            }
            continue;
        }
        if (rc != AMQP_STATUS_OK) {
            snprintf(err, n, "%s failed: lost the connection: %s", what, amqp_error_string2(rc));
            return -1;
        }
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue;
        switch (f.payload.method.id) {
        case AMQP_QUEUE_DECLARE_OK_METHOD:
            if (f.channel != job->channel)
                break;
            amqp_maybe_release_buffers(c);
            return 0;
        case AMQP_QUEUE_BIND_OK_METHOD: (*stray)++; break;
        case AMQP_CHANNEL_CLOSE_METHOD: {
            describe_close(&f.payload.method, what, err, n);
            amqp_channel_close_ok_t ok = {0};
            (void)amqp_send_method(c, f.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
            return -1;
        }
        case AMQP_CONNECTION_CLOSE_METHOD: describe_close(&f.payload.method, what, err, n); return -1;
        default: break; /* e.g. connection.blocked */
        }
    }
}

int bind_extra(const struct bind_job *job, struct bind_result *ret_res, char *err, size_t n)
{
    struct bind_result res = {0};
    struct wbuf wb;
    char key[BIND_KEY_MAX];
    int rc = -1;

    if (wbuf_init(&wb, amqp_get_sockfd(job->conn), job->ssl,
                  (uint32_t)amqp_get_frame_max(job->conn), job->stop) < 0) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    uint64_t t0 = now_ns(), next_report = t0 + 1000000000ull;
    unsigned j = 0;
    while (j < job->count) {
        unsigned first = j, end = job->count - j > BIND_BATCH ? j + BIND_BATCH : job->count;
        for (; j < end; j++) {
            bind_key(job->type, job->seed, j, job->avoid_prefix, key);
            int wrc = wire_queue_bind(&wb, job->channel, job->queue, job->exchange, key, true);
            if (wrc < 0) {
                snprintf(err, n, "queue.bind (no-wait) of extra binding %u failed: cannot write "
                         "to the broker: %s", j, strerror(-wrc));
                goto out;
            }
        }
        if (sync_batch(job, &wb, first, end, &res.stray_ok, err, n) < 0)
            goto out;
        res.bound = end;
        if (*job->interrupted) {
            snprintf(err, n, "interrupted after %u of %u extra bindings", res.bound, job->count);
            goto out;
        }
        uint64_t now = now_ns();
        if (job->progress && now >= next_report && res.bound < job->count) {
            fprintf(job->progress, "%6.1fs  bound %u of %u extra bindings\n",
                    (double)(now - t0) / 1e9, res.bound, job->count);
            fflush(job->progress);
            next_report = now + 1000000000ull;
        }
    }
    res.seconds = (double)(now_ns() - t0) / 1e9;
    *ret_res = res;
    rc = 0;
out:
    wbuf_free(&wb);
    return rc;
}
