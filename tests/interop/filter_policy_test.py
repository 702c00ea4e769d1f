#!/usr/bin/python3
"""Interop with python3-pika: SNS subscription filter policies on bindings (issue 14). Bindings
carry x-filter-policy (and x-filter-policy-scope MessageAttributes or MessageBody) on fanout,
direct, topic and headers exchanges and on an exchange-to-exchange binding; messages with
headers or JSON bodies are published under confirms and every queue is drained to check exactly
which messages it got: exact strings (OR within a key, AND across keys), numeric ranges, prefix,
anything-but, exists false, $or, a headers array value, nested MessageBody keys, topic + policy,
headers x-match + policy, a direct queue bound twice with one key and two policies (two
bindings; unbinding one leaves the other); the filter index (300 per-tenant bindings on a fanout
exchange, attribute and body scope, arrays, a second key, unbinding, headers x-match on indexed
candidates). Invalid policies (unknown operator, bad JSON, not a
string, a bad scope) are refused with 406 naming the problem, closing only their channel; a
definitions import refuses one (400) and compiles a valid one. A durable binding with a policy survives a restart of warrend and still filters.
Starts its own warrend (conf_broker.py). Exit 0 pass, 1 fail, 77 skip."""
import decimal
import json
import os
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import pika
    from conf_broker import ConfBroker, check, finish
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (apt-get install python3-pika python3-requests)")
    sys.exit(77)


def policy_args(policy, scope=None):
    a = {"x-filter-policy": json.dumps(policy)}
    if scope:
        a["x-filter-policy-scope"] = scope
    return a


def publish(ch, exchange, mid, key="", headers=None, body=b"x"):
    ch.basic_publish(exchange, key, body,
                     pika.BasicProperties(message_id=mid, headers=headers))


def drain(ch, q):
    """The message ids in q, in order (acked)."""
    got = []
    while True:
        m, props, _ = ch.basic_get(q, auto_ack=True)
        if m is None:
            return got
        got.append(props.message_id)


def expect(ch, queues):
    for q, want in queues.items():
        got = drain(ch, q)
        check(got == want, f"queue {q}: got {got}, want {want}")


def attributes(ch):
    """A fanout exchange, one queue per operator."""
    ch.exchange_declare("fx", "fanout")
    binds = {
        "q_or": {"color": ["red", "blue"]},
        "q_and": {"color": ["red"], "size": ["L"]},
        "q_num": {"price": [{"numeric": [">=", 10, "<", 20]}]},
        "q_prefix": {"region": [{"prefix": "eu-"}]},
        "q_anyb": {"color": [{"anything-but": ["red"]}]},
        "q_noex": {"color": [{"exists": False}]},
        "q_or2": {"$or": [{"color": ["green"]}, {"size": ["S"]}]},
        "q_arr": {"tags": ["vip"]},
    }
    for q, p in binds.items():
        ch.queue_declare(q)
        ch.queue_bind(q, "fx", arguments=policy_args(p))
    ch.queue_declare("q_all")
    ch.queue_bind("q_all", "fx")
    publish(ch, "fx", "m1", headers={"color": "red", "size": "L", "price": 15,
                                     "region": "eu-west", "tags": ["vip", "x"]})
    publish(ch, "fx", "m2", headers={"color": "blue", "size": "S", "price": 25,
                                     "region": "us-east"})
    publish(ch, "fx", "m3", headers={"color": "green", "price": 10, "region": "eu-north"})
    publish(ch, "fx", "m4")  # no attributes: as in SNS, only the unfiltered queue gets it
    publish(ch, "fx", "m5", headers={"size": "M", "price": decimal.Decimal("19.5"), "tags": ["basic"]})
    expect(ch, {"q_or": ["m1", "m2"], "q_and": ["m1"], "q_num": ["m1", "m3", "m5"],
                "q_prefix": ["m1", "m3"], "q_anyb": ["m2", "m3"], "q_noex": ["m5"],
                "q_or2": ["m2", "m3"], "q_arr": ["m1"],
                "q_all": ["m1", "m2", "m3", "m4", "m5"]})


def body_scope(ch):
    """Direct: two queues on one key with MessageBody policies (nested keys); one queue bound
    twice with one key and two attribute policies."""
    ch.exchange_declare("dx", "direct")
    ch.queue_declare("qb1")
    ch.queue_bind("qb1", "dx", "k", policy_args(
        {"order": {"status": ["paid"], "total": [{"numeric": [">", 100]}]}}, "MessageBody"))
    ch.queue_declare("qb2")
    ch.queue_bind("qb2", "dx", "k", policy_args({"order": {"status": ["open"]}}, "MessageBody"))
    paid = json.dumps({"order": {"status": "paid", "total": 150}}).encode()
    publish(ch, "dx", "b1", "k", body=paid)
    publish(ch, "dx", "b2", "k", body=json.dumps({"order": {"status": "paid", "total": 50}})
            .encode())
    publish(ch, "dx", "b3", "k", body=json.dumps({"order": {"status": "open"}, "x": 1})
            .encode())
    publish(ch, "dx", "b4", "k", body=b"not json")
    publish(ch, "dx", "b5", "other", body=paid)
    publish(ch, "dx", "b6", "k", headers={"order": "paid"}, body=b"[1]")
    expect(ch, {"qb1": ["b1"], "qb2": ["b3"]})

    ch.queue_declare("qd")
    ch.queue_bind("qd", "dx", "d", policy_args({"kind": ["a"]}))
    ch.queue_bind("qd", "dx", "d", policy_args({"kind": ["b"]}))
    for k in ("a", "b", "c"):
        publish(ch, "dx", "d" + k, "d", headers={"kind": k})
    expect(ch, {"qd": ["da", "db"]})
    ch.queue_unbind("qd", "dx", "d", policy_args({"kind": ["a"]}))
    for k in ("a", "b", "c"):
        publish(ch, "dx", "e" + k, "d", headers={"kind": k})
    expect(ch, {"qd": ["eb"]})


def indexed(ch):
    """Policies with an exact-string key live in the exchange's filter index: 300 per-tenant
    bindings on a fanout exchange (two strings each), attribute and body scope on one key name,
    an array value, a second key that must also match, unbinding an indexed binding, and a headers
    exchange whose x-match still applies to indexed candidates."""
    ch.exchange_declare("ix", "fanout")
    for i in range(300):
        ch.queue_declare(f"iq{i}")
        ch.queue_bind(f"iq{i}", "ix", arguments=policy_args({"tenant": [f"t{i}", f"alias{i}"]}))
    ch.queue_declare("iq_and")
    ch.queue_bind("iq_and", "ix", arguments=policy_args({"tenant": ["t7"], "tier": ["gold"]}))
    ch.queue_declare("iq_body")
    ch.queue_bind("iq_body", "ix", arguments=policy_args({"tenant": ["t7"]}, "MessageBody"))
    publish(ch, "ix", "i1", headers={"tenant": "t7"}, body=b'{"tenant": "t8"}')
    publish(ch, "ix", "i2", headers={"tenant": "alias299", "tier": "gold"})
    publish(ch, "ix", "i3", headers={"tenant": ["t1", "t2", "nobody"]})
    publish(ch, "ix", "i4", headers={"tenant": "t7", "tier": "gold"}, body=b'{"tenant": ["t7"]}')
    publish(ch, "ix", "i5", headers={"tenant": 7, "other": "t7"})
    publish(ch, "ix", "i6", headers={"tenant": "T7"})
    want = {f"iq{i}": [] for i in range(300)}
    want.update({"iq7": ["i1", "i4"], "iq299": ["i2"], "iq1": ["i3"], "iq2": ["i3"],
                 "iq_and": ["i4"], "iq_body": ["i4"]})
    expect(ch, want)
    ch.queue_unbind("iq7", "ix", arguments=policy_args({"tenant": ["t7", "alias7"]}))
    ch.queue_bind("iq8", "ix", arguments=policy_args({"tenant": ["t7"]}))
    publish(ch, "ix", "i7", headers={"tenant": "t7"})
    expect(ch, {"iq7": [], "iq8": ["i7"], "iq_and": [], "iq_body": []})

    ch.exchange_declare("ihx", "headers")
    ch.queue_declare("ihq")
    a = policy_args({"tenant": ["t1"]})
    a.update({"x-match": "all", "kind": "order"})
    ch.queue_bind("ihq", "ihx", arguments=a)
    publish(ch, "ihx", "h1", headers={"tenant": "t1", "kind": "order"})
    publish(ch, "ihx", "h2", headers={"tenant": "t1", "kind": "refund"})
    publish(ch, "ihx", "h3", headers={"tenant": "t2", "kind": "order"})
    expect(ch, {"ihq": ["h1"]})


def topic_headers_e2e(ch):
    ch.exchange_declare("tx", "topic")
    ch.queue_declare("q_t")
    ch.queue_bind("q_t", "tx", "orders.*", policy_args({"color": ["red"]}))
    publish(ch, "tx", "t1", "orders.new", headers={"color": "red"})
    publish(ch, "tx", "t2", "orders.new", headers={"color": "blue"})
    publish(ch, "tx", "t3", "other.new", headers={"color": "red"})
    expect(ch, {"q_t": ["t1"]})

    ch.exchange_declare("hx", "headers")
    ch.queue_declare("q_h")
    ch.queue_bind("q_h", "hx", arguments={"x-match": "all", "type": "A",
                                          **policy_args({"color": ["red"]})})
    ch.queue_declare("q_hx")  # all-with-x: the policy arguments are no header to match
    ch.queue_bind("q_hx", "hx", arguments={"x-match": "all-with-x", "type": "A",
                                           **policy_args({"color": ["red"]})})
    publish(ch, "hx", "h1", headers={"type": "A", "color": "red"})
    publish(ch, "hx", "h2", headers={"type": "A", "color": "blue"})
    publish(ch, "hx", "h3", headers={"type": "B", "color": "red"})
    expect(ch, {"q_h": ["h1"], "q_hx": ["h1"]})

    ch.exchange_declare("e_src", "fanout")
    ch.exchange_declare("e_dst", "fanout")
    ch.exchange_bind("e_dst", "e_src", arguments=policy_args({"color": ["red"]}))
    ch.queue_declare("q_e")
    ch.queue_bind("q_e", "e_dst")
    publish(ch, "e_src", "x1", headers={"color": "red"})
    publish(ch, "e_src", "x2", headers={"color": "blue"})
    publish(ch, "e_src", "x3")
    expect(ch, {"q_e": ["x1"]})


def refusals(conn, ch):
    cases = [
        ({"x-filter-policy": json.dumps({"price": [{"gt": 1}]})}, "unknown operator 'gt'"),
        ({"x-filter-policy": "{"}, "x-filter-policy"),
        ({"x-filter-policy": 5}, "must be a longstr"),
        ({"x-filter-policy": "{}", "x-filter-policy-scope": "Body"}, "x-filter-policy-scope"),
    ]
    for args, words in cases:
        bad = conn.channel()
        try:
            bad.queue_bind("q_all", "fx", "r", arguments=args)
            check(False, f"bind with {args} was accepted")
        except pika.exceptions.ChannelClosedByBroker as e:
            check(e.reply_code == 406, f"{args}: reply code {e.reply_code}, want 406")
            check("PRECONDITION_FAILED - invalid x-filter-policy for binding" in e.reply_text
                  and words in e.reply_text, f"{args}: reply text {e.reply_text!r}")
        check(not bad.is_open, "the refused channel is closed")
    check(conn.is_open and ch.is_open, "the connection and the other channel stay open")
    publish(ch, "fx", "after", headers={"color": "red"})
    expect(ch, {"q_or": ["after"], "q_all": ["after"]})
    # an exchange-to-exchange bind is refused the same way
    bad = conn.channel()
    try:
        bad.exchange_bind("e_dst", "e_src", arguments={"x-filter-policy": "[1]"})
        check(False, "exchange.bind with a bad policy was accepted")
    except pika.exceptions.ChannelClosedByBroker as e:
        check(e.reply_code == 406 and "x-filter-policy" in e.reply_text,
              f"exchange.bind: {e.reply_code} {e.reply_text!r}")


def definitions(w, ch):
    """A definitions import compiles the policies: an invalid one refuses the file (400 naming
    the problem), a valid one filters."""
    def defs(policy):
        return {"queues": [{"name": "q_imp", "vhost": "/", "durable": False,
                            "auto_delete": False, "arguments": {}}],
                "bindings": [{"source": "fx", "vhost": "/", "destination": "q_imp",
                              "destination_type": "queue", "routing_key": "",
                              "arguments": {"x-filter-policy": json.dumps(policy)}}]}
    r = w.api("POST", "/api/definitions", json=defs({"a": [{"gt": 1}]}))
    check(r.status_code == 400 and "x-filter-policy" in r.text and "'gt'" in r.text,
          f"import of a bad policy: {r.status_code} {r.text!r}")
    r = w.api("POST", "/api/definitions", json=defs({"color": ["imported"]}))
    check(r.status_code in (200, 201, 204), f"import: {r.status_code} {r.text!r}")
    publish(ch, "fx", "i1", headers={"color": "imported"})
    publish(ch, "fx", "i2", headers={"color": "red"})
    expect(ch, {"q_imp": ["i1"], "q_or": ["i2"], "q_and": [], "q_all": ["i1", "i2"]})
    drain(ch, "q_anyb")
    drain(ch, "q_prefix")


def durable_setup(ch):
    ch.exchange_declare("dfx", "fanout", durable=True)
    ch.queue_declare("dq1", durable=True)
    ch.queue_bind("dq1", "dfx", arguments=policy_args({"color": ["red"]}))
    ch.queue_declare("dq2", durable=True)
    ch.queue_bind("dq2", "dfx", arguments=policy_args({"n": [{"numeric": [">", 5]}]},
                                                      "MessageBody"))


def durable_check(ch, tag):
    publish(ch, "dfx", tag + "r", headers={"color": "red"}, body=b'{"n": 1}')
    publish(ch, "dfx", tag + "b", headers={"color": "blue"}, body=b'{"n": 9}')
    expect(ch, {"dq1": [tag + "r"], "dq2": [tag + "b"]})


def main():
    if not os.environ.get("WARREND"):
        print("SKIP: WARREND is not set")
        return 77
    d = tempfile.mkdtemp(prefix="warren-filter-")
    w = None
    try:
        w = ConfBroker(d, [])
        conn = w.connect()
        ch = conn.channel()
        ch.confirm_delivery()
        attributes(ch)
        body_scope(ch)
        indexed(ch)
        topic_headers_e2e(ch)
        refusals(conn, ch)
        definitions(w, ch)
        durable_setup(ch)
        durable_check(ch, "before")
        conn.close()
        check(w.stop(), "warrend stopped cleanly")
        w = ConfBroker(d, [], ports=(w.port, w.mport, w.pport))
        conn = w.connect()
        ch = conn.channel()
        ch.confirm_delivery()
        durable_check(ch, "after")
        conn.close()
        check("skipping" not in w.log_text(), "no stored binding skipped at recovery")
        check(w.stop(), "warrend stopped cleanly after the restart")
    finally:
        if w and w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()
        shutil.rmtree(d, ignore_errors=True)
    return finish("filter-policy")


if __name__ == "__main__":
    sys.exit(main())
