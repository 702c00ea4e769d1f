#!/usr/bin/env bash
# tools/bench.sh — run warren-perf's fixed scenario set against one AMQP 0-9-1 broker and print
# a markdown table (scenario, sent/s, recv/s, p50, p99, and the broker's peak RSS when BENCH_PID
# is given). Owns nothing on the broker: each warren-perf run declares its own exchange and
# queues and deletes them again.
#
# Usage: tools/bench.sh HOST PORT [LABEL]
#   BENCH_SECONDS  seconds per scenario (default 10)
#   BENCH_ARGS     extra warren-perf flags for every scenario, e.g. --no-declare-exchange for a
#                  broker without exchange.declare (scenarios that need an exchange then fail)
#   BENCH_JSON     also write this file: one JSON document with label, host, port, date and,
#                  per scenario, its flags, warren-perf's --json result and the memory samples
#                  (tools/bench-charts.py draws charts from such files)
#   BENCH_FIRST    run only the first N scenarios (default: all)
#   BENCH_PID      the broker's process id on this machine: its VmRSS and RssAnon are read from
#                  /proc/PID/status every 0.2 s while each scenario runs
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
PID=${BENCH_PID:-}
if [ -n "$PID" ] && [ ! -r "/proc/$PID/status" ]; then
    echo "bench.sh: BENCH_PID=$PID: no process whose /proc/$PID/status can be read." >&2
    exit 2
fi

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

FIRST=${BENCH_FIRST:-${#SCENARIOS[@]}}
case $FIRST in '' | *[!0-9]* | 0) echo "bench.sh: BENCH_FIRST must be a positive whole number, not '$FIRST'." >&2; exit 2 ;; esac
SCENARIOS=("${SCENARIOS[@]:0:$FIRST}")

tmp=$(mktemp -d)
sampler=
trap '[ -z "$sampler" ] || kill "$sampler" 2>/dev/null; rm -rf "$tmp"' EXIT

# Append "VmRSS RssAnon" (kB) of process $1 to file $2 every 0.2 s until killed.
sample_rss() {
    while :; do
        awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } END { if (r) print r, a }' \
            "/proc/$1/status" >> "$2" 2>/dev/null
        sleep 0.2
    done
}

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
rows=() notes=() failed=0 i=0
for sc in "${SCENARIOS[@]}"; do
    name=${sc%%|*} flags=${sc#*|}
    i=$((i + 1))
    echo "bench.sh: [$i/${#SCENARIOS[@]}] $name ($flags, ${SECS}s)" >&2
    : > "$tmp/$i.rss"
    if [ -n "$PID" ]; then
        sample_rss "$PID" "$tmp/$i.rss" &
        sampler=$!
    fi
    # shellcheck disable=SC2086 # flags is a word list on purpose
    "$PERF" --host "$HOST" --port "$PORT" --json --quiet --label "$name" -z "$SECS" \
        $flags ${EXTRA[@]+"${EXTRA[@]}"} > "$tmp/$i.out" 2> "$tmp/err"
    rc=$?
    if [ -n "$sampler" ]; then
        kill "$sampler" 2>/dev/null
        wait "$sampler" 2>/dev/null
        sampler=
    fi
    printf '%s\t%s\t%s\n' "$name" "$flags" "$rc" >> "$tmp/index"
    row=$(python3 - "$tmp/$i.out" "$name" "$tmp/$i.rss" "$PID" <<'EOF'
import json, sys
try:
    with open(sys.argv[1]) as f:
        d = json.loads(f.readline())
except Exception:
    sys.exit(1)
lat = d.get("latency_ms") or {}
def ms(v):
    return "-" if not lat.get("samples") else f"{v:.3f}" if v < 10 else f"{v:.1f}"
mem = ""
if sys.argv[4]:
    rss = [int(l.split()[0]) for l in open(sys.argv[3]) if l.strip()]
    mem = f" {max(rss) / 1024:,.0f} |" if rss else " - |"
print(f"| {sys.argv[2]} | {d['sent_rate']:,.0f} | {d['recv_rate']:,.0f} | "
      f"{ms(lat.get('p50', 0))} | {ms(lat.get('p99', 0))} |{mem}")
EOF
    )
    if [ $rc -ne 0 ] || [ -z "$row" ]; then
        failed=1
        why=$(tr '\n' ' ' < "$tmp/err" | sed 's/ *$//')
        [ -n "$why" ] || why="warren-perf exited with status $rc"
        k=$((${#notes[@]} + 1))
        notes+=("[$k] $name: $why")
        if [ -z "$row" ]; then
            row="| $name | failed [$k] | | | |${PID:+ |}"
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
if [ -n "$PID" ]; then
    echo "| scenario | sent/s | recv/s | p50 ms | p99 ms | broker peak RSS MiB |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
else
    echo "| scenario | sent/s | recv/s | p50 ms | p99 ms |"
    echo "| --- | ---: | ---: | ---: | ---: |"
fi
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

[ -n "${BENCH_JSON:-}" ] || exit $failed
python3 - "$tmp" "$BENCH_JSON" "$LABEL" "$HOST" "$PORT" "$SECS" "${BENCH_ARGS:-}" "$PID" \
    "$started" <<'EOF' || { echo "bench.sh: could not write $BENCH_JSON." >&2; exit 1; }
import json, sys
tmp, path, label, host, port, secs, args, pid, started = sys.argv[1:]
scenarios = []
with open(f"{tmp}/index") as f:
    for i, line in enumerate(f, 1):
        name, flags, rc = line.rstrip("\n").split("\t")
        try:
            with open(f"{tmp}/{i}.out") as o:
                result = json.loads(o.readline())
        except (OSError, ValueError):
            result = None  # the run failed before printing its figures
        sc = {"name": name, "flags": flags, "exit_status": int(rc), "result": result}
        if pid:  # kB; RssAnon leaves out file pages (for warrend, LMDB's map)
            rss = [[int(x) for x in l.split()] for l in open(f"{tmp}/{i}.rss") if l.strip()]
            sc["broker_memory_kb"] = {
                "samples": len(rss),
                "rss_start": rss[0][0] if rss else None,
                "rss_peak": max(r[0] for r in rss) if rss else None,
                "rss_end": rss[-1][0] if rss else None,
                "anon_peak": max((r[1] for r in rss if len(r) > 1), default=None),
            }
        scenarios.append(sc)
doc = {"tool": "bench.sh", "label": label, "host": host, "port": int(port), "date": started,
       "seconds_per_scenario": int(secs), "bench_args": args,
       "broker_pid": int(pid) if pid else None, "scenarios": scenarios}
with open(path, "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
EOF
exit $failed
