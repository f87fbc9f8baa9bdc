// The generic PV backend: it finds the frontends of one device kind under its
// backend directory in xenstore (several domains and devices at once), walks
// the xenbus states of each device, maps the rings and binds the event
// channels the frontend publishes, and runs one poll loop for all of them.
// A protocol plugs in through a few hooks (Device) and never touches
// xenstore paths, states or event channels itself.
//
// For each device: Initialising -> InitWait as soon as it is seen; once the
// frontend is Initialised, Device::connect() reads the frontend's
// configuration and connects its channels through the DeviceContext, then
// Connected. A device may also ask for a timer: the loop wakes up when its
// next_wakeup() passes and calls tick() (sound devices pace their position
// events this way). A frontend that closes, a device the toolstack closes (state
// Closing or online 0) or removes, and a domain that goes away are released
// at once: Device::disconnect(), then every ring mapping and event channel.
// A device whose frontend misbehaves (a bad value, a broken ring, a failed
// mapping) gets its error written to `error` and is closed; the others go on.
//
// The backend watches its directory, @releaseDomain and each device's
// frontend directory, and scans them again when a watch fires (at most
// every few milliseconds); it also scans every BackendConfig::rescan, so
// that a watch that could not be set or an event lost costs only time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pv/platform.h"
#include "pv/xenbus.h"

namespace shbuf::pv {

struct DeviceInfo {
  DomId frontend = 0;
  std::uint32_t devid = 0;
  std::string backend_path;   // ours: /local/domain/<us>/backend/<kind>/<fe>/<devid>
  std::string frontend_path;  // what the toolstack wrote to our `frontend` node
};

// What a protocol's device may do: read its frontend's directory, use the
// grant provider, and connect channels (one shared page plus one event
// channel each) that the layer owns and releases.
class DeviceContext {
 public:
  virtual ~DeviceContext() = default;
  virtual const DeviceInfo& info() const = 0;
  virtual Provider& grants() = 0;
  // <frontend directory>/<key>: ENOENT when missing, the value otherwise.
  virtual Result<std::string> read(const std::string& key) = 0;
  // The same, strictly decimal and below 2^32 (EINVAL names the key).
  virtual Result<std::uint32_t> read_u32(const std::string& key) = 0;
  // Maps the frontend's page `gref` read-write and binds its event channel
  // `port`. Returns the channel's index (0, 1, ... in connect order).
  virtual Result<std::size_t> connect_channel(Gref gref, Port port) = 0;
  // The channel's shared page.
  virtual std::span<std::byte> page(std::size_t channel) = 0;
  // Signals the frontend on the channel.
  virtual Status notify(std::size_t channel) = 0;
  // One line on stderr under the device's name, at or below the verbosity.
  virtual void log(int level, const std::string& line) = 0;
};

// One device of the protocol. Its calls never overlap.
class Device {
 public:
  virtual ~Device() = default;
  // The frontend is Initialised: read its configuration and connect its
  // channels. An error closes the device (and is written to `error`).
  virtual Status connect(DeviceContext& ctx) = 0;
  // The frontend signalled `channel`, or the last call said it had more to
  // do: serve a bounded amount of work, and say whether more remains. An
  // error closes the device.
  virtual Result<bool> serve(DeviceContext& ctx, std::size_t channel) = 0;
  // When the connected device next wants tick(), if ever. Asked again after
  // every call into the device; the loop's wait ends no later than the
  // first millisecond at or after it (never early).
  virtual std::optional<std::chrono::steady_clock::time_point> next_wakeup() const {
    return std::nullopt;
  }
  // The time next_wakeup() named has passed: do the timed work, a bounded
  // amount per call. An error closes the device.
  virtual Status tick(DeviceContext& ctx) {
    (void)ctx;
    return {};
  }
  // Lets go of everything the protocol holds (buffers); the layer then
  // unmaps the rings and unbinds the channels.
  virtual void disconnect() = 0;
  // What it holds, one count per name of Protocol::holding_names(), for the
  // log.
  virtual std::vector<std::size_t> holdings() const = 0;
};

class Protocol {
 public:
  virtual ~Protocol() = default;
  // The xenstore device kind ("vdispl", "vsnd").
  virtual std::string kind() const = 0;
  // Nodes the backend writes to its directory when it first sees a device
  // (e.g. "versions").
  virtual std::vector<std::pair<std::string, std::string>> backend_nodes() const { return {}; }
  virtual std::unique_ptr<Device> make_device(const DeviceInfo& info) = 0;
  // Names of what its devices hold ("dbufs", "buffer_pages"), summed over
  // the devices in the backend's reports.
  virtual std::vector<std::string> holding_names() const { return {}; }
  // Counts of the whole protocol (not of a device) that end each holds
  // report, "name=value" separated by spaces; may be empty.
  virtual std::string counters() const { return {}; }
  // The backend stops: every device is closed. Finishes, in bounded time,
  // the work that outlives the devices; runs before the exit report.
  virtual void finish() {}
};

struct BackendConfig {
  std::chrono::milliseconds rescan{1000};
  // 0: errors only, 1: devices, 2: every request, 3: every scan.
  int verbosity = 1;
  // Prefix of every log line.
  std::string name = "pv-be";
};

// What the backend holds, summed over its devices.
struct BackendHoldings {
  std::size_t devices = 0;
  std::size_t connected = 0;
  std::size_t ring_mappings = 0;
  std::size_t event_channels = 0;
  std::vector<std::size_t> protocol;  // per Protocol::holding_names()
};

class Backend {
 public:
  // The platform and the protocol must outlive the backend.
  Backend(Platform& platform, Protocol& protocol, BackendConfig config);
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  // Serves until `stop` becomes true (looked at least every rescan period),
  // then closes every device and releases everything.
  Status run(const std::atomic<bool>& stop);
  // One turn of the loop, waiting at most `wait` for an event or the
  // earliest Device::next_wakeup(), then ticking every device whose wakeup
  // has passed.
  Status turn(std::chrono::milliseconds wait);
  // Closes every device (state Closed) and releases everything.
  void close_all(const char* why);

  BackendHoldings holdings() const;

 private:
  struct Channel;
  struct Slot;
  class Context;

  void rescan();
  void watch(const std::string& path);
  void unwatch(const std::string& path);
  bool take_watch_events();
  void add_device(DomId domid, std::uint32_t devid);
  bool update(Slot& s);
  void connect(Slot& s);
  void close(Slot& s, XenbusState new_state, const std::string& why);
  void fail(Slot& s, const Error& e);
  void set_state(Slot& s, XenbusState state);
  void serve(Slot& s, std::size_t channel);
  void tick(Slot& s);
  void report(const char* when);
  void log(int level, const std::string& line) const;

  Platform& platform_;
  Protocol& protocol_;
  BackendConfig config_;
  std::string base_;
  std::map<std::pair<DomId, std::uint32_t>, std::unique_ptr<Slot>> devices_;
  std::chrono::steady_clock::time_point next_scan_{};
  std::chrono::steady_clock::time_point last_scan_{};
  bool scan_asked_ = false;  // a watch fired since the last scan
  bool watching_ = false;
};

// What a protocol's backend command checks before it starts: ENOENT unless
// `dir`, where it writes what the frontends send, is a directory.
Status check_output_dir(const std::string& dir);

// Opens the platform and serves `protocol` on it until `stop` becomes true,
// then releases everything. ENODEV when the platform cannot be opened (no
// Xen, or built without it). Logs to stderr, one line per event.
Status run_backend(const PlatformOptions& platform, Protocol& protocol, const BackendConfig& config,
                   const std::atomic<bool>& stop);

}  // namespace shbuf::pv
