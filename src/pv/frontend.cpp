#include "pv/frontend.h"

#include <poll.h>

#include <algorithm>
#include <thread>

#include "pv/toolstack.h"

namespace shbuf::pv {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kTransactionAttempts = 32;

}  // namespace

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return int(std::max<long>(0, left.count()));
}

Result<FrontChannel> FrontChannel::open(Platform& platform, DomId backend, std::size_t entry_size) {
  FrontChannel c;
  auto req = platform.grants->share(backend, 1, Access::kReadWrite);
  if (!req.ok()) return req.error();
  c.req_page = std::move(req).value();
  auto ring = FrontRing::init(c.req_page.memory(), entry_size);
  if (!ring.ok()) return ring.error();
  c.req = *ring;
  auto evt = platform.grants->share(backend, 1, Access::kReadWrite);
  if (!evt.ok()) return evt.error();
  c.evt_page = std::move(evt).value();
  std::fill(c.evt_page.memory().begin(), c.evt_page.memory().end(), std::byte{0});
  auto consumer = EventConsumer::attach(c.evt_page.memory(), entry_size);
  if (!consumer.ok()) return consumer.error();
  c.evt = *consumer;
  auto req_port = platform.events->bind_unbound(backend);
  if (!req_port.ok()) return req_port.error();
  c.req_port = *req_port;
  auto evt_port = platform.events->bind_unbound(backend);
  if (!evt_port.ok()) {
    (void)platform.events->unbind(c.req_port);
    return evt_port.error();
  }
  c.evt_port = *evt_port;
  return c;
}

void FrontChannel::release(Platform& platform) {
  (void)platform.events->unbind(req_port);
  (void)platform.events->unbind(evt_port);
  (void)req_page.end();
  (void)evt_page.end();
}

Result<FrontendLink> FrontendLink::open(Platform& platform, const std::string& kind,
                                        std::uint32_t devid, std::chrono::milliseconds timeout) {
  FrontendLink link(platform);
  link.timeout_ = timeout;
  link.dir_ = frontend_path(kind, platform.xenstore->self(), devid);
  auto id = link.read("backend-id");
  if (!id.ok()) return id.error();
  auto be = parse_xenstore_u32(*id);
  if (!be || *be >= kDomIdFirstReserved) {
    return make_error(EINVAL, link.dir_ + "/backend-id '" + *id + "' is not a domain");
  }
  link.backend_ = DomId(*be);
  auto dir = link.read("backend");
  if (!dir.ok()) return dir.error();
  SHBUF_TRY(check_path(*dir));
  link.backend_dir_ = *dir;
  return link;
}

Result<std::string> FrontendLink::read(const std::string& key) const {
  return platform_->xenstore->read(kNoTransaction, dir_ + "/" + key);
}

Status FrontendLink::set_state(XenbusState state) {
  return platform_->xenstore->write(kNoTransaction, dir_ + "/state",
                                    std::to_string(static_cast<int>(state)));
}

Status FrontendLink::wait_backend_ready() {
  auto mine = read("state");
  const bool again = mine.ok() && parse_xenbus_state(*mine) == XenbusState::kClosed;
  if (again) SHBUF_TRY(set_state(XenbusState::kInitialising));
  return wait_backend(XenbusState::kInitWait, /*closed_refuses=*/!again);
}

Status FrontendLink::wait_backend(XenbusState want, bool closed_refuses) {
  const auto deadline = Clock::now() + timeout_;
  for (;;) {
    auto v = platform_->xenstore->read(kNoTransaction, backend_dir_ + "/state");
    const auto state = v.ok() ? parse_xenbus_state(*v) : std::nullopt;
    if (state == want) return {};
    if (state == XenbusState::kClosed && want != XenbusState::kClosed && closed_refuses) {
      auto why = platform_->xenstore->read(kNoTransaction, backend_dir_ + "/error");
      return make_error(ECONNREFUSED,
                        "the backend closed the device" + (why.ok() ? ": " + *why : std::string()));
    }
    if (Clock::now() >= deadline) {
      return make_error(ETIMEDOUT, "the backend did not reach state " +
                                       std::to_string(static_cast<int>(want)) + " within " +
                                       std::to_string(timeout_.count()) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

Status FrontendLink::wait_events(int ms) {
  pollfd fd{platform_->events->fd(), POLLIN, 0};
  const int n = ::poll(&fd, 1, ms);
  if (n < 0 && errno != EINTR) return errno_error("poll");
  for (int drained = 0; drained < 64; ++drained) {
    auto port = platform_->events->pending();
    if (!port.ok()) return port.error();
    if (!*port) break;
    SHBUF_TRY(platform_->events->unmask(**port));
  }
  return {};
}

Status FrontendLink::publish(const Nodes& nodes) {
  Xenstore& xs = *platform_->xenstore;
  for (int attempt = 0; attempt < kTransactionAttempts; ++attempt) {
    auto t = xs.begin();
    if (!t.ok()) return t.error();
    Status s;
    for (std::size_t i = 0; i < nodes.size() && s.ok(); ++i) {
      s = xs.write(*t, dir_ + "/" + nodes[i].first, nodes[i].second);
    }
    if (s.ok()) {
      s = xs.write(*t, dir_ + "/state",
                   std::to_string(static_cast<int>(XenbusState::kInitialised)));
    }
    if (!s.ok()) {
      (void)xs.end(*t, false);
      return s;
    }
    Status done = xs.end(*t, true);
    if (done.ok()) return {};
    if (done.code() != EAGAIN) return done;
  }
  return make_error(EAGAIN, dir_ + ": xenstore kept changing while publishing the rings");
}

Status FrontendLink::close(const std::function<void()>& release) {
  // A device the toolstack removed has nothing left to say Closing in.
  auto mine = read("state");
  if (!mine.ok() && mine.error().code == ENOENT) {
    release();
    return {};
  }
  Status result = set_state(XenbusState::kClosing);
  if (result.ok()) result = wait_backend(XenbusState::kClosed);
  release();
  Status closed = set_state(XenbusState::kClosed);
  return result.ok() ? closed : result;
}

void FrontendLink::add_channel(Nodes& nodes, const std::string& prefix, const FrontChannel& channel,
                               const std::string& ring_key, const std::string& port_key) {
  nodes.emplace_back(prefix + ring_key, std::to_string(channel.req_page.grefs()[0]));
  nodes.emplace_back(prefix + port_key, std::to_string(channel.req_port));
  nodes.emplace_back(prefix + "evt-ring-ref", std::to_string(channel.evt_page.grefs()[0]));
  nodes.emplace_back(prefix + "evt-event-channel", std::to_string(channel.evt_port));
}

}  // namespace shbuf::pv
