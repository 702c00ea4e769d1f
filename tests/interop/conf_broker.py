"""Shared by the interop tests that start warrend from a configuration file of their own
(tls_test, limits_test, alarms_test, hostile_test): checks that record a failure and go on,
free ports, ConfBroker (warrend --config, its log, the management API, pika connections, the
peak RSS) and raw AMQP frames for what a client library will not send. Owns the broker process
and its directory's files; run by Debian's /usr/bin/python3 (python3-pika, python3-requests)."""
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import pika
import requests

failures = []


def check(cond, msg):
    """Records a failure (printed at once) when cond is false; the test goes on."""
    if not cond:
        print("FAIL: " + msg, file=sys.stderr)
        failures.append(msg)
    return bool(cond)


def finish(name):
    """The exit status of a test: 1 with a count when any check failed, else 0."""
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print(f"{name}: all checks passed")
    return 0


_given = set()  # ports this process handed out already (a broker may not have bound them yet)


def free_ports(n):
    """n distinct free ports, none handed out before by this process: the sockets are held open
    together, so the kernel cannot hand the same port out twice (one at a time it may), and a
    port given to a broker not started yet (an HA pair's second node) is not given again."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            socks.append(s)  # held until the end, given or not, so the kernel moves on
            s.bind(("127.0.0.1", 0))
            if s.getsockname()[1] not in _given:
                ports.append(s.getsockname()[1])
        _given.update(ports)
        return ports
    finally:
        for s in socks:
            s.close()


def free_port():
    return free_ports(1)[0]


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class ConfBroker:
    """warrend --config DIR/warren.conf: AMQP on self.port (listeners.tcp = none when tcp is
    False), the management API on self.mport, Prometheus on self.pport when prometheus is True,
    the data in DIR/data, stderr in DIR/warrend.log; then the caller's lines. Waits until the
    listeners (unless listeners_up is False: an HA standby has none) and the ports in wait_for
    accept connections. ports: (AMQP, API, Prometheus) to use again, e.g. after a restart."""

    def __init__(self, d, lines, tcp=True, prometheus=False, wait_for=(), log_level="info",
                 listeners_up=True, ports=None):
        self.d = d
        self.port, self.mport, self.pport = ports or tuple(free_ports(3))
        self.conf = os.path.join(d, "warren.conf")
        base = [f"listeners.tcp.default = 127.0.0.1:{self.port}" if tcp
                else "listeners.tcp = none",
                f"management.tcp.port = {self.mport}", "management.tcp.ip = 127.0.0.1",
                f"prometheus.tcp.port = {self.pport}" if prometheus
                else "prometheus.tcp.port = none",
                "prometheus.tcp.ip = 127.0.0.1",
                f"data_dir = {os.path.join(d, 'data')}", f"log.console.level = {log_level}"]
        with open(self.conf, "w") as f:
            f.write("\n".join(base + list(lines)) + "\n")
        self.logf = open(os.path.join(d, "warrend.log"), "w")
        self.proc = subprocess.Popen([os.environ["WARREND"], "--config", self.conf],
                                     stderr=self.logf)
        ports = ([self.port] if tcp else []) + [self.mport] + \
            ([self.pport] if prometheus else []) if listeners_up else []
        ports += list(wait_for)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            if all(listening(p) for p in ports):
                return
            time.sleep(0.02)
        print(self.log_text(), file=sys.stderr)
        raise SystemExit("FAIL: warrend did not start with " + self.conf)

    def log_text(self):
        self.logf.flush()
        with open(self.logf.name) as f:
            return f.read()

    def api(self, method, path, **kw):
        return requests.request(method, f"http://127.0.0.1:{self.mport}{path}",
                                auth=("guest", "guest"), timeout=10, **kw)

    def connect(self, user="guest", password="guest"):
        return pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", self.port, credentials=pika.PlainCredentials(user, password),
            connection_attempts=1, socket_timeout=5, blocked_connection_timeout=60))

    def peak_rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0

    def stop(self):
        """SIGTERM, 20 s, SIGKILL. False (and the log's tail printed) when warrend had died or
        did not exit cleanly."""
        ok = self.proc.poll() is None
        if ok:
            self.proc.send_signal(signal.SIGTERM)
            try:
                ok = self.proc.wait(20) in (0, -signal.SIGTERM)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                ok = False
        else:
            print(f"warrend died (status {self.proc.returncode})", file=sys.stderr)
        if not ok:
            print(self.log_text()[-4000:], file=sys.stderr)
        self.logf.close()
        return ok


# ---- raw AMQP, for what no client library sends --------------------------------------------

def frame(ftype, ch, payload):
    return struct.pack(">BHI", ftype, ch, len(payload)) + payload + b"\xce"


def method(ch, cls, mid, args=b""):
    return frame(1, ch, struct.pack(">HH", cls, mid) + args)


def shortstr(s):
    return bytes([len(s)]) + s


def longstr(s):
    return struct.pack(">I", len(s)) + s


def read_method(sock, want, deadline):
    """Reads frames until a method (class, id) == want; returns its arguments, or None when
    the deadline passes or the socket closes first."""
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
        except (socket.timeout, ConnectionResetError):
            return None
        if not got:
            return None
        buf += got
    return None


def read_methods(sock, deadline):
    """Every method frame the peer sends until it closes (or the deadline): [(class, id,
    arguments)]."""
    buf, out = b"", []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not got:
            break
        buf += got
    while len(buf) >= 8:
        ftype, _ch, size = struct.unpack(">BHI", buf[:7])
        if len(buf) < 8 + size:
            break
        if ftype == 1 and size >= 4:
            out.append(struct.unpack(">HH", buf[7:11]) + (buf[11:7 + size],))
        buf = buf[8 + size:]
    return out


START_OK = method(0, 10, 11, struct.pack(">I", 0) + shortstr(b"PLAIN") +
                  longstr(b"\x00guest\x00guest") + shortstr(b"en_US"))
TUNE_OK = method(0, 10, 31, struct.pack(">HIH", 2047, 131072, 0))
OPEN = method(0, 10, 40, shortstr(b"/") + shortstr(b"") + b"\x00")


def handshake(port, upto="open"):
    """A raw connection as guest advanced to state upto: 'none' (nothing sent), 'start'
    (header sent, connection.start read), 'tune' (start-ok sent, tune read), 'opening'
    (tune-ok sent), 'open' (open-ok read, channel 1 open)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    deadline = time.monotonic() + 5
    if upto == "none":
        return s
    s.sendall(b"AMQP\x00\x00\x09\x01")
    read_method(s, (10, 10), deadline)
    if upto == "start":
        return s
    s.sendall(START_OK)
    read_method(s, (10, 30), deadline)
    if upto == "tune":
        return s
    s.sendall(TUNE_OK)
    if upto == "opening":
        return s
    s.sendall(OPEN)
    read_method(s, (10, 41), deadline)
    s.sendall(method(1, 20, 10, shortstr(b"")))
    read_method(s, (20, 11), deadline)
    return s
