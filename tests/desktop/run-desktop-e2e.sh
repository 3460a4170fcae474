#!/usr/bin/env bash
# End-to-end test of the desktop app, headless, as a user meets it: a private D-Bus session,
# Xvfb, a notification daemon (dunst), a tray host (status-notifier-watcher), the real app with a
# fresh data directory (its embedded node is a standalone server), and a real site around it: two
# agent processes (`understudy serve`) enrolled with a token, and a pair "web" of them.
#
# Part 1, the tray, over D-Bus as a panel would use it:
#   1. the tray item is registered on org.kde.StatusNotifierWatcher,
#   2. its dbusmenu shows the node header and lists the pair with its active member,
#   3. clicking "Force failover web" moves the pair (menu, `understudy status --json`, a
#      notification on D-Bus) and "Revert web" moves it back,
#   4. clicking "Generate certificate" raises a CERT_GENERATED notification,
#   5. closing the window releases the webview and "Open window" makes a new one,
#   6. Quit stops the node and ends the app with status 0.
# Part 2, the window, through tauri-driver (WebDriver): a new session starts the app on the same
#   data directory, "Force failover" clicked in the window moves the pair (window, status, a
#   FORCED_FAILOVER notification on D-Bus); screenshot docs/screenshots/window.png.
#
# Usage: tests/desktop/run-desktop-e2e.sh            (builds the app and the CLI if not given)
#        APP=target/release/understudy-desktop CLI=target/release/understudy tests/desktop/run-desktop-e2e.sh
# Needs the packages of scripts/setup-desktop.sh and tauri-driver (installed here if missing,
# `cargo install tauri-driver --locked`, ~35 s). Prints "N passed, N failed" at the end.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"

# Run everything inside a private session bus, so nothing touches the user's desktop.
if [ -z "${UNDERSTUDY_E2E_IN_SESSION:-}" ]; then
  export UNDERSTUDY_E2E_IN_SESSION=1
  exec dbus-run-session -- "$0" "$@"
fi

PY=/usr/bin/python3 # Debian's python, which has python3-gi
CHECK="$PY $ROOT/tests/desktop/tray_check.py"
WORK="$(mktemp -d /tmp/understudy-desktop-e2e.XXXXXX)"
PIDS=()
PASSED=0
FAILED=0

log() { printf '[e2e] %s\n' "$*"; }
pass() { PASSED=$((PASSED + 1)); log "PASS $*"; }
fail() { FAILED=$((FAILED + 1)); log "FAIL $*"; }

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  if [ "$FAILED" -gt 0 ]; then
    log "logs kept in $WORK"
    log "--- app log (tail) ---"; tail -n 40 "$WORK/app.log" 2>/dev/null
  elif [ -z "${KEEP_WORK:-}" ]; then
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

# free_port IP: a TCP port free on that loopback address.
free_port() { $PY -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "${1:-127.0.0.1}"; }
# wait_for SECONDS CMD...: runs CMD every 0.2 s until it succeeds; fails after SECONDS.
wait_for() { local end=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.2; done; }

# ---------------------------------------------------------------------------------- the app --
APP="${APP:-}"
CLI="${CLI:-}"
if [ -z "$APP" ] || [ -z "$CLI" ]; then
  log "building understudy-desktop and understudy"
  (cd "$ROOT" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}" cargo build -q -p understudy-desktop -p understudy-cli) || {
    fail "build"; echo "$PASSED passed, $FAILED failed"; exit 1; }
  APP="${APP:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/understudy-desktop}"
  CLI="${CLI:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/understudy}"
fi
APP="$(realpath "$APP")"
CLI="$(realpath "$CLI")"
TAURI_DRIVER="${TAURI_DRIVER:-$(command -v tauri-driver || echo "$HOME/.cargo/bin/tauri-driver")}"
if [ ! -x "$TAURI_DRIVER" ]; then
  log "installing tauri-driver (cargo install tauri-driver --locked)"
  cargo install -q tauri-driver --locked || fail "install tauri-driver"
  TAURI_DRIVER="$HOME/.cargo/bin/tauri-driver"
fi

# ----------------------------------------------------------------------------- the desktop --
DISPLAY_NUM="${E2E_DISPLAY:-:$((90 + RANDOM % 9))}"
Xvfb "$DISPLAY_NUM" -screen 0 1280x800x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
PIDS+=($!)
export DISPLAY="$DISPLAY_NUM" NO_AT_BRIDGE=1
for _ in $(seq 50); do xdpyinfo >/dev/null 2>&1 && break; [ -e "/tmp/.X11-unix/X${DISPLAY_NUM#:}" ] && break; sleep 0.1; done

dbus-monitor --session "interface='org.freedesktop.Notifications'" >"$WORK/notifications.log" 2>&1 &
PIDS+=($!)
dunst >"$WORK/dunst.log" 2>&1 &
PIDS+=($!)
# The tray host: status-notifier-watcher (light, draws nothing), or with TRAY_HOST=xfce4-panel a
# real panel that draws the icon (then a screenshot of the open tray menu is taken too).
TRAY_HOST="${TRAY_HOST:-status-notifier-watcher}"
if [ "$TRAY_HOST" = xfce4-panel ]; then
  export XDG_CONFIG_HOME="$WORK/config"
  mkdir -p "$XDG_CONFIG_HOME/xfce4/xfconf/xfce-perchannel-xml"
  cp "$ROOT/tests/desktop/xfce/xfce4-panel.xml" "$XDG_CONFIG_HOME/xfce4/xfconf/xfce-perchannel-xml/"
  dbus-update-activation-environment DISPLAY XDG_CONFIG_HOME # for xfconfd, started by D-Bus
  xfce4-panel --disable-wm-check >"$WORK/panel.log" 2>&1 &
else
  status-notifier-watcher >"$WORK/watcher.log" 2>&1 &
fi
PIDS+=($!)
watcher_up() { $PY -c 'from gi.repository import Gio, GLib
c = Gio.bus_get_sync(Gio.BusType.SESSION, None)
r = c.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner",
                GLib.Variant("(s)", ("org.kde.StatusNotifierWatcher",)), None, 0, 2000, None)
raise SystemExit(0 if r.unpack()[0] else 1)'; }
wait_for 20 watcher_up || fail "tray host ($TRAY_HOST) on D-Bus"

# -------------------------------------------------------------------------------- start it --
# The app's node: a standalone server whose config is made beforehand with the CLI (the app finds
# it and starts it), so that agents can enroll with a token.
ENROLL=e2e-$RANDOM$RANDOM
SRV_IP=127.0.8.1
export UNDERSTUDY_DATA_DIR="$WORK/data"
export UNDERSTUDY_LISTEN="$SRV_IP:$(free_port $SRV_IP)"
"$CLI" init --data-dir "$UNDERSTUDY_DATA_DIR" --name desk --listen "$UNDERSTUDY_LISTEN" \
  --set server.enroll_token="$ENROLL" >"$WORK/init.log" 2>&1 || fail "init the app's node ($(cat "$WORK/init.log"))"
FP=$("$CLI" cert show --json --data-dir "$UNDERSTUDY_DATA_DIR" | $PY -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])')
st() { "$CLI" status --json --data-dir "$UNDERSTUDY_DATA_DIR"; }
# pair_active PAIR WANT: the app's node says the pair's active member is WANT.
pair_active() { st 2>/dev/null | $PY -c 'import json,sys
p=[p for p in json.load(sys.stdin)["pairs"] if p["name"]==sys.argv[1]]
sys.exit(0 if p and p[0]["active"]==sys.argv[2] else 1)' "$1" "$2"; }
# agents_connected A...: every named agent is connected to the app's node.
agents_connected() { st 2>/dev/null | $PY -c 'import json,sys
a={x["name"]:x["state"] for x in json.load(sys.stdin)["agents"]}
sys.exit(0 if all(a.get(n)=="connected" for n in sys.argv[1:]) else 1)' "$@"; }

log "starting $APP (data $UNDERSTUDY_DATA_DIR, listen $UNDERSTUDY_LISTEN)"
STARTED=$(date +%s.%N)
RUST_LOG="${RUST_LOG:-info}" "$APP" >"$WORK/app.log" 2>&1 &
APP_PID=$!
PIDS+=($APP_PID)

# 1. The tray item is registered.
if ITEM=$($CHECK wait-registered 30); then
  pass "tray item registered: $ITEM ($(printf '%.1f' "$(echo "$(date +%s.%N) - $STARTED" | bc 2>/dev/null || echo 0)") s after launch)"
else
  fail "tray item registered"
fi

# 2. The menu shows the running node: its header names roles (not "Node stopped").
if HEADER=$($CHECK wait-label '^[^ ]+: (Standalone|Server|Agent|No role)( |$)' 60); then
  pass "menu header: $HEADER"
else
  fail "menu header"
fi
$CHECK layout >"$WORK/menu.txt" 2>&1 && { log "menu:"; sed 's/^/    /' "$WORK/menu.txt"; }
for label in '^Link: ' '^Agents: ' '^Generate certificate$' '^Open window$' '^Quit$' '^Mute notifications$' '^Server role$' '^Set this server to standby$'; do
  if sed "s/  \[[a-z, ]*\]$//" "$WORK/menu.txt" | grep -Eq "^ *${label#^}"; then pass "menu lists /$label/"; else fail "menu lists /$label/"; fi
done

# ------------------------------------------------------------------------------- the site --
# Two agents, real processes, home on the app's node, enrolled by token, 200 ms heartbeat.
start_agent() { # NAME IP
  local dir="$WORK/$1"
  "$CLI" init --data-dir "$dir" --name "$1" --listen "$2:$(free_port "$2")" --role agent \
    --server "https://$UNDERSTUDY_LISTEN#$FP" --set agent.enroll_token="$ENROLL" \
    --set agent.heartbeat=200ms >"$WORK/$1.init.log" 2>&1 || { fail "init agent $1"; return 1; }
  "$CLI" serve --data-dir "$dir" >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
}
start_agent a1 127.0.8.11
start_agent a2 127.0.8.12
if wait_for 30 agents_connected a1 a2; then pass "agents a1 and a2 enrolled and connected"; else fail "agents a1 and a2 connected"; fi
if "$CLI" pair add web --primary a1 --secondary a2 --failover-after 1s --data-dir "$UNDERSTUDY_DATA_DIR" >"$WORK/pair.log" 2>&1; then
  pass "pair web added through the app node's admin API"
else
  fail "pair add web ($(cat "$WORK/pair.log"))"
fi

# pair_checks PAIR PRIMARY SECONDARY: the menu lists the pair on its primary; "Force failover"
# clicked in the tray moves it to the secondary (menu, status, notification), "Revert" moves it back.
pair_checks() {
  local pair=$1 primary=$2 secondary=$3
  if $CHECK wait-label "^$pair: active primary \\($primary\\)" 20 >/dev/null; then
    pass "menu lists pair $pair on $primary"
  else
    fail "menu lists pair $pair on $primary"; return
  fi
  if $CHECK click "^Force failover $pair$" >/dev/null && wait_for 10 pair_active "$pair" secondary; then
    pass "tray Force failover moved $pair to $secondary (status --json: active secondary)"
  else
    fail "tray Force failover moved $pair to $secondary"
  fi
  if $CHECK wait-label "^$pair: active secondary \\($secondary\\)" 10 >/dev/null; then
    pass "menu follows: $pair active secondary ($secondary)"
  else
    fail "menu follows: $pair active secondary ($secondary)"
  fi
  if $CHECK wait-notification "Forced failover.*$pair" "$WORK/notifications.log" 10 >/dev/null; then
    pass "forced failover notification on D-Bus"
  else
    fail "forced failover notification on D-Bus"
  fi
  if $CHECK click "^Revert $pair$" >/dev/null && wait_for 10 pair_active "$pair" primary &&
     $CHECK wait-label "^$pair: active primary \\($primary\\)" 10 >/dev/null; then
    pass "tray Revert moved $pair back to $primary (status and menu)"
  else
    fail "tray Revert moved $pair back to $primary"
  fi
}
pair_checks web a1 a2

# With a panel that draws the tray: click the icon as a user does and take a screenshot of the
# open menu (docs/screenshots/tray-menu.png), then close it with Escape.
tray_menu_screenshot() {
  local panel geo x y w h before after
  panel=$(xdotool search --onlyvisible --class xfce4-panel 2>/dev/null | head -1)
  [ -n "$panel" ] || { fail "tray menu screenshot: no panel window"; return; }
  eval "$(xdotool getwindowgeometry --shell "$panel")" # X Y WIDTH HEIGHT
  x=$((X + WIDTH - HEIGHT / 2)); y=$((Y + HEIGHT / 2))  # the only icon, at the right end
  command -v dunstctl >/dev/null && dunstctl close-all
  visible() { xdotool search --onlyvisible --name '' 2>/dev/null | wc -l; }
  before=$(visible)
  xdotool mousemove "$x" "$y" click 1
  # The menu is a new popup window: wait until it is mapped.
  wait_for 10 sh -c "[ \$(xdotool search --onlyvisible --name '' 2>/dev/null | wc -l) -gt $before ]" ||
    log "no new window seen after the click (screenshot taken anyway)"
  import -window root "$WORK/tray-menu-full.png" 2>>"$WORK/import.log" &&
    convert "$WORK/tray-menu-full.png" -crop 560x620+720+0 +repage "$ROOT/docs/screenshots/tray-menu.png" &&
    pass "screenshot docs/screenshots/tray-menu.png (menu opened by a click on the panel's icon)" ||
    fail "tray menu screenshot"
  xdotool key Escape
}
[ "$TRAY_HOST" = xfce4-panel ] && tray_menu_screenshot

# 3. Clicking "Generate certificate" in the menu raises a CERT_GENERATED notification.
if $CHECK click '^Generate certificate$'; then
  if $CHECK wait-notification 'Certificate generated' "$WORK/notifications.log" 15; then
    pass "Generate certificate → notification on D-Bus"
  else
    fail "Generate certificate → notification on D-Bus"
  fi
else
  fail "click Generate certificate"
fi

# PSS (kB) of the app and all its descendants (the WebKit processes are its children).
pss_tree() {
  local total=0 pid kb
  for pid in $1 $(pgrep -P "$1") $(for c in $(pgrep -P "$1"); do pgrep -P "$c"; done); do
    kb=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}
webkit_children() { pgrep -f WebKitWebProcess | while read -r p; do
  # only the app's own webviews
  [ "$(ps -o ppid= -p "$p" | tr -d ' ')" = "$APP_PID" ] && echo "$p"; done; }

# 3b. Closing the window releases the webview (UI-4); "Open window" in the tray makes a new one.
WIN=$(xdotool search --name '^Understudy$' 2>/dev/null | head -1)
if [ -n "$WIN" ]; then
  log "PSS with the window open: $(( $(pss_tree "$APP_PID") / 1024 )) MB"
  $PY "$ROOT/tests/desktop/close_window.py" "$WIN"
  gone=""
  for _ in $(seq 100); do
    if [ -z "$(xdotool search --name '^Understudy$' 2>/dev/null)" ] && [ -z "$(webkit_children)" ]; then gone=1; break; fi
    sleep 0.1
  done
  sleep 1
  if [ -n "$gone" ] && kill -0 "$APP_PID" 2>/dev/null; then
    pass "closing the window destroys the webview; the app stays in the tray"
    log "PSS with the window closed: $(( $(pss_tree "$APP_PID") / 1024 )) MB"
  else
    fail "closing the window (window or WebKitWebProcess still there, or the app exited)"
  fi
  if $CHECK click '^Open window$' && for _ in $(seq 100); do
       [ -n "$(xdotool search --name '^Understudy$' 2>/dev/null)" ] && break; sleep 0.1; done &&
     [ -n "$(xdotool search --name '^Understudy$' 2>/dev/null)" ]; then
    pass "Open window makes a new window"
  else
    fail "Open window makes a new window"
  fi
else
  fail "the window is shown at start"
fi

# 4. Quit from the tray stops the node and exits 0.
if $CHECK click '^Quit$'; then
  for _ in $(seq 150); do kill -0 "$APP_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$APP_PID" 2>/dev/null; then
    fail "Quit: the app still runs after 15 s"
  else
    wait "$APP_PID"; rc=$?
    if [ "$rc" -eq 0 ] && grep -q "node stopped" "$WORK/app.log"; then
      pass "Quit: node stopped, exit 0"
    else
      fail "Quit: exit status $rc"
    fi
  fi
else
  fail "click Quit"
fi

# ------------------------------------------------------------- part 2: the window, WebDriver --
# tauri-driver starts the app (same environment: data directory and listen address) in a new
# session; the agents reconnect to it. Notifications of this part go to a second log.
dbus-monitor --session "interface='org.freedesktop.Notifications'" >"$WORK/notifications2.log" 2>&1 &
PIDS+=($!)
WD_PORT=$(free_port)
"$TAURI_DRIVER" --port "$WD_PORT" >"$WORK/tauri-driver.log" 2>&1 &
PIDS+=($!)
wait_for 20 $PY -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' "$WD_PORT" ||
  fail "tauri-driver listening on $WD_PORT"
mkdir -p "$ROOT/docs/screenshots"
if WEBDRIVER_URL="http://127.0.0.1:$WD_PORT" $PY "$ROOT/tests/desktop/webdriver_check.py" "$APP" web \
     "$WORK/webview.png" >"$WORK/webdriver.log" 2>&1; then
  sed 's/^/    /' "$WORK/webdriver.log"
  pass "window (WebDriver): Force failover clicked, the window shows web on its secondary"
else
  sed 's/^/    /' "$WORK/webdriver.log"
  fail "window (WebDriver): force failover"
fi
if wait_for 10 pair_active web secondary; then pass "status --json: web active secondary"; else fail "status --json: web active secondary"; fi
if $CHECK wait-notification "Forced failover.*web" "$WORK/notifications2.log" 10 >/dev/null; then
  pass "FORCED_FAILOVER notification on D-Bus (window action)"
else
  fail "FORCED_FAILOVER notification on D-Bus (window action)"
fi
# The window's screenshot is WebDriver's (taken once the pair showed its secondary): the
# webview's own pixels, which notification popups on the root window cannot cover.
if [ -s "$WORK/webview.png" ]; then
  cp "$WORK/webview.png" "$ROOT/docs/screenshots/window.png"
  pass "screenshot docs/screenshots/window.png"
else
  fail "screenshot of the window (WebDriver)"
fi
# Stop the app as a user does (Quit in the tray), then tauri-driver.
WD_APP=$(pgrep -n -f "^$APP")
if $CHECK click '^Quit$' >/dev/null && wait_for 15 sh -c "! kill -0 $WD_APP 2>/dev/null"; then
  pass "Quit (WebDriver session's app)"
else
  fail "Quit (WebDriver session's app)"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
