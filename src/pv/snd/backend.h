// `shbuf snd-be`: a headless user-space backend for Xen's PV sound devices
// (vsnd, xen/io/sndif.h) that writes what the guest plays to WAV files and
// serves what it records from a WAV file or a generated signal, on the
// generic PV backend (pv/backend.h) over a platform: Xen, or the simulator.
//
// Once a frontend is Initialised it reads the card's configuration (every
// PCM device and stream, see read_streams()) and each stream's ring-ref,
// event-channel, evt-ring-ref and evt-event-channel, and connects two
// channels per stream (requests, events). Requests are answered by
// SoundDevice (device.h); position events are sent on the layer's timer,
// their ids counting from 0 per stream for the life of the connection.
//
// A hostile frontend can end only its own device: a broken ring, a bad
// xenstore value or a failed mapping closes that device, never the backend.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "pv/backend.h"
#include "pv/snd/device.h"
#include "pv/snd/wav.h"
#include "shbuf/core/result.h"

namespace shbuf::snd {

struct BackendOptions {
  pv::PlatformOptions platform;
  // Directory receiving the WAV files; must exist.
  std::string out_dir = ".";
  // What capture streams record: this WAV file when set, else `signal`.
  std::string capture_wav;
  Signal signal = Signal::kSine;
  // 0: errors only, 1: devices and streams, 2: every request, 3: every scan.
  int verbosity = 1;
  DeviceLimits limits;
  WavLimits wav;
};

// The vsnd protocol for the generic backend.
class SndProtocol final : public pv::Protocol {
 public:
  // Played samples go to `files`; recorded ones come from `capture_wav`
  // (when not empty) or `signal`. `files` must outlive the protocol.
  SndProtocol(DeviceLimits limits, WavFiles& files, std::string capture_wav, Signal signal)
      : limits_(limits), files_(files), capture_wav_(std::move(capture_wav)), signal_(signal) {}

  std::string kind() const override { return "vsnd"; }
  std::vector<std::pair<std::string, std::string>> backend_nodes() const override {
    return {{"versions", kProtocolVersion}};
  }
  std::unique_ptr<pv::Device> make_device(const pv::DeviceInfo& info) override;
  std::vector<std::string> holding_names() const override {
    return {"open_streams", "buffer_pages"};
  }

 private:
  DeviceLimits limits_;
  WavFiles& files_;
  std::string capture_wav_;
  Signal signal_;
};

// Serves vsnd devices until `stop` becomes true, then releases everything
// and says what was written. ENODEV when the platform cannot be opened (no
// Xen, or built without it); ENOENT when out_dir is not a directory or
// capture_wav cannot be read. Logs to stderr, one line per event.
Result<WavStats> run_backend(const BackendOptions& options, const std::atomic<bool>& stop);

}  // namespace shbuf::snd
