// sndif packets: fixed offsets, little-endian, decoded field by field; and a
// card's configuration parsed from xenstore text with bounds.
#include "pv/snd/protocol.h"

#include <algorithm>
#include <cstdio>

#include "pv/xenstore.h"

namespace shbuf::snd {

using namespace pv::packet;

namespace {

// xensnd_query_hw_param at the body's offset, in requests and responses.
HwParams get_hw(const Packet& p) {
  constexpr std::size_t b = kOffBody;
  HwParams h;
  h.formats = get64(p, b);
  h.rates = {get32(p, b + 8), get32(p, b + 12)};
  h.channels = {get32(p, b + 16), get32(p, b + 20)};
  h.buffer = {get32(p, b + 24), get32(p, b + 28)};
  h.period = {get32(p, b + 32), get32(p, b + 36)};
  return h;
}
void put_hw(Packet& p, const HwParams& h) {
  constexpr std::size_t b = kOffBody;
  put64(p, b, h.formats);
  put32(p, b + 8, h.rates.min);
  put32(p, b + 12, h.rates.max);
  put32(p, b + 16, h.channels.min);
  put32(p, b + 20, h.channels.max);
  put32(p, b + 24, h.buffer.min);
  put32(p, b + 28, h.buffer.max);
  put32(p, b + 32, h.period.min);
  put32(p, b + 36, h.period.max);
}

// XENSND_PCM_FORMAT_*_STR, indexed by code.
// clang-format off
constexpr std::array<const char*, kFormatCount> kFormatNames = {
    "s8",       "u8",         "s16_le",     "s16_be",
    "u16_le",   "u16_be",     "s24_le",     "s24_be",
    "u24_le",   "u24_be",     "s32_le",     "s32_be",
    "u32_le",   "u32_be",     "float_le",   "float_be",
    "float64_le", "float64_be", "iec958_subframe_le", "iec958_subframe_be",
    "mu_law",   "a_law",      "ima_adpcm",  "mpeg",
    "gsm"};
// clang-format on

std::string str(std::uint64_t v) {
  return std::to_string(v);
}

// Splits a comma list; empty items are refused by the callers' parsers.
std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = text.find(',', start);
    out.push_back(
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

Result<std::uint32_t> parse_bounded(const std::string& key, const std::string& text,
                                    std::uint32_t min, std::uint32_t max) {
  const auto v = pv::parse_xenstore_u32(text);
  if (!v || *v < min || *v > max) {
    return make_error(EINVAL, key + " '" + text.substr(0, 32) + "' is not a number in " + str(min) +
                                  ".." + str(max));
  }
  return *v;
}

// Overrides `params` with whatever the directory level `prefix` says.
Status read_level(const ConfigReader& read, const std::string& prefix, StreamParams& params) {
  auto value = [&](const char* key) -> Result<std::optional<std::string>> {
    auto v = read(prefix + key);
    if (v.ok()) return std::optional<std::string>(*v);
    if (v.error().code == ENOENT) return std::optional<std::string>();
    return v.error();
  };
  auto with_key = [&](const char* key, const Error& e) {
    return make_error(e.code, prefix + key + ": " + e.message);
  };
  auto rates = value("sample-rates");
  if (!rates.ok()) return rates.error();
  if (*rates) {
    auto r = parse_rates(**rates);
    if (!r.ok()) return with_key("sample-rates", r.error());
    params.rates = *r;
  }
  auto formats = value("sample-formats");
  if (!formats.ok()) return formats.error();
  if (*formats) {
    auto f = parse_formats(**formats);
    if (!f.ok()) return with_key("sample-formats", f.error());
    params.formats = *f;
  }
  auto cmin = value("channels-min");
  if (!cmin.ok()) return cmin.error();
  if (*cmin) {
    auto c = parse_bounded(prefix + "channels-min", **cmin, 1, kMaxChannels);
    if (!c.ok()) return c.error();
    params.channels_min = *c;
  }
  auto cmax = value("channels-max");
  if (!cmax.ok()) return cmax.error();
  if (*cmax) {
    auto c = parse_bounded(prefix + "channels-max", **cmax, 1, kMaxChannels);
    if (!c.ok()) return c.error();
    params.channels_max = *c;
  }
  auto buffer = value("buffer-size");
  if (!buffer.ok()) return buffer.error();
  if (*buffer) {
    auto b = parse_bounded(prefix + "buffer-size", **buffer, 1, UINT32_MAX);
    if (!b.ok()) return b.error();
    params.buffer_size = *b;
  }
  if (params.channels_min > params.channels_max) {
    return make_error(EINVAL, prefix + "channels-min " + str(params.channels_min) +
                                  " is above channels-max " + str(params.channels_max));
  }
  return {};
}

// The narrower of two intervals; nullopt when they do not meet.
std::optional<Interval> meet(Interval a, Interval b) {
  Interval r{std::max(a.min, b.min), std::min(a.max, b.max)};
  if (r.min > r.max) return std::nullopt;
  return r;
}

}  // namespace

std::uint32_t sample_bytes(std::uint8_t format) {
  switch (format) {
    case kFormatU8:
      return 1;
    case kFormatS16LE:
      return 2;
    case kFormatS32LE:
    case kFormatF32LE:
      return 4;
    default:
      return 0;
  }
}

std::string format_name(std::uint8_t format) {
  return format < kFormatNames.size() ? kFormatNames[format] : "";
}

std::optional<std::uint8_t> parse_format_name(std::string_view name) {
  for (std::size_t i = 0; i < kFormatNames.size(); ++i) {
    if (name == kFormatNames[i]) return std::uint8_t(i);
  }
  return std::nullopt;
}

// Names in log lines must say which request was refused.
std::string op_name(std::uint8_t op) {
  switch (op) {
    case kOpOpen:
      return "OPEN";
    case kOpClose:
      return "CLOSE";
    case kOpRead:
      return "READ";
    case kOpWrite:
      return "WRITE";
    case kOpSetVolume:
      return "SET_VOLUME";
    case kOpGetVolume:
      return "GET_VOLUME";
    case kOpMute:
      return "MUTE";
    case kOpUnmute:
      return "UNMUTE";
    case kOpTrigger:
      return "TRIGGER";
    case kOpHwParamQuery:
      return "HW_PARAM_QUERY";
    default: {
      char buf[16];
      std::snprintf(buf, sizeof buf, "op 0x%02x", op);
      return buf;
    }
  }
}

// Reads each field from its fixed offset; unknown operations keep no body.
Request decode_request(const Packet& p) {
  Request r;
  r.id = get16(p, kOffId);
  r.operation = get8(p, kOffOperation);
  constexpr std::size_t b = kOffBody;
  switch (r.operation) {
    case kOpOpen:
      r.body = Open{get32(p, b),     get8(p, b + 4),   get8(p, b + 5),
                    get32(p, b + 8), get32(p, b + 12), get32(p, b + 16)};
      break;
    case kOpClose:
      r.body = Close{};
      break;
    case kOpRead:
      r.body = Read{get32(p, b), get32(p, b + 4)};
      break;
    case kOpWrite:
      r.body = Write{get32(p, b), get32(p, b + 4)};
      break;
    case kOpTrigger:
      r.body = Trigger{get8(p, b)};
      break;
    case kOpHwParamQuery:
      r.body = HwParamQuery{get_hw(p)};
      break;
    default:
      r.body = UnknownOp{};
      break;
  }
  return r;
}

Packet encode_request(const Request& r) {
  Packet p{};
  put16(p, kOffId, r.id);
  put8(p, kOffOperation, r.operation);
  constexpr std::size_t b = kOffBody;
  if (const auto* o = std::get_if<Open>(&r.body)) {
    put32(p, b, o->pcm_rate);
    put8(p, b + 4, o->pcm_format);
    put8(p, b + 5, o->pcm_channels);
    put32(p, b + 8, o->buffer_sz);
    put32(p, b + 12, o->gref_directory);
    put32(p, b + 16, o->period_sz);
  } else if (const auto* rd = std::get_if<Read>(&r.body)) {
    put32(p, b, rd->offset);
    put32(p, b + 4, rd->length);
  } else if (const auto* w = std::get_if<Write>(&r.body)) {
    put32(p, b, w->offset);
    put32(p, b + 4, w->length);
  } else if (const auto* t = std::get_if<Trigger>(&r.body)) {
    put8(p, b, t->type);
  } else if (const auto* q = std::get_if<HwParamQuery>(&r.body)) {
    put_hw(p, q->params);
  }
  return p;
}

Packet encode_response(const Response& r) {
  Packet p{};
  put16(p, kOffId, r.id);
  put8(p, kOffOperation, r.operation);
  put32(p, kOffStatus, static_cast<std::uint32_t>(r.status));
  if (r.operation == kOpHwParamQuery) put_hw(p, r.hw);
  return p;
}

Response decode_response(const Packet& p) {
  Response r;
  r.id = get16(p, kOffId);
  r.operation = get8(p, kOffOperation);
  r.status = static_cast<std::int32_t>(get32(p, kOffStatus));
  if (r.operation == kOpHwParamQuery) r.hw = get_hw(p);
  return r;
}

Packet encode_cur_pos_event(const CurPosEvent& e) {
  Packet p{};
  put16(p, kOffId, e.id);
  put8(p, kOffOperation, kEvtCurPos);
  put64(p, kOffBody, e.position);
  return p;
}

std::optional<CurPosEvent> decode_cur_pos_event(const Packet& p) {
  if (get8(p, kOffOperation) != kEvtCurPos) return std::nullopt;
  return CurPosEvent{get16(p, kOffId), get64(p, kOffBody)};
}

Result<std::vector<std::uint32_t>> parse_rates(const std::string& text) {
  std::vector<std::uint32_t> rates;
  for (const std::string& item : split(text)) {
    if (rates.size() == kMaxRates) {
      return make_error(E2BIG, "more than " + str(kMaxRates) + " sample rates");
    }
    auto r = parse_bounded("sample rate", item, kMinRate, kMaxRate);
    if (!r.ok()) return r.error();
    rates.push_back(*r);
  }
  std::sort(rates.begin(), rates.end());
  rates.erase(std::unique(rates.begin(), rates.end()), rates.end());
  return rates;
}

Result<std::uint64_t> parse_formats(const std::string& text) {
  std::uint64_t mask = 0;
  std::size_t n = 0;
  for (const std::string& item : split(text)) {
    if (++n > kFormatCount) return make_error(E2BIG, "more than " + str(kFormatCount) + " formats");
    auto f = parse_format_name(item);
    if (!f) return make_error(EINVAL, "'" + item.substr(0, 32) + "' is not a sample format");
    mask |= format_bit(*f);
  }
  return mask;
}

// Linux's defaults, then the card's, the PCM device's and the stream's own
// values, each overriding the one before.
Result<std::vector<StreamConfig>> read_streams(const ConfigReader& read) {
  StreamParams card;
  card.rates = {5512, 8000, 11025, 16000, 22050, 32000, 44100, 48000};
  card.formats = format_bit(kFormatU8) | format_bit(kFormatS16LE);
  SHBUF_TRY(read_level(read, "", card));
  std::vector<StreamConfig> streams;
  for (std::uint32_t pcm = 0;; ++pcm) {
    const std::string pcm_dir = str(pcm) + "/";
    auto first = read(pcm_dir + "0/type");
    if (!first.ok()) {
      if (first.error().code != ENOENT) return first.error();
      break;
    }
    if (pcm == kMaxPcmDevices) {
      return make_error(E2BIG, "more than " + str(kMaxPcmDevices) + " PCM devices");
    }
    StreamParams device = card;
    SHBUF_TRY(read_level(read, pcm_dir, device));
    for (std::uint32_t index = 0;; ++index) {
      const std::string dir = pcm_dir + str(index) + "/";
      auto type = read(dir + "type");
      if (!type.ok()) {
        if (type.error().code != ENOENT) return type.error();
        break;
      }
      if (index == kMaxStreamsPerPcm) {
        return make_error(E2BIG, "PCM device " + str(pcm) + " has more than " +
                                     str(kMaxStreamsPerPcm) + " streams");
      }
      if (streams.size() == kMaxStreams) {
        return make_error(E2BIG, "more than " + str(kMaxStreams) + " streams");
      }
      if (*type != "p" && *type != "c") {
        return make_error(EINVAL, dir + "type '" + type->substr(0, 32) + "' is not p or c");
      }
      StreamConfig s;
      s.pcm = pcm;
      s.index = index;
      s.capture = *type == "c";
      auto id = read(dir + "unique-id");
      if (id.ok()) s.unique_id = id->substr(0, 64);
      s.params = device;
      SHBUF_TRY(read_level(read, dir, s.params));
      streams.push_back(std::move(s));
    }
  }
  if (streams.empty()) return make_error(EINVAL, "the card has no stream (0/0/type)");
  return streams;
}

// Rates are a list: the answer spans the listed rates within the request.
// Frames are counted with the smallest frame the formats and channels left
// allow, so that every frame size can use the whole buffer it fits.
Result<HwParams> intersect(const HwParams& q, const StreamParams& offer, std::uint32_t max_buffer) {
  HwParams r;
  r.formats = q.formats & offer.formats & kSupportedFormats;
  if (r.formats == 0) return make_error(EINVAL, "no sample format offered is in the query's mask");
  std::optional<std::uint32_t> lo, hi;
  for (std::uint32_t rate : offer.rates) {
    if (rate < q.rates.min || rate > q.rates.max) continue;
    if (!lo) lo = rate;
    hi = rate;
  }
  if (!lo) {
    return make_error(EINVAL,
                      "no rate offered is in " + str(q.rates.min) + ".." + str(q.rates.max));
  }
  r.rates = {*lo, *hi};
  auto channels = meet(q.channels, {offer.channels_min, offer.channels_max});
  if (!channels) {
    return make_error(EINVAL, "channels " + str(q.channels.min) + ".." + str(q.channels.max) +
                                  " are outside " + str(offer.channels_min) + ".." +
                                  str(offer.channels_max));
  }
  r.channels = *channels;
  std::uint32_t smallest_sample = 4;
  for (std::uint8_t f = 0; f < kFormatCount; ++f) {
    if ((r.formats & format_bit(f)) != 0)
      smallest_sample = std::min(smallest_sample, sample_bytes(f));
  }
  const std::uint64_t bytes = std::min(offer.buffer_size, max_buffer);
  const std::uint64_t frame = std::uint64_t{smallest_sample} * r.channels.min;
  const auto max_frames = static_cast<std::uint32_t>(bytes / frame);
  auto buffer = meet(q.buffer, {1, max_frames});
  if (max_frames == 0 || !buffer) {
    return make_error(EINVAL, "buffer frames " + str(q.buffer.min) + ".." + str(q.buffer.max) +
                                  " are outside 1.." + str(max_frames));
  }
  r.buffer = *buffer;
  auto period = meet(q.period, {1, r.buffer.max});
  if (!period) {
    return make_error(EINVAL, "period frames " + str(q.period.min) + ".." + str(q.period.max) +
                                  " are outside 1.." + str(r.buffer.max));
  }
  r.period = *period;
  return r;
}

}  // namespace shbuf::snd
