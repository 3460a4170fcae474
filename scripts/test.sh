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

step "rust tests"
cargo test --workspace -- --test-threads 2

step "server package: build, lint, install, run as the service, upgrade, purge"
tests/deb/run.sh target/debug/understudy

step "Windows (IN-3): understudy.exe built and linted for x86_64-pc-windows-gnu, run under Wine"
cargo build --target x86_64-pc-windows-gnu -p understudy-cli
cargo clippy --target x86_64-pc-windows-gnu -p understudy-cli --all-targets -- -D warnings
tests/windows/run-wine.sh target/x86_64-pc-windows-gnu/debug/understudy.exe target/debug/understudy

step "fuzz every decoder (20 s per target)"
scripts/fuzz.sh --quick

step "console in a browser"
tests/console/run.sh

step "desktop end to end"
tests/desktop/run-desktop-e2e.sh

# After the end-to-end test: Tauri's bundler rebuilds target/debug/understudy-desktop with its
# production features.
step "desktop package: Tauri's bundler, lint, install beside the server package, start"
tests/deb/run-desktop.sh "$(scripts/package-desktop-deb.sh --debug --out target/packages-test)"

step "done"
