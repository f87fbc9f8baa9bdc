// What our user-space PV frontends share (the display one in pv/displ, the
// sound one in pv/snd): the xenbus side of a device, with its directory, its
// backend and both states, and the channels a frontend publishes, each a
// request ring and an event page with an event channel for the backend to
// bind.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "pv/platform.h"
#include "pv/ring.h"
#include "pv/xenbus.h"

namespace shbuf::pv {

// Milliseconds left until `deadline`, at least 0.
int remaining_ms(std::chrono::steady_clock::time_point deadline);

// A request ring and an event page shared with the backend (read-write),
// each with an unbound event channel for it.
struct FrontChannel {
  Share req_page;
  Share evt_page;
  FrontRing req;
  EventConsumer evt;
  Port req_port = 0;
  Port evt_port = 0;

  static Result<FrontChannel> open(Platform& platform, DomId backend, std::size_t entry_size);
  // Unbinds both channels and ends both shares.
  void release(Platform& platform);
};

class FrontendLink {
 public:
  using Nodes = std::vector<std::pair<std::string, std::string>>;

  // Reads what the toolstack wrote in our directory of device `kind`/`devid`
  // (backend-id, backend); waits of this link last at most `timeout`.
  static Result<FrontendLink> open(Platform& platform, const std::string& kind, std::uint32_t devid,
                                   std::chrono::milliseconds timeout);

  const std::string& dir() const { return dir_; }
  const std::string& backend_dir() const { return backend_dir_; }
  DomId backend() const { return backend_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  // <our directory>/<key>.
  Result<std::string> read(const std::string& key) const;
  Status set_state(XenbusState state);
  // Waits for the backend's InitWait. When an earlier frontend of the
  // device left it Closed, starts over from Initialising first, as Linux's
  // frontends do, and the backend's Closed then means it has yet to leave
  // it; otherwise that Closed refuses (see wait_backend).
  Status wait_backend_ready();
  // Waits for the backend's state to be `want`; its Closed is ECONNREFUSED
  // (with the backend's `error`) unless `closed_refuses` is false.
  Status wait_backend(XenbusState want, bool closed_refuses = true);
  // Drains pending ports, waiting at most `ms` for the first.
  Status wait_events(int ms);
  // Writes `nodes` (keys relative to our directory) and state Initialised
  // in one transaction, so that the backend never reads half of them; tries
  // again while xenstore changes under it.
  Status publish(const Nodes& nodes);
  // The four keys of `channel` under `prefix` ("0/"), the request ring's
  // named `ring_key` and `port_key` as the protocol names them.
  // Closing, then (unless the toolstack removed the device already) waits
  // for the backend's Closed; `release` lets go of the frontend's things in
  // between, and then Closed.
  Status close(const std::function<void()>& release);
  static void add_channel(Nodes& nodes, const std::string& prefix, const FrontChannel& channel,
                          const std::string& ring_key, const std::string& port_key);

 private:
  FrontendLink(Platform& platform) : platform_(&platform) {}

  Platform* platform_;
  std::string dir_;          // ours: /local/domain/<self>/device/<kind>/<devid>
  std::string backend_dir_;  // the backend's
  DomId backend_ = 0;
  std::chrono::milliseconds timeout_{0};
};

}  // namespace shbuf::pv
