#!/usr/bin/env bash
# tools/bench-routing.sh — does routing slow down as bindings pile up? Runs one warren-perf
# scenario (1p/1c, 1 KiB, autoack) against one AMQP 0-9-1 broker through a direct and a topic
# exchange carrying 0, 1,000 and 100,000 extra bindings that never match (--extra-bindings),
# and prints a markdown table (exchange, extra bindings, bind time, sent/s, recv/s, p50, p99,
# time to delete the queue holding the extra bindings). Owns nothing on the broker: each run
# declares its exchange and queues, binds, and deletes them again. Companion of bench.sh, whose
# scenario set this leaves alone.
#
# Usage: tools/bench-routing.sh HOST PORT [LABEL]
#   BENCH_SECONDS   seconds per run (default 10)
#   BENCH_BINDINGS  extra-binding counts to try (default "0 1000 100000")
#   BENCH_TYPES     exchange types to try (default "direct topic")
#   BENCH_ARGS      extra warren-perf flags for every run
#   WARREN_PERF     the warren-perf binary (default: build-perf/ or build/ beside this script,
#                   then $PATH)
# Exit status: 0 when every run worked, 1 when any failed (its row says so), 2 on bad usage.
set -u

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 HOST PORT [LABEL]" >&2
    exit 2
fi
HOST=$1 PORT=$2 LABEL=${3:-$1:$2}
SECS=${BENCH_SECONDS:-10}
case $SECS in '' | *[!0-9]* | 0) echo "bench-routing.sh: BENCH_SECONDS must be a positive whole number, not '$SECS'." >&2; exit 2 ;; esac
read -r -a COUNTS <<< "${BENCH_BINDINGS:-0 1000 100000}"
read -r -a TYPES <<< "${BENCH_TYPES:-direct topic}"
read -r -a EXTRA <<< "${BENCH_ARGS:-}"
for n in "${COUNTS[@]}"; do
    case $n in '' | *[!0-9]*) echo "bench-routing.sh: BENCH_BINDINGS holds whole numbers, not '$n'." >&2; exit 2 ;; esac
done
for t in "${TYPES[@]}"; do
    case $t in direct | topic) ;; *) echo "bench-routing.sh: BENCH_TYPES holds direct and topic, not '$t'." >&2; exit 2 ;; esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PERF=${WARREN_PERF:-}
if [ -z "$PERF" ]; then
    for p in "$root/build-perf/tools/warren-perf" "$root/build/tools/warren-perf"; do
        [ -x "$p" ] && { PERF=$p; break; }
    done
    [ -n "$PERF" ] || PERF=$(command -v warren-perf || true)
fi
if [ -z "$PERF" ] || [ ! -x "$PERF" ]; then
    echo "bench-routing.sh: warren-perf not found; build it (meson setup build && ninja -C build) or set WARREN_PERF." >&2
    exit 2
fi
command -v python3 >/dev/null || { echo "bench-routing.sh: python3 is needed to read warren-perf's JSON." >&2; exit 2; }

FLAGS="-x 1 -y 1 -s 1024 -a"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rows=() notes=() failed=0 i=0 total=$((${#TYPES[@]} * ${#COUNTS[@]}))
for t in "${TYPES[@]}"; do
    for n in "${COUNTS[@]}"; do
        i=$((i + 1))
        name="$t, $n extra bindings"
        echo "bench-routing.sh: [$i/$total] $name ($FLAGS -t $t --extra-bindings $n, ${SECS}s)" >&2
        # shellcheck disable=SC2086 # FLAGS is a word list on purpose
        "$PERF" --host "$HOST" --port "$PORT" --json --quiet --label "$name" -z "$SECS" \
            $FLAGS -t "$t" --extra-bindings "$n" ${EXTRA[@]+"${EXTRA[@]}"} \
            > "$tmp/out" 2> "$tmp/err"
        rc=$?
        row=$(python3 - "$tmp/out" "$t" "$n" <<'EOF'
import json, sys
try:
    with open(sys.argv[1]) as f:
        d = json.loads(f.readline())
except Exception:
    sys.exit(1)
lat = d.get("latency_ms") or {}
def ms(v):
    return "-" if not lat.get("samples") else f"{v:.3f}" if v < 10 else f"{v:.1f}"
def secs(v):
    return "-" if v is None else f"{v:.3f}"
print(f"| {sys.argv[2]} | {int(sys.argv[3]):,} | {secs(d.get('bind_seconds'))} | "
      f"{d['sent_rate']:,.0f} | {d['recv_rate']:,.0f} | "
      f"{ms(lat.get('p50', 0))} | {ms(lat.get('p99', 0))} | "
      f"{secs(d.get('extra_delete_seconds'))} |")
EOF
        )
        if [ $rc -ne 0 ] || [ -z "$row" ]; then
            failed=1
            why=$(tr '\n' ' ' < "$tmp/err" | sed 's/ *$//')
            [ -n "$why" ] || why="warren-perf exited with status $rc"
            k=$((${#notes[@]} + 1))
            notes+=("[$k] $name: $why")
            if [ -z "$row" ]; then
                row="| $t | $n [$k] | failed | | | | | |"
            else # numbers were printed, but the run ended badly (e.g. cleanup failed)
                row="| $t [$k] ${row#"| $t "}"
            fi
        fi
        rows+=("$row")
        sleep 1 # let the broker settle (queue deletion, GC) before the next run
    done
done

echo
echo "### $LABEL ($HOST:$PORT), ${SECS} s per run, $(date -u +%Y-%m-%d)"
echo
echo "| exchange | extra bindings | bind s | sent/s | recv/s | p50 ms | p99 ms | delete s |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
if [ ${#notes[@]} -gt 0 ]; then
    echo
    for n in "${notes[@]}"; do echo "- $n"; done
fi
echo
# shellcheck disable=SC2016 # the quotes are meant literally
echo "Produced by \`BENCH_SECONDS=$SECS${BENCH_BINDINGS:+ BENCH_BINDINGS='$BENCH_BINDINGS'}${BENCH_TYPES:+ BENCH_TYPES='$BENCH_TYPES'}${BENCH_ARGS:+ BENCH_ARGS='$BENCH_ARGS'} tools/bench-routing.sh $HOST $PORT${3:+ \"$3\"}\`;"
echo "each row is \`warren-perf $FLAGS -t TYPE --extra-bindings N\`. \"bind s\" is the time to"
echo "send the N queue.bind (no-wait, a passive queue.declare round trip every 10,000) until the"
echo "broker confirmed the last; \"delete s\" is the queue.delete that drops them all at the end."
exit $failed
