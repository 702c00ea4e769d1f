#!/usr/bin/python3
"""AMQPS (issue 12) with real clients against a real warrend: a CA, server and client
certificates are made with the openssl CLI at test time; python3-pika, amqp-tools (rabbitmq-c's
amqp_ssl_socket) and amqplib (node, when installed) publish and consume over TLS; TLS 1.1 and
plain AMQP on the TLS port are refused; SASL EXTERNAL logs in with the certificate's CN and, on a
second broker, with its whole DN; a client without a certificate, or with one from another CA, is
refused when verify_peer / fail_if_no_peer_cert say so; a client stuck in the handshake is closed
after ssl_handshake_timeout while others are served; SIGHUP makes new connections get a new
certificate while an open one keeps working; bad ssl_options stop warrend with the file and line.
The management API shows the TLS details of each connection.
Exit 0 pass, 1 fail, 77 skip (no pika/requests, no openssl CLI, WARREND not set)."""
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import warnings

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
try:
    import pika
    import pika.exceptions
    import requests
    from conf_broker import ConfBroker, check, finish, free_port, listening
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (apt-get install python3-pika python3-requests)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class Certs:
    """A CA, a server certificate for localhost/127.0.0.1, client certificates (CN tls-client;
    CN dn-client,O=Warren Test,C=US) and a client certificate from another CA, in dir."""

    def __init__(self, d):
        self.d = d
        self.ca = self.make_ca("ca", "Warren Test CA")
        self.rogue_ca = self.make_ca("rogue-ca", "Someone Else's CA")
        self.server = self.issue("server", "/O=Warren/CN=localhost", "ca",
                                 "subjectAltName=DNS:localhost,IP:127.0.0.1")
        self.client = self.issue("client", "/CN=tls-client", "ca")
        self.dn_client = self.issue("dn-client", "/C=US/O=Warren Test/CN=dn-client", "ca")
        self.rogue = self.issue("rogue", "/CN=tls-client", "rogue-ca")

    def path(self, name):
        return os.path.join(self.d, name)

    def make_ca(self, name, cn):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", self.path(name + ".key"), "-out", self.path(name + ".pem"),
                "-days", "2", "-subj", "/CN=" + cn)
        return self.path(name + ".pem")

    def issue(self, name, subj, ca, ext=None):
        key, csr, pem = (self.path(name + x) for x in (".key", ".csr", ".pem"))
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key, "-out", csr, "-subj", subj)
        args = ["x509", "-req", "-in", csr, "-CA", self.path(ca + ".pem"), "-CAkey",
                self.path(ca + ".key"), "-CAcreateserial", "-out", pem, "-days", "2"]
        if ext:
            extfile = self.path(name + ".ext")
            with open(extfile, "w") as f:
                f.write(ext + "\n")
            args += ["-extfile", extfile]
        openssl(*args)
        return pem, key


class Warrend(ConfBroker):
    """ConfBroker with an AMQPS listener on self.tls_port (and, with https, the management API
    and Prometheus over HTTPS on self.https_port and self.prom_https_port, with the server
    certificate beside d) and the caller's ssl_options lines."""

    def __init__(self, d, tls_lines, tcp=True, https=False):
        self.tls_port, self.https_port, self.prom_https_port = (free_port() for _ in range(3))
        lines = [f"listeners.ssl.default = 127.0.0.1:{self.tls_port}"]
        if https:
            c = os.path.join(os.path.dirname(d), "")
            for prefix, port in (("management", self.https_port),
                                 ("prometheus", self.prom_https_port)):
                lines += [f"{prefix}.ssl.port = {port}", f"{prefix}.ssl.ip = 127.0.0.1",
                          f"{prefix}.ssl.certfile = {c}server.pem",
                          f"{prefix}.ssl.keyfile = {c}server.key"]
        super().__init__(d, lines + tls_lines, tcp=tcp,
                         wait_for=[self.tls_port] + ([self.https_port] if https else []))

    def https(self, method, path, ca, port=None, **kw):
        return requests.request(method, f"https://localhost:{port or self.https_port}{path}",
                                auth=("guest", "guest"), timeout=30, verify=ca, **kw)

    def add_user(self, name):
        """A user without a password (only EXTERNAL can log it in) with every permission."""
        q = requests.utils.quote(name, safe="")
        r = self.api("PUT", f"/api/users/{q}", json={"password_hash": "", "tags": ""})
        check(r.status_code in (201, 204), f"PUT user {name}: {r.status_code} {r.text}")
        r = self.api("PUT", f"/api/permissions/%2F/{q}",
                     json={"configure": ".*", "write": ".*", "read": ".*"})
        check(r.status_code in (201, 204), f"PUT permissions {name}: {r.status_code}")


def client_ctx(certs, cert=None, minv=None, maxv=None):
    ctx = ssl.create_default_context(cafile=certs.ca)
    warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1, on purpose
    if cert:
        ctx.load_cert_chain(*cert)
    if minv:
        ctx.minimum_version = minv
    if maxv:
        ctx.maximum_version = maxv
    return ctx


def params(w, ctx, credentials=None, heartbeat=None):
    kw = {"credentials": credentials} if credentials else {}
    if heartbeat is not None:
        kw["heartbeat"] = heartbeat
    return pika.ConnectionParameters(host="localhost", port=w.tls_port, connection_attempts=1,
                                     socket_timeout=5, ssl_options=pika.SSLOptions(ctx,
                                                                                   "localhost"),
                                     **kw)


def refused(fn):
    """True when fn() raises a connection or TLS error (the broker refused)."""
    try:
        c = fn()
    except (pika.exceptions.AMQPError, ssl.SSLError, OSError):
        return True
    try:
        c.close()
    except Exception:
        pass
    return False


def round_trip(conn, qname, sizes):
    """Publishes bodies of the given sizes with confirms, consumes them back; checks each."""
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(qname, auto_delete=True)
    bodies = [bytes((i + j) % 251 for j in range(n)) for i, n in enumerate(sizes)]
    for b in bodies:
        ch.basic_publish("", qname, b, mandatory=True)
    got = []
    for method, _props, body in ch.consume(qname, inactivity_timeout=5):
        if method is None:
            break
        got.append(body)
        ch.basic_ack(method.delivery_tag)
        if len(got) == len(bodies):
            break
    ch.cancel()
    check(got == bodies, f"{qname}: {len(got)} of {len(bodies)} bodies came back intact")


def connections(w):
    r = w.api("GET", "/api/connections")
    return r.json() if r.status_code == 200 else []


def test_https(w, certs):
    """The management API and Prometheus over HTTPS (management.ssl.*, prometheus.ssl.*)."""
    r = w.https("GET", "/api/overview", certs.ca)
    listeners = {(x["protocol"], x["port"]) for x in r.json().get("listeners", [])}
    check(r.status_code == 200 and ("https", w.https_port) in listeners and
          ("amqp/ssl", w.tls_port) in listeners and
          ("https/prometheus", w.prom_https_port) in listeners,
          f"GET /api/overview over HTTPS lists the TLS listeners: {r.status_code} {listeners}")
    # A held reply (a durable queue: answered once on disk), a large body in and out.
    r = w.https("PUT", "/api/queues/%2F/https-q", certs.ca, json={"durable": True})
    check(r.status_code == 201, f"PUT a durable queue over HTTPS: {r.status_code} {r.text}")
    big = {"queues": [{"name": f"https-bulk-{i:05d}", "vhost": "/", "durable": False,
                       "auto_delete": False, "arguments": {"x-note": "n" * 200}}
                      for i in range(3000)]}
    r = w.https("POST", "/api/definitions", certs.ca, json=big)
    check(r.status_code in (200, 201, 204), f"POST 3000 queues over HTTPS: {r.status_code}")
    r = w.https("GET", "/api/queues?columns=name", certs.ca)
    names = {q["name"] for q in r.json()} if r.status_code == 200 else set()
    check(len([n for n in names if n.startswith("https-bulk-")]) == 3000 and "https-q" in names,
          f"GET /api/queues over HTTPS: {len(names)} queues")
    # Keep-alive: several requests on one TLS session.
    with requests.Session() as sess:
        codes = [sess.get(f"https://localhost:{w.https_port}/api/whoami", auth=("guest", "guest"),
                          verify=certs.ca, timeout=10).status_code for _ in range(20)]
    check(codes == [200] * 20, f"20 requests on one HTTPS connection: {set(codes)}")
    r = w.https("GET", "/api/whoami", certs.ca, )
    check(r.status_code == 200 and r.json().get("name") == "guest", "whoami over HTTPS")
    r = requests.get(f"https://localhost:{w.https_port}/api/whoami", verify=certs.ca, timeout=10)
    check(r.status_code == 401, f"no credentials over HTTPS: {r.status_code}")
    # Plain HTTP on the HTTPS port gets no answer.
    try:
        r = requests.get(f"http://127.0.0.1:{w.https_port}/api/overview", auth=("guest", "guest"),
                         timeout=5)
        check(False, f"plain HTTP on the HTTPS port was answered: {r.status_code}")
    except requests.RequestException:
        pass
    # Prometheus over HTTPS, parsed by a real parser when installed.
    r = w.https("GET", "/metrics", certs.ca, port=w.prom_https_port)
    check(r.status_code == 200 and "rabbitmq_queues " in r.text,
          f"GET /metrics over HTTPS: {r.status_code}")
    try:
        from prometheus_client.parser import text_string_to_metric_families
        fams = {f.name for f in text_string_to_metric_families(r.text)}
        check("rabbitmq_connections" in fams, "the HTTPS metrics parse")
    except ImportError:
        pass
    # rabbitmqadmin (Debian's, when installed) over HTTPS.
    admin = shutil.which("rabbitmqadmin")
    if admin:
        out = subprocess.run([admin, "-H", "localhost", "-P", str(w.https_port), "--ssl",
                              "--ssl-ca-cert-file", certs.ca, "-f", "tsv", "-q", "list",
                              "queues", "name"], capture_output=True, timeout=60)
        check(out.returncode == 0 and b"https-q" in out.stdout,
              f"rabbitmqadmin --ssl list queues: {out.returncode} {out.stderr[-300:]!r}")
    # warrenctl over HTTPS, verifying against the test CA.
    ctl = os.path.join(os.path.dirname(os.environ["WARREND"]), "..", "tools", "warrenctl")
    if os.access(ctl, os.X_OK):
        url = f"https://localhost:{w.https_port}"
        out = subprocess.run([ctl, "--url", url, "--cacert", certs.ca, "--formatter", "tsv",
                              "--no-table-headers", "list_queues", "name"],
                             capture_output=True, timeout=30)
        check(out.returncode == 0 and b"https-q\n" in out.stdout,
              f"warrenctl --cacert over HTTPS: {out.returncode} {out.stderr!r}")
        out = subprocess.run([ctl, "--url", url, "list_queues"], capture_output=True,
                             timeout=30)
        check(out.returncode != 0, "warrenctl refuses a certificate it cannot verify")
    r = w.https("DELETE", "/api/queues/%2F/https-q", certs.ca)
    check(r.status_code == 204, f"DELETE over HTTPS: {r.status_code}")


def test_main_broker(certs, d):
    w = Warrend(d, [f"ssl_options.cacertfile = {certs.ca}",
                    f"ssl_options.certfile = {certs.server[0]}",
                    f"ssl_options.keyfile = {certs.server[1]}",
                    "ssl_options.verify = verify_peer",
                    "ssl_options.fail_if_no_peer_cert = false",
                    "auth_mechanisms.1 = PLAIN", "auth_mechanisms.2 = AMQPLAIN",
                    "auth_mechanisms.3 = EXTERNAL", "ssl_handshake_timeout = 1500"],
                https=True)
    try:
        test_https(w, certs)
        # pika over TLS 1.3 and 1.2, PLAIN, bodies from empty to multi-record and multi-frame.
        conn = pika.BlockingConnection(params(w, client_ctx(certs)))
        round_trip(conn, "tls-q13", [0, 1, 100, 16383, 16384, 40000, 300000, 1 << 20] +
                   [i * 37 for i in range(300)])
        cs = [c for c in connections(w) if c.get("port") == w.tls_port]
        check(len(cs) == 1 and cs[0]["ssl"] is True and cs[0]["ssl_protocol"] == "tlsv1.3" and
              cs[0]["ssl_cipher"] and cs[0]["peer_cert_subject"] is None,
              f"/api/connections shows the TLS 1.3 connection: {json.dumps(cs)[:600]}")
        conn.close()
        conn = pika.BlockingConnection(params(w, client_ctx(certs, maxv=ssl.TLSVersion.TLSv1_2)))
        round_trip(conn, "tls-q12", [10, 20000, 70000])
        cs = [c for c in connections(w) if c.get("port") == w.tls_port]
        check(len(cs) == 1 and cs[0]["ssl_protocol"] == "tlsv1.2",
              f"a TLS 1.2 client gets TLS 1.2: {cs and cs[0].get('ssl_protocol')}")
        conn.close()
        # A TLS connection gives its buffers back at each heartbeat tick (heartbeat 2 s: a tick
        # every second) and makes them again for the next output: the same in both directions.
        conn = pika.BlockingConnection(params(w, client_ctx(certs), heartbeat=2))
        round_trip(conn, "tls-idle", [100, 50000])
        conn.process_data_events(3.5)
        round_trip(conn, "tls-idle", [200, 60000, 300000])
        plain = [c for c in connections(w) if c.get("port") == w.port]
        check(not plain, "no plain connection is listed")

        # TLS 1.1 is refused by the server (the client offers nothing newer).
        ctx11 = client_ctx(certs, minv=ssl.TLSVersion.TLSv1_1, maxv=ssl.TLSVersion.TLSv1_1)
        try:
            ctx11.set_ciphers("DEFAULT:@SECLEVEL=0")
        except ssl.SSLError:
            pass
        check(refused(lambda: pika.BlockingConnection(params(w, ctx11))), "TLS 1.1 is refused")
        # The broker itself never agrees to TLS 1.1: an s_client that offers only 1.1 fails.
        out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{w.tls_port}",
                              "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", "-CAfile", certs.ca],
                             input=b"", capture_output=True, timeout=20)
        check(out.returncode != 0 and b"Cipher is (NONE)" in out.stdout and
              b"alert protocol version" in out.stderr,
              "openssl s_client -tls1_1 gets a protocol_version alert and no session")

        # Plain AMQP on the TLS port: no connection.start, the socket is closed.
        s = socket.create_connection(("127.0.0.1", w.tls_port), timeout=5)
        s.sendall(b"AMQP\x00\x00\x09\x01")
        got = b""
        try:
            while True:
                b = s.recv(4096)
                if not b:
                    break
                got += b
        except (socket.timeout, ConnectionResetError):
            pass
        s.close()
        check(not got.startswith(b"\x01\x00\x00") and len(got) < 100,
              f"plain AMQP on the TLS port gets no connection.start ({got[:20]!r})")

        # EXTERNAL with the certificate's CN; PLAIN still works with a certificate.
        w.add_user("tls-client")
        conn = pika.BlockingConnection(params(w, client_ctx(certs, certs.client),
                                              pika.credentials.ExternalCredentials()))
        round_trip(conn, "tls-ext", [5, 5000])
        cs = [c for c in connections(w) if c.get("user") == "tls-client"]
        check(len(cs) == 1 and cs[0]["auth_mechanism"] == "EXTERNAL" and
              cs[0]["peer_cert_subject"] == "CN=tls-client" and
              cs[0]["peer_cert_issuer"] == "CN=Warren Test CA",
              f"EXTERNAL logs in as the certificate's CN: {json.dumps(cs)[:600]}")
        conn.close()
        conn = pika.BlockingConnection(params(w, client_ctx(certs, certs.client)))
        check(conn.is_open, "PLAIN over TLS with a client certificate")
        conn.close()
        # EXTERNAL is not offered without a certificate; a CN without a user is refused.
        check(refused(lambda: pika.BlockingConnection(params(
            w, client_ctx(certs), pika.credentials.ExternalCredentials()))),
            "EXTERNAL without a client certificate is refused")
        check(refused(lambda: pika.BlockingConnection(params(
            w, client_ctx(certs, certs.dn_client), pika.credentials.ExternalCredentials()))),
            "EXTERNAL for a CN that is no user is refused")
        # A certificate from another CA fails verify_peer.
        check(refused(lambda: pika.BlockingConnection(params(w, client_ctx(certs,
                                                                            certs.rogue)))),
              "a client certificate from another CA is refused")
        check("certificate" in w.log_text(), "the log says why the TLS handshake failed")

        # A client stuck in the handshake is closed after ssl_handshake_timeout (1.5 s); the
        # others are served meanwhile.
        stuck = socket.create_connection(("127.0.0.1", w.tls_port), timeout=10)
        stuck.sendall(b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03")  # half a ClientHello
        t0 = time.monotonic()
        probe = pika.BlockingConnection(params(w, client_ctx(certs)))
        check(time.monotonic() - t0 < 2, "a probe connects while another client is stuck")
        probe.close()
        try:
            closed = stuck.recv(100) == b""
        except ConnectionResetError:
            closed = True
        waited = time.monotonic() - t0
        check(closed and 1.0 < waited < 6, f"the stuck client is closed after {waited:.1f} s")
        stuck.close()
        check("TLS handshake not completed within 1500 ms" in w.log_text(),
              "the log names the TLS handshake timeout")

        # amqp-tools (rabbitmq-c's amqp_ssl_socket) with a client certificate.
        if shutil.which("amqp-publish") and shutil.which("amqp-get"):
            tls = ["--url", f"amqps://localhost:{w.tls_port}", "--ssl", "--cacert",
                   certs.ca, "--cert", certs.client[0], "--key", certs.client[1]]
            for cmd in (["amqp-declare-queue", *tls, "-q", "tls-tools"],
                        ["amqp-publish", *tls, "-r", "tls-tools", "-b", "over rabbitmq-c"]):
                out = subprocess.run(cmd, capture_output=True, timeout=20)
                check(out.returncode == 0, f"{cmd[0]} over TLS: {out.stderr!r}")
            out = subprocess.run(["amqp-get", *tls, "-q", "tls-tools"], capture_output=True,
                                 timeout=20)
            check(out.stdout == b"over rabbitmq-c",
                  f"amqp-get over TLS: {out.stdout!r} {out.stderr!r}")
        else:
            print("amqp-tools not installed: rabbitmq-c over TLS not tried")

        # amqplib over TLS, when installed.
        if shutil.which("node") and os.path.isdir(os.path.join(HERE, "amqplib",
                                                               "node_modules", "amqplib")):
            out = subprocess.run(["node", os.path.join(HERE, "amqplib_tls.js"), str(w.tls_port),
                                  certs.ca, certs.client[0], certs.client[1]],
                                 capture_output=True, timeout=60)
            check(out.returncode == 0, f"amqplib over TLS: {out.stdout!r} {out.stderr!r}")
        else:
            print("amqplib not installed: not tried over TLS")

        # SIGHUP: new certificate for new connections; the open connection goes on.
        old = pika.BlockingConnection(params(w, client_ctx(certs)))
        och = old.channel()
        och.queue_declare("tls-hup", auto_delete=True)
        new_pem, new_key = certs.issue("server2", "/O=Reloaded/CN=localhost", "ca",
                                       "subjectAltName=DNS:localhost,IP:127.0.0.1")
        shutil.copy(new_pem, certs.server[0])
        shutil.copy(new_key, certs.server[1])
        w.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "reloaded the AMQPS certificate" not in w.log_text() and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        check("reloaded the AMQPS certificate" in w.log_text(), "SIGHUP reload is logged")
        with socket.create_connection(("127.0.0.1", w.tls_port), timeout=5) as raw:
            with client_ctx(certs).wrap_socket(raw, server_hostname="localhost") as t:
                subject = dict(x[0] for x in t.getpeercert()["subject"])
        check(subject.get("organizationName") == "Reloaded",
              f"a new connection gets the new certificate: {subject}")
        och.basic_publish("", "tls-hup", b"after reload")
        m = och.basic_get("tls-hup", auto_ack=True)
        check(m[2] == b"after reload", "the connection opened before SIGHUP still works")
        old.close()
    finally:
        check(w.stop(), "warrend stopped cleanly")


def test_dn_broker(certs, d):
    w = Warrend(d, [f"ssl_options.cacertfile = {certs.ca}",
                    f"ssl_options.certfile = {certs.server[0]}",
                    f"ssl_options.keyfile = {certs.server[1]}",
                    "ssl_options.verify = verify_peer",
                    "ssl_options.fail_if_no_peer_cert = true",
                    "ssl_options.versions.1 = tlsv1.2",
                    "auth_mechanisms.1 = EXTERNAL",
                    "ssl_cert_login_from = distinguished_name"], tcp=False)
    try:
        check(not listening(w.port), "listeners.tcp = none: no plain AMQP port")
        dn = "CN=dn-client,O=Warren Test,C=US"
        w.add_user(dn)
        conn = pika.BlockingConnection(params(w, client_ctx(certs, certs.dn_client),
                                              pika.credentials.ExternalCredentials()))
        round_trip(conn, "tls-dn", [1, 1000])
        cs = connections(w)
        check(len(cs) == 1 and cs[0]["user"] == dn and cs[0]["ssl_protocol"] == "tlsv1.2",
              f"EXTERNAL logs in as the whole DN over TLS 1.2 only: {json.dumps(cs)[:400]}")
        conn.close()
        check(refused(lambda: pika.BlockingConnection(params(w, client_ctx(certs)))),
              "fail_if_no_peer_cert: a client without a certificate is refused")
        check(refused(lambda: pika.BlockingConnection(params(w, client_ctx(certs,
                                                                            certs.client)))),
              "only EXTERNAL is offered: PLAIN (guest) is refused")
    finally:
        check(w.stop(), "warrend stopped cleanly")


def test_config_errors(certs, d):
    """Bad ssl_options stop warrend with status 78 and a line naming the problem."""
    cases = [
        (["ssl_options.versions.1 = tlsv1.1"], "bad.conf:2: ssl_options.versions.1: 'tlsv1.1' is not "
         "supported"),
        (["ssl_options.certfile = /nonexistent/cert.pem"],
         "ssl_options.certfile: cannot read '/nonexistent/cert.pem'"),
        ([f"ssl_options.certfile = {certs.server[0]}", f"ssl_options.keyfile = {certs.rogue[1]}"],
         "cannot start the AMQPS listener: keyfile"),
    ]
    for lines, want in cases:
        conf = os.path.join(d, "bad.conf")
        with open(conf, "w") as f:
            f.write(f"listeners.ssl.default = {free_port()}\n" + "\n".join(lines) + "\n" +
                    f"data_dir = {os.path.join(d, 'bad-data')}\nmanagement.tcp.port = none\n"
                    "prometheus.tcp.port = none\n")
        out = subprocess.run([os.environ["WARREND"], "--config", conf], capture_output=True,
                             timeout=20)
        err = out.stderr.decode()
        check(out.returncode == 78 and want in err,
              f"{lines}: status {out.returncode}, wanted 78 and '{want}' in: {err.strip()}")


def main():
    if not os.environ.get("WARREND") or not shutil.which("openssl"):
        print("SKIP: WARREND not set or no openssl CLI")
        return 77
    d = tempfile.mkdtemp(prefix="warren-tls-")
    try:
        certs = Certs(d)
        os.mkdir(os.path.join(d, "a"))
        os.mkdir(os.path.join(d, "b"))
        test_main_broker(certs, os.path.join(d, "a"))
        test_dn_broker(certs, os.path.join(d, "b"))
        test_config_errors(certs, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return finish("tls")


if __name__ == "__main__":
    sys.exit(main())
