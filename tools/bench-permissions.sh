#!/usr/bin/env bash
# tools/bench-permissions.sh — the cost of permission checks (docs/benchmarks.md): bench.sh's
# scenarios against one fresh warrend, first as guest (permissions ".*": never a regular
# expression), then as a user whose configure/write/read permissions are "^app-.*" (PCRE2 on
# every check that the cache does not answer), on the same exchange and queue names. Prints
# both tables and a side-by-side summary.
#
# Usage: tools/bench-permissions.sh [SECONDS]   (per scenario, default 5)
#   WARREND, WARREN_PERF   binaries (default build/broker/warrend, build/tools/warren-perf)
#   PORT                   port for the warrend it starts (default 5994)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
WARREND=${WARREND:-build/broker/warrend}
export WARREN_PERF=${WARREN_PERF:-build/tools/warren-perf}
PORT=${PORT:-5994}
DIR=$(mktemp -d /tmp/warren-bench-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT

# guest/guest and app/test12 (the sha256 hashes of RabbitMQ's documented vectors).
cat > "$DIR/defs.json" <<'JSON'
{"rabbit_version": "3.10.8",
 "users": [
  {"name": "guest", "password_hash": "7fnAj9EgdV6/07ENPgKnLKZggRBqFwke5yz6dPuJrML1Fqz6",
   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"]},
  {"name": "app", "password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR",
   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}],
 "vhosts": [{"name": "/"}],
 "permissions": [
  {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
  {"user": "app", "vhost": "/", "configure": "^app-.*", "write": "^app-.*", "read": "^app-.*"}]}
JSON

"$WARREND" --port "$PORT" --bind 127.0.0.1 --data-dir "$DIR/data" --log-level warn \
    --load-definitions "$DIR/defs.json" 2>>"$DIR/warrend.log" &
pid=$!
for _ in $(seq 200); do
    (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
    sleep 0.01
done

names="--exchange app-bench --queue-prefix app-bench"
BENCH_SECONDS=$SECS BENCH_PID=$pid BENCH_JSON=$DIR/guest.json BENCH_ARGS="$names" \
    tools/bench.sh 127.0.0.1 "$PORT" "guest (permissions .*)" | tee "$DIR/guest.md"
BENCH_SECONDS=$SECS BENCH_PID=$pid BENCH_JSON=$DIR/app.json \
    BENCH_ARGS="$names --user app --password test12" \
    tools/bench.sh 127.0.0.1 "$PORT" "app (permissions ^app-.*)" | tee "$DIR/app.md"

python3 - "$DIR/guest.json" "$DIR/app.json" <<'PY'
import json, sys
g, a = (json.load(open(p)) for p in sys.argv[1:3])
print("| scenario | guest sent/s | app sent/s | guest recv/s | app recv/s | recv change |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for sg, sa in zip(g["scenarios"], a["scenarios"]):
    rg, ra = sg["result"] or {}, sa["result"] or {}
    gr, ar = rg.get("recv_rate", 0), ra.get("recv_rate", 0)
    ch = f"{(ar - gr) / gr * 100:+.1f}%" if gr else "-"
    print(f"| {sg['name']} | {rg.get('sent_rate', 0):,.0f} | {ra.get('sent_rate', 0):,.0f} | "
          f"{gr:,.0f} | {ar:,.0f} | {ch} |")
PY
