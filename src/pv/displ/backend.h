// `shbuf displ-be`: a user-space backend for Xen's PV display devices
// (vdispl, xen/io/displif.h) that writes every shown frame as a PNG (or its
// digest), on the
// generic PV backend (pv/backend.h) over a platform: Xen, or the simulator.
//
// Once a frontend is Initialised it reads be-alloc and each connector's
// resolution, ring refs and event channels, and connects two channels per
// connector (requests, events). Requests are answered by DisplayDevice
// (device.h); a flip is answered once its frame is copied, and the frame is
// written by one worker thread (writer.h), which may drop frames when it
// falls behind (counted in every holds report: frames_dropped).
//
// A hostile frontend can end only its own device: a broken ring, a bad
// xenstore value or a failed mapping closes that device, never the backend.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "pv/backend.h"
#include "pv/displ/device.h"
#include "pv/displ/writer.h"
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
  // zlib level of the PNGs, 0..9.
  int png_level = kDefaultPngLevel;
  // A line per frame with its digest (digest_frame_sink) instead of a PNG.
  bool digest_only = false;
  // Pixels of the frames waiting to be written, and how long the exit
  // waits for them (writer.h).
  std::size_t queue_budget_bytes = kDefaultQueueBudget;
  std::chrono::milliseconds flush_timeout = kDefaultFlushTimeout;
  // 0: errors only, 1: devices and frames, 2: every request, 3: every scan.
  int verbosity = 1;
  DeviceLimits limits;
};

// The vdispl protocol for the generic backend: frames go to `sink_for`'s
// sink of each device. With a writer (which must outlive the protocol),
// that sink is called on the writer's worker, never on the ring path, and
// the writer's counts end the backend's holds reports.
class DisplProtocol final : public pv::Protocol {
 public:
  using SinkFactory = std::function<FrameSink(DomId frontend, std::uint32_t devid)>;
  DisplProtocol(DeviceLimits limits, SinkFactory sink_for, FrameWriter* writer = nullptr,
                std::chrono::milliseconds flush_timeout = kDefaultFlushTimeout)
      : limits_(limits),
        sink_for_(std::move(sink_for)),
        writer_(writer),
        flush_timeout_(flush_timeout) {}

  std::string kind() const override { return "vdispl"; }
  std::vector<std::pair<std::string, std::string>> backend_nodes() const override {
    return {{"versions", "2"}};
  }
  std::unique_ptr<pv::Device> make_device(const pv::DeviceInfo& info) override;
  std::vector<std::string> holding_names() const override { return {"dbufs", "buffer_pages"}; }
  std::string counters() const override { return writer_ ? writer_->counts_text() : ""; }
  // Frames still queued are written (within the flush timeout).
  void finish() override {
    if (writer_) writer_->finish(flush_timeout_);
  }

 private:
  DeviceLimits limits_;
  SinkFactory sink_for_;
  FrameWriter* writer_;
  std::chrono::milliseconds flush_timeout_;
};

// Serves vdispl devices until `stop` becomes true, then releases everything.
// ENODEV when the platform cannot be opened (no Xen, or built without it);
// ENOENT when out_dir is not a directory. Logs to stderr, one line per
// event.
Status run_backend(const BackendOptions& options, const std::atomic<bool>& stop);

}  // namespace shbuf::displ
