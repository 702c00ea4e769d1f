/* test_model.c — the broker model driven without any session: this executable links only
 * broker/model (with lib/, protocol/, storage/), so if the model ever calls into broker/amqp it
 * stops linking. It declares an exchange and queues (with the argument rules and their error
 * values), binds, routes, enqueues, consumes through a test consumer (the consumer_ops
 * interface an AMQP channel also implements), acks, and deletes, asserting exact counts. */
#include <errno.h>
#include <unistd.h>
#include <uv.h>

#include "unit.h"

#include "broker/model/access.h"
#include "broker/model/args.h"
#include "broker/model/binding.h"
#include "broker/model/broker.h"
#include "broker/model/errors.h"
#include "broker/model/exchange.h"
#include "broker/model/msg.h"
#include "broker/model/persist.h"
#include "broker/model/publish.h"
#include "broker/model/queue.h"
#include "broker/model/users.h"
#include "broker/model/vhost.h"
#include "protocol/codec.h"
#include "protocol/table.h"
#include "storage/batch.h"
#include "storage/env.h"
#include "storage/records.h"
#include "storage/recover.h"

/* ---- allocation failures on demand (the executable is linked with --wrap=malloc, which
 * reaches the model's and lib/'s calls, not the libraries') ---------------------------------- */

void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
static int s_fail_malloc_in; /* 0: never; n: the n-th malloc or realloc from now fails (once) */
static bool s_fail_all;       /* every malloc and realloc fails */

void *__wrap_malloc(size_t n)
{
    if (s_fail_all || (s_fail_malloc_in && --s_fail_malloc_in == 0))
        return NULL;
    return __real_malloc(n);
}

void *__wrap_realloc(void *p, size_t n)
{
    if (s_fail_all || (s_fail_malloc_in && --s_fail_malloc_in == 0))
        return NULL;
    return __real_realloc(p, n);
}

/* ---- a consumer that is neither a channel nor a connection --------------------------------- */

struct test_consumer {
    struct consumer c;
    uint32_t credit;          /* deliveries it may still take */
    uint32_t n;               /* deliveries taken */
    struct qentry got[16];    /* what it holds unacked (message refs) */
    struct queue *from[16];   /* borrowed */
    bool cancelled;
};

static unsigned s_can_take_calls;

static bool tc_can_take(struct consumer *c)
{
    s_can_take_calls++;
    return ((struct test_consumer *)c->owner)->credit > 0;
}

static void tc_deliver(struct consumer *c, struct queue *q, const struct qentry *e)
{
    struct test_consumer *t = c->owner;
    assert_true(t->n < 16);
    t->credit--;
    t->got[t->n] = *e;
    t->from[t->n++] = q;
    msg_ref(e->m); /* the queue's caller drops its own reference */
    queue_delivered(q, e);
    assert_int_equal(queue_hold(q, e), 0); /* it may come back, as a channel's may */
}

static void tc_cancelled(struct consumer *c)
{
    ((struct test_consumer *)c->owner)->cancelled = true;
}

static const struct consumer_ops tc_ops = {tc_can_take, tc_deliver, tc_cancelled};

static void tc_attach_prio(struct test_consumer *t, struct queue *q, uint32_t credit,
                           int32_t priority)
{
    memset(t, 0, sizeof *t);
    t->c.ops = &tc_ops;
    t->c.owner = t;
    t->c.refs = 1;
    t->c.priority = priority;
    t->credit = credit;
    assert_int_equal(queue_add_consumer(q, &t->c), 0);
}

static void tc_attach(struct test_consumer *t, struct queue *q, uint32_t credit)
{
    tc_attach_prio(t, q, credit, 0);
}

/* The consumer acks delivery i: the queue forgets the message. */
static void tc_ack(struct test_consumer *t, uint32_t i)
{
    queue_unhold(t->from[i], &t->got[i]);
    queue_settled(t->from[i], &t->got[i]);
    msg_unref(t->got[i].m);
    t->got[i].m = NULL;
}

static const char *tc_body(const struct test_consumer *t, uint32_t i)
{
    static char buf[64];
    const struct msg *m = t->got[i].m;
    snprintf(buf, sizeof buf, "%.*s", (int)m->body_size, (const char *)m->body);
    return buf;
}

/* ---- fixture: a loop, a broker with vhost "/", exchange "x" (direct) ------------------------ */

struct fixture {
    uv_loop_t loop;
    struct broker b;
    struct vhost *vh;
    struct exchange *x;
    struct route r;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    broker_init(&f->b, &f->loop);
    timers_init(&f->b.timers, &f->loop);
    f->vh = broker_add_vhost(&f->b, "/");
    assert_non_null(f->vh);
    f->x = exchange_new(f->vh, amqp_cstr("x"), EX_DIRECT, false, false, false, amqp_cstr(""));
    assert_non_null(f->x);
    assert_int_equal(vhost_add_exchange(f->vh, f->x), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    route_free(&f->r);
    broker_free(&f->b);
    timers_close(&f->b.timers);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the timer handle's close */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

/* Declares queue `name` with arguments args (checked by the model's rules first). */
static struct queue *declare_queue(struct fixture *f, const char *name, amqp_bytes_t args)
{
    struct err err = {.text = ""};
    assert_int_equal(args_check_queue(&err, name, "/", args), 0);
    struct queue *q = queue_new(f->vh, amqp_cstr(name), args);
    assert_non_null(q);
    assert_int_equal(vhost_add_queue(f->vh, q), 0);
    return q;
}

/* A message published to x with routing key rk and body (delivery_mode 2 when persistent),
 * already routed into f->r. The caller enqueues it (publish_enqueue) and drops its reference. */
static struct msg *routed_msg(struct fixture *f, const char *rk, const char *body, bool persistent)
{
    struct amqp_basic_props props = {0};
    if (persistent) {
        props.flags = AMQP_P_DELIVERY_MODE;
        props.delivery_mode = 2;
    }
    uint8_t hdr[64];
    long n = amqp_content_header_encode(&props, strlen(body), hdr);
    assert_true(n > 0);
    struct msg *m = msg_new(amqp_cstr("x"), amqp_cstr(rk), (amqp_bytes_t){hdr, (uint32_t)n},
                            amqp_cstr(""), strlen(body));
    assert_non_null(m);
    if (persistent)
        m->delivery_mode = 2;
    memcpy(m->body, body, strlen(body));
    m->body_have = m->body_size;
    f->r.n = 0;
    assert_int_equal(exchange_route(f->x, m, &f->r), 0);
    return m;
}

/* Publishes body to x with routing key rk; returns how many queues it reached. */
static uint32_t publish(struct fixture *f, const char *rk, const char *body)
{
    struct msg *m = routed_msg(f, rk, body, false);
    uint32_t routed = f->r.n;
    uint64_t batch = 1;
    bool rejected = true;
    assert_int_equal(publish_enqueue(&f->b, m, &f->r, &batch, &rejected), 0);
    assert_int_equal(batch, 0);     /* nothing durable: no storage batch to wait for */
    assert_false(rejected);
    msg_unref(m);
    return routed;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_declare_bind_route_consume_ack(void **state)
{
    struct fixture *f = *state;
    struct queue *q = declare_queue(f, "q", amqp_cstr(""));
    assert_ptr_equal(vhost_queue(f->vh, amqp_cstr("q")), q);
    assert_int_equal(binding_add(f->x, q, NULL, amqp_cstr("k"), amqp_cstr(""), NULL, NULL), 0);

    assert_int_equal(publish(f, "k", "m1"), 1);
    assert_int_equal(publish(f, "other", "lost"), 0); /* unroutable: no queue */
    assert_int_equal(queue_ready(q), 1);

    struct test_consumer t;
    tc_attach(&t, q, 1);
    broker_dispatch(&f->b);
    assert_int_equal(t.n, 1);
    assert_string_equal(tc_body(&t, 0), "m1");
    assert_int_equal(queue_ready(q), 0);

    /* No credit left: new messages wait in the queue, in order, until it has some. */
    assert_int_equal(publish(f, "k", "m2"), 1);
    assert_int_equal(publish(f, "k", "m3"), 1);
    broker_dispatch(&f->b);
    assert_int_equal(t.n, 1);
    assert_int_equal(queue_ready(q), 2);
    tc_ack(&t, 0);
    t.credit = 5;
    consumer_wake(&t.c); /* it was parked while it had no credit */
    broker_dispatch(&f->b);
    assert_int_equal(t.n, 3);
    assert_string_equal(tc_body(&t, 1), "m2");
    assert_string_equal(tc_body(&t, 2), "m3");
    assert_int_equal(queue_ready(q), 0);
    tc_ack(&t, 1);

    /* A requeued delivery goes back to its place and comes out marked redelivered. */
    queue_unhold(q, &t.got[2]);
    assert_int_equal(queue_requeue(q, &t.got[2]), 0);
    msg_unref(t.got[2].m);
    queue_kick(q);
    broker_dispatch(&f->b);
    assert_int_equal(t.n, 4);
    assert_string_equal(tc_body(&t, 3), "m3");
    assert_true(t.got[3].flags & QE_REDELIVERED);
    tc_ack(&t, 3);

    /* Deleting the queue cancels its consumer through the interface. */
    assert_false(t.cancelled);
    assert_int_equal(queue_delete(q), 0);
    assert_true(t.cancelled);
    assert_null(vhost_queue(f->vh, amqp_cstr("q")));
    assert_int_equal(f->b.queued_mem, 0);
}

static void test_round_robin_and_fanout(void **state)
{
    struct fixture *f = *state;
    struct queue *q1 = declare_queue(f, "q1", amqp_cstr(""));
    struct queue *q2 = declare_queue(f, "q2", amqp_cstr(""));
    assert_int_equal(binding_add(f->x, q1, NULL, amqp_cstr("k"), amqp_cstr(""), NULL, NULL), 0);
    assert_int_equal(binding_add(f->x, q2, NULL, amqp_cstr("k"), amqp_cstr(""), NULL, NULL), 0);
    struct test_consumer a, b, c;
    tc_attach(&a, q1, 10);
    tc_attach(&b, q1, 10);
    tc_attach(&c, q2, 10);
    for (int i = 0; i < 4; i++) {
        char body[8];
        snprintf(body, sizeof body, "%d", i);
        assert_int_equal(publish(f, "k", body), 2); /* one message, two queues */
    }
    broker_dispatch(&f->b);
    assert_int_equal(a.n, 2); /* q1's consumers take turns */
    assert_int_equal(b.n, 2);
    assert_int_equal(c.n, 4);
    assert_ptr_equal(a.got[0].m, c.got[0].m); /* N queues hold N references, not N copies */
    assert_string_equal(tc_body(&a, 0), "0");
    assert_string_equal(tc_body(&b, 0), "1");
    for (uint32_t i = 0; i < 2; i++) {
        tc_ack(&a, i);
        tc_ack(&b, i);
    }
    for (uint32_t i = 0; i < 4; i++)
        tc_ack(&c, i);
    queue_remove_consumer(q1, &a.c);
    queue_remove_consumer(q1, &b.c);
    queue_remove_consumer(q2, &c.c);
    assert_int_equal(q1->consumer_count, 0);
    assert_int_equal(f->b.queued_mem, 0);
}

/* Full consumers are parked: once asked, they are not asked again until woken, so a dispatch
 * costs the same with 1 or 2,000 consumers whose prefetch is full. Priorities come first. */
static void test_full_consumers_are_parked(void **state)
{
    struct fixture *f = *state;
    enum { N = 2000 };
    struct queue *q = declare_queue(f, "pq", amqp_cstr(""));
    assert_int_equal(binding_add(f->x, q, NULL, amqp_cstr("k"), amqp_cstr(""), NULL, NULL), 0);
    struct test_consumer *t = calloc(N, sizeof *t);
    assert_non_null(t);
    for (int i = 0; i < N; i++)
        tc_attach_prio(&t[i], q, 0, i == N - 1 ? 5 : 0);
    assert_int_equal(q->nbuckets, 2);

    assert_int_equal(publish(f, "k", "a"), 1);
    s_can_take_calls = 0;
    broker_dispatch(&f->b);
    assert_int_equal(s_can_take_calls, N); /* each asked once, then parked */
    assert_int_equal(queue_ready(q), 1);
    s_can_take_calls = 0;
    for (int i = 0; i < 100; i++)
        assert_int_equal(publish(f, "k", "b"), 1);
    broker_dispatch(&f->b);
    assert_int_equal(s_can_take_calls, 0); /* nobody asked again */
    assert_int_equal(queue_ready(q), 101);

    /* Waking one consumer (its ack freed a slot) costs one question per delivery. */
    t[7].credit = 1;
    t[N - 1].credit = 2;
    consumer_wake(&t[7].c);
    consumer_wake(&t[N - 1].c);
    s_can_take_calls = 0;
    broker_dispatch(&f->b);
    assert_int_equal(t[N - 1].n, 2); /* the higher priority first */
    assert_int_equal(t[7].n, 1);
    assert_string_equal(tc_body(&t[N - 1], 0), "a");
    assert_true(s_can_take_calls <= 6);
    assert_int_equal(queue_ready(q), 98);
    for (uint32_t i = 0; i < 2; i++)
        tc_ack(&t[N - 1], i);
    tc_ack(&t[7], 0);
    assert_int_equal(queue_delete(q), 98);
    for (int i = 0; i < N; i++)
        assert_true(t[i].cancelled);
    free(t);
}

/* A publish to several queues that runs out of memory fails whole: no queue keeps the message
 * (a stored message's reference count must equal the index entries its queues wrote). */
static void test_publish_fails_whole(void **state)
{
    struct fixture *f = *state;
    struct queue *q1 = declare_queue(f, "w1", amqp_cstr(""));
    struct queue *q2 = declare_queue(f, "w2", amqp_cstr(""));
    assert_int_equal(binding_add(f->x, q1, NULL, amqp_cstr("both"), amqp_cstr(""), NULL, NULL), 0);
    assert_int_equal(binding_add(f->x, q2, NULL, amqp_cstr("both"), amqp_cstr(""), NULL, NULL), 0);
    assert_int_equal(binding_add(f->x, q2, NULL, amqp_cstr("two"), amqp_cstr(""), NULL, NULL), 0);
    assert_int_equal(publish(f, "both", "warm"), 2); /* rings and route arrays exist now */
    while (q2->rings[0].count < q2->rings[0].cap) /* q2's ring is full, q1's is not */
        assert_int_equal(publish(f, "two", "fill"), 1);
    uint64_t r1 = queue_ready(q1), r2 = queue_ready(q2);

    struct msg *m = routed_msg(f, "both", "z", false);
    assert_int_equal(f->r.n, 2);
    uint64_t batch;
    bool rejected;
    s_fail_malloc_in = 1; /* q2's ring cannot grow */
    int rc = publish_enqueue(&f->b, m, &f->r, &batch, &rejected);
    s_fail_malloc_in = 0;
    assert_int_equal(rc, -ENOMEM);
    assert_int_equal(queue_ready(q1), r1); /* q1 did not take it either */
    assert_int_equal(queue_ready(q2), r2);
    assert_int_equal(m->refs, 1);          /* nobody holds a reference */
    msg_unref(m);
    /* With memory back, the same publish goes through to both. */
    assert_int_equal(publish(f, "both", "again"), 2);
    assert_int_equal(queue_ready(q1), r1 + 1);
    assert_int_equal(queue_ready(q2), r2 + 1);
}

/* A delivery that comes back is never lost for want of memory: its place in the ring was kept
 * when it went out, however full the queue got meanwhile. */
static void test_requeue_needs_no_memory(void **state)
{
    struct fixture *f = *state;
    struct queue *q = declare_queue(f, "rq", amqp_cstr(""));
    assert_int_equal(binding_add(f->x, q, NULL, amqp_cstr("k"), amqp_cstr(""), NULL, NULL), 0);
    struct test_consumer t;
    tc_attach(&t, q, 1);
    assert_int_equal(publish(f, "k", "out"), 1);
    broker_dispatch(&f->b);
    assert_int_equal(t.n, 1);
    while (q->rings[0].count + q->rings[0].held < q->rings[0].cap) /* the ring is full */
        assert_int_equal(publish(f, "k", "more"), 1);
    uint32_t ready = (uint32_t)queue_ready(q);
    queue_unhold(q, &t.got[0]);
    s_fail_malloc_in = 1; /* no memory at all */
    int rc = queue_requeue(q, &t.got[0]);
    s_fail_malloc_in = 0;
    assert_int_equal(rc, 0);
    msg_unref(t.got[0].m);
    assert_int_equal(queue_ready(q), ready + 1);
    struct qentry e;
    assert_true(queue_pop(q, &e)); /* back at the head, where it was */
    assert_int_equal(e.m->body_size, 3);
    assert_memory_equal(e.m->body, "out", 3);
    assert_true(e.flags & QE_REDELIVERED);
    queue_settled(q, &e);
    msg_unref(e.m);
    queue_remove_consumer(q, &t.c);
}

/* A TTL is armed even when memory runs out at that moment: the timer's heap slot was reserved
 * when the queue was created (before, arming could fail silently and the message never
 * expired). */
static void test_ttl_armed_without_memory(void **state)
{
    struct fixture *f = *state;
    struct amqp_wbuf w = {0};
    size_t top = amqp_tw_begin(&w);
    amqp_tw_key(&w, "x-message-ttl");
    amqp_tw_int(&w, 'I', 30);
    amqp_tw_end(&w, top);
    struct queue *q = declare_queue(f, "ttl", amqp_tw_body(&w, top));
    amqp_wbuf_free(&w);
    assert_int_equal(binding_add(f->x, q, NULL, amqp_cstr("k"), amqp_cstr(""), NULL, NULL), 0);
    struct msg *m = routed_msg(f, "k", "t", false);
    assert_int_equal(queue_reserve(q, m), 0); /* the ring exists: the push itself allocates not */
    uint64_t batch;
    bool rejected;
    s_fail_all = true; /* no memory at all while the message is enqueued and its TTL armed */
    int rc = publish_enqueue(&f->b, m, &f->r, &batch, &rejected);
    s_fail_all = false;
    msg_unref(m);
    assert_int_equal(rc, 0);
    assert_int_equal(queue_ready(q), 1);
    for (int i = 0; i < 100 && queue_ready(q); i++) { /* the loop fires the TTL timer */
        usleep(5000);
        uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(queue_ready(q), 0); /* it expired */
}

/* Storage for the paging test: a temporary data dir and its writer thread. */
static void on_commit(void *arg)
{
    (void)arg; /* the test polls storage_collect() */
}

/* Submits the open batch and waits (<= 10 s) until it is on disk; moves q's (may be NULL)
 * paged entries on. */
static void commit(struct broker *b, struct queue *q)
{
    uint64_t want = storage_batch_no(b->store);
    assert_true(storage_submit(b->store) >= 0);
    for (int i = 0; i < 10000 && b->durable_batch < want; i++) {
        int failed = 0;
        uint64_t d = storage_collect(b->store, &failed);
        assert_int_equal(failed, 0);
        if (d > b->durable_batch)
            b->durable_batch = d;
        if (b->durable_batch < want)
            usleep(1000);
    }
    assert_true(b->durable_batch >= want);
    if (q)
        queue_on_durable(q, b->durable_batch);
}

/* A durable queue longer than its memory window reads the rest back from disk when it empties.
 * Out of memory there leaves the messages on disk (the broker neither exits nor drops one as
 * undecodable); once memory is back they come out in order. */
static void test_page_in_out_of_memory(void **state)
{
    struct fixture *f = *state;
    char dir[] = "/tmp/warren-model-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(storage_open(dir, false, &f->b.store), 0);
    assert_int_equal(storage_start(f->b.store, on_commit, NULL), 0);
    struct queue *q = declare_queue(f, "durable", amqp_cstr(""));
    q->durable = true;
    persist_queue(&f->b, q);
    assert_true(q->store_id != 0);
    assert_int_equal(binding_add(f->x, q, NULL, amqp_cstr("k"), amqp_cstr(""), NULL, NULL), 0);

    enum { N = 3000 }; /* past the 2048-message window */
    for (int i = 0; i < N; i++) {
        char body[12];
        snprintf(body, sizeof body, "%04d", i % 10000);
        struct msg *m = routed_msg(f, "k", body, true);
        uint64_t batch;
        bool rejected;
        assert_int_equal(publish_enqueue(&f->b, m, &f->r, &batch, &rejected), 0);
        msg_unref(m);
    }
    commit(&f->b, q);
    assert_int_equal(queue_ready(q), N);
    assert_true(q->disk_count > 0); /* some live only on disk now */

    struct qentry e;
    int next = 0;
    while (q->count) { /* empty the memory window */
        assert_true(queue_pop(q, &e));
        char want[12];
        snprintf(want, sizeof want, "%04d", next++);
        assert_memory_equal(e.m->body, want, 4);
        queue_settled(q, &e);
        msg_unref(e.m);
    }
    uint64_t on_disk = q->disk_count;
    s_fail_malloc_in = 1; /* the next message object cannot be allocated */
    bool got = queue_pop(q, &e);
    s_fail_malloc_in = 0;
    /* The read failed; the pop may still have succeeded on a second try within itself. Either
     * way nothing was lost or dropped: every message is still on disk, in memory or in e. */
    assert_int_equal(q->disk_count + q->count + (got ? 1 : 0), on_disk);
    if (got) {
        char want[12];
        snprintf(want, sizeof want, "%04d", next++);
        assert_memory_equal(e.m->body, want, 4);
        queue_settled(q, &e);
        msg_unref(e.m);
    }
    while (queue_pop(q, &e)) { /* memory is back: the rest, in order */
        char want[12];
        snprintf(want, sizeof want, "%04d", next++);
        assert_memory_equal(e.m->body, want, 4);
        queue_settled(q, &e);
        msg_unref(e.m);
    }
    assert_int_equal(next, N);
    assert_int_equal(queue_ready(q), 0);
    storage_close(f->b.store);
    f->b.store = NULL;
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* The argument rules answer with an error value (code + RabbitMQ's text), no session needed. */
static void test_argument_errors_are_values(void **state)
{
    (void)state;
    struct amqp_wbuf w = {0};
    size_t top = amqp_tw_begin(&w);
    amqp_tw_key(&w, "x-max-priority");
    amqp_tw_int(&w, 'I', 300);
    amqp_tw_end(&w, top);
    struct err err = {.text = ""};
    assert_int_equal(args_check_queue(&err, "pq", "/", amqp_tw_body(&w, top)),
                     -WERR_PRECONDITION_FAILED);
    assert_string_equal(err.text, "invalid arg 'x-max-priority' for queue 'pq' in vhost '/': "
                                  "{max_value_exceeded,300}");
    assert_int_equal(err_info(-WERR_PRECONDITION_FAILED)->reply_code, 406);
    amqp_wbuf_free(&w);
}


/* ---- tenancy -------------------------------------------------------------------------------- */

/* RabbitMQ's access-control rules as values: the pattern decides, '' grants nothing, the
 * default exchange is amq.default, a cached "allowed" goes when the permission changes, topic
 * permissions expand {username} and {vhost} and '' there means only the empty key. */
static void test_access_rules(void **state)
{
    struct fixture *f = *state;
    struct err err = {""};
    assert_int_equal(users_put_password(&f->b, "bob", "pw", "management, impersonator", &err), 0);
    struct user *u = users_find(&f->b, "bob", 3);
    assert_non_null(u);
    assert_int_equal(u->tag_bits, USER_TAG_MANAGEMENT | USER_TAG_IMPERSONATOR);
    assert_int_equal(password_check(u->hash, u->algo, "pw", 2), 1);
    assert_int_equal(perm_set(&f->b, u, "nope", ".*", ".*", ".*", &err), -EINVAL);
    assert_int_equal(perm_set(&f->b, u, "/", "^app-", "", "(unclosed", &err), -EINVAL);
    assert_non_null(strstr(err.text, "read pattern '(unclosed'"));
    assert_null(perm_find(u, "/", 1)); /* a failed set changes nothing */
    assert_int_equal(perm_set(&f->b, u, "/", "^app-", "^(x|amq\\.default)$", "", &err), 0);

    struct access a;
    access_init(&a, &f->b, "bob", f->vh);
    assert_true(access_vhost_allowed(&a));
    assert_int_equal(access_check(&a, ACCESS_CONFIGURE, ACCESS_QUEUE, amqp_cstr("app-1"), NULL,
                                  &err), 0);
    assert_int_equal(access_check(&a, ACCESS_CONFIGURE, ACCESS_QUEUE, amqp_cstr("my-app-1"),
                                  NULL, &err), -WERR_ACCESS_REFUSED);
    assert_string_equal(err.text,
                        "configure access to queue 'my-app-1' in vhost '/' refused for user 'bob'");
    assert_int_equal(access_check(&a, ACCESS_READ, ACCESS_EXCHANGE, amqp_cstr("x"), f->x, &err),
                     -WERR_ACCESS_REFUSED); /* '' grants nothing */
    assert_string_equal(err.text,
                        "read access to exchange 'x' in vhost '/' refused for user 'bob'");
    assert_int_equal(access_check(&a, ACCESS_WRITE, ACCESS_EXCHANGE, amqp_cstr(""), NULL, &err), 0);
    assert_int_equal(access_check(&a, ACCESS_WRITE, ACCESS_EXCHANGE, f->x->name[0] ?
                                  amqp_cstr("x") : amqp_cstr(""), f->x, &err), 0);
    /* Revoked: the cached decision about x must not survive. */
    assert_int_equal(perm_set(&f->b, u, "/", "^app-", "^amq\\.default$", "", &err), 0);
    assert_int_equal(access_check(&a, ACCESS_WRITE, ACCESS_EXCHANGE, amqp_cstr("x"), f->x, &err),
                     -WERR_ACCESS_REFUSED);
    assert_int_equal(perm_set(&f->b, u, "/", "^app-", "", "", &err), 0);
    assert_int_equal(access_check(&a, ACCESS_WRITE, ACCESS_EXCHANGE, amqp_cstr(""), NULL, &err),
                     -WERR_ACCESS_REFUSED);
    assert_string_equal(err.text,
                        "write access to exchange 'amq.default' in vhost '/' refused for user 'bob'");

    struct exchange *t = exchange_new(f->vh, amqp_cstr("t"), EX_TOPIC, false, false, false,
                                      amqp_cstr(""));
    assert_non_null(t);
    assert_int_equal(vhost_add_exchange(f->vh, t), 0);
    assert_int_equal(access_check_topic(&a, ACCESS_WRITE, t, amqp_cstr("any.key"), &err), 0);
    assert_int_equal(topic_perm_set(&f->b, u, "/", "t", "^{username}\\.{vhost}", "", &err), 0);
    assert_int_equal(access_check_topic(&a, ACCESS_WRITE, t, amqp_cstr("bob./.x"), &err), 0);
    assert_int_equal(access_check_topic(&a, ACCESS_WRITE, t, amqp_cstr("alice./.x"), &err),
                     -WERR_ACCESS_REFUSED);
    assert_string_equal(err.text, "write access to topic 'alice./.x' in exchange 't' in vhost "
                                  "'/' refused for user 'bob'");
    assert_int_equal(access_check_topic(&a, ACCESS_READ, t, amqp_cstr(""), &err), 0);
    assert_int_equal(access_check_topic(&a, ACCESS_READ, t, amqp_cstr("k"), &err),
                     -WERR_ACCESS_REFUSED);
    assert_int_equal(access_check_topic(&a, ACCESS_WRITE, f->x, amqp_cstr("k"), &err), 0);

    users_delete(&f->b, u);
    assert_false(access_vhost_allowed(&a));
    assert_int_equal(access_check(&a, ACCESS_CONFIGURE, ACCESS_QUEUE, amqp_cstr("app-1"), NULL,
                                  &err), -WERR_ACCESS_REFUSED);
}

struct counts {
    int vhosts, users, perms, topics, queues, exchanges, bindings;
    bool has_v2;
};
static int count_vhost(void *arg, const struct st_vhost *r)
{
    struct counts *c = arg;
    c->vhosts++;
    c->has_v2 |= r->name.len == 2 && !memcmp(r->name.p, "v2", 2);
    return 0;
}
static int count_user(void *arg, const struct st_user *r) { (void)r; ((struct counts *)arg)->users++; return 0; }
static int count_perm(void *arg, const struct st_permission *r) { (void)r; ((struct counts *)arg)->perms++; return 0; }
static int count_topic(void *arg, const struct st_topic_permission *r) { (void)r; ((struct counts *)arg)->topics++; return 0; }
static int count_queue(void *arg, const struct st_queue *r) { (void)r; ((struct counts *)arg)->queues++; return 0; }
static int count_exchange(void *arg, const struct st_exchange *r) { (void)r; ((struct counts *)arg)->exchanges++; return 0; }
static int count_binding(void *arg, const struct st_binding *r) { (void)r; ((struct counts *)arg)->bindings++; return 0; }

static int s_closing_calls;
static void on_vhost_closing(struct broker *b, struct vhost *vh, void *arg)
{
    (void)b;
    assert_ptr_equal(arg, &s_closing_calls);
    assert_string_equal(vh->name, "v2");
    assert_int_equal(vh->queues.count, 1); /* called while its objects still exist */
    s_closing_calls++;
}

/* Deleting a vhost removes, in storage too, its queues with their stored messages, its
 * exchanges and bindings, every permission in it and its record; the sessions are told first;
 * other vhosts and the users stay. */
static void test_delete_vhost(void **state)
{
    struct fixture *f = *state;
    char dir[] = "/tmp/warren-model-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(storage_open(dir, false, &f->b.store), 0);
    assert_int_equal(storage_start(f->b.store, on_commit, NULL), 0);
    struct err err = {""};
    struct vhost *v2 = broker_add_vhost(&f->b, "v2");
    assert_non_null(v2);
    users_persist_vhost(&f->b, f->vh);
    users_persist_vhost(&f->b, v2);
    assert_int_equal(users_put_password(&f->b, "bob", "pw", "", &err), 0);
    struct user *u = users_find(&f->b, "bob", 3);
    assert_int_equal(perm_set(&f->b, u, "/", ".*", ".*", ".*", &err), 0);
    assert_int_equal(perm_set(&f->b, u, "v2", ".*", ".*", ".*", &err), 0);
    assert_int_equal(topic_perm_set(&f->b, u, "v2", "amq.topic", ".*", ".*", &err), 0);
    struct exchange *x2 = exchange_new(v2, amqp_cstr("x"), EX_DIRECT, true, false, false,
                                       amqp_cstr(""));
    assert_non_null(x2);
    assert_int_equal(vhost_add_exchange(v2, x2), 0);
    persist_exchange(&f->b, x2);
    struct queue *q = queue_new(v2, amqp_cstr("q"), amqp_cstr(""));
    assert_non_null(q);
    assert_int_equal(vhost_add_queue(v2, q), 0);
    q->durable = true;
    persist_queue(&f->b, q);
    assert_int_equal(binding_add(x2, q, NULL, amqp_cstr("k"), amqp_cstr(""), NULL, NULL), 0);
    f->x = x2; /* routed_msg() publishes through f->x */
    for (int i = 0; i < 5; i++) {
        struct msg *m = routed_msg(f, "k", "persistent", true);
        uint64_t batch;
        bool rejected;
        assert_int_equal(publish_enqueue(&f->b, m, &f->r, &batch, &rejected), 0);
        msg_unref(m);
    }
    commit(&f->b, q);
    assert_int_equal(queue_ready(q), 5);

    f->b.vhost_closing = on_vhost_closing;
    f->b.vhost_closing_arg = &s_closing_calls;
    queue_ref(q); /* to look at it after the deletion */
    f->x = NULL;
    broker_delete_vhost(&f->b, v2);
    assert_int_equal(s_closing_calls, 1);
    assert_true(q->deleted);
    queue_unref(q); /* the last reference: frees q, then its vhost */
    commit(&f->b, NULL);
    assert_null(hmap_get(&f->b.vhosts, "v2", 2));
    assert_null(perm_find(u, "v2", 2));
    assert_non_null(perm_find(u, "/", 1));

    struct counts c = {0};
    static const struct st_recover_ops ops = {
        .exchange = count_exchange, .queue = count_queue, .binding = count_binding,
        .vhost = count_vhost, .user = count_user, .permission = count_perm,
        .topic_permission = count_topic};
    assert_int_equal(storage_recover(f->b.store, &ops, &c), 0);
    assert_false(c.has_v2);
    assert_int_equal(c.vhosts, 1);
    assert_int_equal(c.users, 1);
    assert_int_equal(c.perms, 1);
    assert_int_equal(c.topics, 0);
    assert_int_equal(c.queues, 0);
    assert_int_equal(c.exchanges, 0);
    assert_int_equal(c.bindings, 0);
    storage_close(f->b.store);
    f->b.store = NULL;
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_declare_bind_route_consume_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_robin_and_fanout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_consumers_are_parked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_fails_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_requeue_needs_no_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_in_out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_armed_without_memory, setup, teardown),
        cmocka_unit_test(test_argument_errors_are_values),
        cmocka_unit_test_setup_teardown(test_access_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_vhost, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
