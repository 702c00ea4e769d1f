#!/usr/bin/env bash
# tools/bench-ha-nolock.sh — what ha.mode = shared costs (docs/ha.md, docs/benchmarks.md): with
# it, LMDB runs with MDB_NOLOCK and each commit excludes the page-in reads of long queues (the
# storage's map lock), where without it readers and the writer run side by side. For each mode,
# one warrend on a fresh data directory: first PRODUCERS publish persistent messages with
# confirms to a queue that 1 consumer (manual acks) keeps empty, for RUN seconds; then a
# durable queue is filled for FILL seconds (far beyond what a queue keeps in memory), and the
# first scenario runs again while 2 other consumers drain that backlog, i.e. read it back from
# LMDB, at the same time. Two queues, so that flow control (which holds publishers back from a
# queue far ahead of its consumers) does not mix in. Prints the live queue's publish/confirm
# rates and the backlog's delivery rate per mode. Owns its temporary directory and the warrend
# it starts.
#
# Usage: tools/bench-ha-nolock.sh [FILL] [RUN] [PRODUCERS]   (default 10 s, 10 s, 2)
#   WARREND, WARREN_PERF   binaries (default build/broker/warrend, build/tools/warren-perf)
set -euo pipefail
cd "$(dirname "$0")/.."
FILL=${1:-10}
RUN=${2:-10}
PRODUCERS=${3:-2}
WARREND=${WARREND:-build/broker/warrend}
PERF=${WARREN_PERF:-build/tools/warren-perf}
DIR=$(mktemp -d /tmp/warren-bench-nolock-XXXXXX)
PORT=5993
pid=""
cleanup() { [ -n "$pid" ] && { kill -9 "$pid"; wait "$pid"; } 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start() { # start MODE(none|shared)
    rm -rf "$DIR/data"
    printf 'listeners.tcp.default = 127.0.0.1:%s\nmanagement.tcp.port = none\nprometheus.tcp.port = none\ndata_dir = %s/data\n' \
        "$PORT" "$DIR" > "$DIR/warren.conf"
    [ "$1" = shared ] && echo "ha.mode = shared" >> "$DIR/warren.conf"
    "$WARREND" --config "$DIR/warren.conf" 2>>"$DIR/warrend.log" &
    pid=$!
    for _ in $(seq 500); do listening "$PORT" && return 0; sleep 0.02; done
    echo "bench-ha-nolock.sh: warrend did not start; see its log:" >&2
    tail -5 "$DIR/warrend.log" >&2
    exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
rates() { # rates JSONFILE -> "published/s confirmed/s delivered/s"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%d %d %d" % (d.get("sent_rate", 0), d.get("confirm_rate", 0), d.get("recv_rate", 0)))' "$1"
}

printf '%-8s %-44s %12s %12s %12s\n' mode scenario published/s confirmed/s delivered/s
for mode in none shared; do
    start "$mode"
    "$PERF" --port "$PORT" -x "$PRODUCERS" -y 1 -s 100 -f -c 500 -q 500 -z "$RUN" \
        --queues 1 --queue-prefix live- --json --quiet > "$DIR/plain.json" 2>/dev/null
    read -r p c d < <(rates "$DIR/plain.json")
    printf '%-8s %-44s %12s %12s %12s\n' "$mode" "live queue: persistent+confirms, 1 consumer" "$p" "$c" "$d"
    "$PERF" --port "$PORT" -x "$PRODUCERS" -y 0 -s 100 -f -c 500 --queues 1 --keep -z "$FILL" \
        --queue-prefix backlog- --json --quiet > "$DIR/fill.json" 2>/dev/null
    stored=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("confirmed", 0))' "$DIR/fill.json")
    "$PERF" --port "$PORT" -x 0 -y 2 -s 100 -f -q 500 -z "$RUN" --queues 1 --keep \
        --queue-prefix backlog- --json --quiet > "$DIR/drain.json" 2>/dev/null &
    drain=$!
    "$PERF" --port "$PORT" -x "$PRODUCERS" -y 1 -s 100 -f -c 500 -q 500 -z "$RUN" \
        --queues 1 --queue-prefix live- --json --quiet > "$DIR/mixed.json" 2>/dev/null
    wait "$drain"
    read -r p c _ < <(rates "$DIR/mixed.json")
    read -r _ _ d < <(rates "$DIR/drain.json")
    printf '%-8s %-44s %12s %12s %12s\n' "$mode" "same, while 2 consumers drain $stored" "$p" "$c" "$d"
    stop
done
