#!/usr/bin/env bash
# tools/bench-ttl.sh — does mass expiry stall other work? Loads a queue with about a million
# messages carrying a per-message TTL, then measures publish/consume latency on another queue
# while they all expire, next to the same measurement with nothing expiring.
#
# Usage: tools/bench-ttl.sh   (WARREND, WARREN_PERF, PORT as in bench-durability.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
WARREND=${WARREND:-build/broker/warrend}
PERF=${WARREN_PERF:-build/tools/warren-perf}
PORT=${PORT:-5994}
TTL_MS=${TTL_MS:-3000}
DIR=$(mktemp -d /tmp/warren-bench-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT

"$WARREND" --port "$PORT" --bind 127.0.0.1 --data-dir "$DIR/data" --log-level warn 2>"$DIR/log" &
pid=$!
for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.01; done

probe() { # label
    "$PERF" --port "$PORT" -x 1 -y 1 -s 1024 -q 100 -r 20000 -z 8 --queue-prefix probe- \
        --json --quiet | python3 -c '
import json, sys
r = json.loads(sys.stdin.read()); l = r["latency_ms"]
print("| %s | %s | %.3f | %.3f | %.3f |" % (sys.argv[1], format(round(r["recv_rate"]), ","),
      l["p50"], l["p99"], l["max"]))' "$1"
}
count() {
    "${WARREN_PYTHON:-/usr/bin/python3}" -c '
import pika, sys
c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", int(sys.argv[1])))
print(c.channel().queue_declare("ttl-0", passive=True).method.message_count)' "$PORT"
}

echo "| probe (1 KiB at 20k msg/s, ack, prefetch 100) | recv/s | p50 ms | p99 ms | max ms |"
echo "| --- | ---: | ---: | ---: | ---: |"
probe "baseline: nothing expiring"
"$PERF" --port "$PORT" -x 2 -y 0 -s 16 --expiration "$TTL_MS" -z 2 --keep --queue-prefix ttl- \
    --quiet > "$DIR/load.txt"
loaded=$(count)
probe "while $loaded messages expire (TTL ${TTL_MS} ms)"
echo
echo "ttl-0 held $loaded messages after loading; $(count) are left after the probe."
