#!/usr/bin/env bash
# Installs what is missing on a fresh Debian 12 to build, run and test Understudy:
# Debian packages (scripts/packages.txt), the web console's npm packages (ui/package-lock.json),
# and the console build itself (ui/dist, embedded into the binaries).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
while read -r pkg _; do
  case "$pkg" in ''|'#'*) continue ;; esac
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done < scripts/packages.txt
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup (https://rustup.rs)"; exit 1; }
command -v npm >/dev/null || { echo "npm is missing: install Node.js 20 or later"; exit 1; }
# Clippy lints every build of scripts/test.sh (it runs as the compiler of the workspace's crates).
if command -v rustup >/dev/null && ! rustup component list --installed | grep -q '^clippy'; then
  rustup component add clippy rustfmt
fi
# IN-3: the Windows builds (understudy.exe) link with Debian's MinGW-w64.
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx x86_64-pc-windows-gnu; then
  rustup target add x86_64-pc-windows-gnu
fi

(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
