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
