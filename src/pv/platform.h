// A platform: the grant provider, xenstore and event channels chosen
// together, so that PV code above never asks whether it runs on Xen or on
// the simulator.
#pragma once

#include <memory>
#include <string>

#include "pv/evtchn.h"
#include "pv/xenstore.h"
#include "shbuf/core/provider.h"

namespace shbuf::pv {

struct PlatformOptions {
  std::string name = "sim";  // "sim" or "xen"
  DomId self = 0;            // the domain to act as (sim only; xen knows its own)
  std::string sim_path;      // sim instance; empty: $SHBUF_SIM or the default
};

struct Platform {
  std::unique_ptr<Provider> grants;
  std::unique_ptr<Xenstore> xenstore;
  std::unique_ptr<EventChannels> events;
};

// Opens the three services of the named platform. ENODEV for "xen" where
// Xen is missing or shbuf was built without it; EINVAL for an unknown name.
Result<Platform> open_platform(const PlatformOptions& options);

// The simulator's services, for the instance at `dir` (which must exist),
// acting as `self`.
Result<std::unique_ptr<Xenstore>> open_sim_xenstore(const std::string& dir, DomId self);
Result<std::unique_ptr<EventChannels>> open_sim_events(const std::string& dir, DomId self);

// Xen's, through libxenstore and libxenevtchn (ENODEV without them).
Result<std::unique_ptr<Xenstore>> open_xen_xenstore();
Result<std::unique_ptr<EventChannels>> open_xen_events();

}  // namespace shbuf::pv
