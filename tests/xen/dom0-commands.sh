# What tests/xen/run.sh runs in dom0 under a real Xen, in order. Sourced by
# the dom0 /init with the repository (shared over 9p) as the working
# directory; $B is the build directory (build-xen). One step a
# line:
#   run CMD ARGS...            a nonzero exit (or the step timeout) fails the run
#   run_if 'PROBE' -- CMD...   run CMD only if the shell command PROBE succeeds,
#                              otherwise report it as skipped
# Dom0 is domain 0 and maps its own grants, so both ends of the demo run
# here; vchan-test.sh puts one end in a domU.

run "$B/shbuf_xen_selftest"
run "$B/tests/test_xen_provider" --gtest_color=no
run_if "$B/shbuf demo --help" -- "$B/shbuf" demo --provider xen --pages 1,1023,1024,1025,16384
# The PV display backend against Linux's xen-drm-front in two domUs.
run_if '[ "${SHBUF_DISPL:-0}" = 1 ]' -- sh tests/xen/displ-test.sh "$B"
# The PV sound backend against Linux's snd_xen_front in two domUs, one after
# the other.
run_if '[ "${SHBUF_SND:-0}" = 1 ]' -- sh tests/xen/snd-test.sh "$B"
# Our frontend and backend in two domains over a vchan, both ways round, and
# a guest destroyed mid-transfer.
run_if '[ "${SHBUF_VCHAN:-0}" = 1 ]' -- sh tests/xen/vchan-test.sh "$B"
# The platform services' contract, against xenstored and libxenevtchn: it
# needs the xenstored the display or sound test started (without one,
# opening xenstore blocks in the kernel). Watches run on our own connection to xenstored, so
# they do not depend on libxenstore's reader thread (Debian's static library
# has none).
run_if 'pidof xenstored >/dev/null' -- "$B/tests/test_pv_platform" --gtest_color=no \
  --gtest_filter='*/xen'
