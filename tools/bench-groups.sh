#!/usr/bin/env bash
# tools/bench-groups.sh — what x-message-groups costs a queue (issue 14, docs/benchmarks.md
# "Message groups"): one warrend; warren-perf with 1 producer and 4 consumers (prefetch 100,
# manual acks) on one queue through the default exchange, each publish carrying the header
# x-group-id = "t<i>", i cycling over 0..N-1 (N = 10,000 groups); first a plain queue (the
# header is there but means nothing), then a queue declared with x-message-groups = true; then
# both again with persistent messages on durable queues (-f). Prints msg/s for each.
# Owns its temporary directory and the warrend it starts.
#
# Usage: tools/bench-groups.sh [SECONDS] [GROUPS]   (default 10 s, 10000 groups)
#   WARREND, WARREN_PERF   binaries (default build/broker/warrend, build/tools/warren-perf)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
GROUPS_N=${2:-10000}
WARREND=${WARREND:-build/broker/warrend}
PERF=${WARREN_PERF:-build/tools/warren-perf}
DIR=$(mktemp -d /tmp/warren-bench-groups-XXXXXX)
PORT=5996
pid=""
cleanup() { [ -n "$pid" ] && { kill "$pid"; wait "$pid"; } 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

"$WARREND" --data-dir "$DIR/data" --port "$PORT" --bind 127.0.0.1 --no-management \
    --no-prometheus 2>>"$DIR/warrend.log" &
pid=$!
for _ in $(seq 500); do listening "$PORT" && break; sleep 0.02; done

run() { # label, extra warren-perf options...
    local label=$1
    shift
    "$PERF" --port "$PORT" -x 1 -y 4 -q 100 -s 100 --no-declare-exchange \
        --queue-prefix "$label-" --header-values "$GROUPS_N" --header-key x-group-id \
        -z "$SECS" --json --quiet "$@" > "$DIR/r.json" 2>/dev/null || true
    read -r p d < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%d %d" % (d["sent_rate"], d["recv_rate"]))' "$DIR/r.json")
    printf '%-28s %12s %12s\n' "$label" "$p" "$d"
}

printf '%-28s %12s %12s\n' "queue ($GROUPS_N groups)" published/s delivered/s
run plain
run groups --queue-arg x-message-groups=true
run plain-persistent -f
run groups-persistent -f --queue-arg x-message-groups=true
