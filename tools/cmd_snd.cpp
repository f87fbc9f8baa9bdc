// shbuf snd-be: the headless PV sound backend, writing what guests play as
// WAV files and serving what they record from a WAV file or a generated
// signal, on Xen or on the simulator; and shbuf snd-fe, our frontend,
// playing a test tone through it and recording from it.
#include <sndfile.h>

#include <cmath>
#include <string>

#include "cli.h"
#include "hostile.h"
#include "pv/snd/backend.h"
#include "pv/snd/frontend.h"
#include "pv/snd/playback.h"

namespace shbuf::cli {
namespace {

struct FrontendArgs {
  ProviderArgs platform;
  std::uint32_t devid = 0;
  double seconds = 1;
  std::string record;
  double timeout = 5;
  HostileOptions hostile;
};

// The stream format snd-fe uses: S16_LE stereo at 48 kHz, 4 periods of
// 1024 frames.
constexpr std::uint32_t kRate = 48000;
constexpr std::uint32_t kFrame = 4;
constexpr std::uint32_t kPeriod = 1024 * kFrame;
constexpr std::uint32_t kBuffer = 4 * kPeriod;

// A 440 Hz tone at half scale, from frame `first` on.
void tone(std::span<std::byte> out, std::uint64_t first) {
  for (std::size_t f = 0; f * kFrame < out.size(); ++f) {
    const double v = snd::signal_value(snd::Signal::kSine, first + f, kRate);
    const auto s = static_cast<std::int16_t>(std::lround(v * 32767));
    std::memcpy(out.data() + f * kFrame, &s, 2);
    std::memcpy(out.data() + f * kFrame + 2, &s, 2);
  }
}

// Plays `bytes` of the tone: the buffer filled ahead of the position the
// backend reports, one period at a time.
void play(snd::SndFrontend& fe, std::size_t stream, std::uint64_t bytes) {
  const snd::PlaybackFormat format{kRate, snd::kFormatS16LE, 2, kBuffer, kPeriod};
  const snd::Playback p = take(snd::play_paced(
      fe, stream, format, bytes,
      [](std::span<std::byte> out, std::uint64_t first) { tone(out, first / kFrame); }));
  std::printf("stream %zu: played %llu bytes\n", stream, static_cast<unsigned long long>(p.bytes));
}

// Records `bytes` into the WAV file at `path`, a period at a time as the
// backend's position passes it.
void record(snd::SndFrontend& fe, std::size_t stream, std::uint64_t bytes,
            const std::string& path) {
  SF_INFO info{};
  info.samplerate = int(kRate);
  info.channels = 2;
  info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  SNDFILE* file = sf_open(path.c_str(), SFM_WRITE, &info);
  if (file == nullptr) fail(kExitFailure, "cannot create " + path + ": " + sf_strerror(nullptr));
  check(fe.open(stream, kRate, snd::kFormatS16LE, 2, kBuffer, kPeriod));
  check(fe.trigger(stream, snd::kTriggerStart));
  std::uint64_t read = 0, position = 0;
  while (read < bytes) {
    while (read + kPeriod <= position && read < bytes) {
      const std::uint32_t off = std::uint32_t(read % kBuffer);
      check(fe.read(stream, off, kPeriod));
      sf_write_raw(file, fe.buffer(stream).subspan(off, kPeriod).data(), kPeriod);
      read += kPeriod;
    }
    if (read < bytes) position = take(fe.next_event(stream)).position;
  }
  sf_close(file);
  check(fe.trigger(stream, snd::kTriggerStop));
  check(fe.close_stream(stream));
  std::printf("stream %zu: recorded %llu bytes into %s\n", stream,
              static_cast<unsigned long long>(read), path.c_str());
}

void run_frontend(const FrontendArgs& a) {
  pv::Platform platform = take(pv::open_platform(a.platform.platform()));
  snd::FrontendOptions options;
  options.devid = a.devid;
  options.timeout = std::chrono::milliseconds(seconds_to_ms(a.timeout));
  if (a.hostile.enabled) {
    const int rc = run_hostile_snd(platform, options, a.hostile);
    platform = {};
    std::exit(rc);
  }
  auto fe = take(snd::SndFrontend::connect(platform, options));
  std::printf("connected to domain %u: %zu stream(s)\n", unsigned{fe->backend()},
              fe->streams().size());
  const std::uint64_t bytes =
      std::uint64_t(std::llround(a.seconds * kRate)) * kFrame / kPeriod * kPeriod;
  bool played = false, recorded = a.record.empty();
  for (std::size_t i = 0; i < fe->streams().size(); ++i) {
    if (!fe->streams()[i].capture && !played) {
      play(*fe, i, bytes);
      played = true;
    } else if (fe->streams()[i].capture && !recorded) {
      record(*fe, i, bytes, a.record);
      recorded = true;
    }
  }
  check(fe->close());
  if (!played) fail(kExitFailure, "the card has no playback stream");
  if (!recorded) fail(kExitFailure, "the card has no capture stream to record from");
  std::printf("closed\n");
}

}  // namespace

// Options map one to one onto BackendOptions.
void add_snd_commands(CLI::App& app) {
  static snd::BackendOptions options;
  static ProviderArgs platform;
  static std::uint32_t max_buffer_kib = options.limits.max_buffer_bytes >> 10;
  static std::uint32_t max_file_mib = std::uint32_t(options.wav.max_file_bytes >> 20);
  static std::string signal = "sine";
  static bool json = false;
  CLI::App* be = app.add_subcommand(
      "snd-be",
      "Serve Xen PV sound (vsnd) frontends: write what they play as WAV files, serve what they "
      "record from a WAV file or a generated signal; runs until SIGINT or SIGTERM");
  platform.provider = "xen";
  platform.add_to(be, 0, "--platform", "Where the frontends are");
  be->add_option("--out", options.out_dir,
                 "Directory receiving the WAV files, d<dom>-v<dev>-p<pcm>-s<stream>-<n>.wav "
                 "(must exist)")
      ->capture_default_str();
  be->add_option("--capture-wav", options.capture_wav,
                 "WAV file capture streams record (channels mapped round-robin, then silence)");
  be->add_option("--capture-signal", signal,
                 "What capture streams record without --capture-wav: sine (440 Hz) or ramp")
      ->check(CLI::IsMember({"sine", "ramp"}))
      ->capture_default_str();
  be->add_option("--max-buffer-kib", max_buffer_kib, "Largest PCM buffer a stream may open, in KiB")
      ->check(decimal_in(1, 65536))
      ->capture_default_str();
  be->add_option("--max-file-mib", max_file_mib,
                 "Largest WAV file, in MiB of samples; later samples of that OPEN are dropped")
      ->check(decimal_in(1, 4095))
      ->capture_default_str();
  be->add_option("--max-files", options.wav.max_files_per_stream,
                 "WAV files written per stream; later OPENs of the stream are refused")
      ->check(decimal_in(1, 1000000))
      ->capture_default_str();
  be->add_option("--verbose,-v", options.verbosity,
                 "Log level: 0 errors, 1 devices and refusals, 2 every request, 3 every scan")
      ->check(decimal_in(0, 3))
      ->capture_default_str();
  be->add_flag("--json", json, "At exit, print what was written as one JSON line on stdout");
  be->callback([] {
    options.limits.max_buffer_bytes = max_buffer_kib << 10;
    options.wav.max_file_bytes = std::uint64_t{max_file_mib} << 20;
    options.signal = signal == "ramp" ? snd::Signal::kRamp : snd::Signal::kSine;
    options.platform = platform.platform();
    const snd::WavStats stats = take(snd::run_backend(options, stop_on_signals()));
    if (json) {
      Json j;
      j["command"] = "snd-be";
      j["wav_files"] = stats.files;
      j["bytes_written"] = stats.bytes;
      j["bytes_dropped"] = stats.bytes_dropped;
      std::fputs(json_text(j).c_str(), stdout);
    }
  });

  static FrontendArgs fe_args;
  CLI::App* fe = app.add_subcommand(
      "snd-fe",
      "Be a PV sound frontend: connect the domain's vsnd device, play a 440 Hz tone on its first "
      "playback stream (S16_LE, stereo, 48 kHz), optionally record from its first capture "
      "stream, close");
  fe_args.platform.add_to(fe, 1, "--platform", "Where the backend is");
  fe->add_option("--devid", fe_args.devid, "The vsnd device")
      ->check(decimal_in(0, 65535))
      ->capture_default_str();
  fe->add_option("--seconds", fe_args.seconds, "How long to play (and record)")
      ->check(seconds_in(3600))
      ->capture_default_str();
  fe->add_option("--record", fe_args.record, "Record as long into this WAV file");
  fe->add_option("--timeout", fe_args.timeout, "Seconds each answer of the backend may take")
      ->check(seconds_in(kMaxTimeoutSeconds))
      ->capture_default_str();
  fe_args.hostile.add_to(fe);
  fe->callback([] { run_frontend(fe_args); });
}

}  // namespace shbuf::cli
