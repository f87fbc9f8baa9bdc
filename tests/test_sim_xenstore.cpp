// The simulator's xenstore: the tree and its calls, xenstored's permissions,
// watches within and across processes (a dead watcher, a full mailbox),
// transactions, and a damaged tree file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "pv/platform.h"
#include "pv/sim/xenstore_tree.h"
#include "pv/xenstore.h"
#include "test_sim_util.h"

namespace shbuf::simtest {
namespace {

using pv::kNoTransaction;
using pv::Perm;
using pv::Permission;
using pv::WatchEvent;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr pv::Transaction kNoT = kNoTransaction;

#define EXPECT_OK(expr)                                               \
  do {                                                                \
    const auto& ok_ = (expr);                                         \
    EXPECT_TRUE(ok_.ok()) << #expr << ": " << ok_.error().describe(); \
  } while (0)
#define ASSERT_OK(expr)                                               \
  do {                                                                \
    const auto& ok_ = (expr);                                         \
    ASSERT_TRUE(ok_.ok()) << #expr << ": " << ok_.error().describe(); \
  } while (0)

template <typename R>
int code_of(const R& r) {
  return r.ok() ? 0 : r.error().code;
}

class SimXenstore : public SimTest {
 protected:
  void SetUp() override {
    SimTest::SetUp();
    // A parameterised suite's name holds a '/'.
    std::replace(path.begin() + path.rfind("shbuf-simtest"), path.end(), '/', '-');
    instance = open(0);
    ASSERT_NE(instance, nullptr);
  }

  void TearDown() override {
    instance.reset();
    SimTest::TearDown();
  }

  std::unique_ptr<pv::Xenstore> xs(DomId self) {
    auto x = pv::open_sim_xenstore(path, self);
    EXPECT_TRUE(x.ok()) << (x.ok() ? "" : x.error().describe());
    return x.ok() ? std::move(x).value() : nullptr;
  }

  // Every event queued now.
  static std::vector<WatchEvent> drain(pv::Xenstore& x) {
    std::vector<WatchEvent> out;
    for (int i = 0; i < 10000; ++i) {
      auto e = x.next_event();
      EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().describe());
      if (!e.ok() || !*e) break;
      out.push_back(**e);
    }
    return out;
  }

  std::string file() const { return path + "/xenstore"; }

  void put_file(const std::string& bytes) const {
    std::ofstream f(file(), std::ios::binary | std::ios::trunc);
    f << bytes;
  }

  std::string get_file() const {
    std::ifstream f(file(), std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }

  // The tree as the file holds it now.
  pv::sim::Tree tree() const {
    auto t = pv::sim::parse_tree(get_file());
    EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().describe());
    return t.ok() ? std::move(t).value() : pv::sim::Tree{};
  }

  // dom0 makes /local/domain/<d>, owned by d and closed to the others.
  void make_home(pv::Xenstore& dom0, DomId d) {
    const std::string home = pv::domain_path(d);
    ASSERT_OK(dom0.mkdir(kNoT, home));
    ASSERT_OK(dom0.set_permissions(kNoT, home, {Permission{d, Perm::kNone}}));
  }

  std::unique_ptr<SimProvider> instance;
};

TEST_F(SimXenstore, WriteReadMkdirListRm) {
  auto x = xs(0);
  ASSERT_OK(x->write(kNoT, "/a/b/c", "value"));
  auto v = x->read(kNoT, "/a/b/c");
  ASSERT_OK(v);
  EXPECT_EQ(*v, "value");
  EXPECT_EQ(*x->read(kNoT, "/a/b"), "");  // made on the way
  ASSERT_OK(x->mkdir(kNoT, "/a/d"));
  ASSERT_OK(x->mkdir(kNoT, "/a/d"));  // already there: fine
  ASSERT_OK(x->write(kNoT, "/a/A-1_x", ""));
  auto l = x->list(kNoT, "/a");
  ASSERT_OK(l);
  EXPECT_THAT(*l, ElementsAre("A-1_x", "b", "d"));
  EXPECT_THAT(*x->list(kNoT, "/"), ElementsAre("a", "local"));
  ASSERT_OK(x->write(kNoT, "/a/b/c", "again"));
  EXPECT_EQ(*x->read(kNoT, "/a/b/c"), "again");

  ASSERT_OK(x->rm(kNoT, "/a/b"));
  EXPECT_EQ(code_of(x->read(kNoT, "/a/b/c")), ENOENT);
  EXPECT_EQ(code_of(x->read(kNoT, "/a/b")), ENOENT);
  EXPECT_EQ(code_of(x->list(kNoT, "/a/b")), ENOENT);
  EXPECT_THAT(*x->list(kNoT, "/a"), ElementsAre("A-1_x", "d"));
  EXPECT_OK(x->rm(kNoT, "/a/b"));  // missing: not an error
  EXPECT_EQ(code_of(x->rm(kNoT, "/")), EINVAL);
}

TEST_F(SimXenstore, ValuesAreBytesAndSurviveAnotherHandle) {
  auto x = xs(0);
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes += char(i);
  ASSERT_OK(x->write(kNoT, "/bin", bytes));
  auto y = xs(0);
  EXPECT_EQ(*y->read(kNoT, "/bin"), bytes);
}

TEST_F(SimXenstore, RelativePathsAreUnderOurHome) {
  auto dom0 = xs(0);
  make_home(*dom0, 3);
  auto d3 = xs(3);
  ASSERT_OK(d3->write(kNoT, "device/vdispl/0", "x"));
  EXPECT_EQ(*dom0->read(kNoT, "/local/domain/3/device/vdispl/0"), "x");
  EXPECT_EQ(*d3->read(kNoT, "device/vdispl/0"), "x");
}

TEST_F(SimXenstore, BadPathsAreRefused) {
  auto x = xs(0);
  const std::vector<std::string> bads = {
      "",     "/a//b", "/a/",  "/a b",
      "/a.b", "@foo",  "a//b", std::string(pv::kXenstoreAbsPathMax + 1, 'a')};
  for (const std::string& bad : bads) {
    EXPECT_EQ(code_of(x->write(kNoT, bad, "v")), EINVAL) << bad;
    EXPECT_EQ(code_of(x->read(kNoT, bad)), EINVAL) << bad;
    EXPECT_EQ(code_of(x->watch(bad, "t")), EINVAL) << bad;
  }
  // Special paths are for watches only.
  EXPECT_EQ(code_of(x->write(kNoT, "@introduceDomain", "v")), EINVAL);
  EXPECT_EQ(code_of(x->read(kNoT, "@releaseDomain")), EINVAL);
  // A relative path that is too long once under our home.
  EXPECT_EQ(code_of(x->write(kNoT, std::string(pv::kXenstoreAbsPathMax - 5, 'a'), "v")), EINVAL);
  EXPECT_EQ(code_of(x->watch("/a", std::string("t\0u", 3))), EINVAL);
  EXPECT_THAT(*x->list(kNoT, "/"), ElementsAre("local"));
}

TEST_F(SimXenstore, ValuesOverThePayloadMaxAreRefused) {
  auto x = xs(0);
  ASSERT_OK(x->write(kNoT, "/big", std::string(pv::kXenstorePayloadMax, 'v')));
  EXPECT_EQ(x->read(kNoT, "/big")->size(), pv::kXenstorePayloadMax);
  const Status s = x->write(kNoT, "/big", std::string(pv::kXenstorePayloadMax + 1, 'w'));
  EXPECT_EQ(s.code(), E2BIG);
  EXPECT_THAT(s.error().message, HasSubstr("4097"));
  EXPECT_EQ(*x->read(kNoT, "/big"), std::string(pv::kXenstorePayloadMax, 'v'));
  EXPECT_EQ(code_of(x->watch("/big", std::string(pv::kXenstorePayloadMax + 1, 't'))), E2BIG);
}

TEST_F(SimXenstore, ADomUCannotReadOrWriteDom0sNodes) {
  auto dom0 = xs(0);
  make_home(*dom0, 1);
  ASSERT_OK(dom0->write(kNoT, "/secret", "s"));
  auto d1 = xs(1);
  EXPECT_EQ(code_of(d1->read(kNoT, "/secret")), EACCES);
  EXPECT_EQ(code_of(d1->list(kNoT, "/local")), EACCES);
  EXPECT_EQ(code_of(d1->permissions(kNoT, "/secret")), EACCES);
  EXPECT_EQ(code_of(d1->write(kNoT, "/secret", "mine")), EACCES);
  EXPECT_EQ(code_of(d1->write(kNoT, "/new", "x")), EACCES);  // "/" is dom0's
  EXPECT_EQ(code_of(d1->rm(kNoT, "/secret")), EACCES);
  EXPECT_EQ(code_of(d1->mkdir(kNoT, "/secret")), EACCES);
  EXPECT_EQ(code_of(d1->read(kNoT, "/missing")), ENOENT);
  EXPECT_EQ(*dom0->read(kNoT, "/secret"), "s");
  EXPECT_THAT(*dom0->list(kNoT, "/"), ElementsAre("local", "secret"));
}

TEST_F(SimXenstore, ADomUCannotTouchAnotherDomainsHome) {
  auto dom0 = xs(0);
  make_home(*dom0, 1);
  make_home(*dom0, 2);
  auto d2 = xs(2);
  ASSERT_OK(d2->write(kNoT, "data", "two"));
  auto d1 = xs(1);
  EXPECT_EQ(code_of(d1->read(kNoT, "/local/domain/2/data")), EACCES);
  EXPECT_EQ(code_of(d1->write(kNoT, "/local/domain/2/data", "one")), EACCES);
  EXPECT_EQ(code_of(d1->write(kNoT, "/local/domain/2/other", "one")), EACCES);
  EXPECT_EQ(code_of(d1->rm(kNoT, "/local/domain/2")), EACCES);
  EXPECT_EQ(*d2->read(kNoT, "data"), "two");
}

TEST_F(SimXenstore, ADomUOwnsWhatItCreatesInItsHome) {
  auto dom0 = xs(0);
  make_home(*dom0, 1);
  auto d1 = xs(1);
  ASSERT_OK(d1->write(kNoT, "a/b", "v"));
  EXPECT_EQ(*d1->read(kNoT, "a/b"), "v");
  EXPECT_THAT(*d1->list(kNoT, "a"), ElementsAre("b"));
  auto perms = d1->permissions(kNoT, "a/b");
  ASSERT_OK(perms);
  EXPECT_THAT(*perms, ElementsAre(Permission{1, Perm::kNone}));
  // A node dom0 makes in the home keeps the parent's owner.
  ASSERT_OK(dom0->write(kNoT, "/local/domain/1/from0", ""));
  EXPECT_THAT(*dom0->permissions(kNoT, "/local/domain/1/from0"),
              ElementsAre(Permission{1, Perm::kNone}));
  ASSERT_OK(d1->rm(kNoT, "a"));
  EXPECT_EQ(code_of(d1->read(kNoT, "a/b")), ENOENT);
}

TEST_F(SimXenstore, AclEntriesAndTheDefaultGrantAccess) {
  auto dom0 = xs(0);
  ASSERT_OK(dom0->write(kNoT, "/shared", "s"));
  ASSERT_OK(dom0->set_permissions(kNoT, "/shared",
                                  {Permission{0, Perm::kNone}, Permission{1, Perm::kRead},
                                   Permission{2, Perm::kWrite}, Permission{3, Perm::kBoth}}));
  auto d1 = xs(1);
  auto d2 = xs(2);
  auto d3 = xs(3);
  auto d4 = xs(4);
  EXPECT_EQ(*d1->read(kNoT, "/shared"), "s");
  EXPECT_EQ(code_of(d1->write(kNoT, "/shared", "1")), EACCES);
  EXPECT_EQ(code_of(d2->read(kNoT, "/shared")), EACCES);
  EXPECT_OK(d2->write(kNoT, "/shared", "2"));
  EXPECT_OK(d3->write(kNoT, "/shared", "3"));
  EXPECT_EQ(*d3->read(kNoT, "/shared"), "3");
  EXPECT_EQ(code_of(d4->read(kNoT, "/shared")), EACCES);
  // The first entry says what the others may do.
  ASSERT_OK(dom0->set_permissions(kNoT, "/shared", {Permission{0, Perm::kRead}}));
  EXPECT_EQ(*d4->read(kNoT, "/shared"), "3");
  EXPECT_EQ(code_of(d4->write(kNoT, "/shared", "4")), EACCES);
  // A new node copies its parent's permissions; d3 owns what it makes.
  ASSERT_OK(dom0->set_permissions(kNoT, "/shared",
                                  {Permission{0, Perm::kRead}, Permission{3, Perm::kBoth}}));
  ASSERT_OK(d3->write(kNoT, "/shared/c", "x"));
  EXPECT_THAT(*dom0->permissions(kNoT, "/shared/c"),
              ElementsAre(Permission{3, Perm::kRead}, Permission{3, Perm::kBoth}));
}

TEST_F(SimXenstore, OnlyTheOwnerOrDom0SetsPermissions) {
  auto dom0 = xs(0);
  make_home(*dom0, 1);
  auto d1 = xs(1);
  auto d2 = xs(2);
  ASSERT_OK(d1->write(kNoT, "n", "v"));
  ASSERT_OK(dom0->set_permissions(kNoT, "/local/domain/1/n",
                                  {Permission{1, Perm::kNone}, Permission{2, Perm::kBoth}}));
  EXPECT_EQ(code_of(d2->set_permissions(kNoT, "/local/domain/1/n", {Permission{2, Perm::kBoth}})),
            EACCES);
  EXPECT_OK(d2->write(kNoT, "/local/domain/1/n", "from 2"));
  EXPECT_OK(d1->set_permissions(kNoT, "n", {Permission{1, Perm::kRead}}));
  EXPECT_EQ(*d2->read(kNoT, "/local/domain/1/n"), "from 2");
  EXPECT_EQ(code_of(d1->set_permissions(kNoT, "n", {})), EINVAL);
  EXPECT_EQ(code_of(d1->set_permissions(kNoT, "n", {Permission{kDomIdFirstReserved}})), EINVAL);
  EXPECT_EQ(code_of(d1->set_permissions(kNoT, "missing", {Permission{1}})), ENOENT);
  std::vector<Permission> many(1000, Permission{1000, Perm::kRead});
  EXPECT_EQ(code_of(d1->set_permissions(kNoT, "n", many)), E2BIG);
  EXPECT_THAT(*d1->permissions(kNoT, "n"), ElementsAre(Permission{1, Perm::kRead}));
}

TEST_F(SimXenstore, ANewWatchFiresOnceAtOnce) {
  auto x = xs(0);
  EXPECT_TRUE(drain(*x).empty());
  ASSERT_OK(x->watch("/not/there/yet", "tok"));
  pollfd p{x->fd(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 1);
  EXPECT_THAT(drain(*x), ElementsAre(WatchEvent{"/not/there/yet", "tok"}));
  EXPECT_EQ(poll(&p, 1, 0), 0);
  EXPECT_EQ(code_of(x->watch("/not/there/yet", "tok")), EEXIST);
  EXPECT_OK(x->watch("/not/there/yet", "tok2"));
  EXPECT_THAT(drain(*x), ElementsAre(WatchEvent{"/not/there/yet", "tok2"}));
}

TEST_F(SimXenstore, ChangesAtOrBelowTheWatchedPathFire) {
  auto x = xs(0);
  ASSERT_OK(x->watch("/w", "t"));
  drain(*x);
  ASSERT_OK(x->write(kNoT, "/w/a/b", "1"));
  ASSERT_OK(x->write(kNoT, "/w", "2"));
  ASSERT_OK(x->write(kNoT, "/wx", "not below /w"));
  ASSERT_OK(x->write(kNoT, "/other", "no"));
  ASSERT_OK(x->mkdir(kNoT, "/w/c"));
  ASSERT_OK(x->mkdir(kNoT, "/w/c"));  // no change, no event
  EXPECT_THAT(drain(*x), ElementsAre(WatchEvent{"/w/a/b", "t"}, WatchEvent{"/w", "t"},
                                     WatchEvent{"/w/c", "t"}));
  // The root watches everything.
  ASSERT_OK(x->watch("/", "root"));
  drain(*x);
  ASSERT_OK(x->write(kNoT, "/other", "yes"));
  EXPECT_THAT(drain(*x), ElementsAre(WatchEvent{"/other", "root"}));
}

TEST_F(SimXenstore, RemovalFiresWatchesAboveAndBelow) {
  auto x = xs(0);
  ASSERT_OK(x->write(kNoT, "/r/a/b", "1"));
  ASSERT_OK(x->watch("/r", "above"));
  ASSERT_OK(x->watch("/r/a/b", "below"));
  ASSERT_OK(x->watch("/r/a/b/none", "missing"));
  ASSERT_OK(x->watch("/s", "elsewhere"));
  drain(*x);
  ASSERT_OK(x->rm(kNoT, "/r/a"));
  std::vector<WatchEvent> got = drain(*x);
  std::sort(got.begin(), got.end(),
            [](const WatchEvent& a, const WatchEvent& b) { return a.path < b.path; });
  EXPECT_THAT(got, ElementsAre(WatchEvent{"/r/a", "above"}, WatchEvent{"/r/a/b", "below"},
                               WatchEvent{"/r/a/b/none", "missing"}));
  ASSERT_OK(x->rm(kNoT, "/r/a"));  // nothing there: nothing fires
  EXPECT_TRUE(drain(*x).empty());
}

TEST_F(SimXenstore, PermissionsAndPermissionChangesFire) {
  auto x = xs(0);
  ASSERT_OK(x->write(kNoT, "/p", ""));
  ASSERT_OK(x->watch("/p", "t"));
  drain(*x);
  ASSERT_OK(x->set_permissions(kNoT, "/p", {Permission{0, Perm::kRead}}));
  EXPECT_THAT(drain(*x), ElementsAre(WatchEvent{"/p", "t"}));
}

TEST_F(SimXenstore, AWatchOnlyReportsNodesItsDomainMayRead) {
  auto dom0 = xs(0);
  make_home(*dom0, 1);
  ASSERT_OK(dom0->write(kNoT, "/private/x", ""));
  ASSERT_OK(dom0->write(kNoT, "/public", ""));
  ASSERT_OK(dom0->set_permissions(kNoT, "/public", {Permission{0, Perm::kRead}}));
  auto d1 = xs(1);
  ASSERT_OK(d1->watch("/", "all"));
  EXPECT_THAT(drain(*d1), ElementsAre(WatchEvent{"/", "all"}));
  ASSERT_OK(dom0->write(kNoT, "/private/x", "secret"));
  ASSERT_OK(dom0->write(kNoT, "/public/y", "open"));
  ASSERT_OK(dom0->rm(kNoT, "/private"));
  EXPECT_THAT(drain(*d1), ElementsAre(WatchEvent{"/public/y", "all"}));
}

TEST_F(SimXenstore, RelativeWatchesReportRelativePaths) {
  auto dom0 = xs(0);
  make_home(*dom0, 1);
  auto d1 = xs(1);
  ASSERT_OK(d1->watch("device", "rel"));
  EXPECT_THAT(drain(*d1), ElementsAre(WatchEvent{"device", "rel"}));
  ASSERT_OK(dom0->write(kNoT, "/local/domain/1/device/vdispl/0/state", "1"));
  EXPECT_THAT(drain(*d1), ElementsAre(WatchEvent{"device/vdispl/0/state", "rel"}));
  ASSERT_OK(d1->unwatch("device", "rel"));
  ASSERT_OK(dom0->write(kNoT, "/local/domain/1/device/vdispl/0/state", "2"));
  EXPECT_TRUE(drain(*d1).empty());
}

TEST_F(SimXenstore, UnwatchStopsEventsAndRefusesUnknownWatches) {
  auto x = xs(0);
  ASSERT_OK(x->watch("/u", "t"));
  drain(*x);
  EXPECT_EQ(code_of(x->unwatch("/u", "other")), ENOENT);
  EXPECT_EQ(code_of(x->unwatch("/v", "t")), ENOENT);
  ASSERT_OK(x->unwatch("/u", "t"));
  ASSERT_OK(x->write(kNoT, "/u", "1"));
  EXPECT_TRUE(drain(*x).empty());
  EXPECT_EQ(code_of(x->unwatch("/u", "t")), ENOENT);
  // Another handle's watch is not ours to remove.
  auto y = xs(0);
  ASSERT_OK(y->watch("/u", "t"));
  EXPECT_EQ(code_of(x->unwatch("/u", "t")), ENOENT);
}

TEST_F(SimXenstore, AClosedHandlesWatchesGoWithIt) {
  auto x = xs(0);
  auto y = xs(0);
  ASSERT_OK(x->watch("/c", "x"));
  ASSERT_OK(y->watch("/c", "y"));
  EXPECT_EQ(tree().watches.size(), 2u);
  x.reset();
  ASSERT_EQ(tree().watches.size(), 1u);
  EXPECT_EQ(tree().watches[0].token, "y");
}

TEST_F(SimXenstore, AWatchFiresInAnotherProcess) {
  auto x = xs(0);
  ASSERT_OK(x->watch("/shared", "t"));
  drain(*x);
  const pid_t pid = spawn([&] {
    auto c = pv::open_sim_xenstore(path, 0);
    if (!c.ok()) return 90;
    return (*c)->write(kNoT, "/shared/from-child", "hello").ok() ? 0 : 91;
  });
  pollfd p{x->fd(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 5000), 1);
  const int st = wait_for(pid);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << describe_wait(st);
  EXPECT_THAT(drain(*x), ElementsAre(WatchEvent{"/shared/from-child", "t"}));
  EXPECT_EQ(*x->read(kNoT, "/shared/from-child"), "hello");
}

TEST_F(SimXenstore, AKilledWatchersWatchIsDropped) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t pid = spawn([&] {
    auto c = pv::open_sim_xenstore(path, 0);
    if (!c.ok() || !(*c)->watch("/k", "child").ok()) return 90;
    const char b = 'r';
    if (write(ready[1], &b, 1) != 1) return 91;
    pause();
    return 0;
  });
  char b = 0;
  ASSERT_EQ(read(ready[0], &b, 1), 1);
  close(ready[0]);
  close(ready[1]);
  EXPECT_EQ(tree().watches.size(), 1u);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  const int st = wait_for(pid);
  ASSERT_TRUE(WIFSIGNALED(st)) << describe_wait(st);
  auto x = xs(0);
  ASSERT_OK(x->write(kNoT, "/k/now", "1"));
  EXPECT_TRUE(tree().watches.empty());
}

TEST_F(SimXenstore, AFullMailboxGivesASpuriousEventNotALostOne) {
  auto x = xs(0);
  ASSERT_OK(x->watch("/o", "t"));
  drain(*x);
  constexpr int kWrites = 100;  // well past a mailbox's queue
  for (int i = 0; i < kWrites; ++i) {
    ASSERT_OK(x->write(kNoT, "/o/" + std::to_string(i), "v"));
  }
  ASSERT_EQ(tree().watches.size(), 1u);
  EXPECT_TRUE(tree().watches[0].overflow);
  const std::vector<WatchEvent> got = drain(*x);
  ASSERT_FALSE(got.empty());
  EXPECT_LT(got.size(), std::size_t(kWrites));     // some were lost...
  EXPECT_EQ(got.back(), (WatchEvent{"/o", "t"}));  // ...and the watch was told to look again
  EXPECT_EQ(got.front(), (WatchEvent{"/o/0", "t"}));
  EXPECT_FALSE(tree().watches[0].overflow);
  EXPECT_TRUE(drain(*x).empty());
}

TEST_F(SimXenstore, DomainsComeAndGoWithTheirHomes) {
  auto x = xs(0);
  ASSERT_OK(x->watch("@introduceDomain", "in"));
  ASSERT_OK(x->watch("@releaseDomain", "out"));
  EXPECT_THAT(drain(*x), ElementsAre(WatchEvent{"@introduceDomain", "in"},
                                     WatchEvent{"@releaseDomain", "out"}));
  EXPECT_TRUE(*x->domain_exists(0));
  EXPECT_FALSE(*x->domain_exists(5));
  EXPECT_FALSE(*x->domain_exists(kDomIdFirstReserved));
  ASSERT_OK(x->write(kNoT, "/local/domain/5/name", "guest"));
  EXPECT_TRUE(*x->domain_exists(5));
  ASSERT_OK(x->write(kNoT, "/local/domain/5/name", "again"));
  EXPECT_THAT(drain(*x), ElementsAre(WatchEvent{"@introduceDomain", "in"}));
  ASSERT_OK(x->rm(kNoT, "/local/domain/5"));
  EXPECT_FALSE(*x->domain_exists(5));
  EXPECT_THAT(drain(*x), ElementsAre(WatchEvent{"@releaseDomain", "out"}));
}

TEST_F(SimXenstore, ATransactionCommitsItsChangesTogether) {
  auto x = xs(0);
  auto y = xs(0);
  ASSERT_OK(y->watch("/t", "w"));
  drain(*y);
  auto t = x->begin();
  ASSERT_OK(t);
  EXPECT_NE(*t, kNoTransaction);
  ASSERT_OK(x->write(*t, "/t/a", "1"));
  ASSERT_OK(x->write(*t, "/t/b", "2"));
  EXPECT_EQ(*x->read(*t, "/t/a"), "1");
  EXPECT_THAT(*x->list(*t, "/t"), ElementsAre("a", "b"));
  EXPECT_EQ(code_of(x->read(kNoT, "/t/a")), ENOENT);
  EXPECT_EQ(code_of(y->read(kNoT, "/t/a")), ENOENT);
  EXPECT_TRUE(drain(*y).empty());
  ASSERT_OK(x->end(*t, true));
  EXPECT_EQ(*y->read(kNoT, "/t/a"), "1");
  EXPECT_EQ(*y->read(kNoT, "/t/b"), "2");
  EXPECT_THAT(drain(*y), ElementsAre(WatchEvent{"/t/a", "w"}, WatchEvent{"/t/b", "w"}));
  EXPECT_EQ(code_of(x->end(*t, true)), EINVAL);  // gone with its end
}

TEST_F(SimXenstore, ATransactionSeesItsSnapshot) {
  auto x = xs(0);
  ASSERT_OK(x->write(kNoT, "/s", "before"));
  auto t = x->begin();
  ASSERT_OK(t);
  auto y = xs(0);
  ASSERT_OK(y->write(kNoT, "/s", "after"));
  EXPECT_EQ(*x->read(*t, "/s"), "before");
  EXPECT_EQ(*x->read(kNoT, "/s"), "after");
  EXPECT_EQ(x->end(*t, true).code(), EAGAIN);  // what it read changed
}

TEST_F(SimXenstore, AConflictingTransactionFailsWithEagain) {
  auto x = xs(0);
  auto y = xs(0);
  auto t = x->begin();
  ASSERT_OK(t);
  ASSERT_OK(x->write(*t, "/c", "from x"));
  ASSERT_OK(y->write(kNoT, "/d", "from y"));
  const Status s = x->end(*t, true);
  EXPECT_EQ(s.code(), EAGAIN);
  EXPECT_EQ(code_of(y->read(kNoT, "/c")), ENOENT);
  // Again from the start: it goes through.
  t = x->begin();
  ASSERT_OK(t);
  ASSERT_OK(x->write(*t, "/c", "from x"));
  ASSERT_OK(x->end(*t, true));
  EXPECT_EQ(*y->read(kNoT, "/c"), "from x");
}

TEST_F(SimXenstore, WatchesDoNotConflictWithTransactions) {
  auto x = xs(0);
  auto y = xs(0);
  auto t = x->begin();
  ASSERT_OK(t);
  ASSERT_OK(x->write(*t, "/c", "1"));
  ASSERT_OK(y->watch("/c", "w"));
  EXPECT_OK(x->end(*t, true));
}

TEST_F(SimXenstore, AnAbortedTransactionLeavesNoTrace) {
  auto x = xs(0);
  auto t = x->begin();
  ASSERT_OK(t);
  ASSERT_OK(x->write(*t, "/gone", "1"));
  ASSERT_OK(x->rm(*t, "/local"));
  ASSERT_OK(x->end(*t, false));
  EXPECT_EQ(code_of(x->read(kNoT, "/gone")), ENOENT);
  EXPECT_THAT(*x->list(kNoT, "/"), ElementsAre("local"));
}

TEST_F(SimXenstore, TransactionsAreBoundedAndKnown) {
  auto x = xs(0);
  EXPECT_EQ(code_of(x->read(12345, "/")), EINVAL);
  EXPECT_EQ(code_of(x->write(12345, "/a", "")), EINVAL);
  EXPECT_EQ(code_of(x->end(12345, false)), EINVAL);
  std::vector<pv::Transaction> open;
  for (int i = 0; i < 16; ++i) {
    auto t = x->begin();
    ASSERT_OK(t);
    open.push_back(*t);
  }
  EXPECT_EQ(code_of(x->begin()), ENOSPC);
  ASSERT_OK(x->end(open.back(), false));
  EXPECT_OK(x->begin());
  // Another handle's transactions are not ours.
  auto y = xs(0);
  EXPECT_EQ(code_of(y->end(open.front(), true)), EINVAL);
}

TEST_F(SimXenstore, OpenRefusesReservedDomidsAndMissingInstances) {
  EXPECT_EQ(code_of(pv::open_sim_xenstore(path, kDomIdFirstReserved)), EINVAL);
  EXPECT_EQ(code_of(pv::open_sim_xenstore(path + "-none", 0)), ENOENT);
}

// A tree file that is not what the simulator writes.
struct Damaged {
  Damaged(const char* n, std::string b) : name(n), bytes(std::move(b)) {}
  const char* name;
  std::string bytes;
  friend void PrintTo(const Damaged& d, std::ostream* os) { *os << d.name; }
};

class SimXenstoreDamage : public SimXenstore, public ::testing::WithParamInterface<Damaged> {};

TEST_P(SimXenstoreDamage, GivesEuclean) {
  put_file(GetParam().bytes);
  auto x = xs(0);
  ASSERT_NE(x, nullptr);
  auto r = x->read(kNoT, "/");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EUCLEAN) << r.error().describe();
  EXPECT_THAT(r.error().message, HasSubstr("shbuf sim reset --sim " + path));
  EXPECT_EQ(code_of(x->write(kNoT, "/a", "")), EUCLEAN);
  EXPECT_EQ(code_of(x->watch("/a", "t")), EUCLEAN);
  EXPECT_EQ(code_of(x->begin()), EUCLEAN);
  EXPECT_EQ(get_file(), GetParam().bytes);  // left for the reset
}

std::string good_file() {
  pv::sim::Tree t = pv::sim::fresh_tree();
  t.generation = 7;
  t.nodes["/a"] = {{Permission{0, Perm::kRead}}, "value with spaces"};
  t.watches.push_back({12345, 1, true, false, "/local/domain/1/x", "tok"});
  return pv::sim::serialise_tree(t);
}

std::string with_line(const std::string& line) {
  std::string f = good_file();
  f.insert(f.size() - 4, line + "\n");
  return f;
}

INSTANTIATE_TEST_SUITE_P(
    Files, SimXenstoreDamage,
    ::testing::Values(
        Damaged("Empty", std::string()), Damaged("Garbage", std::string("garbage\n")),
        Damaged("BinaryGarbage", std::string("\x00\xff\x01\n\n", 5)),
        Damaged("CutShort", good_file().substr(0, good_file().size() / 2)),
        Damaged("WithoutEndLine", good_file().substr(0, good_file().size() - 4)),
        Damaged("NoNewlineAtTheEnd", good_file().substr(0, good_file().size() - 1)),
        Damaged("AnotherVersion", "shbuf-xenstore 2" + good_file().substr(16)),
        Damaged("HugeGeneration", "shbuf-xenstore 1\ngeneration 99999999999999999999999\nend\n"),
        Damaged("NoRoot", std::string("shbuf-xenstore 1\ngeneration 0\nend\n")),
        Damaged("OrphanNode", with_line("node /x/y n0 =")),
        Damaged("DuplicateNode", with_line("node /a n0 =")),
        Damaged("RelativeNode", with_line("node a n0 =")),
        Damaged("BadPathNode", with_line("node /a//b n0 =")),
        Damaged("HugeValue", with_line("node /b n0 =" + std::string(5000, 'x'))),
        Damaged("BadEscape", with_line("node /b n0 =%G0")),
        Damaged("CutEscape", with_line("node /b n0 =%4")),
        Damaged("BadPerm", with_line("node /b q0 =")),
        Damaged("ReservedDomidPerm", with_line("node /b n32752 =")),
        Damaged("NoPerms", with_line("node /b  =")),
        Damaged("HugePerms", with_line("node /b " + std::string(5000, 'n') + " =")),
        Damaged("ShortNode", with_line("node /b n0")),
        Damaged("ZeroMailbox", with_line("watch 0 0 0 0 /a =t")),
        Damaged("HugeMailbox", with_line("watch 99999999999999999999999 0 0 0 /a =t")),
        Damaged("BadWatchFlag", with_line("watch 1 0 2 0 /a =t")),
        Damaged("RelativeWatchAbroad", with_line("watch 1 1 1 0 /local/domain/2/x =t")),
        Damaged("NulInToken", with_line("watch 1 0 0 0 /a =a%00b")),
        Damaged("HugeToken", with_line("watch 1 0 0 0 /a =" + std::string(5000, 't'))),
        Damaged("UnknownRecord", with_line("nodes 1000000000")),
        Damaged("AfterTheEnd", good_file() + "node /z n0 =\n")),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(SimXenstore, TheDamageCasesStartFromAGoodFile) {
  put_file(good_file());
  auto x = xs(0);
  EXPECT_EQ(*x->read(kNoT, "/a"), "value with spaces");
  // Only the node lines changed: one more node, one more generation.
  ASSERT_OK(x->write(kNoT, "/b", ""));
  EXPECT_EQ(tree().generation, 8u);
  EXPECT_EQ(tree().watches.size(), 1u);
}

TEST_F(SimXenstore, AHugeFileIsDamageNotAnAllocation) {
  put_file(good_file());
  ASSERT_EQ(truncate(file().c_str(), off_t(1) << 40), 0);  // sparse
  auto x = xs(0);
  const Status s = x->write(kNoT, "/a", "");
  EXPECT_EQ(s.code(), EUCLEAN) << s.error().describe();
  EXPECT_THAT(s.error().message, HasSubstr("bytes"));
}

TEST_F(SimXenstore, ASymbolicLinkOrDirectoryIsDamage) {
  ASSERT_EQ(symlink("/etc/passwd", file().c_str()), 0);
  auto x = xs(0);
  EXPECT_EQ(code_of(x->read(kNoT, "/")), EUCLEAN);
  ASSERT_EQ(unlink(file().c_str()), 0);
  ASSERT_EQ(::mkdir(file().c_str(), 0700), 0);
  EXPECT_EQ(code_of(x->read(kNoT, "/")), EUCLEAN);
  ASSERT_EQ(rmdir(file().c_str()), 0);
  EXPECT_OK(x->read(kNoT, "/"));
}

TEST_F(SimXenstore, ResetClearsTheTree) {
  {
    auto x = xs(0);
    ASSERT_OK(x->write(kNoT, "/before", "1"));
  }
  instance.reset();
  ASSERT_OK(SimProvider::reset(path));
  instance = open(0);
  auto x = xs(0);
  EXPECT_EQ(code_of(x->read(kNoT, "/before")), ENOENT);
}

TEST(SimXenstoreTree, WhatIsWrittenParsesBackTheSame) {
  pv::sim::Tree t = pv::sim::fresh_tree();
  t.generation = 42;
  std::string all;
  for (int i = 0; i < 256; ++i) all += char(i);
  t.nodes["/v"] = {{Permission{3, Perm::kBoth}, Permission{4, Perm::kWrite}}, all};
  t.nodes["/v/e"] = {{Permission{0, Perm::kNone}}, ""};
  t.watches.push_back({~0ull, 7, false, true, "@releaseDomain", all.substr(1) + "% ="});
  const std::string bytes = pv::sim::serialise_tree(t);
  auto back = pv::sim::parse_tree(bytes);
  ASSERT_OK(back);
  EXPECT_EQ(*back, t);
  EXPECT_EQ(pv::sim::serialise_tree(*back), bytes);
  auto fresh = pv::sim::parse_tree(pv::sim::serialise_tree(pv::sim::fresh_tree()));
  ASSERT_OK(fresh);
  EXPECT_EQ(fresh->nodes.size(), 3u);
}

}  // namespace
}  // namespace shbuf::simtest
