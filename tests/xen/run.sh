#!/usr/bin/env bash
# Proves the xen grant provider on a real Xen hypervisor: boots Xen under QEMU
# (TCG, no KVM needed) with a busybox dom0, shares the repository into dom0
# over 9p, runs tests/xen/dom0-commands.sh there and passes only when dom0
# prints the success marker (QEMU exits 0 even when dom0 crashes).
#
# Environment:
#   SHBUF_XEN_CACHE    downloaded and unpacked Debian packages ($HOME/.cache/shbuf-xen)
#   SHBUF_XEN_BUILD    build directory, relative to the repository (build-xen)
#   SHBUF_XEN_TIMEOUT  seconds before QEMU is killed (900)
#   SHBUF_XEN_STEP_TIMEOUT  seconds per dom0 step (420)
#   SHBUF_XEN_GNTALLOC_LIMIT  xen-gntalloc limit= in dom0 (32768)
#   SHBUF_XEN_KERNEL   kernel package to boot (the one linux-image-amd64 depends on)
#   SHBUF_XEN_TARGETS  CMake targets to build (shbuf_cli shbuf_xen_selftest test_xen_provider test_pv_platform)
#   SHBUF_XEN_SKIP_BUILD=1  boot with what the build directory holds
#   SHBUF_XEN_DISPL=0  leave out the PV display proof (tests/xen/displ-test.sh: the
#                      toolstack, domUs running xen-drm-front and a hostile domU;
#                      it runs by default)
#   SHBUF_XEN_SND=0    leave out the PV sound proof (tests/xen/snd-test.sh: the
#                      toolstack, domUs running snd_client and a hostile domU; it
#                      runs by default)
#   SHBUF_XEN_VCHAN=0  leave out the proof across domains (tests/xen/vchan-test.sh:
#                      `shbuf frontend` and `backend` over a vchan, one in a domU
#                      and one in dom0; it runs by default)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${SHBUF_XEN_CACHE:-${HOME:-/root}/.cache/shbuf-xen}
build_rel=${SHBUF_XEN_BUILD:-build-xen}
build=$root/$build_rel
qemu_timeout=${SHBUF_XEN_TIMEOUT:-900}
step_timeout=${SHBUF_XEN_STEP_TIMEOUT:-420}
gntalloc_limit=${SHBUF_XEN_GNTALLOC_LIMIT:-32768}
targets=${SHBUF_XEN_TARGETS:-shbuf_cli shbuf_xen_selftest test_xen_provider test_pv_platform}
xen_pkg=xen-hypervisor-4.17-amd64
displ=${SHBUF_XEN_DISPL:-1}
[ "$displ" = 1 ] && targets="$targets shbuf_displ_check"
snd=${SHBUF_XEN_SND:-1}
[ "$snd" = 1 ] && targets="$targets shbuf_snd_check"
vchan=${SHBUF_XEN_VCHAN:-1}
[ "$vchan" = 1 ] && targets="$targets shbuf_grant_probe"
# Each of these proofs needs the toolstack in dom0 and a domU's kernel and
# initramfs.
guests=0
{ [ "$displ" = 1 ] || [ "$snd" = 1 ] || [ "$vchan" = 1 ]; } && guests=1
jobs=$(nproc)

log() { echo "xen-run: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}
t_start=$(date +%s)
elapsed() { echo "$(($(date +%s) - t_start))s"; }

# Host tools; the project's own build dependencies come from scripts/deps.sh.
"$root/scripts/deps.sh" qemu-system-x86 cpio xz-utils
for tool in qemu-system-x86_64 cpio dpkg-deb apt-get gzip xz timeout; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install qemu-system-x86 cpio xz-utils)"
done

# Guest packages: downloaded once into the cache, never installed on the host.
debs=$cache/debs
mkdir -p "$debs"
have_candidate() {
  local policy
  policy=$(apt-cache policy "$1" 2>/dev/null || true)
  [[ $policy == *"Candidate: "[0-9]* ]]
}
if ! have_candidate "$xen_pkg" && [ "$(id -u)" -eq 0 ]; then
  log "apt lists do not know $xen_pkg: apt-get update"
  apt-get update -qq
fi
kernel_pkg=${SHBUF_XEN_KERNEL:-$(apt-cache depends linux-image-amd64 2>/dev/null |
  awk '/Depends: linux-image-[0-9]/ {print $2; exit}')}
if [ -z "$kernel_pkg" ]; then
  # Offline: fall back to the newest kernel in the cache.
  kernel_pkg=$(ls "$debs" 2>/dev/null | sed -n 's/^\(linux-image-[0-9][^_]*\)_.*/\1/p' | sort -V | tail -1)
  [ -n "$kernel_pkg" ] || die "cannot tell which kernel to boot: apt knows no linux-image-amd64 and the cache $debs has none"
fi

# Prints the cached .deb of a package, downloading it first if needed.
fetch() {
  local pkg=$1 f
  f=$(ls "$debs/${pkg}_"*.deb 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$f" ]; then
    log "downloading $pkg"
    (cd "$debs" && apt-get download -q "$pkg" >&2 2>/dev/null) ||
      (cd "$debs" && apt-get download "$pkg" >&2) || die "apt-get download $pkg failed"
    f=$(ls "$debs/${pkg}_"*.deb | sort -V | tail -1)
  fi
  echo "$f"
}
xen_deb=$(fetch "$xen_pkg")
kernel_deb=$(fetch "$kernel_pkg")
busybox_deb=$(fetch busybox-static)

# Unpacks only the paths needed, once per package version.
unpack() {
  local deb=$1 dir
  shift
  dir=$cache/unpacked/$(basename "$deb" .deb)
  if [ ! -e "$dir/.done" ]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" --wildcards "$@" ||
      die "unpacking $deb failed"
    touch "$dir/.done"
  fi
  echo "$dir"
}
xen_dir=$(unpack "$xen_deb" './boot/xen-*.gz')
kernel_dir=$(unpack "$kernel_deb" './boot/vmlinuz-*' './lib/modules/*/kernel/drivers/xen/*' \
  './lib/modules/*/kernel/drivers/virtio/*' './lib/modules/*/kernel/net/9p/*' \
  './lib/modules/*/kernel/fs/9p/*' './lib/modules/*/kernel/fs/netfs/*' \
  './lib/modules/*/kernel/fs/fscache/*')
busybox_dir=$(unpack "$busybox_deb" './bin/busybox')

# The PV display and sound proofs also need the toolstack in dom0 and, for
# the domU, the kernel's DRM and sound modules with Linux's PV display and
# sound frontends.
if [ "$guests" = 1 ]; then
  tool_dirs=("$(unpack "$(fetch xen-utils-4.17)" './usr/lib/xen-4.17/bin/*')"
             "$(unpack "$(fetch xenstore-utils)" './usr/bin/*')")
  drm_dir=$cache/unpacked/$(basename "$kernel_deb" .deb)-drm
  if [ ! -e "$drm_dir/.done" ]; then
    rm -rf "$drm_dir"
    mkdir -p "$drm_dir"
    dpkg-deb --fsys-tarfile "$kernel_deb" | tar -x -C "$drm_dir" --wildcards \
      './lib/modules/*/kernel/drivers/gpu/drm/drm.ko' \
      './lib/modules/*/kernel/drivers/gpu/drm/drm_kms_helper.ko' \
      './lib/modules/*/kernel/drivers/gpu/drm/xen/drm_xen_front.ko' \
      './lib/modules/*/kernel/drivers/xen/xen-front-pgdir-shbuf.ko' ||
      die "unpacking the DRM modules from $kernel_deb failed"
    touch "$drm_dir/.done"
  fi
  snd_dir=$cache/unpacked/$(basename "$kernel_deb" .deb)-snd
  if [ ! -e "$snd_dir/.done" ]; then
    rm -rf "$snd_dir"
    mkdir -p "$snd_dir"
    dpkg-deb --fsys-tarfile "$kernel_deb" | tar -x -C "$snd_dir" --wildcards \
      './lib/modules/*/kernel/sound/soundcore.ko' \
      './lib/modules/*/kernel/sound/core/snd.ko' \
      './lib/modules/*/kernel/sound/core/snd-timer.ko' \
      './lib/modules/*/kernel/sound/core/snd-pcm.ko' \
      './lib/modules/*/kernel/sound/xen/snd_xen_front.ko' \
      './lib/modules/*/kernel/drivers/xen/xen-front-pgdir-shbuf.ko' ||
      die "unpacking the sound modules from $kernel_deb failed"
    touch "$snd_dir/.done"
  fi
fi

xen_gz=$(ls "$xen_dir"/boot/xen-*-amd64.gz | head -1)
vmlinuz=$(ls "$kernel_dir"/boot/vmlinuz-* | head -1)
kver=${vmlinuz##*/vmlinuz-}
mods=$kernel_dir/lib/modules/$kver/kernel
log "Xen $(basename "$xen_gz" .gz), dom0 kernel $kver ($(elapsed))"

# Copies the shared libraries that the executables $2... need (as ldd names
# them), with the dynamic loader and libgcc_s.so.1 (glibc loads it at run
# time for pthread_cancel and unwinding), into the root $1 at the host's
# paths. Sets nlibs.
copy_libs() {
  local dest=$1 ldd_out libs l
  shift
  ldd_out=$(for b in "$@"; do ldd "$b" || echo "ldd-failed $b"; done)
  grep -q 'ldd-failed' <<<"$ldd_out" && die "ldd failed: $(grep ldd-failed <<<"$ldd_out" | tr '\n' ' ')"
  grep -q 'not found' <<<"$ldd_out" &&
    die "a library of $* is missing on this host: $(grep 'not found' <<<"$ldd_out" | sort -u | tr -s ' \t\n' ' ')"
  libs=$(awk '/=>/ && $3 ~ /^\// {print $3} /^\t\/lib64\// {print $1}' <<<"$ldd_out" | sort -u)
  [ -n "$libs" ] || die "ldd found no libraries for $*"
  for l in $libs /lib/x86_64-linux-gnu/libgcc_s.so.1; do
    [ -e "$l" ] || die "$* need $l, missing on this host"
    case $l in "$root"/*) die "$l is in the repository: it would not be found at that path" ;; esac
    mkdir -p "$dest$(dirname "$l")"
    cp -L "$l" "$dest$l"
  done
  nlibs=$(wc -w <<<"$libs")
}

# QEMU's multiboot loader cannot load the gzip'ed hypervisor.
xen_elf=$cache/unpacked/$(basename "$xen_gz" .gz)
[ -s "$xen_elf" ] || gunzip -c "$xen_gz" >"$xen_elf"

# The build of the tests and the CLI that dom0 runs from the share; the
# shared libraries they need go into dom0's initramfs (below).
if [ "${SHBUF_XEN_SKIP_BUILD:-0}" != 1 ]; then
  log "building $targets in $build_rel"
  # A build directory configured by the earlier static build keeps -static
  # and the .a archives in its cache: configure it afresh.
  if grep -qs '^CMAKE_EXE_LINKER_FLAGS:STRING=-static' "$build/CMakeCache.txt"; then
    log "$build_rel was configured for a static build: configuring it again"
    rm -f "$build/CMakeCache.txt"
  fi
  # A build directory configured already (e.g. `make test`'s build, as
  # .ci/run passes it) keeps its configuration, so its objects are reused.
  if [ -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" >/dev/null || die "configuring the build in $build_rel failed"
  else
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHBUF_BENCH=OFF >/dev/null ||
      die "configuring the build in $build_rel failed"
  fi
  # shellcheck disable=SC2086
  cmake --build "$build" -j"$jobs" --target $targets || die "the build in $build_rel failed"
  log "build done ($(elapsed))"
fi

# The executables dom0 runs (tests/xen/dom0-commands.sh, displ-test.sh).
dom0_exes=("$build/shbuf" "$build/shbuf_xen_selftest" "$build/tests/test_xen_provider"
           "$build/tests/test_pv_platform")
[ "$displ" = 1 ] && dom0_exes+=("$build/shbuf_displ_check")
[ "$snd" = 1 ] && dom0_exes+=("$build/shbuf_snd_check")
[ "$vchan" = 1 ] && dom0_exes+=("$build/shbuf_grant_probe")
for e in "${dom0_exes[@]}"; do
  [ -x "$e" ] || die "$e is missing: build it (SHBUF_XEN_TARGETS, SHBUF_XEN_SKIP_BUILD)"
done

run_dir=$build/xen-run
mkdir -p "$run_dir"

# The domU for the PV display and sound proofs: the same kernel, an
# initramfs with busybox, the display and sound frontends' modules and our
# static DRM and sound clients; its /init runs one of them (role= on the
# guest's command line).
if [ "$guests" = 1 ]; then
  guest=$run_dir/guest
  rm -rf "$guest"
  mkdir -p "$guest/root/bin" "$guest/root/lib/modules"
  # The guest kernel as a plain ELF: libxenguest's own XZ decompression of
  # the bzImage was seen to fail now and then, and a PVH guest boots the ELF
  # directly.
  xz_at=$(LC_ALL=C grep -obUaP '\xFD7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1 || true)
  [ -n "$xz_at" ] || die "no XZ payload in $vmlinuz"
  tail -c +$((xz_at + 1)) "$vmlinuz" >"$guest/vmlinux.xz"
  xz -dc --single-stream "$guest/vmlinux.xz" >"$guest/vmlinux" ||
    die "cannot decompress the kernel in $vmlinuz"
  rm -f "$guest/vmlinux.xz"
  [ "$(head -c 4 "$guest/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ] ||
    die "the kernel in $vmlinuz is not an ELF image"
  cp "$busybox_dir/bin/busybox" "$guest/root/bin/busybox"
  find "$drm_dir" "$snd_dir" -name '*.ko' -exec cp {} "$guest/root/lib/modules/" \;
  [ "$(ls "$guest/root/lib/modules" | wc -l)" = 9 ] ||
    die "DRM or sound modules missing in $kernel_pkg: $(ls "$guest/root/lib/modules" | tr '\n' ' ')"
  gcc -static -O2 -Wall -Wextra -Werror -I/usr/include/libdrm -I"$root/tests/xen" \
    "$root/tests/xen/drm_client.c" -o "$guest/root/bin/drm_client" ||
    die "building tests/xen/drm_client.c failed (apt-get install libdrm-dev)"
  gcc -static -O2 -Wall -Wextra -Werror -I"$root/tests/xen" \
    "$root/tests/xen/snd_client.c" -o "$guest/root/bin/snd_client" ||
    die "building tests/xen/snd_client.c failed (apt-get install linux-libc-dev)"
  install -m 755 "$root/tests/xen/domu-init.sh" "$guest/root/init"
  (cd "$guest/root" && find . | cpio -o -H newc --quiet | gzip -1) >"$guest/domu.cpio.gz"
  # The guest of the proof across domains, and the hostile guest of the
  # display and sound proofs, also have the grant and event channel devices,
  # `shbuf` itself and the grant probe (stripped), with their libraries.
  if [ "$vchan" = 1 ] || [ "$displ" = 1 ] || [ "$snd" = 1 ]; then
    for m in xen-evtchn xen-gntdev xen-gntalloc; do
      [ -e "$mods/drivers/xen/$m.ko" ] || die "module $m.ko is not in $kernel_pkg"
      cp "$mods/drivers/xen/$m.ko" "$guest/root/lib/modules/"
    done
    peer_exes=("$build/shbuf")
    [ "$vchan" = 1 ] && peer_exes+=("$build/shbuf_grant_probe")
    for e in "${peer_exes[@]}"; do
      strip -o "$guest/root/bin/${e##*/}" "$e" || die "cannot strip $e"
    done
    copy_libs "$guest/root" "${peer_exes[@]}"
    (cd "$guest/root" && find . | cpio -o -H newc --quiet | gzip -1) >"$guest/domu-peer.cpio.gz"
    log "domU initramfs with shbuf and $nlibs shared libraries: $(du -k "$guest/domu-peer.cpio.gz" | cut -f1) KiB"
  fi
  rm -rf "$guest/root"
  log "domU kernel and initramfs in $guest ($(elapsed))"
fi

# The dom0 initramfs: busybox, the modules, /init.
initrd=$run_dir/dom0.cpio.gz
stage=$(mktemp -d "$run_dir/initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib/modules"
cp "$busybox_dir/bin/busybox" "$stage/bin/busybox"
for m in drivers/xen/xen-privcmd drivers/xen/xenfs/xenfs drivers/xen/xen-evtchn \
         drivers/xen/xen-gntdev drivers/xen/xen-gntalloc drivers/virtio/virtio_ring \
         drivers/virtio/virtio drivers/virtio/virtio_pci_legacy_dev \
         drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci net/9p/9pnet \
         net/9p/9pnet_virtio fs/netfs/netfs fs/fscache/fscache fs/9p/9p; do
  [ -e "$mods/$m.ko" ] || die "module $m.ko is not in $kernel_pkg"
  cp "$mods/$m.ko" "$stage/lib/modules/"
done
install -m 755 "$root/tests/xen/dom0-init.sh" "$stage/init"
# The toolstack for the PV display and sound proofs.
bins=("${dom0_exes[@]}")
if [ "$guests" = 1 ]; then
  mkdir -p "$stage/usr/lib/xen-4.17/bin" "$stage/usr/bin"
  for d in "${tool_dirs[@]}"; do
    for b in xl xenstored xenconsoled xen-init-dom0; do
      [ -f "$d/usr/lib/xen-4.17/bin/$b" ] && cp "$d/usr/lib/xen-4.17/bin/$b" "$stage/usr/lib/xen-4.17/bin/" && bins+=("$d/usr/lib/xen-4.17/bin/$b")
    done
    [ -f "$d/usr/bin/xenstore" ] && cp "$d/usr/bin/xenstore" "$stage/usr/bin/" && bins+=("$d/usr/bin/xenstore")
  done
  for b in xl xenstored xenconsoled xen-init-dom0; do
    [ -f "$stage/usr/lib/xen-4.17/bin/$b" ] || die "$b is missing from the xen-utils packages"
  done
  for n in read write ls list rm; do ln -sf xenstore "$stage/usr/bin/xenstore-$n"; done
fi
# The shared libraries of our executables (which run from the share) and of
# the toolstack: the host's copies (libxen-dev pulls in the toolstack's
# versions).
copy_libs "$stage" "${bins[@]}"
log "dom0 initramfs: $nlibs shared libraries from ldd"
(cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) >"$initrd"

# Boot. Arguments after the kernel path in the second -initrd module form the
# dom0 kernel command line; KEY=VALUE words reach /init as environment.
# QEMU splits -initrd at commas, so none may appear in them.
serial=$run_dir/serial.log
rm -f "$serial" "$run_dir/results.txt"
xen_cmdline="console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M dom0_max_vcpus=1"
xen_cmdline+=" loglvl=all guest_loglvl=all gnttab_max_frames=128 bootscrub=false"
# Eager FPU switching: with Xen's default on AMD (lazy, through CR0.TS and
# the #NM intercept) a PVH guest next to dom0 under QEMU's emulated SVM was
# seen to leave its SSE registers in dom0's processes now and then (the
# guest's console text inside frames, corrupted zlib streams, asserting
# xl). Xen then saves and restores the FPU state on every switch.
xen_cmdline+=" spec-ctrl=eager-fpu"
dom0_cmdline="console=hvc0 earlyprintk=xen panic=-1 loglevel=4"
dom0_cmdline+=" SHBUF_BUILD=$build_rel SHBUF_GNTALLOC_LIMIT=$gntalloc_limit"
dom0_cmdline+=" SHBUF_STEP_TIMEOUT=$step_timeout SHBUF_DISPL=$displ SHBUF_SND=$snd SHBUF_VCHAN=$vchan"
log "booting Xen under QEMU (TCG), serial log $serial ($(elapsed))"
t_boot=$(date +%s)
set +e
timeout -k 10 "$qemu_timeout" qemu-system-x86_64 -accel tcg -cpu max,-smap -smp 1 -m 2048 \
  -nographic -no-reboot -monitor none -serial stdio \
  -virtfs "local,path=$root,mount_tag=shbuf,security_model=none,id=shbuf" \
  -kernel "$xen_elf" -append "$xen_cmdline" \
  -initrd "$vmlinuz $dom0_cmdline,$initrd" </dev/null | tee "$serial"
rcs=("${PIPESTATUS[@]}")
set -e
qemu_rc=${rcs[0]}
log "QEMU exited with $qemu_rc after $(($(date +%s) - t_boot))s (total $(elapsed))"
[ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ] && die "QEMU did not finish within $qemu_timeout s (SHBUF_XEN_TIMEOUT)"

# The verdict comes from dom0's marker, cross-checked with its results file.
if grep -aq '^SHBUF_XEN_RESULT=PASS' "$serial"; then
  if [ -f "$run_dir/results.txt" ] && tail -1 "$run_dir/results.txt" | grep -q '^PASS$'; then
    log "PASS: every dom0 step passed:"
    sed '$d; s/^/xen-run:   /' "$run_dir/results.txt" >&2
    exit 0
  fi
  die "dom0 printed the success marker but $run_dir/results.txt does not confirm it"
fi
if grep -aq '^SHBUF_XEN_RESULT=FAIL' "$serial"; then
  [ -f "$run_dir/results.txt" ] && sed 's/^/xen-run:   /' "$run_dir/results.txt" >&2
  die "a dom0 step failed (see above and $serial)"
fi
die "dom0 never printed SHBUF_XEN_RESULT (crash, panic or hang): see $serial"
