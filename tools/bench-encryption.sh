#!/usr/bin/env bash
# tools/bench-encryption.sh — what encryption at rest costs (docs/benchmarks.md): persistent +
# confirms scenarios run with warren-perf against two fresh warrends on this machine, one
# without a key ("off") and one with encryption.key_file ("on"), in ABBA rounds so that drift of
# the machine falls on both alike. Prints a side-by-side table of each one's best run per
# scenario, with the broker's CPU time per 100,000 messages (utime + stime from /proc/PID/stat
# over the run), which shows the sealing cost even where fsync bounds the rate. Owns its two
# warrends, their data directories and the key file (all in one temp dir, removed at the end).
#
# Usage: tools/bench-encryption.sh [SECONDS]   (per scenario, default 5)
#   ROUNDS                 rounds of both (default 2)
#   WARREND, WARREN_PERF   binaries (default build/broker/warrend, build/tools/warren-perf)
#   PORT                   port of the "off" warrend; "on" gets PORT+1 (default 5996)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
ROUNDS=${ROUNDS:-2}
WARREND=${WARREND:-build/broker/warrend}
export WARREN_PERF=${WARREN_PERF:-build/tools/warren-perf}
# shellcheck source=tools/bench-lib.sh
. tools/bench-lib.sh
bench_find_perf bench-encryption.sh
PORT=${PORT:-5996}
DIR=$(mktemp -d /tmp/warren-bench-XXXXXX)
pid_off="" pid_on=""
cleanup() {
    for p in $pid_off $pid_on; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

head -c 32 /dev/urandom > "$DIR/key"
chmod 600 "$DIR/key"
printf 'management.tcp.port = none\nprometheus.tcp.port = none\n' > "$DIR/off.conf"
{ cat "$DIR/off.conf"; printf 'encryption.key_file = %s\n' "$DIR/key"; } > "$DIR/on.conf"

start() { # variant port
    "$WARREND" --config "$DIR/$1.conf" --port "$2" --bind 127.0.0.1 --data-dir "$DIR/$1-data" \
        --log-level warn 2>>"$DIR/$1.log" &
    eval "pid_$1=$!"
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
        sleep 0.01
    done
    echo "bench-encryption.sh: warrend ($1) did not start: $(cat "$DIR/$1.log")" >&2
    exit 1
}
start off "$PORT"
start on $((PORT + 1))

# name|flags — bench.sh's persistent + confirms row first, then more publishers and queues,
# large bodies (the cipher's cost grows with bytes), and a queue that only grows (every message
# is written and stays on disk: no ack deletes it in the same commit).
SCENARIOS=(
    "1p/1c 1 KiB, persistent + confirms, durable queue|-x 1 -y 1 -s 1024 -f -c 100 -q 100"
    "4p/4c 1 KiB, persistent + confirms, 4 queues|-x 4 -y 4 -s 1024 -f -c 100 -q 100 --queues 4"
    "1p/1c 64 KiB, persistent + confirms, durable queue|-x 1 -y 1 -s 65536 -f -c 100 -q 100"
    "1p/0c 1 KiB, persistent + confirms, queue grows|-x 1 -y 0 -s 1024 -f -c 100"
)

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

run() { # variant round
    local port=$PORT pid=$pid_off i=0
    if [ "$1" = on ]; then port=$((PORT + 1)) pid=$pid_on; fi
    for sc in "${SCENARIOS[@]}"; do
        local name=${sc%%|*} flags=${sc#*|} t0 t1
        i=$((i + 1))
        echo "bench-encryption.sh: round $2, $1, $name" >&2
        t0=$(ticks "$pid")
        # shellcheck disable=SC2086 # flags is a word list on purpose
        "$PERF" --host 127.0.0.1 --port "$port" --json --quiet --label "$name" -z "$SECS" \
            $flags > "$DIR/$1-$2-$i.json"
        t1=$(ticks "$pid")
        echo $((t1 - t0)) > "$DIR/$1-$2-$i.ticks"
        sleep 1
    done
}
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then order="off on"; else order="on off"; fi
    for v in $order; do run "$v" "$r"; done
done

python3 - "$DIR" "$ROUNDS" "${#SCENARIOS[@]}" "$(getconf CLK_TCK)" <<'PY'
import json, sys
d, rounds, n, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def load(v, r, i):
    res = json.load(open(f"{d}/{v}-{r}-{i}.json"))
    res["cpu_s"] = int(open(f"{d}/{v}-{r}-{i}.ticks").read()) / hz
    return res
runs = {v: [[load(v, r, i) for i in range(1, n + 1)] for r in range(1, rounds + 1)]
        for v in ("off", "on")}
def best(v, i):  # the run with the highest rate the broker sustained (confirms for 0 consumers)
    key = lambda res: res["recv_rate"] or res["confirm_rate"]
    return max((runs[v][r][i] for r in range(rounds)), key=key)
def rate(res):
    return res["recv_rate"] or res["confirm_rate"]
def cpu100k(res):
    msgs = res["received"] or res["confirmed"]
    return f"{res['cpu_s'] / msgs * 1e5:.2f}" if msgs else "-"
def spread(v, i):
    vals = [rate(runs[v][r][i]) for r in range(rounds)]
    return f"{(max(vals) - min(vals)) / max(vals) * 100:.1f}%" if max(vals) else "-"
def lat(res, k):
    l = res.get("confirm_latency_ms") or {}
    return f"{l.get(k, 0):.2f}" if l.get("samples") else "-"
print(f"Best of {rounds} runs each (ABBA order), two fresh warrends, same flags:")
print()
print("| scenario | off msg/s | on msg/s | change | off confirm p50 / p99 ms | "
      "on confirm p50 / p99 ms | off CPU s / 100k msgs | on CPU s / 100k msgs | "
      "off runs apart | on runs apart |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for i in range(n):
    a, b = best("off", i), best("on", i)
    ch = f"{(rate(b) - rate(a)) / rate(a) * 100:+.1f}%" if rate(a) else "-"
    print(f"| {a['label']} | {rate(a):,.0f} | {rate(b):,.0f} | {ch} | "
          f"{lat(a, 'p50')} / {lat(a, 'p99')} | {lat(b, 'p50')} / {lat(b, 'p99')} | "
          f"{cpu100k(a)} | {cpu100k(b)} | {spread('off', i)} | {spread('on', i)} |")
PY
