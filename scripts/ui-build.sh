#!/usr/bin/env bash
# Builds the web console (ui/dist) when a source is newer than the last build, else leaves it as it
# is: Tauri's beforeBuildCommand. A rebuild for nothing would give ui/dist new times and make cargo
# compile again every crate that embeds it (crates/node, the desktop app).
set -euo pipefail
cd "$(dirname "$0")/../ui"
[ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
if [ -f dist/index.html ] && [ -z "$(find src index.html package.json vite.config.ts tsconfig.json -newer dist/index.html -print -quit)" ]; then
    echo "ui/dist is current"
else
    npm run build
fi
