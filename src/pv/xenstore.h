// Xenstore as a PV backend or frontend sees it: a tree of small values with
// permissions, watches and transactions. One implementation talks to the real
// xenstored through libxenstore, the other is the simulator's tree shared by
// the processes of a sim instance; code above this interface never asks which.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shbuf/core/result.h"
#include "shbuf/core/xen_types.h"

namespace shbuf::pv {

// xenstored's limits (xen/io/xs_wire.h): a value or a request's payload, and
// an absolute path.
inline constexpr std::size_t kXenstorePayloadMax = 4096;
inline constexpr std::size_t kXenstoreAbsPathMax = 3072;

// What a domain may do with a node, as in xenstored's permission strings
// ("n", "r", "w", "b").
enum class Perm : std::uint8_t { kNone, kRead, kWrite, kBoth };

// One entry of a node's permission list. The first entry names the node's
// owner (who may do anything) and what every other domain may do; each later
// entry says what one domain may do.
struct Permission {
  DomId domid = 0;
  Perm perm = Perm::kNone;
  bool operator==(const Permission&) const = default;
};

// A watch that fired: the path that changed (or the watched path, for the
// event every new watch fires once) and the token the watch was set with.
struct WatchEvent {
  std::string path;
  std::string token;
  bool operator==(const WatchEvent&) const = default;
};

// A transaction's id; kNoTransaction makes a call take effect at once.
using Transaction = std::uint32_t;
inline constexpr Transaction kNoTransaction = 0;

// Paths are absolute ("/local/domain/1/device") or relative to our domain's
// home (/local/domain/<self>). A path that is empty, too long, or holds a
// character xenstored refuses (only letters, digits and "-/_@" are allowed;
// no "//" and no trailing "/") is refused with EINVAL, a node we may not
// read or write with EACCES, a missing one with ENOENT.
class Xenstore {
 public:
  virtual ~Xenstore() = default;

  // The value at `path`.
  virtual Result<std::string> read(Transaction t, const std::string& path) = 0;
  // Sets the value at `path`, creating it and any missing parent (E2BIG over
  // kXenstorePayloadMax bytes).
  virtual Status write(Transaction t, const std::string& path, std::string_view value) = 0;
  // Creates `path` with an empty value unless it exists.
  virtual Status mkdir(Transaction t, const std::string& path) = 0;
  // Removes `path` and everything under it; a missing path is not an error.
  virtual Status rm(Transaction t, const std::string& path) = 0;
  // The names of the children of `path`, sorted.
  virtual Result<std::vector<std::string>> list(Transaction t, const std::string& path) = 0;
  virtual Result<std::vector<Permission>> permissions(Transaction t, const std::string& path) = 0;
  // Only the owner of a node or dom0 may change its permissions (EACCES).
  virtual Status set_permissions(Transaction t, const std::string& path,
                                 const std::vector<Permission>& perms) = 0;

  // Starts a transaction: reads see the tree as it was then plus the
  // transaction's own changes, which the others see only once it commits.
  virtual Result<Transaction> begin() = 0;
  // Commits (`commit`) or drops the transaction's changes. Commit fails with
  // EAGAIN when the tree changed in between: start again.
  virtual Status end(Transaction t, bool commit) = 0;

  // Watches `path` and everything under it. The watch fires once at once.
  virtual Status watch(const std::string& path, const std::string& token) = 0;
  virtual Status unwatch(const std::string& path, const std::string& token) = 0;
  // Readable when a watch has fired.
  virtual int fd() const = 0;
  // The next fired watch without waiting, or nullopt when none is queued.
  virtual Result<std::optional<WatchEvent>> next_event() = 0;

  // Whether `domid` exists (xenstored has it introduced).
  virtual Result<bool> domain_exists(DomId domid) = 0;
  // The domain this handle acts as.
  virtual DomId self() const = 0;
};

// A number read from xenstore (ring-ref, event-channel, state, domain and
// device ids): decimal digits only, no sign or space, at most 2^32 - 1;
// nullopt for anything else.
std::optional<std::uint32_t> parse_xenstore_u32(std::string_view text);

// "/local/domain/<domid>", a domain's home in the tree.
std::string domain_path(DomId domid);

// Parses a xenstored permission string list ("n0", "r5", ...); EINVAL names
// the bad entry.
Result<Permission> parse_permission(std::string_view text);
std::string to_string(const Permission& p);

// Checks a path as xenstored does (see above); EINVAL names it.
Status check_path(std::string_view path);

}  // namespace shbuf::pv
