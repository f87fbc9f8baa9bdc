// `shbuf displ-be`: a user-space backend for Xen's PV display devices
// (vdispl, xen/io/displif.h) that writes every shown frame as a PNG.
//
// It scans its backend directory in xenstore (every 200 ms) for the vdispl
// devices the toolstack creates, reaches InitWait at once, and once a
// frontend is Initialised reads be-alloc and each connector's resolution, ring refs and
// event channels, maps the rings, binds the channels and goes Connected.
// Requests are answered by DisplayDevice (displ_device.h). A frontend that
// closes, a device the toolstack removes or closes, and a domain that dies
// are released at once: every mapping, grant and event channel.
//
// A hostile frontend can end only its own device: a broken ring, a bad
// xenstore value or a failed mapping closes that device, never the backend.
#pragma once

#include <atomic>
#include <string>

#include "pv/displ/device.h"
#include "shbuf/core/result.h"

namespace shbuf::displ {

struct BackendOptions {
  // Directory receiving the PNGs; must exist.
  std::string out_dir = ".";
  // One file per connector, overwritten by each frame.
  bool last_frame_only = false;
  // 0: errors only, 1: devices and frames, 2: every request, 3: every scan.
  int verbosity = 1;
  DeviceLimits limits;
};

// True when shbuf was built with libxenstore and libxenevtchn.
bool displ_backend_built();

// Serves vdispl devices until `stop` becomes true (looked at every 200 ms),
// then releases everything. ENODEV when built without Xen or when xenstore,
// the event channel device or the grant devices cannot be opened; ENOENT
// when out_dir is not a directory. Logs to stderr, one line per event.
Status run_backend(const BackendOptions& options, const std::atomic<bool>& stop);

}  // namespace shbuf::displ
