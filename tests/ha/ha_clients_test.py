#!/usr/bin/python3
"""A client with two endpoints through failovers (issue 13): two warrend with ha.mode = shared
on one data directory; a pika publisher and a pika consumer, each given both endpoints as a list
of connection parameters (pika tries them in order) and reconnecting after a lost connection
(the settings README recommends), and amqplib (when installed; amqplib_failover.js) connecting
to the next URL whenever its connection closes, keep publishing persistent messages with
confirms and consuming with manual acks while the active is killed (kill -9) and restarted as
the standby, FAILOVERS times (default 10). At the end every confirmed message has been consumed
at least once, with its body intact. Exit 0 pass, 1 fail, 77 skip."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import pika
    import pika.exceptions
    from ha_test import Node, wait_serving
    from conf_broker import check, finish
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (apt-get install python3-pika python3-requests)")
    sys.exit(77)

FAILOVERS = int(os.environ.get("HA_FAILOVERS", "10"))
QUEUE = "ha-clients"


def endpoints(nodes):
    """Both endpoints, as a client is configured: one ConnectionParameters per broker."""
    return [pika.ConnectionParameters("127.0.0.1", n.w.port, connection_attempts=1,
                                      retry_delay=0, socket_timeout=2, heartbeat=5)
            for n in nodes]


def connect(nodes, stop):
    """A connection to whichever endpoint serves, retried every 50 ms until stop."""
    while not stop.is_set():
        try:
            return pika.BlockingConnection(endpoints(nodes))
        except (pika.exceptions.AMQPConnectionError, OSError, ValueError):
            # ValueError: pika's "Expected connected socket" when the broker it reached died
            # between the TCP handshake and getpeername() (a failover under way)
            time.sleep(0.05)
    return None


def publisher(nodes, confirmed, stop, errors):
    i = 0
    while not stop.is_set():
        conn = connect(nodes, stop)
        if not conn:
            return
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.queue_declare(QUEUE, durable=True)
            while not stop.is_set():
                ch.basic_publish("", QUEUE, f"m {i} ".encode() + b"p" * (i % 300),
                                 pika.BasicProperties(delivery_mode=2))
                confirmed.add(i)  # returned: the broker confirmed it
                i += 1
                time.sleep(0.002)
        except (pika.exceptions.AMQPError, OSError):
            i += 1  # the message in flight may or may not have been taken: not counted
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            errors.append(repr(e))
            return


def consumer(nodes, got, stop, errors):
    while not stop.is_set():
        conn = connect(nodes, stop)
        if not conn:
            return
        try:
            ch = conn.channel()
            ch.queue_declare(QUEUE, durable=True)
            ch.basic_qos(prefetch_count=50)
            for method, _p, body in ch.consume(QUEUE, inactivity_timeout=0.2):
                if stop.is_set():
                    break
                if method is None:
                    continue
                i = int(body.split(b" ")[1])
                if body != f"m {i} ".encode() + b"p" * (i % 300):
                    errors.append(f"message {i} damaged")
                got.add(i)
                ch.basic_ack(method.delivery_tag)
        except (pika.exceptions.AMQPError, OSError):
            pass
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
            return


def main():
    if not os.environ.get("WARREND"):
        print("SKIP: WARREND not set")
        return 77
    root = tempfile.mkdtemp(prefix="warren-ha-clients-")
    data = os.path.join(root, "shared-data")
    a, b = Node(root, "a", data), Node(root, "b", data)
    nodes = [a, b]
    try:
        a.start(standby=False)
        b.start(standby=True)
        confirmed, got, errors, stop = set(), set(), [], threading.Event()
        threads = [threading.Thread(target=publisher, args=(nodes, confirmed, stop, errors)),
                   threading.Thread(target=consumer, args=(nodes, got, stop, errors))]
        for t in threads:
            t.start()
        here = os.path.dirname(os.path.abspath(__file__))
        node = shutil.which("node")
        amqplib = os.path.isdir(os.path.join(here, "..", "interop", "amqplib", "node_modules",
                                             "amqplib"))
        js = subprocess.Popen([node, os.path.join(here, "amqplib_failover.js")] +
                              [f"amqp://guest:guest@127.0.0.1:{n.w.port}" for n in nodes],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE) \
            if node and amqplib else None
        if not js:
            print("amqplib not installed: only pika goes through the failovers")
        active, standby = a, b
        for k in range(FAILOVERS):
            time.sleep(0.7)
            before = len(confirmed)
            t0 = time.monotonic()
            active.kill9()
            took = wait_serving(standby, t0)
            if not check(took is not None, f"failover {k}: the standby took over"):
                for n in (standby, active):
                    with open(n.w.logf.name) as f:  # (closed for a killed node)
                        print(f"--- {n.name}'s log:\n{f.read()[-3000:]}", file=sys.stderr)
                break
            active.start(standby=True)
            active, standby = standby, active
            deadline = time.monotonic() + 10
            while len(confirmed) <= before + 10 and time.monotonic() < deadline:
                time.sleep(0.05)
            check(len(confirmed) > before + 10,
                  f"failover {k}: the publisher goes on ({before} -> {len(confirmed)})")
            print(f"failover {k}: takeover {took * 1000:.0f} ms, {len(confirmed)} confirmed, "
                  f"{len(got)} consumed")
        deadline = time.monotonic() + 15
        time.sleep(0.5)
        stop_pub = set(confirmed)
        while not stop_pub <= got and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join(20)
        if js:
            out, _ = js.communicate(b"", timeout=30)
            res = json.loads(out.decode().strip().splitlines()[-1])
            lost = sorted(set(res["confirmed"]) - set(res["got"]))
            check(len(res["confirmed"]) > 100 and not lost,
                  f"amqplib: {len(res['confirmed'])} confirmed, {len(lost)} never consumed "
                  f"(first {lost[:5]})")
            print(f"amqplib: {len(res['confirmed'])} confirmed, {len(res['got'])} consumed")
        missing = sorted(stop_pub - got)
        check(not missing, f"{len(missing)} of {len(stop_pub)} confirmed messages never "
              f"consumed (first {missing[:5]})")
        check(not errors, f"client errors: {errors[:3]}")
        print(f"{FAILOVERS} failovers: {len(confirmed)} confirmed, {len(got)} consumed")
    finally:
        for n in nodes:
            if n.w and n.w.proc.poll() is None:
                n.w.proc.kill()
                n.w.proc.wait()
        shutil.rmtree(root, ignore_errors=True)
    return finish("ha-clients")


if __name__ == "__main__":
    sys.exit(main())
