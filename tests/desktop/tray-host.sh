# Sourced by the desktop end-to-end scripts (run-desktop-e2e.sh, run-sites-e2e.sh): the tray host
# and the screenshot of an open tray menu. Expects ROOT, WORK, PIDS, XDG_CONFIG_HOME and the
# scripts' log/pass/fail/wait_for.
#
# TRAY_HOST: status-notifier-watcher (the default: light, draws nothing; the tests read the menu
# over D-Bus), or xfce4-panel, a real panel that draws the icon, so that a click opens the menu
# as a user sees it (then the scripts save screenshots of it; `apt-get install xfce4-panel`).
TRAY_HOST="${TRAY_HOST:-status-notifier-watcher}"

start_tray_host() {
  if [ "$TRAY_HOST" = xfce4-panel ]; then
    command -v xfce4-panel >/dev/null || { fail "TRAY_HOST=xfce4-panel: xfce4-panel is not installed"; return 1; }
    mkdir -p "$XDG_CONFIG_HOME/xfce4/xfconf/xfce-perchannel-xml"
    cp "$ROOT/tests/desktop/xfce/xfce4-panel.xml" "$XDG_CONFIG_HOME/xfce4/xfconf/xfce-perchannel-xml/"
    dbus-update-activation-environment DISPLAY XDG_CONFIG_HOME # for xfconfd, started by D-Bus
    xfce4-panel --disable-wm-check >"$WORK/panel.log" 2>&1 &
  else
    status-notifier-watcher >"$WORK/watcher.log" 2>&1 &
  fi
  PIDS+=($!)
}

# Clicks the panel's icon as a user does, saves the open menu to $1 (a path under docs/), then
# closes the menu with Escape. With the default tray host: nothing (no panel draws the menu).
tray_menu_screenshot() {
  [ "$TRAY_HOST" = xfce4-panel ] || return 0
  local out=$1 panel before
  panel=$(xdotool search --onlyvisible --class xfce4-panel 2>/dev/null | head -1)
  [ -n "$panel" ] || { fail "tray menu screenshot: no panel window"; return; }
  local X Y WIDTH HEIGHT SCREEN WINDOW
  eval "$(xdotool getwindowgeometry --shell "$panel")"
  local x=$((X + WIDTH - HEIGHT / 2)) y=$((Y + HEIGHT / 2)) # the only icon, at the right end
  command -v dunstctl >/dev/null && dunstctl close-all
  before=$(xdotool search --onlyvisible --name '' 2>/dev/null | wc -l)
  xdotool mousemove "$x" "$y" click 1
  # The menu is a new popup window: wait until it is mapped.
  wait_for 10 sh -c "[ \$(xdotool search --onlyvisible --name '' 2>/dev/null | wc -l) -gt $before ]" ||
    log "no new window seen after the click (screenshot taken anyway)"
  sleep 0.5
  mkdir -p "$(dirname "$ROOT/$out")"
  import -window root "$WORK/tray-menu-full.png" 2>>"$WORK/import.log" &&
    convert "$WORK/tray-menu-full.png" -crop 560x620+720+0 +repage "$ROOT/$out" &&
    pass "screenshot $out (the menu opened by a click on the panel's icon)" ||
    fail "tray menu screenshot $out"
  xdotool key Escape
}
