#!/usr/bin/env bash
# The console served by the headless daemon, in Debian's Chromium (Playwright, playwright-core
# only): starts a real site on loopback addresses — a server (`understudy serve`) and two agents
# enrolled with a token, a pair "web" — opens https://IP:PORT/#token=… and forces a failover from
# the page (console.test.mjs), then stops everything. Saves docs/screenshots/console.png.
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
LISTEN="127.0.8.21:$(free_port 127.0.8.21)"
"$CLI" init --data-dir "$SRV" --name srv --listen "$LISTEN" --role server --set server.enroll_token="$ENROLL" >"$WORK/init.log"
FP=$("$CLI" cert show --json --data-dir "$SRV" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).fingerprint))')
"$CLI" serve --data-dir "$SRV" >"$WORK/srv.log" 2>&1 &
PIDS+=($!)
i=21
for a in a1 a2; do
  i=$((i + 1))
  "$CLI" init --data-dir "$WORK/$a" --name "$a" --listen "127.0.8.$i:$(free_port "127.0.8.$i")" --role agent \
    --server "https://$LISTEN#$FP" --set agent.enroll_token="$ENROLL" --set agent.heartbeat=200ms >>"$WORK/init.log"
  "$CLI" serve --data-dir "$WORK/$a" >"$WORK/$a.log" 2>&1 &
  PIDS+=($!)
done
connected() { "$CLI" agent list --data-dir "$SRV" 2>/dev/null | awk '$2=="connected"{n++} END{exit n>=2?0:1}'; }
wait_for 30 connected || { log "agents did not connect"; exit 1; }
"$CLI" pair add web --primary a1 --secondary a2 --failover-after 1s --data-dir "$SRV" >>"$WORK/init.log"
log "site up: server $LISTEN, agents a1 a2, pair web"

mkdir -p "$ROOT/docs/screenshots"
CONSOLE_URL="https://$LISTEN/#token=$(cat "$SRV/admin.token")" CLI="$CLI" DATA_DIR="$SRV" PAIR=web \
  SCREENSHOT="$ROOT/docs/screenshots/console.png" node "$HERE/console.test.mjs"
