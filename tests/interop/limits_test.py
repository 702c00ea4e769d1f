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
import struct
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
try:
    import pika
    import pika.exceptions
    from conf_broker import (ConfBroker, check, finish, frame, handshake, method, read_method,
                             read_methods, shortstr)
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (apt-get install python3-pika python3-requests)")
    sys.exit(77)


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


def oversized_header(w):
    """A content header announcing 1 GiB (max_message_size is 1000): channel.close 406 at
    once, without any body sent; the connection stays usable."""
    s = handshake(w.port, "open")
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


def oversized_frame_while_held(w):
    """A frame header announcing 4 GiB right behind a durable queue.declare, whose answer waits
    for its commit (the connection is held, its input not parsed meanwhile): the broker must not
    make room for that frame (it did: found by fuzz_conn), and refuses it with 501 once parsed."""
    def vm_peak_mib():
        with open(f"/proc/{w.proc.pid}/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmPeak:")) / 1024

    before = vm_peak_mib()
    s = handshake(w.port, "open")
    declare = method(1, 50, 10, struct.pack(">H", 0) + shortstr(b"limits-held") + b"\x02" +
                     struct.pack(">I", 0))  # durable
    s.sendall(declare + struct.pack(">BHI", 1, 1, 0xFFFFFFF0) + b"\x00" * 64)
    got = read_methods(s, time.monotonic() + 8)
    check([m[:2] for m in got] == [(50, 11), (10, 50)] and
          struct.unpack(">H", got[1][2][:2])[0] == 501,
          f"declare-ok, then the 4 GiB frame refused with 501 FRAME_ERROR: {got}")
    grown = vm_peak_mib() - before
    s.close()
    check(grown < 1024, f"no room was made for the 4 GiB frame: the address space grew by "
          f"{grown:.0f} MiB")


def main():
    if not os.environ.get("WARREND"):
        print("SKIP: WARREND not set")
        return 77
    d = tempfile.mkdtemp(prefix="warren-limits-")
    w = ConfBroker(d, ["connection_max = 3", "consumer_max_per_channel = 2",
                       "max_message_size = 1000"], log_level="warning")
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
        oversized_frame_while_held(w)

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
    return finish("limits")


if __name__ == "__main__":
    sys.exit(main())
