# The PV sound proof, run in dom0 by tests/xen/dom0-commands.sh unless
# SHBUF_SND=0 (run.sh: SHBUF_XEN_SND=0): starts the toolstack (tests/xen/
# toolstack.sh) and `shbuf snd-be`, creates a PV domU whose initramfs runs
# Linux's snd_xen_front and our sound client (tests/xen/snd_client.c,
# role=snd), which plays the signal of snd_signal.h and records from the
# capture stream; waits for the client's report, destroys the guest, and
# requires that the backend holds nothing and exits cleanly, that the WAV the
# backend wrote equals the signal played, and that what the guest recorded
# equals the WAV the backend was given for capture; then destroys a second
# guest while it plays and requires again that the backend holds nothing.
#
#
# A hostile guest attacks snd-be all along (toolstack.sh: hostile_start):
# our lying sndif frontend, `shbuf snd-fe --hostile`, in rounds, in a PV
# domU of its own with the same card. The first sound guest is created once
# it has completed a round and must be served as it is while it goes on;
# then it must complete three more rounds with every answer as it should be
# and without snd-be growing, and it is destroyed mid-round. Nothing may
# have been written outside the output directory.
# Usage (busybox sh, repository as working directory): snd-test.sh BUILD_DIR
set -u
B=$1
guest=$B/xen-run/guest
out=$B/xen-run/snd
# Frames the client plays and records (sndif.md: S16_LE, 2 channels, 48 kHz).
play=144000
record=48000
# The capture WAV holds the signal from this frame on, so that it differs
# from what was played.
capture_first=1000000

say() { echo "snd-test: $*"; }
fail() {
  say "FAIL: $*"
  [ -f "$out/backend.log" ] && tail -n 40 "$out/backend.log" | sed 's/^/snd-test: be| /'
  xenstore-ls -f /local/domain/0/backend/vsnd 2>&1 | head -n 20 | sed 's/^/snd-test: xs| /'
  [ -n "${domid:-}" ] && xenstore-ls -f "/local/domain/$domid/device/vsnd" 2>&1 | head -n 30 |
    sed 's/^/snd-test: xs| /'
  [ -f /var/log/xen/console/guest-snd0.log ] &&
    tail -n 30 /var/log/xen/console/guest-snd0.log | sed 's/^/snd-test: guest-snd0.log: /'
  [ -n "${hostile_console:-}" ] && [ -f "$hostile_console" ] &&
    grep -a 'PEER\|DOMU' "$hostile_console" | tail -n 30 | sed 's/^/snd-test: hostile: /'
  [ -n "${bepid:-}" ] && kill "$bepid" 2>/dev/null
  xl destroy snd0 >/dev/null 2>&1
  xl destroy hostile-snd >/dev/null 2>&1
  exit 1
}
. tests/xen/toolstack.sh

[ -f "$guest/vmlinux" ] && [ -f "$guest/domu.cpio.gz" ] || fail "guest kernel or initramfs missing in $guest"
toolstack_start

rm -rf "$out"
mkdir -p "$out"
cp "$guest/vmlinux" "$guest/domu.cpio.gz" /tmp/ || fail "cannot copy the guest images"
console=/var/log/xen/console/guest-snd0.log
rm -f "$console"

# Every "KEY=N" of the backend's last report line matching $1 is 0.
holds_nothing() {
  line=$(grep "$1" "$out/backend.log" 2>/dev/null | tail -n 1)
  [ -n "$line" ] && ! echo "$line" | tr ' ' '\n' | grep '=' | grep -qv '=0$'
}

[ -x "$B/shbuf_snd_check" ] || fail "$B/shbuf_snd_check is missing (run.sh builds it with the sound proof)"
"$B/shbuf_snd_check" wav "$out/capture.wav" "$capture_first" $((record * 2)) ||
  fail "cannot write the capture WAV"
mkdir -p "$out/be"
touch /tmp/snd-test.start
"$B/shbuf" snd-be --platform xen --out "$out/be" --capture-wav "$out/capture.wav" -v 2 \
  2>"$out/backend.log" &
bepid=$!
wait_for 10 'grep -q "serving" "$out/backend.log" 2>/dev/null' || fail "snd-be did not start"

# The card of every guest.
card="vsnd = [ [ 'CARD, backend=0, short-name=Card0, sample-rates=48000, sample-formats=s16_le, channels-min=2, channels-max=2, buffer-size=65536', 'PCM, name=pcm0', 'STREAM, unique-id=s0p, type=p', 'STREAM, unique-id=s0c, type=c' ] ]"
# Answers wait up to 30 s (--timeout): under QEMU's emulation a
# reconnection can take longer than the 5 s default.
hostile_start hostile-snd "peer1=shbuf+snd-fe+--platform+xen+--hostile+--attack-for+86400+--timeout+30" "$card"

# How long the client waits for its card.
wait_s=60
guest_cfg /tmp/snd0.cfg snd0 pv /tmp/domu.cpio.gz 128 \
  "extra=\"console=hvc0 loglevel=4 role=snd snd_play=$play snd_record=$record snd_wait=$wait_s\"" \
  "$card"
t0=$(date +%s)
xl_create /tmp/snd0.cfg snd0
domid=$(xl_ domid snd0) || fail "no domid for snd0"
first=$domid
say "snd0 created as domain $domid in $(($(date +%s) - t0))s"

wait_for 120 "grep -aq 'DOMU: up' $console" || fail "the guest did not boot within 120 s"
grep -a 'DOMU: up' "$console" | sed 's/^/snd-test: guest: /'
# snd_xen_front has probed and published both streams' rings and channels
# (frontend state Initialised or, with a backend, Connected).
fe=/local/domain/$domid/device/vsnd/0
wait_for 60 "[ \"\$(xenstore-read $fe/state 2>/dev/null)\" -ge 3 ] 2>/dev/null" ||
  fail "snd_xen_front did not reach Initialised (state $(xenstore-read "$fe/state" 2>&1))"
for s in 0 1; do
  for k in ring-ref event-channel evt-ring-ref evt-event-channel; do
    xenstore-read "$fe/0/$s/$k" >/dev/null 2>&1 || fail "snd_xen_front published no $fe/0/$s/$k"
  done
done
say "snd_xen_front published the rings of both streams (frontend state $(xenstore-read "$fe/state"))"

wait_for 180 "grep -aq 'SNDCLIENT: recorded\|SNDCLIENT: FAIL' $console" ||
  fail "the client reported nothing within 180 s"
grep -a 'SNDCLIENT' "$console" | sed 's/^/snd-test: guest: /'
grep -aq 'SNDCLIENT: FAIL' "$console" && fail "the client failed: $(grep -a 'SNDCLIENT: FAIL' "$console" | head -n 1)"
grep -aq "SNDCLIENT: played $play frames, xruns 0" "$console" ||
  fail "the client did not play $play frames without an xrun"
got=$(grep -a 'SNDCLIENT: recorded' "$console" | sed -n 's/.*fnv1a64 \([0-9a-f]*\).*/\1/p' | head -n 1)
want=$("$B/shbuf_snd_check" digest "$capture_first" "$record")
grep -aq "SNDCLIENT: recorded $record frames, xruns 0" "$console" ||
  fail "the client did not record $record frames without an xrun"
[ "$got" = "$want" ] ||
  fail "the guest recorded fnv1a64 $got, the capture WAV's first $record frames are $want"
say "the guest recorded the capture WAV's first $record frames"
hostile_finish "$bepid"

# The first guest and the hostile one (mid-round) destroyed.
xl_ destroy snd0 || fail "xl destroy snd0"
xl_ destroy hostile-snd || fail "xl destroy hostile-snd"
wait_for 30 'holds_nothing "holds after a device went away"' ||
  fail "the backend did not end up holding nothing after xl destroy"
wait_for 30 '! xl list | grep -q "^snd\|^hostile"' ||
  fail "a destroyed domain is still listed: $(xl list | tail -n +2 | tr '\n' ' ')"

# A second guest is destroyed while it plays (a minute of signal): the
# backend lets go of everything at once and goes on.
sed -e 's/^name="snd0"/name="snd1"/' -e "s/snd_play=$play/snd_play=$((60 * 48000))/" \
  /tmp/snd0.cfg >/tmp/snd1.cfg
console=/var/log/xen/console/guest-snd1.log
rm -f "$console"
xl_create /tmp/snd1.cfg snd1
domid=$(xl_ domid snd1) || fail "no domid for snd1"
wait_for 120 "grep -q 'dom$domid/0: s0: WRITE id [0-9]*: ok' $out/backend.log" ||
  fail "domain $domid did not start playing within 120 s"
sleep 1
gone=$(grep -c "holds after a device went away" "$out/backend.log")
xl_ destroy snd1 || fail "xl destroy snd1"
wait_for 30 '[ "$(grep -c "holds after a device went away" "$out/backend.log")" -gt "$gone" ] &&
  holds_nothing "holds after a device went away"' ||
  fail "the backend did not end up holding nothing after xl destroy mid-playback"
wait_for 30 '! xl list | grep -q "^snd"' ||
  fail "a destroyed domain is still listed: $(xl list | tail -n +2 | tr '\n' ' ')"
say "a guest destroyed mid-playback left the backend holding nothing"
kill -TERM "$bepid"
wait "$bepid"
rc=$?
bepid=
[ "$rc" -eq 0 ] || fail "snd-be exited with $rc"
holds_nothing "holds at exit" || fail "snd-be's exit report is missing or not empty"
# What the backend wrote of the playback stream: one WAV.
wavs=$(ls "$out/be/d$first-"*.wav 2>/dev/null)
[ "$(echo "$wavs" | grep -c .)" = 1 ] || fail "expected one WAV of domain $first in $out/be, found: $wavs"
"$B/shbuf_snd_check" compare "$wavs" "$play" || fail "the WAV snd-be wrote is not the signal played"
grep "refused\|error" "$out/backend.log" | grep -v "dom$hostile_domid/" | sed 's/^/snd-test: be| /'
say "snd-be's answers to the hostile domain $hostile_domid: $(grep -c "dom$hostile_domid/.*refused" "$out/backend.log") refusals, $(grep -c "dom$hostile_domid/0: error" "$out/backend.log") devices ended"
written_outside /tmp/snd-test.start "$out" "$B/xen-run" >/tmp/snd-test.outside
[ -s /tmp/snd-test.outside ] && fail "files written outside $out: $(head -n 5 /tmp/snd-test.outside)"
grep -a "DOMU\|SNDCLIENT\|snd\|xen" "$console" | head -n 20 | sed 's/^/snd-test: guest-snd0.log: /'
say "PASS"
