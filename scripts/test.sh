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

# Clippy is the compiler of the workspace's own crates in every build below (cargo runs it as
# RUSTC_WORKSPACE_WRAPPER, as `cargo clippy` itself does, with `-D warnings`): the one build both
# lints and makes the binaries the tests run, with no second pass over the dependencies in check
# mode. A lint is a compile error of that build. Dependencies are compiled by rustc as ever.
export RUSTC_WORKSPACE_WRAPPER
RUSTC_WORKSPACE_WRAPPER=$(command -v clippy-driver)
export CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__

# Beside everything from here on, CPU-bound jobs run at the lowest priority, each in its own
# target directory (cargo locks one directory per build), each logging to a file shown by its
# step, each in a session of its own so that an early exit stops it with everything it started:
# the Windows programs (from the start: they soak up what the host build leaves idle) and the
# fuzzers (beside the Rust tests, which mostly wait on timers and sockets).
background=()
trap 'for p in "${background[@]}"; do kill -- "-$p" 2>/dev/null || true; done' EXIT
mkdir -p target
# IN-3: understudy.exe and understudy-desktop.exe, built and linted for Windows (clippy as the
# workspace's compiler, as for the host: the Windows-only code is linted as it is compiled) in the
# cheap `cross` profile (Cargo.toml: no optimisation, no debug info; the Wine smoke test moves only
# 1,000 records). The tests' own code is linted by the host build.
#
# Each background job runs in a session of its own (setsid), and Linux gives each session its own
# scheduling group (autogroup) with an equal share of the CPU whatever its processes' nice value:
# so each job also sets its group's nice (/proc/self/autogroup), or "lowest priority" would mean
# a third of the CPU each during the build.
CARGO_TARGET_DIR=target/cross setsid nice -n 19 bash -c '
    set -e
    echo 19 >/proc/self/autogroup 2>/dev/null || true
    s=$(date +%s)
    cargo build --profile cross --target x86_64-pc-windows-gnu -p understudy-cli -p understudy-desktop -p understudy-tray
    echo "windows build and lint: $(( $(date +%s) - s )) s"
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

step "build and clippy (every target of the workspace)"
cargo build --workspace --all-targets

# The fuzzers are built with the fuzzing flags in their own workspace (fuzz/), not linted.
setsid nice -n 19 env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS bash -c \
    'echo 19 >/proc/self/autogroup 2>/dev/null || true; exec scripts/fuzz.sh --quick' \
    >target/fuzz.log 2>&1 &
fuzz=$!
background+=("$fuzz")

step "rust tests"
cargo test --workspace -- --test-threads 2

step "server package: build, lint, install, run as the service, upgrade, purge"
tests/deb/run.sh target/debug/understudy

step "fuzz every decoder (20 s per target, beside the Rust tests)"
finish "$fuzz" target/fuzz.log 8

# The steps from here on run the binaries of the workspace build above: a `cargo build -p …` of
# their own would have that package's feature set, and compile it and some of its dependencies
# again (minutes, cold).
step "console in a browser"
CLI=target/debug/understudy tests/console/run.sh

step "desktop end to end"
APP=target/debug/understudy-desktop CLI=target/debug/understudy tests/desktop/run-desktop-e2e.sh

# Tauri's bundler packages target/debug/understudy-desktop as built (the app always has Tauri's
# production feature, custom-protocol) and patches it in place: so after the end-to-end test.
step "desktop package: Tauri's bundler, lint, install beside the server package, start"
tests/deb/run-desktop.sh "$(scripts/package-desktop-deb.sh --debug --bundle-only --out target/packages-test)"

# Last, so that the Windows job has the whole run beside it.
step "Windows (IN-3): understudy.exe and understudy-desktop.exe (built and linted in the background) under Wine"
finish "$windows" target/windows-build.log 4
tests/windows/run-wine.sh target/cross/x86_64-pc-windows-gnu/cross/understudy.exe target/debug/understudy \
    target/cross/x86_64-pc-windows-gnu/cross/understudy-desktop.exe

step "done"
