// Fuzzes the PV display backend's request path with a hostile frontend that
// controls every byte of the shared request ring (producer index included):
// each request is copied out of the ring, decoded and answered by a
// DisplayDevice over the simulator, whose frontend has granted a small
// buffer with a valid page directory for requests to find. Whatever arrives:
// no crash, no hang, at most one ring's worth of requests per notification,
// every failure answered with a status and a reason, and nothing held once
// the device lets go.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "fuzz_ring.h"
#include "pv/displ/device.h"
#include "pv/displ/protocol.h"
#include "pv/displ/ring.h"

namespace {

using namespace shbuf;

constexpr DomId kFrontend = FuzzRingDomains::kFrontend;

FuzzRingDomains& domains() {
  static FuzzRingDomains d("displ");
  return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzRingDomains& d = domains();
  // The first byte chooses the device's configuration, the rest is the ring.
  const auto [head, page] = fuzz_ring_input(data, size);

  displ::DeviceConfig config;
  config.frontend = kFrontend;
  config.be_alloc = (head & 1) != 0;
  config.connectors = {{64, 48}, {32, 16}};
  config.limits.max_total_pages = 64;
  config.limits.max_buffer_bytes = 64 * kPageSize;
  std::size_t frames = 0;
  displ::DisplayDevice device(*d.backend, config, [&frames](const displ::Frame& f) -> Status {
    if (f.pixels.bytes.size() !=
        std::size_t{f.pixels.width} * f.pixels.height * (f.pixels.format.bpp / 8)) {
      std::abort();
    }
    ++frames;
    return {};
  });

  auto ring = displ::RequestRing::attach(page);
  if (!ring.ok()) std::abort();
  std::size_t handled = 0;
  for (;;) {
    auto next = ring->next_request();
    if (!next.ok() || !next->has_value()) break;
    if (++handled > displ::kRequestRingSize) std::abort();
    const displ::Outcome out = device.handle((head >> 1) & 1, **next);
    if (out.response.status != 0 && out.error.empty()) std::abort();
    if (!ring->push_response(displ::encode_response(out.response)).ok()) std::abort();
  }
  (void)ring->final_check();

  // Letting go releases every mapping and grant the requests made.
  (void)device.release_all();
  if (device.pages_held() != 0 || device.dbuf_count() != 0) std::abort();
  for (const auto& dom : expect_no_mappings(*d.backend).domains) {
    if (dom.domid == 0 && (dom.grants_in_use != 0 || dom.frames_in_use != 0)) std::abort();
  }
  return 0;
}
