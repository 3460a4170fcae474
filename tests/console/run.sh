#!/usr/bin/env bash
# The console served by the headless daemon, in Debian's Chromium (Playwright, playwright-core
# only): starts a real site on loopback addresses — two servers in hot standby (`understudy
# serve`, srv ACTIVE and srv2 STANDBY) and two agents enrolled with a token, a pair "web" —
# opens https://IP:PORT/#token=… and forces a failover from the page, and checks that for each of
# the four causes the engine refuses an operator action the button is disabled with exactly the
# engine's sentence as its title, and that the Alerts page adds channels, shows each alert's
# delivery per channel and edits a failing channel (its secret kept, its queued alert
# delivered), and that the Charts panel draws each picture of MX-3 (console.test.mjs), then
# stops everything. Saves docs/screenshots/console.png, charts.png and charts-narrow.png.
#
# Usage: tests/console/run.sh            (builds the CLI if CLI is not given)
#        CLI=target/release/understudy tests/console/run.sh
# Needs node/npm and Debian's chromium (scripts/packages.txt). Exit 0 when every check passed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/tests/console"
WORK="$(mktemp -d /tmp/understudy-console.XXXXXX)"
PIDS=()
log() { printf '[console] %s\n' "$*"; }
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    log "logs kept in $WORK"; tail -n 20 "$WORK"/*.log 2>/dev/null || true
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

if [ -z "${CLI:-}" ]; then
  (cd "$ROOT" && cargo build -q -p understudy-cli)
  CLI="${CARGO_TARGET_DIR:-$ROOT/target}/debug/understudy"
fi
CLI="$(realpath "$CLI")"
[ -x /usr/bin/chromium ] || { log "no /usr/bin/chromium: apt-get install chromium (scripts/setup.sh)"; exit 1; }
(cd "$HERE" && npm ci --silent --no-audit --no-fund)

free_port() { node -e 'const s=require("net").createServer().listen(0,process.argv[1],()=>{console.log(s.address().port);s.close()})' "$1"; }
# wait_for SECONDS CMD...: runs CMD every 0.2 s until it succeeds.
wait_for() { local end=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.2; done; }

ENROLL="console-$RANDOM$RANDOM-$RANDOM$RANDOM-token"
SRV="$WORK/srv"
SRV2="$WORK/srv2"
LISTEN="127.0.8.21:$(free_port 127.0.8.21)"
LISTEN2="127.0.8.24:$(free_port 127.0.8.24)"
fingerprint() { "$CLI" cert show --json --data-dir "$1" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).fingerprint))'; }
for s in "srv $SRV $LISTEN" "srv2 $SRV2 $LISTEN2"; do
  set -- $s
  "$CLI" init --data-dir "$2" --name "$1" --listen "$3" --role server --set server.enroll_token="$ENROLL" \
    --set failover.sync_interval=200ms --set failover.failover_timeout=1s --set alert.group_wait=0s >>"$WORK/init.log"
done
FP=$(fingerprint "$SRV")
FP2=$(fingerprint "$SRV2")
# set_failover DIR MODE PEER: hot standby (HS-1). Each peer is pinned to the other's certificate,
# which exists only once both are initialised, so the [failover] section is written afterwards.
set_failover() { node -e '
const fs = require("fs"); const [file, mode, peer] = process.argv.slice(1);
const lines = fs.readFileSync(file, "utf8").split("\n").filter((l, i, all) => {
  let section = ""; for (let j = 0; j <= i; j++) { const m = /^\[(.*)\]\s*$/.exec(all[j]); if (m) section = m[1]; }
  return !(section === "failover" && /^(mode|peer)\s*=/.test(l));
});
let at = lines.findIndex((l) => /^\[failover\]\s*$/.test(l));
if (at < 0) { lines.push("", "[failover]"); at = lines.length - 1; }
lines.splice(at + 1, 0, `mode = "${mode}"`, `peer = "${peer}"`);
fs.writeFileSync(file, lines.join("\n"));' "$1/config.toml" "$2" "$3"; }
set_failover "$SRV" primary "https://$LISTEN2#$FP2"
set_failover "$SRV2" secondary "https://$LISTEN#$FP"
failover_state() { "$CLI" status --json --data-dir "$1" 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.exit(JSON.parse(s).node.failover.state===process.argv[1]?0:1))' "$2"; }
"$CLI" serve --data-dir "$SRV" >"$WORK/srv.log" 2>&1 &
PIDS+=($!)
wait_for 30 failover_state "$SRV" active || { log "srv did not become ACTIVE"; exit 1; }
"$CLI" serve --data-dir "$SRV2" >"$WORK/srv2.log" 2>&1 &
PIDS+=($!)
wait_for 30 failover_state "$SRV2" standby || { log "srv2 did not become STANDBY"; exit 1; }
AGENT_PIDS=()
i=21
for a in a1 a2; do
  i=$((i + 1))
  "$CLI" init --data-dir "$WORK/$a" --name "$a" --listen "127.0.8.$i:$(free_port "127.0.8.$i")" --role agent \
    --server "https://$LISTEN#$FP" --set agent.enroll_token="$ENROLL" --set agent.heartbeat=200ms >>"$WORK/init.log"
  "$CLI" serve --data-dir "$WORK/$a" >"$WORK/$a.log" 2>&1 &
  PIDS+=($!)
  AGENT_PIDS+=($!)
done
connected() { "$CLI" agent list --data-dir "$SRV" 2>/dev/null | awk '$2=="connected"{n++} END{exit n>=2?0:1}'; }
wait_for 30 connected || { log "agents did not connect"; exit 1; }
# A failover_after long enough for a handover to stay visibly under way while the member that
# must stand down is frozen (one of the four refusals the page shows).
"$CLI" pair add web --primary a1 --secondary a2 --failover-after 30s --switchback manual --data-dir "$SRV" >>"$WORK/init.log"
log "site up: servers $LISTEN (ACTIVE) and $LISTEN2 (STANDBY), agents a1 a2, pair web"

mkdir -p "$ROOT/docs/screenshots"
CONSOLE_URL="https://$LISTEN/#token=$(cat "$SRV/admin.token")" CLI="$CLI" DATA_DIR="$SRV" PAIR=web \
  STANDBY_URL="https://$LISTEN2/#token=$(cat "$SRV2/admin.token")" STANDBY_DATA_DIR="$SRV2" \
  A1_PID="${AGENT_PIDS[0]}" A2_PID="${AGENT_PIDS[1]}" \
  SCREENSHOT="$ROOT/docs/screenshots/console.png" SHOTS_DIR="$ROOT/docs/screenshots" node "$HERE/console.test.mjs"
