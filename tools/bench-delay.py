#!/usr/bin/python3
"""tools/bench-delay.py — the measuring client of tools/bench-delay.sh (docs/benchmarks.md,
"Delayed delivery"). Raw AMQP over sockets (pre-encoded frames: pika could not keep up), so
that the client is not what is measured:
  - a publisher declares a durable x-delayed-message exchange (x-delayed-type direct) bound to
    a durable queue and publishes N persistent messages under confirms (at most WINDOW
    unconfirmed), message i due at T0 + LEAD + i / RATE: x-delay = that due time minus the
    time it is encoded, so the broker's due time is no earlier than the one in the body;
  - a consumer (no-ack) on the queue reads each body (the due time, ms) and records its
    lateness = arrival - due (an upper bound: it includes the time from encoding to the
    broker's receipt, kept short by the confirm window);
  - warrend's RssAnon (/proc/PID/status) is sampled every 0.5 s.
With a sixth argument "transient": non-durable exchange and queue, delivery_mode 1 (they wait
in memory only while among the soonest, and in storage, marked transient, past that).
Prints one JSON object. Usage: bench-delay.py PORT PID N RATE LEAD_S [transient]"""
import json
import os
import socket
import struct
import sys
import threading
import time

WINDOW = 300


def frame(t, ch, payload):
    return struct.pack(">BHI", t, ch, len(payload)) + payload + b"\xce"


def method(ch, cls, mid, args=b""):
    return frame(1, ch, struct.pack(">HH", cls, mid) + args)


def ss(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("B", len(b)) + b


def table(d):
    out = b""
    for k, (t, v) in d.items():
        out += ss(k) + t.encode()
        out += struct.pack(">q", v) if t == "l" else struct.pack(">I", len(v)) + v
    return struct.pack(">I", len(out)) + out


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.s.sendall(b"AMQP\x00\x00\x09\x01")
        self.wait(10, 10)
        self.s.sendall(method(0, 10, 11, table({}) + ss("PLAIN") +
                              struct.pack(">I", 12) + b"\x00guest\x00guest" + ss("en_US")))
        self.wait(10, 30)
        self.s.sendall(method(0, 10, 31, struct.pack(">HIH", 16, 131072, 0)))
        self.s.sendall(method(0, 10, 40, ss("/") + ss("") + b"\x00"))
        self.wait(10, 41)
        self.s.sendall(method(1, 20, 10, ss("")))
        self.wait(20, 11)

    def frames(self):
        """Yields (type, payload) for every complete frame received (blocking). Parses at an
        offset: slicing the buffer per frame would copy it per frame."""
        while True:
            buf, off = self.buf, 0
            while len(buf) - off >= 8:
                t, _ch, size = struct.unpack_from(">BHI", buf, off)
                if len(buf) - off < 8 + size:
                    break
                yield t, buf[off + 7:off + 7 + size]
                off += 8 + size
            got = self.s.recv(1 << 20)
            if not got:
                return
            self.buf = buf[off:] + got

    def wait(self, cls, mid):
        for t, p in self.frames():
            if t == 1 and struct.unpack(">HH", p[:4]) == (cls, mid):
                return p[4:]
            if t == 1 and struct.unpack(">HH", p[:4]) in ((10, 50), (20, 40)):
                raise SystemExit(f"closed by the broker: {p!r}")
        raise SystemExit("connection lost")


def rss_anon(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    port, pid, n, rate, lead = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                int(sys.argv[4]), float(sys.argv[5]))
    transient = sys.argv[6:7] == ["transient"]
    durable = b"\x00" if transient else b"\x02"
    mode = b"\x01" if transient else b"\x02"
    p = Conn(port)
    p.s.sendall(method(1, 40, 10, struct.pack(">H", 0) + ss("bdx") + ss("x-delayed-message") +
                       durable + table({"x-delayed-type": ("S", b"direct")})))
    p.wait(40, 11)
    p.s.sendall(method(1, 50, 10, struct.pack(">H", 0) + ss("bdq") + durable + table({})))
    p.wait(50, 11)
    p.s.sendall(method(1, 50, 20, struct.pack(">H", 0) + ss("bdq") + ss("bdx") + ss("k") +
                       b"\x00" + table({})))
    p.wait(50, 21)
    p.s.sendall(method(1, 85, 10, b"\x00"))
    p.wait(85, 11)

    c = Conn(port)
    c.s.sendall(method(1, 60, 20, struct.pack(">H", 0) + ss("bdq") + ss("") + b"\x02" +
                       table({})))
    c.wait(60, 21)
    late, slow = [], []
    done = threading.Event()

    def consume():
        for t, pl in c.frames():
            if t == 3:
                due = struct.unpack(">Q", pl[:8])[0]
                late.append(time.time() * 1000 - due)
                if late[-1] > 50 and len(slow) < 1000:
                    slow.append((due, late[-1]))
                if len(late) == n:
                    break
        done.set()

    acked = [0]

    def confirms():
        for t, pl in p.frames():
            if t == 1 and pl[:4] == b"\x00\x3c\x00\x50":
                acked[0] = struct.unpack(">Q", pl[4:12])[0]
                if acked[0] >= n:
                    return

    rss = []

    def sample():
        while not done.is_set():
            rss.append((time.time(), rss_anon(pid)))
            time.sleep(0.5)

    for f in (consume, confirms, sample):
        threading.Thread(target=f, daemon=True).start()

    pub = method(1, 60, 40, struct.pack(">H", 0) + ss("bdx") + ss("k") + b"\x00")
    t0 = time.time() * 1000 + lead * 1000
    start = time.time()
    i = 0
    while i < n:
        while i - acked[0] >= WINDOW:
            time.sleep(0.0005)
        now = time.time() * 1000
        out = []
        for j in range(i, min(n, i + 100)):
            due = int(t0 + j * 1000 / rate)
            hdr = struct.pack(">HHQH", 60, 0, 8, 0x3000) + \
                table({"x-delay": ("l", due - int(now))}) + mode
            out.append(pub + frame(2, 1, hdr) + frame(3, 1, struct.pack(">Q", due)))
        p.s.sendall(b"".join(out))
        i = min(n, i + 100)
    while acked[0] < n:
        time.sleep(0.01)
    published = time.time()
    first_due = t0 / 1000
    done.wait(lead + n / rate + 120)
    if os.environ.get("BENCH_DELAY_SLOW") and slow:  # when the late ones were due
        print("late > 50 ms, by second after the first due time:",
              sorted({int((d - t0) // 1000) for d, _l in slow}), file=sys.stderr)
    late.sort()
    waiting = [r for t, r in rss if published <= t < first_due]
    print(json.dumps({
        "n": n, "rate": rate, "transient": transient, "publish_s": round(published - start, 1),
        "publish_rate": round(n / (published - start)),
        "received": len(late),
        "rss_anon_mib_waiting_max": round(max(waiting), 1) if waiting else None,
        "rss_anon_mib_max": round(max(r for _t, r in rss), 1) if rss else None,
        "late_ms_median": round(late[len(late) // 2], 1) if late else None,
        "late_ms_p99": round(late[int(len(late) * 0.99)], 1) if late else None,
        "late_ms_max": round(late[-1], 1) if late else None,
        "late_ms_min": round(late[0], 1) if late else None,
    }))


if __name__ == "__main__":
    main()
