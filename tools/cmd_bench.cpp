// shbuf bench: ours against the limit and the naive per-page way, in one run,
// with the performance targets checked (exit 1 when one is missed); and
// shbuf bench snd, snd-be's pacing of a played stream on a private
// simulator instance.
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench_cases.h"
#include "bench_common.h"
#include "child.h"
#include "cli.h"
#include "pv/platform.h"
#include "pv/snd/frontend.h"
#include "pv/snd/playback.h"
#include "shbuf/grant/sim.h"

namespace shbuf::cli {
namespace {

using bench::Bench;
using bench::Impl;
using bench::Op;
using bench::Use;

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 != 0 ? v[m] : (v[m - 1] + v[m]) / 2;
}

struct Row {
  Op op = Op::kCreate;
  AllocMode mode = AllocMode::kFrontend;
  Use use = Use::kRepeated;
  std::size_t pages = 0;
  bool release = false;  // the free/detach/unmap half
  int reps = 0;
  int naive_reps = 0;
  std::size_t naive_chunks = 1;
  std::vector<double> ours, limit, naive, ratio;  // ratio: ours/limit per pair
  double ours_ns() const { return median(ours); }
  double limit_ns() const { return median(limit); }
  double naive_ns() const { return median(naive); }
  double ours_over_limit() const { return median(ratio); }
  double naive_over_ours() const { return naive_ns() / ours_ns(); }
  // Provider calls the naive way makes per buffer: one per page it shares or
  // maps, directory pages included (a backend-allocated create shares only
  // the D directory pages; a frontend's map maps only the N buffer pages).
  std::size_t naive_calls() const {
    const std::size_t d = dir_pages(pages);
    if (op == Op::kMap) return pages;
    return op == Op::kCreate && mode == AllocMode::kBackend ? d : pages + d;
  }
  double naive_ns_per_call() const { return naive_ns() / double(naive_calls()); }
  std::string name() const { return release ? bench::release_name(op) : bench::to_string(op); }
  // "backend attach, first-time, frontend-alloc, 1 page(s)"
  std::string what() const;
};

const char* use_name(Op op, Use use);

struct GrantCost {
  std::size_t pages = 0;
  std::vector<double> few, many;  // 100 live grants, 100000 live grants
};

struct Memory {
  Op op = Op::kCreate;
  AllocMode mode = AllocMode::kFrontend;
  std::vector<std::pair<std::size_t, std::size_t>> bytes;  // pages, bytes
  double per_page() const {
    double worst = 0;
    for (const auto& [n, b] : bytes) {
      if (n <= bytes.front().first) continue;
      worst = std::max(
          worst, (double(b) - double(bytes.front().second)) / double(n - bytes.front().first));
    }
    return worst;
  }
  std::size_t constant() const { return bytes.front().second; }
};

struct Target {
  std::string name;
  std::string measured;
  bool pass;
};

constexpr const char* kLegend[] = {
    "ours: FrontendBuffer::create/free/map/unmap, BackendBuffer::attach/detach over the sim "
    "provider (a tmpfs file under /dev/shm per domain, MAP_SHARED; share() and map() populate "
    "every page; attach reads the directory pages by grant copy)",
    "limit: create and backend-allocated attach: a memfd (shmem, like tmpfs) of the same number "
    "of new pages, mmap MAP_SHARED and one MADV_POPULATE_WRITE, plus writing the directory words "
    "the operation writes, released with munmap + close; frontend-allocated attach and the "
    "frontend's map: a second mapping of the very pages the peer shared (mremap of size 0) and "
    "one MADV_POPULATE_READ, released with munmap; attach: after reading the directory words "
    "from a memfd, one pread per directory page, as an attach must read a directory it has not "
    "mapped; map: plus copying the N gref words",
    "naive: the same work with one provider call per page (share of 1 page, map of 1 gref; "
    "each directory page mapped)",
    "create counts the directory pages too (N + D pages frontend-allocated, D backend-allocated); "
    "attach maps or allocates the N buffer pages; map (backend-allocated only) maps the N pages "
    "the backend granted",
    "repeated: attach or map again and again on one buffer, whose pages were mapped before; "
    "first-time: each run on a buffer made for it (untimed), as a real create-then-attach; "
    "ours and the limit alike",
    "ns/page: median time over interleaved runs (ours, limit, limit, ours, ...) divided by N; "
    "ours/limit: median of the per-pair ratios",
};

std::string mode_name(AllocMode m) {
  return to_string(m);
}

// A figure for JSON: NaN and infinities (a run that did not happen) are null.
struct Flags {
  bool json = false;
  bool quick = false;
  std::string json_file;
};

// The operations measured: every one of both ends in both modes (a frontend
// maps only in backend-allocated mode), attach and map also first-time.
struct Combo {
  Op op;
  AllocMode mode;
  Use use = Use::kRepeated;
};
constexpr Combo kCombos[] = {{Op::kCreate, AllocMode::kFrontend},
                             {Op::kCreate, AllocMode::kBackend},
                             {Op::kAttach, AllocMode::kFrontend},
                             {Op::kAttach, AllocMode::kFrontend, Use::kFirst},
                             {Op::kAttach, AllocMode::kBackend},
                             {Op::kAttach, AllocMode::kBackend, Use::kFirst},
                             {Op::kMap, AllocMode::kBackend},
                             {Op::kMap, AllocMode::kBackend, Use::kFirst}};

const char* use_name(Op op, Use use) {
  if (op == Op::kCreate) return "";
  return use == Use::kFirst ? "first-time" : "repeated";
}

std::string Row::what() const {
  const std::string u = use_name(op, use);
  return fmt::format("{}{}{} {} ({} pages)", name(), u.empty() ? "" : ", ", u, mode_name(mode),
                     pages);
}

// Everything one run of the command measures and concludes.
struct Results {
  bool quick = false;
  Machine machine;
  std::vector<std::size_t> sizes;
  std::vector<Row> rows;
  std::vector<GrantCost> grants;
  std::vector<Memory> memory;
  std::vector<Target> targets;
  std::string naive_note;
  bool all_pass = true;

  const Row* find(const Combo& c, std::size_t n, bool release) const {
    for (const Row& r : rows) {
      if (r.op == c.op && r.mode == c.mode && r.use == c.use && r.pages == n &&
          r.release == release) {
        return &r;
      }
    }
    return nullptr;
  }
};

// Ours, the limit and naive on every size and combination, interleaved so that
// the machine's drift hits all of them alike.
std::vector<Row> measure_rows(Bench& b, const std::vector<std::size_t>& sizes, bool q) {
  auto reps_for = [q](std::size_t n) {
    if (q) return n <= 1 ? 11 : 3;
    return n <= 1 ? 101 : n <= 1024 ? 31 : n <= 16384 ? 11 : 7;
  };
  auto naive_reps_for = [q](std::size_t n) {
    if (q) return 1;
    return n <= 1024 ? 11 : n <= 16384 ? 3 : 1;
  };
  std::vector<Row> rows;
  for (const std::size_t n : sizes) {
    for (const Combo& c : kCombos) {
      Row acq;
      acq.op = c.op;
      acq.mode = c.mode;
      acq.use = c.use;
      acq.pages = n;
      Row rel = acq;
      rel.release = true;
      acq.reps = rel.reps = reps_for(n);
      acq.naive_reps = rel.naive_reps = naive_reps_for(n);
      // Warm up: first use of memory costs more on some machines.
      take(b.run(c.op, c.mode, Impl::kOurs, n, c.use));
      take(b.run(c.op, c.mode, Impl::kLimit, n, c.use));
      for (int i = 0; i < acq.reps; ++i) {
        bench::Sample o, l;
        if (i % 2 == 0) {
          o = take(b.run(c.op, c.mode, Impl::kOurs, n, c.use));
          l = take(b.run(c.op, c.mode, Impl::kLimit, n, c.use));
        } else {
          l = take(b.run(c.op, c.mode, Impl::kLimit, n, c.use));
          o = take(b.run(c.op, c.mode, Impl::kOurs, n, c.use));
        }
        acq.ours.push_back(o.acquire_ns);
        acq.limit.push_back(l.acquire_ns);
        acq.ratio.push_back(o.acquire_ns / l.acquire_ns);
        rel.ours.push_back(o.release_ns);
        rel.limit.push_back(l.release_ns);
        rel.ratio.push_back(o.release_ns / l.release_ns);
        if (i < acq.naive_reps) {
          const bench::Sample s = take(b.run(c.op, c.mode, Impl::kNaive, n, c.use));
          acq.naive.push_back(s.acquire_ns);
          rel.naive.push_back(s.release_ns);
          acq.naive_chunks = rel.naive_chunks = s.chunks;
        }
      }
      rows.push_back(std::move(acq));
      rows.push_back(std::move(rel));
    }
    b.release_fixtures();
  }
  return rows;
}

// Grant allocation and release against the number of live grants.
std::vector<GrantCost> measure_grant_cost(Bench& b, bool q) {
  std::vector<GrantCost> grants(2);
  grants[0].pages = 1;
  grants[1].pages = 1024;
  const int rounds = q ? 1 : 3;
  for (int r = 0; r < rounds; ++r) {
    for (const int which : {r % 2, 1 - r % 2}) {
      check(b.set_live_grants(which == 0 ? 100 : 100000));
      for (GrantCost& g : grants) {
        const int k = q ? 5 : g.pages == 1 ? 101 : 21;
        take(b.grant_cycle(g.pages));
        for (int i = 0; i < k; ++i) {
          (which == 0 ? g.few : g.many).push_back(take(b.grant_cycle(g.pages)));
        }
      }
    }
  }
  check(b.set_live_grants(0));
  return grants;
}

// Heap held by a live buffer.
std::vector<Memory> measure_memory(Bench& b, const std::vector<std::size_t>& sizes) {
  std::vector<Memory> memory;
  for (const Combo& c : kCombos) {
    if (c.use != Use::kRepeated) continue;
    Memory m;
    m.op = c.op;
    m.mode = c.mode;
    for (const std::size_t n : sizes) m.bytes.emplace_back(n, take(b.heap_bytes(c.op, c.mode, n)));
    memory.push_back(std::move(m));
  }
  b.release_fixtures();
  return memory;
}

const char* memory_name(Op op) {
  switch (op) {
    case Op::kCreate:
      return "frontend buffer";
    case Op::kAttach:
      return "backend buffer";
    case Op::kMap:
      return "frontend buffer mapped";
  }
  return "?";
}

std::vector<Target> check_targets(const Results& res) {
  std::vector<Target> targets;
  const std::size_t big = res.sizes.back();
  // Create, attach and map; free, detach and unmap are reported. The
  // smallest buffer shows the fixed cost per call, the largest the cost per
  // page.
  for (const std::size_t n : {res.sizes.front(), big}) {
    for (const Combo& c : kCombos) {
      const Row* r = res.find(c, n, false);
      targets.push_back({r->what() + " within 1.25x the limit",
                         fmt::format("{:.3f}x", r->ours_over_limit()),
                         r->ours_over_limit() <= 1.25});
    }
  }
  // The time per page must not grow with N more than the kernel's own does:
  // ours against the limit's growth from the cheaper of 1024 and 16384
  // pages to the largest, both measured in the same run, so that a machine
  // whose cost per page drifts over the run does not count as ours.
  for (const Combo& c : kCombos) {
    const Row* lo = res.find(c, 1024, false);
    const Row* mid = res.find(c, 16384, false);
    const Row* hi = res.find(c, big, false);
    const Row* base = lo->ours_ns() / 1024 <= mid->ours_ns() / 16384 ? lo : mid;
    const double ours_growth =
        (hi->ours_ns() / double(big)) / (base->ours_ns() / double(base->pages));
    const double limit_growth =
        (hi->limit_ns() / double(big)) / (base->limit_ns() / double(base->pages));
    const double growth = ours_growth / limit_growth;
    targets.push_back({fmt::format("{} ns/page flat: its growth from the lower of 1024 and 16384 "
                                   "pages within 1.25x the limit's",
                                   hi->what()),
                       fmt::format("{:.1f} vs {:.1f} ns/page ({:.3f}x), the limit {:.3f}x: {:.3f}x",
                                   hi->ours_ns() / double(big),
                                   base->ours_ns() / double(base->pages), ours_growth,
                                   limit_growth, growth),
                       growth <= 1.25});
  }
  for (const GrantCost& g : res.grants) {
    const double ratio = median(g.many) / median(g.few);
    targets.push_back(
        {fmt::format("share+end of {} page(s) with 100000 live grants within "
                     "1.2x of with 100",
                     g.pages),
         fmt::format("{:.0f} vs {:.0f} ns ({:.3f}x)", median(g.many), median(g.few), ratio),
         ratio <= 1.2});
  }
  for (const Memory& m : res.memory) {
    targets.push_back(
        {fmt::format("{} {} heap at most 8 bytes/page + a constant",
                     memory_name(m.op), mode_name(m.mode)),
         fmt::format("{:.2f} bytes/page + {} bytes", m.per_page(), m.constant()),
         m.per_page() <= 8.0});
  }
  return targets;
}

std::string naive_note(const Results& res) {
  std::string note =
      "naive is information, not a target: its ratio to ours compares the provider's fixed cost "
      "per call with the kernel's cost per page, so it measures the machine as much as shbuf";
  for (const Row& r : res.rows) {
    if (r.naive_chunks > 1) {
      note += fmt::format(
          "; at {} pages it ran {} time(s) in {} chunks of {} pages (vm.max_map_count is {}: one "
          "process cannot hold {} single-page mappings at once), so it never held the whole "
          "buffer and is not the same result",
          r.pages, r.naive_reps, r.naive_chunks, bench::kNaiveChunk, res.machine.max_map_count,
          r.pages);
      break;
    }
  }
  return note;
}

Json to_json(const Results& res) {
  const bool q = res.quick;
  Json j;
  j["machine"] = {{"cpu", res.machine.cpu},
                  {"cores", res.machine.cores},
                  {"kernel", res.machine.kernel},
                  {"max_map_count", res.machine.max_map_count}};
  j["quick"] = q;
  j["legend"] = Json::array();
  for (const char* l : kLegend) j["legend"].push_back(l);
  j["naive_note"] = res.naive_note;
  j["rows"] = Json::array();
  for (const Row& r : res.rows) {
    const double n = double(r.pages);
    j["rows"].push_back({{"op", r.name()},
                         {"use", use_name(r.op, r.use)},
                         {"mode", mode_name(r.mode)},
                         {"pages", r.pages},
                         {"reps", r.reps},
                         {"naive_reps", r.naive_reps},
                         {"naive_chunks", r.naive_chunks},
                         {"ours_ns", figure(r.ours_ns())},
                         {"limit_ns", figure(r.limit_ns())},
                         {"naive_ns", figure(r.naive_ns())},
                         {"ours_ns_per_page", figure(r.ours_ns() / n)},
                         {"limit_ns_per_page", figure(r.limit_ns() / n)},
                         {"naive_ns_per_page", figure(r.naive_ns() / n)},
                         {"ours_over_limit", figure(r.ours_over_limit())},
                         {"naive_over_ours", figure(r.naive_over_ours())},
                         {"naive_calls", r.naive_calls()},
                         {"naive_ns_per_call", figure(r.naive_ns_per_call())}});
  }
  j["grant_cost"] = Json::array();
  for (const GrantCost& g : res.grants) {
    j["grant_cost"].push_back({{"pages", g.pages},
                               {"live_100_ns", figure(median(g.few))},
                               {"live_100000_ns", figure(median(g.many))}});
  }
  j["memory"] = Json::array();
  for (const Memory& m : res.memory) {
    Json bytes = Json::array();
    for (const auto& [pages, b] : m.bytes) bytes.push_back({{"pages", pages}, {"bytes", b}});
    j["memory"].push_back({{"buffer", memory_name(m.op)},
                           {"mode", mode_name(m.mode)},
                           {"bytes_per_page", figure(m.per_page())},
                           {"constant", m.constant()},
                           {"bytes", std::move(bytes)}});
  }
  j["targets"] = Json::array();
  for (const Target& t : res.targets) {
    j["targets"].push_back(
        {{"name", t.name}, {"measured", t.measured}, {"pass", q ? Json(nullptr) : Json(t.pass)}});
  }
  j["pass"] = q ? Json(nullptr) : Json(res.all_pass);
  return j;
}

void print_tables(const Results& res) {
  const bool q = res.quick;
  fmt::print("shbuf bench on {}, {} cores, {}\n", res.machine.cpu, res.machine.cores,
             res.machine.kernel);
  for (const char* l : kLegend) fmt::print("  {}\n", l);
  if (!res.naive_note.empty()) fmt::print("  {}\n", res.naive_note);
  fmt::print(
      "\n{:<16} {:<10} {:<15} {:>7} {:>5} {:>12} {:>12} {:>12} {:>11} {:>11} {:>12} {:>10}\n",
      "operation", "use", "mode", "pages", "runs", "ours ns/pg", "limit ns/pg", "naive ns/pg",
             "ours/limit", "naive/ours", "naive ns/call", "ours ms");
  for (const Row& r : res.rows) {
    const double n = double(r.pages);
    fmt::print(
        "{:<16} {:<10} {:<15} {:>7} {:>5} {:>12.1f} {:>12.1f} {:>12.1f} {:>11.3f} {:>11.1f} "
        "{:>12.0f} {:>10.3f}\n",
        r.name(), use_name(r.op, r.use), mode_name(r.mode), r.pages, r.reps, r.ours_ns() / n, r.limit_ns() / n,
        r.naive_ns() / n, r.ours_over_limit(), r.naive_over_ours(), r.naive_ns_per_call(),
        r.ours_ns() / 1e6);
  }
  fmt::print("\ngrant share+end (frontend domain), median ns:\n");
  for (const GrantCost& g : res.grants) {
    fmt::print("  {:>5} page(s): {:>10.0f} with 100 live grants, {:>10.0f} with 100000\n", g.pages,
               median(g.few), median(g.many));
  }
  fmt::print("\nlibrary heap held by a live buffer (bytes):\n");
  for (const Memory& m : res.memory) {
    std::string line;
    for (const auto& [n, bytes] : m.bytes) line += fmt::format("  {}p: {}", n, bytes);
    fmt::print("  {:<22} {:<15}{}  => {:.2f} B/page + {} B\n",
               memory_name(m.op), mode_name(m.mode), line, m.per_page(),
               m.constant());
  }
  fmt::print("\ntargets{}:\n", q ? " (not enforced with --quick)" : "");
  for (const Target& t : res.targets) {
    fmt::print("  {}  {}: {}\n", q ? "----" : t.pass ? "PASS" : "FAIL", t.name, t.measured);
  }
}

void run_bench(const Flags& flags) {
  Results res;
  res.quick = flags.quick;
  auto b = take(Bench::open());
  res.machine = machine();
  res.sizes = {1, 16, 1024, 16384};
  if (!res.quick) res.sizes.push_back(262144);
  res.rows = measure_rows(*b, res.sizes, res.quick);
  res.grants = measure_grant_cost(*b, res.quick);
  res.memory = measure_memory(*b, res.sizes);
  b.reset();
  res.targets = check_targets(res);
  for (const Target& t : res.targets) res.all_pass = res.all_pass && t.pass;
  res.naive_note = naive_note(res);

  report(json_text(to_json(res)), flags.json, flags.json_file);
  if (!flags.json) print_tables(res);
  std::fflush(stdout);
  if (!res.quick && !res.all_pass)
    fail(kExitFailure, "performance targets missed (see FAIL above)");
}

// ---- shbuf bench snd ----

using Clock = std::chrono::steady_clock;

// CPU seconds (user + system) a process has used, from /proc/<pid>/stat.
double cpu_seconds(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat;
  std::getline(in, stat);
  const std::size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return NAN;
  std::istringstream fields(stat.substr(paren + 2));
  std::string skip;
  for (int i = 3; i < 14; ++i) fields >> skip;  // state .. cmajflt
  unsigned long long utime = 0, stime = 0;
  if (!(fields >> utime >> stime)) return NAN;
  return double(utime + stime) / double(sysconf(_SC_CLK_TCK));
}

struct SndFlags {
  double seconds = 10;
  bool json = false;
  std::string json_file;
};

// Frontend domain of the benched device; snd-be is domain 0.
constexpr DomId kSndFrontendDom = 1;
constexpr double kPacingTolerance = 0.02;  // of the seconds played
const snd::PlaybackFormat kSndFormat{48000, snd::kFormatS16LE, 2, 16384, 4096};

struct SndResults {
  Machine machine;
  double seconds = 0;     // asked for
  double played_s = 0;    // whole periods of it
  double wall_s = 0;      // OPEN to CLOSE
  double elapsed_s = 0;   // START sent to the last position event
  double position_s = 0;  // the last event's position, in time
  double error_ms = 0;    // position_s - elapsed_s
  double error_pct = 0;   // of the seconds played
  std::uint64_t events = 0;
  double events_per_s = 0;
  double expected_events_per_s = 0;  // snd-be's: four per period
  double be_cpu_s = 0;               // snd-be's CPU over the playback (one stream)
  int be_exit = 0;
  std::vector<Target> targets;
  bool all_pass = true;
};

constexpr const char* kSndLegend[] = {
    "snd-be on a private simulator instance (a child process), our sndif frontend in this "
    "process as domain 1: one playback stream, 48 kHz stereo S16_LE, buffer 16384 bytes, "
    "period 4096 bytes, written a period at a time as the CUR_POS events let room",
    "wall: OPEN to CLOSE; elapsed: START sent to the last position event's arrival; pacing "
    "error: the last event's position as time minus elapsed",
    "snd-be CPU: user + system time from /proc/<pid>/stat, before OPEN to after CLOSE "
    "(clock ticks)",
};

SndResults measure_snd(double seconds) {
  SndResults res;
  res.machine = machine();
  res.seconds = seconds;
  // The simulator instance and snd-be's output and log, reset and removed
  // on every way out.
  WorkDir work("shbuf-bench-snd");
  const std::string sim = work.path() + "/sim";
  const std::string out_dir = work.path() + "/out";
  work.own_sim(sim);
  std::filesystem::create_directory(out_dir);
  // The instance exists before snd-be opens it.
  SimOptions so;
  so.path = sim;
  so.domid = 0;
  auto instance = take(SimProvider::open(so));
  Child be;
  {
    const UniqueFd null = open_for_child("/dev/null");
    const UniqueFd be_log = open_for_child(work.path() + "/snd-be.log");
    be.spawn({"shbuf", "snd-be", "--platform", "sim", "--sim", sim, "--out", out_dir, "-v", "1"},
             null.get(), be_log.get());
  }
  run_self({"shbuf", "sim", "device", "add", "vsnd", "--sim", sim, "--frontend",
            std::to_string(kSndFrontendDom)});
  pv::Platform platform = sim_platform(sim, kSndFrontendDom);
  auto fe = take(snd::SndFrontend::connect(platform, {}));
  std::size_t stream = fe->streams().size();
  for (std::size_t i = 0; i < fe->streams().size() && stream == fe->streams().size(); ++i) {
    if (!fe->streams()[i].capture) stream = i;
  }
  if (stream == fe->streams().size()) fail(kExitFailure, "the card has no playback stream");
  const std::uint32_t frame = 2 * kSndFormat.channels;
  const double byte_rate = double(kSndFormat.rate) * frame;
  // N seconds, rounded up to whole periods.
  const std::uint64_t period = kSndFormat.period_bytes;
  const auto bytes = (std::uint64_t(std::llround(seconds * kSndFormat.rate)) * frame + period - 1) /
                     period * period;

  const double cpu_before = cpu_seconds(be.pid());
  const auto t0 = Clock::now();
  const snd::Playback p = take(snd::play_paced(
      *fe, stream, kSndFormat, bytes,
      [](std::span<std::byte> out, std::uint64_t) { std::memset(out.data(), 0, out.size()); }));
  res.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  res.be_cpu_s = cpu_seconds(be.pid()) - cpu_before;
  check(fe->close());
  fe.reset();
  run_self({"shbuf", "sim", "device", "remove", "vsnd", "--sim", sim, "--frontend",
            std::to_string(kSndFrontendDom)});
  ::kill(be.pid(), SIGTERM);
  res.be_exit = be.wait(10000);

  res.played_s = double(p.bytes) / byte_rate;
  res.elapsed_s = std::chrono::duration<double>(p.elapsed).count();
  res.position_s = double(p.last_position) / byte_rate;
  res.error_ms = (res.position_s - res.elapsed_s) * 1e3;
  res.error_pct = 100 * (res.position_s - res.elapsed_s) / res.played_s;
  res.events = p.events;
  res.events_per_s = double(p.events) / res.elapsed_s;
  res.expected_events_per_s = 4 * byte_rate / kSndFormat.period_bytes;

  const double tolerance_ms = kPacingTolerance * res.played_s * 1e3;
  res.targets.push_back({fmt::format("|pacing error| at most {:.0f}% of the {:.3f} s played",
                                     100 * kPacingTolerance, res.played_s),
                         fmt::format("{:+.2f} ms ({:+.3f}%), tolerance {:.0f} ms", res.error_ms,
                                     res.error_pct, tolerance_ms),
                         std::fabs(res.error_ms) <= tolerance_ms});
  res.targets.push_back(
      {"snd-be exits 0 on SIGTERM", fmt::format("{}", res.be_exit), res.be_exit == 0});
  for (const Target& t : res.targets) res.all_pass = res.all_pass && t.pass;
  return res;
}

Json to_json(const SndResults& res) {
  Json j;
  j["machine"] = {
      {"cpu", res.machine.cpu}, {"cores", res.machine.cores}, {"kernel", res.machine.kernel}};
  j["legend"] = Json::array();
  for (const char* l : kSndLegend) j["legend"].push_back(l);
  j["seconds"] = res.seconds;
  j["played_s"] = figure(res.played_s);
  j["wall_s"] = figure(res.wall_s);
  j["elapsed_s"] = figure(res.elapsed_s);
  j["position_s"] = figure(res.position_s);
  j["pacing_error_ms"] = figure(res.error_ms);
  j["pacing_error_pct"] = figure(res.error_pct);
  j["events"] = res.events;
  j["events_per_s"] = figure(res.events_per_s);
  j["expected_events_per_s"] = figure(res.expected_events_per_s);
  j["streams"] = 1;
  j["snd_be_cpu_s_per_stream"] = figure(res.be_cpu_s);
  j["snd_be_cpu_pct_per_stream"] = figure(100 * res.be_cpu_s / res.wall_s);
  j["targets"] = Json::array();
  for (const Target& t : res.targets) {
    j["targets"].push_back({{"name", t.name}, {"measured", t.measured}, {"pass", t.pass}});
  }
  j["pass"] = res.all_pass;
  return j;
}

void print_tables(const SndResults& res) {
  fmt::print("shbuf bench snd on {}, {} cores, {}\n", res.machine.cpu, res.machine.cores,
             res.machine.kernel);
  for (const char* l : kSndLegend) fmt::print("  {}\n", l);
  fmt::print("\n{:<34} {:>12}\n", "figure", "value");
  fmt::print("{:<34} {:>12.3f}\n", "seconds asked (N)", res.seconds);
  fmt::print("{:<34} {:>12.3f}\n", "seconds played (whole periods)", res.played_s);
  fmt::print("{:<34} {:>12.3f}\n", "wall s (OPEN to CLOSE)", res.wall_s);
  fmt::print("{:<34} {:>12.3f}\n", "wall / N", res.wall_s / res.seconds);
  fmt::print("{:<34} {:>12.3f}\n", "elapsed s (START to last event)", res.elapsed_s);
  fmt::print("{:<34} {:>12.3f}\n", "last position s", res.position_s);
  fmt::print("{:<34} {:>+12.2f}\n", "pacing error ms", res.error_ms);
  fmt::print("{:<34} {:>+12.3f}\n", "pacing error %", res.error_pct);
  fmt::print("{:<34} {:>12}\n", "position events", res.events);
  fmt::print("{:<34} {:>12.1f}\n", "events/s", res.events_per_s);
  fmt::print("{:<34} {:>12.1f}\n", "events/s expected (4 per period)", res.expected_events_per_s);
  fmt::print("{:<34} {:>12.3f}\n", "snd-be CPU s per stream", res.be_cpu_s);
  fmt::print("{:<34} {:>12.2f}\n", "snd-be CPU % per stream", 100 * res.be_cpu_s / res.wall_s);
  fmt::print("\ntargets:\n");
  for (const Target& t : res.targets) {
    fmt::print("  {}  {}: {}\n", t.pass ? "PASS" : "FAIL", t.name, t.measured);
  }
}

void run_bench_snd(const SndFlags& flags) {
  if (flags.seconds < 0.1) fail(kExitUsage, "--seconds: at least 0.1");
  const SndResults res = measure_snd(flags.seconds);
  report(json_text(to_json(res)), flags.json, flags.json_file);
  if (!flags.json) print_tables(res);
  std::fflush(stdout);
  if (!res.all_pass) fail(kExitFailure, "sound pacing targets missed (see FAIL above)");
}

}  // namespace

void add_bench_commands(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "bench",
      "Measure every operation of both ends in both modes against the limit (and the naive "
      "way, as information); check the targets");
  auto flags = std::make_shared<Flags>();
  cmd->add_flag("--json", flags->json, "Print JSON instead of tables");
  cmd->add_flag("--quick", flags->quick, "Up to 16384 pages, few runs, targets not enforced");
  cmd->add_option("--json-file", flags->json_file, "Also write the JSON to this file");
  auto snd_flags = std::make_shared<SndFlags>();
  auto* snd = cmd->add_subcommand(
      "snd",
      "Play N seconds through snd-be on a private simulator instance, paced by its position "
      "events; check the pacing");
  snd->add_option("--seconds", snd_flags->seconds, "How long to play (N)")
      ->check(seconds_in(3600))
      ->capture_default_str();
  snd->add_flag("--json", snd_flags->json, "Print JSON instead of tables");
  snd->add_option("--json-file", snd_flags->json_file, "Also write the JSON to this file");
  snd->callback([snd_flags] { run_bench_snd(*snd_flags); });
  add_bench_displ_command(*cmd);
  cmd->callback([flags, cmd] {
    if (cmd->get_subcommands().empty()) run_bench(*flags);
  });
}

}  // namespace shbuf::cli
