#!/usr/bin/python3
"""Resource alarms (issue 12) against a real warrend with python3-pika and the management API.
Memory: vm_memory_high_watermark.absolute = 4MB; a publisher fills a queue past it; every
publishing connection that announced the connection.blocked capability gets connection.blocked
"low on memory" and is no longer read, while a consumer on another connection drains the queue;
then connection.unblocked. Disk: the data directory on a small tmpfs of its own (mounted here;
skipped when mounting is not allowed) with disk_free_limit.absolute above what is left once a
file fills it: connection.blocked "low on disk", then unblocked when the file goes. Each alarm
shows in /api/nodes (mem_alarm, disk_free_alarm), in the alarms health check (503) and in
Prometheus (rabbitmq_alarms_*).
Exit 0 pass, 1 fail, 77 skip (no pika/requests, WARREND not set)."""
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
try:
    import pika
    import requests
    from conf_broker import ConfBroker, check, finish
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (apt-get install python3-pika python3-requests)")
    sys.exit(77)


class Broker(ConfBroker):
    """ConfBroker with Prometheus on, its data directory where the test says."""

    def __init__(self, d, data, lines):
        super().__init__(d, lines + [f"data_dir = {data}"], prometheus=True)

    def metric(self, name):
        text = requests.get(f"http://127.0.0.1:{self.pport}/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def alarms(self):
        """(mem_alarm, disk_free_alarm) from /api/nodes, the health check's status, and the
        two Prometheus gauges."""
        node = self.api("GET", "/api/nodes").json()[0]
        health = self.api("GET", "/api/health/checks/alarms").status_code
        return ((node["mem_alarm"], node["disk_free_alarm"]), health,
                (self.metric("rabbitmq_alarms_memory_used_watermark"),
                 self.metric("rabbitmq_alarms_free_disk_space_watermark")))


def wait_for(fn, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.05)
    return False


def watch_blocking(conn):
    """Records connection.blocked reasons and connection.unblocked on conn."""
    events = []
    conn.add_on_connection_blocked_callback(
        lambda _c, m: events.append(("blocked", m.method.reason)))
    conn.add_on_connection_unblocked_callback(lambda _c, m: events.append(("unblocked", None)))
    return events


def pump(conn, events, want):
    """Lets pika read until `want` is among events."""
    return wait_for(lambda: conn.process_data_events(0.05) or want in events, 15)


def test_memory(d):
    w = Broker(d, os.path.join(d, "data-mem"), ["vm_memory_high_watermark.absolute = 4MB"])
    try:
        check(w.alarms() == ((False, False), 200, (0.0, 0.0)), f"no alarm at start: {w.alarms()}")
        limit = w.api("GET", "/api/nodes").json()[0].get("mem_limit")
        check(limit == 4000000, f"/api/nodes mem_limit is the watermark (4MB): {limit}")
        pub = w.connect()
        events = watch_blocking(pub)
        ch = pub.channel()
        ch.queue_declare("alarm-mem")
        body = b"m" * 65536

        def publisher():
            # pika waits inside basic_publish while the connection is blocked: its own thread.
            for _ in range(112):  # 7 MiB, nobody consuming yet
                ch.basic_publish("", "alarm-mem", body)
            wait_for(lambda: pub.process_data_events(0.05) or ("unblocked", None) in events, 30)

        t = threading.Thread(target=publisher)
        t.start()
        # pika hands connection.blocked to the callback only once the publishing thread gets
        # back to its I/O loop, so the broker's side is checked here and the events at the end.
        check(wait_for(lambda: w.alarms()[0] == (True, False), 15),
              f"the memory alarm is raised: {w.alarms()}")
        check(wait_for(lambda: any(c.get("state") == "blocked" for c in
                                   w.api("GET", "/api/connections").json()), 15),
              "the publishing connection is blocked")
        check(w.alarms() == ((True, False), 503, (1.0, 0.0)),
              f"the memory alarm shows in the API, health check and metrics: {w.alarms()}")
        # Blocked: what the publisher sends now is not read (the queue stops growing).
        before = w.api("GET", "/api/queues/%2F/alarm-mem").json().get("messages")
        time.sleep(0.5)
        depth = w.api("GET", "/api/queues/%2F/alarm-mem").json().get("messages")
        check(before == depth < 112,
              f"a blocked publisher is not read: {before} then {depth} messages queued")
        # A consumer on its own connection drains the queue; the alarm clears, the publisher
        # is read again and everything arrives.
        con = w.connect()
        cch = con.channel()
        got = 0
        for method, _p, _b in cch.consume("alarm-mem", auto_ack=True, inactivity_timeout=5):
            if method is None:
                break
            got += 1
            if got == 112:
                break
        t.join(40)
        check(not t.is_alive() and events == [("blocked", "low on memory"), ("unblocked", None)],
              f"connection.blocked 'low on memory', then connection.unblocked once consumers "
              f"drained the queue: {events}")
        check(got == 112, f"the publishes held during the alarm arrive afterwards: {got} of 112")
        check(wait_for(lambda: w.alarms() == ((False, False), 200, (0.0, 0.0))),
              f"the memory alarm is gone everywhere: {w.alarms()}")
        con.close()
        pub.close()
    finally:
        check(w.stop(), "warrend stopped cleanly")


def test_disk(d):
    mnt = os.path.join(d, "small")
    os.mkdir(mnt)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt],
                      capture_output=True).returncode != 0:
        print("cannot mount a tmpfs here: the disk alarm is not tested")
        return
    try:
        w = Broker(d, os.path.join(mnt, "data"), ["disk_free_limit.absolute = 40MB"])
        try:
            check(wait_for(lambda: w.alarms()[0] == (False, False)),
                  f"no disk alarm with 64 MB free: {w.alarms()}")
            pub = w.connect()
            events = watch_blocking(pub)
            ch = pub.channel()
            ch.queue_declare("alarm-disk", durable=True)
            ch.basic_publish("", "alarm-disk", b"before",
                             pika.BasicProperties(delivery_mode=2))
            with open(os.path.join(mnt, "filler"), "wb") as f:
                f.write(b"\0" * (32 << 20))  # 64 MB - 32 MB < 40 MB
            ch.basic_publish("", "alarm-disk", b"during",
                             pika.BasicProperties(delivery_mode=2))
            check(pump(pub, events, ("blocked", "low on disk")),
                  f"the publisher gets connection.blocked 'low on disk': {events}")
            check(w.alarms() == ((False, True), 503, (0.0, 1.0)),
                  f"the disk alarm shows in the API, health check and metrics: {w.alarms()}")
            os.unlink(os.path.join(mnt, "filler"))
            check(pump(pub, events, ("unblocked", None)),
                  f"connection.unblocked once space is freed: {events}")
            check(wait_for(lambda: w.alarms()[0] == (False, False)), "the disk alarm clears")
            con = w.connect()
            cch = con.channel()
            bodies = []
            for method, _p, b in cch.consume("alarm-disk", auto_ack=True, inactivity_timeout=3):
                if method is None:
                    break
                bodies.append(b)
                if len(bodies) == 2:
                    break
            check(bodies == [b"before", b"during"], f"both messages arrive: {bodies}")
            con.close()
            pub.close()
        finally:
            check(w.stop(), "warrend stopped cleanly")
    finally:
        subprocess.run(["umount", mnt], capture_output=True)


def main():
    if not os.environ.get("WARREND"):
        print("SKIP: WARREND not set")
        return 77
    d = tempfile.mkdtemp(prefix="warren-alarms-")
    try:
        test_memory(d)
        test_disk(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return finish("alarms")


if __name__ == "__main__":
    sys.exit(main())
