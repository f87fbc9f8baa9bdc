// The backend's view of displif's two shared pages per connector: the
// request ring (xen/io/ring.h's "back ring" of 64-byte slots) and the event
// page (xendispl_event_page, the backend produces events into it).
//
// Both live in a page the frontend keeps writing. Every index is read once,
// checked against what the protocol allows, and only our private copies
// steer where we read and write; each packet is copied out of the ring
// exactly once (word by word, so a racing peer yields some value, never a
// torn read on our side) before anyone looks at it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "pv/displ/protocol.h"
#include "shbuf/core/result.h"
#include "shbuf/core/xen_types.h"

namespace shbuf::displ {

// __RING_SIZE for 64-byte entries in one page after the 64-byte header.
inline constexpr std::uint32_t kRequestRingSize = 32;
// XENDISPL_IN_RING_LEN: events in the page after its 64-byte header.
inline constexpr std::uint32_t kEventRingLen = (kPageSize - 64) / kPacketSize;

class RequestRing {
 public:
  // `page` must be exactly one page, mapped read-write, and outlive the ring.
  // Starts at index 0, as a freshly initialised shared ring does.
  static Result<RequestRing> attach(std::span<std::byte> page);

  RequestRing() = default;

  // Copies out the next unconsumed request, or nullopt when there is none.
  // EPROTO when the frontend's producer index is more than one ring ahead of
  // what we consumed: a broken or hostile frontend; nothing more is read.
  Result<std::optional<Packet>> next_request();

  // Writes the response into the slot of the oldest unanswered request and
  // publishes it. Returns whether the frontend asked to be notified.
  // EPROTO when no request is awaiting a response.
  Result<bool> push_response(const Packet& response);

  // RING_FINAL_CHECK_FOR_REQUESTS: re-arms the frontend's notification and
  // tells whether requests arrived meanwhile. EPROTO as next_request().
  Result<bool> final_check();

  std::uint32_t consumed() const { return req_cons_; }
  std::uint32_t responded() const { return rsp_prod_pvt_; }

 private:
  explicit RequestRing(std::byte* page) : page_(page) {}
  Result<std::uint32_t> unconsumed();

  std::byte* page_ = nullptr;
  std::uint32_t req_cons_ = 0;
  std::uint32_t rsp_prod_pvt_ = 0;
};

class EventRing {
 public:
  // `page` must be exactly one page, mapped read-write, and outlive the ring.
  static Result<EventRing> attach(std::span<std::byte> page);

  EventRing() = default;

  // Publishes a page-flip event with the next event id (ids start at 0 and
  // count every event published, as Linux's frontend expects). ENOSPC when
  // the frontend has not consumed enough to make room, or reports a consumer
  // index the producer never reached: the event is dropped, never waited for.
  Status push_pg_flip(std::uint64_t fb_cookie);

  std::uint32_t produced() const { return in_prod_; }

 private:
  explicit EventRing(std::byte* page) : page_(page) {}

  std::byte* page_ = nullptr;
  std::uint32_t in_prod_ = 0;
  std::uint16_t next_id_ = 0;
};

}  // namespace shbuf::displ
