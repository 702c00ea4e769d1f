/* jsontable.c — AMQP tables and properties to and from JSON (jsontable.h). */
#include <errno.h>
#include <string.h>
#include "broker/model/jsontable.h"

void jt_put_table(struct amqp_wbuf *w, json_t *o)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        amqp_tw_key(w, k);
        jt_put_value(w, v);
    }
}

void jt_put_value(struct amqp_wbuf *w, json_t *v)
{
    size_t mark;
    switch (json_typeof(v)) {
    case JSON_STRING:
        amqp_tw_bytes(w, 'S', (amqp_bytes_t){(const uint8_t *)json_string_value(v),
                                             (uint32_t)json_string_length(v)});
        break;
    case JSON_INTEGER: amqp_tw_int(w, 'l', json_integer_value(v)); break;
    case JSON_REAL: amqp_tw_float(w, json_real_value(v), false); break;
    case JSON_TRUE: amqp_tw_bool(w, true); break;
    case JSON_FALSE: amqp_tw_bool(w, false); break;
    case JSON_NULL: amqp_tw_void(w); break;
    case JSON_OBJECT:
        mark = amqp_tw_table(w);
        jt_put_table(w, v);
        amqp_tw_end(w, mark);
        break;
    case JSON_ARRAY: {
        mark = amqp_tw_array(w);
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
            jt_put_value(w, e);
        amqp_tw_end(w, mark);
        break;
    }
    }
}

static json_t *value(const struct amqp_field *f);

static json_t *array(amqp_bytes_t body)
{
    json_t *a = json_array();
    struct amqp_table_iter it;
    struct amqp_field f;
    amqp_table_iter_init(&it, body);
    while (a && amqp_array_next(&it, &f) == 1)
        json_array_append_new(a, value(&f));
    return a;
}

static json_t *value(const struct amqp_field *f)
{
    switch (f->type) {
    case 't': return json_boolean(f->v.b);
    case 'b': case 's': case 'I': case 'l': case 'L': return json_integer(f->v.i);
    case 'B': case 'u': case 'i': case 'T': return json_integer((json_int_t)f->v.u);
    case 'f': return json_real(f->v.f);
    case 'd': return json_real(f->v.d);
    case 'D': {
        double d = f->v.dec.value;
        for (int i = 0; i < f->v.dec.scale; i++)
            d /= 10;
        return json_real(d);
    }
    case 'S': case 'x':
        return json_stringn_nocheck((const char *)f->v.bytes.ptr, f->v.bytes.len);
    case 'F': return jt_table(f->v.bytes);
    case 'A': return array(f->v.bytes);
    default: return json_null();
    }
}

json_t *jt_table(amqp_bytes_t table)
{
    json_t *o = json_object();
    struct amqp_table_iter it;
    amqp_bytes_t k;
    struct amqp_field f;
    amqp_table_iter_init(&it, table);
    while (o && amqp_table_next(&it, &k, &f) == 1) {
        char key[256];
        memcpy(key, k.ptr, k.len);
        key[k.len] = 0;
        json_object_set_new(o, key, value(&f));
    }
    return o;
}

json_t *jt_tags(const char *tags)
{
    json_t *a = json_array();
    for (const char *p = tags; a && p && *p;) {
        while (*p == ',' || *p == ' ')
            p++;
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m && p[m - 1] == ' ')
            m--;
        if (m)
            json_array_append_new(a, json_stringn(p, m));
        p += n;
    }
    return a;
}

/* The short-string properties, in the order of the class: name, flag, offset. */
static const struct {
    const char *name;
    uint16_t flag;
    size_t off;
} strs[] = {
    {"content_type", AMQP_P_CONTENT_TYPE, offsetof(struct amqp_basic_props, content_type)},
    {"content_encoding", AMQP_P_CONTENT_ENCODING,
     offsetof(struct amqp_basic_props, content_encoding)},
    {"correlation_id", AMQP_P_CORRELATION_ID, offsetof(struct amqp_basic_props, correlation_id)},
    {"reply_to", AMQP_P_REPLY_TO, offsetof(struct amqp_basic_props, reply_to)},
    {"expiration", AMQP_P_EXPIRATION, offsetof(struct amqp_basic_props, expiration)},
    {"message_id", AMQP_P_MESSAGE_ID, offsetof(struct amqp_basic_props, message_id)},
    {"type", AMQP_P_TYPE, offsetof(struct amqp_basic_props, type)},
    {"user_id", AMQP_P_USER_ID, offsetof(struct amqp_basic_props, user_id)},
    {"app_id", AMQP_P_APP_ID, offsetof(struct amqp_basic_props, app_id)},
};

json_t *jt_props(const struct amqp_basic_props *p)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < sizeof strs / sizeof strs[0]; i++)
        if (p->flags & strs[i].flag) {
            const amqp_bytes_t *b = (const amqp_bytes_t *)((const char *)p + strs[i].off);
            json_object_set_new(o, strs[i].name,
                                json_stringn_nocheck((const char *)b->ptr, b->len));
        }
    if (o && (p->flags & AMQP_P_DELIVERY_MODE))
        json_object_set_new(o, "delivery_mode", json_integer(p->delivery_mode));
    if (o && (p->flags & AMQP_P_PRIORITY))
        json_object_set_new(o, "priority", json_integer(p->priority));
    if (o && (p->flags & AMQP_P_TIMESTAMP))
        json_object_set_new(o, "timestamp", json_integer((json_int_t)p->timestamp));
    if (o && (p->flags & AMQP_P_HEADERS))
        json_object_set_new(o, "headers", jt_table(p->headers));
    return o;
}

int jt_parse_props(json_t *o, struct amqp_basic_props *p, struct amqp_wbuf *w, const char **why)
{
    memset(p, 0, sizeof *p);
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        size_t i;
        for (i = 0; i < sizeof strs / sizeof strs[0] && strcmp(k, strs[i].name); i++)
            ;
        if (i < sizeof strs / sizeof strs[0]) {
            if (!json_is_string(v) || json_string_length(v) > 255) {
                *why = strs[i].name;
                return -EINVAL;
            }
            amqp_bytes_t *b = (amqp_bytes_t *)((char *)p + strs[i].off);
            *b = (amqp_bytes_t){(const uint8_t *)json_string_value(v),
                                (uint32_t)json_string_length(v)};
            p->flags |= strs[i].flag;
        } else if (!strcmp(k, "delivery_mode") || !strcmp(k, "priority")) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 255) {
                *why = k;
                return -EINVAL;
            }
            if (k[0] == 'd') {
                p->delivery_mode = (uint8_t)json_integer_value(v);
                p->flags |= AMQP_P_DELIVERY_MODE;
            } else {
                p->priority = (uint8_t)json_integer_value(v);
                p->flags |= AMQP_P_PRIORITY;
            }
        } else if (!strcmp(k, "timestamp")) {
            if (!json_is_integer(v)) {
                *why = k;
                return -EINVAL;
            }
            p->timestamp = (uint64_t)json_integer_value(v);
            p->flags |= AMQP_P_TIMESTAMP;
        } else if (!strcmp(k, "headers")) {
            if (!json_is_object(v)) {
                *why = k;
                return -EINVAL;
            }
            size_t mark = amqp_tw_begin(w);
            jt_put_table(w, v);
            amqp_tw_end(w, mark);
            if (w->failed)
                return -ENOMEM;
            p->headers = amqp_tw_body(w, mark);
            p->flags |= AMQP_P_HEADERS;
        } else {
            *why = k;
            return -EINVAL;
        }
    }
    return 0;
}
