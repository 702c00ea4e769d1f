#!/usr/bin/python3
"""Management API, entities (issue 11): /api/exchanges (PUT 201/204, an inequivalent redeclare
400 with RabbitMQ's text, GET, DELETE with if-unused, publish -> routed true/false with the
message then consumed over AMQP, bindings/source|destination), /api/queues (PUT with arguments,
GET counters, DELETE with if-empty/if-unused 400s, contents DELETE purges, bindings, get with
ackmode ack_requeue_true/false, encoding base64, truncate) and /api/bindings (POST 201 with a
Location that GETs the binding, the lists, DELETE by properties_key), each checked against the
broker's state over AMQP (pika). Expectations are RabbitMQ 3.10.8's answers. Starts its own
warrend in a vhost of its own, or uses WARREN_API_URL + WARREN_AMQP_PORT (see api_common.py).
Exit 0 pass, 1 fail, 77 skip."""
import base64
import os
import sys
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_common import (  # noqa: E402
    NOT_FOUND, PREFIX, amqp, channel_error, check, q, run)

import pika  # noqa: E402
import pika.exceptions  # noqa: E402

V = PREFIX + "ent"
VQ = q(V)


def bad(reason):
    return {"error": "bad_request", "reason": reason}


def passive_exchange(conn, name):
    """None when name exists (passive declare), else the channel error's code."""
    return channel_error(lambda: conn.channel().exchange_declare(exchange=name, passive=True))


def passive_queue(conn, name):
    return channel_error(lambda: conn.channel().queue_declare(queue=name, passive=True))


def publish(api, exchange, key, payload, encoding="string", props=None):
    """POST .../publish; the decoded answer (or None)."""
    return api.expect("POST", f"/api/exchanges/{VQ}/{q(exchange)}/publish", 200,
                      json={"routing_key": key, "payload": payload, "payload_encoding": encoding,
                            "properties": props or {}}, what=f"publish to {exchange!r}")


def queue_counts(api, name, **want):
    """Waits until the queue's JSON shows want's counters (RabbitMQ's lag up to 5 s)."""
    return api.eventually(f"/api/queues/{VQ}/{q(name)}",
                          lambda j: all(j.get(k) == v for k, v in want.items()),
                          f"queue {name}: want {want}")


def test_exchanges(conn, api):
    x = PREFIX + "x"
    path = f"/api/exchanges/{VQ}/{q(x)}"
    decl = {"type": "direct", "durable": True, "auto_delete": False, "internal": False,
            "arguments": {"alternate-exchange": "amq.fanout"}}
    api.expect("PUT", path, 201, {}, json=decl)
    api.expect("PUT", path, 204, {}, json=decl, what="the same again")
    api.expect("PUT", path, 400, bad(f"inequivalent arg 'type' for exchange '{x}' in vhost "
                                     f"'{V}': received 'fanout' but current is 'direct'"),
               json={**decl, "type": "fanout"})
    api.expect("PUT", path, 400, bad(f"inequivalent arg 'durable' for exchange '{x}' in vhost "
                                     f"'{V}': received 'false' but current is 'true'"),
               json={**decl, "durable": False})
    got = api.expect("GET", path, 200) or {}
    want = {"name": x, "vhost": V, "type": "direct", "durable": True, "auto_delete": False,
            "internal": False, "arguments": {"alternate-exchange": "amq.fanout"}}
    check({k: got.get(k) for k in want} == want, f"GET {path}: {got}")
    check(passive_exchange(conn, x) is None, "the exchange declared by the API exists over AMQP")

    # Flags left out are false, as RabbitMQ's API reads them.
    plain = PREFIX + "x-plain"
    api.expect("PUT", f"/api/exchanges/{VQ}/{q(plain)}", 201, {}, json={"type": "topic"})
    got = api.expect("GET", f"/api/exchanges/{VQ}/{q(plain)}", 200) or {}
    check(got.get("durable") is False and got.get("auto_delete") is False and
          got.get("internal") is False and got.get("type") == "topic",
          f"PUT {{'type': 'topic'}}: durable/auto_delete/internal/type {got}")

    names = {e.get("name") for e in api.expect("GET", f"/api/exchanges/{VQ}", 200) or []}
    check({"", "amq.direct", "amq.fanout", "amq.topic", "amq.headers", x, plain} <= names,
          f"GET /api/exchanges/{V}: {sorted(names)}")
    check(any(e.get("vhost") == V and e.get("name") == x
              for e in api.expect("GET", "/api/exchanges", 200) or []),
          "GET /api/exchanges lists the new exchange")
    api.expect("GET", f"/api/exchanges/{VQ}/{q(PREFIX + 'none')}", 404, NOT_FOUND)
    api.expect("GET", f"/api/exchanges/{q(PREFIX + 'no-vhost')}/amq.direct", 404, NOT_FOUND)
    # The default exchange is amq.default in URLs.
    got = api.expect("GET", f"/api/exchanges/{VQ}/amq.default", 200) or {}
    check(got.get("name") == "" and got.get("type") == "direct",
          f"GET amq.default: {got}")
    r = api.put(f"/api/exchanges/{VQ}/amq.custom", {"type": "direct"})
    check(r is not None and r.status_code == 401 and r.json().get("error") == "not_authorised",
          f"PUT amq.custom (a reserved name): {r is not None and (r.status_code, r.text)}")

    # Deleted: 204, gone over AMQP (404 on a passive declare), then 404.
    api.expect("DELETE", f"/api/exchanges/{VQ}/{q(plain)}", 204, {})
    check(passive_exchange(conn, plain) == 404, "a deleted exchange is gone over AMQP")
    api.expect("DELETE", f"/api/exchanges/{VQ}/{q(plain)}", 404, NOT_FOUND)
    api.expect("GET", f"/api/exchanges/{VQ}/{q(plain)}", 404, NOT_FOUND)


def test_queues(conn, api):
    qn = PREFIX + "q"
    path = f"/api/queues/{VQ}/{q(qn)}"
    decl = {"durable": True, "auto_delete": False, "arguments": {"x-max-length": 3}}
    api.expect("PUT", path, 201, {}, json=decl)
    api.expect("PUT", path, 204, {}, json=decl, what="the same again")
    api.expect("PUT", path, 400, bad(f"inequivalent arg 'x-max-length' for queue '{qn}' in vhost "
                                     f"'{V}': received '5' but current is '3'"),
               json={**decl, "arguments": {"x-max-length": 5}})
    api.expect("PUT", path, 400, bad(f"inequivalent arg 'durable' for queue '{qn}' in vhost "
                                     f"'{V}': received 'false' but current is 'true'"),
               json={**decl, "durable": False})
    got = api.expect("GET", path, 200) or {}
    want = {"name": qn, "vhost": V, "durable": True, "auto_delete": False, "exclusive": False,
            "arguments": {"x-max-length": 3}}
    check({k: got.get(k) for k in want} == want, f"GET {path}: {got}")
    ok = conn.channel().queue_declare(queue=qn, passive=True)
    check(ok.method.message_count == 0, "the queue declared by the API exists over AMQP")

    # Flags left out are false.
    plain = PREFIX + "q-plain"
    api.expect("PUT", f"/api/queues/{VQ}/{q(plain)}", 201, {}, json={})
    got = api.expect("GET", f"/api/queues/{VQ}/{q(plain)}", 200) or {}
    check(got.get("durable") is False and got.get("auto_delete") is False,
          f"PUT {{}}: durable/auto_delete {got}")
    api.expect("DELETE", f"/api/queues/{VQ}/{q(plain)}", 204, {})
    check(passive_queue(conn, plain) == 404, "a deleted queue is gone over AMQP")
    api.expect("DELETE", f"/api/queues/{VQ}/{q(plain)}", 404, NOT_FOUND)
    api.expect("GET", f"/api/queues/{VQ}/{q(plain)}", 404, NOT_FOUND)
    r = api.put(f"/api/queues/{VQ}/amq.custom", {})
    check(r is not None and r.status_code == 401 and r.json().get("error") == "not_authorised",
          f"PUT queue amq.custom (a reserved name): {r is not None and (r.status_code, r.text)}")

    # Counters: 5 published over AMQP, x-max-length 3 keeps the last 3.
    ch = conn.channel()
    for i in range(5):
        ch.basic_publish(exchange="", routing_key=qn, body=f"m{i}".encode())
    queue_counts(api, qn, messages=3, messages_ready=3, messages_unacknowledged=0, consumers=0)
    # A consumer holding one unacked message (prefetch 1).
    cch = conn.channel()
    cch.basic_qos(prefetch_count=1)
    held = []
    cch.basic_consume(queue=qn, on_message_callback=lambda c, m, p, b: held.append((m, b)))
    while not held:
        conn.process_data_events(time_limit=0.1)
    check(held[0][1] == b"m2", f"first message kept by x-max-length 3: {held[0][1]!r}")
    queue_counts(api, qn, messages=3, messages_ready=2, messages_unacknowledged=1, consumers=1)
    api.expect("DELETE", f"{path}?if-unused=true", 400, bad(f"queue '{qn}' in vhost '{V}' in use"))
    api.expect("DELETE", f"{path}?if-empty=true", 400, bad(f"queue '{qn}' in vhost '{V}' not "
                                                           "empty"))
    cch.close()  # the unacked message goes back
    queue_counts(api, qn, messages=3, messages_ready=3, messages_unacknowledged=0, consumers=0)

    # contents DELETE purges.
    api.expect("DELETE", f"{path}/contents", 204, {})
    m, _, _ = conn.channel().basic_get(queue=qn, auto_ack=True)
    check(m is None, "the purged queue is empty over AMQP")
    queue_counts(api, qn, messages=0)
    api.expect("DELETE", f"{path}?if-empty=true", 204, {})
    check(passive_queue(conn, qn) == 404, "deleted with if-empty: gone over AMQP")
    api.expect("DELETE", f"/api/queues/{VQ}/{q(PREFIX + 'none')}/contents", 404, NOT_FOUND)
    names = {x.get("name") for x in api.expect("GET", f"/api/queues/{VQ}", 200) or []}
    check(qn not in names, f"the deleted queue is still listed: {sorted(names)}")


def test_bindings_and_publish(conn, api):
    x, x2, qn = PREFIX + "bx", PREFIX + "bx2", PREFIX + "bq"
    api.expect("PUT", f"/api/exchanges/{VQ}/{q(x)}", 201, json={"type": "direct"})
    api.expect("PUT", f"/api/exchanges/{VQ}/{q(x2)}", 201, json={"type": "fanout"})
    api.expect("PUT", f"/api/queues/{VQ}/{q(qn)}", 201, json={"durable": False})
    base = f"/api/bindings/{VQ}/e/{q(x)}/q/{q(qn)}"

    check(publish(api, x, "rk", "nobody") == {"routed": False}, "unbound: routed false")
    # POST 201 with a Location that names the new binding.
    r = api.post(base, {"routing_key": "rk", "arguments": {}})
    if r is not None:
        check(r.status_code == 201, f"POST {base}: {r.status_code} {r.text!r}")
        loc = r.headers.get("Location", "")
        check(loc, "POST of a binding: no Location")
        # RabbitMQ's Location is relative to the POST's URL ("q1/rk"), warrend's absolute.
        url = urllib.parse.urljoin(api.url + base, loc)
        check(url == api.url + base + "/rk", f"Location {loc!r} resolves to {url}")
        got = api.expect("GET", url[len(api.url):], 200, what="the Location")
        want = {"source": x, "vhost": V, "destination": qn, "destination_type": "queue",
                "routing_key": "rk", "arguments": {}, "properties_key": "rk"}
        check(got == want, f"GET Location: {got}, want {want}")
    r = api.post(base, {"routing_key": "rk", "arguments": {"x-match-me": 7}})
    check(r is not None and r.status_code == 201, "POST of a binding with arguments")
    api.expect("POST", f"/api/bindings/{VQ}/e/{q(x)}/e/{q(x2)}", 201,
               json={"routing_key": "to-x2", "arguments": {}})
    # 404 (RabbitMQ's body here: not_found, "no queue 'N' in vhost 'V'").
    api.expect("POST", f"/api/bindings/{VQ}/e/{q(x)}/q/{q(PREFIX + 'none')}", 404,
               json={"routing_key": "rk"})

    between = api.expect("GET", base, 200) or []
    keys = sorted((b.get("routing_key"), str(b.get("arguments"))) for b in between)
    check(keys == [("rk", "{'x-match-me': 7}"), ("rk", "{}")], f"GET {base}: {between}")
    with_args = [b for b in between if b.get("arguments")]
    pk = with_args[0].get("properties_key") if with_args else None
    check(pk and pk.startswith("rk~"), f"properties_key of a binding with arguments: {pk!r}")

    # The lists: the vhost's (the default exchange's implicit binding too), per exchange, per
    # queue.
    listed = api.expect("GET", f"/api/bindings/{VQ}", 200) or []
    trip = {(b.get("source"), b.get("destination"), b.get("destination_type"),
             b.get("routing_key")) for b in listed}
    for t in (("", qn, "queue", qn), (x, qn, "queue", "rk"), (x, x2, "exchange", "to-x2")):
        check(t in trip, f"GET /api/bindings/{V} lacks {t}")
    check(any(b.get("vhost") == V and b.get("source") == x
              for b in api.expect("GET", "/api/bindings", 200) or []),
          "GET /api/bindings lists the new bindings")
    src = api.expect("GET", f"/api/exchanges/{VQ}/{q(x)}/bindings/source", 200) or []
    check(sorted(b.get("destination") for b in src) == sorted([qn, qn, x2]),
          f"bindings/source of {x}: {src}")
    dst = api.expect("GET", f"/api/exchanges/{VQ}/{q(x2)}/bindings/destination", 200) or []
    check([(b.get("source"), b.get("routing_key")) for b in dst] == [(x, "to-x2")],
          f"bindings/destination of {x2}: {dst}")
    check(api.expect("GET", f"/api/exchanges/{VQ}/{q(x)}/bindings/destination", 200) == [],
          f"bindings/destination of {x} is empty")
    qb = api.expect("GET", f"/api/queues/{VQ}/{q(qn)}/bindings", 200) or []
    check(sorted((b.get("source"), b.get("routing_key")) for b in qb) ==
          [("", qn), (x, "rk"), (x, "rk")], f"bindings of queue {qn}: {qb}")

    # An exchange in use: if-unused refuses.
    api.expect("DELETE", f"/api/exchanges/{VQ}/{q(x)}?if-unused=true", 400,
               bad(f"exchange '{x}' in vhost '{V}' in use"))

    # Publish: routed, and the message arrives over AMQP with its properties.
    props = {"content_type": "text/plain", "delivery_mode": 2, "headers": {"h": "v", "n": 5},
             "correlation_id": "c-1", "message_id": "m-1", "priority": 3}
    check(publish(api, x, "rk", "hello api", props=props) == {"routed": True}, "routed true")
    check(publish(api, x, "other", "x") == {"routed": False}, "another key: routed false")
    ch = conn.channel()
    m, p, body = ch.basic_get(queue=qn, auto_ack=True)
    check(m is not None and body == b"hello api", f"published message over AMQP: {body!r}")
    if m is not None:
        check(m.exchange == x and m.routing_key == "rk", f"exchange/key {m.exchange} {m.routing_key}")
        check(p.content_type == "text/plain" and p.delivery_mode == 2 and
              p.headers == {"h": "v", "n": 5} and p.correlation_id == "c-1" and
              p.message_id == "m-1" and p.priority == 3, f"properties over AMQP: {p}")
        m2, _, _ = ch.basic_get(queue=qn, auto_ack=True)
        check(m2 is None, "one binding-pair route delivers once (two bindings, same key)")
    raw = bytes(range(256))
    check(publish(api, x, "rk", base64.b64encode(raw).decode(), "base64") == {"routed": True},
          "base64 payload routed")
    m, _, body = ch.basic_get(queue=qn, auto_ack=True)
    check(body == raw, f"base64 payload arrives decoded: {body[:16]!r}...")
    # The default exchange (amq.default in URLs) routes by queue name.
    check(publish(api, "amq.default", qn, "via default") == {"routed": True},
          "publish to amq.default routed")
    m, _, body = ch.basic_get(queue=qn, auto_ack=True)
    check(body == b"via default", f"published to amq.default, got {body!r}")

    # DELETE by properties key, then the binding is gone (and routing with it).
    api.expect("DELETE", f"{base}/rk", 204, {})
    api.expect("GET", f"{base}/rk", 404, NOT_FOUND)
    if pk:
        api.expect("GET", f"{base}/{q(pk)}", 200, what="the binding with arguments")
        api.expect("DELETE", f"{base}/{q(pk)}", 204, {})
        api.expect("DELETE", f"{base}/{q(pk)}", 404, NOT_FOUND)
    check(api.expect("GET", base, 200) == [], f"GET {base}: not empty after the deletes")
    check(publish(api, x, "rk", "x") == {"routed": False}, "unbound again: routed false")
    api.expect("DELETE", f"/api/bindings/{VQ}/e/{q(x)}/e/{q(x2)}/to-x2", 204, {})
    api.expect("DELETE", f"/api/exchanges/{VQ}/{q(x)}?if-unused=true", 204, {})
    check(passive_exchange(conn, x) == 404, "deleted with if-unused: gone over AMQP")


def test_get(conn, api):
    """Last: reads messages out of a queue through the API (POST .../get)."""
    qn = PREFIX + "gq"
    path = f"/api/queues/{VQ}/{q(qn)}"
    api.expect("PUT", path, 201, json={"durable": False})
    ch = conn.channel()
    ch.basic_publish(exchange="", routing_key=qn, body=b"first message",
                     properties=pika.BasicProperties(headers={"k": "v"}, message_id="id-1"))
    ch.basic_publish(exchange="", routing_key=qn, body=b"second")
    queue_counts(api, qn, messages=2)

    got = api.expect("POST", f"{path}/get", 200, json={"count": 5, "ackmode": "ack_requeue_true",
                                                        "encoding": "auto", "truncate": 50000})
    check(isinstance(got, list) and len(got) == 2, f"get 5 of 2: {got}")
    if isinstance(got, list) and len(got) == 2:
        a, b = got
        check(a.get("payload") == "first message" and a.get("payload_encoding") == "string" and
              a.get("payload_bytes") == 13, f"first payload {a}")
        check(a.get("redelivered") is False and a.get("exchange") == "" and
              a.get("routing_key") == qn and a.get("message_count") == 1, f"first fields {a}")
        props = a.get("properties") or {}
        check(props.get("headers") == {"k": "v"} and props.get("message_id") == "id-1",
              f"first properties {props}")
        check(b.get("payload") == "second" and b.get("message_count") == 0, f"second {b}")
    # ack_requeue_true put them back, now redelivered, in their order.
    got = api.expect("POST", f"{path}/get", 200, json={"count": 1, "ackmode": "ack_requeue_true",
                                                        "encoding": "base64"})
    if check(isinstance(got, list) and len(got) == 1, f"get 1: {got}"):
        g = got[0]
        check(g.get("redelivered") is True, f"requeued message not redelivered: {g}")
        check(g.get("payload_encoding") == "base64" and
              g.get("payload") == base64.b64encode(b"first message").decode(),
              f"encoding base64: {g}")
    # truncate: the first bytes, payload_bytes the whole size.
    got = api.expect("POST", f"{path}/get", 200, json={"count": 1, "ackmode": "ack_requeue_true",
                                                        "encoding": "auto", "truncate": 5})
    if check(isinstance(got, list) and len(got) == 1, f"get with truncate: {got}"):
        check(got[0].get("payload") == "first" and got[0].get("payload_bytes") == 13,
              f"truncate 5: {got[0]}")
    queue_counts(api, qn, messages=2, messages_unacknowledged=0)
    m, _, body = ch.basic_get(queue=qn, auto_ack=False)
    check(m is not None and m.redelivered and body == b"first message",
          f"over AMQP after get with ack_requeue_true: {m} {body!r}")
    if m is not None:
        ch.basic_nack(m.delivery_tag, requeue=True)

    # ack_requeue_false: taken away.
    got = api.expect("POST", f"{path}/get", 200, json={"count": 1, "ackmode": "ack_requeue_false",
                                                        "encoding": "auto"})
    check(isinstance(got, list) and len(got) == 1 and got[0].get("payload") == "first message",
          f"get with ack_requeue_false: {got}")
    queue_counts(api, qn, messages=1)
    m, _, body = ch.basic_get(queue=qn, auto_ack=True)
    check(body == b"second", f"over AMQP after ack_requeue_false: {body!r}")
    check(ch.basic_get(queue=qn, auto_ack=True)[0] is None, "the queue is empty")

    # Binary payloads come back as base64 with encoding auto.
    ch.basic_publish(exchange="", routing_key=qn, body=b"\xff\xfe\x00bin")
    queue_counts(api, qn, messages=1)
    got = api.expect("POST", f"{path}/get", 200, json={"count": 1, "ackmode": "ack_requeue_false",
                                                        "encoding": "auto"})
    check(isinstance(got, list) and len(got) == 1 and
          got[0].get("payload_encoding") == "base64" and
          base64.b64decode(got[0].get("payload", "")) == b"\xff\xfe\x00bin",
          f"binary payload with encoding auto: {got}")
    check(api.expect("POST", f"{path}/get", 200, json={"count": 1, "ackmode": "ack_requeue_false",
                                                        "encoding": "auto"}) == [],
          "get from an empty queue: []")
    # 404 (RabbitMQ's body here: not_found, "NOT_FOUND - no queue 'N' in vhost 'V'").
    api.expect("POST", f"/api/queues/{VQ}/{q(PREFIX + 'none')}/get", 404,
               json={"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})


def main(broker, api):
    api.expect("PUT", f"/api/vhosts/{VQ}", 201, {})
    conn = amqp(broker, vhost=V)
    try:
        test_exchanges(conn, api)
        test_queues(conn, api)
        test_bindings_and_publish(conn, api)
        test_get(conn, api)
    finally:
        try:
            conn.close()
        except pika.exceptions.AMQPError:  # the broker is gone: reported already
            pass


def cleanup(api):
    api.delete(f"/api/vhosts/{VQ}")


if __name__ == "__main__":
    run(main, cleanup)
