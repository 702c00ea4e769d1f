#!/usr/bin/env bash
# tools/bench.sh — run warren-perf's fixed scenario set against one AMQP 0-9-1 broker and print
# a markdown table (scenario, sent/s, recv/s, p50, p99). Owns nothing on the broker: each
# warren-perf run declares its own exchange and queues and deletes them again.
#
# Usage: tools/bench.sh HOST PORT [LABEL]
#   BENCH_SECONDS  seconds per scenario (default 10)
#   BENCH_ARGS     extra warren-perf flags for every scenario, e.g. --no-declare-exchange for a
#                  broker without exchange.declare (scenarios that need an exchange then fail)
#   WARREN_PERF    the warren-perf binary (default: build-perf/ or build/ beside this script,
#                  then $PATH)
# Exit status: 0 when every scenario ran, 1 when any failed (its row says so), 2 on bad usage.
set -u

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 HOST PORT [LABEL]" >&2
    exit 2
fi
HOST=$1 PORT=$2 LABEL=${3:-$1:$2}
SECS=${BENCH_SECONDS:-10}
case $SECS in '' | *[!0-9]* | 0) echo "bench.sh: BENCH_SECONDS must be a positive whole number, not '$SECS'." >&2; exit 2 ;; esac
read -r -a EXTRA <<< "${BENCH_ARGS:-}"

# shellcheck source=tools/bench-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
bench_find_perf bench.sh

# name|flags — unlimited rate unless stated, so sent/s and recv/s are the broker's ceiling and
# latency is what a saturated broker gives; the fixed-rate row shows latency under light load.
SCENARIOS=(
    "1p/1c 16 B, autoack|-x 1 -y 1 -s 16 -a"
    "1p/1c 1 KiB, ack, prefetch 100|-x 1 -y 1 -s 1024 -q 100"
    "4p/4c 1 KiB, ack, prefetch 100, 4 queues|-x 4 -y 4 -s 1024 -q 100 --queues 4"
    "1p/1c 1 KiB, confirms (window 100)|-x 1 -y 1 -s 1024 -a -c 100"
    "1p/1c 1 KiB, persistent + confirms, durable queue|-x 1 -y 1 -s 1024 -f -c 100 -q 100"
    "fanout 1p -> 4 queues/4c, 1 KiB, autoack|-x 1 -y 4 -s 1024 -a -t fanout --queues 4"
    "1p/1c 1 KiB at 1000 msg/s, ack, prefetch 100|-x 1 -y 1 -s 1024 -q 100 -r 1000"
)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rows=() notes=() failed=0 i=0
for sc in "${SCENARIOS[@]}"; do
    name=${sc%%|*} flags=${sc#*|}
    i=$((i + 1))
    echo "bench.sh: [$i/${#SCENARIOS[@]}] $name ($flags, ${SECS}s)" >&2
    # shellcheck disable=SC2086 # flags is a word list on purpose
    "$PERF" --host "$HOST" --port "$PORT" --json --quiet --label "$name" -z "$SECS" \
        $flags ${EXTRA[@]+"${EXTRA[@]}"} > "$tmp/out" 2> "$tmp/err"
    rc=$?
    row=$(python3 - "$tmp/out" "$name" <<'EOF'
import json, sys
try:
    with open(sys.argv[1]) as f:
        d = json.loads(f.readline())
except Exception:
    sys.exit(1)
lat = d.get("latency_ms") or {}
def ms(v):
    return "-" if not lat.get("samples") else f"{v:.3f}" if v < 10 else f"{v:.1f}"
print(f"| {sys.argv[2]} | {d['sent_rate']:,.0f} | {d['recv_rate']:,.0f} | "
      f"{ms(lat.get('p50', 0))} | {ms(lat.get('p99', 0))} |")
EOF
    )
    if [ $rc -ne 0 ] || [ -z "$row" ]; then
        failed=1
        why=$(tr '\n' ' ' < "$tmp/err" | sed 's/ *$//')
        [ -n "$why" ] || why="warren-perf exited with status $rc"
        k=$((${#notes[@]} + 1))
        notes+=("[$k] $name: $why")
        if [ -z "$row" ]; then
            row="| $name | failed [$k] | | | |"
        else # numbers were printed, but the run ended badly (e.g. cleanup failed)
            row="| $name [$k] ${row#"| $name "}"
        fi
    fi
    rows+=("$row")
    sleep 1 # let the broker settle (queue deletion, GC) before the next scenario
done

echo
echo "### $LABEL ($HOST:$PORT), ${SECS} s per scenario, $(date -u +%Y-%m-%d)"
echo
echo "| scenario | sent/s | recv/s | p50 ms | p99 ms |"
echo "| --- | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
if [ ${#notes[@]} -gt 0 ]; then
    echo
    for n in "${notes[@]}"; do echo "- $n"; done
fi
echo
# shellcheck disable=SC2016 # the quotes are meant literally
echo "Produced by \`BENCH_SECONDS=$SECS${BENCH_ARGS:+ BENCH_ARGS='$BENCH_ARGS'} tools/bench.sh $HOST $PORT${3:+ \"$3\"}\`; scenario flags:"
echo
for sc in "${SCENARIOS[@]}"; do echo "- ${sc%%|*}: \`warren-perf ${sc#*|}\`"; done
exit $failed
