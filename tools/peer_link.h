// The frontend's end of the control channel: one line of text at a time over
// a PeerStream (a Unix socket, or a vchan to another domain), with a timeout
// on every wait so that a dead or stuck backend is an error, never a hang.
// The backend's end is peer_server.h.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "peer_stream.h"
#include "shbuf/core/result.h"

namespace shbuf::cli {

class PeerLink {
 public:
  PeerLink() = default;
  explicit PeerLink(std::unique_ptr<PeerStream> stream) : stream_(std::move(stream)) {}

  // Connects to a Unix socket, retrying while the listener is not up yet,
  // until timeout_ms.
  static Result<PeerLink> connect_to(const std::string& path, int timeout_ms);
  // Connects to the vchan a backend in another domain offers, retrying
  // while it is not offered yet, until timeout_ms.
  static Result<PeerLink> connect_vchan(const VchanAddress& address, int timeout_ms);

  // The whole line, within timeout_ms.
  Status send(const std::string& line, int timeout_ms);
  // One line without its newline; ENOTCONN at end of stream.
  Result<std::string> receive(int timeout_ms);

  // The domain on the other side, where the stream knows it (vchan).
  std::optional<DomId> peer_domain() const { return stream_->peer_domain(); }

 private:
  // Waits for the stream to be ready until `deadline`, a now_ms() time.
  Status wait(bool writing, long long deadline, int timeout_ms);

  std::unique_ptr<PeerStream> stream_;
  std::string pending_;
};

}  // namespace shbuf::cli
