// One contract for the platform services, run against the simulator here and
// against Xen's libxenstore and libxenevtchn in dom0 under a real Xen
// (`make test-xen`), where they exist: what each call does and refuses must
// be the same on both, so that a backend tested on the simulator behaves the
// same on Xen. Dom0 is privileged and may bind to its own ports, so one
// domain is enough.
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>

#include "pv/platform.h"
#include "shbuf/grant/sim.h"

namespace shbuf::pv {
namespace {

class PvContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    root = "/shbuf-contract-" + std::to_string(::getpid());
    PlatformOptions o;
    o.name = GetParam();
    if (o.name == "sim") {
      sim = "/dev/shm/shbuf-contract-" + std::to_string(::getpid());
      std::filesystem::remove_all(sim);
      o.sim_path = sim;
    }
    auto opened = open_platform(o);
    if (!opened.ok() && o.name == "xen") {
      GTEST_SKIP() << "no Xen here: " << opened.error().describe();
    }
    ASSERT_TRUE(opened.ok()) << opened.error().describe();
    p = std::move(opened).value();
    self = p.xenstore->self();
  }
  void TearDown() override {
    if (p.xenstore) (void)p.xenstore->rm(kNoTransaction, root);
    p = Platform{};
    if (!sim.empty()) {
      (void)SimProvider::reset(sim);
      std::filesystem::remove_all(sim);
    }
  }

  // The next watch event within a second.
  std::optional<WatchEvent> next_watch() {
    for (int i = 0; i < 100; ++i) {
      auto ev = p.xenstore->next_event();
      if (!ev.ok()) return std::nullopt;
      if (*ev) return **ev;
      pollfd fd{p.xenstore->fd(), POLLIN, 0};
      ::poll(&fd, 1, 10);
    }
    return std::nullopt;
  }

  // The next pending port within a second.
  std::optional<Port> next_port() {
    pollfd fd{p.events->fd(), POLLIN, 0};
    if (::poll(&fd, 1, 1000) != 1) return std::nullopt;
    auto port = p.events->pending();
    if (!port.ok() || !*port) return std::nullopt;
    return **port;
  }

  Platform p;
  std::string sim;
  std::string root;
  DomId self = 0;
};

TEST_P(PvContract, XenstoreReadsWritesListsAndRemoves) {
  Xenstore& xs = *p.xenstore;
  ASSERT_TRUE(xs.write(kNoTransaction, root + "/a/b", "1").ok());
  ASSERT_TRUE(xs.write(kNoTransaction, root + "/a/c", std::string("x\0y", 3)).ok());
  EXPECT_EQ(*xs.read(kNoTransaction, root + "/a/b"), "1");
  EXPECT_EQ(*xs.read(kNoTransaction, root + "/a/c"), std::string("x\0y", 3));
  EXPECT_EQ(*xs.read(kNoTransaction, root + "/a"), "");  // made on the way
  EXPECT_EQ(*xs.list(kNoTransaction, root + "/a"), (std::vector<std::string>{"b", "c"}));
  ASSERT_TRUE(xs.mkdir(kNoTransaction, root + "/d").ok());
  EXPECT_EQ(*xs.read(kNoTransaction, root + "/d"), "");
  ASSERT_TRUE(xs.rm(kNoTransaction, root + "/a").ok());
  EXPECT_EQ(xs.read(kNoTransaction, root + "/a/b").error().code, ENOENT);
  EXPECT_TRUE(xs.rm(kNoTransaction, root + "/a").ok());  // gone already: fine
}

TEST_P(PvContract, XenstoreRefusesWhatXenstoredRefuses) {
  Xenstore& xs = *p.xenstore;
  EXPECT_EQ(xs.read(kNoTransaction, root + "/missing").error().code, ENOENT);
  EXPECT_EQ(xs.write(kNoTransaction, root + "/bad path", "1").code(), EINVAL);
  EXPECT_EQ(xs.write(kNoTransaction, root + "//x", "1").code(), EINVAL);
  EXPECT_EQ(
      xs.write(kNoTransaction, root + "/big", std::string(kXenstorePayloadMax + 1, 'v')).code(),
      E2BIG);
  EXPECT_TRUE(
      xs.write(kNoTransaction, root + "/max", std::string(kXenstorePayloadMax - 64, 'v')).ok());
}

TEST_P(PvContract, XenstorePermissionsReadBackAsSet) {
  Xenstore& xs = *p.xenstore;
  ASSERT_TRUE(xs.write(kNoTransaction, root + "/perm", "1").ok());
  // Only domain 0 is sure to exist on both (xenstored may drop entries of
  // domains it does not know).
  for (const Perm perm : {Perm::kRead, Perm::kWrite, Perm::kBoth, Perm::kNone}) {
    const std::vector<Permission> perms = {{0, perm}};
    ASSERT_TRUE(xs.set_permissions(kNoTransaction, root + "/perm", perms).ok());
    auto got = xs.permissions(kNoTransaction, root + "/perm");
    ASSERT_TRUE(got.ok()) << got.error().describe();
    EXPECT_EQ(*got, perms);
  }
  EXPECT_EQ(xs.set_permissions(kNoTransaction, root + "/perm", {}).code(), EINVAL);
}

TEST_P(PvContract, XenstoreTransactionsCommitTogetherOrConflict) {
  Xenstore& xs = *p.xenstore;
  ASSERT_TRUE(xs.write(kNoTransaction, root + "/t/x", "0").ok());
  auto t = xs.begin();
  ASSERT_TRUE(t.ok()) << t.error().describe();
  ASSERT_TRUE(xs.write(*t, root + "/t/y", "1").ok());
  EXPECT_EQ(*xs.read(*t, root + "/t/y"), "1");
  EXPECT_EQ(xs.read(kNoTransaction, root + "/t/y").error().code, ENOENT);
  ASSERT_TRUE(xs.end(*t, true).ok());
  EXPECT_EQ(*xs.read(kNoTransaction, root + "/t/y"), "1");
  // Another change to what the transaction read makes it start again.
  auto u = xs.begin();
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(*xs.read(*u, root + "/t/x"), "0");
  ASSERT_TRUE(xs.write(kNoTransaction, root + "/t/x", "1").ok());
  ASSERT_TRUE(xs.write(*u, root + "/t/x", "2").ok());
  EXPECT_EQ(xs.end(*u, true).code(), EAGAIN);
  EXPECT_EQ(*xs.read(kNoTransaction, root + "/t/x"), "1");
  // An aborted one leaves nothing.
  auto v = xs.begin();
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(xs.write(*v, root + "/t/z", "1").ok());
  ASSERT_TRUE(xs.end(*v, false).ok());
  EXPECT_EQ(xs.read(kNoTransaction, root + "/t/z").error().code, ENOENT);
}

TEST_P(PvContract, XenstoreWatchesFireOnceAtOnceAndOnChanges) {
  Xenstore& xs = *p.xenstore;
  ASSERT_TRUE(xs.write(kNoTransaction, root + "/w", "").ok());
  ASSERT_TRUE(xs.watch(root + "/w", "tok").ok());
  auto first = next_watch();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(*first, (WatchEvent{root + "/w", "tok"}));
  ASSERT_TRUE(xs.write(kNoTransaction, root + "/w/child", "1").ok());
  auto change = next_watch();
  ASSERT_TRUE(change.has_value());
  EXPECT_EQ(*change, (WatchEvent{root + "/w/child", "tok"}));
  ASSERT_TRUE(xs.unwatch(root + "/w", "tok").ok());
}

TEST_P(PvContract, XenstoreRequestsGoOnWhileWatchEventsWait) {
  Xenstore& xs = *p.xenstore;
  ASSERT_TRUE(xs.write(kNoTransaction, root + "/q", "").ok());
  ASSERT_TRUE(xs.watch(root + "/q", "q").ok());
  // Each write fires the watch; the requests after it must not notice.
  constexpr int kWrites = 20;
  for (int i = 0; i < kWrites; ++i) {
    const std::string key = root + "/q/k" + std::to_string(i);
    ASSERT_TRUE(xs.write(kNoTransaction, key, std::to_string(i)).ok()) << i;
    auto v = xs.read(kNoTransaction, key);
    ASSERT_TRUE(v.ok()) << v.error().describe();
    EXPECT_EQ(*v, std::to_string(i));
  }
  auto names = xs.list(kNoTransaction, root + "/q");
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(names->size(), std::size_t(kWrites));
  // The first event, then one per write in order; where a queue was full
  // (the simulator's mailboxes hold few), one naming the watch's own path
  // stands for those lost.
  auto first = next_watch();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(*first, (WatchEvent{root + "/q", "q"}));
  int next = 0;
  bool lost = false;
  bool gap = false;
  while (auto ev = next_watch()) {
    ASSERT_EQ(ev->token, "q");
    if (ev->path == root + "/q") {
      lost = true;
      continue;
    }
    ASSERT_LT(next, kWrites) << ev->path;
    // Events may be missing before a "lost" marker, never out of order.
    const std::string prefix = root + "/q/k";
    ASSERT_EQ(ev->path.compare(0, prefix.size(), prefix), 0) << ev->path;
    const int k = std::stoi(ev->path.substr(prefix.size()));
    ASSERT_GE(k, next) << ev->path;
    gap = gap || k > next;
    next = k + 1;
  }
  // Every write was told, or a marker said some were not.
  EXPECT_TRUE((next == kWrites && !gap) || lost) << "events stopped at k" << next;
  ASSERT_TRUE(xs.unwatch(root + "/q", "q").ok());
}

TEST_P(PvContract, XenstoreKnowsWhichDomainsExist) {
  EXPECT_TRUE(*p.xenstore->domain_exists(0));
  EXPECT_FALSE(*p.xenstore->domain_exists(32000));
}

TEST_P(PvContract, EventChannelsBindNotifyMaskAndUnbind) {
  EventChannels& ev = *p.events;
  auto a = ev.bind_unbound(self);
  ASSERT_TRUE(a.ok()) << a.error().describe();
  auto b = ev.bind_interdomain(self, *a);
  ASSERT_TRUE(b.ok()) << b.error().describe();
  // Xen marks a newly bound port pending.
  EXPECT_EQ(next_port(), std::optional<Port>(*b));
  ASSERT_TRUE(ev.unmask(*b).ok());
  ASSERT_TRUE(ev.notify(*b).ok());
  EXPECT_EQ(next_port(), std::optional<Port>(*a));
  ASSERT_TRUE(ev.unmask(*a).ok());
  ASSERT_TRUE(ev.notify(*a).ok());
  EXPECT_EQ(next_port(), std::optional<Port>(*b));
  ASSERT_TRUE(ev.unmask(*b).ok());
  // The other end of an unbound port is unbound again and can be bound anew.
  ASSERT_TRUE(ev.unbind(*b).ok());
  auto again = ev.bind_interdomain(self, *a);
  ASSERT_TRUE(again.ok()) << again.error().describe();
  EXPECT_TRUE(ev.unbind(*again).ok());
  EXPECT_TRUE(ev.unbind(*a).ok());
}

TEST_P(PvContract, EventChannelsRefuseWhatXenRefuses) {
  EventChannels& ev = *p.events;
  // A port that does not exist, and one that is bound already.
  EXPECT_EQ(ev.bind_interdomain(self, 4000).error().code, EINVAL);
  auto a = ev.bind_unbound(self);
  ASSERT_TRUE(a.ok());
  auto b = ev.bind_interdomain(self, *a);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(ev.bind_interdomain(self, *a).error().code, EINVAL);
  // Ports this handle did not bind.
  const Port stranger = std::max(*a, *b) + 100;
  EXPECT_EQ(ev.notify(stranger).code(), ENOTCONN);
  EXPECT_EQ(ev.unbind(stranger).code(), ENOTCONN);
  EXPECT_TRUE(ev.unbind(*b).ok());
  EXPECT_TRUE(ev.unbind(*a).ok());
}

INSTANTIATE_TEST_SUITE_P(Platforms, PvContract, ::testing::Values("sim", "xen"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace shbuf::pv
