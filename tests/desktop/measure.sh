#!/usr/bin/env bash
# Footprint of the desktop app (BENCHMARKS.md), headless like the e2e: launch → tray item
# registered on D-Bus and launch → window mapped (times), then PSS (sum of Pss: in
# /proc/PID/smaps_rollup) of the tray process and every descendant — the window process
# (`--window`) and its WebKitWebProcess and WebKitNetworkProcess — idle with the window open, and
# after the window is closed. Fresh data directory, standalone node, no site.
#
# With --site (UI-5's footprint): a one-server site is made with the `understudy` beside APP
# (init, serve, invite), the app is started with `--hidden --join LINE` and a fresh app directory,
# so that it runs no node of its own ("Run a node on this computer" is off once a site is joined)
# and only follows the site; the window is never opened. PSS of the app and its descendants after
# IDLE seconds.
#
# Usage: cargo build --release -p understudy-desktop -p understudy-tray -p understudy-cli &&
#        tests/desktop/measure.sh [--site] [APP] [IDLE_SECONDS]
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
if [ -z "${UNDERSTUDY_E2E_IN_SESSION:-}" ]; then
  export UNDERSTUDY_E2E_IN_SESSION=1
  exec dbus-run-session -- "$0" "$@"
fi
SITE=
if [ "${1:-}" = --site ]; then SITE=1; shift; fi
APP="$(realpath "${1:-$ROOT/target/release/understudy-desktop}")"
IDLE="${2:-10}"
PY=/usr/bin/python3
WORK="$(mktemp -d /tmp/understudy-measure.XXXXXX)"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$WORK"' EXIT
D=":$((80 + RANDOM % 9))"
Xvfb "$D" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 & PIDS+=($!)
export DISPLAY="$D" NO_AT_BRIDGE=1
for _ in $(seq 50); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done
dunst >/dev/null 2>&1 & PIDS+=($!)
status-notifier-watcher >/dev/null 2>&1 & PIDS+=($!)
until busctl --user status org.kde.StatusNotifierWatcher >/dev/null 2>&1 ||
      dbus-send --session --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.NameHasOwner \
        string:org.kde.StatusNotifierWatcher 2>/dev/null | grep -q true; do sleep 0.05; done

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export UNDERSTUDY_DATA_DIR="$WORK/data" UNDERSTUDY_LISTEN="127.0.0.1:$(free_port)"
export UNDERSTUDY_DESKTOP_DIR="$WORK/app"
JOIN=()
if [ -n "$SITE" ]; then
  CLI="$(dirname "$APP")/understudy"
  "$CLI" init --data-dir "$WORK/site" --name site1 --listen "127.0.0.1:$(free_port)" --role server >"$WORK/site.log" 2>&1
  "$CLI" serve --data-dir "$WORK/site" >>"$WORK/site.log" 2>&1 & PIDS+=($!)
  until LINE=$("$CLI" invite --label measure --data-dir "$WORK/site" 2>/dev/null); do sleep 0.2; done
  JOIN=(--hidden --join "$LINE")
fi
t0=$(date +%s%N)
"$APP" "${JOIN[@]}" >"$WORK/app.log" 2>&1 & APP_PID=$!; PIDS+=($APP_PID)
# Registration seen on the watcher (polled every 20 ms with dbus-send, ~5 ms a call).
until dbus-send --session --print-reply --dest=org.kde.StatusNotifierWatcher /StatusNotifierWatcher \
        org.freedesktop.DBus.Properties.Get string:org.kde.StatusNotifierWatcher \
        string:RegisteredStatusNotifierItems 2>/dev/null | grep -q 'string "'; do sleep 0.02; done
t1=$(date +%s%N)
echo "launch → tray registered: $(( (t1 - t0) / 1000000 )) ms"
if [ -z "$SITE" ]; then
  until xdotool search --onlyvisible --name '^Understudy$' >/dev/null 2>&1; do sleep 0.05; done
  t2=$(date +%s%N)
  echo "launch → window mapped:   $(( (t2 - t0) / 1000000 )) ms"
fi

tree() { local p=$1; echo "$p"; for c in $(pgrep -P "$p"); do tree "$c"; done; }
pss() {
  local total=0 kb
  for p in $(tree "$APP_PID"); do
    kb=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
    [ -n "$kb" ] || continue
    printf '    %-24s %6d MB  (anon %d MB, file %d MB)\n' "$(cat /proc/$p/comm)$(tr '\0' ' ' </proc/$p/cmdline | grep -o ' --window')" $((kb / 1024)) \
      $(( $(awk '/^Pss_Anon:/ {print $2}' "/proc/$p/smaps_rollup") / 1024 )) \
      $(( $(awk '/^Pss_File:/ {print $2}' "/proc/$p/smaps_rollup") / 1024 ))
    total=$((total + kb))
  done
  printf '    %-24s %6d MB\n' total $((total / 1024))
}
sleep "$IDLE"
if [ -n "$SITE" ]; then
  grep -q "joined site site1" "$WORK/app.log" || { echo "the app did not join the site:"; tail -5 "$WORK/app.log"; exit 1; }
  [ ! -e "$UNDERSTUDY_DATA_DIR/config.toml" ] || { echo "the app made a node of its own"; exit 1; }
  echo "PSS idle, no node on this computer, one site followed, window never opened ($IDLE s after launch):"; pss
  echo "  the largest parts of the app process's PSS, by file mapped:"
  awk '/^[0-9a-f]+-[0-9a-f]+ / {f = ($6 == "" ? "[anonymous]" : $6)} /^Pss:/ {p[f] += $2}
       END {for (k in p) printf "    %7d kB %s\n", p[k], k}' "/proc/$APP_PID/smaps" | sort -rn | head -15
  exit 0
fi
echo "PSS idle, window open ($IDLE s after launch):"; pss
WIN=$(xdotool search --name '^Understudy$' | head -1)
WINDOW_PROCS=$(tree "$APP_PID" | tail -n +2)
$PY "$ROOT/tests/desktop/close_window.py" "$WIN"
until [ -z "$(xdotool search --name '^Understudy$' 2>/dev/null)" ]; do sleep 0.05; done
for p in $WINDOW_PROCS; do while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; done
echo "window closed; the window process and its WebKit processes exited"
sleep "$IDLE"
echo "PSS idle, window closed ($IDLE s after closing):"; pss
