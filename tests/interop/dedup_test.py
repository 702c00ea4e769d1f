#!/usr/bin/python3
"""Interop with python3-pika: message deduplication (issue 14), the interface of the
rabbitmq-message-deduplication plugin. An x-message-deduplication exchange routes as a fanout
(binding keys ignored) and drops a message whose x-deduplication-header was seen: each id once,
messages without the header always; the exchange's x-cache-ttl and a message's x-cache-ttl
header end the window (the id is routed again); x-cache-size evicts the oldest id. A queue with
x-message-deduplication refuses an id it holds (also while delivered and unacked, also after a
requeue) and takes it again once the first is acked. x-content-based-deduplication uses the
body's SHA-256 (exchange and queue). Duplicates are confirmed (never nacked, never returned as
unroutable under mandatory) and counted: messages_deduplicated in the HTTP API and
rabbitmq_global_messages_deduplicated_total in Prometheus. Disk persistence (the default for a
durable exchange or queue) survives SIGKILL and a start, memory persistence does not; deleting
the exchange drops its cache. Bad arguments are refused (406) with the plugin's texts; a
definitions export and import keeps the type and arguments.
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

DX = "x-message-deduplication"


def publish(ch, exchange, mid, dedup_id=None, key="", body=None, ttl=None, persistent=False,
            mandatory=False):
    headers = {}
    if dedup_id is not None:
        headers["x-deduplication-header"] = dedup_id
    if ttl is not None:
        headers["x-cache-ttl"] = ttl
    ch.basic_publish(exchange, key, body if body is not None else mid.encode(),
                     pika.BasicProperties(message_id=mid, headers=headers or None,
                                          delivery_mode=2 if persistent else 1),
                     mandatory=mandatory)


def drain(ch, q):
    """The message ids in q, in order (acked)."""
    got = []
    while True:
        m, props, _ = ch.basic_get(q, auto_ack=True)
        if m is None:
            return got
        got.append(props.message_id)


def expect(ch, q, want):
    got = drain(ch, q)
    check(got == want, f"queue {q}: got {got}, want {want}")


def exchange_level(ch):
    """Each id once, in order; no header: always routed; fanout whatever the keys."""
    ch.exchange_declare("dx", DX, arguments={"x-cache-size": 100})
    for q, key in (("dq1", "k1"), ("dq2", "other")):
        ch.queue_declare(q)
        ch.queue_bind(q, "dx", key)
    publish(ch, "dx", "m1", "a", key="k1")
    publish(ch, "dx", "m2", "b", key="zzz")
    publish(ch, "dx", "m3", "a")
    publish(ch, "dx", "m4", None)
    publish(ch, "dx", "m5", "b", mandatory=True)  # a duplicate is not returned as unroutable
    publish(ch, "dx", "m6", None)
    publish(ch, "dx", "m7", "c")
    publish(ch, "dx", "m8", 42)  # an integer id
    publish(ch, "dx", "m9", 42)
    long_id = "L" * 300  # longer than 32 bytes: kept as its SHA-256
    publish(ch, "dx", "m10", long_id)
    publish(ch, "dx", "m11", long_id)
    publish(ch, "dx", "m12", long_id[:-1] + "M")
    want = ["m1", "m2", "m4", "m6", "m7", "m8", "m10", "m12"]
    expect(ch, "dq1", want)
    expect(ch, "dq2", want)


def windows(ch):
    """The exchange's x-cache-ttl and the message's x-cache-ttl header end the window."""
    # windows of a second or more, so that a slow machine (sanitizers, shared cores) still
    # publishes the duplicate inside them
    ch.exchange_declare("dttl", DX, arguments={"x-cache-size": 10, "x-cache-ttl": 1000})
    ch.queue_declare("qttl")
    ch.queue_bind("qttl", "dttl")
    publish(ch, "dttl", "t1", "x")
    publish(ch, "dttl", "t2", "x")
    publish(ch, "dttl", "h1", "y", ttl=6000)  # the header overrides the exchange's 1 s
    time.sleep(1.3)
    publish(ch, "dttl", "t3", "x")
    publish(ch, "dttl", "h2", "y")
    expect(ch, "qttl", ["t1", "h1", "t3"])
    ch.exchange_declare("dnottl", DX, arguments={"x-cache-size": 10})
    ch.queue_declare("qnottl")
    ch.queue_bind("qnottl", "dnottl")
    publish(ch, "dnottl", "n1", "z", ttl=1000)
    publish(ch, "dnottl", "n2", "z")
    publish(ch, "dnottl", "n3", "w")  # no ttl anywhere: never expires
    time.sleep(1.3)
    publish(ch, "dnottl", "n4", "z")
    publish(ch, "dnottl", "n5", "w")
    expect(ch, "qnottl", ["n1", "n3", "n4"])


def eviction(ch):
    """x-cache-size 2: a third id evicts the oldest, which is then accepted again."""
    ch.exchange_declare("dsize", DX, arguments={"x-cache-size": 2})
    ch.queue_declare("qsize")
    ch.queue_bind("qsize", "dsize")
    for i, dedup_id in enumerate(["a", "b", "c", "a", "c"]):
        publish(ch, "dsize", f"s{i}", dedup_id)
    expect(ch, "qsize", ["s0", "s1", "s2", "s3"])


def queue_level(ch):
    """An id in the queue is refused (ready, unacked, requeued); accepted after the ack."""
    ch.queue_declare("qd", arguments={"x-message-deduplication": True})
    publish(ch, "", "q1", "a", key="qd")
    publish(ch, "", "q2", "a", key="qd")
    publish(ch, "", "q3", None, key="qd")
    publish(ch, "", "q4", None, key="qd")
    m, props, _ = ch.basic_get("qd")
    check(props.message_id == "q1", f"first from qd: {props.message_id}")
    publish(ch, "", "q5", "a", key="qd")  # q1 is out, unacked: still in the queue
    ch.basic_reject(m.delivery_tag, requeue=True)
    publish(ch, "", "q6", "a", key="qd")  # back after the requeue: still refused
    m, props, _ = ch.basic_get("qd")
    check(props.message_id == "q1", f"q1 again after the requeue: {props.message_id}")
    ch.basic_ack(m.delivery_tag)
    publish(ch, "", "q7", "a", key="qd")  # gone: accepted
    expect(ch, "qd", ["q3", "q4", "q7"])
    publish(ch, "", "q8", "a", key="qd")  # q7 was acked by the drain
    expect(ch, "qd", ["q8"])
    # a message that expires (x-message-ttl) or is purged leaves the set too
    ch.queue_declare("qdttl", arguments={"x-message-deduplication": True, "x-message-ttl": 1000})
    publish(ch, "", "e1", "e", key="qdttl")
    publish(ch, "", "e2", "e", key="qdttl")
    time.sleep(1.3)
    ch.basic_get("qdttl")  # expires the head
    publish(ch, "", "e3", "e", key="qdttl")
    expect(ch, "qdttl", ["e3"])
    publish(ch, "", "p1", "p", key="qd")
    ch.queue_purge("qd")
    publish(ch, "", "p2", "p", key="qd")
    expect(ch, "qd", ["p2"])
    # a purge leaves the ids of delivered, unacked messages: their duplicates are still refused
    publish(ch, "", "u1", "u", key="qd")
    m, props, _ = ch.basic_get("qd")
    ch.queue_purge("qd")
    publish(ch, "", "u2", "u", key="qd")
    check(ch.queue_declare("qd", passive=True).method.message_count == 0,
          "a duplicate of an unacked message is refused after a purge")
    ch.basic_ack(m.delivery_tag)
    # a queue that dead-letters to itself takes back its rejected message (the id was forgotten
    # before the dead letter came in)
    ch.queue_declare("qself", arguments={"x-message-deduplication": True,
                                         "x-dead-letter-exchange": "",
                                         "x-dead-letter-routing-key": "qself"})
    publish(ch, "", "r1", "r", key="qself")
    m, props, _ = ch.basic_get("qself")
    ch.basic_reject(m.delivery_tag, requeue=False)
    m, props, _ = ch.basic_get("qself", auto_ack=True)
    check(m is not None and props.message_id == "r1" and props.headers.get("x-death"),
          "a rejected message dead-lettered to its own deduplicating queue is back, with x-death")
    # a full queue (reject-publish) confirms a duplicate (ack) and refuses a new id (nack)
    ch.queue_declare("qfull", arguments={"x-message-deduplication": True, "x-max-length": 1,
                                         "x-overflow": "reject-publish"})
    publish(ch, "", "f1", "f", key="qfull")
    try:
        publish(ch, "", "f2", "f", key="qfull")
        dup_acked = True
    except pika.exceptions.NackError:
        dup_acked = False
    check(dup_acked, "a duplicate sent to a full queue is acked, not nacked")
    try:
        publish(ch, "", "f3", "g", key="qfull")
        new_nacked = False
    except pika.exceptions.NackError:
        new_nacked = True
    check(new_nacked, "a new id sent to a full reject-publish queue is nacked")
    expect(ch, "qfull", ["f1"])
    publish(ch, "", "f4", "g", key="qfull")  # the refused id was not remembered
    expect(ch, "qfull", ["f4"])


def content_based(ch):
    """Without the header the body's SHA-256 is the id; with it, the header decides."""
    ch.exchange_declare("dcx", DX, arguments={"x-cache-size": 10,
                                              "x-content-based-deduplication": True})
    ch.queue_declare("qcx")
    ch.queue_bind("qcx", "dcx")
    publish(ch, "dcx", "c1", body=b"hello")
    publish(ch, "dcx", "c2", body=b"hello")
    publish(ch, "dcx", "c3", body=b"world")
    publish(ch, "dcx", "c4", "h", body=b"hello")  # a header id: the body does not count
    publish(ch, "dcx", "c5", "h", body=b"other")
    expect(ch, "qcx", ["c1", "c3", "c4"])
    ch.queue_declare("qcq", arguments={"x-content-based-deduplication": True})
    publish(ch, "", "b1", body=b"same", key="qcq")
    publish(ch, "", "b2", body=b"same", key="qcq")
    publish(ch, "", "b3", body=b"diff", key="qcq")
    expect(ch, "qcq", ["b1", "b3"])


def statistics(w):
    r = w.api("GET", "/api/exchanges/%2F/dx")
    j = r.json() if r.status_code == 200 else {}
    check(j.get("type") == DX, f"dx type in the API: {j.get('type')}")
    check(j.get("messages_deduplicated") == 4,
          f"dx messages_deduplicated: {j.get('messages_deduplicated')}")
    r = w.api("GET", "/api/queues/%2F/qd")
    j = r.json() if r.status_code == 200 else {}
    check(j.get("messages_deduplicated") == 4,  # q2, q5, q6, u2
          f"qd messages_deduplicated: {j.get('messages_deduplicated')}")
    import requests
    text = requests.get(f"http://127.0.0.1:{w.pport}/metrics", timeout=10).text
    line = [l for l in text.splitlines()
            if l.startswith("rabbitmq_global_messages_deduplicated_total")]
    check(line and int(line[0].split()[-1]) >= 16, f"prometheus: {line}")


def refusals(conn):
    """406 with the plugin's texts, closing only the channel."""
    cases = [
        ("exchange", {}, "Missing or invalid argument, 'x-cache-size' must be an integer "
                         "greater than 0"),
        ("exchange", {"x-cache-size": -5}, "'x-cache-size' must be an integer greater than 0"),
        ("exchange", {"x-cache-size": "abc"}, "'x-cache-size' must be an integer greater than 0"),
        ("exchange", {"x-cache-size": decimal.Decimal("1.5")}, "'x-cache-size' must be an integer greater than 0"),
        ("exchange", {"x-cache-size": 5, "x-cache-ttl": 0},
         "Invalid argument, 'x-cache-ttl' must be an integer greater than 0"),
        ("exchange", {"x-cache-size": 5, "x-cache-persistence": "tape"},
         "Invalid argument, 'x-cache-persistence' must be either 'disk' or 'memory'"),
        ("queue", {"x-message-deduplication": "yes"},
         "Invalid argument, 'x-message-deduplication' must be a boolean"),
        ("queue", {"x-message-deduplication": True, "x-cache-persistence": "tape"},
         "'x-cache-persistence' must be either 'disk' or 'memory'"),
    ]
    for kind, args, text in cases:
        ch = conn.channel()
        try:
            if kind == "exchange":
                ch.exchange_declare("bad", DX, arguments=args)
            else:
                ch.queue_declare("badq", arguments=args)
            check(False, f"{kind} {args} accepted")
        except pika.exceptions.ChannelClosedByBroker as e:
            check(e.reply_code == 406 and text in e.reply_text,
                  f"{kind} {args}: {e.reply_code} {e.reply_text!r}")
    ch = conn.channel()
    ch.exchange_declare("good", DX, arguments={"x-cache-size": "20"})  # a string of digits
    ch.exchange_delete("good")
    return ch


def definitions(w, ch):
    r = w.api("GET", "/api/definitions")
    ex = [x for x in r.json().get("exchanges", []) if x["name"] == "dx"]
    check(ex and ex[0]["type"] == DX and ex[0]["arguments"] == {"x-cache-size": 100},
          f"dx in the export: {ex}")
    defs = {"exchanges": [{"name": "imported", "vhost": "/", "type": DX, "durable": True,
                           "auto_delete": False, "internal": False,
                           "arguments": {"x-cache-size": 7, "x-cache-ttl": 60000}}]}
    r = w.api("POST", "/api/definitions", json=defs)
    check(r.status_code in (200, 201, 204), f"import: {r.status_code} {r.text!r}")
    r = w.api("GET", "/api/exchanges/%2F/imported")
    j = r.json() if r.status_code == 200 else {}
    check(j.get("type") == DX and j.get("arguments") == {"x-cache-size": 7, "x-cache-ttl": 60000},
          f"imported exchange: {j}")
    bad = {"exchanges": [{"name": "imported2", "vhost": "/", "type": DX, "durable": True,
                          "auto_delete": False, "internal": False, "arguments": {}}]}
    r = w.api("POST", "/api/definitions", json=bad)
    check(r.status_code == 400 and "x-cache-size" in r.text, f"bad import: {r.status_code}")
    ch.queue_declare("qimp")
    ch.queue_bind("qimp", "imported")
    publish(ch, "imported", "i1", "i")
    publish(ch, "imported", "i2", "i")
    expect(ch, "qimp", ["i1"])
    # deleting the exchange drops its cache
    ch.exchange_delete("imported")
    ch.exchange_declare("imported", DX, durable=True, arguments={"x-cache-size": 7})
    ch.queue_bind("qimp", "imported")
    publish(ch, "imported", "i3", "i")
    expect(ch, "qimp", ["i3"])


def durable_setup(ch):
    ch.exchange_declare("pdx", DX, durable=True, arguments={"x-cache-size": 50})
    ch.exchange_declare("pmx", DX, durable=True,
                        arguments={"x-cache-size": 50, "x-cache-persistence": "memory"})
    for x, q in (("pdx", "pq1"), ("pmx", "pq2")):
        ch.queue_declare(q, durable=True)
        ch.queue_bind(q, x)
        publish(ch, x, "before", "p1", persistent=True)
    ch.queue_declare("pqd", durable=True, arguments={"x-message-deduplication": True})
    publish(ch, "", "z1", "z", key="pqd", persistent=True)


def durable_check(ch):
    for x in ("pdx", "pmx"):
        publish(ch, x, "after", "p1", persistent=True)
    expect(ch, "pq1", ["before"])           # disk: the id survived
    expect(ch, "pq2", ["before", "after"])  # memory: forgotten
    publish(ch, "", "z2", "z", key="pqd", persistent=True)  # z1 is still in the queue
    m, props, _ = ch.basic_get("pqd")
    check(props.message_id == "z1", f"pqd head: {props.message_id}")
    ch.basic_ack(m.delivery_tag)
    publish(ch, "", "z3", "z", key="pqd", persistent=True)
    expect(ch, "pqd", ["z3"])


def main():
    if not os.environ.get("WARREND"):
        print("SKIP: WARREND is not set")
        return 77
    d = tempfile.mkdtemp(prefix="warren-dedup-")
    w = None
    try:
        w = ConfBroker(d, [], prometheus=True)
        conn = w.connect()
        ch = conn.channel()
        ch.confirm_delivery()  # a nack would raise NackError, a return UnroutableError
        exchange_level(ch)
        windows(ch)
        eviction(ch)
        queue_level(ch)
        content_based(ch)
        statistics(w)
        ch = refusals(conn)
        ch.confirm_delivery()
        definitions(w, ch)
        durable_setup(ch)
        conn.close()
        w.proc.kill()  # SIGKILL: only what was committed (confirmed) is there
        w.proc.wait()
        w.logf.close()
        w = ConfBroker(d, [], ports=(w.port, w.mport, w.pport), prometheus=True)
        conn = w.connect()
        ch = conn.channel()
        ch.confirm_delivery()
        durable_check(ch)
        conn.close()
        check(w.stop(), "warrend stopped cleanly after the restart")
    except pika.exceptions.AMQPError as e:
        check(False, f"unexpected {type(e).__name__}: {e!r}")
    finally:
        if w and w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()
        shutil.rmtree(d, ignore_errors=True)
    return finish("dedup")


if __name__ == "__main__":
    sys.exit(main())
