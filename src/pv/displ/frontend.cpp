#include "pv/displ/frontend.h"

#include <poll.h>

#include <thread>

#include "pv/toolstack.h"

namespace shbuf::displ {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kTransactionAttempts = 32;

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return int(std::max<long>(0, left.count()));
}

}  // namespace

Result<std::unique_ptr<DisplFrontend>> DisplFrontend::connect(pv::Platform& platform,
                                                              const FrontendOptions& options) {
  std::unique_ptr<DisplFrontend> fe(new DisplFrontend(platform));
  fe->options_ = options;
  fe->dir_ = pv::frontend_path("vdispl", platform.xenstore->self(), options.devid);
  SHBUF_TRY(fe->read_config());
  SHBUF_TRY(fe->wait_backend(pv::XenbusState::kInitWait));
  fe->open_ = true;
  SHBUF_TRY(fe->publish());
  SHBUF_TRY(fe->wait_backend(pv::XenbusState::kConnected));
  SHBUF_TRY(fe->set_state(pv::XenbusState::kConnected));
  return fe;
}

DisplFrontend::~DisplFrontend() {
  if (open_) (void)close();
}

// What the toolstack wrote: the backend, the mode and the connectors.
Status DisplFrontend::read_config() {
  pv::Xenstore& xs = *platform_.xenstore;
  auto id = xs.read(pv::kNoTransaction, dir_ + "/backend-id");
  if (!id.ok()) return id.error();
  auto be = pv::parse_xenstore_u32(*id);
  if (!be || *be >= kDomIdFirstReserved) {
    return make_error(EINVAL, dir_ + "/backend-id '" + *id + "' is not a domain");
  }
  backend_ = DomId(*be);
  auto dir = xs.read(pv::kNoTransaction, dir_ + "/backend");
  if (!dir.ok()) return dir.error();
  SHBUF_TRY(pv::check_path(*dir));
  backend_dir_ = *dir;
  auto alloc = xs.read(pv::kNoTransaction, dir_ + "/be-alloc");
  be_alloc_ = alloc.ok() && *alloc == "1";
  for (std::size_t i = 0; i <= kMaxConnectors; ++i) {
    auto res = xs.read(pv::kNoTransaction, dir_ + "/" + std::to_string(i) + "/resolution");
    if (!res.ok()) break;
    if (i == kMaxConnectors) {
      return make_error(
          E2BIG, dir_ + " lists more than " + std::to_string(kMaxConnectors) + " connectors");
    }
    auto r = parse_resolution(*res);
    if (!r.ok()) return r.error();
    resolutions_.push_back(*r);
  }
  if (resolutions_.empty()) return make_error(EINVAL, dir_ + " lists no connector");
  return {};
}

// Rings and channels first, then every key and Initialised in one
// transaction, so that the backend never reads half of them.
Status DisplFrontend::publish() {
  Provider& grants = *platform_.grants;
  for (std::size_t i = 0; i < resolutions_.size(); ++i) {
    Connector c;
    auto req = grants.share(backend_, 1, Access::kReadWrite);
    if (!req.ok()) return req.error();
    c.req_page = std::move(req).value();
    auto ring = pv::FrontRing::init(c.req_page.memory(), kPacketSize);
    if (!ring.ok()) return ring.error();
    c.req = *ring;
    auto evt = grants.share(backend_, 1, Access::kReadWrite);
    if (!evt.ok()) return evt.error();
    c.evt_page = std::move(evt).value();
    std::fill(c.evt_page.memory().begin(), c.evt_page.memory().end(), std::byte{0});
    auto consumer = pv::EventConsumer::attach(c.evt_page.memory(), kPacketSize);
    if (!consumer.ok()) return consumer.error();
    c.evt = *consumer;
    auto req_port = platform_.events->bind_unbound(backend_);
    if (!req_port.ok()) return req_port.error();
    c.req_port = *req_port;
    connectors_.push_back(std::move(c));
    auto evt_port = platform_.events->bind_unbound(backend_);
    if (!evt_port.ok()) return evt_port.error();
    connectors_.back().evt_port = *evt_port;
  }
  pv::Xenstore& xs = *platform_.xenstore;
  for (int attempt = 0; attempt < kTransactionAttempts; ++attempt) {
    auto t = xs.begin();
    if (!t.ok()) return t.error();
    Status s;
    for (std::size_t i = 0; i < connectors_.size() && s.ok(); ++i) {
      const Connector& c = connectors_[i];
      const std::string p = dir_ + "/" + std::to_string(i) + "/";
      s = xs.write(*t, p + "req-ring-ref", std::to_string(c.req_page.grefs()[0]));
      if (s.ok()) s = xs.write(*t, p + "req-event-channel", std::to_string(c.req_port));
      if (s.ok()) s = xs.write(*t, p + "evt-ring-ref", std::to_string(c.evt_page.grefs()[0]));
      if (s.ok()) s = xs.write(*t, p + "evt-event-channel", std::to_string(c.evt_port));
    }
    if (s.ok()) {
      s = xs.write(*t, dir_ + "/state",
                   std::to_string(static_cast<int>(pv::XenbusState::kInitialised)));
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

Status DisplFrontend::set_state(pv::XenbusState state) {
  return platform_.xenstore->write(pv::kNoTransaction, dir_ + "/state",
                                   std::to_string(static_cast<int>(state)));
}

Status DisplFrontend::wait_backend(pv::XenbusState want) {
  const auto deadline = Clock::now() + options_.timeout;
  for (;;) {
    auto v = platform_.xenstore->read(pv::kNoTransaction, backend_dir_ + "/state");
    const auto state = v.ok() ? pv::parse_xenbus_state(*v) : std::nullopt;
    if (state == want) return {};
    if (state == pv::XenbusState::kClosed && want != pv::XenbusState::kClosed) {
      auto why = platform_.xenstore->read(pv::kNoTransaction, backend_dir_ + "/error");
      return make_error(ECONNREFUSED,
                        "the backend closed the device" + (why.ok() ? ": " + *why : std::string()));
    }
    if (Clock::now() >= deadline) {
      return make_error(ETIMEDOUT, "the backend did not reach state " +
                                       std::to_string(static_cast<int>(want)) + " within " +
                                       std::to_string(options_.timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

Status DisplFrontend::wait_events(int ms) {
  pollfd fd{platform_.events->fd(), POLLIN, 0};
  const int n = ::poll(&fd, 1, ms);
  if (n < 0 && errno != EINTR) return errno_error("poll");
  for (int drained = 0; drained < 64; ++drained) {
    auto port = platform_.events->pending();
    if (!port.ok()) return port.error();
    if (!*port) break;
    SHBUF_TRY(platform_.events->unmask(**port));
  }
  return {};
}

Status DisplFrontend::check_connector(std::size_t connector) const {
  if (connector < connectors_.size()) return {};
  return make_error(EINVAL, "no connector " + std::to_string(connector) + " (the device has " +
                                std::to_string(connectors_.size()) + ")");
}

Status DisplFrontend::send_packet(std::size_t connector, const Packet& packet) {
  SHBUF_TRY(check_connector(connector));
  auto notify = connectors_[connector].req.push_request(packet);
  if (!notify.ok()) return notify.error();
  if (*notify) SHBUF_TRY(this->notify(connector));
  return {};
}

Status DisplFrontend::notify(std::size_t connector) {
  SHBUF_TRY(check_connector(connector));
  return platform_.events->notify(connectors_[connector].req_port);
}

std::span<std::byte> DisplFrontend::request_page(std::size_t connector) {
  if (connector >= connectors_.size()) return {};
  return connectors_[connector].req_page.memory();
}

Result<std::int32_t> DisplFrontend::request(std::size_t connector, Request r) {
  r.id = next_id_++;
  SHBUF_TRY(send_packet(connector, encode_request(r)));
  Connector& c = connectors_[connector];
  const auto deadline = Clock::now() + options_.timeout;
  for (;;) {
    Packet p;
    auto got = c.req.next_response(p);
    if (!got.ok()) return got.error();
    if (*got) {
      const Response rsp = decode_response(p);
      if (rsp.id != r.id || rsp.operation != r.operation) {
        return make_error(EPROTO, "the response (id " + std::to_string(rsp.id) + ", " +
                                      op_name(rsp.operation) + ") answers another request (id " +
                                      std::to_string(r.id) + ", " + op_name(r.operation) + ")");
      }
      return rsp.status;
    }
    auto more = c.req.final_check();
    if (!more.ok()) return more.error();
    if (*more) continue;
    if (Clock::now() >= deadline) {
      return make_error(ETIMEDOUT, op_name(r.operation) + " id " + std::to_string(r.id) +
                                       " was not answered within " +
                                       std::to_string(options_.timeout.count()) + " ms");
    }
    SHBUF_TRY(wait_events(std::min(remaining_ms(deadline), 50)));
  }
}

namespace {

Error refused(const std::string& what, std::int32_t status) {
  return make_error(-status > 0 ? -status : EPROTO,
                    what + " refused by the backend (status " + std::to_string(status) + ")");
}

std::uint64_t stride_of(std::uint32_t width, std::uint32_t bpp) {
  return (std::uint64_t{width} * bpp + 7) / 8;
}

}  // namespace

Result<std::uint64_t> DisplFrontend::dbuf_create(std::uint32_t width, std::uint32_t height,
                                                 std::uint32_t bpp) {
  const std::uint64_t size = stride_of(width, bpp) * height;
  if (width == 0 || height == 0 || size == 0 || size > UINT32_MAX) {
    return make_error(EINVAL, "a buffer of " + std::to_string(width) + "x" +
                                  std::to_string(height) + "x" + std::to_string(bpp));
  }
  FrontendBufferConfig config;
  config.backend = backend_;
  config.pages = (size + kPageSize - 1) / kPageSize;
  config.mode = be_alloc_ ? AllocMode::kBackend : AllocMode::kFrontend;
  auto buffer = FrontendBuffer::create(*platform_.grants, config);
  if (!buffer.ok()) return buffer.error();
  const std::uint64_t cookie = next_cookie_++;
  DbufCreate body;
  body.dbuf_cookie = cookie;
  body.width = width;
  body.height = height;
  body.bpp = bpp;
  body.buffer_sz = std::uint32_t(size);
  body.flags = be_alloc_ ? kDbufFlagReqAlloc : 0;
  body.gref_directory = buffer->directory_gref();
  auto status = request(0, Request{0, kOpDbufCreate, body});
  if (!status.ok()) return status.error();
  if (*status != 0) return refused("DBUF_CREATE", *status);
  if (be_alloc_) SHBUF_TRY(buffer->map());
  dbufs_.emplace(cookie, Dbuf{std::move(buffer).value(), width, height, bpp});
  return cookie;
}

std::span<std::byte> DisplFrontend::pixels(std::uint64_t dbuf_cookie) {
  auto it = dbufs_.find(dbuf_cookie);
  if (it == dbufs_.end()) return {};
  const Dbuf& d = it->second;
  return d.buffer.memory().first(stride_of(d.width, d.bpp) * d.height);
}

Status DisplFrontend::dbuf_destroy(std::uint64_t dbuf_cookie) {
  auto status = request(0, Request{0, kOpDbufDestroy, DbufDestroy{dbuf_cookie}});
  if (!status.ok()) return status.error();
  if (*status != 0) return refused("DBUF_DESTROY", *status);
  auto it = dbufs_.find(dbuf_cookie);
  if (it != dbufs_.end()) {
    SHBUF_TRY(it->second.buffer.free());
    dbufs_.erase(it);
  }
  return {};
}

Result<std::uint64_t> DisplFrontend::fb_attach(std::uint64_t dbuf_cookie,
                                               std::uint32_t pixel_format) {
  auto it = dbufs_.find(dbuf_cookie);
  if (it == dbufs_.end()) {
    return make_error(EINVAL, "no dbuf " + std::to_string(dbuf_cookie));
  }
  const std::uint64_t fb = next_cookie_++;
  FbAttach body;
  body.dbuf_cookie = dbuf_cookie;
  body.fb_cookie = fb;
  body.width = it->second.width;
  body.height = it->second.height;
  body.pixel_format = pixel_format;
  auto status = request(0, Request{0, kOpFbAttach, body});
  if (!status.ok()) return status.error();
  if (*status != 0) return refused("FB_ATTACH", *status);
  fbs_[fb] = dbuf_cookie;
  return fb;
}

Status DisplFrontend::fb_detach(std::uint64_t fb_cookie) {
  auto status = request(0, Request{0, kOpFbDetach, FbDetach{fb_cookie}});
  if (!status.ok()) return status.error();
  if (*status != 0) return refused("FB_DETACH", *status);
  fbs_.erase(fb_cookie);
  return {};
}

Status DisplFrontend::set_config(std::size_t connector, std::uint64_t fb_cookie) {
  SetConfig body;
  body.fb_cookie = fb_cookie;
  if (fb_cookie != 0) {
    auto fb = fbs_.find(fb_cookie);
    if (fb == fbs_.end()) return make_error(EINVAL, "no framebuffer " + std::to_string(fb_cookie));
    const Dbuf& d = dbufs_.at(fb->second);
    body.width = d.width;
    body.height = d.height;
    body.bpp = d.bpp;
  }
  auto status = request(connector, Request{0, kOpSetConfig, body});
  if (!status.ok()) return status.error();
  if (*status != 0) return refused("SET_CONFIG", *status);
  return {};
}

Status DisplFrontend::page_flip(std::size_t connector, std::uint64_t fb_cookie) {
  auto status = request(connector, Request{0, kOpPgFlip, PgFlip{fb_cookie}});
  if (!status.ok()) return status.error();
  if (*status != 0) return refused("PG_FLIP", *status);
  Connector& c = connectors_[connector];
  const auto deadline = Clock::now() + options_.timeout;
  for (;;) {
    Packet p;
    auto got = c.evt.next(p);
    if (!got.ok()) return got.error();
    if (*got) {
      auto ev = decode_pg_flip_event(p);
      if (ev && ev->fb_cookie == fb_cookie) return {};
      continue;
    }
    if (Clock::now() >= deadline) {
      return make_error(ETIMEDOUT, "no page-flip event for framebuffer " +
                                       std::to_string(fb_cookie) + " within " +
                                       std::to_string(options_.timeout.count()) + " ms");
    }
    SHBUF_TRY(wait_events(std::min(remaining_ms(deadline), 50)));
  }
}

void DisplFrontend::release() {
  for (auto& [cookie, d] : dbufs_) (void)d.buffer.free();
  dbufs_.clear();
  fbs_.clear();
  for (Connector& c : connectors_) {
    (void)platform_.events->unbind(c.req_port);
    (void)platform_.events->unbind(c.evt_port);
    (void)c.req_page.end();
    (void)c.evt_page.end();
  }
  connectors_.clear();
}

Status DisplFrontend::close() {
  if (!open_) return {};
  open_ = false;
  // A device the toolstack removed has nothing left to say Closing in.
  auto mine = platform_.xenstore->read(pv::kNoTransaction, dir_ + "/state");
  if (!mine.ok() && mine.error().code == ENOENT) {
    release();
    return {};
  }
  Status result = set_state(pv::XenbusState::kClosing);
  if (result.ok()) result = wait_backend(pv::XenbusState::kClosed);
  release();
  Status closed = set_state(pv::XenbusState::kClosed);
  return result.ok() ? closed : result;
}

}  // namespace shbuf::displ
