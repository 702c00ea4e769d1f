#!/usr/bin/env bash
# tools/bench-durability.sh — the durability measurements of docs/benchmarks.md, against a
# fresh warrend: persistent 1 KiB messages with confirms (1 and 4 publishers), then a long
# queue of 16-byte persistent messages: resident memory, start-up time, disk bytes per message.
#
# Usage: tools/bench-durability.sh [LOAD_SECONDS]   (default 100: about 10-40 million messages)
#   WARREND, WARREN_PERF   binaries (default build/broker/warrend, build/tools/warren-perf)
#   PORT                   port for the warrend it starts (default 5993)
#   REF_PORT               also run the 1 KiB confirm rows against this broker (e.g. 5682)
set -euo pipefail
cd "$(dirname "$0")/.."
LOAD=${1:-100}
WARREND=${WARREND:-build/broker/warrend}
PERF=${WARREN_PERF:-build/tools/warren-perf}
PORT=${PORT:-5993}
DIR=$(mktemp -d /tmp/warren-bench-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT

start() {
    "$WARREND" --port "$PORT" --bind 127.0.0.1 --data-dir "$DIR/data" --log-level info \
        2>>"$DIR/warrend.log" &
    pid=$!
    for _ in $(seq 200); do
        (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && return 0
        sleep 0.01
    done
    echo "bench-durability.sh: warrend did not start; see $DIR/warrend.log" >&2
    exit 1
}
stop() { kill -TERM "$pid"; wait "$pid" || true; pid=""; }
rss_anon() { awk '/^RssAnon/ {print int($2 / 1024) " MiB"}' "/proc/$pid/status"; }
row() { # label port flags...
    local label=$1 port=$2; shift 2
    "$PERF" --port "$port" --json --quiet "$@" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
c = r["confirm_latency_ms"]
print("| %s | %s | %s | %.2f | %.2f |" % (sys.argv[1], format(round(r["sent_rate"]), ","),
      format(round(r["confirm_rate"]), ","), c["p50"], c["p99"]))' "$label"
}

echo "| publishers, broker | sent/s | confirmed/s | confirm p50 ms | confirm p99 ms |"
echo "| --- | ---: | ---: | ---: | ---: |"
start
for x in 1 4; do
    row "$x x 1 KiB persistent, window 100, warrend" "$PORT" -x "$x" -y 0 -s 1024 -f -c 100 -z 10
    [ -n "${REF_PORT:-}" ] && row "$x x 1 KiB persistent, window 100, reference :$REF_PORT" \
        "$REF_PORT" -x "$x" -y 0 -s 1024 -f -c 100 -z 10
done
stop
rm -rf "$DIR/data"

start
"$PERF" --port "$PORT" -x 4 -y 0 -s 16 -f -c 500 -z "$LOAD" --keep --queue-prefix big- --quiet \
    > "$DIR/load.txt"
count=$("${WARREN_PYTHON:-/usr/bin/python3}" - "$PORT" <<'PY'
import sys
try:
    import pika
except ImportError:
    print(0); sys.exit()
c = pika.BlockingConnection(pika.ConnectionParameters('127.0.0.1', int(sys.argv[1])))
print(c.channel().queue_declare('big-0', durable=True, passive=True).method.message_count)
c.close()
PY
)
echo
echo "long queue: $count persistent 16-byte messages ($(grep '^confirmed' "$DIR/load.txt"))"
echo "- RssAnon of warrend with them queued: $(rss_anon)"
stop
t0=$(date +%s%N)
start
t1=$(date +%s%N)
echo "- restart to listening: $(( (t1 - t0) / 1000000 )) ms ($(grep -o 'recovered the data directory in [0-9.]* s' "$DIR/warrend.log" | tail -1))"
echo "- RssAnon after restart: $(rss_anon)"
bytes=$(stat -c %s "$DIR/data/data.mdb")
echo "- data.mdb: $bytes bytes, $(( bytes / (count > 0 ? count : 1) )) bytes per stored message"
