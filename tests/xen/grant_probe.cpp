// The grant refusals between two domains, checked from the mapping domain
// and the same on Xen and on the simulator:
//
//   shbuf_grant_probe offer --platform xen|sim [--sim DIR] --peer D --other O --key PATH
//     As the granting domain: shares with domain D one page writable and one
//     read-only, one page with domain O, and one with D whose grant it then
//     ends; writes the five grefs (the fifth never granted) to xenstore at
//     PATH, readable by D, and holds them until SIGINT or SIGTERM (at most
//     --hold seconds).
//   shbuf_grant_probe probe --platform xen|sim [--sim DIR] [--self D] --from G --key PATH
//     As domain D: waits for PATH, maps each gref of domain G as a backend
//     would, prints one line a case and exits 0 only when each came out as
//     Xen's rules say: the writable page maps writable and holds the
//     granter's bytes, the read-only page maps read-only but not writable,
//     and the page granted to another domain, the ended grant and the gref
//     never granted are refused with EINVAL.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pv/platform.h"
#include "shbuf/core/provider.h"

namespace {

using namespace shbuf;

constexpr std::byte kWritableByte{0x5a};
constexpr std::byte kReadOnlyByte{0x3c};
// Far beyond anything handed out: grants are allocated from the bottom.
constexpr Gref kNeverGranted = 0x00fffff0;

struct Args {
  std::string platform = "sim";
  std::string sim;
  DomId self = 0;
  DomId peer = 1;
  DomId other = 5;
  DomId from = 0;
  std::string key;
  int hold = 300;
  int wait = 120;
};

pv::Platform open(const Args& a) {
  pv::PlatformOptions o;
  o.name = a.platform;
  o.self = a.self;
  o.sim_path = a.sim;
  auto p = pv::open_platform(o);
  if (!p.ok()) {
    std::fprintf(stderr, "grant_probe: %s\n", p.error().describe().c_str());
    std::exit(1);
  }
  return std::move(p).value();
}

[[noreturn]] void die(const std::string& what, const Error& e) {
  std::fprintf(stderr, "grant_probe: %s: %s\n", what.c_str(), e.describe().c_str());
  std::exit(1);
}

Share share(Provider& g, DomId to, Access access, std::byte fill) {
  auto s = g.share(to, 1, access);
  if (!s.ok()) die("share with domain " + std::to_string(to), s.error());
  for (std::byte& b : s->memory()) b = fill;
  return std::move(s).value();
}

int offer(const Args& a) {
  // The signals are taken synchronously, with sigtimedwait.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  pv::Platform p = open(a);
  Provider& g = *p.grants;
  Share writable = share(g, a.peer, Access::kReadWrite, kWritableByte);
  Share read_only = share(g, a.peer, Access::kReadOnly, kReadOnlyByte);
  Share other = share(g, a.other, Access::kReadWrite, kWritableByte);
  Gref ended = 0;
  {
    Share gone = share(g, a.peer, Access::kReadWrite, kWritableByte);
    ended = gone.grefs()[0];
  }
  const std::string value = std::to_string(writable.grefs()[0]) + " " +
                            std::to_string(read_only.grefs()[0]) + " " +
                            std::to_string(other.grefs()[0]) + " " + std::to_string(ended) + " " +
                            std::to_string(kNeverGranted);
  if (Status s = p.xenstore->write(pv::kNoTransaction, a.key, value); !s.ok()) {
    die("write " + a.key, s.error());
  }
  if (Status s = p.xenstore->set_permissions(
          pv::kNoTransaction, a.key, {{g.self(), pv::Perm::kNone}, {a.peer, pv::Perm::kRead}});
      !s.ok()) {
    die("set the permissions of " + a.key, s.error());
  }
  std::printf("OFFER %s\n", value.c_str());
  std::fflush(stdout);
  timespec hold{a.hold, 0};
  (void)sigtimedwait(&set, nullptr, &hold);
  (void)p.xenstore->rm(pv::kNoTransaction, a.key);
  return 0;
}

// One case: what happened, and whether it is what Xen's rules say.
bool report(const char* name, const Result<Mapping>& m, bool want_ok, std::byte want_byte = {}) {
  bool good = m.ok() == want_ok;
  std::string what;
  if (m.ok()) {
    const std::byte got = m->memory()[0];
    good = good && got == want_byte && m->memory()[kPageSize - 1] == want_byte;
    what = "mapped, first byte " + std::to_string(std::to_integer<int>(got));
  } else {
    good = good && m.error().code == EINVAL;
    what = "refused: " + m.error().describe();
  }
  std::printf("PROBE %s: %s: %s\n", name, what.c_str(), good ? "as Xen says" : "WRONG");
  return good;
}

int probe(const Args& a) {
  pv::Platform p = open(a);
  Provider& g = *p.grants;
  std::optional<std::string> value;
  for (int i = 0; i < a.wait * 10 && !value; ++i) {
    auto v = p.xenstore->read(pv::kNoTransaction, a.key);
    if (v.ok()) {
      value = *v;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  if (!value) {
    std::fprintf(stderr, "grant_probe: no %s within %d s\n", a.key.c_str(), a.wait);
    return 1;
  }
  std::istringstream in(*value);
  std::vector<Gref> grefs(5);
  for (Gref& gref : grefs) {
    if (!(in >> gref)) {
      std::fprintf(stderr, "grant_probe: %s holds '%s', not five grefs\n", a.key.c_str(),
                   value->c_str());
      return 1;
    }
  }
  auto map = [&](Gref gref, Access access) {
    return g.map(a.from, std::vector<Gref>{gref}, access);
  };
  bool all = true;
  {
    auto m = map(grefs[0], Access::kReadWrite);
    all = report("writable grant, mapped writable", m, true, kWritableByte) && all;
  }
  {
    auto m = map(grefs[1], Access::kReadOnly);
    all = report("read-only grant, mapped read-only", m, true, kReadOnlyByte) && all;
  }
  all = report("read-only grant, mapped writable", map(grefs[1], Access::kReadWrite), false) && all;
  all = report("granted to another domain", map(grefs[2], Access::kReadOnly), false) && all;
  all = report("grant ended", map(grefs[3], Access::kReadOnly), false) && all;
  all = report("never granted", map(grefs[4], Access::kReadOnly), false) && all;
  std::printf("PROBE %s\n", all ? "all as Xen says" : "FAILED");
  return all ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Grant refusals between two domains");
  app.require_subcommand(1);
  Args a;
  auto common = [&a](CLI::App* c) {
    c->add_option("--platform", a.platform)->check(CLI::IsMember({"sim", "xen"}));
    c->add_option("--sim", a.sim);
    c->add_option("--key", a.key)->required();
  };
  CLI::App* o = app.add_subcommand("offer");
  common(o);
  o->add_option("--peer", a.peer)->required();
  o->add_option("--other", a.other)->required();
  o->add_option("--hold", a.hold);
  CLI::App* pr = app.add_subcommand("probe");
  common(pr);
  pr->add_option("--self", a.self);
  pr->add_option("--from", a.from)->required();
  pr->add_option("--wait", a.wait);
  CLI11_PARSE(app, argc, argv);
  return o->parsed() ? offer(a) : probe(a);
}
