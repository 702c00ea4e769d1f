# tools/bench-lib.sh — sourced by the bench scripts: finds warren-perf (WARREN_PERF, then the
# build dirs beside this file, then $PATH) into $PERF and checks python3 is there. $1 names the
# calling script for the error messages.
bench_find_perf() {
    local me=$1 root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    PERF=${WARREN_PERF:-}
    if [ -z "$PERF" ]; then
        for p in "$root/build-perf/tools/warren-perf" "$root/build/tools/warren-perf"; do
            [ -x "$p" ] && { PERF=$p; break; }
        done
        [ -n "$PERF" ] || PERF=$(command -v warren-perf || true)
    fi
    if [ -z "$PERF" ] || [ ! -x "$PERF" ]; then
        echo "$me: warren-perf not found; build it (meson setup build && ninja -C build) or set WARREN_PERF." >&2
        exit 2
    fi
    command -v python3 >/dev/null || { echo "$me: python3 is needed to read warren-perf's JSON." >&2; exit 2; }
}
