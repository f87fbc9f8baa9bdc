// Fuzzes the reading of what xenstored sends on a watch connection: the
// bytes, cut into reads of a size the first byte picks, are framed into
// messages, and each watch event and error reply is parsed. Whatever the
// bytes: no crash; a message never holds more than xenstored may send; a
// broken stream stays broken with EPROTO; an event that parses has a path
// xenstored could send; an error reply names an errno.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" {
#include <xen/io/xs_wire.h>
}

#include "pv/xen/xs_wire.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace shbuf::pv;
  using namespace shbuf::pv::xen;
  if (size == 0) return 0;
  const std::size_t chunk = std::size_t(data[0]) + 1;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  XsMessageReader reader;
  std::size_t framed = 0;
  bool broken = false;
  for (std::size_t at = 0; at < bytes.size() && !broken; at += chunk) {
    reader.append(bytes.substr(at, chunk));
    for (;;) {
      auto m = reader.next();
      if (!m.ok()) {
        if (m.error().code != EPROTO || m.error().message.empty()) std::abort();
        if (reader.next().ok()) std::abort();  // stays broken
        broken = true;
        break;
      }
      if (!*m) break;
      const XsMessage& msg = **m;
      if (msg.body.size() > kXenstorePayloadMax) std::abort();
      framed += kXsHeaderSize + msg.body.size();
      if (msg.type == XS_WATCH_EVENT) {
        auto ev = parse_xs_watch_event(msg.body);
        if (ev.ok()) {
          if (!check_path(ev->path).ok()) std::abort();
        } else if (ev.error().code != EPROTO || ev.error().message.empty()) {
          std::abort();
        }
      } else if (msg.type == XS_ERROR) {
        if (parse_xs_error(msg.body) <= 0) std::abort();
      }
    }
  }
  // Everything read is either framed or still waiting for the rest.
  if (!broken && framed + reader.pending() != bytes.size()) std::abort();
  return 0;
}
