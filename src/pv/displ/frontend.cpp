#include "pv/displ/frontend.h"

#include <poll.h>

#include <thread>

namespace shbuf::displ {
namespace {

using Clock = std::chrono::steady_clock;

using pv::remaining_ms;

}  // namespace

Result<std::unique_ptr<DisplFrontend>> DisplFrontend::connect(pv::Platform& platform,
                                                              const FrontendOptions& options) {
  std::unique_ptr<DisplFrontend> fe(new DisplFrontend(platform));
  fe->options_ = options;
  auto link = pv::FrontendLink::open(platform, "vdispl", options.devid, options.timeout);
  if (!link.ok()) return link.error();
  fe->link_.emplace(std::move(link).value());
  SHBUF_TRY(fe->read_config());
  SHBUF_TRY(fe->link_->wait_backend_ready());
  fe->open_ = true;
  SHBUF_TRY(fe->publish());
  SHBUF_TRY(fe->link_->wait_backend(pv::XenbusState::kConnected));
  SHBUF_TRY(fe->link_->set_state(pv::XenbusState::kConnected));
  return fe;
}

DisplFrontend::~DisplFrontend() {
  if (open_) (void)close();
}

// What the toolstack wrote beyond the backend: the mode and the connectors.
Status DisplFrontend::read_config() {
  const std::string& dir = link_->dir();
  auto alloc = link_->read("be-alloc");
  be_alloc_ = alloc.ok() && *alloc == "1";
  for (std::size_t i = 0; i <= kMaxConnectors; ++i) {
    auto res = link_->read(std::to_string(i) + "/resolution");
    if (!res.ok()) break;
    if (i == kMaxConnectors) {
      return make_error(E2BIG,
                        dir + " lists more than " + std::to_string(kMaxConnectors) + " connectors");
    }
    auto r = parse_resolution(*res);
    if (!r.ok()) return r.error();
    resolutions_.push_back(*r);
  }
  if (resolutions_.empty()) return make_error(EINVAL, dir + " lists no connector");
  return {};
}

// Rings and channels first, then every key and Initialised in one
// transaction.
Status DisplFrontend::publish() {
  pv::FrontendLink::Nodes nodes;
  for (std::size_t i = 0; i < resolutions_.size(); ++i) {
    auto ch = pv::FrontChannel::open(platform_, link_->backend(), kPacketSize);
    if (!ch.ok()) return ch.error();
    Connector c;
    static_cast<pv::FrontChannel&>(c) = std::move(ch).value();
    connectors_.push_back(std::move(c));
    pv::FrontendLink::add_channel(nodes, std::to_string(i) + "/", connectors_.back(),
                                  "req-ring-ref", "req-event-channel");
  }
  return link_->publish(nodes);
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
    SHBUF_TRY(link_->wait_events(std::min(remaining_ms(deadline), 50)));
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
  config.backend = link_->backend();
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
    SHBUF_TRY(link_->wait_events(std::min(remaining_ms(deadline), 50)));
  }
}

void DisplFrontend::release() {
  for (auto& [cookie, d] : dbufs_) (void)d.buffer.free();
  dbufs_.clear();
  fbs_.clear();
  for (Connector& c : connectors_) c.release(platform_);
  connectors_.clear();
}

Status DisplFrontend::close() {
  if (!open_) return {};
  open_ = false;
  return link_->close([this] { release(); });
}

}  // namespace shbuf::displ
