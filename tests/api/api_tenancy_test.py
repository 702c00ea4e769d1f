#!/usr/bin/python3
"""Management API, tenancy (issue 11): authentication (401 with WWW-Authenticate for missing or
wrong credentials; 401 not_authorised "Not management user" for a user without tags), access by
tag (management: only its vhosts; monitoring: every vhost's lists; administrator: writes; the
others 401 not_authorised), /api/whoami, /api/overview, /api/vhosts (PUT 201/204, GET, DELETE
204, 404 bodies), /api/users (PUT with a password or a password_hash + hashing_algorithm, tags as
a string or a list; the user then logs in over AMQP) and /api/permissions (PUT 201/204, then AMQP
access allowed and refused accordingly; DELETE). Expectations are RabbitMQ 3.10.8's answers.
Starts its own warrend, or uses WARREN_API_URL + WARREN_AMQP_PORT (see api_common.py).
Exit 0 pass, 1 fail, 77 skip."""
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_common import (  # noqa: E402
    LOGIN_FAILED, NO_VHOST_ACCESS, NOT_ADMIN, NOT_FOUND, NOT_MGMT, PREFIX, amqp, amqp_refused,
    channel_error, check, external, q, rabbit_sha256, run)

V_OWN = PREFIX + "own"      # the management user's vhost
V_OTHER = PREFIX + "other"  # a vhost it has no permissions in
U_PLAIN = PREFIX + "plain"  # no tags
U_MGMT = PREFIX + "mgmt"    # management
U_MON = PREFIX + "mon"      # monitoring (a list of tags)
U_HASH = PREFIX + "hash"    # created from a password_hash
PW = "s3cret-pw"


def test_authentication(api):
    for auth, what in (("none", "no credentials"), (("guest", "wrong"), "wrong password"),
                       ((PREFIX + "nobody", "x"), "unknown user")):
        r = api.get("/api/whoami", auth=auth)
        if r is None:
            continue
        check(r.status_code == 401, f"whoami with {what}: {r.status_code}, want 401")
        check(r.headers.get("WWW-Authenticate", "").startswith("Basic realm="),
              f"whoami with {what}: WWW-Authenticate {r.headers.get('WWW-Authenticate')!r}")
        if auth != "none":  # RabbitMQ sends no body without credentials
            check(r.json() == LOGIN_FAILED, f"whoami with {what}: {r.text!r}")
    api.expect("GET", "/api/whoami", 200, {"name": "guest", "tags": ["administrator"]})


def test_users(broker, api):
    api.expect("PUT", f"/api/users/{q(U_PLAIN)}", 201, {}, json={"password": PW, "tags": ""})
    api.expect("PUT", f"/api/users/{q(U_PLAIN)}", 204, {}, json={"password": PW, "tags": ""},
               what="again: updated")
    api.expect("PUT", f"/api/users/{q(U_MGMT)}", 201, json={"password": PW, "tags": "management"})
    api.expect("PUT", f"/api/users/{q(U_MON)}", 201, json={"password": PW,
                                                           "tags": ["monitoring"]})
    u = api.expect("GET", f"/api/users/{q(U_MON)}", 200)
    if u:
        check(u.get("name") == U_MON, f"user name {u.get('name')!r}")
        check(u.get("tags") == ["monitoring"], f"tags from a list: {u.get('tags')!r}")
        check(u.get("hashing_algorithm") == "rabbit_password_hashing_sha256",
              f"hashing_algorithm {u.get('hashing_algorithm')!r}")
        check(isinstance(u.get("password_hash"), str) and u["password_hash"],
              f"password_hash {u.get('password_hash')!r}")
        check(u.get("limits") == {}, f"limits {u.get('limits')!r}")
    u = api.expect("GET", f"/api/users/{q(U_MGMT)}", 200)
    check(u and u.get("tags") == ["management"], f"tags from a string: {u and u.get('tags')!r}")

    # password_hash + hashing_algorithm: the same hash comes back and the password logs in.
    h = rabbit_sha256(PW)
    api.expect("PUT", f"/api/users/{q(U_HASH)}", 201,
               json={"password_hash": h, "hashing_algorithm": "rabbit_password_hashing_sha256",
                     "tags": "management,monitoring"})
    u = api.expect("GET", f"/api/users/{q(U_HASH)}", 200)
    if u:
        check(u.get("password_hash") == h, f"password_hash {u.get('password_hash')!r}, want {h}")
        check(sorted(u.get("tags", [])) == ["management", "monitoring"],
              f"tags 'management,monitoring': {u.get('tags')!r}")
    names = [x.get("name") for x in api.expect("GET", "/api/users", 200) or []]
    for n in (U_PLAIN, U_MGMT, U_MON, U_HASH, "guest"):
        check(n in names, f"/api/users lacks {n}: {names}")

    api.expect("GET", f"/api/users/{q(PREFIX + 'nobody')}", 404, NOT_FOUND)
    api.expect("DELETE", f"/api/users/{q(PREFIX + 'nobody')}", 404, NOT_FOUND)

    # A user without tags logs in over AMQP but not into the API.
    api.expect("PUT", f"/api/permissions/%2F/{q(U_PLAIN)}", 201,
               json={"configure": "", "write": "", "read": ""})
    check(amqp_refused(broker, U_PLAIN, PW, "/") is None, "a user without tags: AMQP login")
    check(amqp_refused(broker, U_PLAIN, "wrong", "/") == "ProbableAuthenticationError",
          "a wrong password over AMQP is refused")
    api.expect("GET", "/api/whoami", 401, NOT_MGMT, auth=(U_PLAIN, PW), what="no tags")
    api.expect("GET", "/api/overview", 401, NOT_MGMT, auth=(U_PLAIN, PW), what="no tags")

    # The hashed user logs in over AMQP with the password behind the hash.
    api.expect("PUT", f"/api/permissions/%2F/{q(U_HASH)}", 201,
               json={"configure": ".*", "write": ".*", "read": ".*"})
    check(amqp_refused(broker, U_HASH, PW, "/") is None, "password_hash user: AMQP login")
    api.expect("GET", "/api/whoami", 200, auth=(U_HASH, PW), what="password_hash user")

    # Deleted: 204, then gone for the API and for AMQP.
    api.expect("DELETE", f"/api/users/{q(U_HASH)}", 204, {})
    api.expect("GET", f"/api/users/{q(U_HASH)}", 404, NOT_FOUND)
    check(amqp_refused(broker, U_HASH, PW, "/") == "ProbableAuthenticationError",
          "a deleted user cannot log in over AMQP")
    api.expect("GET", "/api/whoami", 401, LOGIN_FAILED, auth=(U_HASH, PW), what="deleted user")


def test_vhosts(broker, api):
    api.expect("PUT", f"/api/vhosts/{q(V_OWN)}", 201, {})
    api.expect("PUT", f"/api/vhosts/{q(V_OWN)}", 204, {}, json={"description": "the own vhost"},
               what="again: updated")
    api.expect("PUT", f"/api/vhosts/{q(V_OTHER)}", 201, {})
    v = api.expect("GET", f"/api/vhosts/{q(V_OWN)}", 200)
    if v:
        check(v.get("name") == V_OWN, f"vhost name {v.get('name')!r}")
        check(v.get("description") == "the own vhost", f"description {v.get('description')!r}")
        check(v.get("tags") == [], f"tags {v.get('tags')!r}")
        check(v.get("tracing") is False, f"tracing {v.get('tracing')!r}")
    names = [x.get("name") for x in api.expect("GET", "/api/vhosts", 200) or []]
    check({"/", V_OWN, V_OTHER} <= set(names), f"/api/vhosts: {names}")
    api.expect("GET", f"/api/vhosts/{q(PREFIX + 'none')}", 404, NOT_FOUND)
    api.expect("DELETE", f"/api/vhosts/{q(PREFIX + 'none')}", 404, NOT_FOUND)
    # The creating administrator gets full permissions on the new vhost; AMQP works there.
    api.expect("GET", f"/api/permissions/{q(V_OWN)}/guest", 200,
               {"user": "guest", "vhost": V_OWN, "configure": ".*", "write": ".*", "read": ".*"})
    conn = amqp(broker, vhost=V_OWN)
    ch = conn.channel()
    ch.queue_declare(queue=PREFIX + "q", durable=False, auto_delete=False)
    conn.close()
    v = api.expect("GET", f"/api/queues/{q(V_OWN)}/{q(PREFIX + 'q')}", 200)
    check(v and v.get("vhost") == V_OWN, "the queue declared over AMQP is in the new vhost")

    # A vhost deleted through the API is gone for AMQP (530 on opening it) with its queues.
    tmp = PREFIX + "tmp"
    api.expect("PUT", f"/api/vhosts/{q(tmp)}", 201, {})
    conn = amqp(broker, vhost=tmp)
    conn.channel().queue_declare(queue="in-tmp")
    conn.close()
    api.expect("DELETE", f"/api/vhosts/{q(tmp)}", 204, {})
    api.expect("GET", f"/api/vhosts/{q(tmp)}", 404, NOT_FOUND)
    api.expect("GET", f"/api/queues/{q(tmp)}/in-tmp", 404, NOT_FOUND)
    check(amqp_refused(broker, "guest", "guest", tmp) == "ProbableAccessDeniedError",
          "opening a deleted vhost over AMQP is refused (530)")


def test_permissions(broker, api):
    perm = {"configure": f"^{PREFIX}c", "write": ".*", "read": ".*"}
    api.expect("GET", f"/api/permissions/{q(V_OWN)}/{q(U_MGMT)}", 404, NOT_FOUND)
    check(amqp_refused(broker, U_MGMT, PW, V_OWN) == "ProbableAccessDeniedError",
          "no permissions yet: opening the vhost over AMQP is refused (530)")
    api.expect("PUT", f"/api/permissions/{q(V_OWN)}/{q(U_MGMT)}", 201, {}, json=perm)
    api.expect("PUT", f"/api/permissions/{q(V_OWN)}/{q(U_MGMT)}", 204, {}, json=perm,
               what="again: updated")
    want = {"user": U_MGMT, "vhost": V_OWN, **perm}
    api.expect("GET", f"/api/permissions/{q(V_OWN)}/{q(U_MGMT)}", 200, want)
    all_perms = api.expect("GET", "/api/permissions", 200) or []
    check(want in all_perms, f"/api/permissions lacks {want}")
    mine = api.expect("GET", f"/api/users/{q(U_MGMT)}/permissions", 200)
    check(mine == [want], f"/api/users/{U_MGMT}/permissions: {mine}")
    # Permissions on a vhost or for a user that does not exist: 400.
    body = {"error": "bad_request", "reason": "vhost_or_user_not_found"}
    api.expect("PUT", f"/api/permissions/{q(PREFIX + 'none')}/{q(U_MGMT)}", 400, body, json=perm)
    api.expect("PUT", f"/api/permissions/{q(V_OWN)}/{q(PREFIX + 'nobody')}", 400, body,
               json=perm)

    # Over AMQP: configure only on names matching ^PREFIX c.
    conn = amqp(broker, U_MGMT, PW, V_OWN)
    ch = conn.channel()
    ch.queue_declare(queue=PREFIX + "c-allowed", auto_delete=True)
    check(channel_error(lambda: ch.queue_declare(queue=PREFIX + "refused", auto_delete=True))
          == 403, "declaring a queue outside the configure pattern is refused (403)")
    conn.close()

    # Cleared: 204, then the vhost is closed to the user again.
    api.expect("DELETE", f"/api/permissions/{q(V_OWN)}/{q(U_MGMT)}", 204, {})
    api.expect("GET", f"/api/permissions/{q(V_OWN)}/{q(U_MGMT)}", 404, NOT_FOUND)
    check(amqp_refused(broker, U_MGMT, PW, V_OWN) == "ProbableAccessDeniedError",
          "permissions cleared: opening the vhost over AMQP is refused (530)")
    api.expect("PUT", f"/api/permissions/{q(V_OWN)}/{q(U_MGMT)}", 201, {}, json=perm)


def test_tags(broker, api):
    """What each tag may do. U_MGMT has permissions in V_OWN only; U_MON has none."""
    mgmt, mon = (U_MGMT, PW), (U_MON, PW)
    api.expect("GET", "/api/whoami", 200, {"name": U_MGMT, "tags": ["management"]}, auth=mgmt)
    api.expect("GET", "/api/whoami", 200, {"name": U_MON, "tags": ["monitoring"]}, auth=mon)
    # Queues in both vhosts, made by the administrator.
    for v in (V_OWN, V_OTHER):
        api.expect("PUT", f"/api/queues/{q(v)}/{q(PREFIX + 'c-q')}", 201, json={"durable": True})

    # management: its own vhosts only.
    names = [x.get("name") for x in api.expect("GET", "/api/vhosts", 200, auth=mgmt) or []]
    check(names == [V_OWN], f"management user's /api/vhosts: {names}, want [{V_OWN}]")
    api.eventually("/api/queues", lambda a: any(x["vhost"] == V_OWN for x in a),
                   "the management user sees the queue of its vhost", timeout=10)
    seen = {x.get("vhost") for x in api.expect("GET", "/api/queues", 200, auth=mgmt) or []}
    check(seen == {V_OWN}, f"management user's /api/queues covers vhosts {seen}")
    seen = {x.get("vhost") for x in api.expect("GET", "/api/exchanges", 200, auth=mgmt) or []}
    check(seen == {V_OWN}, f"management user's /api/exchanges covers vhosts {seen}")
    api.expect("GET", f"/api/queues/{q(V_OWN)}/{q(PREFIX + 'c-q')}", 200, auth=mgmt)
    for path in (f"/api/queues/{q(V_OTHER)}", f"/api/exchanges/{q(V_OTHER)}",
                 f"/api/queues/{q(V_OTHER)}/{q(PREFIX + 'c-q')}",
                 f"/api/exchanges/{q(V_OTHER)}/amq.direct", f"/api/bindings/{q(V_OTHER)}"):
        api.expect("GET", path, 401, NO_VHOST_ACCESS, auth=mgmt, what="another vhost")
    # RabbitMQ 3.10 answers a single vhost to administrators only, even the user's own.
    api.expect("GET", f"/api/vhosts/{q(V_OWN)}", 401, NOT_ADMIN, auth=mgmt)
    api.expect("GET", "/api/users", 401, NOT_ADMIN, auth=mgmt)
    api.expect("GET", f"/api/users/{q(U_MGMT)}", 401, NOT_ADMIN, auth=mgmt)
    api.expect("GET", "/api/permissions", 401, NOT_ADMIN, auth=mgmt)
    api.expect("PUT", f"/api/vhosts/{q(PREFIX + 'by-mgmt')}", 401, NOT_ADMIN, auth=mgmt, json={})
    api.expect("DELETE", f"/api/vhosts/{q(V_OTHER)}", 401, NOT_ADMIN, auth=mgmt)
    api.expect("PUT", f"/api/users/{q(PREFIX + 'by-mgmt')}", 401, NOT_ADMIN, auth=mgmt,
               json={"password": "x", "tags": "administrator"})
    api.expect("PUT", f"/api/permissions/{q(V_OTHER)}/{q(U_MGMT)}", 401, NOT_ADMIN, auth=mgmt,
               json={"configure": ".*", "write": ".*", "read": ".*"})
    # ... but may declare in its vhost within its permissions (configure ^PREFIX c).
    api.expect("PUT", f"/api/queues/{q(V_OWN)}/{q(PREFIX + 'c-by-mgmt')}", 201, auth=mgmt,
               json={"auto_delete": False, "durable": False})
    r = api.put(f"/api/queues/{q(V_OWN)}/{q(PREFIX + 'x-by-mgmt')}", {"durable": False},
                auth=mgmt)
    check(r is not None and r.status_code == 401 and r.json().get("error") == "not_authorised",
          f"declaring outside the configure pattern: {r is not None and (r.status_code, r.text)}")

    # monitoring: every vhost (the issue: "monitoring: read all vhosts"), no writes.
    names = [x.get("name") for x in api.expect("GET", "/api/vhosts", 200, auth=mon) or []]
    check({"/", V_OWN, V_OTHER} <= set(names), f"monitoring user's /api/vhosts: {names}")
    ov = api.expect("GET", "/api/overview", 200, auth=mon) or {}
    check("object_totals" in ov, f"monitoring user's overview: {sorted(ov)}")
    if not external():
        # RabbitMQ 3.10 lists only the queues and exchanges of the vhosts a monitoring user has
        # permissions in, and answers 401 "User not authorised to access virtual host" in the
        # others; the issue asks for every vhost, as warrend does.
        seen = {x.get("vhost") for x in api.expect("GET", "/api/queues", 200, auth=mon) or []}
        check({V_OWN, V_OTHER} <= seen, f"monitoring user's /api/queues covers vhosts {seen}")
        seen = {x.get("vhost") for x in api.expect("GET", "/api/exchanges", 200, auth=mon) or []}
        check({"/", V_OWN, V_OTHER} <= seen, f"monitoring user's /api/exchanges covers {seen}")
        api.expect("GET", f"/api/queues/{q(V_OTHER)}/{q(PREFIX + 'c-q')}", 200, auth=mon)
    api.expect("GET", "/api/users", 401, NOT_ADMIN, auth=mon)
    api.expect("PUT", f"/api/vhosts/{q(PREFIX + 'by-mon')}", 401, NOT_ADMIN, auth=mon, json={})
    # Writes in a vhost without permissions: 401 not_authorised (RabbitMQ's reason is
    # "User not authorised to access virtual host", warrend's the configure refusal).
    for method, path in (("PUT", f"/api/queues/{q(V_OTHER)}/{q(PREFIX + 'c-by-mon')}"),
                         ("DELETE", f"/api/queues/{q(V_OTHER)}/{q(PREFIX + 'c-q')}")):
        got = api.expect(method, path, 401, auth=mon, json={"durable": False},
                         what="monitoring, no permissions in the vhost")
        check(got and got.get("error") == "not_authorised", f"{method} {path}: {got}")
    api.expect("GET", f"/api/queues/{q(V_OTHER)}/{q(PREFIX + 'c-q')}", 200)  # still there


def test_overview(api):
    ov = api.expect("GET", "/api/overview", 200) or {}
    for k in ("management_version", "rabbitmq_version", "node", "cluster_name",
              "object_totals"):
        check(k in ov, f"/api/overview lacks {k}: {sorted(ov)}")
    tot = ov.get("object_totals", {})
    for k in ("queues", "exchanges"):
        check(isinstance(tot.get(k), int) and tot[k] > 0, f"object_totals.{k} = {tot.get(k)!r}")


def main(broker, api):
    test_authentication(api)
    test_users(broker, api)
    test_vhosts(broker, api)
    test_permissions(broker, api)
    test_tags(broker, api)
    test_overview(api)


def cleanup(api):
    for v in (V_OWN, V_OTHER, PREFIX + "tmp", PREFIX + "by-mgmt", PREFIX + "by-mon"):
        api.delete(f"/api/vhosts/{q(v)}")
    for u in (U_PLAIN, U_MGMT, U_MON, U_HASH, PREFIX + "by-mgmt"):
        api.delete(f"/api/users/{q(u)}")


if __name__ == "__main__":
    run(main, cleanup)
