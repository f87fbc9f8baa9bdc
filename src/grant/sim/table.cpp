// The grant table operations of SimProvider: share, end, map, unmap and
// copy, each a short sequence of named steps over the instance.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "grant/sim/inline_list.h"
#include "grant/sim/provider.h"

namespace shbuf {

using namespace sim;

namespace sim {

// The mapping records of one map, one a run.
using RecList = InlineList<std::uint32_t, 1>;

// How a map() lays out its pages.
struct MapPlan {
  bool rw;
  std::size_t bytes;
  InlineList<Run, 1> runs;
  // One run (the usual case) is mapped straight into place; several need a
  // reserved range to be mapped into side by side.
  bool single;
  bool inline_populate;
};

// Pages granted and mapped in place: their memory and their grefs.
struct Granted {
  std::byte* memory;
  std::vector<Gref> grefs;
  bool dontfork;  // copied from a window, MADV_DONTFORK already set
};

// A mapping in place: its memory and its token.
struct Placed {
  std::byte* memory;
  std::uint64_t token;
  bool dontfork;  // copied from a window, MADV_DONTFORK already set
};

// Entries revoked or unmapped under the lock, to be freed after it.
struct Revoked {
  std::uint16_t di = 0;
  int mem_fd = -1;
  std::vector<std::uint32_t> freeing;
  std::size_t pending = 0;  // pages kept until unmapped
};

}  // namespace sim

namespace {

// Linux 5.14's MADV_POPULATE_*, should the C library predate them.
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

// Ranges up to this many pages are populated by mmap itself, under the lock
// (it is short); larger ones after the lock is released.
constexpr std::size_t kPopulateInline = 16;

// Faults in every page of [base, base + bytes) in one system call. A kernel
// without MADV_POPULATE_* (EINVAL) leaves the pages to fault on first use.
// EFAULT: a page would have raised SIGBUS, which here means a page file cut
// short; what_went_wrong() names it.
Status populate(void* base, std::size_t bytes, int advice) {
  while (madvise(base, bytes, advice) != 0) {
    if (errno == EINTR) continue;
    if (errno == EINVAL) return {};
    return errno_error(errno, "populating the pages failed");
  }
  return {};
}

// Address space held PROT_NONE for pages to be mapped into; given back when
// destroyed unless released.
class Reservation {
 public:
  Reservation() = default;
  Reservation(Reservation&& other) noexcept
      : base_(std::exchange(other.base_, nullptr)), bytes_(other.bytes_) {}
  Reservation& operator=(Reservation&& other) noexcept {
    std::swap(base_, other.base_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }
  ~Reservation() {
    if (base_ != nullptr) munmap(base_, bytes_);
  }

  // `bytes` of address space, to `purpose` (ENOMEM names it).
  static Result<Reservation> make(std::size_t bytes, const std::string& purpose) {
    void* base =
        mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
      return make_error(ENOMEM, "cannot reserve " + std::to_string(bytes) +
                                    " bytes of address space to " + purpose);
    }
    Reservation r;
    r.base_ = static_cast<std::byte*>(base);
    r.bytes_ = bytes;
    return r;
  }

  std::byte* data() const { return base_; }
  // Hands the range to its new owner.
  std::byte* release() { return std::exchange(base_, nullptr); }

 private:
  std::byte* base_ = nullptr;
  std::size_t bytes_ = 0;
};

std::string no_room_hint(int e) {
  return e == ENOMEM ? " (out of memory, or vm.max_map_count reached)" : "";
}

// Why domain `self` may not access `g` of `peer` (writable if `rw`, which
// `write` names), or an empty string: what Xen checks for a map or a copy.
std::string refusal(const GrantEntryV1* ent, const EntryAux* aux, std::uint32_t n, DomId peer,
                    DomId self, Gref g, bool rw, const char* write) {
  // The common case first, without building any text.
  if (g >= kReservedGrefs && g < n && aux[g].state == kGranted &&
      (ent[g].flags & GTF_permit_access) != 0 && ent[g].domid == self &&
      !(rw && (ent[g].flags & GTF_readonly) != 0)) {
    return {};
  }
  const std::string what = "gref " + std::to_string(g) + " of " + dom_str(peer);
  if (g < kReservedGrefs) return what + " is reserved (grefs 0..7 are never granted)";
  if (g >= n) {
    return "gref " + std::to_string(g) + " is out of range for " + dom_str(peer) +
           " (its grant table has " + std::to_string(n) + " entries)";
  }
  if (aux[g].state == kPending) return what + " was revoked (its access ended)";
  if (aux[g].state != kGranted || (ent[g].flags & GTF_permit_access) == 0) {
    return what + " is not granted";
  }
  if (ent[g].domid != self) {
    return what + " is granted to " + dom_str(ent[g].domid) + ", not to " + dom_str(self);
  }
  return what + " is read-only; cannot " + write;
}

// An entry inside the table holds values the simulator can have written;
// grefs outside it are left to the caller to refuse.
Status check_known(const Instance& in, const DomView& v, Gref g) {
  if (g >= kReservedGrefs && g < in.nr_entries()) return in.check_entry(v, g);
  return {};
}

// check_known(), then refusal() as an EINVAL error.
Status check_access(const Instance& in, const DomView& v, DomId peer, DomId self, Gref g, bool rw,
                    const char* write) {
  SHBUF_TRY(check_known(in, v, g));
  if (std::string why = refusal(v.ent, v.aux, in.nr_entries(), peer, self, g, rw, write);
      !why.empty()) {
    return make_error(EINVAL, std::move(why));
  }
  return {};
}

// The index of `peer`'s domain while a process is attached as it; EINVAL
// otherwise, as Xen refuses a domain that does not exist.
Result<std::uint16_t> live_domain(Instance& in, DomId peer) {
  auto index = in.domain_index(peer);
  if (!index.ok()) return std::move(index).error();
  const int found = *index;
  if (found >= 0 && in.dom(std::uint16_t(found)).attached == 0) {
    // Rare: worth a look at the slots, which may say otherwise.
    for (std::uint32_t s = 0; s < in.hdr().slot_hiwater; ++s) {
      const SlotRec& sr = in.slot(std::uint16_t(s));
      if (sr.used != 0 && sr.dom_index == found && in.slot_alive(std::uint16_t(s))) {
        return in.damaged("the record of " + dom_str(peer) + " counts no attachment, but slot " +
                          std::to_string(s) + " is attached as it");
      }
    }
  }
  if (found < 0 || in.dom(std::uint16_t(found)).attached == 0) {
    return make_error(EINVAL, dom_str(peer) +
                                  " does not exist: no process is attached to the simulator at " +
                                  in.dir() + " as " + dom_str(peer));
  }
  return std::uint16_t(found);
}

// A live peer's domain index and table.
struct PeerView {
  std::uint16_t di;
  DomView* v;
};

Result<PeerView> peer_view(Instance& in, DomId peer) {
  auto found = live_domain(in, peer);
  if (!found.ok()) return std::move(found).error();
  auto v = in.view(*found);
  if (!v.ok()) return std::move(v).error();
  return PeerView{*found, *v};
}

// share: the table can hold `count` grants at all.
Status check_share_size(DomId self, std::size_t count, std::uint32_t limit,
                        std::uint32_t max_grant_frames) {
  if (count <= limit) return {};
  return make_error(ENOSPC, "cannot share " + std::to_string(count) +
                                " pages: the grant table of " + dom_str(self) + " holds at most " +
                                std::to_string(limit) + " grants (max_grant_frames " +
                                std::to_string(max_grant_frames) + ")");
}

// share: the table has `count` free entries now.
Status check_free_count(Instance& in, DomId self, std::uint16_t di, std::size_t count,
                        std::uint32_t limit) {
  const DomainRec& d = in.dom(di);
  if (count <= d.free_count) return {};
  const std::uint32_t used = limit - d.free_count;
  return make_error(ENOSPC, "the grant table of " + dom_str(self) +
                                " is full: " + std::to_string(used) + " grants in use of " +
                                std::to_string(limit) + " (max_grant_frames " +
                                std::to_string(in.hdr().max_grant_frames) + "); cannot grant " +
                                std::to_string(count) + " more");
}

// share: every allocated entry was free.
Status check_allocated(const Instance& in, const DomView& v, DomId self,
                       const std::vector<Run>& runs) {
  for (const Run& run : runs) {
    for (std::uint32_t g = run.start; g < run.start + run.len; ++g) {
      if (v.aux[g].state != kFree) {
        return in.damaged("dom" + std::to_string(self) + ".gnt: gref " + std::to_string(g) +
                          " is in a free run but has state " + std::to_string(v.aux[g].state));
      }
    }
  }
  return {};
}

// share: the allocated entries granted to `peer` by `slot`; their grefs.
std::vector<Gref> grant_entries(DomView& v, const std::vector<Run>& runs, std::size_t count,
                                DomId peer, Access access, std::uint16_t slot) {
  const std::uint16_t flags =
      GTF_permit_access | (access == Access::kReadOnly ? GTF_readonly : std::uint16_t{0});
  std::vector<Gref> grefs;
  grefs.reserve(count);
  for (const Run& run : runs) {
    for (std::uint32_t g = run.start; g < run.start + run.len; ++g) {
      EntryAux& a = v.aux[g];
      a.owner = slot;
      a.state = kGranted;
      a.map_count = a.wmap_count = 0;
      v.ent[g].domid = peer;
      v.ent[g].frame = g;
      v.ent[g].flags = flags;
      grefs.push_back(g);
    }
  }
  return grefs;
}

// A second mapping of `bytes` of a window from page `first` on (mremap of
// size 0 duplicates a shared mapping), or MAP_FAILED with errno set.
void* from_window(std::byte* window, std::uint32_t first, std::size_t bytes) {
  return mremap(window + std::size_t{first} * kPageSize, 0, bytes, MREMAP_MAYMOVE);
}

// share: maps the granted pages, one run straight into place (a copy of the
// window when there is one), several side by side into a range reserved for
// them. Should a mapping fail, nobody can have seen the entries: they are
// undone without zeroing. Sets `dontfork` when the pages came from the window.
Result<std::byte*> map_shared(Instance& in, DomView& v, std::uint16_t di,
                              const std::vector<Run>& runs, std::size_t count, bool& dontfork) {
  const std::size_t bytes = count * kPageSize;
  auto undo = [&] {
    for (const Run& run : runs) {
      clear_entries(v, run);
      (void)in.release(di, run);
    }
  };
  const int fd = v.mem_rw.get();
  dontfork = false;
  if (runs.size() == 1) {
    std::byte* w = window(v, true, in.nr_entries());
    void* got = w != nullptr ? from_window(w, runs[0].start, bytes)
                             : mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                                    off_t(runs[0].start) * off_t(kPageSize));
    if (got == MAP_FAILED) {
      const int e = errno;
      undo();
      return errno_error(e,
                         "cannot map " + std::to_string(count) + " shared pages" + no_room_hint(e));
    }
    dontfork = w != nullptr;
    return static_cast<std::byte*>(got);
  }
  auto space = Reservation::make(bytes, "share " + std::to_string(count) + " pages");
  if (!space.ok()) {
    undo();
    return std::move(space).error();
  }
  std::size_t at = 0;
  for (const Run& run : runs) {
    void* got = mmap(space->data() + at * kPageSize, std::size_t{run.len} * kPageSize,
                     PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
                     off_t(run.start) * off_t(kPageSize));
    if (got == MAP_FAILED) {
      const int e = errno;
      undo();
      return errno_error(e,
                         "cannot map " + std::to_string(count) + " shared pages" + no_room_hint(e));
    }
    at += run.len;
  }
  return space->release();
}

MapPlan plan_map(std::span<const Gref> grefs, Access access) {
  MapPlan plan;
  plan.rw = access == Access::kReadWrite;
  plan.bytes = grefs.size() * kPageSize;
  to_runs(grefs.data(), grefs.size(), plan.runs);
  plan.single = plan.runs.size() == 1;
  plan.inline_populate = plan.single && grefs.size() <= kPopulateInline;
  return plan;
}

// map: every gref may be mapped by `self`, none is mapped too often, and
// there are records enough for the runs.
Status check_mappable(Instance& in, const DomView& v, DomId peer, DomId self,
                      std::span<const Gref> grefs, const MapPlan& plan) {
  for (const Gref g : grefs) {
    SHBUF_TRY(check_access(in, v, peer, self, g, plan.rw, "map it writable"));
    if (v.aux[g].map_count >= kMaxMapCount) {
      return make_error(ENOSPC, "gref " + std::to_string(g) + " of " + dom_str(peer) +
                                    " is mapped " + std::to_string(v.aux[g].map_count) +
                                    " times already");
    }
  }
  if (in.records_free() < plan.runs.size()) {
    return make_error(ENOSPC, "cannot map " + std::to_string(grefs.size()) + " grefs: they need " +
                                  std::to_string(plan.runs.size()) + " mapping records and only " +
                                  std::to_string(in.records_free()) + " of the simulator's " +
                                  std::to_string(in.hdr().max_records) + " are free");
  }
  return {};
}

// map: one more mapping of each gref.
void count_maps(DomView& v, std::span<const Gref> grefs, bool rw) {
  const std::uint16_t set = GTF_reading | (rw ? GTF_writing : std::uint16_t{0});
  for (const Gref g : grefs) {
    v.aux[g].map_count++;
    if (rw) v.aux[g].wmap_count++;
    v.ent[g].flags |= set;
  }
}

// map: takes back count_maps() and the records made so far.
void uncount_maps(Instance& in, DomView& v, std::span<const Gref> grefs, bool rw,
                  const RecList& recs) {
  for (const Gref g : grefs) in.unmap_entry(v, g, rw);
  for (const std::uint32_t r : recs) in.rec_free(r);
}

// map: one chained record per run; undoes the mapping's counts should the
// record free list turn out broken (EUCLEAN).
Result<RecList> record_runs(Instance& in, DomView& v, std::uint16_t di, std::uint16_t slot,
                            std::span<const Gref> grefs, const MapPlan& plan) {
  RecList recs;
  for (const Run& run : plan.runs) {
    const std::uint32_t r = in.rec_alloc(run.start, run.len, di, slot, plan.rw);
    if (r == kNil) {
      uncount_maps(in, v, grefs, plan.rw, recs);
      return in.damaged("its list of free mapping records is broken (" +
                        std::to_string(in.records_free()) + " should be free)");
    }
    if (!recs.empty()) in.rec(recs.back()).next = r;
    recs.push_back(r);
  }
  return recs;
}

// map: maps the pages, one run straight into place (a copy of `window`
// when there is one) or several side by side into `reserved`; undoes the
// counts and records should a mapping fail.
Result<std::byte*> map_runs(Instance& in, DomView& v, DomId peer, int fd,
                            std::span<const Gref> grefs, const MapPlan& plan, std::byte* reserved,
                            std::byte* window, const RecList& recs) {
  const int prot = plan.rw ? PROT_READ | PROT_WRITE : PROT_READ;
  std::byte* p = reserved;
  std::size_t at = 0;
  for (const Run& run : plan.runs) {
    void* got = plan.single && window != nullptr ? from_window(window, run.start, plan.bytes)
                : plan.single
                    ? mmap(nullptr, plan.bytes, prot,
                           MAP_SHARED | (plan.inline_populate ? MAP_POPULATE : 0), fd,
                           off_t(run.start) * off_t(kPageSize))
                    : mmap(p + at * kPageSize, std::size_t{run.len} * kPageSize, prot,
                           MAP_SHARED | MAP_FIXED, fd, off_t(run.start) * off_t(kPageSize));
    if (got == MAP_FAILED) {
      const int e = errno;
      uncount_maps(in, v, grefs, plan.rw, recs);
      return errno_error(e, "cannot map " + std::to_string(grefs.size()) + " grefs of " +
                                dom_str(peer) + no_room_hint(e));
    }
    if (plan.single) p = static_cast<std::byte*>(got);
    at += run.len;
  }
  return p;
}

}  // namespace

Status SimProvider::Impl::finish_free(std::uint16_t di, int mem_fd,
                                      std::vector<std::uint32_t>& grefs) {
  if (grefs.empty()) return {};
  std::sort(grefs.begin(), grefs.end());
  std::vector<Run> runs;
  to_runs(grefs.data(), grefs.size(), runs);
  std::vector<bool> zeroed(runs.size());
  Status result;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    Status st = Instance::zero_pages(mem_fd, runs[i]);
    zeroed[i] = st.ok();
    if (!st.ok()) result = st;
  }
  auto locked = in->hold();
  if (!locked.ok()) return std::move(locked).error();
  auto v = in->view(di);
  if (!v.ok()) return std::move(v).error();
  for (std::size_t i = 0; i < runs.size() && result.code() != EUCLEAN; ++i) {
    if (!zeroed[i]) continue;  // stays kFreeing: retried when we detach
    const Run run = runs[i];
    bool ours = true;
    for (std::uint32_t g = run.start; g < run.start + run.len && ours; ++g) {
      ours = (*v)->aux[g].state == kFreeing && (*v)->aux[g].owner == slot;
    }
    if (!ours) continue;
    clear_entries(**v, run);
    if (Status st = in->release(di, run); !st.ok()) result = st;
  }
  return result;
}

Result<Granted> SimProvider::Impl::grant_pages(DomId peer, std::size_t count, Access access,
                                               std::uint32_t limit) {
  auto locked = lock_swept();
  if (!locked.ok()) return std::move(locked).error();
  auto v = in->view(dom_index);
  if (!v.ok()) return std::move(v).error();
  SHBUF_TRY(check_free_count(*in, domid, dom_index, count, limit));
  std::vector<Run> runs;
  SHBUF_TRY(in->alloc(dom_index, std::uint32_t(count), runs));
  SHBUF_TRY(check_allocated(*in, **v, domid, runs));
  std::vector<Gref> grefs = grant_entries(**v, runs, count, peer, access, slot);
  bool dontfork = false;
  auto memory = map_shared(*in, **v, dom_index, runs, count, dontfork);
  if (!memory.ok()) return std::move(memory).error();
  return Granted{*memory, std::move(grefs), dontfork};
}

Result<Share> SimProvider::do_share(DomId peer, std::size_t count, Access access) {
  Impl& m = *impl_;
  SHBUF_TRY(m.admit(peer, "cannot grant to", SimFaultOp::kShare));
  const std::uint32_t limit = m.in->nr_entries() - kReservedGrefs;
  SHBUF_TRY(check_share_size(m.domid, count, limit, m.in->hdr().max_grant_frames));
  const std::size_t bytes = count * kPageSize;
  auto granted = m.grant_pages(peer, count, access, limit);
  if (!granted.ok()) return std::move(granted).error();
  std::byte* p = granted->memory;
  if (!granted->dontfork) madvise(p, bytes, MADV_DONTFORK);  // as gntalloc's VM_DONTCOPY
  Share share = make_share(p, std::move(granted->grefs), 0, peer, access);
  // gntalloc allocates every page when it grants it: so do we, outside the
  // lock, in one call rather than one page fault per page.
  if (Status st = populate(p, bytes, MADV_POPULATE_WRITE); !st.ok()) {
    (void)share.end();
    return m.what_went_wrong(
        m.domid, "cannot allocate " + std::to_string(count) + " pages to share", st, true);
  }
  return share;
}

Result<Revoked> SimProvider::Impl::revoke(std::span<const Gref> grefs) {
  auto locked = lock_swept();
  if (!locked.ok()) return std::move(locked).error();
  auto v = in->view(dom_index);
  if (!v.ok()) return std::move(v).error();
  const std::uint32_t n = in->nr_entries();
  // A share's grefs stay ours and granted until it ends: anything else is
  // damage, found before anything is changed.
  bool mapped = false;
  for (const Gref g : grefs) {
    SHBUF_TRY(check_known(*in, **v, g));
    const bool known = g >= kReservedGrefs && g < n;
    if (!known || (*v)->aux[g].owner != slot || (*v)->aux[g].state != kGranted) {
      return in->damaged("dom" + std::to_string(domid) + ".gnt: gref " + std::to_string(g) +
                         ", which this attachment granted, is recorded " +
                         (known ? "with state " + std::to_string((*v)->aux[g].state) +
                                      " and owner " + std::to_string((*v)->aux[g].owner)
                                : std::string("out of range")));
    }
    mapped = mapped || (*v)->aux[g].map_count > 0;
  }
  // A mapper that died still counts until reaped: look now, not later.
  if (mapped) SHBUF_TRY(in->check_liveness(true));
  Revoked out;
  out.di = dom_index;
  out.freeing.reserve(grefs.size());
  for (const Gref g : grefs) {
    EntryAux& a = (*v)->aux[g];
    if (a.map_count > 0) {
      (*v)->ent[g].flags &= std::uint16_t(~GTF_permit_access);
      a.state = kPending;
      ++out.pending;
    } else {
      (*v)->ent[g].flags = 0;
      a.state = kFreeing;
      out.freeing.push_back(g);
    }
  }
  in->slot(slot).pending += out.pending;
  out.mem_fd = (*v)->mem_rw.get();
  return out;
}

Status SimProvider::do_end(Share& share) {
  Impl& m = *impl_;
  // A forked child has none of the pages (they are MADV_DONTFORK): what it
  // has at their address is its own.
  SHBUF_TRY(m.owned());
  const std::span<std::byte> mem = share.memory();
  if (mem.data() != nullptr) munmap(mem.data(), mem.size());
  const CallFault injected = m.faults.take(SimFaultOp::kEnd);
  auto revoked = m.revoke(share.grefs());
  if (!revoked.ok()) return std::move(revoked).error();
  Status freed = m.finish_free(revoked->di, revoked->mem_fd, revoked->freeing);
  const std::size_t pending = revoked->pending;
  if (injected.err != 0) {
    std::string msg = "injected fault: end call " + std::to_string(injected.call) +
                      " fails; the grants were revoked anyway";
    if (pending > 0) msg += " (" + std::to_string(pending) + " pages kept until unmapped)";
    return make_error(injected.err, msg);
  }
  if (pending > 0) {
    return make_error(EBUSY, std::to_string(pending) + " of " +
                                 std::to_string(share.grefs().size()) + " pages still mapped by " +
                                 dom_str(share.peer()) + "; kept until unmapped");
  }
  return freed;
}

Error SimProvider::Impl::what_went_wrong(DomId owner, const std::string& what, const Status& st,
                                         bool rw) {
  if (st.code() == EFAULT) {
    auto locked = lock_swept();
    if (!locked.ok()) return std::move(locked).error();
    auto pv = peer_view(*in, owner);  // our own domain is a live one too
    if (!pv.ok()) return std::move(pv).error();
    const DomView& v = *pv->v;
    if (Status damage = in->check_mem(v, rw ? v.mem_rw.get() : v.mem_ro.get()); !damage.ok()) {
      return damage.error();
    }
  }
  return make_error(st.code() == EFAULT ? ENOMEM : st.code(), what + ": " + st.error().message);
}

Result<Placed> SimProvider::Impl::place_mapping(DomId peer, std::span<const Gref> grefs,
                                                const MapPlan& plan) {
  Reservation space;
  if (!plan.single) {
    auto r = Reservation::make(plan.bytes, "map " + std::to_string(grefs.size()) + " grefs");
    if (!r.ok()) return std::move(r).error();
    space = std::move(*r);
  }
  auto locked = lock_swept();
  if (!locked.ok()) return std::move(locked).error();
  auto pv = peer_view(*in, peer);
  if (!pv.ok()) return std::move(pv).error();
  DomView& v = *pv->v;
  SHBUF_TRY(check_mappable(*in, v, peer, domid, grefs, plan));
  const int fd = plan.rw ? v.mem_rw.get() : v.mem_ro.get();
  std::byte* w = plan.single ? window(v, plan.rw, in->nr_entries()) : nullptr;
  // Pages beyond the end of a page file cut short would raise SIGBUS on first
  // access. MAP_POPULATE says nothing of them, so its mappings check the
  // file's size first; the others are populated by madvise(), which refuses
  // them (EFAULT).
  if (plan.inline_populate && w == nullptr) SHBUF_TRY(in->check_mem(v, fd));
  count_maps(v, grefs, plan.rw);
  auto recs = record_runs(*in, v, pv->di, slot, grefs, plan);
  if (!recs.ok()) return std::move(recs).error();
  auto memory = map_runs(*in, v, peer, fd, grefs, plan, space.data(), w, *recs);
  if (!memory.ok()) return std::move(memory).error();
  space.release();
  const std::uint32_t head = recs->front();
  return Placed{*memory, (std::uint64_t(in->rec(head).gen) << 32) | (std::uint64_t(head) + 1),
                w != nullptr};
}

Result<Mapping> SimProvider::do_map(DomId peer, std::span<const Gref> grefs, Access access) {
  Impl& m = *impl_;
  SHBUF_TRY(m.admit(peer, "cannot map from", SimFaultOp::kMap));
  SHBUF_TRY(m.faults.gref_fault(peer, grefs, "map"));
  const MapPlan plan = plan_map(grefs, access);
  auto placed = m.place_mapping(peer, grefs, plan);
  if (!placed.ok()) return std::move(placed).error();
  if (!placed->dontfork)
    madvise(placed->memory, plan.bytes, MADV_DONTFORK);  // as gntdev's VM_DONTCOPY
  Mapping mapping = make_mapping(placed->memory, grefs.size(), placed->token, peer, access);
  // gntdev maps every page when the range is mapped: so do we, outside the
  // lock. Read faults map the granter's existing pages many at a time
  // (fault-around), and the page table entries of a writable shared mapping
  // come writable, so later writes do not fault. A copy of a window comes
  // unpopulated.
  const bool populated = plan.inline_populate && !placed->dontfork;
  if (Status st = populated ? Status{} : populate(placed->memory, plan.bytes, MADV_POPULATE_READ);
      !st.ok()) {
    (void)mapping.unmap();
    return m.what_went_wrong(
        peer, "cannot map " + std::to_string(grefs.size()) + " grefs of " + dom_str(peer), st,
        plan.rw);
  }
  return mapping;
}

// Checks the grant as a map would and copies through the granter's page file,
// all under the lock: the granter cannot end the grant midway, as Xen holds
// the grant for the length of a copy.
Status SimProvider::do_copy(DomId peer, Gref gref, std::size_t offset, std::span<std::byte> local,
                            bool to_peer) {
  Impl& m = *impl_;
  const char* verb = to_peer ? "copy into" : "copy from";
  SHBUF_TRY(m.admit(peer, to_peer ? "cannot copy into a page of" : "cannot copy from a page of",
                    SimFaultOp::kCopy));
  const Gref one[] = {gref};
  SHBUF_TRY(m.faults.gref_fault(peer, one, "copy"));
  auto locked = m.lock_swept();
  if (!locked.ok()) return std::move(locked).error();
  auto pv = peer_view(*m.in, peer);
  if (!pv.ok()) return std::move(pv).error();
  const DomView& v = *pv->v;
  SHBUF_TRY(check_access(*m.in, v, peer, m.domid, gref, to_peer, "copy into it"));
  const int fd = to_peer ? v.mem_rw.get() : v.mem_ro.get();
  const off_t at = off_t(gref) * off_t(kPageSize) + off_t(offset);
  for (std::size_t done = 0; done < local.size();) {
    const ssize_t r = to_peer
                          ? pwrite(fd, local.data() + done, local.size() - done, at + off_t(done))
                          : pread(fd, local.data() + done, local.size() - done, at + off_t(done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const int e = r < 0 ? errno : EIO;
      return errno_error(e, std::string("cannot ") + verb + " gref " + std::to_string(gref) +
                                " of " + dom_str(peer));
    }
    done += std::size_t(r);
  }
  return {};
}

// The records were chained by map() and cover exactly the mapping's pages;
// the walk is bounded by that count, and nothing changes until it is done.
Result<Revoked> SimProvider::Impl::release_mapping(const Mapping& mapping, std::uint64_t token) {
  auto locked = lock_swept();
  if (!locked.ok()) return std::move(locked).error();
  const std::uint32_t head = std::uint32_t(token & 0xffffffffu) - 1;
  const std::uint32_t gen = std::uint32_t(token >> 32);
  const std::uint32_t hiwater = in->hdr().rec_hiwater;
  // map() gave this mapping its first record, and only unmap() frees it.
  if (head >= hiwater || in->rec(head).used == 0 || in->rec(head).gen != gen ||
      in->rec(head).mapper != slot) {
    return in->damaged("mapping record " + std::to_string(head) + " of a mapping of " +
                       dom_str(mapping.peer()) + " is no longer that mapping's (" +
                       std::to_string(hiwater) + " records in use or free, used " +
                       std::to_string(head < hiwater ? in->rec(head).used : 0) + ")");
  }
  const std::uint16_t di = in->rec(head).granter;
  RecList chain;
  std::size_t pages = 0;
  for (std::uint32_t r = head; r != kNil; r = in->rec(r).next) {
    if (r >= hiwater || chain.size() >= mapping.pages() || in->rec(r).used == 0 ||
        in->rec(r).mapper != slot || in->rec(r).granter != di) {
      return in->damaged("the mapping records of a mapping of " + dom_str(mapping.peer()) +
                         " from record " + std::to_string(head) + " do not chain (record " +
                         std::to_string(r) + ")");
    }
    SHBUF_TRY(in->check_rec(r));
    pages += in->rec(r).count;
    chain.push_back(r);
  }
  if (pages != mapping.pages()) {
    return in->damaged("the mapping records from record " + std::to_string(head) + " cover " +
                       std::to_string(pages) + " pages of a mapping of " +
                       std::to_string(mapping.pages()));
  }
  auto v = in->view(di);
  if (!v.ok()) return std::move(v).error();
  for (const std::uint32_t r : chain) {
    for (std::uint32_t i = 0; i < in->rec(r).count; ++i) {
      SHBUF_TRY(in->check_entry(**v, in->rec(r).gref + i));
    }
  }
  Revoked out;
  out.di = di;
  out.mem_fd = (*v)->mem_rw.get();
  for (const std::uint32_t r : chain) {
    const MapRec& rec = in->rec(r);
    for (std::uint32_t i = 0; i < rec.count; ++i) {
      const std::uint32_t g = rec.gref + i;
      if (!in->unmap_entry(**v, g, rec.writable != 0)) continue;
      // The last mapping of a revoked grant: reclaim it now.
      EntryAux& a = (*v)->aux[g];
      if (a.owner < kMaxSlots && in->slot(a.owner).pending > 0) in->slot(a.owner).pending--;
      a.owner = slot;
      a.state = kFreeing;
      (*v)->ent[g].flags = 0;
      out.freeing.push_back(g);
    }
    in->rec_free(r);
  }
  return out;
}

Status SimProvider::do_unmap(Mapping& mapping) {
  Impl& m = *impl_;
  SHBUF_TRY(m.owned());  // as in do_end: a forked child has none of the pages
  const std::span<std::byte> mem = mapping.memory();
  // Our view goes first: only then may the granter reuse the pages.
  if (mem.data() != nullptr) munmap(mem.data(), mem.size());
  const CallFault injected = m.faults.take(SimFaultOp::kUnmap);
  auto released = m.release_mapping(mapping, token_of(mapping));
  if (!released.ok()) return std::move(released).error();
  Status freed = m.finish_free(released->di, released->mem_fd, released->freeing);
  if (injected.err != 0) {
    return make_error(injected.err, "injected fault: unmap call " + std::to_string(injected.call) +
                                        " fails; the pages were unmapped anyway");
  }
  return freed;
}

}  // namespace shbuf
