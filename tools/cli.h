// Shared pieces of the shbuf command-line tool.
#pragma once

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "pv/platform.h"
#include "shbuf/core/provider.h"
#include "shbuf/core/result.h"

namespace shbuf::cli {

// Strict numbers for the command line, one parser for every option: plain
// decimal digits only (no sign, no base prefix, no spaces, no exponent), in
// [min, max]. The error names the text and the range.
Result<std::uint64_t> parse_decimal(std::string_view text, std::uint64_t min, std::uint64_t max);
// Seconds: decimal digits with an optional fraction ("2", "0.25"), in [0, max].
Result<double> parse_seconds(std::string_view text, double max);

// The same checks as CLI11 validators: a bad number is a usage error (exit 2).
CLI::Validator decimal_in(std::uint64_t min, std::uint64_t max);
CLI::Validator seconds_in(double max);

// The longest timeout any option takes: one day.
inline constexpr double kMaxTimeoutSeconds = 86400;

// Seconds as whole milliseconds for poll(), rounded up so that a short
// timeout never becomes 0.
int seconds_to_ms(double seconds);

// The steady clock in whole milliseconds, for deadlines and intervals.
long long now_ms();

// Text safe for one terminal line: bytes that are not printable ASCII
// (control characters, NUL, DEL, anything above 0x7e) become \xHH, and a
// backslash becomes "\\".
std::string printable(std::string_view text);

// JSON output: objects keep the order their keys were added in.
using Json = nlohmann::ordered_json;
// One compact line and a newline; text that is not UTF-8 (a path, say) is
// replaced, never a reason to fail.
inline std::string json_text(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

// Exit codes: 0 success, 1 bad data or a refused operation, 2 usage errors.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Thrown inside a command to end the program with `code`; main() catches it.
struct Exit {
  int code;
};

// Prints "shbuf: error: <message>" on stderr and ends with `code`.
[[noreturn]] void fail(int code, const std::string& message);
[[noreturn]] void fail(const Error& error);

// Returns the value or fails with its error (exit 1).
template <typename T>
T take(Result<T> result) {
  if (!result.ok()) fail(result.error());
  return std::move(result).value();
}
inline void check(const Status& status) {
  if (!status.ok()) fail(status.error());
}

// --provider, --sim and --domid, shared by every command that talks to grants.
struct ProviderArgs {
  std::string provider = "sim";
  std::string sim_path;
  int domid = 0;
  CLI::Option* sim_option = nullptr;
  CLI::Option* domid_option = nullptr;

  // Adds `flag` (--provider, or --platform for the PV tools), --sim and
  // --domid.
  void add_to(CLI::App* app, int default_domid, const std::string& flag = "--provider",
              const std::string& what = "Grant provider");
  std::unique_ptr<Provider> open() const;
  // The same choice as a PV platform (grants, xenstore, event channels).
  pv::PlatformOptions platform() const;

 private:
  void refuse_sim_options_with_xen() const;
};

// Makes SIGINT and SIGTERM end a backend's loop cleanly, so that every grant
// is released: returns the flag they set. The handlers are installed without
// SA_RESTART, so that poll() returns at once.
const std::atomic<bool>& stop_on_signals();

// Each file registers its own subcommands.
void add_dir_commands(CLI::App& app);
void add_sim_commands(CLI::App& app);
void add_peer_commands(CLI::App& app);
void add_displ_commands(CLI::App& app);
void add_bench_commands(CLI::App& app);
// `shbuf bench displ`, under `bench`.
void add_bench_displ_command(CLI::App& bench);

}  // namespace shbuf::cli
