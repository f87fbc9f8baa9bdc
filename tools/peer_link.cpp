#include "peer_link.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "peer_protocol.h"

namespace shbuf::cli {
namespace {

Result<sockaddr_un> address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return make_error(ENAMETOOLONG, "socket path '" + path + "' is empty or longer than " +
                                        std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

long long now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

}  // namespace

Result<PeerLink> PeerLink::connect_to(const std::string& path, int timeout_ms) {
  auto addr = address(path);
  if (!addr.ok()) return std::move(addr).error();
  const long long deadline = now_ms() + timeout_ms;
  while (true) {
    // Non-blocking, so that a listener whose queue is full (EAGAIN) is
    // retried until the deadline rather than waited for without one.
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) return errno_error("socket");
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) == 0) {
      if (::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK) != 0) {
        return errno_error("fcntl");
      }
      return PeerLink(std::move(fd));
    }
    Error e = errno_error("cannot connect to '" + path + "'");
    fd.reset();
    const bool retry = e.code == ENOENT || e.code == ECONNREFUSED || e.code == EAGAIN;
    if (!retry || now_ms() >= deadline) return e;
    ::usleep(20000);
  }
}

Status PeerLink::send(const std::string& line) {
  const std::string data = line + "\n";
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t put = ::send(fd_.get(), data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (put < 0) {
      if (errno == EINTR) continue;
      return errno_error("sending to peer");
    }
    done += static_cast<std::size_t>(put);
  }
  return {};
}

Result<std::string> PeerLink::receive(int timeout_ms) {
  const long long deadline = now_ms() + timeout_ms;
  while (true) {
    const std::size_t nl = pending_.find('\n');
    if (nl != std::string::npos) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      return line;
    }
    if (pending_.size() > peer::kMaxLine) {
      return make_error(EPROTO, fmt::format("peer sent a line over {} bytes", peer::kMaxLine));
    }
    const long long left = deadline - now_ms();
    if (left <= 0) {
      return make_error(ETIMEDOUT,
                        "peer did not answer within " + std::to_string(timeout_ms) + " ms");
    }
    pollfd p{fd_.get(), POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left));
    if (ready < 0) {
      if (errno == EINTR) continue;
      return errno_error("poll");
    }
    if (ready == 0) continue;
    char chunk[1024];
    const ssize_t got = ::recv(fd_.get(), chunk, sizeof chunk, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return errno_error("receiving from peer");
    }
    if (got == 0) return make_error(ENOTCONN, "peer closed the connection");
    pending_.append(chunk, static_cast<std::size_t>(got));
  }
}

}  // namespace shbuf::cli
