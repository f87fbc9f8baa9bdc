// The wire format of Xen's PV display protocol (displif, xen/io/displif.h),
// version 2: 64-byte request, response and event packets, the pixel formats
// Linux's xen-drm-front offers, and an EDID block for a connector.
//
// Pure: no I/O, no grants. Packets arrive from a peer that may be hostile, so
// decoding never fails and never trusts a length: it yields every field as
// sent, and validation is the caller's (see DisplayDevice). Reserved fields
// are not checked: Linux's frontend reuses ring slots without clearing them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>

#include "pv/packet.h"
#include "shbuf/core/provider.h"
#include "shbuf/core/result.h"

namespace shbuf::displ {

using pv::kPacketSize;
using pv::Packet;

// Operation codes (XENDISPL_OP_*) and the one event type.
inline constexpr std::uint8_t kOpDbufCreate = 0x10;
inline constexpr std::uint8_t kOpDbufDestroy = 0x11;
inline constexpr std::uint8_t kOpFbAttach = 0x12;
inline constexpr std::uint8_t kOpFbDetach = 0x13;
inline constexpr std::uint8_t kOpSetConfig = 0x14;
inline constexpr std::uint8_t kOpPgFlip = 0x15;
inline constexpr std::uint8_t kOpGetEdid = 0x16;
inline constexpr std::uint8_t kEvtPgFlip = 0x00;

// XENDISPL_DBUF_FLG_REQ_ALLOC: the backend allocates the buffer.
inline constexpr std::uint32_t kDbufFlagReqAlloc = 1u << 0;
// XENDISPL_EDID_MAX_SIZE: the least an EDID buffer may hold.
inline constexpr std::uint32_t kEdidMaxSize = 128 * 256;
inline constexpr std::size_t kEdidBlockSize = 128;

// "name" of an operation code, or "op 0x.." when unknown.
std::string op_name(std::uint8_t op);

struct DbufCreate {
  std::uint64_t dbuf_cookie = 0;
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  std::uint32_t bpp = 0;
  std::uint32_t buffer_sz = 0;
  std::uint32_t flags = 0;
  Gref gref_directory = 0;
  std::uint32_t data_ofs = 0;
};
struct DbufDestroy {
  std::uint64_t dbuf_cookie = 0;
};
struct FbAttach {
  std::uint64_t dbuf_cookie = 0;
  std::uint64_t fb_cookie = 0;
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  std::uint32_t pixel_format = 0;
};
struct FbDetach {
  std::uint64_t fb_cookie = 0;
};
struct SetConfig {
  std::uint64_t fb_cookie = 0;
  std::uint32_t x = 0;
  std::uint32_t y = 0;
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  std::uint32_t bpp = 0;
};
struct PgFlip {
  std::uint64_t fb_cookie = 0;
};
struct GetEdid {
  std::uint32_t buffer_sz = 0;
  Gref gref_directory = 0;
};
// An operation code this backend does not know.
struct UnknownOp {};

struct Request {
  std::uint16_t id = 0;
  std::uint8_t operation = 0;
  std::variant<UnknownOp, DbufCreate, DbufDestroy, FbAttach, FbDetach, SetConfig, PgFlip, GetEdid>
      body;
};

// Decodes a packet copied out of the ring; every byte pattern is a Request.
Request decode_request(const Packet& packet);
// Encodes a request as a frontend would (tests, tools).
Packet encode_request(const Request& request);

struct Response {
  std::uint16_t id = 0;
  std::uint8_t operation = 0;
  // 0 or a negative errno (Xen's values equal Linux's for every one used).
  std::int32_t status = 0;
  std::uint32_t edid_sz = 0;  // GET_EDID only
};
// Every byte not part of a field is zero, so a frontend that reuses the slot
// for its next request without clearing it sees zeros there.
Packet encode_response(const Response& response);
Response decode_response(const Packet& packet);

struct PgFlipEvent {
  std::uint16_t id = 0;
  std::uint64_t fb_cookie = 0;
};
Packet encode_pg_flip_event(const PgFlipEvent& event);
// nullopt when the packet is not a page-flip event.
std::optional<PgFlipEvent> decode_pg_flip_event(const Packet& packet);

// A DRM fourcc the frontend may attach, with its bits per pixel.
struct PixelFormat {
  std::uint32_t fourcc = 0;
  std::uint32_t bpp = 0;
  const char* name = "";
};
// The formats Linux's xen-drm-front offers; nullopt for any other fourcc.
std::optional<PixelFormat> find_pixel_format(std::uint32_t fourcc);
// DRM's fourcc_code().
constexpr std::uint32_t fourcc(char a, char b, char c, char d) {
  return static_cast<std::uint32_t>(static_cast<unsigned char>(a)) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b)) << 8 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(c)) << 16 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(d)) << 24;
}
inline constexpr std::uint32_t kFormatXRGB8888 = fourcc('X', 'R', '2', '4');
inline constexpr std::uint32_t kFormatARGB8888 = fourcc('A', 'R', '2', '4');
inline constexpr std::uint32_t kFormatRGB888 = fourcc('R', 'G', '2', '4');
inline constexpr std::uint32_t kFormatRGB565 = fourcc('R', 'G', '1', '6');
inline constexpr std::uint32_t kFormatXRGB4444 = fourcc('X', 'R', '1', '2');
inline constexpr std::uint32_t kFormatARGB4444 = fourcc('A', 'R', '1', '2');
inline constexpr std::uint32_t kFormatXRGB1555 = fourcc('X', 'R', '1', '5');
inline constexpr std::uint32_t kFormatARGB1555 = fourcc('A', 'R', '1', '5');

// Converts one pixel stored in `format` (little-endian, as DRM lays it out)
// to 8-bit R, G, B. `src` holds format.bpp / 8 bytes.
void pixel_to_rgb(const PixelFormat& format, const std::byte* src, std::uint8_t rgb[3]);

// An EDID 1.4 base block announcing one preferred detailed timing of
// width x height at 60 Hz. EINVAL for a size no detailed timing can carry
// (0, or above 4095 in either direction).
Result<std::array<std::uint8_t, kEdidBlockSize>> make_edid(std::uint32_t width,
                                                           std::uint32_t height);

}  // namespace shbuf::displ
