#include "pv/platform.h"

#include "shbuf/grant/sim.h"

namespace shbuf::pv {

Result<Platform> open_platform(const PlatformOptions& options) {
  Platform p;
  if (options.name == "sim") {
    SimOptions sim;
    sim.path = options.sim_path;
    sim.domid = options.self;
    auto grants = SimProvider::open(sim);
    if (!grants.ok()) return std::move(grants).error();
    const std::string dir = (*grants)->path();
    auto xs = open_sim_xenstore(dir, options.self);
    if (!xs.ok()) return std::move(xs).error();
    auto ev = open_sim_events(dir, options.self);
    if (!ev.ok()) return std::move(ev).error();
    p.grants = std::move(grants).value();
    p.xenstore = std::move(xs).value();
    p.events = std::move(ev).value();
    return p;
  }
  if (options.name == "xen") {
    ProviderOptions po;
    po.name = "xen";
    auto grants = open_provider(po);
    if (!grants.ok()) return std::move(grants).error();
    auto xs = open_xen_xenstore();
    if (!xs.ok()) return std::move(xs).error();
    auto ev = open_xen_events();
    if (!ev.ok()) return std::move(ev).error();
    p.grants = std::move(grants).value();
    p.xenstore = std::move(xs).value();
    p.events = std::move(ev).value();
    return p;
  }
  return make_error(EINVAL, "unknown platform '" + options.name + "' (expected sim or xen)");
}

}  // namespace shbuf::pv
