"""Shared by the management API tests (tests/api/*_test.py): a warrend with its management
listener on free ports and a temp data dir, or an external broker (WARREN_API_URL, e.g.
http://127.0.0.1:15682, with WARREN_AMQP_PORT and optionally WARREN_AMQP_HOST: the reference
RabbitMQ 3.10.8 of ../shared/rabbitmq-ref.sh); an HTTP client (python3-requests, guest/guest);
checks that record a failure and go on, so that one run lists every difference; pika helpers to
see the broker's state over AMQP. Names the tests create start with PREFIX and are deleted at the
end, so an external broker is left as it was.
Run by Debian's /usr/bin/python3 (python3-requests, python3-pika); exit 0 pass, 1 fail, 77 skip."""
import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse

try:
    import requests
    import pika
    import pika.exceptions
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (apt-get install python3-requests python3-pika)")
    sys.exit(77)

PREFIX = f"apitest-{os.getpid()}-"
GUEST = ("guest", "guest")
NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}
# The 401 of a logged-in user without the tag an endpoint needs (RabbitMQ spells it
# "not_authorised" there, "not_authorized" only for failed logins).
NOT_ADMIN = {"error": "not_authorised", "reason": "Not administrator user"}
NOT_MGMT = {"error": "not_authorised", "reason": "Not management user"}
NO_VHOST_ACCESS = {"error": "not_authorised", "reason": "User not authorised to access virtual host"}
LOGIN_FAILED = {"error": "not_authorized", "reason": "Login failed"}

failures = []


def check(cond, msg):
    """Records a failure (printed at once) when cond is false; the test goes on. Returns cond."""
    if not cond:
        where = traceback.extract_stack(limit=2)[0]
        line = f"{os.path.basename(where.filename)}:{where.lineno}: {msg}"
        print("FAIL: " + line, file=sys.stderr)
        failures.append(line)
    return bool(cond)


def fatal(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def external():
    return bool(os.environ.get("WARREN_API_URL") and os.environ.get("WARREN_AMQP_PORT"))


def q(name):
    """name as one URL path segment ("/" -> "%2F")."""
    return urllib.parse.quote(name, safe="")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listening(host, port):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


class Broker:
    """warrend (--port, --management-port, --data-dir of its own) or the external broker named
    by WARREN_API_URL/WARREN_AMQP_PORT. host/port: AMQP; url: the API's base URL."""

    def __init__(self, prefix="warren-api-"):
        self.proc = None
        self.data_dir = None
        if external():
            self.url = os.environ["WARREN_API_URL"].rstrip("/")
            self.host = os.environ.get("WARREN_AMQP_HOST", "127.0.0.1")
            self.port = int(os.environ["WARREN_AMQP_PORT"])
            print(f"using external broker {self.url} (AMQP {self.host}:{self.port})")
            return
        exe = os.environ.get("WARREND")
        if not exe or not os.access(exe, os.X_OK):
            print("SKIP: WARREND is not set and WARREN_API_URL/WARREN_AMQP_PORT are not set")
            sys.exit(77)
        self.host = "127.0.0.1"
        self.data_dir = tempfile.mkdtemp(prefix=prefix)
        for _ in range(3):
            self.port, mport = free_port(), free_port()
            self.url = f"http://127.0.0.1:{mport}"
            self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1",
                                          "--management-port", str(mport),
                                          "--no-prometheus", "--data-dir",
                                          self.data_dir, "--log-level", "error"])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if listening(self.host, self.port) and listening(self.host, mport):
                    print(f"started {exe}: AMQP 127.0.0.1:{self.port}, API {self.url} "
                          f"(pid {self.proc.pid})")
                    return
                time.sleep(0.02)
            if self.proc.poll() is None:
                self.stop()
                fatal("warrend did not listen within 10 s")
        self.stop()
        fatal("warrend exited before listening (3 attempts)")

    def stop(self):
        """SIGTERM, 5 s, SIGKILL. False when warrend had died (a sanitizer report, say) or
        exited badly."""
        ok = True
        if self.proc:
            if self.proc.poll() is not None:
                print(f"warrend died during the test (status {self.proc.returncode})",
                      file=sys.stderr)
                ok = False
            else:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    rc = self.proc.wait(5)
                    ok = rc in (0, -signal.SIGTERM)
                    if not ok:
                        print(f"warrend exited with {rc} on SIGTERM", file=sys.stderr)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    print("warrend ignored SIGTERM for 5 s", file=sys.stderr)
                    ok = False
            self.proc = None
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
        return ok

    def alive(self):
        return self.proc is None or self.proc.poll() is None


class Api:
    """requests.Session on broker.url with basic auth (guest/guest by default). call() returns
    the response, or None (a failure recorded) when the connection broke."""

    def __init__(self, broker, auth=GUEST):
        self.broker = broker
        self.url = broker.url
        self.auth = auth
        self.s = requests.Session()

    def call(self, method, path, auth=None, **kw):
        a = self.auth if auth is None else (None if auth == "none" else auth)
        try:
            return self.s.request(method, self.url + path, auth=a, timeout=30, **kw)
        except requests.RequestException as e:
            check(False, f"{method} {path}: {type(e).__name__}: {e}")
            if self.broker.proc:  # a sanitizer report takes a moment to be written
                try:
                    self.broker.proc.wait(3)
                except subprocess.TimeoutExpired:
                    pass
            if not self.broker.alive():
                fatal(f"warrend died on {method} {path} (see its report above)")
            return None

    def raw(self, method, path, headers, chunks):
        """method path with headers (a dict) and the body from chunks (bytes each), sent on a
        socket of its own; stops sending when the broker has closed. The answer's status code,
        or None (a failure recorded) when the connection closed without one."""
        u = urllib.parse.urlsplit(self.url)
        auth = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Basic {auth}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        s = socket.create_connection((u.hostname, u.port), timeout=30)
        try:
            try:
                s.sendall(head.encode())
                for c in chunks:
                    s.sendall(c)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused early: the answer is waiting
            answer = b""
            try:
                while b"\r\n" not in answer:
                    got = s.recv(4096)
                    if not got:
                        break
                    answer += got
            except ConnectionResetError:
                pass
        finally:
            s.close()
        if not check(answer.startswith(b"HTTP/1.1 "),
                     f"{method} {path}: closed without an answer ({answer[:80]!r})"):
            return None
        return int(answer.split(b" ")[1])

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def put(self, path, body=None, **kw):
        return self.call("PUT", path, json=body, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, json=body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    def expect(self, method, path, status, body=None, what="", **kw):
        """method path must answer status, and body when given (JSON, compared exactly).
        Returns the decoded JSON body ({} / None when there is none or it is not JSON)."""
        r = self.call(method, path, **kw)
        if r is None:
            return None
        got = parse(r)
        label = f"{method} {path}{' (' + what + ')' if what else ''}"
        if body is not None and (r.status_code != status or got != body):
            check(False, f"{label}: {r.status_code} {got!r}, want {status} {body!r}")
        else:
            check(r.status_code == status, f"{label}: status {r.status_code}, want {status} "
                                           f"(body {r.text[:300]!r})")
        return got

    def eventually(self, path, pred, what, timeout=15):
        """GET path until pred(json) holds (RabbitMQ's counters come from statistics that are
        emitted every 5 s; warrend's are current at once). Returns the last JSON."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.get(path)
            got = parse(r) if r is not None else None
            if r is not None and r.status_code == 200 and got is not None:
                try:
                    if pred(got):
                        return got
                except (KeyError, TypeError, IndexError):
                    pass
            if time.monotonic() > deadline or r is None:
                check(False, f"GET {path}: {what} (last answer {r.status_code if r else None} "
                             f"{str(got)[:400]})")
                return got
            time.sleep(0.25)


def parse(r):
    if not r.content:
        return {}
    try:
        return r.json()
    except ValueError:
        return None


def rabbit_sha256(password, salt=None):
    """RabbitMQ's rabbit_password_hashing_sha256 hash: base64(salt + sha256(salt + password))."""
    salt = salt if salt is not None else os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def amqp(broker, user="guest", password="guest", vhost="/"):
    """A pika BlockingConnection (raises pika's refusals)."""
    return pika.BlockingConnection(pika.ConnectionParameters(
        host=broker.host, port=broker.port, virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password), connection_attempts=1,
        blocked_connection_timeout=30))


def amqp_refused(broker, user, password, vhost):
    """None when the login works (connection closed again), else the exception's name:
    ProbableAuthenticationError (403 at login) or ProbableAccessDeniedError (530 on the vhost)."""
    try:
        amqp(broker, user, password, vhost).close()
        return None
    except pika.exceptions.AMQPConnectionError as e:
        return type(e).__name__


def channel_error(action):
    """The reply code of the channel error action() causes, or None."""
    try:
        action()
        return None
    except pika.exceptions.ChannelClosedByBroker as e:
        return e.reply_code


def run(main, cleanup):
    """Starts a broker, calls main(broker, api), then cleanup(api) (always; it deletes what the
    test made, which matters on an external broker), stops the broker; prints PASS or the list of
    failures. Exit 0 / 1."""
    broker = Broker()
    api = Api(broker)
    try:
        main(broker, api)
    except SystemExit:
        broker.stop()
        raise
    except Exception as e:  # an unexpected exception fails the test, after the cleanup
        traceback.print_exc()
        check(False, f"{type(e).__name__}: {e}")
    finally:
        if broker.alive():
            try:
                cleanup(Api(broker))
            except Exception as e:
                check(False, f"cleanup: {type(e).__name__}: {e}")
    check(broker.stop(), "warrend did not shut down cleanly")
    if failures:
        print(f"{len(failures)} failure(s):", file=sys.stderr)
        for f in failures:
            print("  " + f, file=sys.stderr)
        sys.exit(1)
    print("PASS")
    sys.exit(0)
