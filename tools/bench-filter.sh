#!/usr/bin/env bash
# tools/bench-filter.sh — what SNS filter policies on bindings cost routing (issue 14,
# docs/benchmarks.md): one warrend; for each N, a fanout exchange with a queue bound N times,
# each binding with its own policy {"tenant": ["t<i>"]} (python3-pika binds them), then
# warren-perf: 1 producer publishing to the exchange with the header tenant = "t<i>", i cycling
# over 0..N-1 (so each message matches exactly one policy), 1 consumer on the queue (which
# warren-perf also binds without a policy, so every message arrives once). Prints msg/s per N.
# Owns its temporary directory and the warrend it starts.
#
# Usage: tools/bench-filter.sh [SECONDS] [N ...]   (default 10 s; 10 1000 100000)
#   WARREND, WARREN_PERF   binaries (default build/broker/warrend, build/tools/warren-perf)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
shift || true
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(10 1000 100000)
WARREND=${WARREND:-build/broker/warrend}
PERF=${WARREN_PERF:-build/tools/warren-perf}
DIR=$(mktemp -d /tmp/warren-bench-filter-XXXXXX)
PORT=5997
pid=""
cleanup() { [ -n "$pid" ] && { kill "$pid"; wait "$pid"; } 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

"$WARREND" --data-dir "$DIR/data" --port "$PORT" --bind 127.0.0.1 --no-management \
    --no-prometheus 2>>"$DIR/warrend.log" &
pid=$!
for _ in $(seq 500); do listening "$PORT" && break; sleep 0.02; done
printf '%10s %14s %14s %12s\n' policies "bind time (s)" published/s delivered/s
for n in "${COUNTS[@]}"; do
    took=$(/usr/bin/python3 - "$PORT" "$n" <<'PY'
import json, sys, time
import pika
port, n = int(sys.argv[1]), int(sys.argv[2])
c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
ch = c.channel()
ch.exchange_declare(f"fp-{n}", "fanout")
ch.queue_declare(f"fq-{n}-0")
t0 = time.monotonic()
for i in range(n):
    ch.queue_bind(f"fq-{n}-0", f"fp-{n}",
                  arguments={"x-filter-policy": json.dumps({"tenant": [f"t{i}"]})})
print(f"{time.monotonic() - t0:.1f}")
c.close()
PY
)
    "$PERF" --port "$PORT" -x 1 -y 1 -s 100 -t fanout -e "fp-$n" --queue-prefix "fq-$n-" \
        --header-values "$n" -z "$SECS" --keep --json --quiet > "$DIR/r.json" 2>/dev/null || true
    read -r p d < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%d %d" % (d["sent_rate"], d["recv_rate"]))' "$DIR/r.json")
    printf '%10s %14s %14s %12s\n' "$n" "$took" "$p" "$d"
done
