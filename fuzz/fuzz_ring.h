// What the PV protocols' ring fuzzers share: the simulator's two domains
// with a 2-page buffer and its page directory the frontend granted for
// requests to name, a request ring page laid out from the input, and the
// check that the backend holds no mapping once its device let go.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <utility>

#include "fuzz_sim.h"
#include "shbuf/core/frontend_buffer.h"
#include "shbuf/grant/sim.h"

struct FuzzRingDomains : FuzzSimDomains {
  shbuf::FrontendBuffer buffer;

  explicit FuzzRingDomains(const std::string& name) : FuzzSimDomains(name) {
    shbuf::FrontendBufferConfig config;
    config.backend = 0;
    config.pages = 2;
    auto created = shbuf::FrontendBuffer::create(*frontend, config);
    if (!created.ok()) std::abort();
    buffer = std::move(created).value();
  }
  ~FuzzRingDomains() { (void)buffer.free(); }
};

// The input's first byte, for the fuzzer to choose the device's
// configuration with, and the ring's page: the rest of the input, zeros
// after its end. The page is the same for every run.
struct FuzzRingInput {
  std::uint8_t head = 0;
  std::span<std::byte> page;
};

inline FuzzRingInput fuzz_ring_input(const std::uint8_t* data, std::size_t size) {
  alignas(shbuf::kPageSize) static std::byte page[shbuf::kPageSize];
  std::memset(page, 0, sizeof page);
  if (size > 1) std::memcpy(page, data + 1, std::min(size - 1, sizeof page));
  return {size > 0 ? data[0] : std::uint8_t{0}, std::span<std::byte>(page, sizeof page)};
}

// What the simulator says once the device let go: aborts unless the backend
// domain maps nothing any more.
inline shbuf::SimStatus expect_no_mappings(shbuf::SimProvider& backend) {
  auto st = backend.status();
  if (!st.ok() || !st->mappings.empty()) std::abort();
  return std::move(st).value();
}
