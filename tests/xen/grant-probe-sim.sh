# The grant probe (grant_probe.cpp) on the simulator: domain 0 offers, domain
# 1 probes; run by ctest. The same program runs between dom0 and a domU in
# tests/xen/vchan-test.sh.
# Usage: grant-probe-sim.sh PROBE SHBUF
set -u
probe=$1
shbuf=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/shbuf-probe-XXXXXX")
sim=$dir/sim
key=/local/domain/1/data/probe
"$probe" offer --sim "$sim" --peer 1 --other 5 --key "$key" --hold 50 >"$dir/offer.out" &
pid=$!
"$probe" probe --sim "$sim" --self 1 --from 0 --key "$key" --wait 20
rc=$?
kill -TERM "$pid"
wait "$pid" || rc=1
cat "$dir/offer.out"
"$shbuf" sim reset --sim "$sim" >/dev/null || rc=1
rm -rf "$dir"
exit "$rc"
