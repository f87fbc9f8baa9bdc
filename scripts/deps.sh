#!/usr/bin/env bash
# Installs the Debian packages shbuf needs when run as root and some are
# missing; does nothing when all are present; otherwise says what to install.
set -euo pipefail

packages=(make cmake g++ pkg-config libgtest-dev libgmock-dev libbenchmark-dev
          libcli11-dev libfmt-dev nlohmann-json3-dev libxen-dev clang libclang-rt-14-dev gnuplot-nox zlib1g-dev libpng-dev libdrm-dev libsndfile1-dev)
[ "$#" -gt 0 ] && packages+=("$@")

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "deps: missing Debian packages: ${missing[*]}" >&2
  echo "deps: run as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
