#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds the two programs of
# examples/ against the installed files only: a C program through pkg-config
# and a C++ program through find_package(shbuf). Each runs a frontend/backend
# round trip on a private simulator instance.
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

# The C consumer: nothing but pkg-config's answer.
export PKG_CONFIG_PATH=$libdir/pkgconfig
cc -std=c99 -Wall -Wextra -pedantic -Werror -o "$work/c_round_trip" \
  "$src/examples/c-pkgconfig/round_trip.c" $(pkg-config --cflags --libs shbuf)

# The C++ consumer: nothing but find_package(shbuf).
cmake -S "$src/examples/cpp-cmake" -B "$work/cpp" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cpp" >/dev/null

# Both run against the installed shared library, not the build tree's.
export LD_LIBRARY_PATH=$libdir
for program in "$work/c_round_trip" "$work/cpp/round_trip"; do
  libs=$(ldd "$program")
  grep -q "$libdir/libshbuf.so.0" <<<"$libs" ||
    { echo "install: $program does not use $libdir/libshbuf.so.0" >&2; exit 1; }
  sim=$work/sim-${program##*/}
  "$program" "$sim"
  status=$("$prefix/bin/shbuf" sim status --json --sim "$sim")
  grep -q '"grants":\[\]' <<<"$status" ||
    { echo "install: $program left grants behind" >&2; exit 1; }
  "$prefix/bin/shbuf" sim reset --sim "$sim" >/dev/null
done
echo "install: both consumers built against $prefix and ran"
