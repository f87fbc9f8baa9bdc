// The xenbus states both ends of a PV device write to their `state` nodes
// (xen/io/xenbus.h), and how they are read from xenstore.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace shbuf::pv {

enum class XenbusState : int {
  kUnknown = 0,
  kInitialising = 1,
  kInitWait = 2,
  kInitialised = 3,
  kConnected = 4,
  kClosing = 5,
  kClosed = 6,
  kReconfiguring = 7,
  kReconfigured = 8,
};

// A state node's value: a decimal in range, else nullopt (a peer's bad value).
std::optional<XenbusState> parse_xenbus_state(std::string_view text);

}  // namespace shbuf::pv
