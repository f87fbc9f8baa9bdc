// displif's request ring and event page, read and written through atomic
// word accesses on memory the frontend shares.
#include "pv/displ/ring.h"

#include <atomic>
#include <string>

namespace shbuf::displ {
namespace {

// struct xen_displif_sring: req_prod, req_event, rsp_prod, rsp_event, pad.
constexpr std::size_t kReqProd = 0;
constexpr std::size_t kReqEvent = 4;
constexpr std::size_t kRspProd = 8;
constexpr std::size_t kRspEvent = 12;
constexpr std::size_t kRingEntries = 64;
// struct xendispl_event_page: in_cons, in_prod, reserved.
constexpr std::size_t kInCons = 0;
constexpr std::size_t kInProd = 4;
constexpr std::size_t kInRing = 64;

// The frontend writes these words concurrently: every access is atomic.
std::atomic_ref<std::uint32_t> word(std::byte* page, std::size_t off) {
  return std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(page + off));
}

// One packet out of shared memory, one relaxed word at a time.
Packet copy_out(std::byte* src) {
  Packet p;
  for (std::size_t i = 0; i < kPacketSize; i += 4) {
    const std::uint32_t v = word(src, i).load(std::memory_order_relaxed);
    for (std::size_t b = 0; b < 4; ++b) p[i + b] = static_cast<std::byte>(v >> (8 * b));
  }
  return p;
}

// One packet into shared memory, one relaxed word at a time.
void copy_in(std::byte* dst, const Packet& p) {
  for (std::size_t i = 0; i < kPacketSize; i += 4) {
    std::uint32_t v = 0;
    for (std::size_t b = 0; b < 4; ++b) v |= std::to_integer<std::uint32_t>(p[i + b]) << (8 * b);
    word(dst, i).store(v, std::memory_order_relaxed);
  }
}

// Both rings need one whole, word-aligned page.
Status check_page(std::span<std::byte> page, const char* what) {
  if (page.size() != kPageSize) {
    return make_error(EINVAL, std::string(what) + " must be one page of " +
                                  std::to_string(kPageSize) + " bytes, not " +
                                  std::to_string(page.size()));
  }
  if (reinterpret_cast<std::uintptr_t>(page.data()) % alignof(std::uint32_t) != 0) {
    return make_error(EINVAL, std::string(what) + " is not 4-byte aligned");
  }
  return {};
}

}  // namespace

// A mapped page becomes a ring only if it has the shape one needs.
Result<RequestRing> RequestRing::attach(std::span<std::byte> page) {
  SHBUF_TRY(check_page(page, "a request ring"));
  return RequestRing(page.data());
}

// The one place the frontend's producer index is read and bounded.
Result<std::uint32_t> RequestRing::unconsumed() {
  const std::uint32_t prod = word(page_, kReqProd).load(std::memory_order_acquire);
  const std::uint32_t pending = prod - req_cons_;
  if (pending > kRequestRingSize) {
    return make_error(EPROTO, "the frontend's request producer index " + std::to_string(prod) +
                                  " is " + std::to_string(pending) +
                                  " requests ahead of the consumer " + std::to_string(req_cons_) +
                                  " (at most " + std::to_string(kRequestRingSize) + ")");
  }
  return pending;
}

// Copying before validating means the frontend cannot change a request
// between our check and our use of it.
Result<std::optional<Packet>> RequestRing::next_request() {
  auto pending = unconsumed();
  if (!pending.ok()) return pending.error();
  if (*pending == 0) return std::optional<Packet>{};
  if (req_cons_ - rsp_prod_pvt_ >= kRequestRingSize) {
    return make_error(EPROTO, "every ring slot holds a request still awaiting its response");
  }
  const std::size_t slot = req_cons_ % kRequestRingSize;
  Packet p = copy_out(page_ + kRingEntries + slot * kPacketSize);
  ++req_cons_;
  return std::optional<Packet>(p);
}

// RING_PUSH_RESPONSES_AND_CHECK_NOTIFY on our private producer index.
Result<bool> RequestRing::push_response(const Packet& response) {
  if (rsp_prod_pvt_ == req_cons_) {
    return make_error(EPROTO, "no request is awaiting a response");
  }
  const std::size_t slot = rsp_prod_pvt_ % kRequestRingSize;
  copy_in(page_ + kRingEntries + slot * kPacketSize, response);
  const std::uint32_t old = rsp_prod_pvt_;
  const std::uint32_t now = ++rsp_prod_pvt_;
  word(page_, kRspProd).store(now, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const std::uint32_t event = word(page_, kRspEvent).load(std::memory_order_relaxed);
  return static_cast<std::uint32_t>(now - event) < static_cast<std::uint32_t>(now - old);
}

// Without the re-arm and re-check, a request pushed between our last look
// and going to sleep would never be noticed.
Result<bool> RequestRing::final_check() {
  auto pending = unconsumed();
  if (!pending.ok()) return pending.error();
  if (*pending != 0) return true;
  word(page_, kReqEvent).store(req_cons_ + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  pending = unconsumed();
  if (!pending.ok()) return pending.error();
  return *pending != 0;
}

// Same shape check as the request ring.
Result<EventRing> EventRing::attach(std::span<std::byte> page) {
  SHBUF_TRY(check_page(page, "an event page"));
  return EventRing(page.data());
}

// The consumer index is the frontend's and may be anything: room is computed
// from our own producer index, and any answer but "room" drops the event.
Status EventRing::push_pg_flip(std::uint64_t fb_cookie) {
  const std::uint32_t cons = word(page_, kInCons).load(std::memory_order_acquire);
  const std::uint32_t used = in_prod_ - cons;
  if (used >= kEventRingLen) {
    return make_error(ENOSPC, "the event ring has no room: the frontend consumed up to " +
                                   std::to_string(cons) + ", the backend produced " +
                                   std::to_string(in_prod_) + " of a ring of " +
                                   std::to_string(kEventRingLen));
  }
  const std::size_t slot = in_prod_ % kEventRingLen;
  copy_in(page_ + kInRing + slot * kPacketSize, encode_pg_flip_event({next_id_, fb_cookie}));
  ++next_id_;
  ++in_prod_;
  word(page_, kInProd).store(in_prod_, std::memory_order_release);
  return {};
}

}  // namespace shbuf::displ
