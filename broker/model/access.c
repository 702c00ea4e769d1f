/* access.c — the session-side access checks (access.h). The cache keeps only decisions that
 * allowed something: a refusal is rare and always re-evaluated, so that granting a permission
 * takes effect at once. */
#include <string.h>
#include "broker/model/access.h"
#include "broker/model/broker.h"
#include "broker/model/errors.h"
#include "broker/model/exchange.h"
#include "broker/model/users.h"
#include "broker/model/vhost.h"

static const char *const perm_words[] = {"configure", "write", "read"};

void access_init(struct access *a, struct broker *b, const char *user, const struct vhost *vh)
{
    memset(a, 0, sizeof *a);
    a->b = b;
    a->user = user;
    a->vh = vh;
    a->gen = b->access_gen - 1; /* look the permission up at first use */
}

/* The session's permission now (NULL: none), the cache emptied when anything changed. */
static struct perm *current(struct access *a)
{
    if (a->gen == a->b->access_gen)
        return a->perm;
    a->gen = a->b->access_gen;
    memset(a->cache, 0, sizeof a->cache);
    struct user *u = users_find(a->b, a->user, strlen(a->user));
    a->perm = u ? perm_find(u, a->vh->name, strlen(a->vh->name)) : NULL;
    return a->perm;
}

bool access_vhost_allowed(struct access *a)
{
    return current(a) != NULL;
}

int access_check(struct access *a, enum access_perm perm, enum access_kind kind,
                 amqp_bytes_t name, const void *obj, struct err *err)
{
    struct perm *p = current(a);
    int what = (int)perm * 2 + (int)kind;
    if (obj)
        for (unsigned i = 0; i < ACCESS_CACHE; i++)
            if (a->cache[i].obj == obj && a->cache[i].what == what)
                return 0;
    if (kind == ACCESS_EXCHANGE && name.len == 0)
        name = AMQP_BYTES_LIT("amq.default");
    if (p && perm_re_match(a->b, &p->re[perm], (const char *)name.ptr, name.len)) {
        if (obj) {
            a->cache[a->next].obj = obj;
            a->cache[a->next].what = what;
            a->next = (a->next + 1) % ACCESS_CACHE;
        }
        return 0;
    }
    return err_set(err, -WERR_ACCESS_REFUSED,
                   "%s access to %s '%.*s' in vhost '%s' refused for user '%s'", perm_words[perm],
                   kind == ACCESS_EXCHANGE ? "exchange" : "queue", (int)name.len,
                   (const char *)name.ptr, a->vh->name, a->user);
}

int access_check_topic(struct access *a, enum access_perm perm, const struct exchange *x,
                       amqp_bytes_t key, struct err *err)
{
    if (x->type != EX_TOPIC)
        return 0;
    struct perm *p = current(a);
    if (!p || !p->topics.count)
        return 0;
    struct topic_perm *t = hmap_get(&p->topics, x->name, x->name_len);
    if (!t || perm_re_match(a->b, &t->re[perm], (const char *)key.ptr, key.len))
        return 0;
    return err_set(err, -WERR_ACCESS_REFUSED,
                   "%s access to topic '%.*s' in exchange '%s' in vhost '%s' refused for user "
                   "'%s'",
                   perm_words[perm], (int)key.len, (const char *)key.ptr, x->name, a->vh->name,
                   a->user);
}
