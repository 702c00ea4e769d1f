#!/usr/bin/env bash
# tools/bench-permissions.sh — the cost of permission checks (docs/benchmarks.md): bench.sh's
# scenarios against one fresh warrend, first as guest (permissions ".*": never a regular
# expression), then as a user whose configure/write/read permissions are "^app-.*" (PCRE2 on
# every check that the cache does not answer), on the same exchange and queue names. Prints a
# side-by-side summary of each user's best runs.
#
# Usage: tools/bench-permissions.sh [SECONDS]   (per scenario, default 5)
#   ROUNDS                 rounds of both users (default 2)
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
# Rounds in ABBA order (guest, app, app, guest, ...), so that drift of the machine during the
# run falls on both alike; the summary takes each user's best run of every scenario.
ROUNDS=${ROUNDS:-2}
run() { # user label n
    local args="$names"
    [ "$1" = app ] && args="$names --user app --password test12"
    BENCH_SECONDS=$SECS BENCH_PID=$pid BENCH_JSON=$DIR/$1-$3.json BENCH_ARGS="$args" \
        tools/bench.sh 127.0.0.1 "$PORT" "$2" > "$DIR/$1-$3.md"
}
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then order="guest app"; else order="app guest"; fi
    for u in $order; do
        echo "bench-permissions.sh: round $r, $u" >&2
        if [ "$u" = guest ]; then run guest "guest (permissions .*)" "$r"
        else run app "app (permissions ^app-.*)" "$r"; fi
    done
done

python3 - "$DIR" "$ROUNDS" <<'PY'
import json, sys
d, rounds = sys.argv[1], int(sys.argv[2])
runs = {u: [json.load(open(f"{d}/{u}-{r}.json")) for r in range(1, rounds + 1)]
        for u in ("guest", "app")}
def best(u, i, key):
    return max((r["scenarios"][i]["result"] or {}).get(key, 0) for r in runs[u])
print(f"Best of {rounds} runs each (ABBA order), one warrend, same names:")
print()
def spread(u, i):  # how far one user's own runs are apart: the noise to judge a change by
    v = [(r["scenarios"][i]["result"] or {}).get("recv_rate", 0) for r in runs[u]]
    return f"{(max(v) - min(v)) / max(v) * 100:.1f}%" if max(v) else "-"
print("| scenario | guest sent/s | app sent/s | guest recv/s | app recv/s | recv change | "
      "guest runs apart | app runs apart |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for i, sc in enumerate(runs["guest"][0]["scenarios"]):
    gs, as_ = best("guest", i, "sent_rate"), best("app", i, "sent_rate")
    gr, ar = best("guest", i, "recv_rate"), best("app", i, "recv_rate")
    ch = f"{(ar - gr) / gr * 100:+.1f}%" if gr else "-"
    print(f"| {sc['name']} | {gs:,.0f} | {as_:,.0f} | {gr:,.0f} | {ar:,.0f} | {ch} | "
          f"{spread('guest', i)} | {spread('app', i)} |")
PY
