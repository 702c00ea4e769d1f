#!/usr/bin/env python3
"""bench-connections.py — memory a broker spends per connection: opens N TCP sockets to it that
send nothing ("silent"), or N connections that log in (guest/guest, PLAIN), open vhost "/" and
one channel, then stay idle ("idle"), and prints the broker's RSS growth per connection as a
markdown row. The broker's RSS is read from /proc/PID/status (VmRSS), so it must run on this
machine: give its pid.

Usage: tools/bench-connections.py --pid PID [--host 127.0.0.1] [--port 5672]
                                  [--silent 10000] [--idle 1000]
Raises its own open-file limit; the broker needs a limit above N too (ulimit -n before starting
it). Loopback only; every socket is closed before it exits.
"""
import argparse
import resource
import socket
import struct
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def settle(pid, seconds=1.0):
    """Waits until the broker's RSS stops moving (it handles the sockets asynchronously)."""
    last = rss_kib(pid)
    deadline = time.time() + 10
    while time.time() < deadline:
        time.sleep(seconds)
        now = rss_kib(pid)
        if now == last:
            return now
        last = now
    return last


def frame(ftype, channel, payload):
    return struct.pack(">BHI", ftype, channel, len(payload)) + payload + b"\xce"


def shortstr(s):
    b = s.encode()
    return struct.pack(">B", len(b)) + b


def longstr(b):
    return struct.pack(">I", len(b)) + b


def read_frame(sock):
    hdr = b""
    while len(hdr) < 7:
        chunk = sock.recv(7 - len(hdr))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        hdr += chunk
    ftype, channel, size = struct.unpack(">BHI", hdr)
    body = b""
    while len(body) < size + 1:
        chunk = sock.recv(size + 1 - len(body))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        body += chunk
    return ftype, channel, body[:-1]


def read_method(sock, want):
    while True:
        ftype, _, payload = read_frame(sock)
        if ftype == 1:
            cm = struct.unpack(">HH", payload[:4])
            if cm != want:
                raise RuntimeError(f"expected method {want}, got {cm}")
            return payload


def login(host, port):
    s = socket.create_connection((host, port))
    s.sendall(b"AMQP\x00\x00\x09\x01")
    read_method(s, (10, 10))  # connection.start
    start_ok = (struct.pack(">HH", 10, 11) + longstr(b"") + shortstr("PLAIN") +
                longstr(b"\x00guest\x00guest") + shortstr("en_US"))
    s.sendall(frame(1, 0, start_ok))
    tune = read_method(s, (10, 30))
    channel_max, frame_max, _ = struct.unpack(">HIH", tune[4:12])
    s.sendall(frame(1, 0, struct.pack(">HHHIH", 10, 31, channel_max, frame_max, 0)))
    s.sendall(frame(1, 0, struct.pack(">HH", 10, 40) + shortstr("/") + shortstr("") + b"\x00"))
    read_method(s, (10, 41))  # open-ok
    s.sendall(frame(1, 1, struct.pack(">HH", 20, 10) + shortstr("")))
    read_method(s, (20, 11))  # channel.open-ok
    return s


def measure(pid, n, opener):
    before = settle(pid)
    socks = []
    try:
        for _ in range(n):
            socks.append(opener())
        after = settle(pid)
    finally:
        for s in socks:
            s.close()
    return before, after


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pid", type=int, required=True, help="the broker's process id")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5672)
    ap.add_argument("--silent", type=int, default=10000, help="sockets that send nothing")
    ap.add_argument("--idle", type=int, default=1000, help="logged-in idle connections")
    ap.add_argument("--label", default="broker")
    a = ap.parse_args()
    need = a.silent + a.idle + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(need, soft), hard), hard))

    print(f"| {a.label} | connections | RSS before KiB | RSS after KiB | KiB per connection |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for what, n, opener in (
            ("silent sockets", a.silent, lambda: socket.create_connection((a.host, a.port))),
            ("idle logged-in connections (1 channel)", a.idle, lambda: login(a.host, a.port))):
        if n <= 0:
            continue
        before, after = measure(a.pid, n, opener)
        print(f"| {what} | {n} | {before} | {after} | {(after - before) / n:.1f} |")
        time.sleep(1)


if __name__ == "__main__":
    main()
