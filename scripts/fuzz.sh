#!/usr/bin/env bash
# Fuzzes every decoder that reads outside input (fuzz/fuzz_targets, one per decoder) with
# cargo-fuzz and libFuzzer.
#
#   scripts/fuzz.sh --quick            every target for 20 s (CI: scripts/test.sh), built
#                                      without optimisation: 20 s runs do not need the speed, and
#                                      the optimised build of every dependency with the coverage
#                                      flags is a long compile of its own (23 min, 2026-12-01,
#                                      on the shared 2 cores)
#   scripts/fuzz.sh --long             every target for an hour
#   scripts/fuzz.sh --time S [TARGET]...   S seconds each, all targets or the ones named
#
# cargo-fuzz needs unstable compiler flags (-Zsanitizer, sancov): the stable toolchain takes them
# with RUSTC_BOOTSTRAP=1, so no nightly is needed (nor fetched).
# The sanitizer is off by default: the decoders are safe Rust, where AddressSanitizer finds
# nothing a panic does not, and it makes runs slower; FUZZ_SANITIZER=address turns it on (its
# runtime ships in the stable rust-std). Runs start from the committed corpus in fuzz/corpus/T (the
# hand-made seeds plus what the long runs grew, merged with libFuzzer's -merge=1: every input adds
# coverage) and write what they find to fuzz/target/corpus/T, never into the repository; to keep a
# run's finds, merge them in: `fuzz/target/.../release/T -merge=1 fuzz/corpus/T fuzz/target/corpus/T`.
# A crash is saved in fuzz/artifacts/T and fails the script. Executions per target are printed at
# the end.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=20
build=()
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) seconds=20 build=(--dev) ;;
    --long) seconds=3600 ;;
    --time) seconds=$2; shift ;;
    -*) echo "usage: $0 [--quick | --long | --time SECONDS] [TARGET]..." >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-none}

cd fuzz
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
cargo fuzz build "${build[@]}" --sanitizer "$sanitizer" --debug-assertions

summary=()
status=0
for t in "${targets[@]}"; do
  work=target/corpus/$t
  mkdir -p "$work" "corpus/$t"
  log=target/fuzz-$t.log
  echo "=== fuzzing $t for ${seconds}s"
  if ! cargo fuzz run "${build[@]}" --sanitizer "$sanitizer" --debug-assertions "$t" \
      "$work" "corpus/$t" -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "!!! $t failed: the crashing input is in fuzz/artifacts/$t (log: fuzz/$log)"
    status=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  summary+=("$(printf '%-16s %6ss %12s executions' "$t" "$seconds" "$runs")")
done
printf '%s\n' "${summary[@]}"
exit $status
