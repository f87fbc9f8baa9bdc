# The toolstack in dom0 and the helpers the PV proofs share, sourced by
# tests/xen/displ-test.sh, snd-test.sh and vchan-test.sh (busybox sh). The
# sourcing script defines say (one line of its own output) and fail (a clear
# message, then exit 1) first.

xenbin=/usr/lib/xen-4.17/bin
PATH=$xenbin:/usr/bin:$PATH

# Waits up to $1 seconds for the shell condition $2.
wait_for() {
  t=$1
  shift
  while ! eval "$1"; do
    t=$((t - 1))
    [ "$t" -ge 0 ] || return 1
    sleep 1
  done
}

# xl was seen to abort inside glibc ("tpp.c: ... __pthread_tpp_change_priority:
# Assertion ... failed") while Xen switched the FPU lazily (see run.sh); a call
# that aborts (exit 134) is repeated, up to 3 times, so that the toolstack
# alone cannot fail the test.
xl_() {
  n=1
  while :; do
    xl "$@"
    rc=$?
    [ "$rc" -eq 134 ] && [ "$n" -lt 3 ] || return "$rc"
    say "xl $1 aborted; again" >&2
    n=$((n + 1))
    sleep 1
  done
}

# Starts the toolstack in the order it needs (xenstored, dom0's entries,
# consoles), unless an earlier test of this boot already did.
toolstack_start() {
  [ -x "$xenbin/xl" ] ||
    fail "the toolstack is not in this dom0 (run.sh builds it in with the display or sound test)"
  if pidof xenstored >/dev/null; then
    pidof xenconsoled >/dev/null || fail "xenstored runs but xenconsoled does not"
    return 0
  fi
  mkdir -p /dev/pts
  mount -t devpts devpts /dev/pts 2>/dev/null
  mkdir -p /run/xenstored /var/run/xen /var/log/xen/console /var/lib/xen /var/lock /etc/xen
  printf 'autoballoon="off"\n' >/etc/xen/xl.conf
  XENSTORED_ROOTDIR=/run/xenstored xenstored --pid-file /run/xenstore.pid || fail "xenstored"
  xen-init-dom0 >/dev/null || fail "xen-init-dom0"
  xenconsoled --log=guest --log-dir=/var/log/xen/console || fail "xenconsoled"
}

# Creates the domain of the xl configuration $1 named $2; a create that failed
# (or aborted, see xl_) leaves a domain to destroy: up to 3 tries.
xl_create() {
  tries=0
  until xl create "$1"; do
    tries=$((tries + 1))
    [ "$tries" -lt 3 ] || fail "xl create $2 failed 3 times"
    xl_ destroy "$2" 2>/dev/null
    sleep 1
  done
}

# Writes the xl configuration $1 of a guest named $2, of type $3 (pv or pvh),
# that boots /tmp/vmlinux with the initramfs $4 and $5 MB of memory on one
# vcpu; each further argument is one more line of it (extra=, devices, ...).
guest_cfg() {
  guest_cfg_file=$1
  printf 'name="%s"\ntype="%s"\nkernel="/tmp/vmlinux"\nramdisk="%s"\nmemory=%s\nvcpus=1\n' \
    "$2" "$3" "$4" "$5" >"$guest_cfg_file" || return
  shift 5
  [ "$#" -eq 0 ] || printf '%s\n' "$@" >>"$guest_cfg_file"
}

# The hostile guest: a PV domU (role=peer in domu-init.sh, its initramfs
# holding `shbuf`) whose runs are our lying frontends (`shbuf snd-fe
# --hostile`, `shbuf displ-fe --hostile`: tools/hostile*.cpp). Its last run
# goes on in rounds until the guest is destroyed; each round ends with the
# backend closing the device.
# hostile_start NAME RUNS DEVICE_LINE...: creates guest NAME with the peer
# runs RUNS ("peer1=... peer2=...") and the devices, and returns once a
# round has been completed (the second has begun).
hostile_start() {
  hostile_name=$1
  hostile_runs=$2
  shift 2
  hostile_console=/var/log/xen/console/guest-$hostile_name.log
  [ -f "$guest/domu-peer.cpio.gz" ] || fail "the hostile guest's initramfs is missing in $guest"
  cp "$guest/domu-peer.cpio.gz" /tmp/ || fail "cannot copy the hostile guest's initramfs"
  rm -f "$hostile_console"
  guest_cfg "/tmp/$hostile_name.cfg" "$hostile_name" pv /tmp/domu-peer.cpio.gz 192 \
    "extra=\"console=hvc0 loglevel=4 role=peer $hostile_runs\"" "$@"
  hostile_t0=$(date +%s)
  xl_create "/tmp/$hostile_name.cfg" "$hostile_name"
  hostile_domid=$(xl_ domid "$hostile_name") || fail "no domid for $hostile_name"
  wait_for 240 "grep -aq 'hostile: round 2\$\|hostile: round 2.\$' $hostile_console" ||
    fail "the hostile guest $hostile_name (domain $hostile_domid) did not complete a round within 240 s"
  say "hostile guest $hostile_name (domain $hostile_domid) completed its first round $(($(date +%s) - hostile_t0))s after xl create"
}

# The number of the hostile guest's current round.
hostile_round() {
  sed -n 's/.*hostile: round \([0-9]*\)[^0-9a-z]*$/\1/p' "$hostile_console" | tail -n 1
}

# Waits up to $1 seconds for the hostile guest to complete $2 more rounds,
# and requires that the backend of pid $3 grew by at most $4 KiB meanwhile.
hostile_rounds_without_growth() {
  r0=$(hostile_round)
  m0=$(rss_kib "$3")
  hostile_want=$((r0 + $2))
  wait_for "$1" '[ "$(hostile_round)" -ge "$hostile_want" ]' ||
    fail "the hostile guest completed fewer than $2 rounds in $1 s (round $r0 to $(hostile_round))"
  m1=$(rss_kib "$3")
  say "backend resident memory over hostile rounds $r0 to $(hostile_round): $m0 KiB, then $m1 KiB"
  [ "$m1" -le $((m0 + $4)) ] || fail "the backend grew from $m0 KiB to $m1 KiB over $2 hostile rounds"
}

# Fails when a hostile answer differed from the refusal it should be, or a
# round could not go on; prints what the backend answered in the first
# round.
hostile_check() {
  tr -d '\r' <"$hostile_console" | grep -a 'hostile: DIFFERS\|could not go on' | head -n 5 >/tmp/hostile.bad
  [ -s /tmp/hostile.bad ] && fail "the hostile guest saw: $(cat /tmp/hostile.bad)"
  grep -aq 'PEER: .*exit [1-9]' "$hostile_console" &&
    fail "a hostile run failed: $(grep -a 'PEER: .*exit [1-9]' "$hostile_console" | head -n 1)"
  return 0
}

# Once the guests running Linux's frontends were served: the hostile guest
# must go on for three more rounds, every answer as it should be, while the
# backend of pid $1 stays up and grows by at most 4 MiB; prints its first
# round.
hostile_finish() {
  hostile_check
  hostile_rounds_without_growth 240 3 "$1" 4096
  hostile_check
  kill -0 "$1" || fail "the backend is gone"
  say "the hostile guest lied for $(hostile_round) rounds; every answer was a refusal"
  tr -d '\r' <"$hostile_console" | grep -a 'PEER: [0-9]*| hostile: ' | sed -n '1,/round 2$/p' |
    while IFS= read -r l; do say "hostile guest: $l"; done
}

# The backend's resident memory in KiB.
# The least of three readings a second apart: a frame being copied or
# written is not growth.
rss_kib() {
  least=
  for i in 1 2 3; do
    [ "$i" = 1 ] || sleep 1
    now=$(sed -n 's/^VmRSS:[^0-9]*\([0-9]*\).*/\1/p' "/proc/$1/status")
    [ -z "$least" ] || [ "$now" -lt "$least" ] && least=$now
  done
  echo "$least"
}

# Files written since the file $1 outside the directory $2 (and the logs,
# state and scratch of dom0's toolstack and tests): on the root file
# system, and under the directory $3 (the shared build directory's run
# data, where the host's QEMU writes the serial console to serial.log).
written_outside() {
  {
    find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
      -o -path /var/log -o -path /var/lib/xen -o -path /var/run \) -prune -o \
      -type f -newer "$1" -print
    find "$3" -type f -newer "$1" ! -path "$3/serial.log" -print
  } 2>/dev/null | grep -v "^$2/"
}
