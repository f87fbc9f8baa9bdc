// A connection to xenstored that carries only watches, speaking the wire
// protocol itself. libxenstore's static archive is built without its reader
// thread: there, a watch event that arrives before the reply to a request
// makes that request fail and leaves the reply behind for the next one, and
// the descriptor xs_fileno() gives never becomes readable. Keeping watches
// on their own connection, read by us, makes them behave the same whichever
// libxenstore is linked.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "core/unique_fd.h"
#include "pv/xen/xs_wire.h"

namespace shbuf::pv::xen {

class XsWatchConnection {
 public:
  // Events held for the caller; beyond that, each watch that lost an event
  // gets one event naming its own path once the queue has room (a change
  // below it happened: read again).
  static constexpr std::size_t kMaxQueuedEvents = 1024;
  // How long a request waits for xenstored's reply by default.
  static constexpr std::chrono::milliseconds kReplyTimeout{10000};

  // Connects to xenstored's socket, or else to the xenbus device of a guest
  // (the paths libxenstore uses, XENSTORED_PATH first). A reply that takes
  // longer than `reply_timeout` fails its request with ETIMEDOUT and breaks
  // the connection.
  static Result<std::unique_ptr<XsWatchConnection>> open(
      std::chrono::milliseconds reply_timeout = kReplyTimeout);

  Status watch(const std::string& path, const std::string& token);
  Status unwatch(const std::string& path, const std::string& token);
  // Readable while an event is queued or xenstored has sent something.
  int fd() const { return epoll_.get(); }
  // The next event without waiting, or nullopt. A malformed event from
  // xenstored is EPROTO, once; a connection that broke (xenstored gone, a
  // reply that never came or did not match) fails every call after.
  Result<std::optional<WatchEvent>> next_event();

 private:
  XsWatchConnection(UniqueFd conn, UniqueFd epoll, UniqueFd ready,
                    std::chrono::milliseconds reply_timeout)
      : conn_(std::move(conn)),
        epoll_(std::move(epoll)),
        ready_(std::move(ready)),
        reply_timeout_(reply_timeout) {}

  Status request(std::uint32_t type, const std::string& path, const std::string& token,
                 const std::string& what);
  // Reads what xenstored sent, waiting at most `wait` for something.
  Status pump(std::chrono::milliseconds wait);
  Status take(XsMessage m);
  void queue(WatchEvent ev);
  // Keeps ready_ readable exactly while events are queued.
  void sync_ready();
  Error broken(Error e);

  UniqueFd conn_;
  UniqueFd epoll_;
  UniqueFd ready_;  // an eventfd
  std::chrono::milliseconds reply_timeout_;
  bool ready_set_ = false;
  XsMessageReader reader_;
  std::deque<WatchEvent> events_;
  std::set<std::pair<std::string, std::string>> watches_;  // (path, token)
  std::set<std::pair<std::string, std::string>> lost_;     // watches owed an event
  std::optional<Error> bad_event_;  // a malformed event, told once
  std::optional<XsMessage> reply_;
  std::uint32_t next_req_ = 1;
  std::optional<Error> broken_;
};

}  // namespace shbuf::pv::xen
