// `shbuf displ-be`: a user-space backend for Xen's PV display devices
// (vdispl, xen/io/displif.h) that writes every shown frame as a PNG, on the
// generic PV backend (pv/backend.h) over a platform: Xen, or the simulator.
//
// Once a frontend is Initialised it reads be-alloc and each connector's
// resolution, ring refs and event channels, and connects two channels per
// connector (requests, events). Requests are answered by DisplayDevice
// (device.h).
//
// A hostile frontend can end only its own device: a broken ring, a bad
// xenstore value or a failed mapping closes that device, never the backend.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "pv/backend.h"
#include "pv/displ/device.h"
#include "shbuf/core/result.h"

namespace shbuf::displ {

struct BackendOptions {
  pv::PlatformOptions platform;
  // Directory receiving the PNGs; must exist.
  std::string out_dir = ".";
  // One file per connector, overwritten by each frame.
  bool last_frame_only = false;
  // Frames of a connector with files of their own; later ones overwrite its
  // last-frame file.
  std::uint64_t max_frames = kDefaultMaxFramesPerConnector;
  // 0: errors only, 1: devices and frames, 2: every request, 3: every scan.
  int verbosity = 1;
  DeviceLimits limits;
};

// The vdispl protocol for the generic backend: frames go to `sink_for`'s
// sink of each device.
class DisplProtocol final : public pv::Protocol {
 public:
  using SinkFactory = std::function<FrameSink(DomId frontend, std::uint32_t devid)>;
  DisplProtocol(DeviceLimits limits, SinkFactory sink_for)
      : limits_(limits), sink_for_(std::move(sink_for)) {}

  std::string kind() const override { return "vdispl"; }
  std::vector<std::pair<std::string, std::string>> backend_nodes() const override {
    return {{"versions", "2"}};
  }
  std::unique_ptr<pv::Device> make_device(const pv::DeviceInfo& info) override;
  std::vector<std::string> holding_names() const override { return {"dbufs", "buffer_pages"}; }

 private:
  DeviceLimits limits_;
  SinkFactory sink_for_;
};

// Serves vdispl devices until `stop` becomes true, then releases everything.
// ENODEV when the platform cannot be opened (no Xen, or built without it);
// ENOENT when out_dir is not a directory. Logs to stderr, one line per
// event.
Status run_backend(const BackendOptions& options, const std::atomic<bool>& stop);

}  // namespace shbuf::displ
