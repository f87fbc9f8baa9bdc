// Both ends of xen/io/ring.h's request/response ring, and of the event page
// displif and sndif use for backend-to-frontend events, on one shared page
// each. Entries have any size that is a multiple of 4 bytes.
//
// The page is shared with the other end, which keeps writing it: every index
// is read once, checked against what the ring allows, and only our private
// copies steer where we read and write; each entry is copied out exactly
// once, word by word (a racing peer yields some value, never a torn read on
// our side), before anyone looks at it. A peer's index that cannot be right
// is EPROTO, and nothing more is read.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

#include "shbuf/core/result.h"
#include "shbuf/core/xen_types.h"

namespace shbuf::pv {

// The shared ring's header before its entries (struct <name>_sring).
inline constexpr std::size_t kRingHeader = 64;
// The event page's header before its events (in_cons, in_prod, reserved).
inline constexpr std::size_t kEventPageHeader = 64;

// __RING_SIZE: how many entries of `entry_size` bytes fit in one page after
// the header, rounded down to a power of two.
constexpr std::uint32_t ring_size(std::size_t entry_size) {
  if (entry_size == 0 || entry_size > kPageSize - kRingHeader) return 0;
  return std::bit_floor(std::uint32_t((kPageSize - kRingHeader) / entry_size));
}
// *_IN_RING_LEN: how many events of `event_size` bytes the event page holds.
constexpr std::uint32_t event_ring_len(std::size_t event_size) {
  if (event_size == 0 || event_size > kPageSize - kEventPageHeader) return 0;
  return std::uint32_t((kPageSize - kEventPageHeader) / event_size);
}

// The backend's end: consumes requests, produces responses.
class BackRing {
 public:
  // `page` must be one whole page, mapped read-write, and outlive the ring;
  // `entry_size` the larger of a request and a response. Starts at index 0,
  // as a freshly initialised shared ring does.
  static Result<BackRing> attach(std::span<std::byte> page, std::size_t entry_size);
  BackRing() = default;

  // Copies the next unconsumed request into `out` (entry_size bytes) and
  // returns true, or returns false when there is none. EPROTO when the
  // frontend's producer index is more than a ring ahead of what we consumed,
  // or every slot holds a request still awaiting its response.
  Result<bool> next_request(std::span<std::byte> out);
  // Writes the response into the slot of the oldest unanswered request and
  // publishes it; returns whether the frontend asked to be notified. EPROTO
  // when no request awaits a response.
  Result<bool> push_response(std::span<const std::byte> response);
  // RING_FINAL_CHECK_FOR_REQUESTS: re-arms the frontend's notification and
  // tells whether requests arrived meanwhile.
  Result<bool> final_check();

  std::uint32_t size() const { return size_; }
  std::uint32_t consumed() const { return req_cons_; }
  std::uint32_t responded() const { return rsp_prod_pvt_; }

 private:
  Result<std::uint32_t> unconsumed();

  std::byte* page_ = nullptr;
  std::size_t entry_ = 0;
  std::uint32_t size_ = 0;
  std::uint32_t req_cons_ = 0;
  std::uint32_t rsp_prod_pvt_ = 0;
};

// The frontend's end: produces requests, consumes responses.
class FrontRing {
 public:
  // Initialises the shared ring (SHARED_RING_INIT) on `page`, which the
  // frontend then grants to the backend.
  static Result<FrontRing> init(std::span<std::byte> page, std::size_t entry_size);
  FrontRing() = default;

  // Whether every slot holds a request or an unconsumed response.
  bool full() const { return req_prod_pvt_ - rsp_cons_ >= size_; }
  // Publishes a request; returns whether the backend asked to be notified.
  // ENOSPC when the ring is full.
  Result<bool> push_request(std::span<const std::byte> request);
  // Copies the next response into `out` and returns true, or false when
  // there is none. EPROTO when the backend's producer index answers more
  // requests than were sent.
  Result<bool> next_response(std::span<std::byte> out);
  // RING_FINAL_CHECK_FOR_RESPONSES.
  Result<bool> final_check();

  std::uint32_t size() const { return size_; }
  // Requests sent and not yet answered.
  std::uint32_t in_flight() const { return req_prod_pvt_ - rsp_cons_; }

 private:
  Result<std::uint32_t> unconsumed();

  std::byte* page_ = nullptr;
  std::size_t entry_ = 0;
  std::uint32_t size_ = 0;
  std::uint32_t req_prod_pvt_ = 0;
  std::uint32_t rsp_cons_ = 0;
};

// The backend's end of an event page.
class EventProducer {
 public:
  static Result<EventProducer> attach(std::span<std::byte> page, std::size_t event_size);
  EventProducer() = default;

  // Publishes one event. ENOSPC when the frontend has not consumed enough to
  // make room, or reports a consumer index we never produced: the event is
  // dropped, never waited for.
  Status push(std::span<const std::byte> event);
  std::uint32_t produced() const { return in_prod_; }
  std::uint32_t len() const { return len_; }

 private:
  std::byte* page_ = nullptr;
  std::size_t entry_ = 0;
  std::uint32_t len_ = 0;
  std::uint32_t in_prod_ = 0;
};

// The frontend's end of an event page (zeroed by the frontend before it
// grants the page).
class EventConsumer {
 public:
  static Result<EventConsumer> attach(std::span<std::byte> page, std::size_t event_size);
  EventConsumer() = default;

  // Copies the next event into `out` and returns true, or false when there
  // is none. EPROTO when the backend's producer index is more than the ring
  // ahead of us.
  Result<bool> next(std::span<std::byte> out);

 private:
  std::byte* page_ = nullptr;
  std::size_t entry_ = 0;
  std::uint32_t len_ = 0;
  std::uint32_t in_cons_ = 0;
};

}  // namespace shbuf::pv
