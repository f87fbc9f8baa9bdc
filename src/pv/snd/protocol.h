// The wire format of Xen's PV sound protocol (sndif, xen/io/sndif.h),
// version 2: 64-byte request, response and event packets, the PCM formats,
// and a card's configuration as the toolstack writes it in the frontend's
// xenstore directory.
//
// Pure: no I/O, no grants. Packets arrive from a peer that may be hostile:
// decoding never fails and yields every field as sent (validation is the
// caller's, see SoundDevice); a configuration read from xenstore is parsed
// with bounds and refused, with the offending key, when out of them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "pv/packet.h"
#include "shbuf/core/provider.h"
#include "shbuf/core/result.h"

namespace shbuf::snd {

using pv::kPacketSize;
using pv::Packet;

// XENSND_PROTOCOL_VERSION: what the backend writes to `versions`.
inline constexpr const char* kProtocolVersion = "2";

// Operation codes (XENSND_OP_*).
inline constexpr std::uint8_t kOpOpen = 0;
inline constexpr std::uint8_t kOpClose = 1;
inline constexpr std::uint8_t kOpRead = 2;
inline constexpr std::uint8_t kOpWrite = 3;
inline constexpr std::uint8_t kOpSetVolume = 4;
inline constexpr std::uint8_t kOpGetVolume = 5;
inline constexpr std::uint8_t kOpMute = 6;
inline constexpr std::uint8_t kOpUnmute = 7;
inline constexpr std::uint8_t kOpTrigger = 8;
inline constexpr std::uint8_t kOpHwParamQuery = 9;

// XENSND_OP_TRIGGER_* types.
inline constexpr std::uint8_t kTriggerStart = 0;
inline constexpr std::uint8_t kTriggerPause = 1;
inline constexpr std::uint8_t kTriggerStop = 2;
inline constexpr std::uint8_t kTriggerResume = 3;

// XENSND_EVT_CUR_POS, the one event type.
inline constexpr std::uint8_t kEvtCurPos = 0;

// XENSND_PCM_FORMAT_* codes this backend plays and records (every one a WAV
// file can hold sample for sample); the others are known by name only.
inline constexpr std::uint8_t kFormatS8 = 0;
inline constexpr std::uint8_t kFormatU8 = 1;
inline constexpr std::uint8_t kFormatS16LE = 2;
inline constexpr std::uint8_t kFormatS32LE = 10;
inline constexpr std::uint8_t kFormatF32LE = 14;
// Formats are bits 0..63 of a mask (the query's `formats`).
inline constexpr std::uint8_t kFormatCount = 25;  // S8 .. GSM

constexpr std::uint64_t format_bit(std::uint8_t format) {
  return format < 64 ? std::uint64_t{1} << format : 0;
}
// The formats our sinks and sources handle: U8, S16_LE, S32_LE, F32_LE.
inline constexpr std::uint64_t kSupportedFormats =
    format_bit(kFormatU8) | format_bit(kFormatS16LE) | format_bit(kFormatS32LE) |
    format_bit(kFormatF32LE);

// Bytes per sample of a supported format; 0 for any other.
std::uint32_t sample_bytes(std::uint8_t format);
// xenstore's name of a format code ("s16_le"), or "" when unknown.
std::string format_name(std::uint8_t format);
// The format code of a xenstore name; nullopt when unknown.
std::optional<std::uint8_t> parse_format_name(std::string_view name);

// "OPEN", ..., or "op 0x.." when unknown.
std::string op_name(std::uint8_t op);

struct Open {
  std::uint32_t pcm_rate = 0;
  std::uint8_t pcm_format = 0;
  std::uint8_t pcm_channels = 0;
  std::uint32_t buffer_sz = 0;
  Gref gref_directory = 0;
  std::uint32_t period_sz = 0;  // bytes between position events; 0: none
};
struct Close {};
struct Read {
  std::uint32_t offset = 0;
  std::uint32_t length = 0;
};
struct Write {
  std::uint32_t offset = 0;
  std::uint32_t length = 0;
};
struct Trigger {
  std::uint8_t type = 0;
};

struct Interval {
  std::uint32_t min = 0;
  std::uint32_t max = 0;
  bool operator==(const Interval&) const = default;
};
// xensnd_query_hw_param: buffer and period in frames.
struct HwParams {
  std::uint64_t formats = 0;
  Interval rates;
  Interval channels;
  Interval buffer;
  Interval period;
  bool operator==(const HwParams&) const = default;
};
struct HwParamQuery {
  HwParams params;
};
// An operation this backend does not serve (volume, mute, unknown codes).
struct UnknownOp {};

struct Request {
  std::uint16_t id = 0;
  std::uint8_t operation = 0;
  std::variant<UnknownOp, Open, Close, Read, Write, Trigger, HwParamQuery> body;
};

// Decodes a packet copied out of the ring; every byte pattern is a Request.
Request decode_request(const Packet& packet);
// Encodes a request as a frontend would (tests, our frontend).
Packet encode_request(const Request& request);

struct Response {
  std::uint16_t id = 0;
  std::uint8_t operation = 0;
  // 0 or a negative errno (Xen's values equal Linux's for every one used).
  std::int32_t status = 0;
  HwParams hw;  // HW_PARAM_QUERY only
};
// Every byte not part of a field is zero.
Packet encode_response(const Response& response);
Response decode_response(const Packet& packet);

struct CurPosEvent {
  std::uint16_t id = 0;
  std::uint64_t position = 0;  // bytes
};
Packet encode_cur_pos_event(const CurPosEvent& event);
// nullopt when the packet is not a position event.
std::optional<CurPosEvent> decode_cur_pos_event(const Packet& packet);

// ---- The configuration in the frontend's directory ----

// Bounds on what a frontend's directory may describe.
inline constexpr std::size_t kMaxPcmDevices = 8;
inline constexpr std::size_t kMaxStreamsPerPcm = 8;  // Linux's limit
inline constexpr std::size_t kMaxStreams = 16;       // over all PCM devices
inline constexpr std::size_t kMaxRates = 32;
inline constexpr std::uint32_t kMinRate = 1;
inline constexpr std::uint32_t kMaxRate = 768000;
inline constexpr std::uint32_t kMaxChannels = 128;
// What a level of the directory leaves unsaid (Linux's defaults).
inline constexpr std::uint32_t kDefaultBufferSize = 65536;

// The hardware a stream offers: the card's values, overridden by its PCM
// device's, overridden by its own.
struct StreamParams {
  std::vector<std::uint32_t> rates;  // ascending, distinct
  std::uint64_t formats = 0;
  std::uint32_t channels_min = 1;
  std::uint32_t channels_max = 2;
  std::uint32_t buffer_size = kDefaultBufferSize;  // bytes
};

struct StreamConfig {
  std::uint32_t pcm = 0;  // <pcm>/<index> in the directory
  std::uint32_t index = 0;
  bool capture = false;   // type "c"; "p" plays
  std::string unique_id;  // "" when absent
  StreamParams params;
};

// Reads a key relative to the frontend's directory: ENOENT when missing.
using ConfigReader = std::function<Result<std::string>(const std::string& key)>;

// Reads the card: PCM devices <n> while <n>/0/type exists, streams <n>/<m>
// while <n>/<m>/type exists. EINVAL (naming the key) for a value out of its
// bounds or a type other than p/c; E2BIG beyond kMaxPcmDevices,
// kMaxStreamsPerPcm or kMaxStreams; EINVAL for a card with no stream.
Result<std::vector<StreamConfig>> read_streams(const ConfigReader& read);

// One level's values, parsed strictly: a comma list of rates in
// kMinRate..kMaxRate (at most kMaxRates), of known format names, and
// numbers. Exposed for tests and the fuzzer.
Result<std::vector<std::uint32_t>> parse_rates(const std::string& text);
Result<std::uint64_t> parse_formats(const std::string& text);

// HW_PARAM_QUERY: the request intersected with what the stream offers and
// our sinks handle (kSupportedFormats), with buffers at most `max_buffer`
// bytes. EINVAL when some parameter has nothing left.
Result<HwParams> intersect(const HwParams& query, const StreamParams& offer,
                           std::uint32_t max_buffer);

}  // namespace shbuf::snd
