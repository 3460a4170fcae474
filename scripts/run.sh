#!/usr/bin/env bash
# Installs what is missing, builds, and runs Understudy: the tray app when there is a display,
# otherwise the headless demo (a whole site of real processes on loopback addresses, `--fast`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  cargo build --release -p understudy-desktop -p understudy-tray -p understudy-cli
  exec target/release/understudy-desktop "$@"
else
  cargo build --release -p understudy-cli
  echo "no display: running the headless demo (Ctrl-C stops every node)"
  exec target/release/understudy demo --fast "$@"
fi
