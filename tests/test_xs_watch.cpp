// The xenstore wire protocol of the watch connection, and the connection
// itself against a scripted xenstored on a Unix socket (XENSTORED_PATH):
// events that overtake replies, refusals, and a daemon that misbehaves.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

#include <gtest/gtest.h>

extern "C" {
#include <xen/io/xs_wire.h>
}

#include "core/unique_fd.h"
#include "pv/xen/xs_watch.h"
#include "pv/xen/xs_wire.h"

namespace {

using namespace shbuf;
using namespace shbuf::pv;
using namespace shbuf::pv::xen;

std::string event_body(const std::string& path, const std::string& token) {
  return path + std::string(1, '\0') + token + std::string(1, '\0');
}

std::string message(std::uint32_t type, std::uint32_t req_id, const std::string& body) {
  return encode_xs_request(type, req_id, body);
}

TEST(XsWire, MessagesAreFramedAcrossReadsOfAnySize) {
  const std::string stream = message(XS_WATCH_EVENT, 0, event_body("/a", "t")) +
                             message(XS_WATCH, 7, std::string("OK\0", 3)) + message(XS_ERROR, 8, "");
  for (std::size_t chunk = 1; chunk <= stream.size(); chunk += 5) {
    XsMessageReader r;
    std::vector<XsMessage> got;
    for (std::size_t at = 0; at < stream.size(); at += chunk) {
      r.append(std::string_view(stream).substr(at, chunk));
      for (;;) {
        auto m = r.next();
        ASSERT_TRUE(m.ok());
        if (!*m) break;
        got.push_back(std::move(**m));
      }
    }
    ASSERT_EQ(got.size(), 3u) << "chunk " << chunk;
    EXPECT_EQ(got[0].type, std::uint32_t(XS_WATCH_EVENT));
    EXPECT_EQ(got[0].body, event_body("/a", "t"));
    EXPECT_EQ(got[1].req_id, 7u);
    EXPECT_EQ(got[1].body, std::string("OK\0", 3));
    EXPECT_EQ(got[2].type, std::uint32_t(XS_ERROR));
    EXPECT_TRUE(got[2].body.empty());
    EXPECT_EQ(r.pending(), 0u);
  }
}

TEST(XsWire, AnOversizedHeaderBreaksTheStreamForGood) {
  XsMessageReader r;
  std::string h = message(XS_WATCH_EVENT, 0, "");
  const std::uint32_t len = kXenstorePayloadMax + 1;
  std::memcpy(h.data() + 12, &len, 4);
  r.append(h);
  auto m = r.next();
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, EPROTO);
  r.append(message(XS_WATCH_EVENT, 0, event_body("/a", "t")));
  EXPECT_EQ(r.next().error().code, EPROTO);
}

TEST(XsWire, WatchEventsAreTwoStringsEachEndedByNul) {
  auto ok = parse_xs_watch_event(event_body("/local/domain/1", "tok en"));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, (WatchEvent{"/local/domain/1", "tok en"}));
  EXPECT_TRUE(parse_xs_watch_event(event_body("@releaseDomain", "")).ok());
  for (const std::string& bad :
       {std::string(), std::string("/a"), std::string("/a\0t", 4), event_body("/a", "t") + "x",
        event_body("/a", "t") + std::string(1, '\0'), event_body("", "t"),
        event_body("/a b", "t"), event_body("/a//b", "t")}) {
    auto r = parse_xs_watch_event(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, EPROTO);
    EXPECT_FALSE(r.error().message.empty());
  }
}

TEST(XsWire, ErrorRepliesNameAnErrno) {
  EXPECT_EQ(parse_xs_error(std::string("ENOENT\0", 7)), ENOENT);
  EXPECT_EQ(parse_xs_error("EACCES"), EACCES);
  EXPECT_EQ(parse_xs_error(std::string("E2BIG\0", 6)), E2BIG);
  EXPECT_EQ(parse_xs_error("EWHATEVER"), EIO);
  EXPECT_EQ(parse_xs_error(""), EIO);
}

// A xenstored that accepts one connection and runs `script` on it.
class FakeXenstored {
 public:
  using Script = std::function<void(FakeXenstored&)>;

  FakeXenstored() {
    path_ = (std::filesystem::temp_directory_path() /
             ("shbuf-xs-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++)))
                .string();
    ::unlink(path_.c_str());
    listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    if (::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_.get(), 1) != 0) {
      std::abort();
    }
    ::setenv("XENSTORED_PATH", path_.c_str(), 1);
  }
  ~FakeXenstored() {
    if (thread_.joinable()) thread_.join();
    ::unsetenv("XENSTORED_PATH");
    ::unlink(path_.c_str());
  }

  void run(Script script) {
    thread_ = std::thread([this, script = std::move(script)] {
      conn_.reset(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (conn_) script(*this);
      conn_.reset();
    });
  }

  // The next request, or a message of type XS_INVALID when the client left.
  XsMessage request() {
    for (;;) {
      auto m = reader_.next();
      if (m.ok() && *m) return std::move(**m);
      char buf[512];
      const ssize_t n = ::read(conn_.get(), buf, sizeof buf);
      if (n <= 0 || !m.ok()) return XsMessage{XS_INVALID, 0, 0, {}};
      reader_.append(std::string_view(buf, std::size_t(n)));
    }
  }
  void send(const std::string& bytes) {
    for (std::size_t done = 0; done < bytes.size();) {
      const ssize_t n = ::write(conn_.get(), bytes.data() + done, bytes.size() - done);
      if (n <= 0) return;
      done += std::size_t(n);
    }
  }
  void event(const std::string& path, const std::string& token) {
    send(message(XS_WATCH_EVENT, 0, event_body(path, token)));
  }
  // Answers `req` with OK.
  void ok(const XsMessage& req) { send(message(req.type, req.req_id, std::string("OK\0", 3))); }

 private:
  static inline int counter_ = 0;
  std::string path_;
  UniqueFd listen_;
  UniqueFd conn_;
  XsMessageReader reader_;
  std::thread thread_;
};

bool readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

// The next event, waiting up to a second.
Result<std::optional<WatchEvent>> wait_event(XsWatchConnection& c) {
  for (int i = 0; i < 100; ++i) {
    auto ev = c.next_event();
    if (!ev.ok() || *ev) return ev;
    readable(c.fd(), 10);
  }
  return std::optional<WatchEvent>();
}

TEST(XsWatchConnection, AnEventThatOvertakesTheReplyIsKeptAndTheReplyStillCounts) {
  FakeXenstored xsd;
  xsd.run([](FakeXenstored& d) {
    const XsMessage w = d.request();
    if (w.type != XS_WATCH || w.body != event_body("/a", "tok")) return;
    d.event("/a", "tok");  // before the reply, as xenstored may send it
    d.ok(w);
    d.event("/a/b", "tok");
    const XsMessage u = d.request();
    if (u.type == XS_UNWATCH) d.ok(u);
  });
  auto c = XsWatchConnection::open();
  ASSERT_TRUE(c.ok()) << c.error().describe();
  ASSERT_TRUE((*c)->watch("/a", "tok").ok());
  // The event read with the reply makes the descriptor readable.
  EXPECT_TRUE(readable((*c)->fd(), 0));
  auto first = (*c)->next_event();
  ASSERT_TRUE(first.ok() && *first);
  EXPECT_EQ(**first, (WatchEvent{"/a", "tok"}));
  auto second = wait_event(**c);
  ASSERT_TRUE(second.ok() && *second);
  EXPECT_EQ(**second, (WatchEvent{"/a/b", "tok"}));
  auto none = (*c)->next_event();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(*none);
  EXPECT_FALSE(readable((*c)->fd(), 0));
  EXPECT_TRUE((*c)->unwatch("/a", "tok").ok());
}

TEST(XsWatchConnection, ARefusalNamesTheErrnoAndTheConnectionGoesOn) {
  FakeXenstored xsd;
  xsd.run([](FakeXenstored& d) {
    const XsMessage u = d.request();
    d.send(message(XS_ERROR, u.req_id, std::string("ENOENT\0", 7)));
    d.ok(d.request());
  });
  auto c = XsWatchConnection::open();
  ASSERT_TRUE(c.ok()) << c.error().describe();
  const Status s = (*c)->unwatch("/never", "t");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ENOENT);
  EXPECT_NE(s.error().message.find("/never"), std::string::npos) << s.error().message;
  EXPECT_TRUE((*c)->watch("/a", "t").ok());
}

TEST(XsWatchConnection, BadPathsAndTokensAreRefusedBeforeSending) {
  FakeXenstored xsd;
  xsd.run([](FakeXenstored& d) { (void)d.request(); });
  auto c = XsWatchConnection::open();
  ASSERT_TRUE(c.ok()) << c.error().describe();
  EXPECT_EQ((*c)->watch("/a b", "t").error().code, EINVAL);
  EXPECT_EQ((*c)->watch("/a", std::string("t\0u", 3)).error().code, EINVAL);
  EXPECT_EQ((*c)->watch("/a", std::string(kXenstorePayloadMax, 't')).error().code, E2BIG);
}

TEST(XsWatchConnection, AMalformedEventIsToldOnceAndTheNextOneArrives) {
  FakeXenstored xsd;
  xsd.run([](FakeXenstored& d) {
    d.ok(d.request());
    d.send(message(XS_WATCH_EVENT, 0, "no terminator"));
    d.event("/a/c", "t");
    (void)d.request();
  });
  auto c = XsWatchConnection::open();
  ASSERT_TRUE(c.ok()) << c.error().describe();
  ASSERT_TRUE((*c)->watch("/a", "t").ok());
  auto bad = wait_event(**c);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, EPROTO);
  auto good = wait_event(**c);
  ASSERT_TRUE(good.ok()) << good.error().describe();
  ASSERT_TRUE(*good);
  EXPECT_EQ(**good, (WatchEvent{"/a/c", "t"}));
}

TEST(XsWatchConnection, AnOversizedMessageBreaksTheConnectionForGood) {
  FakeXenstored xsd;
  xsd.run([](FakeXenstored& d) {
    d.ok(d.request());
    std::string h = message(XS_WATCH_EVENT, 0, "");
    const std::uint32_t len = 1u << 20;
    std::memcpy(h.data() + 12, &len, 4);
    d.send(h);
    (void)d.request();
  });
  auto c = XsWatchConnection::open();
  ASSERT_TRUE(c.ok()) << c.error().describe();
  ASSERT_TRUE((*c)->watch("/a", "t").ok());
  auto ev = wait_event(**c);
  ASSERT_FALSE(ev.ok());
  EXPECT_EQ(ev.error().code, EPROTO);
  EXPECT_EQ((*c)->watch("/b", "t").error().code, EPROTO);
  EXPECT_EQ((*c)->next_event().error().code, EPROTO);
}

TEST(XsWatchConnection, AReplyToAnotherRequestBreaksTheConnection) {
  FakeXenstored xsd;
  xsd.run([](FakeXenstored& d) {
    const XsMessage w = d.request();
    d.send(message(XS_WATCH, w.req_id + 1, std::string("OK\0", 3)));
    (void)d.request();
  });
  auto c = XsWatchConnection::open();
  ASSERT_TRUE(c.ok()) << c.error().describe();
  EXPECT_EQ((*c)->watch("/a", "t").error().code, EPROTO);
  EXPECT_EQ((*c)->watch("/a", "t").error().code, EPROTO);
}

TEST(XsWatchConnection, ADaemonThatLeavesOrNeverAnswersIsAnError) {
  {
    FakeXenstored xsd;
    xsd.run([](FakeXenstored& d) { d.ok(d.request()); });
    auto c = XsWatchConnection::open();
    ASSERT_TRUE(c.ok()) << c.error().describe();
    ASSERT_TRUE((*c)->watch("/a", "t").ok());
    auto ev = wait_event(**c);
    ASSERT_FALSE(ev.ok());
    EXPECT_EQ(ev.error().code, EPIPE);
  }
  {
    FakeXenstored xsd;
    xsd.run([](FakeXenstored& d) {
      (void)d.request();
      (void)d.request();  // returns once the client has gone
    });
    auto c = XsWatchConnection::open(std::chrono::milliseconds(100));
    ASSERT_TRUE(c.ok()) << c.error().describe();
    EXPECT_EQ((*c)->watch("/a", "t").error().code, ETIMEDOUT);
    EXPECT_EQ((*c)->watch("/a", "t").error().code, ETIMEDOUT);
  }
}

TEST(XsWatchConnection, EventsBeyondTheQueueBecomeOneEventPerWatch) {
  constexpr std::size_t kSent = XsWatchConnection::kMaxQueuedEvents + 5;
  FakeXenstored xsd;
  xsd.run([](FakeXenstored& d) {
    d.ok(d.request());
    std::string burst;
    for (std::size_t i = 0; i < kSent; ++i) {
      burst += message(XS_WATCH_EVENT, 0, event_body("/a/n" + std::to_string(i), "t"));
    }
    d.send(burst);
    d.ok(d.request());  // read after the whole burst
    (void)d.request();
  });
  auto c = XsWatchConnection::open();
  ASSERT_TRUE(c.ok()) << c.error().describe();
  ASSERT_TRUE((*c)->watch("/a", "t").ok());
  ASSERT_TRUE((*c)->watch("/b", "u").ok());
  for (std::size_t i = 0; i < XsWatchConnection::kMaxQueuedEvents; ++i) {
    auto ev = (*c)->next_event();
    ASSERT_TRUE(ev.ok() && *ev) << i;
    EXPECT_EQ((*ev)->path, "/a/n" + std::to_string(i));
  }
  auto owed = (*c)->next_event();
  ASSERT_TRUE(owed.ok() && *owed);
  EXPECT_EQ(**owed, (WatchEvent{"/a", "t"}));
  auto none = (*c)->next_event();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(*none);
}

TEST(XsWatchConnection, NoDaemonIsENodevOrTheSocketsError) {
  ::setenv("XENSTORED_PATH", "/nonexistent/shbuf/socket", 1);
  auto c = XsWatchConnection::open();
  ::unsetenv("XENSTORED_PATH");
  // Without Xen, the guest devices are missing too.
  if (!std::filesystem::exists("/dev/xen/xenbus") && !std::filesystem::exists("/proc/xen/xenbus")) {
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.error().code, ENODEV);
    EXPECT_NE(c.error().message.find("/nonexistent/shbuf/socket"), std::string::npos);
  }
}

}  // namespace
