#!/usr/bin/env bash
# tools/bench-delay.sh — delayed delivery at scale (issue 14, docs/benchmarks.md "Delayed
# delivery"): one release warrend; tools/bench-delay.py publishes N persistent messages to a
# durable x-delayed-message exchange, due from LEAD s after the start at RATE per second, and
# consumes them, printing warrend's RssAnon while they wait and the lateness (delivery - due:
# median, p99, max). Owns its temporary directory and the warrend it starts.
#
# Usage: tools/bench-delay.sh [N] [RATE] [LEAD_S] [transient]   (default 1000000 10000 60)
#   transient: a non-durable exchange and queue, delivery_mode 1
#   WARREND           binary (default build/broker/warrend)
#   WLOG              where warrend's log goes (default: the temporary directory, removed)
#   BENCH_DELAY_SLOW  set: also print in which seconds messages were over 50 ms late
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
RATE=${2:-10000}
LEAD=${3:-60}
WARREND=${WARREND:-build/broker/warrend}
DIR=$(mktemp -d /tmp/warren-bench-delay-XXXXXX)
PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
pid=""
cleanup() { [ -n "$pid" ] && { kill "$pid"; wait "$pid"; } 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

"$WARREND" --data-dir "$DIR/data" --port "$PORT" --bind 127.0.0.1 --no-management \
    --no-prometheus 2>>"${WLOG:-$DIR/warrend.log}" &
pid=$!
for _ in $(seq 500); do listening "$PORT" && break; sleep 0.02; done
kill -0 "$pid" || { cat "$DIR/warrend.log" >&2; exit 1; }
python3 tools/bench-delay.py "$PORT" "$pid" "$N" "$RATE" "$LEAD" ${4:-}
