/* test_groups.c — the group structure of x-message-groups queues (broker/model/groups.h) on its
 * own: entries by group, one holder per group, requeue to the group's head, a consumer that goes
 * away, basic.get's hold, the oldest-first pop that TTL and length limits use, and the group id
 * rules (strings, byte arrays and integers; 7 and "7" are one group; no header or "" is the
 * default group). groups_check() after every step. Then through queue.c with test consumers
 * (no session): dispatch skips held groups, and the argument's refusals as error values. */
#include <errno.h>
#include <string.h>
#include <uv.h>

#include "unit.h"

#include "broker/model/args.h"
#include "broker/model/broker.h"
#include "broker/model/errors.h"
#include "broker/model/exchange.h"
#include "broker/model/groups.h"
#include "broker/model/msg.h"
#include "broker/model/publish.h"
#include "broker/model/queue.h"
#include "broker/model/vhost.h"
#include "protocol/codec.h"
#include "protocol/table.h"

static struct queue s_q; /* only its address: "the consumer is attached" */
static uint64_t s_seq;

/* A message whose x-group-id is the string gid (NULL: no header; "#n": the integer n). */
static struct msg *mk(const char *gid)
{
    struct amqp_basic_props props = {0};
    struct amqp_wbuf w = {0};
    if (gid) {
        amqp_tw_key(&w, "x-group-id");
        if (gid[0] == '#')
            amqp_tw_int(&w, 'l', atoi(gid + 1));
        else
            amqp_tw_str(&w, gid);
        assert_false(w.failed);
        props.flags = AMQP_P_HEADERS;
        props.headers = (amqp_bytes_t){w.data, (uint32_t)w.len};
    }
    uint8_t hdr[256];
    long n = amqp_content_header_encode(&props, 1, hdr);
    assert_true(n > 0);
    struct msg *m = msg_new(amqp_cstr(""), amqp_cstr("q"), (amqp_bytes_t){hdr, (uint32_t)n},
                            amqp_cstr(""), 1);
    assert_non_null(m);
    m->body[0] = 'x';
    m->body_have = 1;
    amqp_wbuf_free(&w);
    return m;
}

/* Enqueues a new message of group gid at the tail; returns its seq. */
static uint64_t push(struct groups *gs, const char *gid)
{
    struct msg *m = mk(gid);
    assert_int_equal(groups_reserve(gs, m, 1, NULL), 0);
    struct qentry e = {m, ++s_seq, 0, 0, 0, 0};
    assert_int_equal(groups_insert(gs, &e, true), 0); /* the reference moves in */
    assert_int_equal(groups_check(gs), 0);
    return e.seq;
}

static void attach(struct consumer *c)
{
    memset(c, 0, sizeof *c);
    c->q = &s_q;
}

/* c takes one: its seq, or 0 when there is nothing for it. */
static uint64_t take(struct groups *gs, struct consumer *c, struct qentry *ret)
{
    bool ok = groups_take(gs, c, ret);
    assert_int_equal(groups_check(gs), 0);
    if (!ok)
        return 0;
    assert_true(ret->flags & QE_GROUP_OUT);
    return ret->seq;
}

static void ack(struct groups *gs, struct qentry *e)
{
    groups_done(gs, e);
    msg_unref(e->m);
    assert_int_equal(groups_check(gs), 0);
}

static void requeue(struct groups *gs, struct qentry *e)
{
    assert_int_equal(groups_reserve(gs, NULL, 1, NULL), 0);
    assert_int_equal(groups_insert(gs, e, false), 0);
    groups_done(gs, e);
    assert_int_equal(groups_check(gs), 0);
}

static void drain(struct groups *gs)
{
    struct qentry e;
    while (groups_pop_front(gs, &e))
        msg_unref(e.m);
    groups_free(gs);
}

static void test_holders(void **state)
{
    (void)state;
    struct groups *gs = groups_new();
    struct consumer c1, c2;
    attach(&c1);
    attach(&c2);
    uint64_t a0 = push(gs, "a"), b0 = push(gs, "b"), a1 = push(gs, "a"), b1 = push(gs, "b"),
             a2 = push(gs, "a");
    assert_int_equal(groups_count(gs), 2);
    struct qentry e[8];
    assert_int_equal(take(gs, &c1, &e[0]), a0); /* c1 holds a */
    assert_int_equal(take(gs, &c2, &e[1]), b0); /* a is held: c2 gets b */
    assert_int_equal(take(gs, &c1, &e[2]), a1); /* more of its own group, in order */
    assert_int_equal(take(gs, &c2, &e[3]), b1);
    assert_int_equal(take(gs, NULL, &e[7]), 0); /* basic.get: every group is held */
    /* c1 requeues a1 while a0 is out: back at a's head, a still held by c1. */
    requeue(gs, &e[2]);
    assert_int_equal(take(gs, &c2, &e[4]), 0);
    assert_int_equal(take(gs, &c1, &e[2]), a1);
    assert_int_equal(take(gs, &c1, &e[5]), a2);
    assert_int_equal(take(gs, &c1, &e[6]), 0);
    ack(gs, &e[0]);
    ack(gs, &e[2]);
    ack(gs, &e[5]); /* a is done: no ready entry, nothing out, gone */
    assert_int_equal(groups_count(gs), 1);
    /* b: c2 requeues both, newest first; then the group is free, for anyone, in order. */
    requeue(gs, &e[3]);
    requeue(gs, &e[1]);
    assert_int_equal(take(gs, &c1, &e[0]), b0);
    assert_int_equal(take(gs, &c2, &e[1]), 0);
    assert_int_equal(take(gs, &c1, &e[2]), b1);
    ack(gs, &e[0]);
    ack(gs, &e[2]);
    assert_int_equal(groups_count(gs), 0);
    assert_null(groups_front(gs));
    drain(gs);
}

static void test_consumer_gone(void **state)
{
    (void)state;
    struct groups *gs = groups_new();
    struct consumer c1, c2;
    attach(&c1);
    attach(&c2);
    uint64_t a0 = push(gs, "a"), a1 = push(gs, "a");
    uint64_t b0 = push(gs, "b");
    struct qentry x, y, z;
    assert_int_equal(take(gs, &c1, &x), a0);
    groups_consumer_gone(gs, &c1); /* as queue.c's detach does, then */
    c1.q = NULL;
    assert_int_equal(groups_check(gs), 0);
    assert_int_equal(take(gs, &c2, &y), b0); /* a stays held until a0 is settled */
    assert_int_equal(take(gs, &c2, &z), 0);
    requeue(gs, &x); /* the channel closes: a0 comes back, a is free */
    assert_int_equal(take(gs, &c2, &x), a0);
    assert_int_equal(take(gs, &c2, &z), a1);
    ack(gs, &x);
    ack(gs, &y);
    ack(gs, &z);
    assert_int_equal(groups_count(gs), 0);
    drain(gs);
}

static void test_get_and_front(void **state)
{
    (void)state;
    struct groups *gs = groups_new();
    uint64_t d0 = push(gs, NULL), s7 = push(gs, "7"), d1 = push(gs, ""), i7 = push(gs, "#7");
    uint64_t z0 = push(gs, "z");
    assert_int_equal(groups_count(gs), 3); /* default (none and ""), 7, z */
    struct qentry g1, g2, g3, g4;
    assert_int_equal(take(gs, NULL, &g1), d0); /* basic.get holds the default group */
    assert_int_equal(take(gs, NULL, &g2), s7);
    assert_int_equal(take(gs, NULL, &g3), z0);
    assert_int_equal(take(gs, NULL, &g4), 0);
    /* The oldest ready entry, whatever holds its group (expiry, drop-head). */
    assert_int_equal(groups_front(gs)->seq, d1);
    struct qentry f;
    assert_true(groups_pop_front(gs, &f));
    assert_int_equal(f.seq, d1);
    assert_false(f.flags & QE_GROUP_OUT);
    msg_unref(f.m);
    assert_int_equal(groups_check(gs), 0);
    ack(gs, &g2); /* 7 is free again: its integer-id message is next */
    assert_int_equal(take(gs, NULL, &g4), i7);
    ack(gs, &g1);
    ack(gs, &g3);
    ack(gs, &g4);
    assert_int_equal(groups_count(gs), 0);
    drain(gs);
}

/* Many groups: every take is the head of a free group; the free FIFO is served in order. */
static void test_many(void **state)
{
    (void)state;
    struct groups *gs = groups_new();
    char id[16];
    for (int i = 0; i < 3000; i++) {
        snprintf(id, sizeof id, "g%d", i % 1000);
        push(gs, id);
    }
    assert_int_equal(groups_count(gs), 1000);
    struct consumer c[4];
    for (int k = 0; k < 4; k++)
        attach(&c[k]);
    struct qentry e;
    uint64_t n = 0;
    for (int k = 0; groups_take(gs, &c[k % 4], &e); k++) {
        n++;
        ack(gs, &e);
    }
    assert_int_equal(n, 3000);
    assert_int_equal(groups_count(gs), 0);
    drain(gs);
}

/* More distinct ids than the idle groups kept: the extra idle ones are freed, and every id
 * still finds its group (a freed one is interned again). */
static void test_idle_bound(void **state)
{
    (void)state;
    struct groups *gs = groups_new();
    struct consumer c;
    attach(&c);
    char id[16];
    struct qentry e;
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 20000; i++) {
            snprintf(id, sizeof id, "id%d", i);
            struct msg *m = mk(id);
            assert_int_equal(groups_reserve(gs, m, 1, NULL), 0);
            struct qentry n = {m, ++s_seq, 0, 0, 0, 0};
            assert_int_equal(groups_insert(gs, &n, true), 0);
            assert_true(groups_take(gs, &c, &e));
            assert_ptr_equal(e.m, m);
            groups_done(gs, &e);
            msg_unref(m);
        }
    assert_int_equal(groups_count(gs), 0);
    assert_int_equal(groups_check(gs), 0);
    drain(gs);
}

/* ---- through queue.c: consumers that are neither channels nor connections ---------------- */

struct tc {
    struct consumer c;
    uint32_t n;
    struct qentry got[8];
};

static bool tc_can_take(struct consumer *c)
{
    return ((struct tc *)c->owner)->n < 8;
}

static void tc_deliver(struct consumer *c, struct queue *q, const struct qentry *e)
{
    struct tc *t = c->owner;
    t->got[t->n++] = *e;
    msg_ref(e->m);
    assert_int_equal(queue_hold(q, e), 0);
}

static void tc_cancelled(struct consumer *c)
{
    (void)c;
}

static const struct consumer_ops tc_ops = {tc_can_take, tc_deliver, tc_cancelled};

static int tc_i(const struct tc *t, uint32_t k) /* the "i" the test put in the body */
{
    return t->got[k].m->body[0];
}

static void test_queue_dispatch(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct broker b;
    assert_int_equal(uv_loop_init(&loop), 0);
    broker_init(&b, &loop);
    timers_init(&b.timers, &loop);
    struct vhost *vh = broker_add_vhost(&b, "/");
    assert_non_null(vh);

    struct amqp_wbuf w = {0};
    size_t top = amqp_tw_begin(&w);
    amqp_tw_key(&w, "x-message-groups");
    amqp_tw_bool(&w, true);
    amqp_tw_end(&w, top);
    struct err err = {.text = ""};
    assert_int_equal(args_check_queue(&err, "g", "/", amqp_tw_body(&w, top)), 0);
    struct queue *q = queue_new(vh, amqp_cstr("g"), amqp_tw_body(&w, top));
    assert_non_null(q);
    assert_non_null(q->groups);
    assert_int_equal(vhost_add_queue(vh, q), 0);

    struct tc a = {0}, c = {0};
    struct tc *ts[2] = {&a, &c};
    for (int k = 0; k < 2; k++) {
        ts[k]->c = (struct consumer){.ops = &tc_ops, .owner = ts[k], .refs = 1};
        assert_int_equal(queue_add_consumer(q, &ts[k]->c), 0);
    }
    const char *gid[] = {"A", "B", "A", "B", "A"};
    for (int i = 0; i < 5; i++) {
        struct msg *m = mk(gid[i]);
        m->body[0] = (uint8_t)i;
        struct route r = {0};
        r.q = malloc(sizeof *r.q);
        assert_non_null(r.q);
        r.q[0] = q;
        r.n = r.cap = 1;
        uint64_t batch;
        bool rejected;
        assert_int_equal(publish_enqueue(&b, m, &r, &batch, &rejected), 0);
        route_free(&r);
        msg_unref(m);
    }
    broker_dispatch(&b);
    /* a holds A and gets all of it in order; c gets B; nobody gets the other's group. */
    assert_int_equal(a.n, 3);
    assert_int_equal(c.n, 2);
    assert_int_equal(tc_i(&a, 0), 0);
    assert_int_equal(tc_i(&a, 1), 2);
    assert_int_equal(tc_i(&a, 2), 4);
    assert_int_equal(tc_i(&c, 0), 1);
    assert_int_equal(tc_i(&c, 1), 3);
    assert_int_equal(queue_unacked(q), 5);
    /* c gives B back (newest first) and leaves: a gets B after it, in order. */
    for (int k = 1; k >= 0; k--) {
        queue_unhold(q, &c.got[k]);
        assert_int_equal(queue_requeue(q, &c.got[k]), 0);
        msg_unref(c.got[k].m);
    }
    queue_kick(q); /* as a channel does after a requeue */
    queue_remove_consumer(q, &c.c);
    for (uint32_t k = 0; k < 3; k++) {
        queue_unhold(q, &a.got[k]);
        queue_settled(q, &a.got[k]);
        msg_unref(a.got[k].m);
    }
    broker_dispatch(&b);
    assert_int_equal(a.n, 5);
    assert_int_equal(tc_i(&a, 3), 1);
    assert_int_equal(tc_i(&a, 4), 3);
    assert_true(a.got[3].flags & QE_REDELIVERED);
    for (uint32_t k = 3; k < 5; k++) {
        queue_unhold(q, &a.got[k]);
        queue_settled(q, &a.got[k]);
        msg_unref(a.got[k].m);
    }
    assert_int_equal(groups_count(q->groups), 0);
    assert_int_equal(groups_check(q->groups), 0);
    queue_remove_consumer(q, &a.c);
    queue_delete(q);
    assert_int_equal(b.queued_mem, 0);

    /* Refusals, as values: not a boolean; with x-max-priority. */
    amqp_wbuf_free(&w);
    w = (struct amqp_wbuf){0};
    top = amqp_tw_begin(&w);
    amqp_tw_key(&w, "x-message-groups");
    amqp_tw_str(&w, "yes");
    amqp_tw_end(&w, top);
    assert_int_equal(args_check_queue(&err, "g", "/", amqp_tw_body(&w, top)),
                     -WERR_PRECONDITION_FAILED);
    assert_string_equal(err.text, "invalid arg 'x-message-groups' for queue 'g' in vhost '/': "
                                  "{unacceptable_type,longstr}");
    amqp_wbuf_free(&w);
    w = (struct amqp_wbuf){0};
    top = amqp_tw_begin(&w);
    amqp_tw_key(&w, "x-message-groups");
    amqp_tw_bool(&w, true);
    amqp_tw_key(&w, "x-max-priority");
    amqp_tw_int(&w, 'I', 5);
    amqp_tw_end(&w, top);
    assert_int_equal(args_check_queue(&err, "g", "/", amqp_tw_body(&w, top)),
                     -WERR_PRECONDITION_FAILED);
    assert_string_equal(err.text, "invalid arg 'x-message-groups' for queue 'g' in vhost '/': "
                                  "{not_supported_with,'x-max-priority'}");
    amqp_wbuf_free(&w);

    broker_free(&b);
    timers_close(&b.timers);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_holders),
        cmocka_unit_test(test_consumer_gone),
        cmocka_unit_test(test_get_and_front),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_idle_bound),
        cmocka_unit_test(test_queue_dispatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
