// Fuzzes the simulator's event channel table, the file `evtchn` that any
// process of the instance may have left in any state. Each input is a short
// program and the file's contents: three handles (two of domain 0, one of
// domain 1) bind, unbind, notify, unmask and poll ports, list and sweep the
// table, or reopen, and at a point of the program the input's bytes replace
// the file (zero-padded to its size; with the header made valid, or the file
// cut short, as the first byte asks). Whatever the file holds: no crash,
// every refusal an Error with a message and an expected errno (EUCLEAN for
// a damaged table), a port refused with ENOTCONN exactly when the handle did
// not bind it, pending() only yielding ports the handle bound, and every port
// listed within limits, joined to a port that is joined back, its owner
// alive.
//
// Input: byte 0 flags (bit 0: valid header, bits 1-3: how many operations
// run before the file is written, bits 6-7 both set: the file is only as
// long as the input gives), 8 operations of 2 bytes, then the file. An
// owner of 1, 2 or 3 in a record stands for the mailbox of handle 0, 1 or 2.

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/unique_fd.h"
#include "fuzz_sim.h"
#include "pv/evtchn.h"
#include "pv/platform.h"
#include "pv/sim/evtchn.h"

namespace {

using namespace shbuf;
using pv::Port;
using pv::sim::EvtchnHeader;
using pv::sim::kEvtchnFileSize;
using pv::sim::kEvtchnPortLimit;
using pv::sim::kEvtchnRecords;
using pv::sim::PortRec;
using pv::sim::PortState;

constexpr std::size_t kHandles = 3;
constexpr DomId kHandleDom[kHandles] = {0, 1, 0};
constexpr std::size_t kOps = 8;
constexpr std::size_t kPrefix = 1 + 2 * kOps;

// A refusal is an Error with a message and one of the codes the event
// channels give; EUCLEAN says how to reset the instance.
void expect_refusal(const Error& e) {
  if (e.message.empty()) std::abort();
  switch (e.code) {
    case EUCLEAN:
      if (e.message.find("sim reset") == std::string::npos) std::abort();
      return;
    case EINVAL:
    case ENOTCONN:
    case ENOSPC:
      return;
    default:
      std::abort();
  }
}

void expect_port(Port p) {
  if (p == 0 || p >= kEvtchnPortLimit) std::abort();
}

// The mailbox address a handle's descriptor is bound to, the number its
// records hold as owner ("\0shbuf-sim:<key>:<address>").
std::uint64_t mailbox_of(int fd) {
  sockaddr_un sa{};
  socklen_t len = sizeof sa;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) std::abort();
  const std::size_t n = len - offsetof(sockaddr_un, sun_path);
  const std::string name(sa.sun_path, n);
  const std::size_t colon = name.rfind(':');
  if (colon == std::string::npos || colon + 1 == name.size()) std::abort();
  return std::stoull(name.substr(colon + 1));
}

// The instance, its table file and the handles, made once; between inputs
// the table is empty again and every handle has no port and no event.
struct Fixture : FuzzSimDomains {
  std::array<std::unique_ptr<pv::EventChannels>, kHandles> handles;
  std::array<std::set<Port>, kHandles> bound;  // what each handle bound
  std::array<std::uint64_t, kHandles> owner{};
  UniqueFd table;
  std::vector<std::uint8_t> file = std::vector<std::uint8_t>(kEvtchnFileSize);

  Fixture() : FuzzSimDomains("evtchn") {
    for (std::size_t h = 0; h < kHandles; ++h) {
      if (!reopen(h)) std::abort();
    }
    table.reset(::open((path + "/evtchn").c_str(), O_RDWR | O_CLOEXEC));
    if (!table) std::abort();
  }

  bool reopen(std::size_t h) {
    handles[h].reset();
    bound[h].clear();
    auto ev = pv::open_sim_events(path, kHandleDom[h]);
    if (!ev.ok()) {
      expect_refusal(ev.error());
      return false;
    }
    handles[h] = std::move(ev).value();
    owner[h] = mailbox_of(handles[h]->fd());
    return true;
  }

  static void valid_header(std::uint8_t* p) {
    EvtchnHeader hdr{};
    std::memcpy(hdr.magic, pv::sim::kEvtchnMagic, sizeof hdr.magic);
    hdr.version = pv::sim::kEvtchnVersion;
    hdr.nr_records = kEvtchnRecords;
    hdr.record_size = sizeof(PortRec);
    std::memcpy(p, &hdr, sizeof hdr);
  }

  void write_file(std::size_t length) {
    if (ftruncate(table.get(), off_t(length)) != 0) std::abort();
    if (pwrite(table.get(), file.data(), length, 0) != ssize_t(length)) std::abort();
  }

  // The input's bytes as the table.
  void overwrite(const std::uint8_t* data, std::size_t size, std::uint8_t flags) {
    const std::size_t n = std::min(size, kEvtchnFileSize);
    std::memset(file.data(), 0, file.size());
    if (n != 0) std::memcpy(file.data(), data, n);
    if ((flags & 1) != 0) valid_header(file.data());
    for (std::size_t i = 0; i < kEvtchnRecords; ++i) {
      const std::size_t at = sizeof(EvtchnHeader) + i * sizeof(PortRec) + offsetof(PortRec, owner);
      if (at >= n) break;
      std::uint64_t o = 0;
      std::memcpy(&o, &file[at], sizeof o);
      if (o >= 1 && o <= kHandles) std::memcpy(&file[at], &owner[o - 1], sizeof o);
    }
    write_file((flags & 0xc0) == 0xc0 ? n : kEvtchnFileSize);
  }

  // An empty table; handles with ports are made again, the others' mailboxes
  // emptied.
  void reset() {
    std::memset(file.data(), 0, file.size());
    valid_header(file.data());
    write_file(kEvtchnFileSize);
    for (std::size_t h = 0; h < kHandles; ++h) {
      if (!handles[h] || !bound[h].empty()) {
        if (!reopen(h)) std::abort();
        continue;
      }
      auto p = handles[h]->pending();
      if (!p.ok() || p->has_value()) std::abort();
    }
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

DomId dom_arg(std::uint8_t arg) {
  return (arg & 3) == 3 ? kDomIdFirstReserved : DomId(arg & 3);
}

Port port_arg(std::uint8_t arg) {
  const unsigned s = arg >> 2;
  switch (s) {
    case 60:
      return kEvtchnPortLimit - 1;
    case 61:
      return kEvtchnPortLimit;
    case 62:
      return 0x80000000u;
    case 63:
      return 0xffffffffu;
    default:
      return s;
  }
}

// A port operation of handle h: ENOTCONN exactly for a port it did not bind.
void expect_port_op(const Status& st, const std::set<Port>& bound, Port p) {
  if (st.ok()) {
    if (bound.count(p) == 0) std::abort();
    return;
  }
  expect_refusal(st.error());
  if ((st.code() == ENOTCONN) != (bound.count(p) == 0)) std::abort();
}

void check_status(const Result<std::vector<pv::sim::SimPort>>& s) {
  if (!s.ok()) {
    expect_refusal(s.error());
    return;
  }
  const auto& ports = *s;
  for (std::size_t k = 0; k < ports.size(); ++k) {
    const auto& p = ports[k];
    if (p.domid >= kDomIdFirstReserved || p.remote_dom >= kDomIdFirstReserved) std::abort();
    expect_port(p.port);
    if (k != 0 && std::pair(ports[k - 1].domid, ports[k - 1].port) >= std::pair(p.domid, p.port)) {
      std::abort();
    }
    if (!p.owner_alive) std::abort();
    if (p.state == PortState::kUnbound) {
      if (p.remote_port != 0) std::abort();
    } else if (p.state == PortState::kInterdomain) {
      expect_port(p.remote_port);
      const auto peer = std::find_if(ports.begin(), ports.end(), [&](const auto& q) {
        return q.domid == p.remote_dom && q.port == p.remote_port;
      });
      if (peer == ports.end() || peer->state != PortState::kInterdomain ||
          peer->remote_dom != p.domid || peer->remote_port != p.port) {
        std::abort();
      }
    } else {
      std::abort();
    }
  }
}

void run(Fixture& f, std::uint8_t op, std::uint8_t arg) {
  const std::size_t h = (op / 9) % kHandles;
  auto& ev = f.handles[h];
  auto& bound = f.bound[h];
  const DomId dom = dom_arg(arg);
  const Port port = port_arg(arg);
  const unsigned kind = op % 9;
  if (!ev && kind < 6) return;  // a reopen was refused
  switch (kind) {
    case 0: {
      auto p = ev->bind_unbound(dom);
      if (!p.ok()) {
        expect_refusal(p.error());
        if (dom >= kDomIdFirstReserved && p.error().code != EINVAL) std::abort();
        break;
      }
      if (dom >= kDomIdFirstReserved) std::abort();
      expect_port(*p);
      bound.insert(*p);
      break;
    }
    case 1: {
      auto p = ev->bind_interdomain(dom, port);
      if (!p.ok()) {
        expect_refusal(p.error());
        if (dom >= kDomIdFirstReserved && p.error().code != EINVAL) std::abort();
        break;
      }
      if (dom >= kDomIdFirstReserved || port == 0 || port >= kEvtchnPortLimit) std::abort();
      expect_port(*p);
      bound.insert(*p);
      break;
    }
    case 2: {
      const Status st = ev->unbind(port);
      expect_port_op(st, bound, port);
      if (st.ok()) bound.erase(port);
      break;
    }
    case 3:
      expect_port_op(ev->notify(port), bound, port);
      break;
    case 4:
      for (int k = 0; k < 4; ++k) {
        auto p = ev->pending();
        if (!p.ok()) {
          expect_refusal(p.error());
          break;
        }
        if (!p->has_value()) break;
        if (bound.count(**p) == 0) std::abort();
      }
      break;
    case 5:
      expect_port_op(ev->unmask(port), bound, port);
      break;
    case 6:
      check_status(pv::sim::sim_event_status(f.path));
      break;
    case 7: {
      const Status st = pv::sim::sweep_sim_events(f.path);
      if (!st.ok()) expect_refusal(st.error());
      break;
    }
    default:
      (void)f.reopen(h);
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Fixture& f = fixture();
  std::uint8_t prefix[kPrefix] = {};
  std::memcpy(prefix, data, std::min(size, kPrefix));
  const std::size_t skip = std::min(size, kPrefix);
  const std::uint8_t flags = prefix[0];
  const std::size_t write_at = (flags >> 1) & 7;
  for (std::size_t k = 0; k < kOps; ++k) {
    if (k == write_at) f.overwrite(data + skip, size - skip, flags);
    run(f, prefix[1 + 2 * k], prefix[2 + 2 * k]);
  }
  check_status(pv::sim::sim_event_status(f.path));
  f.reset();
  return 0;
}
