#include "peer_protocol.h"

#include <fmt/format.h>

#include <charconv>
#include <cstring>
#include <limits>
#include <vector>

#include "cli.h"

namespace shbuf::cli::peer {
namespace {

// Room for "ERR " and the newline in a line of kMaxLine bytes.
constexpr std::size_t kMaxMessage = kMaxLine - 8;

// Words separated by exactly one space, each of printable ASCII other than
// space; nullopt for anything else (empty words, tabs, control bytes, NUL).
std::optional<std::vector<std::string_view>> split_strict(std::string_view line) {
  std::vector<std::string_view> words;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= line.size(); ++i) {
    if (i == line.size() || line[i] == ' ') {
      if (i == start) return std::nullopt;
      words.push_back(line.substr(start, i - start));
      start = i + 1;
      continue;
    }
    const auto u = static_cast<unsigned char>(line[i]);
    if (u < 0x21 || u > 0x7e) return std::nullopt;
  }
  return words;
}

// What to quote of a line in an error: printable, and short.
std::string quote(std::string_view line) {
  constexpr std::size_t kShown = 64;
  std::string shown = printable(line.substr(0, kShown));
  if (line.size() > kShown) shown += "...";
  return "'" + shown + "'";
}

Error malformed(std::string_view what, std::string_view line) {
  return make_error(EPROTO, fmt::format("malformed {}: {}", what, quote(line)));
}

std::uint64_t pattern_word(std::uint64_t seed, std::size_t index) {
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ULL ^ (index + 1) * 0xbf58476d1ce4e5b9ULL;
  return x ^ (x >> 29);
}

}  // namespace

std::optional<AllocMode> parse_mode(std::string_view text) {
  if (text == to_string(AllocMode::kFrontend)) return AllocMode::kFrontend;
  if (text == to_string(AllocMode::kBackend)) return AllocMode::kBackend;
  return std::nullopt;
}

std::string format_hello(DomId backend) {
  return fmt::format("{} {}", kHello, backend);
}

std::string format_attach(const AttachRequest& r) {
  return fmt::format("{} {} {} {} {}", kAttach, to_string(r.mode), r.pages, r.directory_gref,
                     r.frontend);
}

std::string format_check(std::uint64_t seed) {
  return fmt::format("{} {}", kCheck, seed);
}

std::string format_detach() {
  return std::string(kDetach);
}

std::string format_bye() {
  return std::string(kBye);
}

std::string format_ok(std::string_view detail) {
  return detail.empty() ? std::string(kOk) : fmt::format("{} {}", kOk, detail);
}

std::string format_attached(double ms) {
  return format_ok(fmt::format("{:.3f}", ms));
}

std::string format_err(std::string_view message) {
  std::string text = printable(message);
  if (text.size() > kMaxMessage) text.resize(kMaxMessage);
  if (text.empty()) text = "unspecified";
  return fmt::format("{} {}", kErr, text);
}

std::string format_busy(std::size_t clients) {
  return format_err(fmt::format("{}: serving {} clients already, try again later", kBusy, clients));
}

std::optional<DomId> parse_hello(std::string_view line) {
  const auto words = split_strict(line);
  if (!words || words->size() != 2 || (*words)[0] != kHello) return std::nullopt;
  auto domid = parse_decimal((*words)[1], 0, kDomIdSelf - 1);
  if (!domid.ok()) return std::nullopt;
  return static_cast<DomId>(*domid);
}

Result<Request> parse_request(std::string_view line) {
  const auto words = split_strict(line);
  if (!words) return malformed("request", line);
  const std::vector<std::string_view>& w = *words;
  Request r;
  if (w[0] == kAttach) {
    if (w.size() != 5) return malformed("ATTACH (want ATTACH <mode> <pages> <gref> <domid>)", line);
    const auto mode = parse_mode(w[1]);
    auto pages = parse_decimal(w[2], 1, std::numeric_limits<std::size_t>::max());
    auto gref = parse_decimal(w[3], 0, std::numeric_limits<Gref>::max());
    auto domid = parse_decimal(w[4], 0, kDomIdSelf - 1);
    if (!mode) return malformed("ATTACH mode (want frontend-alloc or backend-alloc)", line);
    if (!pages.ok()) return make_error(EPROTO, "ATTACH pages: " + pages.error().message);
    if (!gref.ok()) return make_error(EPROTO, "ATTACH gref: " + gref.error().message);
    if (!domid.ok()) return make_error(EPROTO, "ATTACH domid: " + domid.error().message);
    r.kind = Request::Kind::kAttach;
    r.attach.mode = *mode;
    r.attach.pages = static_cast<std::size_t>(*pages);
    r.attach.directory_gref = static_cast<Gref>(*gref);
    r.attach.frontend = static_cast<DomId>(*domid);
    return r;
  }
  if (w[0] == kCheck) {
    if (w.size() != 2) return malformed("CHECK (want CHECK <seed>)", line);
    auto seed = parse_decimal(w[1], 0, std::numeric_limits<std::uint64_t>::max());
    if (!seed.ok()) return make_error(EPROTO, "CHECK seed: " + seed.error().message);
    r.kind = Request::Kind::kCheck;
    r.seed = *seed;
    return r;
  }
  if (w[0] == kDetach && w.size() == 1) {
    r.kind = Request::Kind::kDetach;
    return r;
  }
  if (w[0] == kBye && w.size() == 1) {
    r.kind = Request::Kind::kBye;
    return r;
  }
  return make_error(EPROTO, "unknown request " + quote(line));
}

std::optional<Reply> parse_reply(std::string_view line) {
  for (const auto& [word, ok] : {std::pair{kOk, true}, std::pair{kErr, false}}) {
    if (line == word) return Reply{ok, {}};
    if (line.size() > word.size() && line.substr(0, word.size()) == word &&
        line[word.size()] == ' ') {
      return Reply{ok, std::string(line.substr(word.size() + 1))};
    }
  }
  return std::nullopt;
}

std::optional<double> parse_attached(std::string_view text) {
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !(value >= 0)) return std::nullopt;
  return value;
}

void write_pattern(std::span<std::byte> memory, std::uint64_t seed) {
  const std::size_t count = memory.size() / sizeof(std::uint64_t);
  auto* words = reinterpret_cast<std::uint64_t*>(memory.data());
  for (std::size_t i = 0; i < count; ++i) words[i] = pattern_word(seed, i);
}

Status check_pattern(std::span<const std::byte> memory, std::uint64_t seed) {
  const std::size_t count = memory.size() / sizeof(std::uint64_t);
  const auto* words = reinterpret_cast<const std::uint64_t*>(memory.data());
  for (std::size_t i = 0; i < count; ++i) {
    if (words[i] != pattern_word(seed, i)) {
      return make_error(EIO, fmt::format("pattern {} differs at byte {} (page {})", seed, i * 8,
                                         i * 8 / kPageSize));
    }
  }
  return {};
}

}  // namespace shbuf::cli::peer
