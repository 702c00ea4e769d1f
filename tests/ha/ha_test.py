#!/usr/bin/python3
"""Active/standby on one data directory (issue 13, first part: the lock, the standby, takeover):
two warrend with ha.mode = shared on one data directory, different ports, as two hosts behind
two endpoints. The standby answers 503 "standby" on ha.status_port, listens on nothing else and
never opens data.mdb (its /proc maps and fds); kill -9 of the active during a stream of
confirmed persistent publishes, alternating which process is active: the other takes over
(takeover times printed: min/median/max), every confirmed message is there with its body; the
dead one, restarted, is the standby (a stale lock file never blocks a start); SIGTERM hands over
gracefully; ha.fence_command runs with the new epoch before the takeover; --sync none is
refused. Four publishers; rounds: HA_ROUNDS (default 20; docs/ha.md records 200).
Exit 0 pass, 1 fail, 77 skip."""
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
try:
    import pika
    import pika.exceptions
    import requests
    from conf_broker import ConfBroker, check, finish, free_port, free_ports, listening
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (apt-get install python3-pika python3-requests)")
    sys.exit(77)

ROUNDS = int(os.environ.get("HA_ROUNDS", "20"))
PUBLISHERS = 4


class Node:
    """One 'host': a warrend with ha.mode = shared on the shared data directory."""

    def __init__(self, root, name, data, fence=None, heartbeat=200, deadline=5000):
        self.root, self.name, self.data, self.fence = root, name, data, fence
        self.heartbeat, self.deadline = heartbeat, deadline
        self.status_port = free_port()
        self.ports = tuple(free_ports(3))  # the same after a restart
        self.w = None

    def start(self, standby):
        d = os.path.join(self.root, self.name)
        os.makedirs(d, exist_ok=True)
        lines = [f"data_dir = {self.data}", "ha.mode = shared", "ha.status_ip = 127.0.0.1",
                 f"ha.status_port = {self.status_port}",
                 f"ha.heartbeat_interval = {self.heartbeat}",
                 f"ha.fence_deadline = {self.deadline}"]
        if self.fence:
            lines.append(f"ha.fence_command = {self.fence}")
        self.w = ConfBroker(d, lines, listeners_up=not standby, wait_for=[self.status_port],
                            ports=self.ports)
        return self

    def health(self):
        try:
            r = requests.get(f"http://127.0.0.1:{self.status_port}/health", timeout=5)
            return r.status_code, r.text.strip()
        except requests.RequestException:
            return None, None

    def pid(self):
        return self.w.proc.pid

    def opened_data_mdb(self):
        files = []
        with open(f"/proc/{self.pid()}/maps") as f:
            files += [line.split()[-1] for line in f if "data.mdb" in line]
        for fd in os.listdir(f"/proc/{self.pid()}/fd"):
            try:
                files.append(os.readlink(f"/proc/{self.pid()}/fd/{fd}"))
            except OSError:
                pass
        return [f for f in files if f.endswith("data.mdb") or f.endswith("lock.mdb")]

    def kill9(self):
        self.w.proc.send_signal(signal.SIGKILL)
        self.w.proc.wait()
        self.w.logf.close()


def publisher(node, qname, start, confirmed, stop):
    """Publishes persistent messages with confirms to node until stop is set or the connection
    breaks; the ids whose confirm arrived go into confirmed."""
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", node.w.port, connection_attempts=1, socket_timeout=5))
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare(qname, durable=True)
        i = start
        while not stop.is_set():
            ch.basic_publish("", qname, f"msg {i} ".encode() + b"x" * (i % 500),
                             pika.BasicProperties(delivery_mode=2), mandatory=True)
            confirmed.append(i)  # basic_publish returns once the broker confirmed it
            i += 1
    except (pika.exceptions.AMQPError, OSError):
        pass


class Publishers:
    """PUBLISHERS publisher threads on node, ids from start up (each its own million); the
    confirmed ids of all of them in .confirmed."""

    def __init__(self, node, qname, start):
        self.confirmed, self.stop = [], threading.Event()
        self.threads = [threading.Thread(target=publisher, args=(
            node, qname, start + k * 1000000, self.confirmed, self.stop))
            for k in range(PUBLISHERS)]
        for t in self.threads:
            t.start()

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)
        return self.confirmed


def drain(node, qname):
    """Every message of qname on node, by id (a redelivery may repeat one)."""
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", node.w.port, connection_attempts=1, socket_timeout=10))
    ch = conn.channel()
    ch.queue_declare(qname, durable=True)
    got = {}
    for method, _p, body in ch.consume(qname, inactivity_timeout=2):
        if method is None:
            break
        i = int(body.split(b" ")[1])
        check(body == f"msg {i} ".encode() + b"x" * (i % 500), f"message {i} intact")
        got[i] = got.get(i, 0) + 1
        ch.basic_ack(method.delivery_tag)
    conn.close()
    return got


def wait_serving(node, since, limit=10):
    deadline = since + limit
    while time.monotonic() < deadline:
        if listening(node.w.port):
            return time.monotonic() - since
        time.sleep(0.005)
    return None


def main():
    if not os.environ.get("WARREND"):
        print("SKIP: WARREND not set")
        return 77
    root = tempfile.mkdtemp(prefix="warren-ha-")
    data = os.path.join(root, "shared-data")
    fence_log = os.path.join(root, "fenced")
    fence = f"echo epoch=$WARREN_HA_EPOCH >> {fence_log}"
    a, b = Node(root, "a", data, fence), Node(root, "b", data, fence)
    times = []
    try:
        a.start(standby=False)
        b.start(standby=True)
        check(a.health() == (200, "active") and b.health() == (503, "standby"),
              f"/health: active {a.health()}, standby {b.health()}")
        check(not listening(b.w.port) and not listening(b.w.mport),
              "the standby listens on neither AMQP nor the management API")
        check(b.opened_data_mdb() == [], f"the standby never opens LMDB: {b.opened_data_mdb()}")
        check(os.path.exists(os.path.join(data, "data.mdb")) and
              not os.path.exists(os.path.join(data, "lock.mdb")),
              "LMDB is opened with MDB_NOLOCK (no lock.mdb on the shared directory)")
        # /api/ha and warrenctl ha_status on the active.
        r = requests.get(f"http://127.0.0.1:{a.w.mport}/api/ha", auth=("guest", "guest"),
                         timeout=10)
        j = r.json() if r.status_code == 200 else {}
        check(j.get("mode") == "shared" and j.get("role") == "active" and j.get("epoch") == 1 and
              f"pid={a.pid()} " in (j.get("holder") or "") and
              0 <= j.get("last_heartbeat_ms_ago", -1) < 3000,
              f"/api/ha: {r.status_code} {j}")
        ctl = os.path.join(os.path.dirname(os.environ["WARREND"]), "..", "tools", "warrenctl")
        if os.access(ctl, os.X_OK):
            out = subprocess.run([ctl, "--url", f"http://127.0.0.1:{a.w.mport}", "ha_status"],
                                 capture_output=True, text=True, timeout=20)
            check(out.returncode == 0 and "Role: active" in out.stdout and
                  "Epoch: 1" in out.stdout, f"warrenctl ha_status: {out.stdout!r}")
        active, standby = a, b
        total = 0
        for rnd in range(ROUNDS):
            qname = "ha-q"
            pubs = Publishers(active, qname, total)
            time.sleep(random.uniform(0.3, 0.9))
            check(standby.opened_data_mdb() == [], f"round {rnd}: the standby has no LMDB open")
            t0 = time.monotonic()
            active.kill9()
            took = wait_serving(standby, t0)
            confirmed = pubs.join()
            if not check(took is not None, f"round {rnd}: the standby did not take over"):
                break
            times.append(took)
            check(standby.health() == (200, "active"), f"round {rnd}: /health after takeover")
            got = drain(standby, qname)
            lost = [i for i in confirmed if i not in got]
            check(not lost, f"round {rnd}: {len(lost)} of {len(confirmed)} confirmed messages "
                  f"lost (first {lost[:5]})")
            print(f"round {rnd}: {len(confirmed)} confirmed, takeover {took * 1000:.0f} ms")
            total += 10 * 1000000
            # The dead one comes back, over its stale lock record, as the standby.
            active.start(standby=True)
            check(active.health() == (503, "standby"), f"round {rnd}: the restarted node waits")
            active, standby = standby, active
        if times:
            print(f"takeover over {len(times)} rounds: min {min(times) * 1000:.0f} ms, median "
                  f"{statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
        # Graceful switchover: SIGTERM; the standby serves, nothing confirmed is lost.
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", active.w.port))
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("ha-graceful", durable=True)
        # 5,000: more than a queue keeps in memory, so the drain below pages in from LMDB
        # (opened with MDB_NOLOCK) while its acks commit.
        for i in range(5000):
            ch.basic_publish("", "ha-graceful", f"msg {i} ".encode() + b"x" * (i % 500),
                             pika.BasicProperties(delivery_mode=2))
        conn.close()
        pubs = Publishers(active, "ha-graceful", 10000)  # and under load
        watcher = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", active.w.port))
        time.sleep(0.5)
        t0 = time.monotonic()
        active.w.proc.send_signal(signal.SIGTERM)
        took = wait_serving(standby, t0)
        try:
            watcher.process_data_events(time_limit=5)
            closed = None
        except pika.exceptions.ConnectionClosedByBroker as e:
            closed = (e.reply_code, e.reply_text)
        except pika.exceptions.AMQPError as e:
            closed = repr(e)
        check(closed and closed[0] == 320,
              f"graceful switchover: clients are closed with 320 CONNECTION_FORCED: {closed}")
        confirmed = pubs.join()
        check(active.w.proc.wait(10) == 0, "the active exits 0 on SIGTERM")
        check(took is not None and took < 5, f"graceful switchover: serving after {took}")
        got = drain(standby, "ha-graceful")
        lost = [i for i in list(range(5000)) + confirmed if i not in got]
        check(not lost and confirmed, f"graceful switchover under load: {len(lost)} of "
              f"{5000 + len(confirmed)} confirmed messages lost (first {lost[:5]})")
        print(f"graceful switchover under load ({len(confirmed)} confirmed while it ran): "
              f"{took * 1000:.0f} ms")
        # Self-fencing: another holder's record in warren.lock (a higher epoch, another pid):
        # the active stops at once (exit 75) and the standby takes over.
        active.start(standby=True)
        active, standby = standby, active
        lock = os.path.join(data, "warren.lock")
        with open(lock) as f:
            rec = f.read()
        epoch = int(rec.split("epoch=")[1].split()[0])
        with open(lock, "r+") as f:
            f.write(f"host=elsewhere pid=1 boot_id=x started=0 epoch={epoch + 5} heartbeat=0\n")
            f.truncate()
        t0 = time.monotonic()
        try:
            status = active.w.proc.wait(5)
        except subprocess.TimeoutExpired:
            status = None
        check(status == 75, f"the active fenced itself when another record appeared: {status}")
        check("fencing myself: the holder record in warren.lock is no longer mine" in
              active.w.log_text(), "the fenced active says why")
        took = wait_serving(standby, t0)
        check(took is not None, "the standby took over from the fenced active")
        active.w.logf.close()
        with open(fence_log) as f:
            epochs = [int(x.split("=")[1]) for x in f.read().split()]
        check(epochs[-1] == epoch + 6, f"the epoch after the foreign record: {epochs[-1:]}")
        epochs = epochs[:-1]
        # The first start, each kill -9 round, the graceful switchover: epochs 1, 2, ...
        check(epochs == list(range(1, ROUNDS + 3)),
              f"ha.fence_command ran before each takeover with the new epoch: {epochs}")
        check(standby.w.stop(), "the last active stops cleanly")
        # --sync none cannot be shared.
        out = subprocess.run([os.environ["WARREND"], "--ha", "shared", "--sync", "none",
                              "--data-dir", data, "--port", str(free_port()),
                              "--no-management", "--no-prometheus"],
                             capture_output=True, timeout=20)
        check(out.returncode == 78 and b"needs synchronous commits" in out.stderr,
              f"--ha shared --sync none: {out.returncode} {out.stderr[-200:]!r}")
    finally:
        for n in (a, b):
            if n.w and n.w.proc.poll() is None:
                n.w.proc.kill()
                n.w.proc.wait()
        shutil.rmtree(root, ignore_errors=True)
    return finish("ha")


if __name__ == "__main__":
    sys.exit(main())
