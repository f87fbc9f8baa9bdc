// The PV display backend where shbuf was built without libxenstore and
// libxenevtchn: it says so instead of failing in a less clear way.
#include "pv/displ/xen_backend.h"

namespace shbuf::displ {

// Lets the CLI and tests tell "built without Xen" from "no Xen here".
bool displ_backend_built() { return false; }

// Says what to install, since nothing else can help.
Status run_backend(const BackendOptions&, const std::atomic<bool>&) {
  return make_error(ENODEV,
                    "shbuf was built without libxen-dev (libxenstore, libxenevtchn): install it "
                    "and rebuild to run the display backend");
}

}  // namespace shbuf::displ
