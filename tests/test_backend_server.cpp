// `shbuf backend` against hostile clients on its socket: clients that hang up
// at any point, send junk or endless lines, say nothing, flood it with
// connections or name a domain they are not; what is at --socket; and the
// demo's way out when it fails. After each, the server still serves a real
// `shbuf frontend`, and the simulator holds nothing once the clients are gone.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../tools/peer_protocol.h"
#include "run_process.h"
#include "shbuf/core/frontend_buffer.h"
#include "shbuf/grant/sim.h"

namespace shbuf {
namespace {

using Clock = std::chrono::steady_clock;
using testing::count_lines;
using testing::run_process;
using testing::slurp;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Starts argv with stdout and stderr to files and `env` added.
pid_t start(const std::vector<std::string>& argv, const std::string& out, const std::string& err,
            const std::vector<std::string>& env = {}) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int null = open("/dev/null", O_RDONLY);
    const int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(null, 0);
    dup2(o, 1);
    dup2(e, 2);
    for (const std::string& v : env) putenv(const_cast<char*>(v.c_str()));
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

// The wait status, or -1 after killing it when it did not end in time.
int wait_for(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return status;
}

sockaddr_un address_of(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// A client on the backend's socket that says exactly what a test makes it say.
class RawClient {
 public:
  explicit RawClient(const std::string& path, bool nonblocking = false) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    const sockaddr_un addr = address_of(path);
    connected_ = connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;
  ~RawClient() { hang_up(); }

  bool connected() const { return connected_; }
  void hang_up() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  // Sends what the socket takes without waiting; false once it refuses.
  bool send_raw(const std::string& data) {
    std::size_t done = 0;
    while (done < data.size()) {
      const ssize_t put =
          send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (put <= 0) return false;
      done += static_cast<std::size_t>(put);
    }
    return true;
  }
  // One line without its newline; "<closed>" at end of stream, "<timeout>".
  std::string line(int timeout_ms = 5000) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (true) {
      const std::size_t nl = pending_.find('\n');
      if (nl != std::string::npos) {
        std::string l = pending_.substr(0, nl);
        pending_.erase(0, nl + 1);
        return l;
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return "<timeout>";
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char chunk[4096];
      const ssize_t got = recv(fd_, chunk, sizeof chunk, MSG_DONTWAIT);
      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) return "<closed>";
      if (got > 0) pending_.append(chunk, static_cast<std::size_t>(got));
    }
  }
  std::string ask(const std::string& request) {
    if (!send_raw(request + "\n")) return "<send failed>";
    return line();
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string pending_;
};

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

namespace peer = cli::peer;

// A line of the peer protocol: one of its words, then the rest as given.
std::string say(std::string_view word, const std::string& rest = "") {
  return std::string(word) + rest;
}

// Whether a line is the greeting of the backend under test, domain 0.
bool greeted(const std::string& line) {
  return starts_with(line, say(peer::kHello, " 0"));
}

class BackendServer : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir = "/dev/shm/shbuf-test-backend-" + std::to_string(getpid()) + "-" + info->name();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    sim = dir + "/sim";
    sock = dir + "/control.sock";
  }

  void TearDown() override {
    if (server > 0) {
      kill(server, SIGTERM);
      const int st = wait_for(server, std::chrono::seconds(5));
      EXPECT_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
          << "the server did not exit 0 on SIGTERM: " << st << ": " << server_err();
      struct stat s {};
      EXPECT_NE(lstat(sock.c_str(), &s), 0) << "the server left its socket file";
      server = -1;
    }
    (void)SimProvider::reset(sim);
    std::filesystem::remove_all(dir);
  }

  std::vector<std::string> server_argv(const std::vector<std::string>& extra) const {
    std::vector<std::string> argv = {SHBUF_BIN, "backend", "--socket",       sock,
                                     "--sim",   sim,       "--idle-timeout", "1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }

  // Starts the server and waits until it answers.
  void start_server(const std::vector<std::string>& extra = {}) {
    server = start(server_argv(extra), dir + "/server.out", dir + "/server.err");
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (Clock::now() < deadline) {
      RawClient probe(sock);
      if (probe.connected() && starts_with(probe.line(), say(peer::kHello, " "))) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    FAIL() << "the server did not come up: " << server_err();
  }

  std::string server_err() const { return slurp(dir + "/server.err"); }

  bool server_alive() const {
    int status = 0;
    return server > 0 && kill(server, 0) == 0 && waitpid(server, &status, WNOHANG) == 0;
  }

  // A real frontend, both modes, 1 and 1024 pages; returns how long it took.
  // Given 20 s, twice its own connect and greeting timeouts.
  double run_frontend(const std::string& pages = "1,1024") {
    const auto begin = Clock::now();
    const pid_t pid = start({SHBUF_BIN, "frontend", "--socket", sock, "--sim", sim, "--domid", "1",
                             "--pages", pages, "--machine"},
                            dir + "/frontend.out", dir + "/frontend.err");
    const int st = wait_for(pid, std::chrono::seconds(20));
    const double took = seconds_since(begin);
    EXPECT_NE(st, -1) << "the frontend hung";
    EXPECT_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
        << st << ": " << slurp(dir + "/frontend.out") << slurp(dir + "/frontend.err");
    EXPECT_EQ(slurp(dir + "/frontend.err"), "");
    return took;
  }

  // Waits (briefly: the server releases a buffer when it sees its client go)
  // until the simulator holds no grant and no mapping.
  void expect_clean() {
    const auto deadline = Clock::now() + std::chrono::seconds(3);
    std::size_t grants = 0, mappings = 0;
    while (Clock::now() < deadline) {
      auto st = SimProvider::status(sim);
      ASSERT_TRUE(st.ok()) << st.error().describe();
      grants = st->grants.size();
      mappings = st->mappings.size();
      if (grants == 0 && mappings == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(grants, 0u);
    EXPECT_EQ(mappings, 0u);
    auto cli = run_process({SHBUF_BIN, "sim", "status", "--json", "--sim", sim});
    EXPECT_EQ(cli.exit_code, 0) << cli.err;
    EXPECT_NE(cli.out.find("\"grants\":[],\"mappings\":[]"), std::string::npos) << cli.out;
  }

  // This process as frontend domain 1 of the same instance, for clients that
  // attach real buffers.
  std::unique_ptr<SimProvider> open_domain(DomId domid) {
    SimOptions options;
    options.path = sim;
    options.domid = domid;
    auto p = SimProvider::open(options);
    EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().describe());
    return p.ok() ? std::move(p).value() : nullptr;
  }

  FrontendBuffer share_buffer(Provider& provider, std::size_t pages, AllocMode mode) {
    FrontendBufferConfig config;
    config.backend = 0;
    config.pages = pages;
    config.mode = mode;
    auto b = FrontendBuffer::create(provider, config);
    EXPECT_TRUE(b.ok()) << b.error().describe();
    return std::move(b).value();
  }

  static std::string attach_line(const char* mode, std::size_t pages, Gref gref, DomId domid) {
    return say(peer::kAttach, " " + std::string(mode) + " " + std::to_string(pages) + " " +
                                  std::to_string(gref) + " " + std::to_string(domid));
  }

  std::string dir, sim, sock;
  pid_t server = -1;
};

TEST_F(BackendServer, ClientsThatCloseBeforeTheGreetingCostOnlyThemselves) {
  start_server();
  for (int i = 0; i < 20; ++i) {
    RawClient c(sock);
    ASSERT_TRUE(c.connected());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(server_alive()) << server_err();
  EXPECT_LT(run_frontend(), 5.0);
  ASSERT_TRUE(server_alive()) << server_err();
  EXPECT_EQ(server_err(), "");
  expect_clean();
}

TEST_F(BackendServer, ClientsThatHangUpAtAnyPointCostOnlyThemselves) {
  start_server();
  auto fe = open_domain(1);
  ASSERT_TRUE(fe);
  auto buffer = share_buffer(*fe, 1024, AllocMode::kFrontend);
  const std::string attach = attach_line("frontend-alloc", 1024, buffer.directory_gref(), 1);
  {  // after the greeting
    RawClient c(sock);
    EXPECT_TRUE(greeted(c.line()));
  }
  {  // mid-line
    RawClient c(sock);
    EXPECT_TRUE(greeted(c.line()));
    EXPECT_TRUE(c.send_raw(attach.substr(0, 10)));
  }
  {  // right after ATTACH, before its answer
    RawClient c(sock);
    EXPECT_TRUE(greeted(c.line()));
    EXPECT_TRUE(c.send_raw(attach + "\n"));
  }
  {  // attached
    RawClient c(sock);
    EXPECT_TRUE(greeted(c.line()));
    EXPECT_TRUE(starts_with(c.ask(attach), "OK ")) << attach;
  }
  {  // after CHECK, before its answer
    RawClient c(sock);
    EXPECT_TRUE(greeted(c.line()));
    EXPECT_TRUE(starts_with(c.ask(attach), "OK "));
    EXPECT_TRUE(c.send_raw(say(peer::kCheck, " 7\n")));
  }
  {  // after CHECK's answer
    RawClient c(sock);
    EXPECT_TRUE(greeted(c.line()));
    EXPECT_TRUE(starts_with(c.ask(attach), "OK "));
    EXPECT_TRUE(starts_with(c.ask(say(peer::kCheck, " 7")), "ERR backend read: pattern 7 differs"));
  }
  ASSERT_TRUE(server_alive()) << server_err();
  EXPECT_LT(run_frontend(), 5.0);
  ASSERT_TRUE(server_alive()) << server_err();
  // Every client's mapping went with it: the buffer can be freed at once.
  EXPECT_TRUE(buffer.free().ok());
  fe.reset();
  expect_clean();
}

TEST_F(BackendServer, JunkNulsAndEndlessLinesCostOnlyTheirSender) {
  start_server();
  {
    RawClient c(sock);
    EXPECT_TRUE(greeted(c.line()));
    const std::string junk =
        std::string("\x01\xff\x00 ", 4) + say(peer::kAttach, std::string("\x00\x7f\xfe", 3));
    const std::string reply = c.ask(junk);
    EXPECT_TRUE(starts_with(reply, "ERR malformed request")) << reply;
    for (char ch : reply) EXPECT_TRUE(ch >= 0x20 && ch < 0x7f) << int(ch);
    // Strict words: no sign, no spaces around, no other base, no overflow.
    for (const std::string& bad :
         {say(peer::kAttach, " frontend-alloc +1 16 1"),
          say(peer::kAttach, " frontend-alloc 1 16 1 "), " " + say(peer::kCheck, " 1"),
          say(peer::kCheck, "  1"), say(peer::kAttach, " frontend-alloc 0x10 16 1"),
          say(peer::kAttach, " frontend-alloc 1 4294967296 1"),
          say(peer::kAttach, " frontend-alloc 1 16 65536"),
          say(peer::kCheck, " 18446744073709551616"), say(peer::kAttach, " sideways 1 16 1"),
          say(peer::kBye, " now"), say(peer::kHello, " 0")}) {
      EXPECT_TRUE(starts_with(c.ask(bad), "ERR ")) << bad;
    }
    EXPECT_EQ(c.ask(say(peer::kCheck, " 1")),
              "ERR " + say(peer::kCheck, " without an attached buffer"));
    EXPECT_EQ(c.ask(say(peer::kBye)), "OK");
    EXPECT_EQ(c.line(), "<closed>");
  }
  {  // a line of 1 MB: refused after 4096 bytes, the connection closed
    RawClient c(sock, true);
    EXPECT_TRUE(greeted(c.line()));
    (void)c.send_raw(std::string(1 << 20, 'A'));
    const std::string reply = c.line();
    EXPECT_TRUE(reply == "ERR line longer than 4096 bytes" || reply == "<closed>") << reply;
    if (reply != "<closed>") {
      EXPECT_EQ(c.line(), "<closed>");
    }
  }
  {  // half a line, then gone
    RawClient c(sock);
    EXPECT_TRUE(greeted(c.line()));
    EXPECT_TRUE(c.send_raw(say(peer::kCheck.substr(0, 3), std::string("\0\xff", 2))));
  }
  ASSERT_TRUE(server_alive()) << server_err();
  EXPECT_LT(run_frontend(), 5.0);
  ASSERT_TRUE(server_alive()) << server_err();
  expect_clean();
}

TEST_F(BackendServer, SilentClientsDoNotHoldUpAFrontendAndAreHungUpOn) {
  start_server();
  std::vector<std::unique_ptr<RawClient>> silent;
  for (int i = 0; i < 3; ++i) silent.push_back(std::make_unique<RawClient>(sock));
  const double took = run_frontend("1,1024");
  EXPECT_LT(took, 3.0) << "a frontend waited behind silent clients";
  std::printf("frontend (1 and 1024 pages, both modes) beside 3 silent clients: %.3f s\n", took);
  // --idle-timeout 1: each silent client is told and hung up on.
  const auto begin = Clock::now();
  for (auto& c : silent) {
    EXPECT_TRUE(greeted(c->line()));
    EXPECT_EQ(c->line(3000), "ERR no request for 1000 ms: hanging up");
    EXPECT_EQ(c->line(), "<closed>");
  }
  EXPECT_LT(seconds_since(begin), 2.0);
  ASSERT_TRUE(server_alive()) << server_err();
  expect_clean();
}

TEST_F(BackendServer, AFloodOfConnectionsBeyondTheLimitIsTurnedAwayAtOnce) {
  start_server({"--max-clients", "8"});
  constexpr int kConnections = 200;
  std::vector<std::unique_ptr<RawClient>> flood;
  const auto begin = Clock::now();
  for (int i = 0; i < kConnections; ++i) {
    flood.push_back(std::make_unique<RawClient>(sock, true));
    ASSERT_TRUE(flood.back()->connected()) << "connection " << i << " refused: " << strerror(errno);
  }
  int hello = 0, busy = 0;
  for (auto& c : flood) {
    const std::string first = c->line();
    if (greeted(first)) {
      ++hello;
    } else if (starts_with(first, "ERR busy")) {
      ++busy;
      EXPECT_EQ(c->line(), "<closed>");
    } else {
      ADD_FAILURE() << first;
    }
  }
  const double answered = seconds_since(begin);
  EXPECT_EQ(hello, 8);
  EXPECT_EQ(busy, kConnections - 8);
  std::printf("%d connections: %d served, %d turned away, all answered in %.3f s\n", kConnections,
              hello, busy, answered);
  ASSERT_TRUE(server_alive()) << server_err();
  flood.clear();
  EXPECT_LT(run_frontend(), 5.0);
  ASSERT_TRUE(server_alive()) << server_err();
  expect_clean();
}

TEST_F(BackendServer, AttachNamingAnotherDomainIsRefused) {
  start_server();
  // Domain 2 (this process) shares a buffer with the backend, domain 0.
  auto victim = open_domain(2);
  ASSERT_TRUE(victim);
  auto buffer = share_buffer(*victim, 4, AllocMode::kFrontend);
  const std::string attach = attach_line("frontend-alloc", 4, buffer.directory_gref(), 2);

  // Another process, attached as no domain, claims to be domain 2.
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t child = fork();
  if (child == 0) {
    close(pipe_fds[0]);
    std::string reply;
    {
      RawClient c(sock);
      reply = c.line();
      if (starts_with(reply, say(peer::kHello))) reply = c.ask(attach);
    }
    (void)!write(pipe_fds[1], reply.data(), reply.size());
    _exit(0);
  }
  close(pipe_fds[1]);
  std::string reply;
  char chunk[512];
  for (ssize_t got; (got = read(pipe_fds[0], chunk, sizeof chunk)) > 0;) {
    reply.append(chunk, static_cast<std::size_t>(got));
  }
  close(pipe_fds[0]);
  waitpid(child, nullptr, 0);
  EXPECT_TRUE(starts_with(reply, "ERR ")) << reply;
  EXPECT_NE(reply.find("(pid " + std::to_string(child) + ")"), std::string::npos) << reply;
  EXPECT_NE(reply.find("domain 2"), std::string::npos) << reply;
  EXPECT_NE(reply.find("EPERM"), std::string::npos) << reply;

  RawClient c(sock);
  EXPECT_TRUE(greeted(c.line()));
  // A domain nobody is attached as, and one this process is not.
  EXPECT_TRUE(starts_with(c.ask(attach_line("frontend-alloc", 4, buffer.directory_gref(), 9)),
                          "ERR the connecting process"));
  EXPECT_TRUE(starts_with(c.ask(attach_line("frontend-alloc", 4, buffer.directory_gref(), 1)),
                          "ERR the connecting process"));
  // The domain this process is: accepted.
  EXPECT_TRUE(starts_with(c.ask(attach), "OK "));
  EXPECT_EQ(c.ask(say(peer::kDetach)), "OK");
  EXPECT_EQ(c.ask(say(peer::kBye)), "OK");
  EXPECT_TRUE(buffer.free().ok());
  victim.reset();
  ASSERT_TRUE(server_alive()) << server_err();
  expect_clean();
}

TEST_F(BackendServer, OnlyAStaleSocketIsReplaced) {
  // A regular file: refused, untouched.
  const std::string file = dir + "/precious";
  std::ofstream(file) << "keep me\n";
  auto r =
      run_process({SHBUF_BIN, "backend", "--socket", file, "--sim", sim, "--accept-timeout", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(count_lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("shbuf: error: '" + file + "' exists and is not a socket"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(slurp(file), "keep me\n");

  // A stale socket (bound, nobody listening): replaced.
  {
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    const sockaddr_un addr = address_of(sock);
    ASSERT_EQ(bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
    close(fd);
  }
  start_server();
  EXPECT_LT(run_frontend("1"), 5.0);

  // A live socket: refused, and the server on it keeps it.
  r = run_process({SHBUF_BIN, "backend", "--socket", sock, "--sim", sim, "--accept-timeout", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(count_lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("is already in use"), std::string::npos) << r.err;
  ASSERT_TRUE(server_alive()) << server_err();
  EXPECT_LT(run_frontend("1"), 5.0);

  // On the way out the server removes its socket, and nothing else at the path.
  const std::string moved = dir + "/moved.sock";
  ASSERT_EQ(rename(sock.c_str(), moved.c_str()), 0);
  std::ofstream(sock) << "not yours\n";
  kill(server, SIGINT);
  const int st = wait_for(server, std::chrono::seconds(5));
  server = -1;
  EXPECT_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  EXPECT_EQ(slurp(sock), "not yours\n");
  std::filesystem::remove(sock);
  expect_clean();
}

TEST_F(BackendServer, OnceEndsWithItsFirstClientEvenOneGoneBeforeTheGreeting) {
  const pid_t pid = start(server_argv({"--once"}), dir + "/server.out", dir + "/server.err");
  // Stopped, so that the client is gone before the server accepts it.
  bool connected = false;
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (!connected && Clock::now() < deadline) {
    kill(pid, SIGSTOP);
    connected = RawClient(sock).connected();
    kill(pid, SIGCONT);
    if (!connected) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(connected);
  const int st = wait_for(pid, std::chrono::seconds(3));
  EXPECT_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0) << st << ": " << server_err();
  struct stat s {};
  EXPECT_NE(lstat(sock.c_str(), &s), 0) << "the server left its socket file";
}

TEST_F(BackendServer, VerboseSaysEachAttachAndDetachAndNothingElse) {
  start_server({"--verbose"});
  run_frontend("1,1024");
  expect_clean();
  EXPECT_EQ(server_err(),
            "shbuf: attached 1 pages of domain 1 (frontend-alloc)\nshbuf: detached\n"
            "shbuf: attached 1024 pages of domain 1 (frontend-alloc)\nshbuf: detached\n"
            "shbuf: attached 1 pages of domain 1 (backend-alloc)\nshbuf: detached\n"
            "shbuf: attached 1024 pages of domain 1 (backend-alloc)\nshbuf: detached\n");
}

// --hold keeps the buffer shared and attached: the simulator shows it mapped
// meanwhile, and a frontend killed then leaves the server holding nothing.
TEST_F(BackendServer, AFrontendKilledWhileItHoldsItsBufferLeavesNothing) {
  start_server({"--verbose"});
  const pid_t fe = start({SHBUF_BIN, "frontend", "--socket", sock, "--sim", sim, "--domid", "1",
                          "--pages", "16", "--mode", "frontend-alloc", "--hold", "30"},
                         dir + "/frontend.out", dir + "/frontend.err");
  bool mapped = false;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!mapped && Clock::now() < deadline) {
    auto st = SimProvider::status(sim);
    ASSERT_TRUE(st.ok()) << st.error().describe();
    std::size_t pages = 0;
    for (const auto& m : st->mappings) pages += m.mapper == 0 ? m.count : 0;
    mapped = pages == 16;
    if (!mapped) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(mapped) << server_err();
  EXPECT_EQ(server_err(), "shbuf: attached 16 pages of domain 1 (frontend-alloc)\n");
  kill(fe, SIGKILL);
  EXPECT_NE(wait_for(fe, std::chrono::seconds(5)), -1);
  expect_clean();
  EXPECT_TRUE(server_alive());
}

TEST_F(BackendServer, NewOptionsAreStrict) {
  for (const std::vector<std::string>& bad : {std::vector<std::string>{"--max-clients", "0"},
                                              {"--max-clients", "513"},
                                              {"--max-clients", "1e2"},
                                              {"--max-clients", "-1"},
                                              {"--idle-timeout", "0"},
                                              {"--idle-timeout", "-1"},
                                              {"--idle-timeout", "1e3"},
                                              {"--idle-timeout", "86401"}}) {
    auto r = run_process(server_argv(bad));
    EXPECT_EQ(r.exit_code, 2) << bad[0] << " " << bad[1] << ": " << r.err;
    EXPECT_EQ(count_lines(r.err), 1u) << r.err;
  }
  auto help = run_process({SHBUF_BIN, "backend", "--help"});
  EXPECT_NE(help.out.find("max-clients x max-pages"), std::string::npos) << help.out;
}

// The demo's entries in `base` that no other running demo made: those named
// shbuf-demo-<pid>-* for another pid are another demo's.
std::set<std::string> demo_dirs(const std::string& base, pid_t ours) {
  std::set<std::string> found;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(base, ec)) {
    const std::string name = e.path().filename().string();
    if (!starts_with(name, "shbuf-demo-")) continue;
    const std::string rest = name.substr(11);
    const std::size_t dash = rest.find('-');
    const bool other_demo = dash != std::string::npos && dash > 0 &&
                            rest.find_first_not_of("0123456789") == dash &&
                            rest.substr(0, dash) != std::to_string(ours);
    if (!other_demo) found.insert(name);
  }
  return found;
}

TEST_F(BackendServer, AFailingDemoSaysSoOnceAndLeavesNothing) {
  for (const char* fault : {"map:1:EIO", "share:1:ENOMEM", "no-such-op:1"}) {
    SCOPED_TRACE(fault);
    const auto before = demo_dirs("/dev/shm", 0);
    const pid_t demo = start({SHBUF_BIN, "demo", "--pages", "1,2"}, dir + "/demo.out",
                             dir + "/demo.err", {std::string("SHBUF_SIM_FAULT=") + fault});
    const int st = wait_for(demo, std::chrono::seconds(60));
    ASSERT_NE(st, -1) << "the demo hung";
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << st;
    const std::string err = slurp(dir + "/demo.err");
    std::size_t errors = 0;
    for (std::size_t at = err.find("shbuf: error:"); at != std::string::npos;
         at = err.find("shbuf: error:", at + 1)) {
      ++errors;
    }
    EXPECT_EQ(errors, 1u) << err;
    EXPECT_EQ(count_lines(err), 1u) << err;
    EXPECT_NE(err.find("shbuf: error: demo failed: "), std::string::npos) << err;
    EXPECT_NE(slurp(dir + "/demo.out").find("FAILED"), std::string::npos);
    std::set<std::string> left;
    for (const std::string& d : demo_dirs("/dev/shm", demo)) {
      if (!before.contains(d)) left.insert(d);
    }
    EXPECT_TRUE(left.empty()) << "left behind: /dev/shm/" << *left.begin();
  }
}

TEST_F(BackendServer, AnInterruptedDemoStopsItsChildrenAndLeavesNothing) {
  const auto before = demo_dirs("/dev/shm", 0);
  const pid_t demo = start({SHBUF_BIN, "demo", "--pages", "16384,16384,16384,16384"},
                           dir + "/demo.out", dir + "/demo.err");
  // Interrupted once its directory exists, while its children work.
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  std::set<std::string> made;
  while (made.empty() && Clock::now() < deadline) {
    for (const std::string& d : demo_dirs("/dev/shm", demo)) {
      if (!before.contains(d)) made.insert(d);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_FALSE(made.empty()) << "the demo made no directory";
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  kill(demo, SIGTERM);
  const int st = wait_for(demo, std::chrono::seconds(10));
  ASSERT_NE(st, -1) << "the demo hung";
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << st;
  const std::string err = slurp(dir + "/demo.err");
  EXPECT_EQ(count_lines(err), 1u) << err;
  EXPECT_NE(err.find("shbuf: error: demo interrupted by signal 15"), std::string::npos) << err;
  for (const std::string& d : made) {
    EXPECT_FALSE(std::filesystem::exists("/dev/shm/" + d)) << "left behind: /dev/shm/" << d;
  }
}

}  // namespace
}  // namespace shbuf
