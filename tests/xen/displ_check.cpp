// Checks the PNGs `shbuf displ-be` wrote against the pictures the domU's DRM
// client drew (displ_pattern.h), pixel for pixel: every frame file of the
// given domains must decode (signature, chunk CRCs, IHDR, zlib stream) and
// equal the expected picture of its connector and frame as the pixel format
// the client drew that frame in shows it, and frames 0..N-1 must exist for
// every connector, N beyond the frame where the client changed format.
// Usage: shbuf_displ_check DIR FRAMES DOMID[,DOMID...] WxH [WxH...]
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "displ_pattern.h"

namespace {

struct Image {
  std::uint32_t width = 0, height = 0;
  std::vector<std::uint8_t> rgb;
};

std::uint32_t be32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}

// Decodes the PNGs the backend writes: 8-bit RGB, not interlaced, filter 0.
bool decode(const std::string& path, Image& img, std::string& why) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::uint8_t> f((std::istreambuf_iterator<char>(in)), {});
  static const std::uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (f.size() < 8 || std::memcmp(f.data(), sig, 8) != 0) return why = "no PNG signature", false;
  std::vector<std::uint8_t> idat;
  bool ihdr = false, iend = false;
  for (std::size_t at = 8; at < f.size() && !iend;) {
    if (f.size() - at < 12) return why = "truncated chunk", false;
    const std::uint32_t len = be32(&f[at]);
    if (len > f.size() - at - 12) return why = "chunk length beyond the file", false;
    const std::string type(reinterpret_cast<const char*>(&f[at + 4]), 4);
    const std::uint8_t* data = &f[at + 8];
    const uLong crc = crc32(crc32(0L, Z_NULL, 0), &f[at + 4], len + 4);
    if (crc != be32(&f[at + 8 + len])) return why = "bad CRC in " + type, false;
    if (type == "IHDR") {
      if (len != 13 || data[8] != 8 || data[9] != 2 || data[12] != 0) {
        return why = "IHDR is not 8-bit RGB without interlace", false;
      }
      img.width = be32(data);
      img.height = be32(data + 4);
      ihdr = true;
    } else if (type == "IDAT") {
      idat.insert(idat.end(), data, data + len);
    } else if (type == "IEND") {
      iend = true;
    }
    at += 12 + len;
  }
  if (!ihdr || !iend) return why = "IHDR or IEND missing", false;
  const std::size_t row = std::size_t{img.width} * 3 + 1;
  std::vector<std::uint8_t> raw(row * img.height);
  uLongf size = raw.size();
  if (uncompress(raw.data(), &size, idat.data(), idat.size()) != Z_OK || size != raw.size()) {
    return why = "the zlib stream does not inflate to the image size", false;
  }
  img.rgb.resize(std::size_t{img.width} * img.height * 3);
  for (std::uint32_t y = 0; y < img.height; ++y) {
    if (raw[y * row] != 0) return why = "row filter " + std::to_string(raw[y * row]), false;
    std::memcpy(&img.rgb[y * (row - 1)], &raw[y * row + 1], row - 1);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s DIR FRAMES DOMID[,DOMID...] WxH [WxH...]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const unsigned frames = static_cast<unsigned>(std::atoi(argv[2]));
  if (frames < DISPL_PATTERN_SWITCH + 2) {
    std::fprintf(stderr, "%s: FRAMES must be at least %u: two after the format change\n", argv[0],
                 DISPL_PATTERN_SWITCH + 2);
    return 2;
  }
  std::vector<unsigned> doms;
  for (char* s = std::strtok(argv[3], ","); s != nullptr; s = std::strtok(nullptr, ",")) {
    doms.push_back(static_cast<unsigned>(std::atoi(s)));
  }
  std::vector<std::pair<unsigned, unsigned>> res;
  for (int i = 4; i < argc; ++i) {
    unsigned w = 0, h = 0;
    if (std::sscanf(argv[i], "%ux%u", &w, &h) != 2) return 2;
    res.emplace_back(w, h);
  }
  int bad = 0, checked = 0;
  for (unsigned d : doms) {
    for (unsigned c = 0; c < res.size(); ++c) {
      unsigned n = 0;
      for (;; ++n) {
        char name[64];
        std::snprintf(name, sizeof name, "dom%u-dev0-c%u-%06u.png", d, c, n);
        const std::string path = dir + "/" + name;
        if (!std::filesystem::exists(path)) break;
        Image img;
        std::string why;
        if (!decode(path, img, why)) {
          std::printf("displ-check: %s: %s\n", name, why.c_str());
          ++bad;
          continue;
        }
        const auto [w, h] = res[c];
        if (img.width != w || img.height != h) {
          std::printf("displ-check: %s: %ux%u, expected %ux%u\n", name, img.width, img.height, w,
                      h);
          ++bad;
          continue;
        }
        unsigned wrong = 0, last_x = 0, last_y = 0;
        for (unsigned y = 0; y < h; ++y) {
          for (unsigned x = 0; x < w; ++x) {
            const std::uint32_t want = displ_pattern_expected(c, n, x, y, w, h);
            const std::uint8_t* p = &img.rgb[(std::size_t{y} * w + x) * 3];
            const std::uint32_t got = std::uint32_t{p[0]} << 16 | std::uint32_t{p[1]} << 8 | p[2];
            if (got == want) continue;
            // The first few, with what frame (if any) they belong to.
            if (wrong++ < 8) {
              int frame = -1;
              for (unsigned k = 0; k < 64 && frame < 0; ++k) {
                if (displ_pattern_expected(c, k, x, y, w, h) == got) frame = static_cast<int>(k);
              }
              std::printf("displ-check: %s: (%u,%u) is %06x, expected %06x (frame %d's)\n", name, x,
                          y, got, want, frame);
            }
            last_x = x;
            last_y = y;
          }
        }
        if (wrong != 0) {
          std::printf("displ-check: %s: %u pixels differ, the last at (%u,%u)\n", name, wrong,
                      last_x, last_y);
          ++bad;
        }
        ++checked;
      }
      if (n < frames) {
        std::printf("displ-check: domain %u connector %u: %u frames, expected at least %u\n", d,
                    c, n, frames);
        ++bad;
      } else {
        const char* before = displ_format_name(displ_pattern_format(c, 0));
        const char* after = displ_format_name(displ_pattern_format(c, DISPL_PATTERN_SWITCH));
        std::printf(
            "displ-check: domain %u connector %u (%ux%u): %u frames equal the pictures "
            "drawn, pixel for pixel (0..%u %s, %u..%u %s)\n",
            d, c, res[c].first, res[c].second, n, DISPL_PATTERN_SWITCH - 1, before,
            DISPL_PATTERN_SWITCH, n - 1, after);
      }
    }
  }
  std::printf("displ-check: %d frames checked, %d problems\n", checked, bad);
  return bad == 0 && checked > 0 ? 0 : 1;
}
