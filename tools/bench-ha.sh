#!/usr/bin/env bash
# tools/bench-ha.sh — takeover time of an active/standby pair with many stored messages
# (docs/ha.md): two warrend with ha.mode = shared on one data directory; warren-perf fills a
# durable queue on the active with persistent messages (confirmed) for FILL seconds (about a
# million on the 2-core development machine in 10 s); then the active is killed
# (kill -9) ROUNDS times, alternating, and each time the script measures how long until the
# standby accepts AMQP connections, and what its log says recovery took. Owns its temporary
# directory and the two warrend it starts.
#
# Usage: tools/bench-ha.sh [FILL] [ROUNDS]   (default 10 s and 3)
#   WARREND, WARREN_PERF   binaries (default build/broker/warrend, build/tools/warren-perf)
set -euo pipefail
cd "$(dirname "$0")/.."
FILL=${1:-10}
ROUNDS=${2:-3}
WARREND=${WARREND:-build/broker/warrend}
PERF=${WARREN_PERF:-build/tools/warren-perf}
DIR=$(mktemp -d /tmp/warren-bench-ha-XXXXXX)
PORTS=(5991 5992)
pids=("" "")
cleanup() { for p in "${pids[@]}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done; rm -rf "$DIR"; }
trap cleanup EXIT

start() { # start NODE(0|1)
    local i=$1
    printf 'listeners.tcp.default = 127.0.0.1:%s\nmanagement.tcp.port = none\nprometheus.tcp.port = none\ndata_dir = %s/data\nha.mode = shared\nlog.console.level = info\n' \
        "${PORTS[$i]}" "$DIR" > "$DIR/$i.conf"
    "$WARREND" --config "$DIR/$i.conf" 2>>"$DIR/$i.log" &
    pids[$i]=$!
}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
now() { date +%s.%N; }

start 0
for _ in $(seq 500); do listening "${PORTS[0]}" && break; sleep 0.02; done
start 1
echo "bench-ha.sh: filling a durable queue for $FILL s (100 B persistent, confirmed) ..." >&2
"$PERF" --port "${PORTS[0]}" -x 2 -y 0 -s 100 -f -c 500 --queues 1 --keep -z "$FILL" \
    --json --quiet > "$DIR/fill.json" 2>/dev/null || true
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("stored %d confirmed messages (%d msg/s)" % (d.get("confirmed", 0), d.get("confirm_rate", 0)))' "$DIR/fill.json" || true
active=0
for r in $(seq "$ROUNDS"); do
    standby=$((1 - active))
    t0=$(now)
    kill -9 "${pids[$active]}"
    wait "${pids[$active]}" 2>/dev/null || true
    while ! listening "${PORTS[$standby]}"; do sleep 0.005; done
    t1=$(now)
    rec=$(grep -o 'recovered the data directory in [0-9.]* s' "$DIR/$standby.log" | tail -1)
    printf 'round %d: takeover %.0f ms (%s)\n' "$r" "$(echo "($t1 - $t0) * 1000" | bc)" "$rec"
    start "$active"
    sleep 1
    active=$standby
done
/usr/bin/python3 - "${PORTS[$active]}" <<'PY' || true
import sys, pika
c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", int(sys.argv[1])))
q = c.channel().queue_declare("perf-dq-0", durable=True, passive=True)
print(f"after the last takeover the queue holds {q.method.message_count} messages")
c.close()
PY
