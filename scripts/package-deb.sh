#!/usr/bin/env bash
# Builds the server/agent package understudy_<version>_amd64.deb from a built binary, with
# Debian's own dpkg-deb (no packaging tool to install): /usr/bin/understudy, the systemd unit,
# the maintainer scripts of packaging/deb/, and the documents lintian asks for.
#
#   scripts/package-deb.sh --bin target/release/understudy [--version V] [--out dist]
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/understudy
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
out=dist
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin=$2; shift 2 ;;
        --version) version=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "package-deb.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -x "$bin" ] || { echo "package-deb.sh: $bin is not a built binary" >&2; exit 2; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" \
    "$stage/usr/share/doc/understudy"
install -m 0755 "$bin" "$stage/usr/bin/understudy"
strip --strip-unneeded "$stage/usr/bin/understudy"
install -m 0644 packaging/deb/understudy.service "$stage/lib/systemd/system/understudy.service"
for f in postinst prerm postrm; do
    install -m 0755 "packaging/deb/$f" "$stage/DEBIAN/$f"
done
gzip -9nc README.md >"$stage/usr/share/doc/understudy/README.md.gz"
# The manual pages, from the same definitions as --help: understudy(1) and one per command.
install -d -m 0755 "$stage/usr/share/man/man1"
"$bin" man "$stage/usr/share/man/man1"
gzip -9n "$stage"/usr/share/man/man1/*.1
chmod 0644 "$stage"/usr/share/man/man1/*.1.gz
install -m 0644 packaging/deb/copyright "$stage/usr/share/doc/understudy/copyright"
printf 'understudy (%s) unstable; urgency=medium\n\n  * Built from %s.\n\n -- Understudy developers <understudy@example.com>  %s\n' \
    "$version" "$(git rev-parse --short HEAD 2>/dev/null || echo 'a source tree')" "$(date -R)" |
    gzip -9n >"$stage/usr/share/doc/understudy/changelog.gz"
# The shared libraries the binary needs, as package names (dpkg -S), with no version floor
# beyond what the build machine has.
depends=$(ldd "$stage/usr/bin/understudy" | awk '/=> \//{print $3}' | while read -r lib; do
    dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null
done | cut -d: -f1 | sort -u | paste -sd, | sed 's/,/, /g')
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size/" -e "s/@DEPENDS@/${depends:-libc6}/" \
    packaging/deb/control.in >"$stage/DEBIAN/control"
mkdir -p "$out"
deb="$out/understudy_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
