#!/usr/bin/env bash
# tools/bench-groups.sh — what x-message-groups costs a queue (issue 14, docs/benchmarks.md
# "Message groups"): one warrend; warren-perf with 1 producer and 4 consumers (prefetch 100,
# manual acks) on one queue through the default exchange, each publish carrying the header
# x-group-id = "t<i>", i cycling over 0..N-1 (N = 10,000 groups); first a plain queue (the
# header is there but means nothing), then a queue declared with x-message-groups = true; then
# both again with persistent messages on durable queues (-f). Each scenario runs ROUNDS times,
# interleaved (the machine may be shared), and prints the median msg/s and the median CPU time
# warrend spent per delivered message (utime + stime from /proc, less sensitive to other load).
# Owns its temporary directory and the warrend it starts.
#
# With FIFO=1 two more scenarios run: SQS FIFO, a queue with x-message-groups and
# x-message-deduplication, each publish also carrying a unique x-deduplication-header
# (--dedup-ids), transient and persistent.
#
# Usage: [FIFO=1] tools/bench-groups.sh [SECONDS] [GROUPS] [ROUNDS]   (default 10 s, 10000 groups, 3)
#   WARREND, WARREN_PERF   binaries (default build/broker/warrend, build/tools/warren-perf)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
GROUPS_N=${2:-10000}
ROUNDS=${3:-3}
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

cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; } # clock ticks
TICK=$(getconf CLK_TCK)

run() { # label, extra warren-perf options...: appends "published delivered cpu-us/msg"
    local label=$1 c0 c1
    shift
    c0=$(cpu)
    "$PERF" --port "$PORT" -x 1 -y 4 -q 100 -s 100 --no-declare-exchange \
        --queue-prefix "$label-" --header-values "$GROUPS_N" --header-key x-group-id \
        -z "$SECS" --json --quiet --keep "$@" > "$DIR/r.json" 2>"$DIR/perf.err" ||
        { cat "$DIR/perf.err" >&2; tail -3 "$DIR/warrend.log" >&2; }
    c1=$(cpu)
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%d %d %.3f" % (d["sent_rate"], d["recv_rate"], (int(sys.argv[2]) / int(sys.argv[3])) * 1e6 / max(d["received"], 1)))' \
        "$DIR/r.json" "$((c1 - c0))" "$TICK" >> "$DIR/$label.txt"
}

for r in $(seq "$ROUNDS"); do
    run plain
    run groups --queue-arg x-message-groups=true
    run plain-persistent -f
    run groups-persistent -f --queue-arg x-message-groups=true
    [ -n "${FIFO:-}" ] || continue
    run fifo --dedup-ids --queue-arg x-message-groups=true --queue-arg x-message-deduplication=true
    run fifo-persistent -f --dedup-ids --queue-arg x-message-groups=true \
        --queue-arg x-message-deduplication=true
done
printf '%-20s %12s %12s %16s   (median of %s runs of %s s, %s groups)\n' queue published/s \
    delivered/s "warrend CPU us/msg" "$ROUNDS" "$SECS" "$GROUPS_N"
labels=(plain groups plain-persistent groups-persistent)
[ -z "${FIFO:-}" ] || labels+=(fifo fifo-persistent)
for label in "${labels[@]}"; do
    python3 - "$DIR/$label.txt" "$label" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
med = [statistics.median(c) for c in zip(*rows)]
runs = " ".join("%d" % r[1] for r in rows)
print("%-20s %12d %12d %16.3f   delivered/s per run: %s" % (sys.argv[2], med[0], med[1], med[2], runs))
PY
done
