// The sound device over the simulator: played bytes reach the sink exactly,
// recorded ones reach the frontend's buffer exactly, OPEN replaces an open
// stream, every bad request is refused with its errno while the device goes
// on, position events follow the (given) clock; and the WAV sink and
// sources write and read what they should, within their limits.
#include <gtest/gtest.h>
#include <sndfile.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "pv/snd/device.h"
#include "pv/snd/wav.h"
#include "shbuf/core/frontend_buffer.h"
#include "sim_fixture.h"

namespace shbuf::snd {
namespace {

using namespace std::chrono_literals;

struct Played {
  std::vector<std::byte> bytes;
  int sinks = 0;
  int closed = 0;
};

class MemorySink final : public PlaybackSink {
 public:
  explicit MemorySink(Played& p) : p_(p) { ++p_.sinks; }
  Status write(std::span<const std::byte> f) override {
    p_.bytes.insert(p_.bytes.end(), f.begin(), f.end());
    return {};
  }
  Status close() override {
    ++p_.closed;
    return {};
  }

 private:
  Played& p_;
};

// Counts bytes: byte i of the capture is i mod 251.
class CountingSource final : public CaptureSource {
 public:
  Status fill(std::span<std::byte> out) override {
    for (std::byte& b : out) b = std::byte(n_++ % 251);
    return {};
  }

 private:
  std::uint64_t n_ = 0;
};

StreamConfig stream(bool capture, std::uint32_t index) {
  StreamConfig s;
  s.index = index;
  s.capture = capture;
  s.params.rates = {44100, 48000};
  s.params.formats = format_bit(kFormatS16LE) | format_bit(kFormatU8) | format_bit(3);
  s.params.channels_min = 1;
  s.params.channels_max = 2;
  s.params.buffer_size = 65536;
  return s;
}

class SndDevice : public testing::SimPair {
 protected:
  std::unique_ptr<SoundDevice> make(DeviceLimits limits = {}) {
    return std::make_unique<SoundDevice>(
        *be, kFrontendDom, std::vector<StreamConfig>{stream(false, 0), stream(true, 1)}, limits,
        [this](const StreamConfig&, const StreamFormat&) -> Result<std::unique_ptr<PlaybackSink>> {
          return std::unique_ptr<PlaybackSink>(new MemorySink(played));
        },
        [](const StreamConfig&, const StreamFormat&) -> Result<std::unique_ptr<CaptureSource>> {
          return std::unique_ptr<CaptureSource>(new CountingSource);
        });
  }

  FrontendBuffer buffer(std::size_t bytes) {
    FrontendBufferConfig fc;
    fc.backend = kBackendDom;
    fc.pages = (bytes + kPageSize - 1) / kPageSize;
    auto f = FrontendBuffer::create(*fe, fc);
    EXPECT_TRUE(f.ok()) << f.error().describe();
    return std::move(f).value();
  }

  Outcome send(SoundDevice& d, std::size_t s, std::uint8_t op, decltype(Request::body) body,
               Clock::time_point now = Clock::now()) {
    Request r;
    r.id = ++id;
    r.operation = op;
    r.body = std::move(body);
    Outcome o = d.handle(s, encode_request(r), now);
    EXPECT_EQ(o.response.id, id);
    EXPECT_EQ(o.response.operation, op);
    EXPECT_EQ(o.response.status == 0, o.error.empty()) << o.error;
    return o;
  }

  static Open open_req(Gref dir, std::uint32_t bytes, std::uint32_t period = 0,
                       std::uint8_t format = kFormatS16LE, std::uint8_t channels = 2,
                       std::uint32_t rate = 48000) {
    return Open{rate, format, channels, bytes, dir, period};
  }

  Played played;
  std::uint16_t id = 0;
};

TEST_F(SndDevice, PlayedBytesReachTheSinkExactly) {
  auto d = make();
  FrontendBuffer b = buffer(8192);
  ASSERT_EQ(send(*d, 0, kOpOpen, open_req(b.directory_gref(), 8192)).response.status, 0);
  EXPECT_EQ(d->open_streams(), 1u);
  EXPECT_EQ(d->pages_held(), 2u);
  for (std::size_t i = 0; i < 8192; ++i) b.memory()[i] = std::byte(i * 7);
  ASSERT_EQ(send(*d, 0, kOpWrite, Write{4096, 4096}).response.status, 0);
  ASSERT_EQ(send(*d, 0, kOpWrite, Write{0, 4096}).response.status, 0);
  ASSERT_EQ(played.bytes.size(), 8192u);
  EXPECT_EQ(std::memcmp(played.bytes.data(), b.memory().data() + 4096, 4096), 0);
  EXPECT_EQ(std::memcmp(played.bytes.data() + 4096, b.memory().data(), 4096), 0);
  EXPECT_EQ(d->bytes_played(), 8192u);
  ASSERT_EQ(send(*d, 0, kOpClose, Close{}).response.status, 0);
  EXPECT_EQ(played.closed, 1);
  EXPECT_EQ(d->open_streams(), 0u);
  EXPECT_EQ(d->pages_held(), 0u);
  ASSERT_TRUE(b.free().ok());
  expect_clean();
}

TEST_F(SndDevice, RecordedBytesReachTheFrontendsBufferExactly) {
  auto d = make();
  FrontendBuffer b = buffer(4096);
  ASSERT_EQ(send(*d, 1, kOpOpen, open_req(b.directory_gref(), 4096)).response.status, 0);
  ASSERT_EQ(send(*d, 1, kOpRead, Read{1024, 2048}).response.status, 0);
  for (std::size_t i = 0; i < 2048; ++i) {
    ASSERT_EQ(b.memory()[1024 + i], std::byte(i % 251)) << i;
  }
  EXPECT_EQ(b.memory()[0], std::byte{0});
  ASSERT_EQ(send(*d, 1, kOpRead, Read{4096, 0}).response.status, 0);
  EXPECT_EQ(d->bytes_recorded(), 2048u);
  d.reset();
  ASSERT_TRUE(b.free().ok());
  expect_clean();
}

TEST_F(SndDevice, OpenOnAnOpenStreamReplacesIt) {
  auto d = make();
  FrontendBuffer a = buffer(4096);
  FrontendBuffer b = buffer(12288);
  ASSERT_EQ(send(*d, 0, kOpOpen, open_req(a.directory_gref(), 4096)).response.status, 0);
  ASSERT_EQ(send(*d, 0, kOpOpen, open_req(b.directory_gref(), 12288)).response.status, 0);
  EXPECT_EQ(played.sinks, 2);
  EXPECT_EQ(played.closed, 1);
  EXPECT_EQ(d->open_streams(), 1u);
  EXPECT_EQ(d->pages_held(), 3u);
  // The old buffer is no longer mapped: its frontend can end its grants.
  ASSERT_TRUE(a.free().ok());
  std::memset(b.memory().data(), 0x5a, 12288);
  ASSERT_EQ(send(*d, 0, kOpWrite, Write{8192, 4096}).response.status, 0);
  EXPECT_EQ(played.bytes, std::vector<std::byte>(4096, std::byte{0x5a}));
  // A failed OPEN leaves the stream closed.
  EXPECT_EQ(send(*d, 0, kOpOpen, open_req(b.directory_gref(), 0)).response.status, -EINVAL);
  EXPECT_EQ(d->open_streams(), 0u);
  EXPECT_EQ(send(*d, 0, kOpWrite, Write{0, 4}).response.status, -EPROTO);
  ASSERT_TRUE(b.free().ok());
  expect_clean();
}

TEST_F(SndDevice, EveryBadRequestIsRefusedWithItsErrnoAndTheDeviceGoesOn) {
  DeviceLimits limits;
  limits.max_buffer_bytes = 32768;
  auto d = make(limits);
  FrontendBuffer b = buffer(32768);
  const Gref dir = b.directory_gref();
  // Before OPEN.
  EXPECT_EQ(send(*d, 0, kOpWrite, Write{0, 4}).response.status, -EPROTO);
  EXPECT_EQ(send(*d, 1, kOpRead, Read{0, 4}).response.status, -EPROTO);
  EXPECT_EQ(send(*d, 0, kOpTrigger, Trigger{kTriggerStart}).response.status, -EPROTO);
  EXPECT_EQ(send(*d, 0, kOpClose, Close{}).response.status, 0);
  // OPEN's fields.
  EXPECT_EQ(send(*d, 0, kOpOpen, open_req(dir, 0)).response.status, -EINVAL);
  EXPECT_EQ(send(*d, 0, kOpOpen, open_req(dir, 32769)).response.status, -E2BIG);
  EXPECT_EQ(send(*d, 0, kOpOpen, open_req(dir, 4096, 0, 3)).response.status, -EINVAL);
  EXPECT_EQ(send(*d, 0, kOpOpen, open_req(dir, 4096, 0, kFormatS32LE)).response.status, -EINVAL);
  EXPECT_EQ(send(*d, 0, kOpOpen, open_req(dir, 4096, 0, kFormatS16LE, 3)).response.status,
            -EINVAL);
  EXPECT_EQ(send(*d, 0, kOpOpen, open_req(dir, 4096, 0, kFormatS16LE, 0)).response.status,
            -EINVAL);
  EXPECT_EQ(send(*d, 0, kOpOpen, open_req(dir, 4096, 0, kFormatS16LE, 2, 22050)).response.status,
            -EINVAL);
  EXPECT_EQ(send(*d, 0, kOpOpen, open_req(dir, 4096, 4100)).response.status, -EINVAL);
  EXPECT_EQ(send(*d, 0, kOpOpen, open_req(0, 4096)).response.status, -EINVAL);
  EXPECT_LT(send(*d, 0, kOpOpen, open_req(dir + 1000, 4096)).response.status, 0);
  EXPECT_EQ(d->open_streams(), 0u);
  EXPECT_EQ(d->pages_held(), 0u);
  // The largest allowed buffer.
  ASSERT_EQ(send(*d, 0, kOpOpen, open_req(dir, 32768)).response.status, 0);
  // READ and WRITE bounds.
  EXPECT_EQ(send(*d, 0, kOpWrite, Write{32768, 4}).response.status, -EINVAL);
  EXPECT_EQ(send(*d, 0, kOpWrite, Write{32764, 8}).response.status, -EINVAL);
  EXPECT_EQ(send(*d, 0, kOpWrite, Write{4, 0xfffffffcu}).response.status, -EINVAL);
  EXPECT_EQ(send(*d, 0, kOpWrite, Write{0xffffffffu, 0xffffffffu}).response.status, -EINVAL);
  EXPECT_EQ(send(*d, 0, kOpWrite, Write{0, 6}).response.status, -EINVAL);
  EXPECT_EQ(send(*d, 0, kOpRead, Read{0, 4}).response.status, -EINVAL);
  EXPECT_EQ(send(*d, 0, kOpTrigger, Trigger{4}).response.status, -EINVAL);
  EXPECT_EQ(send(*d, 0, kOpSetVolume, UnknownOp{}).response.status, -ENOTSUP);
  EXPECT_EQ(send(*d, 0, 0xee, UnknownOp{}).response.status, -ENOTSUP);
  EXPECT_EQ(send(*d, 2, kOpClose, Close{}).response.status, -EINVAL);
  EXPECT_TRUE(played.bytes.empty());
  // Empty transfers are answered and move nothing.
  EXPECT_EQ(send(*d, 0, kOpWrite, Write{32768, 0}).response.status, 0);
  // Still serving.
  ASSERT_EQ(send(*d, 0, kOpWrite, Write{32764, 4}).response.status, 0);
  EXPECT_EQ(played.bytes.size(), 4u);
  d.reset();
  ASSERT_TRUE(b.free().ok());
  expect_clean();
}

TEST_F(SndDevice, QueriesAreAnsweredFromTheStreamsConfiguration) {
  auto d = make();
  HwParams q{~0ull, {0, UINT32_MAX}, {2, 2}, {0, UINT32_MAX}, {0, UINT32_MAX}};
  Outcome o = send(*d, 0, kOpHwParamQuery, HwParamQuery{q});
  ASSERT_EQ(o.response.status, 0) << o.error;
  EXPECT_EQ(o.response.hw.formats, format_bit(kFormatS16LE) | format_bit(kFormatU8));
  EXPECT_EQ(o.response.hw.rates, (Interval{44100, 48000}));
  EXPECT_EQ(o.response.hw.channels, (Interval{2, 2}));
  q.channels = {4, 8};
  EXPECT_EQ(send(*d, 0, kOpHwParamQuery, HwParamQuery{q}).response.status, -EINVAL);
}

// Positions follow the clock the requests and events are given: no timing.
TEST_F(SndDevice, PositionsRunAtTheStreamsRateWhileStarted) {
  auto d = make();
  FrontendBuffer b = buffer(16384);
  // 4096-byte periods of 4-byte frames at 48 kHz: 1024 frames, 21.3 ms.
  ASSERT_EQ(send(*d, 0, kOpOpen, open_req(b.directory_gref(), 16384, 4096)).response.status, 0);
  EXPECT_FALSE(d->next_due().has_value());
  const Clock::time_point t0 = Clock::now();
  ASSERT_EQ(send(*d, 0, kOpTrigger, Trigger{kTriggerStart}, t0).response.status, 0);
  ASSERT_TRUE(d->next_due().has_value());
  // A quarter period.
  EXPECT_EQ(*d->next_due() - t0, std::chrono::nanoseconds(1024 * 1000000000ull / 48000 / 4));
  EXPECT_TRUE(d->due_events(t0 + 1ms).empty());
  auto due = d->due_events(t0 + 10ms);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].stream, 0u);
  EXPECT_EQ(due[0].position, 480u * 4);
  ASSERT_EQ(send(*d, 0, kOpTrigger, Trigger{kTriggerPause}, t0 + 20ms).response.status, 0);
  EXPECT_FALSE(d->next_due().has_value());
  EXPECT_TRUE(d->due_events(t0 + 50ms).empty());
  ASSERT_EQ(send(*d, 0, kOpTrigger, Trigger{kTriggerResume}, t0 + 100ms).response.status, 0);
  due = d->due_events(t0 + 110ms);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].position, 960u * 4 + 480u * 4);
  // Far behind: one event, then the next a quarter period later.
  due = d->due_events(t0 + 1100ms);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].position, (960u + 48000u) * 4);
  EXPECT_GT(*d->next_due(), t0 + 1100ms);
  ASSERT_EQ(send(*d, 0, kOpTrigger, Trigger{kTriggerStop}, t0 + 1200ms).response.status, 0);
  EXPECT_FALSE(d->next_due().has_value());
  // START counts from 0 again.
  ASSERT_EQ(send(*d, 0, kOpTrigger, Trigger{kTriggerStart}, t0 + 2s).response.status, 0);
  due = d->due_events(t0 + 2s + 10ms);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].position, 480u * 4);
  // No events when OPEN asked for none.
  ASSERT_EQ(send(*d, 0, kOpOpen, open_req(b.directory_gref(), 16384, 0)).response.status, 0);
  ASSERT_EQ(send(*d, 0, kOpTrigger, Trigger{kTriggerStart}, t0).response.status, 0);
  EXPECT_FALSE(d->next_due().has_value());
  EXPECT_TRUE(d->due_events(t0 + 1s).empty());
  d.reset();
  ASSERT_TRUE(b.free().ok());
  expect_clean();
}

// ---- WAV files ----

class SndWav : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = "/tmp/shbuf-snd-wav-" + std::to_string(::getpid()) + "-" +
          ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  void TearDown() override { std::filesystem::remove_all(dir); }

  // The samples of a 16-bit WAV file, and its channels and rate.
  static std::vector<short> read16(const std::string& path, SF_INFO& info) {
    info = SF_INFO{};
    SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
    if (f == nullptr) return {};
    std::vector<short> s(std::size_t(info.frames * info.channels));
    sf_readf_short(f, s.data(), info.frames);
    sf_close(f);
    return s;
  }

  std::string dir;
};

TEST_F(SndWav, PlayedSamplesAreWrittenSampleForSampleInNumberedFiles) {
  WavFiles files(dir, {});
  StreamConfig s = stream(false, 1);
  s.pcm = 2;
  const StreamFormat fmt{44100, kFormatS16LE, 2};
  auto sink = files.open(3, 4, s, fmt);
  ASSERT_TRUE(sink.ok()) << sink.error().describe();
  std::vector<short> samples(2000);
  for (std::size_t i = 0; i < samples.size(); ++i) samples[i] = short(i * 37 - 30000);
  ASSERT_TRUE((*sink)->write(std::as_bytes(std::span(samples))).ok());
  ASSERT_TRUE((*sink)->close().ok());
  SF_INFO info;
  EXPECT_EQ(read16(dir + "/d3-v4-p2-s1-0.wav", info), samples);
  EXPECT_EQ(info.channels, 2);
  EXPECT_EQ(info.samplerate, 44100);
  auto second = files.open(3, 4, s, fmt);
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE((*second)->close().ok());
  EXPECT_TRUE(std::filesystem::exists(dir + "/d3-v4-p2-s1-1.wav"));
  EXPECT_EQ(wav_file_name(1, 0, 0, 0, 12), "d1-v0-p0-s0-12.wav");
}

TEST_F(SndWav, FilesAreBoundedInSizeAndCount) {
  WavLimits limits;
  limits.max_file_bytes = 1001;  // 250 whole 4-byte frames
  limits.max_files_per_stream = 2;
  WavFiles files(dir, limits);
  const StreamFormat fmt{48000, kFormatS16LE, 2};
  const StreamConfig s = stream(false, 0);
  auto a = files.open(1, 0, s, fmt);
  ASSERT_TRUE(a.ok());
  std::vector<short> samples(1000, 1234);
  ASSERT_TRUE((*a)->write(std::as_bytes(std::span(samples))).ok());
  ASSERT_TRUE((*a)->write(std::as_bytes(std::span(samples))).ok());
  ASSERT_TRUE((*a)->close().ok());
  SF_INFO info;
  EXPECT_EQ(read16(dir + "/d1-v0-p0-s0-0.wav", info).size(), 500u);
  ASSERT_TRUE(files.open(1, 0, s, fmt).ok());
  auto third = files.open(1, 0, s, fmt);
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().code, ENOSPC);
  // Another stream has files of its own.
  EXPECT_TRUE(files.open(1, 0, stream(false, 1), fmt).ok());
  EXPECT_EQ(files.open(1, 0, s, {48000, 3, 2}).error().code, EINVAL);
}

TEST_F(SndWav, CaptureReadsTheFileExactlyThenSilence) {
  const std::string path = dir + "/in.wav";
  SF_INFO info{};
  info.samplerate = 48000;
  info.channels = 1;
  info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  ASSERT_NE(f, nullptr);
  std::vector<short> mono(300);
  for (std::size_t i = 0; i < mono.size(); ++i) mono[i] = short(i * 101 - 15000);
  ASSERT_EQ(sf_writef_short(f, mono.data(), 300), 300);
  sf_close(f);
  // The mono file on both channels of a stereo stream.
  auto src = open_wav_source(path, {48000, kFormatS16LE, 2});
  ASSERT_TRUE(src.ok()) << src.error().describe();
  std::vector<short> got(2 * 400, 7);
  ASSERT_TRUE((*src)->fill(std::as_writable_bytes(std::span(got))).ok());
  for (std::size_t i = 0; i < 400; ++i) {
    const short want = i < 300 ? mono[i] : 0;
    ASSERT_EQ(got[2 * i], want) << i;
    ASSERT_EQ(got[2 * i + 1], want) << i;
  }
  // U8 silence is 0x80.
  auto u8 = open_wav_source(path, {48000, kFormatU8, 1});
  ASSERT_TRUE(u8.ok());
  std::vector<std::uint8_t> bytes(310);
  ASSERT_TRUE((*u8)->fill(std::as_writable_bytes(std::span(bytes))).ok());
  EXPECT_EQ(bytes[0], std::uint8_t((mono[0] >> 8) + 128));
  EXPECT_EQ(bytes[305], 0x80);
  EXPECT_EQ(open_wav_source(dir + "/none.wav", {48000, kFormatS16LE, 2}).error().code, EIO);
}

TEST_F(SndWav, GeneratedSignalsAreTheirFunctions) {
  auto sine = make_signal_source(Signal::kSine, {48000, kFormatS16LE, 2});
  std::vector<short> got(2 * 1000);
  ASSERT_TRUE(sine->fill(std::as_writable_bytes(std::span(got))).ok());
  bool moves = false;
  for (std::size_t i = 0; i < 1000; ++i) {
    const double want = signal_value(Signal::kSine, i, 48000) * 32768.0;
    ASSERT_NEAR(got[2 * i], want, 1.0) << i;
    ASSERT_EQ(got[2 * i], got[2 * i + 1]);
    moves = moves || got[2 * i] > 10000;
  }
  EXPECT_TRUE(moves);
  EXPECT_NEAR(signal_value(Signal::kRamp, 0, 48000), -1.0, 1e-9);
  EXPECT_NEAR(signal_value(Signal::kRamp, 240, 48000), 0.0, 1e-9);
}

}  // namespace
}  // namespace shbuf::snd
