// The simulator's event channels: binding across processes, notifying both
// ways through the pollable descriptor, masking, what is refused, closing
// (by unbind, by a process's death) and a damaged table.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "pv/evtchn.h"
#include "pv/platform.h"
#include "pv/sim/evtchn.h"
#include "pv/sim/mailbox.h"
#include "test_sim_util.h"

namespace shbuf::simtest {
namespace {

using pv::EventChannels;
using pv::Port;
using pv::sim::PortRec;
using pv::sim::PortState;
using pv::sim::SimPort;
using ::testing::HasSubstr;

// Whether the descriptor becomes readable within `ms`.
bool readable(const EventChannels& ev, int ms) {
  pollfd pfd{ev.fd(), POLLIN, 0};
  return poll(&pfd, 1, ms) == 1 && (pfd.revents & POLLIN) != 0;
}

// The next event within `ms`, waiting on the descriptor; nullopt on timeout
// or error.
std::optional<Port> wait_event(EventChannels& ev, int ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    auto p = ev.pending();
    if (!p.ok()) return std::nullopt;
    if (p->has_value()) return **p;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd pfd{ev.fd(), POLLIN, 0};
    (void)poll(&pfd, 1, int(left.count()));
  }
}

// No event now, nor within `ms`.
bool quiet(EventChannels& ev, int ms) {
  if (readable(ev, ms)) return false;
  auto p = ev.pending();
  return p.ok() && !p->has_value();
}

// Kills and reaps a child the test did not see out (a failed assertion).
struct Reaper {
  pid_t pid = -1;
  explicit Reaper(pid_t p) : pid(p) {}
  ~Reaper() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      (void)wait_for(pid);
    }
  }
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;
  int wait() { return wait_for(std::exchange(pid, -1)); }
};

class SimEvtchn : public SimTest {
 protected:
  void SetUp() override {
    SimTest::SetUp();
    grants = open(0);
    ASSERT_NE(grants, nullptr);
  }

  std::unique_ptr<EventChannels> events(DomId self) {
    auto ev = pv::open_sim_events(path, self);
    EXPECT_TRUE(ev.ok()) << (ev.ok() ? "" : ev.error().describe());
    return ev.ok() ? std::move(ev).value() : nullptr;
  }

  // In a child: the events of `self`, or exit 90.
  std::unique_ptr<EventChannels> child_events(DomId self) {
    auto ev = pv::open_sim_events(path, self);
    if (!ev.ok()) _exit(90);
    return std::move(ev).value();
  }

  std::vector<SimPort> ports() {
    auto s = pv::sim::sim_event_status(path);
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().describe());
    return s.ok() ? std::move(s).value() : std::vector<SimPort>{};
  }

  std::optional<SimPort> port_of(DomId domid, Port port) {
    for (const SimPort& p : ports()) {
      if (p.domid == domid && p.port == port) return p;
    }
    return std::nullopt;
  }

  std::string table_path() const { return path + "/evtchn"; }

  // The table's records as the file holds them, without sweeping.
  std::vector<PortRec> raw_records() {
    std::vector<PortRec> recs(pv::sim::kEvtchnRecords);
    const int fd = ::open(table_path().c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    const ssize_t want = ssize_t(recs.size() * sizeof(PortRec));
    EXPECT_EQ(pread(fd, recs.data(), std::size_t(want), sizeof(pv::sim::EvtchnHeader)), want);
    close(fd);
    return recs;
  }

  // The index of (domid, port)'s record in the file, or -1.
  int raw_index(DomId domid, Port port) {
    const auto recs = raw_records();
    for (std::size_t i = 0; i < recs.size(); ++i) {
      if (recs[i].state != 0 && recs[i].domid == domid && recs[i].port == port) return int(i);
    }
    return -1;
  }

  void write_at(off_t offset, const void* p, std::size_t n) {
    const int fd = ::open(table_path().c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(pwrite(fd, p, n, offset), ssize_t(n));
    close(fd);
  }

  static off_t record_offset(int i) {
    return off_t(sizeof(pv::sim::EvtchnHeader) + std::size_t(i) * sizeof(PortRec));
  }

  // Two handles in this process, domain 0's port `a_port` joined to domain
  // 1's `b_port`.
  void join(std::unique_ptr<EventChannels>& a, Port& a_port, std::unique_ptr<EventChannels>& b,
            Port& b_port) {
    a = events(0);
    b = events(1);
    ASSERT_TRUE(a && b);
    auto pa = a->bind_unbound(1);
    ASSERT_TRUE(pa.ok()) << pa.error().describe();
    auto pb = b->bind_interdomain(0, *pa);
    ASSERT_TRUE(pb.ok()) << pb.error().describe();
    // The event a new binding starts with, as on Xen.
    ASSERT_EQ(wait_event(*b, 5000), std::optional<Port>(*pb));
    ASSERT_TRUE(b->unmask(*pb).ok());
    a_port = *pa;
    b_port = *pb;
  }

  std::unique_ptr<SimProvider> grants;
};

TEST_F(SimEvtchn, BindsAndNotifiesBothWaysAcrossProcesses) {
  auto a = events(0);
  ASSERT_TRUE(a);
  auto pa = a->bind_unbound(1);
  ASSERT_TRUE(pa.ok()) << pa.error().describe();
  EXPECT_EQ(*pa, 1u);
  const Port a_port = *pa;
  Pipe up, down;
  Reaper child(spawn([&] {
    up.writer();
    down.reader();
    auto b = child_events(1);
    auto pb = b->bind_interdomain(0, a_port);
    if (!pb.ok()) return 91;
    if (!up.put(*pb)) return 92;
    if (!readable(*b, 5000)) return 93;
    auto got = b->pending();
    if (!got.ok() || !got->has_value() || **got != *pb) return 94;
    if (!b->unmask(*pb).ok()) return 95;
    if (!b->notify(*pb).ok()) return 96;
    Port done = 0;
    return down.get(done) ? 0 : 97;
  }));
  up.reader();
  down.writer();
  Port b_port = 0;
  ASSERT_TRUE(up.get(b_port)) << describe_wait(child.wait());
  const auto theirs = port_of(1, b_port);
  ASSERT_TRUE(theirs);
  EXPECT_EQ(theirs->state, PortState::kInterdomain);
  EXPECT_EQ(theirs->remote_dom, 0);
  EXPECT_EQ(theirs->remote_port, a_port);
  const auto ours = port_of(0, a_port);
  ASSERT_TRUE(ours);
  EXPECT_EQ(ours->state, PortState::kInterdomain);
  EXPECT_EQ(ours->remote_dom, 1);
  EXPECT_EQ(ours->remote_port, b_port);

  ASSERT_TRUE(a->notify(a_port).ok());
  EXPECT_TRUE(readable(*a, 5000));
  EXPECT_EQ(wait_event(*a, 5000), std::optional<Port>(a_port));
  ASSERT_TRUE(down.put(0));
  const int st = child.wait();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << describe_wait(st);
}

TEST_F(SimEvtchn, AMaskedPortKeepsOneEventUntilUnmasked) {
  std::unique_ptr<EventChannels> a, b;
  Port pa = 0, pb = 0;
  join(a, pa, b, pb);
  ASSERT_TRUE(a->notify(pa).ok());
  EXPECT_EQ(wait_event(*b, 5000), std::optional<Port>(pb));
  EXPECT_TRUE(port_of(1, pb)->masked);
  ASSERT_TRUE(a->notify(pa).ok());
  ASSERT_TRUE(a->notify(pa).ok());
  EXPECT_TRUE(quiet(*b, 100));
  const auto kept = port_of(1, pb);
  EXPECT_TRUE(kept->pending);
  EXPECT_TRUE(kept->masked);
  ASSERT_TRUE(b->unmask(pb).ok());
  EXPECT_EQ(wait_event(*b, 5000), std::optional<Port>(pb));
  EXPECT_TRUE(quiet(*b, 100));
  // Unmasked with nothing pending: the next notify comes through at once.
  ASSERT_TRUE(b->unmask(pb).ok());
  EXPECT_TRUE(quiet(*b, 50));
  ASSERT_TRUE(a->notify(pa).ok());
  EXPECT_EQ(wait_event(*b, 5000), std::optional<Port>(pb));
  // The sender's side saw nothing of it.
  EXPECT_TRUE(quiet(*a, 50));
}

TEST_F(SimEvtchn, AFullMailboxDelaysAnEventWithoutLosingIt) {
  std::unique_ptr<EventChannels> a, b;
  Port pa = 0, pb = 0;
  join(a, pa, b, pb);
  const int i = raw_index(1, pb);
  ASSERT_GE(i, 0);
  const pv::sim::MailboxAddress owner = raw_records()[std::size_t(i)].owner;
  auto key = pv::sim::instance_key(path);
  ASSERT_TRUE(key.ok());
  int sent = 0;
  while (sent < 100000 && pv::sim::send_to(*key, owner, "junk").ok()) ++sent;
  ASSERT_LT(sent, 100000) << "the mailbox never filled";
  ASSERT_TRUE(a->notify(pa).ok());
  const auto waiting = port_of(1, pb);
  EXPECT_TRUE(waiting->pending);
  EXPECT_FALSE(waiting->masked);
  EXPECT_EQ(wait_event(*b, 5000), std::optional<Port>(pb));
  EXPECT_TRUE(port_of(1, pb)->masked);
  EXPECT_TRUE(quiet(*b, 50));
}

TEST_F(SimEvtchn, RefusesToBindWhatIsNotUnboundForUs) {
  auto a = events(0);
  auto b = events(1);
  auto c = events(2);
  ASSERT_TRUE(a && b && c);
  auto pa = a->bind_unbound(1);
  ASSERT_TRUE(pa.ok());
  auto pa2 = a->bind_unbound(1);
  ASSERT_TRUE(pa2.ok());
  EXPECT_EQ(*pa2, *pa + 1);
  auto pc = c->bind_unbound(1);
  ASSERT_TRUE(pc.ok());
  EXPECT_EQ(*pc, 1u);

  // Allocated for domain 1, not 2.
  auto wrong_domain = c->bind_interdomain(0, *pa);
  ASSERT_FALSE(wrong_domain.ok());
  EXPECT_EQ(wrong_domain.error().code, EINVAL);
  EXPECT_THAT(wrong_domain.error().message, HasSubstr("waits for domain 1"));
  // Domain 0's port 2 exists, domain 2's does not.
  auto other_domains = b->bind_interdomain(2, *pa2);
  ASSERT_FALSE(other_domains.ok());
  EXPECT_EQ(other_domains.error().code, EINVAL);
  for (const Port missing : {0u, 999u, 4096u, 0xffffffffu}) {
    auto none = b->bind_interdomain(0, missing);
    ASSERT_FALSE(none.ok()) << missing;
    EXPECT_EQ(none.error().code, EINVAL);
  }
  auto reserved = b->bind_interdomain(kDomIdFirstReserved, 1);
  ASSERT_FALSE(reserved.ok());
  EXPECT_EQ(reserved.error().code, EINVAL);
  auto reserved_unbound = a->bind_unbound(kDomIdFirstReserved);
  ASSERT_FALSE(reserved_unbound.ok());
  EXPECT_EQ(reserved_unbound.error().code, EINVAL);

  auto pb = b->bind_interdomain(0, *pa);
  ASSERT_TRUE(pb.ok()) << pb.error().describe();
  // Now bound: not again.
  auto twice = b->bind_interdomain(0, *pa);
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code, EINVAL);
  // Domain 2's unbound port is refused to domain 0 as well.
  auto not_for_a = a->bind_interdomain(2, *pc);
  ASSERT_FALSE(not_for_a.ok());
  EXPECT_EQ(not_for_a.error().code, EINVAL);
}

TEST_F(SimEvtchn, RefusesReservedDomainsAndMissingInstances) {
  auto reserved = pv::open_sim_events(path, kDomIdFirstReserved);
  ASSERT_FALSE(reserved.ok());
  EXPECT_EQ(reserved.error().code, EINVAL);
  auto missing = pv::open_sim_events(path + "-none", 0);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ENOENT);
}

TEST_F(SimEvtchn, PortsOfAnotherHandleAreNotConnected) {
  std::unique_ptr<EventChannels> a, b;
  Port pa = 0, pb = 0;
  join(a, pa, b, pb);
  auto other = events(0);  // the same domain, another handle
  ASSERT_TRUE(other);
  for (const Port p : {pa, Port(77)}) {
    EXPECT_EQ(other->notify(p).code(), ENOTCONN) << p;
    EXPECT_EQ(other->unmask(p).code(), ENOTCONN) << p;
    EXPECT_EQ(other->unbind(p).code(), ENOTCONN) << p;
  }
  EXPECT_EQ(a->notify(pa + 1).code(), ENOTCONN);
  // Still joined and working.
  ASSERT_TRUE(a->notify(pa).ok());
  EXPECT_EQ(wait_event(*b, 5000), std::optional<Port>(pb));
}

TEST_F(SimEvtchn, UnbindLeavesTheOtherEndUnboundAndBindableAgain) {
  std::unique_ptr<EventChannels> a, b;
  Port pa = 0, pb = 0;
  join(a, pa, b, pb);
  ASSERT_TRUE(b->unbind(pb).ok());
  EXPECT_FALSE(port_of(1, pb));
  const auto left = port_of(0, pa);
  ASSERT_TRUE(left);
  EXPECT_EQ(left->state, PortState::kUnbound);
  EXPECT_EQ(left->remote_dom, 1);
  EXPECT_EQ(b->notify(pb).code(), ENOTCONN);
  // Nobody to tell.
  ASSERT_TRUE(a->notify(pa).ok());
  EXPECT_TRUE(quiet(*b, 100));
  EXPECT_TRUE(quiet(*a, 10));

  auto again = b->bind_interdomain(0, pa);
  ASSERT_TRUE(again.ok()) << again.error().describe();
  ASSERT_TRUE(a->notify(pa).ok());
  EXPECT_EQ(wait_event(*b, 5000), std::optional<Port>(*again));

  // Destroying a handle closes its ports the same way.
  b.reset();
  const auto after = port_of(0, pa);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->state, PortState::kUnbound);
  EXPECT_EQ(ports().size(), 1u);
}

TEST_F(SimEvtchn, AKilledProcessLosesItsPorts) {
  auto a = events(0);
  ASSERT_TRUE(a);
  auto pa = a->bind_unbound(1);
  ASSERT_TRUE(pa.ok());
  const Port a_port = *pa;
  Pipe up;
  Reaper child(spawn([&] {
    up.writer();
    auto b = child_events(1);
    auto pb = b->bind_interdomain(0, a_port);
    if (!pb.ok()) return 91;
    auto spare = b->bind_unbound(0);
    if (!spare.ok()) return 92;
    if (!up.put(*pb)) return 93;
    pause();
    return 94;
  }));
  up.reader();
  Port b_port = 0;
  ASSERT_TRUE(up.get(b_port)) << describe_wait(child.wait());
  EXPECT_EQ(ports().size(), 3u);
  kill(child.pid, SIGKILL);
  const int st = child.wait();
  ASSERT_TRUE(WIFSIGNALED(st)) << describe_wait(st);

  // The records stay until someone looks; a bind sweeps them.
  EXPECT_GE(raw_index(1, b_port), 0);
  auto other = a->bind_unbound(2);
  ASSERT_TRUE(other.ok()) << other.error().describe();
  for (const PortRec& r : raw_records()) {
    EXPECT_FALSE(r.state != 0 && r.domid == 1) << "domain 1's port " << r.port << " is left";
  }
  const auto left = port_of(0, a_port);
  ASSERT_TRUE(left);
  EXPECT_EQ(left->state, PortState::kUnbound);
  EXPECT_EQ(left->remote_dom, 1);
  EXPECT_EQ(ports().size(), 2u);

  // Another domain 1 may take the channel again.
  auto b = events(1);
  ASSERT_TRUE(b);
  auto pb = b->bind_interdomain(0, a_port);
  ASSERT_TRUE(pb.ok()) << pb.error().describe();
  ASSERT_TRUE(a->notify(a_port).ok());
  EXPECT_EQ(wait_event(*b, 5000), std::optional<Port>(*pb));
}

TEST_F(SimEvtchn, NotifyingADeadPeerUnbindsIt) {
  auto a = events(0);
  ASSERT_TRUE(a);
  auto pa = a->bind_unbound(1);
  ASSERT_TRUE(pa.ok());
  const Port a_port = *pa;
  Pipe up, up2;
  Reaper child(spawn([&] {
    up.writer();
    auto b = child_events(1);
    auto pb = b->bind_interdomain(0, a_port);
    // Takes the event the binding starts with, so that the port is unmasked.
    if (!pb.ok() || wait_event(*b, 5000) != std::optional<Port>(*pb) || !b->unmask(*pb).ok() ||
        !up.put(*pb)) {
      return 91;
    }
    pause();
    return 92;
  }));
  up.reader();
  Port b_port = 0;
  ASSERT_TRUE(up.get(b_port)) << describe_wait(child.wait());
  kill(child.pid, SIGKILL);
  (void)child.wait();
  ASSERT_GE(raw_index(1, b_port), 0);
  ASSERT_TRUE(a->notify(a_port).ok());
  EXPECT_LT(raw_index(1, b_port), 0);
  const int i = raw_index(0, a_port);
  ASSERT_GE(i, 0);
  const PortRec r = raw_records()[std::size_t(i)];
  EXPECT_EQ(r.state, std::uint32_t(PortState::kUnbound));
  EXPECT_EQ(r.remote_dom, 1);

  // And a sweep alone does the same for a port nobody notifies.
  Reaper child2(spawn([&] {
    up2.writer();
    auto b = child_events(3);
    auto pb = b->bind_unbound(0);
    if (!pb.ok() || !up2.put(*pb)) return 91;
    pause();
    return 92;
  }));
  up2.reader();
  ASSERT_TRUE(up2.get(b_port)) << describe_wait(child2.wait());
  kill(child2.pid, SIGKILL);
  (void)child2.wait();
  ASSERT_GE(raw_index(3, b_port), 0);
  ASSERT_TRUE(pv::sim::sweep_sim_events(path).ok());
  EXPECT_LT(raw_index(3, b_port), 0);
}

TEST_F(SimEvtchn, ATableLeftEmptyOrZeroedByItsMakerIsMadeAgain) {
  {
    auto a = events(0);
    ASSERT_TRUE(a);
  }
  ASSERT_EQ(truncate(table_path().c_str(), 0), 0);
  auto a = events(0);
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->bind_unbound(1).ok());
  a.reset();
  const std::vector<char> zeros(sizeof(pv::sim::EvtchnHeader), 0);
  write_at(0, zeros.data(), zeros.size());
  a = events(0);
  ASSERT_TRUE(a);
  auto p = a->bind_unbound(1);
  ASSERT_TRUE(p.ok()) << p.error().describe();
  EXPECT_EQ(*p, 1u);
  EXPECT_EQ(ports().size(), 1u);
}

class SimEvtchnDamage : public SimEvtchn {
 protected:
  // What a refusal must also say; a damage may set it.
  std::string must_say;

  // A joined pair, then `damage` applied to the file: every operation and a
  // new handle are refused with EUCLEAN, none crashes.
  template <typename Damage>
  void expect_refused(Damage damage) {
    std::unique_ptr<EventChannels> a, b;
    Port pa = 0, pb = 0;
    join(a, pa, b, pb);
    damage(pa, pb);
    auto expect_euclean = [&](const Error& e, const char* what) {
      EXPECT_EQ(e.code, EUCLEAN) << what << ": " << e.describe();
      EXPECT_THAT(e.message, HasSubstr("shbuf sim reset --sim " + path)) << what;
      EXPECT_THAT(e.message, HasSubstr(must_say)) << what;
    };
    expect_euclean(a->notify(pa).error(), "notify");
    expect_euclean(b->unmask(pb).error(), "unmask");
    expect_euclean(a->unbind(pa).error(), "unbind");
    auto bound = a->bind_unbound(1);
    ASSERT_FALSE(bound.ok());
    expect_euclean(bound.error(), "bind_unbound");
    auto opened = pv::open_sim_events(path, 2);
    ASSERT_FALSE(opened.ok());
    expect_euclean(opened.error(), "open");
    auto listed = pv::sim::sim_event_status(path);
    ASSERT_FALSE(listed.ok());
    expect_euclean(listed.error(), "status");
    // Reset clears it.
    a.reset();
    b.reset();
    ASSERT_TRUE(SimProvider::reset(path).ok());
    grants = open(0);
    ASSERT_NE(grants, nullptr);
    auto fresh = events(0);
    ASSERT_TRUE(fresh);
    EXPECT_TRUE(fresh->bind_unbound(1).ok());
  }
};

TEST_F(SimEvtchnDamage, BadMagic) {
  expect_refused([&](Port, Port) { write_at(0, "XXXX", 4); });
}

TEST_F(SimEvtchnDamage, BadVersion) {
  expect_refused([&](Port, Port) {
    const std::uint32_t v = 99;
    write_at(offsetof(pv::sim::EvtchnHeader, version), &v, sizeof v);
  });
}

TEST_F(SimEvtchnDamage, BadState) {
  expect_refused([&](Port pa, Port) {
    const int i = raw_index(0, pa);
    ASSERT_GE(i, 0);
    const std::uint32_t state = 7;
    write_at(record_offset(i) + off_t(offsetof(PortRec, state)), &state, sizeof state);
    // The refusal names the record and what is wrong with it.
    must_say = "port record " + std::to_string(i) + " has state 7 (0..2)";
  });
}

TEST_F(SimEvtchnDamage, HugeRemotePort) {
  expect_refused([&](Port, Port pb) {
    const int i = raw_index(1, pb);
    ASSERT_GE(i, 0);
    const std::uint32_t port = 0xfffffff0u;
    write_at(record_offset(i) + off_t(offsetof(PortRec, remote_port)), &port, sizeof port);
  });
}

TEST_F(SimEvtchnDamage, ReservedDomid) {
  expect_refused([&](Port pa, Port) {
    const int i = raw_index(0, pa);
    ASSERT_GE(i, 0);
    const std::uint16_t domid = 0xfff0;
    write_at(record_offset(i) + off_t(offsetof(PortRec, domid)), &domid, sizeof domid);
  });
}

TEST_F(SimEvtchnDamage, DuplicatePort) {
  expect_refused([&](Port pa, Port) {
    const int i = raw_index(0, pa);
    ASSERT_GE(i, 0);
    PortRec copy = raw_records()[std::size_t(i)];
    copy.state = std::uint32_t(PortState::kUnbound);
    copy.remote_port = 0;
    write_at(record_offset(int(pv::sim::kEvtchnRecords) - 1), &copy, sizeof copy);
  });
}

TEST_F(SimEvtchnDamage, Truncated) {
  expect_refused([&](Port, Port) { ASSERT_EQ(truncate(table_path().c_str(), 100), 0); });
}

TEST_F(SimEvtchnDamage, TruncatedToAFewRecords) {
  expect_refused(
      [&](Port, Port) { ASSERT_EQ(truncate(table_path().c_str(), record_offset(3)), 0); });
}

}  // namespace
}  // namespace shbuf::simtest
