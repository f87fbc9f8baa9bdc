// displif packets: fixed offsets, little-endian, decoded field by field.
#include "pv/displ/protocol.h"

#include <cstdio>
#include <cstring>

namespace shbuf::displ {

using namespace pv::packet;

namespace {

// Scales an n-bit channel value to 8 bits, as a display would show it.
std::uint8_t scale(std::uint32_t v, unsigned bits) {
  const std::uint32_t max = (1u << bits) - 1;
  return static_cast<std::uint8_t>((v * 255 + max / 2) / max);
}

}  // namespace

// Names in log lines must say which request was refused.
std::string op_name(std::uint8_t op) {
  switch (op) {
    case kOpDbufCreate:
      return "DBUF_CREATE";
    case kOpDbufDestroy:
      return "DBUF_DESTROY";
    case kOpFbAttach:
      return "FB_ATTACH";
    case kOpFbDetach:
      return "FB_DETACH";
    case kOpSetConfig:
      return "SET_CONFIG";
    case kOpPgFlip:
      return "PG_FLIP";
    case kOpGetEdid:
      return "GET_EDID";
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
    case kOpDbufCreate:
      r.body = DbufCreate{get64(p, b),      get32(p, b + 8),  get32(p, b + 12), get32(p, b + 16),
                          get32(p, b + 20), get32(p, b + 24), get32(p, b + 28), get32(p, b + 32)};
      break;
    case kOpDbufDestroy:
      r.body = DbufDestroy{get64(p, b)};
      break;
    case kOpFbAttach:
      r.body = FbAttach{get64(p, b), get64(p, b + 8), get32(p, b + 16), get32(p, b + 20),
                        get32(p, b + 24)};
      break;
    case kOpFbDetach:
      r.body = FbDetach{get64(p, b)};
      break;
    case kOpSetConfig:
      r.body = SetConfig{get64(p, b),      get32(p, b + 8),  get32(p, b + 12),
                         get32(p, b + 16), get32(p, b + 20), get32(p, b + 24)};
      break;
    case kOpPgFlip:
      r.body = PgFlip{get64(p, b)};
      break;
    case kOpGetEdid:
      r.body = GetEdid{get32(p, b), get32(p, b + 4)};
      break;
    default:
      r.body = UnknownOp{};
      break;
  }
  return r;
}

// The inverse of decode_request, for frontends written in tests and tools.
Packet encode_request(const Request& r) {
  Packet p{};
  put16(p, kOffId, r.id);
  put8(p, kOffOperation, r.operation);
  constexpr std::size_t b = kOffBody;
  if (const auto* c = std::get_if<DbufCreate>(&r.body)) {
    put64(p, b, c->dbuf_cookie);
    put32(p, b + 8, c->width);
    put32(p, b + 12, c->height);
    put32(p, b + 16, c->bpp);
    put32(p, b + 20, c->buffer_sz);
    put32(p, b + 24, c->flags);
    put32(p, b + 28, c->gref_directory);
    put32(p, b + 32, c->data_ofs);
  } else if (const auto* d = std::get_if<DbufDestroy>(&r.body)) {
    put64(p, b, d->dbuf_cookie);
  } else if (const auto* a = std::get_if<FbAttach>(&r.body)) {
    put64(p, b, a->dbuf_cookie);
    put64(p, b + 8, a->fb_cookie);
    put32(p, b + 16, a->width);
    put32(p, b + 20, a->height);
    put32(p, b + 24, a->pixel_format);
  } else if (const auto* f = std::get_if<FbDetach>(&r.body)) {
    put64(p, b, f->fb_cookie);
  } else if (const auto* s = std::get_if<SetConfig>(&r.body)) {
    put64(p, b, s->fb_cookie);
    put32(p, b + 8, s->x);
    put32(p, b + 12, s->y);
    put32(p, b + 16, s->width);
    put32(p, b + 20, s->height);
    put32(p, b + 24, s->bpp);
  } else if (const auto* g = std::get_if<PgFlip>(&r.body)) {
    put64(p, b, g->fb_cookie);
  } else if (const auto* e = std::get_if<GetEdid>(&r.body)) {
    put32(p, b, e->buffer_sz);
    put32(p, b + 4, e->gref_directory);
  }
  return p;
}

// Zeroes the whole slot: the frontend's next request may reuse it as is.
Packet encode_response(const Response& r) {
  Packet p{};
  put16(p, kOffId, r.id);
  put8(p, kOffOperation, r.operation);
  put32(p, kOffStatus, static_cast<std::uint32_t>(r.status));
  if (r.operation == kOpGetEdid) put32(p, kOffBody, r.edid_sz);
  return p;
}

// For frontends written in tests.
Response decode_response(const Packet& p) {
  Response r;
  r.id = get16(p, kOffId);
  r.operation = get8(p, kOffOperation);
  r.status = static_cast<std::int32_t>(get32(p, kOffStatus));
  r.edid_sz = get32(p, kOffBody);
  return r;
}

// The only event the protocol defines.
Packet encode_pg_flip_event(const PgFlipEvent& e) {
  Packet p{};
  put16(p, kOffId, e.id);
  put8(p, kOffOperation, kEvtPgFlip);
  put64(p, kOffBody, e.fb_cookie);
  return p;
}

// For frontends written in tests.
std::optional<PgFlipEvent> decode_pg_flip_event(const Packet& p) {
  if (get8(p, kOffOperation) != kEvtPgFlip) return std::nullopt;
  return PgFlipEvent{get16(p, kOffId), get64(p, kOffBody)};
}

// The formats xen-drm-front advertises; anything else is refused at attach.
std::optional<PixelFormat> find_pixel_format(std::uint32_t code) {
  static constexpr PixelFormat kFormats[] = {
      {kFormatXRGB8888, 32, "XRGB8888"}, {kFormatARGB8888, 32, "ARGB8888"},
      {kFormatRGB888, 24, "RGB888"},     {kFormatRGB565, 16, "RGB565"},
      {kFormatXRGB4444, 16, "XRGB4444"}, {kFormatARGB4444, 16, "ARGB4444"},
      {kFormatXRGB1555, 16, "XRGB1555"}, {kFormatARGB1555, 16, "ARGB1555"},
  };
  for (const auto& f : kFormats) {
    if (f.fourcc == code) return f;
  }
  return std::nullopt;
}

// Alpha is dropped: a display shows the colour, and PNGs stay comparable.
void pixel_to_rgb(const PixelFormat& format, const std::byte* src, std::uint8_t rgb[3]) {
  std::uint32_t v = 0;
  const std::size_t bytes = format.bpp / 8;
  for (std::size_t i = 0; i < bytes; ++i) v |= std::to_integer<std::uint32_t>(src[i]) << (8 * i);
  switch (format.fourcc) {
    case kFormatXRGB8888:
    case kFormatARGB8888:
    case kFormatRGB888:
      rgb[0] = static_cast<std::uint8_t>(v >> 16);
      rgb[1] = static_cast<std::uint8_t>(v >> 8);
      rgb[2] = static_cast<std::uint8_t>(v);
      break;
    case kFormatRGB565:
      rgb[0] = scale(v >> 11 & 0x1f, 5);
      rgb[1] = scale(v >> 5 & 0x3f, 6);
      rgb[2] = scale(v & 0x1f, 5);
      break;
    case kFormatXRGB4444:
    case kFormatARGB4444:
      rgb[0] = scale(v >> 8 & 0xf, 4);
      rgb[1] = scale(v >> 4 & 0xf, 4);
      rgb[2] = scale(v & 0xf, 4);
      break;
    case kFormatXRGB1555:
    case kFormatARGB1555:
      rgb[0] = scale(v >> 10 & 0x1f, 5);
      rgb[1] = scale(v >> 5 & 0x1f, 5);
      rgb[2] = scale(v & 0x1f, 5);
      break;
    default:
      rgb[0] = rgb[1] = rgb[2] = 0;
      break;
  }
}

// A frontend that asks for EDID learns the connector's size from it, so the
// block must be valid: header, version 1.4, one detailed timing, a name and
// the checksum.
Result<std::array<std::uint8_t, kEdidBlockSize>> make_edid(std::uint32_t width,
                                                           std::uint32_t height) {
  if (width == 0 || height == 0 || width > 4095 || height > 4095) {
    return make_error(EINVAL, "an EDID detailed timing cannot describe " + std::to_string(width) +
                                  "x" + std::to_string(height) + " (1..4095 each)");
  }
  std::array<std::uint8_t, kEdidBlockSize> e{};
  const std::uint8_t header[8] = {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00};
  std::memcpy(e.data(), header, sizeof header);
  // Manufacturer "XEN": three 5-bit letters, 'A' = 1, big-endian.
  const std::uint16_t mfg =
      static_cast<std::uint16_t>(('X' - '@') << 10 | ('E' - '@') << 5 | ('N' - '@'));
  e[8] = static_cast<std::uint8_t>(mfg >> 8);
  e[9] = static_cast<std::uint8_t>(mfg);
  e[10] = 0x01;  // product code
  e[16] = 1;     // week
  e[17] = 34;    // 2024 - 1990
  e[18] = 1;     // EDID 1.4
  e[19] = 4;
  e[20] = 0x80;  // digital input, depth and interface undefined
  e[23] = 120;   // gamma 2.2
  e[24] = 0x06;  // RGB colour, preferred timing is native
  // sRGB chromaticity (EDID's usual encoding).
  const std::uint8_t chroma[10] = {0xee, 0x91, 0xa3, 0x54, 0x4c, 0x99, 0x26, 0x0f, 0x50, 0x54};
  std::memcpy(&e[25], chroma, sizeof chroma);
  for (std::size_t i = 38; i < 54; ++i) e[i] = 0x01;  // no standard timings

  // Detailed timing with reduced blanking; refresh lowered if the pixel
  // clock would not fit its 16-bit field of 10 kHz units.
  const std::uint32_t hblank = 160, hfront = 48, hsync = 32;
  const std::uint32_t vblank = 25, vfront = 3, vsync = 6;
  const std::uint64_t total = static_cast<std::uint64_t>(width + hblank) * (height + vblank);
  std::uint64_t refresh = 60;
  while (refresh > 1 && (total * refresh + 9999) / 10000 > 0xffff) --refresh;
  const std::uint64_t clock = (total * refresh + 9999) / 10000;
  std::uint8_t* d = &e[54];
  d[0] = static_cast<std::uint8_t>(clock);
  d[1] = static_cast<std::uint8_t>(clock >> 8);
  d[2] = static_cast<std::uint8_t>(width);
  d[3] = static_cast<std::uint8_t>(hblank);
  d[4] = static_cast<std::uint8_t>((width >> 8) << 4 | (hblank >> 8));
  d[5] = static_cast<std::uint8_t>(height);
  d[6] = static_cast<std::uint8_t>(vblank);
  d[7] = static_cast<std::uint8_t>((height >> 8) << 4 | (vblank >> 8));
  d[8] = static_cast<std::uint8_t>(hfront);
  d[9] = static_cast<std::uint8_t>(hsync);
  d[10] = static_cast<std::uint8_t>((vfront & 0xf) << 4 | (vsync & 0xf));
  d[11] = static_cast<std::uint8_t>((hfront >> 8) << 6 | (hsync >> 8) << 4 | (vfront >> 4) << 2 |
                                    (vsync >> 4));
  d[17] = 0x1a;  // digital separate sync, +hsync -vsync
  // Monitor name descriptor.
  std::uint8_t* n = &e[72];
  n[3] = 0xfc;
  const char name[13] = {'s', 'h', 'b', 'u', 'f', ' ', 'd', 'i', 's', 'p', 'l', '\n', ' '};
  std::memcpy(&n[5], name, sizeof name);
  // Two unused descriptors (dummy, type 0x10).
  e[93] = 0x10;
  e[111] = 0x10;
  std::uint8_t sum = 0;
  for (std::size_t i = 0; i < kEdidBlockSize - 1; ++i) sum = static_cast<std::uint8_t>(sum + e[i]);
  e[127] = static_cast<std::uint8_t>(0x100 - sum);
  return e;
}

}  // namespace shbuf::displ
