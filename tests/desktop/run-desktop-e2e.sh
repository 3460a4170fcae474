#!/usr/bin/env bash
# End-to-end test of the desktop app, headless, as a user meets it: a private D-Bus session,
# Xvfb, a notification daemon (dunst), a tray host (status-notifier-watcher), the real app with a
# fresh data directory (its embedded node is a standalone server), and a real site around it: two
# agent processes (`understudy serve`) enrolled with a token, and a pair "web" of them.
#
# Part 1, the tray, over D-Bus as a panel would use it:
#   1. the tray item is registered on org.kde.StatusNotifierWatcher, by the tray process the app
#      became (understudy-tray, same pid), which maps no WebKit,
#   2. its dbusmenu shows the node header and lists the pair with its active member,
#   3. clicking "Force failover web" moves the pair (menu, `understudy status --json`, a
#      notification on D-Bus) and "Revert web" moves it back,
#   4. clicking "Generate certificate" raises a CERT_GENERATED notification,
#   5. the window is a process of its own (`understudy-desktop --window`, a child of the tray
#      process): closing it ends that process and its WebKit processes while the tray stays
#      registered; "Open window" in the menu makes a new one, clicked again (or a second launch of
#      the app) it raises that one instead of starting another,
#   6. "Start at login" writes $XDG_CONFIG_HOME/autostart/Understudy.desktop with Exec=APP --hidden,
#      clicked again removes it,
#   7. clicking a notification (dunstctl action) opens the window.
# Part 2, the window, through tauri-driver (WebDriver), the tray app still running: the session
#   starts `understudy-desktop --window --data-dir D` (the tray node's data directory), "Force
#   failover" clicked in the window moves the pair (window, status, a FORCED_FAILOVER notification
#   from the tray process on D-Bus); screenshot docs/screenshots/window.png.
# Part 3, split brain (HS-6, UI-2): the app's node is the primary of two hot-standby servers; its
#   peer s2 (`understudy serve`, secondary) is started and becomes STANDBY, then the link between
#   them (two relays, tests/desktop/relay.py) is cut until both are ACTIVE and healed: the app
#   raises the "Split brain" notification on D-Bus, and the lower epoch (the app's node) steps down.
# Last, Quit with a window open stops the node, ends the window process and exits with status 0.
# Part 4 (UI-5): tests/desktop/run-sites-e2e.sh, the tray following remote sites (SKIP_SITES=1: not).
# Part 4 (tests/desktop/window_sites.sh), UI-5: a second app with "Run a node on this computer"
#   off runs no node (no listener, no node directory), its tray toggle starts and stops one; its
#   window joins a real `understudy serve` site by pasting `understudy invite`'s line (a wrong
#   fingerprint refused with the reason, nothing stored), switches to it, shows the operator
#   token's 403 reason, removes and re-joins it; PSS with no node and the site joined.
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
# The tray host (tests/desktop/tray-host.sh: TRAY_HOST=xfce4-panel draws the icon, and the open
# menu is then saved as docs/screenshots/tray-menu.png).
# The login item (step 6) goes under $XDG_CONFIG_HOME/autostart: the test's own directory.
export XDG_CONFIG_HOME="$WORK/config"
mkdir -p "$XDG_CONFIG_HOME"
. "$ROOT/tests/desktop/tray-host.sh"
start_tray_host
watcher_up() { $PY -c 'from gi.repository import Gio, GLib
c = Gio.bus_get_sync(Gio.BusType.SESSION, None)
r = c.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner",
                GLib.Variant("(s)", ("org.kde.StatusNotifierWatcher",)), None, 0, 2000, None)
raise SystemExit(0 if r.unpack()[0] else 1)'; }
wait_for 20 watcher_up || fail "tray host ($TRAY_HOST) on D-Bus"

# -------------------------------------------------------------------------------- start it --
# The app's node: a standalone server whose config is made beforehand with the CLI (the app finds
# it and starts it), so that agents can enroll with a token.
ENROLL=e2e-$RANDOM$RANDOM-$RANDOM$RANDOM-token
SRV_IP=127.0.8.1
export UNDERSTUDY_DATA_DIR="$WORK/data"
export UNDERSTUDY_LISTEN="$SRV_IP:$(free_port $SRV_IP)"
HS_FAST=(--set failover.sync_interval=200ms --set failover.failover_timeout=1s)
"$CLI" init --data-dir "$UNDERSTUDY_DATA_DIR" --name desk --listen "$UNDERSTUDY_LISTEN" \
  --set server.enroll_token="$ENROLL" "${HS_FAST[@]}" >"$WORK/init.log" 2>&1 || fail "init the app's node ($(cat "$WORK/init.log"))"
fingerprint() { "$CLI" cert show --json --data-dir "$1" | $PY -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])'; }
FP=$(fingerprint "$UNDERSTUDY_DATA_DIR")
st() { "$CLI" status --json --data-dir "$UNDERSTUDY_DATA_DIR"; }
# The app's hot-standby peer (part 3), made now: the app's node is the primary from its start,
# its peer reached through a relay the test cuts. s2 itself is configured and started in part 3.
S2_DIR="$WORK/s2"
S2_LISTEN="127.0.8.2:$(free_port 127.0.8.2)"
TO_S2="127.0.8.3:$(free_port 127.0.8.3)"
TO_DESK="127.0.8.4:$(free_port 127.0.8.4)"
"$CLI" init --data-dir "$S2_DIR" --name s2 --listen "$S2_LISTEN" --role server "${HS_FAST[@]}" \
  >>"$WORK/init.log" 2>&1 || fail "init s2 ($(cat "$WORK/init.log"))"
# set_failover DIR MODE PEER: hot standby (HS-1) in the node's config.toml (the node is stopped).
set_failover() { $PY -c 'import re,sys
path, mode, peer = sys.argv[1:]
lines, section, out = open(path).read().split("\n"), "", []
for l in lines:
    m = re.match(r"^\[(.*)\]\s*$", l)
    section = m.group(1) if m else section
    if not (section == "failover" and re.match(r"^(mode|peer)\s*=", l)):
        out.append(l)
if "[failover]" not in out:
    out += ["", "[failover]"]
at = out.index("[failover]") + 1
out[at:at] = [f"mode = \"{mode}\"", f"peer = \"{peer}\""]
open(path, "w").write("\n".join(out))' "$1/config.toml" "$2" "$3"; }
set_failover "$UNDERSTUDY_DATA_DIR" primary "https://$TO_S2#$(fingerprint "$S2_DIR")"
$PY "$ROOT/tests/desktop/relay.py" "$TO_S2" "$S2_LISTEN" >"$WORK/relay-to-s2.log" 2>&1 &
RELAY_TO_S2=$!
PIDS+=($RELAY_TO_S2)
$PY "$ROOT/tests/desktop/relay.py" "$TO_DESK" "$UNDERSTUDY_LISTEN" >"$WORK/relay-to-desk.log" 2>&1 &
RELAY_TO_DESK=$!
PIDS+=($RELAY_TO_DESK)
# pair_active PAIR WANT: the app's node says the pair's active member is WANT.
pair_active() { st 2>/dev/null | $PY -c 'import json,sys
p=[p for p in json.load(sys.stdin)["pairs"] if p["name"]==sys.argv[1]]
sys.exit(0 if p and p[0]["active"]==sys.argv[2] else 1)' "$1" "$2"; }
# agents_connected A...: every named agent is connected to the app's node.
agents_connected() { st 2>/dev/null | $PY -c 'import json,sys
a={x["name"]:x["state"] for x in json.load(sys.stdin)["agents"]}
sys.exit(0 if all(a.get(n)=="connected" for n in sys.argv[1:]) else 1)' "$@"; }

# PSS (MB) of a process and all its descendants.
descendants() { local c; for c in $(pgrep -P "$1"); do echo "$c"; descendants "$c"; done; }
pss_tree() {
  local total=0 pid kb
  for pid in "$1" $(descendants "$1"); do
    kb=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null)
    total=$((total + ${kb:-0}))
  done
  echo "$((total / 1024))"
}
# Part 4 (UI-5: no node on this computer, the window's site switcher) is in window_sites.sh;
# E2E_ONLY=sites runs it alone.
source "$ROOT/tests/desktop/window_sites.sh"
if [ "${E2E_ONLY:-}" = sites ]; then
  mkdir -p "$ROOT/docs/screenshots"
  part_window_sites
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]; exit
fi

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
# The app became its tray process in place (same pid), which links no WebKit (issue 14 item 4).
if [ "$(cat "/proc/$APP_PID/comm" 2>/dev/null)" = understudy-tray ] && ! grep -q libwebkit2gtk "/proc/$APP_PID/maps"; then
  pass "$APP became understudy-tray (pid $APP_PID), which maps no WebKit"
else
  fail "the tray process: $(cat "/proc/$APP_PID/comm" 2>/dev/null), WebKit mapped: $(grep -c libwebkit2gtk "/proc/$APP_PID/maps" 2>/dev/null)"
fi

# 2. The menu shows the running node: its header names roles (not "Node stopped").
if HEADER=$($CHECK wait-label '^[^ ]+: (Standalone|Server|Agent|No role)( |$)' 60); then
  pass "menu header: $HEADER"
else
  fail "menu header"
fi
$CHECK layout >"$WORK/menu.txt" 2>&1 && { log "menu:"; sed 's/^/    /' "$WORK/menu.txt"; }
for label in '^Link: ' '^Agents: ' '^Generate certificate$' '^Open window$' '^Quit$' '^Mute notifications$' '^Server role$' '^Set this server to standby( — .+)?$'; do
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
  # PR-5: a disabled item carries the engine's refusal (dbusmenu items have no tooltip).
  if $CHECK wait-label "^Force failover $pair — $pair is already active on the secondary $secondary\$" 10 >/dev/null; then
    pass "menu: Force failover $pair disabled with the engine's sentence"
  else
    fail "menu: Force failover $pair disabled with the engine's sentence"
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

# With a panel that draws the tray: the open menu, as a user sees it.
tray_menu_screenshot docs/screenshots/tray-menu.png

# 3. Clicking "Generate certificate" in the menu raises a CERT_GENERATED notification.
if $CHECK click '^Generate certificate$'; then
  if $CHECK wait-notification 'New certificate' "$WORK/notifications.log" 15; then
    pass "Generate certificate → notification on D-Bus"
  else
    fail "Generate certificate → notification on D-Bus"
  fi
else
  fail "click Generate certificate"
fi

# The tray's window processes: its children started with --window.
window_pids() { pgrep -P "$APP_PID" -f -- '--window'; }
window_shown() { [ -n "$(xdotool search --onlyvisible --name '^Understudy$' 2>/dev/null)" ]; }
# gone PID...: none of them exists any more (a zombie still exists: gone also means reaped).
gone() { local p; for p in "$@"; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
# close_the_window: asks the window to close as a window manager's close button does; succeeds once
# the window process and its WebKit processes have all exited.
close_the_window() {
  local win pid procs
  win=$(xdotool search --onlyvisible --name '^Understudy$' 2>/dev/null | head -1)
  pid=$(window_pids | head -1)
  [ -n "$win" ] && [ -n "$pid" ] || return 1
  procs="$pid $(descendants "$pid" | tr '\n' ' ')"
  $PY "$ROOT/tests/desktop/close_window.py" "$win"
  wait_for 10 gone $procs && ! window_shown
}

# 5. The window is a process of its own; closing it ends it (and WebKit's), the tray stays.
if wait_for 30 window_shown && WPID=$(window_pids) && [ "$(echo "$WPID" | wc -l)" -eq 1 ]; then
  WKIDS=$(descendants "$WPID")
  WNAMES=$(for p in $WKIDS; do cat "/proc/$p/comm" 2>/dev/null; done | tr '\n' ' ')
  pass "the window is shown at start by one window process ($WPID; its children: $WNAMES)"
  case "$WNAMES" in *WebKitWebProces*) pass "the webview runs under the window process, not the tray";;
                    *) fail "no WebKitWebProcess under the window process";; esac
  log "PSS with the window open: tray $(( $(pss_tree "$APP_PID") - $(pss_tree "$WPID") )) MB + window $(pss_tree "$WPID") MB"
  if close_the_window; then
    pass "closing the window ends the window process and its WebKit processes (reaped)"
  else
    fail "closing the window (window process or its WebKit processes still there)"
  fi
  if kill -0 "$APP_PID" 2>/dev/null && $CHECK wait-registered 5 >/dev/null && [ -z "$(descendants "$APP_PID")" ]; then
    pass "the tray app runs on, still registered, with no child process"
  else
    fail "the tray app after the window closed (exited, unregistered, or children left)"
  fi
  sleep 1
  log "PSS with the window closed: $(pss_tree "$APP_PID") MB"
else
  fail "the window is shown at start by one window process (found: $(window_pids | tr '\n' ' '))"
fi

if $CHECK click '^Open window$' >/dev/null && wait_for 20 window_shown && WPID=$(window_pids); then
  pass "Open window in the tray menu makes a new window (window process $WPID)"
  $CHECK click '^Open window$' >/dev/null
  sleep 1
  if [ "$(window_pids)" = "$WPID" ] && [ "$(xdotool search --onlyvisible --name '^Understudy$' | wc -l)" -eq 1 ] &&
     grep -q "raising the running window process" "$WORK/app.log"; then
    pass "Open window again raises the running window instead of starting another"
  else
    fail "Open window again (window processes: $(window_pids | tr '\n' ' '))"
  fi
  # A second launch is the single instance's "open the window": here, raise it.
  if timeout 30 "$APP" >"$WORK/second-launch.log" 2>&1 && [ "$(window_pids)" = "$WPID" ] && kill -0 "$APP_PID"; then
    pass "a second launch exits and leaves the one window process"
  else
    fail "a second launch (status $?, window processes: $(window_pids | tr '\n' ' '))"
  fi
  close_the_window || fail "closing the reopened window"
else
  fail "Open window in the tray menu makes a new window"
fi

# 6. Start at login: the XDG autostart entry, written and removed from the menu.
AUTOSTART="$XDG_CONFIG_HOME/autostart/Understudy.desktop"
if $CHECK click '^Start at login$' >/dev/null && wait_for 10 test -f "$AUTOSTART" &&
   grep -qxF "Exec=$APP --hidden" "$AUTOSTART"; then
  pass "Start at login writes $AUTOSTART with Exec=$APP --hidden"
else
  fail "Start at login writes $AUTOSTART ($(cat "$AUTOSTART" 2>/dev/null | tr '\n' '|'))"
fi
if $CHECK click '^Start at login$' >/dev/null && wait_for 10 test ! -e "$AUTOSTART"; then
  pass "Start at login clicked again removes it"
else
  fail "Start at login clicked again removes $AUTOSTART"
fi

# 7. Clicking a notification opens the window (dunst invokes its "default" action).
dunstctl close-all
displayed() { [ "$(dunstctl count displayed)" -gt 0 ]; }
if $CHECK click '^Generate certificate$' >/dev/null && wait_for 15 displayed && dunstctl action 0 &&
   wait_for 20 window_shown && [ -n "$(window_pids)" ]; then
  pass "clicking a notification opens the window"
  close_the_window || fail "closing the window opened by the notification"
else
  fail "clicking a notification opens the window (displayed: $(dunstctl count displayed))"
fi

# ------------------------------------------------------------- part 2: the window, WebDriver --
# tauri-driver starts the window process itself (`--window --data-dir D`), against the node of the
# tray app, which runs on. Notifications of this part go to a second log.
dbus-monitor --session "interface='org.freedesktop.Notifications'" >"$WORK/notifications2.log" 2>&1 &
PIDS+=($!)
WD_PORT=$(free_port)
"$TAURI_DRIVER" --port "$WD_PORT" >"$WORK/tauri-driver.log" 2>&1 &
PIDS+=($!)
wait_for 20 $PY -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' "$WD_PORT" ||
  fail "tauri-driver listening on $WD_PORT"
mkdir -p "$ROOT/docs/screenshots"
if WEBDRIVER_URL="http://127.0.0.1:$WD_PORT" $PY "$ROOT/tests/desktop/webdriver_check.py" web "$WORK/webview.png" \
     "$APP" --window --data-dir "$UNDERSTUDY_DATA_DIR" >"$WORK/webdriver.log" 2>&1; then
  sed 's/^/    /' "$WORK/webdriver.log"
  pass "window (WebDriver): Force failover clicked, the window shows web on its secondary"
else
  sed 's/^/    /' "$WORK/webdriver.log"
  fail "window (WebDriver): force failover"
fi
if wait_for 10 pair_active web secondary; then pass "status --json: web active secondary"; else fail "status --json: web active secondary"; fi
if $CHECK wait-notification "Forced failover.*web" "$WORK/notifications2.log" 10 >/dev/null; then
  pass "FORCED_FAILOVER notification on D-Bus (window action, notified by the tray process)"
else
  fail "FORCED_FAILOVER notification on D-Bus (window action)"
fi
# The session was deleted: the window process WebKitWebDriver started is gone.
if wait_for 10 sh -c "! pgrep -f -- '^$APP --window' >/dev/null"; then
  pass "the WebDriver session's window process exited with the session"
else
  fail "the WebDriver session's window process still runs: $(pgrep -af -- "^$APP --window")"
fi
# The window's screenshot is WebDriver's (taken once the pair showed its secondary): the
# webview's own pixels, which notification popups on the root window cannot cover.
if [ -s "$WORK/webview.png" ]; then
  cp "$WORK/webview.png" "$ROOT/docs/screenshots/window.png"
  pass "screenshot docs/screenshots/window.png"
else
  fail "screenshot of the window (WebDriver)"
fi

# ------------------------------------------------------------------ part 3: split brain --
# failover_state DIR STATE: the node in DIR says it is STATE (active | standby).
failover_state() { "$CLI" status --json --data-dir "$1" 2>/dev/null | $PY -c 'import json,sys
sys.exit(0 if json.load(sys.stdin)["node"]["failover"]["state"]==sys.argv[1] else 1)' "$2"; }
# s2 pins the app's certificate as it is now (part 1 generated new ones).
set_failover "$S2_DIR" secondary "https://$TO_DESK#$(fingerprint "$UNDERSTUDY_DATA_DIR")"
"$CLI" serve --data-dir "$S2_DIR" >"$WORK/s2.log" 2>&1 &
PIDS+=($!)
if wait_for 30 failover_state "$S2_DIR" standby && failover_state "$UNDERSTUDY_DATA_DIR" active; then
  pass "hot standby: the app's node ACTIVE, s2 STANDBY"
else
  fail "hot standby: the app's node ACTIVE, s2 STANDBY"
fi
kill -USR1 "$RELAY_TO_S2" "$RELAY_TO_DESK"
if wait_for 30 failover_state "$S2_DIR" active && failover_state "$UNDERSTUDY_DATA_DIR" active; then
  pass "the peer link cut: both servers ACTIVE"
else
  fail "the peer link cut: both servers ACTIVE"
fi
kill -USR2 "$RELAY_TO_S2" "$RELAY_TO_DESK"
if $CHECK wait-notification "Split brain" "$WORK/notifications.log" 30; then
  pass "the link healed: Split brain notification on D-Bus"
else
  fail "the link healed: Split brain notification on D-Bus"
fi
if wait_for 30 failover_state "$UNDERSTUDY_DATA_DIR" standby && failover_state "$S2_DIR" active; then
  pass "HS-6: the lower epoch (the app's node) stepped down to STANDBY"
else
  fail "HS-6: the lower epoch (the app's node) stepped down to STANDBY"
fi

# 8. Quit from the tray, with a window open: the window process ends, the node stops, exit 0.
if $CHECK click '^Open window$' >/dev/null && wait_for 20 window_shown && WPID=$(window_pids); then
  WPROCS="$WPID $(descendants "$WPID" | tr '\n' ' ')"
else
  fail "Open window before Quit"; WPROCS=""
fi
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
    # WebKit's processes exit a moment after the window process, when their connection closes.
    if [ -n "$WPROCS" ] && wait_for 10 gone $WPROCS; then
      pass "Quit ended the window process and its WebKit processes"
    else
      fail "Quit ended the window process (left: $WPROCS)"
    fi
  fi
else
  fail "click Quit"
fi

part_window_sites

# Part 4, UI-5: remote sites followed by the tray (tests/desktop/run-sites-e2e.sh, its own session).
if [ -z "${SKIP_SITES:-}" ]; then
  if (unset UNDERSTUDY_SITES_E2E_IN_SESSION; "$ROOT/tests/desktop/run-sites-e2e.sh" "$APP" "$CLI") 2>&1 | tee "$WORK/sites-e2e.log" | sed 's/^/    /'; then
    pass "remote sites (run-sites-e2e.sh: $(tail -1 "$WORK/sites-e2e.log"))"
  else
    fail "remote sites (run-sites-e2e.sh: $(tail -1 "$WORK/sites-e2e.log"))"
  fi
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
