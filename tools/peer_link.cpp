#include "peer_link.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "cli.h"
#include "peer_protocol.h"

namespace shbuf::cli {
Result<PeerLink> PeerLink::connect_to(const std::string& path, int timeout_ms) {
  auto addr = socket_address(path);
  if (!addr.ok()) return std::move(addr).error();
  const long long deadline = now_ms() + timeout_ms;
  while (true) {
    // Non-blocking, so that a listener whose queue is full (EAGAIN) is
    // retried until the deadline rather than waited for without one.
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) return errno_error("socket");
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) == 0) {
      auto stream = socket_stream(std::move(fd));
      if (!stream.ok()) return std::move(stream).error();
      return PeerLink(std::move(stream).value());
    }
    Error e = errno_error("cannot connect to '" + path + "'");
    fd.reset();
    const bool retry = e.code == ENOENT || e.code == ECONNREFUSED || e.code == EAGAIN;
    if (!retry || now_ms() >= deadline) return e;
    ::usleep(20000);
  }
}

Result<PeerLink> PeerLink::connect_vchan(const VchanAddress& address, int timeout_ms) {
  auto stream = cli::connect_vchan(address, timeout_ms);
  if (!stream.ok()) return std::move(stream).error();
  return PeerLink(std::move(stream).value());
}

Status PeerLink::wait(bool writing, long long deadline, int timeout_ms) {
  while (true) {
    SHBUF_TRY(stream_->check_peer());
    const long long left = deadline - now_ms();
    if (left <= 0) {
      return make_error(ETIMEDOUT,
                        "peer did not answer within " + std::to_string(timeout_ms) + " ms");
    }
    int wait_ms = static_cast<int>(left);
    if (const int check = stream_->check_interval_ms(); check > 0)
      wait_ms = std::min(wait_ms, check);
    pollfd p{stream_->poll_fd(), stream_->poll_events(writing), 0};
    const int ready = ::poll(&p, 1, wait_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return errno_error("poll");
    }
    if (ready == 0) continue;
    stream_->woken();
    return {};
  }
}

Status PeerLink::send(const std::string& line, int timeout_ms) {
  const long long deadline = now_ms() + timeout_ms;
  const std::string data = line + "\n";
  std::size_t done = 0;
  while (done < data.size()) {
    auto put = stream_->write_some(data.data() + done, data.size() - done);
    if (!put.ok()) return std::move(put).error();
    done += *put;
    if (done < data.size() && *put == 0) SHBUF_TRY(wait(true, deadline, timeout_ms));
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
    char chunk[1024];
    auto got = stream_->read_some(chunk, sizeof chunk);
    if (!got.ok()) return std::move(got).error();
    if (*got == 0) {
      SHBUF_TRY(wait(false, deadline, timeout_ms));
      continue;
    }
    pending_.append(chunk, *got);
  }
}

}  // namespace shbuf::cli
