#!/usr/bin/env bash
# IN-3 smoke test: the Windows build of the daemon (`understudy.exe`, x86_64-pc-windows-gnu) runs
# under Wine as a site's server; a native Linux agent enrolls with it and 1,000 records are stored
# there exactly once; the Wine server is SIGKILLed and the agent switches over to a native standby
# server, which stores what the agent sends next. Also: `--version`, and the default data
# directory on Windows (%ProgramData%\Understudy). Given the desktop app's Windows build, also
# that it loads and runs under Wine as far as it can without Microsoft's WebView2 runtime: its
# `--version` (and its tray's, `understudy-tray.exe` beside it), then `--hidden` under Xvfb: it
# starts the tray process, which creates and runs its node, which the native CLI reads. Its
# window needs WebView2: verified only by compilation.
#
# Usage: tests/windows/run-wine.sh [understudy.exe] [native understudy] [understudy-desktop.exe]
# Run by scripts/test.sh after the Windows build. Traffic stays on 127.0.251.0/24.
set -euo pipefail
cd "$(dirname "$0")/../.."
exe=$(realpath "${1:-target/x86_64-pc-windows-gnu/debug/understudy.exe}")
bin=$(realpath "${2:-target/debug/understudy}")
desktop=${3:+$(realpath "$3")}
[ -f "$exe" ] || { echo "tests/windows/run-wine.sh: $exe is missing (cargo build --target x86_64-pc-windows-gnu -p understudy-cli)" >&2; exit 2; }
wine=$(command -v wine64 || ls /usr/lib/wine/wine64 2>/dev/null || true)
[ -n "$wine" ] || { echo "tests/windows/run-wine.sh: wine64 is missing (scripts/setup.sh installs it)" >&2; exit 2; }

work=$(mktemp -d /tmp/understudy-wine-XXXXXX)
export WINEPREFIX="$work/prefix" WINEARCH=win64 WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" NO_COLOR=1
pids=()
cleanup() {
    exec 2>/dev/null   # no job-control chatter about the nodes killed here
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wineserver -k 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
. tests/lib/steps.sh
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# A fresh prefix: Wine sets it up at the first start (tens of seconds on a loaded machine).
"$wine" wineboot --init >/dev/null 2>&1 || true
# Rust's standard library (1.78 and later) takes its random numbers from ProcessPrng in
# bcryptprimitives.dll, which Wine 8.0 (Debian 12) lacks: the process would not even load. A
# stand-in of a few lines (RtlGenRandom behind ProcessPrng), built here with MinGW, goes beside
# the .exe. Real Windows 10 and later have the DLL; this is the one thing Wine cannot run as is.
cp "$exe" "$work/understudy.exe"
x86_64-w64-mingw32-gcc -shared -O2 -o "$work/bcryptprimitives.dll" tests/windows/bcryptprimitives.c -ladvapi32 \
    || fail "building the bcryptprimitives.dll stand-in"
exe="$work/understudy.exe"
version=$("$wine" "$exe" --version 2>/dev/null | tr -d '\r')
native_version=$("$bin" --version)
[ "$version" = "$native_version" ] || fail "understudy.exe --version said '$version', the native build '$native_version'"
ok "understudy.exe --version under Wine: $version"
if [ -n "$desktop" ]; then
    # Every DLL it imports resolves and its runtime starts; past this it needs Microsoft's
    # WebView2 runtime, which Wine lacks (README "Windows": verified only by compilation).
    # The build puts WebView2Loader.dll beside the .exe, which imports it (MinGW: no static loader).
    cp "$desktop" "$(dirname "$desktop")/understudy-tray.exe" "$(dirname "$desktop")/WebView2Loader.dll" "$work/"
    dversion=$("$wine" "$work/understudy-desktop.exe" --version 2>/dev/null | tr -d '\r')
    [ "$dversion" = "understudy-desktop ${native_version#understudy }" ] \
        || fail "understudy-desktop.exe --version said '$dversion'"
    tversion=$("$wine" "$work/understudy-tray.exe" --version 2>/dev/null | tr -d '\r')
    [ "$tversion" = "understudy-tray ${native_version#understudy }" ] \
        || fail "understudy-tray.exe --version said '$tversion'"
    ok "understudy-desktop.exe and understudy-tray.exe --version under Wine: $dversion, $tversion"
fi

# IN-3: without --data-dir, the Windows build keeps its node in %ProgramData%\Understudy.
"$wine" "$exe" init --name w0 --role server --listen 127.0.251.9:7400 >"$work/w0.log" 2>&1 \
    || fail "init without --data-dir under Wine"
[ -f "$WINEPREFIX/drive_c/ProgramData/Understudy/config.toml" ] \
    || fail "no config.toml in C:\\ProgramData\\Understudy: $(find "$WINEPREFIX/drive_c/ProgramData" -maxdepth 2 | head)"
ok "init without --data-dir writes C:\\ProgramData\\Understudy\\config.toml"

token=wine-test-enrollment-token-0123456789
"$wine" "$exe" init --data-dir "$work/s1" --name s1 --role server --listen 127.0.251.1:7400 \
    --set "server.enroll_token=$token" >"$work/s1-init.log" 2>&1 || fail "init of the Wine server"
"$bin" init --data-dir "$work/s2" --name s2 --role server --listen 127.0.251.2:7400 \
    --set "server.enroll_token=$token" >/dev/null
fp1=$("$bin" cert show --json --data-dir "$work/s1" | json 'd["fingerprint"]')
fp2=$("$bin" cert show --json --data-dir "$work/s2" | json 'd["fingerprint"]')
# A short heartbeat and switchover, so the test does not wait the 10 s default.
"$bin" init --data-dir "$work/a1" --name a1 --role agent --listen 127.0.251.3:7400 \
    --server "https://127.0.251.1:7400#$fp1" --server "https://127.0.251.2:7400#$fp2" \
    --set "agent.enroll_token=$token" --set agent.heartbeat=200ms --set agent.switchover_after=1s >/dev/null

"$wine" "$exe" serve --data-dir "$work/s1" >"$work/s1.log" 2>&1 &
s1=$!
pids+=($s1)
"$bin" serve --data-dir "$work/s2" >"$work/s2.log" 2>&1 &
pids+=($!)
wait_for 60 "the Wine server answers the native CLI" "$bin" status --json --data-dir "$work/s1"
"$bin" serve --data-dir "$work/a1" >"$work/a1.log" 2>&1 &
pids+=($!)
link() { "$bin" status --json --data-dir "$work/a1" | json 'd["link"]["state"]'; }
at_home() { [ "$(link)" = home ]; }
wait_for 60 "the native agent enrolled with the Wine server" at_home
ok "a native Linux agent enrolled with the Wine server (TLS, pinned certificate)"

for i in $(seq 10); do
    "$bin" send --data-dir "$work/a1" $(for j in $(seq 100); do printf 'm%s=%s ' "$j" "$i"; done) >/dev/null
done
seqs() { # DATA_DIR: the agent's record seqs stored on that server, one per line
    "$bin" records --json --agent a1 --limit 100000 --data-dir "$1" | json '"\n".join(str(r["seq"]) for r in d["records"])'
}
has() { [ "$(seqs "$1" | grep -c .)" = "$2" ]; }
wait_for 60 "1000 records stored on the Wine server" has "$work/s1" 1000
[ "$(seqs "$work/s1" | sort -u | grep -c .)" = 1000 ] || fail "duplicate seqs on the Wine server"
ok "1000 records stored exactly once by the Wine server (1000 distinct seqs, SQLite on Windows)"

kill -9 "$s1"
wait "$s1" 2>/dev/null || true
for i in $(seq 11 12); do
    "$bin" send --data-dir "$work/a1" $(for j in $(seq 50); do printf 'm%s=%s ' "$j" "$i"; done) >/dev/null
done
on_standby() { [ "$(link)" = standby ]; }
wait_for 60 "the agent switched over to the native standby" on_standby
wait_for 60 "100 records on the native standby" has "$work/s2" 100
n=$(seqs "$work/s2" | sort -u | grep -c .)
[ "$n" = 100 ] || fail "the standby stored $n distinct records, not 100"
first=$(seqs "$work/s2" | sort -n | head -1)
[ "$first" = 1001 ] || fail "the standby's first record is seq $first, not 1001 (a record went twice or was lost)"
ok "SIGKILL of the Wine server: the agent switched over to the native standby, which stored seqs 1001-1100"

if [ -n "$desktop" ]; then
    # The tray process needs a display for its tray window (Wine's explorer), not WebView2.
    Xvfb -displayfd 3 -nolisten tcp 3>"$work/display" >"$work/xvfb.log" 2>&1 &
    pids+=($!)
    wait_for 30 "Xvfb" test -s "$work/display"
    DISPLAY=":$(cat "$work/display")" UNDERSTUDY_DATA_DIR="$work/d1" UNDERSTUDY_LISTEN=127.0.251.10:7400 \
        "$wine" "$work/understudy-desktop.exe" --hidden >"$work/desktop.log" 2>&1 &
    pids+=($!)
    wait_for 90 "the desktop app's node (created on first run) answering the native CLI" \
        "$bin" status --json --data-dir "$work/d1"
    node=$("$bin" status --json --data-dir "$work/d1" | json 'd["node"]["name"] + " on " + d["node"]["listen"] + (" acting" if d["node"]["acting"] else "")')
    ok "understudy-desktop.exe --hidden under Wine (Xvfb): the tray process it started (understudy-tray.exe) created and runs its node ($node)"
fi
echo "wine: all passed"
