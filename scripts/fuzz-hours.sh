#!/usr/bin/env bash
# Issue 12's fuzzing hours on a shared machine: each target runs until its process has used an
# hour of CPU (not of wall time: builds and tests beside it take their share), from the committed
# corpus plus what earlier runs grew, then SIGINT (libFuzzer prints its final stats).
#
#   scripts/fuzz-hours.sh [--cpu SECONDS] [--lanes N] [--no-build] [TARGET[:SECONDS]]...
#                                          default: 3600 s, 2 lanes, every target, built first
#
# TARGET:SECONDS gives that target its own budget (the rest of an hour that an earlier run began).
#
# N lanes run side by side (one per core), each its targets one after another. The fuzzers run at
# nice 19 in a scheduling group of their own (a session's autogroup), so the rest of the machine
# keeps its share. Never pause a fuzzer (SIGSTOP): libFuzzer's -timeout is wall time, and the
# pause is reported as a slow unit. Logs and the CPU used so far: fuzz/target/hours/T.{log,cpu};
# a crash is saved in fuzz/artifacts/T and listed at the end.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
budget=3600 lanes=2 build=1 targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) budget=$2; shift ;;
    --lanes) lanes=$2; shift ;;
    --no-build) build= ;;
    -*) echo "usage: $0 [--cpu SECONDS] [--lanes N] [--no-build] [TARGET[:SECONDS]]..." >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
export RUSTC_BOOTSTRAP=1
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
[ -z "$build" ] || cargo fuzz build --sanitizer none --debug-assertions
bin=target/$(rustc -vV | sed -n 's/^host: //p')/release
out=target/hours
mkdir -p "$out"
echo 19 >/proc/self/autogroup 2>/dev/null || true
tck=$(getconf CLK_TCK)

one() {
  local t=${1%%:*} limit=$budget cpu=0 p st
  [ "$t" = "$1" ] || limit=${1#*:}
  mkdir -p "target/corpus/$t" "artifacts/$t"
  nice -n 19 "$bin/$t" "target/corpus/$t" "corpus/$t" -max_total_time=1000000 -timeout=30 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$out/$t.log" 2>&1 &
  p=$!
  echo "$(date -u +%FT%TZ) $t started (pid $p, until ${limit} CPU-s)"
  while [ -d "/proc/$p" ]; do
    sleep 5
    read -r -a st <"/proc/$p/stat" 2>/dev/null || break
    cpu=$(( (st[13] + st[14]) / tck ))
    echo "$cpu" >"$out/$t.cpu"
    [ "$cpu" -lt "$limit" ] || { kill -INT "$p"; break; }
  done
  local rc=0
  wait "$p" || rc=$?
  echo "$(date -u +%FT%TZ) $t ended: ${cpu} CPU-s, $(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log") executions (exit $rc)"
}

for ((l = 0; l < lanes; l++)); do
  ( for ((i = l; i < ${#targets[@]}; i += lanes)); do one "${targets[$i]}"; done ) &
done
wait
found=$(find artifacts -type f 2>/dev/null | head -20 || true)
[ -z "$found" ] || { echo "!!! found:"; echo "$found"; exit 1; }
echo "nothing found"
