// The PV display backend over xenstore, event channels and the xen grant
// provider: one thread, one poll loop over the event channel fd, and a rescan
// of xenstore every kScanMs. Xenstore watches are not used: libxenstore
// delivers them through a reader thread of its own, which in a statically
// linked binary under Xen was seen to close the connection; a scan every
// 200 ms answers far within libxl's 10 s and keeps the backend one thread.
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>
// Neither header declares C linkage for C++.
extern "C" {
#include <xenevtchn.h>
#include <xenstore.h>
}

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pv/displ/ring.h"
#include "pv/displ/xen_backend.h"
#include "shbuf/grant/xen.h"

namespace shbuf::displ {
namespace {

// XenbusState values.
enum XenbusState : int {
  kUnknown = 0,
  kInitialising = 1,
  kInitWait = 2,
  kInitialised = 3,
  kConnected = 4,
  kClosing = 5,
  kClosed = 6,
  kReconfiguring = 7,
};

// More connectors than any real configuration has; bounds what a frontend's
// directory can make us map.
constexpr std::size_t kMaxConnectors = 16;
// Requests handled on one ring before the loop looks at the others.
constexpr int kRequestsPerTurn = 64;
constexpr int kScanMs = 200;

int g_verbosity = 1;

// One line on stderr, at or below the chosen verbosity.
void log(int level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void log(int level, const char* fmt, ...) {
  if (level > g_verbosity) return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "displ-be: %s\n", line);
}

// Owns what libxenstore returns (malloc'ed).
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// The few xenstore calls the backend makes, with ownership of what they
// return handled once.
class Xenstore {
 public:
  explicit Xenstore(xs_handle* h) : h_(h) {}
  Xenstore(const Xenstore&) = delete;
  Xenstore& operator=(const Xenstore&) = delete;
  ~Xenstore() {
    if (h_ != nullptr) xs_close(h_);
  }
  xs_handle* get() const { return h_; }

  // nullopt when the node does not exist (or cannot be read): a frontend may
  // remove its nodes at any time.
  std::optional<std::string> read(const std::string& path) const {
    unsigned len = 0;
    std::unique_ptr<char, FreeDeleter> v(
        static_cast<char*>(xs_read(h_, XBT_NULL, path.c_str(), &len)));
    if (!v) return std::nullopt;
    return std::string(v.get(), len);
  }
  // Numbers the frontend wrote: nullopt unless strictly decimal.
  std::optional<std::uint32_t> read_u32(const std::string& path) const {
    auto s = read(path);
    if (!s) return std::nullopt;
    return parse_xenstore_u32(*s);
  }
  // Our own nodes only (state, versions, error).
  bool write(const std::string& path, const std::string& value) const {
    return xs_write(h_, XBT_NULL, path.c_str(), value.data(), static_cast<unsigned>(value.size()));
  }
  // Children of a node; empty when it does not exist.
  std::vector<std::string> list(const std::string& path) const {
    unsigned n = 0;
    std::unique_ptr<char*, FreeDeleter> d(xs_directory(h_, XBT_NULL, path.c_str(), &n));
    std::vector<std::string> out;
    if (!d && errno != ENOENT) {
      log(0, "cannot list %s in xenstore: %s", path.c_str(), std::strerror(errno));
    }
    if (d) {
      for (unsigned i = 0; i < n; ++i) out.emplace_back(d.get()[i]);
    }
    return out;
  }

 private:
  xs_handle* h_;
};

// One connector's transport: two mapped pages and two bound channels.
struct Channel {
  Mapping req_page;
  Mapping evt_page;
  RequestRing req;
  EventRing evt;
  xenevtchn_port_or_error_t req_port = -1;  // local ports
  xenevtchn_port_or_error_t evt_port = -1;
  bool more = false;  // requests left over from the last turn
};

struct Device {
  DomId domid = 0;
  std::uint32_t devid = 0;
  std::string be_path;
  std::string fe_path;
  int state = kUnknown;  // what we last wrote
  std::vector<Channel> channels;
  std::unique_ptr<DisplayDevice> display;
};

class Backend {
 public:
  Backend(const BackendOptions& options, std::unique_ptr<Provider> provider, xs_handle* xs,
          xenevtchn_handle* xce)
      : options_(options), provider_(std::move(provider)), xs_(xs), xce_(xce) {}

  Status run(const std::atomic<bool>& stop);

 private:
  void rescan();
  void add_device(DomId domid, std::uint32_t devid);
  // Returns false when the device's backend node is gone.
  bool update(Device& d);
  Status connect(Device& d);
  Status connect_channel(Device& d, std::size_t index, Channel& c);
  void close(Device& d, int new_state, const char* why);
  void release(Device& d);
  void fail(Device& d, const Error& e);
  void set_state(Device& d, int state);
  void on_event(evtchn_port_t port);
  void serve(Device& d, std::size_t index);
  void report(const char* when);

  const BackendOptions& options_;
  std::unique_ptr<Provider> provider_;
  Xenstore xs_;
  xenevtchn_handle* xce_;
  std::string base_;
  // Keyed by (domid, devid).
  std::map<std::pair<DomId, std::uint32_t>, Device> devices_;
};

// Our own state node is the only one we write besides versions.
void Backend::set_state(Device& d, int state) {
  if (!xs_.write(d.be_path + "/state", std::to_string(state))) {
    log(0, "dom%u/%u: cannot write %s/state: %s", d.domid, d.devid, d.be_path.c_str(),
        std::strerror(errno));
  }
  if (d.state != state) log(1, "dom%u/%u: state %d -> %d", d.domid, d.devid, d.state, state);
  d.state = state;
}

// Every toolstack change and every frontend state change is found here.
void Backend::rescan() {
  const std::vector<std::string> doms = xs_.list(base_);
  log(3, "rescan: %zu frontend domain(s) under %s", doms.size(), base_.c_str());
  for (const std::string& dom : doms) {
    auto domid = parse_xenstore_u32(dom);
    if (!domid || *domid == 0 || *domid >= kDomIdSelf) continue;
    for (const std::string& dev : xs_.list(base_ + "/" + dom)) {
      auto devid = parse_xenstore_u32(dev);
      if (!devid) continue;
      const auto key = std::make_pair(static_cast<DomId>(*domid), *devid);
      if (devices_.count(key) == 0) add_device(key.first, key.second);
    }
  }
  for (auto it = devices_.begin(); it != devices_.end();) {
    Device& d = it->second;
    const bool gone = !update(d) || !xs_is_domain_introduced(xs_.get(), d.domid);
    if (gone) {
      close(d, kUnknown, "the device or its domain is gone");
      log(1, "dom%u/%u: forgotten", d.domid, d.devid);
      it = devices_.erase(it);
      report("after a device went away");
    } else {
      ++it;
    }
  }
}

// A new device must reach InitWait within libxl's 10 s.
void Backend::add_device(DomId domid, std::uint32_t devid) {
  Device d;
  d.domid = domid;
  d.devid = devid;
  d.be_path = base_ + "/" + std::to_string(domid) + "/" + std::to_string(devid);
  auto fe_id = xs_.read_u32(d.be_path + "/frontend-id");
  auto fe = xs_.read(d.be_path + "/frontend");
  if (!fe_id || !fe || *fe_id != domid || fe->empty()) {
    log(2, "dom%u/%u: %s has no usable frontend and frontend-id yet", domid, devid,
        d.be_path.c_str());
    return;
  }
  d.fe_path = *fe;
  log(1, "dom%u/%u: new device, frontend %s", domid, devid, d.fe_path.c_str());
  xs_.write(d.be_path + "/versions", "2");
  auto& slot = devices_[{domid, devid}] = std::move(d);
  set_state(slot, kInitWait);
}

// The xenbus state machine, driven by both ends' state nodes.
bool Backend::update(Device& d) {
  const auto be_node = xs_.read(d.be_path + "/state");
  if (!be_node) return false;  // removed: rescan forgets the device
  const auto be_state = parse_xenstore_u32(*be_node);
  if (!be_state) return true;
  const auto fe_state = xs_.read_u32(d.fe_path + "/state");
  const auto online = xs_.read_u32(d.be_path + "/online");
  // The toolstack closes a device by writing our state (xl destroy, detach).
  if ((*be_state == kClosing || (online && *online == 0)) && d.state != kClosed) {
    close(d, kClosed, "the toolstack closes the device");
    return true;
  }
  const int fe = fe_state ? static_cast<int>(*fe_state) : kUnknown;
  switch (fe) {
    case kInitialised:
      if (d.state == kInitWait) {
        Status s = connect(d);
        if (!s.ok()) fail(d, s.error());
      }
      break;
    case kConnected:
      if (d.state == kInitWait) {
        // Connected to someone else's rings (a backend that went away): make
        // the frontend start over.
        close(d, kClosed, "the frontend is connected to rings we never saw");
      }
      break;
    case kInitialising:
      if (d.state == kClosed) set_state(d, kInitWait);
      break;
    case kClosing:
    case kClosed:
    case kUnknown:
      if (d.state == kConnected || d.state == kInitWait) {
        close(d, kClosed, "the frontend closes");
      }
      break;
    default:
      break;
  }
  return true;
}

// Reads everything the frontend published before mapping anything.
Status Backend::connect(Device& d) {
  DeviceConfig config;
  config.frontend = d.domid;
  config.limits = options_.limits;
  auto be_alloc = xs_.read(d.fe_path + "/be-alloc");
  config.be_alloc = be_alloc && *be_alloc == "1";
  for (std::size_t i = 0;; ++i) {
    auto res = xs_.read(d.fe_path + "/" + std::to_string(i) + "/resolution");
    if (!res) break;
    if (i == kMaxConnectors) {
      return make_error(
          E2BIG, "the frontend lists more than " + std::to_string(kMaxConnectors) + " connectors");
    }
    auto r = parse_resolution(*res);
    if (!r.ok())
      return make_error(EINVAL, "connector " + std::to_string(i) + ": " + r.error().message);
    config.connectors.push_back(*r);
  }
  if (config.connectors.empty()) {
    return make_error(EINVAL, "the frontend lists no connector (" + d.fe_path + "/0/resolution)");
  }
  d.channels.resize(config.connectors.size());
  for (std::size_t i = 0; i < d.channels.size(); ++i) {
    SHBUF_TRY(connect_channel(d, i, d.channels[i]));
  }
  std::string connectors;
  for (const Resolution& r : config.connectors) {
    connectors +=
        (connectors.empty() ? "" : ", ") + std::to_string(r.width) + "x" + std::to_string(r.height);
  }
  d.display = std::make_unique<DisplayDevice>(
      *provider_, config,
      png_frame_sink(options_.out_dir, d.domid, d.devid, options_.last_frame_only));
  log(1, "dom%u/%u: connected: %zu connector(s) %s, %s buffers", d.domid, d.devid,
      config.connectors.size(), connectors.c_str(),
      config.be_alloc ? "backend-allocated" : "frontend-allocated");
  set_state(d, kConnected);
  // Requests may already wait.
  for (std::size_t i = 0; i < d.channels.size(); ++i) serve(d, i);
  return {};
}

// One connector: the refs and ports come from the frontend's directory.
Status Backend::connect_channel(Device& d, std::size_t index, Channel& c) {
  const std::string p = d.fe_path + "/" + std::to_string(index) + "/";
  auto req_ref = xs_.read_u32(p + "req-ring-ref");
  auto req_chn = xs_.read_u32(p + "req-event-channel");
  auto evt_ref = xs_.read_u32(p + "evt-ring-ref");
  auto evt_chn = xs_.read_u32(p + "evt-event-channel");
  if (!req_ref || !req_chn || !evt_ref || !evt_chn || *req_ref == 0 || *evt_ref == 0) {
    return make_error(EINVAL, "connector " + std::to_string(index) +
                                  ": missing or malformed ring refs or event channels in " + p);
  }
  const Gref req_gref = *req_ref, evt_gref = *evt_ref;
  auto req_map = provider_->map(d.domid, std::span<const Gref>(&req_gref, 1), Access::kReadWrite);
  if (!req_map.ok()) return req_map.error();
  c.req_page = std::move(req_map).value();
  auto evt_map = provider_->map(d.domid, std::span<const Gref>(&evt_gref, 1), Access::kReadWrite);
  if (!evt_map.ok()) return evt_map.error();
  c.evt_page = std::move(evt_map).value();
  auto req = RequestRing::attach(c.req_page.memory());
  if (!req.ok()) return req.error();
  c.req = *req;
  auto evt = EventRing::attach(c.evt_page.memory());
  if (!evt.ok()) return evt.error();
  c.evt = *evt;
  c.req_port = xenevtchn_bind_interdomain(xce_, d.domid, *req_chn);
  if (c.req_port < 0) {
    return errno_error("connector " + std::to_string(index) + ": cannot bind event channel " +
                       std::to_string(*req_chn));
  }
  c.evt_port = xenevtchn_bind_interdomain(xce_, d.domid, *evt_chn);
  if (c.evt_port < 0) {
    return errno_error("connector " + std::to_string(index) + ": cannot bind event channel " +
                       std::to_string(*evt_chn));
  }
  log(2, "dom%u/%u: connector %zu: rings %u/%u, channels %u/%u -> local %d/%d", d.domid, d.devid,
      index, req_gref, evt_gref, *req_chn, *evt_chn, c.req_port, c.evt_port);
  return {};
}

// Releases in the reverse order of connect: channels, buffers, rings.
void Backend::release(Device& d) {
  for (Channel& c : d.channels) {
    if (c.req_port >= 0) xenevtchn_unbind(xce_, static_cast<evtchn_port_t>(c.req_port));
    if (c.evt_port >= 0) xenevtchn_unbind(xce_, static_cast<evtchn_port_t>(c.evt_port));
    c.req_port = c.evt_port = -1;
  }
  if (d.display) {
    Status s = d.display->release_all();
    if (!s.ok())
      log(0, "dom%u/%u: releasing buffers: %s", d.domid, d.devid, s.error().describe().c_str());
    d.display.reset();
  }
  for (Channel& c : d.channels) {
    if (c.req_page.valid()) (void)c.req_page.unmap();
    if (c.evt_page.valid()) (void)c.evt_page.unmap();
  }
  d.channels.clear();
}

// kUnknown as new_state: the node is gone, nothing to write.
void Backend::close(Device& d, int new_state, const char* why) {
  const bool held = d.display != nullptr || !d.channels.empty();
  log(1, "dom%u/%u: closing: %s", d.domid, d.devid, why);
  release(d);
  if (new_state != kUnknown) set_state(d, new_state);
  if (held) report("after closing a device");
}

// A device whose frontend misbehaves is closed; the others go on.
void Backend::fail(Device& d, const Error& e) {
  log(0, "dom%u/%u: error: %s", d.domid, d.devid, e.describe().c_str());
  xs_.write(d.be_path + "/error", e.describe());
  close(d, kClosed, "after an error");
}

// Finds the device behind a local port; unknown ports are stale and ignored.
void Backend::on_event(evtchn_port_t port) {
  for (auto& [key, d] : devices_) {
    for (std::size_t i = 0; i < d.channels.size(); ++i) {
      if (d.channels[i].req_port == static_cast<xenevtchn_port_or_error_t>(port)) {
        serve(d, i);
        return;
      }
    }
  }
}

// Answers up to kRequestsPerTurn requests, so one busy frontend cannot starve
// the others.
void Backend::serve(Device& d, std::size_t index) {
  if (!d.display || index >= d.channels.size()) return;
  Channel& c = d.channels[index];
  c.more = false;
  for (int n = 0; n < kRequestsPerTurn; ++n) {
    auto next = c.req.next_request();
    if (!next.ok()) return fail(d, next.error());
    if (!next->has_value()) {
      auto more = c.req.final_check();
      if (!more.ok()) return fail(d, more.error());
      if (!*more) return;
      continue;
    }
    const Outcome out = d.display->handle(index, **next);
    if (out.response.status != 0) {
      log(1, "dom%u/%u: c%zu: refused: %s", d.domid, d.devid, index, out.error.c_str());
    } else {
      log(2, "dom%u/%u: c%zu: %s id %u: ok", d.domid, d.devid, index,
          op_name(out.response.operation).c_str(), out.response.id);
    }
    auto notify = c.req.push_response(encode_response(out.response));
    if (!notify.ok()) return fail(d, notify.error());
    if (*notify) xenevtchn_notify(xce_, static_cast<evtchn_port_t>(c.req_port));
    if (out.flip_event) {
      Status s = c.evt.push_pg_flip(*out.flip_event);
      if (s.ok()) {
        xenevtchn_notify(xce_, static_cast<evtchn_port_t>(c.evt_port));
        log(1, "dom%u/%u: c%zu: frame %llu shown", d.domid, d.devid, index,
            static_cast<unsigned long long>(d.display->frames(index) - 1));
      } else {
        log(0, "dom%u/%u: c%zu: page-flip event dropped: %s", d.domid, d.devid, index,
            s.error().describe().c_str());
      }
    }
  }
  c.more = true;
}

// What the backend holds right now, for the log (and tests reading it).
void Backend::report(const char* when) {
  std::size_t rings = 0, ports = 0, dbufs = 0, pages = 0, connected = 0;
  for (const auto& [key, d] : devices_) {
    for (const Channel& c : d.channels) {
      rings += (c.req_page.valid() ? 1 : 0) + (c.evt_page.valid() ? 1 : 0);
      ports += (c.req_port >= 0 ? 1 : 0) + (c.evt_port >= 0 ? 1 : 0);
    }
    if (d.display) {
      ++connected;
      dbufs += d.display->dbuf_count();
      pages += d.display->pages_held();
    }
  }
  log(0,
      "holds %s: devices=%zu connected=%zu ring_mappings=%zu event_channels=%zu dbufs=%zu "
      "buffer_pages=%zu",
      when, devices_.size(), connected, rings, ports, dbufs, pages);
}

// One loop for every device: ring notifications as they come, xenstore
// every kScanMs.
Status Backend::run(const std::atomic<bool>& stop) {
  base_ = "/local/domain/" + std::to_string(provider_->self()) + "/backend/vdispl";
  const int evt_fd = xenevtchn_fd(xce_);
  const int flags = fcntl(evt_fd, F_GETFL);
  if (flags < 0 || fcntl(evt_fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return errno_error("cannot make the event channel fd non-blocking");
  }
  log(1, "serving %s, frames to %s", base_.c_str(), options_.out_dir.c_str());
  using Clock = std::chrono::steady_clock;
  const auto period = std::chrono::milliseconds(kScanMs);
  auto next_scan = Clock::now();
  while (!stop.load()) {
    if (Clock::now() >= next_scan) {
      rescan();
      next_scan = Clock::now() + period;
    }
    bool busy = false;
    for (auto& [key, d] : devices_) {
      for (const Channel& c : d.channels) busy = busy || c.more;
    }
    const auto wait =
        std::chrono::duration_cast<std::chrono::milliseconds>(next_scan - Clock::now());
    pollfd fds[1] = {{evt_fd, POLLIN, 0}};
    const int n = ::poll(fds, 1, busy ? 0 : static_cast<int>(std::max<long>(0, wait.count())));
    if (n < 0 && errno != EINTR) {
      return errno_error("poll");
    }
    if (n > 0 && (fds[0].revents & POLLIN) != 0) {
      for (;;) {
        const xenevtchn_port_or_error_t port = xenevtchn_pending(xce_);
        if (port < 0) break;
        xenevtchn_unmask(xce_, static_cast<evtchn_port_t>(port));
        on_event(static_cast<evtchn_port_t>(port));
      }
    }
    for (auto& [key, d] : devices_) {
      for (std::size_t i = 0; i < d.channels.size(); ++i) {
        if (d.channels[i].more) serve(d, i);
      }
    }
  }
  log(1, "stopping");
  for (auto& [key, d] : devices_) close(d, kClosed, "the backend stops");
  devices_.clear();
  report("at exit");
  return {};
}

}  // namespace

// Lets the CLI and tests tell "built without Xen" from "no Xen here".
bool displ_backend_built() {
  return true;
}

// Opens the three Xen interfaces, each failure named, then serves.
Status run_backend(const BackendOptions& options, const std::atomic<bool>& stop) {
  g_verbosity = options.verbosity;
  struct stat st {};
  if (::stat(options.out_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return make_error(ENOENT, "output directory " + options.out_dir + " does not exist");
  }
  auto provider = open_xen_provider();
  if (!provider.ok()) return provider.error();
  xs_handle* xs = xs_open(0);
  if (xs == nullptr) {
    return make_error(ENODEV, std::string("cannot open xenstore (is xenstored running?): ") +
                                  std::strerror(errno));
  }
  xenevtchn_handle* xce = xenevtchn_open(nullptr, 0);
  if (xce == nullptr) {
    const int code = errno;
    xs_close(xs);
    return make_error(ENODEV, std::string("cannot open /dev/xen/evtchn (load xen-evtchn): ") +
                                  std::strerror(code));
  }
  Status result;
  {
    Backend backend(options, std::move(provider).value(), xs, xce);
    result = backend.run(stop);
  }
  xenevtchn_close(xce);
  return result;
}

}  // namespace shbuf::displ
