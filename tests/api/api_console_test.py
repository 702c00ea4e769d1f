#!/usr/bin/python3
"""The HTTP side of the web console (issue 15), without a browser: the embedded files served
at / (ETag = the hash, If-None-Match -> 304, index.html no-cache, a file asked for with its
?v=<hash> immutable, CSP, HEAD with the GET's length, 404 as the API's, 405), the 401 that the
console's requests (X-Requested-With: XMLHttpRequest) get without WWW-Authenticate while curl's
keep the challenge, /api/nodes' disk_free and disk_free_limit, and a channel's message_stats
counts (publish, deliver_get). Starts its own warrend
(tests/interop/conf_broker.py). Exit 0 pass, 1 fail, 77 skip (no WARREND or python3-requests)."""
import os
import re
import sys
import tempfile
import shutil

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
try:
    import requests
    from conf_broker import ConfBroker, check, finish
except ImportError as e:
    print(f"skip: {e}")
    sys.exit(77)
if not os.environ.get("WARREND"):
    print("skip: WARREND is not set")
    sys.exit(77)


def http_checks(b):
    """Serving the files, and the 401 without a challenge for the console's requests."""
    base = f"http://127.0.0.1:{b.mport}"
    r = requests.get(base + "/", timeout=10)
    check(r.status_code == 200 and "text/html" in r.headers.get("Content-Type", ""),
          f"GET / {r.status_code} {r.headers.get('Content-Type')}")
    etag = r.headers.get("ETag", "")
    check(re.fullmatch(r'"[0-9a-f]{16}"', etag), f"GET / ETag {etag!r}")
    check(r.headers.get("Cache-Control") == "no-cache", f"/ Cache-Control {r.headers}")
    check("default-src 'self'" in r.headers.get("Content-Security-Policy", ""),
          f"/ CSP {r.headers.get('Content-Security-Policy')}")
    check(r.headers.get("X-Content-Type-Options") == "nosniff", "/ nosniff")
    r2 = requests.get(base + "/", headers={"If-None-Match": etag}, timeout=10)
    check(r2.status_code == 304 and not r2.content, f"If-None-Match: {r2.status_code}")
    r2 = requests.get(base + "/index.html", headers={"If-None-Match": 'W/"x", ' + etag},
                      timeout=10)
    check(r2.status_code == 304, f"If-None-Match with a list: {r2.status_code}")
    m = re.search(r'console\.js\?v=([0-9a-f]{16})', r.text)
    check(m, "index.html names console.js?v=<hash>")
    if m:
        js = requests.get(f"{base}/console.js?v={m.group(1)}", timeout=10)
        check(js.status_code == 200 and "javascript" in js.headers.get("Content-Type", ""),
              f"console.js {js.status_code} {js.headers.get('Content-Type')}")
        check("immutable" in js.headers.get("Cache-Control", ""),
              f"console.js?v=hash Cache-Control {js.headers.get('Cache-Control')}")
        check(js.headers.get("ETag") == f'"{m.group(1)}"', "console.js ETag is its hash")
        plain = requests.get(base + "/console.js", timeout=10)
        check(plain.headers.get("Cache-Control") == "no-cache", "console.js without ?v= no-cache")
    check(requests.get(base + "/nothing.js", timeout=10).status_code == 404, "unknown file 404")
    r = requests.post(base + "/", timeout=10)
    check(r.status_code == 405 and "GET" in r.headers.get("Allow", ""), f"POST / {r.status_code}")
    r = requests.head(base + "/console.css", timeout=10)
    check(r.status_code == 200 and not r.content and int(r.headers["Content-Length"]) > 0,
          f"HEAD console.css {r.status_code} {r.headers.get('Content-Length')}")
    # The console's requests: 401 without WWW-Authenticate; curl's: with it, as before.
    r = requests.get(base + "/api/whoami", auth=("guest", "nope"),
                     headers={"X-Requested-With": "XMLHttpRequest"}, timeout=10)
    check(r.status_code == 401 and "WWW-Authenticate" not in r.headers,
          f"XHR 401: {r.status_code} {r.headers}")
    check(r.json().get("error") == "not_authorized", f"XHR 401 body {r.text}")
    r = requests.get(base + "/api/whoami", auth=("guest", "nope"), timeout=10)
    check(r.status_code == 401 and r.headers.get("WWW-Authenticate", "").startswith("Basic"),
          f"plain 401 keeps its challenge: {r.headers}")
    r = requests.get(base + "/api/overview", headers={"X-Requested-With": "XMLHttpRequest"},
                     timeout=10)
    check(r.status_code == 401 and "WWW-Authenticate" not in r.headers, "XHR without creds")
    # The header's value split over two reads is still recognised.
    import socket
    import time
    sock = socket.create_connection(("127.0.0.1", b.mport), timeout=5)
    sock.sendall(b"GET /api/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Z3Vlc3Q6eA==\r\n"
                 b"X-Requested-With: XMLHttp")
    time.sleep(0.3)
    sock.sendall(b"Request\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    sock.close()
    check(got.startswith(b"HTTP/1.1 401") and b"WWW-Authenticate" not in got,
          f"X-Requested-With in two pieces: {got[:200]!r}")
    # A channel's message counts (the console's channel rates come from two readings).
    conn = b.connect()
    ch = conn.channel()
    ch.queue_declare("counted")
    for _ in range(3):
        ch.basic_publish("", "counted", b"x")
    ch.basic_get("counted", auto_ack=True)
    chans = b.api("GET", "/api/channels").json()
    stats = [c.get("message_stats") for c in chans]
    check(stats == [{"publish": 3, "deliver_get": 1}], f"channel message_stats: {stats}")
    one = b.api("GET", "/api/connections/" + requests.utils.quote(chans[0]["connection_details"]["name"], safe="") + "/channels").json() if chans else []
    check(one and one[0].get("message_stats", {}).get("publish") == 3,
          f"the connection's channels carry them too: {one}")
    conn.close()
    node = b.api("GET", "/api/nodes").json()[0]
    check(node.get("disk_free", 0) > 0 and node.get("disk_free_limit") == 50000000,
          f"/api/nodes disk_free {node.get('disk_free')} limit {node.get('disk_free_limit')}")


def main():
    d = tempfile.mkdtemp(prefix="warren-api-console-")
    b = ConfBroker(d, [])
    try:
        http_checks(b)
    finally:
        check(b.stop(), "warrend stopped cleanly")
        shutil.rmtree(d, ignore_errors=True)
    return finish("api-console")


if __name__ == "__main__":
    sys.exit(main())
