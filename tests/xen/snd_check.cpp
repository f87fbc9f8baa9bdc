// The dom0 side of the PV sound proof's checks, from the signal of
// snd_signal.h (the one the domU's snd_client plays):
//   shbuf_snd_check wav FILE FIRST FRAMES   writes signal frames FIRST.. as a
//                                           WAV (S16_LE, 2 channels, 48 kHz):
//                                           what the backend serves to capture
//   shbuf_snd_check digest FIRST FRAMES     prints the fnv1a64 of those frames'
//                                           bytes (what snd_client prints of
//                                           what it recorded)
//   shbuf_snd_check compare FILE FRAMES     checks that the WAV FILE has that
//                                           format and holds exactly signal
//                                           frames 0..FRAMES-1 (what was played)
//   shbuf_snd_check dump FILE FRAMES        prints, for the first FRAMES frames,
//                                           "n signal_left wav_left" per line
//                                           (for plotting one against the other)
// Exit 0 when the check holds, 1 with one line saying why otherwise.
#include <sndfile.h>

#include <charconv>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "snd_signal.h"

namespace {

int fail(const std::string& why) {
  std::printf("snd-check: FAIL: %s\n", why.c_str());
  return 1;
}

bool parse(std::string_view s, std::uint32_t& v) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size();
}

// Frames first.. of the signal as interleaved samples.
std::vector<short> signal(std::uint32_t first, std::uint32_t frames) {
  std::vector<short> out;
  out.reserve(std::size_t(frames) * SND_SIGNAL_CHANNELS);
  for (std::uint32_t n = 0; n < frames; ++n) {
    out.push_back(snd_signal_left(first + n));
    out.push_back(snd_signal_right(first + n));
  }
  return out;
}

int write_wav(const char* path, std::uint32_t first, std::uint32_t frames) {
  SF_INFO info{};
  info.samplerate = int(SND_SIGNAL_RATE);
  info.channels = int(SND_SIGNAL_CHANNELS);
  info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  SNDFILE* f = sf_open(path, SFM_WRITE, &info);
  if (f == nullptr) return fail(std::string("cannot create ") + path + ": " + sf_strerror(nullptr));
  const std::vector<short> s = signal(first, frames);
  const sf_count_t put = sf_writef_short(f, s.data(), frames);
  const int closed = sf_close(f);
  if (put != sf_count_t(frames) || closed != 0) return fail(std::string("cannot write ") + path);
  return 0;
}

int digest(std::uint32_t first, std::uint32_t frames) {
  std::uint64_t h = SND_FNV1A64_INIT;
  unsigned char b[SND_SIGNAL_FRAME_BYTES];
  for (std::uint32_t n = 0; n < frames; ++n) {
    snd_signal_frame(first + n, b);
    h = snd_fnv1a64(h, b, sizeof b);
  }
  std::printf("%016" PRIx64 "\n", h);
  return 0;
}

// The first `frames` frames of the WAV at `path`, which must be in the
// signal's format and hold at least that many (exactly, when `exact`).
bool read_wav(const char* path, std::uint32_t frames, bool exact, std::vector<short>& got) {
  SF_INFO info{};
  SNDFILE* f = sf_open(path, SFM_READ, &info);
  const std::string name(path);
  if (f == nullptr) return fail("cannot read " + name + ": " + sf_strerror(nullptr)) == 0;
  if (info.format != (SF_FORMAT_WAV | SF_FORMAT_PCM_16) ||
      info.samplerate != int(SND_SIGNAL_RATE) || info.channels != int(SND_SIGNAL_CHANNELS)) {
    sf_close(f);
    return fail(name + " is not a 16-bit PCM WAV of 2 channels at 48000 Hz") == 0;
  }
  if (exact ? info.frames != sf_count_t(frames) : info.frames < sf_count_t(frames)) {
    sf_close(f);
    return fail(name + " holds " + std::to_string(info.frames) + " frames, not " +
                std::to_string(frames)) == 0;
  }
  got.assign(std::size_t(frames) * SND_SIGNAL_CHANNELS, 0);
  const sf_count_t read = sf_readf_short(f, got.data(), frames);
  sf_close(f);
  if (read != sf_count_t(frames)) return fail("cannot read the frames of " + name) == 0;
  return true;
}

int dump(const char* path, std::uint32_t frames) {
  std::vector<short> got;
  if (!read_wav(path, frames, false, got)) return 1;
  for (std::uint32_t n = 0; n < frames; ++n) {
    std::printf("%u %d %d\n", n, snd_signal_left(n), got[std::size_t(n) * SND_SIGNAL_CHANNELS]);
  }
  return 0;
}

int compare(const char* path, std::uint32_t frames) {
  const std::string name(path);
  std::vector<short> got;
  if (!read_wav(path, frames, true, got)) return 1;
  const std::vector<short> want = signal(0, frames);
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (got[i] != want[i]) {
      return fail(name + ": frame " + std::to_string(i / SND_SIGNAL_CHANNELS) + " channel " +
                  std::to_string(i % SND_SIGNAL_CHANNELS) + " is " + std::to_string(got[i]) +
                  ", the signal has " + std::to_string(want[i]));
    }
  }
  std::printf("snd-check: %s holds the %u frames played, sample for sample\n", path, frames);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view cmd = argc > 1 ? argv[1] : "";
  std::uint32_t a = 0, b = 0;
  if (cmd == "wav" && argc == 5 && parse(argv[3], a) && parse(argv[4], b)) {
    return write_wav(argv[2], a, b);
  }
  if (cmd == "digest" && argc == 4 && parse(argv[2], a) && parse(argv[3], b)) return digest(a, b);
  if (cmd == "compare" && argc == 4 && parse(argv[3], a)) return compare(argv[2], a);
  if (cmd == "dump" && argc == 4 && parse(argv[3], a)) return dump(argv[2], a);
  std::fprintf(stderr,
               "usage: shbuf_snd_check wav FILE FIRST FRAMES | digest FIRST FRAMES |"
               " compare FILE FRAMES | dump FILE FRAMES\n");
  return 2;
}
