// The xenstore wire protocol (xen/io/xs_wire.h) as far as a connection of
// watches needs it: requests out, replies and watch events in. What arrives
// is checked before use: a header announcing more than xenstored may send
// breaks the stream, a malformed event or error reply is refused alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "pv/xenstore.h"
#include "shbuf/core/result.h"

namespace shbuf::pv::xen {

// The size of a message's header (struct xsd_sockmsg).
inline constexpr std::size_t kXsHeaderSize = 16;

struct XsMessage {
  std::uint32_t type = 0;  // an enum xsd_sockmsg_type
  std::uint32_t req_id = 0;
  std::uint32_t tx_id = 0;
  std::string body;
};

// A request of `type` (XS_WATCH, ...) with its body, ready to send.
std::string encode_xs_request(std::uint32_t type, std::uint32_t req_id, std::string_view body);

// Splits the byte stream from xenstored into messages.
class XsMessageReader {
 public:
  // Appends what was read.
  void append(std::string_view bytes);
  // The next whole message, or nullopt until more bytes arrive. EPROTO when
  // a header announces a body over kXenstorePayloadMax: nothing after it can
  // be framed, so every later call fails the same way.
  Result<std::optional<XsMessage>> next();
  // Bytes held that do not yet make a whole message.
  std::size_t pending() const { return buf_.size() - pos_; }

 private:
  std::string buf_;
  std::size_t pos_ = 0;
  std::optional<Error> broken_;
};

// The body of an XS_WATCH_EVENT, "path\0token\0": EPROTO unless it is two
// strings, each ended by NUL, with a path xenstored could send.
Result<WatchEvent> parse_xs_watch_event(std::string_view body);

// The errno an XS_ERROR reply names ("EINVAL\0", ...); EIO for a name
// xs_wire.h does not list.
int parse_xs_error(std::string_view body);

}  // namespace shbuf::pv::xen
