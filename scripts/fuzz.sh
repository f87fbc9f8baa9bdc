#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build for a bounded time, starting
# from the checked-in seed corpus; fails on any finding.
set -euo pipefail
build=$(cd "${1:-build-asan}" && pwd)
seconds=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
status=0
for target in "$build"/fuzz/fuzz_*; do
  name=$(basename "$target")
  name=${name#fuzz_}
  work=$(mktemp -d "${TMPDIR:-/tmp}/shbuf-fuzz-$name-XXXXXX")
  echo "fuzz: $name for ${seconds}s"
  if ! (cd "$work" && "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
          -print_final_stats=1 "$work" "$root/fuzz/corpus/$name" >"$work/log" 2>&1); then
    echo "fuzz: $name FOUND A PROBLEM:"
    tail -n 60 "$work/log"
    status=1
  else
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$work/log" \
      | sed "s/^/fuzz: $name /"
  fi
  rm -rf "$work"
done
exit $status
