#!/usr/bin/python3
"""Interop with python3-pika: delayed delivery (issue 14). An x-delayed-message exchange of each
inner type (direct, fanout, topic, headers) routes a message with an x-delay header once its
delay is over (arrival >= delay, within a tolerance), to the bindings there are then (a binding
made meanwhile counts); several messages arrive in due order, not publish order; x-delay absent,
0, negative or not an integer routes at once. A queue's x-delivery-delay delays each message,
a message's own x-delay overrides it (0: at once). Bad arguments are refused with 406 and their
texts (no x-delayed-type, a bad one, a negative or non-integer x-delivery-delay), and a
redeclare as another type is inequivalent. Confirms arrive at publish time. Deleting the
exchange or the queue drops what waits for it. The management API and a definitions export
show type x-delayed-message with its arguments, and an import recreates it. Persistent messages
on a durable delayed exchange and in a durable queue with x-delivery-delay survive a SIGKILL of
warrend: after the restart they arrive at their due time, not before, and none is lost.
Starts its own warrend (conf_broker.py). Exit 0 pass, 1 fail, 77 skip."""
import decimal
import os
import shutil
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import pika
    from conf_broker import ConfBroker, check, finish
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (apt-get install python3-pika python3-requests)")
    sys.exit(77)

TOL = 0.4  # s late at most (ASan build, shared machine)
EARLY = 0.005  # s: clocks are the same host's; allow rounding to the ms


def now():
    return time.time()


def publish(ch, exchange, key, mid, delay=None, persistent=False, headers=None):
    """Returns the time just before the publish: the broker's due time is no earlier."""
    h = dict(headers or {})
    if delay is not None:
        h["x-delay"] = delay
    t = now()
    ch.basic_publish(exchange, key, b"x", pika.BasicProperties(
        message_id=mid, headers=h, delivery_mode=2 if persistent else 1))
    return t


def collect(conn, ch, queues, n, timeout):
    """Consumes from queues until n messages came (or timeout): [(queue, id, arrival s)]."""
    got, tags = [], []
    for q in queues:
        def on_msg(_ch, method, props, _body, q=q):
            got.append((q, props.message_id, now()))
        tags.append(ch.basic_consume(q, on_msg, auto_ack=True))
    deadline = now() + timeout
    while len(got) < n and now() < deadline:
        conn.process_data_events(time_limit=0.01)
    for t in tags:
        ch.basic_cancel(t)
    return got


def drain(ch, q):
    ids = []
    while True:
        m, props, _ = ch.basic_get(q, auto_ack=True)
        if m is None:
            return ids
        ids.append(props.message_id)


def on_time(what, arrived, due):
    check(due - EARLY <= arrived <= due + TOL,
          f"{what}: arrived {1000 * (arrived - due):+.0f} ms from its due time")


def inner_types(conn, ch):
    """One delayed exchange per inner type, each message delayed 600 ms."""
    ch.queue_declare("it_q")
    for t in ["direct", "fanout", "topic", "headers"]:
        ch.exchange_declare(f"dx_{t}", "x-delayed-message", arguments={"x-delayed-type": t})
    ch.queue_bind("it_q", "dx_direct", "k")
    ch.queue_bind("it_q", "dx_fanout", "")
    ch.queue_bind("it_q", "dx_topic", "a.*")
    ch.queue_bind("it_q", "dx_headers", "", arguments={"x-match": "all", "kind": "h"})
    due = {}
    due["direct"] = publish(ch, "dx_direct", "k", "direct", 600) + 0.6
    publish(ch, "dx_direct", "other", "direct-unrouted", 600)
    due["fanout"] = publish(ch, "dx_fanout", "any", "fanout", 600) + 0.6
    due["topic"] = publish(ch, "dx_topic", "a.b", "topic", 600) + 0.6
    publish(ch, "dx_topic", "b.b", "topic-unrouted", 600)
    due["headers"] = publish(ch, "dx_headers", "", "headers", 600, headers={"kind": "h"}) + 0.6
    publish(ch, "dx_headers", "", "headers-unrouted", 600, headers={"kind": "z"})
    check(drain(ch, "it_q") == [], "nothing is routed before its delay")
    got = collect(conn, ch, ["it_q"], 4, 3)
    check(sorted(g[1] for g in got) == sorted(due), f"each inner type routed: {got}")
    for _q, mid, at in got:
        if mid in due:
            on_time(f"x-delayed-type {mid}", at, due[mid])
    time.sleep(0.2)
    check(drain(ch, "it_q") == [], "the keys, patterns and headers that do not match route nowhere")


def order_and_late_binding(conn, ch):
    ch.exchange_declare("dx_order", "x-delayed-message", arguments={"x-delayed-type": "fanout"})
    ch.queue_declare("ord_q")
    t0 = publish(ch, "dx_order", "", "c", 900)
    publish(ch, "dx_order", "", "a", 300)
    publish(ch, "dx_order", "", "b", 600)
    ch.queue_bind("ord_q", "dx_order")  # made after the publishes: routing is at due time
    got = collect(conn, ch, ["ord_q"], 3, 3)
    check([g[1] for g in got] == ["a", "b", "c"], f"due order, not publish order: {got}")
    for (_q, mid, at), d in zip(got, [0.3, 0.6, 0.9]):
        on_time(f"ordered {mid}", at, t0 + d)


def at_once(conn, ch):
    ch.exchange_declare("dx_now", "x-delayed-message", arguments={"x-delayed-type": "direct"})
    ch.queue_declare("now_q")
    ch.queue_bind("now_q", "dx_now", "k")
    for mid, delay in [("none", None), ("zero", 0), ("negative", -5000), ("string", "1000"),
                       ("decimal", decimal.Decimal("1.5"))]:
        publish(ch, "dx_now", "k", mid, delay)
    check(drain(ch, "now_q") == ["none", "zero", "negative", "string", "decimal"],
          "x-delay absent, 0, negative or not an integer: routed at once")


def queue_delay(conn, ch):
    ch.queue_declare("qd", arguments={"x-delivery-delay": 700})
    t0 = publish(ch, "", "qd", "default")
    t1 = publish(ch, "", "qd", "override", 250)
    publish(ch, "", "qd", "zero", 0)
    check(drain(ch, "qd") == ["zero"], "x-delay 0 overrides x-delivery-delay: at once")
    got = collect(conn, ch, ["qd"], 2, 3)
    check([g[1] for g in got] == ["override", "default"], f"x-delivery-delay order: {got}")
    for _q, mid, at in got:
        on_time(f"x-delivery-delay {mid}", at, t0 + 0.7 if mid == "default" else t1 + 0.25)
    # A queue with x-delivery-delay bound to a delayed exchange: the exchange's delay only.
    ch.exchange_declare("dx_q", "x-delayed-message", arguments={"x-delayed-type": "direct"})
    ch.queue_bind("qd", "dx_q", "k")
    t2 = publish(ch, "dx_q", "k", "both", 300)
    got = collect(conn, ch, ["qd"], 1, 3)
    check([g[1] for g in got] == ["both"], f"delayed exchange into a delayed queue: {got}")
    if got:
        on_time("delayed exchange into a delayed queue", got[0][2], t2 + 0.3)


def many(conn, ch):
    """More messages than the in-memory window (4,096): the latest wait in storage, transient
    ones too, and all arrive, in due order, none early."""
    ch.exchange_declare("dx_many", "x-delayed-message", arguments={"x-delayed-type": "fanout"})
    ch.queue_declare("many_q")
    ch.queue_bind("many_q", "dx_many")
    pub = conn.channel()  # no confirms: faster
    n = 6000
    lo, hi = {}, {}  # the broker's due time is between: it received the publish in between
    for b in range(0, n, 200):
        t_start = now()
        for i in range(b, b + 200):  # interleaved dues: inserts land mid-window too
            d = 1500 + (i % 2) * 600 + (n - i) // 10
            lo[f"m{i}"] = t_start + d / 1000
            pub.basic_publish("dx_many", "", b"x", pika.BasicProperties(
                message_id=f"m{i}", headers={"x-delay": d}))
        pub.queue_declare("many_q", passive=True)  # a round trip: these publishes are in
        for i in range(b, b + 200):
            hi[f"m{i}"] = lo[f"m{i}"] + (now() - t_start)
    pub.close()
    got = collect(conn, ch, ["many_q"], n, 10)
    ids = [g[1] for g in got]
    check(len(ids) == n and len(set(ids)) == n, f"all {n} arrived: {len(ids)}")
    back = [(a, b) for a, b in zip(ids, ids[1:]) if hi[b] < lo[a]]
    check(not back, f"in due order: {back[:5]}")
    check(all(at >= lo[mid] - EARLY for _q, mid, at in got), "none early")
    late = max((at - hi[mid] for _q, mid, at in got), default=0)
    check(late <= TOL, f"none late: at most {1000 * late:.0f} ms after its due time")


def refused(conn, what, fn, code, text):
    ch = conn.channel()
    try:
        fn(ch)
        check(False, f"{what}: accepted")
    except pika.exceptions.ChannelClosedByBroker as e:
        check(e.reply_code == code and text in e.reply_text,
              f"{what}: {e.reply_code} {e.reply_text!r}, want {code} with {text!r}")


def refusals(conn):
    refused(conn, "no x-delayed-type",
            lambda c: c.exchange_declare("bad1", "x-delayed-message"), 406,
            "Invalid argument, 'x-delayed-type' must be an existing exchange type")
    refused(conn, "a bad x-delayed-type",
            lambda c: c.exchange_declare("bad2", "x-delayed-message",
                                         arguments={"x-delayed-type": "bogus"}), 406,
            "Invalid argument, 'x-delayed-type' must be an existing exchange type")
    refused(conn, "x-delayed-type x-delayed-message",
            lambda c: c.exchange_declare("bad3", "x-delayed-message",
                                         arguments={"x-delayed-type": "x-delayed-message"}),
            406, "'x-delayed-type' must be an existing exchange type")
    refused(conn, "x-delayed-type x-message-deduplication (only the four built-in types)",
            lambda c: c.exchange_declare("bad4", "x-delayed-message", arguments={
                "x-delayed-type": "x-message-deduplication", "x-cache-size": 10}),
            406, "'x-delayed-type' must be an existing exchange type")
    refused(conn, "negative x-delivery-delay",
            lambda c: c.queue_declare("badq1", arguments={"x-delivery-delay": -5}), 406,
            "invalid arg 'x-delivery-delay' for queue 'badq1' in vhost '/': {value_negative,-5}")
    refused(conn, "string x-delivery-delay",
            lambda c: c.queue_declare("badq2", arguments={"x-delivery-delay": "10"}), 406,
            "invalid arg 'x-delivery-delay' for queue 'badq2' in vhost '/': "
            "\"expected integer, got longstr\"")
    refused(conn, "redeclared as direct",
            lambda c: c.exchange_declare("dx_direct", "direct"), 406,
            "inequivalent arg 'type' for exchange 'dx_direct' in vhost '/': received 'direct' "
            "but current is 'x-delayed-message'")
    ch = conn.channel()
    ch.exchange_declare("dx_direct", "x-delayed-message", arguments={"x-delayed-type": "direct"})
    ch.close()


def deletes(conn, ch):
    """What waits for a deleted exchange or queue is dropped, even when one of that name is
    declared again."""
    ch.exchange_declare("dx_del", "x-delayed-message", arguments={"x-delayed-type": "fanout"})
    ch.queue_declare("del_q")
    ch.queue_bind("del_q", "dx_del")
    publish(ch, "dx_del", "", "gone-x", 300)
    ch.exchange_delete("dx_del")
    ch.exchange_declare("dx_del", "x-delayed-message", arguments={"x-delayed-type": "fanout"})
    ch.queue_bind("del_q", "dx_del")
    ch.queue_declare("del_qd", arguments={"x-delivery-delay": 300})
    publish(ch, "", "del_qd", "gone-q")
    ch.queue_delete("del_qd")
    ch.queue_declare("del_qd", arguments={"x-delivery-delay": 300})
    time.sleep(0.7)
    check(drain(ch, "del_q") == [] and drain(ch, "del_qd") == [],
          "deleting the exchange or the queue dropped its delayed messages")


def mandatory(conn, ch):
    """A held message is not returned at publish time (where it goes is known only when due)."""
    returned = []
    ch.add_on_return_callback(lambda *a: returned.append(a))
    ch.exchange_declare("dx_mand", "x-delayed-message", arguments={"x-delayed-type": "direct"})
    ch.basic_publish("dx_mand", "nowhere", b"x", pika.BasicProperties(
        headers={"x-delay": 100}), mandatory=True)
    conn.process_data_events(time_limit=0.3)
    check(returned == [], f"no basic.return for a held mandatory message: {returned}")


def api_and_definitions(w, conn, ch):
    r = w.api("GET", "/api/overview")
    check("x-delayed-message" in [t["name"] for t in r.json().get("exchange_types", [])],
          "the overview lists the exchange type x-delayed-message")
    r = w.api("GET", "/api/exchanges/%2F/dx_topic")
    check(r.status_code == 200 and r.json().get("type") == "x-delayed-message" and
          r.json().get("arguments") == {"x-delayed-type": "topic"},
          f"management API: {r.status_code} {r.text[:300]!r}")
    r = w.api("GET", "/api/definitions")
    ex = [x for x in r.json().get("exchanges", []) if x["name"] == "dx_headers"]
    check(len(ex) == 1 and ex[0]["type"] == "x-delayed-message" and
          ex[0]["arguments"] == {"x-delayed-type": "headers"}, f"definitions export: {ex}")
    r = w.api("POST", "/api/definitions", json={"exchanges": [
        {"name": "dx_imp", "vhost": "/", "type": "x-delayed-message", "durable": True,
         "auto_delete": False, "internal": False, "arguments": {"x-delayed-type": "direct"}}]})
    check(r.status_code in (200, 201, 204), f"import: {r.status_code} {r.text!r}")
    r = w.api("POST", "/api/definitions", json={"exchanges": [
        {"name": "dx_imp_bad", "vhost": "/", "type": "x-delayed-message", "durable": True,
         "auto_delete": False, "internal": False, "arguments": {}}]})
    check(r.status_code == 400 and "x-delayed-type" in r.text,
          f"import without x-delayed-type: {r.status_code} {r.text!r}")
    r = w.api("PUT", "/api/exchanges/%2F/dx_api", json={"type": "x-delayed-message"})
    check(r.status_code == 400 and "'x-delayed-type' must be an existing exchange type" in r.text,
          f"API declare without x-delayed-type: {r.status_code} {r.text!r}")
    r = w.api("PUT", "/api/exchanges/%2F/dx_api", json={
        "type": "x-delayed-message", "arguments": {"x-delayed-type": "fanout"}})
    check(r.status_code in (201, 204), f"API declare: {r.status_code} {r.text!r}")
    r = w.api("GET", "/api/exchanges/%2F/dx_api")
    check(r.status_code == 200 and r.json().get("type") == "x-delayed-message",
          f"API-declared exchange: {r.status_code} {r.text[:300]!r}")
    r = w.api("GET", "/api/exchanges/%2F/dx_imp")
    check(r.status_code == 200 and r.json().get("type") == "x-delayed-message",
          f"imported exchange: {r.status_code} {r.text[:300]!r}")
    ch.queue_declare("imp_q")
    ch.queue_bind("imp_q", "dx_imp", "k")
    t0 = publish(ch, "dx_imp", "k", "imported", 300)
    check(drain(ch, "imp_q") == [], "the imported exchange delays")
    got = collect(conn, ch, ["imp_q"], 1, 3)
    check([g[1] for g in got] == ["imported"], f"imported exchange routes when due: {got}")
    if got:
        on_time("imported exchange", got[0][2], t0 + 0.3)


def durable_setup(conn, ch):
    """Persistent messages waiting in storage when warrend is killed: 40 on a durable delayed
    exchange (due 3.0 s .. 3.39 s) and 10 in a durable queue with x-delivery-delay 3 s. Before
    them 4,200 transient ones on the same exchange, due later: the persistent ones push them out
    of the window into storage (marked transient), and they are not delivered after the restart."""
    ch.exchange_declare("ddx", "x-delayed-message", durable=True,
                        arguments={"x-delayed-type": "direct"})
    ch.queue_declare("ddq", durable=True)
    ch.queue_bind("ddq", "ddx", "k")
    pub = conn.channel()
    for i in range(4200):
        pub.basic_publish("ddx", "k", b"x", pika.BasicProperties(
            message_id=f"t{i}", headers={"x-delay": 3600}))
    pub.queue_declare("ddq", passive=True)
    pub.close()
    ch.queue_declare("dqd", durable=True, arguments={"x-delivery-delay": 3000})
    due = {}
    for i in range(40):
        d = 3000 + 10 * i
        due[f"x{i}"] = publish(ch, "ddx", "k", f"x{i}", d, persistent=True) + d / 1000
    for i in range(10):
        due[f"q{i}"] = publish(ch, "", "dqd", f"q{i}", persistent=True) + 3.0
    # One message to a quorum queue at once and to a delayed queue later: after the delayed
    # copy is taken and acked, a requeue in the quorum queue still names its own stored copy.
    ch.exchange_declare("fq", "fanout", durable=True)
    ch.queue_declare("qa", durable=True, arguments={"x-queue-type": "quorum"})
    ch.queue_declare("qb", durable=True, arguments={"x-delivery-delay": 300})
    ch.queue_bind("qa", "fq")
    ch.queue_bind("qb", "fq")
    publish(ch, "fq", "", "shared", persistent=True)
    m, _, _ = ch.basic_get("qa")
    check(m is not None, "the quorum queue got the shared message at once")
    got = collect(conn, ch, ["qb"], 1, 3)
    check([g[1] for g in got] == ["shared"], f"the delayed queue got it later: {got}")
    if m:
        ch.basic_nack(m.delivery_tag, requeue=True)
    # Stored, then dropped with their durable exchange and queue (declared again, empty).
    ch.exchange_declare("ddx_del", "x-delayed-message", durable=True,
                        arguments={"x-delayed-type": "fanout"})
    ch.queue_declare("ddq_del", durable=True)
    ch.queue_bind("ddq_del", "ddx_del")
    ch.queue_declare("dqd_del", durable=True, arguments={"x-delivery-delay": 2000})
    publish(ch, "ddx_del", "", "gone-x", 2000, persistent=True)
    publish(ch, "", "dqd_del", "gone-q", persistent=True)
    ch.exchange_delete("ddx_del")
    ch.queue_delete("dqd_del")
    ch.exchange_declare("ddx_del", "x-delayed-message", durable=True,
                        arguments={"x-delayed-type": "fanout"})
    ch.queue_bind("ddq_del", "ddx_del")
    ch.queue_declare("dqd_del", durable=True, arguments={"x-delivery-delay": 2000})
    # 48 MiB waiting an hour: after the restart only the window's 8 MiB is read back.
    ch.exchange_declare("bigx", "x-delayed-message", durable=True,
                        arguments={"x-delayed-type": "fanout"})
    ch.queue_declare("bigq", durable=True)
    ch.queue_bind("bigq", "bigx")
    body = b"b" * (1 << 20)
    for i in range(48):
        ch.basic_publish("bigx", "", body, pika.BasicProperties(
            delivery_mode=2, headers={"x-delay": 3600000 + i}))
    return due


def rss_anon_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def durable_check(conn, ch, due):
    check(drain(ch, "ddq") == [] and drain(ch, "dqd") == [],
          "after the restart nothing arrived before its due time")
    got = collect(conn, ch, ["ddq", "dqd"], len(due), 8)
    ids = [g[1] for g in got]
    check(sorted(ids) == sorted(due), f"every delayed message survived SIGKILL: got {len(ids)} "
          f"of {len(due)}: missing {sorted(set(due) - set(ids))}")
    check([i for i in ids if i[0] == "x"] == [f"x{i}" for i in range(40)],
          "the exchange's messages in due order after the restart")
    late = [1000 * (at - due[mid]) for _q, mid, at in got]
    check(late and min(late) >= -1000 * EARLY and max(late) <= 1000 * TOL,
          f"after the restart on time: {min(late, default=0):+.0f} .. "
          f"{max(late, default=0):+.0f} ms from due")
    time.sleep(1.0)  # past the transient ones' due time
    check(drain(ch, "ddq") == [] and drain(ch, "dqd") == [],
          "each delivered once, and no transient message after the restart")
    check(drain(ch, "qa") == ["shared"], "the quorum queue's requeued message after the restart")
    check(drain(ch, "ddq_del") == [] and drain(ch, "dqd_del") == [],
          "stored delayed messages of a deleted exchange or queue are gone after the restart")


def main():
    if not os.environ.get("WARREND"):
        print("SKIP: WARREND is not set")
        return 77
    d = tempfile.mkdtemp(prefix="warren-delay-")
    w = None
    try:
        w = ConfBroker(d, [])
        base = rss_anon_kib(w.proc.pid)
        conn = w.connect()
        ch = conn.channel()
        ch.confirm_delivery()  # each publish returns once confirmed: confirms arrive
        inner_types(conn, ch)
        order_and_late_binding(conn, ch)
        at_once(conn, ch)
        queue_delay(conn, ch)
        refusals(conn)
        deletes(conn, ch)
        many(conn, ch)
        mandatory(conn, ch)
        api_and_definitions(w, conn, ch)
        due = durable_setup(conn, ch)
        w.proc.kill()  # SIGKILL: confirmed means stored
        w.proc.wait()
        w.logf.close()
        t_kill = now()
        w = ConfBroker(d, [], ports=(w.port, w.mport, w.pport))
        check(now() - t_kill < 2.5, "restarted before the delays were over")
        grown = rss_anon_kib(w.proc.pid) - base
        check(grown < 30 * 1024, f"48 MiB of stored delayed messages: RssAnon after the restart "
              f"grew by {grown} KiB over a fresh start's (the window holds 8 MiB)")
        conn = w.connect()
        ch = conn.channel()
        durable_check(conn, ch, due)
        r = w.api("GET", "/api/exchanges/%2F/ddx")
        check(r.status_code == 200 and r.json().get("type") == "x-delayed-message",
              f"the durable delayed exchange recovered: {r.status_code} {r.text[:200]!r}")
        conn.close()
        check(w.stop(), "warrend stopped cleanly after the restart")
    finally:
        if w and w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()
        shutil.rmtree(d, ignore_errors=True)
    return finish("delay")


if __name__ == "__main__":
    sys.exit(main())
