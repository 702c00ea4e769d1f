#!/usr/bin/python3
"""Management API, HTTP and collections (issue 11): page/page_size (the paged shape: items, page,
page_count, page_size, filtered_count, item_count, total_count; 400 out of range), sort and
sort_reverse (by a string and by a number), name with and without use_regex, columns; 405 with
Allow for a wrong method; 404 for an unknown path; 413 for a body over 20 MiB, with
Content-Length or chunked; keep-alive (many requests, answers and errors, on one connection);
a request with Connection: close answered after a write that waits for storage.
Expectations are RabbitMQ 3.10.8's answers, except the body limit: RabbitMQ 3.10 answers 500 to
bodies far below 20 MiB, the issue asks for 20 MiB and 413 (checked on warrend only).
Starts its own warrend, or uses WARREN_API_URL + WARREN_AMQP_PORT (see api_common.py).
Exit 0 pass, 1 fail, 77 skip."""
import base64
import os
import re
import socket
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_common import (  # noqa: E402
    NOT_FOUND, PREFIX, Api, amqp, check, external, q, run)

V = PREFIX + "coll"
VQ = q(V)
# Queue name -> messages published into it (distinct, so that sort=messages is total).
QUEUES = {"alpha-1": 3, "alpha-2": 0, "beta-1": 4, "gamma-10": 1, "gamma-2": 2}
MIB = 1024 * 1024


def names(items):
    return [i.get("name") for i in items] if isinstance(items, list) else items


def paged(api, query, what):
    """GET /api/queues/V?query (paged): the decoded page, its shape checked."""
    got = api.expect("GET", f"/api/queues/{VQ}?{query}", 200, what=what)
    keys = {"items", "page", "page_count", "page_size", "filtered_count", "item_count",
            "total_count"}
    if not check(isinstance(got, dict) and set(got) == keys, f"{what}: paged shape {got}"):
        return {}
    check(got["item_count"] == len(got["items"]), f"{what}: item_count {got}")
    return got


def test_collections(broker, api):
    api.expect("PUT", f"/api/vhosts/{VQ}", 201, {})
    conn = amqp(broker, vhost=V)
    ch = conn.channel()
    for name, n in QUEUES.items():
        api.expect("PUT", f"/api/queues/{VQ}/{name}", 201, json={"durable": False})
        for i in range(n):
            ch.basic_publish(exchange="", routing_key=name, body=b"x")
    conn.close()
    # RabbitMQ lists queues and their counters from statistics (every 5 s).
    api.eventually(f"/api/queues/{VQ}?columns=name,messages",
                   lambda a: {x["name"]: x.get("messages") for x in a} == QUEUES,
                   "every queue listed with its messages")

    by_name = sorted(QUEUES)
    check(names(api.expect("GET", f"/api/queues/{VQ}?sort=name", 200)) == by_name, "sort=name")
    check(names(api.expect("GET", f"/api/queues/{VQ}?sort=name&sort_reverse=true", 200)) ==
          by_name[::-1], "sort=name&sort_reverse=true")
    by_count = sorted(QUEUES, key=QUEUES.get)
    check(names(api.expect("GET", f"/api/queues/{VQ}?sort=messages", 200)) == by_count,
          "sort=messages (a number)")
    check(names(api.expect("GET", f"/api/queues/{VQ}?sort=messages&sort_reverse=true", 200)) ==
          by_count[::-1], "sort=messages&sort_reverse=true")

    # columns: only those fields, in lists and in pages.
    got = api.expect("GET", f"/api/queues/{VQ}?columns=name,durable&sort=name", 200)
    check(got == [{"name": n, "durable": False} for n in by_name], f"columns=name,durable: {got}")

    # Pages.
    p = paged(api, "page=1&page_size=2&sort=name", "page 1 of 3")
    check(p and names(p["items"]) == by_name[:2] and p["page"] == 1 and p["page_count"] == 3 and
          p["page_size"] == 2 and p["filtered_count"] == 5 and p["total_count"] == 5,
          f"page=1&page_size=2: {p}")
    p = paged(api, "page=3&page_size=2&sort=name", "page 3 of 3")
    check(p and names(p["items"]) == by_name[4:] and p["item_count"] == 1 and p["page"] == 3,
          f"page=3&page_size=2: {p}")
    p = paged(api, "page=1&page_size=2&sort=name&sort_reverse=true&columns=name",
              "reversed, columns")
    check(p and p["items"] == [{"name": "gamma-2"}, {"name": "gamma-10"}],
          f"page 1 reversed with columns=name: {p}")
    p = paged(api, "page=1", "default page size")
    check(p and p["page_size"] == 100 and p["item_count"] == 5 and p["page_count"] == 1,
          f"page=1 alone: {p}")
    # name filters (RabbitMQ applies them to paged requests): a substring, or a regex.
    p = paged(api, "page=1&page_size=10&sort=name&name=alpha", "name=alpha")
    check(p and names(p["items"]) == ["alpha-1", "alpha-2"] and p["filtered_count"] == 2 and
          p["total_count"] == 5 and p["page_count"] == 1, f"name=alpha: {p}")
    p = paged(api, "page=1&page_size=10&sort=name&name=gamma-1", "name=gamma-1")
    check(p and names(p["items"]) == ["gamma-10"], f"name=gamma-1 (a substring): {p}")
    p = paged(api, "page=1&page_size=10&sort=name&name=%5E(alpha%7Cbeta)-1%24&use_regex=true",
              "regex")
    check(p and names(p["items"]) == ["alpha-1", "beta-1"] and p["filtered_count"] == 2,
          f"name=^(alpha|beta)-1$&use_regex=true: {p}")
    p = paged(api, "page=1&page_size=10&name=a.*1&use_regex=false", "no regex")
    check(p and p["items"] == [] and p["filtered_count"] == 0 and p["page_count"] == 0,
          f"name=a.*1 without use_regex is a plain substring: {p}")
    p = paged(api, "page=1&page_size=1&sort=name&name=gamma", "name and pages")
    check(p and names(p["items"]) == ["gamma-10"] and p["page_count"] == 2 and
          p["filtered_count"] == 2, f"name=gamma, page_size=1: {p}")
    # Out of range, bad parameters: 400 with RabbitMQ's error names.
    for query, error in (("page=4&page_size=2", "page_out_of_range"),
                         ("page=0", "invalid_pagination_parameters"),
                         ("page=1&page_size=501", "invalid_pagination_parameters")):
        got = api.expect("GET", f"/api/queues/{VQ}?{query}", 400)
        check(got and got.get("error") == error, f"{query}: {got}, want error {error}")

    # The other collections page too.
    every = names(api.expect("GET", f"/api/exchanges/{VQ}?sort=name", 200)) or []
    got = api.expect("GET", f"/api/exchanges/{VQ}?page=1&page_size=3&sort=name&columns=name",
                     200)
    check(got and got.get("total_count") == len(every) and len(every) >= 6 and
          got.get("page_count") == (len(every) + 2) // 3 and
          names(got.get("items")) == every[:3] == ["", "amq.direct", "amq.fanout"],
          f"exchanges of a new vhost ({every}), paged: {got}")
    got = api.expect("GET", f"/api/vhosts?page=1&page_size=1&name={VQ}&columns=name", 200)
    check(got and got.get("items") == [{"name": V}] and got.get("filtered_count") == 1,
          f"vhosts paged by name: {got}")
    # (RabbitMQ 3.10 does not page /api/bindings: it answers the whole list.)


def test_methods(api):
    """405 with Allow; the path, not the method, decides 404."""
    qn = "alpha-1"
    for method, path, allowed in (
            ("PATCH", "/api/queues", "GET"), ("DELETE", "/api/queues", "GET"),
            ("POST", f"/api/vhosts/{VQ}", "PUT"), ("POST", "/api/users", "GET"),
            ("DELETE", f"/api/exchanges/{VQ}", "GET"), ("PUT", "/api/whoami", "GET"),
            ("DELETE", "/api/overview", "GET"),
            ("GET", f"/api/exchanges/{VQ}/amq.direct/publish", "POST"),
            ("PUT", f"/api/queues/{VQ}/{qn}/get", "POST"),
            ("GET", f"/api/queues/{VQ}/{qn}/contents", "DELETE")):
        r = api.call(method, path)
        if r is None:
            continue
        check(r.status_code == 405, f"{method} {path}: {r.status_code}, want 405")
        allow = [m.strip() for m in r.headers.get("Allow", "").split(",")]
        check(allowed in allow, f"{method} {path}: Allow {r.headers.get('Allow')!r}")
    api.expect("GET", "/api/nosuch", 404, NOT_FOUND)
    api.expect("GET", "/nothing", 404, NOT_FOUND)
    api.expect("GET", f"/api/queues/{VQ}/{PREFIX}none", 404, NOT_FOUND)


def test_body_limit(api):
    """20 MiB: a body below is read, one above is refused with 413 (and the connection
    closed), whether announced by Content-Length or sent chunked."""
    x = PREFIX + "big"
    pad = b"x" * (19 * MIB)
    api.expect("PUT", f"/api/exchanges/{VQ}/{x}", 201,
               data=b'{"type":"direct","pad":"' + pad + b'"}',
               headers={"Content-Type": "application/json"}, what="a 19 MiB body")
    big = b'{"type":"direct","pad":"' + pad + b"x" * (2 * MIB) + b'"}'
    status = api.raw("PUT", f"/api/exchanges/{VQ}/{x}-2",
                     {"Content-Type": "application/json", "Content-Length": len(big)},
                     (big[i:i + MIB] for i in range(0, len(big), MIB)))
    check(status in (None, 413), f"a 21 MiB body: {status}, want 413")

    def chunks(n, framed=False):
        parts = [b'{"type":"direct","pad":"', *([b"x" * MIB] * n), b'"}']
        for p in parts:
            yield b"%x\r\n%s\r\n" % (len(p), p) if framed else p
        if framed:
            yield b"0\r\n\r\n"
    api.expect("PUT", f"/api/exchanges/{VQ}/{x}-3", 201, data=chunks(3),
               headers={"Content-Type": "application/json"}, what="3 MiB, chunked")
    status = api.raw("PUT", f"/api/exchanges/{VQ}/{x}-4",
                     {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                     chunks(21, framed=True))
    check(status in (None, 413), f"21 MiB chunked: {status}, want 413")
    api.expect("GET", f"/api/exchanges/{VQ}/{x}-2", 404, NOT_FOUND, what="refused, not made")
    api.expect("GET", f"/api/exchanges/{VQ}/{x}-4", 404, NOT_FOUND, what="refused, not made")
    api.expect("GET", "/api/whoami", 200, what="a new connection after a 413")


def test_keep_alive(broker):
    """Sixty requests (answers, 404s, 401s, 400s, 204s) on one requests.Session connection."""
    api = Api(broker)
    for i in range(10):
        api.expect("GET", "/api/overview", 200)
        api.expect("GET", f"/api/queues/{VQ}/alpha-1", 200)
        api.expect("GET", f"/api/queues/{VQ}/{PREFIX}none", 404, NOT_FOUND)
        api.expect("GET", "/api/whoami", 401, auth=("guest", "wrong"))
        api.expect("PUT", f"/api/queues/{VQ}/alpha-1", 204, {}, json={"durable": False})
        r = api.call("PUT", f"/api/queues/{VQ}/alpha-1", data=b"{bad",
                     headers={"Content-Type": "application/json"})
        check(r is not None and r.status_code == 400, f"bad JSON: {r and r.status_code}")
    check(all("close" not in r.headers.get("Connection", "").lower()
              for r in [api.get("/api/whoami")] if r is not None),
          "an answer asks to close the connection")
    pool = api.s.get_adapter(api.url).poolmanager.connection_from_url(api.url)
    check(pool.num_connections == 1,
          f"61 requests on one session opened {pool.num_connections} connections, want 1")


def raw_exchange(broker, data):
    """Writes data on a new connection to the API and reads until the API closes (5 s at most):
    the status codes of the answers, in order."""
    host, port = broker.url.split("//", 1)[1].rsplit(":", 1)
    out = b""
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(data)
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        except socket.timeout:
            pass
    return [int(x) for x in re.findall(rb"HTTP/1\.1 (\d{3}) ", out)]


def test_close_after_held(broker):
    """A request with Connection: close whose answer waits for storage (a write) still gets it
    when an earlier answer, or a 100 Continue, is written meanwhile (found by fuzz_http: the
    connection was closed as soon as the earlier write completed)."""
    auth = "Authorization: Basic " + base64.b64encode(b"guest:guest").decode() + "\r\n"

    def put(path, body, extra=""):
        return (f"PUT {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n{extra}\r\n{body}").encode()
    got = raw_exchange(broker, put(f"/api/queues/{VQ}/{PREFIX}held-1", '{"durable":true}') +
                       put(f"/api/queues/{VQ}/{PREFIX}held-2", '{"durable":true}',
                           "Connection: close\r\n"))
    check(got == [201, 201], f"two pipelined PUTs, the second with Connection: close: {got}")
    got = raw_exchange(broker, put(f"/api/queues/{VQ}/{PREFIX}held-3", '{"durable":true}',
                                   "Expect: 100-continue\r\nConnection: close\r\n"))
    check(got == [100, 201], f"Expect: 100-continue with Connection: close: {got}")


def main(broker, api):
    test_collections(broker, api)
    test_methods(api)
    test_keep_alive(broker)
    test_close_after_held(broker)
    if not external():  # RabbitMQ 3.10 answers 500 to bodies of 10 MiB and more
        test_body_limit(api)


def cleanup(api):
    api.delete(f"/api/vhosts/{VQ}")


if __name__ == "__main__":
    run(main, cleanup)
