/* args.c — owns the argument-equivalence rule and RabbitMQ's wording for it:
 *   inequivalent arg 'K' for queue 'q' in vhost '/': received the value 'V' of type 'T'
 *   but current is none */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "broker/model/args.h"
#include "broker/model/dedup.h"
#include "broker/model/errors.h"
#include "broker/model/queue.h"
#include "protocol/table.h"

const char *const args_queue_keys[] = {
    "x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
    "x-max-length", "x-max-length-bytes", "x-max-in-memory-length", "x-max-in-memory-bytes",
    "x-max-priority", "x-overflow", "x-queue-mode", "x-single-active-consumer", "x-queue-type",
    "x-quorum-initial-group-size", "x-delivery-limit", "x-dead-letter-strategy",
    "x-queue-leader-locator", "x-queue-master-locator", "x-max-age", "x-queue-version",
    "x-message-groups", "x-delivery-delay", NULL};
const char *const args_exchange_keys[] = {"alternate-exchange", NULL};

const char *args_type_name(char t)
{
    switch (t) {
    case 'S': return "longstr";
    case 'I': return "signedint";
    case 'i': return "unsignedint";
    case 'l': return "long";
    case 'b': return "byte";
    case 'B': return "unsignedbyte";
    case 's': return "short";
    case 'u': return "unsignedshort";
    case 'f': return "float";
    case 'd': return "double";
    case 'D': return "decimal";
    case 't': return "bool";
    case 'T': return "timestamp";
    case 'F': return "table";
    case 'A': return "array";
    case 'V': return "void";
    case 'x': return "binary";
    default: return "unknown";
    }
}

/* 'L' is a signed 64-bit integer too (table.h): without it here, two 'L' values were compared
 * as byte strings through the union, reading a length that was never set. */
static bool is_signed_int(char t) { return t && strchr("bsIlL", t) != NULL; }
static bool is_unsigned_int(char t) { return t && strchr("Bui", t) != NULL; }

static bool same(const struct amqp_field *a, const struct amqp_field *b)
{
    bool ai = is_signed_int(a->type) || is_unsigned_int(a->type);
    bool bi = is_signed_int(b->type) || is_unsigned_int(b->type);
    if (ai && bi) {
        if (is_unsigned_int(a->type) == is_unsigned_int(b->type))
            return a->v.u == b->v.u; /* same bits in the union */
        int64_t s = is_signed_int(a->type) ? a->v.i : b->v.i;
        uint64_t u = is_unsigned_int(a->type) ? a->v.u : b->v.u;
        return s >= 0 && (uint64_t)s == u;
    }
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case 't': return a->v.b == b->v.b;
    case 'f': return a->v.f == b->v.f;
    case 'd': return a->v.d == b->v.d;
    case 'T': return a->v.u == b->v.u;
    case 'D': return a->v.dec.scale == b->v.dec.scale && a->v.dec.value == b->v.dec.value;
    case 'V': return true;
    case 'S': case 'x': case 'F': case 'A': return amqp_bytes_eq(a->v.bytes, b->v.bytes);
    default: return false;
    }
}

/* The value as RabbitMQ prints it: '~s' for binaries, '~p' for the rest (roughly). */
static void value_str(const struct amqp_field *f, char *v, size_t size)
{
    if (is_signed_int(f->type))
        snprintf(v, size, "%" PRId64, f->v.i);
    else if (is_unsigned_int(f->type) || f->type == 'T')
        snprintf(v, size, "%" PRIu64, f->v.u);
    else if (f->type == 't')
        snprintf(v, size, "%s", f->v.b ? "true" : "false");
    else if (f->type == 'f' || f->type == 'd')
        snprintf(v, size, "%g", f->type == 'f' ? f->v.f : f->v.d);
    else if (f->type == 'S' || f->type == 'x')
        snprintf(v, size, "%.*s", (int)(f->v.bytes.len < 120 ? f->v.bytes.len : 120),
                 (const char *)f->v.bytes.ptr);
    else
        snprintf(v, size, "...");
}

/* RabbitMQ names the type only when one side is missing: "the value 'x' of type 'longstr'",
 * "none"; when both are present it prints the bare values: "'x'". */
static void describe(const struct amqp_field *f, bool present, bool typed, char *buf, size_t size)
{
    char v[160];
    if (!present) {
        snprintf(buf, size, "none");
        return;
    }
    value_str(f, v, sizeof v);
    if (typed)
        snprintf(buf, size, "the value '%s' of type '%s'", v, args_type_name(f->type));
    else
        snprintf(buf, size, "'%s'", v);
}

int args_check_x_match(struct err *err, amqp_bytes_t args)
{
    struct amqp_field v;
    if (amqp_table_get(args, "x-match", &v) != 1)
        return 0;
    char s[160];
    value_str(&v, s, sizeof s);
    if (v.type != 'S')
        return err_set(err, -WERR_PRECONDITION_FAILED,
                        "Invalid x-match field type %s (value %s); expected longstr",
                        args_type_name(v.type), s);
    static const char *const kinds[] = {"all", "any", "all-with-x", "any-with-x"};
    for (size_t i = 0; i < 4; i++)
        if (amqp_bytes_eq_str(v.v.bytes, kinds[i]))
            return 0;
    return err_set(err, -WERR_PRECONDITION_FAILED,
                    "Invalid x-match field value <<\"%s\">>; expected all, any, all-with-x, or "
                    "any-with-x",
                    s);
}

int args_equivalent(struct err *err, const char *what, amqp_bytes_t cur, amqp_bytes_t got,
                    const char *const *keys)
{
    for (; *keys; keys++) {
        struct amqp_field a, b;
        int ha = amqp_table_get(cur, *keys, &a) == 1, hb = amqp_table_get(got, *keys, &b) == 1;
        if (!ha && !hb)
            continue;
        if (ha && hb && same(&a, &b))
            continue;
        char rcv[200], now[200];
        describe(&b, hb, !(ha && hb), rcv, sizeof rcv);
        describe(&a, ha, !(ha && hb), now, sizeof now);
        return err_set(err, -WERR_PRECONDITION_FAILED,
                        "inequivalent arg '%s' for %s: received %s but current is %s", *keys, what,
                        rcv, now);
    }
    return 0;
}

enum arg_rule { R_NONNEG_INT, R_POS_INT, R_PRIORITY, R_STR, R_BOOL, R_OVERFLOW, R_QTYPE, R_QMODE };

static const struct {
    const char *key;
    enum arg_rule rule;
} queue_rules[] = {
    {"x-message-ttl", R_NONNEG_INT}, {"x-expires", R_POS_INT}, {"x-max-length", R_NONNEG_INT},
    {"x-max-length-bytes", R_NONNEG_INT}, {"x-max-priority", R_PRIORITY},
    {"x-delivery-limit", R_NONNEG_INT}, {"x-dead-letter-exchange", R_STR},
    {"x-dead-letter-routing-key", R_STR}, {"x-overflow", R_OVERFLOW}, {"x-queue-type", R_QTYPE},
    {"x-queue-mode", R_QMODE}, {"x-single-active-consumer", R_BOOL},
    {"x-consumer-timeout", R_NONNEG_INT}, {"x-message-groups", R_BOOL},
    {"x-delivery-delay", R_NONNEG_INT},
};

static bool is_int(char t)
{
    return is_signed_int(t) || is_unsigned_int(t);
}

static bool in_list(amqp_bytes_t v, const char *const *list)
{
    for (; *list; list++)
        if (amqp_bytes_eq_str(v, *list))
            return true;
    return false;
}

int args_check_queue(struct err *err, const char *queue, const char *vhost, amqp_bytes_t args)
{
    struct amqp_field dv;
    if (amqp_table_get(args, "x-dead-letter-routing-key", &dv) == 1 &&
        amqp_table_get(args, "x-dead-letter-exchange", &dv) != 1)
        return err_set(err, -WERR_PRECONDITION_FAILED,
                        "invalid arg 'x-dead-letter-routing-key' for queue '%s' in vhost '%s': "
                        "routing_key_but_no_dlx_defined",
                        queue, vhost);
    for (size_t i = 0; i < sizeof queue_rules / sizeof queue_rules[0]; i++) {
        struct amqp_field v;
        if (amqp_table_get(args, queue_rules[i].key, &v) != 1)
            continue;
        const char *key = queue_rules[i].key;
        char why[200] = "";
        enum arg_rule rule = queue_rules[i].rule;
        if (rule == R_NONNEG_INT || rule == R_POS_INT || rule == R_PRIORITY) {
            int64_t n = is_unsigned_int(v.type) ? (int64_t)v.v.u : v.v.i;
            if (!is_int(v.type))
                snprintf(why, sizeof why, "\"expected integer, got %s\"", args_type_name(v.type));
            else if (n < 0)
                snprintf(why, sizeof why, "{value_negative,%" PRId64 "}", n);
            else if (n == 0 && rule == R_POS_INT)
                snprintf(why, sizeof why, "{value_zero,0}");
            else if (n > 255 && rule == R_PRIORITY)
                snprintf(why, sizeof why, "{max_value_exceeded,%" PRId64 "}", n);
        } else if ((rule == R_STR || rule == R_OVERFLOW || rule == R_QTYPE || rule == R_QMODE) &&
                   v.type != 'S') {
            return err_set(err, -WERR_PRECONDITION_FAILED,
                            "invalid type '%s' for arg '%s' in queue '%s' in vhost '%s'",
                            args_type_name(v.type), key, queue, vhost);
        } else if (rule == R_STR && v.v.bytes.len > 255) {
            /* An exchange name or a routing key is a shortstr: a longer one could never be
             * published with (Warren's own check; RabbitMQ 3.10 accepts it). */
            snprintf(why, sizeof why, "{value_too_long,%u,max,255}", v.v.bytes.len);
        } else if (rule == R_BOOL && v.type != 't') {
            snprintf(why, sizeof why, "{unacceptable_type,%s}", args_type_name(v.type));
        } else if (rule == R_OVERFLOW) {
            static const char *const ok[] = {"drop-head", "reject-publish", "reject-publish-dlx",
                                             NULL};
            if (!in_list(v.v.bytes, ok))
                snprintf(why, sizeof why, "invalid_overflow");
        } else if (rule == R_QTYPE) {
            static const char *const ok[] = {"classic", "quorum", "stream", NULL};
            if (!in_list(v.v.bytes, ok))
                snprintf(why, sizeof why, "\"unsupported queue type '%.*s'\"",
                         (int)(v.v.bytes.len < 100 ? v.v.bytes.len : 100),
                         (const char *)v.v.bytes.ptr);
        } else if (rule == R_QMODE) {
            static const char *const ok[] = {"default", "lazy", NULL};
            if (!in_list(v.v.bytes, ok))
                snprintf(why, sizeof why, "invalid_queue_mode");
        }
        if (why[0])
            return err_set(err, -WERR_PRECONDITION_FAILED,
                            "invalid arg '%s' for queue '%s' in vhost '%s': %s", key, queue, vhost,
                            why);
    }
    /* Priorities would reorder a group: refused together (the types are checked above). */
    struct amqp_field g, p;
    if (amqp_table_get(args, "x-message-groups", &g) == 1 && g.v.b &&
        amqp_table_get(args, "x-max-priority", &p) == 1 &&
        (is_unsigned_int(p.type) ? p.v.u : (uint64_t)p.v.i))
        return err_set(err, -WERR_PRECONDITION_FAILED,
                       "invalid arg 'x-message-groups' for queue '%s' in vhost '%s': "
                       "{not_supported_with,'x-max-priority'}",
                       queue, vhost);
    return dedup_check_queue_args(err, args); /* x-message-deduplication and its options */
}

static bool get_int(amqp_bytes_t args, const char *key, int64_t *ret)
{
    struct amqp_field v;
    if (amqp_table_get(args, key, &v) != 1 || !is_int(v.type))
        return false;
    *ret = is_unsigned_int(v.type) ? (int64_t)v.v.u : v.v.i;
    return true;
}

void args_queue_opts(amqp_bytes_t args, struct queue_opts *o)
{
    struct amqp_field v;
    int64_t n;
    memset(o, 0, sizeof *o);
    o->message_ttl = o->max_length = o->max_length_bytes = o->delivery_limit = -1;
    o->consumer_timeout = -1;
    get_int(args, "x-consumer-timeout", &o->consumer_timeout);
    get_int(args, "x-message-ttl", &o->message_ttl);
    get_int(args, "x-expires", &o->expires);
    get_int(args, "x-max-length", &o->max_length);
    get_int(args, "x-max-length-bytes", &o->max_length_bytes);
    get_int(args, "x-delivery-limit", &o->delivery_limit);
    get_int(args, "x-delivery-delay", &o->delivery_delay);
    if (get_int(args, "x-max-priority", &n) && n > 0)
        o->max_priority = (uint8_t)(n > 255 ? 255 : n);
    if (amqp_table_get(args, "x-overflow", &v) == 1 && v.type == 'S') {
        if (amqp_bytes_eq_str(v.v.bytes, "reject-publish"))
            o->overflow = OVERFLOW_REJECT_PUBLISH;
        else if (amqp_bytes_eq_str(v.v.bytes, "reject-publish-dlx"))
            o->overflow = OVERFLOW_REJECT_PUBLISH_DLX;
    }
    if (amqp_table_get(args, "x-dead-letter-exchange", &v) == 1 && v.type == 'S') {
        o->has_dlx = true;
        o->dlx = v.v.bytes;
    }
    if (amqp_table_get(args, "x-dead-letter-routing-key", &v) == 1 && v.type == 'S') {
        o->has_dlrk = true;
        o->dlrk = v.v.bytes;
    }
    if (amqp_table_get(args, "x-single-active-consumer", &v) == 1 && v.type == 't')
        o->single_active = v.v.b;
    if (amqp_table_get(args, "x-message-groups", &v) == 1 && v.type == 't')
        o->message_groups = v.v.b;
    if (amqp_table_get(args, "x-queue-type", &v) == 1 && v.type == 'S' &&
        amqp_bytes_eq_str(v.v.bytes, "quorum")) {
        o->quorum = true;
        if (o->delivery_limit < 0)
            o->delivery_limit = 20; /* RabbitMQ 4's default for quorum queues */
        o->max_priority = 0;      /* quorum queues ignore x-max-priority here */
    }
}
