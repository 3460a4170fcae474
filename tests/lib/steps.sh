# Shared by the shell tests (tests/deb/run.sh, tests/windows/run-wine.sh): sourced after they set
# $work, the directory whose *.log files a failure shows.

# Fails the test with a sentence, showing the end of every log in $work.
fail() {
    echo "FAIL: $*" >&2
    if declare -F on_fail >/dev/null; then on_fail; fi
    for l in "$work"/*.log; do [ -f "$l" ] && { echo "--- $l" >&2; tail -20 "$l" >&2; }; done
    exit 1
}
ok() { echo "ok: $*"; }
# wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds, or fails the test with WHAT.
wait_for() {
    local t=$1 what=$2; shift 2
    for _ in $(seq $((t * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    fail "$what within ${t}s"
}
