// A malicious frontend controls every word of its directory: the backend
// must refuse every broken chain with an error, never hang, never map more
// than N buffer pages; whether it reads the directory by grant copy or by
// mapping each page.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "shbuf/core/backend_buffer.h"
#include "sim_fixture.h"

namespace shbuf {
namespace {

class HostileFrontend : public testing::SimPair,
                        public ::testing::WithParamInterface<DirectoryRead> {
 protected:
  // Grants n buffer pages and d directory pages, and writes a well-formed
  // chain that tests then break.
  void build(std::size_t n, std::size_t d, Access dir_access = Access::kReadOnly) {
    auto b = fe->share(kBackendDom, n, Access::kReadWrite);
    ASSERT_TRUE(b.ok()) << b.error().describe();
    buffer = std::move(b).value();
    auto dir = fe->share(kBackendDom, d, dir_access);
    ASSERT_TRUE(dir.ok()) << dir.error().describe();
    directory = std::move(dir).value();
    for (std::size_t p = 0; p < d; ++p) {
      set(p, 0, p + 1 < d ? directory.grefs()[p + 1] : kDirListEnd);
      for (std::size_t i = 0; i < kGrefsPerDirPage; ++i) {
        const std::size_t k = p * kGrefsPerDirPage + i;
        set(p, 1 + i, k < n ? buffer.grefs()[k] : 0);
      }
    }
  }
  void set(std::size_t page, std::size_t word, Gref value) {
    store_shared_gref(directory.memory().data() + page * kPageSize + word * 4, value);
  }
  Result<BackendBuffer> attach(std::size_t n, AllocMode mode = AllocMode::kFrontend) {
    BackendBufferConfig bc;
    bc.frontend = kFrontendDom;
    bc.directory_gref = directory.grefs()[0];
    bc.pages = n;
    bc.mode = mode;
    bc.directory_read = GetParam();
    return BackendBuffer::attach(*be, bc);
  }
  void expect_refused(std::size_t n, int code, const std::string& says,
                      AllocMode mode = AllocMode::kFrontend) {
    const auto before = be->stats();
    auto r = attach(n, mode);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, code) << r.error().describe();
    EXPECT_NE(r.error().message.find(says), std::string::npos) << r.error().message;
    const auto after = be->stats();
    EXPECT_EQ(after.map_calls - after.unmap_calls, before.map_calls - before.unmap_calls);
    buffer = Share();
    directory = Share();
    expect_clean();
  }
  void TearDown() override {
    buffer = Share();
    directory = Share();
    SimPair::TearDown();
  }
  Share buffer;
  Share directory;
};

TEST_P(HostileFrontend, WellFormedChainAttaches) {
  build(2047, 3);
  auto r = attach(2047);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->memory().size(), 2047 * kPageSize);
}

TEST_P(HostileFrontend, LoopIsRefused) {
  build(3000, 3);
  set(1, 0, directory.grefs()[0]);  // page 1 links back to page 0
  expect_refused(3000, ELOOP, "loops");
}

TEST_P(HostileFrontend, SelfLoopOnTheLastPossiblePageIsRefused) {
  build(3000, 3);
  set(0, 0, directory.grefs()[0]);
  expect_refused(3000, ELOOP, "loops");
}

TEST_P(HostileFrontend, EarlyEndIsRefused) {
  build(3000, 3);
  set(1, 0, kDirListEnd);
  expect_refused(3000, EBADMSG, "ends early");
}

TEST_P(HostileFrontend, ChainThatDoesNotEndIsRefused) {
  build(3000, 3);
  set(2, 0, buffer.grefs()[0]);
  expect_refused(3000, EBADMSG, "does not end");
}

TEST_P(HostileFrontend, FewerGrefsThanClaimedAreRefused) {
  // The frontend claims 1500 pages but its one-page directory holds 1023.
  build(1023, 1);
  expect_refused(1500, EBADMSG, "ends early");
}

TEST_P(HostileFrontend, BufferGrefZeroIsRefused) {
  build(1500, 2);
  set(1, 7, 0);
  expect_refused(1500, EINVAL, "is 0");
}

TEST_P(HostileFrontend, LinkToAGrefNotGrantedIsRefused) {
  build(1500, 2);
  set(0, 0, 60000);
  auto r = attach(1500);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("gref 60000"), std::string::npos) << r.error().message;
}

TEST_P(HostileFrontend, BufferGrefNotGrantedIsRefused) {
  build(10, 1);
  set(0, 5, 60001);
  auto r = attach(10);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("mapping the frontend's 10 pages"), std::string::npos)
      << r.error().message;
  buffer = Share();
  directory = Share();
  expect_clean();
}

TEST_P(HostileFrontend, ReadOnlyDirectoryInBackendAllocModeIsRefused) {
  build(10, 1, Access::kReadOnly);
  for (std::size_t i = 1; i <= 10; ++i) set(0, i, 0);
  auto r = attach(10, AllocMode::kBackend);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("directory page 0"), std::string::npos) << r.error().message;
  buffer = Share();
  directory = Share();
  expect_clean();
}

// Another thread rewrites the directory while the backend walks it: every
// attach either succeeds with grefs the frontend granted or fails cleanly.
TEST_P(HostileFrontend, DirectoryRewrittenDuringTheWalk) {
  const std::size_t n = 3000;
  build(n, 3);
  std::atomic<bool> stop{false};
  std::thread vandal([&] {
    std::uint32_t x = 1;
    while (!stop.load(std::memory_order_relaxed)) {
      x = x * 1103515245u + 12345u;
      const std::size_t page = (x >> 8) % 3;
      const std::size_t word = (x >> 12) % 1024;
      Gref value;
      switch ((x >> 24) % 4) {
        case 0:
          value = 0;
          break;
        case 1:
          value = directory.grefs()[(x >> 4) % 3];
          break;
        case 2:
          value = buffer.grefs()[(x >> 3) % n];
          break;
        default:
          value = x;
          break;
      }
      set(page, word, value);
    }
  });
  for (int i = 0; i < 300; ++i) {
    const auto before = be->stats();
    auto r = attach(n);
    const auto after = be->stats();
    EXPECT_LE(after.pages_mapped - before.pages_mapped, n + 3);
    if (r.ok()) {
      EXPECT_EQ(r->memory().size(), n * kPageSize);
    } else {
      EXPECT_FALSE(r.error().message.empty());
    }
  }
  stop = true;
  vandal.join();
  buffer = Share();
  directory = Share();
  expect_clean();
}

INSTANTIATE_TEST_SUITE_P(DirectoryRead, HostileFrontend,
                         ::testing::Values(DirectoryRead::kCopy, DirectoryRead::kMap),
                         [](const ::testing::TestParamInfo<DirectoryRead>& info) {
                           return info.param == DirectoryRead::kCopy ? "Copy" : "Map";
                         });

}  // namespace
}  // namespace shbuf
