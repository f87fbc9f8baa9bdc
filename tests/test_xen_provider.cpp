// The xen grant provider. Without Xen it must fail to open with a clear
// ENODEV; with /dev/xen/gntalloc and /dev/xen/gntdev (dom0, as booted by
// tests/xen/run.sh) it shares pages with its own domain and maps them back,
// and must refuse exactly what the real devices refuse. The refusal tests are
// named like the simulator's, which must give the same errno.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "attach_calls.h"
#include "shbuf/core/backend_buffer.h"
#include "shbuf/core/frontend_buffer.h"
#include "shbuf/core/provider.h"
#include "shbuf/grant/xen.h"

namespace shbuf {
namespace {

constexpr const char* kGntallocLimit = "/sys/module/xen_gntalloc/parameters/limit";
constexpr const char* kGntdevLimit = "/sys/module/xen_gntdev/parameters/limit";

bool have_grant_devices() {
  return ::access("/dev/xen/gntalloc", F_OK) == 0 && ::access("/dev/xen/gntdev", F_OK) == 0;
}

std::optional<long> read_number(const char* path) {
  std::ifstream in(path);
  long v = 0;
  if (!(in >> v)) return std::nullopt;
  return v;
}

bool write_number(const char* path, long v) {
  std::ofstream out(path);
  out << v;
  out.flush();
  return static_cast<bool>(out);
}

// Sets gntalloc's device-wide limit for one test and puts the old one back.
class GntallocLimit {
 public:
  explicit GntallocLimit(long limit) : old_(read_number(kGntallocLimit)) {
    ok_ = old_.has_value() && write_number(kGntallocLimit, limit);
  }
  ~GntallocLimit() {
    if (ok_) write_number(kGntallocLimit, *old_);
  }
  bool ok() const { return ok_; }

 private:
  std::optional<long> old_;
  bool ok_ = false;
};

// A provider of another kind, to check what only the xen one answers.
class OtherProvider final : public Provider {
 public:
  std::string_view name() const override { return "other"; }
  DomId self() const override { return 0; }
  ProviderFeatures features() const override { return {}; }
  std::size_t pending_pages() override { return 0; }

 protected:
  Result<Share> do_share(DomId, std::size_t, Access) override { return make_error(ENOSYS, "-"); }
  Status do_end(Share&) override { return {}; }
  Result<Mapping> do_map(DomId, std::span<const Gref>, Access) override {
    return make_error(ENOSYS, "-");
  }
  Status do_unmap(Mapping&) override { return {}; }
};

TEST(XenProviderWithoutXen, OpenFailsWithEnodevNamingTheMissingDevice) {
  if (have_grant_devices()) GTEST_SKIP() << "the Xen grant devices exist here";
  auto p = open_xen_provider();
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ENODEV) << p.error().message;
  if (xen_provider_built()) {
    EXPECT_NE(p.error().message.find("/dev/xen/gnt"), std::string::npos) << p.error().message;
    EXPECT_NE(p.error().message.find("module"), std::string::npos) << p.error().message;
  } else {
    EXPECT_NE(p.error().message.find("libxen-dev"), std::string::npos) << p.error().message;
  }
}

TEST(XenProviderWithoutXen, OpenByNameFailsTheSameWay) {
  if (have_grant_devices()) GTEST_SKIP() << "the Xen grant devices exist here";
  ProviderOptions options;
  options.name = "xen";
  auto p = open_provider(options);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ENODEV) << p.error().message;
}

TEST(XenProviderWithoutXen, DeviceCallsRefuseOtherProviders) {
  OtherProvider other;
  auto calls = xen_device_calls(other);
  ASSERT_FALSE(calls.ok());
  EXPECT_EQ(calls.error().code, EINVAL);
  EXPECT_NE(calls.error().message.find("other"), std::string::npos) << calls.error().message;
}

// Everything below runs in a domain with the grant devices; dom0 maps its own
// grants, so this domain is both ends.
class XenProvider : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_grant_devices()) {
      GTEST_SKIP() << "needs /dev/xen/gntalloc and /dev/xen/gntdev: run in a Xen domain with "
                      "xen-gntalloc and xen-gntdev loaded (tests/xen/run.sh boots one)";
    }
    auto p = open_xen_provider();
    ASSERT_TRUE(p.ok()) << p.error().describe();
    provider_ = std::move(p).value();
    self_ = provider_->self();
  }

  XenDeviceCalls calls() const {
    auto c = xen_device_calls(*provider_);
    EXPECT_TRUE(c.ok());
    return c.ok() ? *c : XenDeviceCalls{};
  }

  // A page of ours, granted to ourselves, with `fill` in its first byte.
  Share share_one(Access access, std::uint8_t fill = 0, std::optional<DomId> peer = {}) {
    auto s = provider_->share(peer.value_or(self_), 1, access);
    EXPECT_TRUE(s.ok()) << s.error().describe();
    if (!s.ok()) return Share{};
    s->memory()[0] = std::byte{fill};
    return std::move(s).value();
  }

  std::unique_ptr<Provider> provider_;
  DomId self_ = 0;
};

TEST_F(XenProvider, KnowsItsDomainAndTheDeviceLimits) {
  EXPECT_EQ(provider_->name(), "xen");
  std::ifstream caps("/proc/xen/capabilities");
  std::string line;
  std::getline(caps, line);
  if (line.find("control_d") != std::string::npos) {
    EXPECT_EQ(self_, 0) << "dom0 is domain 0";
  }
  const auto gntdev_limit = read_number(kGntdevLimit);
  ASSERT_TRUE(gntdev_limit.has_value());
  EXPECT_EQ(provider_->features().max_map_batch, static_cast<std::size_t>(*gntdev_limit));
  EXPECT_EQ(provider_->features().max_share_batch, 0u);
}

TEST_F(XenProvider, HonoursAnExplicitDomainId) {
  XenOptions options;
  options.self = 7;
  auto p = open_xen_provider(options);
  ASSERT_TRUE(p.ok()) << p.error().describe();
  EXPECT_EQ((*p)->self(), 7);
  options.self = kDomIdSelf;
  auto bad = open_xen_provider(options);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, EINVAL);
}

TEST_F(XenProvider, SharedPagesAliasBothWays) {
  const XenDeviceCalls before = calls();
  auto s = provider_->share(self_, 3, Access::kReadWrite);
  ASSERT_TRUE(s.ok()) << s.error().describe();
  ASSERT_EQ(s->pages(), 3u);
  for (std::byte b : s->memory()) ASSERT_EQ(b, std::byte{0}) << "a fresh share must be zeroed";

  auto m = provider_->map(self_, s->grefs(), Access::kReadWrite);
  ASSERT_TRUE(m.ok()) << m.error().describe();
  ASSERT_EQ(m->pages(), 3u);
  ASSERT_NE(m->memory().data(), s->memory().data());
  for (std::size_t page = 0; page < 3; ++page) {
    s->memory()[page * 4096 + 1] = std::byte(0x10 + page);
    m->memory()[page * 4096 + 4095] = std::byte(0x20 + page);
  }
  for (std::size_t page = 0; page < 3; ++page) {
    EXPECT_EQ(m->memory()[page * 4096 + 1], std::byte(0x10 + page)) << "page " << page;
    EXPECT_EQ(s->memory()[page * 4096 + 4095], std::byte(0x20 + page)) << "page " << page;
  }
  EXPECT_TRUE(m->unmap().ok());
  EXPECT_TRUE(s->end().ok());

  const XenDeviceCalls after = calls();
  EXPECT_EQ(after.share_pages - before.share_pages, 1u);
  EXPECT_EQ(after.map_refs - before.map_refs, 1u);
  EXPECT_EQ(after.unmap - before.unmap, 1u);
  EXPECT_EQ(after.unshare - before.unshare, 1u);
}

TEST_F(XenProvider, MapsManyGrefsInOneCall) {
  auto s = provider_->share(self_, 257, Access::kReadWrite);
  ASSERT_TRUE(s.ok()) << s.error().describe();
  for (std::size_t page = 0; page < 257; ++page) {
    std::memcpy(s->memory().data() + page * 4096, &page, sizeof(page));
  }
  const XenDeviceCalls before = calls();
  auto m = provider_->map(self_, s->grefs(), Access::kReadOnly);
  ASSERT_TRUE(m.ok()) << m.error().describe();
  EXPECT_EQ(calls().map_refs - before.map_refs, 1u) << "257 grefs must take one gntdev call";
  for (std::size_t page = 0; page < 257; ++page) {
    std::size_t seen = 0;
    std::memcpy(&seen, m->memory().data() + page * 4096, sizeof(seen));
    ASSERT_EQ(seen, page) << "page " << page << " maps the wrong frame";
  }
}

TEST_F(XenProvider, SharesAndMaps64MiBInOneCallEach) {
  // 64 MiB of pages plus a page directory for them (1022 grefs per page).
  constexpr std::size_t kPages = 16384 + 17;
  const auto limit = read_number(kGntallocLimit);
  if (!limit || *limit < static_cast<long>(kPages)) {
    GTEST_SKIP() << "needs xen_gntalloc.limit >= " << kPages << " (tests/xen/run.sh sets it)";
  }
  const XenDeviceCalls before = calls();
  auto s = provider_->share(self_, kPages, Access::kReadWrite);
  ASSERT_TRUE(s.ok()) << s.error().describe();
  auto m = provider_->map(self_, s->grefs(), Access::kReadOnly);
  ASSERT_TRUE(m.ok()) << m.error().describe();
  for (std::size_t page = 0; page < kPages; page += 997) {
    s->memory()[page * 4096 + page % 4096] = std::byte(page);
    ASSERT_EQ(m->memory()[page * 4096 + page % 4096], std::byte(page)) << "page " << page;
  }
  const XenDeviceCalls after = calls();
  EXPECT_EQ(after.share_pages - before.share_pages, 1u);
  EXPECT_EQ(after.map_refs - before.map_refs, 1u);
}

TEST_F(XenProvider, RefusesNeverGrantedGref) {
  // Far beyond anything handed out: gntalloc allocates grefs from the bottom.
  const Gref never = 0x00fffff0;
  auto m = provider_->map(self_, std::vector<Gref>{never}, Access::kReadOnly);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, EINVAL);
  EXPECT_NE(m.error().message.find("gref " + std::to_string(never)), std::string::npos)
      << m.error().message;
  EXPECT_NE(m.error().message.find("never granted"), std::string::npos) << m.error().message;

  // A gref whose share ended is no longer granted either.
  Gref ended = 0;
  {
    Share s = share_one(Access::kReadWrite);
    ASSERT_TRUE(s.valid());
    ended = s.grefs()[0];
  }
  m = provider_->map(self_, std::vector<Gref>{ended}, Access::kReadWrite);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, EINVAL) << m.error().message;
}

TEST_F(XenProvider, RefusesWritableMapOfReadOnlyGrant) {
  Share s = share_one(Access::kReadOnly, 0x42);
  ASSERT_TRUE(s.valid());
  auto m = provider_->map(self_, s.grefs(), Access::kReadWrite);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, EINVAL);
  EXPECT_NE(m.error().message.find("read-only"), std::string::npos) << m.error().message;
  EXPECT_NE(m.error().message.find("gref " + std::to_string(s.grefs()[0])), std::string::npos)
      << m.error().message;
}

TEST_F(XenProvider, MapsReadOnlyGrantReadOnly) {
  Share s = share_one(Access::kReadOnly, 0x42);
  ASSERT_TRUE(s.valid());
  auto m = provider_->map(self_, s.grefs(), Access::kReadOnly);
  ASSERT_TRUE(m.ok()) << m.error().describe();
  EXPECT_EQ(m->memory()[0], std::byte{0x42});
  s.memory()[1] = std::byte{0x43};
  EXPECT_EQ(m->memory()[1], std::byte{0x43});
}

TEST_F(XenProvider, RefusesUnknownDomain) {
  Share s = share_one(Access::kReadWrite);
  ASSERT_TRUE(s.valid());
  auto m = provider_->map(999, s.grefs(), Access::kReadOnly);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, EINVAL) << "gntdev reports a missing domain as EINVAL";
  EXPECT_NE(m.error().message.find("domain 999"), std::string::npos) << m.error().message;
}

TEST_F(XenProvider, RefusesGrefGrantedToAnotherDomain) {
  Share s = share_one(Access::kReadWrite, 0, 5);
  ASSERT_TRUE(s.valid());
  auto m = provider_->map(self_, s.grefs(), Access::kReadOnly);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, EINVAL);
  EXPECT_NE(m.error().message.find("another domain"), std::string::npos) << m.error().message;
}

TEST_F(XenProvider, RefusesManyGrefsWhenOneIsBad) {
  auto s = provider_->share(self_, 4, Access::kReadWrite);
  ASSERT_TRUE(s.ok()) << s.error().describe();
  std::vector<Gref> grefs(s->grefs().begin(), s->grefs().end());
  grefs[2] = 0x00fffff0;
  auto m = provider_->map(self_, grefs, Access::kReadWrite);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, EINVAL);
  EXPECT_NE(m.error().message.find("4 grefs"), std::string::npos) << m.error().message;
  // All or nothing: the good grefs are not left mapped, so they map again.
  auto again = provider_->map(self_, s->grefs(), Access::kReadWrite);
  EXPECT_TRUE(again.ok()) << again.error().describe();
}

TEST_F(XenProvider, RefusesShareBeyondLimit) {
  const auto limit = read_number(kGntallocLimit);
  ASSERT_TRUE(limit.has_value()) << "cannot read " << kGntallocLimit;
  auto s = provider_->share(self_, static_cast<std::size_t>(*limit) + 1, Access::kReadWrite);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ENOSPC);
  EXPECT_NE(s.error().message.find("xen_gntalloc.limit=" + std::to_string(*limit)),
            std::string::npos)
      << s.error().message;
}

TEST_F(XenProvider, RefusesShareBeyondLimitAcrossCalls) {
  GntallocLimit limit(8);
  if (!limit.ok()) GTEST_SKIP() << "cannot write " << kGntallocLimit << " (needs root)";
  auto a = provider_->share(self_, 5, Access::kReadWrite);
  ASSERT_TRUE(a.ok()) << a.error().describe();
  auto b = provider_->share(self_, 5, Access::kReadWrite);
  ASSERT_FALSE(b.ok()) << "the limit is for the whole device, not per call";
  EXPECT_EQ(b.error().code, ENOSPC);
  EXPECT_NE(b.error().message.find("xen_gntalloc.limit=8"), std::string::npos) << b.error().message;
  EXPECT_TRUE(a->end().ok());
  auto c = provider_->share(self_, 8, Access::kReadWrite);
  EXPECT_TRUE(c.ok()) << "ending a share gives its pages back: " << c.error().describe();
}

TEST_F(XenProvider, EndWhileMappedLeavesThePeersViewIntact) {
  Share s = share_one(Access::kReadWrite, 0x5a);
  ASSERT_TRUE(s.valid());
  auto m = provider_->map(self_, s.grefs(), Access::kReadWrite);
  ASSERT_TRUE(m.ok()) << m.error().describe();

  // gntalloc cannot refuse: it drops our view and the kernel defers revoking
  // the grant until the peer unmaps.
  const Status ended = s.end();
  EXPECT_TRUE(ended.ok()) << ended.error().describe();
  EXPECT_FALSE(s.valid());
  EXPECT_EQ(provider_->pending_pages(), 0u) << "the kernel's deferred pages are invisible";
  EXPECT_EQ(m->memory()[0], std::byte{0x5a});
  m->memory()[1] = std::byte{0x5b};
  EXPECT_EQ(m->memory()[1], std::byte{0x5b});

  // The deferred page no longer counts against gntalloc's limit.
  {
    GntallocLimit limit(2);
    if (limit.ok()) {
      auto two = provider_->share(self_, 2, Access::kReadWrite);
      EXPECT_TRUE(two.ok()) << two.error().describe();
    }
  }
  EXPECT_TRUE(m->unmap().ok());
}

TEST_F(XenProvider, IsSafeToUseFromSeveralThreads) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 50;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        auto s = provider_->share(self_, 2, Access::kReadWrite);
        if (!s.ok()) {
          ++failures;
          continue;
        }
        s->memory()[4096] = std::byte(t);
        auto m = provider_->map(self_, s->grefs(), Access::kReadOnly);
        if (!m.ok() || m->memory()[4096] != std::byte(t)) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  const ProviderStats stats = provider_->stats();
  EXPECT_EQ(stats.share_calls, static_cast<std::uint64_t>(kThreads * kRounds));
  EXPECT_EQ(calls().map_refs, static_cast<std::uint64_t>(kThreads * kRounds));
}

// Attaching N pages costs one device map per directory page (each mapped,
// copied out and unmapped on its own) plus one batched map of the buffer.
// Timings under emulation mean nothing; these counts are the figure.
// What attaching costs in calls into the devices: the directory read by grant
// copy (one copy per directory page, two when the backend writes grefs back)
// or mapped one page at a time, then the buffer mapped in one call.
TEST_F(XenProvider, BackendAttachCountsDeviceCalls) {
  for (DirectoryRead way : {DirectoryRead::kCopy, DirectoryRead::kMap}) {
    const char* how = way == DirectoryRead::kCopy ? "copy" : "map";
    for (AllocMode mode : {AllocMode::kFrontend, AllocMode::kBackend}) {
      for (std::size_t n :
           {std::size_t{1}, std::size_t{1023}, std::size_t{1024}, std::size_t{16384}}) {
        SCOPED_TRACE(std::string(how) + " " + to_string(mode) + " " + std::to_string(n));
        FrontendBufferConfig fc;
        fc.backend = self_;
        fc.pages = n;
        fc.mode = mode;
        auto f = FrontendBuffer::create(*provider_, fc);
        ASSERT_TRUE(f.ok()) << f.error().describe();
        BackendBufferConfig bc;
        bc.frontend = self_;
        bc.directory_gref = f->directory_gref();
        bc.pages = n;
        bc.mode = mode;
        bc.directory_read = way;
        const XenDeviceCalls before = calls();
        auto b = BackendBuffer::attach(*provider_, bc);
        ASSERT_TRUE(b.ok()) << b.error().describe();
        const XenDeviceCalls after = calls();
        const std::uint64_t d = dir_pages(n);
        const std::uint64_t maps = after.map_refs - before.map_refs;
        const std::uint64_t unmaps = after.unmap - before.unmap;
        const std::uint64_t copies = after.copy - before.copy;
        const std::uint64_t shares = after.share_pages - before.share_pages;
        std::printf(
            "device calls to attach %s %zu pages (%llu directory pages, read by %s): "
            "map %llu, unmap %llu, copy %llu, share %llu\n",
            to_string(mode), n, static_cast<unsigned long long>(d), how,
            static_cast<unsigned long long>(maps), static_cast<unsigned long long>(unmaps),
            static_cast<unsigned long long>(copies), static_cast<unsigned long long>(shares));
        EXPECT_EQ(shares, mode == AllocMode::kFrontend ? 0u : 1u);
        testing::expect_attach_calls(way, mode, d, maps, unmaps, copies);
        if (mode == AllocMode::kBackend) {
          ASSERT_TRUE(f->map().ok());
        }
        const std::uint64_t fill = 0x0123456789abcdefULL ^ n;
        std::memcpy(f->memory().data() + (n - 1) * 4096, &fill, sizeof fill);
        EXPECT_EQ(std::memcmp(b->memory().data() + (n - 1) * 4096, &fill, sizeof fill), 0);
        if (mode == AllocMode::kBackend) {
          ASSERT_TRUE(f->unmap().ok());
        }
        ASSERT_TRUE(b->detach().ok());
        ASSERT_TRUE(f->free().ok());
      }
    }
  }
}

TEST_F(XenProvider, GrantCopiesFromAndIntoAGrantedPage) {
  ASSERT_TRUE(provider_->features().grant_copy);
  Share s = share_one(Access::kReadWrite);
  ASSERT_TRUE(s.valid());
  for (std::size_t i = 0; i < 4096; ++i) s.memory()[i] = std::byte(i * 13 + 5);
  const Gref g = s.grefs()[0];
  const XenDeviceCalls before = calls();
  std::vector<std::byte> page(4096);
  Status got = provider_->copy_from(self_, g, 0, page);
  ASSERT_TRUE(got.ok()) << got.error().describe();
  EXPECT_EQ(std::memcmp(page.data(), s.memory().data(), 4096), 0);
  std::vector<std::byte> part(300);
  ASSERT_TRUE(provider_->copy_from(self_, g, 3796, part).ok());
  EXPECT_EQ(std::memcmp(part.data(), s.memory().data() + 3796, 300), 0);
  const char hello[] = "hello";
  Status put = provider_->copy_to(self_, g, 8, std::as_bytes(std::span(hello)));
  ASSERT_TRUE(put.ok()) << put.error().describe();
  EXPECT_EQ(std::memcmp(s.memory().data() + 8, hello, sizeof hello), 0);
  EXPECT_EQ(s.memory()[7], std::byte(7 * 13 + 5)) << "only the bytes given change";
  const XenDeviceCalls after = calls();
  EXPECT_EQ(after.copy - before.copy, 3u);
  EXPECT_EQ(after.map_refs - before.map_refs, 0u);
}

TEST_F(XenProvider, RefusesGrantCopiesXenRefuses) {
  std::vector<std::byte> buf(64);
  auto expect_refused = [](Status st, const std::string& text) {
    ASSERT_FALSE(st.ok()) << text;
    EXPECT_EQ(st.code(), EINVAL) << st.error().describe();
    EXPECT_NE(st.error().message.find(text), std::string::npos) << st.error().message;
  };
  const Gref never = 0x00fffff0;
  expect_refused(provider_->copy_from(self_, never, 0, buf), "gref " + std::to_string(never));
  Share ro = share_one(Access::kReadOnly, 0x42);
  ASSERT_TRUE(ro.valid());
  expect_refused(provider_->copy_to(self_, ro.grefs()[0], 0, buf),
                 "gref " + std::to_string(ro.grefs()[0]));
  Status read = provider_->copy_from(self_, ro.grefs()[0], 0, buf);
  EXPECT_TRUE(read.ok()) << read.error().describe();
  EXPECT_EQ(buf[0], std::byte{0x42});
  Share to5 = share_one(Access::kReadWrite, 0, 5);
  ASSERT_TRUE(to5.valid());
  expect_refused(provider_->copy_from(self_, to5.grefs()[0], 0, buf),
                 "gref " + std::to_string(to5.grefs()[0]));
  expect_refused(provider_->copy_from(999, ro.grefs()[0], 0, buf), "domain 999");
  expect_refused(provider_->copy_from(self_, ro.grefs()[0], 4090, buf), "within one");
  Gref ended = 0;
  {
    Share s = share_one(Access::kReadWrite);
    ASSERT_TRUE(s.valid());
    ended = s.grefs()[0];
  }
  expect_refused(provider_->copy_from(self_, ended, 0, buf), "gref " + std::to_string(ended));
}

}  // namespace
}  // namespace shbuf
