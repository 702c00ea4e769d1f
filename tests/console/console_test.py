"""The web console (issue 15) in a real headless browser: Debian's chromium and chromium-driver
driven by python3-selenium against a warrend of its own (tests/interop/conf_broker.py), with
warren-perf publishing for the live chart. Checks what the person sees and what the broker then
holds (over the API and AMQP): log-in (a wrong password shows the console's message and raises
no dialog), the overview chart moving, a vhost and a user made, a queue declared and bound,
a message published from the exchange page and got back on the queue page, purge, unbind,
delete, definitions exported and imported, a connection closed, a management-only user kept
out of the admin pages, a narrow window and the dark scheme. The HTTP side (ETag, 304, caching,
the 401 without a challenge) is tests/api/api_console_test.py, which needs no browser.
Screenshots of each page go to $CONSOLE_SHOTS (meson: build-test/meson-logs/console/).
Exit 0 pass, 1 fail, 77 skip (no chromium, chromedriver, selenium or WARREND)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))

try:
    from selenium import webdriver
    from selenium.common.exceptions import (NoAlertPresentException, NoSuchElementException,
                                            StaleElementReferenceException, TimeoutException)
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:
    print("skip: python3-selenium is not installed")
    sys.exit(77)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not CHROMIUM or not DRIVER:
    print("skip: chromium or chromium-driver is not installed")
    sys.exit(77)
if not os.environ.get("WARREND"):
    print("skip: WARREND is not set")
    sys.exit(77)

from conf_broker import ConfBroker, check, finish  # noqa: E402
import requests  # noqa: E402  (conf_broker needs it too)

SHOTS = os.environ.get("CONSOLE_SHOTS") or tempfile.mkdtemp(prefix="console-shots-")
os.makedirs(SHOTS, exist_ok=True)
for old in os.listdir(SHOTS):  # this run's screenshots only
    if old.endswith(".png"):
        os.remove(os.path.join(SHOTS, old))


def perf_binary():
    """warren-perf next to warrend (build-test/broker/warrend -> build-test/tools/warren-perf)."""
    p = os.environ.get("WARREN_PERF")
    if p:
        return p
    root = os.path.dirname(os.path.dirname(os.path.abspath(os.environ["WARREND"])))
    return os.path.join(root, "tools", "warren-perf")


class Page:
    """The browser and the few moves every step makes."""

    def __init__(self, base):
        o = Options()
        for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                  "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                  "--proxy-server=direct://", "--host-resolver-rules=MAP * ~NOTFOUND, "
                  "EXCLUDE 127.0.0.1"]:  # no network but the broker: nothing from a CDN
            o.add_argument(a)
        o.binary_location = CHROMIUM
        o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.d = webdriver.Chrome(service=Service(DRIVER), options=o)
        self.d.set_page_load_timeout(20)
        self.base = base
        self.n = 0

    def go(self, hash_):
        """Opens a page and waits until its first load is in (the view sets data-ready), so
        that nothing moves under a click that follows."""
        url = self.base + "#" + hash_
        if self.d.current_url == url:  # no hashchange: the page shown is the one asked for
            self.d.refresh()
        else:
            self.d.execute_script("for (const e of document.querySelectorAll('main > div')) "
                                  "e.setAttribute('data-old', '')")
            self.d.get(url)
        self.wait(lambda: self.d.find_elements(By.CSS_SELECTOR,
                                               "main > div[data-ready]:not([data-old])"),
                  10, "the page " + hash_)

    def el(self, css, timeout=10):
        w = WebDriverWait(self.d, timeout)
        return w.until(lambda d: d.find_element(By.CSS_SELECTOR, css))

    def wait(self, cond, timeout=10, what=""):
        try:
            WebDriverWait(self.d, timeout, poll_frequency=0.2, ignored_exceptions=(
                StaleElementReferenceException, NoSuchElementException, IndexError)).until(
                    lambda d: cond())  # a table refreshed under the check: look again
            return True
        except TimeoutException:
            return check(False, f"timed out waiting for {what} (the page says {self.flash()!r})")
        except Exception as e:  # a stale element while the page refreshes: try again
            return check(False, f"waiting for {what}: {e}")

    def text(self, css):
        try:
            return self.d.find_element(By.CSS_SELECTOR, css).text
        except Exception:
            return ""

    def has_text(self, css, want, timeout=10):
        return self.wait(lambda: want in self.text(css), timeout, f"{want!r} in {css} "
                         f"(it shows {self.text(css)[:200]!r})")

    def type(self, css, value, clear=True):
        e = self.el(css)
        if clear:
            e.clear()
        e.send_keys(value)
        return e

    def click(self, css):
        e = self.el(css)
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", e)
        e.click()

    def open_panel(self, css):
        e = self.el(css)
        if not e.get_attribute("open"):
            self.d.execute_script("arguments[0].open = true", e)

    def flash(self):
        return self.text("#flash")

    def shot(self, name):
        self.n += 1
        path = os.path.join(SHOTS, f"{self.n:02d}-{name}.png")
        self.d.save_screenshot(path)
        return path

    def no_dialog(self):
        try:
            self.d.switch_to.alert.text
            return False
        except NoAlertPresentException:
            return True

    def js_errors(self):
        return [entry["message"] for entry in self.d.get_log("browser")
                if entry["level"] == "SEVERE" and "favicon" not in entry["message"]
                and "status of 40" not in entry["message"]]


def login(p, user, password, keyboard=False):
    p.go("/login")
    u = p.el("#login-user")
    if keyboard:  # the user field has the focus; then Tab and Enter only
        p.wait(lambda: p.d.switch_to.active_element == u, 5, "the user field has the focus")
        a = p.d.switch_to.active_element
        a.send_keys(user, Keys.TAB)
        p.d.switch_to.active_element.send_keys(password, Keys.ENTER)
    else:
        p.type("#login-user", user)
        p.type("#login-pass", password)
        p.click("#login-submit")


def main():
    d = tempfile.mkdtemp(prefix="warren-console-")
    b = ConfBroker(d, ["vm_memory_high_watermark.relative = 0.9"])
    p = None
    perf = None
    try:
        p = Page(f"http://127.0.0.1:{b.mport}/")

        # ---- log-in: wrong password, then right ----
        login(p, "guest", "wrong")
        p.has_text("#login-error", "wrong user name or password")
        check(p.no_dialog(), "a wrong password raised a browser dialog")
        check(p.el("#login-user").is_displayed(), "the log-in form is still there")
        check(not p.el("#top").is_displayed(), "no navigation before the log-in")
        p.shot("login-refused")
        b.api("PUT", "/api/users/plain", json={"password": "plain-pw", "tags": ""})
        login(p, "plain", "plain-pw")
        p.has_text("#login-error", "may not use the management console")
        check(p.no_dialog(), "a user without tags raised a browser dialog")
        login(p, "guest", "guest")
        p.wait(lambda: p.text("#who").startswith("guest"), 10, "logged in as guest")
        check(p.el("#nav-admin").is_displayed(), "Admin is shown to an administrator")

        # ---- overview: the chart moves while warren-perf publishes ----
        p.go("/")
        p.el("#totals .card")
        perf = subprocess.Popen([perf_binary(), "--port", str(b.port), "-x", "1", "-y", "1",
                                 "-r", "500", "-c", "50", "-z", "25", "--quiet",
                                 "--queue-prefix", "perf-console-"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def publish_rate():
            t = p.text('#chart-rates li[data-series="publish"] strong')
            try:
                return float(t.rstrip("/s").replace(",", ""))
            except ValueError:
                return 0.0

        def line(series):
            e = p.d.find_elements(By.CSS_SELECTOR, f'#chart-rates polyline[data-series="{series}"]')
            return e[0].get_attribute("points") if e else ""

        before = line("publish")
        p.wait(lambda: publish_rate() > 50, 20, "the publish rate in the chart legend")
        after = line("publish")
        check(after != before and len(after.split()) >= 2, f"the publish line moved: {after!r}")
        ys = [float(pt.split(",")[1]) for pt in after.split()]
        check(min(ys) < max(ys), f"the publish line rose from 0: {ys}")
        for s in ("deliver_get", "ack", "confirm"):
            check(len(line(s).split()) >= 2, f"the {s} line is drawn")
        p.wait(lambda: p.text('[data-total="connections"] .n') not in ("", "0"), 10,
               "connections counted")
        check("none" in p.text("#alarms"), f"no alarm shown: {p.text('#alarms')!r}")
        check("GiB" in p.text("#node") or "MiB" in p.text("#node"), "node memory and disk shown")
        p.shot("overview")

        # ---- connections and channels while perf runs ----
        p.go("/connections")
        p.wait(lambda: len(p.d.find_elements(By.CSS_SELECTOR, "#connections tbody tr a")) >= 2,
               10, "warren-perf's connections listed")
        p.shot("connections")
        p.go("/channels")
        p.wait(lambda: len(p.d.find_elements(By.CSS_SELECTOR, "#channels tbody tr a")) >= 2, 10,
               "warren-perf's channels listed")

        def channel_publish_rates():
            out = []
            for e in p.d.find_elements(By.CSS_SELECTOR, "#channels tbody tr td:nth-child(10)"):
                try:
                    out.append(float(e.text.rstrip("/s").replace(",", "")))
                except ValueError:
                    pass
            return out
        p.wait(lambda: any(r > 50 for r in channel_publish_rates()), 15,
               "a channel's publish rate (from two readings)")
        p.shot("channels")
        perf.wait(60)
        perf = None

        # ---- admin: a vhost and a user with a permission ----
        p.go("/admin/vhosts")
        p.open_panel("#add-vhost")
        p.type("#new-vhost-name", "console-vh")
        p.type("#new-vhost-description", "made in the browser")
        p.click("#new-vhost-submit")
        p.wait(lambda: p.d.find_elements(By.CSS_SELECTOR, '#vhosts tr[data-vhost="console-vh"]'),
               10, "the new vhost listed")
        check(b.api("GET", "/api/vhosts/console-vh").status_code == 200, "vhost made")
        p.shot("admin-vhosts")
        p.go("/admin/users")
        p.open_panel("#add-user")
        p.type("#new-user-name", "watcher")
        p.type("#new-user-pass", "watch-pw")
        p.type("#new-user-tags", "management")
        p.click("#new-user-submit")
        p.has_text("#users", "watcher")
        u = b.api("GET", "/api/users/watcher")
        check(u.status_code == 200 and u.json().get("tags") in (["management"], "management"),
              f"user made with its tag: {u.text}")
        p.go("/admin/users/watcher")
        p.open_panel("#user-perms + details")
        Select(p.el("#perm-vhost")).select_by_value("/")
        p.click("#perm-submit")
        p.has_text("#user-perms", "/")
        perms = b.api("GET", "/api/permissions/%2F/watcher")
        check(perms.status_code == 200 and perms.json().get("configure") == ".*",
              f"permission set: {perms.text}")
        p.shot("admin-user")
        p.go("/admin/permissions")
        p.has_text("#all-perms", "watcher")
        p.go("/admin/policies")
        p.open_panel("#add-policy")
        p.type("#policy-name", "console-limit")
        p.type("#policy-pattern", "^console-")
        p.type("#policy-definition", "max-length = 100")
        p.click("#policy-submit")
        p.has_text("#policies", "console-limit")
        p.shot("admin-policies")

        # ---- a queue, bound to amq.direct ----
        p.go("/queues")
        p.open_panel("#add-queue")
        p.type("#new-queue-name", "console-q")
        p.type("#new-queue-args", "x-max-length = 50")
        p.click("#new-queue-submit")
        p.wait(lambda: p.d.find_elements(By.LINK_TEXT, "console-q"), 10, "console-q listed")
        q = b.api("GET", "/api/queues/%2F/console-q")
        check(q.status_code == 200 and q.json()["arguments"] == {"x-max-length": 50},
              f"queue declared with its argument: {q.text}")
        p.type("#queues-filter", "^console-")
        p.click("#queues-regex")
        p.wait(lambda: "1 of" in p.text("#queues-count"), 10, "the regex filter keeps one queue")
        p.shot("queues")
        p.click("#queues a[href$='/console-q']")
        p.has_text("#queue-name", "console-q")
        p.has_text("#queue-stats", "console-limit")  # the effective policy
        p.open_panel("#queue-bindings + details")
        p.type("#bind-from", "amq.direct")
        p.type("#bind-key", "k1")
        p.click("#bind-submit")
        p.has_text("#queue-bindings", "amq.direct")
        bs = [x for x in b.api("GET", "/api/queues/%2F/console-q/bindings").json()
              if x["source"] == "amq.direct"]
        check(len(bs) == 1 and bs[0]["routing_key"] == "k1", f"binding made: {bs}")

        # ---- publish from the exchange page ----
        p.go("/exchanges/%2F/amq.direct")
        p.has_text("#exchange-bindings", "console-q")
        p.type("#pub-key", "k1")
        p.type("#pub-headers", "tenant = acme")
        p.type("#pub-props", "content_type = text/plain\nmessage_id = m-1")
        p.type("#pub-payload", "hello from the console")
        p.click("#pub-submit")
        p.has_text("#flash", "published and routed")
        p.type("#pub-key", "nobody-k", clear=True)
        p.click("#pub-submit")
        p.has_text("#flash", "not routed")
        p.shot("exchange")

        # ---- get it back on the queue page, then purge, unbind, delete ----
        p.go("/queues/%2F/console-q")
        p.wait(lambda: p.text('#queue-stats [data-total="ready"] .n') == "1", 15, "1 ready")
        p.open_panel("#get-messages")
        Select(p.el("#get-ackmode")).select_by_value("ack_requeue_true")
        p.click("#get-submit")
        p.has_text("#get-result", "hello from the console")
        res = p.text("#get-result")
        check("acme" in res and "m-1" in res and "amq.direct" in res,
              f"the message's header, properties and exchange shown: {res!r}")
        Select(p.el("#get-encoding")).select_by_value("base64")
        p.click("#get-submit")
        p.has_text("#get-result", "aGVsbG8gZnJvbSB0aGUgY29uc29sZQ==")
        p.shot("queue-get")
        check(b.api("GET", "/api/queues/%2F/console-q").json()["messages"] == 1,
              "requeued: the message is still there")
        p.open_panel("#publish")
        p.type("#pub-payload", "second")
        p.click("#pub-submit")
        p.has_text("#flash", "published and routed")
        p.wait(lambda: p.text('#queue-stats [data-total="ready"] .n') == "2", 15, "2 ready")
        p.click("#queue-purge")
        p.click("#queue-purge-confirm")
        p.has_text("#flash", "purged")
        p.wait(lambda: p.text('#queue-stats [data-total="ready"] .n') == "0", 15, "0 after purge")
        check(b.api("GET", "/api/queues/%2F/console-q").json()["messages"] == 0, "purged")
        unbind = [e for e in p.d.find_elements(By.CSS_SELECTOR, "#queue-bindings button")
                  if e.text == "Unbind"]
        check(len(unbind) == 1, "one binding to remove")
        if unbind:
            unbind[0].click()
            p.wait(lambda: "amq.direct" not in p.text("#queue-bindings"), 10, "unbound")
        p.click("#queue-delete")
        p.click("#queue-delete-confirm")
        p.wait(lambda: p.d.current_url.endswith("#/queues"), 10, "back on the queues page")
        p.has_text("#flash", "deleted")
        check(b.api("GET", "/api/queues/%2F/console-q").status_code == 404, "queue deleted")

        # ---- an API error in words ----
        p.go("/queues/%2F/no-such-queue")
        p.has_text("#queue-stats", "not found (HTTP 404")

        # ---- definitions: export, lose a vhost, import ----
        p.go("/admin/definitions")
        p.click("#defs-download")
        p.wait(lambda: p.el("#defs-text").get_attribute("value"), 10, "the export shown")
        exported = p.el("#defs-text").get_attribute("value")
        defs = json.loads(exported)
        check(any(v["name"] == "console-vh" for v in defs.get("vhosts", [])), "export has the vhost")
        check(any(u["name"] == "watcher" for u in defs.get("users", [])), "export has the user")
        p.shot("definitions")
        check(b.api("DELETE", "/api/vhosts/console-vh").status_code == 204, "vhost removed")
        path = os.path.join(d, "defs.json")
        with open(path, "w") as f:
            f.write(exported)
        p.el("#defs-file").send_keys(path)
        p.click("#defs-upload")
        p.has_text("#flash", "Definitions imported")
        check(b.api("GET", "/api/vhosts/console-vh").status_code == 200, "vhost back by import")
        bad = os.path.join(d, "bad.json")
        with open(bad, "w") as f:
            f.write("{not json")
        p.el("#defs-file").send_keys(bad)
        p.click("#defs-upload")
        p.has_text("#flash", "is not JSON")

        # ---- close a connection ----
        conn = b.connect()
        p.go("/connections")
        p.wait(lambda: p.d.find_elements(By.CSS_SELECTOR, "#connections tbody tr a"), 15,
               "the pika connection listed")
        p.click("#connections tbody tr a")
        p.has_text("main", "Client properties")
        check("pika" in p.text("main").lower(), "pika's client properties shown")
        p.shot("connection")
        p.type("#close-reason", "closed by the console test")
        p.click("#connection-close")
        p.click("#connection-close-confirm")
        p.has_text("#flash", "closed")
        closed = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not closed:
            try:
                conn.process_data_events(0.2)
            except Exception as e:
                closed = "closed by the console test" in str(e) or "320" in str(e)
                break
        check(closed, "pika saw the close with the reason")

        # ---- paging and sorting on the broker: 120 queues, 50 a page ----
        bulk = {"queues": [{"name": f"bulk-{i:03d}", "vhost": "/", "durable": True,
                            "auto_delete": False, "arguments": {}} for i in range(120)]}
        check(b.api("POST", "/api/definitions", json=bulk).status_code in (200, 201, 204),
              "120 queues imported")
        p.go("/queues")
        p.el("#queues-filter").clear()
        p.type("#queues-filter", "bulk-")
        p.click("#queues-regex")  # off: a substring
        p.wait(lambda: "120 of" in p.text("#queues-count"), 10, "120 queues match")
        Select(p.el('select[aria-label="Rows per page"]')).select_by_value("50")
        p.has_text("#queues-page", "Page 1 of 3")
        p.click('#queues th[data-key="name"] button')
        p.wait(lambda: p.d.find_elements(By.CSS_SELECTOR, "#queues tbody tr td:nth-child(2)")[0]
               .text == "bulk-000", 10, "sorted by name")
        p.click('#queues th[data-key="name"] button')  # again: reversed
        p.wait(lambda: p.d.find_elements(By.CSS_SELECTOR, "#queues tbody tr td:nth-child(2)")[0]
               .text == "bulk-119", 10, "sorted by name, reversed")
        p.click(".pager button:last-of-type")
        p.has_text("#queues-page", "Page 2 of 3")
        rows = p.d.find_elements(By.CSS_SELECTOR, "#queues tbody tr td:nth-child(2)")
        check(len(rows) == 50 and rows[0].text == "bulk-069", f"page 2 begins with bulk-069: "
              f"{rows[0].text if rows else None}")
        p.shot("queues-paged")
        p.el("#queues-filter").clear()
        p.el("#queues-filter").send_keys(" ", Keys.BACKSPACE)
        for i in range(120):
            b.api("DELETE", f"/api/queues/%2F/bulk-{i:03d}")

        # ---- narrow window and dark scheme ----
        for n in ("orders", "invoices", "audit-log"):
            b.api("PUT", f"/api/queues/%2F/{n}", json={"durable": True})
        p.d.set_window_size(390, 900)
        p.go("/queues")
        p.type("#queues-filter", "")  # back to every queue (the filter is kept per session)
        p.el("#queues-filter").send_keys(" ", Keys.BACKSPACE)
        p.el("#queues tbody tr")
        time.sleep(0.5)
        width = p.d.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        check(width[0] <= width[1] + 1, f"narrow window: nothing wider than the window: {width}")
        p.shot("narrow-queues")
        p.d.set_window_size(1280, 1000)
        light = p.d.execute_script("return getComputedStyle(document.body).backgroundColor")
        p.d.execute_cdp_cmd("Emulation.setEmulatedMedia",
                            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        p.go("/")
        p.el("#totals .card")
        dark = p.d.execute_script("return getComputedStyle(document.body).backgroundColor")
        check(light != dark, f"dark scheme changes the page: {light} / {dark}")
        time.sleep(0.5)
        p.shot("overview-dark")
        p.d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})

        # ---- log out; the management-only user, logged in by keyboard, sees no admin ----
        p.click("#logout")
        p.wait(lambda: p.d.find_elements(By.CSS_SELECTOR, "#login-user"), 10, "log-in page")
        p.has_text("#flash", "logged out")
        login(p, "watcher", "watch-pw", keyboard=True)
        p.wait(lambda: p.text("#who").startswith("watcher"), 10, "logged in as watcher")
        check(not p.el("#nav-admin").is_displayed(), "no Admin link for a management user")
        p.go("/admin/users")
        p.has_text("#not-admin", "administrators")
        check(not p.d.find_elements(By.CSS_SELECTOR, "#users"), "no users table for watcher")
        p.shot("management-user-admin")
        r = requests.get(f"http://127.0.0.1:{b.mport}/api/users", auth=("watcher", "watch-pw"),
                         headers={"X-Requested-With": "XMLHttpRequest"}, timeout=10)
        check(r.status_code == 401 and "WWW-Authenticate" not in r.headers,
              f"the API refuses watcher the users: {r.status_code} {r.headers}")
        p.go("/queues")
        p.el("#queues")
        p.click("#logout")

        errors = p.js_errors()
        check(not errors, f"no JavaScript errors: {errors}")
        print(f"screenshots in {SHOTS}")
    finally:
        if perf:
            perf.kill()
            perf.wait()
        if p:
            p.d.quit()
        check(b.stop(), "warrend stopped cleanly")
        shutil.rmtree(d, ignore_errors=True)
    return finish("console")


if __name__ == "__main__":
    sys.exit(main())
