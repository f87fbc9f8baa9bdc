#include "peer_server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "cli.h"
#include "core/unique_fd.h"
#include "peer_protocol.h"
#include "peer_stream.h"
#include "shbuf/core/backend_buffer.h"
#include "shbuf/grant/sim.h"

namespace shbuf::cli {
namespace {

// Requests handled for one client before the others get their turn.
constexpr int kLinesPerRound = 16;
// Connections accepted (or turned away) per wake-up.
constexpr int kAcceptsPerRound = 64;
// How long to stop accepting when accept() itself fails (out of memory or
// file descriptors), so that a failing accept cannot spin.
constexpr long long kAcceptBackoffMs = 100;
// File descriptors the server needs besides its clients.
constexpr std::size_t kSpareFds = 64;

// A socket file this process made and listens on; removed on destruction if
// the file at the path is still that socket.
class SocketFile {
 public:
  static Result<std::unique_ptr<SocketFile>> create(const std::string& path);
  SocketFile(const SocketFile&) = delete;
  SocketFile& operator=(const SocketFile&) = delete;
  ~SocketFile();
  int fd() const { return fd_.get(); }

 private:
  SocketFile(std::string path, UniqueFd fd, dev_t dev, ino_t ino)
      : path_(std::move(path)), fd_(std::move(fd)), dev_(dev), ino_(ino) {}
  std::string path_;
  UniqueFd fd_;
  dev_t dev_;
  ino_t ino_;
};

// Whether a server listens on the socket file at `addr`: connect succeeds
// (or would wait, its backlog being full). ECONNREFUSED: nobody does.
Status probe_listener(const std::string& path, const sockaddr_un& addr) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return errno_error("socket");
  const int rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int e = errno;
  fd.reset();
  if (rc == 0 || e == EAGAIN || e == EINPROGRESS) {
    return make_error(
        EADDRINUSE,
        fmt::format("socket '{}' is already in use: a server is listening on it", path));
  }
  if (e == ECONNREFUSED) return {};
  return errno_error(e, fmt::format("cannot tell whether socket '{}' is in use: connect", path));
}

Result<std::unique_ptr<SocketFile>> SocketFile::create(const std::string& path) {
  auto addr = socket_address(path);
  if (!addr.ok()) return std::move(addr).error();
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return make_error(EEXIST,
                        fmt::format("'{}' exists and is not a socket: not replacing it", path));
    }
    SHBUF_TRY(probe_listener(path, *addr));
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return errno_error(fmt::format("cannot remove the stale socket '{}'", path));
    }
  } else if (errno != ENOENT) {
    return errno_error(fmt::format("cannot inspect '{}'", path));
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return errno_error("socket");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0) {
    return errno_error(fmt::format("cannot listen on '{}'", path));
  }
  if (::lstat(path.c_str(), &st) != 0 || ::listen(fd.get(), SOMAXCONN) != 0) {
    Error e = errno_error(fmt::format("cannot listen on '{}'", path));
    fd.reset();
    ::unlink(path.c_str());
    return e;
  }
  return std::unique_ptr<SocketFile>(new SocketFile(path, std::move(fd), st.st_dev, st.st_ino));
}

SocketFile::~SocketFile() {
  fd_.reset();
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev_ &&
      st.st_ino == ino_) {
    ::unlink(path_.c_str());
  }
}

// SIGINT and SIGTERM as a file descriptor to poll, and SIGPIPE ignored, for
// as long as the server runs.
class Signals {
 public:
  Signals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, &old_mask_);
    fd_.reset(::signalfd(-1, &set_, SFD_CLOEXEC | SFD_NONBLOCK));
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ignore, &old_pipe_);
  }
  Signals(const Signals&) = delete;
  Signals& operator=(const Signals&) = delete;
  ~Signals() {
    // Consume what arrived, so that unblocking does not deliver it again.
    signalfd_siginfo info{};
    while (fd_.valid() && ::read(fd_.get(), &info, sizeof info) == sizeof info) {
    }
    fd_.reset();
    sigaction(SIGPIPE, &old_pipe_, nullptr);
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }
  int fd() const { return fd_.get(); }
  bool ok() const { return fd_.valid(); }

 private:
  sigset_t set_{};
  sigset_t old_mask_{};
  struct sigaction old_pipe_ {};
  UniqueFd fd_;
};

// One client: its connection, what it sent that is not handled yet, the reply
// not sent yet, and its buffer.
struct Client {
  std::unique_ptr<PeerStream> stream;
  std::string in;
  std::string out;
  long long deadline = 0;  // dropped when no request completes by then
  bool done = false;       // dropped once the reply is sent (or cannot be)
  BackendBuffer buffer;

  Client() = default;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client() {
    (void)buffer.detach();
    stream.reset();
  }

  bool line_ready() const { return in.find('\n') != std::string::npos; }
};

// Sends what fits now; false when the connection is gone.
bool flush(Client& c) {
  while (!c.out.empty()) {
    auto put = c.stream->write_some(c.out.data(), c.out.size());
    if (!put.ok()) return false;
    if (*put == 0) return true;
    c.out.erase(0, *put);
  }
  return true;
}

// A last line to a connection about to be closed: whatever fits, or nothing.
void send_last(PeerStream& stream, const std::string& line) {
  const std::string data = line + "\n";
  (void)stream.write_some(data.data(), data.size());
}

class Server {
 public:
  Server(Provider& provider, const ServerOptions& options, int listen_fd, VchanListener* vchan)
      : provider_(provider),
        sim_(dynamic_cast<SimProvider*>(&provider)),
        options_(options),
        listen_fd_(listen_fd),
        vchan_(vchan),
        idle_ms_(seconds_to_ms(options.idle_timeout)),
        reserve_fd_(open_reserve()) {}
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serves until SIGINT or SIGTERM or, with --once, until the client is
  // done; fails with Exit on the accept timeout.
  void run(int signal_fd);

 private:
  std::size_t capacity() const {
    if (options_.once) return accepted_ ? 0 : 1;
    return options_.max_clients - clients_.size();
  }
  void accept_new(long long now);
  void accept_vchan(long long now);
  // The listener's descriptor to poll this turn (-1: none).
  int listen_fd();
  void adopt(std::unique_ptr<PeerStream> stream, long long now);
  static int open_reserve() { return ::open("/dev/null", O_RDONLY | O_CLOEXEC); }
  UniqueFd accept_one() const {
    return UniqueFd(::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  }
  void turn_away(UniqueFd fd);
  void drop(Client& c, const std::string& why);
  void serve(Client& c, short revents, long long now);
  void handle_line(Client& c, std::string_view line);
  void attach_buffer(Client& c, const peer::AttachRequest& a);
  void check_data(Client& c, std::uint64_t seed);
  void reply(Client& c, const std::string& line) { c.out += line + "\n"; }
  Status check_claim(DomId claimed, const PeerStream& stream);

  Provider& provider_;
  SimProvider* sim_;
  const ServerOptions& options_;
  int listen_fd_;
  VchanListener* vchan_;
  int idle_ms_;
  UniqueFd reserve_fd_;
  bool accepted_ = false;
  long long accept_paused_until_ = 0;
  std::vector<std::unique_ptr<Client>> clients_;
};

void Server::run(int signal_fd) {
  const int accept_ms = options_.accept_timeout > 0 ? seconds_to_ms(options_.accept_timeout) : 0;
  long long alone_since = now_ms();
  std::vector<pollfd> fds;
  while (true) {
    if (options_.once && accepted_ && clients_.empty()) return;
    const long long now = now_ms();
    fds.clear();
    fds.push_back({signal_fd, POLLIN, 0});
    fds.push_back({now >= accept_paused_until_ ? listen_fd() : -1, POLLIN, 0});
    long long wake = -1;
    auto wake_by = [&wake](long long t) { wake = wake < 0 ? t : std::min(wake, t); };
    if (now < accept_paused_until_) wake_by(accept_paused_until_);
    if (accept_ms > 0 && clients_.empty()) wake_by(alone_since + accept_ms);
    for (const auto& c : clients_) {
      short events = 0;
      if (!c->out.empty()) {
        events = c->stream->poll_events(true);
      } else if (c->line_ready()) {
        wake_by(now);
      } else {
        events = c->stream->poll_events(false);
      }
      fds.push_back({c->stream->poll_fd(), events, 0});
      wake_by(c->deadline);
      if (const int check = c->stream->check_interval_ms(); check > 0) wake_by(now + check);
    }
    const int timeout = wake < 0 ? -1 : static_cast<int>(std::max(0LL, wake - now));
    if (::poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) {
      fail(errno_error("poll"));
    }
    const long long after = now_ms();
    if (fds[0].revents != 0) return;  // SIGINT or SIGTERM
    for (std::size_t i = 0; i < clients_.size(); ++i) {
      serve(*clients_[i], fds[i + 2].revents, after);
    }
    const std::size_t before = clients_.size();
    std::erase_if(clients_, [](const std::unique_ptr<Client>& c) { return c->done; });
    if (clients_.empty() && before > 0) alone_since = after;
    if (fds[1].revents != 0) vchan_ != nullptr ? accept_vchan(after) : accept_new(after);
    if (accept_ms > 0 && clients_.empty() && after - alone_since >= accept_ms) {
      fail(make_error(ETIMEDOUT, fmt::format("no frontend connected within {} ms", accept_ms)));
    }
  }
}

void Server::accept_new(long long now) {
  for (int n = 0; n < kAcceptsPerRound; ++n) {
    UniqueFd fd = accept_one();
    if (!fd.valid() && (errno == EMFILE || errno == ENFILE) && reserve_fd_.valid()) {
      // Out of descriptors: free the spare one to turn this connection away
      // rather than leave it waiting.
      reserve_fd_.reset();
      fd = accept_one();
      if (fd.valid()) turn_away(std::move(fd));
      reserve_fd_.reset(open_reserve());
      accept_paused_until_ = now + kAcceptBackoffMs;
      return;
    }
    if (!fd.valid()) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      accept_paused_until_ = now + kAcceptBackoffMs;
      return;
    }
    if (capacity() == 0) {
      turn_away(std::move(fd));
      continue;
    }
    auto stream = socket_stream(std::move(fd));
    if (stream.ok()) adopt(std::move(stream).value(), now);
  }
}

int Server::listen_fd() {
  if (vchan_ == nullptr) return listen_fd_;
  // One frontend at a time: a new channel once the last one is gone.
  if (!clients_.empty() || capacity() == 0) return -1;
  check(vchan_->offer());
  return vchan_->poll_fd();
}

void Server::accept_vchan(long long now) {
  auto stream = vchan_->accept();
  if (!stream.ok()) fail(stream.error());
  if (*stream != nullptr) adopt(std::move(stream).value(), now);
}

void Server::adopt(std::unique_ptr<PeerStream> stream, long long now) {
  auto c = std::make_unique<Client>();
  c->stream = std::move(stream);
  c->deadline = now + idle_ms_;
  reply(*c, peer::format_hello(provider_.self()));
  if (!flush(*c)) c->done = true;
  accepted_ = true;
  if (!c->done) clients_.push_back(std::move(c));
}

void Server::turn_away(UniqueFd fd) {
  auto stream = socket_stream(std::move(fd));
  if (stream.ok()) send_last(**stream, peer::format_busy(options_.once ? 1 : options_.max_clients));
}

// Ends a client whose stream failed or whose peer went away; its buffer is
// released with it. A frontend in another domain is worth a line: that
// domain may have been destroyed under its buffer.
void Server::drop(Client& c, const std::string& why) {
  if (c.stream->peer_domain()) {
    std::fprintf(stderr, "shbuf: %s: %s\n", why.c_str(),
                 c.buffer.valid() ? "released its buffer" : "it held no buffer");
  }
  c.done = true;
}

void Server::serve(Client& c, short revents, long long now) {
  if (revents & (POLLERR | POLLHUP | POLLNVAL)) {
    c.done = true;  // hung up: its buffer is released with it
    return;
  }
  if (Status alive = c.stream->check_peer(); !alive.ok()) {
    drop(c, alive.error().message);
    return;
  }
  if (revents != 0) c.stream->woken();
  if (revents != 0 && !flush(c)) {
    c.done = true;
    return;
  }
  if (revents != 0 && c.out.empty() && !c.line_ready() && c.in.size() <= peer::kMaxLine) {
    // Read only while no whole line waits and the partial one fits: there
    // is room for at least one byte.
    char chunk[peer::kMaxLine + 1];
    const std::size_t room = peer::kMaxLine + 1 - c.in.size();
    auto got = c.stream->read_some(chunk, room);
    if (!got.ok()) {
      drop(c, got.error().message);
      return;
    }
    c.in.append(chunk, *got);
  }
  for (int n = 0; n < kLinesPerRound && c.out.empty() && !c.done; ++n) {
    const std::size_t nl = c.in.find('\n');
    if (nl == std::string::npos) {
      if (c.in.size() > peer::kMaxLine) {
        send_last(*c.stream,
                  peer::format_err(fmt::format("line longer than {} bytes", peer::kMaxLine)));
        c.done = true;
      }
      break;
    }
    const std::string line = c.in.substr(0, nl);
    c.in.erase(0, nl + 1);
    c.deadline = now + idle_ms_;
    handle_line(c, line);
    if (!flush(c)) c.done = true;
  }
  if (!c.done && now >= c.deadline) {
    send_last(*c.stream,
              peer::format_err(fmt::format("no request for {} ms: hanging up", idle_ms_)));
    c.done = true;
  }
}

Status Server::check_claim(DomId claimed, const PeerStream& stream) {
  if (const auto peer = stream.peer_domain()) {
    if (claimed == *peer) return {};
    return make_error(EPERM, fmt::format("the frontend names domain {}, but its vchan comes from "
                                         "domain {}",
                                         claimed, *peer));
  }
  if (sim_ == nullptr) return {};  // real domains on a socket: nothing to check against here
  const pid_t pid = stream.peer_pid();
  auto status = sim_->status();
  if (!status.ok()) {
    return make_error(status.error().code,
                      "cannot read the simulator's attachments: " + status.error().message);
  }
  for (const SimStatus::Attachment& a : status->attachments) {
    if (a.domid == claimed && a.alive && pid != 0 && a.pid == pid) return {};
  }
  return make_error(EPERM, fmt::format("the connecting process (pid {}) is not attached to the "
                                       "simulator as domain {}, the domain it names",
                                       pid, claimed));
}

void Server::handle_line(Client& c, std::string_view line) {
  auto request = peer::parse_request(line);
  if (!request.ok()) {
    reply(c, peer::format_err(request.error().message));
    return;
  }
  switch (request->kind) {
    case peer::Request::Kind::kAttach:
      attach_buffer(c, request->attach);
      return;
    case peer::Request::Kind::kCheck:
      check_data(c, request->seed);
      return;
    case peer::Request::Kind::kDetach: {
      const bool held = c.buffer.valid();
      Status s = c.buffer.detach();
      if (options_.verbose && held && s.ok()) std::fprintf(stderr, "shbuf: detached\n");
      reply(c, s.ok() ? peer::format_ok() : peer::format_err(s.error().describe()));
      return;
    }
    case peer::Request::Kind::kBye:
      reply(c, peer::format_ok());
      c.done = true;
      return;
  }
}

// Replaces the client's buffer (if any) with the one the request names, if
// the client is the domain it claims to be.
void Server::attach_buffer(Client& c, const peer::AttachRequest& a) {
  Status allowed = check_claim(a.frontend, *c.stream);
  if (!allowed.ok()) {
    reply(c, peer::format_err(allowed.error().describe()));
    return;
  }
  (void)c.buffer.detach();
  BackendBufferConfig config;
  config.frontend = a.frontend;
  config.directory_gref = a.directory_gref;
  config.pages = a.pages;
  config.mode = a.mode;
  config.max_pages = options_.max_pages;
  const auto start = std::chrono::steady_clock::now();
  auto attached = BackendBuffer::attach(provider_, config);
  const double took =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (!attached.ok()) {
    reply(c, peer::format_err(attached.error().describe()));
    return;
  }
  c.buffer = std::move(attached).value();
  if (options_.verbose) {
    std::fprintf(stderr, "shbuf: attached %zu pages of domain %u (%s)\n", a.pages,
                 unsigned{a.frontend}, to_string(a.mode));
  }
  reply(c, peer::format_attached(took));
}

// Checks the frontend's pattern for seed, then answers with seed + 1's.
void Server::check_data(Client& c, std::uint64_t seed) {
  if (!c.buffer.valid()) {
    reply(c, peer::format_err(fmt::format("{} without an attached buffer", peer::kCheck)));
    return;
  }
  Status s = peer::check_pattern(c.buffer.memory(), seed);
  if (!s.ok()) {
    reply(c, peer::format_err("backend read: " + s.error().describe()));
    return;
  }
  peer::write_pattern(c.buffer.memory(), seed + 1);
  reply(c, peer::format_ok());
}

// Enough file descriptors for max_clients clients, raising the soft limit if
// it is too low.
void ensure_fd_limit(std::size_t max_clients) {
  const rlim_t need = static_cast<rlim_t>(max_clients + kSpareFds);
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= need) return;
  if (limit.rlim_max == RLIM_INFINITY || limit.rlim_max >= need) {
    limit.rlim_cur = need;
    if (::setrlimit(RLIMIT_NOFILE, &limit) == 0) return;
  }
  fail(kExitFailure, fmt::format("--max-clients {} needs {} open files, but the limit is {} "
                                 "(ulimit -n)",
                                 max_clients, need, limit.rlim_cur));
}

}  // namespace

void run_server(Provider& provider, const ServerOptions& options) {
  ensure_fd_limit(options.once ? 1 : options.max_clients);
  Signals signals;
  if (!signals.ok()) fail(errno_error("signalfd"));
  if (!options.vchan.empty()) {
    std::unique_ptr<VchanListener> vchan =
        take(listen_vchan(take(parse_vchan_address(options.vchan))));
    Server server(provider, options, -1, vchan.get());
    server.run(signals.fd());
    return;
  }
  std::unique_ptr<SocketFile> socket = take(SocketFile::create(options.socket));
  Server server(provider, options, socket->fd(), nullptr);
  server.run(signals.fd());
}

}  // namespace shbuf::cli
