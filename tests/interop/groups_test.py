#!/usr/bin/python3
"""Interop with python3-pika: ordered message groups (x-message-groups, issue 14). Four competing
consumers (own connections, prefetch 10) over 50 groups x 40 messages: with acks only (some
delayed) every group arrives in publish order across consumers; with random basic.reject/basic.nack
requeues every group is acked in publish order, each message once; in both, no two consumers ever
hold unacked messages of one group at the same time (checked at each arrival) and the groups spread
over all consumers. A consumer holding groups whose connection closes, or that cancels and
recovers, gives its groups back with their messages redelivered in order to the others, which never
got those groups while it held them. Messages without x-group-id (the default group) and integer
ids; basic.get takes the head of a group nobody holds and holds it until the ack; drop-head keeps
group order; x-message-ttl expires a held group's messages at the head; x-consumer-timeout closes a
holder's channel and its group goes, in order, to another consumer; a durable queue of persistent
messages past the memory window keeps each group's order across a restart; the management API shows
the argument and the number of groups (message_groups); SQS FIFO (a deduplication exchange into a
group queue, producer retries, 4 consumers with requeues): each id acked once, in group order, the
retries confirmed and counted; x-message-groups that is not a boolean, or
with x-max-priority, is refused with 406 naming it. Starts its own warrend (conf_broker.py). Exit 0
pass, 1 fail, 77 skip."""
import os
import random
import shutil
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import pika
    from conf_broker import ConfBroker, check, finish
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (apt-get install python3-pika python3-requests)")
    sys.exit(77)

GROUPS = {"x-message-groups": True}


def publish_groups(conn, q, ngroups, per, durable=False, interleave=True, key="g"):
    """Publishes per messages to each of ngroups groups (header i = index in the group),
    interleaved, under confirms."""
    ch = conn.channel()
    ch.confirm_delivery()
    order = [(g, i) for i in range(per) for g in range(ngroups)]
    for g, i in order:
        ch.basic_publish("", q, f"{key}{g}:{i}".encode(), pika.BasicProperties(
            headers={"x-group-id": f"{key}{g}", "i": i}, delivery_mode=2 if durable else 1))
    ch.close()


class State:
    """What the consumers saw, shared under a lock: arrivals, holds (unacked messages of a
    group per consumer), acks."""

    def __init__(self, total, strict):
        self.lock = threading.Lock()
        self.total, self.strict = total, strict
        self.next_arrival = {}
        self.next_ack = {}
        self.acked = 0
        self.out = {}          # (consumer, group) -> unacked count
        self.groups_of = {}    # consumer -> groups it got
        self.errors = []
        self.done = threading.Event()

    def arrive(self, who, g, i, redelivered):
        with self.lock:
            for (c, gg), n in self.out.items():
                if gg == g and c != who and n > 0:
                    self.errors.append(f"{who} got {g}:{i} while {c} holds {n} of it")
            self.out[(who, g)] = self.out.get((who, g), 0) + 1
            self.groups_of.setdefault(who, set()).add(g)
            if self.strict:
                want = self.next_arrival.get(g, 0)
                if i != want:
                    self.errors.append(f"{who} got {g}:{i} (redelivered {redelivered}), "
                                       f"expected {g}:{want}")
                self.next_arrival[g] = i + 1

    def expected(self, g):
        with self.lock:
            return self.next_ack.get(g, 0)

    def settle(self, who, g, i, acked):
        with self.lock:
            self.out[(who, g)] -= 1
            if acked:
                if i != self.next_ack.get(g, 0):
                    self.errors.append(f"{who} acked {g}:{i}, expected {self.next_ack.get(g, 0)}")
                self.next_ack[g] = i + 1
                self.acked += 1
                if self.acked == self.total:
                    self.done.set()

    def forget(self, who):
        """who's connection is closing: its deliveries go back."""
        with self.lock:
            for k in list(self.out):
                if k[0] == who:
                    self.out[k] = 0


class Consumer(threading.Thread):
    """A consumer on its own connection: deliveries are handled in arrival order, each after a
    random delay of up to max_delay s; mode 'ack' acks them, 'reject' requeues the ones out of
    order and a random 10 % more (basic.reject or basic.nack), 'hold' never settles."""

    def __init__(self, w, name, q, state, prefetch=10, mode="ack", max_delay=0.0, seed=0):
        super().__init__(daemon=True)
        self.w, self.name, self.q, self.state = w, name, q, state
        self.prefetch, self.mode, self.max_delay = prefetch, mode, max_delay
        self.rnd = random.Random(seed)
        self.pending = []
        self.got = []
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.action = None  # 'close', or 'cancel' (cancel then basic.recover)
        self.failed = None
        self.ch = None

    def on_msg(self, ch, method, props, body):
        g, i = props.headers["x-group-id"], props.headers["i"]
        self.state.arrive(self.name, g, i, method.redelivered)
        self.got.append((g, i, method.redelivered))
        due = time.monotonic() + (self.rnd.random() * self.max_delay if self.max_delay else 0)
        self.pending.append((due, method.delivery_tag, g, i))

    def work(self, ch):
        while self.pending and self.pending[0][0] <= time.monotonic() and self.mode != "hold":
            _, tag, g, i = self.pending.pop(0)
            ok = True
            if self.mode == "reject":
                ok = i == self.state.expected(g) and self.rnd.random() >= 0.1
            self.state.settle(self.name, g, i, ok)
            if ok:
                ch.basic_ack(tag)
            elif self.rnd.random() < 0.5:
                ch.basic_reject(tag, requeue=True)
            else:
                ch.basic_nack(tag, requeue=True)

    def run(self):
        try:
            conn = self.w.connect()
            ch = self.ch = conn.channel()
            ch.basic_qos(prefetch_count=self.prefetch)
            ch.basic_consume(self.q, self.on_msg, consumer_tag=self.name)
            self.ready.set()
            while not self.stop.is_set() and not self.state.done.is_set():
                conn.process_data_events(time_limit=0.005)
                self.work(ch)
            if self.action == "cancel":
                ch.basic_cancel(self.name)
                time.sleep(0.3)  # still holding: nobody else may get its groups meanwhile
                conn.process_data_events(time_limit=0)
                self.state.forget(self.name)
                ch.basic_recover(requeue=True)
                conn.close()
            else:
                self.state.forget(self.name)
                conn.close()
        except Exception as e:  # pylint: disable=broad-except
            self.failed = repr(e)
            self.ready.set()


def competing(w, conn, q, mode, strict, seed):
    ngroups, per = 50, 40
    conn.channel().queue_declare(q, arguments=GROUPS)
    publish_groups(conn, q, ngroups, per)
    st = State(ngroups * per, strict)
    cs = [Consumer(w, f"{mode}-{k}", q, st, 10, mode, 0.01, seed + k) for k in range(4)]
    for c in cs:
        c.start()
    check(st.done.wait(90), f"{mode}: all {ngroups * per} messages acked (got {st.acked})")
    for c in cs:
        c.stop.set()
        c.join(10)
        check(c.failed is None, f"{mode}: consumer {c.name}: {c.failed}")
    check(not st.errors, f"{mode}: {len(st.errors)} violations, first: {st.errors[:3]}")
    check(all(st.next_ack.get(f"g{g}") == per for g in range(ngroups)),
          f"{mode}: every group acked to its end")
    spread = {c.name: len(st.groups_of.get(c.name, ())) for c in cs}
    check(all(n >= 3 for n in spread.values()), f"{mode}: groups spread over consumers {spread}")
    redelivered = sum(1 for c in cs for x in c.got if x[2])
    if mode == "reject":
        check(redelivered > 0, "reject: some messages were redelivered")
    print(f"{mode}: {sum(len(c.got) for c in cs)} deliveries, {redelivered} redelivered, "
          f"groups per consumer {spread}")


def fifo(w, conn):
    """SQS FIFO: a deduplication exchange (5-minute window) into a group queue. Every message is
    published under confirms, and about 30 % are published again later (a producer's retries,
    same id); 4 competing consumers with random requeues. Each id is acked exactly once, in
    order within its group; the retries were confirmed (acked, never nacked) and counted."""
    ngroups, per = 20, 30
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare("fifo-x", "x-message-deduplication",
                        arguments={"x-cache-size": 100000, "x-cache-ttl": 300000})
    ch.queue_declare("fifo", arguments=GROUPS)
    ch.queue_bind("fifo", "fifo-x")
    rnd = random.Random(7)
    sent, retries, nacked = [], 0, 0

    def pub(g, i):
        nonlocal nacked
        try:
            ch.basic_publish("fifo-x", "", f"f{g}:{i}".encode(), pika.BasicProperties(
                headers={"x-group-id": f"f{g}", "i": i, "x-deduplication-header": f"f{g}:{i}"}))
        except pika.exceptions.NackError:
            nacked += 1

    for i in range(per):
        for g in range(ngroups):
            pub(g, i)
            sent.append((g, i))
            if rnd.random() < 0.3:
                pub(*rnd.choice(sent))
                retries += 1
    check(nacked == 0, f"fifo: no publish nacked ({nacked})")
    st = State(ngroups * per, False)
    cs = [Consumer(w, f"fifo-{k}", "fifo", st, 10, "reject", 0.005, 500 + k) for k in range(4)]
    for c in cs:
        c.start()
    check(st.done.wait(90), f"fifo: all {ngroups * per} ids acked (got {st.acked})")
    for c in cs:
        c.stop.set()
        c.join(10)
        check(c.failed is None, f"fifo: consumer {c.name}: {c.failed}")
    check(not st.errors, f"fifo: {len(st.errors)} violations, first: {st.errors[:3]}")
    check(all(st.next_ack.get(f"f{g}") == per for g in range(ngroups)),
          "fifo: every group acked to its end, in order")
    left = conn.channel().queue_declare("fifo", passive=True).method.message_count
    check(left == 0, f"fifo: no duplicate left in the queue ({left})")
    x = w.api("GET", "/api/exchanges/%2F/fifo-x").json()
    check(x.get("messages_deduplicated") == retries,
          f"fifo: {retries} retries counted as deduplicated ({x.get('messages_deduplicated')})")
    print(f"fifo: {ngroups * per} ids, {retries} retries dropped, "
          f"{sum(len(c.got) for c in cs)} deliveries")


def goes_away(w, conn, q, action):
    """Consumer A takes groups and acks nothing; B (acking) never gets A's groups while A
    holds them; A goes away (close, or cancel + recover) and B gets every group in order."""
    ngroups, per = 20, 20
    conn.channel().queue_declare(q, arguments=GROUPS)
    publish_groups(conn, q, ngroups, per)
    st = State(ngroups * per, False)
    a = Consumer(w, f"A-{action}", q, st, prefetch=30, mode="hold")
    a.action = action
    a.start()
    a.ready.wait(10)
    deadline = time.monotonic() + 10
    while len(a.got) < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    held = {g for g, _, _ in a.got}
    check(len(held) >= 2, f"{action}: A holds several groups ({len(held)})")
    b = Consumer(w, f"B-{action}", q, st, prefetch=10, mode="ack")
    b.start()
    b.ready.wait(10)
    time.sleep(0.5)
    early = {g for g, _, _ in b.got} & held
    check(not early, f"{action}: B got none of A's groups while A held them ({early})")
    check(len(b.got) > 0, f"{action}: B got the other groups meanwhile")
    a.stop.set()
    a.join(10)
    check(st.done.wait(30), f"{action}: all messages acked after A went ({st.acked})")
    b.stop.set()
    b.join(10)
    check(a.failed is None and b.failed is None, f"{action}: consumers: {a.failed} {b.failed}")
    per_group = {}
    for g, i, red in b.got:
        per_group.setdefault(g, []).append(i)
    check(all(per_group.get(f"g{g}") == list(range(per)) for g in range(ngroups)),
          f"{action}: B got every group whole and in order")
    red = {g for g, _, r in b.got if r}
    check(red and red <= held, f"{action}: the redelivered ones are A's groups ({red})")
    check(not st.errors, f"{action}: violations {st.errors[:3]}")


def default_group(w, conn, q):
    """No x-group-id: one group, so two consumers take turns, in order."""
    ch = conn.channel()
    ch.queue_declare(q, arguments=GROUPS)
    ch.confirm_delivery()
    for i in range(30):
        ch.basic_publish("", q, b"d", pika.BasicProperties(headers={"i": i}))
    got, lock = [], threading.Lock()

    def run(name):
        c = w.connect()
        cc = c.channel()
        cc.basic_qos(prefetch_count=5)
        for method, props, _ in cc.consume(q, inactivity_timeout=1):
            if method is None:
                break
            with lock:
                got.append((name, props.headers["i"]))
            time.sleep(0.002)
            cc.basic_ack(method.delivery_tag)
        c.close()
    ts = [threading.Thread(target=run, args=(n,)) for n in ("d1", "d2")]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    check([i for _, i in got] == list(range(30)), f"default group in order: {got}")


def basic_get(conn, q):
    ch = conn.channel()
    ch.queue_declare(q, arguments=GROUPS)
    ch.confirm_delivery()
    for g, i in (("a", 0), ("a", 1), ("b", 0), (7, 0), ("7", 1)):
        ch.basic_publish("", q, f"{g}{i}".encode(),  # (the header after other properties)
                         pika.BasicProperties(content_type="text/plain", content_encoding="utf-8",
                                              headers={"x-group-id": g, "i": i}))
    m1, _, b1 = ch.basic_get(q)
    m2, _, b2 = ch.basic_get(q)
    m3, _, b3 = ch.basic_get(q)
    m4, _, _ = ch.basic_get(q)
    check((b1, b2, b3, m4) == (b"a0", b"b0", b"70", None),
          f"basic.get takes heads of free groups only: {b1} {b2} {b3} {m4}")
    ch.basic_ack(m1.delivery_tag)
    m5, _, b5 = ch.basic_get(q)
    check(b5 == b"a1", f"after the ack, the group's next: {b5}")
    ch.basic_reject(m3.delivery_tag, requeue=True)  # integer 7 and "7" are one group
    m6, _, b6 = ch.basic_get(q, auto_ack=True)
    m7, _, b7 = ch.basic_get(q, auto_ack=True)
    check((b6, b7) == (b"70", b"71"), f"a requeued head comes back first, no_ack holds not: "
          f"{b6} {b7}")
    ch.basic_ack(m2.delivery_tag)
    ch.basic_ack(m5.delivery_tag)
    check(ch.basic_get(q)[0] is None, "then empty")
    ch.close()


def drop_head(conn, q):
    ch = conn.channel()
    ch.queue_declare(q, arguments={"x-message-groups": True, "x-max-length": 6})
    ch.confirm_delivery()
    for i in range(12):
        ch.basic_publish("", q, b"x", pika.BasicProperties(headers={"x-group-id": f"g{i % 2}",
                                                                     "i": i}))
    got = []
    while True:
        m, props, _ = ch.basic_get(q, auto_ack=True)
        if m is None:
            break
        got.append(props.headers["i"])
    check(got == [6, 7, 8, 9, 10, 11], f"drop-head keeps the newest, in order: {got}")
    ch.close()


def ttl_and_timeout(w, conn):
    """x-message-ttl: messages of a held group still expire at the queue's head. A consumer
    that never acks loses its channel to x-consumer-timeout and its group goes, in order, to
    another consumer that did not get it before."""
    ch = conn.channel()
    ch.queue_declare("ttl", arguments={"x-message-groups": True, "x-message-ttl": 200})
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", "ttl", b"t", pika.BasicProperties(headers={"x-group-id": "a",
                                                                         "i": i}))
    m, props, _ = ch.basic_get("ttl")
    check(m is not None and props.headers["i"] == 0, "ttl: the get holds group a")
    time.sleep(0.5)
    check(ch.basic_get("ttl")[0] is None, "ttl: the rest of the held group expired")
    ch.basic_ack(m.delivery_tag)
    check(ch.queue_declare("ttl", passive=True).method.message_count == 0, "ttl: queue empty")
    ch.queue_declare("cto", arguments={"x-message-groups": True, "x-consumer-timeout": 300})
    for i in range(3):
        ch.basic_publish("", "cto", b"c", pika.BasicProperties(headers={"x-group-id": "a",
                                                                         "i": i}))
    st = State(3, False)
    a = Consumer(w, "cto-A", "cto", st, prefetch=1, mode="hold")
    a.start()
    a.ready.wait(10)
    deadline = time.monotonic() + 5
    while not a.got and time.monotonic() < deadline:
        time.sleep(0.01)
    b = Consumer(w, "cto-B", "cto", st, prefetch=10, mode="ack")
    b.start()
    b.ready.wait(10)
    time.sleep(0.1)
    check(not b.got, f"timeout: B gets nothing while A holds the group ({b.got})")
    st.forget("cto-A")  # the broker closes A's channel after 300 ms
    check(st.done.wait(10), f"timeout: B got the group after A's timeout ({b.got})")
    check([(i, r) for _, i, r in b.got] == [(0, True), (1, False), (2, False)],
          f"timeout: in order, the first redelivered: {b.got}")
    deadline = time.monotonic() + 5  # A's client reads the close in its own time
    while not (a.ch is not None and a.ch.is_closed) and time.monotonic() < deadline:
        time.sleep(0.01)
    check(a.ch is not None and a.ch.is_closed, "timeout: the broker closed A's channel")
    a.stop.set()
    b.stop.set()
    a.join(10)
    b.join(10)


def refusals(conn):
    for args, text in (({"x-message-groups": "yes"},
                        "PRECONDITION_FAILED - invalid arg 'x-message-groups' for queue 'bad' in "
                        "vhost '/': {unacceptable_type,longstr}"),
                       ({"x-message-groups": True, "x-max-priority": 5},
                        "PRECONDITION_FAILED - invalid arg 'x-message-groups' for queue 'bad' in "
                        "vhost '/': {not_supported_with,'x-max-priority'}")):
        ch = conn.channel()
        try:
            ch.queue_declare("bad", arguments=args)
            check(False, f"{args} refused")
        except pika.exceptions.ChannelClosedByBroker as e:
            check(e.reply_code == 406 and e.reply_text == text, f"{args}: {e.reply_code} "
                  f"{e.reply_text}")


def main():
    if not os.environ.get("WARREND"):
        print("SKIP: WARREND is not set")
        return 77
    d = tempfile.mkdtemp(prefix="warren-groups-")
    w = None
    try:
        w = ConfBroker(d, [])
        conn = w.connect()
        refusals(conn)
        basic_get(conn, "get")
        drop_head(conn, "dh")
        default_group(w, conn, "dflt")
        ttl_and_timeout(w, conn)
        conn.channel().queue_declare("count", arguments=GROUPS)
        publish_groups(conn, "count", 3, 2)
        r = w.api("GET", "/api/queues/%2F/count")
        check(r.status_code == 200 and r.json()["arguments"].get("x-message-groups") is True
              and r.json().get("message_groups") == 3,
              f"the API shows the argument and 3 groups: {r.status_code} {r.text[:300]}")
        competing(w, conn, "acks", "ack", True, 1)
        competing(w, conn, "rejects", "reject", False, 100)
        fifo(w, conn)
        goes_away(w, conn, "close", "close")
        goes_away(w, conn, "cancel", "cancel")
        # Durable, past the memory window (2,048 messages): on disk after the restart.
        conn.channel().queue_declare("dur", durable=True, arguments=GROUPS)
        publish_groups(conn, "dur", 5, 600, durable=True)
        conn.close()
        check(w.stop(), "warrend stopped cleanly")
        w = ConfBroker(d, [], ports=(w.port, w.mport, w.pport))
        st = State(3000, True)
        cs = [Consumer(w, f"dur-{k}", "dur", st, 10, "ack", 0.0, k) for k in range(2)]
        for c in cs:
            c.start()
        check(st.done.wait(60), f"durable: all 3000 acked after the restart ({st.acked})")
        for c in cs:
            c.stop.set()
            c.join(10)
        check(not st.errors, f"durable: order and holds after the restart: {st.errors[:3]}")
        check(w.stop(), "warrend stopped cleanly after the restart")
    finally:
        if w and w.proc.poll() is None:
            w.proc.kill()
        shutil.rmtree(d, ignore_errors=True)
    return finish("groups")


if __name__ == "__main__":
    sys.exit(main())
