// The peer stream between two domains, through libxenvchan: the server
// shares a ring page with gntalloc and offers an unbound event channel, and
// writes both to xenstore; the client maps the page with gntdev and binds
// the channel.
#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "cli.h"
#include "peer_stream.h"
#include "shbuf/core/result.h"

#if SHBUF_HAVE_VCHAN
// libxenvchan's header declares no C linkage of its own.
extern "C" {
#include <libxenvchan.h>
}

#include "grant/xen/quiet_logger.h"
#include "pv/platform.h"
#endif

namespace shbuf::cli {

#if SHBUF_HAVE_VCHAN
namespace {

// How often the domain on the other side is looked for in xenstore: a
// destroyed guest never says goodbye on the ring.
constexpr int kPeerCheckMs = 1000;
// How long the client waits between tries while the server is not there.
constexpr int kConnectRetryMs = 100;

std::string describe(const VchanAddress& a) {
  return fmt::format("{}:{}", a.domid, a.path);
}

// Xenstore, to tell whether the peer's domain still exists; nullptr where
// this domain may not ask (an unprivileged guest), and then the ring alone
// tells.
std::unique_ptr<pv::Xenstore> open_liveness_check(DomId peer) {
  auto xs = pv::open_xen_xenstore();
  if (!xs.ok()) return nullptr;
  std::unique_ptr<pv::Xenstore> store = std::move(xs).value();
  auto exists = store->domain_exists(peer);
  if (!exists.ok()) return nullptr;
  return store;
}

class VchanStream final : public PeerStream {
 public:
  VchanStream(libxenvchan* ctrl, DomId peer)
      : ctrl_(ctrl), peer_(peer), xenstore_(open_liveness_check(peer)) {
    ctrl_->blocking = 0;
  }
  VchanStream(const VchanStream&) = delete;
  VchanStream& operator=(const VchanStream&) = delete;
  ~VchanStream() override { libxenvchan_close(ctrl_); }

  int poll_fd() const override { return libxenvchan_fd_for_select(ctrl_); }
  // The event channel signals data, space and closing alike.
  short poll_events(bool) const override { return POLLIN; }
  void woken() override { (void)libxenvchan_wait(ctrl_); }

  Result<std::size_t> read_some(char* data, std::size_t size) override {
    const int got = libxenvchan_read(ctrl_, data, size);
    if (got < 0) return gone();
    return static_cast<std::size_t>(got);
  }

  Result<std::size_t> write_some(const char* data, std::size_t size) override {
    const int put = libxenvchan_write(ctrl_, data, size);
    if (put < 0) return gone();
    return static_cast<std::size_t>(put);
  }

  Status check_peer() override {
    if (xenstore_ == nullptr) return {};
    const long long now = now_ms();
    if (now - checked_ms_ < kPeerCheckMs) return {};
    checked_ms_ = now;
    auto exists = xenstore_->domain_exists(peer_);
    if (!exists.ok()) {
      xenstore_.reset();  // cannot tell any more: the ring alone tells
      return {};
    }
    if (!*exists) return make_error(ENOTCONN, fmt::format("domain {} is gone", peer_));
    return {};
  }

  int check_interval_ms() const override { return xenstore_ ? kPeerCheckMs : -1; }
  std::optional<DomId> peer_domain() const override { return peer_; }

 private:
  Error gone() const {
    if (!libxenvchan_is_open(ctrl_)) {
      return make_error(ENOTCONN, fmt::format("domain {} closed the vchan", peer_));
    }
    return make_error(EIO, fmt::format("the vchan to domain {} failed", peer_));
  }

  libxenvchan* ctrl_;
  DomId peer_;
  std::unique_ptr<pv::Xenstore> xenstore_;
  long long checked_ms_ = 0;
};

class Listener final : public VchanListener {
 public:
  explicit Listener(VchanAddress address) : address_(std::move(address)) {}
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener() override { libxenvchan_close(ctrl_); }

  Status offer() override {
    if (ctrl_ != nullptr) return {};
    errno = 0;
    ctrl_ =
        libxenvchan_server_init(xen::quiet_logger(), address_.domid, address_.path.c_str(), 0, 0);
    if (ctrl_ == nullptr) {
      return errno_error(errno != 0 ? errno : EIO,
                         fmt::format("cannot offer a vchan to domain {} at {} (it needs "
                                     "/dev/xen/gntalloc, /dev/xen/evtchn and xenstore)",
                                     address_.domid, address_.path));
    }
    ctrl_->blocking = 0;
    return {};
  }

  int poll_fd() const override { return ctrl_ != nullptr ? libxenvchan_fd_for_select(ctrl_) : -1; }

  Result<std::unique_ptr<PeerStream>> accept() override {
    if (ctrl_ == nullptr) return std::unique_ptr<PeerStream>();
    (void)libxenvchan_wait(ctrl_);
    switch (libxenvchan_is_open(ctrl_)) {
      case 2:  // no client yet
        return std::unique_ptr<PeerStream>();
      case 1: {
        libxenvchan* ctrl = std::exchange(ctrl_, nullptr);
        return std::unique_ptr<PeerStream>(new VchanStream(ctrl, address_.domid));
      }
      default:  // came and went already: offer a new channel
        libxenvchan_close(std::exchange(ctrl_, nullptr));
        return std::unique_ptr<PeerStream>();
    }
  }

 private:
  VchanAddress address_;
  libxenvchan* ctrl_ = nullptr;
};

}  // namespace

Result<std::unique_ptr<PeerStream>> connect_vchan(const VchanAddress& address, int timeout_ms) {
  const long long deadline = now_ms() + timeout_ms;
  while (true) {
    errno = 0;
    libxenvchan* ctrl =
        libxenvchan_client_init(xen::quiet_logger(), address.domid, address.path.c_str());
    if (ctrl != nullptr) return std::unique_ptr<PeerStream>(new VchanStream(ctrl, address.domid));
    const int e = errno != 0 ? errno : EIO;
    if (now_ms() >= deadline) {
      return errno_error(e, fmt::format("no vchan to connect to at {} within {} ms (it needs "
                                        "/dev/xen/gntdev, /dev/xen/evtchn and xenstore)",
                                        describe(address), timeout_ms));
    }
    ::usleep(kConnectRetryMs * 1000);
  }
}

Result<std::unique_ptr<VchanListener>> listen_vchan(const VchanAddress& address) {
  auto listener = std::make_unique<Listener>(address);
  SHBUF_TRY(listener->offer());
  return std::unique_ptr<VchanListener>(std::move(listener));
}

#else  // built without libxenvchan

namespace {
Error no_vchan() {
  return make_error(ENOTSUP, "this shbuf was built without libxenvchan (libxen-dev): no --vchan");
}
}  // namespace

Result<std::unique_ptr<PeerStream>> connect_vchan(const VchanAddress&, int) {
  return no_vchan();
}

Result<std::unique_ptr<VchanListener>> listen_vchan(const VchanAddress&) {
  return no_vchan();
}

#endif

}  // namespace shbuf::cli
