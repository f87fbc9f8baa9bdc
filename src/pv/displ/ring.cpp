// displif's request ring and event page: its packets over the PV layer's
// rings.
#include "pv/displ/ring.h"

namespace shbuf::displ {

static_assert(pv::ring_size(kPacketSize) == kRequestRingSize);

Result<RequestRing> RequestRing::attach(std::span<std::byte> page) {
  auto ring = pv::BackRing::attach(page, kPacketSize);
  if (!ring.ok()) return ring.error();
  return RequestRing(*ring);
}

Result<std::optional<Packet>> RequestRing::next_request() {
  Packet p;
  auto got = ring_.next_request(p);
  if (!got.ok()) return got.error();
  if (!*got) return std::optional<Packet>{};
  return std::optional<Packet>(p);
}

Result<bool> RequestRing::push_response(const Packet& response) {
  return ring_.push_response(response);
}

Result<bool> RequestRing::final_check() {
  return ring_.final_check();
}

Result<EventRing> EventRing::attach(std::span<std::byte> page) {
  auto events = pv::EventProducer::attach(page, kPacketSize);
  if (!events.ok()) return events.error();
  return EventRing(*events);
}

// Ids count every event published, as Linux's frontend expects.
Status EventRing::push_pg_flip(std::uint64_t fb_cookie) {
  SHBUF_TRY(events_.push(encode_pg_flip_event({next_id_, fb_cookie})));
  ++next_id_;
  return {};
}

}  // namespace shbuf::displ
