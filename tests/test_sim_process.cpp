// The sim provider across real processes: aliasing, read-only protection,
// crash cleanup after SIGKILL, a lock holder's death, and the CLI.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "grant/sim/instance.h"
#include "run_process.h"
#include "shbuf/grant/sim.h"
#include "test_sim_util.h"

namespace shbuf::simtest {
namespace {

// A forked child maps private pages of its own at `addresses` (where it must
// have nothing), runs `drop` (0 when that did what it should, else the exit
// status to report) and touches its pages, which fault should they be gone.
void expect_child_keeps_its_pages(const std::vector<void*>& addresses,
                                  const std::function<int()>& drop) {
  const pid_t pid = spawn([&] {
    std::vector<volatile char*> own;
    for (void* at : addresses) {
      void* p = mmap(at, 4096, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (p != at) return 91;
      own.push_back(static_cast<volatile char*>(p));
    }
    if (const int r = drop(); r != 0) return r;
    for (volatile char* p : own) *p = 1;
    return 0;
  });
  const int st = wait_for(pid);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << describe_wait(st);
}

using ::testing::HasSubstr;

class SimProcess : public SimTest {
 protected:
  // A child that grants 3 pages as domain 2, then takes the instance lock
  // and keeps it until killed. Returns once it holds the lock.
  pid_t spawn_lock_holder() {
    Pipe up;
    const pid_t pid = spawn([&] {
      auto child = child_open(2);
      auto s = child->share(0, 3, Access::kReadWrite);
      auto in = sim::Instance::open(path, false, 0);
      if (!in.ok() || !(*in)->lock().ok()) return 91;
      up.put("l", 1);
      pause();
      return 0;
    });
    char c;
    EXPECT_TRUE(up.get(&c, 1));
    return pid;
  }

  // In a child: attaches as `domid`, or exits 90.
  std::unique_ptr<SimProvider> child_open(DomId domid) {
    SimOptions o;
    o.path = path;
    o.domid = domid;
    auto p = SimProvider::open(o);
    if (!p.ok()) _exit(90);
    return std::move(p).value();
  }
};

TEST_F(SimProcess, ChildWritesParentReadsThroughItsShare) {
  auto d0 = open(0);
  auto share = d0->share(1, 4, Access::kReadWrite);
  ASSERT_TRUE(share.ok());
  const std::vector<Gref> grefs(share->grefs().begin(), share->grefs().end());
  const pid_t pid = spawn([&] {
    auto d1 = child_open(1);
    auto map = d1->map(0, grefs, Access::kReadWrite);
    if (!map.ok()) return 91;
    std::memcpy(map->memory().data() + 3 * 4096, "from the child", 15);
    return map->unmap().ok() ? 0 : 92;
  });
  const int st = wait_for(pid);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << describe_wait(st);
  EXPECT_STREQ(reinterpret_cast<const char*>(share->memory().data() + 3 * 4096), "from the child");
  EXPECT_TRUE(share->end().ok());
  expect_clean();
}

TEST_F(SimProcess, ParentMapsWhatTheChildShared) {
  auto d0 = open(0);
  Pipe up, down;
  const pid_t pid = spawn([&] {
    auto d1 = child_open(1);
    auto share = d1->share(0, 2, Access::kReadOnly);
    if (!share.ok()) return 91;
    std::memcpy(share->memory().data() + 4096, "child page", 11);
    Gref g[2] = {share->grefs()[0], share->grefs()[1]};
    up.put(g, sizeof g);
    char c;
    if (!down.get(&c, 1)) return 92;
    return share->end().ok() ? 0 : 93;
  });
  Gref g[2];
  ASSERT_TRUE(up.get(g, sizeof g));
  {
    auto map = d0->map(1, g, Access::kReadOnly);
    ASSERT_TRUE(map.ok()) << map.error().describe();
    EXPECT_STREQ(reinterpret_cast<const char*>(map->memory().data() + 4096), "child page");
    auto rw = d0->map(1, g, Access::kReadWrite);
    EXPECT_EQ(rw.error().code, EINVAL);
  }
  down.put("x", 1);
  const int st = wait_for(pid);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << describe_wait(st);
  expect_clean();
}

TEST_F(SimProcess, ReadOnlyMapFaultsOnWrite) {
  auto d0 = open(0);
  auto share = d0->share(1, 1, Access::kReadOnly);
  ASSERT_TRUE(share.ok());
  share->memory()[0] = std::byte{0x42};
  const std::vector<Gref> grefs(share->grefs().begin(), share->grefs().end());
  Pipe up;
  const pid_t pid = spawn([&] {
    auto d1 = child_open(1);
    auto map = d1->map(0, grefs, Access::kReadOnly);
    if (!map.ok()) return 91;
    const std::byte seen = map->memory()[0];
    up.put(&seen, 1);
    // Sanitizers catch SIGSEGV themselves; report it through our own exit.
    struct sigaction sa {};
    sa.sa_handler = [](int) { _exit(77); };
    sigaction(SIGSEGV, &sa, nullptr);
    *reinterpret_cast<volatile std::byte*>(map->memory().data()) = std::byte{1};
    return 0;  // not reached: the write faults
  });
  std::byte seen{};
  ASSERT_TRUE(up.get(&seen, 1));
  EXPECT_EQ(seen, std::byte{0x42});
  const int st = wait_for(pid);
  EXPECT_TRUE((WIFEXITED(st) && WEXITSTATUS(st) == 77) ||
              (WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV))
      << describe_wait(st);
  EXPECT_EQ(share->memory()[0], std::byte{0x42});
  // The dead child's mapping is released: end succeeds.
  EXPECT_TRUE(share->end().ok());
  expect_clean();
}

TEST_F(SimProcess, KilledMapperReleasesItsMappings) {
  auto d0 = open(0);
  auto share = d0->share(1, 32, Access::kReadWrite);
  ASSERT_TRUE(share.ok());
  const std::vector<Gref> grefs(share->grefs().begin(), share->grefs().end());
  Pipe up;
  const pid_t pid = spawn([&] {
    auto d1 = child_open(1);
    auto map = d1->map(0, grefs, Access::kReadWrite);
    if (!map.ok()) return 91;
    auto map2 = d1->map(0, std::span<const Gref>(grefs).subspan(0, 1), Access::kReadOnly);
    up.put("r", 1);
    pause();
    return 0;
  });
  char c;
  ASSERT_TRUE(up.get(&c, 1));
  EXPECT_EQ(status().mappings.size(), 2u);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  wait_for(pid);
  // end() runs into the dead mapper's records and reaps them itself.
  EXPECT_TRUE(share->end().ok());
  const SimStatus s = status();
  EXPECT_TRUE(s.mappings.empty());
  for (const auto& a : s.attachments) EXPECT_NE(a.pid, pid);
  expect_clean();
}

TEST_F(SimProcess, KilledGranterIsReclaimedByOrdinaryOperationsWithinASecond) {
  auto d0 = open(0);
  Pipe up;
  const pid_t pid = spawn([&] {
    auto d1 = child_open(1);
    auto share = d1->share(0, 100, Access::kReadWrite);
    if (!share.ok()) return 91;
    std::memset(share->memory().data(), 0xee, 100 * 4096);
    up.put("r", 1);
    pause();
    return 0;
  });
  char c;
  ASSERT_TRUE(up.get(&c, 1));
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  wait_for(pid);
  // Only ordinary operations: the rate-limited liveness check must notice.
  const auto t0 = std::chrono::steady_clock::now();
  bool gone = false;
  while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1)) {
    auto s = d0->share(0, 1, Access::kReadOnly);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(s->end().ok());
    // Peek without forcing a sweep: read the state through a raw instance.
    auto in = sim::Instance::open(path, false, 0);
    ASSERT_TRUE(in.ok());
    ASSERT_TRUE((*in)->lock().ok());
    const int di = (*in)->find_domain(1);
    const bool attached = di >= 0 && (*in)->dom(std::uint16_t(di)).attached > 0;
    (*in)->unlock();
    if (!attached) {
      gone = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(gone) << "the dead granter was not reaped within a second";
  expect_clean();
  EXPECT_EQ(mem_bytes(1), 0);
}

TEST_F(SimProcess, KilledGranterWhoseGrantsAreMappedLeavesThemPending) {
  auto d0 = open(0);
  Pipe up;
  const pid_t pid = spawn([&] {
    auto d1 = child_open(1);
    auto share = d1->share(0, 8, Access::kReadOnly);
    if (!share.ok()) return 91;
    std::memset(share->memory().data(), 0x33, 8 * 4096);
    Gref g[8];
    std::copy(share->grefs().begin(), share->grefs().end(), g);
    up.put(g, sizeof g);
    pause();
    return 0;
  });
  Gref g[8];
  ASSERT_TRUE(up.get(g, sizeof g));
  auto map = d0->map(1, std::span<const Gref>(g, 5), Access::kReadOnly);
  ASSERT_TRUE(map.ok());
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  wait_for(pid);
  d0->sweep();
  SimStatus s = status();
  ASSERT_EQ(s.grants.size(), 5u);
  for (const auto& gr : s.grants) EXPECT_TRUE(gr.pending);
  for (const auto& d : s.domains) {
    if (d.domid == 1) {
      EXPECT_FALSE(d.alive);
      EXPECT_EQ(d.pending, 5u);
      EXPECT_EQ(d.frames_in_use, 5u);
    }
  }
  // The pages stay valid for the live mapper.
  EXPECT_EQ(map->memory()[4 * 4096 + 17], std::byte{0x33});
  EXPECT_TRUE(map->unmap().ok());
  expect_clean();
  EXPECT_EQ(mem_bytes(1), 0);
}

TEST_F(SimProcess, DeathWhileHoldingTheLockIsRepaired) {
  auto d0 = open(0);
  auto d1 = open(1);
  auto share = d0->share(1, 4, Access::kReadWrite);
  ASSERT_TRUE(share.ok());
  const pid_t pid = spawn_lock_holder();
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  wait_for(pid);
  auto map = d1->map(0, share->grefs(), Access::kReadWrite);
  ASSERT_TRUE(map.ok()) << map.error().describe();
  EXPECT_EQ(status().grants.size(), 4u);  // the child's 3 were reclaimed
  EXPECT_TRUE(map->unmap().ok());
  EXPECT_TRUE(share->end().ok());
  expect_clean();
}

// The holder dies while another process waits for the lock (not before it
// asks): the waiter takes the lock over and repairs the state.
TEST_F(SimProcess, DeathOfTheHolderWhileAnotherWaitsIsRepaired) {
  auto d0 = open(0);
  auto share = d0->share(1, 2, Access::kReadWrite);
  ASSERT_TRUE(share.ok());
  const pid_t pid = spawn_lock_holder();
  std::thread killer([pid] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    kill(pid, SIGKILL);
  });
  auto more = d0->share(1, 1, Access::kReadWrite);  // waits until the holder is gone
  killer.join();
  wait_for(pid);
  ASSERT_TRUE(more.ok()) << more.error().describe();
  EXPECT_EQ(status().grants.size(), 3u);  // the child's 3 were reclaimed
  EXPECT_TRUE(more->end().ok());
  EXPECT_TRUE(share->end().ok());
  expect_clean();
}

TEST_F(SimProcess, ForkedCopyOfAProviderRefusesToAct) {
  auto d0 = open(0);
  auto share = d0->share(1, 2, Access::kReadWrite);
  ASSERT_TRUE(share.ok());
  const pid_t pid = spawn([&] {
    auto s = d0->share(1, 1, Access::kReadWrite);
    if (s.ok() || s.error().code != EPERM) return 91;
    if (s.error().message.find("forked child") == std::string::npos) return 92;
    // Destroying the inherited handle must not end the parent's grants.
    Status e = share->end();
    return e.code() == EPERM ? 0 : 93;
  });
  const int st = wait_for(pid);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << describe_wait(st);
  EXPECT_EQ(status().grants.size(), 2u);
  // The child did not inherit the share's pages (as with gntalloc).
  share->memory()[0] = std::byte{9};
  EXPECT_TRUE(share->end().ok());
}

// A forked child has none of the windows onto the page files, nor the pages
// of the parent's shares and mappings (as with gntalloc and gntdev): dropping
// its copies of the providers, or ending and unmapping the inherited handles
// (which refuses, EPERM), leaves what it has mapped at those addresses alone.
TEST_F(SimProcess, ForkedCopiesLeaveTheChildsOwnPagesAlone) {
  auto d0 = open(0);
  auto d1 = open(1);
  auto share = d0->share(1, 1, Access::kReadWrite);
  ASSERT_TRUE(share.ok()) << share.error().describe();
  auto map = d1->map(0, share->grefs(), Access::kReadWrite);
  ASSERT_TRUE(map.ok()) << map.error().describe();
  // The ranges where this process maps the whole of domain 0's page file.
  std::vector<void*> whole;
  std::istringstream maps(shbuf::testing::slurp("/proc/self/maps"));
  for (std::string line; std::getline(maps, line);) {
    std::uintptr_t start = 0;
    std::uintptr_t end = 0;
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR, &start, &end) != 2) continue;
    if (line.ends_with("/dom0.mem") && end - start == std::uintptr_t{1024} * 512 * 4096) {
      whole.push_back(reinterpret_cast<void*>(start));
    }
  }
  ASSERT_EQ(whole.size(), 2u);  // the sharer's, the mapper's
  expect_child_keeps_its_pages({share->memory().data(), map->memory().data()}, [&] {
    if (share->end().code() != EPERM) return 92;
    return map->unmap().code() == EPERM ? 0 : 93;
  });
  expect_child_keeps_its_pages(whole, [&] {
    d1.reset();
    d0.reset();
    return 0;
  });
  EXPECT_TRUE(map->unmap().ok());
  EXPECT_TRUE(share->end().ok());
  expect_clean();
}

TEST_F(SimProcess, FaultEnvironmentReachesAChildProcess) {
  auto d0 = open(0);
  auto share = d0->share(1, 3, Access::kReadOnly);
  ASSERT_TRUE(share.ok());
  const std::vector<Gref> grefs(share->grefs().begin(), share->grefs().end());
  const pid_t pid = spawn([&] {
    setenv(kSimFaultEnv, "map:2:ETIMEDOUT", 1);
    auto d1 = child_open(1);
    auto m1 = d1->map(0, grefs, Access::kReadOnly);
    auto m2 = d1->map(0, grefs, Access::kReadOnly);
    if (!m1.ok()) return 91;
    if (m2.ok() || m2.error().code != ETIMEDOUT) return 92;
    return 0;
  });
  const int st = wait_for(pid);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << describe_wait(st);
  EXPECT_TRUE(share->end().ok());
}

TEST_F(SimProcess, CliStatusJsonAndReset) {
  using shbuf::testing::run_process;
  auto d0 = open(0);
  auto d1 = open(1);
  auto share = d0->share(1, 3, Access::kReadOnly);
  ASSERT_TRUE(share.ok());
  auto map = d1->map(0, share->grefs(), Access::kReadOnly);
  ASSERT_TRUE(map.ok());

  auto r = run_process({SHBUF_BIN, "sim", "status", "--sim", path, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"path\":\"" + path + "\""));
  EXPECT_THAT(r.out, HasSubstr("{\"granter\":0,\"gref\":8,\"grantee\":1,\"read_only\":true,"
                               "\"map_count\":1,\"pending\":false}"));
  EXPECT_THAT(r.out, HasSubstr("{\"mapper\":1,\"granter\":0,\"gref\":8,\"count\":3,"
                               "\"writable\":false,\"pid\":" +
                               std::to_string(getpid()) + "}"));
  EXPECT_EQ(r.out.back(), '\n');

  r = run_process({SHBUF_BIN, "sim", "status", "--sim", path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("8-10"));
  EXPECT_THAT(r.out, HasSubstr("granted"));

  r = run_process({SHBUF_BIN, "sim", "status"}, "", {"SHBUF_SIM=" + path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(path));

  r = run_process({SHBUF_BIN, "sim", "reset", "--sim", path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_process({SHBUF_BIN, "sim", "status", "--sim", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("shbuf: error: no simulator instance at " + path));
  EXPECT_EQ(shbuf::testing::count_lines(r.err), 1u);
  EXPECT_EQ(map->unmap().code(), ESTALE);

  r = run_process({SHBUF_BIN, "sim", "status", "--bogus"});
  EXPECT_EQ(r.exit_code, 2);
  r = run_process({SHBUF_BIN, "sim"});
  EXPECT_EQ(r.exit_code, 2);
}

}  // namespace
}  // namespace shbuf::simtest
