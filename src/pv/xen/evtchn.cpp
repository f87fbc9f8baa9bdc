// Event channels through libxenevtchn.
#include <fcntl.h>
// The header does not declare C linkage for C++.
extern "C" {
#include <xenevtchn.h>
}

#include <cerrno>

#include "pv/platform.h"

namespace shbuf::pv {
namespace {

class XenEvents final : public EventChannels {
 public:
  explicit XenEvents(xenevtchn_handle* h) : h_(h) {}
  ~XenEvents() override { xenevtchn_close(h_); }
  XenEvents(const XenEvents&) = delete;
  XenEvents& operator=(const XenEvents&) = delete;

  Result<Port> bind_unbound(DomId remote) override {
    const xenevtchn_port_or_error_t p = xenevtchn_bind_unbound_port(h_, remote);
    if (p < 0)
      return errno_error("cannot allocate an event channel for domain " + std::to_string(remote));
    return Port(p);
  }

  Result<Port> bind_interdomain(DomId remote, Port remote_port) override {
    const xenevtchn_port_or_error_t p = xenevtchn_bind_interdomain(h_, remote, remote_port);
    if (p < 0) {
      return errno_error("cannot bind event channel " + std::to_string(remote_port) +
                         " of domain " + std::to_string(remote));
    }
    return Port(p);
  }

  Status unbind(Port port) override {
    if (xenevtchn_unbind(h_, port) != 0)
      return errno_error("cannot unbind event channel " + std::to_string(port));
    return {};
  }

  Status notify(Port port) override {
    if (xenevtchn_notify(h_, port) != 0)
      return errno_error("cannot notify event channel " + std::to_string(port));
    return {};
  }

  int fd() const override { return xenevtchn_fd(h_); }

  Result<std::optional<Port>> pending() override {
    const xenevtchn_port_or_error_t p = xenevtchn_pending(h_);
    if (p >= 0) return std::optional<Port>(Port(p));
    if (errno == EAGAIN || errno == EWOULDBLOCK) return std::optional<Port>();
    return errno_error("cannot read pending event channels");
  }

  Status unmask(Port port) override {
    if (xenevtchn_unmask(h_, port) != 0)
      return errno_error("cannot unmask event channel " + std::to_string(port));
    return {};
  }

 private:
  xenevtchn_handle* h_;
};

}  // namespace

Result<std::unique_ptr<EventChannels>> open_xen_events() {
  xenevtchn_handle* h = xenevtchn_open(nullptr, 0);
  if (h == nullptr) return errno_error(ENODEV, "cannot open the event channel device");
  // pending() must not wait: the device's reads block unless told not to.
  const int fd = xenevtchn_fd(h);
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    Error e = errno_error("cannot make the event channel device non-blocking");
    xenevtchn_close(h);
    return e;
  }
  return std::unique_ptr<EventChannels>(std::make_unique<XenEvents>(h));
}

}  // namespace shbuf::pv
