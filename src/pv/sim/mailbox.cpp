#include "pv/sim/mailbox.h"

#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

namespace shbuf::pv::sim {
namespace {

// "\0shbuf-sim:<key>:<address>", an abstract socket address.
socklen_t make_name(const std::string& key, MailboxAddress address, sockaddr_un& sa) {
  sa = sockaddr_un{};
  sa.sun_family = AF_UNIX;
  const std::string name = "shbuf-sim:" + key + ":" + std::to_string(address);
  const std::size_t len = std::min(name.size(), sizeof sa.sun_path - 1);
  std::memcpy(sa.sun_path + 1, name.data(), len);
  return socklen_t(offsetof(sockaddr_un, sun_path) + 1 + len);
}

Result<MailboxAddress> random_address() {
  MailboxAddress a = 0;
  while (a == 0) {
    if (getrandom(&a, sizeof a, 0) != ssize_t(sizeof a)) {
      return errno_error("cannot draw a mailbox address");
    }
  }
  return a;
}

UniqueFd datagram_socket() {
  return UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
}

}  // namespace

Result<Mailbox> Mailbox::open(const std::string& key) {
  UniqueFd fd = datagram_socket();
  if (fd.get() < 0) return errno_error("cannot make a mailbox socket");
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto address = random_address();
    if (!address.ok()) return std::move(address).error();
    sockaddr_un sa;
    const socklen_t len = make_name(key, *address, sa);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), len) == 0) {
      return Mailbox(std::move(fd), *address);
    }
    if (errno != EADDRINUSE) return errno_error("cannot bind a mailbox socket");
  }
  return make_error(EADDRINUSE, "no free mailbox address after 8 draws");
}

Result<std::optional<std::string>> Mailbox::receive() {
  char buf[kMailboxMessageMax];
  for (;;) {
    const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n >= 0) return std::optional<std::string>(std::string(buf, std::size_t(n)));
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return std::optional<std::string>();
    return errno_error("cannot receive from a mailbox");
  }
}

Status send_to(const std::string& key, MailboxAddress to, std::string_view message) {
  if (message.size() > kMailboxMessageMax) {
    return make_error(EMSGSIZE, "a mailbox message of " + std::to_string(message.size()) +
                                    " bytes (at most " + std::to_string(kMailboxMessageMax) + ")");
  }
  static thread_local UniqueFd sender = datagram_socket();
  if (sender.get() < 0) return errno_error("cannot make a socket to send from");
  sockaddr_un sa;
  const socklen_t len = make_name(key, to, sa);
  for (;;) {
    if (::sendto(sender.get(), message.data(), message.size(), MSG_DONTWAIT,
                 reinterpret_cast<const sockaddr*>(&sa), len) >= 0) {
      return {};
    }
    if (errno == EINTR) continue;
    const int code = errno == EWOULDBLOCK ? EAGAIN : errno;
    return errno_error(code, "cannot send to mailbox " + std::to_string(to));
  }
}

bool mailbox_alive(const std::string& key, MailboxAddress address) {
  UniqueFd probe = datagram_socket();
  if (probe.get() < 0) return true;  // cannot tell: keep it
  sockaddr_un sa;
  const socklen_t len = make_name(key, address, sa);
  return ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&sa), len) == 0 ||
         errno != ECONNREFUSED;
}

Result<std::string> instance_key(const std::string& dir) {
  struct stat st {};
  const std::string state = dir + "/state";
  if (::stat(state.c_str(), &st) != 0) return errno_error("cannot stat " + state);
  return std::to_string(st.st_dev) + "." + std::to_string(st.st_ino);
}

}  // namespace shbuf::pv::sim
