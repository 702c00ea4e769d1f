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
#   BENCH_REPEAT    runs per row, interleaved across rows; the row shows the run with the
#                   median sent/s and a min-max column (default 1: no such column)
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
REPEAT=${BENCH_REPEAT:-1}
case $REPEAT in '' | *[!0-9]* | 0) echo "bench-routing.sh: BENCH_REPEAT must be a positive whole number, not '$REPEAT'." >&2; exit 2 ;; esac
for n in "${COUNTS[@]}"; do
    case $n in '' | *[!0-9]*) echo "bench-routing.sh: BENCH_BINDINGS holds whole numbers, not '$n'." >&2; exit 2 ;; esac
done
for t in "${TYPES[@]}"; do
    case $t in direct | topic) ;; *) echo "bench-routing.sh: BENCH_TYPES holds direct and topic, not '$t'." >&2; exit 2 ;; esac
done

# shellcheck source=tools/bench-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
bench_find_perf bench-routing.sh

FLAGS="-x 1 -y 1 -s 1024 -a"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ROWS=()
for t in "${TYPES[@]}"; do
    for n in "${COUNTS[@]}"; do ROWS+=("$t $n"); done
done

# Interleave: every row once, then every row again, so a burst of load elsewhere on the
# machine does not land on one row only.
step=0 total=$((${#ROWS[@]} * REPEAT))
for ((r = 1; r <= REPEAT; r++)); do
    for ((i = 0; i < ${#ROWS[@]}; i++)); do
        read -r t n <<< "${ROWS[$i]}"
        step=$((step + 1))
        name="$t, $n extra bindings"
        echo "bench-routing.sh: [$step/$total] $name ($FLAGS -t $t --extra-bindings $n, ${SECS}s)" >&2
        # shellcheck disable=SC2086 # FLAGS is a word list on purpose
        "$PERF" --host "$HOST" --port "$PORT" --json --quiet --label "$name" -z "$SECS" \
            $FLAGS -t "$t" --extra-bindings "$n" ${EXTRA[@]+"${EXTRA[@]}"} \
            > "$tmp/out.$i.$r" 2> "$tmp/err.$i.$r"
        echo $? > "$tmp/rc.$i.$r"
        sleep 1 # let the broker settle (queue deletion, GC) before the next run
    done
done

rows=() notes=() failed=0
for ((i = 0; i < ${#ROWS[@]}; i++)); do
    read -r t n <<< "${ROWS[$i]}"
    name="$t, $n extra bindings"
    row=$(python3 - "$tmp" "$i" "$REPEAT" "$t" "$n" <<'EOF'
import json, sys
tmp, i, repeat, t, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
runs = []
for r in range(1, repeat + 1):
    try:
        with open(f"{tmp}/out.{i}.{r}") as f:
            runs.append(json.loads(f.readline()))
    except Exception:
        pass
if not runs:
    sys.exit(1)
runs.sort(key=lambda d: d["sent_rate"])
d = runs[(len(runs) - 1) // 2]
lat = d.get("latency_ms") or {}
def ms(v):
    return "-" if not lat.get("samples") else f"{v:.3f}" if v < 10 else f"{v:.1f}"
def secs(v):
    return "-" if v is None else f"{v:.3f}"
cells = [t, f"{n:,}", secs(d.get("bind_seconds")), f"{d['sent_rate']:,.0f}"]
if repeat > 1:
    cells.append(f"{runs[0]['sent_rate'] / 1000:,.0f}k-{runs[-1]['sent_rate'] / 1000:,.0f}k")
cells += [f"{d['recv_rate']:,.0f}", ms(lat.get("p50", 0)), ms(lat.get("p99", 0)),
          secs(d.get("extra_delete_seconds"))]
print("| " + " | ".join(cells) + " |")
EOF
    )
    bad=0
    for ((r = 1; r <= REPEAT; r++)); do
        rc=$(cat "$tmp/rc.$i.$r")
        [ "$rc" -eq 0 ] && [ -s "$tmp/out.$i.$r" ] && continue
        bad=1
        why=$(tr '\n' ' ' < "$tmp/err.$i.$r" | sed 's/ *$//')
        [ -n "$why" ] || why="warren-perf exited with status $rc"
        k=$((${#notes[@]} + 1))
        notes+=("[$k] $name, run $r: $why")
    done
    if [ $bad -ne 0 ]; then
        failed=1
        if [ -z "$row" ]; then
            row="| $t | $n [${#notes[@]}] | failed |"
        else # numbers were printed, but some run ended badly (e.g. cleanup failed)
            row="| $t [${#notes[@]}] ${row#"| $t "}"
        fi
    fi
    rows+=("$row")
done

echo
if [ "$REPEAT" -gt 1 ]; then
    echo "### $LABEL ($HOST:$PORT), ${SECS} s per run, median of $REPEAT runs, $(date -u +%Y-%m-%d)"
    echo
    echo "| exchange | extra bindings | bind s | sent/s | sent/s min-max | recv/s | p50 ms | p99 ms | delete s |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
else
    echo "### $LABEL ($HOST:$PORT), ${SECS} s per run, $(date -u +%Y-%m-%d)"
    echo
    echo "| exchange | extra bindings | bind s | sent/s | recv/s | p50 ms | p99 ms | delete s |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
fi
printf '%s\n' "${rows[@]}"
if [ ${#notes[@]} -gt 0 ]; then
    echo
    for n in "${notes[@]}"; do echo "- $n"; done
fi
echo
# shellcheck disable=SC2016 # the quotes are meant literally
echo "Produced by \`BENCH_SECONDS=$SECS${BENCH_REPEAT:+ BENCH_REPEAT=$BENCH_REPEAT}${BENCH_BINDINGS:+ BENCH_BINDINGS='$BENCH_BINDINGS'}${BENCH_TYPES:+ BENCH_TYPES='$BENCH_TYPES'}${BENCH_ARGS:+ BENCH_ARGS='$BENCH_ARGS'} tools/bench-routing.sh $HOST $PORT${3:+ \"$3\"}\`;"
echo "each row is \`warren-perf $FLAGS -t TYPE --extra-bindings N\`. \"bind s\" is the time to"
echo "send the N queue.bind (no-wait, a passive queue.declare round trip every 10,000) until the"
echo "broker confirmed the last; \"delete s\" is the queue.delete that drops them all at the end."
if [ "$REPEAT" -gt 1 ]; then
    echo "Each row is the run with the median sent/s of $REPEAT, taken in turn with the other rows."
fi
exit $failed
