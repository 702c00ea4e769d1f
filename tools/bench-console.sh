#!/usr/bin/env bash
# tools/bench-console.sh — what the web console costs the broker (issue 15, docs/benchmarks.md):
# one release warrend; N durable queues made by one POST /api/definitions; then, over one
# keep-alive HTTP connection (as a browser tab), the requests the console makes, each repeated
# and timed: the page itself revalidated (304) and fetched whole, the overview poll, and the
# queues table's page of 50 unsorted, filtered by a regex, and sorted by depth. Prints requests/s
# and the median and p95 latency of each. Owns its temporary directory and the warrend it starts.
#
# Usage: tools/bench-console.sh [N]   (default 100000 queues)
#   WARREND   binary (default build/broker/warrend)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
WARREND=${WARREND:-build/broker/warrend}
DIR=$(mktemp -d /tmp/warren-bench-console-XXXXXX)
PORT=5998
MPORT=15998
pid=""
cleanup() { [ -n "$pid" ] && { kill "$pid"; wait "$pid"; } 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

"$WARREND" --data-dir "$DIR/data" --port "$PORT" --bind 127.0.0.1 --management-port "$MPORT" \
    --no-prometheus --sync none 2>>"$DIR/warrend.log" &
pid=$!
for _ in $(seq 500); do listening "$MPORT" && break; sleep 0.02; done
/usr/bin/python3 - "$MPORT" "$N" <<'PY'
import base64, http.client, json, re, statistics, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
auth = "Basic " + base64.b64encode(b"guest:guest").decode()
hd = {"Authorization": auth, "X-Requested-With": "XMLHttpRequest"}
c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

def req(method, path, body=None, headers=None):
    c.request(method, path, body=body, headers=dict(hd, **(headers or {})))
    r = c.getresponse()
    data = r.read()
    return r.status, r.getheader("ETag"), data

defs = {"queues": [{"name": f"q-{i}", "vhost": "/", "durable": True, "auto_delete": False,
                    "arguments": {}} for i in range(n)]}
t0 = time.monotonic()
st, _, _ = req("POST", "/api/definitions", json.dumps(defs), {"Content-Type": "application/json"})
print(f"{n} queues imported in {time.monotonic() - t0:.1f} s (status {st})")
st, etag, page = req("GET", "/")
js = re.search(rb"console\.js\?v=[0-9a-f]+", page).group(0).decode()
cases = [
    ("GET / (304, If-None-Match)", "/", {"If-None-Match": etag}, 2000),
    ("GET /" + js + " (200)", "/" + js, None, 500),
    ("GET /api/overview", "/api/overview", None, 200),
    ("GET /api/queues?page=1&page_size=50", "/api/queues?page=1&page_size=50", None, 20),
    ("... &name=^q-9999&use_regex=true", "/api/queues?page=1&page_size=50&name=%5Eq-9999&use_regex=true", None, 20),
    ("... &sort=messages&sort_reverse=true", "/api/queues?page=1&page_size=50&sort=messages&sort_reverse=true", None, 5),
]
print(f"{'request':58} {'status':>6} {'bytes':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}")
for name, path, extra, k in cases:
    lat = []
    for _ in range(k):
        t = time.perf_counter()
        st, _, body = req("GET", path, None, extra)
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))]
    print(f"{name:58} {st:>6} {len(body):>8} {k / (sum(lat) / 1000):>8.0f} "
          f"{statistics.median(lat):>8.2f} {p95:>8.2f}")
PY
echo "warrend peak RSS: $(awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' /proc/$pid/status)"
