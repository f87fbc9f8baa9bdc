// The display device over the simulator, both allocation modes: frames
// arrive exactly as the frontend drew them, and every hostile request is
// refused with the right errno while nothing stays granted or mapped.
#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>

#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "pv/displ/device.h"
#include "pv/displ/writer.h"
#include "shbuf/core/frontend_buffer.h"
#include "sim_fixture.h"

namespace shbuf::displ {
namespace {

class DisplDevice : public testing::SimPair {
 protected:
  std::unique_ptr<DisplayDevice> make(bool be_alloc, DeviceLimits limits = {}) {
    DeviceConfig c;
    c.frontend = kFrontendDom;
    c.be_alloc = be_alloc;
    c.connectors = {{64, 48}, {32, 16}};
    c.limits = limits;
    return std::make_unique<DisplayDevice>(*be, c, [this](const Frame& f) -> Status {
      if (!sink_status.ok()) return sink_status;
      frames.push_back({f.connector, f.number, f.fb_cookie, to_rgb(f.pixels)});
      return {};
    });
  }

  FrontendBuffer buffer(std::size_t bytes, AllocMode mode = AllocMode::kFrontend) {
    FrontendBufferConfig fc;
    fc.backend = kBackendDom;
    fc.pages = (bytes + kPageSize - 1) / kPageSize;
    fc.mode = mode;
    auto f = FrontendBuffer::create(*fe, fc);
    EXPECT_TRUE(f.ok()) << f.error().describe();
    return std::move(f).value();
  }

  static Outcome send(DisplayDevice& d, std::size_t conn, std::uint8_t op,
                      decltype(Request::body) body, std::uint16_t id = 7) {
    Request r;
    r.id = id;
    r.operation = op;
    r.body = std::move(body);
    Outcome o = d.handle(conn, encode_request(r));
    EXPECT_EQ(o.response.id, id);
    EXPECT_EQ(o.response.operation, op);
    return o;
  }

  static DbufCreate create_req(std::uint64_t cookie, Gref dir, std::uint32_t w, std::uint32_t h,
                               std::uint32_t bpp = 32, std::uint32_t flags = 0) {
    return DbufCreate{cookie, w, h, bpp, w * h * bpp / 8, flags, dir, 0};
  }

  // XRGB8888 pixels of a pattern distinct per seed.
  static void draw(std::span<std::byte> m, std::uint32_t w, std::uint32_t h, std::uint32_t seed) {
    for (std::uint32_t i = 0; i < w * h; ++i) {
      const std::uint32_t px = (seed * 0x9e3779b9u ^ i * 0x85ebca6bu) & 0xffffff;
      std::memcpy(m.data() + i * 4, &px, 4);
    }
  }
  static bool shows(const RgbImage& img, std::uint32_t w, std::uint32_t h, std::uint32_t seed,
                    std::uint32_t stride_px) {
    if (img.width != w || img.height != h) return false;
    for (std::uint32_t y = 0; y < h; ++y) {
      for (std::uint32_t x = 0; x < w; ++x) {
        const std::uint32_t i = y * stride_px + x;
        const std::uint32_t px = (seed * 0x9e3779b9u ^ i * 0x85ebca6bu) & 0xffffff;
        const std::uint8_t* p = &img.rgb[(y * w + x) * 3];
        if (p[0] != (px >> 16 & 0xff) || p[1] != (px >> 8 & 0xff) || p[2] != (px & 0xff)) {
          return false;
        }
      }
    }
    return true;
  }

  struct Shown {
    std::size_t connector;
    std::uint64_t number;
    std::uint64_t fb;
    RgbImage image;
  };
  std::vector<Shown> frames;
  Status sink_status;
};

TEST_F(DisplDevice, FrontendAllocatedFramesArriveExactly) {
  auto dev = make(false);
  FrontendBuffer a = buffer(64 * 48 * 4), b = buffer(64 * 48 * 4);
  draw(a.memory(), 64, 48, 1);
  draw(b.memory(), 64, 48, 2);
  EXPECT_EQ(send(*dev, 0, kOpDbufCreate, create_req(1, a.directory_gref(), 64, 48)).response.status,
            0);
  EXPECT_EQ(send(*dev, 0, kOpDbufCreate, create_req(2, b.directory_gref(), 64, 48)).response.status,
            0);
  EXPECT_EQ(dev->dbuf_count(), 2u);
  EXPECT_EQ(dev->pages_held(), 6u);
  EXPECT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{1, 10, 64, 48, kFormatXRGB8888}).response.status,
            0);
  EXPECT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{2, 11, 64, 48, kFormatXRGB8888}).response.status,
            0);
  Outcome set = send(*dev, 0, kOpSetConfig, SetConfig{10, 0, 0, 64, 48, 32});
  EXPECT_EQ(set.response.status, 0) << set.error;
  EXPECT_FALSE(set.flip_event);
  Outcome flip = send(*dev, 0, kOpPgFlip, PgFlip{11});
  EXPECT_EQ(flip.response.status, 0) << flip.error;
  ASSERT_TRUE(flip.flip_event);
  EXPECT_EQ(*flip.flip_event, 11u);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].number, 0u);
  EXPECT_EQ(frames[1].number, 1u);
  EXPECT_EQ(frames[1].fb, 11u);
  EXPECT_TRUE(shows(frames[0].image, 64, 48, 1, 64));
  EXPECT_TRUE(shows(frames[1].image, 64, 48, 2, 64));
  // What the frontend draws next is what the next flip shows.
  draw(a.memory(), 64, 48, 3);
  EXPECT_EQ(send(*dev, 0, kOpPgFlip, PgFlip{10}).response.status, 0);
  EXPECT_TRUE(shows(frames.back().image, 64, 48, 3, 64));
  EXPECT_EQ(dev->frames(0), 3u);

  EXPECT_EQ(send(*dev, 0, kOpFbDetach, FbDetach{11}).response.status, 0);
  EXPECT_EQ(send(*dev, 0, kOpDbufDestroy, DbufDestroy{2}).response.status, 0);
  EXPECT_EQ(send(*dev, 0, kOpDbufDestroy, DbufDestroy{1}).response.status, 0);
  EXPECT_EQ(dev->dbuf_count(), 0u);
  EXPECT_EQ(dev->fb_count(), 0u);
  EXPECT_EQ(dev->pages_held(), 0u);
  ASSERT_TRUE(a.free().ok());
  ASSERT_TRUE(b.free().ok());
  dev.reset();
  expect_clean();
}

TEST_F(DisplDevice, BackendAllocatedBuffersAreGrantedAndShown) {
  auto dev = make(true);
  FrontendBuffer a = buffer(32 * 16 * 4, AllocMode::kBackend);
  Outcome c = send(*dev, 0, kOpDbufCreate,
                   create_req(5, a.directory_gref(), 32, 16, 32, kDbufFlagReqAlloc));
  ASSERT_EQ(c.response.status, 0) << c.error;
  ASSERT_TRUE(a.map().ok());  // the frontend maps what the backend granted
  draw(a.memory(), 32, 16, 9);
  EXPECT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{5, 50, 32, 16, kFormatXRGB8888}).response.status,
            0);
  // Connector 1 is 32x16: configure and flip there.
  EXPECT_EQ(send(*dev, 1, kOpSetConfig, SetConfig{50, 0, 0, 32, 16, 32}).response.status, 0);
  EXPECT_EQ(send(*dev, 1, kOpPgFlip, PgFlip{50}).response.status, 0);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[1].connector, 1u);
  EXPECT_TRUE(shows(frames[1].image, 32, 16, 9, 32));
  // As Linux does: the frontend unmaps, then asks for the destruction.
  ASSERT_TRUE(a.unmap().ok());
  EXPECT_EQ(send(*dev, 0, kOpDbufDestroy, DbufDestroy{5}).response.status, 0);
  ASSERT_TRUE(a.free().ok());
  dev.reset();
  expect_clean();
}

TEST_F(DisplDevice, ShowsTheConfiguredRegionWithTheDbufsStrideAndOffset) {
  auto dev = make(false);
  // A 40-wide dbuf whose data starts 256 bytes in; the fb and the region are
  // 32x16 (connector 1).
  const std::uint32_t ofs = 256, stride_px = 40;
  FrontendBuffer a = buffer(ofs + stride_px * 16 * 4);
  draw(a.memory().subspan(ofs), stride_px, 16, 4);
  DbufCreate r{1, stride_px, 16, 32, ofs + stride_px * 16 * 4, 0, a.directory_gref(), ofs};
  ASSERT_EQ(send(*dev, 0, kOpDbufCreate, r).response.status, 0);
  ASSERT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{1, 2, 32, 16, kFormatXRGB8888}).response.status, 0);
  ASSERT_EQ(send(*dev, 1, kOpSetConfig, SetConfig{2, 0, 0, 32, 16, 32}).response.status, 0);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_TRUE(shows(frames[0].image, 32, 16, 4, stride_px));
  dev.reset();
  ASSERT_TRUE(a.free().ok());
  expect_clean();
}

TEST_F(DisplDevice, RefusesHostileDbufCreates) {
  DeviceLimits big;
  big.max_dimension = 0xffffffffu;
  big.max_buffer_bytes = 0xffffffffu;
  auto dev = make(false, big);
  FrontendBuffer a = buffer(64 * 48 * 4);
  const Gref dir = a.directory_gref();
  struct Case {
    const char* what;
    DbufCreate req;
    std::size_t connector;
    int code;
  };
  const Case cases[] = {
      {"cookie 0", create_req(0, dir, 64, 48), 0, EINVAL},
      {"width 0", create_req(1, dir, 0, 48), 0, EINVAL},
      {"height 0", create_req(1, dir, 64, 0), 0, EINVAL},
      {"bpp 12", DbufCreate{1, 64, 48, 12, 64 * 48 * 4, 0, dir, 0}, 0, EINVAL},
      {"bpp 0", DbufCreate{1, 64, 48, 0, 64 * 48 * 4, 0, dir, 0}, 0, EINVAL},
      {"buffer too small", DbufCreate{1, 64, 48, 32, 64 * 48 * 4 - 1, 0, dir, 0}, 0, EINVAL},
      {"offset beyond the buffer", DbufCreate{1, 64, 48, 32, 64 * 48 * 4, 0, dir, 64 * 48 * 4}, 0,
       EINVAL},
      {"offset pushes the end out", DbufCreate{1, 64, 48, 32, 64 * 48 * 4, 0, dir, 4}, 0, EINVAL},
      {"offset near 2^32", DbufCreate{1, 64, 48, 32, 64 * 48 * 4, 0, dir, 0xfffffff0u}, 0, EINVAL},
      // 65536 * 65536 * 4 wraps to 0 in 32 bits.
      {"size wrapping 32 bits", DbufCreate{1, 65536, 65536, 32, 4096, 0, dir, 0}, 0, EINVAL},
      {"row wider than the buffer", DbufCreate{1, 0xffffffffu, 1, 32, 0xffffffffu, 0, dir, 0}, 0,
       EINVAL},
      {"height wrapping 64 bits",
       DbufCreate{1, 0x40000000, 0xffffffffu, 32, 0xffffffffu, 0, dir, 0}, 0, EINVAL},
      {"unknown flag", create_req(1, dir, 64, 48, 32, 2), 0, EINVAL},
      {"backend allocation without be-alloc", create_req(1, dir, 64, 48, 32, kDbufFlagReqAlloc), 0,
       EINVAL},
      {"directory gref 0", create_req(1, 0, 64, 48), 0, EINVAL},
      {"on connector 1", create_req(1, dir, 64, 48), 1, EINVAL},
      {"on a connector that does not exist", create_req(1, dir, 64, 48), 9, EINVAL},
  };
  for (const Case& c : cases) {
    Outcome o = send(*dev, c.connector, kOpDbufCreate, c.req);
    EXPECT_EQ(o.response.status, -c.code) << c.what << ": " << o.error;
    EXPECT_FALSE(o.error.empty()) << c.what;
    EXPECT_EQ(dev->dbuf_count(), 0u) << c.what;
  }
  // A directory gref never granted, and a directory holding fewer grefs than
  // buffer_sz needs: refused by the walk, nothing left mapped.
  Outcome never = send(*dev, 0, kOpDbufCreate, create_req(1, 4000, 64, 48));
  EXPECT_NE(never.response.status, 0);
  Outcome longer = send(*dev, 0, kOpDbufCreate, DbufCreate{1, 64, 48, 32, 1100 * 4096, 0, dir, 0});
  EXPECT_NE(longer.response.status, 0) << "a 3-page directory cannot describe 1100 pages";
  EXPECT_EQ(dev->dbuf_count(), 0u);
  EXPECT_EQ(dev->pages_held(), 0u);

  ASSERT_EQ(send(*dev, 0, kOpDbufCreate, create_req(1, dir, 64, 48)).response.status, 0);
  EXPECT_EQ(send(*dev, 0, kOpDbufCreate, create_req(1, dir, 64, 48)).response.status, -EEXIST);
  dev.reset();
  ASSERT_TRUE(a.free().ok());
  expect_clean();
}

TEST_F(DisplDevice, EnforcesItsLimits) {
  DeviceLimits lim;
  lim.max_buffer_bytes = 64 * 48 * 4 - 1;
  auto dev = make(false, lim);
  FrontendBuffer a = buffer(64 * 48 * 4), b = buffer(64 * 48 * 4);
  EXPECT_EQ(send(*dev, 0, kOpDbufCreate, create_req(1, a.directory_gref(), 64, 48)).response.status,
            -E2BIG);
  DeviceLimits one;
  one.max_dbufs = 1;
  dev = make(false, one);
  EXPECT_EQ(send(*dev, 0, kOpDbufCreate, create_req(1, a.directory_gref(), 64, 48)).response.status,
            0);
  EXPECT_EQ(send(*dev, 0, kOpDbufCreate, create_req(2, b.directory_gref(), 64, 48)).response.status,
            -ENOSPC);
  DeviceLimits pages;
  pages.max_total_pages = 5;
  dev = make(false, pages);
  EXPECT_EQ(send(*dev, 0, kOpDbufCreate, create_req(1, a.directory_gref(), 64, 48)).response.status,
            0);
  EXPECT_EQ(send(*dev, 0, kOpDbufCreate, create_req(2, b.directory_gref(), 64, 48)).response.status,
            -ENOSPC);
  DeviceLimits fbs;
  fbs.max_fbs = 1;
  dev = make(false, fbs);
  ASSERT_EQ(send(*dev, 0, kOpDbufCreate, create_req(1, a.directory_gref(), 64, 48)).response.status,
            0);
  EXPECT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{1, 1, 64, 48, kFormatXRGB8888}).response.status, 0);
  EXPECT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{1, 2, 64, 48, kFormatXRGB8888}).response.status,
            -ENOSPC);
  dev.reset();
  ASSERT_TRUE(a.free().ok());
  ASSERT_TRUE(b.free().ok());
  expect_clean();
}

TEST_F(DisplDevice, RefusesHostileFramebufferAndDisplayRequests) {
  auto dev = make(false);
  FrontendBuffer a = buffer(64 * 48 * 4);
  ASSERT_EQ(send(*dev, 0, kOpDbufCreate, create_req(1, a.directory_gref(), 64, 48)).response.status,
            0);
  struct Case {
    const char* what;
    std::size_t connector;
    std::uint8_t op;
    decltype(Request::body) body;
    int code;
  };
  const Case before[] = {
      {"fb on unknown dbuf", 0, kOpFbAttach, FbAttach{2, 10, 64, 48, kFormatXRGB8888}, ENOENT},
      {"fb cookie 0", 0, kOpFbAttach, FbAttach{1, 0, 64, 48, kFormatXRGB8888}, EINVAL},
      {"unknown format", 0, kOpFbAttach, FbAttach{1, 10, 64, 48, fourcc('Y', 'U', 'Y', 'V')},
       EINVAL},
      {"format of another bpp", 0, kOpFbAttach, FbAttach{1, 10, 64, 48, kFormatRGB565}, EINVAL},
      {"fb wider than dbuf", 0, kOpFbAttach, FbAttach{1, 10, 65, 48, kFormatXRGB8888}, EINVAL},
      {"fb taller than dbuf", 0, kOpFbAttach, FbAttach{1, 10, 64, 49, kFormatXRGB8888}, EINVAL},
      {"fb of size 0", 0, kOpFbAttach, FbAttach{1, 10, 0, 48, kFormatXRGB8888}, EINVAL},
      {"fb on connector 1", 1, kOpFbAttach, FbAttach{1, 10, 64, 48, kFormatXRGB8888}, EINVAL},
      {"config of unknown fb", 0, kOpSetConfig, SetConfig{10, 0, 0, 64, 48, 32}, ENOENT},
      {"flip of unknown fb", 0, kOpPgFlip, PgFlip{10}, EINVAL},
      {"detach of unknown fb", 0, kOpFbDetach, FbDetach{10}, ENOENT},
      {"destroy of unknown dbuf", 0, kOpDbufDestroy, DbufDestroy{2}, ENOENT},
      {"unknown op", 0, 0x42, UnknownOp{}, ENOTSUP},
      {"reserved op 0", 0, 0x00, UnknownOp{}, ENOTSUP},
  };
  for (const Case& c : before) {
    Outcome o = send(*dev, c.connector, c.op, c.body);
    EXPECT_EQ(o.response.status, -c.code) << c.what << ": " << o.error;
    EXPECT_FALSE(o.flip_event) << c.what;
  }
  ASSERT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{1, 10, 64, 48, kFormatXRGB8888}).response.status,
            0);
  EXPECT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{1, 10, 64, 48, kFormatXRGB8888}).response.status,
            -EEXIST);
  const Case after[] = {
      {"flip on a disabled connector", 0, kOpPgFlip, PgFlip{10}, EINVAL},
      {"config beyond the resolution", 0, kOpSetConfig, SetConfig{10, 1, 0, 64, 48, 32}, EINVAL},
      {"config wrapping x", 0, kOpSetConfig, SetConfig{10, 0xffffffffu, 0, 2, 48, 32}, EINVAL},
      {"config wrapping y", 0, kOpSetConfig, SetConfig{10, 0, 0xfffffff0u, 64, 0x20, 32}, EINVAL},
      {"config larger than connector 1", 1, kOpSetConfig, SetConfig{10, 0, 0, 64, 48, 32}, EINVAL},
      {"config of another bpp", 0, kOpSetConfig, SetConfig{10, 0, 0, 64, 48, 16}, EINVAL},
      {"config of size 0", 0, kOpSetConfig, SetConfig{10, 0, 0, 0, 48, 32}, EINVAL},
  };
  for (const Case& c : after) {
    Outcome o = send(*dev, c.connector, c.op, c.body);
    EXPECT_EQ(o.response.status, -c.code) << c.what << ": " << o.error;
  }
  EXPECT_TRUE(frames.empty());
  // Enabled, then disabled with all zeros: flips are refused again.
  ASSERT_EQ(send(*dev, 0, kOpSetConfig, SetConfig{10, 0, 0, 64, 48, 32}).response.status, 0);
  ASSERT_EQ(send(*dev, 0, kOpSetConfig, SetConfig{}).response.status, 0);
  EXPECT_EQ(send(*dev, 0, kOpPgFlip, PgFlip{10}).response.status, -EINVAL);
  // Detaching the framebuffer shown disables the connector too.
  ASSERT_EQ(send(*dev, 0, kOpSetConfig, SetConfig{10, 0, 0, 64, 48, 32}).response.status, 0);
  ASSERT_EQ(send(*dev, 0, kOpFbDetach, FbDetach{10}).response.status, 0);
  EXPECT_EQ(send(*dev, 0, kOpPgFlip, PgFlip{10}).response.status, -EINVAL);
  // Destroying a dbuf takes its framebuffers with it.
  ASSERT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{1, 11, 64, 48, kFormatXRGB8888}).response.status,
            0);
  ASSERT_EQ(send(*dev, 0, kOpDbufDestroy, DbufDestroy{1}).response.status, 0);
  EXPECT_EQ(dev->fb_count(), 0u);
  EXPECT_EQ(send(*dev, 0, kOpFbDetach, FbDetach{11}).response.status, -ENOENT);
  dev.reset();
  ASSERT_TRUE(a.free().ok());
  expect_clean();
}

TEST_F(DisplDevice, AFrameThatCannotBeWrittenFailsTheFlipWithoutAnEvent) {
  auto dev = make(false);
  FrontendBuffer a = buffer(64 * 48 * 4);
  ASSERT_EQ(send(*dev, 0, kOpDbufCreate, create_req(1, a.directory_gref(), 64, 48)).response.status,
            0);
  ASSERT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{1, 10, 64, 48, kFormatXRGB8888}).response.status,
            0);
  ASSERT_EQ(send(*dev, 0, kOpSetConfig, SetConfig{10, 0, 0, 64, 48, 32}).response.status, 0);
  sink_status = make_error(EIO, "disk full");
  Outcome o = send(*dev, 0, kOpPgFlip, PgFlip{10});
  EXPECT_EQ(o.response.status, -EIO);
  EXPECT_FALSE(o.flip_event);
  EXPECT_NE(o.error.find("disk full"), std::string::npos);
  EXPECT_EQ(dev->frames(0), 1u);
  dev.reset();
  ASSERT_TRUE(a.free().ok());
  expect_clean();
}

// A flip must show at least the configured region: a framebuffer smaller in
// either dimension is refused, whatever its format, and nothing is shown.
TEST_F(DisplDevice, AFlipToAFramebufferThatDoesNotFitIsRefused) {
  auto dev = make(false);
  FrontendBuffer a = buffer(64 * 48 * 4);
  FrontendBuffer small = buffer(32 * 16 * 4);
  FrontendBuffer short565 = buffer(64 * 47 * 2);
  FrontendBuffer narrow888 = buffer(63 * 48 * 3);
  ASSERT_EQ(send(*dev, 0, kOpDbufCreate, create_req(1, a.directory_gref(), 64, 48)).response.status,
            0);
  ASSERT_EQ(
      send(*dev, 0, kOpDbufCreate, create_req(3, small.directory_gref(), 32, 16)).response.status,
      0);
  ASSERT_EQ(send(*dev, 0, kOpDbufCreate, create_req(4, short565.directory_gref(), 64, 47, 16))
                .response.status,
            0);
  ASSERT_EQ(send(*dev, 0, kOpDbufCreate, create_req(5, narrow888.directory_gref(), 63, 48, 24))
                .response.status,
            0);
  ASSERT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{1, 10, 64, 48, kFormatXRGB8888}).response.status,
            0);
  ASSERT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{3, 12, 32, 16, kFormatXRGB8888}).response.status,
            0);
  ASSERT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{4, 13, 64, 47, kFormatRGB565}).response.status, 0);
  ASSERT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{5, 14, 63, 48, kFormatRGB888}).response.status, 0);
  ASSERT_EQ(send(*dev, 0, kOpSetConfig, SetConfig{10, 0, 0, 64, 48, 32}).response.status, 0);
  ASSERT_EQ(frames.size(), 1u);
  const struct {
    std::uint64_t fb;
    const char* size;
  } too_small[] = {{12, "32x16"}, {13, "64x47"}, {14, "63x48"}};
  for (const auto& t : too_small) {
    Outcome o = send(*dev, 0, kOpPgFlip, PgFlip{t.fb});
    EXPECT_EQ(o.response.status, -EINVAL) << t.size;
    EXPECT_NE(o.error.find("configuration 64x48 is larger than framebuffer"), std::string::npos)
        << o.error;
    EXPECT_NE(o.error.find(t.size), std::string::npos) << o.error;
    EXPECT_FALSE(o.flip_event) << t.size;
  }
  EXPECT_EQ(frames.size(), 1u) << "a refused flip shows nothing";
  Outcome ok = send(*dev, 0, kOpPgFlip, PgFlip{10});
  EXPECT_EQ(ok.response.status, 0) << ok.error;
  EXPECT_EQ(dev->frames(0), 2u);
  dev.reset();
  ASSERT_TRUE(a.free().ok());
  ASSERT_TRUE(small.free().ok());
  ASSERT_TRUE(short565.free().ok());
  ASSERT_TRUE(narrow888.free().ok());
  expect_clean();
}

// 0xRRGGBB of pixel (x, y) of picture `seed`.
std::uint32_t colour(std::uint32_t seed, std::uint32_t x, std::uint32_t y) {
  return ((seed * 0x9e3779b9u) ^ (x * 0x85ebca6bu) ^ (y * 0xc2b2ae35u)) & 0xffffff;
}

// Writes picture `seed` as `format` into rows of `stride` bytes from `ofs`.
void draw_as(std::span<std::byte> m, std::uint32_t format, std::size_t ofs, std::size_t stride,
             std::uint32_t w, std::uint32_t h, std::uint32_t seed) {
  for (std::uint32_t y = 0; y < h; ++y) {
    for (std::uint32_t x = 0; x < w; ++x) {
      const std::uint32_t c = colour(seed, x, y);
      std::uint32_t v = c;
      std::size_t bytes = 4;
      if (format == kFormatRGB888) bytes = 3;
      if (format == kFormatRGB565) {
        v = (c >> 19 & 0x1f) << 11 | (c >> 10 & 0x3f) << 5 | (c >> 3 & 0x1f);
        bytes = 2;
      }
      for (std::size_t i = 0; i < bytes; ++i) {
        m[ofs + y * stride + x * bytes + i] = static_cast<std::byte>(v >> (8 * i));
      }
    }
  }
}

// What a display shows of picture `seed` drawn as `format`: exact for the
// 24-bit formats; for RGB565 each channel is cut to its bits and expanded
// to the nearest 8-bit value.
bool shows_as(const RgbImage& img, std::uint32_t format, std::uint32_t w, std::uint32_t h,
              std::uint32_t seed) {
  if (img.width != w || img.height != h) return false;
  auto expand = [](std::uint32_t v, std::uint32_t max) { return (v * 255 + max / 2) / max; };
  for (std::uint32_t y = 0; y < h; ++y) {
    for (std::uint32_t x = 0; x < w; ++x) {
      std::uint32_t c = colour(seed, x, y);
      if (format == kFormatRGB565) {
        c = expand(c >> 19 & 0x1f, 31) << 16 | expand(c >> 10 & 0x3f, 63) << 8 |
            expand(c >> 3 & 0x1f, 31);
      }
      const std::uint8_t* p = &img.rgb[(std::size_t{y} * w + x) * 3];
      if (p[0] != (c >> 16 & 0xff) || p[1] != (c >> 8 & 0xff) || p[2] != (c & 0xff)) return false;
    }
  }
  return true;
}

// displif: the buffers' depths and pixel formats can differ. Linux sets a
// mode with one framebuffer (SET_CONFIG with its bpp) and, when the same
// mode is set again with a framebuffer of another format, sends only a
// flip: each framebuffer is shown converted with its own format, read with
// its own dbuf's stride and offset.
TEST_F(DisplDevice, AFlipToAFramebufferOfAnotherFormatIsShownInItsOwnFormat) {
  auto dev = make(false);
  // RGB888 64x48; XRGB8888 in an 80-wide dbuf whose data starts 128 bytes
  // in; RGB565 64x48.
  FrontendBuffer rgb = buffer(64 * 48 * 3);
  FrontendBuffer xrgb = buffer(128 + 80 * 48 * 4);
  FrontendBuffer r565 = buffer(64 * 48 * 2);
  ASSERT_EQ(
      send(*dev, 0, kOpDbufCreate, create_req(1, rgb.directory_gref(), 64, 48, 24)).response.status,
      0);
  ASSERT_EQ(send(*dev, 0, kOpDbufCreate,
                 DbufCreate{2, 80, 48, 32, 128 + 80 * 48 * 4, 0, xrgb.directory_gref(), 128})
                .response.status,
            0);
  ASSERT_EQ(send(*dev, 0, kOpDbufCreate, create_req(3, r565.directory_gref(), 64, 48, 16))
                .response.status,
            0);
  ASSERT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{1, 10, 64, 48, kFormatRGB888}).response.status, 0);
  ASSERT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{2, 11, 64, 48, kFormatXRGB8888}).response.status,
            0);
  ASSERT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{3, 12, 64, 48, kFormatRGB565}).response.status, 0);
  draw_as(rgb.memory(), kFormatRGB888, 0, 64 * 3, 64, 48, 1);
  draw_as(xrgb.memory(), kFormatXRGB8888, 128, 80 * 4, 64, 48, 2);
  draw_as(r565.memory(), kFormatRGB565, 0, 64 * 2, 64, 48, 3);

  Outcome set = send(*dev, 0, kOpSetConfig, SetConfig{10, 0, 0, 64, 48, 24});
  ASSERT_EQ(set.response.status, 0) << set.error;
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_TRUE(shows_as(frames[0].image, kFormatRGB888, 64, 48, 1));

  // RGB888 -> XRGB8888: 24 to 32 bpp.
  Outcome to32 = send(*dev, 0, kOpPgFlip, PgFlip{11});
  ASSERT_EQ(to32.response.status, 0) << to32.error;
  ASSERT_TRUE(to32.flip_event);
  EXPECT_EQ(*to32.flip_event, 11u);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[1].fb, 11u);
  EXPECT_EQ(frames[1].number, 1u);
  EXPECT_TRUE(shows_as(frames[1].image, kFormatXRGB8888, 64, 48, 2));

  // XRGB8888 -> RGB565, then back to the RGB888 framebuffer SET_CONFIG named.
  Outcome to16 = send(*dev, 0, kOpPgFlip, PgFlip{12});
  ASSERT_EQ(to16.response.status, 0) << to16.error;
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_TRUE(shows_as(frames[2].image, kFormatRGB565, 64, 48, 3));
  draw_as(rgb.memory(), kFormatRGB888, 0, 64 * 3, 64, 48, 4);
  ASSERT_EQ(send(*dev, 0, kOpPgFlip, PgFlip{10}).response.status, 0);
  ASSERT_EQ(frames.size(), 4u);
  EXPECT_TRUE(shows_as(frames[3].image, kFormatRGB888, 64, 48, 4));
  EXPECT_EQ(dev->frames(0), 4u);

  // SET_CONFIG's bpp is that of the framebuffer it names.
  Outcome contradicts = send(*dev, 0, kOpSetConfig, SetConfig{11, 0, 0, 64, 48, 24});
  EXPECT_EQ(contradicts.response.status, -EINVAL);
  EXPECT_NE(contradicts.error.find("bpp 24 differs from framebuffer 0xb's 32"), std::string::npos)
      << contradicts.error;
  Outcome reset = send(*dev, 0, kOpSetConfig, SetConfig{11, 0, 0, 64, 48, 32});
  EXPECT_EQ(reset.response.status, 0) << reset.error;
  ASSERT_EQ(frames.size(), 5u);
  EXPECT_TRUE(shows_as(frames[4].image, kFormatXRGB8888, 64, 48, 2));

  dev.reset();
  ASSERT_TRUE(rgb.free().ok());
  ASSERT_TRUE(xrgb.free().ok());
  ASSERT_TRUE(r565.free().ok());
  expect_clean();
}

TEST_F(DisplDevice, WritesEdidIntoTheFrontendsBuffer) {
  auto dev = make(false);
  FrontendBuffer e = buffer(kEdidMaxSize);
  std::memset(e.memory().data(), 0xee, e.memory().size());
  Outcome o = send(*dev, 1, kOpGetEdid, GetEdid{kEdidMaxSize, e.directory_gref()});
  ASSERT_EQ(o.response.status, 0) << o.error;
  EXPECT_EQ(o.response.edid_sz, 128u);
  const auto* p = reinterpret_cast<const std::uint8_t*>(e.memory().data());
  auto want = make_edid(32, 16);
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(std::memcmp(p, want->data(), 128), 0);
  EXPECT_EQ(p[128], 0xee) << "nothing beyond the block is written";
  EXPECT_EQ(
      send(*dev, 1, kOpGetEdid, GetEdid{kEdidMaxSize - 1, e.directory_gref()}).response.status,
      -EINVAL);
  EXPECT_EQ(send(*dev, 1, kOpGetEdid, GetEdid{kEdidMaxSize, 0}).response.status, -EINVAL);
  EXPECT_EQ(send(*dev, 1, kOpGetEdid, GetEdid{0xffffffffu, e.directory_gref()}).response.status,
            -E2BIG);
  EXPECT_NE(
      send(*dev, 1, kOpGetEdid, GetEdid{kEdidMaxSize * 2, e.directory_gref()}).response.status, 0);
  dev.reset();
  ASSERT_TRUE(e.free().ok());
  expect_clean();
}

TEST_F(DisplDevice, ReleasesEverythingTheFrontendLeftBehind) {
  for (bool be_alloc : {false, true}) {
    auto dev = make(be_alloc);
    const AllocMode mode = be_alloc ? AllocMode::kBackend : AllocMode::kFrontend;
    FrontendBuffer a = buffer(64 * 48 * 4, mode);
    ASSERT_EQ(send(*dev, 0, kOpDbufCreate,
                   create_req(1, a.directory_gref(), 64, 48, 32, be_alloc ? kDbufFlagReqAlloc : 0))
                  .response.status,
              0);
    ASSERT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{1, 10, 64, 48, kFormatXRGB8888}).response.status,
              0);
    EXPECT_TRUE(dev->release_all().ok());
    EXPECT_EQ(dev->dbuf_count(), 0u);
    EXPECT_EQ(dev->fb_count(), 0u);
    dev.reset();
    ASSERT_TRUE(a.free().ok());
    expect_clean();
  }
}

// The backend's way: frames go through the writer. A flip is answered while
// the writer is held up, from a copy taken before the answer (the guest
// draws the next picture at once), and the frames of a device that is gone
// are still written.
TEST_F(DisplDevice, FlipsAreAnsweredWithoutWaitingForTheWriter) {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  int entered = 0;
  std::vector<Shown> written;
  FrameWriter writer;
  FrameSink gated = [&](Frame&& f) -> Status {
    std::unique_lock lock(mu);
    ++entered;
    cv.notify_all();
    cv.wait(lock, [&] { return open; });
    written.push_back({f.connector, f.number, f.fb_cookie, to_rgb(f.pixels)});
    return {};
  };
  DeviceConfig c;
  c.frontend = kFrontendDom;
  c.connectors = {{64, 48}};
  auto dev = std::make_unique<DisplayDevice>(*be, c, writer.queue_to("dom1/0", gated),
                                             writer.storage_source());
  FrontendBuffer a = buffer(64 * 48 * 4);
  draw(a.memory(), 64, 48, 1);
  ASSERT_EQ(send(*dev, 0, kOpDbufCreate, create_req(1, a.directory_gref(), 64, 48)).response.status,
            0);
  ASSERT_EQ(send(*dev, 0, kOpFbAttach, FbAttach{1, 10, 64, 48, kFormatXRGB8888}).response.status,
            0);
  ASSERT_EQ(send(*dev, 0, kOpSetConfig, SetConfig{10, 0, 0, 64, 48, 32}).response.status, 0);
  {
    // The worker now holds frame 0 and writes nothing more until opened.
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return entered == 1; }));
  }
  for (std::uint32_t seed = 2; seed <= 3; ++seed) {
    draw(a.memory(), 64, 48, seed);
    Outcome flip = send(*dev, 0, kOpPgFlip, PgFlip{10});
    EXPECT_EQ(flip.response.status, 0) << flip.error;
    EXPECT_TRUE(flip.flip_event);
  }
  draw(a.memory(), 64, 48, 4);
  EXPECT_EQ(dev->frames(0), 3u);
  EXPECT_EQ(writer.counts().queued, 2u);
  // The device goes with its frames still queued; it holds nothing more.
  dev.reset();
  ASSERT_TRUE(a.free().ok());
  expect_clean();
  {
    std::lock_guard lock(mu);
    open = true;
    cv.notify_all();
  }
  writer.finish(std::chrono::seconds(5));
  ASSERT_EQ(written.size(), 3u);
  for (std::uint32_t n = 0; n < 3; ++n) {
    EXPECT_EQ(written[n].number, n);
    EXPECT_TRUE(shows(written[n].image, 64, 48, n + 1, 64)) << "frame " << n;
  }
  EXPECT_EQ(writer.counts().written, 3u);
  EXPECT_EQ(writer.counts().dropped, 0u);
}

// --digest-only: one line per frame, the FNV-1a of the RGB pixels.
TEST_F(DisplDevice, DigestSinkWritesWhatThePixelsSay) {
  EXPECT_EQ(rgb_digest(RgbImage{}), 0xcbf29ce484222325ull);
  // FNV-1a 64 of "a" (0x61), the published test vector.
  EXPECT_EQ(rgb_digest(RgbImage{1, 1, {0x61}}), 0xaf63dc4c8601ec8cull);
  const auto dir =
      std::filesystem::temp_directory_path() / ("shbuf-displ-dig-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  // XRGB8888 bytes B, G, R, X of two pixels: RGB 03 02 01, 06 05 04.
  const RawFrame px{*find_pixel_format(kFormatXRGB8888),
                    2,
                    1,
                    {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{0xff}, std::byte{4},
                     std::byte{5}, std::byte{6}, std::byte{0xff}}};
  const std::uint64_t want = rgb_digest(RgbImage{2, 1, {3, 2, 1, 6, 5, 4}});
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(want));
  FrameSink digests = digest_frame_sink(dir.string(), 3, 0, false, 2);
  for (std::uint64_t n = 0; n < 4; ++n) ASSERT_TRUE(digests(Frame{1, n, 10, px}).ok());
  auto text = [](const std::filesystem::path& p) {
    std::ifstream in(p);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  };
  EXPECT_EQ(text(dir / "dom3-dev0-c1.digests"),
            "0 2x1 " + std::string(hex) + "\n1 2x1 " + std::string(hex) + "\n");
  EXPECT_EQ(text(dir / "dom3-dev0-c1-last.digest"), "3 2x1 " + std::string(hex) + "\n");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 2);
  std::filesystem::remove_all(dir);
}

// The digest made while converting is the digest of the converted image, in
// every pixel format and for a frame whose bytes fall short.
TEST_F(DisplDevice, FrameDigestIsTheDigestOfTheConvertedImage) {
  for (const std::uint32_t fourcc : {kFormatXRGB8888, kFormatARGB8888, kFormatRGB888, kFormatRGB565,
                                     kFormatXRGB4444, kFormatARGB1555}) {
    const PixelFormat format = *find_pixel_format(fourcc);
    RawFrame raw{format, 7, 5, {}};
    raw.bytes.resize(std::size_t{7} * 5 * (format.bpp / 8));
    for (std::size_t i = 0; i < raw.bytes.size(); ++i) raw.bytes[i] = std::byte(i * 37 + 11);
    EXPECT_EQ(frame_digest(raw), rgb_digest(to_rgb(raw))) << fourcc;
    raw.bytes.pop_back();  // short: an image of zeros
    EXPECT_EQ(frame_digest(raw), rgb_digest(to_rgb(raw))) << fourcc;
    EXPECT_EQ(frame_digest(raw), rgb_digest(RgbImage{7, 5, std::vector<std::uint8_t>(7 * 5 * 3)}));
  }
}

// The writer's worker gives its core away between rows: each loop over a
// frame calls `between_rows` once per row, and gives the same result as
// without it.
TEST_F(DisplDevice, LoopsOverAFrameCallBetweenRowsOncePerRow) {
  RawFrame raw{*find_pixel_format(kFormatXRGB8888), 9, 6, {}};
  raw.bytes.resize(std::size_t{9} * 6 * 4);
  for (std::size_t i = 0; i < raw.bytes.size(); ++i) raw.bytes[i] = std::byte(i * 13 + 5);
  int rows = 0;
  const BetweenRows count = [&rows] { ++rows; };
  EXPECT_EQ(to_rgb(raw, count).rgb, to_rgb(raw).rgb);
  EXPECT_EQ(rows, 6);
  rows = 0;
  EXPECT_EQ(frame_digest(raw, count), frame_digest(raw));
  EXPECT_EQ(rows, 6);
  const auto dir =
      std::filesystem::temp_directory_path() / ("shbuf-displ-rows-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  rows = 0;
  FrameSink digests = digest_frame_sink(dir.string(), 3, 0, true, 0, count);
  ASSERT_TRUE(digests(Frame{0, 0, 10, raw}).ok());
  EXPECT_EQ(rows, 6);
  rows = 0;
  FrameSink pngs = png_frame_sink(dir.string(), 3, 0, true, 0, kDefaultPngLevel, count);
  ASSERT_TRUE(pngs(Frame{0, 0, 10, raw}).ok());
  EXPECT_EQ(rows, 12);  // converted, then encoded
  std::filesystem::remove_all(dir);
}

TEST_F(DisplDevice, PngSinkNamesFilesByConnectorAndFrame) {
  EXPECT_EQ(frame_file_name(3, 0, 1, 42, false), "dom3-dev0-c1-000042.png");
  EXPECT_EQ(frame_file_name(3, 2, 0, 42, true), "dom3-dev2-c0-last.png");
  const auto dir =
      std::filesystem::temp_directory_path() / ("shbuf-displ-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const RawFrame img{*find_pixel_format(kFormatRGB888), 2, 2,
                     std::vector<std::byte>(12, std::byte{0x80})};
  FrameSink each = png_frame_sink(dir.string(), 3, 0, false);
  ASSERT_TRUE(each(Frame{1, 7, 10, img}).ok());
  EXPECT_TRUE(std::filesystem::exists(dir / "dom3-dev0-c1-000007.png"));
  FrameSink last = png_frame_sink(dir.string(), 3, 0, true);
  ASSERT_TRUE(last(Frame{1, 8, 10, img}).ok());
  EXPECT_TRUE(std::filesystem::exists(dir / "dom3-dev0-c1-last.png"));
  FrameSink nowhere = png_frame_sink((dir / "missing").string(), 3, 0, false);
  EXPECT_EQ(nowhere(Frame{0, 0, 10, img}).error().code, ENOENT);
  std::filesystem::remove_all(dir);
}

// A guest flipping forever fills at most max_frames files per connector,
// plus the last-frame one.
TEST_F(DisplDevice, PngSinkCapsTheFilesOfAConnector) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("shbuf-displ-cap-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const RawFrame img{*find_pixel_format(kFormatRGB888), 2, 2,
                     std::vector<std::byte>(12, std::byte{0x40})};
  FrameSink capped = png_frame_sink(dir.string(), 5, 1, false, 3);
  for (std::uint64_t n = 0; n < 50; ++n) ASSERT_TRUE(capped(Frame{0, n, 10, img}).ok());
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"dom5-dev1-c0-000000.png", "dom5-dev1-c0-000001.png",
                                             "dom5-dev1-c0-000002.png", "dom5-dev1-c0-last.png"}));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace shbuf::displ
