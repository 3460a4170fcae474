#!/usr/bin/env bash
# IN-2: the desktop package, as Tauri's bundler and scripts/package-desktop-deb.sh make it: lintian
# (errors fail, warnings listed), installed beside the server package (no conflict), its files
# (both executables, desktop entry, icons, copyright), every library they link found, and the
# installed app started under Xvfb with a D-Bus session: after 5 s its tray process
# (understudy-tray, which understudy-desktop became) runs with no WebKit mapped, its node's data
# directory made. Then both packages are purged.
#
#   tests/deb/run-desktop.sh understudy-desktop_V_amd64.deb [understudy binary for the server .deb]
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "tests/deb/run-desktop.sh: needs root (dpkg -i)" >&2; exit 2; }
deb=$(realpath "$1")
bin=${2:-target/debug/understudy}
work=$(mktemp -d /tmp/understudy-ddeb-XXXXXX)
app=""
cleanup() {
    [ -n "$app" ] && kill -KILL -- "-$app" 2>/dev/null || true
    dpkg --purge understudy-desktop understudy >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$work/app.log" ] && tail -20 "$work/app.log" >&2; exit 1; }
ok() { echo "ok: $*"; }

lint=$(lintian --tag-display-limit 0 "$deb" 2>&1 | grep -v "running with root privileges" || true)
echo "$lint" | sed 's/^/  lintian: /'
if echo "$lint" | grep -q '^E:'; then fail "lintian reports errors"; fi
ok "lintian: no errors ($(du -k "$deb" | cut -f1) KiB)"

server=$(scripts/package-deb.sh --bin "$bin" --out "$work")
dpkg -i "$server" "$deb" >/dev/null || fail "the server and desktop packages do not install together"
for f in /usr/bin/understudy-desktop /usr/bin/understudy-tray /usr/share/applications/Understudy.desktop \
         /usr/share/icons/hicolor/128x128/apps/understudy-desktop.png \
         /usr/share/doc/understudy-desktop/copyright /usr/share/doc/understudy-desktop/changelog.gz; do
    dpkg -L understudy-desktop | grep -qx "$f" || fail "dpkg -L does not list $f"
done
grep -q '^Exec=understudy-desktop' /usr/share/applications/Understudy.desktop || fail "the desktop entry does not run understudy-desktop"
missing=$(ldd /usr/bin/understudy-desktop /usr/bin/understudy-tray | grep 'not found' || true)
[ -z "$missing" ] || fail "libraries not found: $missing"
# The tray's icon is libayatana-appindicator, which tray-icon opens at run time (not in ldd).
dpkg -s libayatana-appindicator3-1 >/dev/null 2>&1 || fail "libayatana-appindicator3-1 is not installed with the app"
ok "installed beside the server package: both executables, desktop entry, icons, copyright; every library found"

export HOME="$work/home" XDG_DATA_HOME="$work/home/data" XDG_CONFIG_HOME="$work/home/config"
mkdir -p "$HOME"
# In a session of its own (setsid execs in place: $! is the session's id), so that the app, its
# window process and WebKit's, D-Bus and Xvfb can all be stopped: a signal to xvfb-run alone left
# them running after the test.
setsid xvfb-run -a dbus-run-session -- /usr/bin/understudy-desktop >"$work/app.log" 2>&1 &
app=$!
sleep 5
kill -0 "$app" 2>/dev/null || fail "the installed app exited: $(tail -5 "$work/app.log")"
find "$XDG_DATA_HOME" -name config.toml | grep -q . || fail "the installed app made no node under $XDG_DATA_HOME"
ok "the installed app runs under Xvfb and made its node ($(find "$XDG_DATA_HOME" -name config.toml | head -1))"
tray=$(pgrep -s "$app" -x understudy-tray) || fail "no understudy-tray process in the app's session: $(pgrep -s "$app" -l | tr '\n' ' ')"
! grep -q libwebkit2gtk "/proc/$tray/maps" || fail "the tray process ($tray) maps WebKit"
ok "the tray process is understudy-tray ($tray) and maps no WebKit"
kill -TERM -- "-$app" 2>/dev/null
for _ in $(seq 100); do [ -z "$(pgrep -s "$app")" ] && break; sleep 0.1; done
left=$(pgrep -s "$app" -l | tr '\n' ' ' || true)
[ -z "$left" ] || fail "still running 10 s after SIGTERM to the app's session: $left"
wait "$app" 2>/dev/null || true; app=""
ok "SIGTERM to its session stopped the app, its window and WebKit processes"

dpkg --purge understudy-desktop understudy >/dev/null
[ ! -e /usr/bin/understudy-desktop ] || fail "purge left /usr/bin/understudy-desktop"
ok "purged"
echo "desktop deb: all passed"
