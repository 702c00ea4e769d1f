#!/usr/bin/env bash
# tools/bench-dedup.sh — what message deduplication costs (issue 14, docs/benchmarks.md
# "Deduplication"). One warrend per part, release build.
#   1. throughput, 1 producer and 1 consumer, 100-byte bodies, each case SECONDS long:
#      a fanout exchange; an x-message-deduplication exchange with a unique
#      x-deduplication-header per message (warren-perf --dedup-ids: every publish is a cache
#      miss and an insert, and once the cache is full an eviction); a fanout exchange into a
#      queue with x-content-based-deduplication (the SHA-256 of every body); the same pairs
#      persistent and durable (-f; the dedup exchange's cache then lives in LMDB too).
#   2. memory: a fresh warrend, an x-message-deduplication exchange with x-cache-size
#      CACHE, unique ids published for 3 x SECONDS while the consumer drains the queue; warrend's
#      RSS sampled every 2 s stays flat once the cache is full, however many ids go by.
# Owns its temporary directory and the warrend processes it starts.
#
# Usage: tools/bench-dedup.sh [SECONDS] [CACHE]   (default 10 s, 100000 entries)
#   WARREND, WARREN_PERF   binaries (default build/broker/warrend, build/tools/warren-perf)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
CACHE=${2:-100000}
WARREND=${WARREND:-build/broker/warrend}
PERF=${WARREN_PERF:-build/tools/warren-perf}
DIR=$(mktemp -d /tmp/warren-bench-dedup-XXXXXX)
PORT=5996
pid=""
stop() { [ -n "$pid" ] && { kill "$pid"; wait "$pid"; } 2>/dev/null; pid=""; }
cleanup() { stop; rm -rf "$DIR"; }
trap cleanup EXIT
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start() {
    rm -rf "$DIR/data"
    "$WARREND" --data-dir "$DIR/data" --port "$PORT" --bind 127.0.0.1 --no-management \
        --no-prometheus 2>>"$DIR/warrend.log" &
    pid=$!
    for _ in $(seq 500); do listening "$PORT" && break; sleep 0.02; done
}
rate() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%d %d" % (d["sent_rate"], d["recv_rate"]))' "$1"; }
run() { # label, warren-perf arguments...
    local label=$1
    shift
    "$PERF" --port "$PORT" -x 1 -y 1 -s 100 -z "$SECS" --json --quiet "$@" > "$DIR/r.json" \
        2>/dev/null || true
    read -r p d < <(rate "$DIR/r.json")
    printf '%-52s %12s %12s\n' "$label" "$p" "$d"
}
content_queue() { # declares queue $1 with x-content-based-deduplication (durable when $2 = 1)
    /usr/bin/python3 - "$PORT" "$1" "$2" <<'PY'
import sys
import pika
port, name, durable = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
c.channel().queue_declare(name, durable=durable,
                          arguments={"x-content-based-deduplication": True})
c.close()
PY
}

start
printf '%-52s %12s %12s\n' case published/s delivered/s
run "fanout" -t fanout
run "x-message-deduplication, unique ids, cache $CACHE" -t x-message-deduplication \
    --dedup-ids --dedup-cache "$CACHE"
content_queue cq-0 0
run "fanout -> x-content-based-deduplication queue" -t fanout -e cfx --queue-prefix cq-
run "fanout, persistent (-f)" -t fanout -f
run "x-message-deduplication (disk cache), -f" -t x-message-deduplication --dedup-ids \
    --dedup-cache "$CACHE" -f
content_queue dcq-0 1
run "fanout -> content-based durable queue, -f" -t fanout -e dcfx --queue-prefix dcq- -f
stop

start
echo
echo "RSS of warrend with x-cache-size $CACHE while unique ids are published ($((3 * SECS)) s):"
"$PERF" --port "$PORT" -x 1 -y 1 -s 100 -z "$((3 * SECS))" -t x-message-deduplication \
    --dedup-ids --dedup-cache "$CACHE" --json --quiet > "$DIR/r.json" 2>/dev/null &
perf=$!
t=0
while kill -0 "$perf" 2>/dev/null; do
    sleep 2
    t=$((t + 2))
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    printf '  t=%3d s  RSS %6d MiB\n' "$t" "$((rss / 1024))"
done
wait "$perf" || true
read -r p d < <(rate "$DIR/r.json")
echo "  published $p msg/s over $((3 * SECS)) s: about $((p * 3 * SECS)) unique ids, cache $CACHE"
echo "  peak RSS $(($(awk '/^VmHWM/ {print $2}' "/proc/$pid/status") / 1024)) MiB"
