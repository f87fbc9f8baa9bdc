// PNG files of what a PV display shows: 8-bit RGB, zlib-compressed, written
// so that a reader never sees a partial file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "shbuf/core/result.h"

namespace shbuf::displ {

// The largest width or height accepted (PNG allows more; a display never
// needs it, and it bounds the memory one frame can take).
inline constexpr std::uint32_t kMaxImageDimension = 16384;

// An image in memory: height rows of width pixels, 3 bytes each (R, G, B).
struct RgbImage {
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  std::vector<std::uint8_t> rgb;
};

// zlib's level for frames: fast, since a guest may flip at the display's rate.
inline constexpr int kDefaultPngLevel = 1;

// Called after each row of the loops that go over a whole frame (encoding,
// converting, hashing), on the thread that runs them; it must not throw.
// The frame writer's worker uses it to give its core back to the ring loop
// now and then.
using BetweenRows = std::function<void()>;

// Encodes a PNG (IHDR, one IDAT, IEND; filter 0 on every row) at zlib
// compression `level` (0 stores, 9 compresses most), calling `between_rows`
// (when set) after each row. EINVAL for an empty image, a dimension above
// kMaxImageDimension, rgb of the wrong size, or a level outside 0..9.
Result<std::vector<std::uint8_t>> encode_png(const RgbImage& image, int level = kDefaultPngLevel,
                                             const BetweenRows& between_rows = {});

// Writes `bytes` to `path` through a temporary file in the same directory
// and a rename, so the file appears whole or not at all.
Status write_file_atomically(const std::string& path, std::span<const std::uint8_t> bytes);

}  // namespace shbuf::displ
