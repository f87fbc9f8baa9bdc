#include "pv/sim/evtchn.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bitset>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <utility>

#include "core/unique_fd.h"
#include "grant/sim/instance.h"
#include "grant/sim/layout.h"
#include "pv/platform.h"
#include "pv/sim/mailbox.h"

namespace shbuf::pv::sim {
namespace {

using shbuf::sim::Instance;

constexpr std::uint32_t kNoRecord = 0xffffffffu;

std::string port_str(DomId domid, Port port) {
  return "port " + std::to_string(port) + " of " + shbuf::sim::dom_str(domid);
}

PortState state_of(const PortRec& r) {
  return PortState(r.state);
}

// The event channel file of one instance as this process maps it. Every
// member but the destructor needs the instance lock.
class Table {
 public:
  // Opens the file, making it when `create` is set and it is missing or was
  // left empty by a maker that died; ENOENT when it is missing otherwise.
  static Result<std::unique_ptr<Table>> open(Instance& in, bool create);
  ~Table() {
    if (base_ != nullptr) munmap(base_, kEvtchnFileSize);
  }
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;

  // The file is still the one at its path and of its size, the header holds
  // this layout and every port record values the simulator can have written.
  // A channel left half-joined by a holder that died mid-update is closed.
  Status check();

  PortRec& rec(std::uint32_t i) { return recs_[i]; }
  // The record of (domid, port), or kNoRecord.
  std::uint32_t find(DomId domid, Port port) const;
  // A free record given the lowest free port of `domid`, still free.
  Result<std::uint32_t> alloc(DomId domid, Port& port) const;
  // Frees record i; the other end of an interdomain channel becomes unbound,
  // waiting for us again (as Xen's evtchn_close leaves it).
  void close(std::uint32_t i);
  // Closes the records whose owning mailbox is gone.
  void sweep(const std::string& key);

  Error damaged(const std::string& what) const { return in_.damaged(path_ + ": " + what); }

 private:
  Table(Instance& in, std::string path) : in_(in), path_(std::move(path)) {}
  Status check_record(std::uint32_t i) const;

  Instance& in_;
  std::string path_;
  UniqueFd fd_;
  struct stat id_ {};  // the file's device and inode when opened
  void* base_ = nullptr;
  EvtchnHeader* hdr_ = nullptr;
  PortRec* recs_ = nullptr;
};

bool header_is_zero(int fd) {
  char head[sizeof(EvtchnHeader)];
  if (pread(fd, head, sizeof head, 0) != ssize_t(sizeof head)) return false;
  return std::all_of(head, head + sizeof head, [](char c) { return c == 0; });
}

Result<std::unique_ptr<Table>> Table::open(Instance& in, bool create) {
  std::unique_ptr<Table> t(new Table(in, in.dir() + "/" + std::string(shbuf::sim::kEvtchnFile)));
  const int flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0);
  t->fd_.reset(::open(t->path_.c_str(), flags, 0600));
  if (!t->fd_) {
    const int e = errno;
    if (e == ELOOP) return t->damaged("it is a symbolic link");
    if (e == ENOENT && !create) return make_error(ENOENT, "no event channel table " + t->path_);
    return errno_error(e, "cannot open " + t->path_);
  }
  struct stat sb {};
  if (fstat(t->fd_.get(), &sb) != 0) return errno_error("cannot stat " + t->path_);
  if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid()) {
    return t->damaged("it is not a regular file of uid " + std::to_string(geteuid()));
  }
  // Made under the lock: sized (all records free), then given its header. A
  // maker that died in between left it empty or all zeros.
  if (create &&
      (sb.st_size == 0 || (sb.st_size == off_t(kEvtchnFileSize) && header_is_zero(t->fd_.get())))) {
    EvtchnHeader h{};
    std::memcpy(h.magic, kEvtchnMagic, sizeof h.magic);
    h.version = kEvtchnVersion;
    h.nr_records = kEvtchnRecords;
    h.record_size = sizeof(PortRec);
    if (ftruncate(t->fd_.get(), off_t(kEvtchnFileSize)) != 0) {
      return errno_error("cannot size " + t->path_);
    }
    if (pwrite(t->fd_.get(), &h, sizeof h, 0) != ssize_t(sizeof h)) {
      return errno_error("cannot write the header of " + t->path_);
    }
    sb.st_size = off_t(kEvtchnFileSize);
  }
  if (sb.st_size != off_t(kEvtchnFileSize)) {
    return t->damaged("it is " + std::to_string(sb.st_size) + " bytes, expected " +
                      std::to_string(kEvtchnFileSize));
  }
  void* p = mmap(nullptr, kEvtchnFileSize, PROT_READ | PROT_WRITE, MAP_SHARED, t->fd_.get(), 0);
  if (p == MAP_FAILED) return errno_error("cannot map " + t->path_);
  t->base_ = p;
  t->hdr_ = static_cast<EvtchnHeader*>(p);
  t->recs_ = reinterpret_cast<PortRec*>(static_cast<char*>(p) + sizeof(EvtchnHeader));
  t->id_ = sb;
  return t;
}

Status Table::check_record(std::uint32_t i) const {
  const PortRec& r = recs_[i];
  // Named only when refused: this runs for every record at every lock.
  auto rec = [i] { return "port record " + std::to_string(i); };
  if (r.state > std::uint32_t(PortState::kInterdomain)) {
    return damaged(rec() + " has state " + std::to_string(r.state) + " (0..2)");
  }
  if (state_of(r) == PortState::kFree) return {};
  if (r.domid >= kDomIdFirstReserved) {
    return damaged(rec() + " has domid " + std::to_string(r.domid));
  }
  if (r.port == 0 || r.port >= kEvtchnPortLimit) {
    return damaged(rec() + " has port " + std::to_string(r.port) + " (1.." +
                   std::to_string(kEvtchnPortLimit - 1) + ")");
  }
  if (r.remote_dom >= kDomIdFirstReserved) {
    return damaged(rec() + " has remote domid " + std::to_string(r.remote_dom));
  }
  const bool joined = state_of(r) == PortState::kInterdomain;
  if (joined ? (r.remote_port == 0 || r.remote_port >= kEvtchnPortLimit) : r.remote_port != 0) {
    return damaged(rec() + " has remote port " + std::to_string(r.remote_port));
  }
  if (r.owner == 0) return damaged(rec() + " has no owner");
  if (r.pending > 1 || r.masked > 1) {
    return damaged(rec() + " has pending " + std::to_string(r.pending) + " and masked " +
                   std::to_string(r.masked) + " (0 or 1)");
  }
  return {};
}

Status Table::check() {
  struct stat sb {};
  if (fstat(fd_.get(), &sb) != 0) return errno_error("cannot stat " + path_);
  if (sb.st_size != off_t(kEvtchnFileSize)) {
    return damaged("it is now " + std::to_string(sb.st_size) + " bytes, expected " +
                   std::to_string(kEvtchnFileSize));
  }
  struct stat now {};
  if (lstat(path_.c_str(), &now) != 0 || now.st_dev != id_.st_dev || now.st_ino != id_.st_ino) {
    return damaged("it was removed or replaced while in use");
  }
  const EvtchnHeader& h = *hdr_;
  if (std::memcmp(h.magic, kEvtchnMagic, sizeof kEvtchnMagic) != 0) {
    return damaged("its magic was overwritten");
  }
  if (h.version != kEvtchnVersion) {
    return damaged("it has layout version " + std::to_string(h.version) +
                   " and this shbuf reads version " + std::to_string(kEvtchnVersion));
  }
  if (h.nr_records != kEvtchnRecords || h.record_size != sizeof(PortRec)) {
    return damaged("its header says " + std::to_string(h.nr_records) + " records of " +
                   std::to_string(h.record_size) + " bytes, expected " +
                   std::to_string(kEvtchnRecords) + " of " + std::to_string(sizeof(PortRec)));
  }
  // (domid, port) << 32 | record, sorted: duplicates meet, peers are found.
  std::vector<std::uint64_t> keys;
  for (std::uint32_t i = 0; i < kEvtchnRecords; ++i) {
    SHBUF_TRY(check_record(i));
    const PortRec& r = recs_[i];
    if (state_of(r) == PortState::kFree) continue;
    keys.push_back((std::uint64_t(r.domid) * kEvtchnPortLimit + r.port) << 32 | i);
  }
  std::sort(keys.begin(), keys.end());
  for (std::size_t k = 1; k < keys.size(); ++k) {
    if ((keys[k] >> 32) == (keys[k - 1] >> 32)) {
      const PortRec& r = recs_[std::uint32_t(keys[k])];
      return damaged(port_str(r.domid, r.port) + " is in two records");
    }
  }
  for (const std::uint64_t key : keys) {
    PortRec& r = recs_[std::uint32_t(key)];
    if (state_of(r) != PortState::kInterdomain) continue;
    const std::uint64_t peer_key = std::uint64_t(r.remote_dom) * kEvtchnPortLimit + r.remote_port;
    const auto it = std::lower_bound(keys.begin(), keys.end(), peer_key << 32);
    bool joined = false;
    if (it != keys.end() && (*it >> 32) == peer_key) {
      const PortRec& peer = recs_[std::uint32_t(*it)];
      joined = state_of(peer) == PortState::kInterdomain && peer.remote_dom == r.domid &&
               peer.remote_port == r.port;
    }
    if (!joined) {  // a join or a close cut short: the other end is gone
      r.state = std::uint32_t(PortState::kUnbound);
      r.remote_port = 0;
    }
  }
  return {};
}

std::uint32_t Table::find(DomId domid, Port port) const {
  for (std::uint32_t i = 0; i < kEvtchnRecords; ++i) {
    const PortRec& r = recs_[i];
    if (state_of(r) != PortState::kFree && r.domid == domid && r.port == port) return i;
  }
  return kNoRecord;
}

Result<std::uint32_t> Table::alloc(DomId domid, Port& port) const {
  std::bitset<kEvtchnPortLimit> used;
  std::uint32_t free = kNoRecord;
  for (std::uint32_t i = 0; i < kEvtchnRecords; ++i) {
    const PortRec& r = recs_[i];
    if (state_of(r) == PortState::kFree) {
      if (free == kNoRecord) free = i;
    } else if (r.domid == domid) {
      used.set(r.port);
    }
  }
  if (free == kNoRecord) {
    return make_error(ENOSPC, "all " + std::to_string(kEvtchnRecords) +
                                  " event channels of the simulator instance at " + in_.dir() +
                                  " are in use");
  }
  for (Port p = 1; p < kEvtchnPortLimit; ++p) {
    if (!used.test(p)) {
      port = p;
      return free;
    }
  }
  return make_error(ENOSPC, shbuf::sim::dom_str(domid) + " has all its " +
                                std::to_string(kEvtchnPortLimit - 1) + " event channels in use");
}

void Table::close(std::uint32_t i) {
  PortRec& r = recs_[i];
  if (state_of(r) == PortState::kInterdomain) {
    const std::uint32_t j = find(r.remote_dom, r.remote_port);
    if (j != kNoRecord && j != i) {
      PortRec& peer = recs_[j];
      if (state_of(peer) == PortState::kInterdomain && peer.remote_dom == r.domid &&
          peer.remote_port == r.port) {
        peer.state = std::uint32_t(PortState::kUnbound);
        peer.remote_dom = r.domid;
        peer.remote_port = 0;
      }
    }
  }
  r = PortRec{};
}

void Table::sweep(const std::string& key) {
  std::vector<std::pair<MailboxAddress, bool>> seen;
  for (std::uint32_t i = 0; i < kEvtchnRecords; ++i) {
    const PortRec& r = recs_[i];
    if (state_of(r) == PortState::kFree) continue;
    const MailboxAddress owner = r.owner;
    auto it =
        std::find_if(seen.begin(), seen.end(), [&](const auto& s) { return s.first == owner; });
    if (it == seen.end()) {
      seen.emplace_back(owner, mailbox_alive(key, owner));
      it = seen.end() - 1;
    }
    if (!it->second) close(i);
  }
}

Status send_port(const std::string& key, MailboxAddress to, Port port) {
  char msg[sizeof port];
  std::memcpy(msg, &port, sizeof port);
  return send_to(key, to, std::string_view(msg, sizeof msg));
}

// Delivers an event to record i: marks it pending and, unless it is masked,
// masks it and wakes its owner. A full mailbox leaves it pending and unmasked,
// for the owner's pending() to find once it has emptied its mailbox; an owner
// gone closes the port.
Status deliver(Table& t, const std::string& key, std::uint32_t i) {
  PortRec& r = t.rec(i);
  r.pending = 1;
  if (r.masked != 0) return {};
  r.masked = 1;
  r.pending = 0;
  Status st = send_port(key, r.owner, r.port);
  if (st.ok()) return {};
  if (st.code() == ECONNREFUSED) {
    t.close(i);
    return {};
  }
  r.masked = 0;
  r.pending = 1;
  if (st.code() == EAGAIN) return {};
  return st;
}

class SimEvents final : public EventChannels {
 public:
  SimEvents(std::unique_ptr<Instance> in, std::unique_ptr<Table> table, Mailbox mailbox,
            std::string key, DomId self)
      : in_(std::move(in)),
        table_(std::move(table)),
        mailbox_(std::move(mailbox)),
        key_(std::move(key)),
        self_(self) {}

  ~SimEvents() override {
    const std::lock_guard guard(mu_);
    if (ports_.empty()) return;
    auto locked = hold();
    if (!locked.ok()) return;  // our ports go when a sweep finds our mailbox gone
    for (const Port p : ports_) {
      const std::uint32_t i = table_->find(self_, p);
      if (i != kNoRecord && table_->rec(i).owner == mailbox_.address()) table_->close(i);
    }
  }

  Result<Port> bind_unbound(DomId remote) override {
    if (remote >= kDomIdFirstReserved) {
      return make_error(EINVAL, "cannot bind an event channel for " + shbuf::sim::dom_str(remote));
    }
    const std::lock_guard guard(mu_);
    auto locked = hold();
    if (!locked.ok()) return std::move(locked).error();
    table_->sweep(key_);
    auto r = new_port(remote, PortState::kUnbound, 0);
    if (!r.ok()) return std::move(r).error();
    return (*r)->port;
  }

  Result<Port> bind_interdomain(DomId remote, Port remote_port) override {
    if (remote >= kDomIdFirstReserved) {
      return make_error(EINVAL,
                        "cannot bind to an event channel of " + shbuf::sim::dom_str(remote));
    }
    const std::lock_guard guard(mu_);
    auto locked = hold();
    if (!locked.ok()) return std::move(locked).error();
    table_->sweep(key_);
    const std::uint32_t j =
        remote_port < kEvtchnPortLimit ? table_->find(remote, remote_port) : kNoRecord;
    if (j == kNoRecord) {
      return make_error(
          EINVAL, "cannot bind to " + port_str(remote, remote_port) + ": there is no such port");
    }
    if (state_of(table_->rec(j)) != PortState::kUnbound) {
      return make_error(
          EINVAL, "cannot bind to " + port_str(remote, remote_port) + ": it is already bound");
    }
    if (table_->rec(j).remote_dom != self_) {
      return make_error(EINVAL, "cannot bind to " + port_str(remote, remote_port) + " as " +
                                    shbuf::sim::dom_str(self_) + ": it waits for " +
                                    shbuf::sim::dom_str(table_->rec(j).remote_dom));
    }
    auto r = new_port(remote, PortState::kInterdomain, remote_port);
    if (!r.ok()) return std::move(r).error();
    const Port port = (*r)->port;
    PortRec& peer = table_->rec(j);
    peer.remote_port = port;
    peer.state = std::uint32_t(PortState::kInterdomain);
    // As Xen does, the new port starts with an event, in case the other end
    // signalled before it was bound; a failure to wake ourselves leaves it
    // pending for pending() to find.
    (void)deliver(*table_, key_, table_->find(self_, port));
    return port;
  }

  Status unbind(Port port) override {
    const std::lock_guard guard(mu_);
    SHBUF_TRY(ours(port, "unbind"));
    auto locked = hold();
    if (!locked.ok()) return std::move(locked).error();
    auto i = record(port);
    if (!i.ok()) return std::move(i).error();
    table_->close(*i);
    ports_.erase(port);
    return {};
  }

  Status notify(Port port) override {
    const std::lock_guard guard(mu_);
    SHBUF_TRY(ours(port, "notify"));
    auto locked = hold();
    if (!locked.ok()) return std::move(locked).error();
    auto i = record(port);
    if (!i.ok()) return std::move(i).error();
    const PortRec& r = table_->rec(*i);
    if (state_of(r) != PortState::kInterdomain) return {};  // nobody to tell
    const std::uint32_t j = table_->find(r.remote_dom, r.remote_port);
    if (j == kNoRecord) return table_->damaged(port_str(self_, port) + " lost its other end");
    return deliver(*table_, key_, j);
  }

  int fd() const override { return mailbox_.fd(); }

  Result<std::optional<Port>> pending() override {
    const std::lock_guard guard(mu_);
    for (;;) {
      auto msg = mailbox_.receive();
      if (!msg.ok()) return std::move(msg).error();
      if (!msg->has_value()) break;
      Port port = 0;
      if ((*msg)->size() != sizeof port) continue;  // not a port number: not ours
      std::memcpy(&port, (*msg)->data(), sizeof port);
      if (ports_.count(port) != 0) return std::optional<Port>(port);
    }
    // Events a full mailbox could not take wait, pending and unmasked.
    if (ports_.empty()) return std::optional<Port>();
    auto locked = hold();
    if (!locked.ok()) return std::move(locked).error();
    for (std::uint32_t i = 0; i < kEvtchnRecords; ++i) {
      PortRec& r = table_->rec(i);
      if (state_of(r) == PortState::kFree || r.domid != self_ || r.owner != mailbox_.address() ||
          r.pending == 0 || r.masked != 0 || ports_.count(r.port) == 0) {
        continue;
      }
      r.pending = 0;
      r.masked = 1;
      return std::optional<Port>(r.port);
    }
    return std::optional<Port>();
  }

  Status unmask(Port port) override {
    const std::lock_guard guard(mu_);
    SHBUF_TRY(ours(port, "unmask"));
    auto locked = hold();
    if (!locked.ok()) return std::move(locked).error();
    auto i = record(port);
    if (!i.ok()) return std::move(i).error();
    PortRec& r = table_->rec(*i);
    r.masked = 0;
    if (r.pending == 0) return {};
    return deliver(*table_, key_, *i);
  }

 private:
  // A new port of ours in `state`, owned by this handle. Holds the lock.
  Result<PortRec*> new_port(DomId remote, PortState state, Port remote_port) {
    Port port = 0;
    auto i = table_->alloc(self_, port);
    if (!i.ok()) return std::move(i).error();
    PortRec& r = table_->rec(*i);
    r = PortRec{};
    r.domid = self_;
    r.port = port;
    r.remote_dom = remote;
    r.remote_port = remote_port;
    r.owner = mailbox_.address();
    r.state = std::uint32_t(state);
    ports_.insert(port);
    return &r;
  }

  // The instance lock, with the table checked.
  Result<Instance::Locked> hold() {
    auto locked = in_->hold();
    if (!locked.ok()) return locked;
    SHBUF_TRY(table_->check());
    return locked;
  }

  Status ours(Port port, const char* what) const {
    if (ports_.count(port) != 0) return {};
    return make_error(ENOTCONN, std::string("cannot ") + what + " " + port_str(self_, port) +
                                    ": this handle did not bind it");
  }

  // Our record of a port we bound.
  Result<std::uint32_t> record(Port port) const {
    const std::uint32_t i = table_->find(self_, port);
    if (i == kNoRecord || table_->rec(i).owner != mailbox_.address()) {
      return table_->damaged(port_str(self_, port) + " is no longer this process's");
    }
    return i;
  }

  std::unique_ptr<Instance> in_;
  std::unique_ptr<Table> table_;
  Mailbox mailbox_;
  std::string key_;
  DomId self_;
  std::mutex mu_;         // one operation of this handle at a time
  std::set<Port> ports_;  // the ports this handle bound
};

// The instance and its table for the free functions; run `fn` under the lock.
template <typename Fn>
Status with_table(const std::string& dir, Fn fn) {
  auto in = Instance::open(dir, /*create=*/false, 0);
  if (!in.ok()) return std::move(in).error();
  auto key = instance_key(dir);
  if (!key.ok()) return std::move(key).error();
  auto locked = (*in)->hold();
  if (!locked.ok()) return std::move(locked).error();
  auto table = Table::open(**in, /*create=*/false);
  if (!table.ok()) {
    if (table.error().code == ENOENT) return {};
    return std::move(table).error();
  }
  SHBUF_TRY((*table)->check());
  return fn(**table, *key);
}

}  // namespace

Result<std::vector<SimPort>> sim_event_status(const std::string& dir) {
  std::vector<SimPort> out;
  Status st = with_table(dir, [&](Table& t, const std::string& key) -> Status {
    t.sweep(key);
    for (std::uint32_t i = 0; i < kEvtchnRecords; ++i) {
      const PortRec& r = t.rec(i);
      if (state_of(r) == PortState::kFree) continue;
      SimPort p;
      p.domid = r.domid;
      p.port = r.port;
      p.state = state_of(r);
      p.remote_dom = r.remote_dom;
      p.remote_port = r.remote_port;
      p.pending = r.pending != 0;
      p.masked = r.masked != 0;
      p.owner_alive = mailbox_alive(key, r.owner);
      out.push_back(p);
    }
    return {};
  });
  if (!st.ok()) return st.error();
  std::sort(out.begin(), out.end(), [](const SimPort& a, const SimPort& b) {
    return std::pair(a.domid, a.port) < std::pair(b.domid, b.port);
  });
  return out;
}

Status sweep_sim_events(const std::string& dir) {
  return with_table(dir, [](Table& t, const std::string& key) -> Status {
    t.sweep(key);
    return {};
  });
}

}  // namespace shbuf::pv::sim

namespace shbuf::pv {

Result<std::unique_ptr<EventChannels>> open_sim_events(const std::string& dir, DomId self) {
  if (self >= kDomIdFirstReserved) {
    return make_error(EINVAL, "cannot act as " + shbuf::sim::dom_str(self) + " (domids from " +
                                  std::to_string(kDomIdFirstReserved) + " are reserved)");
  }
  auto in = shbuf::sim::Instance::open(dir, /*create=*/false, 0);
  if (!in.ok()) return std::move(in).error();
  auto key = sim::instance_key(dir);
  if (!key.ok()) return std::move(key).error();
  auto mailbox = sim::Mailbox::open(*key);
  if (!mailbox.ok()) return std::move(mailbox).error();
  std::unique_ptr<sim::Table> table;
  {
    auto locked = (*in)->hold();
    if (!locked.ok()) return std::move(locked).error();
    auto t = sim::Table::open(**in, /*create=*/true);
    if (!t.ok()) return std::move(t).error();
    SHBUF_TRY((*t)->check());
    table = std::move(t).value();
  }
  return std::unique_ptr<EventChannels>(new sim::SimEvents(std::move(in).value(), std::move(table),
                                                           std::move(mailbox).value(),
                                                           std::move(key).value(), self));
}

}  // namespace shbuf::pv
