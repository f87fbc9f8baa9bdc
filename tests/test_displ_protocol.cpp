// displif packets: offsets agree with Xen's own header, every byte pattern
// decodes, responses leave nothing behind in the slot, pixel formats convert
// exactly, and the EDID block is valid.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>

#include "pv/displ/device.h"
#include "pv/displ/protocol.h"
#include "pv/xenstore.h"

#if __has_include(<xen/io/displif.h>)
#include <xen/io/displif.h>
#define SHBUF_HAVE_DISPLIF_H 1
#endif

namespace shbuf::displ {
namespace {

#ifdef SHBUF_HAVE_DISPLIF_H
template <typename T>
Packet as_packet(const T& t) {
  static_assert(sizeof(T) == kPacketSize);
  Packet p;
  std::memcpy(p.data(), &t, sizeof t);
  return p;
}

TEST(DisplProtocol, DecodesWhatXensStructsEncode) {
  xendispl_req r{};
  r.id = 0x1234;
  r.operation = XENDISPL_OP_DBUF_CREATE;
  r.op.dbuf_create.dbuf_cookie = 0x1122334455667788ULL;
  r.op.dbuf_create.width = 640;
  r.op.dbuf_create.height = 480;
  r.op.dbuf_create.bpp = 32;
  r.op.dbuf_create.buffer_sz = 1228800;
  r.op.dbuf_create.flags = XENDISPL_DBUF_FLG_REQ_ALLOC;
  r.op.dbuf_create.gref_directory = 16;
  r.op.dbuf_create.data_ofs = 8;
  Request d = decode_request(as_packet(r));
  EXPECT_EQ(d.id, 0x1234);
  ASSERT_TRUE(std::holds_alternative<DbufCreate>(d.body));
  const auto& c = std::get<DbufCreate>(d.body);
  EXPECT_EQ(c.dbuf_cookie, 0x1122334455667788ULL);
  EXPECT_EQ(c.width, 640u);
  EXPECT_EQ(c.height, 480u);
  EXPECT_EQ(c.bpp, 32u);
  EXPECT_EQ(c.buffer_sz, 1228800u);
  EXPECT_EQ(c.flags, kDbufFlagReqAlloc);
  EXPECT_EQ(c.gref_directory, 16u);
  EXPECT_EQ(c.data_ofs, 8u);
  EXPECT_EQ(encode_request(d), as_packet(r));

  xendispl_req s{};
  s.id = 7;
  s.operation = XENDISPL_OP_SET_CONFIG;
  s.op.set_config.fb_cookie = 99;
  s.op.set_config.x = 1;
  s.op.set_config.y = 2;
  s.op.set_config.width = 3;
  s.op.set_config.height = 4;
  s.op.set_config.bpp = 32;
  Request ds = decode_request(as_packet(s));
  const auto& sc = std::get<SetConfig>(ds.body);
  EXPECT_EQ(sc.fb_cookie, 99u);
  EXPECT_EQ(sc.x, 1u);
  EXPECT_EQ(sc.y, 2u);
  EXPECT_EQ(sc.width, 3u);
  EXPECT_EQ(sc.height, 4u);
  EXPECT_EQ(sc.bpp, 32u);

  xendispl_req a{};
  a.operation = XENDISPL_OP_FB_ATTACH;
  a.op.fb_attach.dbuf_cookie = 5;
  a.op.fb_attach.fb_cookie = 6;
  a.op.fb_attach.width = 7;
  a.op.fb_attach.height = 8;
  a.op.fb_attach.pixel_format = kFormatXRGB8888;
  const auto fa = std::get<FbAttach>(decode_request(as_packet(a)).body);
  EXPECT_EQ(fa.dbuf_cookie, 5u);
  EXPECT_EQ(fa.fb_cookie, 6u);
  EXPECT_EQ(fa.width, 7u);
  EXPECT_EQ(fa.height, 8u);
  EXPECT_EQ(fa.pixel_format, kFormatXRGB8888);

  xendispl_req e{};
  e.operation = XENDISPL_OP_GET_EDID;
  e.op.get_edid.buffer_sz = 32768;
  e.op.get_edid.gref_directory = 77;
  const auto ge = std::get<GetEdid>(decode_request(as_packet(e)).body);
  EXPECT_EQ(ge.buffer_sz, 32768u);
  EXPECT_EQ(ge.gref_directory, 77u);
}

TEST(DisplProtocol, EncodesWhatXensStructsRead) {
  Packet p = encode_response({0xbeef, kOpGetEdid, -22, 128});
  xendispl_resp r;
  std::memcpy(&r, p.data(), sizeof r);
  EXPECT_EQ(r.id, 0xbeef);
  EXPECT_EQ(r.operation, XENDISPL_OP_GET_EDID);
  EXPECT_EQ(r.status, -22);
  EXPECT_EQ(r.op.get_edid.edid_sz, 128u);

  Packet ev = encode_pg_flip_event({3, 0xabcdef0123ULL});
  xendispl_evt e;
  std::memcpy(&e, ev.data(), sizeof e);
  EXPECT_EQ(e.id, 3);
  EXPECT_EQ(e.type, XENDISPL_EVT_PG_FLIP);
  EXPECT_EQ(e.op.pg_flip.fb_cookie, 0xabcdef0123ULL);
  EXPECT_EQ(XENDISPL_IN_RING_LEN, 63u);
}
#endif

TEST(DisplProtocol, ResponsesZeroEverythingButTheirFields) {
  // Linux's frontend ORs flags into a reused slot: nothing may survive there.
  Packet p = encode_response({1, kOpPgFlip, 0, 0});
  for (std::size_t i = 8; i < kPacketSize; ++i) EXPECT_EQ(p[i], std::byte{0}) << i;
  Response r = decode_response(p);
  EXPECT_EQ(r.id, 1);
  EXPECT_EQ(r.operation, kOpPgFlip);
  EXPECT_EQ(r.status, 0);
}

TEST(DisplProtocol, EveryBytePatternDecodes) {
  std::mt19937 rng(42);
  for (int i = 0; i < 20000; ++i) {
    Packet p;
    for (auto& b : p) b = static_cast<std::byte>(rng());
    if (i % 4 == 0) p[2] = static_cast<std::byte>(0x10 + i % 8);
    Request r = decode_request(p);
    EXPECT_EQ(r.operation, std::to_integer<std::uint8_t>(p[2]));
    const bool known = r.operation >= kOpDbufCreate && r.operation <= kOpGetEdid;
    EXPECT_EQ(std::holds_alternative<UnknownOp>(r.body), !known);
  }
  EXPECT_EQ(op_name(0x10), "DBUF_CREATE");
  EXPECT_EQ(op_name(0x99), "op 0x99");
}

TEST(DisplProtocol, PixelFormatsConvertExactly) {
  auto xrgb = find_pixel_format(kFormatXRGB8888);
  ASSERT_TRUE(xrgb);
  EXPECT_EQ(xrgb->bpp, 32u);
  const std::byte px[4] = {std::byte{0x30}, std::byte{0x20}, std::byte{0x10}, std::byte{0xff}};
  std::uint8_t rgb[3];
  pixel_to_rgb(*xrgb, px, rgb);
  EXPECT_EQ(rgb[0], 0x10);
  EXPECT_EQ(rgb[1], 0x20);
  EXPECT_EQ(rgb[2], 0x30);

  auto rgb565 = find_pixel_format(kFormatRGB565);
  ASSERT_TRUE(rgb565);
  const std::byte white[2] = {std::byte{0xff}, std::byte{0xff}};
  pixel_to_rgb(*rgb565, white, rgb);
  EXPECT_EQ(rgb[0], 255);
  EXPECT_EQ(rgb[1], 255);
  EXPECT_EQ(rgb[2], 255);
  const std::byte green[2] = {std::byte{0xe0}, std::byte{0x07}};  // 0x07e0
  pixel_to_rgb(*rgb565, green, rgb);
  EXPECT_EQ(rgb[0], 0);
  EXPECT_EQ(rgb[1], 255);
  EXPECT_EQ(rgb[2], 0);

  auto argb1555 = find_pixel_format(kFormatARGB1555);
  ASSERT_TRUE(argb1555);
  const std::byte red[2] = {std::byte{0x00}, std::byte{0xfc}};  // 0xfc00: alpha + red
  pixel_to_rgb(*argb1555, red, rgb);
  EXPECT_EQ(rgb[0], 255);
  EXPECT_EQ(rgb[1], 0);
  EXPECT_EQ(rgb[2], 0);

  auto rgb888 = find_pixel_format(kFormatRGB888);
  ASSERT_TRUE(rgb888);
  EXPECT_EQ(rgb888->bpp, 24u);
  EXPECT_FALSE(find_pixel_format(fourcc('N', 'V', '1', '2')));
  EXPECT_FALSE(find_pixel_format(0));
}

TEST(DisplProtocol, EdidIsValidAndDescribesTheResolution) {
  for (auto [w, h] : {std::pair{640u, 480u}, std::pair{800u, 600u}, std::pair{4095u, 4095u}}) {
    auto e = make_edid(w, h);
    ASSERT_TRUE(e.ok()) << e.error().describe();
    const std::uint8_t header[8] = {0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0};
    EXPECT_EQ(std::memcmp(e->data(), header, 8), 0);
    unsigned sum = 0;
    for (std::uint8_t b : *e) sum += b;
    EXPECT_EQ(sum % 256, 0u);
    const std::uint8_t* d = &(*e)[54];
    EXPECT_NE(d[0] | d[1], 0);  // a detailed timing, not a descriptor
    EXPECT_EQ(d[2] | (d[4] >> 4) << 8, static_cast<int>(w));
    EXPECT_EQ(d[5] | (d[7] >> 4) << 8, static_cast<int>(h));
  }
  EXPECT_EQ(make_edid(0, 480).error().code, EINVAL);
  EXPECT_EQ(make_edid(4096, 480).error().code, EINVAL);
}

TEST(DisplProtocol, ResolutionsParseStrictly) {
  auto r = parse_resolution("640x480");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->width, 640u);
  EXPECT_EQ(r->height, 480u);
  for (const char* bad : {"", "640", "640x", "x480", "0x480", "640x0", "640x480x", "-1x2",
                          "640 x480", "99999x1", "16385x10", "4294967296x1", "a0x1"}) {
    auto b = parse_resolution(bad);
    ASSERT_FALSE(b.ok()) << bad;
    EXPECT_EQ(b.error().code, EINVAL) << bad;
  }
}

TEST(DisplProtocol, XenstoreNumbersParseStrictly) {
  EXPECT_EQ(pv::parse_xenstore_u32("0"), 0u);
  EXPECT_EQ(pv::parse_xenstore_u32("4294967295"), 4294967295u);
  for (const char* bad : {"", " 1", "1 ", "+1", "-1", "0x10", "4294967296", "1.0", "1\n"}) {
    EXPECT_FALSE(pv::parse_xenstore_u32(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace shbuf::displ
