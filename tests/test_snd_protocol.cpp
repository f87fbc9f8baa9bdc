// sndif packets: offsets agree with Xen's own header, every byte pattern
// decodes, responses echo id and operation and leave nothing else behind;
// a card's configuration is read level by level with bounds; HW_PARAM_QUERY
// narrows a request to what the stream offers.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <map>
#include <random>

#include "pv/snd/protocol.h"

#if __has_include(<xen/io/sndif.h>)
#include <xen/io/sndif.h>
#define SHBUF_HAVE_SNDIF_H 1
#endif

namespace shbuf::snd {
namespace {

#ifdef SHBUF_HAVE_SNDIF_H
template <typename T>
Packet as_packet(const T& t) {
  static_assert(sizeof(T) == kPacketSize);
  Packet p;
  std::memcpy(p.data(), &t, sizeof t);
  return p;
}

static_assert(sizeof(xensnd_req) == kPacketSize && sizeof(xensnd_resp) == kPacketSize &&
              sizeof(xensnd_evt) == kPacketSize);
static_assert(XENSND_OP_OPEN == kOpOpen && XENSND_OP_CLOSE == kOpClose &&
              XENSND_OP_READ == kOpRead && XENSND_OP_WRITE == kOpWrite &&
              XENSND_OP_TRIGGER == kOpTrigger && XENSND_OP_HW_PARAM_QUERY == kOpHwParamQuery &&
              XENSND_OP_SET_VOLUME == kOpSetVolume && XENSND_OP_UNMUTE == kOpUnmute);
static_assert(XENSND_OP_TRIGGER_START == kTriggerStart &&
              XENSND_OP_TRIGGER_PAUSE == kTriggerPause && XENSND_OP_TRIGGER_STOP == kTriggerStop &&
              XENSND_OP_TRIGGER_RESUME == kTriggerResume && XENSND_EVT_CUR_POS == kEvtCurPos);
static_assert(XENSND_PCM_FORMAT_U8 == kFormatU8 && XENSND_PCM_FORMAT_S16_LE == kFormatS16LE &&
              XENSND_PCM_FORMAT_S32_LE == kFormatS32LE &&
              XENSND_PCM_FORMAT_F32_LE == kFormatF32LE && XENSND_PCM_FORMAT_GSM + 1 == kFormatCount);

TEST(SndProtocol, OpenDecodesAsXensHeaderLaysItOut) {
  xensnd_req r{};
  r.id = 0x1234;
  r.operation = XENSND_OP_OPEN;
  r.op.open.pcm_rate = 48000;
  r.op.open.pcm_format = XENSND_PCM_FORMAT_S16_LE;
  r.op.open.pcm_channels = 2;
  r.op.open.buffer_sz = 65536;
  r.op.open.gref_directory = 0xabcdef;
  r.op.open.period_sz = 4096;
  const Request d = decode_request(as_packet(r));
  EXPECT_EQ(d.id, 0x1234);
  const auto* o = std::get_if<Open>(&d.body);
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->pcm_rate, 48000u);
  EXPECT_EQ(o->pcm_format, kFormatS16LE);
  EXPECT_EQ(o->pcm_channels, 2);
  EXPECT_EQ(o->buffer_sz, 65536u);
  EXPECT_EQ(o->gref_directory, 0xabcdefu);
  EXPECT_EQ(o->period_sz, 4096u);
  EXPECT_EQ(encode_request(d), as_packet(r));
}

TEST(SndProtocol, ReadWriteTriggerAndQueryDecodeAsXensHeaderLaysThemOut) {
  Request tmp;
  xensnd_req r{};
  r.id = 7;
  r.operation = XENSND_OP_WRITE;
  r.op.rw.offset = 100;
  r.op.rw.length = 200;
  auto w = std::get_if<Write>(&(tmp = decode_request(as_packet(r))).body);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->offset, 100u);
  EXPECT_EQ(w->length, 200u);
  r.operation = XENSND_OP_READ;
  auto rd = std::get_if<Read>(&(tmp = decode_request(as_packet(r))).body);
  ASSERT_NE(rd, nullptr);
  EXPECT_EQ(rd->offset, 100u);
  EXPECT_EQ(rd->length, 200u);
  xensnd_req t{};
  t.operation = XENSND_OP_TRIGGER;
  t.op.trigger.type = XENSND_OP_TRIGGER_RESUME;
  auto tr = std::get_if<Trigger>(&(tmp = decode_request(as_packet(t))).body);
  ASSERT_NE(tr, nullptr);
  EXPECT_EQ(tr->type, kTriggerResume);
  xensnd_req q{};
  q.operation = XENSND_OP_HW_PARAM_QUERY;
  q.op.hw_param.formats = 0x0102030405060708ull;
  q.op.hw_param.rates = {8000, 48000};
  q.op.hw_param.channels = {1, 2};
  q.op.hw_param.buffer = {64, 16384};
  q.op.hw_param.period = {32, 8192};
  auto hq = std::get_if<HwParamQuery>(&(tmp = decode_request(as_packet(q))).body);
  ASSERT_NE(hq, nullptr);
  EXPECT_EQ(hq->params, (HwParams{0x0102030405060708ull, {8000, 48000}, {1, 2}, {64, 16384},
                                  {32, 8192}}));
  EXPECT_EQ(encode_request(decode_request(as_packet(q))), as_packet(q));
}

TEST(SndProtocol, ResponsesAndEventsEncodeAsXensHeaderLaysThemOut) {
  Response rsp;
  rsp.id = 0xbeef;
  rsp.operation = kOpHwParamQuery;
  rsp.status = -22;
  rsp.hw = {0x4, {44100, 48000}, {2, 2}, {1, 16384}, {1, 16384}};
  const Packet p = encode_response(rsp);
  xensnd_resp x;
  std::memcpy(&x, p.data(), sizeof x);
  EXPECT_EQ(x.id, 0xbeef);
  EXPECT_EQ(x.operation, kOpHwParamQuery);
  EXPECT_EQ(x.status, -22);
  EXPECT_EQ(x.resp.hw_param.formats, 0x4u);
  EXPECT_EQ(x.resp.hw_param.rates.min, 44100u);
  EXPECT_EQ(x.resp.hw_param.period.max, 16384u);
  EXPECT_EQ(decode_response(p).hw, rsp.hw);
  const Packet e = encode_cur_pos_event({9, 0x123456789ull});
  xensnd_evt ev;
  std::memcpy(&ev, e.data(), sizeof ev);
  EXPECT_EQ(ev.id, 9);
  EXPECT_EQ(ev.type, XENSND_EVT_CUR_POS);
  EXPECT_EQ(ev.op.cur_pos.position, 0x123456789ull);
}
#endif

TEST(SndProtocol, EveryBytePatternDecodesAndUnknownOperationsKeepNoBody) {
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    Packet p;
    for (auto& b : p) b = std::byte(rng());
    const Request r = decode_request(p);
    if (r.operation > kOpHwParamQuery || (r.operation >= kOpSetVolume && r.operation <= kOpUnmute)) {
      EXPECT_TRUE(std::holds_alternative<UnknownOp>(r.body)) << int(r.operation);
    } else {
      EXPECT_FALSE(std::holds_alternative<UnknownOp>(r.body)) << int(r.operation);
    }
  }
}

TEST(SndProtocol, ResponsesOtherThanQueriesCarryOnlyTheHeader) {
  Response r;
  r.id = 3;
  r.operation = kOpWrite;
  r.status = -71;
  r.hw.formats = ~0ull;
  const Packet p = encode_response(r);
  for (std::size_t i = 8; i < kPacketSize; ++i) EXPECT_EQ(p[i], std::byte{0}) << i;
  const Response d = decode_response(p);
  EXPECT_EQ(d.id, 3);
  EXPECT_EQ(d.operation, kOpWrite);
  EXPECT_EQ(d.status, -71);
  EXPECT_FALSE(decode_cur_pos_event(encode_request({1, 5, UnknownOp{}})).has_value());
}

TEST(SndProtocol, FormatNamesRoundTrip) {
  for (std::uint8_t f = 0; f < kFormatCount; ++f) {
    EXPECT_EQ(parse_format_name(format_name(f)), f);
  }
  EXPECT_FALSE(parse_format_name("S16_LE").has_value());
  EXPECT_EQ(format_name(200), "");
  EXPECT_EQ(sample_bytes(kFormatS16LE), 2u);
  EXPECT_EQ(sample_bytes(kFormatU8), 1u);
  EXPECT_EQ(sample_bytes(3), 0u);
}

TEST(SndProtocol, RatesAndFormatsParseStrictly) {
  auto r = parse_rates("48000,8000,44100,8000");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (std::vector<std::uint32_t>{8000, 44100, 48000}));
  EXPECT_EQ(parse_rates("").error().code, EINVAL);
  EXPECT_EQ(parse_rates("48000,").error().code, EINVAL);
  EXPECT_EQ(parse_rates("0").error().code, EINVAL);
  EXPECT_EQ(parse_rates("768001").error().code, EINVAL);
  EXPECT_EQ(parse_rates(" 48000").error().code, EINVAL);
  EXPECT_EQ(parse_rates("99999999999999999999").error().code, EINVAL);
  std::string many;
  for (int i = 1; i <= 33; ++i) many += (i > 1 ? "," : "") + std::to_string(i * 1000);
  EXPECT_EQ(parse_rates(many).error().code, E2BIG);
  auto f = parse_formats("s16_le,u8");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, format_bit(kFormatS16LE) | format_bit(kFormatU8));
  EXPECT_EQ(parse_formats("s16_le,wav").error().code, EINVAL);
  EXPECT_EQ(parse_formats("").error().code, EINVAL);
}

// A directory as a map, as the backend and our frontend read xenstore.
ConfigReader reader(const std::map<std::string, std::string>& dir) {
  return [dir](const std::string& key) -> Result<std::string> {
    auto it = dir.find(key);
    if (it == dir.end()) return make_error(ENOENT, key);
    return it->second;
  };
}

TEST(SndProtocol, StreamsInheritTheCardsAndTheirDevicesValues) {
  auto s = read_streams(reader({{"sample-rates", "44100,48000"},
                                {"sample-formats", "s16_le"},
                                {"channels-max", "2"},
                                {"buffer-size", "65536"},
                                {"0/name", "pcm0"},
                                {"0/0/type", "p"},
                                {"0/0/unique-id", "s0p"},
                                {"0/1/type", "c"},
                                {"0/1/channels-min", "2"},
                                {"1/sample-rates", "8000"},
                                {"1/0/type", "p"},
                                {"1/0/buffer-size", "4096"}}));
  ASSERT_TRUE(s.ok()) << s.error().describe();
  ASSERT_EQ(s->size(), 3u);
  EXPECT_FALSE((*s)[0].capture);
  EXPECT_EQ((*s)[0].unique_id, "s0p");
  EXPECT_EQ((*s)[0].params.rates, (std::vector<std::uint32_t>{44100, 48000}));
  EXPECT_EQ((*s)[0].params.formats, format_bit(kFormatS16LE));
  EXPECT_TRUE((*s)[1].capture);
  EXPECT_EQ((*s)[1].params.channels_min, 2u);
  EXPECT_EQ((*s)[2].pcm, 1u);
  EXPECT_EQ((*s)[2].params.rates, (std::vector<std::uint32_t>{8000}));
  EXPECT_EQ((*s)[2].params.buffer_size, 4096u);
  EXPECT_EQ((*s)[0].params.buffer_size, 65536u);
}

TEST(SndProtocol, ABadOrOversizedDirectoryIsRefusedNamingTheKey) {
  EXPECT_EQ(read_streams(reader({})).error().code, EINVAL);
  auto bad_type = read_streams(reader({{"0/0/type", "x"}}));
  EXPECT_EQ(bad_type.error().code, EINVAL);
  EXPECT_NE(bad_type.error().message.find("0/0/type"), std::string::npos);
  auto bad_channels = read_streams(reader({{"0/0/type", "p"}, {"0/0/channels-max", "0"}}));
  EXPECT_EQ(bad_channels.error().code, EINVAL);
  EXPECT_NE(bad_channels.error().message.find("0/0/channels-max"), std::string::npos);
  EXPECT_EQ(read_streams(reader({{"0/0/type", "p"}, {"channels-min", "3"}})).error().code, EINVAL);
  EXPECT_EQ(read_streams(reader({{"0/0/type", "p"}, {"0/buffer-size", "-1"}})).error().code, EINVAL);
  std::map<std::string, std::string> wide;
  for (int j = 0; j < 9; ++j) wide["0/" + std::to_string(j) + "/type"] = "p";
  EXPECT_EQ(read_streams(reader(wide)).error().code, E2BIG);
  std::map<std::string, std::string> many;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 8; ++j) many[std::to_string(i) + "/" + std::to_string(j) + "/type"] = "c";
  }
  EXPECT_EQ(read_streams(reader(many)).error().code, E2BIG);
  // A read failing otherwise than ENOENT is that error.
  ConfigReader failing = [](const std::string&) -> Result<std::string> {
    return make_error(EIO, "xenstore");
  };
  EXPECT_EQ(read_streams(failing).error().code, EIO);
}

TEST(SndProtocol, QueriesAreNarrowedToWhatTheStreamOffers) {
  StreamParams offer;
  offer.rates = {8000, 44100, 48000};
  offer.formats = format_bit(kFormatS16LE) | format_bit(kFormatU8) | format_bit(3);
  offer.channels_min = 1;
  offer.channels_max = 2;
  offer.buffer_size = 65536;
  HwParams all{~0ull, {0, UINT32_MAX}, {0, UINT32_MAX}, {0, UINT32_MAX}, {0, UINT32_MAX}};
  auto r = intersect(all, offer, 1u << 20);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  // S16_BE (3) is offered but not something we write.
  EXPECT_EQ(r->formats, format_bit(kFormatS16LE) | format_bit(kFormatU8));
  EXPECT_EQ(r->rates, (Interval{8000, 48000}));
  EXPECT_EQ(r->channels, (Interval{1, 2}));
  EXPECT_EQ(r->buffer, (Interval{1, 65536}));  // U8 mono
  EXPECT_EQ(r->period, (Interval{1, 65536}));
  HwParams q = all;
  q.formats = format_bit(kFormatS16LE);
  q.rates = {44101, 48000};
  q.channels = {2, 2};
  auto s = intersect(q, offer, 16384);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->rates, (Interval{48000, 48000}));
  EXPECT_EQ(s->buffer, (Interval{1, 4096}));  // 16 KiB of 4-byte frames
  q.rates = {44101, 47999};
  EXPECT_EQ(intersect(q, offer, 16384).error().code, EINVAL);
  q.rates = {0, UINT32_MAX};
  q.channels = {3, 8};
  EXPECT_EQ(intersect(q, offer, 16384).error().code, EINVAL);
  q.channels = {1, 2};
  q.formats = format_bit(kFormatS32LE);
  EXPECT_EQ(intersect(q, offer, 16384).error().code, EINVAL);
  q.formats = ~0ull;
  q.buffer = {100000, 200000};
  EXPECT_EQ(intersect(q, offer, 16384).error().code, EINVAL);
  q.buffer = {1, 100};
  q.period = {101, 200};
  EXPECT_EQ(intersect(q, offer, 16384).error().code, EINVAL);
}

}  // namespace
}  // namespace shbuf::snd
