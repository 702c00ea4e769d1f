#!/usr/bin/python3
"""Interop with python3-pika against definitions imported from a RabbitMQ 3.10 export
(tests/fixtures/rabbitmq-export.json, issue 10): pika logs in as bob (a SHA-512 hash) and carol
(an MD5 hash), not with a wrong password; each publishes and consumes with manual acks in the vhost
its permissions allow (bob through the priority queue bob-inbox as well), and gets 403
ACCESS_REFUSED with the exact text (pika.exceptions.ChannelClosedByBroker) on a queue outside its
permissions, and 530 on a vhost it has no permissions in. Starts warrend like pika_test.py, with
--load-definitions; with WARREN_TEST_HOST/WARREN_TEST_PORT it uses that broker, into which the
fixture must have been imported (rabbitmqctl import_definitions): RabbitMQ 3.10.8 passes it,
with its 3.10 wording (no permission word before "access to queue").
Exit 0 pass, 1 fail, 77 skip."""
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# pika_test exits 77 when pika is missing
from pika_test import Broker, check, expect_channel_error, fail, run_test  # noqa: E402

import pika  # noqa: E402
import pika.exceptions  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures",
                       "rabbitmq-export.json")
N = 200
REFUSED_PLAIN = ("ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
                 "For details see the broker logfile.")


def defs_broker():
    """Broker (pika_test.py) with --load-definitions FIXTURE on its fresh data dir."""
    return Broker(["--load-definitions", FIXTURE], log_level="error", prefix="warren-pika-defs-")


def external():
    return bool(os.environ.get("WARREN_TEST_HOST") and os.environ.get("WARREN_TEST_PORT"))


def denied(perm, kind, name, vhost, user):
    """Warren's refusal text, worded as RabbitMQ 3.11+; 3.10 leaves the permission word out."""
    word = "" if external() else perm + " "
    return (f"ACCESS_REFUSED - {word}access to {kind} '{name}' in vhost '{vhost}' refused for "
            f"user '{user}'")


def params(broker, user, password, vhost):
    return pika.ConnectionParameters(host=broker.host, port=broker.port, virtual_host=vhost,
                                     credentials=pika.PlainCredentials(user, password),
                                     connection_attempts=1, blocked_connection_timeout=30)


def expect_login_refused(broker, user, password, vhost):
    try:
        pika.BlockingConnection(params(broker, user, password, vhost)).close()
        fail(f"{user} logged in with a wrong password")
    except pika.exceptions.ProbableAuthenticationError as e:
        check(REFUSED_PLAIN in str(e), f"{user}: login refused with {e!r}")


def expect_vhost_refused(broker, user, password, vhost):
    try:
        pika.BlockingConnection(params(broker, user, password, vhost)).close()
        fail(f"{user} opened vhost {vhost} without permissions there")
    except pika.exceptions.ProbableAccessDeniedError as e:
        want = f"(530) \"NOT_ALLOWED - access to vhost '{vhost}' refused for user '{user}'\""
        check(want in str(e), f"{user} on {vhost}: {e!r}, want {want}")


def expect_queue_refused(conn, action, perm, queue, vhost, user, what):
    """action(ch) on a new channel of conn must get 403 ACCESS_REFUSED: perm access to queue in
    vhost refused for user (what says what went wrong when it does not)."""
    bad = conn.channel()
    expect_channel_error(lambda: action(bad), 403, denied(perm, "queue", queue, vhost, user), what)


def publish_consume(conn, qname, what):
    """N messages to qname through the default exchange, consumed with manual acks, exactly."""
    ch = conn.channel()
    ch.queue_declare(queue=qname, exclusive=True)
    for i in range(N):
        ch.basic_publish(exchange="", routing_key=qname, body=f"{what}-{i}".encode(),
                         properties=pika.BasicProperties(delivery_mode=2, message_id=str(i)))
    got = []

    def on_message(chan, method, properties, body):
        check(properties.message_id == str(len(got)), f"{what}: message id "
                                                      f"{properties.message_id}")
        got.append(body.decode())
        chan.basic_ack(method.delivery_tag)

    ch.basic_qos(prefetch_count=20)
    tag = ch.basic_consume(queue=qname, on_message_callback=on_message, auto_ack=False)
    deadline = time.monotonic() + 20
    while len(got) < N and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    conn.process_data_events(time_limit=0.2)
    check(got == [f"{what}-{i}" for i in range(N)], f"{what}: consumed {len(got)} of {N} in order")
    ch.basic_cancel(tag)
    ok = ch.queue_declare(queue=qname, passive=True)
    check(ok.method.message_count == 0, f"{what}: {ok.method.message_count} left after acks")
    ch.queue_delete(queue=qname)
    return ch


def run_bob(broker):
    """bob (sha512) in tenant-b: configure and read ^bob-.*, write ^(bob-.*|amq\\.default)$."""
    expect_login_refused(broker, "bob", "bob-sha512-pw ", "tenant-b")
    conn = pika.BlockingConnection(params(broker, "bob", "bob-sha512-pw", "tenant-b"))
    ch = publish_consume(conn, f"bob-pika-{os.getpid()}", "bob")
    # The imported priority queue (x-max-priority 5): highest priority first.
    for p in (1, 5, 3):
        ch.basic_publish(exchange="", routing_key="bob-inbox", body=f"p{p}".encode(),
                         properties=pika.BasicProperties(priority=p))
    deadline = time.monotonic() + 5
    while ch.queue_declare(queue="bob-inbox", passive=True).method.message_count < 3:
        check(time.monotonic() < deadline, "bob-inbox did not get 3 messages")
        time.sleep(0.02)
    bodies = []
    for _ in range(3):
        method, _, body = ch.basic_get(queue="bob-inbox", auto_ack=False)
        check(method is not None, "bob-inbox ran empty")
        bodies.append(body.decode())
        ch.basic_ack(method.delivery_tag)
    check(bodies == ["p5", "p3", "p1"], f"bob-inbox gave {bodies}")
    print(f"bob (sha512): {N} messages published and consumed in tenant-b; bob-inbox by priority")

    expect_queue_refused(conn, lambda c: c.basic_consume(queue="shared",
                                                         on_message_callback=lambda *a: None),
                         "read", "shared", "tenant-b", "bob", "bob consumed from 'shared'")
    expect_queue_refused(conn, lambda c: c.basic_get(queue="shared"), "read", "shared",
                         "tenant-b", "bob", "bob got from 'shared'")
    expect_queue_refused(conn, lambda c: c.queue_declare(queue="other"), "configure", "other",
                         "tenant-b", "bob", "bob declared 'other'")
    check(ch.is_open, "bob's first channel was closed too")
    print("bob: 403 ACCESS_REFUSED on queues outside ^bob-.*; his other channel still open")
    conn.close()
    expect_vhost_refused(broker, "bob", "bob-sha512-pw", "tenant-a")


def run_carol(broker):
    """carol (md5) in tenant-a: configure ^carol-.*, write .*, read ^(carol-.*|orders)$."""
    expect_login_refused(broker, "carol", "carol-md5-PW", "tenant-a")
    conn = pika.BlockingConnection(params(broker, "carol", "carol-md5-pw", "tenant-a"))
    publish_consume(conn, f"carol-pika-{os.getpid()}", "carol")
    print(f"carol (md5): {N} messages published and consumed in tenant-a")
    expect_queue_refused(conn, lambda c: c.basic_get(queue="audit"), "read", "audit",
                         "tenant-a", "carol", "carol got from 'audit'")
    expect_queue_refused(conn, lambda c: c.queue_delete(queue="orders"), "configure", "orders",
                         "tenant-a", "carol", "carol deleted 'orders'")
    check(conn.channel().queue_declare(queue="orders", passive=True).method.queue == "orders",
          "'orders' is gone")
    print("carol: 403 ACCESS_REFUSED reading 'audit' and deleting 'orders'")
    conn.close()
    expect_vhost_refused(broker, "carol", "carol-md5-pw", "tenant-b")


def run(broker):
    run_bob(broker)
    run_carol(broker)


def main():
    run_test(run, defs_broker)


if __name__ == "__main__":
    main()
