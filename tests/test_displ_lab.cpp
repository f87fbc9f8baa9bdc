// The PV display lab on one machine: shbuf displ-be on the simulator, the
// toolstack's part done by `shbuf sim device`, and our displif frontend
// drawing pictures in both allocation modes on two connectors of different
// sizes. Every frame displ-be writes is compared pixel for pixel with what
// was drawn; a frontend killed with SIGKILL or removed mid-flip, and a
// hostile one, leave displ-be running, serving the others, holding nothing
// of them.
#include <gtest/gtest.h>
#include <png.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "backend_lab.h"
#include "pv/displ/frontend.h"
#include "pv/toolstack.h"

namespace shbuf::displ {
namespace {

using shbuf::testing::slurp;

// The colour of a pixel of frame `frame` of (domain, connector).
std::array<std::uint8_t, 3> pattern(DomId dom, std::size_t c, int frame, std::uint32_t x,
                                    std::uint32_t y) {
  return {std::uint8_t(x * 7 + frame * 31 + dom), std::uint8_t(y * 5 + c * 100),
          std::uint8_t((x ^ y) + frame * 13)};
}

void draw(std::span<std::byte> px, std::uint32_t w, std::uint32_t h, DomId dom, std::size_t c,
          int frame) {
  for (std::uint32_t y = 0; y < h; ++y) {
    for (std::uint32_t x = 0; x < w; ++x) {
      const auto rgb = pattern(dom, c, frame, x, y);
      // XRGB8888, little-endian: B, G, R, X.
      std::byte* p = px.data() + (std::size_t(y) * w + x) * 4;
      p[0] = std::byte(rgb[2]);
      p[1] = std::byte(rgb[1]);
      p[2] = std::byte(rgb[0]);
      p[3] = std::byte{0};
    }
  }
}

// The number of pixels of the PNG at `path` that differ from the frame, or
// -1 when it cannot be read or has the wrong size.
long differing_pixels(const std::string& path, std::uint32_t w, std::uint32_t h, DomId dom,
                      std::size_t c, int frame) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) return -1;
  image.format = PNG_FORMAT_RGB;
  std::vector<std::uint8_t> rgb(PNG_IMAGE_SIZE(image));
  if (image.width != w || image.height != h ||
      !png_image_finish_read(&image, nullptr, rgb.data(), 0, nullptr)) {
    png_image_free(&image);
    return -1;
  }
  long bad = 0;
  for (std::uint32_t y = 0; y < h; ++y) {
    for (std::uint32_t x = 0; x < w; ++x) {
      const auto want = pattern(dom, c, frame, x, y);
      bad += std::memcmp(&rgb[(std::size_t(y) * w + x) * 3], want.data(), 3) != 0;
    }
  }
  return bad;
}

class DisplLab : public simtest::BackendLab {
 protected:
  DisplLab() : BackendLab("displ-be", "vdispl", "dbufs=0 buffer_pages=0") {}

  void SetUp() override {
    BackendLab::SetUp();
    start();
  }

  void add(DomId dom, bool be_alloc, const std::string& connectors = "64x48,32x16") {
    std::vector<std::string> options = {"--connectors", connectors};
    if (be_alloc) options.push_back("--be-alloc");
    BackendLab::add(dom, options);
  }

  // The newest frame file of (dom, connector), or "".
  std::string newest(DomId dom, std::size_t c) {
    const std::string prefix = "dom" + std::to_string(dom) + "-dev0-c" + std::to_string(c) + "-";
    std::string best;
    for (const auto& e : std::filesystem::directory_iterator(out)) {
      const std::string name = e.path().filename();
      if (name.starts_with(prefix) && name.ends_with(".png") && name > best) best = name;
    }
    return best.empty() ? best : out + "/" + best;
  }

  // The pixels of the newest frame file of (dom, connector) that differ
  // from frame `f` as drawn. Frames are written after the flip is answered:
  // waits up to 5 s for the newest file to be that frame.
  long newest_differs(DomId dom, std::size_t c, const Resolution& r, int f) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    long bad = differing_pixels(newest(dom, c), r.width, r.height, dom, c, f);
    while (bad != 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      bad = differing_pixels(newest(dom, c), r.width, r.height, dom, c, f);
    }
    return bad;
  }

  // Shows `frames` frames on each connector, each checked in its PNG.
  void show_frames(DisplFrontend& fe, DomId dom, int frames) {
    for (std::size_t c = 0; c < fe.connectors().size(); ++c) {
      const Resolution r = fe.connectors()[c];
      auto dbuf = fe.dbuf_create(r.width, r.height, 32);
      ASSERT_TRUE(dbuf.ok()) << dbuf.error().describe() << slurp(log);
      auto fb = fe.fb_attach(*dbuf, kFormatXRGB8888);
      ASSERT_TRUE(fb.ok()) << fb.error().describe();
      draw(fe.pixels(*dbuf), r.width, r.height, dom, c, 0);
      ASSERT_TRUE(fe.set_config(c, *fb).ok());
      for (int f = 1; f <= frames; ++f) {
        draw(fe.pixels(*dbuf), r.width, r.height, dom, c, f);
        Status s = fe.page_flip(c, *fb);
        ASSERT_TRUE(s.ok()) << s.error().describe() << slurp(log);
        EXPECT_EQ(newest_differs(dom, c, r, f), 0)
            << "domain " << dom << " connector " << c << " frame " << f << ": " << newest(dom, c);
      }
      ASSERT_TRUE(fe.set_config(c, 0).ok());
      ASSERT_TRUE(fe.fb_detach(*fb).ok());
      ASSERT_TRUE(fe.dbuf_destroy(*dbuf).ok());
    }
  }

  // Forks a frontend of `domid` that shows a frame on connector 0, then
  // flips without waiting for answers while `go_on` says so (for at most
  // 20 s), sends one more flip and closes. Returns once it is flipping, or
  // -1 when it failed to get there.
  pid_t fork_flipper(DomId domid, const std::function<bool(pv::Platform&)>& go_on) {
    simtest::Pipe up;
    const pid_t child = fork();
    if (child == 0) {
      up.writer();
      auto p = platform(domid);
      auto fe = DisplFrontend::connect(p, {});
      if (!fe.ok()) _exit(91);
      auto dbuf = (*fe)->dbuf_create(64, 48, 32);
      if (!dbuf.ok()) _exit(92);
      auto fb = (*fe)->fb_attach(*dbuf, kFormatXRGB8888);
      if (!fb.ok() || !(*fe)->set_config(0, *fb).ok()) _exit(93);
      (void)!::write(up.fd[1], "u", 1);
      const auto flip = encode_request(Request{0, kOpPgFlip, PgFlip{*fb}});
      for (int i = 0; i < 20000 && go_on(p); ++i) {
        (void)(*fe)->send_packet(0, flip);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      (void)(*fe)->send_packet(0, flip);
      (void)(*fe)->close();
      _exit(0);
    }
    up.reader();
    char c = 0;
    if (child < 0 || !up.get(&c, 1)) {
      if (child > 0) waitpid(child, nullptr, 0);
      return -1;
    }
    return child;
  }
};

TEST_F(DisplLab, BothModesTwoConnectorsEveryFramePixelForPixel) {
  add(1, false);
  add(2, true);
  auto p1 = platform(1);
  auto p2 = platform(2);
  auto fe1 = DisplFrontend::connect(p1, {});
  ASSERT_TRUE(fe1.ok()) << fe1.error().describe() << slurp(log);
  auto fe2 = DisplFrontend::connect(p2, {});
  ASSERT_TRUE(fe2.ok()) << fe2.error().describe() << slurp(log);
  EXPECT_FALSE((*fe1)->be_alloc());
  EXPECT_TRUE((*fe2)->be_alloc());
  show_frames(**fe1, 1, 3);
  show_frames(**fe2, 2, 3);
  EXPECT_TRUE(log_says("dom2/0: connected: 2 connector(s) 64x48, 32x16, backend-allocated"));
  EXPECT_TRUE((*fe1)->close().ok());
  EXPECT_TRUE((*fe2)->close().ok());
  remove(1);
  remove(2);
  EXPECT_TRUE(log_says(holds_nothing("after a device went away")));
}

TEST_F(DisplLab, AFrontendKilledMidFlipThenRemovedLeavesNothingAndOthersGoOn) {
  add(3, true);
  add(1, false);
  const pid_t child = fork_flipper(3, [](pv::Platform&) { return true; });
  ASSERT_GT(child, 0) << slurp(log);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  // The toolstack notices the dead guest and tears its device down.
  remove(3);
  EXPECT_TRUE(log_says("holds after a device went away: devices=1 connected=0"));
  auto p1 = platform(1);
  auto fe1 = DisplFrontend::connect(p1, {});
  ASSERT_TRUE(fe1.ok()) << fe1.error().describe();
  show_frames(**fe1, 1, 2);
  EXPECT_TRUE((*fe1)->close().ok());
  remove(1);
}

// The toolstack removes a device whose frontend is still flipping (and then
// closes mid-request): displ-be lets go of it at once.
TEST_F(DisplLab, AFrontendRemovedMidFlipIsReleasedAtOnce) {
  add(5, false);
  // Flips until the device is gone, then closes with a request in flight.
  const pid_t child = fork_flipper(5, [](pv::Platform& p) {
    return p.xenstore->read(pv::kNoTransaction, "device/vdispl/0/state").ok();
  });
  ASSERT_GT(child, 0) << slurp(log);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  remove(5);
  EXPECT_TRUE(log_says(holds_nothing("after a device went away")));
  int st = 0;
  waitpid(child, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
}

TEST_F(DisplLab, AHostileFrontendCannotHurtDisplBeOrTheOthers) {
  add(4, false);
  add(6, true);
  add(1, true);
  auto p1 = platform(1);
  auto good = DisplFrontend::connect(p1, {});
  ASSERT_TRUE(good.ok());
  // `shbuf displ-fe --hostile` (tools/hostile_displ.cpp) lies in rounds,
  // each ended by displ-be when the request producer runs far ahead, in
  // both allocation modes, then once more dying mid-request; the
  // well-behaved frontend is served meanwhile.
  testing::ProcessResult lies, lies_be_alloc, dies;
  std::thread hostile_run([&] {
    lies = hostile(4, {"--attack-for", "1"});
    lies_be_alloc = hostile(6);
    dies = hostile(4, {"--die"});
  });
  show_frames(**good, 1, 3);
  hostile_run.join();
  EXPECT_EQ(lies.exit_code, 0) << lies.out << lies.err << slurp(log);
  EXPECT_NE(lies.out.find(" case(s), 0 differing"), std::string::npos) << lies.out;
  EXPECT_NE(lies.out.find("hostile: DBUF_CREATE through a directory that links to itself: -40 ELOOP"),
            std::string::npos)
      << lies.out;
  EXPECT_EQ(lies_be_alloc.exit_code, 0) << lies_be_alloc.out << lies_be_alloc.err;
  EXPECT_NE(lies_be_alloc.out.find("DBUF_CREATE through a directory granted read-only: -22"),
            std::string::npos)
      << lies_be_alloc.out;
  EXPECT_EQ(dies.exit_code, 0) << dies.out << dies.err;
  EXPECT_NE(dies.out.find("hostile: dying mid-request"), std::string::npos) << dies.out;
  EXPECT_EQ(dies.out.find("DIFFERS"), std::string::npos) << dies.out;
  EXPECT_TRUE(log_says("dom4/0: error: the frontend's request producer index 100000"));
  EXPECT_TRUE(log_says("dom4/0: state 4 -> 6"));
  show_frames(**good, 1, 1);
  EXPECT_TRUE((*good)->close().ok());
  remove(1);
  remove(4);
  remove(6);
  EXPECT_TRUE(log_says(holds_nothing("after a device went away")));
}

// Shows frames 1..frames after frame 0 on connector 0 of `fe` (domain dom),
// as fast as they are answered, and lets go of the buffer.
void flip_frames(DisplFrontend& fe, DomId dom, int frames) {
  const Resolution r = fe.connectors()[0];
  auto dbuf = fe.dbuf_create(r.width, r.height, 32);
  ASSERT_TRUE(dbuf.ok()) << dbuf.error().describe();
  auto fb = fe.fb_attach(*dbuf, kFormatXRGB8888);
  ASSERT_TRUE(fb.ok()) << fb.error().describe();
  draw(fe.pixels(*dbuf), r.width, r.height, dom, 0, 0);
  ASSERT_TRUE(fe.set_config(0, *fb).ok());
  for (int f = 1; f <= frames; ++f) {
    draw(fe.pixels(*dbuf), r.width, r.height, dom, 0, f);
    ASSERT_TRUE(fe.page_flip(0, *fb).ok());
  }
  ASSERT_TRUE(fe.set_config(0, 0).ok());
  ASSERT_TRUE(fe.fb_detach(*fb).ok());
  ASSERT_TRUE(fe.dbuf_destroy(*dbuf).ok());
}

// Frames still queued when their device goes away and displ-be is stopped
// right after are all written before it exits (slow to encode here: large
// and at level 9).
class DisplLabSlowWriter : public DisplLab {
 protected:
  void SetUp() override {
    BackendLab::SetUp();
    start({"--png-level", "9"});
  }
};

TEST_F(DisplLabSlowWriter, QueuedFramesAreWrittenWhenTheDeviceGoesAndAtExit) {
  add(1, false, "1920x1080");
  {
    auto p1 = platform(1);
    auto fe = DisplFrontend::connect(p1, {});
    ASSERT_TRUE(fe.ok()) << fe.error().describe() << slurp(log);
    flip_frames(**fe, 1, 5);
    EXPECT_TRUE((*fe)->close().ok());
  }
  remove(1);
  kill(be, SIGTERM);
  int st = 0;
  waitpid(be, &st, 0);
  be = -1;
  const std::string text = slurp(log);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << text;
  EXPECT_NE(text.find(holds_nothing("at exit") +
                      " frames_queued=0 frames_written=6 frames_dropped=0 write_failures=0"),
            std::string::npos)
      << text;
  for (int f = 0; f <= 5; ++f) {
    EXPECT_EQ(differing_pixels(out + "/" + frame_file_name(1, 0, 0, f, false), 1920, 1080, 1, 0, f),
              0)
        << "frame " << f;
  }
}

// --digest-only: no image, a line per frame with the FNV-1a of its pixels
// as drawn.
class DisplLabDigests : public DisplLab {
 protected:
  void SetUp() override {
    BackendLab::SetUp();
    start({"--digest-only"});
  }
};

TEST_F(DisplLabDigests, EachFrameIsALineWithTheDigestOfWhatWasDrawn) {
  add(2, true, "64x48");
  auto p2 = platform(2);
  auto fe = DisplFrontend::connect(p2, {});
  ASSERT_TRUE(fe.ok()) << fe.error().describe() << slurp(log);
  flip_frames(**fe, 2, 3);
  std::string want;
  for (int f = 0; f <= 3; ++f) {
    RgbImage img{64, 48, {}};
    for (std::uint32_t y = 0; y < 48; ++y) {
      for (std::uint32_t x = 0; x < 64; ++x) {
        const auto rgb = pattern(2, 0, f, x, y);
        img.rgb.insert(img.rgb.end(), rgb.begin(), rgb.end());
      }
    }
    char line[64];
    std::snprintf(line, sizeof line, "%d 64x48 %016llx\n", f,
                  static_cast<unsigned long long>(rgb_digest(img)));
    want += line;
  }
  const std::string path = out + "/dom2-dev0-c0.digests";
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (slurp(path) != want && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(slurp(path), want);
  for (const auto& e : std::filesystem::directory_iterator(out)) {
    EXPECT_EQ(e.path().extension(), ".digests") << e.path();
  }
  EXPECT_TRUE((*fe)->close().ok());
  remove(2);
}

// A backend that refuses what it should serve (here: a frame larger than
// its limit) is caught: the hostile frontend says what differs and exits 1.
class DisplLabSmallLimit : public DisplLab {
 protected:
  void SetUp() override {
    BackendLab::SetUp();
    start({"--max-buffer-mib", "1"});
  }
};

TEST_F(DisplLabSmallLimit, TheHostileFrontendSaysWhatABackendAnsweredOtherwise) {
  add(4, false, "1024x768");
  const auto r = hostile(4);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("hostile: DIFFERS: DBUF_CREATE of a frame: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("hostile: 1 round(s), "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(", 0 differing"), std::string::npos) << r.out;
  remove(4);
}

}  // namespace
}  // namespace shbuf::displ
