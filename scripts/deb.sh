#!/usr/bin/env bash
# Builds the Debian packages libshbuf0, libshbuf-dev and shbuf from a copy of
# the work tree (the files git knows about, and new files it does not ignore)
# in build-deb/src, so the work tree stays clean; the .debs and .changes land
# in build-deb/. Then runs lintian (any error fails), checks what each package
# holds, that apt could install the three together, and builds the two
# programs of examples/ against nothing but the packages' files.
# As root, missing packaging tools and build dependencies are installed.
# Usage: deb.sh [OUT_DIR]   (default build-deb)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
out=${1:-build-deb}
case $out in /*) ;; *) out=$top/$out ;; esac

tools=(dpkg-dev debhelper lintian fakeroot build-essential pkg-config)
missing=()
for p in "${tools[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

# The copy.
rm -rf "$out"
mkdir -p "$out/src"
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
  tar --null -T - -cf - | tar -xf - -C "$out/src"

if [ "$(id -u)" -eq 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "deb: installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ! (cd "$out/src" && dpkg-checkbuilddeps) 2>/dev/null; then
    echo "deb: installing the build dependencies"
    apt-get update -qq
    apt-get build-dep -y -qq "$out/src" >/dev/null
  fi
elif [ "${#missing[@]}" -gt 0 ]; then
  echo "deb: missing Debian packages: ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
  exit 1
fi

start=$(date +%s)
(cd "$out/src" && dpkg-buildpackage -b -us -uc -J"$(nproc)") >"$out/build.log" 2>&1 || {
  tail -n 60 "$out/build.log" >&2
  echo "deb: dpkg-buildpackage failed; the whole log is $out/build.log" >&2
  exit 1
}
echo "deb: built in $(($(date +%s) - start)) s; log in $out/build.log"
grep -E ' warning: ' "$out/build.log" | sort -u | sed 's/^/deb: compiler: /' || true

version=$(cd "$out/src" && dpkg-parsechangelog -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
changes=$out/shbuf_${version}_${arch}.changes
[ -f "$changes" ] || { echo "deb: $changes is missing" >&2; exit 1; }

# lintian: errors fail, warnings are shown.
echo "deb: lintian $(basename "$changes")"
lintian --fail-on error --display-info "$changes" | tee "$out/lintian.txt" || {
  echo "deb: lintian found errors" >&2
  exit 1
}

# What each package must hold.
declare -A expect=(
  [libshbuf0]="./usr/lib/$multiarch/libshbuf.so.0 ./usr/lib/$multiarch/libshbuf.so.0.1.0"
  [libshbuf-dev]="./usr/include/shbuf.h ./usr/include/shbuf/core/frontend_buffer.h
    ./usr/include/shbuf/core/backend_buffer.h ./usr/lib/$multiarch/libshbuf.so
    ./usr/lib/$multiarch/libshbuf.a ./usr/lib/$multiarch/pkgconfig/shbuf.pc
    ./usr/lib/$multiarch/cmake/shbuf/shbufConfig.cmake
    ./usr/lib/$multiarch/cmake/shbuf/shbufConfigVersion.cmake
    ./usr/lib/$multiarch/cmake/shbuf/shbufTargets.cmake"
  [shbuf]="./usr/bin/shbuf ./usr/share/man/man1/shbuf.1.gz ./usr/share/man/man1/shbuf-backend.1.gz ./usr/share/man/man1/shbuf-displ-be.1.gz"
)
debs=()
for pkg in libshbuf0 libshbuf-dev shbuf; do
  deb=$out/${pkg}_${version}_${arch}.deb
  [ -f "$deb" ] || { echo "deb: $deb is missing" >&2; exit 1; }
  debs+=("$deb")
  contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
  for f in ${expect[$pkg]}; do
    grep -qxF "$f" <<<"$contents" || { echo "deb: $pkg lacks ${f#.}" >&2; exit 1; }
  done
  if [ "$pkg" != libshbuf-dev ] && grep -q '^\./usr/include/' <<<"$contents"; then
    echo "deb: $pkg holds headers" >&2
    exit 1
  fi
  echo "deb: $pkg: $(grep -vc '/$' <<<"$contents") files, $(dpkg-deb -f "$deb" Installed-Size) KiB;" \
    "Depends: $(dpkg-deb -f "$deb" Depends)"
done
symbols=$(dpkg-deb -I "${debs[0]}" symbols)
grep -q '^ shbuf_version@SHBUF_0 ' <<<"$symbols" ||
  { echo "deb: libshbuf0 has no symbols file" >&2; exit 1; }
dev_contents=$(dpkg-deb -c "${debs[1]}")
if grep -q 'displ' <<<"$dev_contents"; then
  echo "deb: the display protocol's headers were packaged" >&2
  exit 1
fi

# The three install together: apt resolves their dependencies without
# touching the system.
apt-get install -s -qq "${debs[@]}" >"$out/install-simulation.txt" 2>&1 || {
  cat "$out/install-simulation.txt" >&2
  echo "deb: the packages do not install together" >&2
  exit 1
}
echo "deb: apt would install the three together"

# The two programs of examples/, built against the unpacked packages only.
root=$out/root
rm -rf "$root"
for deb in "${debs[@]}"; do dpkg-deb -x "$deb" "$root"; done
libdir=$root/usr/lib/$multiarch
# shellcheck source=tests/install/examples.sh
. tests/install/examples.sh
run_examples deb "$root/usr" "$libdir" "$top" "$out/consumers" >/dev/null
echo "deb: the examples built against the packages and ran"
ls -1 "$out"/*.deb "$out"/*.changes
