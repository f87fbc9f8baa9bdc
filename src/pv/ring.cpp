// Rings and event pages read and written through atomic word accesses on
// memory the other end shares.
#include "pv/ring.h"

#include <atomic>
#include <cstring>
#include <string>

namespace shbuf::pv {
namespace {

// struct <name>_sring: req_prod, req_event, rsp_prod, rsp_event, pad.
constexpr std::size_t kReqProd = 0;
constexpr std::size_t kReqEvent = 4;
constexpr std::size_t kRspProd = 8;
constexpr std::size_t kRspEvent = 12;
// The event page: in_cons, in_prod, reserved.
constexpr std::size_t kInCons = 0;
constexpr std::size_t kInProd = 4;

// The other end writes these words concurrently: every access is atomic.
std::atomic_ref<std::uint32_t> word(std::byte* page, std::size_t off) {
  return std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(page + off));
}

// One entry out of shared memory, one relaxed word at a time.
void copy_out(std::span<std::byte> out, std::byte* src) {
  for (std::size_t i = 0; i < out.size(); i += 4) {
    const std::uint32_t v = word(src, i).load(std::memory_order_relaxed);
    std::memcpy(out.data() + i, &v, 4);
  }
}

// One entry into shared memory, one relaxed word at a time.
void copy_in(std::byte* dst, std::span<const std::byte> in) {
  for (std::size_t i = 0; i < in.size(); i += 4) {
    std::uint32_t v = 0;
    std::memcpy(&v, in.data() + i, 4);
    word(dst, i).store(v, std::memory_order_relaxed);
  }
}

// A ring needs one whole, word-aligned page and entries of whole words that
// leave room for at least one.
Status check_shape(std::span<std::byte> page, std::size_t entry, std::size_t header,
                   const char* what) {
  if (page.size() != kPageSize) {
    return make_error(EINVAL, std::string(what) + " must be one page of " +
                                  std::to_string(kPageSize) + " bytes, not " +
                                  std::to_string(page.size()));
  }
  if (reinterpret_cast<std::uintptr_t>(page.data()) % alignof(std::uint32_t) != 0) {
    return make_error(EINVAL, std::string(what) + " is not 4-byte aligned");
  }
  if (entry == 0 || entry % 4 != 0 || entry > kPageSize - header) {
    return make_error(EINVAL, std::string(what) + ": entries of " + std::to_string(entry) +
                                  " bytes (a multiple of 4, at most " +
                                  std::to_string(kPageSize - header) + ")");
  }
  return {};
}

Status check_size(std::size_t got, std::size_t want, const char* what) {
  if (got == want) return {};
  return make_error(EINVAL, std::string(what) + " of " + std::to_string(got) +
                                " bytes on a ring of " + std::to_string(want) + "-byte entries");
}

}  // namespace

Result<BackRing> BackRing::attach(std::span<std::byte> page, std::size_t entry_size) {
  SHBUF_TRY(check_shape(page, entry_size, kRingHeader, "a request ring"));
  BackRing r;
  r.page_ = page.data();
  r.entry_ = entry_size;
  r.size_ = ring_size(entry_size);
  return r;
}

// The one place the frontend's producer index is read and bounded.
Result<std::uint32_t> BackRing::unconsumed() {
  const std::uint32_t prod = word(page_, kReqProd).load(std::memory_order_acquire);
  const std::uint32_t pending = prod - req_cons_;
  if (pending > size_) {
    return make_error(EPROTO, "the frontend's request producer index " + std::to_string(prod) +
                                  " is " + std::to_string(pending) +
                                  " requests ahead of the consumer " + std::to_string(req_cons_) +
                                  " (at most " + std::to_string(size_) + ")");
  }
  return pending;
}

// Copying before validating means the frontend cannot change a request
// between our check and our use of it.
Result<bool> BackRing::next_request(std::span<std::byte> out) {
  SHBUF_TRY(check_size(out.size(), entry_, "a request buffer"));
  auto pending = unconsumed();
  if (!pending.ok()) return pending.error();
  if (*pending == 0) return false;
  if (req_cons_ - rsp_prod_pvt_ >= size_) {
    return make_error(EPROTO, "every ring slot holds a request still awaiting its response");
  }
  copy_out(out, page_ + kRingHeader + (req_cons_ % size_) * entry_);
  ++req_cons_;
  return true;
}

// RING_PUSH_RESPONSES_AND_CHECK_NOTIFY on our private producer index.
Result<bool> BackRing::push_response(std::span<const std::byte> response) {
  SHBUF_TRY(check_size(response.size(), entry_, "a response"));
  if (rsp_prod_pvt_ == req_cons_) {
    return make_error(EPROTO, "no request is awaiting a response");
  }
  copy_in(page_ + kRingHeader + (rsp_prod_pvt_ % size_) * entry_, response);
  const std::uint32_t old = rsp_prod_pvt_;
  const std::uint32_t now = ++rsp_prod_pvt_;
  word(page_, kRspProd).store(now, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const std::uint32_t event = word(page_, kRspEvent).load(std::memory_order_relaxed);
  return std::uint32_t(now - event) < std::uint32_t(now - old);
}

// Without the re-arm and re-check, a request pushed between our last look
// and going to sleep would never be noticed.
Result<bool> BackRing::final_check() {
  auto pending = unconsumed();
  if (!pending.ok()) return pending.error();
  if (*pending != 0) return true;
  word(page_, kReqEvent).store(req_cons_ + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  pending = unconsumed();
  if (!pending.ok()) return pending.error();
  return *pending != 0;
}

Result<FrontRing> FrontRing::init(std::span<std::byte> page, std::size_t entry_size) {
  SHBUF_TRY(check_shape(page, entry_size, kRingHeader, "a request ring"));
  std::memset(page.data(), 0, page.size());
  FrontRing r;
  r.page_ = page.data();
  r.entry_ = entry_size;
  r.size_ = ring_size(entry_size);
  word(r.page_, kReqEvent).store(1, std::memory_order_relaxed);
  word(r.page_, kRspEvent).store(1, std::memory_order_release);
  return r;
}

// RING_PUSH_REQUESTS_AND_CHECK_NOTIFY, one request at a time.
Result<bool> FrontRing::push_request(std::span<const std::byte> request) {
  SHBUF_TRY(check_size(request.size(), entry_, "a request"));
  if (full()) {
    return make_error(ENOSPC, "the request ring is full (" + std::to_string(size_) +
                                  " requests await their responses)");
  }
  copy_in(page_ + kRingHeader + (req_prod_pvt_ % size_) * entry_, request);
  const std::uint32_t old = req_prod_pvt_;
  const std::uint32_t now = ++req_prod_pvt_;
  word(page_, kReqProd).store(now, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const std::uint32_t event = word(page_, kReqEvent).load(std::memory_order_relaxed);
  return std::uint32_t(now - event) < std::uint32_t(now - old);
}

// The backend cannot answer a request we never sent.
Result<std::uint32_t> FrontRing::unconsumed() {
  const std::uint32_t prod = word(page_, kRspProd).load(std::memory_order_acquire);
  const std::uint32_t pending = prod - rsp_cons_;
  if (pending > req_prod_pvt_ - rsp_cons_) {
    return make_error(EPROTO, "the backend's response producer index " + std::to_string(prod) +
                                  " answers " + std::to_string(pending) + " requests, but only " +
                                  std::to_string(req_prod_pvt_ - rsp_cons_) + " were sent");
  }
  return pending;
}

Result<bool> FrontRing::next_response(std::span<std::byte> out) {
  SHBUF_TRY(check_size(out.size(), entry_, "a response buffer"));
  auto pending = unconsumed();
  if (!pending.ok()) return pending.error();
  if (*pending == 0) return false;
  copy_out(out, page_ + kRingHeader + (rsp_cons_ % size_) * entry_);
  ++rsp_cons_;
  return true;
}

Result<bool> FrontRing::final_check() {
  auto pending = unconsumed();
  if (!pending.ok()) return pending.error();
  if (*pending != 0) return true;
  word(page_, kRspEvent).store(rsp_cons_ + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  pending = unconsumed();
  if (!pending.ok()) return pending.error();
  return *pending != 0;
}

Result<EventProducer> EventProducer::attach(std::span<std::byte> page, std::size_t event_size) {
  SHBUF_TRY(check_shape(page, event_size, kEventPageHeader, "an event page"));
  EventProducer p;
  p.page_ = page.data();
  p.entry_ = event_size;
  p.len_ = event_ring_len(event_size);
  return p;
}

// The consumer index is the frontend's and may be anything: room is computed
// from our own producer index, and any answer but "room" drops the event.
Status EventProducer::push(std::span<const std::byte> event) {
  SHBUF_TRY(check_size(event.size(), entry_, "an event"));
  const std::uint32_t cons = word(page_, kInCons).load(std::memory_order_acquire);
  const std::uint32_t used = in_prod_ - cons;
  if (used >= len_) {
    return make_error(ENOSPC, "the event ring has no room: the frontend consumed up to " +
                                  std::to_string(cons) + ", the backend produced " +
                                  std::to_string(in_prod_) + " of a ring of " +
                                  std::to_string(len_));
  }
  copy_in(page_ + kEventPageHeader + (in_prod_ % len_) * entry_, event);
  ++in_prod_;
  word(page_, kInProd).store(in_prod_, std::memory_order_release);
  return {};
}

Result<EventConsumer> EventConsumer::attach(std::span<std::byte> page, std::size_t event_size) {
  SHBUF_TRY(check_shape(page, event_size, kEventPageHeader, "an event page"));
  EventConsumer c;
  c.page_ = page.data();
  c.entry_ = event_size;
  c.len_ = event_ring_len(event_size);
  return c;
}

Result<bool> EventConsumer::next(std::span<std::byte> out) {
  SHBUF_TRY(check_size(out.size(), entry_, "an event buffer"));
  const std::uint32_t prod = word(page_, kInProd).load(std::memory_order_acquire);
  const std::uint32_t pending = prod - in_cons_;
  if (pending > len_) {
    return make_error(EPROTO, "the backend's event producer index " + std::to_string(prod) +
                                  " is " + std::to_string(pending) + " events ahead of " +
                                  std::to_string(in_cons_) + " (the ring holds " +
                                  std::to_string(len_) + ")");
  }
  if (pending == 0) return false;
  copy_out(out, page_ + kEventPageHeader + (in_cons_ % len_) * entry_);
  ++in_cons_;
  word(page_, kInCons).store(in_cons_, std::memory_order_release);
  return true;
}

}  // namespace shbuf::pv
