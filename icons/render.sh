#!/usr/bin/env bash
# Renders icons/src/*.svg into the PNG sizes the tray and Tauri use. Needs rsvg-convert (librsvg2-bin).
# The PNGs are committed, so building the app does not need this script.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p tray app
for state in normal degraded blackout stopped; do
  for size in 32 64 128 256; do
    rsvg-convert -w "$size" -h "$size" "src/tray-$state.svg" -o "tray/$state-$size.png"
  done
done
rsvg-convert -w 32 -h 32 src/app.svg -o app/32x32.png
rsvg-convert -w 128 -h 128 src/app.svg -o app/128x128.png
rsvg-convert -w 256 -h 256 src/app.svg -o app/128x128@2x.png
rsvg-convert -w 512 -h 512 src/app.svg -o app/icon.png
# The Windows resource of understudy-desktop.exe (IN-3); needs ImageMagick.
convert app/icon.png -define icon:auto-resize=256,128,64,48,32,16 app/icon.ico
