// One PV sound device (a vsnd instance of one frontend) as the backend sees
// it: its streams, each opened on a buffer the frontend shares through a
// page directory, started and stopped, written to (playback) or read from
// (capture). It answers each request packet, validating every field against
// the stream's configuration and its own records before anything is mapped
// or copied, and hands played samples to a sink and takes recorded ones from
// a source (WAV files, see wav.h).
//
// Transport-agnostic: the caller copies packets out of the rings and
// publishes responses and the position events due_events() names.
//
// Per stream: OPEN maps the buffer (frontend-allocated, sndif has no
// backend allocation); OPEN on an open stream drops the old buffer and
// sink first, as Linux's snd_xen_front re-opens without CLOSE; CLOSE lets
// go (and is answered 0 on a closed stream: Linux's hw_free sends it
// whether or not the stream was opened). The position runs from 0 at each
// TRIGGER START, at the stream's rate while started and not paused, and is
// reported as a cumulative byte count every quarter period (at least 1 ms
// apart) when OPEN asked for events (period_sz > 0).
//
// What is refused, with the negative errno the response carries:
//   EINVAL  a format, rate or channel count the stream does not offer or we
//           cannot write, buffer_sz 0, period_sz above buffer_sz,
//           gref_directory 0, a directory the walk refuses, READ or WRITE
//           outside the buffer or of a length that is not whole frames,
//           WRITE on a capture stream or READ on a playback one, an unknown
//           trigger type, a stream index the card does not have, and a
//           query with nothing left once narrowed.
//   E2BIG   buffer_sz above min(the stream's buffer-size, the limit).
//   EPROTO  READ, WRITE or TRIGGER on a stream that is not open.
//   ENOTSUP any other operation (volume and mute included: no mixer).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pv/snd/protocol.h"
#include "shbuf/core/backend_buffer.h"
#include "shbuf/core/provider.h"
#include "shbuf/core/result.h"

namespace shbuf::snd {

using Clock = std::chrono::steady_clock;

struct DeviceLimits {
  // Largest buffer_sz of any stream's OPEN.
  std::uint32_t max_buffer_bytes = 1u << 20;
};

// What an OPEN asked for.
struct StreamFormat {
  std::uint32_t rate = 0;
  std::uint8_t format = 0;
  std::uint8_t channels = 0;
  std::uint32_t frame_bytes() const { return sample_bytes(format) * channels; }
};

// Receives a playback stream's samples, whole frames in the stream's
// format; one per OPEN, closed at CLOSE, at the next OPEN or when the
// device goes.
class PlaybackSink {
 public:
  virtual ~PlaybackSink() = default;
  virtual Status write(std::span<const std::byte> frames) = 0;
  virtual Status close() = 0;
};

// Gives a capture stream's samples, whole frames in the stream's format;
// one per OPEN.
class CaptureSource {
 public:
  virtual ~CaptureSource() = default;
  virtual Status fill(std::span<std::byte> frames) = 0;
};

using SinkFactory = std::function<Result<std::unique_ptr<PlaybackSink>>(const StreamConfig&,
                                                                        const StreamFormat&)>;
using SourceFactory = std::function<Result<std::unique_ptr<CaptureSource>>(const StreamConfig&,
                                                                           const StreamFormat&)>;

struct Outcome {
  Response response;
  // Why the status is not 0, for the log.
  std::string error;
};

// A position event for a stream, due now.
struct DueEvent {
  std::size_t stream = 0;
  std::uint64_t position = 0;
};

// Position events are at least this far apart.
inline constexpr std::chrono::milliseconds kMinEventInterval{1};

class SoundDevice {
 public:
  // The provider must outlive the device.
  SoundDevice(Provider& provider, DomId frontend, std::vector<StreamConfig> streams,
              DeviceLimits limits, SinkFactory sinks, SourceFactory sources);
  SoundDevice(const SoundDevice&) = delete;
  SoundDevice& operator=(const SoundDevice&) = delete;
  ~SoundDevice();

  // Answers one request that arrived on `stream`'s ring at `now`.
  Outcome handle(std::size_t stream, const Packet& packet, Clock::time_point now);

  // The position events due at `now` (at most one per stream), each
  // stream's next one scheduled.
  std::vector<DueEvent> due_events(Clock::time_point now);
  // When the next one is due; nullopt when no stream is running with
  // events.
  std::optional<Clock::time_point> next_due() const;

  const std::vector<StreamConfig>& streams() const { return configs_; }
  std::size_t open_streams() const;
  std::size_t pages_held() const;
  // Bytes played (WRITE) and recorded (READ) on all streams so far.
  std::uint64_t bytes_played() const { return played_; }
  std::uint64_t bytes_recorded() const { return recorded_; }

  // Closes every stream (sinks closed, buffers unmapped); the device is
  // empty afterwards whatever the outcome. The first failure is returned.
  Status release_all();

 private:
  struct Stream {
    bool open = false;
    StreamFormat format;
    std::uint32_t buffer_sz = 0;
    std::uint32_t period_sz = 0;
    BackendBuffer buffer;
    std::unique_ptr<PlaybackSink> sink;
    std::unique_ptr<CaptureSource> source;
    bool running = false;
    std::uint64_t position_base = 0;  // bytes before running_since
    Clock::time_point running_since{};
    Clock::time_point next_event{};
    Clock::duration event_interval{};
  };

  Status open(std::size_t index, const Open& r);
  Status close(std::size_t index);
  Status write(std::size_t index, const Write& r);
  Status read(std::size_t index, const Read& r);
  Status trigger(std::size_t index, const Trigger& r, Clock::time_point now);
  Status check_range(const Stream& s, std::uint32_t offset, std::uint32_t length,
                     const char* what) const;
  std::uint64_t position(const Stream& s, Clock::time_point now) const;

  Provider* provider_;
  DomId frontend_;
  std::vector<StreamConfig> configs_;
  DeviceLimits limits_;
  SinkFactory sinks_;
  SourceFactory sources_;
  std::vector<Stream> streams_;
  std::uint64_t played_ = 0;
  std::uint64_t recorded_ = 0;
};

}  // namespace shbuf::snd
