// `shbuf backend`: serves frontends on a Unix socket, many at once, in one
// thread, or one at a time on a vchan from another domain. Each client costs at most one buffer of
// max_pages pages, a line of peer::kMaxLine bytes in and one reply out, and is dropped when it
// sends no request for idle_timeout seconds, sends a line too long, or hangs up. What one client
// does (silence, junk, hanging up at any point) costs only that client.
#pragma once

#include <cstddef>
#include <string>

#include "shbuf/core/page_directory.h"
#include "shbuf/core/provider.h"

namespace shbuf::cli {

struct ServerOptions {
  std::string socket;
  // DOMID:PATH: instead of a socket, a libxenvchan channel offered to a
  // frontend in domain DOMID, one frontend at a time; a frontend whose
  // domain goes away is dropped within about a second.
  std::string vchan;
  // Serve the first client, then exit; other clients meanwhile are busy.
  bool once = false;
  // A line on stderr for each buffer attached and detached.
  bool verbose = false;
  // Exit 1 when no client has been connected for this long (0: never).
  double accept_timeout = 0;
  // Drop a client that sends no complete request for this long.
  double idle_timeout = 60;
  std::size_t max_clients = 64;
  std::size_t max_pages = kDefaultMaxPages;
};

inline constexpr std::size_t kMaxClientsLimit = 512;

// Listens on options.socket, replacing only a stale socket (a socket file
// nobody listens on), or offers options.vchan, and serves until --once's
// client is done, SIGINT or SIGTERM (exit 0), or the accept timeout (exit
// 1). The socket file is removed on the way out if it is still the one
// created here.
void run_server(Provider& provider, const ServerOptions& options);

}  // namespace shbuf::cli
