// Load: many threads and processes creating, attaching and freeing buffers
// at once, and buffers right up to the grant table's limit and one past it.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "shbuf/core/backend_buffer.h"
#include "shbuf/core/frontend_buffer.h"
#include "sim_fixture.h"

namespace shbuf {
namespace {

// One buffer's whole life between two providers; false on any failure.
bool round_trip(Provider& fe, DomId fe_dom, Provider& be, DomId be_dom, AllocMode mode,
                std::size_t n, std::uint8_t mark) {
  FrontendBufferConfig fc;
  fc.backend = be_dom;
  fc.pages = n;
  fc.mode = mode;
  auto f = FrontendBuffer::create(fe, fc);
  if (!f.ok()) return false;
  BackendBufferConfig bc;
  bc.frontend = fe_dom;
  bc.directory_gref = f->directory_gref();
  bc.pages = n;
  bc.mode = mode;
  auto b = BackendBuffer::attach(be, bc);
  if (!b.ok()) return false;
  if (mode == AllocMode::kBackend && !f->map().ok()) return false;
  f->memory()[(n - 1) * kPageSize] = std::byte{mark};
  const bool seen = b->memory()[(n - 1) * kPageSize] == std::byte{mark};
  if (mode == AllocMode::kBackend && !f->unmap().ok()) return false;
  return seen && b->detach().ok() && f->free().ok();
}

using Load = testing::SimPair;

TEST_F(Load, ManyThreadsAtOnce) {
  constexpr int kThreads = 8, kRounds = 40;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      const std::size_t sizes[] = {1, 100, 1023, 1025, 2500};
      for (int r = 0; r < kRounds; ++r) {
        const AllocMode mode = (r + t) % 2 ? AllocMode::kBackend : AllocMode::kFrontend;
        if (!round_trip(*fe, kFrontendDom, *be, kBackendDom, mode, sizes[rng() % 5],
                        static_cast<std::uint8_t>(r))) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  expect_clean();
}

TEST_F(Load, ManyProcessesAtOnce) {
  constexpr int kProcesses = 4, kRounds = 30;
  std::vector<pid_t> children;
  for (int c = 0; c < kProcesses; ++c) {
    const pid_t pid = fork();
    if (pid == 0) {
      // Each child is a frontend domain of its own, served by a backend
      // attachment of its own as domain 0.
      const DomId me = static_cast<DomId>(10 + c);
      SimOptions o;
      o.path = path;
      o.domid = me;
      auto f = SimProvider::open(o);
      o.domid = kBackendDom;
      auto b = SimProvider::open(o);
      if (!f.ok() || !b.ok()) _exit(2);
      int bad = 0;
      for (int r = 0; r < kRounds; ++r) {
        const AllocMode mode = r % 2 ? AllocMode::kBackend : AllocMode::kFrontend;
        bad += !round_trip(**f, me, **b, kBackendDom, mode, 1 + (r * 397) % 3000,
                           static_cast<std::uint8_t>(r));
      }
      f->reset();
      b->reset();
      _exit(bad == 0 ? 0 : 1);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  }
  expect_clean();
}

// A table of 2 frames holds 1024 entries, 8 of them reserved: 1016 grants.
class GrantLimit : public testing::SimPair {
 protected:
  void SetUp() override {
    SimPair::SetUp();
    fe.reset();
    be.reset();
    (void)SimProvider::reset(path);
    std::filesystem::remove_all(path);
    fe = open_dom(kFrontendDom, 2);
    be = open_dom(kBackendDom, 2);
  }
};

TEST_F(GrantLimit, FrontendAllocatedUpToTheLimitAndOnePast) {
  // 1015 buffer pages + 1 directory page = 1016 grants: exactly the table.
  EXPECT_TRUE(round_trip(*fe, kFrontendDom, *be, kBackendDom, AllocMode::kFrontend, 1015, 1));
  FrontendBufferConfig fc;
  fc.backend = kBackendDom;
  fc.pages = 1016;
  auto f = FrontendBuffer::create(*fe, fc);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().code, ENOSPC) << f.error().describe();
  EXPECT_NE(f.error().message.find("sharing 1016 buffer pages"), std::string::npos)
      << f.error().message;
  expect_clean();
}

TEST_F(GrantLimit, BackendAllocatedUpToTheLimitAndOnePast) {
  EXPECT_TRUE(round_trip(*fe, kFrontendDom, *be, kBackendDom, AllocMode::kBackend, 1016, 2));
  FrontendBufferConfig fc;
  fc.backend = kBackendDom;
  fc.pages = 1017;
  fc.mode = AllocMode::kBackend;
  auto f = FrontendBuffer::create(*fe, fc);
  ASSERT_TRUE(f.ok());
  BackendBufferConfig bc;
  bc.frontend = kFrontendDom;
  bc.directory_gref = f->directory_gref();
  bc.pages = 1017;
  bc.mode = AllocMode::kBackend;
  auto b = BackendBuffer::attach(*be, bc);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code, ENOSPC) << b.error().describe();
  ASSERT_TRUE(f->free().ok());
  expect_clean();
}

}  // namespace
}  // namespace shbuf
