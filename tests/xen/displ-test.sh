# The PV display proof, run in dom0 by tests/xen/dom0-commands.sh: starts the
# toolstack (tests/xen/toolstack.sh) and `shbuf displ-be`, creates two PV domUs at once whose
# initramfs runs Linux's xen-drm-front and our DRM client (tests/xen/
# drm_client.c), one with frontend-allocated and one with backend-allocated
# buffers, each with two connectors of different resolutions; waits for
# their frames (midway, the client sets each connector's mode again with a
# framebuffer of another pixel format, which xen-drm-front sends as a flip
# alone: XRGB8888 -> RGB565 and RGB888 -> XRGB8888), destroys both guests
# while the client still flips, and then
# requires that the backend holds nothing, that both domains are really gone,
# that the backend exits cleanly, and that every frame of both guests the
# backend kept equals the picture the client drew, in the format it drew it
# in, and the first frames were all kept. The backend writes each frame's
# digest (--digest-only: FNV-1a 64 of its RGB pixels) rather than a PNG, so
# that its writer keeps up under QEMU's emulation; the PNG encoder is proven
# pixel for pixel on the simulator.
#
# The backend-allocated guest runs as PVH: a PV guest cannot map another
# domain's grants into user space through the DRM driver (Linux 6.1's
# xen-drm-front inserts the granted pages with vm_map_pages, which a PV
# guest's page tables cannot refer to; the client's mmap then faults with
# SIGBUS and "Bad rss-counter"). An auto-translated (PVH) guest can.
#
# A hostile guest attacks displ-be all along (toolstack.sh: hostile_start):
# our lying displif frontend, `shbuf displ-fe --hostile`, in a PV domU of its
# own, once on a backend-allocated device, then in rounds on a
# frontend-allocated one. The two guests above are created once it has
# completed a round, and must be served as they are while it goes on; then
# it must complete three more rounds with every answer as it should be and
# without displ-be growing (once the two guests are destroyed), and it is
# destroyed mid-round.
# Nothing may have been written outside the output directory.
# Usage (busybox sh, repository as working directory): displ-test.sh BUILD_DIR
set -u
B=$1
frames=4
# The frame the client shows by setting the mode again with a framebuffer of
# the other format (DISPL_PATTERN_SWITCH in displ_pattern.h).
switch=2
guest=$B/xen-run/guest
out=$B/xen-run/displ

say() { echo "displ-test: $*"; }
fail() {
  say "FAIL: $*"
  [ -f "$out/backend.log" ] && grep -v rescan "$out/backend.log" | tail -n 40 | sed 's/^/displ-test: be| /'
  [ -f "$out/backend.log" ] && grep rescan "$out/backend.log" | tail -n 3 | sed 's/^/displ-test: be| /'
  xenstore-ls -f /local/domain/0/backend 2>&1 | head -n 20 | sed 's/^/displ-test: xs| /'
  for f in /var/log/xen/console/guest-*.log; do
    [ -f "$f" ] && tail -n 30 "$f" | sed "s#^#displ-test: ${f##*/}: #"
  done
  [ -n "${hostile_console:-}" ] && [ -f "$hostile_console" ] &&
    grep -a 'PEER\|DOMU' "$hostile_console" | tail -n 30 | sed 's/^/displ-test: hostile: /'
  for g in displ0 displ1 hostile-displ; do xl destroy "$g" >/dev/null 2>&1; done
  # displ-be writes the frames still queued before it exits (at most 10 s):
  # not while the next proof runs.
  [ -n "${bepid:-}" ] && kill "$bepid" 2>/dev/null && wait "$bepid"
  exit 1
}
. tests/xen/toolstack.sh

[ -f "$guest/vmlinux" ] && [ -f "$guest/domu.cpio.gz" ] || fail "guest kernel or initramfs missing in $guest"

toolstack_start

rm -rf "$out"
mkdir -p "$out"
# The guest images from tmpfs: libxenguest must not read them over 9p while
# the backend writes frames there.
cp "$guest/vmlinux" "$guest/domu.cpio.gz" /tmp/ || fail "cannot copy the guest images"
touch /tmp/displ-test.start
"$B/shbuf" displ-be --out "$out" --digest-only -v 2 2>"$out/backend.log" &
bepid=$!
wait_for 10 'grep -q "serving" "$out/backend.log" 2>/dev/null' || fail "displ-be did not start"

# The hostile guest: device 1 backend-allocated (one round), device 0
# frontend-allocated (rounds until destroyed).
# Answers wait up to 30 s (--timeout): under QEMU's emulation, with four
# domains on one CPU, a reconnection can take longer than the 5 s default.
hostile_start hostile-displ \
  "peer1=shbuf+displ-fe+--platform+xen+--devid+1+--hostile+--timeout+30 peer2=shbuf+displ-fe+--platform+xen+--hostile+--attack-for+86400+--timeout+30" \
  "vdispl=[ 'backend=0,be-alloc=0,connectors=c0:640x480;c1:800x600', 'backend=0,be-alloc=1,connectors=c0:320x200' ]"
grep -aq 'PEER: run 1 exit 0' "$hostile_console" ||
  fail "the hostile guest's backend-allocated run failed"

# Two guests at once: frontend- and backend-allocated buffers.
# Xen emulates the TSC of an HVM-type guest whose host TSC it does not trust
# (as under QEMU), and then needs the CPU to report the length of each
# intercepted instruction; QEMU's SVM does not, and Linux's RDTSCP fails
# ("SVM Insn len emulation failed"): the PVH guest reads the TSC natively.
for alloc in 0 1; do
  type=pv
  tsc=default
  [ "$alloc" = 1 ] && type=pvh tsc=native
  guest_cfg "/tmp/displ$alloc.cfg" "displ$alloc" "$type" /tmp/domu.cpio.gz 128 \
    "tsc_mode=\"$tsc\"" \
    "extra=\"console=hvc0 loglevel=4 role=displ frames=$frames\"" \
    "vdispl=[ 'backend=0,be-alloc=$alloc,connectors=c0:640x480;c1:800x600' ]"
  t0=$(date +%s)
  xl_create "/tmp/displ$alloc.cfg" "displ$alloc"
  say "displ$alloc created in $(($(date +%s) - t0))s ($type, be-alloc=$alloc)"
done
dom0id=$(xl_ domid displ0) || fail "no domid for displ0"
dom1id=$(xl_ domid displ1) || fail "no domid for displ1"

# A refused flip or mode set loses a frame the guest believes shown (the
# hostile guest's are refused on purpose).
refused() { grep "dom\($dom0id\|$dom1id\)/.*refused: \(PG_FLIP\|SET_CONFIG\)" "$out/backend.log"; }

# Every connector of both guests shows all the frames the client draws first.
last=$((frames - 1))
t0=$(date +%s)
wait_for 120 "grep -q 'dom$dom1id/0: connected: 2 connector(s) 640x480, 800x600, backend-allocated' $out/backend.log" ||
  fail "domain $dom1id did not connect with backend-allocated buffers"
# A client that never gets going is reported (with the guests' consoles)
# before the step's time runs out.
for d in $dom0id $dom1id; do
  wait_for 120 "grep -q 'dom$d/0: c0: DBUF_CREATE id 0: ok' $out/backend.log" ||
    fail "domain $d: no display buffer accepted after $(($(date +%s) - t0))s"
done
for d in $dom0id $dom1id; do
  for c in 0 1; do
    wait_for 240 "grep -q '^$last ' $out/dom$d-dev0-c$c.digests 2>/dev/null || refused >/dev/null" ||
      fail "no frame $last from domain $d connector $c after $(($(date +%s) - t0))s"
    refused >/dev/null && fail "the backend refused a frame: $(refused | head -n 1)"
  done
done
# The format change travelled as a flip (only flips log "frame N shown"), and
# the client did change format there.
for d in $dom0id $dom1id; do
  for c in 0 1; do
    grep -q "dom$d/0: c$c: frame $switch shown" "$out/backend.log" ||
      fail "domain $d connector $c: frame $switch did not arrive as a flip"
  done
done
for g in displ0 displ1; do
  for want in "connector 0: frame $switch: mode set again, XRGB8888 -> RGB565" \
    "connector 1: frame $switch: mode set again, RGB888 -> XRGB8888"; do
    wait_for 10 "grep -aq 'DRMCLIENT: $want' /var/log/xen/console/guest-$g.log" ||
      fail "$g's client did not report: $want"
  done
done
grep -q "dom$dom1id/0: c0: DBUF_CREATE id 0: ok" "$out/backend.log" ||
  fail "domain $dom1id: the first DBUF_CREATE was refused"
say "all frames seen after $(($(date +%s) - t0))s"
grep -q 'c0: frame' "$out/backend.log" || fail "the backend logged no frame"
# Destroy both guests while their clients still flip. Then the hostile
# guest's rounds, with displ-be's memory measured while only the hostile
# guest shows frames: under QEMU's emulation the frame writer can fall tens
# of frames behind the guests (its queue may hold 128 MiB), which is not
# growth; then the hostile guest is destroyed mid-round.
for g in displ0 displ1; do
  xl_ destroy "$g" || fail "xl destroy $g"
done
hostile_finish "$bepid"
xl_ destroy hostile-displ || fail "xl destroy hostile-displ"
wait_for 30 'grep -q "holds after a device went away: devices=0 connected=0 ring_mappings=0 event_channels=0 dbufs=0 buffer_pages=0" "$out/backend.log"' ||
  fail "the backend did not end up holding nothing after xl destroy"
# A domain whose pages someone still maps cannot finish dying.
wait_for 30 '[ "$(xl list | grep -c displ)" = 0 ] && [ "$(xl list | tail -n +2 | wc -l)" = 1 ]' ||
  fail "a destroyed domain is still listed: $(xl list | tail -n +2 | tr '\n' ' ')"
say "the three domains are gone and the backend holds nothing"
written_outside /tmp/displ-test.start "$out" "$B/xen-run" >/tmp/displ-test.outside
[ -s /tmp/displ-test.outside ] && fail "files written outside $out: $(head -n 5 /tmp/displ-test.outside)"

kill -TERM "$bepid"
wait "$bepid"
rc=$?
bepid=
[ "$rc" -eq 0 ] || fail "displ-be exited with $rc"
grep -q "holds at exit: devices=0 connected=0 ring_mappings=0 event_channels=0 dbufs=0 buffer_pages=0" \
  "$out/backend.log" || fail "displ-be's exit report is missing or not empty"
say "displ-be's frame writer at exit: $(grep -o 'frames_written=[0-9]* frames_dropped=[0-9]* write_failures=[0-9]*' "$out/backend.log" | tail -n 1)"
grep "refused\|error" "$out/backend.log" | grep -v "dom$hostile_domid/" | sed 's/^/displ-test: be| /'
say "displ-be's answers to the hostile domain $hostile_domid: $(grep -c "dom$hostile_domid/.*refused" "$out/backend.log") refusals, $(grep -c "dom$hostile_domid/0: error" "$out/backend.log") devices ended"

refused >/dev/null && fail "the backend refused a frame: $(refused | head -n 1)"

"$B/shbuf_displ_check" "$out" "$frames" "$dom0id,$dom1id" 640x480 800x600 || fail "frames differ"
sed -n '/connected:/p; /state/p' "$out/backend.log" | head -n 20 | sed 's/^/displ-test: be| /'
for f in /var/log/xen/console/guest-*.log; do
  grep -a "DOMU\|DRMCLIENT\|xendrm\|Xen PV" "$f" | head -n 12 | sed "s#^#displ-test: ${f##*/}: #"
done
say "PASS"
