#include "pv/xen/xs_wire.h"

#include <cerrno>
#include <cstring>

extern "C" {
#include <xen/io/xs_wire.h>
}

namespace shbuf::pv::xen {
namespace {

static_assert(sizeof(xsd_sockmsg) == kXsHeaderSize);
static_assert(XENSTORE_PAYLOAD_MAX == kXenstorePayloadMax);

// Once everything before it is consumed, the buffer starts again.
constexpr std::size_t kCompactAt = 4 * (kXsHeaderSize + kXenstorePayloadMax);

}  // namespace

std::string encode_xs_request(std::uint32_t type, std::uint32_t req_id, std::string_view body) {
  xsd_sockmsg h{};
  h.type = type;
  h.req_id = req_id;
  h.tx_id = 0;
  h.len = std::uint32_t(body.size());
  std::string out(reinterpret_cast<const char*>(&h), sizeof h);
  out.append(body);
  return out;
}

void XsMessageReader::append(std::string_view bytes) {
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ >= kCompactAt) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
}

Result<std::optional<XsMessage>> XsMessageReader::next() {
  if (broken_) return *broken_;
  if (pending() < kXsHeaderSize) return std::optional<XsMessage>();
  xsd_sockmsg h{};
  std::memcpy(&h, buf_.data() + pos_, sizeof h);
  if (h.len > kXenstorePayloadMax) {
    broken_ = make_error(EPROTO, "xenstored sent a message of " + std::to_string(h.len) +
                                     " bytes (at most " + std::to_string(kXenstorePayloadMax) +
                                     "); the connection cannot be read further");
    return *broken_;
  }
  if (pending() - kXsHeaderSize < h.len) return std::optional<XsMessage>();
  XsMessage m;
  m.type = h.type;
  m.req_id = h.req_id;
  m.tx_id = h.tx_id;
  m.body.assign(buf_, pos_ + kXsHeaderSize, h.len);
  pos_ += kXsHeaderSize + h.len;
  return std::optional<XsMessage>(std::move(m));
}

Result<WatchEvent> parse_xs_watch_event(std::string_view body) {
  const std::size_t end_path = body.find('\0');
  if (end_path == std::string_view::npos) {
    return make_error(EPROTO, "xenstore watch event without a NUL after its path");
  }
  const std::size_t end_token = body.find('\0', end_path + 1);
  if (end_token == std::string_view::npos || end_token + 1 != body.size()) {
    return make_error(EPROTO, "xenstore watch event is not a path and a token, each ended by NUL");
  }
  WatchEvent ev{std::string(body.substr(0, end_path)),
                std::string(body.substr(end_path + 1, end_token - end_path - 1))};
  if (Status s = check_path(ev.path); !s.ok()) {
    return make_error(EPROTO, "xenstore watch event: " + s.error().message);
  }
  return ev;
}

int parse_xs_error(std::string_view body) {
  if (!body.empty() && body.back() == '\0') body.remove_suffix(1);
  for (const struct xsd_errors& e : xsd_errors) {
    if (body == e.errstring) return e.errnum;
  }
  return EIO;
}

}  // namespace shbuf::pv::xen
