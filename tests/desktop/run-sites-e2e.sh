#!/usr/bin/env bash
# UI-5 end to end, headless: the tray app follows remote sites, as an operator's laptop does.
# A private D-Bus session, Xvfb, dunst, a tray host, and real processes around the app:
#   - site s1: two `understudy serve` servers in hot standby (s2 joined with `invite --peer`),
#     two agents joined with `invite --agent --uses 2`, a pair "web" of them;
#   - site t1: one standalone server, reached through a relay (tests/desktop/relay.py) that counts
#     the app's connections.
# Checked:
#   1. an invitation whose fingerprint is wrong: `--join` refused (exit 1, the reason), nothing stored;
#   2. `understudy-desktop --join $(understudy invite)`: joined (sites.json 0600), the tray starts and
#      its menu shows the site, its servers and roles, the pair with its active member;
#   3. "Force failover web" clicked in the tray moves the pair (s1's `status --json`), and the
#      notification is seen on D-Bus;
#   4. SIGKILL of the ACTIVE s1: the menu follows s2 ("now following s2" notified), the PROMOTED event
#      is notified exactly once, and "Revert web" clicked in the tray works against s2 (its status);
#   5. a second site joined by a second launch with `--join` while the tray runs: both followed;
#   6. t1's token revoked (`invite revoke`): "access revoked" in the menu, one notification, and no
#      request loop (the relay's connection count stops);
#   7. the app restarted: no event is notified a second time (`after` kept in sites.json), and the
#      revoked t1 is shown as such without a second notification (`revoked` kept there too).
# Figures (BENCHMARKS.md): server event → D-Bus notification latency over 30 events (p50/p99), and
# the time from SIGKILL of the ACTIVE to the tray following the STANDBY, beside the site's own
# takeover (its PROMOTED event).
#
# Usage: tests/desktop/run-sites-e2e.sh [APP CLI]   (builds both when not given; BENCH_EVENTS=30)
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
if [ -z "${UNDERSTUDY_SITES_E2E_IN_SESSION:-}" ]; then
  export UNDERSTUDY_SITES_E2E_IN_SESSION=1
  exec dbus-run-session -- "$0" "$@"
fi

PY=/usr/bin/python3
CHECK="$PY $ROOT/tests/desktop/tray_check.py"
WORK="$(mktemp -d /tmp/understudy-sites-e2e.XXXXXX)"
PIDS=()
PASSED=0
FAILED=0
log() { printf '[sites-e2e] %s\n' "$*"; }
pass() { PASSED=$((PASSED + 1)); log "PASS $*"; }
fail() { FAILED=$((FAILED + 1)); log "FAIL $*"; }
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  if [ "$FAILED" -gt 0 ]; then
    log "logs kept in $WORK"; log "--- app log (tail) ---"; tail -n 40 "$WORK/app.log" 2>/dev/null
  elif [ -z "${KEEP_WORK:-}" ]; then
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
free_port() { $PY -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "${1:-127.0.0.1}"; }
wait_for() { local end=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.2; done; }

APP="${1:-${APP:-}}"
CLI="${2:-${CLI:-}}"
if [ -z "$APP" ] || [ -z "$CLI" ]; then
  (cd "$ROOT" && cargo build -q -p understudy-desktop -p understudy-tray -p understudy-cli) || { fail build; exit 1; }
  APP="$ROOT/target/debug/understudy-desktop"; CLI="$ROOT/target/debug/understudy"
fi
APP="$(realpath "$APP")"; CLI="$(realpath "$CLI")"

# ------------------------------------------------------------------------------ the desktop --
DISPLAY_NUM="${E2E_DISPLAY:-:$((80 + RANDOM % 9))}"
Xvfb "$DISPLAY_NUM" -screen 0 1280x800x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
PIDS+=($!)
export DISPLAY="$DISPLAY_NUM" NO_AT_BRIDGE=1
for _ in $(seq 50); do [ -e "/tmp/.X11-unix/X${DISPLAY_NUM#:}" ] && break; sleep 0.1; done
dbus-monitor --session "interface='org.freedesktop.Notifications'" >"$WORK/notifications.log" 2>&1 &
PIDS+=($!)
dunst >"$WORK/dunst.log" 2>&1 &
PIDS+=($!)
export XDG_CONFIG_HOME="$WORK/config"
mkdir -p "$XDG_CONFIG_HOME"
# The tray host (tests/desktop/tray-host.sh: TRAY_HOST=xfce4-panel draws the icon, and the open
# menu with the site is then saved as docs/screenshots/tray-menu-site.png).
. "$ROOT/tests/desktop/tray-host.sh"
start_tray_host
sleep 1

# ------------------------------------------------------------------------------ the sites --
FAST=(--set failover.sync_interval=200ms --set failover.failover_timeout=1s)
AGENT_FAST=(--set agent.heartbeat=200ms --set agent.switchover_after=600ms)
S1="$WORK/s1"; S2="$WORK/s2"; T1="$WORK/t1"
st() { "$CLI" status --json --data-dir "$1"; }
failover_state() { st "$1" 2>/dev/null | $PY -c 'import json,sys
sys.exit(0 if json.load(sys.stdin)["node"]["failover"]["state"]==sys.argv[1] else 1)' "$2"; }
pair_active() { st "$1" 2>/dev/null | $PY -c 'import json,sys
p=[p for p in json.load(sys.stdin)["pairs"] if p["name"]==sys.argv[1]]
sys.exit(0 if p and p[0]["active"]==sys.argv[2] else 1)' "$2" "$3"; }
agents_connected() { local d=$1; shift; st "$d" 2>/dev/null | $PY -c 'import json,sys
a={x["name"]:x["state"] for x in json.load(sys.stdin)["agents"]}
sys.exit(0 if all(a.get(n)=="connected" for n in sys.argv[1:]) else 1)' "$@"; }
serve() { "$CLI" serve --data-dir "$1" >"$1.log" 2>&1 & PIDS+=($!); eval "$2=$!"; }

"$CLI" init --data-dir "$S1" --name s1 --listen "127.0.9.1:$(free_port 127.0.9.1)" --role server "${FAST[@]}" >"$WORK/init.log" 2>&1 ||
  fail "init s1 ($(cat "$WORK/init.log"))"
serve "$S1" S1_PID
wait_for 30 failover_state "$S1" active || wait_for 5 st "$S1" || fail "s1 up"
PEER_LINE=$("$CLI" invite --peer --data-dir "$S1" 2>>"$WORK/init.log")
"$CLI" init --data-dir "$S2" --name s2 --listen "127.0.9.2:$(free_port 127.0.9.2)" --join "$PEER_LINE" "${FAST[@]}" >>"$WORK/init.log" 2>&1 ||
  fail "s2 joins s1 as its hot-standby peer ($(tail -3 "$WORK/init.log"))"
serve "$S2" S2_PID
if wait_for 30 failover_state "$S2" standby && wait_for 10 failover_state "$S1" active; then
  pass "site s1: s1 ACTIVE, s2 STANDBY (joined with invite --peer)"
else
  fail "site s1: s1 ACTIVE, s2 STANDBY"
fi
AGENT_LINE=$("$CLI" invite --agent --uses 2 --data-dir "$S1" 2>>"$WORK/init.log")
for a in a1 a2; do
  ip=127.0.9.1$([ $a = a1 ] && echo 1 || echo 2)
  "$CLI" init --data-dir "$WORK/$a" --name $a --listen "$ip:$(free_port "$ip")" --join "$AGENT_LINE" "${AGENT_FAST[@]}" \
    >>"$WORK/init.log" 2>&1 || fail "agent $a joins ($(tail -3 "$WORK/init.log"))"
  serve "$WORK/$a" _
done
wait_for 30 agents_connected "$S1" a1 a2 && pass "agents a1, a2 connected to s1" || fail "agents a1, a2 connected to s1"
"$CLI" pair add web --primary a1 --secondary a2 --failover-after 1s --data-dir "$S1" >"$WORK/pair.log" 2>&1 ||
  fail "pair add web ($(cat "$WORK/pair.log"))"

# ---------------------------------------------------------------- 1. a wrong fingerprint --
export UNDERSTUDY_DESKTOP_DIR="$WORK/desktop"
export UNDERSTUDY_DATA_DIR="$WORK/node"
export UNDERSTUDY_LISTEN="127.0.9.100:$(free_port 127.0.9.100)"
INVITE=$("$CLI" invite --label laptop --data-dir "$S1")
BAD=$($PY -c 'import re,sys; print(re.sub(r"%23[0-9a-f]{64}", "%23"+"0"*64, sys.argv[1], count=1))' "$INVITE")
if ! "$APP" --join "$BAD" >"$WORK/bad-join.log" 2>&1 && grep -q "does not present the certificate" "$WORK/bad-join.log" &&
   [ ! -e "$UNDERSTUDY_DESKTOP_DIR/sites.json" ]; then
  pass "a wrong fingerprint: --join refused ($(tail -1 "$WORK/bad-join.log" | cut -c1-120)…), nothing stored"
else
  fail "a wrong fingerprint: --join refused, nothing stored ($(cat "$WORK/bad-join.log" | tail -2))"
fi

# ------------------------------------------------------------------------------- 2. join --
start_app() { RUST_LOG="${RUST_LOG:-info}" "$APP" --hidden "$@" >>"$WORK/app.log" 2>&1 & APP_PID=$!; PIDS+=($APP_PID); }
start_app --join "$INVITE"
if $CHECK wait-registered 60 >/dev/null && grep -q "joined site s1" "$WORK/app.log" &&
   [ "$(stat -c %a "$UNDERSTUDY_DESKTOP_DIR/sites.json")" = 600 ]; then
  pass "--join: site s1 stored (sites.json 0600), the tray registered"
else
  fail "--join: site s1 stored, tray registered ($(stat -c %a "$UNDERSTUDY_DESKTOP_DIR/sites.json" 2>&1))"
fi
for label in '^Site s1 — following s1$' '^Servers: s1 ACTIVE · peer https://127\.0\.9\.2:[0-9]+ STANDBY$' \
             '^web: active primary \(a1\)$' '^Agents: 2 connected$'; do
  if $CHECK wait-label "$label" 30 >/dev/null; then pass "menu: /$label/"; else fail "menu: /$label/"; fi
done
$CHECK layout >"$WORK/menu-s1.txt" 2>&1 && { log "menu:"; sed 's/^/    /' "$WORK/menu-s1.txt"; }
tray_menu_screenshot docs/screenshots/tray-menu-site.png

# ----------------------------------------------------------------- 3. force failover --
if $CHECK click '^Force failover web$' >/dev/null && wait_for 15 pair_active "$S1" web secondary; then
  pass "tray Force failover web (site s1) moved the pair (s1 status --json: active secondary)"
else
  fail "tray Force failover web moved the pair"
fi
$CHECK wait-label '^web: active secondary \(a2\)' 10 >/dev/null && pass "menu follows: web active secondary (a2)" ||
  fail "menu follows: web active secondary"
if $CHECK wait-notification 's1: Forced failover' "$WORK/notifications.log" 15 >/dev/null; then
  pass "FORCED_FAILOVER of site s1 notified on D-Bus"
else
  fail "FORCED_FAILOVER of site s1 notified on D-Bus"
fi

# ------------------------------------------------------------ 4. SIGKILL of the ACTIVE --
KILLED=$(date +%s.%N)
kill -9 "$S1_PID"
if $CHECK wait-label '^Site s1 — following s2$' 30 >/dev/null; then
  FOLLOWED=$(date +%s.%N)
  pass "SIGKILL of s1: the tray follows s2"
else
  FOLLOWED=""
  fail "SIGKILL of s1: the tray follows s2"
fi
$CHECK wait-notification 's1: now following s2' "$WORK/notifications.log" 10 >/dev/null &&
  pass "\"now following s2\" notified" || fail "\"now following s2\" notified"
wait_for 30 failover_state "$S2" active || fail "s2 took over"
if $CHECK wait-notification 's1: Server promoted' "$WORK/notifications.log" 20 >/dev/null; then
  sleep 3 # anything notified twice would be by now (the status poll is 500 ms, a long poll resumes at once)
  n=$($CHECK count-notifications 's1: Server promoted' "$WORK/notifications.log")
  [ "$n" = 1 ] && pass "PROMOTED notified exactly once" || fail "PROMOTED notified $n times"
else
  fail "PROMOTED of s2 notified"
fi
n=$($CHECK count-notifications 's1: Forced failover' "$WORK/notifications.log")
[ "$n" = 1 ] && pass "FORCED_FAILOVER still notified once after the move to s2" || fail "FORCED_FAILOVER notified $n times"
# The figures: the site's own takeover (s2's PROMOTED event) and the tray's, from the kill.
TAKEOVER=$("$CLI" events --json --data-dir "$S2" 2>/dev/null | $PY -c 'import json,sys
e=[e for e in json.load(sys.stdin)["events"] if e["code"]=="PROMOTED"]
print(e[-1]["time_ms"]/1000 if e else "")')
NOTICE_AT=$($CHECK notification-times 's1: now following s2' "$WORK/notifications.log" | head -1 | cut -d' ' -f1)
if [ -n "$TAKEOVER" ] && [ -n "$NOTICE_AT" ]; then
  log "FIGURE follow: site takeover $(echo "$TAKEOVER - $KILLED" | bc) s after SIGKILL; tray followed s2 (notification) $(echo "$NOTICE_AT - $KILLED" | bc) s after SIGKILL"
fi
if $CHECK wait-enabled '^Revert web$' 20 >/dev/null && $CHECK click '^Revert web$' >/dev/null &&
   wait_for 15 pair_active "$S2" web primary; then
  pass "tray Revert web worked against the new ACTIVE s2 (s2 status --json: active primary)"
else
  fail "tray Revert web against s2"
fi

# ------------------------------------------------------------------ 5. a second site --
T1_ADDR="127.0.9.21:$(free_port 127.0.9.21)"
RELAY="127.0.9.22:$(free_port 127.0.9.22)"
"$CLI" init --data-dir "$T1" --name t1 --listen "$T1_ADDR" --role server >>"$WORK/init.log" 2>&1 || fail "init t1"
serve "$T1" T1_PID
wait_for 30 st "$T1" || fail "t1 up"
$PY "$ROOT/tests/desktop/relay.py" "$RELAY" "$T1_ADDR" >"$WORK/relay.log" 2>&1 &
PIDS+=($!)
INVITE_T1=$("$CLI" invite --label laptop --address "$RELAY" --data-dir "$T1")
if timeout 60 "$APP" --join "$INVITE_T1" >"$WORK/second-launch.log" 2>&1 && kill -0 "$APP_PID" &&
   $CHECK wait-label '^Site t1 — following t1$' 20 >/dev/null && $CHECK wait-label '^Site s1 — following s2$' 5 >/dev/null; then
  pass "a second launch with --join adds site t1 to the running tray: two sites followed"
else
  fail "a second site (second launch: $(cat "$WORK/second-launch.log" | tail -2))"
fi

# --------------------------------------------------------------------- 6. revoked --
ID=$("$CLI" invite list --json --data-dir "$T1" | $PY -c 'import json,sys
print([i["id"] for i in json.load(sys.stdin)["invitations"] if i["label"]=="laptop"][0])')
"$CLI" invite revoke "$ID" --data-dir "$T1" >/dev/null 2>&1 || fail "invite revoke"
if $CHECK wait-label '^Site t1 — access revoked$' 15 >/dev/null; then
  pass "t1's token revoked: the menu says \"access revoked\""
  sleep 1; before=$(grep -c accepted "$WORK/relay.log"); sleep 5; after=$(grep -c accepted "$WORK/relay.log")
  # A long poll already held by the server may end once; a loop would be ≥ 10 in 5 s.
  [ $((after - before)) -le 1 ] && pass "no request loop after the refusal ($((after - before)) connection(s) in 5 s)" ||
    fail "requests go on after the refusal: $((after - before)) in 5 s"
  n=$($CHECK count-notifications 't1: access revoked' "$WORK/notifications.log")
  [ "$n" = 1 ] && pass "\"access revoked\" notified once" || fail "\"access revoked\" notified $n times"
else
  fail "t1's token revoked: access revoked"
fi
$CHECK wait-label '^Site s1 — following s2$' 5 >/dev/null && pass "site s1 followed on" || fail "site s1 followed on"

# ------------------------------------------------------------- the latency figure --
BENCH_EVENTS=${BENCH_EVENTS:-30}
if [ "$BENCH_EVENTS" -gt 0 ]; then
  : >"$WORK/bench-events.txt"
  for i in $(seq "$BENCH_EVENTS"); do
    if [ $((i % 2)) = 1 ]; then verb=force-failover; else verb=revert; fi
    "$CLI" pair "$verb" web --data-dir "$S2" >/dev/null 2>&1 || log "pair $verb web refused"
    sleep 1.2
  done
  sleep 2
  "$CLI" events --json --data-dir "$S2" >"$WORK/events.json" 2>/dev/null
  $CHECK notification-times 's1: (Forced failover|Pair reverted)' "$WORK/notifications.log" >"$WORK/notified.txt"
  $PY - "$WORK/events.json" "$WORK/notified.txt" "$BENCH_EVENTS" <<'EOF'
import json, sys
events = [e for e in json.load(open(sys.argv[1]))["events"] if e["code"] in ("FORCED_FAILOVER", "REVERTED")]
n = int(sys.argv[3])
events = sorted(events, key=lambda e: e["id"])[-n:]
times = [float(l.split()[0]) for l in open(sys.argv[2]) if l.strip()][-n:]
if len(times) != len(events):
    print(f"[sites-e2e] FIGURE latency: {len(events)} events but {len(times)} notifications")
    sys.exit(0)
lat = sorted(t - e["time_ms"] / 1000 for e, t in zip(events, times))
pct = lambda p: lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))]
print(f"[sites-e2e] FIGURE latency over {len(lat)} events: p50 {pct(50)*1000:.0f} ms, p99 {pct(99)*1000:.0f} ms, max {lat[-1]*1000:.0f} ms")
EOF
fi

# ------------------------------------------------------------------- 7. a restart --
before=$($CHECK count-notifications 's1: (Forced failover|Pair reverted|Server promoted)' "$WORK/notifications.log")
revoked_before=$($CHECK count-notifications 't1: access revoked' "$WORK/notifications.log")
if $CHECK click '^Quit$' >/dev/null && wait_for 20 sh -c "! kill -0 $APP_PID"; then
  start_app
  if $CHECK wait-label '^Site s1 — following s2$' 60 >/dev/null; then
    sleep 4
    after=$($CHECK count-notifications 's1: (Forced failover|Pair reverted|Server promoted)' "$WORK/notifications.log")
    [ "$after" = "$before" ] && pass "after a restart of the app no event of s1 is notified again" ||
      fail "after a restart: $((after - before)) notification(s) of s1 again"
  else
    fail "after a restart the tray follows s1 again"
  fi
  $CHECK wait-label '^Site t1 — access revoked$' 10 >/dev/null && pass "after a restart t1 shows access revoked" ||
    fail "after a restart t1 shows access revoked"
  # sites.json remembers the refusal: no second notification, no connection to t1.
  revoked_after=$($CHECK count-notifications 't1: access revoked' "$WORK/notifications.log")
  [ "$revoked_after" = "$revoked_before" ] && pass "after a restart \"access revoked\" is not notified again" ||
    fail "after a restart \"access revoked\" notified $((revoked_after - revoked_before)) more time(s)"
  $CHECK click '^Quit$' >/dev/null
else
  fail "Quit the app"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
