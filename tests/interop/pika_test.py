#!/usr/bin/python3
"""Interop with python3-pika (Debian's, run by /usr/bin/python3): declare, publish with every
property, consume with manual acks, basic_get, a channel error. Starts its own warrend ($WARREND,
free port, temp data dir) unless WARREN_TEST_HOST/WARREN_TEST_PORT name a broker to use.
Exit 0 pass, 1 fail, 77 skip (no pika, or nothing to test against)."""
import decimal
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

try:
    import pika
    import pika.exceptions
except ImportError:
    print("SKIP: python3-pika is not installed (apt-get install python3-pika)")
    sys.exit(77)

N = 500


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def expect_channel_error(action, code, text, what):
    """action() must make the broker close its channel with exactly code and text; what says
    what went wrong when it returns instead."""
    try:
        action()
        fail(what)
    except pika.exceptions.ChannelClosedByBroker as e:
        check(e.reply_code == code, f"reply code {e.reply_code}")
        check(e.reply_text == text, f"reply text {e.reply_text!r}")


def check_channel_works(ch, qname, body, what):
    """ch is still open and carries a message to qname and back (what: the failure message)."""
    check(ch.is_open, "the other channel was closed too")
    ch.basic_publish(exchange="", routing_key=qname, body=body)
    _, _, got = ch.basic_get(queue=qname, auto_ack=True)
    check(got == body, what)


class Broker:
    """warrend on a free port with a temp data dir (its name starting with prefix), run with
    --log-level log_level and extra_args; or an external broker (which gets none of them)."""

    def __init__(self, extra_args=(), log_level="warn", prefix="warren-pika-"):
        self.proc = None
        self.data_dir = None
        host, port = os.environ.get("WARREN_TEST_HOST"), os.environ.get("WARREN_TEST_PORT")
        if host and port:
            self.host, self.port = host, int(port)
            print(f"using external broker {host}:{port}")
            return
        exe = os.environ.get("WARREND")
        if not exe or not os.access(exe, os.X_OK):
            print("SKIP: WARREND is not set and WARREN_TEST_HOST/PORT are not set")
            sys.exit(77)
        self.host = "127.0.0.1"
        self.data_dir = tempfile.mkdtemp(prefix=prefix)
        for _ in range(3):
            self.port = free_port()
            self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1",
                                          "--data-dir", self.data_dir, "--log-level", log_level,
                                          *extra_args])
            if self.wait_listening():
                extra = f" with {' '.join(extra_args)}" if extra_args else ""
                print(f"started {exe} on 127.0.0.1:{self.port} (pid {self.proc.pid}){extra}")
                return
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
                self.stop()
                fail("warrend did not listen within 10 s")
        self.stop()
        fail("warrend exited before listening (3 attempts)")

    def wait_listening(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self):
        """SIGTERM, 5 s, SIGKILL. Returns False when warrend had died or exited badly."""
        ok = True
        if self.proc:
            if self.proc.poll() is not None:
                print(f"warrend died during the test (status {self.proc.returncode})",
                      file=sys.stderr)
                ok = False
            else:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    rc = self.proc.wait(5)
                    ok = rc in (0, -signal.SIGTERM)
                    if not ok:
                        print(f"warrend exited with {rc} on SIGTERM", file=sys.stderr)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    print("warrend ignored SIGTERM for 5 s", file=sys.stderr)
                    ok = False
            self.proc = None
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
        return ok


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def headers_for(i):
    return {
        "str": f"value {i}",
        "int": i,
        "neg": -i,
        "big": 2**40 + i,
        "bool": i % 2 == 0,
        "none": None,
        "decimal": decimal.Decimal("3.14"),
        "list": [1, "two", [True, None], {"k": "v"}],
        "nested": {"level": 1, "deeper": {"level": 2, "list": [i, -i]}},
        "bytes": b"\x00\x01\xff",
    }


def props_for(i):
    return pika.BasicProperties(
        content_type="text/plain",
        content_encoding="utf-8",
        headers=headers_for(i),
        delivery_mode=2 if i % 2 else 1,
        priority=i % 10,
        correlation_id=f"corr-{i}",
        reply_to=f"reply-{i}",
        expiration="3600000",
        message_id=f"msg-{i}",
        timestamp=1700000000 + i,
        type="pika-test",
        user_id="guest",
        app_id="warren-interop",
    )


def body_for(i):
    size = [0, 1, 100, 131064, 131065, 300000][i % 6] if i % 50 == 0 else (i * 37) % 1000
    return bytes((i + k) % 256 for k in range(size))


FIELDS = ("content_type", "content_encoding", "headers", "delivery_mode", "priority",
          "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
          "user_id", "app_id")


def check_props(i, got):
    want = props_for(i)
    for f in FIELDS:
        w, g = getattr(want, f), getattr(got, f)
        if f == "headers":
            # pika decodes 'x' (bytes) as bytes and strings as str; compare structurally.
            check(g == w, f"message {i}: headers {g!r} != {w!r}")
        else:
            check(g == w, f"message {i}: {f} {g!r} != {w!r}")


def run_test(run, make_broker=Broker):
    """Start a broker (make_broker()), call run(broker) and stop the broker: the test passes
    (prints PASS) when run returns and warrend then shuts down cleanly. An exception fails the
    test, with the broker stopped first."""
    broker = make_broker()
    try:
        run(broker)
    except SystemExit:
        broker.stop()
        raise
    except Exception as e:  # an unexpected exception is a failure, with the broker stopped
        broker.stop()
        fail(f"{type(e).__name__}: {e}")
    check(broker.stop(), "warrend did not shut down cleanly")
    print("PASS")


def connection_params(broker):
    """guest/guest on broker, one connection attempt, 30 s before a blocked connection fails."""
    return pika.ConnectionParameters(host=broker.host, port=broker.port,
                                     credentials=pika.PlainCredentials("guest", "guest"),
                                     connection_attempts=1, blocked_connection_timeout=30)


def main():
    run_test(run)


def run(broker):
    params = connection_params(broker)
    conn = pika.BlockingConnection(params)
    props = conn._impl.server_properties
    check(isinstance(props.get("product"), (str, bytes)), f"server product {props!r}")
    caps = props.get("capabilities", {})
    for cap in ("publisher_confirms", "basic.nack", "consumer_cancel_notify",
                "authentication_failure_close", "per_consumer_qos"):
        check(caps.get(cap) is True, f"capability {cap} = {caps.get(cap)!r}")
    ch = conn.channel()

    qname = f"pika-interop-{os.getpid()}"
    ok = ch.queue_declare(queue=qname, exclusive=True)
    check(ok.method.queue == qname, f"declare-ok queue {ok.method.queue!r}")
    check(ok.method.message_count == 0 and ok.method.consumer_count == 0, "declare-ok counts")
    gen = ch.queue_declare(queue="", exclusive=True).method.queue
    check(gen.startswith("amq.gen-"), f"server-named queue {gen!r}")

    for i in range(N):
        ch.basic_publish(exchange="", routing_key=qname, body=body_for(i), properties=props_for(i))

    got = []

    def on_message(chan, method, properties, body):
        i = len(got)
        check(method.routing_key == qname, f"routing key {method.routing_key!r}")
        check(method.exchange == "", f"exchange {method.exchange!r}")
        check(method.delivery_tag == i + 1, f"message {i}: delivery tag {method.delivery_tag}")
        check(not method.redelivered, f"message {i}: redelivered")
        check(body == body_for(i), f"message {i}: body of {len(body)} octets differs "
                                   f"(want {len(body_for(i))})")
        check_props(i, properties)
        chan.basic_ack(method.delivery_tag)
        got.append(i)

    tag = ch.basic_consume(queue=qname, on_message_callback=on_message, auto_ack=False)
    check(bool(tag), "no consumer tag")  # pika picks the tag itself (ctag1.<hex>)
    deadline = time.monotonic() + 30
    while len(got) < N and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    check(len(got) == N, f"consumed {len(got)} of {N} messages")
    conn.process_data_events(time_limit=0.3)
    check(len(got) == N, f"consumed {len(got)} messages, more than the {N} published")
    ch.basic_cancel(tag)
    print(f"consumed and acked {N} messages in order with identical bodies and properties")

    # basic_get: empty, then three messages with message_count counting down, then empty.
    method, _, _ = ch.basic_get(queue=qname, auto_ack=False)
    check(method is None, "basic_get on an empty queue returned a message")
    for k in range(3):
        ch.basic_publish(exchange="", routing_key=qname, body=f"get {k}".encode(),
                         properties=props_for(k))
    for k in range(3):
        method, properties, body = ch.basic_get(queue=qname, auto_ack=False)
        check(method is not None, f"basic_get {k} returned nothing")
        check(method.message_count == 2 - k, f"get-ok message_count {method.message_count}")
        check(body == f"get {k}".encode(), f"basic_get body {body!r}")
        check_props(k, properties)
        ch.basic_ack(method.delivery_tag)
    method, _, _ = ch.basic_get(queue=qname, auto_ack=True)
    check(method is None, "basic_get after draining returned a message")
    print("basic_get: empty, 3 messages with message_count 2..0, empty")

    # A channel error closes only that channel, with RabbitMQ's reply.
    missing = f"pika-missing-{os.getpid()}"
    bad = conn.channel()
    expect_channel_error(lambda: bad.basic_get(queue=missing), 404,
                         f"NOT_FOUND - no queue '{missing}' in vhost '/'",
                         "basic_get on a missing queue did not close the channel")
    check_channel_works(ch, qname, b"still here", "the other channel stopped working")
    print("404 on one channel, the other channel still works")

    ch.close()
    conn.close()

    # Wrong password: pika raises ProbableAuthenticationError with RabbitMQ's 403 text.
    try:
        pika.BlockingConnection(pika.ConnectionParameters(
            host=broker.host, port=broker.port, connection_attempts=1,
            credentials=pika.PlainCredentials("guest", "wrong")))
        fail("login with a wrong password succeeded")
    except pika.exceptions.ProbableAuthenticationError as e:
        check("ACCESS_REFUSED" in str(e), f"auth error {e!r}")
        print("wrong password: " + str(e))


if __name__ == "__main__":
    main()
