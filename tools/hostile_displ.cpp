// `shbuf displ-fe --hostile`: a displif frontend that lies, for testing a
// display backend (see hostile.h). The answers it wants are those of a
// backend that checks every request against what it holds: displ-be's.
#include <cstdio>
#include <cstring>

#include "cli.h"
#include "hostile.h"
#include "pv/displ/frontend.h"
#include "pv/displ/protocol.h"

namespace shbuf::cli {
namespace {

using namespace shbuf::displ;

struct Round {
  pv::Platform& platform;
  DisplFrontend& fe;
  HostileReport& r;
  std::string device;
  std::uint64_t next_cookie = 0x100000;

  void ask(const std::string& what, std::size_t connector, Request request, Want want) {
    r.expect(what, fe.request(connector, std::move(request)), want);
  }
  DbufCreate dbuf(std::uint32_t w, std::uint32_t h, Gref dir) {
    DbufCreate d;
    d.dbuf_cookie = next_cookie++;
    d.width = w;
    d.height = h;
    d.bpp = 32;
    d.buffer_sz = w * h * 4;
    d.gref_directory = dir;
    if (fe.be_alloc()) d.flags = kDbufFlagReqAlloc;
    return d;
  }
  void create(const std::string& what, const DbufCreate& d, Want want) {
    ask("DBUF_CREATE " + what, 0, Request{0, kOpDbufCreate, d}, want);
  }

  void limits() {
    DbufCreate huge = dbuf(64, 64, 0xffffffffu);
    huge.width = huge.height = huge.buffer_sz = 0xffffffffu;
    create("of 0xffffffff x 0xffffffff", huge, Want::refusal());
    DbufCreate d = dbuf(64, 64, 0xffffffffu);
    d.dbuf_cookie = 0;
    create("with cookie 0", d, Want::status(-EINVAL));
    d = dbuf(0, 64, 0xffffffffu);
    create("of width 0", d, Want::status(-EINVAL));
    d = dbuf(64, 64, 0xffffffffu);
    d.bpp = 33;
    create("of 33 bits per pixel", d, Want::status(-EINVAL));
    d = dbuf(64, 64, 0xffffffffu);
    d.flags |= 0x80000000u;
    create("with unknown flags", d, Want::status(-EINVAL));
    if (!fe.be_alloc()) {
      d = dbuf(64, 64, 0xffffffffu);
      d.flags = kDbufFlagReqAlloc;
      create("asking the backend to allocate", d, Want::status(-EINVAL));
    }
    d = dbuf(64, 64, 0xffffffffu);
    d.buffer_sz = 64;
    create("with a buffer_sz too small for its pixels", d, Want::status(-EINVAL));
    d = dbuf(64, 64, 0);
    create("with directory gref 0", d, Want::status(-EINVAL));
    ask("DBUF_DESTROY of a cookie never created", 0,
        Request{0, kOpDbufDestroy, DbufDestroy{0xdead}}, Want::status(-ENOENT));
    ask("FB_ATTACH of a dbuf never created", 0,
        Request{0, kOpFbAttach, FbAttach{0xdead, 0xbeef, 64, 64, kFormatXRGB8888}},
        Want::status(-ENOENT));
    ask("FB_DETACH of a framebuffer never attached", 0, Request{0, kOpFbDetach, FbDetach{0xbeef}},
        Want::status(-ENOENT));
    ask("SET_CONFIG of a framebuffer never attached", 0,
        Request{0, kOpSetConfig, SetConfig{0xbeef, 0, 0, 64, 64, 32}}, Want::status(-ENOENT));
    ask("PG_FLIP on a connector not enabled", 0, Request{0, kOpPgFlip, PgFlip{0xbeef}},
        Want::status(-EINVAL));
    ask("GET_EDID of 0xffffffff bytes", 0, Request{0, kOpGetEdid, GetEdid{0xffffffffu, 1}},
        Want::status(-E2BIG));
    for (const std::uint8_t op :
         {std::uint8_t{0x00}, std::uint8_t{0x17}, std::uint8_t{0xee}, std::uint8_t{0xff}}) {
      ask("operation " + std::to_string(op), 0, Request{0, op, UnknownOp{}},
          Want::status(-ENOTSUP));
    }
    if (fe.connectors().size() > 1) {
      ask("DBUF_CREATE on connector 1's ring", 1,
          Request{0, kOpDbufCreate, dbuf(64, 64, 0xffffffffu)}, Want::status(-EINVAL));
    }
  }

  // DBUF_CREATEs of 1024 x 1025 (1025 pages: two directory pages) through
  // lying directories.
  void directories() {
    LyingDirectories dirs(*platform.grants, fe.backend());
    auto refused = [&](const std::string& what, Result<Gref> gref, std::size_t pages) {
      if (!gref.ok()) {
        r.expect_ok("sharing " + what, gref.error());
        return;
      }
      // 1024 pixels of 4 bytes to a row: one page each.
      create("through " + what, dbuf(1024, std::uint32_t(pages), *gref), Want::refusal());
    };
    if (fe.be_alloc()) {
      refused("a directory granted read-only", dirs.to_fill(1025, Access::kReadOnly), 1025);
      refused("a directory gref never granted", Gref(LyingDirectories::kNeverGranted), 1025);
    } else {
      dirs.for_each_lie(1025, refused);
    }
  }

  void storm(int n) {
    event_storm(r, n, fe.connectors().size(), [this](std::size_t c) { return fe.notify(c); });
  }

  // A frame shown, start to end: the backend still serves this device.
  void show() {
    const Resolution res = fe.connectors()[0];
    auto d = fe.dbuf_create(res.width, res.height, 32);
    if (!d.ok()) {
      r.expect_ok("DBUF_CREATE of a frame", d.error());
      return;
    }
    auto fb = fe.fb_attach(*d, kFormatXRGB8888);
    Status s = fb.ok() ? fe.set_config(0, *fb) : Status(fb.error());
    if (s.ok()) s = fe.page_flip(0, *fb);
    if (s.ok()) s = fe.set_config(0, 0);
    if (s.ok()) s = fe.fb_detach(*fb);
    if (s.ok()) s = fe.dbuf_destroy(*d);
    r.expect_ok("a frame shown after the rewrites", s);
  }

  // The ring's keys rewritten after Connected; the toolstack's keys
  // (resolution, be-alloc, unique-id) are not the guest's to write.
  void rewrites() {
    auto& xs = *platform.xenstore;
    const std::string c0 = device + "/0/";
    r.expect_ok("rewriting 0/req-ring-ref to 1",
                xs.write(pv::kNoTransaction, c0 + "req-ring-ref", "1"));
    r.expect_ok("rewriting 0/evt-event-channel to 99999",
                xs.write(pv::kNoTransaction, c0 + "evt-event-channel", "99999"));
    r.expect_code("rewriting 0/resolution", xs.write(pv::kNoTransaction, c0 + "resolution", "1x1"),
                  EACCES);
    r.expect_code("rewriting be-alloc", xs.write(pv::kNoTransaction, device + "/be-alloc", "1"),
                  EACCES);
    show();
  }

  [[noreturn]] void die() {
    LyingDirectories dirs(*platform.grants, fe.backend());
    const Resolution res = fe.connectors()[0];
    const std::size_t pages = (std::size_t(res.width) * res.height * 4 + kPageSize - 1) / kPageSize;
    auto gref = fe.be_alloc() ? dirs.to_fill(pages, Access::kReadWrite) : dirs.honest(pages);
    if (gref.ok()) {
      (void)fe.send_packet(
          0, encode_request(Request{0x7777, kOpDbufCreate, dbuf(res.width, res.height, *gref)}));
      (void)fe.notify(0);
    }
    die_mid_request(r);
  }

  // A request producer index far ahead: the backend must end this device.
  void far_ahead() {
    const std::uint32_t far = 100000;
    std::memcpy(fe.request_page(0).data(), &far, sizeof far);
    expect_device_ended(r, *platform.xenstore, device, fe.notify(0));
  }
};

}  // namespace

int run_hostile_displ(pv::Platform& platform, const FrontendOptions& options,
                      const HostileOptions& hostile) {
  HostileReport report;
  return run_rounds(hostile, report, [&](bool last) -> Status {
    auto fe = DisplFrontend::connect(platform, options);
    if (!fe.ok()) return fe.error();
    Round round{platform, **fe, report, "device/vdispl/" + std::to_string(options.devid), 0x100000};
    report.note("connected to domain " + std::to_string((*fe)->backend()) + ": " +
                std::to_string((*fe)->connectors().size()) + " connector(s), " +
                ((*fe)->be_alloc() ? "backend-allocated" : "frontend-allocated"));
    round.limits();
    round.directories();
    round.storm(hostile.storm);
    round.rewrites();
    if (last && hostile.die) round.die();
    round.far_ahead();
    (void)(*fe)->close();
    return {};
  });
}

}  // namespace shbuf::cli
