#!/bin/busybox sh
# /init of the busybox dom0 that tests/xen/run.sh boots under Xen: loads the
# Xen and 9p modules, mounts the repository the host shares over 9p, runs
# tests/xen/dom0-commands.sh from it and ends with one result marker line.
# Settings arrive as environment variables from the kernel command line.

/bin/busybox --install -s /bin
export PATH=/bin
export HOME=/tmp
B=${SHBUF_BUILD:-build-xen}
limit=${SHBUF_GNTALLOC_LIMIT:-32768}
step_timeout=${SHBUF_STEP_TIMEOUT:-300}

say() { echo "shbuf-xen: $*"; }

# Ends the run: the marker is the only thing the host trusts.
finish() {
  [ -n "$results" ] && echo "$1" >>"$results"
  cd /
  sync
  umount /mnt/shbuf 2>/dev/null
  echo "SHBUF_XEN_RESULT=$1"
  sleep 1
  poweroff -f
}

fatal() { say "FATAL: $*"; finish FAIL; }

# Loads a module shipped in the initramfs (no modules.dep: order matters).
load() {
  m=$1
  shift
  insmod "/lib/modules/$m.ko" "$@" || fatal "insmod $m $* failed"
}

mkdir -p /proc /sys /dev /tmp /run /mnt/shbuf
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
results=

say "dom0 up: $(uname -r), $(grep -c ^processor /proc/cpuinfo) vcpu(s), $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
for m in xen-privcmd xenfs xen-evtchn xen-gntdev; do load "$m"; done
load xen-gntalloc "limit=$limit"
mkdir -p /proc/xen
mount -t xenfs xenfs /proc/xen || fatal "mount xenfs failed"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
         9pnet 9pnet_virtio netfs fscache 9p; do
  load "$m"
done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 shbuf /mnt/shbuf ||
  fatal "mount of the 9p share 'shbuf' failed"

say "capabilities: $(cat /proc/xen/capabilities)"
for p in /sys/module/xen_gntalloc/parameters/* /sys/module/xen_gntdev/parameters/*; do
  [ -r "$p" ] && say "$p = $(cat "$p")"
done
ls -l /dev/xen/

cd /mnt/shbuf || fatal "cannot enter the share"
[ -d "$B" ] || fatal "build directory $B is missing in the share"
results=$B/xen-run/results.txt
{ mkdir -p "$B/xen-run" && : >"$results"; } || fatal "cannot write $results"

passed=0
failed=0
skipped=0

# Runs one step; its output goes to the serial log.
run() {
  say "=== RUN: $*"
  t0=$(date +%s)
  timeout -s KILL "$step_timeout" "$@"
  rc=$?
  t=$(($(date +%s) - t0))
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    say "=== PASS (${t}s): $*"
    echo "PASS $*" >>"$results"
  else
    failed=$((failed + 1))
    say "=== FAIL (exit $rc, ${t}s): $*"
    echo "FAIL($rc) $*" >>"$results"
  fi
}

# Runs a step only where a probe command succeeds, e.g. a subcommand that
# exists: a feature not built yet is reported as skipped, not failed.
run_if() {
  probe=$1
  shift
  [ "$1" = "--" ] && shift
  if sh -c "$probe" >/dev/null 2>&1; then
    run "$@"
  else
    skipped=$((skipped + 1))
    say "=== SKIP (probe '$probe' failed): $*"
    echo "SKIP $*" >>"$results"
  fi
}

. tests/xen/dom0-commands.sh

say "$passed passed, $failed failed, $skipped skipped"
if [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; then
  finish PASS
else
  finish FAIL
fi
