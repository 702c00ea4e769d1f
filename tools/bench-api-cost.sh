#!/usr/bin/env bash
# tools/bench-api-cost.sh — what the management API and Prometheus endpoint cost messaging
# (docs/benchmarks.md): bench.sh's scenarios against a fresh warrend with both listeners (and
# their 5 s statistics sampler) and against one started with --no-management --no-prometheus,
# in ABBA rounds; a scraper polls /api/overview and /metrics once a second meanwhile, as a
# dashboard would. Prints each configuration's best run per scenario side by side.
#
# Usage: tools/bench-api-cost.sh [SECONDS]   (per scenario, default 5)
#   ROUNDS   rounds of both configurations (default 2)
#   WARREND, WARREN_PERF as for tools/bench-permissions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
ROUNDS=${ROUNDS:-2}
WARREND=${WARREND:-build/broker/warrend}
export WARREN_PERF=${WARREN_PERF:-build/tools/warren-perf}
PORT=${PORT:-5995} MPORT=${MPORT:-15995} PPORT=${PPORT:-15996}
DIR=$(mktemp -d /tmp/warren-bench-XXXXXX)
pid="" scraper=""
cleanup() {
    [ -n "$scraper" ] && kill "$scraper" 2>/dev/null
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT

run() { # label(on|off) round
    rm -rf "$DIR/data"
    if [ "$1" = on ]; then
        "$WARREND" --port "$PORT" --bind 127.0.0.1 --data-dir "$DIR/data" --log-level warn \
            --management-port "$MPORT" --prometheus-port "$PPORT" 2>>"$DIR/warrend.log" &
    else
        "$WARREND" --port "$PORT" --bind 127.0.0.1 --data-dir "$DIR/data" --log-level warn \
            --no-management --no-prometheus 2>>"$DIR/warrend.log" &
    fi
    pid=$!
    for _ in $(seq 200); do
        (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
        sleep 0.01
    done
    if [ "$1" = on ]; then
        (while :; do
            curl -s -u guest:guest -o /dev/null "http://127.0.0.1:$MPORT/api/overview"
            curl -s -o /dev/null "http://127.0.0.1:$PPORT/metrics"
            sleep 1
        done) &
        scraper=$!
    fi
    BENCH_SECONDS=$SECS BENCH_PID=$pid BENCH_JSON=$DIR/$1-$2.json \
        tools/bench.sh 127.0.0.1 "$PORT" "API $1" > "$DIR/$1-$2.md"
    if [ -n "$scraper" ]; then
        kill "$scraper" 2>/dev/null || true
        wait "$scraper" 2>/dev/null || true
    fi
    scraper=""
    kill "$pid"
    wait "$pid" || true
    pid=""
}
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then order="on off"; else order="off on"; fi
    for c in $order; do
        echo "bench-api-cost.sh: round $r, API $c" >&2
        run "$c" "$r"
    done
done

python3 - "$DIR" "$ROUNDS" <<'PY'
import json, sys
d, rounds = sys.argv[1], int(sys.argv[2])
runs = {c: [json.load(open(f"{d}/{c}-{r}.json")) for r in range(1, rounds + 1)] for c in ("on", "off")}
def best(c, i, key):
    return max((r["scenarios"][i]["result"] or {}).get(key, 0) for r in runs[c])
print(f"Best of {rounds} runs each (ABBA order); 'on' scraped once a second:")
print()
print("| scenario | API off recv/s | API on recv/s | change |")
print("| --- | ---: | ---: | ---: |")
for i, sc in enumerate(runs["on"][0]["scenarios"]):
    off, on = best("off", i, "recv_rate"), best("on", i, "recv_rate")
    ch = f"{(on - off) / off * 100:+.1f}%" if off else "-"
    print(f"| {sc['name']} | {off:,.0f} | {on:,.0f} | {ch} |")
PY
