#!/bin/sh
# tests/fuzz/run.sh [seconds] [target] — builds a libFuzzer target in build-fuzz (clang) and
# runs it for `seconds` (default 60) on a scratch copy of its corpus, so the checked-in seeds
# stay small. Targets and corpora (tests/fuzz/...): fuzz_frame (the default) corpus/,
# fuzz_defs corpus-defs/, fuzz_table corpus-table/, fuzz_conf corpus-conf/,
# fuzz_http corpus-http/, fuzz_conn corpus-conn/, fuzz_filter corpus-filter/.
# Crashes land in tests/fuzz/ as crash-* / leak-* / timeout-* (git-ignored); reproduce one with
# build-fuzz/tests/fuzz/<target> <file>, then add a unit test for the fix and the file to the
# corpus. FUZZ_JOBS=N runs N workers (-fork); the default is one. Exit status: the fuzzer's
# (0 when it ran out its time without a finding).
set -eu
cd "$(dirname "$0")/../.."
secs=${1:-60}
target=${2:-fuzz_frame}
case $target in
fuzz_frame) corpus=tests/fuzz/corpus ;;
fuzz_defs | fuzz_table | fuzz_conf | fuzz_http | fuzz_conn | fuzz_filter) corpus=tests/fuzz/corpus-${target#fuzz_} ;;
*)
    echo "run.sh: unknown target '$target' (fuzz_frame, fuzz_defs, fuzz_table, fuzz_conf," \
         "fuzz_http, fuzz_conn, fuzz_filter)" >&2
    exit 2 ;;
esac
if [ ! -f build-fuzz/build.ninja ]; then
    CC=clang meson setup build-fuzz -Dfuzz=enabled -Dtests=disabled
fi
ninja -C build-fuzz "tests/fuzz/$target"
work=$(mktemp -d "${TMPDIR:-/tmp}/warren-fuzz.XXXXXX")
# fuzz_http and fuzz_conn keep their broker's data in WARREN_FUZZ_DIR: a tmpfs with 1 GiB free
# if there is one, removed with the rest even when the target crashed.
shm=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
if [ "${shm:-0}" -ge 1048576 ] && scratch=$(mktemp -d /dev/shm/warren-fuzz-run.XXXXXX); then :
else scratch=$work/data; mkdir "$scratch"; fi
export WARREN_FUZZ_DIR="${WARREN_FUZZ_DIR:-$scratch}"
trap 'rm -rf "$work" "$scratch"' EXIT
mkdir "$work/corpus"
cp "$corpus"/* "$work/corpus/"
jobs=${FUZZ_JOBS:-1}
args="-max_total_time=$secs -max_len=140000 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1"
if [ "$jobs" -gt 1 ]; then
    args="$args -fork=$jobs"
fi
# shellcheck disable=SC2086
"build-fuzz/tests/fuzz/$target" $args -artifact_prefix=tests/fuzz/ "$work/corpus"
