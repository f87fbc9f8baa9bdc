#include "pv/xenbus.h"

#include <charconv>

namespace shbuf::pv {

std::optional<XenbusState> parse_xenbus_state(std::string_view text) {
  unsigned v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 10);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
      v > static_cast<unsigned>(XenbusState::kReconfigured) ||
      (text.size() > 1 && text[0] == '0')) {
    return std::nullopt;
  }
  return static_cast<XenbusState>(v);
}

}  // namespace shbuf::pv
