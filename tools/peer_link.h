// The frontend's end of the control channel: one line of text at a time over
// a Unix stream socket, with a timeout on every read so a dead or stuck
// backend is an error, never a hang. The backend's end is peer_server.h.
#pragma once

#include <string>
#include <utility>

#include "core/unique_fd.h"
#include "shbuf/core/result.h"

namespace shbuf::cli {

class PeerLink {
 public:
  PeerLink() = default;
  explicit PeerLink(UniqueFd fd) : fd_(std::move(fd)) {}

  // Connects, retrying while the listener is not up yet, until timeout_ms.
  static Result<PeerLink> connect_to(const std::string& path, int timeout_ms);

  Status send(const std::string& line);
  // One line without its newline; ENOTCONN at end of stream.
  Result<std::string> receive(int timeout_ms);

 private:
  UniqueFd fd_;
  std::string pending_;
};

}  // namespace shbuf::cli
