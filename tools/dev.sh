#!/usr/bin/env bash
# tools/dev.sh — one entry point for developers and CI.
#   tools/dev.sh run [warrend flags]   install missing packages, build, run warrend on :5672 with ./data
#   tools/dev.sh test                  install missing packages, build with ASan+UBSan, run every test,
#                                      then storage and durability tests under TSan (build-tsan),
#                                      then each fuzz target for 30 s on its corpus (build-fuzz);
#                                      print "N passed, N failed" (exit 1 on any failure)
#   tools/dev.sh fuzz [seconds]        build the libFuzzer targets with clang and run each of them
#                                      for seconds (default 60); one: tests/fuzz/run.sh SECS TARGET
#   tools/dev.sh deps                  only install the missing Debian packages
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(gcc clang pkg-config meson ninja-build python3
          libuv1-dev libssl-dev liblmdb-dev librabbitmq-dev
          libcmocka-dev amqp-tools python3-pika lmdb-utils python3-matplotlib libinih-dev
          libpcre2-dev libjansson-dev libhttp-parser-dev
          libcurl4-openssl-dev curl python3-requests libsystemd-dev python3-prometheus-client
          libclang-rt-dev libfuse3-dev fuse3
          chromium chromium-driver python3-selenium)

deps() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "dev.sh: installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q "${missing[@]}" >/dev/null
}

# node and npm for the amqplib interop test: the machine's own if it has them, else Debian's.
node_deps() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q nodejs npm >/dev/null
    fi
    npm ci --prefix tests/interop/amqplib --no-audit --no-fund --loglevel=error >/dev/null
}

# The system python (Debian's, with python3-pika), not a pyenv shim that may be first on PATH.
export WARREN_PYTHON=/usr/bin/python3

build() { # build DIR [meson options...]
    local dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >/dev/null
    fi
    ninja -C "$dir" >/dev/null || ninja -C "$dir"
}

# Adds one meson test run to passed/failed: count STATUS LOG. meson's summary lines are
# "Ok: N", "Fail: N", "Unexpected Pass: N", "Timeout: N"; a failed run that counted no failure
# (a build error, say) counts as one.
count() {
    local status=$1 log=$2 ok fail upass tmo
    ok=$(sed -n 's/^Ok:[[:space:]]*\([0-9]*\).*/\1/p' "$log" 2>/dev/null | tail -1)
    fail=$(sed -n 's/^Fail:[[:space:]]*\([0-9]*\).*/\1/p' "$log" 2>/dev/null | tail -1)
    upass=$(sed -n 's/^Unexpected Pass:[[:space:]]*\([0-9]*\).*/\1/p' "$log" 2>/dev/null | tail -1)
    tmo=$(sed -n 's/^Timeout:[[:space:]]*\([0-9]*\).*/\1/p' "$log" 2>/dev/null | tail -1)
    local f=$(( ${fail:-0} + ${upass:-0} + ${tmo:-0} ))
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$(( passed + ${ok:-0} ))
    failed=$(( failed + f ))
}

# ThreadSanitizer over what shares memory between the loop and the storage writer thread: the
# storage unit tests (suite 'storage'), the durability tests (50-durability-*,
# 60-ext-*-restart) and the active/standby test ('ha': its fencing threads, MDB_NOLOCK's
# exclusion of reads and commits). About 60 s on two cores once build-tsan exists. A race fails the test
# (halt_on_error; warrend exits 66). Kernels with more mmap ASLR bits than TSan supports (e.g.
# vm.mmap_rnd_bits=32) make TSan binaries die at start: then the tests run under
# "setarch -R" (no ASLR, inherited by the warrend each test starts).
tsan_tests() {
    build build-tsan -Db_sanitize=thread -Db_lundef=false
    local tests probe wrapper=() rc=0
    tests=$(meson test -C build-tsan --list 2>/dev/null |
            sed -n -e 's/^warren:[^ ]*storage[^ ]* \/ //p' \
                   -e 's/^warren:integration \/ \(50-durability-.*\|60-ext-.*-restart\)$/\1/p' \
                   -e 's/^warren:ha \/ \(ha\)$/\1/p')
    [ -n "$tests" ] || return 0 # tests not built (no cmocka or rabbitmq-c)
    probe=build-tsan/tests/unit/test_qindex
    if ! "$probe" >/dev/null 2>&1; then
        if setarch "$(uname -m)" -R "$probe" >/dev/null 2>&1; then
            wrapper=(--wrapper "setarch $(uname -m) -R")
        else
            echo "dev.sh: ThreadSanitizer binaries do not run on this machine; TSan tests skipped" >&2
            "$probe" 2>&1 | tail -3 >&2
            return 0
        fi
    fi
    # shellcheck disable=SC2086 # one test name per word
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
        meson test -C build-tsan --no-rebuild --print-errorlogs --num-processes 2 \
        "${wrapper[@]}" $tests || rc=$?
    count "$rc" build-tsan/meson-logs/testlog.txt
}

# The libFuzzer targets (tests/fuzz/run.sh builds them in build-fuzz with clang, ASan+UBSan).
FUZZ_TARGETS=(fuzz_frame fuzz_defs fuzz_table fuzz_conf fuzz_http fuzz_conn fuzz_filter)

# Runs every fuzz target for $1 seconds, one after the other, one job each (fuzz_http and
# fuzz_conn also keep a storage thread busy). With a counter, each target is one
# test for passed/failed (a crash, a leak or a sanitizer report fails it; its input is left in
# tests/fuzz/ as crash-*/leak-*/timeout-*). Returns 1 when any target failed.
fuzz_all() { # fuzz_all SECONDS [count]
    local secs=$1 counted=${2:-} rc=0 t log
    if [ ! -f build-fuzz/build.ninja ]; then
        CC=clang meson setup build-fuzz -Dfuzz=enabled -Dtests=disabled >/dev/null
    fi
    if ! ninja -C build-fuzz "${FUZZ_TARGETS[@]/#/tests/fuzz/}" >/dev/null; then
        ninja -C build-fuzz "${FUZZ_TARGETS[@]/#/tests/fuzz/}" | tail -20 >&2 || true
        echo "dev.sh: the fuzz targets do not build (build-fuzz)" >&2
        if [ -n "$counted" ]; then failed=$(( failed + ${#FUZZ_TARGETS[@]} )); fi
        return 1
    fi
    for t in "${FUZZ_TARGETS[@]}"; do
        log=build-fuzz/$t.log
        if tests/fuzz/run.sh "$secs" "$t" >"$log" 2>&1; then
            echo "fuzz: $t: $(fuzz_summary "$log")"
            if [ -n "$counted" ]; then passed=$(( passed + 1 )); fi
        else
            echo "fuzz: $t FAILED (log: $log):" >&2
            grep -E 'ERROR|SUMMARY|check failed|Test unit written' "$log" | head -20 >&2 || true
            if [ -n "$counted" ]; then failed=$(( failed + 1 )); fi
            rc=1
        fi
    done
    return $rc
}

# "N runs, cov C, ft F" from a libFuzzer log with -print_final_stats=1.
fuzz_summary() {
    local runs line
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$1" | tail -1)
    line=$(grep -E '^#[0-9]+' "$1" | tail -1)
    echo "${runs:-?} runs, $(echo "$line" | grep -oE 'cov: [0-9]+ ft: [0-9]+')"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
deps)
    deps ;;
run)
    deps
    build build
    mkdir -p data
    exec build/broker/warrend --port 5672 --data-dir ./data "$@" ;;
test)
    deps
    node_deps
    build build-test -Db_sanitize=address,undefined -Db_lundef=false
    export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
    passed=0 failed=0
    set +e
    meson test -C build-test --print-errorlogs --num-processes 2 "$@"
    count $? build-test/meson-logs/testlog.txt
    set -e
    # With a test selection on the command line, TSan runs only when asked (WARREN_TSAN=1).
    if [ "${WARREN_TSAN:-$([ $# -eq 0 ] && echo 1 || echo 0)}" = 1 ]; then
        tsan_tests
    fi
    # Then a 30 s smoke run of each fuzz target on its corpus (one test each), likewise only
    # when asked (WARREN_FUZZ=1) with a test selection.
    if [ "${WARREN_FUZZ:-$([ $# -eq 0 ] && echo 1 || echo 0)}" = 1 ]; then
        set +e
        fuzz_all "${WARREN_FUZZ_SECONDS:-30}" count
        set -e
    fi
    echo "${passed} passed, ${failed} failed"
    [ "$failed" -eq 0 ] ;;
fuzz)
    deps
    fuzz_all "${1:-60}" ;;
*)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2 ;;
esac
