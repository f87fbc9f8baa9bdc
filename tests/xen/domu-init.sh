#!/bin/busybox sh
# /init of the PV domUs that tests/xen/displ-test.sh and snd-test.sh start.
# The guest's kernel command line chooses what runs:
#   role=displ (the default)  Linux's PV display frontend (xen-drm-front) and
#                             the DRM client (frames=N: frames it draws first)
#   role=snd                  Linux's PV sound frontend (snd_xen_front) and the
#                             sound client (snd_play=FRAMES, snd_record=FRAMES,
#                             snd_wait=SECONDS: see snd_client.c)
#   role=peer                 gntalloc, gntdev and evtchn, and the commands of
#                             peer1=, peer2=, ... in turn (a program in /bin and
#                             its arguments, '+' for a space), each reported as
#                             "PEER: run N exit RC"
# A frontend's insmod waits until the backend connects (at most about 30 s),
# so it runs in the background. Output goes to the domain's console (hvc0).

/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
role=displ
frames=4
snd_play=
snd_record=
snd_wait=
for w in $(cat /proc/cmdline); do
  case $w in
    role=*) role=${w#role=} ;;
    frames=*) frames=${w#frames=} ;;
    snd_play=*) snd_play=${w#snd_play=} ;;
    snd_record=*) snd_record=${w#snd_record=} ;;
    snd_wait=*) snd_wait=${w#snd_wait=} ;;
  esac
done

# Loads the modules in order; the last one (the frontend) in the background.
load() {
  while [ $# -gt 1 ]; do
    insmod "/lib/modules/$1.ko" || echo "DOMU: FAIL: insmod $1"
    shift
  done
  (insmod "/lib/modules/$1.ko" && echo "DOMU: $1 loaded" || echo "DOMU: FAIL: insmod $1") &
}

echo "DOMU: up, $(uname -r), role $role"
case $role in
  displ)
    load drm drm_kms_helper xen-front-pgdir-shbuf drm_xen_front
    /bin/drm_client "$frames"
    echo "DOMU: drm_client exited with $?"
    ;;
  snd)
    load soundcore snd snd-timer snd-pcm xen-front-pgdir-shbuf snd_xen_front
    # Defaults: three seconds of the signal, one second recorded, and up to
    # 60 s for the card to appear.
    /bin/snd_client "${snd_play:-144000}" "${snd_record:-48000}" "${snd_wait:-60}"
    echo "DOMU: snd_client exited with $?"
    ;;
  peer)
    insmod /lib/modules/xen-evtchn.ko || echo "DOMU: FAIL: insmod xen-evtchn"
    insmod /lib/modules/xen-gntdev.ko || echo "DOMU: FAIL: insmod xen-gntdev"
    insmod /lib/modules/xen-gntalloc.ko limit=32768 || echo "DOMU: FAIL: insmod xen-gntalloc"
    n=1
    while :; do
      args=$(tr ' ' '\n' </proc/cmdline | sed -n "s/^peer$n=//p" | tr '+' ' ')
      [ -n "$args" ] || break
      echo "PEER: run $n: $args"
      # shellcheck disable=SC2086
      { /bin/$args 2>&1; echo $? >/tmp/rc; } | sed "s/^/PEER: $n| /"
      echo "PEER: run $n exit $(cat /tmp/rc 2>/dev/null)"
      n=$((n + 1))
    done
    echo "PEER: done"
    ;;
  *) echo "DOMU: FAIL: unknown role $role (displ, snd or peer)" ;;
esac
while :; do sleep 60; done
