# The proof across domains, run in dom0 by tests/xen/dom0-commands.sh unless
# SHBUF_VCHAN=0 (run.sh: SHBUF_XEN_VCHAN=0): our two ends in two domains,
# talking over a libxenvchan channel, and the grant refusals between them.
# One PV domU (role=peer in domu-init.sh) runs four commands in turn, dom0
# the other end each time:
#   1. `shbuf frontend` in the guest, `shbuf backend` in dom0: both allocation
#      modes, 1 to 16384 pages, data checked both ways;
#   2. the roles reversed, as in a driver domain: `shbuf backend` in the guest
#      (its channel under its own xenstore home), `shbuf frontend` in dom0,
#      one size per mode and more;
#   3. the grant probe (grant_probe.cpp): dom0 grants the guest a page
#      writable and one read-only, one to another domain, and one it then
#      ends; the guest maps each as a backend would, and the refusals must be
#      those the simulator gives (ctest runs the same probe there);
#   4. the guest's frontend shares 16384-page buffers, each held attached
#      for 30 s, and the guest is destroyed with `xl destroy` while dom0's
#      backend maps one of them: dom0's backend must
#      notice within seconds, release what it mapped (the domain then leaves
#      `xl list` altogether, which it cannot while dom0 maps its pages) and
#      exit cleanly when told to.
#
# Usage (busybox sh, repository as working directory): vchan-test.sh BUILD_DIR
set -u
B=$1
guest=$B/xen-run/guest
out=$B/xen-run/vchan
console=/var/log/xen/console/guest-peer0.log
# Where dom0's backends offer their channels, and the guest's backend its own.
be_path=/local/domain/0/data/shbuf-vchan
guest_path=data/shbuf-vchan
pages=1,1023,1024,1025,16384
reverse_pages=1,1025,16384

say() { echo "vchan-test: $*"; }
fail() {
  say "FAIL: $*"
  for f in "$out"/*.log; do
    [ -f "$f" ] && tail -n 20 "$f" | sed "s#^#vchan-test: ${f##*/}| #"
  done
  [ -f "$console" ] && grep -a 'PEER\|DOMU' "$console" | tail -n 40 | sed 's/^/vchan-test: guest: /'
  [ -n "${bepid:-}" ] && kill "$bepid" 2>/dev/null
  xl destroy peer0 >/dev/null 2>&1
  exit 1
}
. tests/xen/toolstack.sh

[ -f "$guest/vmlinux" ] && [ -f "$guest/domu-peer.cpio.gz" ] ||
  fail "guest kernel or initramfs missing in $guest"
toolstack_start
rm -rf "$out"
mkdir -p "$out"
cp "$guest/vmlinux" "$guest/domu-peer.cpio.gz" /tmp/ || fail "cannot copy the guest images"
rm -f "$console"

# The guest's three runs ('+' for a space). Each waits up to two minutes
# for its peer, which dom0 starts when the run before has ended.
run1="shbuf+frontend+--provider+xen+--machine+--vchan+0:$be_path+--pages+$pages+--connect-timeout+120"
run2="shbuf+backend+--provider+xen+--vchan+0:$guest_path+--once+--accept-timeout+120"
run3="shbuf_grant_probe+probe+--platform+xen+--from+0+--key+data/grant-probe+--wait+120"
run4="shbuf+frontend+--provider+xen+--machine+--vchan+0:$be_path+--connect-timeout+120+--mode+both"
run4="$run4+--pages+16384,16384,16384+--hold+30"
guest_cfg /tmp/peer0.cfg peer0 pv /tmp/domu-peer.cpio.gz 320 \
  "extra=\"console=hvc0 loglevel=4 role=peer peer1=$run1 peer2=$run2 peer3=$run3 peer4=$run4\""
t0=$(date +%s)
xl_create /tmp/peer0.cfg peer0
domid=$(xl_ domid peer0) || fail "no domid for peer0"
say "peer0 created as domain $domid in $(($(date +%s) - t0))s"

# 1. Frontend in the guest, backend in dom0.
"$B/shbuf" backend --provider xen --vchan "$domid:$be_path" --once --accept-timeout 240 \
  2>"$out/backend1.log" &
bepid=$!
wait_for 240 "grep -aq 'PEER: run 1 exit' $console" || fail "run 1 did not end within 240 s"
wait "$bepid"
rc=$?
bepid=
[ "$rc" -eq 0 ] || fail "dom0's backend of run 1 exited with $rc"
grep -a 'PEER: 1|' "$console" | sed 's/^/vchan-test: guest: /'
grep -aq 'PEER: run 1 exit 0' "$console" || fail "the guest's frontend failed"
want=$(($(echo "$pages" | tr ',' '\n' | grep -c .) * 2))
got=$(grep -a 'PEER: 1| RESULT .* 1 -' "$console" | grep -c .)
[ "$got" = "$want" ] || fail "the guest's frontend verified $got buffers, not $want"
say "frontend in domain $domid, backend in dom0: $got buffers verified both ways ($pages pages, both modes)"

# 2. Backend in the guest, frontend in dom0.
"$B/shbuf" frontend --provider xen --vchan "$domid:/local/domain/$domid/$guest_path" --machine \
  --pages "$reverse_pages" --mode both --connect-timeout 120 >"$out/frontend2.out" \
  2>"$out/frontend2.log"
rc=$?
sed 's/^/vchan-test: dom0: /' "$out/frontend2.out"
[ "$rc" -eq 0 ] || fail "dom0's frontend of run 2 exited with $rc"
wait_for 60 "grep -aq 'PEER: run 2 exit' $console" || fail "run 2 did not end within 60 s"
grep -aq 'PEER: run 2 exit 0' "$console" || fail "the guest's backend failed"
want=$(($(echo "$reverse_pages" | tr ',' '\n' | grep -c .) * 2))
got=$(grep -c 'RESULT .* 1 -' "$out/frontend2.out")
[ "$got" = "$want" ] || fail "dom0's frontend verified $got buffers, not $want"
say "backend in domain $domid, frontend in dom0: $got buffers verified both ways"

# 3. Grant refusals, seen from the guest. Domain 32000 stands for another
# guest: a grant names its grantee whether or not it exists.
"$B/shbuf_grant_probe" offer --platform xen --peer "$domid" --other 32000 \
  --key "/local/domain/$domid/data/grant-probe" --hold 200 >"$out/probe-offer.out" \
  2>"$out/probe-offer.log" &
probepid=$!
wait_for 180 "grep -aq 'PEER: run 3 exit' $console" || fail "run 3 did not end within 180 s"
kill -TERM "$probepid"
wait "$probepid" || fail "dom0's side of the grant probe failed: $(cat "$out/probe-offer.log")"
grep -a 'PEER: 3|' "$console" | sed 's/^/vchan-test: guest: /'
grep -aq 'PEER: run 3 exit 0' "$console" || fail "the grant probe in the guest failed"
say "grant refusals from domain $domid: as on the simulator ($(cat "$out/probe-offer.out"))"

# 4. The guest destroyed while its frontend shares buffers with dom0.
"$B/shbuf" backend --provider xen --vchan "$domid:$be_path" --accept-timeout 240 -v \
  2>"$out/backend4.log" &
bepid=$!
wait_for 120 "grep -aq 'PEER: run 4:' $console" || fail "run 4 did not start"
# The guest's frontend holds each buffer attached for 30 s (--hold): the
# guest is destroyed while dom0's backend maps the second.
wait_for 120 '[ "$(grep -c attached "$out/backend4.log")" -ge 2 ]' ||
  fail "dom0's backend did not attach a second buffer of domain $domid within 120 s"
xl_ destroy peer0 || fail "xl destroy peer0"
wait_for 10 "grep -q 'domain $domid is gone' $out/backend4.log" ||
  fail "dom0's backend did not notice within 10 s that domain $domid is gone"
grep -q "domain $domid is gone: released its buffer" "$out/backend4.log" ||
  fail "dom0's backend held no buffer when domain $domid went: $(tail -n 3 "$out/backend4.log")"
sed 's/^/vchan-test: backend4: /' "$out/backend4.log"
# A domain whose pages dom0 still maps stays listed (dying) until they are
# unmapped.
wait_for 30 '! xl list | grep -q "^peer0\|(null)"' ||
  fail "domain $domid is still listed while dom0's backend runs: $(xl list | tail -n +2 | tr '\n' ' ')"
kill -0 "$bepid" 2>/dev/null || fail "dom0's backend did not go on serving after domain $domid went"
kill -TERM "$bepid"
wait "$bepid"
rc=$?
bepid=
[ "$rc" -eq 0 ] || fail "dom0's backend exited with $rc after SIGTERM"
say "domain $domid destroyed mid-transfer: dom0's backend released it, went on and exited 0"
say "PASS"
