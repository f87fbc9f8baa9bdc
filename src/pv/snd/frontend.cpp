// Our sndif frontend: what snd_xen_front does, in user space.
#include "pv/snd/frontend.h"

#include <poll.h>

#include <algorithm>
#include <atomic>
#include <thread>

namespace shbuf::snd {
namespace {

using Clock = std::chrono::steady_clock;

using pv::remaining_ms;

Error refused(const std::string& what, std::int32_t status) {
  return make_error(-status > 0 ? -status : EPROTO,
                    what + " refused by the backend (status " + std::to_string(status) + ")");
}

}  // namespace

Result<std::unique_ptr<SndFrontend>> SndFrontend::connect(pv::Platform& platform,
                                                          const FrontendOptions& options) {
  std::unique_ptr<SndFrontend> fe(new SndFrontend(platform));
  fe->options_ = options;
  auto link = pv::FrontendLink::open(platform, "vsnd", options.devid, options.timeout);
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

SndFrontend::~SndFrontend() {
  if (open_) (void)close();
}

// What the toolstack wrote beyond the backend: the card.
Status SndFrontend::read_config() {
  auto streams = read_streams([this](const std::string& key) { return link_->read(key); });
  if (!streams.ok()) return streams.error();
  configs_ = std::move(streams).value();
  return {};
}

// Rings and channels first, then every key and Initialised in one
// transaction.
Status SndFrontend::publish() {
  pv::FrontendLink::Nodes nodes;
  for (std::size_t i = 0; i < configs_.size(); ++i) {
    auto ch = pv::FrontChannel::open(platform_, link_->backend(), kPacketSize);
    if (!ch.ok()) return ch.error();
    Stream s;
    static_cast<pv::FrontChannel&>(s) = std::move(ch).value();
    streams_.push_back(std::move(s));
    pv::FrontendLink::add_channel(nodes, stream_key(i, ""), streams_.back(), "ring-ref",
                                  "event-channel");
  }
  return link_->publish(nodes);
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
  return platform_.xenstore->write(pv::kNoTransaction, link_->dir() + "/" + key, value);
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
    SHBUF_TRY(link_->wait_events(std::min(remaining_ms(deadline), 50)));
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
  config.backend = link_->backend();
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
    if (!e)
      return make_error(EPROTO, "an event of unknown type on stream " + std::to_string(stream));
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
    SHBUF_TRY(link_->wait_events(std::min(remaining_ms(deadline), 50)));
  }
}

void SndFrontend::release() {
  for (Stream& s : streams_) {
    if (s.buffer) (void)s.buffer->free();
    s.release(platform_);
  }
  streams_.clear();
}

Status SndFrontend::close() {
  if (!open_) return {};
  open_ = false;
  return link_->close([this] { release(); });
}

}  // namespace shbuf::snd
