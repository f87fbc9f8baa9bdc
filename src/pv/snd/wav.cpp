// WAV files through libsndfile, and generated capture signals.
#include "pv/snd/wav.h"

#include <sndfile.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

namespace shbuf::snd {
namespace {

static_assert(std::endian::native == std::endian::little,
              "samples are copied as stored: sndif and WAV are little-endian");

// Frames converted per libsndfile call, bounding our scratch memory.
constexpr std::size_t kChunkFrames = 4096;

int wav_encoding(std::uint8_t format) {
  switch (format) {
    case kFormatU8:
      return SF_FORMAT_PCM_U8;
    case kFormatS16LE:
      return SF_FORMAT_PCM_16;
    case kFormatS32LE:
      return SF_FORMAT_PCM_32;
    case kFormatF32LE:
      return SF_FORMAT_FLOAT;
    default:
      return 0;
  }
}

// One file, its samples written as the stream sent them.
class WavSink final : public PlaybackSink {
 public:
  WavSink(SNDFILE* file, std::string path, std::uint64_t max_bytes, WavStats& stats)
      : file_(file), path_(std::move(path)), max_bytes_(max_bytes), stats_(stats) {}
  ~WavSink() override { (void)close(); }

  // Whole frames in, whole frames out: the limit is a multiple of the
  // frame size in practice, and a partial frame is never written.
  Status write(std::span<const std::byte> frames) override {
    if (file_ == nullptr) return make_error(EBADF, path_ + " is closed");
    const std::uint64_t room = max_bytes_ - std::min(max_bytes_, written_);
    const std::size_t n = std::size_t(std::min<std::uint64_t>(room, frames.size()));
    stats_.bytes_dropped += frames.size() - n;
    if (n == 0) return {};
    const sf_count_t done = sf_write_raw(file_, frames.data(), sf_count_t(n));
    if (done != sf_count_t(n)) {
      return make_error(EIO, "writing " + path_ + ": " + sf_strerror(file_));
    }
    written_ += n;
    stats_.bytes += n;
    return {};
  }

  Status close() override {
    if (file_ == nullptr) return {};
    const int rc = sf_close(file_);
    file_ = nullptr;
    if (rc != 0) return make_error(EIO, "closing " + path_ + ": " + sf_error_number(rc));
    return {};
  }

 private:
  SNDFILE* file_;
  std::string path_;
  std::uint64_t max_bytes_;
  WavStats& stats_;
  std::uint64_t written_ = 0;
};

// Stores one sample in the stream's format; `v` in -1..1 for floats, or a
// full-scale 32-bit integer.
void put_int(std::byte* out, std::uint8_t format, std::int32_t v) {
  switch (format) {
    case kFormatU8: {
      const auto u = static_cast<std::uint8_t>((v >> 24) + 128);
      std::memcpy(out, &u, 1);
      break;
    }
    case kFormatS16LE: {
      const auto s = static_cast<std::int16_t>(v >> 16);
      std::memcpy(out, &s, 2);
      break;
    }
    case kFormatS32LE:
      std::memcpy(out, &v, 4);
      break;
    default:
      break;
  }
}

class WavSource final : public CaptureSource {
 public:
  WavSource(SNDFILE* file, int file_channels, StreamFormat format)
      : file_(file), file_channels_(file_channels), format_(format) {}
  ~WavSource() override { sf_close(file_); }

  Status fill(std::span<std::byte> out) override {
    const std::size_t frame = format_.frame_bytes();
    const std::size_t sample = sample_bytes(format_.format);
    const std::size_t frames = out.size() / frame;
    std::fill(out.begin(), out.end(), std::byte{0});
    for (std::size_t done = 0; done < frames;) {
      const std::size_t want = std::min(kChunkFrames, frames - done);
      std::size_t got = 0;
      if (!ended_) {
        if (format_.format == kFormatF32LE) {
          floats_.resize(want * file_channels_);
          got = std::size_t(sf_readf_float(file_, floats_.data(), sf_count_t(want)));
        } else {
          ints_.resize(want * file_channels_);
          got = std::size_t(sf_readf_int(file_, ints_.data(), sf_count_t(want)));
        }
        ended_ = got < want;
      }
      for (std::size_t f = 0; f < want; ++f) {
        for (std::size_t c = 0; c < format_.channels; ++c) {
          std::byte* dst = out.data() + (done + f) * frame + c * sample;
          const std::size_t src = f * file_channels_ + c % file_channels_;
          if (f >= got) {
            put_int(dst, format_.format, 0);  // silence: 0x80 for U8
          } else if (format_.format == kFormatF32LE) {
            std::memcpy(dst, &floats_[src], 4);
          } else {
            put_int(dst, format_.format, ints_[src]);
          }
        }
      }
      done += want;
    }
    return {};
  }

 private:
  SNDFILE* file_;
  std::size_t file_channels_;
  StreamFormat format_;
  bool ended_ = false;
  std::vector<int> ints_;
  std::vector<float> floats_;
};

class SignalSource final : public CaptureSource {
 public:
  SignalSource(Signal signal, StreamFormat format) : signal_(signal), format_(format) {}

  Status fill(std::span<std::byte> out) override {
    const std::size_t frame = format_.frame_bytes();
    const std::size_t sample = sample_bytes(format_.format);
    for (std::size_t f = 0; f + frame <= out.size(); f += frame, ++frame_) {
      const double v = signal_value(signal_, frame_, format_.rate);
      for (std::size_t c = 0; c < format_.channels; ++c) {
        std::byte* dst = out.data() + f + c * sample;
        if (format_.format == kFormatF32LE) {
          const auto x = static_cast<float>(v);
          std::memcpy(dst, &x, 4);
        } else {
          const double scaled = std::clamp(v * 2147483648.0, -2147483648.0, 2147483647.0);
          put_int(dst, format_.format, static_cast<std::int32_t>(std::lround(scaled)));
        }
      }
    }
    return {};
  }

 private:
  Signal signal_;
  StreamFormat format_;
  std::uint64_t frame_ = 0;
};

}  // namespace

std::string wav_file_name(DomId frontend, std::uint32_t devid, std::uint32_t pcm,
                          std::uint32_t stream, std::uint32_t n) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "d%u-v%u-p%u-s%u-%u.wav", unsigned{frontend}, devid, pcm, stream,
                n);
  return buf;
}

Result<std::unique_ptr<PlaybackSink>> WavFiles::open(DomId frontend, std::uint32_t devid,
                                                     const StreamConfig& stream,
                                                     const StreamFormat& format) {
  const int encoding = wav_encoding(format.format);
  if (encoding == 0) {
    return make_error(EINVAL, "format " + format_name(format.format) + " has no WAV encoding");
  }
  std::uint32_t& next = next_[{frontend, devid, stream.pcm, stream.index}];
  if (next >= limits_.max_files_per_stream) {
    return make_error(ENOSPC, "stream " + std::to_string(stream.pcm) + "/" +
                                  std::to_string(stream.index) + " has written its " +
                                  std::to_string(limits_.max_files_per_stream) + " files");
  }
  const std::string path =
      dir_ + "/" + wav_file_name(frontend, devid, stream.pcm, stream.index, next);
  SF_INFO info{};
  info.samplerate = int(format.rate);
  info.channels = format.channels;
  info.format = SF_FORMAT_WAV | encoding;
  SNDFILE* file = sf_open(path.c_str(), SFM_WRITE, &info);
  if (file == nullptr) {
    return make_error(EIO, "cannot create " + path + ": " + sf_strerror(nullptr));
  }
  ++next;
  ++stats_.files;
  const std::uint64_t max = std::min(limits_.max_file_bytes, kMaxWavFileBytes);
  // Whole frames only.
  return std::unique_ptr<PlaybackSink>(
      new WavSink(file, path, max - max % format.frame_bytes(), stats_));
}

Result<std::unique_ptr<CaptureSource>> open_wav_source(const std::string& path,
                                                       const StreamFormat& format) {
  SF_INFO info{};
  SNDFILE* file = sf_open(path.c_str(), SFM_READ, &info);
  if (file == nullptr) {
    return make_error(EIO, "cannot read " + path + ": " + sf_strerror(nullptr));
  }
  if (info.channels < 1) {
    sf_close(file);
    return make_error(EINVAL, path + " has no channel");
  }
  return std::unique_ptr<CaptureSource>(new WavSource(file, info.channels, format));
}

std::unique_ptr<CaptureSource> make_signal_source(Signal signal, const StreamFormat& format) {
  return std::make_unique<SignalSource>(signal, format);
}

double signal_value(Signal signal, std::uint64_t frame, std::uint32_t rate) {
  if (rate == 0) return 0;
  switch (signal) {
    case Signal::kSine: {
      const double t = double(frame % rate) / rate;  // 440 whole cycles a second
      return 0.5 * std::sin(2 * M_PI * 440 * t);
    }
    case Signal::kRamp: {
      const std::uint64_t period = std::max<std::uint64_t>(1, rate / 100);
      return -1.0 + 2.0 * double(frame % period) / double(period);
    }
  }
  return 0;
}

}  // namespace shbuf::snd
