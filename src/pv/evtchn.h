// Event channels as a PV backend or frontend sees them: ports bound to a
// port of another domain, notified both ways, delivered through one pollable
// descriptor. One implementation is libxenevtchn, the other the simulator's
// ports shared by the processes of a sim instance.
#pragma once

#include <cstdint>
#include <optional>

#include "shbuf/core/result.h"
#include "shbuf/core/xen_types.h"

namespace shbuf::pv {

// A local port number (evtchn_port_t).
using Port = std::uint32_t;

// The ports a handle binds are its own: unbind(), notify() and unmask() on a
// port this handle did not bind are refused with ENOTCONN, as Linux's evtchn
// device does. Destroying the handle (or the death of its process) closes
// its ports; the other end of an interdomain channel is then unbound again.
class EventChannels {
 public:
  virtual ~EventChannels() = default;

  // Allocates a port that `remote` may bind to (EVTCHNOP_alloc_unbound).
  virtual Result<Port> bind_unbound(DomId remote) = 0;
  // Binds a new local port to `remote`'s `remote_port`, which must be
  // unbound and allocated for us (EINVAL otherwise, as Xen refuses). As on
  // Xen, the new port starts with one event pending (the other end may have
  // signalled before it was bound).
  virtual Result<Port> bind_interdomain(DomId remote, Port remote_port) = 0;
  virtual Status unbind(Port port) = 0;
  // Signals the other end (nothing happens while it is unbound).
  virtual Status notify(Port port) = 0;

  // Readable when an event is pending.
  virtual int fd() const = 0;
  // The next port that fired, without waiting, or nullopt. A port is masked
  // when it is delivered, and delivered again only after unmask(); events
  // that come in between are kept (one) and delivered on unmask().
  virtual Result<std::optional<Port>> pending() = 0;
  virtual Status unmask(Port port) = 0;
};

}  // namespace shbuf::pv
