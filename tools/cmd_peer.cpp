// shbuf frontend | backend | demo: the two ends of a shared buffer as two
// processes exchanging the first directory gref over a socket, and the demo
// that runs them against each other.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "child.h"
#include "cli.h"
#include "core/unique_fd.h"
#include "peer_link.h"
#include "peer_protocol.h"
#include "peer_server.h"
#include "shbuf/core/backend_buffer.h"
#include "shbuf/core/frontend_buffer.h"
#include "shbuf/grant/sim.h"

namespace shbuf::cli {
namespace {

constexpr int kConnectTimeoutMs = 10000;
constexpr int kReplyTimeoutMs = 120000;

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// ---- backend ------------------------------------------------------------

void run_backend(const ProviderArgs& provider_args, const ServerOptions& options) {
  std::unique_ptr<Provider> provider = provider_args.open();
  run_server(*provider, options);
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

// The sizes the frontend and the demo run by default: around one directory
// page's worth of grefs, and many pages.
const std::vector<std::size_t> kDefaultPages = {1, kGrefsPerDirPage, kGrefsPerDirPage + 1,
                                                kGrefsPerDirPage + 2, 16384};

struct FrontendArgs {
  ProviderArgs provider;
  std::string socket;
  std::string vchan;  // DOMID:PATH of a backend in another domain
  std::string mode = "both";
  std::vector<std::size_t> pages = kDefaultPages;
  double connect_timeout = kConnectTimeoutMs / 1000.0;  // seconds
  double hold = 0;  // seconds each buffer stays attached before the check
  bool machine = false;
};

Result<std::string> ask(PeerLink& link, const std::string& request) {
  SHBUF_TRY(link.send(request, kReplyTimeoutMs));
  auto reply = link.receive(kReplyTimeoutMs);
  if (!reply.ok()) return std::move(reply).error();
  const auto parsed = peer::parse_reply(*reply);
  if (!parsed)
    return make_error(EPROTO, "backend sent a malformed reply '" + printable(*reply) + "'");
  if (parsed->ok) return parsed->text;
  return make_error(EPROTO, "backend: " + parsed->text);
}

// One buffer's whole life, both ends. Any failure is recorded, and the
// buffer is freed on the way out by its destructor.
CaseResult run_case(Provider& provider, PeerLink& link, DomId backend, AllocMode mode,
                    std::size_t pages, std::uint64_t seed, int hold_ms) {
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

  peer::AttachRequest request;
  request.mode = mode;
  request.pages = pages;
  request.directory_gref = buffer.directory_gref();
  request.frontend = provider.self();
  auto attached = ask(link, peer::format_attach(request));
  if (!attached.ok()) return fail_with(attached.error());
  r.map_ms = peer::parse_attached(*attached).value_or(0);
  if (mode == AllocMode::kBackend) {
    start = Clock::now();
    Status mapped = buffer.map();
    if (!mapped.ok()) return fail_with(mapped.error());
    r.map_ms += ms_since(start);
  }
  if (hold_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(hold_ms));
  peer::write_pattern(buffer.memory(), seed);
  auto checked = ask(link, peer::format_check(seed));
  if (!checked.ok()) return fail_with(checked.error());
  Status back = peer::check_pattern(buffer.memory(), seed + 1);
  if (!back.ok()) return fail_with(back.error());
  if (mode == AllocMode::kBackend) {
    Status s = buffer.unmap();
    if (!s.ok()) return fail_with(s.error());
  }
  auto detached = ask(link, peer::format_detach());
  if (!detached.ok()) return fail_with(detached.error());
  Status freed = buffer.free();
  if (!freed.ok()) return fail_with(freed.error());
  r.verified = true;
  return r;
}

std::vector<AllocMode> modes_of(const std::string& mode) {
  if (mode == "both") return {AllocMode::kFrontend, AllocMode::kBackend};
  return {*peer::parse_mode(mode)};
}

std::vector<CaseResult> run_frontend_cases(const FrontendArgs& args) {
  std::unique_ptr<Provider> provider = args.provider.open();
  const int connect_ms = seconds_to_ms(args.connect_timeout);
  PeerLink link =
      args.vchan.empty()
          ? take(PeerLink::connect_to(args.socket, connect_ms))
          : take(PeerLink::connect_vchan(take(parse_vchan_address(args.vchan)), connect_ms));
  auto hello = link.receive(kConnectTimeoutMs);
  if (!hello.ok()) fail(hello.error());
  const auto backend = peer::parse_hello(*hello);
  if (!backend) {
    const auto refused = peer::parse_reply(*hello);
    if (refused && !refused->ok)
      fail(kExitFailure, "backend refused the connection: " + refused->text);
    fail(kExitFailure, fmt::format("backend did not greet with {} <domid>", peer::kHello));
  }
  // Across domains the grants go to the domain at the other end of the
  // channel, whatever the greeting says.
  if (const auto peer = link.peer_domain(); peer && *peer != *backend) {
    fail(kExitFailure, fmt::format("backend greeted as domain {}, but the vchan leads to domain {}",
                                   *backend, *peer));
  }
  std::vector<CaseResult> results;
  std::uint64_t seed = 1;
  for (AllocMode mode : modes_of(args.mode)) {
    for (std::size_t pages : args.pages) {
      results.push_back(
          run_case(*provider, link, *backend, mode, pages, seed, seconds_to_ms(args.hold)));
      seed += 2;
    }
  }
  (void)ask(link, peer::format_bye());
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
      tag != "RESULT" || !peer::parse_mode(mode)) {
    return std::nullopt;
  }
  r.mode = *peer::parse_mode(mode);
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
  std::vector<std::size_t> pages = kDefaultPages;
  bool json = false;
};

// A pipe's two ends, or the failure to make one.
struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Pipe make_pipe(int flags) {
  int fds[2];
  if (::pipe2(fds, flags) != 0) fail(kExitFailure, errno_error("pipe").message);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// SIGINT, SIGTERM and SIGHUP while the demo runs are noted, and written to a
// pipe to wake it, so that it stops its children and removes its directory
// instead of dying and leaving them.
volatile sig_atomic_t g_demo_signal = 0;
int g_demo_signal_fd = -1;

class DemoSignals {
 public:
  DemoSignals() : pipe_(make_pipe(O_CLOEXEC | O_NONBLOCK)) {
    g_demo_signal = 0;
    g_demo_signal_fd = pipe_.write.get();
    struct sigaction sa {};
    sa.sa_handler = [](int signo) {
      const int saved = errno;
      g_demo_signal = signo;
      const char byte = 1;
      (void)!::write(g_demo_signal_fd, &byte, 1);
      errno = saved;
    };
    sigemptyset(&sa.sa_mask);
    for (std::size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &sa, &old_[i]);
  }
  DemoSignals(const DemoSignals&) = delete;
  DemoSignals& operator=(const DemoSignals&) = delete;
  ~DemoSignals() {
    for (std::size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &old_[i], nullptr);
    g_demo_signal_fd = -1;
  }
  int fd() const { return pipe_.read.get(); }
  // Fails, the guards then stopping the children and removing the directory,
  // if a signal came.
  static void check() {
    if (g_demo_signal != 0) {
      fail(kExitFailure, fmt::format("demo interrupted by signal {} ({})",
                                     static_cast<int>(g_demo_signal), ::strsignal(g_demo_signal)));
    }
  }

 private:
  static constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
  Pipe pipe_;
  struct sigaction old_[std::size(kSignals)]{};
};

// A child's error output: the message of its first error line, returned to
// be folded into the demo's own; anything else it wrote is passed on.
std::string child_error(const std::string& path) {
  constexpr std::string_view kPrefix = "shbuf: error: ";
  std::ifstream in(path);
  std::string first;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(kPrefix, 0) == 0) {
      if (first.empty()) first = line.substr(kPrefix.size());
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  }
  return first;
}

std::string pages_list(const std::vector<std::size_t>& pages) {
  std::string s;
  for (std::size_t p : pages) s += (s.empty() ? "" : ",") + std::to_string(p);
  return s;
}

// Where the demo's pieces live, all in its work directory unless --sim names
// the simulator instance.
struct DemoPaths {
  std::string sim;  // empty unless the provider is sim
  std::string socket;
  std::string backend_err;
  std::string frontend_err;
};

DemoPaths demo_paths(const DemoArgs& args, WorkDir& work) {
  DemoPaths paths;
  if (args.provider == "sim") {
    paths.sim = args.sim_path;
    if (paths.sim.empty()) {
      paths.sim = work.path() + "/sim";
      work.own_sim(paths.sim);
    }
  }
  paths.socket = work.path() + "/control.sock";
  paths.backend_err = work.path() + "/backend.err";
  paths.frontend_err = work.path() + "/frontend.err";
  return paths;
}

// The command lines of the two children: the same provider for both, a
// backend serving one frontend, and a frontend reporting in RESULT lines.
std::vector<std::string> with_provider(std::vector<std::string> argv, const DemoArgs& args,
                                       const DemoPaths& paths) {
  argv.insert(argv.end(), {"--provider", args.provider});
  if (!paths.sim.empty()) argv.insert(argv.end(), {"--sim", paths.sim});
  return argv;
}

std::vector<std::string> backend_argv(const DemoArgs& args, const DemoPaths& paths) {
  return with_provider({"shbuf", "backend", "--once", "--accept-timeout", "30", "--socket",
                        paths.socket, "--domid", "0"},
                       args, paths);
}

std::vector<std::string> frontend_argv(const DemoArgs& args, const DemoPaths& paths) {
  return with_provider(
      {"shbuf", "frontend", "--machine", "--socket", paths.socket, "--mode", args.mode, "--pages",
       pages_list(args.pages), "--domid", paths.sim.empty() ? "0" : "1"},
      args, paths);
}

// Everything from `fd` until end of file, failing at once on a signal.
std::string read_until_eof(int fd, const DemoSignals& signals) {
  std::string output;
  char chunk[4096];
  while (true) {
    pollfd p[2] = {{fd, POLLIN, 0}, {signals.fd(), POLLIN, 0}};
    const int ready = ::poll(p, 2, -1);
    DemoSignals::check();
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) break;
    const ssize_t got = ::read(fd, chunk, sizeof chunk);
    if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) break;
    if (got > 0) output.append(chunk, static_cast<std::size_t>(got));
  }
  return output;
}

std::vector<CaseResult> parse_results(const std::string& output) {
  std::vector<CaseResult> results;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    if (auto r = parse_machine_line(line)) results.push_back(*r);
  }
  return results;
}

// What the demo found: the frontend's results, how each child ended and what
// it said, and whether grants or mappings were left behind.
struct DemoOutcome {
  std::vector<CaseResult> results;
  std::size_t expected = 0;
  int frontend_exit = -1;
  int backend_exit = -1;
  std::string frontend_error;  // each child's first error message, if any
  std::string backend_error;
  bool clean = true;
  std::string leftovers = "not checked (only the sim provider can be inspected)";

  std::size_t verified() const {
    return static_cast<std::size_t>(std::count_if(results.begin(), results.end(),
                                                  [](const CaseResult& r) { return r.verified; }));
  }
  bool ok() const {
    return results.size() == expected && frontend_exit == 0 && backend_exit == 0 && clean &&
           verified() == results.size();
  }
};

// Runs the backend and the frontend to their end, collecting the frontend's
// results and both children's errors.
void run_children(const DemoArgs& args, const DemoPaths& paths, const DemoSignals& signals,
                  DemoOutcome& outcome) {
  Pipe out = make_pipe(O_CLOEXEC);
  Child backend;
  Child frontend;
  {
    const UniqueFd be_err = open_for_child(paths.backend_err);
    const UniqueFd fe_err = open_for_child(paths.frontend_err);
    backend.spawn(backend_argv(args, paths), -1, be_err.get());
    frontend.spawn(frontend_argv(args, paths), out.write.get(), fe_err.get());
  }
  out.write.reset();
  const std::string output = read_until_eof(out.read.get(), signals);
  out.read.reset();
  outcome.frontend_exit = frontend.wait(60000, DemoSignals::check);
  outcome.backend_exit = backend.wait(10000, DemoSignals::check);
  outcome.backend_error = child_error(paths.backend_err);
  outcome.frontend_error = child_error(paths.frontend_err);
  outcome.results = parse_results(output);
}

// On the sim provider: whether any grant or mapping outlived the buffers.
void check_leftovers(const DemoPaths& paths, DemoOutcome& outcome) {
  if (paths.sim.empty()) return;
  auto status = SimProvider::status(paths.sim);
  if (!status.ok()) {
    outcome.clean = false;
    outcome.leftovers = "cannot read the simulator: " + status.error().describe();
    return;
  }
  outcome.clean = status->grants.empty() && status->mappings.empty();
  outcome.leftovers = outcome.clean ? "none"
                                    : fmt::format("{} grants and {} mappings left behind",
                                                  status->grants.size(), status->mappings.size());
}

// Milliseconds as the table shows them: to the microsecond.
double ms_value(double ms) {
  return std::round(ms * 1000) / 1000;
}

void print_demo_json(const DemoArgs& args, const DemoOutcome& outcome) {
  Json j;
  j["provider"] = args.provider;
  j["cases"] = Json::array();
  for (const CaseResult& r : outcome.results) {
    j["cases"].push_back({{"mode", to_string(r.mode)},
                          {"pages", r.pages},
                          {"dir_pages", r.dir_pages},
                          {"share_ms", ms_value(r.share_ms)},
                          {"map_ms", ms_value(r.map_ms)},
                          {"verified", r.verified},
                          {"error", r.error}});
  }
  j["frontend_exit"] = outcome.frontend_exit;
  j["backend_exit"] = outcome.backend_exit;
  j["leftovers"] = outcome.leftovers;
  j["ok"] = outcome.ok();
  fmt::print("{}", json_text(j));
}

void print_demo_text(const DemoArgs& args, const DemoOutcome& outcome) {
  fmt::print(
      "shbuf demo: a frontend process and a backend process ({} provider) share "
      "buffers through a page directory\n\n",
      args.provider);
  print_table(outcome.results);
  fmt::print("\ngrants or mappings left afterwards: {}\n", outcome.leftovers);
  fmt::print("{}\n", outcome.ok() ? "all buffers verified both ways" : "FAILED");
}

// One line for a failure: the first cause found, the backend's first (the
// frontend's failures usually follow from it), then the summary.
std::string failure_message(const DemoOutcome& outcome) {
  const auto& results = outcome.results;
  const auto failed =
      std::find_if(results.begin(), results.end(), [](const CaseResult& r) { return !r.verified; });
  std::string cause;
  if (!outcome.backend_error.empty()) {
    cause = "backend: " + outcome.backend_error;
  } else if (failed != results.end()) {
    cause = fmt::format("{} {} pages: {}", to_string(failed->mode), failed->pages, failed->error);
  } else if (!outcome.frontend_error.empty()) {
    cause = "frontend: " + outcome.frontend_error;
  } else if (!outcome.clean) {
    cause = "leftovers: " + outcome.leftovers;
  } else {
    cause = fmt::format("{} of {} results reported", results.size(), outcome.expected);
  }
  return fmt::format(
      "demo failed: {}; {} of {} cases verified, frontend exit {}, backend exit {}, "
      "leftovers: {}",
      cause, outcome.verified(), outcome.expected, outcome.frontend_exit, outcome.backend_exit,
      outcome.leftovers);
}

void run_demo(const DemoArgs& args) {
  DemoSignals signals;
  WorkDir work("shbuf-demo");
  const DemoPaths paths = demo_paths(args, work);
  DemoOutcome outcome;
  outcome.expected = modes_of(args.mode).size() * args.pages.size();
  run_children(args, paths, signals, outcome);
  check_leftovers(paths, outcome);
  work.remove();
  if (args.json) {
    print_demo_json(args, outcome);
  } else {
    print_demo_text(args, outcome);
  }
  std::fflush(stdout);
  if (!outcome.ok()) fail(kExitFailure, failure_message(outcome));
}

CLI::Validator vchan_address() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        auto address = parse_vchan_address(text);
        return address.ok() ? std::string() : address.error().message;
      },
      "DOMID:PATH");
}

// --socket PATH or --vchan DOMID:PATH, one of them (require_link checks
// that one was given).
void add_link_options(CLI::App* app, std::string& socket, const std::string& socket_help,
                      std::string& vchan, const std::string& vchan_help) {
  CLI::Option* s = app->add_option("--socket", socket, socket_help);
  app->add_option("--vchan", vchan, vchan_help)->excludes(s)->check(vchan_address());
}

void require_link(const std::string& socket, const std::string& vchan) {
  if (socket.empty() && vchan.empty()) throw CLI::RequiredError("--socket or --vchan");
}

CLI::Validator more_than_zero() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        auto value = parse_seconds(text, kMaxTimeoutSeconds);
        return value.ok() && *value > 0 ? std::string() : "'" + text + "' is not more than 0";
      },
      "");
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

void add_backend_command(CLI::App& app) {
  static ProviderArgs backend_provider;
  static ServerOptions backend;
  CLI::App* be = app.add_subcommand(
      "backend",
      "Serve frontends on a Unix socket, or on a vchan from another domain: attach their "
      "buffers, check and answer");
  be->footer(fmt::format(
      "Bounds: at most --max-clients frontends are served at once, each holding at most one "
      "buffer of --max-pages pages, so at most max-clients x max-pages pages of 4 KiB are mapped "
      "or allocated in all; a request line is at most {} bytes (a longer one ends that "
      "client), and a client that completes no request for --idle-timeout seconds is hung up "
      "on. Connections beyond --max-clients are answered 'ERR busy' and closed at once. Only a "
      "stale socket (one nobody listens on) is replaced at --socket; on the sim provider a "
      "frontend can only name the domain its own process is attached as.",
      peer::kMaxLine));
  backend_provider.add_to(be, 0);
  add_link_options(be, backend.socket, "Unix socket to listen on", backend.vchan,
                   "DOMID:PATH: offer a libxenvchan channel at xenstore PATH to a frontend in "
                   "domain DOMID instead (one frontend at a time)");
  be->add_flag("-v,--verbose", backend.verbose,
               "A line on stderr for each buffer attached and detached");
  be->add_flag("--once", backend.once,
               "Serve one frontend, then exit (others meanwhile are answered 'ERR busy')");
  be->add_option("--accept-timeout", backend.accept_timeout,
                 "Exit 1 when no frontend has been connected for this many seconds (0: never)")
      ->check(seconds_in(kMaxTimeoutSeconds))
      ->capture_default_str();
  be->add_option("--idle-timeout", backend.idle_timeout,
                 "Hang up on a frontend that completes no request for this many seconds")
      ->check(seconds_in(kMaxTimeoutSeconds))
      ->check(more_than_zero())
      ->capture_default_str();
  be->add_option("--max-clients", backend.max_clients, "Frontends served at once")
      ->check(decimal_in(1, kMaxClientsLimit))
      ->capture_default_str();
  be->add_option("--max-pages", backend.max_pages, "Refuse buffers larger than this")
      ->check(decimal_in(1, kDefaultMaxPages))
      ->capture_default_str();
  be->callback([] {
    require_link(backend.socket, backend.vchan);
    run_backend(backend_provider, backend);
  });
}

void add_frontend_command(CLI::App& app) {
  static FrontendArgs frontend;
  CLI::App* fe = app.add_subcommand(
      "frontend", "Create buffers, hand them to a backend, and check data both ways");
  frontend.provider.add_to(fe, 1);
  add_link_options(fe, frontend.socket, "The backend's Unix socket", frontend.vchan,
                   "DOMID:PATH: the libxenvchan channel a backend in domain DOMID offers at "
                   "xenstore PATH, instead of a socket");
  add_mode_option(fe, frontend.mode);
  add_pages_option(fe, frontend.pages);
  fe->add_flag("--machine", frontend.machine, "One RESULT line per buffer, for scripts");
  fe->add_option("--connect-timeout", frontend.connect_timeout,
                 "Seconds to keep trying while the backend is not listening yet")
      ->check(seconds_in(kMaxTimeoutSeconds))
      ->capture_default_str();
  fe->add_option("--hold", frontend.hold,
                 "Seconds each buffer stays shared and attached before the data is checked (to "
                 "look at it meanwhile; keep it below the backend's --idle-timeout)")
      ->check(seconds_in(kMaxTimeoutSeconds))
      ->capture_default_str();
  fe->callback([] {
    require_link(frontend.socket, frontend.vchan);
    run_frontend(frontend);
  });
}

void add_demo_command(CLI::App& app) {
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

}  // namespace

void add_peer_commands(CLI::App& app) {
  add_backend_command(app);
  add_frontend_command(app);
  add_demo_command(app);
}

}  // namespace shbuf::cli
