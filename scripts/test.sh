#!/usr/bin/env bash
# Installs what is missing, then runs every test: the console's unit tests, clippy, every Rust
# test (engine simulation and property tests, runtime, CLI, whole-system tests with real
# processes, desktop shell), a short fuzzing run of every decoder, and the desktop app end to
# end under Xvfb + D-Bus.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { printf '\n=== %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

step "setup"
scripts/setup.sh

# Beside everything from here on, CPU-bound jobs run at the lowest priority, each in its own
# target directory (cargo locks one directory per build), each logging to a file shown by its
# step, each in a session of its own so that an early exit stops it with everything it started:
# the Windows programs (from the start: they soak up what the host build leaves idle) and the
# fuzzers (beside the Rust tests, which mostly wait on timers and sockets).
background=()
trap 'for p in "${background[@]}"; do kill -- "-$p" 2>/dev/null || true; done' EXIT
mkdir -p target
# IN-3: understudy.exe and understudy-desktop.exe, built and linted for Windows in the cheap
# `cross` profile (Cargo.toml: no optimisation, no debug info; the Wine smoke test moves only
# 1,000 records). The build and the lint share the directory, so its build scripts and
# procedural macros are compiled once.
#
# Each background job runs in a session of its own (setsid), and Linux gives each session its own
# scheduling group (autogroup) with an equal share of the CPU whatever its processes' nice value:
# so each job also sets its group's nice (/proc/self/autogroup), or "lowest priority" would mean
# a third of the CPU each during the build.
CARGO_TARGET_DIR=target/cross setsid nice -n 19 bash -c '
    set -e
    echo 19 >/proc/self/autogroup 2>/dev/null || true
    s=$(date +%s)
    cargo build --profile cross --target x86_64-pc-windows-gnu -p understudy-cli -p understudy-desktop
    echo "windows build: $(( $(date +%s) - s )) s"; s=$(date +%s)
    cargo clippy --profile cross --target x86_64-pc-windows-gnu -p understudy-cli -p understudy-desktop \
        --all-targets -- -D warnings
    echo "windows clippy: $(( $(date +%s) - s )) s"
' >target/windows-build.log 2>&1 &
windows=$!
background+=("$windows")
# Waits for a background job; its log's tail either way, all of it when it failed.
finish() {
    local pid=$1 log=$2
    if wait "$pid"; then tail -n "$3" "$log"; else cat "$log"; echo "!!! failed: $log"; exit 1; fi
}

step "web console unit tests"
(cd ui && npm test --silent)

step "format"
cargo fmt --all --check

step "console types generated from crates/api are current"
cargo test -p understudy-api --features ts typescript_bindings_are_current

step "build"
cargo build --workspace --all-targets

setsid nice -n 19 bash -c 'echo 19 >/proc/self/autogroup 2>/dev/null || true; exec scripts/fuzz.sh --quick' \
    >target/fuzz.log 2>&1 &
fuzz=$!
background+=("$fuzz")

# Clippy lints the host build beside the Rust tests, in the same target directory (its build
# scripts are the build's), started once `cargo test` has released the directory's lock, i.e.
# once it runs the first test binary (else the tests would wait for the lint).
step "rust tests (clippy for the host beside them)"
: >target/rust-tests.stderr
setsid bash -c '
    echo 5 >/proc/self/autogroup 2>/dev/null || true
    until grep -q "^ *Running " target/rust-tests.stderr; do sleep 1; done
    exec nice -n 5 cargo clippy --workspace --all-targets -- -D warnings
' >target/clippy.log 2>&1 &
clippy=$!
background+=("$clippy")
cargo test --workspace -- --test-threads 2 2> >(tee -a target/rust-tests.stderr >&2)

step "clippy (beside the Rust tests)"
finish "$clippy" target/clippy.log 2

step "server package: build, lint, install, run as the service, upgrade, purge"
tests/deb/run.sh target/debug/understudy

step "fuzz every decoder (20 s per target, beside the Rust tests)"
finish "$fuzz" target/fuzz.log 8

step "console in a browser"
tests/console/run.sh

step "desktop end to end"
tests/desktop/run-desktop-e2e.sh

# Tauri's bundler finds target/debug/understudy-desktop built (the app always has Tauri's
# production feature, custom-protocol, and ui/dist is rebuilt only when stale: scripts/ui-build.sh)
# and patches it in place: so after the end-to-end test.
step "desktop package: Tauri's bundler, lint, install beside the server package, start"
tests/deb/run-desktop.sh "$(scripts/package-desktop-deb.sh --debug --out target/packages-test)"

# Last, so that the Windows job has the whole run beside it.
step "Windows (IN-3): understudy.exe and understudy-desktop.exe (built and linted in the background) under Wine"
finish "$windows" target/windows-build.log 4
tests/windows/run-wine.sh target/cross/x86_64-pc-windows-gnu/cross/understudy.exe target/debug/understudy \
    target/cross/x86_64-pc-windows-gnu/cross/understudy-desktop.exe

step "done"
