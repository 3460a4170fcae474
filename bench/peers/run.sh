#!/usr/bin/env bash
# Issue 6, part 3: Understudy side by side with keepalived, rsyslog and syslog-ng, in network
# namespaces (uspeer-*, 10.211.1.0/24). Needs root. CI does not run this: the peers it installs
# are listed here, not in scripts/packages.txt.
#
#   bench/peers/run.sh [all|vrrp|takeover|syslog] [--runs N] [--default-runs N] [--syslog-runs N] [--no-build]
#   bench/peers/run.sh datain [--datain-tools prometheus-agent,vmagent,understudy] [--datain-faults …] [--no-build]
#
# `datain` (issue 18, not part of `all`): node_exporter → VictoriaMetrics through Prometheus in
# agent mode, vmagent and an Understudy pair with hot-standby servers, under the same faults
# (bench/peers/datain.py; about 25 minutes).
#
# Results go to bench/peers/results.json; bench/peers/report.py turns them into the
# "Peers side by side" section of BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespaces)" >&2; exit 2; }

build=1
args=()
for a in "$@"; do
    if [ "$a" = --no-build ]; then build=0; else args+=("$a"); fi
done

export DEBIAN_FRONTEND=noninteractive
# Installing a logging daemon must not start it: policy-rc.d refuses every service start while
# apt runs (an existing policy-rc.d is left alone and restored).
need=()
for p in keepalived rsyslog iproute2 nftables iputils-ping python3 libivykis0 libnet1 libwrap0 libjson-c5 libpcre3 \
         prometheus victoria-metrics prometheus-node-exporter; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    policy=/usr/sbin/policy-rc.d
    saved=""
    if [ -e "$policy" ]; then saved=$(mktemp); cp -p "$policy" "$saved"; fi
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"
    restore() { if [ -n "$saved" ]; then mv "$saved" "$policy"; else rm -f "$policy"; fi; }
    trap restore EXIT
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}"
    restore; trap - EXIT
fi
# rsyslog and syslog-ng-core conflict as Debian packages (both provide system-log-daemon), so
# syslog-ng-core is unpacked, not installed: the same Debian binary, run from /var/tmp.
sng=/var/tmp/uspeer-pkgs
if [ ! -x "$sng/root/usr/sbin/syslog-ng" ]; then
    mkdir -p "$sng"
    (cd "$sng" && chmod 777 . && apt-get download syslog-ng-core && dpkg-deb -x syslog-ng-core_*.deb root)
fi
# Daemons started by a package's postinst are not ours to leave running, but none is expected.

if [ $build = 1 ]; then
    cargo build --release -p understudy-cli
fi

cleanup() { /usr/bin/python3 bench/peers/peers.py cleanup || true; }
trap cleanup EXIT INT TERM
/usr/bin/python3 bench/peers/peers.py "${args[@]}"
