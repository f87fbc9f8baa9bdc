// `shbuf snd-fe --hostile`: a sndif frontend that lies, for testing a
// sound backend (see hostile.h). The answers it wants are those of a backend
// that checks everything against the card: snd-be's.
#include <cstdio>
#include <optional>

#include "cli.h"
#include "hostile.h"
#include "pv/snd/frontend.h"
#include "pv/snd/protocol.h"

namespace shbuf::cli {
namespace {

using namespace shbuf::snd;

struct Round {
  pv::Platform& platform;
  SndFrontend& fe;
  HostileReport& r;
  std::string device;
  std::size_t play = 0;     // a playback stream
  std::size_t capture = 0;  // another stream, left closed

  Result<std::int32_t> status(std::size_t stream, Request request) {
    auto rsp = fe.request(stream, std::move(request));
    if (!rsp.ok()) return rsp.error();
    return rsp->status;
  }
  void open(const std::string& what, std::size_t stream, Open o, Want want) {
    r.expect("OPEN " + what, status(stream, Request{0, kOpOpen, o}), want);
  }
  void query(const std::string& what, const HwParams& q) {
    r.expect("HW_PARAM_QUERY " + what, status(play, Request{0, kOpHwParamQuery, HwParamQuery{q}}),
             Want::status(-EINVAL));
  }

  void limits() {
    constexpr Gref none = 0xffffffffu;
    open("buffer_sz 65536 with directory 0xffffffff", play,
         {48000, kFormatS16LE, 2, 65536, none, 0}, Want::status(-EINVAL));
    open("buffer_sz 65537, above the card's", play, {48000, kFormatS16LE, 2, 65537, none, 0},
         Want::status(-E2BIG));
    open("buffer_sz 0xffffffff", play, {48000, kFormatS16LE, 2, 0xffffffffu, none, 0},
         Want::status(-E2BIG));
    open("rate 0", play, {0, kFormatS16LE, 2, 4096, none, 0}, Want::status(-EINVAL));
    open("rate 0xffffffff", play, {0xffffffffu, kFormatS16LE, 2, 4096, none, 0},
         Want::status(-EINVAL));
    open("format 0xff", play, {48000, 0xff, 2, 4096, none, 0}, Want::status(-EINVAL));
    open("format S8, not offered", play, {48000, kFormatS8, 2, 4096, none, 0},
         Want::status(-EINVAL));
    open("0 channels", play, {48000, kFormatS16LE, 0, 4096, none, 0}, Want::status(-EINVAL));
    open("255 channels", play, {48000, kFormatS16LE, 0xff, 4096, none, 0}, Want::status(-EINVAL));
    open("period_sz 0xffffffff", capture, {48000, kFormatS16LE, 2, 4096, none, 0xffffffffu},
         Want::status(-EINVAL));
    const Interval any{0, UINT32_MAX};
    query("with no format", {0, any, any, any, any});
    query("with rates [0xffffffff, 0xffffffff]", {~0ull, {UINT32_MAX, UINT32_MAX}, any, any, any});
    query("with rates [48000, 1]", {~0ull, {48000, 1}, any, any, any});
    query("with channels [200, 0xffffffff]", {~0ull, any, {200, UINT32_MAX}, any, any});
    query("with channels [0, 0]", {~0ull, any, {0, 0}, any, any});
    query("with buffer [0xffffffff, 0xffffffff]", {~0ull, any, any, {UINT32_MAX, UINT32_MAX}, any});
    for (const std::uint8_t op : {kOpSetVolume, kOpGetVolume, kOpMute, kOpUnmute,
                                  std::uint8_t{0x0a}, std::uint8_t{0xee}, std::uint8_t{0xff}}) {
      r.expect("operation " + std::to_string(op), status(play, Request{0, op, UnknownOp{}}),
               Want::status(-ENOTSUP));
    }
    r.expect("WRITE before OPEN", status(play, Request{0, kOpWrite, Write{0, 4}}),
             Want::status(-EPROTO));
    r.expect_ok("OPEN of 8192 bytes", fe.open(play, 48000, kFormatS16LE, 2, 8192, 4096));
    for (const Write w : {Write{0xffffffffu, 0xffffffffu}, Write{0xfffffffcu, 8}, Write{8192, 4},
                          Write{0, 0xffffffffu}, Write{4, 8192}}) {
      r.expect("WRITE " + std::to_string(w.offset) + "+" + std::to_string(w.length) +
                   " of an 8192-byte buffer",
               status(play, Request{0, kOpWrite, w}), Want::status(-EINVAL));
    }
    r.expect("READ on a playback stream", status(play, Request{0, kOpRead, Read{0, 4}}),
             Want::status(-EINVAL));
    r.expect("TRIGGER 0xff", status(play, Request{0, kOpTrigger, Trigger{0xff}}),
             Want::status(-EINVAL));
  }

  // OPENs of 64 KiB (16 pages) or one page through lying directories.
  void directories() {
    LyingDirectories dirs(*platform.grants, fe.backend());
    dirs.for_each_lie(16, [&](const std::string& what, Result<Gref> gref, std::size_t pages) {
      if (!gref.ok()) {
        r.expect_ok("sharing " + what, gref.error());
        return;
      }
      const auto bytes = std::uint32_t(pages * kPageSize);
      open("through " + what, capture, {48000, kFormatS16LE, 2, bytes, *gref, 4096},
           Want::refusal());
    });
  }

  void storm(int n) {
    event_storm(r, n, fe.streams().size(), [this](std::size_t k) { return fe.notify(k); });
  }

  // The rings', the stream's parameters, and the card's and the stream's
  // configuration rewritten after Connected (libxl leaves all of them to
  // the guest); put back as they were by restore().
  std::vector<std::pair<std::string, std::optional<std::string>>> saved;
  void rewrite(const std::string& key, const std::string& value) {
    auto old = platform.xenstore->read(pv::kNoTransaction, device + "/" + key);
    saved.emplace_back(key, old.ok() ? std::optional(*old) : std::nullopt);
    r.expect_ok(
        "rewriting " + key + " to " + value.substr(0, 16) + (value.size() > 16 ? "..." : ""),
        fe.rewrite(key, value));
  }
  void rewrites() {
    rewrite(fe.stream_key(play, "ring-ref"), "1");
    rewrite(fe.stream_key(play, "event-channel"), "99999");
    rewrite(fe.stream_key(capture, "evt-ring-ref"), "4294967295");
    rewrite(fe.stream_key(play, "buffer-size"), "1073741824");
    rewrite(fe.stream_key(play, "sample-rates"), "8000");
    rewrite("sample-rates", "8000");
    rewrite("buffer-size", "4294967295");
    rewrite(fe.stream_key(play, "type"), "c");
    rewrite(fe.stream_key(play, "unique-id"), std::string(100, 'x'));
    // Served as it connected: the same rings, the same limits.
    r.expect_ok("WRITE of 4 bytes after the rewrites", fe.write(play, 0, 4));
    open("buffer_sz 65537 after the rewrites", play, {48000, kFormatS16LE, 2, 65537, 1, 0},
         Want::status(-E2BIG));
    open("rate 8000 after the rewrites", play, {8000, kFormatS16LE, 2, 4096, 1, 0},
         Want::status(-EINVAL));
  }
  void restore() {
    for (auto it = saved.rbegin(); it != saved.rend(); ++it) {
      const std::string path = device + "/" + it->first;
      const Status s = it->second ? platform.xenstore->write(pv::kNoTransaction, path, *it->second)
                                  : platform.xenstore->rm(pv::kNoTransaction, path);
      if (!s.ok()) r.expect_ok("putting back " + it->first, s);
    }
    saved.clear();
  }

  // An OPEN of a true 64 KiB buffer sent, and the process gone before its
  // answer.
  [[noreturn]] void die() {
    LyingDirectories dirs(*platform.grants, fe.backend());
    auto gref = dirs.honest(16);
    if (gref.ok()) {
      (void)fe.send_packet(
          capture, encode_request(
                       Request{0x7777, kOpOpen, Open{48000, kFormatS16LE, 2, 65536, *gref, 4096}}));
      (void)fe.notify(capture);
    }
    die_mid_request(r);
  }

  // A request producer index far ahead: the backend must end this device.
  void far_ahead() {
    Status s = fe.set_request_producer(play, 100000);
    if (s.ok()) s = fe.notify(play);
    expect_device_ended(r, *platform.xenstore, device, s);
  }
};

}  // namespace

int run_hostile_snd(pv::Platform& platform, const FrontendOptions& options,
                    const HostileOptions& hostile) {
  HostileReport report;
  return run_rounds(hostile, report, [&](bool last) -> Status {
    auto fe = SndFrontend::connect(platform, options);
    if (!fe.ok()) return fe.error();
    Round round{platform, **fe, report, "device/vsnd/" + std::to_string(options.devid), 0, 0, {}};
    const auto& streams = (*fe)->streams();
    std::optional<std::size_t> play;
    for (std::size_t i = 0; i < streams.size(); ++i) {
      if (!streams[i].capture && !play) play = i;
    }
    if (!play || streams.size() < 2) {
      return make_error(ENODEV, "the card needs a playback stream and one more");
    }
    round.play = *play;
    round.capture = *play == 0 ? 1 : 0;
    report.note("connected to domain " + std::to_string((*fe)->backend()) + ": " +
                std::to_string(streams.size()) + " stream(s)");
    round.limits();
    round.directories();
    round.storm(hostile.storm);
    round.rewrites();
    round.restore();
    if (last && hostile.die) round.die();
    round.far_ahead();
    (void)(*fe)->close();
    return {};
  });
}

}  // namespace shbuf::cli
