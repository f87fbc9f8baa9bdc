// Where the sound backend's samples go and come from: WAV files written and
// read with libsndfile, and generated signals for capture.
//
// Played samples are written sample for sample (the WAV's encoding is the
// stream's format), one file per stream and OPEN, named from numbers only,
// bounded in size (later samples are dropped, the WRITE still answered) and
// in count per stream (later OPENs of that stream are refused with ENOSPC).
// Recorded samples come from a WAV file (its channels mapped round-robin
// onto the stream's, converted by libsndfile to the stream's format, then
// silence once it ends; no resampling), or from a generated signal.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "pv/snd/device.h"
#include "shbuf/core/xen_types.h"

namespace shbuf::snd {

struct WavLimits {
  // Bytes of samples in one file; WAV's own sizes are 32-bit.
  std::uint64_t max_file_bytes = 256ull << 20;
  // Files written per stream (domain, device, PCM device, stream).
  std::uint32_t max_files_per_stream = 1000;
};
inline constexpr std::uint64_t kMaxWavFileBytes = 0xffffffffull - 4096;

// "d1-v0-p0-s0-3.wav": the 4th file of stream 0 of PCM device 0 of device 0
// of domain 1.
std::string wav_file_name(DomId frontend, std::uint32_t devid, std::uint32_t pcm,
                          std::uint32_t stream, std::uint32_t n);

// What the sinks of a WavFiles wrote.
struct WavStats {
  std::uint64_t files = 0;
  std::uint64_t bytes = 0;          // samples written
  std::uint64_t bytes_dropped = 0;  // beyond max_file_bytes
};

// Numbers the files of each stream across connections, for one backend;
// must outlive its sinks.
class WavFiles {
 public:
  WavFiles(std::string dir, WavLimits limits) : dir_(std::move(dir)), limits_(limits) {}
  const WavStats& stats() const { return stats_; }
  // A sink writing a new file of the stream into the directory. ENOSPC past
  // max_files_per_stream, EIO when libsndfile cannot create it.
  Result<std::unique_ptr<PlaybackSink>> open(DomId frontend, std::uint32_t devid,
                                             const StreamConfig& stream,
                                             const StreamFormat& format);

 private:
  std::string dir_;
  WavLimits limits_;
  WavStats stats_;
  std::map<std::tuple<DomId, std::uint32_t, std::uint32_t, std::uint32_t>, std::uint32_t> next_;
};

enum class Signal {
  kSine,  // 440 Hz at half scale, the same on every channel
  kRamp,  // a sawtooth from the lowest sample value to the highest, 100 Hz
};

// A source reading the WAV file at `path` (opened anew for each OPEN).
// EIO naming the file when libsndfile cannot open it.
Result<std::unique_ptr<CaptureSource>> open_wav_source(const std::string& path,
                                                       const StreamFormat& format);
// A source generating `signal` in the stream's format from frame 0.
std::unique_ptr<CaptureSource> make_signal_source(Signal signal, const StreamFormat& format);

// A signal's sample of `frame` at `rate`, in -1..1 (tests compare with it).
double signal_value(Signal signal, std::uint64_t frame, std::uint32_t rate);

}  // namespace shbuf::snd
