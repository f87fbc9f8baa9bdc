// The simulator's xenstore: one tree per sim instance, in the instance's
// `xenstore` file, shared by its processes. Every call takes the instance
// lock, reads the file, acts, and when it changed something writes a new
// file and renames it over the old one, so that a process that dies at any
// point leaves either the old tree or the new one. Watches are records in
// the same file; a change sends "path\0token" to each watcher's mailbox.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <new>

#include "grant/sim/instance.h"
#include "grant/sim/layout.h"
#include "pv/platform.h"
#include "pv/sim/mailbox.h"
#include "pv/sim/xenstore_tree.h"

namespace shbuf::pv {
namespace {

using sim::Node;
using sim::Nodes;
using sim::Tree;
using sim::WatchRecord;
using Instance = ::shbuf::sim::Instance;

constexpr std::size_t kTransactionsMax = 16;
constexpr std::string_view kIntroduce = "@introduceDomain";
constexpr std::string_view kRelease = "@releaseDomain";

// As xenstored: dom0 and the owner may do anything; another domain what its
// own entry says, else what the first entry gives everyone.
bool allowed(DomId who, const std::vector<Permission>& perms, bool write) {
  if (who == 0) return true;
  if (perms.empty()) return false;
  if (perms[0].domid == who) return true;
  Perm p = perms[0].perm;
  for (std::size_t i = 1; i < perms.size(); ++i) {
    if (perms[i].domid == who) {
      p = perms[i].perm;
      break;
    }
  }
  return p == Perm::kBoth || p == (write ? Perm::kWrite : Perm::kRead);
}

std::string parent_of(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  return slash == 0 ? std::string("/") : path.substr(0, slash);
}

// `path` is `top` or below it.
bool under(std::string_view path, std::string_view top) {
  if (top == "/") return path.starts_with('/');
  return path.starts_with(top) && (path.size() == top.size() || path[top.size()] == '/');
}

// "/local/domain/<id>": a domain's home, whose creation and removal fire
// @introduceDomain and @releaseDomain.
bool is_domain_home(std::string_view path) {
  constexpr std::string_view kPrefix = "/local/domain/";
  if (!path.starts_with(kPrefix) || path.size() == kPrefix.size()) return false;
  for (const char c : path.substr(kPrefix.size())) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// One change a call made: the node written (or created, or whose
// permissions changed), a subtree removed with the permissions its nodes
// had, or a special path.
struct Change {
  std::string path;
  bool removed = false;
  std::map<std::string, std::vector<Permission>> gone;
};

Change changed(std::string path) {
  Change c;
  c.path = std::move(path);
  return c;
}

struct Txn {
  std::uint64_t generation = 0;
  Nodes nodes;
  std::vector<Change> changes;
};

Error no_node(const std::string& path) {
  return make_error(ENOENT, "xenstore has no node " + path);
}

Error refused(DomId self, const char* what, const std::string& path) {
  return make_error(EACCES,
                    "xenstore: " + ::shbuf::sim::dom_str(self) + " may not " + what + " " + path);
}

class SimXenstore final : public Xenstore {
 public:
  SimXenstore(std::unique_ptr<Instance> in, std::string key, sim::Mailbox mailbox, DomId self)
      : in_(std::move(in)), key_(std::move(key)), mailbox_(std::move(mailbox)), self_(self) {}

  // Our watches go with us; a failure leaves records whose mailbox is gone,
  // which the next event for them or a full watch table drops.
  ~SimXenstore() override {
    try {
      (void)locked([&](Tree& tree, bool& dirty) {
        const std::size_t before = tree.watches.size();
        std::erase_if(tree.watches,
                      [&](const WatchRecord& w) { return w.mailbox == mailbox_.address(); });
        dirty = tree.watches.size() != before;
        return Status{};
      });
    } catch (...) {
    }
  }

  SimXenstore(const SimXenstore&) = delete;
  SimXenstore& operator=(const SimXenstore&) = delete;

  Result<std::string> read(Transaction t, const std::string& path) override {
    std::lock_guard guard(mu_);
    auto abs = absolute(path, false);
    if (!abs.ok()) return std::move(abs).error();
    std::string value;
    SHBUF_TRY(run(t, [&](Nodes& nodes, std::vector<Change>&) -> Status {
      const auto it = nodes.find(*abs);
      if (it == nodes.end()) return no_node(*abs);
      if (!allowed(self_, it->second.perms, false)) return refused(self_, "read", *abs);
      value = it->second.value;
      return {};
    }));
    return value;
  }

  Status write(Transaction t, const std::string& path, std::string_view value) override {
    std::lock_guard guard(mu_);
    auto abs = absolute(path, false);
    if (!abs.ok()) return std::move(abs).error();
    if (value.size() > kXenstorePayloadMax) {
      return make_error(E2BIG, "xenstore value of " + std::to_string(value.size()) + " bytes for " +
                                   *abs + " (at most " + std::to_string(kXenstorePayloadMax) + ")");
    }
    return run(t, [&](Nodes& nodes, std::vector<Change>& changes) -> Status {
      const auto it = nodes.find(*abs);
      if (it == nodes.end()) return create(nodes, changes, *abs, value);
      if (!allowed(self_, it->second.perms, true)) return refused(self_, "write", *abs);
      it->second.value = std::string(value);
      changes.push_back(changed(*abs));
      return {};
    });
  }

  Status mkdir(Transaction t, const std::string& path) override {
    std::lock_guard guard(mu_);
    auto abs = absolute(path, false);
    if (!abs.ok()) return std::move(abs).error();
    return run(t, [&](Nodes& nodes, std::vector<Change>& changes) -> Status {
      const auto it = nodes.find(*abs);
      if (it == nodes.end()) return create(nodes, changes, *abs, "");
      if (!allowed(self_, it->second.perms, true)) return refused(self_, "write", *abs);
      return {};
    });
  }

  Status rm(Transaction t, const std::string& path) override {
    std::lock_guard guard(mu_);
    auto abs = absolute(path, false);
    if (!abs.ok()) return std::move(abs).error();
    if (*abs == "/") return make_error(EINVAL, "xenstore: the root node cannot be removed");
    return run(t, [&](Nodes& nodes, std::vector<Change>& changes) -> Status {
      const auto first = nodes.find(*abs);
      if (first == nodes.end()) return {};
      if (!allowed(self_, first->second.perms, true)) return refused(self_, "remove", *abs);
      Change change = changed(*abs);
      change.removed = true;
      const std::string below = *abs + "/";
      auto last = std::next(first);
      while (last != nodes.end() && last->first.starts_with(below)) ++last;
      for (auto it = first; it != last; ++it) change.gone.emplace(it->first, it->second.perms);
      nodes.erase(first, last);
      for (const auto& [gone, perms] : change.gone) {
        if (is_domain_home(gone)) changes.push_back(changed(std::string(kRelease)));
      }
      changes.push_back(std::move(change));
      return {};
    });
  }

  Result<std::vector<std::string>> list(Transaction t, const std::string& path) override {
    std::lock_guard guard(mu_);
    auto abs = absolute(path, false);
    if (!abs.ok()) return std::move(abs).error();
    std::vector<std::string> names;
    SHBUF_TRY(run(t, [&](Nodes& nodes, std::vector<Change>&) -> Status {
      const auto it = nodes.find(*abs);
      if (it == nodes.end()) return no_node(*abs);
      if (!allowed(self_, it->second.perms, false)) return refused(self_, "read", *abs);
      const std::string below = *abs == "/" ? "/" : *abs + "/";
      for (auto c = nodes.upper_bound(below); c != nodes.end() && c->first.starts_with(below);
           ++c) {
        const std::string_view name = std::string_view(c->first).substr(below.size());
        if (name.find('/') == std::string_view::npos) names.emplace_back(name);
      }
      return {};
    }));
    std::sort(names.begin(), names.end());
    return names;
  }

  Result<std::vector<Permission>> permissions(Transaction t, const std::string& path) override {
    std::lock_guard guard(mu_);
    auto abs = absolute(path, false);
    if (!abs.ok()) return std::move(abs).error();
    std::vector<Permission> perms;
    SHBUF_TRY(run(t, [&](Nodes& nodes, std::vector<Change>&) -> Status {
      const auto it = nodes.find(*abs);
      if (it == nodes.end()) return no_node(*abs);
      if (!allowed(self_, it->second.perms, false)) return refused(self_, "read", *abs);
      perms = it->second.perms;
      return {};
    }));
    return perms;
  }

  Status set_permissions(Transaction t, const std::string& path,
                         const std::vector<Permission>& perms) override {
    std::lock_guard guard(mu_);
    auto abs = absolute(path, false);
    if (!abs.ok()) return std::move(abs).error();
    if (perms.empty())
      return make_error(EINVAL, "xenstore permissions of " + *abs + ": none given");
    for (const Permission& p : perms) {
      if (p.domid >= kDomIdFirstReserved || p.perm > Perm::kBoth) {
        return make_error(EINVAL, "xenstore permissions of " + *abs + ": an entry for domid " +
                                      std::to_string(p.domid) + " with perm " +
                                      std::to_string(int(p.perm)) + " is not valid");
      }
    }
    if (const std::string text = sim::perms_string(perms); text.size() > kXenstorePayloadMax) {
      return make_error(E2BIG, "xenstore permissions of " + *abs + ": " +
                                   std::to_string(text.size()) + " bytes (at most " +
                                   std::to_string(kXenstorePayloadMax) + ")");
    }
    return run(t, [&](Nodes& nodes, std::vector<Change>& changes) -> Status {
      const auto it = nodes.find(*abs);
      if (it == nodes.end()) return no_node(*abs);
      if (self_ != 0 && it->second.perms[0].domid != self_) {
        return refused(self_, "change the permissions of", *abs);
      }
      it->second.perms = perms;
      changes.push_back(changed(*abs));
      return {};
    });
  }

  Result<Transaction> begin() override {
    std::lock_guard guard(mu_);
    if (txns_.size() >= kTransactionsMax) {
      return make_error(ENOSPC, "xenstore: this handle has " + std::to_string(txns_.size()) +
                                    " transactions open, the most it may");
    }
    Txn txn;
    SHBUF_TRY(locked([&](Tree& tree, bool&) {
      txn.generation = tree.generation;
      txn.nodes = std::move(tree.nodes);
      return Status{};
    }));
    while (next_txn_ == kNoTransaction || txns_.contains(next_txn_)) ++next_txn_;
    const Transaction t = next_txn_++;
    try {
      txns_.emplace(t, std::move(txn));
    } catch (const std::bad_alloc&) {
      return make_error(ENOMEM, "out of memory starting a xenstore transaction");
    }
    return t;
  }

  Status end(Transaction t, bool commit) override {
    std::lock_guard guard(mu_);
    const auto it = txns_.find(t);
    if (it == txns_.end()) return unknown(t);
    Txn txn = std::move(it->second);
    txns_.erase(it);
    if (!commit) return {};
    return locked([&](Tree& tree, bool&) -> Status {
      if (tree.generation != txn.generation) {
        return make_error(EAGAIN, "xenstore transaction " + std::to_string(t) +
                                      ": the tree changed since it began; start it again");
      }
      if (txn.changes.empty()) return {};
      tree.nodes = std::move(txn.nodes);
      return publish(tree, txn.changes);
    });
  }

  Status watch(const std::string& path, const std::string& token) override {
    std::lock_guard guard(mu_);
    auto abs = absolute(path, true);
    if (!abs.ok()) return std::move(abs).error();
    if (token.find('\0') != std::string::npos) {
      return make_error(EINVAL, "xenstore watch token for " + *abs + " holds a NUL");
    }
    if (token.size() > kXenstorePayloadMax) {
      return make_error(E2BIG, "xenstore watch token for " + *abs + " is " +
                                   std::to_string(token.size()) + " bytes (at most " +
                                   std::to_string(kXenstorePayloadMax) + ")");
    }
    return locked([&](Tree& tree, bool& dirty) -> Status {
      for (const WatchRecord& w : tree.watches) {
        if (w.mailbox == mailbox_.address() && w.path == *abs && w.token == token) {
          return make_error(EEXIST,
                            "xenstore: already watching " + *abs + " with token '" + token + "'");
        }
      }
      if (tree.watches.size() >= sim::kXenstoreWatchesMax) {
        std::erase_if(tree.watches,
                      [&](const WatchRecord& w) { return !sim::mailbox_alive(key_, w.mailbox); });
      }
      if (tree.watches.size() >= sim::kXenstoreWatchesMax) {
        return make_error(ENOSPC, "xenstore: the simulator's " +
                                      std::to_string(sim::kXenstoreWatchesMax) +
                                      " watches are all in use");
      }
      WatchRecord w;
      w.mailbox = mailbox_.address();
      w.domid = self_;
      w.relative = path[0] != '/' && path[0] != '@';
      w.path = *abs;
      w.token = token;
      // The event every new watch fires at once.
      (void)deliver(w, *abs);
      tree.watches.push_back(std::move(w));
      dirty = true;
      return {};
    });
  }

  Status unwatch(const std::string& path, const std::string& token) override {
    std::lock_guard guard(mu_);
    auto abs = absolute(path, true);
    if (!abs.ok()) return std::move(abs).error();
    return locked([&](Tree& tree, bool& dirty) -> Status {
      const auto it = std::find_if(tree.watches.begin(), tree.watches.end(), [&](const auto& w) {
        return w.mailbox == mailbox_.address() && w.path == *abs && w.token == token;
      });
      if (it == tree.watches.end()) {
        return make_error(ENOENT, "xenstore: no watch on " + *abs + " with token '" + token + "'");
      }
      tree.watches.erase(it);
      dirty = true;
      return {};
    });
  }

  int fd() const override { return mailbox_.fd(); }

  // What the mailbox holds, then, once it is empty, one event per watch of
  // ours that lost one to a full mailbox: its own path, which tells the
  // watcher to look again (spurious events are part of xenstore's contract).
  Result<std::optional<WatchEvent>> next_event() override {
    std::lock_guard guard(mu_);
    try {
      if (auto e = pop_pending()) return e;
      for (;;) {
        auto m = mailbox_.receive();
        if (!m.ok()) return std::move(m).error();
        if (!*m) break;
        const std::string& msg = **m;
        const std::size_t nul = msg.find('\0');
        if (nul == std::string::npos) continue;  // not ours to make sense of
        return std::optional<WatchEvent>(WatchEvent{msg.substr(0, nul), msg.substr(nul + 1)});
      }
      SHBUF_TRY(locked([&](Tree& tree, bool& dirty) {
        for (WatchRecord& w : tree.watches) {
          if (w.mailbox != mailbox_.address() || !w.overflow) continue;
          w.overflow = false;
          dirty = true;
          pending_.push_back(WatchEvent{reported(w, w.path), w.token});
        }
        return Status{};
      }));
      return pop_pending();
    } catch (const std::bad_alloc&) {
      return make_error(ENOMEM, "out of memory reading a xenstore watch event");
    }
  }

  Result<bool> domain_exists(DomId domid) override {
    std::lock_guard guard(mu_);
    if (domid == 0) return true;
    if (domid >= kDomIdFirstReserved) return false;
    bool exists = false;
    SHBUF_TRY(locked([&](Tree& tree, bool&) {
      exists = tree.nodes.contains(domain_path(domid));
      return Status{};
    }));
    return exists;
  }

  DomId self() const override { return self_; }

 private:
  using Op = std::function<Status(Nodes&, std::vector<Change>&)>;

  // `path` made absolute (relative ones are under our home) after checking
  // it; special paths only where `special` allows them.
  Result<std::string> absolute(const std::string& path, bool special) const {
    SHBUF_TRY(check_path(path));
    if (path[0] == '@') {
      if (special) return path;
      return make_error(EINVAL, "xenstore path " + path + " is special: only watches take it");
    }
    if (path[0] == '/') return path;
    std::string abs = domain_path(self_) + "/" + path;
    SHBUF_TRY(check_path(abs));
    return abs;
  }

  static Error unknown(Transaction t) {
    return make_error(EINVAL,
                      "xenstore transaction " + std::to_string(t) + " is not open on this handle");
  }

  // Runs `op` on the nodes transaction `t` sees; outside a transaction, on
  // the shared tree, publishing what it changed.
  Status run(Transaction t, const Op& op) {
    if (t != kNoTransaction) {
      const auto it = txns_.find(t);
      if (it == txns_.end()) return unknown(t);
      try {
        return op(it->second.nodes, it->second.changes);
      } catch (const std::bad_alloc&) {
        return make_error(ENOMEM, "out of memory in xenstore transaction " + std::to_string(t));
      }
    }
    return locked([&](Tree& tree, bool&) -> Status {
      std::vector<Change> changes;
      SHBUF_TRY(op(tree.nodes, changes));
      if (changes.empty()) return {};
      return publish(tree, changes);
    });
  }

  // Runs `op` on the shared tree under the instance lock; writes the tree
  // back when `op` sets `dirty`.
  Status locked(const std::function<Status(Tree&, bool&)>& op) {
    try {
      auto held = in_->hold();
      if (!held.ok()) return std::move(held).error();
      auto tree = load();
      if (!tree.ok()) return std::move(tree).error();
      bool dirty = false;
      SHBUF_TRY(op(*tree, dirty));
      if (dirty) SHBUF_TRY(save(*tree));
      return {};
    } catch (const std::bad_alloc&) {
      return make_error(ENOMEM, "out of memory working on the simulator's xenstore");
    }
  }

  // Makes `path` and its missing ancestors, each with its parent's
  // permissions, owned by us unless we are dom0.
  Status create(Nodes& nodes, std::vector<Change>& changes, const std::string& path,
                std::string_view value) {
    std::vector<std::string> missing{path};
    std::string top = parent_of(path);
    while (!nodes.contains(top)) {
      missing.push_back(top);
      top = parent_of(top);
    }
    std::vector<Permission> perms = nodes.at(top).perms;
    if (!allowed(self_, perms, true)) return refused(self_, "create nodes under", top);
    if (nodes.size() + missing.size() > sim::kXenstoreNodesMax) {
      return make_error(ENOSPC, "xenstore: creating " + path + " would make more than " +
                                    std::to_string(sim::kXenstoreNodesMax) + " nodes");
    }
    if (self_ != 0) perms[0].domid = self_;
    for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
      nodes.emplace(*it, Node{perms, ""});
      if (is_domain_home(*it)) changes.push_back(changed(std::string(kIntroduce)));
    }
    nodes[path].value = std::string(value);
    changes.push_back(changed(path));
    return {};
  }

  // Commits changed nodes: a new generation, the file, then the watches.
  Status publish(Tree& tree, const std::vector<Change>& changes) {
    ++tree.generation;
    SHBUF_TRY(save(tree));
    // The change stands even if what the watches learnt (a full or gone
    // mailbox) cannot be written: the next change tries again.
    if (fire(tree, changes)) (void)save(tree);
    return {};
  }

  // Sends the events `changes` cause; true when a watch record changed
  // (dropped with its process, or marked as having lost an event).
  bool fire(Tree& tree, const std::vector<Change>& changes) {
    bool touched = false;
    for (auto w = tree.watches.begin(); w != tree.watches.end();) {
      const bool overflow = w->overflow;
      bool alive = true;
      for (const Change& c : changes) {
        for (const std::string& path : events_for(tree, *w, c)) {
          alive = deliver(*w, path);
          if (!alive) break;
        }
        if (!alive) break;
      }
      if (!alive) {
        w = tree.watches.erase(w);
        touched = true;
      } else {
        touched = touched || w->overflow != overflow;
        ++w;
      }
    }
    return touched;
  }

  // The paths `c` fires `w` with, as xenstored: a change at or below the
  // watched path, and a removal above it; only nodes the watcher may read.
  static std::vector<std::string> events_for(const Tree& tree, const WatchRecord& w,
                                             const Change& c) {
    if (c.path[0] == '@' || w.path[0] == '@') {
      if (c.path == w.path) return {c.path};
      return {};
    }
    auto readable = [&](const std::string& path) {
      if (c.removed) {
        const auto g = c.gone.find(path);
        return g != c.gone.end() && allowed(w.domid, g->second, false);
      }
      const auto n = tree.nodes.find(path);
      return n != tree.nodes.end() && allowed(w.domid, n->second.perms, false);
    };
    if (under(c.path, w.path)) {
      if (readable(c.path)) return {c.path};
      return {};
    }
    if (c.removed && under(w.path, c.path)) {
      const bool existed = c.gone.contains(w.path);
      if (existed ? readable(w.path) : readable(c.path)) return {w.path};
    }
    return {};
  }

  // Sends one event to a watch's mailbox; false when its process is gone.
  bool deliver(WatchRecord& w, const std::string& path) {
    std::string msg = reported(w, path);
    msg += '\0';
    msg += w.token;
    const Status s = sim::send_to(key_, w.mailbox, msg);
    if (s.ok()) return true;
    if (s.code() == ECONNREFUSED) return false;
    w.overflow = true;  // full (or failing): a spurious event stands in for it
    return true;
  }

  // As the watcher sees `path`: relative to its home when it watched a
  // relative path, as xenstored does.
  static std::string reported(const WatchRecord& w, const std::string& path) {
    if (!w.relative) return path;
    const std::string home = domain_path(w.domid) + "/";
    return path.starts_with(home) ? path.substr(home.size()) : path;
  }

  std::optional<WatchEvent> pop_pending() {
    if (pending_.empty()) return std::nullopt;
    WatchEvent e = std::move(pending_.front());
    pending_.pop_front();
    return e;
  }

  std::string file() const { return in_->dir() + "/" + std::string(::shbuf::sim::kXenstoreFile); }

  // The tree in the file; a fresh one when there is no file yet.
  Result<Tree> load() {
    const std::string name = file();
    UniqueFd fd(::open(name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (!fd) {
      if (errno == ENOENT) return sim::fresh_tree();
      if (errno == ELOOP) return in_->damaged(name + " is a symbolic link");
      return errno_error("cannot open " + name);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return errno_error("cannot stat " + name);
    if (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid()) {
      return in_->damaged(name + " is not a regular file of uid " + std::to_string(::geteuid()));
    }
    if (std::uint64_t(st.st_size) > sim::kXenstoreFileMax) {
      return in_->damaged(name + " is " + std::to_string(st.st_size) + " bytes, over the " +
                          std::to_string(sim::kXenstoreFileMax) + " it may take");
    }
    std::string bytes(std::size_t(st.st_size) + 1, '\0');
    std::size_t got = 0;
    while (got < bytes.size()) {
      const ssize_t n = ::read(fd.get(), bytes.data() + got, bytes.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_error("cannot read " + name);
      if (n == 0) break;
      got += std::size_t(n);
    }
    bytes.resize(got);
    auto tree = sim::parse_tree(bytes);
    if (!tree.ok() && tree.error().code == EUCLEAN) {
      return in_->damaged(name + " " + tree.error().message);
    }
    return tree;
  }

  // Writes the tree beside the file, then renames it over the file.
  Status save(const Tree& tree) {
    static std::atomic<unsigned> counter{0};
    const std::string bytes = sim::serialise_tree(tree);
    if (bytes.size() > sim::kXenstoreFileMax) {
      return make_error(ENOSPC, "xenstore: the tree would take " + std::to_string(bytes.size()) +
                                    " bytes, over the " + std::to_string(sim::kXenstoreFileMax) +
                                    " the simulator keeps");
    }
    const std::string name = file();
    const std::string tmp = name + ".tmp." + std::to_string(::getpid()) + "." +
                            std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return errno_error("cannot create " + tmp);
    auto fail = [&](const std::string& what) {
      Error e = errno_error(what);
      ::unlink(tmp.c_str());
      return e;
    };
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail("cannot write " + tmp);
      done += std::size_t(n);
    }
    if (const int e = fd.close(); e != 0) {
      errno = e;
      return fail("cannot close " + tmp);
    }
    if (::rename(tmp.c_str(), name.c_str()) != 0) return fail("cannot rename " + tmp);
    return {};
  }

  std::mutex mu_;  // one call at a time on this handle
  std::unique_ptr<Instance> in_;
  std::string key_;
  sim::Mailbox mailbox_;
  DomId self_;
  std::map<Transaction, Txn> txns_;
  Transaction next_txn_ = 1;
  std::deque<WatchEvent> pending_;
};

}  // namespace

Result<std::unique_ptr<Xenstore>> open_sim_xenstore(const std::string& dir, DomId self) {
  if (self >= kDomIdFirstReserved) {
    return make_error(EINVAL, "the simulator's xenstore cannot act as domid " +
                                  std::to_string(self) + " (a reserved id)");
  }
  auto in = Instance::open(dir, /*create=*/false, 0);
  if (!in.ok()) return std::move(in).error();
  auto key = sim::instance_key(dir);
  if (!key.ok()) return std::move(key).error();
  auto mailbox = sim::Mailbox::open(*key);
  if (!mailbox.ok()) return std::move(mailbox).error();
  try {
    return std::unique_ptr<Xenstore>(std::make_unique<SimXenstore>(
        std::move(in).value(), std::move(key).value(), std::move(mailbox).value(), self));
  } catch (const std::bad_alloc&) {
    return make_error(ENOMEM, "out of memory opening the simulator's xenstore");
  }
}

}  // namespace shbuf::pv
