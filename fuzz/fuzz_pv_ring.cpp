// Fuzzes both ends of the PV layer's ring and event page against a peer that
// controls every byte of the shared page, indices included, for entries of
// several sizes. Whatever the page holds: no access outside it, no more
// entries taken than the ring can hold, and a refused index stays refused.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "pv/ring.h"

namespace {

using namespace shbuf;
using namespace shbuf::pv;

constexpr std::size_t kSizes[] = {16, 64, 112, 2016};

// The peer's bytes over the page, from `at` on.
void overwrite(std::byte* page, std::size_t at, const std::uint8_t* data, std::size_t size) {
  if (at < kPageSize) std::memcpy(page + at, data, std::min(size, kPageSize - at));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t entry = kSizes[data[0] % 4];
  const unsigned end = data[1] % 4;
  const unsigned count = data[1] / 4;
  data += 2;
  size -= 2;
  alignas(kPageSize) static std::byte page[kPageSize];
  std::memset(page, 0, sizeof page);
  std::vector<std::byte> e(entry, std::byte{0x5a});
  const std::span<std::byte> span(page, kPageSize);
  switch (end) {
    case 0: {  // the backend's end: requests from the peer
      overwrite(page, 0, data, size);
      auto ring = BackRing::attach(span, entry);
      if (!ring.ok()) std::abort();
      std::uint32_t taken = 0;
      for (std::uint32_t i = 0; i < 4 * ring->size(); ++i) {
        auto got = ring->next_request(e);
        if (!got.ok() || !*got) break;
        ++taken;
        if (i % 2 == 0 && !ring->push_response(e).ok()) std::abort();
      }
      if (taken > 2 * ring->size()) std::abort();
      (void)ring->final_check();
      break;
    }
    case 1: {  // the frontend's end: responses from the peer
      auto ring = FrontRing::init(span, entry);
      if (!ring.ok()) std::abort();
      std::uint32_t sent = 0;
      while (sent < count && !ring->full()) {
        if (!ring->push_request(e).ok()) std::abort();
        ++sent;
      }
      // The peer rewrites the response index and the entries, not the
      // request side it cannot change in a real ring either.
      overwrite(page, 8, data, size);
      std::uint32_t answered = 0;
      for (std::uint32_t i = 0; i < 4 * ring->size(); ++i) {
        auto got = ring->next_response(e);
        if (!got.ok() || !*got) break;
        ++answered;
      }
      if (answered > sent) std::abort();
      (void)ring->final_check();
      break;
    }
    case 2: {  // the backend's events: the peer's consumer index
      overwrite(page, 0, data, size);
      auto events = EventProducer::attach(span, entry);
      if (!events.ok()) std::abort();
      std::uint32_t pushed = 0;
      for (std::uint32_t i = 0; i < 2 * events->len() + count; ++i) {
        if (events->push(e).ok()) ++pushed;
      }
      if (pushed > 2 * events->len() + count) std::abort();
      break;
    }
    default: {  // the frontend's events: the peer's producer index
      overwrite(page, 0, data, size);
      auto events = EventConsumer::attach(span, entry);
      if (!events.ok()) std::abort();
      std::uint32_t read = 0;
      for (std::uint32_t i = 0; i < 4 * event_ring_len(entry); ++i) {
        auto got = events->next(e);
        if (!got.ok() || !*got) break;
        ++read;
      }
      if (read > event_ring_len(entry)) std::abort();
      break;
    }
  }
  return 0;
}
