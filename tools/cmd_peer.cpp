// shbuf frontend | backend | demo: the two ends of a shared buffer as two
// processes exchanging the first directory gref over a socket, and the demo
// that runs them against each other.
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli.h"
#include "peer_link.h"
#include "shbuf/backend_buffer.h"
#include "shbuf/frontend_buffer.h"
#include "shbuf/sim.h"

namespace shbuf::cli {
namespace {

constexpr int kConnectTimeoutMs = 10000;
constexpr int kReplyTimeoutMs = 120000;

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// A pattern no other seed or offset produces, so a stale or misplaced page
// cannot pass for the right one.
std::uint64_t pattern_word(std::uint64_t seed, std::size_t index) {
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ULL ^ (index + 1) * 0xbf58476d1ce4e5b9ULL;
  return x ^ (x >> 29);
}

void write_pattern(std::span<std::byte> memory, std::uint64_t seed) {
  auto* words = reinterpret_cast<std::uint64_t*>(memory.data());
  const std::size_t count = memory.size() / sizeof(std::uint64_t);
  for (std::size_t i = 0; i < count; ++i) words[i] = pattern_word(seed, i);
}

Status check_pattern(std::span<const std::byte> memory, std::uint64_t seed) {
  const auto* words = reinterpret_cast<const std::uint64_t*>(memory.data());
  const std::size_t count = memory.size() / sizeof(std::uint64_t);
  for (std::size_t i = 0; i < count; ++i) {
    if (words[i] != pattern_word(seed, i)) {
      return make_error(EIO, fmt::format("pattern {} differs at byte {} (page {})", seed, i * 8,
                                         i * 8 / kPageSize));
    }
  }
  return {};
}

std::optional<AllocMode> parse_mode(const std::string& s) {
  if (s == "frontend-alloc") return AllocMode::kFrontend;
  if (s == "backend-alloc") return AllocMode::kBackend;
  return std::nullopt;
}

std::vector<std::string> split_words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

template <typename T>
std::optional<T> parse_number(const std::string& s) {
  T value{};
  std::from_chars_result res;
  if constexpr (std::is_floating_point_v<T>) {
    res = std::from_chars(s.data(), s.data() + s.size(), value);
  } else {
    res = std::from_chars(s.data(), s.data() + s.size(), value, 10);
  }
  const auto [end, ec] = res;
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

// ---- backend ------------------------------------------------------------

struct BackendArgs {
  ProviderArgs provider;
  std::string socket;
  bool once = false;
  double accept_timeout = 0;  // seconds; 0: wait for ever
  std::size_t max_pages = kDefaultMaxPages;
};

// Serves one frontend: attach, check and rewrite the pattern, detach, until
// the frontend says BYE or goes away. Whatever is attached is released on
// every way out.
void serve(Provider& provider, PeerLink& link, std::size_t max_pages) {
  check(link.send(fmt::format("HELLO {}", provider.self())));
  BackendBuffer buffer;
  while (true) {
    auto line = link.receive(24 * 3600 * 1000);
    if (!line.ok()) return;  // the frontend went away: the buffer is released below
    const std::vector<std::string> w = split_words(*line);
    std::string reply = "OK";
    if (w.size() == 5 && w[0] == "ATTACH") {
      const auto mode = parse_mode(w[1]);
      const auto pages = parse_number<std::size_t>(w[2]);
      const auto gref = parse_number<Gref>(w[3]);
      const auto domid = parse_number<DomId>(w[4]);
      if (!mode || !pages || !gref || !domid) {
        reply = "ERR malformed ATTACH";
      } else {
        (void)buffer.detach();
        BackendBufferConfig config;
        config.frontend = *domid;
        config.directory_gref = *gref;
        config.pages = *pages;
        config.mode = *mode;
        config.max_pages = max_pages;
        const auto start = Clock::now();
        auto attached = BackendBuffer::attach(provider, config);
        const double took = ms_since(start);
        if (attached.ok()) {
          buffer = std::move(attached).value();
          reply = fmt::format("OK {:.3f}", took);
        } else {
          reply = "ERR " + attached.error().describe();
        }
      }
    } else if (w.size() == 2 && w[0] == "CHECK") {
      const auto seed = parse_number<std::uint64_t>(w[1]);
      if (!seed || !buffer.valid()) {
        reply = "ERR CHECK without an attached buffer or seed";
      } else {
        Status s = check_pattern(buffer.memory(), *seed);
        if (s.ok()) {
          write_pattern(buffer.memory(), *seed + 1);
        } else {
          reply = "ERR backend read: " + s.error().describe();
        }
      }
    } else if (w.size() == 1 && w[0] == "DETACH") {
      Status s = buffer.detach();
      if (!s.ok()) reply = "ERR " + s.error().describe();
    } else if (w.size() == 1 && w[0] == "BYE") {
      (void)link.send("OK");
      return;
    } else {
      reply = "ERR unknown request '" + line->substr(0, 64) + "'";
    }
    if (!link.send(reply).ok()) return;
  }
}

void run_backend(const BackendArgs& args) {
  std::unique_ptr<Provider> provider = args.provider.open();
  const int listen_fd = take(PeerLink::listen_on(args.socket));
  do {
    const int timeout_ms = args.accept_timeout > 0 ? seconds_to_ms(args.accept_timeout) : -1;
    auto link = PeerLink::accept_one(listen_fd, timeout_ms);
    if (!link.ok()) {
      ::close(listen_fd);
      fail(link.error());
    }
    serve(*provider, *link, args.max_pages);
  } while (!args.once);
  ::close(listen_fd);
  ::unlink(args.socket.c_str());
}

// ---- frontend -----------------------------------------------------------

struct CaseResult {
  AllocMode mode = AllocMode::kFrontend;
  std::size_t pages = 0;
  std::size_t dir_pages = 0;
  double share_ms = 0;
  double map_ms = 0;
  bool verified = false;
  std::string error;
};

struct FrontendArgs {
  ProviderArgs provider;
  std::string socket;
  std::string mode = "both";
  std::vector<std::size_t> pages = {1, 1023, 1024, 1025, 16384};
  double connect_timeout = kConnectTimeoutMs / 1000.0;  // seconds
  bool machine = false;
};

Result<std::string> ask(PeerLink& link, const std::string& request) {
  SHBUF_TRY(link.send(request));
  auto reply = link.receive(kReplyTimeoutMs);
  if (!reply.ok()) return std::move(reply).error();
  if (reply->rfind("OK", 0) == 0) return reply->size() > 3 ? reply->substr(3) : std::string();
  return make_error(EPROTO, "backend: " + (reply->size() > 4 ? reply->substr(4) : *reply));
}

// One buffer's whole life, both ends. Any failure is recorded, and the
// buffer is freed on the way out by its destructor.
CaseResult run_case(Provider& provider, PeerLink& link, DomId backend, AllocMode mode,
                    std::size_t pages, std::uint64_t seed) {
  CaseResult r;
  r.mode = mode;
  r.pages = pages;
  r.dir_pages = dir_pages(pages);
  auto fail_with = [&r](const Error& e) {
    r.error = e.describe();
    return r;
  };
  FrontendBufferConfig config;
  config.backend = backend;
  config.pages = pages;
  config.mode = mode;
  auto start = Clock::now();
  auto created = FrontendBuffer::create(provider, config);
  if (!created.ok()) return fail_with(created.error());
  FrontendBuffer buffer = std::move(created).value();
  r.share_ms = ms_since(start);

  auto attached = ask(link, fmt::format("ATTACH {} {} {} {}", to_string(mode), pages,
                                        buffer.directory_gref(), provider.self()));
  if (!attached.ok()) return fail_with(attached.error());
  r.map_ms = parse_number<double>(*attached).value_or(0);
  if (mode == AllocMode::kBackend) {
    start = Clock::now();
    Status mapped = buffer.map();
    if (!mapped.ok()) return fail_with(mapped.error());
    r.map_ms += ms_since(start);
  }
  write_pattern(buffer.memory(), seed);
  auto checked = ask(link, fmt::format("CHECK {}", seed));
  if (!checked.ok()) return fail_with(checked.error());
  Status back = check_pattern(buffer.memory(), seed + 1);
  if (!back.ok()) return fail_with(back.error());
  if (mode == AllocMode::kBackend) {
    Status s = buffer.unmap();
    if (!s.ok()) return fail_with(s.error());
  }
  auto detached = ask(link, "DETACH");
  if (!detached.ok()) return fail_with(detached.error());
  Status freed = buffer.free();
  if (!freed.ok()) return fail_with(freed.error());
  r.verified = true;
  return r;
}

std::vector<AllocMode> modes_of(const std::string& mode) {
  if (mode == "both") return {AllocMode::kFrontend, AllocMode::kBackend};
  return {*parse_mode(mode)};
}

std::vector<CaseResult> run_frontend_cases(const FrontendArgs& args) {
  std::unique_ptr<Provider> provider = args.provider.open();
  PeerLink link = take(PeerLink::connect_to(args.socket, seconds_to_ms(args.connect_timeout)));
  auto hello = link.receive(kConnectTimeoutMs);
  if (!hello.ok()) fail(hello.error());
  const std::vector<std::string> w = split_words(*hello);
  const auto backend = w.size() == 2 && w[0] == "HELLO" ? parse_number<DomId>(w[1]) : std::nullopt;
  if (!backend) fail(kExitFailure, "backend did not greet with HELLO <domid>");
  std::vector<CaseResult> results;
  std::uint64_t seed = 1;
  for (AllocMode mode : modes_of(args.mode)) {
    for (std::size_t pages : args.pages) {
      results.push_back(run_case(*provider, link, *backend, mode, pages, seed));
      seed += 2;
    }
  }
  (void)ask(link, "BYE");
  return results;
}

std::string machine_line(const CaseResult& r) {
  return fmt::format("RESULT {} {} {} {:.3f} {:.3f} {} {}", to_string(r.mode), r.pages, r.dir_pages,
                     r.share_ms, r.map_ms, r.verified ? 1 : 0, r.error.empty() ? "-" : r.error);
}

std::optional<CaseResult> parse_machine_line(const std::string& line) {
  std::istringstream in(line);
  std::string tag, mode;
  CaseResult r;
  int verified = 0;
  if (!(in >> tag >> mode >> r.pages >> r.dir_pages >> r.share_ms >> r.map_ms >> verified) ||
      tag != "RESULT" || !parse_mode(mode)) {
    return std::nullopt;
  }
  r.mode = *parse_mode(mode);
  r.verified = verified == 1;
  std::getline(in, r.error);
  if (!r.error.empty() && r.error[0] == ' ') r.error.erase(0, 1);
  if (r.error == "-") r.error.clear();
  return r;
}

void print_table(const std::vector<CaseResult>& results) {
  fmt::print("{:<15} {:>8} {:>9} {:>12} {:>12}  {}\n", "mode", "pages", "dir pages", "share (ms)",
             "map (ms)", "verified");
  for (const CaseResult& r : results) {
    fmt::print("{:<15} {:>8} {:>9} {:>12.3f} {:>12.3f}  {}\n", to_string(r.mode), r.pages,
               r.dir_pages, r.share_ms, r.map_ms, r.verified ? "yes" : "NO: " + r.error);
  }
}

void run_frontend(const FrontendArgs& args) {
  const std::vector<CaseResult> results = run_frontend_cases(args);
  bool all = true;
  for (const CaseResult& r : results) {
    all = all && r.verified;
    if (args.machine) fmt::print("{}\n", machine_line(r));
  }
  if (!args.machine) print_table(results);
  std::fflush(stdout);
  if (!all) fail(kExitFailure, "not every buffer verified");
}

// ---- demo ---------------------------------------------------------------

struct DemoArgs {
  std::string provider = "sim";
  std::string sim_path;
  std::string mode = "both";
  std::vector<std::size_t> pages = {1, 1023, 1024, 1025, 16384};
  bool json = false;
};

pid_t spawn(const std::vector<std::string>& argv, int stdout_fd) {
  const pid_t pid = ::fork();
  if (pid < 0) fail(kExitFailure, fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    if (stdout_fd >= 0) ::dup2(stdout_fd, STDOUT_FILENO);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv("/proc/self/exe", args.data());
    std::fprintf(stderr, "shbuf: error: cannot run /proc/self/exe: %s\n", std::strerror(errno));
    ::_exit(127);
  }
  return pid;
}

// Waits for a child, giving up (and killing it) after timeout_ms.
int wait_child(pid_t pid, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    int status = 0;
    const pid_t got = ::waitpid(pid, &status, WNOHANG);
    if (got == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (Clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    ::usleep(10000);
  }
}

std::string pages_list(const std::vector<std::size_t>& pages) {
  std::string s;
  for (std::size_t p : pages) s += (s.empty() ? "" : ",") + std::to_string(p);
  return s;
}

void run_demo(const DemoArgs& args) {
  const bool sim = args.provider == "sim";
  std::string sim_path = args.sim_path;
  const char* base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
  std::string work = fmt::format("{}/shbuf-demo-XXXXXX", base);
  if (::mkdtemp(work.data()) == nullptr) {
    fail(kExitFailure,
         fmt::format("cannot create a directory under {}: {}", base, std::strerror(errno)));
  }
  const bool own_sim = sim && sim_path.empty();
  if (own_sim) sim_path = work + "/sim";
  const std::string socket = work + "/control.sock";
  auto cleanup = [&] {
    if (own_sim) (void)SimProvider::reset(sim_path);
    std::error_code ec;
    std::filesystem::remove_all(work, ec);
  };

  std::vector<std::string> common = {"--provider", args.provider};
  if (sim) common.insert(common.end(), {"--sim", sim_path});
  std::vector<std::string> be = {"shbuf", "backend", "--once", "--accept-timeout", "30", "--socket",
                                 socket,  "--domid", "0"};
  be.insert(be.end(), common.begin(), common.end());
  std::vector<std::string> fe = {"shbuf",    "frontend",     "--machine",
                                 "--socket", socket,         "--mode",
                                 args.mode,  "--pages",      pages_list(args.pages),
                                 "--domid",  sim ? "1" : "0"};
  fe.insert(fe.end(), common.begin(), common.end());

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    cleanup();
    fail(kExitFailure, fmt::format("pipe: {}", std::strerror(errno)));
  }
  const pid_t be_pid = spawn(be, -1);
  const pid_t fe_pid = spawn(fe, pipe_fds[1]);
  ::close(pipe_fds[1]);
  std::string output;
  char chunk[4096];
  for (ssize_t got; (got = ::read(pipe_fds[0], chunk, sizeof chunk)) != 0;) {
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) break;
    output.append(chunk, static_cast<std::size_t>(got));
  }
  ::close(pipe_fds[0]);
  const int fe_exit = wait_child(fe_pid, 60000);
  const int be_exit = wait_child(be_pid, 10000);

  std::vector<CaseResult> results;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    if (auto r = parse_machine_line(line)) results.push_back(*r);
  }
  bool clean = true;
  std::string leftovers = "not checked (only the sim provider can be inspected)";
  if (sim) {
    auto status = SimProvider::status(sim_path);
    if (!status.ok()) {
      clean = false;
      leftovers = "cannot read the simulator: " + status.error().describe();
    } else {
      clean = status->grants.empty() && status->mappings.empty();
      leftovers = clean ? "none"
                        : fmt::format("{} grants and {} mappings left behind",
                                      status->grants.size(), status->mappings.size());
    }
  }
  cleanup();

  const std::size_t expected = modes_of(args.mode).size() * args.pages.size();
  bool all = results.size() == expected && fe_exit == 0 && be_exit == 0 && clean;
  for (const CaseResult& r : results) all = all && r.verified;
  if (args.json) {
    std::string out = fmt::format("{{\"provider\":{},\"cases\":[", json_string(args.provider));
    for (std::size_t i = 0; i < results.size(); ++i) {
      const CaseResult& r = results[i];
      out += fmt::format(
          "{}{{\"mode\":\"{}\",\"pages\":{},\"dir_pages\":{},\"share_ms\":{:.3f},"
          "\"map_ms\":{:.3f},\"verified\":{},\"error\":{}}}",
          i ? "," : "", to_string(r.mode), r.pages, r.dir_pages, r.share_ms, r.map_ms,
          r.verified ? "true" : "false", json_string(r.error));
    }
    out += fmt::format(
        "],\"frontend_exit\":{},\"backend_exit\":{},\"leftovers\":{},"
        "\"ok\":{}}}\n",
        fe_exit, be_exit, json_string(leftovers), all ? "true" : "false");
    fmt::print("{}", out);
  } else {
    fmt::print(
        "shbuf demo: a frontend process and a backend process ({} provider) share "
        "buffers through a page directory\n\n",
        args.provider);
    print_table(results);
    fmt::print("\ngrants or mappings left afterwards: {}\n", leftovers);
    fmt::print("{}\n", all ? "all buffers verified both ways" : "FAILED");
  }
  std::fflush(stdout);
  if (!all) {
    fail(kExitFailure,
         fmt::format("demo failed: {} of {} cases verified, frontend exit {}, backend exit {}, "
                     "leftovers: {}",
                     std::count_if(results.begin(), results.end(),
                                   [](const CaseResult& r) { return r.verified; }),
                     expected, fe_exit, be_exit, leftovers));
  }
}

void add_pages_option(CLI::App* app, std::vector<std::size_t>& pages) {
  app->add_option("--pages", pages, "Buffer sizes in pages, comma-separated")
      ->delimiter(',')
      ->check(decimal_in(1, kDefaultMaxPages))
      ->capture_default_str();
}

void add_mode_option(CLI::App* app, std::string& mode) {
  app->add_option("--mode", mode, "Allocation mode: frontend-alloc, backend-alloc or both")
      ->check(CLI::IsMember({"frontend-alloc", "backend-alloc", "both"}))
      ->capture_default_str();
}

}  // namespace

void add_peer_commands(CLI::App& app) {
  static BackendArgs backend;
  CLI::App* be = app.add_subcommand(
      "backend", "Serve frontends on a Unix socket: attach their buffers, check and answer");
  backend.provider.add_to(be, 0);
  be->add_option("--socket", backend.socket, "Unix socket to listen on")->required();
  be->add_flag("--once", backend.once, "Serve one frontend, then exit");
  be->add_option("--accept-timeout", backend.accept_timeout,
                 "Give up when no frontend connects within this many seconds (0: never)")
      ->check(seconds_in(kMaxTimeoutSeconds))
      ->capture_default_str();
  be->add_option("--max-pages", backend.max_pages, "Refuse buffers larger than this")
      ->check(decimal_in(1, kDefaultMaxPages))
      ->capture_default_str();
  be->callback([] { run_backend(backend); });

  static FrontendArgs frontend;
  CLI::App* fe = app.add_subcommand(
      "frontend", "Create buffers, hand them to a backend, and check data both ways");
  frontend.provider.add_to(fe, 1);
  fe->add_option("--socket", frontend.socket, "The backend's Unix socket")->required();
  add_mode_option(fe, frontend.mode);
  add_pages_option(fe, frontend.pages);
  fe->add_flag("--machine", frontend.machine, "One RESULT line per buffer, for scripts");
  fe->add_option("--connect-timeout", frontend.connect_timeout,
                 "Seconds to keep trying while the backend is not listening yet")
      ->check(seconds_in(kMaxTimeoutSeconds))
      ->capture_default_str();
  fe->callback([] { run_frontend(frontend); });

  static DemoArgs demo;
  CLI::App* d = app.add_subcommand(
      "demo", "Run a backend and a frontend process against each other and check everything");
  d->add_option("--provider", demo.provider, "Grant provider: sim or xen")
      ->check(CLI::IsMember({"sim", "xen"}))
      ->capture_default_str();
  d->add_option("--sim", demo.sim_path, "Simulator instance (default: a fresh private one)");
  add_mode_option(d, demo.mode);
  add_pages_option(d, demo.pages);
  d->add_flag("--json", demo.json, "Print the results as JSON");
  d->callback([] { run_demo(demo); });
}

}  // namespace shbuf::cli
