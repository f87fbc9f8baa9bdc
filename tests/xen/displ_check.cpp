// Checks the frame digests `shbuf displ-be --digest-only` wrote against the
// pictures the domU's DRM client drew (displ_pattern.h): every line of every
// connector's .digests file (and its -last.digest, if any) must name a frame
// of the connector's size whose 64-bit FNV-1a over its RGB bytes, row by row,
// equals that of the expected picture of that frame as the pixel format the
// client drew it in shows it; frame numbers must rise; and frames 0..N-1
// must all be there for every connector, N beyond the frame where the client
// changed format. The backend may drop frames when its writer falls behind
// (the latest frame wins); the frames it kept must be right, and the first N
// must be kept.
// Usage: shbuf_displ_check DIR FRAMES DOMID[,DOMID...] WxH [WxH...]
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "displ_pattern.h"

namespace {

// The digest displ-be writes: FNV-1a 64 over R, G, B of each pixel.
std::uint64_t expected_digest(unsigned c, unsigned k, unsigned w, unsigned h) {
  std::uint64_t d = 0xcbf29ce484222325ull;
  for (unsigned y = 0; y < h; ++y) {
    for (unsigned x = 0; x < w; ++x) {
      const std::uint32_t rgb = displ_pattern_expected(c, k, x, y, w, h);
      for (const int shift : {16, 8, 0}) {
        d ^= (rgb >> shift) & 0xff;
        d *= 0x100000001b3ull;
      }
    }
  }
  return d;
}

struct Line {
  unsigned long long frame = 0;
  unsigned w = 0, h = 0;
  std::uint64_t digest = 0;
};

// "<frame> <w>x<h> <16 hex digits>", nothing more.
bool parse(const std::string& text, Line& l) {
  char hex[17] = {};
  int used = 0;
  if (std::sscanf(text.c_str(), "%llu %ux%u %16[0-9a-f]%n", &l.frame, &l.w, &l.h, hex, &used) !=
          4 ||
      std::strlen(hex) != 16 || static_cast<std::size_t>(used) != text.size()) {
    return false;
  }
  l.digest = std::strtoull(hex, nullptr, 16);
  return true;
}

// Checks one line; returns false (with what is wrong printed) if it is not
// the picture drawn.
bool check_line(const std::string& file, const std::string& text, unsigned c, unsigned w,
                unsigned h, Line& l) {
  if (!parse(text, l)) {
    std::printf("displ-check: %s: not a digest line: '%s'\n", file.c_str(), text.c_str());
    return false;
  }
  if (l.w != w || l.h != h) {
    std::printf("displ-check: %s: frame %llu is %ux%u, expected %ux%u\n", file.c_str(), l.frame,
                l.w, l.h, w, h);
    return false;
  }
  if (l.frame > 1000000) {
    std::printf("displ-check: %s: frame %llu beyond any the client shows\n", file.c_str(),
                l.frame);
    return false;
  }
  const std::uint64_t want = expected_digest(c, static_cast<unsigned>(l.frame), w, h);
  if (l.digest != want) {
    std::printf("displ-check: %s: frame %llu has digest %016" PRIx64 ", the picture drawn %016" PRIx64
                "\n",
                file.c_str(), l.frame, l.digest, want);
    return false;
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
      const auto [w, h] = res[c];
      char name[64];
      std::snprintf(name, sizeof name, "dom%u-dev0-c%u.digests", d, c);
      std::ifstream in(dir + "/" + name);
      if (!in) {
        std::printf("displ-check: %s is missing\n", name);
        ++bad;
        continue;
      }
      unsigned kept = 0, first_missing = 0;
      bool rising = true;
      long long last = -1;
      for (std::string text; std::getline(in, text);) {
        Line l;
        if (!check_line(name, text, c, w, h, l)) {
          ++bad;
          continue;
        }
        if (static_cast<long long>(l.frame) <= last) rising = false;
        if (l.frame == first_missing) ++first_missing;
        last = static_cast<long long>(l.frame);
        ++kept;
        ++checked;
      }
      if (!rising) {
        std::printf("displ-check: %s: frame numbers do not rise\n", name);
        ++bad;
      }
      std::snprintf(name, sizeof name, "dom%u-dev0-c%u-last.digest", d, c);
      if (std::ifstream last_in(dir + "/" + name); last_in) {
        std::string text;
        Line l;
        std::getline(last_in, text);
        if (check_line(name, text, c, w, h, l)) {
          ++checked;
        } else {
          ++bad;
        }
      }
      if (first_missing < frames) {
        std::printf("displ-check: domain %u connector %u: frame %u is missing, expected 0..%u\n",
                    d, c, first_missing, frames - 1);
        ++bad;
      } else {
        const char* before = displ_format_name(displ_pattern_format(c, 0));
        const char* after = displ_format_name(displ_pattern_format(c, DISPL_PATTERN_SWITCH));
        std::printf(
            "displ-check: domain %u connector %u (%ux%u): %u frames kept (the last %lld), each "
            "the picture drawn (0..%u %s, from %u %s)\n",
            d, c, w, h, kept, last, DISPL_PATTERN_SWITCH - 1, before, DISPL_PATTERN_SWITCH,
            after);
      }
    }
  }
  std::printf("displ-check: %d frames checked, %d problems\n", checked, bad);
  return bad == 0 && checked > 0 ? 0 : 1;
}
