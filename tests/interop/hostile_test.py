#!/usr/bin/python3
"""Hostile and broken clients (issue 12) against a real warrend: each scenario runs on a fresh
warrend while a probe process (pika, its own connection) declares a queue passively every 20 ms,
and checks that the broker kept answering the probe (95th percentile under 100 ms, every probe
answered) and that memory stayed bounded (the peak RSS, VmHWM, printed for docs/security.md).
Scenarios: 10,000 idle TCP connections that never send the protocol header (closed at the
handshake timeout); slowloris clients sending a byte a second (AMQP and HTTP); 1,000 failed
logins; a client that publishes to a queue it consumes from and never reads its socket (closed
after tcp_listen_options.send_timeout); 2,047 channels consuming on one connection; frames of
every type, on channels 0, 1 and 65535, with sizes from 0 to 2^32-1, in every connection state;
TLS clients stuck mid-handshake; HTTP requests with huge headers, huge bodies, slow bodies and
malformed JSON. HOSTILE_IDLE sets the number of idle connections (default 10000).
Exit 0 pass, 1 fail, 77 skip (no pika/requests, WARREND not set)."""
import json
import os
import random
import resource
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
try:
    import pika
    from conf_broker import (ConfBroker, check, finish, frame, free_port, handshake, longstr,
                             method, read_method, shortstr)
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (apt-get install python3-pika python3-requests)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
report = []


# ---- the probe: a process of its own, so that the attackers' GIL does not delay it --------

def probe_main(port):
    """Declares a queue passively every 20 ms until stdin closes; prints the latencies (ms)
    as JSON, and a count of failed probes."""
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port,
                                                             socket_timeout=10,
                                                             blocked_connection_timeout=10))
    ch = conn.channel()
    ch.queue_declare("hostile-probe")
    lat, errors = [], 0
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            ch.queue_declare("hostile-probe", passive=True)
            lat.append((time.monotonic() - t0) * 1000)
        except Exception:
            errors += 1
            break
        time.sleep(0.02)
    print(json.dumps({"lat": lat, "errors": errors}))
    sys.stdout.flush()


class Probe:
    def __init__(self, port):
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--probe",
                                   str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def finish(self):
        out, _ = self.p.communicate(b"", timeout=30)
        try:
            return json.loads(out)
        except ValueError:
            return {"lat": [], "errors": 1}


RSS_LIMIT_MIB = float(os.environ.get("HOSTILE_RSS_LIMIT_MIB", "1024"))


def scenario(d, name, lines, fn):
    os.mkdir(os.path.join(d, name))
    w = ConfBroker(os.path.join(d, name), lines, log_level="warning")
    probe = Probe(w.port)
    time.sleep(0.3)
    t0 = time.monotonic()
    try:
        detail = fn(w)
    finally:
        res = probe.finish()
        rss = w.peak_rss_mib()
        alive = w.proc.poll() is None
        check(w.stop() and alive, f"{name}: warrend survived and stopped cleanly")
    lat = sorted(res["lat"])
    p95 = lat[int(len(lat) * 0.95)] if lat else float("inf")
    worst = lat[-1] if lat else float("inf")
    line = (f"{name}: {time.monotonic() - t0:.1f} s, {len(lat)} probes, p95 {p95:.1f} ms, "
            f"max {worst:.1f} ms, peak RSS {rss:.0f} MiB{'; ' + detail if detail else ''}")
    print(line)
    report.append(line)
    check(res["errors"] == 0 and len(lat) >= 5, f"{name}: the probe was answered throughout")
    check(p95 < 100, f"{name}: probe p95 {p95:.1f} ms (must stay under 100 ms)")
    check(rss < RSS_LIMIT_MIB, f"{name}: peak RSS {rss:.0f} MiB over {RSS_LIMIT_MIB:.0f} MiB")


def closed(sock, wait):
    """Did the peer close sock within wait seconds (reading and dropping what it sends)?"""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


# ---- scenarios --------------------------------------------------------------------------------

def idle_connections(w):
    n = int(os.environ.get("HOSTILE_IDLE", "10000"))
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(10)
        s.connect(("127.0.0.1", w.port))
        socks.append(s)
    t_open = time.monotonic()
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    open_left = set(socks)
    deadline = t_open + 12
    while open_left and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                if s.recv(4096):
                    continue
            except (ConnectionResetError, BlockingIOError):
                pass
            sel.unregister(s)
            open_left.discard(s)
    took = time.monotonic() - t_open
    check(not open_left, f"{len(open_left)} of {n} idle connections still open after {took:.1f} s")
    check(took > 2.0, f"idle connections were closed after {took:.1f} s, before the 3 s timeout")
    for s in socks:
        s.close()
    return f"{n} connections closed after {took:.1f} s"


def slowloris(w):
    amqp = []
    for _ in range(200):
        amqp.append(socket.create_connection(("127.0.0.1", w.port), timeout=5))
    http = []
    for _ in range(100):
        http.append(socket.create_connection(("127.0.0.1", w.mport), timeout=5))
    header = b"AMQP\x00\x00\x09\x01"
    request = b"GET /api/overview HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q="
    t0 = time.monotonic()
    for i in range(6):  # one byte a second on every socket
        for s in amqp:
            try:
                s.send(header[i:i + 1] if i < 7 else b"x")
            except OSError:
                pass
        for s in http:
            try:
                s.send(request[i:i + 1])
            except OSError:
                pass
        time.sleep(1)
    amqp_closed = sum(closed(s, 2) for s in amqp)
    answers = []
    for s in http:
        try:
            s.settimeout(2)
            answers.append(s.recv(200)[:12])
        except OSError:
            answers.append(b"")
    check(amqp_closed == len(amqp), f"slow AMQP clients closed: {amqp_closed} of {len(amqp)}")
    check(all(a == b"HTTP/1.1 408" for a in answers),
          f"slow HTTP clients got 408: {set(answers)}")
    for s in amqp + http:
        s.close()
    return f"{len(amqp)} AMQP and {len(http)} HTTP slow clients closed within " \
           f"{time.monotonic() - t0:.0f} s"


def auth_failures(w):
    # authentication_failure_close: refused with connection.close at once (without it the
    # broker closes silently after a delay, as RabbitMQ).
    caps = shortstr(b"authentication_failure_close") + b"t\x01"
    props = shortstr(b"capabilities") + b"F" + longstr(caps)
    bad = method(0, 10, 11, longstr(props) + shortstr(b"PLAIN") +
                 longstr(b"\x00guest\x00wrong") + shortstr(b"en_US"))
    refused = []

    def attacker():
        ok = 0
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", w.port), timeout=10)
            s.sendall(b"AMQP\x00\x00\x09\x01")
            read_method(s, (10, 10), time.monotonic() + 10)
            s.sendall(bad)
            args = read_method(s, (10, 50), time.monotonic() + 20)
            if args is not None and struct.unpack(">H", args[:2])[0] == 403:
                ok += 1
                s.sendall(method(0, 10, 51))
            s.close()
        refused.append(ok)

    t0 = time.monotonic()
    threads = [threading.Thread(target=attacker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    check(sum(refused) == 1000, f"1000 failed logins refused: {sum(refused)}")
    return f"1000 failed logins in {took:.1f} s (the per-address throttle: 200/s)"


def non_reader(w):
    s = handshake(w.port, "open")
    s.sendall(method(1, 50, 10, struct.pack(">H", 0) + shortstr(b"hostile-nr") + b"\x00" +
                     longstr(b"")))
    read_method(s, (50, 11), time.monotonic() + 5)
    s.sendall(method(1, 60, 20, struct.pack(">H", 0) + shortstr(b"hostile-nr") +
                     shortstr(b"") + b"\x02" + longstr(b"")))  # no-ack consumer
    read_method(s, (60, 21), time.monotonic() + 5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    body = b"n" * 4096
    publish = (method(1, 60, 40, struct.pack(">H", 0) + shortstr(b"") + shortstr(b"hostile-nr") +
                      b"\x00") + frame(2, 1, struct.pack(">HHQH", 60, 0, len(body), 0)) +
               frame(3, 1, body)) * 64
    s.setblocking(False)
    sent, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < 10:  # publish, never read, until the broker gives up
        try:
            sent += s.send(publish)
        except BlockingIOError:
            time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            break
    took = time.monotonic() - t0
    check("has not taken our output" in w.log_text(),
          "the non-reading client was closed for not taking its output")
    s.close()
    return f"closed after {took:.1f} s, {sent >> 20} MiB sent by it"


def many_channels(w):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", w.port,
                                                             socket_timeout=30))
    got = [0]
    chans = []
    first = conn.channel()
    first.queue_declare("hostile-many")
    for _ in range(2046):
        ch = conn.channel()
        ch.basic_qos(prefetch_count=1)
        ch.basic_consume("hostile-many", lambda c, m, p, b: (got.__setitem__(0, got[0] + 1),
                                                             c.basic_ack(m.delivery_tag)))
        chans.append(ch)
    for i in range(4094):
        first.basic_publish("", "hostile-many", b"x" * 100)
    deadline = time.monotonic() + 30
    while got[0] < 4094 and time.monotonic() < deadline:
        conn.process_data_events(0.1)
    check(got[0] == 4094, f"2047 channels: {got[0]} of 4094 deliveries")
    conn.close()
    return f"2047 channels, 2046 consumers, {got[0]} deliveries"


def frames(w):
    types = [1, 2, 3, 8, 0, 4, 7, 255]
    chans = [0, 1, 65535]
    sizes = [0, 1, 7, 8, 4096, 131064, 131073, 1 << 31, (1 << 32) - 1]
    rnd = random.Random(12)
    total = answered = 0
    for state in ("none", "start", "tune", "opening", "open"):
        socks = []
        for ftype in types:
            for ch in chans:
                for size in sizes:
                    try:
                        s = handshake(w.port, state)
                    except OSError:
                        continue
                    body = bytes(rnd.getrandbits(8) for _ in range(min(size, 64)))
                    data = struct.pack(">BHI", ftype, ch, size) + body
                    if size <= 64:
                        data += b"\xce"
                    try:
                        s.sendall(data)
                    except OSError:
                        pass
                    socks.append(s)
        time.sleep(1)
        for s in socks:
            total += 1
            s.setblocking(False)
            try:
                got = s.recv(65536)
                answered += 1 if got is not None else 0
            except (BlockingIOError, ConnectionResetError):
                pass
            s.close()
    return f"{total} connections with odd frames"


def tls_stuck(w):
    socks = []
    for _ in range(500):
        s = socket.create_connection(("127.0.0.1", w.tls_port), timeout=5)
        s.sendall(b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03")  # half a ClientHello
        socks.append(s)
    t0 = time.monotonic()
    n = sum(closed(s, max(0.1, 6 - (time.monotonic() - t0))) for s in socks)
    took = time.monotonic() - t0
    check(n == len(socks), f"TLS clients stuck mid-handshake closed: {n} of {len(socks)}")
    for s in socks:
        s.close()
    return f"{len(socks)} stuck TLS handshakes closed within {took:.1f} s"


def http_abuse(w):
    auth = "Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n"

    def status(data, wait=10, trickle=False):
        s = socket.create_connection(("127.0.0.1", w.mport), timeout=wait)
        try:
            if trickle:
                for b in data:
                    s.send(bytes([b]))
                    time.sleep(1)
            else:
                s.sendall(data)
        except OSError:
            pass
        try:
            got = s.recv(200)
        except OSError:
            got = b""
        s.close()
        return got[9:12].decode(errors="replace")

    results = {}

    def run(name, fn, n):
        out = []
        ts = [threading.Thread(target=lambda: out.append(fn())) for _ in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        results[name] = sorted(set(out))

    big_header = (f"GET /api/overview HTTP/1.1\r\nHost: x\r\n{auth}X-Big: " + "a" * (1 << 20) +
                  "\r\n\r\n").encode()
    run("huge headers", lambda: status(big_header), 20)
    huge_body = (f"PUT /api/queues/%2F/hostile-h HTTP/1.1\r\nHost: x\r\n{auth}"
                 "Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n").encode()
    run("huge body", lambda: status(huge_body + b"{" * 65536), 20)
    slow = (f"PUT /api/queues/%2F/hostile-s HTTP/1.1\r\nHost: x\r\n{auth}"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n").encode()
    run("slow body", lambda: status(slow + b"{\"dur", wait=10), 20)
    bad = (f"PUT /api/queues/%2F/hostile-j HTTP/1.1\r\nHost: x\r\n{auth}"
           "Content-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"durable\":,").encode()
    run("malformed JSON", lambda: status(bad), 20)
    check(results["huge headers"] == ["400"], f"huge headers: {results['huge headers']}")
    check(results["huge body"] == ["413"], f"huge body: {results['huge body']}")
    check(results["slow body"] == ["408"], f"slow body: {results['slow body']}")
    check(results["malformed JSON"] == ["400"], f"malformed JSON: {results['malformed JSON']}")
    return ", ".join(f"{k} -> {'/'.join(v)}" for k, v in results.items())


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--probe":
        probe_main(int(sys.argv[2]))
        return 0
    if not os.environ.get("WARREND"):
        print("SKIP: WARREND not set")
        return 77
    # The test and warrend (which inherits the limit) each hold one end of every connection.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    idle = int(os.environ.get("HOSTILE_IDLE", "10000"))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, idle + 1000),) * 2)
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if hard < idle + 1000:
            print(f"RLIMIT_NOFILE is {hard}: {hard - 1000} idle connections, not {idle}")
            os.environ["HOSTILE_IDLE"] = str(max(100, hard - 1000))
    d = tempfile.mkdtemp(prefix="warren-hostile-")
    timeouts = ["handshake_timeout = 3000", "tcp_listen_options.send_timeout = 2000",
                "management.tcp.request_timeout = 3000"]
    try:
        scenario(d, "idle connections", timeouts, idle_connections)
        scenario(d, "slowloris", timeouts, slowloris)
        scenario(d, "failed logins", timeouts, auth_failures)
        scenario(d, "non-reading client", timeouts, non_reader)
        scenario(d, "2047 channels", timeouts, many_channels)
        scenario(d, "odd frames", timeouts, frames)
        scenario(d, "HTTP abuse", timeouts, http_abuse)
        if shutil.which("openssl"):
            sys.path.insert(0, HERE)
            sys.dont_write_bytecode = True
            from tls_test import Certs  # noqa: E402
            certs = Certs(d)

            def tls_lines(port):
                return timeouts + [f"listeners.ssl.default = 127.0.0.1:{port}",
                                   f"ssl_options.certfile = {certs.server[0]}",
                                   f"ssl_options.keyfile = {certs.server[1]}",
                                   "ssl_handshake_timeout = 2000"]
            port = free_port()

            def stuck(w):
                w.tls_port = port
                return tls_stuck(w)
            scenario(d, "TLS stuck mid-handshake", tls_lines(port), stuck)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("\n".join(report))
    return finish("hostile")


if __name__ == "__main__":
    sys.exit(main())
