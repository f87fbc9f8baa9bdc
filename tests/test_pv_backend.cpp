// The generic PV backend on the simulator, with a small echo protocol and a
// frontend written here: devices found under the backend directory, the
// xenbus states walked, rings mapped and channels bound, requests served, and
// everything released when a frontend closes, misbehaves or its device is
// removed, while the other devices go on.
#include <gtest/gtest.h>
#include <poll.h>

#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pv/backend.h"
#include "pv/ring.h"
#include "pv/toolstack.h"
#include "test_sim_util.h"

namespace shbuf::pv {
namespace {

constexpr std::size_t kEntry = 16;
using Entry = std::array<std::byte, kEntry>;

std::uint32_t first_word(const Entry& e) {
  std::uint32_t v = 0;
  std::memcpy(&v, e.data(), 4);
  return v;
}

Entry with_word(std::uint32_t v) {
  Entry e{};
  std::memcpy(e.data(), &v, 4);
  return e;
}

// Answers each request with its first word plus one.
class EchoDevice final : public Device {
 public:
  Status connect(DeviceContext& ctx) override {
    auto ref = ctx.read_u32("ring-ref");
    if (!ref.ok()) return ref.error();
    auto port = ctx.read_u32("event-channel");
    if (!port.ok()) return port.error();
    auto ch = ctx.connect_channel(*ref, *port);
    if (!ch.ok()) return ch.error();
    auto ring = BackRing::attach(ctx.page(*ch), kEntry);
    if (!ring.ok()) return ring.error();
    ring_ = *ring;
    connected_ = true;
    return {};
  }
  Result<bool> serve(DeviceContext& ctx, std::size_t channel) override {
    for (int n = 0; n < 8; ++n) {
      Entry req;
      auto got = ring_.next_request(req);
      if (!got.ok()) return got.error();
      if (!*got) {
        auto more = ring_.final_check();
        if (!more.ok()) return more.error();
        if (!*more) return false;
        continue;
      }
      ++served_;
      auto notify = ring_.push_response(with_word(first_word(req) + 1));
      if (!notify.ok()) return notify.error();
      if (*notify) SHBUF_TRY(ctx.notify(channel));
    }
    return true;
  }
  void disconnect() override { connected_ = false; }
  std::vector<std::size_t> holdings() const override { return {connected_ ? served_ : 0}; }

 private:
  BackRing ring_;
  bool connected_ = false;
  std::size_t served_ = 0;
};

class EchoProtocol final : public Protocol {
 public:
  std::string kind() const override { return "vtest"; }
  std::unique_ptr<Device> make_device(const DeviceInfo&) override {
    return std::make_unique<EchoDevice>();
  }
  std::vector<std::string> holding_names() const override { return {"served"}; }
};

// The echo device with a timer: asks for tick() `ticks_wanted` times, each
// `interval` after the last, from the moment it is made; the last tick fails
// when `fail_last` is set.
struct TimerCounts {
  int ticks = 0;
  int ticks_wanted = 3;
  bool fail_last = false;
};

class TimerDevice final : public Device {
 public:
  explicit TimerDevice(TimerCounts& counts)
      : counts_(counts), due_(std::chrono::steady_clock::now()) {}
  Status connect(DeviceContext& ctx) override { return echo_.connect(ctx); }
  Result<bool> serve(DeviceContext& ctx, std::size_t channel) override {
    return echo_.serve(ctx, channel);
  }
  void disconnect() override { echo_.disconnect(); }
  std::vector<std::size_t> holdings() const override { return echo_.holdings(); }
  std::optional<std::chrono::steady_clock::time_point> next_wakeup() const override {
    if (counts_.ticks >= counts_.ticks_wanted) return std::nullopt;
    return due_;
  }
  Status tick(DeviceContext&) override {
    if (std::chrono::steady_clock::now() < due_) return make_error(EINVAL, "ticked early");
    ++counts_.ticks;
    due_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(3);
    if (counts_.fail_last && counts_.ticks == counts_.ticks_wanted) {
      return make_error(EPROTO, "the timed work failed");
    }
    return {};
  }

 private:
  TimerCounts& counts_;
  EchoDevice echo_;
  std::chrono::steady_clock::time_point due_;
};

class TimerProtocol final : public Protocol {
 public:
  std::string kind() const override { return "vtest"; }
  std::unique_ptr<Device> make_device(const DeviceInfo& info) override {
    return std::make_unique<TimerDevice>(counts[info.frontend]);
  }
  std::vector<std::string> holding_names() const override { return {"served"}; }
  std::map<DomId, TimerCounts> counts;
};

// A frontend of the echo protocol in domain `domid`.
struct Frontend {
  Platform p;
  std::string dir;
  Share page;
  FrontRing ring;
  Port port = 0;

  Status publish() {
    auto share = p.grants->share(0, 1, Access::kReadWrite);
    if (!share.ok()) return share.error();
    page = std::move(share).value();
    auto ring_ok = FrontRing::init(page.memory(), kEntry);
    if (!ring_ok.ok()) return ring_ok.error();
    ring = *ring_ok;
    auto bound = p.events->bind_unbound(0);
    if (!bound.ok()) return bound.error();
    port = *bound;
    auto t = p.xenstore->begin();
    if (!t.ok()) return t.error();
    SHBUF_TRY(p.xenstore->write(*t, dir + "/ring-ref", std::to_string(page.grefs()[0])));
    SHBUF_TRY(p.xenstore->write(*t, dir + "/event-channel", std::to_string(port)));
    SHBUF_TRY(p.xenstore->write(*t, dir + "/state", "3"));
    return p.xenstore->end(*t, true);
  }

  // Waits (bounded) for the backend's notification.
  bool wait_event(int ms) {
    pollfd fd{p.events->fd(), POLLIN, 0};
    if (::poll(&fd, 1, ms) != 1) return false;
    auto got = p.events->pending();
    if (!got.ok() || !*got) return false;
    return p.events->unmask(**got).ok();
  }
};

class PvBackend : public simtest::SimTest {
 protected:
  void SetUp() override {
    SimTest::SetUp();
    auto dom0 = open_platform(options(0));
    ASSERT_TRUE(dom0.ok()) << dom0.error().describe();
    be = std::move(dom0).value();
    backend = std::make_unique<Backend>(be, protocol,
                                        BackendConfig{std::chrono::milliseconds(5), 0, "test-be"});
  }
  void TearDown() override {
    backend.reset();
    fes.clear();
    be = Platform{};
    SimTest::TearDown();
  }

  PlatformOptions options(DomId self) {
    PlatformOptions o;
    o.name = "sim";
    o.self = self;
    o.sim_path = path;
    return o;
  }

  Frontend& add_frontend(DomId domid) {
    DeviceSpec spec;
    spec.kind = "vtest";
    spec.frontend = domid;
    EXPECT_TRUE(add_device(*be.xenstore, spec).ok());
    auto fe = open_platform(options(domid));
    EXPECT_TRUE(fe.ok()) << fe.error().describe();
    auto f = std::make_unique<Frontend>();
    f->p = std::move(fe).value();
    f->dir = frontend_path("vtest", domid, 0);
    fes.push_back(std::move(f));
    return *fes.back();
  }

  std::optional<XenbusState> backend_state(DomId fe) {
    auto v = be.xenstore->read(kNoTransaction, backend_path("vtest", 0, fe, 0) + "/state");
    if (!v.ok()) return std::nullopt;
    return parse_xenbus_state(*v);
  }

  // Turns the loop until `done` or a bound.
  template <typename Pred>
  bool turn_until(Pred done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      if (done()) return true;
      EXPECT_TRUE(backend->turn(std::chrono::milliseconds(5)).ok());
    }
    return done();
  }

  // Sends `n` requests one ring-full at a time; checks every answer.
  void echo(Frontend& f, std::uint32_t n) {
    std::uint32_t sent = 0, answered = 0;
    while (answered < n) {
      bool notify = false;
      while (sent < n && !f.ring.full()) {
        auto r = f.ring.push_request(with_word(sent++ * 10));
        ASSERT_TRUE(r.ok());
        notify = notify || *r;
      }
      if (notify) {
        ASSERT_TRUE(f.p.events->notify(f.port).ok());
      }
      ASSERT_TRUE(turn_until([&] {
        auto r = f.ring.final_check();
        return r.ok() && *r;
      }));
      (void)f.wait_event(0);
      for (;;) {
        Entry rsp;
        auto got = f.ring.next_response(rsp);
        ASSERT_TRUE(got.ok());
        if (!*got) break;
        ASSERT_EQ(first_word(rsp), answered++ * 10 + 1);
      }
    }
  }

  EchoProtocol protocol;
  TimerProtocol timers;
  Platform be;
  std::unique_ptr<Backend> backend;
  std::vector<std::unique_ptr<Frontend>> fes;
};

TEST_F(PvBackend, FindsADeviceWalksTheStatesAndServesIt) {
  Frontend& f = add_frontend(1);
  ASSERT_TRUE(turn_until([&] { return backend_state(1) == XenbusState::kInitWait; }));
  ASSERT_TRUE(f.publish().ok());
  ASSERT_TRUE(turn_until([&] { return backend_state(1) == XenbusState::kConnected; }));
  EXPECT_EQ(backend->holdings().ring_mappings, 1u);
  EXPECT_EQ(backend->holdings().event_channels, 1u);
  echo(f, 300);
  EXPECT_EQ(backend->holdings().protocol, std::vector<std::size_t>{300});
  // Idle, the loop sleeps until the next scan instead of spinning: at most a
  // few turns per 5 ms scan period.
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  int turns = 0;
  for (; std::chrono::steady_clock::now() < end; ++turns) {
    ASSERT_TRUE(backend->turn(std::chrono::milliseconds(50)).ok());
  }
  EXPECT_LT(turns, 200);
}

TEST_F(PvBackend, AFrontendThatClosesIsReleasedAndMayStartOver) {
  Frontend& f = add_frontend(1);
  ASSERT_TRUE(turn_until([&] { return backend_state(1) == XenbusState::kInitWait; }));
  ASSERT_TRUE(f.publish().ok());
  ASSERT_TRUE(turn_until([&] { return backend_state(1) == XenbusState::kConnected; }));
  ASSERT_TRUE(f.p.xenstore->write(kNoTransaction, f.dir + "/state", "5").ok());
  ASSERT_TRUE(turn_until([&] { return backend_state(1) == XenbusState::kClosed; }));
  EXPECT_EQ(backend->holdings().ring_mappings, 0u);
  EXPECT_EQ(backend->holdings().event_channels, 0u);
  EXPECT_TRUE(status().mappings.empty());
  // Linux's frontends go back to Initialising to reconnect.
  ASSERT_TRUE(f.p.xenstore->write(kNoTransaction, f.dir + "/state", "1").ok());
  ASSERT_TRUE(turn_until([&] { return backend_state(1) == XenbusState::kInitWait; }));
  ASSERT_TRUE(f.page.end().ok());
  ASSERT_TRUE(f.p.events->unbind(f.port).ok());
  ASSERT_TRUE(f.publish().ok());
  ASSERT_TRUE(turn_until([&] { return backend_state(1) == XenbusState::kConnected; }));
  echo(f, 40);
}

// Watches drive the backend: with scans a minute apart, a new device, the
// frontend's states and the device's removal are seen at once, and an idle
// loop sleeps (its own writes do not wake it).
TEST_F(PvBackend, WatchesDriveItBetweenScans) {
  backend = std::make_unique<Backend>(be, protocol,
                                      BackendConfig{std::chrono::minutes(1), 0, "test-be"});
  ASSERT_TRUE(backend->turn(std::chrono::milliseconds(5)).ok());
  Frontend& f = add_frontend(1);
  ASSERT_TRUE(turn_until([&] { return backend_state(1) == XenbusState::kInitWait; }));
  ASSERT_TRUE(f.publish().ok());
  ASSERT_TRUE(turn_until([&] { return backend_state(1) == XenbusState::kConnected; }));
  echo(f, 10);
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  int turns = 0;
  for (; std::chrono::steady_clock::now() < end; ++turns) {
    ASSERT_TRUE(backend->turn(std::chrono::milliseconds(100)).ok());
  }
  EXPECT_LE(turns, 8);
  ASSERT_TRUE(f.p.xenstore->write(kNoTransaction, f.dir + "/state", "5").ok());
  ASSERT_TRUE(turn_until([&] { return backend_state(1) == XenbusState::kClosed; }));
  EXPECT_EQ(backend->holdings().ring_mappings, 0u);
  ASSERT_TRUE(remove_device(*be.xenstore, "vtest", 0, 1, 0, std::chrono::milliseconds(0)).ok());
  ASSERT_TRUE(turn_until([&] { return backend->holdings().devices == 0; }));
}

TEST_F(PvBackend, AHostileRingClosesOnlyItsDevice) {
  Frontend& bad = add_frontend(1);
  Frontend& good = add_frontend(2);
  ASSERT_TRUE(turn_until([&] {
    return backend_state(1) == XenbusState::kInitWait && backend_state(2) == XenbusState::kInitWait;
  }));
  ASSERT_TRUE(bad.publish().ok());
  ASSERT_TRUE(good.publish().ok());
  ASSERT_TRUE(turn_until([&] {
    return backend_state(1) == XenbusState::kConnected &&
           backend_state(2) == XenbusState::kConnected;
  }));
  // A producer index far ahead of anything the ring can hold.
  std::uint32_t far = 1000;
  std::memcpy(bad.page.memory().data(), &far, 4);
  ASSERT_TRUE(bad.p.events->notify(bad.port).ok());
  ASSERT_TRUE(turn_until([&] { return backend_state(1) == XenbusState::kClosed; }));
  auto error = be.xenstore->read(kNoTransaction, backend_path("vtest", 0, 1, 0) + "/error");
  ASSERT_TRUE(error.ok());
  EXPECT_NE(error->find("producer index 1000"), std::string::npos) << *error;
  EXPECT_EQ(backend->holdings().ring_mappings, 1u);
  echo(good, 100);
}

TEST_F(PvBackend, ARemovedDeviceIsForgottenAndHoldsNothing) {
  Frontend& f = add_frontend(1);
  ASSERT_TRUE(turn_until([&] { return backend_state(1) == XenbusState::kInitWait; }));
  ASSERT_TRUE(f.publish().ok());
  ASSERT_TRUE(turn_until([&] { return backend_state(1) == XenbusState::kConnected; }));
  echo(f, 10);
  // xl destroy: Closing, the frontend's directory gone, then ours.
  Status removed = remove_device(*be.xenstore, "vtest", 0, 1, 0, std::chrono::milliseconds(0));
  EXPECT_TRUE(removed.ok() || removed.code() == ETIMEDOUT) << removed.error().describe();
  ASSERT_TRUE(turn_until([&] { return backend->holdings().devices == 0; }));
  EXPECT_EQ(backend->holdings().ring_mappings, 0u);
  EXPECT_TRUE(status().mappings.empty());
  EXPECT_FALSE(backend_state(1).has_value());
}

TEST_F(PvBackend, ABadConfigurationIsAnErrorOfThatDevice) {
  Frontend& f = add_frontend(1);
  ASSERT_TRUE(turn_until([&] { return backend_state(1) == XenbusState::kInitWait; }));
  ASSERT_TRUE(f.p.xenstore->write(kNoTransaction, f.dir + "/ring-ref", "12x").ok());
  ASSERT_TRUE(f.p.xenstore->write(kNoTransaction, f.dir + "/event-channel", "1").ok());
  ASSERT_TRUE(f.p.xenstore->write(kNoTransaction, f.dir + "/state", "3").ok());
  ASSERT_TRUE(turn_until([&] { return backend_state(1) == XenbusState::kClosed; }));
  auto error = be.xenstore->read(kNoTransaction, backend_path("vtest", 0, 1, 0) + "/error");
  ASSERT_TRUE(error.ok());
  EXPECT_NE(error->find("ring-ref is not a decimal number"), std::string::npos) << *error;
  EXPECT_EQ(backend->holdings().ring_mappings, 0u);
}

// Only a connected device is ticked, each time its wakeup has passed, never
// early, and no more once it asks for none.
TEST_F(PvBackend, ATimerTicksAConnectedDeviceWhenItsWakeupPasses) {
  backend = std::make_unique<Backend>(be, timers,
                                      BackendConfig{std::chrono::milliseconds(5), 0, "test-be"});
  Frontend& f = add_frontend(1);
  ASSERT_TRUE(turn_until([&] { return backend_state(1) == XenbusState::kInitWait; }));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(backend->turn(std::chrono::milliseconds(1)).ok());
  EXPECT_EQ(timers.counts[1].ticks, 0);
  ASSERT_TRUE(f.publish().ok());
  ASSERT_TRUE(turn_until([&] { return timers.counts[1].ticks == 3; }));
  EXPECT_EQ(backend_state(1), XenbusState::kConnected);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(backend->turn(std::chrono::milliseconds(1)).ok());
  EXPECT_EQ(timers.counts[1].ticks, 3);
  echo(f, 5);
}

TEST_F(PvBackend, AFailingTickClosesOnlyItsDevice) {
  timers.counts[1].fail_last = true;
  timers.counts[2].ticks_wanted = 1000000;
  backend = std::make_unique<Backend>(be, timers,
                                      BackendConfig{std::chrono::milliseconds(5), 0, "test-be"});
  Frontend& bad = add_frontend(1);
  Frontend& good = add_frontend(2);
  ASSERT_TRUE(turn_until([&] {
    return backend_state(1) == XenbusState::kInitWait && backend_state(2) == XenbusState::kInitWait;
  }));
  ASSERT_TRUE(bad.publish().ok());
  ASSERT_TRUE(good.publish().ok());
  ASSERT_TRUE(turn_until([&] { return backend_state(1) == XenbusState::kClosed; }));
  auto error = be.xenstore->read(kNoTransaction, backend_path("vtest", 0, 1, 0) + "/error");
  ASSERT_TRUE(error.ok());
  EXPECT_NE(error->find("the timed work failed"), std::string::npos) << *error;
  EXPECT_EQ(backend_state(2), XenbusState::kConnected);
  const int before = timers.counts[2].ticks;
  ASSERT_TRUE(turn_until([&] { return timers.counts[2].ticks > before + 2; }));
  echo(good, 5);
}

}  // namespace
}  // namespace shbuf::pv
