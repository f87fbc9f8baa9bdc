// The backend's view of displif's two shared pages per connector: the
// request ring (xen/io/ring.h's "back ring" of 64-byte slots) and the event
// page (xendispl_event_page, the backend produces events into it), as
// displif packets over the PV layer's rings (pv/ring.h), which read the
// frontend's indices once, bound them and copy each packet out once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "pv/displ/protocol.h"
#include "pv/ring.h"
#include "shbuf/core/result.h"
#include "shbuf/core/xen_types.h"

namespace shbuf::displ {

// __RING_SIZE for 64-byte entries in one page after the 64-byte header.
inline constexpr std::uint32_t kRequestRingSize = 32;
// XENDISPL_IN_RING_LEN: events in the page after its 64-byte header.
inline constexpr std::uint32_t kEventRingLen = (kPageSize - pv::kEventPageHeader) / kPacketSize;

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

  std::uint32_t consumed() const { return ring_.consumed(); }
  std::uint32_t responded() const { return ring_.responded(); }

 private:
  explicit RequestRing(pv::BackRing ring) : ring_(ring) {}
  pv::BackRing ring_;
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

  std::uint32_t produced() const { return events_.produced(); }

 private:
  explicit EventRing(pv::EventProducer events) : events_(events) {}
  pv::EventProducer events_;
  std::uint16_t next_id_ = 0;
};

}  // namespace shbuf::displ
