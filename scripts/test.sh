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

step "web console unit tests"
(cd ui && npm test --silent)

step "format"
cargo fmt --all --check

step "console types generated from crates/api are current"
cargo test -p understudy-api --features ts typescript_bindings_are_current

step "build"
cargo build --workspace --all-targets

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

# Beside the Rust tests, which mostly wait on timers and sockets, two CPU-bound jobs run at the
# lowest priority: the Windows build and lint (its own target directory: cargo locks one directory
# per build) and the fuzzers (build, then 20 s per target). Each logs to a file, shown by its step.
# Each runs in a session of its own, so that an early exit stops it with everything it started.
background=()
trap 'for p in "${background[@]}"; do kill -- "-$p" 2>/dev/null || true; done' EXIT
mkdir -p target
CARGO_TARGET_DIR=target/cross setsid nice -n 19 bash -c '
    set -e
    cargo build --target x86_64-pc-windows-gnu -p understudy-cli
    cargo clippy --target x86_64-pc-windows-gnu -p understudy-cli --all-targets -- -D warnings
' >target/windows-build.log 2>&1 &
windows=$!
setsid nice -n 19 scripts/fuzz.sh --quick >target/fuzz.log 2>&1 &
fuzz=$!
background=("$windows" "$fuzz")
# Waits for a background job; its log's tail either way, all of it when it failed.
finish() {
    local pid=$1 log=$2
    if wait "$pid"; then tail -n "$3" "$log"; else cat "$log"; echo "!!! failed: $log"; exit 1; fi
}

step "rust tests"
cargo test --workspace -- --test-threads 2

step "server package: build, lint, install, run as the service, upgrade, purge"
tests/deb/run.sh target/debug/understudy

step "Windows (IN-3): understudy.exe (built and linted for x86_64-pc-windows-gnu beside the Rust tests) run under Wine"
finish "$windows" target/windows-build.log 3
tests/windows/run-wine.sh target/cross/x86_64-pc-windows-gnu/debug/understudy.exe target/debug/understudy

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

step "done"
