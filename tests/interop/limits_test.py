#!/usr/bin/python3
"""Limits (issue 12) with RabbitMQ's keys and refusals, against a real warrend, with python3-pika
and a raw socket: connection_max (530 at connection.open), consumer_max_per_channel (530 on the
basic.consume past it), max_message_size (406 on the content header, before any body byte: a
header announcing 1 GiB is refused at once and nothing of it is buffered), per-user
max-connections and max-channels set through the management API (530 with RabbitMQ's texts),
and after each refusal the broker keeps serving everyone else.
Exit 0 pass, 1 fail, 77 skip (no pika/requests, WARREND not set)."""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

try:
    import pika
    import pika.exceptions
    import requests
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (apt-get install python3-pika python3-requests)")
    sys.exit(77)

failures = []


def check(cond, msg):
    if not cond:
        print("FAIL: " + msg, file=sys.stderr)
        failures.append(msg)
    return bool(cond)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Warrend:
    def __init__(self, d, lines):
        self.port, self.mport = free_port(), free_port()
        conf = os.path.join(d, "warren.conf")
        with open(conf, "w") as f:
            f.write("\n".join([f"listeners.tcp.default = 127.0.0.1:{self.port}",
                               f"management.tcp.port = {self.mport}",
                               "management.tcp.ip = 127.0.0.1", "prometheus.tcp.port = none",
                               f"data_dir = {d}/data", "log.console.level = warning"] + lines)
                    + "\n")
        self.proc = subprocess.Popen([os.environ["WARREND"], "--config", conf])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                socket.create_connection(("127.0.0.1", self.mport), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise SystemExit("FAIL: warrend did not start")

    def connect(self, user="guest", password="guest"):
        return pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", self.port, credentials=pika.PlainCredentials(user, password),
            connection_attempts=1, socket_timeout=5))

    def api(self, method, path, **kw):
        return requests.request(method, f"http://127.0.0.1:{self.mport}{path}",
                                auth=("guest", "guest"), timeout=10, **kw)

    def stop(self):
        if self.proc.poll() is not None:
            print(f"warrend died (status {self.proc.returncode})", file=sys.stderr)
            return False
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10) in (0, -signal.SIGTERM)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return False


def refused_with(fn, code, text):
    """fn() must fail with a connection.close (code, text)."""
    try:
        fn()
    except pika.exceptions.ConnectionClosedByBroker as e:
        return check(e.reply_code == code and e.reply_text == text,
                     f"refused with {e.reply_code} {e.reply_text!r}, wanted {code} {text!r}")
    except pika.exceptions.AMQPError as e:
        # pika reports a refused connection.open as ProbableAccessDeniedError with the close
        # in words: "ConnectionClosedByBroker: (530) 'text'".
        said = f"ConnectionClosedByBroker: ({code}) {text!r}"
        return check(isinstance(e, pika.exceptions.ProbableAccessDeniedError) and
                     e.args == (said,), f"wanted {said}, got {type(e).__name__} {e.args}")
    return check(False, f"not refused; wanted {code} {text!r}")


def works(w, what):
    c = w.connect()
    ch = c.channel()
    ch.queue_declare("limits-probe", auto_delete=True)
    ch.basic_publish("", "limits-probe", b"probe")
    ok = ch.basic_get("limits-probe", auto_ack=True)[2] == b"probe"
    c.close()
    check(ok, f"the broker still serves others after {what}")


def frame(ftype, ch, payload):
    return struct.pack(">BHI", ftype, ch, len(payload)) + payload + b"\xce"


def method(ch, cls, mid, args=b""):
    return frame(1, ch, struct.pack(">HH", cls, mid) + args)


def shortstr(s):
    return bytes([len(s)]) + s


def longstr(s):
    return struct.pack(">I", len(s)) + s


def read_method(sock, want, deadline):
    """Reads frames until a method (class, id) == want; returns its arguments, or None."""
    buf = b""
    while time.monotonic() < deadline:
        while len(buf) >= 7:
            ftype, _ch, size = struct.unpack(">BHI", buf[:7])
            if len(buf) < 8 + size:
                break
            payload, buf = buf[7:7 + size], buf[8 + size:]
            if ftype == 1 and struct.unpack(">HH", payload[:4]) == want:
                return payload[4:]
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got = sock.recv(65536)
        except socket.timeout:
            return None
        if not got:
            return None
        buf += got
    return None


def oversized_header(w):
    """A content header announcing 1 GiB (max_message_size is 1000): channel.close 406 at
    once, without any body sent; the connection stays usable."""
    s = socket.create_connection(("127.0.0.1", w.port), timeout=5)
    deadline = time.monotonic() + 5
    s.sendall(b"AMQP\x00\x00\x09\x01")
    read_method(s, (10, 10), deadline)
    s.sendall(method(0, 10, 11, struct.pack(">I", 0) + shortstr(b"PLAIN") +
                     longstr(b"\x00guest\x00guest") + shortstr(b"en_US")))
    read_method(s, (10, 30), deadline)
    s.sendall(method(0, 10, 31, struct.pack(">HIH", 2047, 131072, 0)))
    s.sendall(method(0, 10, 40, shortstr(b"/") + shortstr(b"") + b"\x00"))
    read_method(s, (10, 41), deadline)
    s.sendall(method(1, 20, 10, shortstr(b"")))
    read_method(s, (20, 11), deadline)
    t0 = time.monotonic()
    s.sendall(method(1, 60, 40, struct.pack(">H", 0) + shortstr(b"") + shortstr(b"x") + b"\x00"))
    s.sendall(frame(2, 1, struct.pack(">HHQH", 60, 0, 1 << 30, 0)))
    args = read_method(s, (20, 40), time.monotonic() + 5)
    waited = time.monotonic() - t0
    if check(args is not None, "a 1 GiB content header gets channel.close"):
        code = struct.unpack(">H", args[:2])[0]
        text = args[3:3 + args[2]].decode()
        check(code == 406 and text == "PRECONDITION_FAILED - message size 1073741824 is larger "
              "than configured max size 1000", f"oversized header: {code} {text!r}")
        check(waited < 2, f"refused at once ({waited:.2f} s), without waiting for a body")
    s.sendall(method(1, 20, 41))  # close-ok; the connection goes on
    s.sendall(method(2, 20, 10, shortstr(b"")))
    check(read_method(s, (20, 11), time.monotonic() + 5) is not None,
          "the connection opens another channel after the refusal")
    s.close()


def main():
    if not os.environ.get("WARREND"):
        print("SKIP: WARREND not set")
        return 77
    d = tempfile.mkdtemp(prefix="warren-limits-")
    w = Warrend(d, ["connection_max = 3", "consumer_max_per_channel = 2",
                    "max_message_size = 1000"])
    try:
        # connection_max: the fourth connection is refused; one closed makes room.
        conns = [w.connect() for _ in range(3)]
        refused_with(w.connect, 530, "NOT_ALLOWED - connection refused: node connection limit "
                     "(3) is reached")
        conns.pop().close()
        time.sleep(0.1)
        conns.append(w.connect())
        check(all(c.is_open for c in conns), "three connections stay open")
        for c in conns[1:]:
            c.close()
        conn = conns[0]

        # consumer_max_per_channel = 2.
        ch = conn.channel()
        ch.queue_declare("limits-q", auto_delete=False)
        ch.basic_consume("limits-q", lambda *a: None, consumer_tag="c1")
        ch.basic_consume("limits-q", lambda *a: None, consumer_tag="c2")
        refused_with(lambda: ch.basic_consume("limits-q", lambda *a: None, consumer_tag="c3"),
                     530, "NOT_ALLOWED - reached maximum (2) of consumers per channel")
        works(w, "the consumer limit")

        # max_message_size = 1000: 1000 bytes pass, 1001 close the channel with 406.
        conn = w.connect()
        ch = conn.channel()
        ch.queue_declare("limits-q")
        ch.basic_publish("", "limits-q", b"x" * 1000)
        try:
            ch.basic_publish("", "limits-q", b"x" * 1001)
            ch.queue_declare("limits-q", passive=True)  # a round trip to see the close
            check(False, "a 1001-byte message is refused")
        except pika.exceptions.ChannelClosedByBroker as e:
            check(e.reply_code == 406 and e.reply_text == "PRECONDITION_FAILED - message size "
                  "1001 is larger than configured max size 1000",
                  f"1001 bytes: {e.reply_code} {e.reply_text!r}")
        ch = conn.channel()
        m = ch.basic_get("limits-q", auto_ack=True)
        check(m[2] == b"x" * 1000, "the 1000-byte message was queued")
        conn.close()
        oversized_header(w)

        # Per-user limits through the API.
        r = w.api("PUT", "/api/users/lim", json={"password": "lim", "tags": ""})
        check(r.status_code == 201, f"PUT user lim: {r.status_code}")
        w.api("PUT", "/api/permissions/%2F/lim", json={"configure": ".*", "write": ".*",
                                                        "read": ".*"})
        r = w.api("PUT", "/api/user-limits/lim/max-connections", json={"value": 1})
        check(r.status_code == 204, f"PUT user-limits max-connections: {r.status_code}")
        r = w.api("PUT", "/api/user-limits/lim/max-channels", json={"value": 2})
        check(r.status_code == 204, f"PUT user-limits max-channels: {r.status_code}")
        c1 = w.connect("lim", "lim")
        refused_with(lambda: w.connect("lim", "lim"), 530, "NOT_ALLOWED - connection refused "
                     "for user 'lim': user connection limit (1) is reached")
        c1.channel()
        c1.channel()
        refused_with(c1.channel, 530, "NOT_ALLOWED - number of channels opened for user 'lim' "
                     "has reached the maximum allowed user limit of 2")
        works(w, "the user limits")
        r = w.api("DELETE", "/api/user-limits/lim/max-connections")
        check(r.status_code == 204, f"DELETE user-limits: {r.status_code}")
        a, b = w.connect("lim", "lim"), w.connect("lim", "lim")
        check(a.is_open and b.is_open, "no connection limit once it is cleared")
        a.close()
        b.close()
    finally:
        check(w.stop(), "warrend stopped cleanly")
        shutil.rmtree(d, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("limits: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
