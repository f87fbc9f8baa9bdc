// The PV sound lab on one machine: shbuf snd-be on the simulator, the
// toolstack's part done by `shbuf sim device`, and our sndif frontend. What
// is played comes out in snd-be's WAV file sample for sample; what is
// recorded is exactly the WAV file snd-be serves; OPEN twice, bad requests,
// a hostile frontend and a frontend killed with SIGKILL leave snd-be
// running, serving the others, holding nothing of what went away.
#include <gtest/gtest.h>
#include <signal.h>
#include <sndfile.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "backend_lab.h"
#include "pv/snd/frontend.h"
#include "pv/toolstack.h"

namespace shbuf::snd {
namespace {

using shbuf::testing::slurp;

// A known stereo signal: sample i of the interleaved stream.
short sample(std::size_t i) {
  return short((i * 2654435761u) >> 16);
}

std::vector<short> read_wav(const std::string& path, SF_INFO& info) {
  info = SF_INFO{};
  SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
  if (f == nullptr) return {};
  std::vector<short> s(std::size_t(info.frames * info.channels));
  if (sf_readf_short(f, s.data(), info.frames) != info.frames) s.clear();
  sf_close(f);
  return s;
}

// 10000 stereo frames of the known signal, reversed, for capture.
constexpr std::size_t kCaptureFrames = 10000;
short capture_sample(std::size_t i) {
  return sample(2 * kCaptureFrames - 1 - i);
}

class SndLab : public simtest::BackendLab {
 protected:
  SndLab() : BackendLab("snd-be", "vsnd", "open_streams=0 buffer_pages=0") {}

  void SetUp() override {
    BackendLab::SetUp();
    capture = path + "-capture.wav";
    SF_INFO info{};
    info.samplerate = 48000;
    info.channels = 2;
    info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
    SNDFILE* f = sf_open(capture.c_str(), SFM_WRITE, &info);
    ASSERT_NE(f, nullptr);
    std::vector<short> s(2 * kCaptureFrames);
    for (std::size_t i = 0; i < s.size(); ++i) s[i] = capture_sample(i);
    ASSERT_EQ(sf_writef_short(f, s.data(), kCaptureFrames), sf_count_t(kCaptureFrames));
    sf_close(f);
    start({"--capture-wav", capture});
  }

  void TearDown() override {
    BackendLab::TearDown();
    std::filesystem::remove(capture);
  }

  // Pages snd-be (domain 0) maps right now.
  std::size_t backend_pages() {
    std::size_t n = 0;
    for (const auto& m : status().mappings) n += m.mapper == 0 ? m.count : 0;
    return n;
  }

  // A request's status.
  static std::int32_t status_of(SndFrontend& fe, std::size_t stream, Request r) {
    auto rsp = fe.request(stream, std::move(r));
    EXPECT_TRUE(rsp.ok()) << rsp.error().describe();
    return rsp.ok() ? rsp->status : 1;
  }

  std::string capture;
};

constexpr std::uint32_t kBuffer = 16384;
constexpr std::uint32_t kPeriod = 4096;

TEST_F(SndLab, WhatIsPlayedIsWrittenSampleForSample) {
  add(1);
  auto p = platform(1);
  auto fe = SndFrontend::connect(p, {});
  ASSERT_TRUE(fe.ok()) << fe.error().describe() << slurp(log);
  ASSERT_EQ((*fe)->streams().size(), 2u);
  ASSERT_FALSE((*fe)->streams()[0].capture);
  // What ALSA would ask first: everything, narrowed to the card.
  auto hw =
      (*fe)->query(0, {~0ull, {0, UINT32_MAX}, {0, UINT32_MAX}, {0, UINT32_MAX}, {0, UINT32_MAX}});
  ASSERT_TRUE(hw.ok()) << hw.error().describe();
  EXPECT_EQ(hw->formats, format_bit(kFormatS16LE));
  EXPECT_EQ(hw->rates, (Interval{44100, 48000}));
  EXPECT_EQ(hw->channels, (Interval{1, 2}));
  ASSERT_TRUE((*fe)->open(0, 48000, kFormatS16LE, 2, kBuffer, kPeriod).ok()) << slurp(log);
  // A quarter of a second of the known signal, a period at a time through
  // the ring buffer.
  constexpr std::size_t kBytes = 48000;
  for (std::size_t done = 0; done < kBytes; done += kPeriod) {
    const std::uint32_t len = std::uint32_t(std::min<std::size_t>(kPeriod, kBytes - done));
    const std::uint32_t off = std::uint32_t(done % kBuffer);
    std::vector<short> chunk(len / 2);
    for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = sample(done / 2 + i);
    std::memcpy((*fe)->buffer(0).data() + off, chunk.data(), len);
    ASSERT_TRUE((*fe)->write(0, off, len).ok()) << slurp(log);
    if (done == 0) {
      ASSERT_TRUE((*fe)->trigger(0, kTriggerStart).ok());
    }
  }
  // Position events: ids 0, 1, 2, ... and positions that never go back.
  std::uint64_t last_position = 0;
  std::uint16_t next_id = 0;
  for (int i = 0; i < 3; ++i) {
    auto e = (*fe)->next_event(0);
    ASSERT_TRUE(e.ok()) << e.error().describe();
    EXPECT_EQ(e->id, next_id++);
    EXPECT_GE(e->position, last_position);
    EXPECT_EQ(e->position % 4, 0u);
    last_position = e->position;
  }
  ASSERT_TRUE((*fe)->trigger(0, kTriggerStop).ok());
  ASSERT_TRUE((*fe)->close_stream(0).ok());
  SF_INFO info;
  const std::vector<short> got = read_wav(out + "/d1-v0-p0-s0-0.wav", info);
  EXPECT_EQ(info.channels, 2);
  EXPECT_EQ(info.samplerate, 48000);
  ASSERT_EQ(got.size(), kBytes / 2);
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], sample(i)) << i;
  // Event ids go on across OPENs: the frontend counts them per channel.
  auto drained = (*fe)->drain_events(0);
  ASSERT_TRUE(drained.ok());
  for (const CurPosEvent& e : *drained) EXPECT_EQ(e.id, next_id++);
  ASSERT_TRUE((*fe)->open(0, 44100, kFormatS16LE, 1, kBuffer, kPeriod).ok());
  ASSERT_TRUE((*fe)->trigger(0, kTriggerStart).ok());
  auto again = (*fe)->next_event(0);
  ASSERT_TRUE(again.ok()) << again.error().describe();
  EXPECT_EQ(again->id, next_id);
  ASSERT_TRUE((*fe)->close_stream(0).ok());
  EXPECT_TRUE(std::filesystem::exists(out + "/d1-v0-p0-s0-1.wav"));
  EXPECT_TRUE((*fe)->close().ok());
  // Another frontend of the same domain connects the closed device again;
  // its files go on numbering, its event ids start over.
  auto fe2 = SndFrontend::connect(p, {});
  ASSERT_TRUE(fe2.ok()) << fe2.error().describe() << slurp(log);
  ASSERT_TRUE((*fe2)->open(0, 48000, kFormatS16LE, 2, kBuffer, kPeriod).ok());
  ASSERT_TRUE((*fe2)->trigger(0, kTriggerStart).ok());
  auto first = (*fe2)->next_event(0);
  ASSERT_TRUE(first.ok()) << first.error().describe();
  EXPECT_EQ(first->id, 0);
  ASSERT_TRUE((*fe2)->close_stream(0).ok());
  EXPECT_TRUE(std::filesystem::exists(out + "/d1-v0-p0-s0-2.wav"));
  EXPECT_TRUE((*fe2)->close().ok());
  remove(1);
  EXPECT_TRUE(log_says(holds_nothing("after a device went away")));
}

TEST_F(SndLab, WhatIsRecordedIsExactlyTheWavServed) {
  add(1);
  auto p = platform(1);
  auto fe = SndFrontend::connect(p, {});
  ASSERT_TRUE(fe.ok()) << fe.error().describe() << slurp(log);
  ASSERT_TRUE((*fe)->streams()[1].capture);
  ASSERT_TRUE((*fe)->open(1, 48000, kFormatS16LE, 2, kBuffer, kPeriod).ok()) << slurp(log);
  ASSERT_TRUE((*fe)->trigger(1, kTriggerStart).ok());
  std::vector<short> got;
  const std::size_t bytes = kCaptureFrames * 4 + kPeriod;  // the file, then silence
  for (std::size_t done = 0; done < bytes; done += kPeriod) {
    const std::uint32_t off = std::uint32_t(done % kBuffer);
    ASSERT_TRUE((*fe)->read(1, off, kPeriod).ok()) << slurp(log);
    const short* s = reinterpret_cast<const short*>((*fe)->buffer(1).data() + off);
    got.insert(got.end(), s, s + kPeriod / 2);
  }
  ASSERT_GE(got.size(), 2 * kCaptureFrames);
  for (std::size_t i = 0; i < 2 * kCaptureFrames; ++i) {
    ASSERT_EQ(got[i], capture_sample(i)) << i;
  }
  for (std::size_t i = 2 * kCaptureFrames; i < got.size(); ++i) ASSERT_EQ(got[i], 0) << i;
  ASSERT_TRUE((*fe)->close_stream(1).ok());
  EXPECT_TRUE((*fe)->close().ok());
  remove(1);
}

TEST_F(SndLab, OpenTwiceAndBadRequestsAreAnsweredWhileSndBeServes) {
  add(1);
  auto p = platform(1);
  auto fe = SndFrontend::connect(p, {});
  ASSERT_TRUE(fe.ok()) << fe.error().describe() << slurp(log);
  SndFrontend& f = **fe;
  const std::size_t rings = backend_pages();
  EXPECT_EQ(rings, 4u);  // two pages per stream
  // Before OPEN.
  EXPECT_EQ(status_of(f, 0, {0, kOpWrite, Write{0, 4}}), -EPROTO);
  EXPECT_EQ(status_of(f, 1, {0, kOpRead, Read{0, 4}}), -EPROTO);
  EXPECT_EQ(status_of(f, 0, {0, kOpTrigger, Trigger{kTriggerStart}}), -EPROTO);
  // A buffer of 0, and one above the card's buffer-size of 65536.
  EXPECT_EQ(f.open(0, 48000, kFormatS16LE, 2, 0, 0).code(), EINVAL);
  EXPECT_EQ(f.open(0, 48000, kFormatS16LE, 2, 65537, 0).code(), E2BIG);
  EXPECT_EQ(f.open(0, 22050, kFormatS16LE, 2, 4096, 0).code(), EINVAL);
  EXPECT_EQ(backend_pages(), rings);
  // The largest allowed, then OPEN again on the open stream.
  ASSERT_TRUE(f.open(0, 48000, kFormatS16LE, 2, 65536, 0).ok()) << slurp(log);
  EXPECT_EQ(backend_pages(), rings + 16);
  ASSERT_TRUE(f.open(0, 48000, kFormatS16LE, 2, 8192, 0).ok()) << slurp(log);
  EXPECT_EQ(backend_pages(), rings + 2);
  // Out of bounds.
  EXPECT_EQ(status_of(f, 0, {0, kOpWrite, Write{8192, 4}}), -EINVAL);
  EXPECT_EQ(status_of(f, 0, {0, kOpWrite, Write{4, 0xfffffffcu}}), -EINVAL);
  EXPECT_EQ(status_of(f, 0, {0, kOpRead, Read{0, 4}}), -EINVAL);
  EXPECT_EQ(status_of(f, 0, {0, kOpSetVolume, UnknownOp{}}), -ENOTSUP);
  EXPECT_TRUE(log_says("s0: refused: WRITE: "));
  // Still serving: the last 4 bytes of the buffer are played.
  std::memset(f.buffer(0).data() + 8188, 0x11, 4);
  ASSERT_TRUE(f.write(0, 8188, 4).ok());
  ASSERT_TRUE(f.close_stream(0).ok());
  EXPECT_EQ(backend_pages(), rings);
  SF_INFO info;
  EXPECT_EQ(read_wav(out + "/d1-v0-p0-s0-1.wav", info), (std::vector<short>{0x1111, 0x1111}));
  EXPECT_TRUE(f.close().ok());
  remove(1);
}

TEST_F(SndLab, AHostileFrontendCannotHurtSndBeOrTheOthers) {
  add(4);
  add(1);
  auto p1 = platform(1);
  auto good = SndFrontend::connect(p1, {});
  ASSERT_TRUE(good.ok()) << good.error().describe() << slurp(log);
  SndFrontend& g = **good;
  ASSERT_TRUE(g.open(0, 48000, kFormatS16LE, 2, kBuffer, kPeriod).ok()) << slurp(log);
  ASSERT_TRUE(g.open(1, 48000, kFormatS16LE, 2, kBuffer, kPeriod).ok()) << slurp(log);
  ASSERT_TRUE(g.trigger(1, kTriggerStart).ok());

  // The well-behaved frontend plays and records a period at a time for as
  // long as the hostile one acts (at least kMinPeriods, at most kMaxPeriods).
  constexpr std::size_t kMinPeriods = 64;
  constexpr std::size_t kMaxPeriods = 30000;
  std::atomic<bool> hostile_done{false};
  std::string good_error;
  std::size_t periods = 0;
  std::thread served([&] {
    for (std::size_t i = 0; i < kMaxPeriods && (i < kMinPeriods || !hostile_done.load()); ++i) {
      const std::uint32_t off = std::uint32_t((i * kPeriod) % kBuffer);
      short* out = reinterpret_cast<short*>(g.buffer(0).data() + off);
      for (std::size_t k = 0; k < kPeriod / 2; ++k) out[k] = sample(i * kPeriod / 2 + k);
      Status st = g.write(0, off, kPeriod);
      if (st.ok() && i == 0) st = g.trigger(0, kTriggerStart);
      if (st.ok()) st = g.read(1, off, kPeriod);
      if (!st.ok()) {
        good_error = "period " + std::to_string(i) + ": " + st.error().describe();
        return;
      }
      // What was recorded: the capture file, then silence.
      const short* in = reinterpret_cast<const short*>(g.buffer(1).data() + off);
      for (std::size_t k = 0; k < kPeriod / 2; ++k) {
        const std::size_t n = i * kPeriod / 2 + k;
        if (in[k] != (n < 2 * kCaptureFrames ? capture_sample(n) : 0)) {
          good_error = "recorded sample " + std::to_string(n) + " differs";
          return;
        }
      }
      periods = i + 1;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });

  // `shbuf snd-fe --hostile` (tools/hostile_snd.cpp) lies for a second in
  // rounds, each ended by snd-be when the request producer runs far ahead;
  // then once more, dying mid-request.
  const auto lies = hostile(4, {"--attack-for", "1"});
  const auto dies = hostile(4, {"--die"});
  hostile_done = true;
  served.join();
  EXPECT_EQ(lies.exit_code, 0) << lies.out << lies.err << slurp(log);
  EXPECT_NE(lies.out.find(" case(s), 0 differing"), std::string::npos) << lies.out;
  EXPECT_NE(lies.out.find("hostile: OPEN through a directory that links to itself: -74 EBADMSG"),
            std::string::npos)
      << lies.out;
  EXPECT_TRUE(log_says("dom4/0: error: the frontend's request producer index 100000"))
      << slurp(log);
  EXPECT_TRUE(log_says("dom4/0: state 4 -> 6")) << slurp(log);
  EXPECT_EQ(dies.exit_code, 0) << dies.out << dies.err;
  EXPECT_NE(dies.out.find("hostile: dying mid-request"), std::string::npos) << dies.out;
  EXPECT_EQ(dies.out.find("DIFFERS"), std::string::npos) << dies.out;
  EXPECT_EQ(kill(be, 0), 0);

  // Everything the good frontend played, sample for sample, and recorded.
  ASSERT_EQ(good_error, "") << slurp(log);
  ASSERT_LT(periods, kMaxPeriods) << "the hostile frontend outlasted the good one";
  ASSERT_GE(periods, kMinPeriods);
  ASSERT_TRUE(g.trigger(0, kTriggerStop).ok());
  ASSERT_TRUE(g.close_stream(0).ok());
  ASSERT_TRUE(g.close_stream(1).ok());
  SF_INFO info;
  const std::vector<short> got = read_wav(out + "/d1-v0-p0-s0-0.wav", info);
  ASSERT_EQ(got.size(), periods * kPeriod / 2);
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], sample(i)) << i;
  EXPECT_TRUE(g.close().ok());
  // The dead frontend's buffer stays mapped until the toolstack removes its
  // device.
  remove(4);
  remove(1);
  EXPECT_TRUE(log_says(holds_nothing("after a device went away"))) << slurp(log);
  EXPECT_EQ(backend_pages(), 0u);
}

TEST_F(SndLab, AFrontendKilledWithSigkillLeavesSndBeRunningAndHoldingNothing) {
  add(3);
  add(1);
  int up[2];
  ASSERT_EQ(pipe(up), 0);
  const pid_t child = fork();
  if (child == 0) {
    ::close(up[0]);
    auto p = platform(3);
    auto fe = SndFrontend::connect(p, {});
    if (!fe.ok()) _exit(91);
    if (!(*fe)->open(0, 48000, kFormatS16LE, 2, kBuffer, kPeriod).ok()) _exit(92);
    if (!(*fe)->open(1, 48000, kFormatS16LE, 2, kBuffer, kPeriod).ok()) _exit(93);
    if (!(*fe)->trigger(0, kTriggerStart).ok()) _exit(94);
    (void)!::write(up[1], "u", 1);
    // Plays and records without pause, until killed.
    for (std::uint32_t i = 0;; ++i) {
      (void)(*fe)->write(0, (i * kPeriod) % kBuffer, kPeriod);
      (void)(*fe)->read(1, (i * kPeriod) % kBuffer, kPeriod);
    }
  }
  ::close(up[1]);
  char c = 0;
  ASSERT_EQ(::read(up[0], &c, 1), 1) << slurp(log);
  ::close(up[0]);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  // The toolstack notices the dead guest and tears its device down.
  remove(3);
  EXPECT_TRUE(
      log_says("holds after a device went away: devices=1 connected=0 ring_mappings=0 "
               "event_channels=0 open_streams=0 buffer_pages=0"));
  EXPECT_EQ(kill(be, 0), 0);
  EXPECT_EQ(backend_pages(), 0u);
  // The other domain is served.
  auto p1 = platform(1);
  auto fe1 = SndFrontend::connect(p1, {});
  ASSERT_TRUE(fe1.ok()) << fe1.error().describe() << slurp(log);
  ASSERT_TRUE((*fe1)->open(0, 44100, kFormatS16LE, 2, kBuffer, kPeriod).ok());
  ASSERT_TRUE((*fe1)->write(0, 0, kPeriod).ok());
  ASSERT_TRUE((*fe1)->close_stream(0).ok());
  EXPECT_TRUE((*fe1)->close().ok());
  remove(1);
}

}  // namespace
}  // namespace shbuf::snd
