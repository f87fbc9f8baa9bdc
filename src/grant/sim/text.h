// Small text helpers of the simulator: whole-string unsigned numbers and
// splitting on a separator, for fault specs and instance file names.
#pragma once

#include <charconv>
#include <string_view>
#include <vector>

namespace shbuf::sim {

// `s` is a decimal number that fits T, and nothing else.
template <typename T>
bool parse_uint(std::string_view s, T& out) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out, 10);
  return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

// The pieces of `s` between separators, empty ones included.
inline std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t pos = s.find(sep, start);
    out.push_back(s.substr(start, pos == std::string_view::npos ? pos : pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return out;
}

}  // namespace shbuf::sim
