#include "hostile.h"

#include <unistd.h>
#include <cstdio>
#include <cstring>
#include <thread>

#include "cli.h"
#include "shbuf/core/page_directory.h"

namespace shbuf::cli {

std::string status_text(std::int32_t status) {
  if (status >= 0) return std::to_string(status);
  return std::to_string(status) + " " + errno_name(-status);
}

void HostileReport::line(const std::string& what, const std::string& answer, bool as_expected,
                         const std::string& wanted) {
  ++cases_;
  if (as_expected) {
    std::printf("hostile: %s: %s\n", what.c_str(), answer.c_str());
  } else {
    ++differing_;
    std::printf("hostile: DIFFERS: %s: %s, wanted %s\n", what.c_str(), answer.c_str(),
                wanted.c_str());
  }
  std::fflush(stdout);
}

void HostileReport::expect(const std::string& what, const Result<std::int32_t>& got, Want want) {
  const std::string wanted = want.any_refusal ? "a refusal" : status_text(want.value);
  if (!got.ok()) {
    line(what, "no answer: " + got.error().describe(), false, wanted);
    return;
  }
  line(what, status_text(*got), want.any_refusal ? *got < 0 : *got == want.value, wanted);
}

void HostileReport::expect_ok(const std::string& what, const Status& got) {
  line(what, got.ok() ? "ok" : got.error().describe(), got.ok(), "ok");
}

void HostileReport::expect_code(const std::string& what, const Status& got, int code) {
  const std::string wanted = status_text(-code);
  line(what, got.ok() ? "ok" : status_text(-got.code()), !got.ok() && got.code() == code, wanted);
}

void HostileReport::note(const std::string& text) {
  std::printf("hostile: %s\n", text.c_str());
  std::fflush(stdout);
}

// Writes page `i` of a chain: its link, then up to kGrefsPerDirPage grefs.
namespace {
void write_page(std::span<std::byte> page, Gref link, const std::vector<Gref>& grefs) {
  std::memset(page.data(), 0, kPageSize);
  store_shared_gref(page.data(), link);
  copy_grefs_to_shared(page.data() + sizeof(Gref), grefs.data(), grefs.size());
}
}  // namespace

Result<Gref> LyingDirectories::chain(std::size_t pages,
                                     const std::function<Gref(std::size_t)>& buffer_gref,
                                     bool end_early, bool run_long) {
  const std::size_t d = dir_pages(pages) + (run_long ? 1 : 0);
  auto dir = grants_.share(backend_, d, Access::kReadOnly);
  if (!dir.ok()) return dir.error();
  for (std::size_t i = 0; i < d; ++i) {
    Gref link = i + 1 < d ? dir->grefs()[i + 1] : kDirListEnd;
    if (end_early && i == 0) link = kDirListEnd;
    std::vector<Gref> grefs;
    for (std::size_t k = i * kGrefsPerDirPage; k < pages && grefs.size() < kGrefsPerDirPage; ++k) {
      grefs.push_back(buffer_gref(k));
    }
    write_page(dir->memory().subspan(i * kPageSize, kPageSize), link, grefs);
  }
  const Gref first = dir->grefs()[0];
  shares_.push_back(std::move(dir).value());
  return first;
}

Result<std::vector<Gref>> LyingDirectories::buffer(DomId to, std::size_t pages) {
  auto buffer = grants_.share(to, pages, Access::kReadWrite);
  if (!buffer.ok()) return buffer.error();
  std::vector<Gref> grefs(buffer->grefs().begin(), buffer->grefs().end());
  shares_.push_back(std::move(buffer).value());
  return grefs;
}

Result<Gref> LyingDirectories::chain_of_buffer(DomId to, std::size_t pages, bool end_early,
                                               bool run_long, std::size_t valid) {
  auto grefs = buffer(to, pages);
  if (!grefs.ok()) return grefs.error();
  return chain(
      pages, [&](std::size_t k) { return k < valid ? (*grefs)[k] : kDirListEnd; }, end_early,
      run_long);
}

Result<Gref> LyingDirectories::honest(std::size_t pages) {
  return chain_of_buffer(backend_, pages, false, false, pages);
}

Result<Gref> LyingDirectories::loop() {
  auto dir = grants_.share(backend_, 1, Access::kReadOnly);
  if (!dir.ok()) return dir.error();
  const Gref self = dir->grefs()[0];
  write_page(dir->memory(), self, std::vector<Gref>(kGrefsPerDirPage, self));
  shares_.push_back(std::move(dir).value());
  return self;
}

Result<Gref> LyingDirectories::ends_early(std::size_t pages) {
  return chain_of_buffer(backend_, pages, true, false, pages);
}

Result<Gref> LyingDirectories::runs_long(std::size_t pages) {
  return chain_of_buffer(backend_, pages, false, true, pages);
}

Result<Gref> LyingDirectories::zero_buffer_gref(std::size_t pages) {
  return chain_of_buffer(backend_, pages, false, false, pages / 2);
}

Result<Gref> LyingDirectories::buffer_not_granted(std::size_t pages) {
  return chain(
      pages, [](std::size_t k) { return Gref(kNeverGranted + k); }, false, false);
}

Result<Gref> LyingDirectories::buffer_granted_elsewhere(std::size_t pages, DomId other) {
  return chain_of_buffer(other, pages, false, false, pages);
}

Result<Gref> LyingDirectories::directory_granted_elsewhere(DomId other) {
  auto page = buffer(backend_, 1);
  if (!page.ok()) return page.error();
  auto dir = grants_.share(other, 1, Access::kReadOnly);
  if (!dir.ok()) return dir.error();
  write_page(dir->memory(), kDirListEnd, *page);
  const Gref first = dir->grefs()[0];
  shares_.push_back(std::move(dir).value());
  return first;
}

void LyingDirectories::for_each_lie(
    std::size_t pages,
    const std::function<void(const std::string&, Result<Gref>, std::size_t)>& lie) {
  lie("a directory that links to itself", loop(), pages);
  if (dir_pages(pages) > 1) lie("a directory that ends early", ends_early(pages), pages);
  lie("a directory that runs on past its last page", runs_long(pages), pages);
  lie("a directory whose buffer grefs stop halfway", zero_buffer_gref(pages), pages);
  lie("a directory of grefs never granted", buffer_not_granted(pages), pages);
  lie("a directory of pages granted to another domain",
      buffer_granted_elsewhere(pages, kOtherDomain), pages);
  lie("a directory granted to another domain", directory_granted_elsewhere(kOtherDomain), 1);
  lie("a directory gref never granted", Gref(kNeverGranted), pages);
}

Result<Gref> LyingDirectories::to_fill(std::size_t pages, Access access) {
  auto dir = grants_.share(backend_, dir_pages(pages), access);
  if (!dir.ok()) return dir.error();
  for (std::size_t i = 0; i < dir->pages(); ++i) {
    const Gref link = i + 1 < dir->pages() ? dir->grefs()[i + 1] : kDirListEnd;
    write_page(dir->memory().subspan(i * kPageSize, kPageSize), link, {});
  }
  const Gref first = dir->grefs()[0];
  shares_.push_back(std::move(dir).value());
  return first;
}

Result<int> backend_state(pv::Xenstore& xs, const std::string& device) {
  auto be = xs.read(pv::kNoTransaction, device + "/backend");
  if (!be.ok()) return be.error();
  auto state = xs.read(pv::kNoTransaction, *be + "/state");
  if (!state.ok()) return state.error();
  auto v = parse_decimal(*state, 0, 8);
  if (!v.ok()) return make_error(EPROTO, "backend state: " + v.error().message);
  return int(*v);
}

Result<int> wait_backend_leaves(pv::Xenstore& xs, const std::string& device,
                                std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto s = backend_state(xs, device);
    if (s.ok() && *s != 4) return s;
    if (std::chrono::steady_clock::now() >= deadline) {
      return make_error(
          ETIMEDOUT, "the backend stayed Connected for " + std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void event_storm(HostileReport& report, int n, std::size_t channels,
                 const std::function<Status(std::size_t)>& notify) {
  Status s;
  for (int i = 0; i < n && s.ok(); ++i) {
    for (std::size_t c = 0; c < channels && s.ok(); ++c) s = notify(c);
  }
  report.expect_ok(std::to_string(n) + " notifications on each channel", s);
}

void expect_device_ended(HostileReport& report, pv::Xenstore& xs, const std::string& device,
                         const Status& sent) {
  const std::string what = "a request producer index 100000 ahead";
  if (!sent.ok()) {
    report.expect_ok(what, sent);
    return;
  }
  auto state = wait_backend_leaves(xs, device, std::chrono::seconds(10));
  report.expect(what + ": the backend's state",
                state.ok() ? Result<std::int32_t>(*state) : Result<std::int32_t>(state.error()),
                Want::status(6));
}

void die_mid_request(HostileReport& report) {
  report.note("dying mid-request");
  std::fflush(stdout);
  _exit(kExitOk);
}

void HostileOptions::add_to(CLI::App* app) {
  app->add_flag("--hostile", enabled,
                "Lie to the backend instead: requests at and beyond every limit, page directories "
                "that loop, end early, run long or name grants it may not map, event storms, "
                "xenstore values rewritten after Connected, a request producer index far ahead; "
                "print each answer and exit 1 if one is not the refusal a careful backend gives");
  app->add_option("--attack-for", attack_for,
                  "With --hostile: start new rounds (connect, lie, get the device ended, close) "
                  "until this many seconds have passed")
      ->check(seconds_in(kMaxTimeoutSeconds))
      ->capture_default_str();
  app->add_flag("--die", die,
                "With --hostile: end the last round by sending a request and exiting before its "
                "answer, leaving the rest to the OS");
}

int run_rounds(const HostileOptions& options, HostileReport& report,
               const std::function<Status(bool last)>& round) {
  const auto start = std::chrono::steady_clock::now();
  const std::chrono::milliseconds attack_for{seconds_to_ms(options.attack_for)};
  std::size_t rounds = 0;
  for (;;) {
    const bool last = std::chrono::steady_clock::now() - start >= attack_for;
    report.note("round " + std::to_string(rounds + 1));
    Status s = round(last);
    if (!s.ok()) {
      std::printf("hostile: round %zu could not go on: %s\n", rounds + 1,
                  s.error().describe().c_str());
      std::printf("hostile: %zu round(s), %zu case(s), %zu differing\n", rounds, report.cases(),
                  report.differing());
      return kExitFailure;
    }
    ++rounds;
    if (last) break;
  }
  std::printf("hostile: %zu round(s), %zu case(s), %zu differing\n", rounds, report.cases(),
              report.differing());
  return report.differing() == 0 ? kExitOk : kExitFailure;
}

}  // namespace shbuf::cli
