#!/usr/bin/env bash
# tools/dev.sh — one entry point for developers and CI.
#   tools/dev.sh run [warrend flags]   install missing packages, build, run warrend on :5672 with ./data
#   tools/dev.sh test                  install missing packages, build with ASan+UBSan, run every test,
#                                      print "N passed, N failed" (exit 1 on any failure)
#   tools/dev.sh fuzz [seconds]        build the libFuzzer target with clang and run it
#   tools/dev.sh deps                  only install the missing Debian packages
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(gcc clang pkg-config meson ninja-build python3
          libuv1-dev libssl-dev liblmdb-dev librabbitmq-dev
          libcmocka-dev amqp-tools python3-pika lmdb-utils python3-matplotlib)

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
    log=build-test/meson-logs/testlog.txt
    set +e
    meson test -C build-test --print-errorlogs --num-processes 2 "$@"
    status=$?
    set -e
    # meson's summary lines: "Ok: N", "Fail: N", "Unexpected Pass: N", "Timeout: N"
    ok=$(sed -n 's/^Ok:[[:space:]]*\([0-9]*\).*/\1/p' "$log" | tail -1)
    fail=$(sed -n 's/^Fail:[[:space:]]*\([0-9]*\).*/\1/p' "$log" | tail -1)
    upass=$(sed -n 's/^Unexpected Pass:[[:space:]]*\([0-9]*\).*/\1/p' "$log" | tail -1)
    tmo=$(sed -n 's/^Timeout:[[:space:]]*\([0-9]*\).*/\1/p' "$log" | tail -1)
    passed=${ok:-0}
    failed=$(( ${fail:-0} + ${upass:-0} + ${tmo:-0} ))
    if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
    echo "${passed} passed, ${failed} failed"
    [ "$failed" -eq 0 ] ;;
fuzz)
    deps
    exec tests/fuzz/run.sh "$@" ;;
*)
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    exit 2 ;;
esac
