#include "pv/backend.h"

#include <poll.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>

namespace shbuf::pv {
namespace {

// More channels than any protocol's configuration has: bounds what a
// frontend's directory can make us map.
constexpr std::size_t kMaxChannels = 64;
// Devices served at once, over all frontends.
constexpr std::size_t kMaxDevices = 256;
// Our watches: the backend directory, @releaseDomain and each device's
// frontend directory. Any of them firing means "scan again".
constexpr const char* kWatchToken = "pv-backend";
// Watch events taken per turn, and the least time between two scans they
// ask for: a frontend rewriting its directory without pause costs a scan
// every few milliseconds, not a loop.
constexpr std::size_t kMaxWatchEventsPerTurn = 256;
constexpr std::chrono::milliseconds kMinScanInterval{5};

// A directory name that is a number as we write them (no leading zeros).
std::optional<std::uint32_t> parse_id(std::string_view s) {
  const auto v = parse_xenstore_u32(s);
  if (!v || std::to_string(*v) != s) return std::nullopt;
  return v;
}

std::string state_text(XenbusState s) {
  return std::to_string(static_cast<int>(s));
}

}  // namespace

struct Backend::Channel {
  Mapping page;
  Port port = 0;
  bool bound = false;
  bool more = false;  // work left over from the last turn
};

struct Backend::Slot {
  DeviceInfo info;
  XenbusState state = XenbusState::kUnknown;  // what we last wrote
  std::vector<Channel> channels;
  std::unique_ptr<Device> device;
  bool connected = false;
  std::string name;  // "dom<fe>/<devid>" for the log
};

class Backend::Context final : public DeviceContext {
 public:
  Context(Backend& be, Slot& s) : be_(be), s_(s) {}
  const DeviceInfo& info() const override { return s_.info; }
  Provider& grants() override { return *be_.platform_.grants; }

  Result<std::string> read(const std::string& key) override {
    return be_.platform_.xenstore->read(kNoTransaction, s_.info.frontend_path + "/" + key);
  }

  Result<std::uint32_t> read_u32(const std::string& key) override {
    auto v = read(key);
    if (!v.ok()) return v.error();
    auto n = parse_xenstore_u32(*v);
    if (!n) {
      return make_error(EINVAL, s_.info.frontend_path + "/" + key + " is not a decimal number");
    }
    return *n;
  }

  Result<std::size_t> connect_channel(Gref gref, Port port) override {
    if (s_.channels.size() >= kMaxChannels) {
      return make_error(E2BIG, "more than " + std::to_string(kMaxChannels) + " channels");
    }
    if (gref == 0) return make_error(EINVAL, "a ring reference of 0");
    auto page = be_.platform_.grants->map(s_.info.frontend, std::span<const Gref>(&gref, 1),
                                          Access::kReadWrite);
    if (!page.ok()) return page.error();
    Channel c;
    c.page = std::move(page).value();
    auto bound = be_.platform_.events->bind_interdomain(s_.info.frontend, port);
    if (!bound.ok()) return bound.error();
    c.port = *bound;
    c.bound = true;
    s_.channels.push_back(std::move(c));
    log(2, "channel " + std::to_string(s_.channels.size() - 1) + ": ring " + std::to_string(gref) +
               ", event channel " + std::to_string(port) + " -> local " + std::to_string(*bound));
    return s_.channels.size() - 1;
  }

  std::span<std::byte> page(std::size_t channel) override {
    if (channel >= s_.channels.size()) return {};
    return s_.channels[channel].page.memory();
  }

  Status notify(std::size_t channel) override {
    if (channel >= s_.channels.size() || !s_.channels[channel].bound) {
      return make_error(EINVAL, "no channel " + std::to_string(channel));
    }
    return be_.platform_.events->notify(s_.channels[channel].port);
  }

  void log(int level, const std::string& line) override { be_.log(level, s_.name + ": " + line); }

 private:
  Backend& be_;
  Slot& s_;
};

Backend::Backend(Platform& platform, Protocol& protocol, BackendConfig config)
    : platform_(platform), protocol_(protocol), config_(std::move(config)) {
  base_ = domain_path(platform_.xenstore->self()) + "/backend/" + protocol_.kind();
}

Backend::~Backend() {
  close_all("the backend stops");
}

void Backend::log(int level, const std::string& line) const {
  if (level > config_.verbosity) return;
  std::fprintf(stderr, "%s: %s\n", config_.name.c_str(), line.c_str());
}

void Backend::set_state(Slot& s, XenbusState state) {
  Status w =
      platform_.xenstore->write(kNoTransaction, s.info.backend_path + "/state", state_text(state));
  if (!w.ok()) log(0, s.name + ": cannot write our state: " + w.error().describe());
  if (s.state != state) {
    log(1, s.name + ": state " + state_text(s.state) + " -> " + state_text(state));
  }
  s.state = state;
}

// Every toolstack change and every frontend state change is found here.
void Backend::rescan() {
  Xenstore& xs = *platform_.xenstore;
  auto doms = xs.list(kNoTransaction, base_);
  if (!doms.ok() && doms.error().code != ENOENT) {
    log(0, "cannot list " + base_ + ": " + doms.error().describe());
  }
  if (doms.ok()) {
    log(3, "rescan: " + std::to_string(doms->size()) + " frontend domain(s) under " + base_);
    for (const std::string& dom : *doms) {
      auto domid = parse_id(dom);
      if (!domid || *domid == platform_.xenstore->self() || *domid >= kDomIdFirstReserved) {
        continue;
      }
      auto devs = xs.list(kNoTransaction, base_ + "/" + dom);
      if (!devs.ok()) continue;
      for (const std::string& dev : *devs) {
        auto devid = parse_id(dev);
        if (!devid) continue;
        const auto key = std::make_pair(DomId(*domid), *devid);
        if (devices_.count(key) == 0) add_device(key.first, key.second);
      }
    }
  }
  for (auto it = devices_.begin(); it != devices_.end();) {
    Slot& s = *it->second;
    auto exists = xs.domain_exists(s.info.frontend);
    const bool gone = !update(s) || (exists.ok() && !*exists);
    if (gone) {
      close(s, XenbusState::kUnknown, "the device or its domain is gone");
      log(1, s.name + ": forgotten");
      unwatch(s.info.frontend_path);
      it = devices_.erase(it);
      report("after a device went away");
    } else {
      ++it;
    }
  }
}

// A new device must reach InitWait within libxl's 10 s.
void Backend::add_device(DomId domid, std::uint32_t devid) {
  if (devices_.size() >= kMaxDevices) {
    log(0, "dom" + std::to_string(domid) + "/" + std::to_string(devid) +
               ": ignored: " + std::to_string(kMaxDevices) + " devices served already");
    return;
  }
  Xenstore& xs = *platform_.xenstore;
  auto s = std::make_unique<Slot>();
  s->info.frontend = domid;
  s->info.devid = devid;
  s->info.backend_path = base_ + "/" + std::to_string(domid) + "/" + std::to_string(devid);
  s->name = "dom" + std::to_string(domid) + "/" + std::to_string(devid);
  auto fe_id = xs.read(kNoTransaction, s->info.backend_path + "/frontend-id");
  auto fe = xs.read(kNoTransaction, s->info.backend_path + "/frontend");
  if (!fe_id.ok() || !fe.ok() ||
      parse_xenstore_u32(*fe_id) != std::optional<std::uint32_t>(domid) ||
      check_path(*fe).code() != 0 || (*fe)[0] != '/') {
    log(2, s->name + ": " + s->info.backend_path + " has no usable frontend and frontend-id yet");
    return;
  }
  s->info.frontend_path = *fe;
  log(1, s->name + ": new device, frontend " + s->info.frontend_path);
  for (const auto& [key, value] : protocol_.backend_nodes()) {
    (void)xs.write(kNoTransaction, s->info.backend_path + "/" + key, value);
  }
  s->device = protocol_.make_device(s->info);
  Slot& slot = *(devices_[{domid, devid}] = std::move(s));
  set_state(slot, XenbusState::kInitWait);
  watch(slot.info.frontend_path);
}

void Backend::watch(const std::string& path) {
  const Status s = platform_.xenstore->watch(path, kWatchToken);
  if (!s.ok())
    log(2, "cannot watch " + path + " (found by scans instead): " + s.error().describe());
}

void Backend::unwatch(const std::string& path) {
  (void)platform_.xenstore->unwatch(path, kWatchToken);
}

// Takes what the watches reported; true when something fired.
bool Backend::take_watch_events() {
  bool fired = false;
  for (std::size_t n = 0; n < kMaxWatchEventsPerTurn; ++n) {
    auto ev = platform_.xenstore->next_event();
    if (!ev.ok()) {
      log(1, "xenstore watch: " + ev.error().describe() + " (scanning on)");
      return true;
    }
    if (!*ev) break;
    fired = true;
  }
  return fired;
}

// The xenbus state machine, driven by both ends' state nodes. False when
// our directory is gone.
bool Backend::update(Slot& s) {
  Xenstore& xs = *platform_.xenstore;
  auto be_node = xs.read(kNoTransaction, s.info.backend_path + "/state");
  if (!be_node.ok()) return be_node.error().code != ENOENT;
  const auto be_state = parse_xenbus_state(*be_node);
  auto fe_node = xs.read(kNoTransaction, s.info.frontend_path + "/state");
  const auto fe_state = fe_node.ok() ? parse_xenbus_state(*fe_node) : std::optional<XenbusState>();
  auto online = xs.read(kNoTransaction, s.info.backend_path + "/online");
  // The toolstack closes a device by writing our state (xl destroy, detach).
  const bool offline = online.ok() && *online == "0";
  if (be_state == XenbusState::kClosing || offline) {
    // Closed already (the frontend went first): say so again over the
    // toolstack's Closing, which waits for it.
    if (s.state != XenbusState::kClosed) {
      close(s, XenbusState::kClosed, "the toolstack closes the device");
    } else if (be_state == XenbusState::kClosing) {
      set_state(s, XenbusState::kClosed);
    }
    return true;
  }
  switch (fe_state.value_or(XenbusState::kUnknown)) {
    case XenbusState::kInitialised:
      if (s.state == XenbusState::kInitWait) connect(s);
      break;
    case XenbusState::kConnected:
      // Connected to rings we never saw (a backend that went away): make the
      // frontend start over.
      if (s.state == XenbusState::kInitWait) {
        close(s, XenbusState::kClosed, "the frontend is connected to rings we never saw");
      }
      break;
    case XenbusState::kInitialising:
      if (s.state == XenbusState::kClosed && !offline && be_state != XenbusState::kClosing) {
        set_state(s, XenbusState::kInitWait);
      }
      break;
    case XenbusState::kClosing:
    case XenbusState::kClosed:
    case XenbusState::kUnknown:
      if (s.state == XenbusState::kConnected || s.state == XenbusState::kInitWait) {
        close(s, XenbusState::kClosed, "the frontend closes");
      }
      break;
    default:
      break;
  }
  return true;
}

// Everything the frontend published is read before we say Connected.
void Backend::connect(Slot& s) {
  Context ctx(*this, s);
  Status st = s.device->connect(ctx);
  if (!st.ok()) return fail(s, st.error());
  s.connected = true;
  set_state(s, XenbusState::kConnected);
  report("after connecting a device");
  // Requests may already wait.
  for (std::size_t i = 0; i < s.channels.size(); ++i) serve(s, i);
}

// Releases in the reverse order of connect: the protocol's state, channels,
// rings. kUnknown as new_state: the node is gone, nothing to write.
void Backend::close(Slot& s, XenbusState new_state, const std::string& why) {
  const bool held = s.connected || !s.channels.empty();
  log(1, s.name + ": closing: " + why);
  if (s.device) s.device->disconnect();
  for (Channel& c : s.channels) {
    if (c.bound) {
      Status u = platform_.events->unbind(c.port);
      if (!u.ok()) log(0, s.name + ": " + u.error().describe());
    }
    if (c.page.valid()) {
      Status u = c.page.unmap();
      if (!u.ok()) log(0, s.name + ": " + u.error().describe());
    }
  }
  s.channels.clear();
  s.connected = false;
  if (new_state != XenbusState::kUnknown) set_state(s, new_state);
  if (held) report("after closing a device");
}

// A device whose frontend misbehaves is closed; the others go on.
void Backend::fail(Slot& s, const Error& e) {
  log(0, s.name + ": error: " + e.describe());
  (void)platform_.xenstore->write(kNoTransaction, s.info.backend_path + "/error", e.describe());
  close(s, XenbusState::kClosed, "after an error");
}

void Backend::serve(Slot& s, std::size_t channel) {
  if (!s.connected || channel >= s.channels.size()) return;
  Context ctx(*this, s);
  auto more = s.device->serve(ctx, channel);
  if (!more.ok()) return fail(s, more.error());
  s.channels[channel].more = *more;
}

// Timed work of one device, when the time it asked for has come.
void Backend::tick(Slot& s) {
  if (!s.connected || !s.device) return;
  const auto due = s.device->next_wakeup();
  if (!due || *due > std::chrono::steady_clock::now()) return;
  Context ctx(*this, s);
  Status st = s.device->tick(ctx);
  if (!st.ok()) fail(s, st.error());
}

BackendHoldings Backend::holdings() const {
  BackendHoldings h;
  h.devices = devices_.size();
  h.protocol.assign(protocol_.holding_names().size(), 0);
  for (const auto& [key, s] : devices_) {
    if (s->connected) ++h.connected;
    for (const Channel& c : s->channels) {
      h.ring_mappings += c.page.valid() ? 1 : 0;
      h.event_channels += c.bound ? 1 : 0;
    }
    if (!s->device) continue;
    const std::vector<std::size_t> held = s->device->holdings();
    for (std::size_t i = 0; i < std::min(held.size(), h.protocol.size()); ++i) {
      h.protocol[i] += held[i];
    }
  }
  return h;
}

// What the backend holds right now, for the log (and tests reading it).
void Backend::report(const char* when) {
  const BackendHoldings h = holdings();
  std::string line = std::string("holds ") + when + ": devices=" + std::to_string(h.devices) +
                     " connected=" + std::to_string(h.connected) +
                     " ring_mappings=" + std::to_string(h.ring_mappings) +
                     " event_channels=" + std::to_string(h.event_channels);
  const std::vector<std::string> names = protocol_.holding_names();
  for (std::size_t i = 0; i < names.size(); ++i) {
    line += " " + names[i] + "=" + std::to_string(h.protocol[i]);
  }
  const std::string counters = protocol_.counters();
  if (!counters.empty()) line += " " + counters;
  log(0, line);
}

Status Backend::turn(std::chrono::milliseconds wait) {
  using Clock = std::chrono::steady_clock;
  if (!watching_) {
    watching_ = true;
    watch(base_);
    watch("@releaseDomain");
  }
  const auto now = Clock::now();
  if (now >= next_scan_ || (scan_asked_ && now >= last_scan_ + kMinScanInterval)) {
    rescan();
    last_scan_ = Clock::now();
    next_scan_ = last_scan_ + config_.rescan;
    scan_asked_ = false;
  }
  bool busy = false;
  Clock::time_point until = next_scan_;
  for (const auto& [key, s] : devices_) {
    for (const Channel& c : s->channels) busy = busy || c.more;
    if (s->connected && s->device) {
      const auto due = s->device->next_wakeup();
      if (due) until = std::min(until, *due);
    }
  }
  // Rounded up: a wait rounded down to 0 would spin through the last
  // millisecond before each scan or wakeup.
  if (scan_asked_) until = std::min(until, last_scan_ + kMinScanInterval);
  const auto until_next = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now());
  const long ms = busy ? 0 : std::max<long>(0, std::min(wait.count(), long(until_next.count())));
  pollfd fds[2] = {{platform_.events->fd(), POLLIN, 0}, {platform_.xenstore->fd(), POLLIN, 0}};
  const int n = ::poll(fds, 2, int(ms));
  if (n < 0 && errno != EINTR) return errno_error("poll");
  if (n > 0 && fds[1].revents != 0) scan_asked_ = take_watch_events() || scan_asked_;
  if (n > 0 && fds[0].revents != 0) {
    // A bounded drain: ports that keep firing wait for the next turn.
    for (std::size_t drained = 0; drained < 4 * kMaxDevices; ++drained) {
      auto port = platform_.events->pending();
      if (!port.ok()) return port.error();
      if (!*port) break;
      (void)platform_.events->unmask(**port);
      for (auto& [key, s] : devices_) {
        for (std::size_t i = 0; i < s->channels.size(); ++i) {
          if (s->channels[i].bound && s->channels[i].port == **port) serve(*s, i);
        }
      }
    }
  }
  for (auto& [key, s] : devices_) {
    for (std::size_t i = 0; i < s->channels.size(); ++i) {
      if (s->channels[i].more) serve(*s, i);
    }
  }
  for (auto& [key, s] : devices_) tick(*s);
  return {};
}

Status Backend::run(const std::atomic<bool>& stop) {
  log(1, "serving " + base_);
  while (!stop.load()) SHBUF_TRY(turn(config_.rescan));
  log(1, "stopping");
  close_all("the backend stops");
  protocol_.finish();
  report("at exit");
  return {};
}

void Backend::close_all(const char* why) {
  for (auto& [key, s] : devices_) {
    close(*s, XenbusState::kClosed, why);
    unwatch(s->info.frontend_path);
  }
  devices_.clear();
  if (watching_) {
    unwatch(base_);
    unwatch("@releaseDomain");
    watching_ = false;
  }
}

Status check_output_dir(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return make_error(ENOENT, "output directory " + dir + " does not exist");
  }
  return {};
}

Status run_backend(const PlatformOptions& platform, Protocol& protocol, const BackendConfig& config,
                   const std::atomic<bool>& stop) {
  auto opened = open_platform(platform);
  if (!opened.ok()) return opened.error();
  Backend backend(*opened, protocol, config);
  return backend.run(stop);
}

}  // namespace shbuf::pv
