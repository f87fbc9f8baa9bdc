// The pieces every command shares: strict numbers, printable error lines.
#include <fmt/format.h>
#include <signal.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

#include "cli.h"

namespace shbuf::cli {
namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_stop_signal(int) {
  g_stop.store(true);
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool all_digits(std::string_view text) {
  for (const char c : text) {
    if (!is_digit(c)) return false;
  }
  return !text.empty();
}

Error not_a_number(std::string_view text, const std::string& expected) {
  return make_error(EINVAL, fmt::format("'{}' is not {}", text, expected));
}

}  // namespace

long long now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

const std::atomic<bool>& stop_on_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM}) sigaction(sig, &sa, nullptr);
  return g_stop;
}

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += "\\\\";
    } else if (u < 0x20 || u > 0x7e) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  return out;
}

Result<std::uint64_t> parse_decimal(std::string_view text, std::uint64_t min, std::uint64_t max) {
  const std::string range = fmt::format("a decimal number from {} to {}", min, max);
  if (!all_digits(text)) return not_a_number(text, range);
  std::uint64_t value = 0;
  for (const char c : text) {
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10)
      return make_error(ERANGE, fmt::format("{} is not {}", text, range));
    value = value * 10 + digit;
  }
  if (value < min || value > max) {
    return make_error(ERANGE, fmt::format("{} is not {}", text, range));
  }
  return value;
}

Result<double> parse_seconds(std::string_view text, double max) {
  const std::string range = fmt::format("a number of seconds from 0 to {}", max);
  const std::size_t dot = text.find('.');
  const std::string_view whole = text.substr(0, dot);
  const std::string_view fraction =
      dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
  if (!all_digits(whole) || (dot != std::string_view::npos && !all_digits(fraction))) {
    return not_a_number(text, range + " (digits with an optional fraction)");
  }
  // Bounded digits only reach here, so the conversion is exact enough and finite.
  const double value = std::strtod(std::string(text).c_str(), nullptr);
  if (!(value <= max)) return make_error(ERANGE, fmt::format("{} is not {}", text, range));
  return value;
}

CLI::Validator decimal_in(std::uint64_t min, std::uint64_t max) {
  return CLI::Validator(
      [min, max](std::string& text) -> std::string {
        auto value = parse_decimal(text, min, max);
        return value.ok() ? std::string() : value.error().message;
      },
      fmt::format("UINT:[{} - {}]", min, max));
}

CLI::Validator seconds_in(double max) {
  return CLI::Validator(
      [max](std::string& text) -> std::string {
        auto value = parse_seconds(text, max);
        return value.ok() ? std::string() : value.error().message;
      },
      fmt::format("SECONDS:[0 - {}]", max));
}

int seconds_to_ms(double seconds) {
  return static_cast<int>(std::ceil(std::min(seconds, kMaxTimeoutSeconds) * 1000));
}

void fail(int code, const std::string& message) {
  std::fprintf(stderr, "shbuf: error: %s\n", printable(message).c_str());
  throw Exit{code};
}

void fail(const Error& error) {
  fail(kExitFailure, error.describe());
}

}  // namespace shbuf::cli
