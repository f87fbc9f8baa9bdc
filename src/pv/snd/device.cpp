// Request handling of one PV sound device: every field checked against the
// stream's configuration and its state before anything is mapped or copied.
#include "pv/snd/device.h"

#include <algorithm>
#include <cstring>

namespace shbuf::snd {
namespace {

std::string str(std::uint64_t v) {
  return std::to_string(v);
}

std::uint64_t div_up(std::uint64_t a, std::uint64_t b) {
  return a / b + (a % b != 0 ? 1 : 0);
}

// Frames played in `elapsed` at `rate`, without overflow for any duration a
// steady clock can hold.
std::uint64_t frames_in(Clock::duration elapsed, std::uint32_t rate) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count();
  if (ns <= 0) return 0;
  const auto n = static_cast<std::uint64_t>(ns);
  constexpr std::uint64_t kNs = 1000000000;
  return n / kNs * rate + n % kNs * rate / kNs;
}

}  // namespace

SoundDevice::SoundDevice(Provider& provider, DomId frontend, std::vector<StreamConfig> streams,
                         DeviceLimits limits, SinkFactory sinks, SourceFactory sources)
    : provider_(&provider),
      frontend_(frontend),
      configs_(std::move(streams)),
      limits_(limits),
      sinks_(std::move(sinks)),
      sources_(std::move(sources)),
      streams_(configs_.size()) {}

// Whatever the frontend left open is released with the device.
SoundDevice::~SoundDevice() {
  (void)release_all();
}

std::size_t SoundDevice::open_streams() const {
  return std::size_t(std::count_if(streams_.begin(), streams_.end(),
                                   [](const Stream& s) { return s.open; }));
}

std::size_t SoundDevice::pages_held() const {
  std::size_t n = 0;
  for (const Stream& s : streams_) n += s.buffer.pages();
  return n;
}

// Every request gets exactly one response; failures carry their reason.
Outcome SoundDevice::handle(std::size_t stream, const Packet& packet, Clock::time_point now) {
  const Request request = decode_request(packet);
  Outcome out;
  out.response.id = request.id;
  out.response.operation = request.operation;
  Status status;
  if (stream >= streams_.size()) {
    status = make_error(EINVAL, "no stream " + str(stream));
  } else if (const auto* o = std::get_if<Open>(&request.body)) {
    status = open(stream, *o);
  } else if (std::holds_alternative<Close>(request.body)) {
    status = close(stream);
  } else if (const auto* w = std::get_if<Write>(&request.body)) {
    status = write(stream, *w);
  } else if (const auto* r = std::get_if<Read>(&request.body)) {
    status = read(stream, *r);
  } else if (const auto* t = std::get_if<Trigger>(&request.body)) {
    status = trigger(stream, *t, now);
  } else if (const auto* q = std::get_if<HwParamQuery>(&request.body)) {
    auto hw = intersect(q->params, configs_[stream].params, limits_.max_buffer_bytes);
    if (hw.ok()) {
      out.response.hw = *hw;
    } else {
      status = hw.error();
    }
  } else {
    status = make_error(ENOTSUP, "operation " + op_name(request.operation) + " is not served");
  }
  if (!status.ok()) {
    out.response.status = -status.error().code;
    out.error = op_name(request.operation) + ": " + status.error().describe();
  }
  return out;
}

// Every field is checked before the directory is walked; the old buffer and
// sink of a stream opened again go first, so a failed OPEN leaves it closed.
Status SoundDevice::open(std::size_t index, const Open& r) {
  // A failure finishing the old sink concerns the old stream, not this one.
  (void)close(index);
  const StreamConfig& config = configs_[index];
  const StreamParams& p = config.params;
  if ((format_bit(r.pcm_format) & p.formats & kSupportedFormats) == 0) {
    return make_error(EINVAL, "format " + str(r.pcm_format) + " (" + format_name(r.pcm_format) +
                                  ") is not offered on this stream or not one we write");
  }
  if (std::find(p.rates.begin(), p.rates.end(), r.pcm_rate) == p.rates.end()) {
    return make_error(EINVAL, "rate " + str(r.pcm_rate) + " is not offered on this stream");
  }
  if (r.pcm_channels < p.channels_min || r.pcm_channels > p.channels_max) {
    return make_error(EINVAL, str(r.pcm_channels) + " channels are outside " +
                                  str(p.channels_min) + ".." + str(p.channels_max));
  }
  const std::uint32_t max = std::min(p.buffer_size, limits_.max_buffer_bytes);
  if (r.buffer_sz == 0) return make_error(EINVAL, "buffer_sz 0 is invalid");
  if (r.buffer_sz > max) {
    return make_error(E2BIG, "buffer_sz " + str(r.buffer_sz) + " is above the limit of " + str(max));
  }
  if (r.period_sz > r.buffer_sz) {
    return make_error(EINVAL, "period_sz " + str(r.period_sz) + " is above buffer_sz " +
                                  str(r.buffer_sz));
  }
  if (r.gref_directory == kDirListEnd) return make_error(EINVAL, "gref_directory 0 is invalid");
  const StreamFormat format{r.pcm_rate, r.pcm_format, r.pcm_channels};
  BackendBufferConfig bc;
  bc.frontend = frontend_;
  bc.directory_gref = r.gref_directory;
  bc.pages = div_up(r.buffer_sz, kPageSize);
  bc.mode = AllocMode::kFrontend;
  bc.max_pages = div_up(max, kPageSize);
  bc.access = Access::kReadWrite;
  auto buffer = BackendBuffer::attach(*provider_, bc);
  if (!buffer.ok()) return buffer.error();
  Stream s;
  if (config.capture) {
    auto source = sources_(config, format);
    if (!source.ok()) return source.error();
    s.source = std::move(source).value();
  } else {
    auto sink = sinks_(config, format);
    if (!sink.ok()) return sink.error();
    s.sink = std::move(sink).value();
  }
  s.open = true;
  s.format = format;
  s.buffer_sz = r.buffer_sz;
  s.period_sz = r.period_sz;
  s.buffer = std::move(buffer).value();
  if (r.period_sz != 0) {
    // A quarter period, in time at the stream's rate.
    const std::uint64_t frames = std::max<std::uint64_t>(1, r.period_sz / format.frame_bytes());
    const auto ns = std::chrono::nanoseconds(frames * 1000000000ull / r.pcm_rate / 4);
    s.event_interval =
        std::max<Clock::duration>(std::chrono::duration_cast<Clock::duration>(ns),
                                  kMinEventInterval);
  }
  streams_[index] = std::move(s);
  return {};
}

// The sink is finished (its file complete) before the buffer goes.
Status SoundDevice::close(std::size_t index) {
  Stream& s = streams_[index];
  Status first;
  if (s.sink) first = s.sink->close();
  Status detached = s.buffer.detach();
  if (first.ok() && !detached.ok()) first = detached;
  s = Stream{};
  return first;
}

Status SoundDevice::check_range(const Stream& s, std::uint32_t offset, std::uint32_t length,
                                const char* what) const {
  if (!s.open) return make_error(EPROTO, std::string(what) + " on a stream that is not open");
  if (std::uint64_t{offset} + length > s.buffer_sz) {
    return make_error(EINVAL, std::string(what) + " of " + str(length) + " bytes at offset " +
                                  str(offset) + " ends beyond the buffer of " + str(s.buffer_sz));
  }
  if (length % s.format.frame_bytes() != 0) {
    return make_error(EINVAL, std::string(what) + " of " + str(length) +
                                  " bytes is not whole frames of " + str(s.format.frame_bytes()));
  }
  return {};
}

// The frontend's bytes are copied out once, then handed to the sink.
Status SoundDevice::write(std::size_t index, const Write& r) {
  Stream& s = streams_[index];
  SHBUF_TRY(check_range(s, r.offset, r.length, "WRITE"));
  if (!s.sink) return make_error(EINVAL, "WRITE on a capture stream");
  if (r.length == 0) return {};
  const std::span<std::byte> mem = s.buffer.memory();
  std::vector<std::byte> copy(mem.begin() + r.offset, mem.begin() + r.offset + r.length);
  SHBUF_TRY(s.sink->write(copy));
  played_ += r.length;
  return {};
}

// The buffer is filled before the answer: Linux copies out once it comes.
Status SoundDevice::read(std::size_t index, const Read& r) {
  Stream& s = streams_[index];
  SHBUF_TRY(check_range(s, r.offset, r.length, "READ"));
  if (!s.source) return make_error(EINVAL, "READ on a playback stream");
  if (r.length == 0) return {};
  std::vector<std::byte> frames(r.length);
  SHBUF_TRY(s.source->fill(frames));
  std::memcpy(s.buffer.memory().data() + r.offset, frames.data(), frames.size());
  recorded_ += r.length;
  return {};
}

std::uint64_t SoundDevice::position(const Stream& s, Clock::time_point now) const {
  if (!s.running) return s.position_base;
  return s.position_base + frames_in(now - s.running_since, s.format.rate) * s.format.frame_bytes();
}

Status SoundDevice::trigger(std::size_t index, const Trigger& r, Clock::time_point now) {
  Stream& s = streams_[index];
  if (!s.open) return make_error(EPROTO, "TRIGGER on a stream that is not open");
  switch (r.type) {
    case kTriggerStart:
      s.position_base = 0;
      s.running = true;
      s.running_since = now;
      s.next_event = now + s.event_interval;
      return {};
    case kTriggerResume:
      if (!s.running) {
        s.running = true;
        s.running_since = now;
        s.next_event = now + s.event_interval;
      }
      return {};
    case kTriggerPause:
    case kTriggerStop:
      s.position_base = position(s, now);
      s.running = false;
      return {};
    default:
      return make_error(EINVAL, "trigger type " + str(r.type) + " is not known");
  }
}

std::vector<DueEvent> SoundDevice::due_events(Clock::time_point now) {
  std::vector<DueEvent> due;
  for (std::size_t i = 0; i < streams_.size(); ++i) {
    Stream& s = streams_[i];
    if (!s.running || s.period_sz == 0 || s.next_event > now) continue;
    due.push_back({i, position(s, now)});
    s.next_event += s.event_interval;
    // Behind by more than one interval (a busy loop): start again from now.
    if (s.next_event <= now) s.next_event = now + s.event_interval;
  }
  return due;
}

std::optional<Clock::time_point> SoundDevice::next_due() const {
  std::optional<Clock::time_point> next;
  for (const Stream& s : streams_) {
    if (!s.running || s.period_sz == 0) continue;
    if (!next || s.next_event < *next) next = s.next_event;
  }
  return next;
}

Status SoundDevice::release_all() {
  Status first;
  for (std::size_t i = 0; i < streams_.size(); ++i) {
    Status s = close(i);
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

}  // namespace shbuf::snd
