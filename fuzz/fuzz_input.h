// Reads a fuzzer's input as little pieces; past the end it yields zeros, so
// every input, however short, drives a whole run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

struct FuzzInput {
  const std::uint8_t* data;
  std::size_t size;

  std::uint32_t u32() {
    std::uint32_t v = 0;
    const std::size_t k = size < 4 ? size : 4;
    if (k != 0) std::memcpy(&v, data, k);
    data += k;
    size -= k;
    return v;
  }
};
