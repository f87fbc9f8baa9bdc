// Our sndif frontend: what snd_xen_front does, in user space.
#include "pv/snd/frontend.h"

#include <poll.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "pv/toolstack.h"

namespace shbuf::snd {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kTransactionAttempts = 32;

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return int(std::max<long>(0, left.count()));
}

Error refused(const std::string& what, std::int32_t status) {
  return make_error(-status > 0 ? -status : EPROTO,
                    what + " refused by the backend (status " + std::to_string(status) + ")");
}

}  // namespace

Result<std::unique_ptr<SndFrontend>> SndFrontend::connect(pv::Platform& platform,
                                                          const FrontendOptions& options) {
  std::unique_ptr<SndFrontend> fe(new SndFrontend(platform));
  fe->options_ = options;
  fe->dir_ = pv::frontend_path("vsnd", platform.xenstore->self(), options.devid);
  SHBUF_TRY(fe->read_config());
  // A device closed by an earlier frontend starts over from Initialising,
  // as Linux's frontends do; the backend then leaves Closed for InitWait.
  auto mine = platform.xenstore->read(pv::kNoTransaction, fe->dir_ + "/state");
  const bool again = mine.ok() && pv::parse_xenbus_state(*mine) == pv::XenbusState::kClosed;
  if (again) SHBUF_TRY(fe->set_state(pv::XenbusState::kInitialising));
  SHBUF_TRY(fe->wait_backend(pv::XenbusState::kInitWait, /*closed_refuses=*/!again));
  fe->open_ = true;
  SHBUF_TRY(fe->publish());
  SHBUF_TRY(fe->wait_backend(pv::XenbusState::kConnected));
  SHBUF_TRY(fe->set_state(pv::XenbusState::kConnected));
  return fe;
}

SndFrontend::~SndFrontend() {
  if (open_) (void)close();
}

// What the toolstack wrote: the backend and the card.
Status SndFrontend::read_config() {
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
  auto streams = read_streams([&xs, this](const std::string& key) {
    return xs.read(pv::kNoTransaction, dir_ + "/" + key);
  });
  if (!streams.ok()) return streams.error();
  configs_ = std::move(streams).value();
  return {};
}

// Rings and channels first, then every key and Initialised in one
// transaction, so that the backend never reads half of them.
Status SndFrontend::publish() {
  Provider& grants = *platform_.grants;
  for (std::size_t i = 0; i < configs_.size(); ++i) {
    Stream s;
    auto req = grants.share(backend_, 1, Access::kReadWrite);
    if (!req.ok()) return req.error();
    s.req_page = std::move(req).value();
    auto ring = pv::FrontRing::init(s.req_page.memory(), kPacketSize);
    if (!ring.ok()) return ring.error();
    s.req = *ring;
    auto evt = grants.share(backend_, 1, Access::kReadWrite);
    if (!evt.ok()) return evt.error();
    s.evt_page = std::move(evt).value();
    std::fill(s.evt_page.memory().begin(), s.evt_page.memory().end(), std::byte{0});
    auto consumer = pv::EventConsumer::attach(s.evt_page.memory(), kPacketSize);
    if (!consumer.ok()) return consumer.error();
    s.evt = *consumer;
    streams_.push_back(std::move(s));
    auto req_port = platform_.events->bind_unbound(backend_);
    if (!req_port.ok()) return req_port.error();
    streams_.back().req_port = *req_port;
    auto evt_port = platform_.events->bind_unbound(backend_);
    if (!evt_port.ok()) return evt_port.error();
    streams_.back().evt_port = *evt_port;
  }
  pv::Xenstore& xs = *platform_.xenstore;
  for (int attempt = 0; attempt < kTransactionAttempts; ++attempt) {
    auto t = xs.begin();
    if (!t.ok()) return t.error();
    Status st;
    for (std::size_t i = 0; i < streams_.size() && st.ok(); ++i) {
      const Stream& s = streams_[i];
      const std::string p = dir_ + "/" + stream_key(i, "");
      st = xs.write(*t, p + "ring-ref", std::to_string(s.req_page.grefs()[0]));
      if (st.ok()) st = xs.write(*t, p + "event-channel", std::to_string(s.req_port));
      if (st.ok()) st = xs.write(*t, p + "evt-ring-ref", std::to_string(s.evt_page.grefs()[0]));
      if (st.ok()) st = xs.write(*t, p + "evt-event-channel", std::to_string(s.evt_port));
    }
    if (st.ok()) {
      st = xs.write(*t, dir_ + "/state",
                    std::to_string(static_cast<int>(pv::XenbusState::kInitialised)));
    }
    if (!st.ok()) {
      (void)xs.end(*t, false);
      return st;
    }
    Status done = xs.end(*t, true);
    if (done.ok()) return {};
    if (done.code() != EAGAIN) return done;
  }
  return make_error(EAGAIN, dir_ + ": xenstore kept changing while publishing the rings");
}

Status SndFrontend::set_state(pv::XenbusState state) {
  return platform_.xenstore->write(pv::kNoTransaction, dir_ + "/state",
                                   std::to_string(static_cast<int>(state)));
}

Status SndFrontend::wait_backend(pv::XenbusState want, bool closed_refuses) {
  const auto deadline = Clock::now() + options_.timeout;
  for (;;) {
    auto v = platform_.xenstore->read(pv::kNoTransaction, backend_dir_ + "/state");
    const auto state = v.ok() ? pv::parse_xenbus_state(*v) : std::nullopt;
    if (state == want) return {};
    if (state == pv::XenbusState::kClosed && want != pv::XenbusState::kClosed && closed_refuses) {
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

Status SndFrontend::wait_events(int ms) {
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

Status SndFrontend::check_stream(std::size_t stream) const {
  if (stream < streams_.size()) return {};
  return make_error(EINVAL, "no stream " + std::to_string(stream) + " (the card has " +
                                std::to_string(streams_.size()) + ")");
}

Status SndFrontend::send_packet(std::size_t stream, const Packet& packet) {
  SHBUF_TRY(check_stream(stream));
  auto notify = streams_[stream].req.push_request(packet);
  if (!notify.ok()) return notify.error();
  if (*notify) SHBUF_TRY(this->notify(stream));
  return {};
}

Status SndFrontend::notify(std::size_t stream) {
  SHBUF_TRY(check_stream(stream));
  return platform_.events->notify(streams_[stream].req_port);
}

std::span<std::byte> SndFrontend::request_page(std::size_t stream) {
  if (stream >= streams_.size()) return {};
  return streams_[stream].req_page.memory();
}

Status SndFrontend::set_request_producer(std::size_t stream, std::uint32_t index) {
  SHBUF_TRY(check_stream(stream));
  // req_prod, the shared ring's first word, as the frontend publishes it.
  std::atomic_ref<std::uint32_t> prod(
      *reinterpret_cast<std::uint32_t*>(streams_[stream].req_page.memory().data()));
  prod.store(index, std::memory_order_release);
  return {};
}

Status SndFrontend::rewrite(const std::string& key, const std::string& value) {
  return platform_.xenstore->write(pv::kNoTransaction, dir_ + "/" + key, value);
}

std::string SndFrontend::stream_key(std::size_t stream, const std::string& name) const {
  if (stream >= configs_.size()) return name;
  return std::to_string(configs_[stream].pcm) + "/" + std::to_string(configs_[stream].index) + "/" +
         name;
}

Result<Response> SndFrontend::request(std::size_t stream, Request r) {
  SHBUF_TRY(check_stream(stream));
  Stream& s = streams_[stream];
  r.id = s.next_id++;
  SHBUF_TRY(send_packet(stream, encode_request(r)));
  const auto deadline = Clock::now() + options_.timeout;
  for (;;) {
    Packet p;
    auto got = s.req.next_response(p);
    if (!got.ok()) return got.error();
    if (*got) {
      const Response rsp = decode_response(p);
      if (rsp.id != r.id || rsp.operation != r.operation) {
        return make_error(EPROTO, "the response (id " + std::to_string(rsp.id) + ", " +
                                      op_name(rsp.operation) + ") answers another request (id " +
                                      std::to_string(r.id) + ", " + op_name(r.operation) + ")");
      }
      return rsp;
    }
    auto more = s.req.final_check();
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

Status SndFrontend::expect_ok(const char* what, const Result<Response>& r) {
  if (!r.ok()) return r.error();
  if (r->status != 0) return refused(what, r->status);
  return {};
}

Result<HwParams> SndFrontend::query(std::size_t stream, const HwParams& params) {
  auto r = request(stream, Request{0, kOpHwParamQuery, HwParamQuery{params}});
  SHBUF_TRY(expect_ok("HW_PARAM_QUERY", r));
  return r->hw;
}

Status SndFrontend::open(std::size_t stream, std::uint32_t rate, std::uint8_t format,
                         std::uint8_t channels, std::uint32_t buffer_bytes,
                         std::uint32_t period_bytes) {
  SHBUF_TRY(check_stream(stream));
  FrontendBufferConfig config;
  config.backend = backend_;
  config.pages = std::max<std::size_t>(1, (std::size_t{buffer_bytes} + kPageSize - 1) / kPageSize);
  config.mode = AllocMode::kFrontend;
  auto buffer = FrontendBuffer::create(*platform_.grants, config);
  if (!buffer.ok()) return buffer.error();
  Open body{rate, format, channels, buffer_bytes, buffer->directory_gref(), period_bytes};
  auto r = request(stream, Request{0, kOpOpen, body});
  Stream& s = streams_[stream];
  // Whatever the answer, the backend let go of the old buffer.
  if (s.buffer) (void)s.buffer->free();
  s.buffer.reset();
  s.buffer_bytes = 0;
  Status st = expect_ok("OPEN", r);
  if (!st.ok()) {
    (void)buffer->free();
    return st;
  }
  s.buffer = std::move(buffer).value();
  s.buffer_bytes = buffer_bytes;
  return {};
}

std::span<std::byte> SndFrontend::buffer(std::size_t stream) {
  if (stream >= streams_.size() || !streams_[stream].buffer) return {};
  return streams_[stream].buffer->memory().first(streams_[stream].buffer_bytes);
}

Status SndFrontend::write(std::size_t stream, std::uint32_t offset, std::uint32_t length) {
  return expect_ok("WRITE", request(stream, Request{0, kOpWrite, Write{offset, length}}));
}

Status SndFrontend::read(std::size_t stream, std::uint32_t offset, std::uint32_t length) {
  return expect_ok("READ", request(stream, Request{0, kOpRead, Read{offset, length}}));
}

Status SndFrontend::trigger(std::size_t stream, std::uint8_t type) {
  return expect_ok("TRIGGER", request(stream, Request{0, kOpTrigger, Trigger{type}}));
}

Status SndFrontend::close_stream(std::size_t stream) {
  SHBUF_TRY(expect_ok("CLOSE", request(stream, Request{0, kOpClose, Close{}})));
  Stream& s = streams_[stream];
  if (s.buffer) SHBUF_TRY(s.buffer->free());
  s.buffer.reset();
  s.buffer_bytes = 0;
  return {};
}

Result<std::vector<CurPosEvent>> SndFrontend::drain_events(std::size_t stream) {
  SHBUF_TRY(check_stream(stream));
  std::vector<CurPosEvent> events;
  // At most one page's worth: the backend cannot have published more.
  for (std::uint32_t n = 0; n < pv::event_ring_len(kPacketSize); ++n) {
    Packet p;
    auto got = streams_[stream].evt.next(p);
    if (!got.ok()) return got.error();
    if (!*got) break;
    auto e = decode_cur_pos_event(p);
    if (!e) return make_error(EPROTO, "an event of unknown type on stream " + std::to_string(stream));
    events.push_back(*e);
  }
  return events;
}

Result<CurPosEvent> SndFrontend::next_event(std::size_t stream) {
  SHBUF_TRY(check_stream(stream));
  const auto deadline = Clock::now() + options_.timeout;
  for (;;) {
    Packet p;
    auto got = streams_[stream].evt.next(p);
    if (!got.ok()) return got.error();
    if (*got) {
      auto e = decode_cur_pos_event(p);
      if (!e) return make_error(EPROTO, "an event of unknown type");
      return *e;
    }
    if (Clock::now() >= deadline) {
      return make_error(ETIMEDOUT, "no position event on stream " + std::to_string(stream) +
                                       " within " + std::to_string(options_.timeout.count()) +
                                       " ms");
    }
    SHBUF_TRY(wait_events(std::min(remaining_ms(deadline), 50)));
  }
}

void SndFrontend::release() {
  for (Stream& s : streams_) {
    if (s.buffer) (void)s.buffer->free();
    (void)platform_.events->unbind(s.req_port);
    (void)platform_.events->unbind(s.evt_port);
    (void)s.req_page.end();
    (void)s.evt_page.end();
  }
  streams_.clear();
}

Status SndFrontend::close() {
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

}  // namespace shbuf::snd
