#!/usr/bin/python3
"""tools/bench-api.py — how fast the management API lists many queues (docs/benchmarks.md):
starts a warrend (build/broker/warrend, or $WARREND) with a fresh data dir, declares N queues
(default 100,000) over AMQP with pika, then times GET /api/queues paged (page_size 500, first
and last pages, sorted by a statistic) and whole, best of 3 each, and prints a markdown table.

Usage: tools/bench-api.py [N]"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pika
import requests


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exe = os.environ.get("WARREND", os.path.join(root, "build", "broker", "warrend"))
    data = tempfile.mkdtemp(prefix="warren-bench-api-")
    port, mport = free_port(), free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--management-port",
                             str(mport), "--no-prometheus", "--data-dir", data, "--sync", "none",
                             "--log-level", "warn"])
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", mport), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
        ch = conn.channel()
        t = time.monotonic()
        for i in range(n):
            ch.queue_declare("q%06d" % i, arguments={"x-message-ttl": 60000})
        print(f"declared {n:,} queues in {time.monotonic() - t:.1f} s", file=sys.stderr)
        last = (n + 499) // 500
        rows = [("first page of 500", "page=1&page_size=500"),
                ("last page of 500", f"page={last}&page_size=500"),
                ("page of 500 sorted by messages", "page=1&page_size=500&sort=messages"),
                ("every queue, two columns", "columns=name,messages"),
                ("every queue, every field", "")]
        s = requests.Session()
        print(f"| GET /api/queues ({n:,} queues) | response bytes | best of 3 |")
        print("| --- | ---: | ---: |")
        for label, q in rows:
            best, size = 1e9, 0
            for _ in range(3):
                t = time.monotonic()
                r = s.get(f"http://127.0.0.1:{mport}/api/queues?{q}", auth=("guest", "guest"))
                best = min(best, time.monotonic() - t)
                size = len(r.content)
                r.raise_for_status()
            print(f"| {label} (`?{q}`) | {size:,} | {best * 1000:.0f} ms |")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
