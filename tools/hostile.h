// What `shbuf snd-fe --hostile` and `shbuf displ-fe --hostile` share: a
// hostile frontend's cases, each with the backend's answer and the answer a
// backend that defends itself gives, printed one line each; the page
// directories a liar builds; and the backend's state, read from xenstore.
//
// The cases run in rounds: connect, every case, then the one that ends the
// device (a request producer index far ahead), close, and connect again,
// until the time asked for has passed. With `die`, the last round ends
// instead with a request sent and the process gone before its answer.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cli.h"
#include "pv/platform.h"
#include "shbuf/core/provider.h"
#include "shbuf/core/result.h"

namespace shbuf::snd {
struct FrontendOptions;
}
namespace shbuf::displ {
struct FrontendOptions;
}

namespace shbuf::cli {

// Another domain, standing for another guest: a grant names its grantee
// whether or not it exists.
inline constexpr DomId kOtherDomain = 32000;

struct HostileOptions {
  bool enabled = false;
  // Rounds go on until this many seconds have passed (at least one round).
  double attack_for = 0;
  // The last round dies mid-request instead of ending the device.
  bool die = false;
  // Notifications of each event storm, per channel.
  int storm = 5000;
  // --hostile, --attack-for and --die on a frontend command.
  void add_to(CLI::App* app);
};

// One answer the backend should give: a status (0 or -errno), or any
// refusal (a negative status).
struct Want {
  static Want status(std::int32_t s) { return {s, false}; }
  static Want refusal() { return {0, true}; }
  std::int32_t value = 0;
  bool any_refusal = false;
};

// Counts and prints the cases of one run ("hostile: <case>: <answer>").
class HostileReport {
 public:
  // A request's answer: its status, or an error when none came.
  void expect(const std::string& what, const Result<std::int32_t>& got, Want want);
  // A step that must succeed (a valid request, a rewrite, a signal).
  void expect_ok(const std::string& what, const Status& got);
  // A step that must be refused with `code` (by xenstore, say).
  void expect_code(const std::string& what, const Status& got, int code);
  void note(const std::string& text);
  std::size_t cases() const { return cases_; }
  std::size_t differing() const { return differing_; }

 private:
  void line(const std::string& what, const std::string& answer, bool as_expected,
            const std::string& wanted);
  std::size_t cases_ = 0;
  std::size_t differing_ = 0;
};

// "0", "-22 EINVAL".
std::string status_text(std::int32_t status);

// Page directories a lying frontend shares with `backend`, each good for a
// buffer of `pages` pages (the grants end with the object).
class LyingDirectories {
 public:
  LyingDirectories(Provider& grants, DomId backend) : grants_(grants), backend_(backend) {}
  // A true directory of a buffer granted to the backend.
  Result<Gref> honest(std::size_t pages);
  // A directory page that links to itself (a loop once the buffer needs two
  // directory pages or more; a chain that never ends otherwise).
  Result<Gref> loop();
  // The first page links nowhere (0) although the buffer needs more.
  Result<Gref> ends_early(std::size_t pages);
  // The last page links on to a further page.
  Result<Gref> runs_long(std::size_t pages);
  // A well-formed chain whose buffer grefs stop (0) halfway.
  Result<Gref> zero_buffer_gref(std::size_t pages);
  // A well-formed chain of buffer grefs that nobody granted.
  Result<Gref> buffer_not_granted(std::size_t pages);
  // A well-formed chain whose buffer pages are granted to another domain.
  Result<Gref> buffer_granted_elsewhere(std::size_t pages, DomId other);
  // A directory page granted to another domain, for a buffer of 1 page.
  Result<Gref> directory_granted_elsewhere(DomId other);
  // An empty directory for a backend to fill (backend-allocated), granted
  // with `access`: read-only is a lie, since the backend must write it.
  Result<Gref> to_fill(std::size_t pages, Access access);
  // A gref nobody granted.
  static constexpr Gref kNeverGranted = 0x0ffffff0;
  // Each lie about a frontend-allocated buffer of `pages` pages, in turn:
  // its name, its first directory gref (or why it could not be shared) and
  // the pages the request must claim for it. A chain that ends early needs
  // two directory pages (more than 1023 pages), so it comes only then.
  void for_each_lie(std::size_t pages,
                    const std::function<void(const std::string&, Result<Gref>, std::size_t)>& lie);

 private:
  // Shares `pages` pages with `to`, keeps them alive, returns their grefs.
  Result<std::vector<Gref>> buffer(DomId to, std::size_t pages);
  // A chain of a buffer shared with `to` whose first `valid` grefs are true
  // (the rest 0).
  Result<Gref> chain_of_buffer(DomId to, std::size_t pages, bool end_early, bool run_long,
                               std::size_t valid);
  // Shares a chain of directory pages for `pages` buffer grefs, keeps it
  // alive and returns its first gref.
  Result<Gref> chain(std::size_t pages, const std::function<Gref(std::size_t)>& buffer_gref,
                     bool end_early, bool run_long);
  Provider& grants_;
  DomId backend_;
  std::vector<Share> shares_;
};

// The backend's xenbus state of the device whose frontend directory is
// `device` ("device/vsnd/0"), read through its "backend" node.
Result<int> backend_state(pv::Xenstore& xs, const std::string& device);
// Waits (at most `timeout`) for the backend to leave Connected (Closing or
// Closed); returns the state it reached.
Result<int> wait_backend_leaves(pv::Xenstore& xs, const std::string& device,
                                std::chrono::milliseconds timeout);

// `n` notifications on each of `channels` channels, through `notify`.
void event_storm(HostileReport& report, int n, std::size_t channels,
                 const std::function<Status(std::size_t)>& notify);
// After `sent` (a request producer index 100000 ahead, signalled): the
// backend must close the device (state 6) within 10 s.
void expect_device_ended(HostileReport& report, pv::Xenstore& xs, const std::string& device,
                         const Status& sent);
// Says so, then exits at once (status 0): whatever was sent is left to the
// backend and the OS.
[[noreturn]] void die_mid_request(HostileReport& report);

// Runs `round` (its argument: whether it is the last) until the time asked
// for has passed; prints one summary line and returns the exit code: 0 when
// every round ran and every answer was as it should be, 1 otherwise.
int run_rounds(const HostileOptions& options, HostileReport& report,
               const std::function<Status(bool last)>& round);

// The rounds of `shbuf snd-fe --hostile` and `shbuf displ-fe --hostile`.
int run_hostile_snd(pv::Platform& platform, const snd::FrontendOptions& options,
                    const HostileOptions& hostile);
int run_hostile_displ(pv::Platform& platform, const displ::FrontendOptions& options,
                      const HostileOptions& hostile);

}  // namespace shbuf::cli
