#include "pv/xenbus.h"

#include "pv/xenstore.h"

namespace shbuf::pv {

// One digit: the states run from 0 to 8.
std::optional<XenbusState> parse_xenbus_state(std::string_view text) {
  const auto v = parse_xenstore_u32(text);
  if (!v || text.size() != 1 || *v > static_cast<unsigned>(XenbusState::kReconfigured)) {
    return std::nullopt;
  }
  return static_cast<XenbusState>(*v);
}

}  // namespace shbuf::pv
