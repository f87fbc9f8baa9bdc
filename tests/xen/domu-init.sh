#!/bin/busybox sh
# /init of the PV domU that tests/xen/displ-test.sh starts: loads Linux's PV
# display frontend (xen-drm-front) and runs the DRM client against it. The
# frontend's insmod waits until the backend connects, so it runs in the
# background. Output goes to the domain's console (hvc0).

/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
frames=4
for w in $(cat /proc/cmdline); do
  case $w in frames=*) frames=${w#frames=} ;; esac
done

echo "DOMU: up, $(uname -r)"
for m in drm drm_kms_helper xen-front-pgdir-shbuf; do
  insmod "/lib/modules/$m.ko" || echo "DOMU: FAIL: insmod $m"
done
insmod /lib/modules/drm_xen_front.ko &
/bin/drm_client "$frames"
echo "DOMU: drm_client exited with $?"
while :; do sleep 60; done
