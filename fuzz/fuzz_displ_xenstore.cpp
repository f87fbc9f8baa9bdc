// Fuzzes the parsers of what a PV display frontend writes in xenstore: its
// numbers (ring-ref, event-channel, be-alloc, state, ids) and its
// connectors' resolutions. Whatever the text: no crash, and what is
// accepted is exactly what the grammar allows.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "pv/displ/device.h"
#include "pv/xenstore.h"

namespace {

bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace shbuf::displ;
  const std::string text(reinterpret_cast<const char*>(data), size);

  if (const auto v = shbuf::pv::parse_xenstore_u32(text)) {
    if (!all_digits(text) || std::stoull(text) != *v) std::abort();
  } else if (all_digits(text) && text.size() < 10) {
    std::abort();  // at most 9 digits always fit 32 bits
  }

  const auto r = parse_resolution(text);
  if (r.ok()) {
    const auto x = text.find('x');
    if (x == std::string::npos || !all_digits(text.substr(0, x)) ||
        !all_digits(text.substr(x + 1))) {
      std::abort();
    }
    if (r->width == 0 || r->height == 0 || r->width > kMaxImageDimension ||
        r->height > kMaxImageDimension) {
      std::abort();
    }
  } else if (r.error().code != EINVAL || r.error().message.empty()) {
    std::abort();
  }
  return 0;
}
