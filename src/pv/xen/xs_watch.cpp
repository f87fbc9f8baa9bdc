#include "pv/xen/xs_watch.h"

// The header does not declare C linkage for C++.
extern "C" {
#include <xen/io/xs_wire.h>
#include <xenstore.h>
}

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace shbuf::pv::xen {
namespace {

using Clock = std::chrono::steady_clock;

// xenstored's Unix socket; EINVAL when `path` is too long for one.
Result<UniqueFd> connect_socket(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return make_error(EINVAL, "xenstored socket path too long: " + path);
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("cannot make a socket for xenstored");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return errno_error("cannot connect to xenstored at " + path);
  }
  if (::fcntl(fd.get(), F_SETFL, O_NONBLOCK) != 0) {
    return errno_error("cannot make the xenstored socket non-blocking");
  }
  return fd;
}

// Opens what libxenstore would: the socket, else the guest's xenbus device.
Result<UniqueFd> connect_xenstored() {
  std::string tried;
  std::vector<std::string> paths;
  if (const char* s = xs_daemon_socket(); s != nullptr) paths.emplace_back(s);
  paths.emplace_back("/dev/xen/xenbus");
  paths.emplace_back("/proc/xen/xenbus");
  int last = ENOENT;
  for (const std::string& p : paths) {
    struct stat sb {};
    if (::stat(p.c_str(), &sb) != 0) {
      last = errno;
      tried += (tried.empty() ? "" : ", ") + p + " (" + std::strerror(errno) + ")";
      continue;
    }
    if (S_ISSOCK(sb.st_mode)) {
      auto fd = connect_socket(p);
      if (fd.ok()) return fd;
      last = fd.error().code;
      tried += (tried.empty() ? "" : ", ") + fd.error().message;
      continue;
    }
    UniqueFd fd(::open(p.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK));
    if (fd) return fd;
    last = errno;
    tried += (tried.empty() ? "" : ", ") + p + " (" + std::strerror(errno) + ")";
  }
  return make_error(last == ENOENT ? ENODEV : last, "cannot reach xenstored: " + tried);
}

// A watch at `watch` covers `path` and everything under it.
bool covers(const std::string& watch, const std::string& path) {
  if (path.compare(0, watch.size(), watch) != 0) return false;
  return path.size() == watch.size() || watch == "/" || path[watch.size()] == '/';
}

}  // namespace

Result<std::unique_ptr<XsWatchConnection>> XsWatchConnection::open(
    std::chrono::milliseconds reply_timeout) {
  auto conn = connect_xenstored();
  if (!conn.ok()) return conn.error();
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll) return errno_error("cannot make an epoll descriptor for xenstore watches");
  UniqueFd ready(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!ready) return errno_error("cannot make an eventfd for xenstore watches");
  for (const int fd : {conn->get(), ready.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      return errno_error("cannot poll the xenstore watch connection");
    }
  }
  return std::unique_ptr<XsWatchConnection>(
      new XsWatchConnection(std::move(conn).value(), std::move(epoll), std::move(ready), reply_timeout));
}

Status XsWatchConnection::watch(const std::string& path, const std::string& token) {
  if (Status s = check_path(path); !s.ok()) return s;
  if (Status s = request(XS_WATCH, path, token, "xenstore watch " + path); !s.ok()) return s;
  watches_.emplace(path, token);
  return {};
}

Status XsWatchConnection::unwatch(const std::string& path, const std::string& token) {
  if (Status s = check_path(path); !s.ok()) return s;
  if (Status s = request(XS_UNWATCH, path, token, "xenstore unwatch " + path); !s.ok()) return s;
  watches_.erase({path, token});
  lost_.erase({path, token});
  sync_ready();
  return {};
}

Result<std::optional<WatchEvent>> XsWatchConnection::next_event() {
  if (broken_) return *broken_;
  if (Status s = pump(std::chrono::milliseconds(0)); !s.ok()) return s.error();
  if (bad_event_) {
    const Error e = *bad_event_;
    bad_event_.reset();
    sync_ready();
    return e;
  }
  if (events_.empty()) {
    // Room again: each watch that lost an event gets one naming its path.
    while (!lost_.empty() && events_.size() < kMaxQueuedEvents) {
      const auto w = *lost_.begin();
      lost_.erase(lost_.begin());
      events_.push_back(WatchEvent{w.first, w.second});
    }
  }
  std::optional<WatchEvent> ev;
  if (!events_.empty()) {
    ev = std::move(events_.front());
    events_.pop_front();
  }
  sync_ready();
  return ev;
}

Status XsWatchConnection::request(std::uint32_t type, const std::string& path,
                                  const std::string& token, const std::string& what) {
  if (broken_) return make_error(broken_->code, what + ": " + broken_->message);
  if (token.find('\0') != std::string::npos) {
    return make_error(EINVAL, what + ": the token holds a NUL");
  }
  std::string body = path;
  body.push_back('\0');
  body += token;
  body.push_back('\0');
  if (body.size() > kXenstorePayloadMax) {
    return make_error(E2BIG, what + ": path and token are over " +
                                 std::to_string(kXenstorePayloadMax) + " bytes");
  }
  const std::uint32_t id = next_req_++;
  const std::string msg = encode_xs_request(type, id, body);
  const auto deadline = Clock::now() + reply_timeout_;
  for (std::size_t done = 0; done < msg.size();) {
    const ssize_t n = ::write(conn_.get(), msg.data() + done, msg.size() - done);
    if (n > 0) {
      done += std::size_t(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return broken(errno_error(what + ": cannot write to xenstored"));
    }
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return broken(make_error(ETIMEDOUT, what + ": xenstored took no request for " +
                                              std::to_string(reply_timeout_.count()) + " ms"));
    }
    pollfd p{conn_.get(), POLLOUT, 0};
    (void)::poll(&p, 1, int(left.count()));
  }
  while (!reply_) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      // A reply that comes later would be taken for the next request's.
      return broken(make_error(ETIMEDOUT, what + ": xenstored did not answer within " +
                                              std::to_string(reply_timeout_.count()) + " ms"));
    }
    // A reply that came before the connection broke still answers this
    // request; the break is told by the next call.
    if (Status s = pump(left); !s.ok() && !reply_) {
      return make_error(s.error().code, what + ": " + s.error().message);
    }
  }
  const XsMessage reply = std::move(*reply_);
  reply_.reset();
  if (reply.req_id != id) {
    return broken(make_error(EPROTO, what + ": xenstored answered request " +
                                         std::to_string(reply.req_id) + ", not " +
                                         std::to_string(id)));
  }
  if (reply.type == XS_ERROR) {
    const int code = parse_xs_error(reply.body);
    return make_error(code, what + ": xenstored refused it: " + std::strerror(code));
  }
  if (reply.type != type) {
    return broken(make_error(EPROTO, what + ": xenstored answered with message type " +
                                         std::to_string(reply.type)));
  }
  return {};
}

Status XsWatchConnection::pump(std::chrono::milliseconds wait) {
  if (broken_) return *broken_;
  pollfd p{conn_.get(), POLLIN, 0};
  const int r = ::poll(&p, 1, int(wait.count()));
  if (r < 0 && errno != EINTR) return errno_error("cannot poll the xenstore watch connection");
  if (r <= 0) return {};
  char buf[kXsHeaderSize + kXenstorePayloadMax];
  const ssize_t n = ::read(conn_.get(), buf, sizeof buf);
  if (n == 0) return broken(make_error(EPIPE, "xenstored closed the watch connection"));
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return {};
    return broken(errno_error("cannot read from xenstored"));
  }
  reader_.append(std::string_view(buf, std::size_t(n)));
  for (;;) {
    auto m = reader_.next();
    if (!m.ok()) return broken(m.error());
    if (!*m) break;
    if (Status s = take(std::move(**m)); !s.ok()) return s;
  }
  sync_ready();
  return {};
}

Status XsWatchConnection::take(XsMessage m) {
  if (m.type == XS_WATCH_EVENT) {
    auto ev = parse_xs_watch_event(m.body);
    // The framing holds, so the connection goes on; the caller hears of it.
    if (!ev.ok()) {
      bad_event_ = ev.error();
    } else {
      queue(std::move(ev).value());
    }
    return {};
  }
  if (reply_) return broken(make_error(EPROTO, "xenstored sent a reply nobody asked for"));
  reply_ = std::move(m);
  return {};
}

void XsWatchConnection::queue(WatchEvent ev) {
  if (events_.size() < kMaxQueuedEvents) {
    events_.push_back(std::move(ev));
    return;
  }
  for (const auto& w : watches_) {
    if (w.second == ev.token && covers(w.first, ev.path)) lost_.insert(w);
  }
}

void XsWatchConnection::sync_ready() {
  const bool want = !events_.empty() || !lost_.empty() || bad_event_.has_value();
  if (want == ready_set_) return;
  std::uint64_t v = 1;
  const ssize_t n = want ? ::write(ready_.get(), &v, sizeof v) : ::read(ready_.get(), &v, sizeof v);
  if (n == ssize_t(sizeof v)) ready_set_ = want;
}

Error XsWatchConnection::broken(Error e) {
  broken_ = e;
  return e;
}

}  // namespace shbuf::pv::xen
