#!/usr/bin/env bash
# libshbuf.so exports its API and nothing else: its SONAME is libshbuf.so.0,
# every dynamic symbol it defines is a C API function declared in shbuf.h or
# a C++ symbol of the public shbuf:: classes, all tagged SHBUF_0, and every
# function shbuf.h declares is there.
# Usage: exports.sh LIBSHBUF_SO SHBUF_H
set -euo pipefail
lib=$1
header=$2
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = libshbuf.so.0 ] || { echo "exports: SONAME is '$soname'" >&2; exit 1; }

symbols=$(nm -D --defined-only --with-symbol-versions "$lib" | awk '{print $3}')
declared=$(sed -n 's/^SHBUF_API [^(]*[ *]\(shbuf_[a-z_0-9]*\)(.*/\1/p' "$header" | sort -u)
bad=0
c=0
cxx=0
while read -r s; do
  name=${s%@@*}
  version=${s#*@@}
  [ "$name" = SHBUF_0 ] && continue
  if [ "$version" != SHBUF_0 ]; then
    echo "exports: $name is not tagged SHBUF_0" >&2
    bad=1
  fi
  case $name in
    shbuf_*)
      grep -qx "$name" <<<"$declared" || { echo "exports: $name is not in shbuf.h" >&2; bad=1; }
      c=$((c + 1)) ;;
    _Z*)
      demangled=$(c++filt "$name")
      case $demangled in
        shbuf::sim::* | shbuf::displ::* | shbuf::cli::* | shbuf::bench::*)
          echo "exports: internal symbol $demangled" >&2; bad=1 ;;
        shbuf::* | "vtable for shbuf::"* | "typeinfo for shbuf::"* | "typeinfo name for shbuf::"*)
          cxx=$((cxx + 1)) ;;
        *) echo "exports: foreign symbol $demangled" >&2; bad=1 ;;
      esac ;;
    *) echo "exports: foreign symbol $name" >&2; bad=1 ;;
  esac
done <<<"$symbols"
for f in $declared; do
  grep -q "^$f@@SHBUF_0$" <<<"$symbols" || { echo "exports: $f is declared but not exported" >&2; bad=1; }
done
[ "$bad" = 0 ] || exit 1
echo "exports: $soname exports $c C functions (all of shbuf.h's $(wc -w <<<"$declared")) and $cxx C++ symbols, all SHBUF_0"
