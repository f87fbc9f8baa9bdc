#!/usr/bin/env bash
# Installs the build into a temporary prefix, checks what it holds, and
# builds the two programs of examples/ against the installed files only: a C
# program through pkg-config and a C++ program through find_package(shbuf).
# Each runs a frontend/backend round trip on a private simulator instance
# (run_examples in examples.sh, which scripts/deb.sh runs on its packages).
# Usage: consumers.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d /tmp/shbuf-install-XXXXXX)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(find "$prefix" -name 'libshbuf.so.0' -printf '%h\n' | head -n 1)
[ -n "$libdir" ] || { echo "install: no libshbuf.so.0 under $prefix" >&2; exit 1; }
for f in include/shbuf.h include/shbuf/core/frontend_buffer.h bin/shbuf; do
  [ -e "$prefix/$f" ] || { echo "install: $f is missing" >&2; exit 1; }
done
[ -f "$libdir/libshbuf.a" ] || { echo "install: libshbuf.a is missing" >&2; exit 1; }
[ -f "$libdir/pkgconfig/shbuf.pc" ] || { echo "install: shbuf.pc is missing" >&2; exit 1; }
[ -f "$libdir/cmake/shbuf/shbufConfigVersion.cmake" ] ||
  { echo "install: the CMake package is missing" >&2; exit 1; }
[ -f "$prefix/share/man/man1/shbuf.1" ] || { echo "install: shbuf.1 is missing" >&2; exit 1; }

# shellcheck source=tests/install/examples.sh
. "$(dirname "$0")/examples.sh"
run_examples install "$prefix" "$libdir" "$src" "$work"
echo "install: both consumers built against $prefix and ran"
