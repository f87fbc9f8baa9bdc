// The simulator's xenstore tree as it is kept in the instance's `xenstore`
// file: the nodes, a generation counter bumped whenever a node changes, and
// the watches of every process. The file is untrusted (a process may die
// while writing, anything may overwrite it): parse_tree() checks every field
// and bound, and serialise_tree() writes only what parse_tree() accepts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "pv/sim/mailbox.h"
#include "pv/xenstore.h"
#include "shbuf/core/result.h"

namespace shbuf::pv::sim {

// Bounds of the file and of what it holds.
inline constexpr std::size_t kXenstoreFileMax = 8u << 20;
inline constexpr std::size_t kXenstoreNodesMax = 1u << 16;
inline constexpr std::size_t kXenstoreWatchesMax = 4096;

struct Node {
  std::vector<Permission> perms;  // never empty
  std::string value;
  bool operator==(const Node&) const = default;
};

// A node's absolute path to the node; every node's parent is in the map.
using Nodes = std::map<std::string, Node>;

// One watch of one handle: events go to its mailbox.
struct WatchRecord {
  MailboxAddress mailbox = 0;
  DomId domid = 0;        // the watcher, whose read permission filters events
  bool relative = false;  // set with a path relative to the watcher's home
  bool overflow = false;  // an event was lost to a full mailbox
  std::string path;       // absolute, or @introduceDomain / @releaseDomain
  std::string token;      // at most kXenstorePayloadMax bytes, no NUL
  bool operator==(const WatchRecord&) const = default;
};

struct Tree {
  std::uint64_t generation = 0;
  Nodes nodes;
  std::vector<WatchRecord> watches;
  bool operator==(const Tree&) const = default;
};

// A tree holding "/", "/local" and "/local/domain", owned by dom0 and closed
// to the others: what a missing file stands for.
Tree fresh_tree();

// Parses a file's bytes. EUCLEAN names what is wrong (the caller adds the
// file and what to do about it); ENOMEM when memory runs out.
Result<Tree> parse_tree(std::string_view bytes);

// The file's bytes for `tree`.
std::string serialise_tree(const Tree& tree);

// The perms' xenstored string form: "n0,r5".
std::string perms_string(const std::vector<Permission>& perms);

}  // namespace shbuf::pv::sim
