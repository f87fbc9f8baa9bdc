// A malicious backend in backend-allocated mode writes whatever it likes
// into the frontend's directory: the frontend's map() must fail cleanly and
// leave nothing behind, whatever it finds.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "shbuf/core/frontend_buffer.h"
#include "sim_fixture.h"

namespace shbuf {
namespace {

class HostileBackend : public testing::SimPair {
 protected:
  // The frontend's buffer of n pages; the backend grants n pages of its own
  // (to `grantee`, `access`) and maps the frontend's directory to write it.
  void start(std::size_t n, DomId grantee = kFrontendDom, Access access = Access::kReadWrite) {
    FrontendBufferConfig fc;
    fc.backend = kBackendDom;
    fc.pages = n;
    fc.mode = AllocMode::kBackend;
    auto f = FrontendBuffer::create(*fe, fc);
    ASSERT_TRUE(f.ok()) << f.error().describe();
    frontend = std::move(f).value();
    auto pages = be->share(grantee, n, access);
    ASSERT_TRUE(pages.ok()) << pages.error().describe();
    backend_pages = std::move(pages).value();
    // The directory grefs are consecutive in this simulator only by chance;
    // the backend follows the links as a real one would.
    std::vector<Gref> dir = {frontend.directory_gref()};
    auto first = be->map(kFrontendDom, dir, Access::kReadWrite);
    ASSERT_TRUE(first.ok());
    for (std::size_t i = 1; i < dir_pages(n); ++i) {
      const std::byte* prev = i == 1 ? first->memory().data() : nullptr;
      ASSERT_NE(prev, nullptr) << "tests here use at most two directory pages";
      dir.push_back(load_shared_gref(prev));
    }
    auto m = be->map(kFrontendDom, dir, Access::kReadWrite);
    ASSERT_TRUE(m.ok()) << m.error().describe();
    directory = std::move(m).value();
    ASSERT_TRUE(fill_page_directory(directory.memory(), backend_pages.grefs()).ok());
  }
  void set_gref(std::size_t index, Gref value) {
    const std::size_t page = index / kGrefsPerDirPage, slot = index % kGrefsPerDirPage;
    store_shared_gref(directory.memory().data() + page * kPageSize + 4 + slot * 4, value);
  }
  void expect_map_refused(const std::string& says) {
    Status s = frontend.map();
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().message.find(says), std::string::npos) << s.error().describe();
    EXPECT_FALSE(frontend.mapped());
    EXPECT_TRUE(frontend.memory().empty());
    finish();
  }
  void finish() {
    directory = Mapping();
    backend_pages = Share();
    EXPECT_TRUE(frontend.free().ok());
    expect_clean();
  }
  void TearDown() override {
    directory = Mapping();
    backend_pages = Share();
    frontend = FrontendBuffer();
    SimPair::TearDown();
  }
  FrontendBuffer frontend;
  Share backend_pages;
  Mapping directory;
};

TEST_F(HostileBackend, HonestBackendMaps) {
  start(1500);
  ASSERT_TRUE(frontend.map().ok());
  frontend.memory()[1499 * kPageSize] = std::byte{9};
  EXPECT_EQ(backend_pages.memory()[1499 * kPageSize], std::byte{9});
  ASSERT_TRUE(frontend.unmap().ok());
  finish();
}

TEST_F(HostileBackend, GrefZeroIsRefused) {
  start(1500);
  set_gref(1200, 0);
  expect_map_refused("buffer gref 1200");
}

TEST_F(HostileBackend, DuplicateGrefsAreRefused) {
  start(1500);
  set_gref(1400, backend_pages.grefs()[3]);
  expect_map_refused("appears twice, at buffer pages 3 and 1400");
}

TEST_F(HostileBackend, GrefsNotGrantedToTheFrontendAreRefused) {
  start(20, /*grantee=*/5);
  expect_map_refused("granted to domain 5");
}

TEST_F(HostileBackend, GrefsNeverGrantedAreRefused) {
  start(20);
  set_gref(10, 60000);
  expect_map_refused("60000");
}

TEST_F(HostileBackend, ReadOnlyGrantsAreRefused) {
  start(20, kFrontendDom, Access::kReadOnly);
  expect_map_refused("read-only");
}

TEST_F(HostileBackend, RewrittenLinksAreRefused) {
  start(1500);
  store_shared_gref(directory.memory().data(), 4242);
  expect_map_refused("links to gref 4242");
}

// The backend rewrites the directory while the frontend copies it out:
// every map() either maps grefs the backend really granted it or fails.
TEST_F(HostileBackend, DirectoryRewrittenWhileTheFrontendReadsIt) {
  const std::size_t n = 1500;
  start(n);
  std::atomic<bool> stop{false};
  std::thread vandal([&] {
    std::uint32_t x = 7;
    while (!stop.load(std::memory_order_relaxed)) {
      x = x * 1664525u + 1013904223u;
      const std::size_t index = (x >> 8) % n;
      switch ((x >> 28) % 4) {
        case 0:
          set_gref(index, 0);
          break;
        case 1:
          set_gref(index, x);
          break;
        default:
          set_gref(index, backend_pages.grefs()[index]);
          break;
      }
    }
  });
  for (int i = 0; i < 300; ++i) {
    Status s = frontend.map();
    if (s.ok()) {
      for (std::size_t k = 0; k < n; ++k) {
        ASSERT_EQ(frontend.buffer_grefs()[k], backend_pages.grefs()[k]);
      }
      ASSERT_TRUE(frontend.unmap().ok());
    } else {
      EXPECT_FALSE(frontend.mapped());
    }
  }
  stop = true;
  vandal.join();
  finish();
}

}  // namespace
}  // namespace shbuf
