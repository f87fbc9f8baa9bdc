// Fuzzes the PV sound backend's request path with a hostile frontend that
// controls every byte of a stream's shared request ring (producer index
// included): each request is copied out of the ring, decoded and answered
// by a SoundDevice over the simulator, whose frontend has granted a 2-page
// buffer with a valid page directory (the first byte may make every OPEN
// name it). Whatever arrives: no crash, no hang, at most one ring's worth
// of requests per notification, every failure answered with a status and a
// reason, responses echoing id and operation, positions that only count
// whole frames, and nothing held once the device lets go.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "fuzz_ring.h"
#include "pv/ring.h"
#include "pv/snd/device.h"
#include "pv/snd/protocol.h"
#include "pv/snd/wav.h"

namespace {

using namespace shbuf;

constexpr DomId kFrontend = FuzzRingDomains::kFrontend;
constexpr std::uint32_t kRingSize = pv::ring_size(snd::kPacketSize);
// Where OPEN keeps gref_directory in a slot.
constexpr std::size_t kOffOpenGref = pv::packet::kOffBody + 12;

FuzzRingDomains& domains() {
  static FuzzRingDomains d("snd");
  return d;
}

// Counts what it is given; a write of a partial frame is a bug.
class CountingSink final : public snd::PlaybackSink {
 public:
  CountingSink(std::uint64_t& bytes, std::uint32_t frame) : bytes_(bytes), frame_(frame) {}
  Status write(std::span<const std::byte> f) override {
    if (frame_ == 0 || f.size() % frame_ != 0) std::abort();
    bytes_ += f.size();
    return {};
  }
  Status close() override { return {}; }

 private:
  std::uint64_t& bytes_;
  std::uint32_t frame_;
};

snd::StreamConfig stream(bool capture, std::uint32_t index) {
  snd::StreamConfig s;
  s.index = index;
  s.capture = capture;
  s.params.rates = {8000, 44100, 48000};
  s.params.formats = snd::kSupportedFormats;
  s.params.channels_min = 1;
  s.params.channels_max = 8;
  s.params.buffer_size = 3 * kPageSize;
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzRingDomains& d = domains();
  // The first byte: bit 0 the stream (playback, capture), bit 1 whether
  // OPENs name the real directory; the rest is the ring.
  const auto [head, page] = fuzz_ring_input(data, size);
  if ((head & 2) != 0) {
    const Gref dir = d.buffer.directory_gref();
    for (std::uint32_t i = 0; i < kRingSize; ++i) {
      std::byte* slot = page.data() + pv::kRingHeader + i * snd::kPacketSize;
      if (slot[pv::packet::kOffOperation] == std::byte{snd::kOpOpen})
        std::memcpy(slot + kOffOpenGref, &dir, 4);
    }
  }

  std::uint64_t played = 0;
  snd::DeviceLimits limits;
  limits.max_buffer_bytes = 2 * kPageSize;
  snd::SoundDevice device(
      *d.backend, kFrontend, {stream(false, 0), stream(true, 1)}, limits,
      [&played](const snd::StreamConfig&,
                const snd::StreamFormat& f) -> Result<std::unique_ptr<snd::PlaybackSink>> {
        return std::unique_ptr<snd::PlaybackSink>(new CountingSink(played, f.frame_bytes()));
      },
      [](const snd::StreamConfig&,
         const snd::StreamFormat& f) -> Result<std::unique_ptr<snd::CaptureSource>> {
        return snd::make_signal_source(snd::Signal::kRamp, f);
      });

  auto ring = pv::BackRing::attach(page, snd::kPacketSize);
  if (!ring.ok()) std::abort();
  const std::size_t index = head & 1;
  const snd::Clock::time_point t0 = snd::Clock::now();
  std::size_t handled = 0;
  for (;;) {
    snd::Packet packet;
    auto next = ring->next_request(packet);
    if (!next.ok() || !*next) break;
    if (++handled > kRingSize) std::abort();
    const snd::Request request = snd::decode_request(packet);
    const snd::Outcome out =
        device.handle(index, packet, t0 + std::chrono::milliseconds(handled * 7));
    if (out.response.status != 0 && out.error.empty()) std::abort();
    if (out.response.status > 0) std::abort();
    if (out.response.id != request.id || out.response.operation != request.operation) {
      std::abort();
    }
    if (!ring->push_response(snd::encode_response(out.response)).ok()) std::abort();
  }
  (void)ring->final_check();
  // Positions, well after the last request.
  for (const snd::DueEvent& e : device.due_events(t0 + std::chrono::seconds(1))) {
    if (e.stream != index) std::abort();
  }
  if (device.bytes_played() != played) std::abort();

  // Letting go releases every mapping the requests made.
  (void)device.release_all();
  if (device.pages_held() != 0 || device.open_streams() != 0) std::abort();
  expect_no_mappings(*d.backend);
  return 0;
}
