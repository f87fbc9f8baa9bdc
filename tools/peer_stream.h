// The byte stream between `shbuf frontend` and `shbuf backend`: a Unix stream
// socket between two processes of one domain, or a libxenvchan channel
// between two domains. Neither end blocks on it: reads and writes take what
// is there now, and poll_fd() says when to try again.
#pragma once

#include <sys/types.h>
#include <sys/un.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/unique_fd.h"
#include "shbuf/core/result.h"
#include "shbuf/core/xen_types.h"

namespace shbuf::cli {

class PeerStream {
 public:
  virtual ~PeerStream() = default;

  // The descriptor to poll, and for what: `writing` when output waits.
  virtual int poll_fd() const = 0;
  virtual short poll_events(bool writing) const = 0;
  // After poll reported poll_fd() ready: takes its wake-up (a vchan's event
  // channel notification), so that the next one can come.
  virtual void woken() {}
  // What is there now, up to `size` bytes (0: nothing yet); ENOTCONN once the
  // peer has gone.
  virtual Result<std::size_t> read_some(char* data, std::size_t size) = 0;
  // As much as fits now (0: nothing does yet).
  virtual Result<std::size_t> write_some(const char* data, std::size_t size) = 0;
  // Whether the peer is there as far as can be told without reading: a vchan
  // peer's domain must still exist. ENOTCONN when it does not. Cheap to call
  // often: it asks at most every check_interval_ms().
  virtual Status check_peer() { return {}; }
  // How often check_peer() wants to be called while nothing else happens;
  // -1: never.
  virtual int check_interval_ms() const { return -1; }
  // The connecting process (sockets), the peer's domain (vchan).
  virtual pid_t peer_pid() const { return 0; }
  virtual std::optional<DomId> peer_domain() const { return std::nullopt; }
};

// A connected Unix stream socket, made non-blocking here.
Result<std::unique_ptr<PeerStream>> socket_stream(UniqueFd fd);

// The address of the Unix socket file at `path`; ENAMETOOLONG when the path
// is empty or does not fit.
Result<sockaddr_un> socket_address(const std::string& path);

// Where a vchan is: the server's peer domain (for `shbuf backend`) or the
// server's domain (for `shbuf frontend`), and the xenstore directory that
// holds the channel's ring-ref and event-channel.
struct VchanAddress {
  DomId domid = 0;
  std::string path;
};

// The longest path libxenvchan takes: it builds "<path>/event-channel" in 64
// bytes.
inline constexpr std::size_t kMaxVchanPath = 48;

// Parses "DOMID:PATH": PATH at most kMaxVchanPath bytes, of the characters
// xenstore allows; a relative PATH is under the domain's own home in
// xenstore (/local/domain/<id>/), where a server in a guest may write.
// EINVAL naming what is wrong.
Result<VchanAddress> parse_vchan_address(std::string_view text);

// The client's end: connects to the channel a server of domain address.domid
// offers at address.path, retrying until it appears or timeout_ms passes.
// ENOTSUP in a build without libxenvchan.
Result<std::unique_ptr<PeerStream>> connect_vchan(const VchanAddress& address, int timeout_ms);

// The server's end: offers a channel to domain address.domid at
// address.path, one client at a time. poll_fd() is readable when the
// client may have connected; accept() then hands its stream over (nullptr
// while it has not). After the stream is gone, offer() makes a new channel
// for the next client.
class VchanListener {
 public:
  virtual ~VchanListener() = default;
  // Offers a channel unless one is offered or handed over and still open.
  virtual Status offer() = 0;
  // -1 while no channel is offered.
  virtual int poll_fd() const = 0;
  virtual Result<std::unique_ptr<PeerStream>> accept() = 0;
};

// ENOTSUP in a build without libxenvchan.
Result<std::unique_ptr<VchanListener>> listen_vchan(const VchanAddress& address);

}  // namespace shbuf::cli
