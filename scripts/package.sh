#!/usr/bin/env bash
# Builds every artefact into dist/ (issue 17 item 6, IN-1…IN-3), release builds:
#   understudy_<version>_amd64.deb          the server/agent package (scripts/package-deb.sh)
#   understudy-desktop_<version>_amd64.deb  the tray app, from Tauri's bundler (both executables:
#                                           understudy-desktop and understudy-tray)
#   understudy.exe, understudy-desktop.exe, understudy-tray.exe
#                                           Windows (x86_64-pc-windows-gnu, MinGW-w64), with
#   WebView2Loader.dll                      Microsoft's WebView2 loader, which the desktop .exe
#                                           imports (MinGW links it as a DLL): keep it beside it
# The AppImage is not built: Tauri's AppImage bundler downloads linuxdeploy and its plugins from
# GitHub at build time, which an offline build machine cannot reach.
#
#   scripts/package.sh [--debug]    --debug: debug builds (quicker; for trying the packaging)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
cargo_profile=(--release)
tauri_profile=()
if [ "${1:-}" = --debug ]; then
    profile=debug cargo_profile=() tauri_profile=(--debug)
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
win=x86_64-pc-windows-gnu
scripts/setup.sh
mkdir -p dist

cargo build "${cargo_profile[@]}" -p understudy-cli
scripts/package-deb.sh --bin "target/$profile/understudy" --version "$version" --out dist >/dev/null

# Tauri's bundler (npm run tauri build), finished for Debian's policy.
if [ "$profile" = debug ]; then scripts/package-desktop-deb.sh --debug --out dist >/dev/null
else scripts/package-desktop-deb.sh --out dist >/dev/null; fi

cargo build "${cargo_profile[@]}" --target "$win" -p understudy-cli -p understudy-desktop -p understudy-tray
cp "target/$win/$profile/understudy.exe" "target/$win/$profile/understudy-desktop.exe" \
    "target/$win/$profile/understudy-tray.exe" "target/$win/$profile/WebView2Loader.dll" dist/

(cd dist && ls -l understudy_"$version"_amd64.deb understudy-desktop_"$version"_amd64.deb \
    understudy.exe understudy-desktop.exe understudy-tray.exe WebView2Loader.dll)
