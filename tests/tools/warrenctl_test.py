#!/usr/bin/python3
"""warrenctl ($WARRENCTL) against a real warrend ($WARREND, free AMQP and management ports, temp
data dir; Broker from tests/interop/pika_test.py): every verb whose endpoint warrend serves, its
output and the broker state after it (over the API with urllib, over AMQP with python3-pika),
and the error paths (unreachable URL, wrong password, missing tag, 404, bad usage).
A verb whose endpoint warrend does not serve yet (GET of it answers 404) is reported as
"PENDING ... (no ENDPOINT)" and skipped, never faked.
Against another broker: WARREN_TEST_HOST/WARREN_TEST_PORT (AMQP) and WARRENCTL_TEST_URL (its
management API, e.g. RabbitMQ 3.10 on http://127.0.0.1:15682); what the test creates there is
removed. Exit 0 pass, 1 fail, 77 skip."""
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
from pika_test import Broker, check, fail, free_port, run_test  # noqa: E402

import pika  # noqa: E402
import pika.exceptions  # noqa: E402

WARRENCTL = os.environ.get("WARRENCTL")
VH = "wctl-test-vh"
ODD_VH = "wctl test/é"  # needs percent-encoding in paths
BOB = "wctl_test_bob"
PENDING = []


class Ctx:
    def __init__(self, broker, url):
        self.broker, self.url = broker, url


def ctl(ctx, *args, env=None, stdin=None):
    """Runs warrenctl with --url ctx.url (unless env sets WARRENCTL_URL); (rc, out, err)."""
    full_env = dict(os.environ, **(env or {}))
    for k in ("WARRENCTL_URL", "WARRENCTL_USER", "WARRENCTL_PASSWORD"):
        if not env or k not in env:
            full_env.pop(k, None)
    url = [] if env and "WARRENCTL_URL" in env else ["--url", ctx.url]
    p = subprocess.run([WARRENCTL, *url, *args], capture_output=True, text=True, env=full_env,
                       input=stdin, timeout=60)
    return p.returncode, p.stdout, p.stderr


def ok(ctx, *args, **kw):
    rc, out, err = ctl(ctx, *args, **kw)
    check(rc == 0 and err == "", f"warrenctl {' '.join(args)}: rc {rc}, stderr {err!r}")
    return out


def refused(ctx, args, rc, pattern, **kw):
    """warrenctl args exits rc with one line on stderr matching pattern."""
    got, out, err = ctl(ctx, *args, **kw)
    check(got == rc, f"warrenctl {' '.join(args)}: rc {got}, want {rc} (stderr {err!r})")
    check(err.count("\n") == 1 and re.search(pattern, err),
          f"warrenctl {' '.join(args)}: stderr {err!r} does not match {pattern!r}")


def rows(out):
    """The table's lines after the banner, split on runs of two or more spaces."""
    return [re.split(r"  +", line.rstrip()) for line in out.splitlines()
            if not line.startswith(("Listing ", "Status "))]


def api(ctx, method, path, body=None, user="guest", password="guest"):
    """(status, parsed JSON or None) of a request to the management API."""
    req = urllib.request.Request(ctx.url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Authorization", "Basic " +
                   base64.b64encode(f"{user}:{password}".encode()).decode())
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            data = r.read()
            return r.status, json.loads(data) if data else None
    except urllib.error.HTTPError as e:
        data = e.read()
        return e.code, json.loads(data) if data else None


def served(ctx, path, verbs):
    """True when GET path is not a 404; otherwise records verbs as pending."""
    status, _ = api(ctx, "GET", path)
    if status == 404:
        PENDING.append(verbs)
        print(f"PENDING {verbs}: the broker does not serve GET {path} yet (404); skipped")
        return False
    return True


def eventually(what, fn, timeout=15):
    """Polls fn() until it is true (statistics lag on RabbitMQ)."""
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            fail(what)
        time.sleep(0.3)


def amqp(ctx, vhost="/", user="guest", password="guest"):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host=ctx.broker.host, port=ctx.broker.port, virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password), connection_attempts=1))


def amqp_refused(ctx, vhost, user, password):
    try:
        amqp(ctx, vhost, user, password).close()
    except (pika.exceptions.ProbableAccessDeniedError,
            pika.exceptions.ProbableAuthenticationError, pika.exceptions.ConnectionClosed):
        return True
    return False


def q(s):
    return urllib.parse.quote(s, safe="")


# ---- sections ----------------------------------------------------------------------------------

def test_status(ctx):
    ok(ctx, "await_startup", "--timeout", "10")
    out = ok(ctx, "status")
    check(out.startswith("Status of node ") and "\nRabbitMQ version: 3." in out, f"status: {out!r}")
    j = json.loads(ok(ctx, "--formatter", "json", "status"))
    check("node" in j and "object_totals" in j, f"status json: {j}")


def test_vhosts(ctx):
    check("Adding vhost" in ok(ctx, "add_vhost", VH, "--description", "from warrenctl"), "banner")
    status, vh = api(ctx, "GET", "/api/vhosts/" + q(VH))
    check(status == 200 and vh["description"] == "from warrenctl", f"vhost: {status} {vh}")
    ok(ctx, "-q", "add_vhost", ODD_VH)
    check(api(ctx, "GET", "/api/vhosts/" + q(ODD_VH))[0] == 200, "odd vhost not created")
    lines = rows(ok(ctx, "list_vhosts", "name", "description"))
    check(["name", "description"] in lines and [VH, "from warrenctl"] in lines, f"{lines}")
    amqp(ctx, VH).close()  # the creator (guest) may use it
    ok(ctx, "delete_vhost", ODD_VH)
    check(api(ctx, "GET", "/api/vhosts/" + q(ODD_VH))[0] == 404, "odd vhost not deleted")
    check(amqp_refused(ctx, ODD_VH, "guest", "guest"), "AMQP still opens a deleted vhost")
    out = ok(ctx, "-q", "--no-table-headers", "--formatter", "tsv", "list_vhosts")
    check(ODD_VH not in out.splitlines() and VH in out.splitlines(), f"tsv vhosts: {out!r}")


def test_users(ctx):
    ok(ctx, "add_user", BOB, "pw1")
    status, u = api(ctx, "GET", "/api/users/" + BOB)
    check(status == 200 and u["tags"] == [], f"user: {status} {u}")
    refused(ctx, ["add_user", BOB, "other"], 65, f"user '{BOB}' already exists")
    ok(ctx, "set_user_tags", BOB, "management", "monitoring")
    check(api(ctx, "GET", "/api/users/" + BOB)[1]["tags"] == ["management", "monitoring"],
          "tags not set")
    check(ok(ctx, "authenticate_user", BOB, "pw1").endswith("Success\n"), "authenticate")
    refused(ctx, ["authenticate_user", BOB, "bad"], 77, f"user '{BOB}' failed to authenticate")
    ok(ctx, "change_password", BOB, "pw2")
    check(api(ctx, "GET", "/api/whoami", user=BOB, password="pw2")[0] == 200, "new password")
    check(api(ctx, "GET", "/api/whoami", user=BOB, password="pw1")[0] == 401, "old password")
    check(api(ctx, "GET", "/api/users/" + BOB)[1]["tags"] == ["management", "monitoring"],
          "change_password lost the tags")
    ok(ctx, "set_user_tags", BOB, "management")  # keeps the password
    check(api(ctx, "GET", "/api/whoami", user=BOB, password="pw2")[0] == 200, "tags: password")
    lines = rows(ok(ctx, "list_users"))
    check(["user", "tags"] in lines and [BOB, "[management]"] in lines, f"list_users {lines}")
    j = json.loads(ok(ctx, "list_users", "--formatter", "json"))
    check({"user": BOB, "tags": ["management"]} in j, f"list_users json {j}")


def test_permissions(ctx):
    ok(ctx, "set_permissions", "-p", VH, BOB, "^bob-", ".*", ".*")
    status, p = api(ctx, "GET", f"/api/permissions/{q(VH)}/{BOB}")
    check(status == 200 and (p["configure"], p["write"], p["read"]) == ("^bob-", ".*", ".*"),
          f"permissions: {status} {p}")
    conn = amqp(ctx, VH, BOB, "pw2")
    conn.channel().queue_declare("bob-q")
    try:
        conn.channel().queue_declare("other-q")
        fail("configure permission not enforced")
    except pika.exceptions.ChannelClosedByBroker as e:
        check(e.reply_code == 403, f"reply {e.reply_code}")
    conn.close()
    lines = rows(ok(ctx, "list_user_permissions", BOB))
    check(lines == [["vhost", "configure", "write", "read"], [VH, "^bob-", ".*", ".*"]],
          f"list_user_permissions {lines}")
    if served(ctx, f"/api/vhosts/{q(VH)}/permissions", "list_permissions"):
        lines = rows(ok(ctx, "list_permissions", "-p", VH))
        check([BOB, "^bob-", ".*", ".*"] in lines, f"list_permissions {lines}")
    if served(ctx, "/api/topic-permissions", "set_topic_permissions, clear_topic_permissions"):
        ok(ctx, "set_topic_permissions", "-p", VH, BOB, "amq.topic", "^a", ".*")
        status, tp = api(ctx, "GET", f"/api/topic-permissions/{q(VH)}/{BOB}")
        check(status == 200 and [(t["exchange"], t["write"], t["read"]) for t in tp] ==
              [("amq.topic", "^a", ".*")], f"topic permissions: {status} {tp}")
        if served(ctx, f"/api/vhosts/{q(VH)}/topic-permissions", "list_topic_permissions"):
            lines = rows(ok(ctx, "list_topic_permissions", "-p", VH))
            check([BOB, "amq.topic", "^a", ".*"] in lines, f"list_topic_permissions {lines}")
        ok(ctx, "clear_topic_permissions", "-p", VH, BOB)
        check(api(ctx, "GET", f"/api/topic-permissions/{q(VH)}/{BOB}")[0] == 404, "cleared")
    ok(ctx, "clear_permissions", "-p", VH, BOB)
    check(api(ctx, "GET", f"/api/permissions/{q(VH)}/{BOB}")[0] == 404, "not cleared")
    check(amqp_refused(ctx, VH, BOB, "pw2"), "vhost access kept after clear_permissions")
    refused(ctx, ["clear_permissions", "-p", VH, BOB], 65, "was not found")


def test_entities(ctx):
    conn = amqp(ctx, VH)
    ch = conn.channel()
    ch.queue_declare("wq", durable=True)
    ch.exchange_declare("wx", "topic")
    ch.queue_bind("wq", "wx", "a.#")
    for _ in range(3):
        ch.basic_publish("", "wq", b"m")
    eventually("list_queues never showed wq with 3 messages", lambda: ["wq", "3", "true"] in
               rows(ok(ctx, "list_queues", "-p", VH, "name", "messages", "durable")))
    lines = rows(ok(ctx, "list_exchanges", "-p", VH))
    check(["name", "type"] in lines and ["wx", "topic"] in lines, f"list_exchanges {lines}")
    out = ok(ctx, "list_bindings", "-p", VH, "--formatter", "tsv", "-q")
    check("wx\texchange\twq\tqueue\ta.#\t{}" in out.splitlines(), f"list_bindings {out!r}")
    ok(ctx, "purge_queue", "-p", VH, "wq")
    check(ch.queue_declare("wq", passive=True).method.message_count == 0, "not purged")
    ok(ctx, "delete_queue", "-p", VH, "wq")
    try:
        ch.queue_declare("wq", passive=True)
        fail("delete_queue left the queue")
    except pika.exceptions.ChannelClosedByBroker as e:
        check(e.reply_code == 404, f"reply {e.reply_code}")
    refused(ctx, ["delete_queue", "-p", VH, "wq"], 65, f"queue 'wq' in vhost '{VH}' was not")
    conn.close()


def test_connections(ctx):
    if not served(ctx, "/api/connections", "list_connections, list_channels, list_consumers, "
                  "close_connection, close_all_connections"):
        return
    conn = amqp(ctx, VH)
    ch = conn.channel()
    ch.queue_declare("cq")
    ch.basic_consume("cq", lambda *a: None, consumer_tag="wctl-tag")

    def listed():
        return [r for r in rows(ok(ctx, "-q", "--no-table-headers", "list_connections", "name",
                                   "vhost", "user")) if r[1:] == [VH, "guest"]]
    eventually("list_connections never showed the connection", listed)
    name = listed()[0][0]
    eventually("list_channels", lambda: any(r[0].startswith(name) for r in
                                            rows(ok(ctx, "list_channels"))))
    eventually("list_consumers", lambda: any(r[0] == "cq" and r[2] == "wctl-tag" for r in
                                             rows(ok(ctx, "list_consumers", "-p", VH))))
    ok(ctx, "close_connection", name, "bye from warrenctl")
    try:
        for _ in range(50):
            conn.process_data_events(0.1)
        fail("close_connection did not close it")
    except pika.exceptions.ConnectionClosedByBroker as e:
        check(e.reply_code == 320 and "bye from warrenctl" in e.reply_text, f"{e}")
    conn = amqp(ctx, VH)
    eventually("second connection not listed", lambda: len(listed()) == 1)
    ok(ctx, "close_all_connections", "-p", VH, "all of them")
    try:
        for _ in range(50):
            conn.process_data_events(0.1)
        fail("close_all_connections did not close it")
    except pika.exceptions.ConnectionClosedByBroker as e:
        check(e.reply_code == 320, f"{e}")


def test_policies(ctx):
    if not served(ctx, "/api/policies/" + q(VH), "set_policy, clear_policy, list_policies, "
                  "set_operator_policy"):
        return
    ok(ctx, "set_policy", "-p", VH, "--priority", "3", "--apply-to", "queues", "lim", "^lim\\.",
       '{"max-length": 2}')
    status, p = api(ctx, "GET", f"/api/policies/{q(VH)}/lim")
    check(status == 200 and p["definition"] == {"max-length": 2} and p["priority"] == 3 and
          p["apply-to"] == "queues", f"policy {status} {p}")
    lines = rows(ok(ctx, "list_policies", "-p", VH))
    check([VH, "lim", "^lim\\.", "queues", '{"max-length":2}', "3"] in lines, f"{lines}")
    ok(ctx, "clear_policy", "-p", VH, "lim")
    check(api(ctx, "GET", f"/api/policies/{q(VH)}/lim")[0] == 404, "policy not cleared")
    ok(ctx, "set_operator_policy", "-p", VH, "op", "^x", '{"max-length": 100}')
    check(api(ctx, "GET", f"/api/operator-policies/{q(VH)}/op")[0] == 200, "operator policy")
    ok(ctx, "clear_operator_policy", "-p", VH, "op")
    refused(ctx, ["set_policy", "p", "^a", "notjson"], 64, "must be a JSON object")


def test_definitions(ctx):
    if not served(ctx, "/api/definitions", "export_definitions, import_definitions"):
        return
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "defs.json")
        ok(ctx, "export_definitions", path)
        with open(path) as f:
            defs = json.load(f)
        check({"name": VH} in [{"name": v["name"]} for v in defs["vhosts"]], "export: vhosts")
        check(json.loads(ok(ctx, "export_definitions", "-"))["vhosts"] == defs["vhosts"], "-")
    doc = {"vhosts": [{"name": VH + "-imported"}], "users": [], "permissions": []}
    ok(ctx, "import_definitions", "-", stdin=json.dumps(doc))
    check(api(ctx, "GET", "/api/vhosts/" + q(VH + "-imported"))[0] == 200, "import: vhost")
    ok(ctx, "delete_vhost", VH + "-imported")
    refused(ctx, ["import_definitions", "/nonexistent/defs.json"], 66, "cannot read")


def test_hash_password(ctx):
    if not served(ctx, "/api/auth/hash_password/x", "hash_password"):
        return
    out = ok(ctx, "-q", "hash_password", "s3cret").strip()
    check(len(base64.b64decode(out)) == 36, f"hash_password {out!r}")  # salt + SHA-256


def test_errors(ctx):
    dead = f"http://127.0.0.1:{free_port()}"
    refused(ctx, ["--url", dead, "list_vhosts"], 69,
            f"^warrenctl: cannot reach the management API at {re.escape(dead)}: ")
    refused(ctx, ["list_vhosts"], 69, "cannot reach", env={"WARRENCTL_URL": dead})
    refused(ctx, ["--password", "wrong", "list_vhosts"], 77,
            r"refused the credentials of user 'guest' \(401: Login failed\)")
    refused(ctx, ["list_users"], 77, "401", env={"WARRENCTL_PASSWORD": "wrong"})
    refused(ctx, ["--user", BOB, "--password", "pw2", "add_vhost", "nope"], 77,
            f"user '{BOB}' may not do this .*administrator")
    refused(ctx, ["delete_vhost", "wctl-no-such-vhost"], 65,
            "^warrenctl: vhost 'wctl-no-such-vhost' was not found")
    refused(ctx, ["delete_user", "wctl-no-such-user"], 65, "user 'wctl-no-such-user' was not")
    refused(ctx, ["list_queues", "-p", "wctl-no-such-vhost"], 65, "vhost 'wctl-no-such-vhost'")
    refused(ctx, ["add_user", "x"], 64, "usage: warrenctl .*add_user USER PASSWORD$")
    refused(ctx, ["no_such_verb"], 64, "unknown verb: no_such_verb; usage: warrenctl")
    refused(ctx, [], 64, "no verb given")
    refused(ctx, ["add_vhost", "--priority", "3", "v"], 64, "does not take --priority")
    refused(ctx, ["--formatter", "xml", "status"], 64, "--formatter must be")
    check("list_queues [-p VHOST]" in ok(ctx, "--help"), "--help lists the verbs")


def test_encryption_off(ctx):
    """Warren's own verbs against a broker without encryption.key_file: status says off, a
    rotation is refused (400), and only administrators may ask (401). The positive cases run in
    tests/integration/50-durability-encryption.c, which starts warrend with keys."""
    if not served(ctx, "/api/warren/encryption", "rotate_key, encryption_status"):
        return
    out = ok(ctx, "encryption_status")
    check("Encryption at rest: off" in out, f"encryption_status: {out!r}")
    j = json.loads(ok(ctx, "--formatter", "json", "encryption_status"))
    check(j.get("enabled") is False and j.get("state") == "off", f"encryption_status json: {j}")
    refused(ctx, ["rotate_key"], 65, r"400: encryption at rest is off: set encryption\.key_file")
    refused(ctx, ["--user", BOB, "--password", "pw2", "rotate_key"], 77, "administrator")
    refused(ctx, ["rotate_key", "--timeout", "soon"], 64, "--timeout must be a number")
    # ha_status on a broker without ha.mode (the shared case runs in tests/ha/ha_test.py).
    out = ok(ctx, "ha_status")
    check("Mode: none" in out, f"ha_status: {out!r}")


def cleanup(ctx):
    for path in ("/api/vhosts/" + q(VH), "/api/vhosts/" + q(ODD_VH),
                 "/api/vhosts/" + q(VH + "-imported"), "/api/users/" + BOB):
        api(ctx, "DELETE", path)


def run(broker):
    url = os.environ.get("WARRENCTL_TEST_URL") or f"http://127.0.0.1:{broker.mgmt_port}"
    ctx = Ctx(broker, url)
    try:
        for t in (test_status, test_vhosts, test_users, test_permissions, test_entities,
                  test_connections, test_policies, test_definitions, test_hash_password,
                  test_errors, test_encryption_off):
            t(ctx)
            print(f"ok {t.__name__}")
        ok(ctx, "delete_user", BOB)
        check(api(ctx, "GET", "/api/users/" + BOB)[0] == 404, "delete_user")
        ok(ctx, "delete_vhost", VH)
        check(amqp_refused(ctx, VH, "guest", "guest"), "delete_vhost left AMQP access")
    finally:
        cleanup(ctx)
    print(f"pending (endpoints the broker lacks): {len(PENDING)}: " + "; ".join(PENDING)
          if PENDING else "no verb pending")


def make_broker():
    port = free_port()
    b = Broker(["--management-port", str(port)], prefix="warren-warrenctl-")
    b.mgmt_port = port
    return b


def main():
    if not WARRENCTL or not os.access(WARRENCTL, os.X_OK):
        print("SKIP: WARRENCTL is not set (the warrenctl binary)")
        sys.exit(77)
    run_test(run, make_broker)


if __name__ == "__main__":
    main()
