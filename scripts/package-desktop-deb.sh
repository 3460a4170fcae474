#!/usr/bin/env bash
# IN-2: understudy-desktop_<version>_amd64.deb. Tauri's bundler makes the package (the binary, the
# desktop entry, the icons); this script finishes it for Debian's policy, as lintian checks it:
# the package name (Tauri would call it "understudy", the server package's name), a stripped
# binary, copyright and changelog, libc in Depends, a maintainer address.
#
#   scripts/package-desktop-deb.sh [--debug] [--bundle-only] [--out dist]   prints the .deb's path
#
# The app is two executables (crates/tray/src/lib.rs): Tauri bundles understudy-desktop (the
# window, and the name the app is started by); this script adds understudy-tray, the tray process
# it becomes, built here by cargo, and the tray's libayatana-appindicator to Depends (tray-icon
# opens it at run time, so neither ldd nor Tauri's bundler sees it).
#
# --bundle-only: package the binaries already built in target/<profile> (`tauri bundle`) instead of
# building them first (`tauri build`, whose cargo build has the desktop package's own feature set,
# so after a workspace build it compiles the app and some of its dependencies again: the test
# run packages the binary its tests ran).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release tauri=() cargo=(--release) out=dist command=build
while [ $# -gt 0 ]; do
    case "$1" in
        --debug) profile=debug tauri=(--debug) cargo=(); shift ;;
        --bundle-only) command=bundle; shift ;;
        --out) out=$2; shift 2 ;;
        *) echo "package-desktop-deb.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
[ -d node_modules/@tauri-apps/cli ] || npm ci --no-audit --no-fund --loglevel=error >&2
npx tauri "$command" "${tauri[@]}" --bundles deb >&2
[ "$command" = bundle ] || cargo build "${cargo[@]}" -p understudy-tray >&2
tray="${CARGO_TARGET_DIR:-target}/$profile/understudy-tray"
[ -x "$tray" ] || { echo "package-desktop-deb.sh: no $tray (build it first)" >&2; exit 1; }
bundle="${CARGO_TARGET_DIR:-target}/$profile/bundle/deb/Understudy_${version}_amd64.deb"
[ -f "$bundle" ] || { echo "package-desktop-deb.sh: Tauri made no $bundle" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
dpkg-deb -R "$bundle" "$stage"
install -m 0755 "$tray" "$stage/usr/bin/understudy-tray"
strip --strip-unneeded "$stage/usr/bin/understudy-desktop" "$stage/usr/bin/understudy-tray"
doc="$stage/usr/share/doc/understudy-desktop"
install -d -m 0755 "$doc"
install -m 0644 packaging/deb/copyright "$doc/copyright"
printf 'understudy-desktop (%s) unstable; urgency=medium\n\n  * Built from %s.\n\n -- Understudy developers <understudy@example.com>  %s\n' \
    "$version" "$(git rev-parse --short HEAD 2>/dev/null || echo 'a source tree')" "$(date -R)" |
    gzip -9n >"$doc/changelog.gz"
control="$stage/DEBIAN/control"
# Tauri's Depends (the webview's libraries) plus what the binaries link or open that it leaves out.
depends=$( { sed -n 's/^Depends: //p' "$control" | tr ',' '\n'; echo libc6; echo libgcc-s1;
             echo libgtk-3-0; echo libayatana-appindicator3-1; } |
    sed 's/^ *//; s/ *$//' | grep . | sort -u | paste -sd, | sed 's/,/, /g')
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -i -e 's/^Package: .*/Package: understudy-desktop/' \
    -e 's/^Maintainer: .*/Maintainer: Understudy developers <understudy@example.com>/' \
    -e "s/^Depends: .*/Depends: $depends/" \
    -e "s/^Installed-Size: .*/Installed-Size: $size/" "$control"
grep -q '^Section:' "$control" || sed -i '/^Priority:/a Section: admin' "$control"
(cd "$stage" && find usr -type f -print0 | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
mkdir -p "$out"
deb="$out/understudy-desktop_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
