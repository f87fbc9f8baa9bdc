#include "peer_stream.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "cli.h"

namespace shbuf::cli {
namespace {

class SocketStream final : public PeerStream {
 public:
  SocketStream(UniqueFd fd, pid_t pid) : fd_(std::move(fd)), pid_(pid) {}

  int poll_fd() const override { return fd_.get(); }
  short poll_events(bool writing) const override { return writing ? POLLOUT : POLLIN; }

  Result<std::size_t> read_some(char* data, std::size_t size) override {
    while (true) {
      const ssize_t got = ::recv(fd_.get(), data, size, MSG_DONTWAIT);
      if (got > 0) return static_cast<std::size_t>(got);
      if (got == 0) return make_error(ENOTCONN, "peer closed the connection");
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return std::size_t{0};
      return errno_error("receiving from peer");
    }
  }

  Result<std::size_t> write_some(const char* data, std::size_t size) override {
    while (true) {
      const ssize_t put = ::send(fd_.get(), data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (put >= 0) return static_cast<std::size_t>(put);
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return std::size_t{0};
      return errno_error("sending to peer");
    }
  }

  pid_t peer_pid() const override { return pid_; }

 private:
  UniqueFd fd_;
  pid_t pid_;
};

// What xenstore takes in a path, as libxenstore's callers are told to keep to.
bool xenstore_path_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' ||
         c == '-' || c == '_' || c == '@';
}

}  // namespace

Result<std::unique_ptr<PeerStream>> socket_stream(UniqueFd fd) {
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return errno_error("fcntl");
  }
  ucred cred{};
  socklen_t len = sizeof cred;
  const pid_t pid =
      ::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 ? cred.pid : 0;
  return std::unique_ptr<PeerStream>(new SocketStream(std::move(fd), pid));
}

Result<sockaddr_un> socket_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return make_error(ENAMETOOLONG, fmt::format("socket path '{}' is empty or longer than {} bytes",
                                                path, sizeof addr.sun_path - 1));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

Result<VchanAddress> parse_vchan_address(std::string_view text) {
  const std::size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    return make_error(EINVAL, fmt::format("vchan address '{}' is not DOMID:PATH", printable(text)));
  }
  auto domid = parse_decimal(text.substr(0, colon), 0, kDomIdFirstReserved - 1);
  if (!domid.ok()) {
    return make_error(EINVAL, fmt::format("vchan address '{}': the domain id {}", printable(text),
                                          domid.error().message));
  }
  const std::string_view path = text.substr(colon + 1);
  if (path.empty() || path == "/" || path.back() == '/' ||
      path.find("//") != std::string_view::npos) {
    return make_error(EINVAL, fmt::format("vchan address '{}': the path must be a xenstore path, "
                                          "without a trailing or doubled '/'",
                                          printable(text)));
  }
  if (path.size() > kMaxVchanPath) {
    return make_error(ENAMETOOLONG, fmt::format("vchan address '{}': the path is {} bytes, "
                                                "libxenvchan takes at most {}",
                                                printable(text), path.size(), kMaxVchanPath));
  }
  for (char c : path) {
    if (!xenstore_path_char(c)) {
      return make_error(EINVAL, fmt::format("vchan address '{}': xenstore paths take letters, "
                                            "digits and / - _ @ only",
                                            printable(text)));
    }
  }
  return VchanAddress{static_cast<DomId>(*domid), std::string(path)};
}

}  // namespace shbuf::cli
