// Without Xen's libraries: the xen platform services refuse to open.
#include "pv/platform.h"

namespace shbuf::pv {

Result<std::unique_ptr<Xenstore>> open_xen_xenstore() {
  return make_error(ENODEV, "shbuf was built without libxenstore");
}

Result<std::unique_ptr<EventChannels>> open_xen_events() {
  return make_error(ENODEV, "shbuf was built without libxenevtchn");
}

}  // namespace shbuf::pv
