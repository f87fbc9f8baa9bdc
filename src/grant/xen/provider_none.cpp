// The xen provider where shbuf was built without libxen-dev: it reports that
// instead of failing in some less clear way at run time.
#include "shbuf/grant/xen.h"

namespace shbuf {

// Lets callers and tests tell "built without Xen" from "no Xen here".
bool xen_provider_built() {
  return false;
}

// Same answer as with options: nothing can be opened.
Result<std::unique_ptr<Provider>> open_xen_provider() {
  return open_xen_provider(XenOptions{});
}

// Says what to install, since nothing else can help.
Result<std::unique_ptr<Provider>> open_xen_provider(const XenOptions&) {
  return make_error(ENODEV,
                    "shbuf was built without libxen-dev: install it and rebuild to use the xen "
                    "provider");
}

// No provider can be the xen one in this build.
Result<XenDeviceCalls> xen_device_calls(const Provider& provider) {
  return make_error(EINVAL, "the " + std::string(provider.name()) +
                                " provider makes no calls into Xen's grant devices");
}

}  // namespace shbuf
