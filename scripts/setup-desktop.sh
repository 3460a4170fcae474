#!/usr/bin/env bash
# System packages to build the desktop app (src-tauri) and run its end-to-end test headless
# (tests/desktop/run-desktop-e2e.sh) on Debian 12. Run as root (or with sudo). About 35 s.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends \
  libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libdbus-1-dev \
  build-essential pkg-config file \
  xvfb dbus-x11 at-spi2-core dunst xdotool imagemagick webkit2gtk-driver python3-gi \
  librsvg2-bin haskell-status-notifier-item-utils
# Building:      libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libdbus-1-dev
# Icons:         librsvg2-bin (rsvg-convert, for icons/render.sh)
# Headless test: xvfb dbus-x11 dunst (notification daemon) status-notifier-watcher (tray host)
#                imagemagick (import, screenshots) xdotool python3-gi (D-Bus checks)
