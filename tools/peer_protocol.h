// The line protocol between `shbuf frontend` and `shbuf backend`, both ends:
// every word of it is defined here, once.
//
//   backend  -> HELLO <backend domid>            greeting (or ERR busy ...)
//   frontend -> ATTACH <mode> <pages> <gref> <frontend domid>
//   backend  -> OK <attach ms> | ERR <why>
//   frontend -> CHECK <seed>                     the backend checks pattern
//   backend  -> OK | ERR <why>                   <seed>, then writes <seed>+1
//   frontend -> DETACH                           -> OK | ERR <why>
//   frontend -> BYE                              -> OK, and the backend hangs up
//
// A line is at most kMaxLine bytes before its newline. Requests are parsed
// strictly: single spaces between words, no leading or trailing space, plain
// decimal numbers in range, nothing else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "shbuf/core/page_directory.h"
#include "shbuf/core/provider.h"
#include "shbuf/core/result.h"

namespace shbuf::cli::peer {

inline constexpr std::string_view kHello = "HELLO";
inline constexpr std::string_view kAttach = "ATTACH";
inline constexpr std::string_view kCheck = "CHECK";
inline constexpr std::string_view kDetach = "DETACH";
inline constexpr std::string_view kBye = "BYE";
inline constexpr std::string_view kOk = "OK";
inline constexpr std::string_view kErr = "ERR";
// The first word of the ERR a backend at its client limit answers with.
inline constexpr std::string_view kBusy = "busy";

// The longest line either end accepts, newline excluded.
inline constexpr std::size_t kMaxLine = 4096;

struct AttachRequest {
  AllocMode mode = AllocMode::kFrontend;
  std::size_t pages = 0;
  Gref directory_gref = 0;
  DomId frontend = 0;
};

struct Request {
  enum class Kind { kAttach, kCheck, kDetach, kBye };
  Kind kind = Kind::kBye;
  AttachRequest attach;    // kAttach
  std::uint64_t seed = 0;  // kCheck
};

// What a reply says: ok, and the text after OK or ERR.
struct Reply {
  bool ok = false;
  std::string text;
};

std::optional<AllocMode> parse_mode(std::string_view text);

std::string format_hello(DomId backend);
std::string format_attach(const AttachRequest& request);
std::string format_check(std::uint64_t seed);
std::string format_detach();
std::string format_bye();
// "OK" or "OK <detail>".
std::string format_ok(std::string_view detail = {});
// "OK <ms>": how long an attach took.
std::string format_attached(double ms);
// "ERR <message>", the message made printable and cut to fit one line.
std::string format_err(std::string_view message);
std::string format_busy(std::size_t clients);

// The backend domain a HELLO names; nullopt for anything else.
std::optional<DomId> parse_hello(std::string_view line);
// A request line; EPROTO naming what is wrong (printable) otherwise.
Result<Request> parse_request(std::string_view line);
// An OK or ERR line; nullopt for anything else.
std::optional<Reply> parse_reply(std::string_view line);
// The milliseconds of an "OK <ms>" reply's text; nullopt if not a number.
std::optional<double> parse_attached(std::string_view text);

// The data CHECK verifies: a pattern no other seed or offset produces, so a
// stale or misplaced page cannot pass for the right one.
void write_pattern(std::span<std::byte> memory, std::uint64_t seed);
Status check_pattern(std::span<const std::byte> memory, std::uint64_t seed);

}  // namespace shbuf::cli::peer
