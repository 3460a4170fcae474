# Part 4 of run-desktop-e2e.sh (sourced by it; uses its helpers, APP, CLI, CHECK, WORK, PIDS):
# UI-5, the app that runs no node of its own and the window's site switcher.
#   a. A second app, its own app directory with "Run a node on this computer" off
#      (settings.json), its own node directory: the tray menu says "No node on this computer",
#      nothing listens on the node's address and no node directory is made.
#   b. The toggle in the tray menu starts the node (listener up, menu header of a running node)
#      and stops it again (listener gone, "No node on this computer").
#   c. A real site: `understudy serve` (site1), `understudy invite` prints the line. Through
#      tauri-driver (webdriver_check.py --sites): a copy of the line with a wrong fingerprint is
#      refused with the reason shown, and nothing is stored in sites.json; the line itself joins,
#      the switcher shows site1 and the console its node; the operator token's role change is
#      refused with the server's 403 reason; the site is removed and joined again.
#   d. PSS of the app with no node, one site joined, window closed (BENCHMARKS.md, UI-5).

part_window_sites() {
  log "part 4: no node on this computer, the window's site switcher (UI-5)"
  local app_dir="$WORK/app2" node_dir="$WORK/data2" ip=127.0.8.21
  local listen="$ip:$(free_port $ip)"
  mkdir -p "$app_dir"
  printf '{"run_node": false}\n' >"$app_dir/settings.json"
  listening() { $PY -c 'import socket,sys; h,p=sys.argv[1].rsplit(":",1); socket.create_connection((h,int(p)),1)' "$1"; }

  UNDERSTUDY_DESKTOP_DIR="$app_dir" UNDERSTUDY_DATA_DIR="$node_dir" UNDERSTUDY_LISTEN="$listen" \
    RUST_LOG="${RUST_LOG:-info}" "$APP" --hidden >"$WORK/app2.log" 2>&1 &
  local app2=$!
  PIDS+=($app2)
  if $CHECK wait-label '^No node on this computer$' 30 >/dev/null; then
    pass "setting off: the tray menu says No node on this computer"
  else
    fail "setting off: No node on this computer in the menu"; $CHECK layout 2>&1 | sed 's/^/    /'
  fi
  sleep 2 # a node would have been listening by now
  if ! listening "$listen" 2>/dev/null && [ ! -e "$node_dir/config.toml" ]; then
    pass "setting off: nothing listens on $listen and no node was made in $node_dir"
  else
    fail "setting off: a node runs ($(ls "$node_dir" 2>&1 | tr '\n' ' '))"
  fi
  if $CHECK click '^Run a node on this computer$' >/dev/null && wait_for 60 listening "$listen" &&
     $CHECK wait-label '^[^ ]+: (Standalone|Server|Agent|No role)( |$)' 30 >/dev/null; then
    pass "Run a node on this computer turned on: the node listens on $listen, the menu shows it"
  else
    fail "Run a node on this computer turned on"
  fi
  if grep -q '"run_node": true' "$app_dir/settings.json"; then pass "the choice is kept in settings.json"; else fail "settings.json after turning it on: $(cat "$app_dir/settings.json")"; fi
  if $CHECK click '^Run a node on this computer$' >/dev/null && wait_for 30 sh -c "! $PY -c 'import socket; socket.create_connection((\"$ip\", ${listen##*:}), 1)' 2>/dev/null" &&
     $CHECK wait-label '^No node on this computer$' 30 >/dev/null && grep -q "node stopped (no node on this computer)" "$WORK/app2.log"; then
    pass "turned off again: the node stopped, its listener closed, the menu says so"
  else
    fail "turned off again"
  fi

  # c. A site of one server, and its invitation.
  local site_dir="$WORK/site1" site_listen="127.0.8.22:$(free_port 127.0.8.22)"
  "$CLI" init --data-dir "$site_dir" --name site1 --listen "$site_listen" --role server >"$WORK/site1.init.log" 2>&1 ||
    fail "init site1 ($(cat "$WORK/site1.init.log"))"
  "$CLI" serve --data-dir "$site_dir" >"$WORK/site1.log" 2>&1 &
  PIDS+=($!)
  wait_for 30 listening "$site_listen" || fail "site1 listening on $site_listen"
  local good bad
  good=$("$CLI" invite --data-dir "$site_dir" --label e2e-window 2>>"$WORK/site1.init.log")
  # The same line with another fingerprint (the server's, each hex digit turned): refused.
  bad=$($PY -c 'import sys,re
line, fp = sys.argv[1], sys.argv[2]
other = "".join("0123456789abcdef"[(int(c, 16) + 1) % 16] for c in fp.lower())
print(re.sub(fp, other, line, flags=re.I))' "$good" "$(fingerprint "$site_dir")")
  if [ -n "$good" ] && [ "$good" != "$bad" ]; then pass "understudy invite printed the line"; else fail "invite ($good)"; return; fi

  # The window process is started by WebKitWebDriver, which does not hand it tauri-driver's
  # environment: a wrapper gives it this app directory explicitly (else it would use the
  # platform's default, ~/.local/share/understudy-desktop, as a real user's window does).
  local window_app="$WORK/app2-window.sh"
  printf '#!/bin/sh\nexec env UNDERSTUDY_DESKTOP_DIR=%q %q "$@"\n' "$app_dir" "$APP" >"$window_app"
  chmod +x "$window_app"
  local wd_port
  wd_port=$(free_port)
  UNDERSTUDY_DESKTOP_DIR="$app_dir" "$TAURI_DRIVER" --port "$wd_port" >"$WORK/tauri-driver2.log" 2>&1 &
  PIDS+=($!)
  wait_for 20 $PY -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' "$wd_port" ||
    fail "tauri-driver listening on $wd_port"
  if WEBDRIVER_URL="http://127.0.0.1:$wd_port" $PY "$ROOT/tests/desktop/webdriver_check.py" --sites "$good" "$bad" site1 \
       "$WORK/window-sites.png" "$window_app" --window --data-dir "$node_dir" >"$WORK/webdriver2.log" 2>&1; then
    sed 's/^/    /' "$WORK/webdriver2.log"
    pass "window (WebDriver): wrong fingerprint refused with its reason; joined site1, shown; 403 reason shown; removed and joined again"
  else
    sed 's/^/    /' "$WORK/webdriver2.log"
    fail "window (WebDriver): the site switcher and Connect dialog"
  fi
  # The refused line stored nothing: site1 is in sites.json once, with the right fingerprint.
  if $PY -c 'import json,sys
d = json.load(open(sys.argv[1]))
s = [e for e in d["sites"] if e["site"] == "site1"]
assert len(s) == 1 and all(sys.argv[2].lower() in u.lower() for u in s[0]["servers"]), d' \
       "$app_dir/sites.json" "$(fingerprint "$site_dir")" 2>>"$WORK/webdriver2.log"; then
    pass "sites.json holds site1 once, with its real fingerprint (nothing from the refused line)"
  else
    fail "sites.json after the window's joins: $(cat "$app_dir/sites.json" 2>&1)"
  fi
  if [ "$(stat -c %a "$app_dir/sites.json" 2>/dev/null)" = 600 ]; then pass "sites.json is 0600"; else fail "sites.json mode $(stat -c %a "$app_dir/sites.json")"; fi
  if [ -s "$WORK/window-sites.png" ]; then
    cp "$WORK/window-sites.png" "$ROOT/docs/screenshots/window-site.png"
    pass "screenshot docs/screenshots/window-site.png"
  fi

  # d. UI-5 footprint: no node, one site joined, window closed (the WebDriver session ended).
  wait_for 10 sh -c "! pgrep -f -- '^$APP --window' >/dev/null"
  sleep "${PSS_SETTLE:-10}"
  log "PSS, no node on this computer, site1 joined, window closed: $(pss_tree "$app2") MB (app process and descendants: $(descendants "$app2" | wc -l) children)"
  kill "$app2" 2>/dev/null
}
