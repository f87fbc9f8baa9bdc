// SimProvider: opening an instance and attaching to it, the grant table
// operations, sweeps, status, and resetting an instance.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shbuf/grant/sim.h"
#include "grant/sim/faults.h"
#include "grant/sim/instance.h"
#include "grant/sim/status.h"
#include "grant/sim/text.h"

namespace shbuf {

using namespace sim;

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
Status populate(void* base, std::size_t bytes, int advice) {
  while (madvise(base, bytes, advice) != 0) {
    if (errno == EINTR) continue;
    if (errno == EINVAL) return {};
    return errno_error(errno == EFAULT ? ENOMEM : errno, "populating the pages failed");
  }
  return {};
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

std::string resolve(const std::string& path) {
  return path.empty() ? sim_default_path() : path;
}

}  // namespace

std::string sim_default_path() {
  const char* env = std::getenv("SHBUF_SIM");
  if (env != nullptr && *env != '\0') return env;
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg != nullptr && *xdg != '\0') return std::string(xdg) + "/shbuf-sim";
  return "/dev/shm/shbuf-sim-" + std::to_string(getuid());
}

struct SimProvider::Impl {
  std::unique_ptr<Instance> in;
  DomId domid = 0;
  std::uint16_t slot = kNoSlot;
  std::uint16_t dom_index = 0;
  pid_t pid = 0;

  bool grant_copy = true;

  Faults faults;

  // The shared state belongs to the process that opened the provider; a
  // forked copy must not release the parent's grants.
  Status owned() const {
    if (getpid() == pid) return {};
    return make_error(EPERM, "this sim provider was opened by process " + std::to_string(pid) +
                                 "; a forked child must open its own");
  }

  // Second half of freeing entries we marked kFreeing: zero the pages
  // without the lock, then hand the entries back to the allocator.
  Status finish_free(std::uint16_t di, int mem_fd, std::vector<std::uint32_t>& grefs) {
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
    SHBUF_TRY(in->lock());
    auto v = in->view(di);
    if (!v.ok()) result = std::move(v).error();
    if (v.ok()) {
      for (std::size_t i = 0; i < runs.size() && result.code() != EUCLEAN; ++i) {
        if (!zeroed[i]) continue;  // stays kFreeing: retried when we detach
        const Run run = runs[i];
        bool ours = true;
        for (std::uint32_t g = run.start; g < run.start + run.len && ours; ++g) {
          ours = (*v)->aux[g].state == kFreeing && (*v)->aux[g].owner == slot;
        }
        if (!ours) continue;
        for (std::uint32_t g = run.start; g < run.start + run.len; ++g) {
          (*v)->ent[g] = GrantEntryV1{};
          EntryAux& a = (*v)->aux[g];
          a.state = kFree;
          a.owner = kNoSlot;
          a.map_count = a.wmap_count = 0;
        }
        if (Status st = in->release(di, run); !st.ok()) result = st;
      }
    }
    in->unlock();
    return result;
  }
};

SimProvider::SimProvider(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

// Detaching reclaims anything still held, so even leaked handles do not
// keep pages after the provider is gone.
SimProvider::~SimProvider() {
  if (!impl_ || !impl_->in) return;
  if (!impl_->owned().ok()) return;
  if (impl_->in->lock().ok()) {
    (void)impl_->in->detach();
    impl_->in->unlock();
  }
}

Result<std::unique_ptr<SimProvider>> SimProvider::open(const SimOptions& options) {
  const long host_page = sysconf(_SC_PAGESIZE);
  if (host_page != long(kPageSize)) {
    return make_error(ENOTSUP,
                      "the sim provider needs 4096-byte host pages (Xen's page size); "
                      "this host uses " +
                          std::to_string(host_page));
  }
  if (options.domid >= kDomIdFirstReserved) {
    return make_error(EINVAL, "cannot attach as domid " + std::to_string(options.domid) +
                                  ": ids from 32752 (0x7ff0) up are reserved by Xen");
  }
  if (options.max_grant_frames == 0 || options.max_grant_frames > kMaxGrantFramesLimit) {
    return make_error(EINVAL, "max_grant_frames " + std::to_string(options.max_grant_frames) +
                                  " is out of range (1.." + std::to_string(kMaxGrantFramesLimit) +
                                  ")");
  }
  auto impl = std::make_unique<Impl>();
  SHBUF_TRY(impl->faults.parse(options.faults, "SimOptions::faults"));
  if (const char* env = std::getenv(kSimFaultEnv); env != nullptr) {
    SHBUF_TRY(impl->faults.parse(env, kSimFaultEnv));
  }
  auto in = Instance::open(resolve(options.path), true, options.max_grant_frames);
  if (!in.ok()) return std::move(in).error();
  impl->in = std::move(in).value();
  impl->pid = getpid();
  impl->domid = options.domid;
  impl->grant_copy = options.grant_copy;
  SHBUF_TRY(impl->in->lock());
  auto slot = impl->in->attach(options.domid, impl->pid);
  if (slot.ok()) {
    impl->slot = *slot;
    impl->dom_index = impl->in->slot(*slot).dom_index;
  }
  impl->in->unlock();
  if (!slot.ok()) return std::move(slot).error();
  return std::unique_ptr<SimProvider>(new SimProvider(std::move(impl)));
}

DomId SimProvider::self() const {
  return impl_->domid;
}

ProviderFeatures SimProvider::features() const {
  ProviderFeatures f;
  f.grant_copy = impl_->grant_copy;
  return f;
}

const std::string& SimProvider::path() const {
  return impl_->in->dir();
}

Result<Share> SimProvider::do_share(DomId peer, std::size_t count, Access access) {
  Impl& m = *impl_;
  SHBUF_TRY(m.owned());
  if (peer >= kDomIdFirstReserved) {
    return make_error(EINVAL, "cannot grant to domid " + std::to_string(peer) +
                                  ": ids from 32752 (0x7ff0) up are reserved by Xen");
  }
  SHBUF_TRY(m.faults.fail_call(SimFaultOp::kShare));
  Instance& in = *m.in;
  const std::uint32_t limit = in.nr_entries() - kReservedGrefs;
  if (count > limit) {
    return make_error(
        ENOSPC, "cannot share " + std::to_string(count) + " pages: the grant table of " +
                    dom_str(m.domid) + " holds at most " + std::to_string(limit) +
                    " grants (max_grant_frames " + std::to_string(in.hdr().max_grant_frames) + ")");
  }
  const std::size_t bytes = count * kPageSize;
  void* base = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    return make_error(ENOMEM, "cannot reserve " + std::to_string(bytes) +
                                  " bytes of address space to share " + std::to_string(count) +
                                  " pages");
  }
  auto* p = static_cast<std::byte*>(base);
  if (Status st = in.lock(); !st.ok()) {
    munmap(base, bytes);
    return st.error();
  }
  auto fail = [&](Error e) -> Error {
    in.unlock();
    munmap(base, bytes);
    return e;
  };
  if (Status st = in.check_liveness(false); !st.ok()) return fail(st.error());
  auto v = in.view(m.dom_index);
  if (!v.ok()) return fail(std::move(v).error());
  if (Status st = in.check_mem(**v, (*v)->mem_rw.get()); !st.ok()) return fail(st.error());
  DomainRec& d = in.dom(m.dom_index);
  if (count > d.free_count) {
    const std::uint32_t used = limit - d.free_count;
    in.unlock();
    munmap(base, bytes);
    return make_error(ENOSPC, "the grant table of " + dom_str(m.domid) +
                                  " is full: " + std::to_string(used) + " grants in use of " +
                                  std::to_string(limit) + " (max_grant_frames " +
                                  std::to_string(in.hdr().max_grant_frames) + "); cannot grant " +
                                  std::to_string(count) + " more");
  }
  std::vector<Run> runs;
  if (Status st = in.alloc(m.dom_index, std::uint32_t(count), runs); !st.ok()) {
    return fail(st.error());
  }
  for (const Run& run : runs) {
    for (std::uint32_t g = run.start; g < run.start + run.len; ++g) {
      if ((*v)->aux[g].state != kFree) {
        return fail(in.damaged("dom" + std::to_string(m.domid) + ".gnt: gref " + std::to_string(g) +
                               " is in a free run but has state " +
                               std::to_string((*v)->aux[g].state)));
      }
    }
  }
  const std::uint16_t flags =
      GTF_permit_access | (access == Access::kReadOnly ? GTF_readonly : std::uint16_t{0});
  std::vector<Gref> grefs;
  grefs.reserve(count);
  for (const Run& run : runs) {
    for (std::uint32_t g = run.start; g < run.start + run.len; ++g) {
      EntryAux& a = (*v)->aux[g];
      a.owner = m.slot;
      a.state = kGranted;
      a.map_count = a.wmap_count = 0;
      (*v)->ent[g].domid = peer;
      (*v)->ent[g].frame = g;
      (*v)->ent[g].flags = flags;
      grefs.push_back(g);
    }
  }
  std::size_t at = 0;
  for (const Run& run : runs) {
    void* got = mmap(p + at * kPageSize, std::size_t{run.len} * kPageSize, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_FIXED, (*v)->mem_rw.get(), off_t(run.start) * off_t(kPageSize));
    if (got == MAP_FAILED) {
      const int e = errno;
      // Nobody can have seen these entries: undo them without zeroing.
      for (const Run& undo : runs) {
        for (std::uint32_t g = undo.start; g < undo.start + undo.len; ++g) {
          (*v)->ent[g] = GrantEntryV1{};
          (*v)->aux[g].state = kFree;
          (*v)->aux[g].owner = kNoSlot;
        }
        (void)in.release(m.dom_index, undo);
      }
      in.unlock();
      munmap(base, bytes);
      return errno_error(e, "cannot map " + std::to_string(count) + " shared pages" +
                              (e == ENOMEM ? " (out of memory, or vm.max_map_count reached)" : ""));
    }
    at += run.len;
  }
  in.unlock();
  madvise(base, bytes, MADV_DONTFORK);  // as gntalloc's VM_DONTCOPY
  Share share = make_share(p, std::move(grefs), 0, peer, access);
  // gntalloc allocates every page when it grants it: so do we, outside the
  // lock, in one call rather than one page fault per page.
  if (Status st = populate(base, bytes, MADV_POPULATE_WRITE); !st.ok()) {
    (void)share.end();
    return make_error(st.code(), "cannot allocate " + std::to_string(count) +
                                     " pages to share: " + st.error().message);
  }
  return share;
}

Status SimProvider::do_end(Share& share) {
  Impl& m = *impl_;
  const std::span<std::byte> mem = share.memory();
  if (mem.data() != nullptr) munmap(mem.data(), mem.size());
  SHBUF_TRY(m.owned());
  const CallFault injected = m.faults.take(SimFaultOp::kEnd);
  Instance& in = *m.in;
  SHBUF_TRY(in.lock());
  auto fail = [&](Error e) -> Error {
    in.unlock();
    return e;
  };
  if (Status st = in.check_liveness(false); !st.ok()) return fail(st.error());
  auto v = in.view(m.dom_index);
  if (!v.ok()) return fail(std::move(v).error());
  const std::span<const Gref> grefs = share.grefs();
  const std::uint32_t n = in.nr_entries();
  auto ours = [&](Gref g) {
    return g >= kReservedGrefs && g < n && (*v)->aux[g].owner == m.slot &&
           (*v)->aux[g].state == kGranted;
  };
  // A share's grefs stay ours and granted until it ends: anything else is
  // damage, found before anything is changed.
  bool mapped = false;
  for (const Gref g : grefs) {
    if (g >= kReservedGrefs && g < n) {
      if (Status st = in.check_entry(**v, g); !st.ok()) return fail(st.error());
    }
    if (!ours(g)) {
      const bool known = g >= kReservedGrefs && g < n;
      return fail(in.damaged("dom" + std::to_string(m.domid) + ".gnt: gref " + std::to_string(g) +
                             ", which this attachment granted, is recorded " +
                             (known ? "with state " + std::to_string((*v)->aux[g].state) +
                                          " and owner " + std::to_string((*v)->aux[g].owner)
                                    : std::string("out of range"))));
    }
    mapped = mapped || (*v)->aux[g].map_count > 0;
  }
  // A mapper that died still counts until reaped: look now, not later.
  if (mapped) {
    if (Status st = in.check_liveness(true); !st.ok()) return fail(st.error());
  }
  std::vector<std::uint32_t> freeing;
  freeing.reserve(grefs.size());
  std::size_t pending = 0;
  for (const Gref g : grefs) {
    EntryAux& a = (*v)->aux[g];
    if (a.map_count > 0) {
      (*v)->ent[g].flags &= std::uint16_t(~GTF_permit_access);
      a.state = kPending;
      ++pending;
    } else {
      (*v)->ent[g].flags = 0;
      a.state = kFreeing;
      freeing.push_back(g);
    }
  }
  in.slot(m.slot).pending += pending;
  const int mem_fd = (*v)->mem_rw.get();
  in.unlock();
  Status freed = m.finish_free(m.dom_index, mem_fd, freeing);

  if (injected.err != 0) {
    std::string msg = "injected fault: end call " + std::to_string(injected.call) +
                      " fails; the grants were revoked anyway";
    if (pending > 0) msg += " (" + std::to_string(pending) + " pages kept until unmapped)";
    return make_error(injected.err, msg);
  }
  if (pending > 0) {
    return make_error(EBUSY, std::to_string(pending) + " of " + std::to_string(grefs.size()) +
                                 " pages still mapped by " + dom_str(share.peer()) +
                                 "; kept until unmapped");
  }
  return freed;
}

Result<Mapping> SimProvider::do_map(DomId peer, std::span<const Gref> grefs, Access access) {
  Impl& m = *impl_;
  SHBUF_TRY(m.owned());
  if (peer >= kDomIdFirstReserved) {
    return make_error(EINVAL, "cannot map from domid " + std::to_string(peer) +
                                 ": ids from 32752 (0x7ff0) up are reserved by Xen");
  }
  SHBUF_TRY(m.faults.fail_call(SimFaultOp::kMap));
  SHBUF_TRY(m.faults.gref_fault(peer, grefs, "map"));
  const bool rw = access == Access::kReadWrite;
  const std::size_t bytes = grefs.size() * kPageSize;
  std::vector<Run> runs;
  to_runs(grefs.data(), grefs.size(), runs);
  // One run (the usual case) is mapped straight into place; several need a
  // reserved range to be mapped into side by side.
  const bool single = runs.size() == 1;
  const bool inline_populate = single && grefs.size() <= kPopulateInline;
  void* base = nullptr;
  if (!single) {
    base = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
      return make_error(ENOMEM, "cannot reserve " + std::to_string(bytes) +
                                    " bytes of address space to map " +
                                    std::to_string(grefs.size()) + " grefs");
    }
  }
  auto* p = static_cast<std::byte*>(base);
  auto drop_base = [&] {
    if (base != nullptr) munmap(base, bytes);
  };
  Instance& in = *m.in;
  if (Status st = in.lock(); !st.ok()) {
    drop_base();
    return st.error();
  }
  auto refuse = [&](int code, std::string msg) -> Error {
    in.unlock();
    drop_base();
    return make_error(code, std::move(msg));
  };
  if (Status st = in.check_liveness(false); !st.ok()) {
    return refuse(st.code(), st.error().message);
  }
  auto found = live_domain(in, peer);
  if (!found.ok()) return refuse(found.error().code, std::move(found).error().message);
  const std::uint16_t di = *found;
  auto v = in.view(di);
  if (!v.ok()) return refuse(v.error().code, std::move(v).error().message);
  const std::uint32_t n = in.nr_entries();
  GrantEntryV1* ent = (*v)->ent;
  EntryAux* aux = (*v)->aux;
  auto what = [&](Gref g) { return "gref " + std::to_string(g) + " of " + dom_str(peer); };
  for (const Gref g : grefs) {
    if (g >= kReservedGrefs && g < n) {
      if (Status st = in.check_entry(**v, g); !st.ok()) {
        return refuse(st.code(), st.error().message);
      }
    }
    if (std::string why = refusal(ent, aux, n, peer, m.domid, g, rw, "map it writable");
        !why.empty()) {
      return refuse(EINVAL, std::move(why));
    }
    if (aux[g].map_count >= kMaxMapCount) {
      return refuse(ENOSPC,
                    what(g) + " is mapped " + std::to_string(aux[g].map_count) + " times already");
    }
  }
  if (in.records_free() < runs.size()) {
    return refuse(ENOSPC, "cannot map " + std::to_string(grefs.size()) + " grefs: they need " +
                              std::to_string(runs.size()) + " mapping records and only " +
                              std::to_string(in.records_free()) + " of the simulator's " +
                              std::to_string(in.hdr().max_records) + " are free");
  }
  const int fd = rw ? (*v)->mem_rw.get() : (*v)->mem_ro.get();
  if (Status st = in.check_mem(**v, fd); !st.ok()) return refuse(st.code(), st.error().message);
  const std::uint16_t set = GTF_reading | (rw ? GTF_writing : std::uint16_t{0});
  for (const Gref g : grefs) {
    aux[g].map_count++;
    if (rw) aux[g].wmap_count++;
    ent[g].flags |= set;
  }
  std::vector<std::uint32_t> recs;
  recs.reserve(runs.size());
  auto undo = [&] {
    for (const Gref g : grefs) in.unmap_entry(**v, g, rw);
    for (const std::uint32_t r : recs) in.rec_free(r);
  };
  for (const Run& run : runs) {
    const std::uint32_t r = in.rec_alloc(run.start, run.len, di, m.slot, rw);
    if (r == kNil) {
      undo();
      return refuse(EUCLEAN, in.damaged("its list of free mapping records is broken (" +
                                        std::to_string(in.records_free()) + " should be free)")
                                 .message);
    }
    if (!recs.empty()) in.rec(recs.back()).next = r;
    recs.push_back(r);
  }
  const std::uint32_t head = recs.front();
  const int prot = rw ? PROT_READ | PROT_WRITE : PROT_READ;
  std::size_t at = 0;
  for (const Run& run : runs) {
    void* got = single ? mmap(nullptr, bytes, prot,
                              MAP_SHARED | (inline_populate ? MAP_POPULATE : 0), fd,
                              off_t(run.start) * off_t(kPageSize))
                       : mmap(p + at * kPageSize, std::size_t{run.len} * kPageSize, prot,
                              MAP_SHARED | MAP_FIXED, fd, off_t(run.start) * off_t(kPageSize));
    if (got == MAP_FAILED) {
      const int e = errno;
      undo();
      in.unlock();
      drop_base();
      return errno_error(e, "cannot map " + std::to_string(grefs.size()) + " grefs of " +
                              dom_str(peer) +
                              (e == ENOMEM ? " (out of memory, or vm.max_map_count reached)" : ""));
    }
    if (single) {
      base = got;
      p = static_cast<std::byte*>(got);
    }
    at += run.len;
  }
  const std::uint64_t token = (std::uint64_t(in.rec(head).gen) << 32) | (std::uint64_t(head) + 1);
  in.unlock();
  madvise(base, bytes, MADV_DONTFORK);  // as gntdev's VM_DONTCOPY
  Mapping mapping = make_mapping(p, grefs.size(), token, peer, access);
  // gntdev maps every page when the range is mapped: so do we, outside the
  // lock. Read faults map the granter's existing pages many at a time
  // (fault-around), and the page table entries of a writable shared mapping
  // come writable, so later writes do not fault.
  if (Status st = inline_populate ? Status{} : populate(base, bytes, MADV_POPULATE_READ);
      !st.ok()) {
    (void)mapping.unmap();
    return make_error(st.code(), "cannot map " + std::to_string(grefs.size()) + " grefs of " +
                                     dom_str(peer) + ": " + st.error().message);
  }
  return mapping;
}

// Checks the grant as a map would and copies through the granter's page file,
// all under the lock: the granter cannot end the grant midway, as Xen holds
// the grant for the length of a copy.
Status SimProvider::do_copy(DomId peer, Gref gref, std::size_t offset, std::span<std::byte> local,
                            bool to_peer) {
  Impl& m = *impl_;
  SHBUF_TRY(m.owned());
  const char* verb = to_peer ? "copy into" : "copy from";
  if (peer >= kDomIdFirstReserved) {
    return make_error(EINVAL, std::string("cannot ") + verb + " a page of domid " +
                                  std::to_string(peer) +
                                  ": ids from 32752 (0x7ff0) up are reserved by Xen");
  }
  SHBUF_TRY(m.faults.fail_call(SimFaultOp::kCopy));
  const Gref one[] = {gref};
  SHBUF_TRY(m.faults.gref_fault(peer, one, "copy"));
  Instance& in = *m.in;
  SHBUF_TRY(in.lock());
  struct Unlock {
    Instance& in;
    ~Unlock() { in.unlock(); }
  } unlock{in};
  SHBUF_TRY(in.check_liveness(false));
  auto found = live_domain(in, peer);
  if (!found.ok()) return std::move(found).error();
  auto v = in.view(*found);
  if (!v.ok()) return std::move(v).error();
  if (gref >= kReservedGrefs && gref < in.nr_entries()) SHBUF_TRY(in.check_entry(**v, gref));
  if (std::string why = refusal((*v)->ent, (*v)->aux, in.nr_entries(), peer, m.domid, gref, to_peer,
                                "copy into it");
      !why.empty()) {
    return make_error(EINVAL, std::move(why));
  }
  const int fd = to_peer ? (*v)->mem_rw.get() : (*v)->mem_ro.get();
  const off_t at = off_t(gref) * off_t(kPageSize) + off_t(offset);
  for (std::size_t done = 0; done < local.size();) {
    const ssize_t r = to_peer
                          ? pwrite(fd, local.data() + done, local.size() - done, at + off_t(done))
                          : pread(fd, local.data() + done, local.size() - done, at + off_t(done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const int e = r < 0 ? errno : EIO;
      return errno_error(e, std::string("cannot ") + verb + " gref " + std::to_string(gref) + " of " +
                              dom_str(peer));
    }
    done += std::size_t(r);
  }
  return {};
}

Status SimProvider::do_unmap(Mapping& mapping) {
  Impl& m = *impl_;
  const std::span<std::byte> mem = mapping.memory();
  // Our view goes first: only then may the granter reuse the pages.
  if (mem.data() != nullptr) munmap(mem.data(), mem.size());
  SHBUF_TRY(m.owned());
  const CallFault injected = m.faults.take(SimFaultOp::kUnmap);
  Instance& in = *m.in;
  SHBUF_TRY(in.lock());
  auto fail = [&](Error e) -> Error {
    in.unlock();
    return e;
  };
  if (Status st = in.check_liveness(false); !st.ok()) return fail(st.error());
  const std::uint64_t token = token_of(mapping);
  const std::uint32_t head = std::uint32_t(token & 0xffffffffu) - 1;
  const std::uint32_t gen = std::uint32_t(token >> 32);
  const std::uint32_t hiwater = in.hdr().rec_hiwater;
  // map() gave this mapping its first record, and only unmap() frees it.
  if (head >= hiwater || in.rec(head).used == 0 || in.rec(head).gen != gen ||
      in.rec(head).mapper != m.slot) {
    return fail(in.damaged("mapping record " + std::to_string(head) + " of a mapping of " +
                           dom_str(mapping.peer()) + " is no longer that mapping's (" +
                           std::to_string(hiwater) + " records in use or free, used " +
                           std::to_string(head < hiwater ? in.rec(head).used : 0) + ")"));
  }
  // The records were chained by map() and cover exactly the mapping's pages;
  // the walk is bounded by that count, and nothing changes until it is done.
  const std::uint16_t di = in.rec(head).granter;
  std::vector<std::uint32_t> chain;
  std::size_t pages = 0;
  for (std::uint32_t r = head; r != kNil; r = in.rec(r).next) {
    if (r >= hiwater || chain.size() >= mapping.pages() || in.rec(r).used == 0 ||
        in.rec(r).mapper != m.slot || in.rec(r).granter != di) {
      return fail(in.damaged("the mapping records of a mapping of " + dom_str(mapping.peer()) +
                             " from record " + std::to_string(head) + " do not chain (record " +
                             std::to_string(r) + ")"));
    }
    if (Status st = in.check_rec(r); !st.ok()) return fail(st.error());
    pages += in.rec(r).count;
    chain.push_back(r);
  }
  if (pages != mapping.pages()) {
    return fail(in.damaged("the mapping records from record " + std::to_string(head) + " cover " +
                           std::to_string(pages) + " pages of a mapping of " +
                           std::to_string(mapping.pages())));
  }
  auto v = in.view(di);
  if (!v.ok()) return fail(std::move(v).error());
  for (const std::uint32_t r : chain) {
    for (std::uint32_t i = 0; i < in.rec(r).count; ++i) {
      if (Status st = in.check_entry(**v, in.rec(r).gref + i); !st.ok()) return fail(st.error());
    }
  }
  std::vector<std::uint32_t> reclaim;
  const int mem_fd = (*v)->mem_rw.get();
  for (const std::uint32_t r : chain) {
    const MapRec& rec = in.rec(r);
    for (std::uint32_t i = 0; i < rec.count; ++i) {
      const std::uint32_t g = rec.gref + i;
      if (!in.unmap_entry(**v, g, rec.writable != 0)) continue;
      // The last mapping of a revoked grant: reclaim it now.
      EntryAux& a = (*v)->aux[g];
      if (a.owner < kMaxSlots && in.slot(a.owner).pending > 0) in.slot(a.owner).pending--;
      a.owner = m.slot;
      a.state = kFreeing;
      (*v)->ent[g].flags = 0;
      reclaim.push_back(g);
    }
    in.rec_free(r);
  }
  in.unlock();
  Status freed = m.finish_free(di, mem_fd, reclaim);
  if (injected.err != 0) {
    return make_error(injected.err, "injected fault: unmap call " +
                                        std::to_string(injected.call) +
                                        " fails; the pages were unmapped anyway");
  }
  return freed;
}

std::size_t SimProvider::pending_pages() {
  Impl& m = *impl_;
  if (!m.owned().ok() || !m.in->lock().ok()) return 0;
  (void)m.in->check_liveness(true);
  const std::size_t n = m.in->slot(m.slot).pending;
  m.in->unlock();
  return n;
}

void SimProvider::inject_fault(SimFaultOp op, unsigned k, int error) {
  impl_->faults.inject(op, k, error);
}

void SimProvider::inject_gref_fault(DomId granter, Gref gref, int error) {
  impl_->faults.inject_gref(granter, gref, error);
}

void SimProvider::clear_faults() {
  impl_->faults.clear();
}

void SimProvider::sweep() {
  Impl& m = *impl_;
  if (!m.owned().ok() || !m.in->lock().ok()) return;
  (void)m.in->check_liveness(true);
  m.in->unlock();
}

Result<SimStatus> SimProvider::status() {
  SHBUF_TRY(impl_->owned());
  return read_status(*impl_->in);
}

Result<SimStatus> SimProvider::status(const std::string& path) {
  auto in = Instance::open(resolve(path), false, 0);
  if (!in.ok()) return std::move(in).error();
  return read_status(**in);
}

namespace {

// The names of the files an instance makes, but `state`: lives,
// dom<id>.gnt and dom<id>.mem for a valid domid, and state.tmp.<pid>.<n> of a
// creation that did not finish.
bool instance_file(std::string_view name) {
  if (name == "lives") return true;
  unsigned a = 0;
  unsigned b = 0;
  if (name.starts_with("state.tmp.")) {
    const std::vector<std::string_view> parts = split(name.substr(10), '.');
    return parts.size() == 2 && parse_uint(parts[0], a) && parse_uint(parts[1], b);
  }
  if (name.size() < 8 || !name.starts_with("dom") ||
      !(name.ends_with(".gnt") || name.ends_with(".mem"))) {
    return false;
  }
  const std::string_view id = name.substr(3, name.size() - 7);
  return parse_uint(id, a) && a < kDomIdFirstReserved && std::to_string(a) == id;
}

}  // namespace

// Only an instance is reset: `state` must be a regular file of ours that
// starts with the simulator's magic (of any layout version, so that an old
// instance can be cleared), else nothing is removed. Then the state is marked
// reset under its lock (when its layout is this one) before the files go,
// `state` last: attached processes then fail with ESTALE, and a new instance
// cannot appear until the old one is fully gone. Only regular files of ours
// with an instance's names are removed; symbolic links are not followed.
Status SimProvider::reset(const std::string& path) {
  const std::string dir = resolve(path);
  const UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  const int dfd = dir_fd.get();
  if (!dir_fd) {
    if (errno == ENOENT) return {};
    if (errno == ENOTDIR) return make_error(ENOTDIR, dir + " is not a directory");
    return errno_error("cannot open " + dir);
  }
  auto refuse = [&](const std::string& why) {
    return make_error(EINVAL, "refusing to reset " + dir + ": " + why +
                                  ", so it is not a simulator instance; nothing was removed");
  };
  const UniqueFd state_fd(openat(dfd, "state", O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  const int fd = state_fd.get();
  if (!state_fd) {
    if (errno == ENOENT) return {};  // nothing to reset
    if (errno == ELOOP) return refuse("its state is a symbolic link");
    return errno_error("cannot open " + dir + "/state");
  }
  struct stat fs {};
  if (fstat(fd, &fs) != 0) return errno_error("cannot stat " + dir + "/state");
  if (!S_ISREG(fs.st_mode)) return refuse("its state is not a regular file");
  if (fs.st_uid != geteuid()) {
    return refuse("its state belongs to uid " + std::to_string(fs.st_uid) + ", not " +
                  std::to_string(geteuid()));
  }
  char head[offsetof(Header, page_size)] = {};
  if (pread(fd, head, sizeof head, 0) != ssize_t(sizeof head) ||
      std::memcmp(head, kMagic, sizeof kMagic) != 0) {
    return refuse("its state does not start with the simulator's magic");
  }
  std::uint32_t version = 0;
  std::memcpy(&version, head + offsetof(Header, version), sizeof version);
  Header* h = nullptr;
  if (version == kVersion && fs.st_size == off_t(kStateSize)) {
    void* p = mmap(nullptr, kSlotsOffset, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) h = static_cast<Header*>(p);
  }
  bool locked = false;
  if (h != nullptr) {
    // A holder that never lets go does not stop a reset: it goes on unlocked.
    auto timeout = lock_timeout_ms();
    const int rc = lock_within(h->mutex, timeout.ok() ? *timeout : kSimLockTimeoutMs);
    if (rc == EOWNERDEAD) pthread_mutex_consistent(&h->mutex);
    locked = rc == 0 || rc == EOWNERDEAD;
    h->reset = 1;
  }
  Status result;
  if (DIR* d = fdopendir(dup(dfd))) {
    std::vector<std::string> names;
    while (const dirent* e = readdir(d)) {
      if (instance_file(e->d_name)) names.emplace_back(e->d_name);
    }
    closedir(d);
    for (const std::string& name : names) {
      struct stat sb {};
      if (fstatat(dfd, name.c_str(), &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode) ||
          sb.st_uid != geteuid()) {
        continue;
      }
      if (unlinkat(dfd, name.c_str(), 0) != 0 && errno != ENOENT) {
        result = errno_error("cannot remove " + dir + "/" + name);
      }
    }
  } else {
    result = errno_error("cannot list " + dir);
  }
  if (unlinkat(dfd, "state", 0) != 0 && errno != ENOENT) {
    result = errno_error("cannot remove " + dir + "/state");
  }
  if (locked) pthread_mutex_unlock(&h->mutex);
  if (h != nullptr) munmap(h, kSlotsOffset);
  return result;
}

}  // namespace shbuf
