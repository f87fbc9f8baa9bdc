// Frontend and backend buffers over the simulator: both modes, data shared
// both ways, misuse refused, and nothing left behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "attach_calls.h"
#include "shbuf/core/backend_buffer.h"
#include "shbuf/core/frontend_buffer.h"
#include "sim_fixture.h"

namespace shbuf {
namespace {

// The simulator pair, and the setup most tests share: a frontend buffer
// created for the backend domain, and the configuration that attaches the
// backend to it.
class Buffers : public testing::SimPair {
 protected:
  Result<FrontendBuffer> share(std::size_t pages, AllocMode mode = AllocMode::kFrontend) {
    FrontendBufferConfig fc;
    fc.backend = kBackendDom;
    fc.pages = pages;
    fc.mode = mode;
    return FrontendBuffer::create(*fe, fc);
  }

  static BackendBufferConfig attach_config(const FrontendBuffer& f) {
    BackendBufferConfig bc;
    bc.frontend = kFrontendDom;
    bc.directory_gref = f.directory_gref();
    bc.pages = f.pages();
    bc.mode = f.mode();
    return bc;
  }
};

void fill(std::span<std::byte> m, std::uint32_t seed) {
  auto* w = reinterpret_cast<std::uint32_t*>(m.data());
  for (std::size_t i = 0; i < m.size() / 4; ++i) w[i] = seed ^ static_cast<std::uint32_t>(i);
}

bool holds(std::span<const std::byte> m, std::uint32_t seed) {
  const auto* w = reinterpret_cast<const std::uint32_t*>(m.data());
  for (std::size_t i = 0; i < m.size() / 4; ++i) {
    if (w[i] != (seed ^ static_cast<std::uint32_t>(i))) return false;
  }
  return true;
}

TEST_F(Buffers, BothModesShareDataBothWays) {
  for (AllocMode mode : {AllocMode::kFrontend, AllocMode::kBackend}) {
    for (std::size_t n : {1u, 1023u, 1024u, 1025u, 16384u}) {
      SCOPED_TRACE(std::string(to_string(mode)) + " " + std::to_string(n));
      auto f = share(n, mode);
      ASSERT_TRUE(f.ok()) << f.error().describe();
      EXPECT_EQ(f->directory_pages(), dir_pages(n));
      EXPECT_NE(f->directory_gref(), kDirListEnd);

      auto b = BackendBuffer::attach(*be, attach_config(*f));
      ASSERT_TRUE(b.ok()) << b.error().describe();
      if (mode == AllocMode::kBackend) {
        EXPECT_TRUE(f->memory().empty());
        ASSERT_TRUE(f->map().ok());
      }
      ASSERT_EQ(f->memory().size(), n * kPageSize);
      ASSERT_EQ(b->memory().size(), n * kPageSize);
      EXPECT_TRUE(std::equal(f->buffer_grefs().begin(), f->buffer_grefs().end(),
                             b->buffer_grefs().begin(), b->buffer_grefs().end()));
      fill(f->memory(), 0x1234);
      EXPECT_TRUE(holds(b->memory(), 0x1234));
      fill(b->memory(), 0xabcd);
      EXPECT_TRUE(holds(f->memory(), 0xabcd));
      if (mode == AllocMode::kBackend) {
        ASSERT_TRUE(f->unmap().ok());
      }
      ASSERT_TRUE(b->detach().ok());
      ASSERT_TRUE(f->free().ok());
      expect_clean();
    }
  }
}

TEST_F(Buffers, FrontendRefusesBadRequestsAndMisuse) {
  FrontendBufferConfig fc;
  fc.backend = kBackendDom;
  fc.pages = 0;
  auto zero = FrontendBuffer::create(*fe, fc);
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.error().code, EINVAL);
  fc.pages = 100;
  fc.max_pages = 99;
  auto big = FrontendBuffer::create(*fe, fc);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code, E2BIG);

  auto f = share(100);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->map().code(), EINVAL);  // the frontend allocated it
  EXPECT_EQ(f->unmap().code(), EINVAL);

  auto g = share(100, AllocMode::kBackend);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->unmap().code(), EINVAL);  // not mapped
  // The backend never filled the directory: its grefs are 0.
  Status unfilled = g->map();
  EXPECT_EQ(unfilled.code(), EINVAL);
  EXPECT_NE(unfilled.error().message.find("buffer gref 0"), std::string::npos)
      << unfilled.error().message;
  auto b = BackendBuffer::attach(*be, attach_config(*g));
  ASSERT_TRUE(b.ok()) << b.error().describe();
  ASSERT_TRUE(g->map().ok());
  EXPECT_EQ(g->map().code(), EALREADY);
  ASSERT_TRUE(g->unmap().ok());
  ASSERT_TRUE(b->detach().ok());
  ASSERT_TRUE(f->free().ok());
  ASSERT_TRUE(g->free().ok());
  EXPECT_FALSE(g->valid());
  EXPECT_EQ(g->map().code(), EINVAL);  // freed
  expect_clean();
}

// Grant copy and one mapping per page read the same directory; grant copy
// makes no mapping for it: D copies (2D when writing back) and one map of the
// buffer, against D + 1 maps and D unmaps.
TEST_F(Buffers, DirectoryReadByCopyOrByMapAgrees) {
  for (AllocMode mode : {AllocMode::kFrontend, AllocMode::kBackend}) {
    for (std::size_t n : {1u, 1023u, 1024u, 3000u}) {
      auto f = share(n, mode);
      ASSERT_TRUE(f.ok()) << f.error().describe();
      const std::uint64_t d = dir_pages(n);
      for (DirectoryRead way : {DirectoryRead::kAuto, DirectoryRead::kCopy, DirectoryRead::kMap}) {
        SCOPED_TRACE(std::string(to_string(mode)) + " " + std::to_string(n) + " way " +
                     std::to_string(int(way)));
        BackendBufferConfig bc = attach_config(*f);
        bc.directory_read = way;
        const ProviderStats before = be->stats();
        auto b = BackendBuffer::attach(*be, bc);
        ASSERT_TRUE(b.ok()) << b.error().describe();
        const ProviderStats after = be->stats();
        const std::uint64_t maps = after.map_calls - before.map_calls;
        const std::uint64_t unmaps = after.unmap_calls - before.unmap_calls;
        const std::uint64_t copies = after.copy_calls - before.copy_calls;
        testing::expect_attach_calls(way, mode, d, maps, unmaps, copies);
        if (mode == AllocMode::kBackend) {
          ASSERT_TRUE(f->map().ok());
        }
        EXPECT_TRUE(std::equal(f->buffer_grefs().begin(), f->buffer_grefs().end(),
                               b->buffer_grefs().begin(), b->buffer_grefs().end()));
        fill(f->memory(), 0x5a5a ^ static_cast<std::uint32_t>(n));
        EXPECT_TRUE(holds(b->memory(), 0x5a5a ^ static_cast<std::uint32_t>(n)));
        if (mode == AllocMode::kBackend) {
          ASSERT_TRUE(f->unmap().ok());
        }
        ASSERT_TRUE(b->detach().ok());
      }
      ASSERT_TRUE(f->free().ok());
      expect_clean();
    }
  }
}

// A backend whose kernel has no grant copy: kAuto maps the directory pages,
// kCopy fails with EOPNOTSUPP and leaves nothing; kAuto also falls back when
// the first copy says EOPNOTSUPP.
TEST_F(Buffers, WithoutGrantCopyTheDirectoryIsMapped) {
  SimOptions o;
  o.path = path;
  o.domid = kBackendDom;
  o.grant_copy = false;
  auto plain = SimProvider::open(o);
  ASSERT_TRUE(plain.ok()) << plain.error().describe();
  for (AllocMode mode : {AllocMode::kFrontend, AllocMode::kBackend}) {
    SCOPED_TRACE(to_string(mode));
    auto f = share(2000, mode);
    ASSERT_TRUE(f.ok()) << f.error().describe();
    BackendBufferConfig bc = attach_config(*f);
    const ProviderStats before = (*plain)->stats();
    auto b = BackendBuffer::attach(**plain, bc);
    ASSERT_TRUE(b.ok()) << b.error().describe();
    EXPECT_EQ((*plain)->stats().copy_calls, before.copy_calls);
    EXPECT_GE((*plain)->stats().map_calls - before.map_calls, 2u);
    ASSERT_TRUE(b->detach().ok());

    bc.directory_read = DirectoryRead::kCopy;
    auto refused = BackendBuffer::attach(**plain, bc);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, EOPNOTSUPP) << refused.error().describe();
    EXPECT_NE(refused.error().message.find("directory page 0"), std::string::npos)
        << refused.error().message;

    bc.directory_read = DirectoryRead::kAuto;
    be->inject_fault(SimFaultOp::kCopy, 1, EOPNOTSUPP);
    const ProviderStats be0 = be->stats();
    auto fallback = BackendBuffer::attach(*be, bc);
    ASSERT_TRUE(fallback.ok()) << fallback.error().describe();
    EXPECT_EQ(be->stats().copy_calls - be0.copy_calls, 1u) << "only the refused copy";
    if (mode == AllocMode::kFrontend) {
      EXPECT_TRUE(std::equal(f->buffer_grefs().begin(), f->buffer_grefs().end(),
                             fallback->buffer_grefs().begin(), fallback->buffer_grefs().end()));
    }
    ASSERT_TRUE(fallback->detach().ok());
    be->clear_faults();
    ASSERT_TRUE(f->free().ok());
  }
  plain->reset();
  expect_clean();
}

TEST_F(Buffers, BackendRefusesBadRequests) {
  BackendBufferConfig bc;
  bc.frontend = kFrontendDom;
  bc.directory_gref = 0;
  bc.pages = 1;
  EXPECT_EQ(BackendBuffer::attach(*be, bc).error().code, EINVAL);
  bc.directory_gref = 9;
  bc.pages = 0;
  EXPECT_EQ(BackendBuffer::attach(*be, bc).error().code, EINVAL);
  bc.pages = 10;
  bc.max_pages = 5;
  EXPECT_EQ(BackendBuffer::attach(*be, bc).error().code, E2BIG);
  bc.max_pages = kDefaultMaxPages;
  // A gref the frontend never granted.
  auto never = BackendBuffer::attach(*be, bc);
  ASSERT_FALSE(never.ok());
  EXPECT_NE(never.error().message.find("directory page 0 (gref 9)"), std::string::npos)
      << never.error().message;
  expect_clean();
}

// No exception crosses the library: a huge N with a huge limit is walked as far
// as the frontend's directory really goes, and refused there.
TEST_F(Buffers, AttachingAHugeNFailsCleanly) {
  for (AllocMode mode : {AllocMode::kFrontend, AllocMode::kBackend}) {
    SCOPED_TRACE(to_string(mode));
    auto f = share(1, mode);
    ASSERT_TRUE(f.ok()) << f.error().describe();
    BackendBufferConfig bc = attach_config(*f);
    bc.pages = std::size_t{1} << 40;
    bc.max_pages = std::numeric_limits<std::size_t>::max();
    auto b = BackendBuffer::attach(*be, bc);
    ASSERT_FALSE(b.ok());
    // Frontend-allocated: the one page carries one gref, then a 0 slot;
    // backend-allocated: no grant table holds 2^40 pages.
    EXPECT_EQ(b.error().code, mode == AllocMode::kFrontend ? EINVAL : ENOSPC)
        << b.error().describe();
  }
  expect_clean();
}

TEST_F(Buffers, AMovedFromBufferIsEmpty) {
  for (AllocMode mode : {AllocMode::kFrontend, AllocMode::kBackend}) {
    SCOPED_TRACE(to_string(mode));
    auto f = share(3, mode);
    ASSERT_TRUE(f.ok()) << f.error().describe();
    auto b = BackendBuffer::attach(*be, attach_config(*f));
    ASSERT_TRUE(b.ok()) << b.error().describe();

    FrontendBuffer f2(std::move(*f));
    BackendBuffer b2(std::move(*b));
    EXPECT_EQ(f->pages(), 0u);
    EXPECT_FALSE(f->valid());
    EXPECT_TRUE(f->buffer_grefs().empty());
    EXPECT_EQ(b->pages(), 0u);
    EXPECT_FALSE(b->valid());
    EXPECT_TRUE(b->buffer_grefs().empty());
    EXPECT_EQ(f2.pages(), 3u);
    EXPECT_EQ(b2.pages(), 3u);
    EXPECT_EQ(b2.buffer_grefs().size(), 3u);
    ASSERT_TRUE(b2.detach().ok());
    ASSERT_TRUE(f2.free().ok());
  }
  expect_clean();
}

TEST_F(Buffers, FreeWhileTheBackendMapsKeepsThePagesUntilItUnmaps) {
  auto f = share(8);
  ASSERT_TRUE(f.ok());
  auto b = BackendBuffer::attach(*be, attach_config(*f));
  ASSERT_TRUE(b.ok());
  fill(b->memory(), 77);
  Status freed = f->free();
  EXPECT_EQ(freed.code(), EBUSY);
  EXPECT_FALSE(f->valid());
  EXPECT_EQ(fe->pending_pages(), 8u);
  // The backend's view still holds its data: nothing was reused under it.
  auto g = share(8);
  ASSERT_TRUE(g.ok());
  fill(g->memory(), 5);
  EXPECT_TRUE(holds(b->memory(), 77));
  ASSERT_TRUE(b->detach().ok());
  EXPECT_EQ(fe->pending_pages(), 0u);
  ASSERT_TRUE(g->free().ok());
  expect_clean();
}

TEST_F(Buffers, DestructorsReleaseEverything) {
  for (AllocMode mode : {AllocMode::kFrontend, AllocMode::kBackend}) {
    auto f = share(2000, mode);
    ASSERT_TRUE(f.ok());
    {
      auto b = BackendBuffer::attach(*be, attach_config(*f));
      ASSERT_TRUE(b.ok());
      if (mode == AllocMode::kBackend) {
        ASSERT_TRUE(f->map().ok());
      }
      // Backend first: its destructor detaches; then the frontend's.
      BackendBuffer moved = std::move(b).value();
      EXPECT_TRUE(moved.valid());
    }
    { FrontendBuffer moved = std::move(f).value(); }
    expect_clean();
  }
}

}  // namespace
}  // namespace shbuf
