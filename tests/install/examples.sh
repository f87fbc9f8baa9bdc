# shellcheck shell=bash
# Sourced, not run: the check that consumers.sh (against `cmake --install`)
# and scripts/deb.sh (against the unpacked packages) both make.
#
# run_examples TAG PREFIX LIBDIR SOURCE_DIR WORK_DIR
# Builds the two programs of SOURCE_DIR/examples/ in WORK_DIR against the
# files under PREFIX only: a C program through pkg-config (LIBDIR/pkgconfig)
# and a C++ program through find_package(shbuf). Each must use
# LIBDIR/libshbuf.so.0, not another copy, and run a frontend/backend round
# trip on a private simulator instance that PREFIX/bin/shbuf then finds
# without grants. Failures are reported as "TAG: ..." and return 1.
run_examples() (
  set -euo pipefail
  local tag=$1 tree=$2 lib=$3 examples=$4/examples dir=$5
  mkdir -p "$dir"

  # The C consumer: nothing but pkg-config's answer.
  export PKG_CONFIG_PATH=$lib/pkgconfig
  # shellcheck disable=SC2046  # pkg-config's flags are words
  cc -std=c99 -Wall -Wextra -pedantic -Werror -o "$dir/c_round_trip" \
    "$examples/c-pkgconfig/round_trip.c" $(pkg-config --cflags --libs shbuf)

  # The C++ consumer: nothing but find_package(shbuf).
  cmake -S "$examples/cpp-cmake" -B "$dir/cpp" -DCMAKE_PREFIX_PATH="$tree" >/dev/null
  cmake --build "$dir/cpp" >/dev/null

  # Both run against LIBDIR's shared library, not the build tree's.
  export LD_LIBRARY_PATH=$lib
  local program libs sim status
  for program in "$dir/c_round_trip" "$dir/cpp/round_trip"; do
    libs=$(ldd "$program")
    grep -q "$lib/libshbuf.so.0" <<<"$libs" ||
      { echo "$tag: $program does not use $lib/libshbuf.so.0" >&2; return 1; }
    sim=$dir/sim-${program##*/}
    "$program" "$sim"
    status=$("$tree/bin/shbuf" sim status --json --sim "$sim")
    grep -q '"grants":\[\]' <<<"$status" ||
      { echo "$tag: $program left grants behind" >&2; return 1; }
    "$tree/bin/shbuf" sim reset --sim "$sim" >/dev/null
  done
)
