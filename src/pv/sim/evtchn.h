// The simulator's event channels: one table of ports shared by the processes
// of a sim instance (the file `evtchn` beside its state), each port owned by
// the mailbox of the handle that bound it. A notify marks the other end
// pending and, unless it is masked, sends its port number to its owner's
// mailbox; the owner's pending() reads it. All access is under the instance
// lock, and nothing read from the file is trusted.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pv/evtchn.h"
#include "shbuf/core/result.h"
#include "shbuf/core/xen_types.h"

namespace shbuf::pv::sim {

inline constexpr char kEvtchnMagic[8] = {'S', 'H', 'B', 'U', 'F', 'E', 'V', 'T'};
inline constexpr std::uint32_t kEvtchnVersion = 1;
inline constexpr std::uint32_t kEvtchnRecords = 4096;
// Ports are 1 .. kEvtchnPortLimit - 1 in each domain (0 is never a port).
inline constexpr std::uint32_t kEvtchnPortLimit = 4096;

enum class PortState : std::uint32_t { kFree = 0, kUnbound = 1, kInterdomain = 2 };

struct EvtchnHeader {
  char magic[8];
  std::uint32_t version;
  std::uint32_t nr_records;
  std::uint32_t record_size;
  std::uint32_t reserved[11];
};
static_assert(sizeof(EvtchnHeader) == 64);

// One port: (domid, port) names it. An unbound port waits for remote_dom to
// bind it; an interdomain one is joined to (remote_dom, remote_port).
struct PortRec {
  std::uint32_t state;  // a PortState
  std::uint16_t domid;
  std::uint16_t remote_dom;
  std::uint32_t port;
  std::uint32_t remote_port;  // 0 unless interdomain
  std::uint64_t owner;        // the owning handle's MailboxAddress
  std::uint8_t pending;
  std::uint8_t masked;
  std::uint8_t reserved[6];
};
static_assert(sizeof(PortRec) == 32);

inline constexpr std::size_t kEvtchnFileSize =
    sizeof(EvtchnHeader) + kEvtchnRecords * sizeof(PortRec);

// A port as `shbuf sim status` and the tests see it.
struct SimPort {
  DomId domid = 0;
  Port port = 0;
  PortState state = PortState::kFree;
  DomId remote_dom = 0;
  Port remote_port = 0;  // 0 unless interdomain
  bool pending = false;
  bool masked = false;
  bool owner_alive = false;
};

// The bound ports of the instance at `dir`, by domain and port, after closing
// those of dead processes. Empty when no process has used event channels.
Result<std::vector<SimPort>> sim_event_status(const std::string& dir);

// Closes the ports whose owning process is gone (the other end of each
// becomes unbound again). Handles do this themselves when they bind.
Status sweep_sim_events(const std::string& dir);

}  // namespace shbuf::pv::sim
