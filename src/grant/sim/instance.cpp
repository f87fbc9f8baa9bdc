// One process's view of a sim instance: creating and opening it, its lock
// (and the repair after a holder died), attachments and their liveness,
// domains and their tables, the entry allocator, and mapping records.
#include "grant/sim/instance.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "shbuf/grant/sim.h"

namespace shbuf::sim {

namespace {

constexpr std::uint64_t kCheckIntervalNs = 250'000'000;

// The coarse clock (a few ms a tick) is plenty for a 250 ms interval, and it
// is read on every lock without reading the hardware's counter.
std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return std::uint64_t(ts.tv_sec) * 1'000'000'000u + std::uint64_t(ts.tv_nsec);
}

std::string dom_file(const std::string& dir, DomId domid, const char* ext) {
  return dir + "/dom" + std::to_string(domid) + ext;
}

std::string table_name(DomId domid) {
  return "dom" + std::to_string(domid) + ".gnt";
}

std::atomic_ref<std::int32_t> holder_of(Header& h) {
  return std::atomic_ref<std::int32_t>(h.holder);
}

// Instance-wide random id, so two instances are never confused.
std::uint64_t random_id() {
  std::random_device rd;
  return (std::uint64_t(rd()) << 32) ^ rd() ^ now_ns();
}

// A page the kernel zeroes in every forked child (MADV_WIPEONFORK), so the
// id cached there is never a parent's; null on kernels without it.
std::atomic<pid_t>* make_pid_cell() {
  void* page = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return nullptr;
  if (madvise(page, kPageSize, MADV_WIPEONFORK) != 0) {
    munmap(page, kPageSize);
    return nullptr;
  }
  return new (page) std::atomic<pid_t>(0);
}

}  // namespace

pid_t self_pid() {
  static std::atomic<pid_t>* const cell = make_pid_cell();
  if (cell == nullptr) return getpid();
  pid_t pid = cell->load(std::memory_order_relaxed);
  if (pid == 0) {
    pid = getpid();
    cell->store(pid, std::memory_order_relaxed);
  }
  return pid;
}

Error damage_error(const std::string& dir, const std::string& what) {
  return make_error(EUCLEAN, "the simulator instance at " + dir + " is damaged: " + what +
                                 "; run 'shbuf sim reset --sim " + dir + "'");
}

Error Instance::damaged(const std::string& what) const {
  return damage_error(dir_, what);
}

Result<unsigned> lock_timeout_ms() {
  const char* env = std::getenv(kSimLockTimeoutEnv);
  if (env == nullptr || *env == '\0') return kSimLockTimeoutMs;
  const std::string_view s = env;
  unsigned ms = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), ms, 10);
  if (ec != std::errc() || end != s.data() + s.size() || ms == 0) {
    return make_error(EINVAL, std::string(kSimLockTimeoutEnv) + ": '" + env +
                                  "' is not a number of milliseconds (1 or more)");
  }
  return ms;
}

// ThreadSanitizer (GCC 12's) models a dead holder reported by trylock but not
// one reported by timedlock: a process that waits while the holder dies would
// then be told it unlocks a mutex it does not hold. Under it, the wait polls.
#if defined(__SANITIZE_THREAD__)
#define SHBUF_POLL_THE_LOCK 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SHBUF_POLL_THE_LOCK 1
#endif
#endif

// Tries the lock first: that is the usual case, and a dead holder is then
// reported (EOWNERDEAD) at once; only a lock really held by someone else is
// waited for.
int lock_within(pthread_mutex_t& mutex, unsigned ms) {
  const int now = pthread_mutex_trylock(&mutex);
  if (now != EBUSY) return now;
#ifdef SHBUF_POLL_THE_LOCK
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  auto pause = std::chrono::microseconds(20);
  for (;;) {
    std::this_thread::sleep_for(pause);
    const int rc = pthread_mutex_trylock(&mutex);
    if (rc != EBUSY) return rc;
    if (std::chrono::steady_clock::now() >= deadline) return ETIMEDOUT;
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
#else
  timespec until{};
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += time_t(ms / 1000);
  until.tv_nsec += long(ms % 1000) * 1'000'000;
  if (until.tv_nsec >= 1'000'000'000) {
    until.tv_sec++;
    until.tv_nsec -= 1'000'000'000;
  }
  return pthread_mutex_timedlock(&mutex, &until);
#endif
}

void DomView::unmap(bool windows) {
  if (base != nullptr) munmap(base, len);
  if (windows && window_rw != nullptr) munmap(window_rw, window_len);
  if (windows && window_ro != nullptr) munmap(window_ro, window_len);
  base = nullptr;
  window_rw = window_ro = nullptr;
}

// Address space only: the window is never read or written, so it costs no
// memory, and a copy of any part of it comes with MADV_DONTFORK set.
std::byte* window(DomView& v, bool rw, std::uint32_t nr_entries) {
  std::byte*& w = rw ? v.window_rw : v.window_ro;
  if (w != nullptr) return w;
  const std::size_t len = std::size_t{nr_entries} * kPageSize;
  void* p = mmap(nullptr, len, rw ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED,
                 rw ? v.mem_rw.get() : v.mem_ro.get(), 0);
  if (p == MAP_FAILED) return nullptr;
  if (madvise(p, len, MADV_DONTFORK) != 0) {
    munmap(p, len);
    return nullptr;
  }
  v.window_len = len;
  w = static_cast<std::byte*>(p);
  return w;
}

void clear_entries(DomView& v, const Run& run) {
  for (std::uint32_t g = run.start; g < run.start + run.len; ++g) {
    v.ent[g] = GrantEntryV1{};
    EntryAux& a = v.aux[g];
    a.state = kFree;
    a.owner = kNoSlot;
    a.map_count = a.wmap_count = 0;
  }
}

// A fully initialised state file is linked into place atomically, so a
// process never sees a half-made one and two creators cannot both win.
Status Instance::create_state(const std::string& dir, std::uint32_t max_grant_frames) {
  const std::string tmp = dir + "/state.tmp." + std::to_string(getpid()) + "." +
                          std::to_string(random_id() & 0xffffffffu);
  const UniqueFd fd(::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return errno_error("cannot create " + tmp);
  Status st;
  void* p = MAP_FAILED;
  if (ftruncate(fd.get(), off_t(kStateSize)) != 0) {
    st = errno_error("cannot size " + tmp);
  } else {
    p = mmap(nullptr, kStateSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (p == MAP_FAILED) st = errno_error("cannot map " + tmp);
  }
  if (st.ok()) {
    auto* h = static_cast<Header*>(p);
    h->version = kVersion;
    h->page_size = kPageSize;
    h->max_grant_frames = max_grant_frames;
    h->nr_entries = max_grant_frames * kEntriesPerFrame;
    h->max_slots = kMaxSlots;
    h->max_domains = kMaxDomains;
    h->max_records = kMaxRecords;
    h->instance_id = random_id();
    h->rec_free_head = kNil;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    const int rc = pthread_mutex_init(&h->mutex, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc != 0) st = errno_error(rc, "cannot initialise the lock in " + tmp);
    std::memcpy(h->magic, kMagic, sizeof kMagic);
    munmap(p, kStateSize);
  }
  if (st.ok() && link(tmp.c_str(), (dir + "/state").c_str()) != 0 && errno != EEXIST &&
      errno != ENOENT) {
    st = errno_error("cannot create " + dir + "/state");
  }
  unlink(tmp.c_str());
  return st;
}

// Only this user may write an instance: its directory must be ours and
// closed to others, its state a regular file of ours.
Result<std::unique_ptr<Instance>> Instance::open(const std::string& dir, bool create,
                                                 std::uint32_t max_grant_frames) {
  auto timeout = lock_timeout_ms();
  if (!timeout.ok()) return std::move(timeout).error();
  const std::string state_path = dir + "/state";
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (create && mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return errno_error("cannot create the simulator directory " + dir);
    }
    struct stat db {};
    if (stat(dir.c_str(), &db) != 0) {
      if (errno == ENOENT) return make_error(ENOENT, "no simulator instance at " + dir);
      return errno_error("cannot look at " + dir);
    }
    if (!S_ISDIR(db.st_mode)) return make_error(ENOTDIR, dir + " is not a directory");
    if (db.st_uid != geteuid() || (db.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", unsigned(db.st_mode & 07777));
      return make_error(EACCES, "refusing the simulator directory " + dir + " (owner uid " +
                                    std::to_string(db.st_uid) + ", mode " + mode +
                                    "): it must belong to uid " + std::to_string(geteuid()) +
                                    " and be writable by no one else");
    }
    UniqueFd state_fd(::open(state_path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (!state_fd) {
      const int e = errno;
      if (e == ENOENT && create) {
        Status st = create_state(dir, max_grant_frames);
        if (!st.ok() && st.code() != ENOENT) return st.error();
        continue;
      }
      if (e == ENOENT) return make_error(ENOENT, "no simulator instance at " + dir);
      if (e == ELOOP) return damage_error(dir, state_path + " is a symbolic link");
      return errno_error(e, "cannot open " + state_path);
    }
    std::unique_ptr<Instance> in(new Instance);
    in->dir_ = dir;
    in->pid_ = self_pid();
    in->state_fd_ = std::move(state_fd);
    const int fd = in->state_fd_.get();
    in->lock_timeout_ms_ = *timeout;
    struct stat sb {};
    if (fstat(fd, &sb) != 0) return errno_error("cannot stat " + state_path);
    if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid()) {
      return damage_error(
          dir, state_path + " is not a regular file of uid " + std::to_string(geteuid()));
    }
    // Magic and version first: another version's state may differ in size.
    char head[offsetof(Header, page_size)] = {};
    if (pread(fd, head, sizeof head, 0) != ssize_t(sizeof head) ||
        std::memcmp(head, kMagic, sizeof kMagic) != 0) {
      return damage_error(dir, state_path +
                                   " does not start with the simulator's magic (if it is not "
                                   "a simulator instance, it is not shbuf's to remove)");
    }
    std::uint32_t version = 0;
    std::memcpy(&version, head + offsetof(Header, version), sizeof version);
    if (version != kVersion) {
      return damage_error(dir, "it has layout version " + std::to_string(version) +
                                   " and this shbuf reads version " + std::to_string(kVersion));
    }
    if (sb.st_size != off_t(kStateSize)) {
      return damage_error(dir, state_path + " is " + std::to_string(sb.st_size) +
                                   " bytes, expected " + std::to_string(kStateSize));
    }
    void* p = mmap(nullptr, kStateSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return errno_error("cannot map " + state_path);
    in->state_ = p;
    in->hdr_ = static_cast<Header*>(p);
    in->slots_ = reinterpret_cast<SlotRec*>(static_cast<char*>(p) + kSlotsOffset);
    in->doms_ = reinterpret_cast<DomainRec*>(static_cast<char*>(p) + kDomainsOffset);
    in->recs_ = reinterpret_cast<MapRec*>(static_cast<char*>(p) + kRecordsOffset);
    // These never change once made; hold() holds the header to them.
    const std::uint32_t frames = in->hdr_->max_grant_frames;
    if (frames == 0 || frames > kMaxGrantFramesLimit) {
      return damage_error(dir, "its max_grant_frames is " + std::to_string(frames) + " (1.." +
                                   std::to_string(kMaxGrantFramesLimit) + ")");
    }
    in->max_grant_frames_ = frames;
    in->nr_entries_ = frames * kEntriesPerFrame;
    in->max_records_ = kMaxRecords;
    in->views_.resize(kMaxDomains);
    const std::string lives = dir + "/lives";
    in->lives_fd_.reset(::open(lives.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!in->lives_fd_) return errno_error("cannot open " + lives);
    {
      auto locked = in->hold();
      if (!locked.ok()) {
        if (locked.error().code == ESTALE) continue;  // reset under our feet: open the new one
        return std::move(locked).error();
      }
    }
    return in;
  }
  return make_error(EAGAIN, "the simulator instance at " + dir + " keeps being reset");
}

Instance::~Instance() {
  const bool windows = self_pid() == pid_;
  for (DomView& v : views_) v.unmap(windows);
  if (state_ != nullptr) munmap(state_, kStateSize);
  // The descriptors close with their owners. Closing the last descriptor of
  // our open file description (lives_fd_) drops our liveness lock: from then
  // on our slot reads as dead.
}

// A holder that died mid-operation may have left the allocator or the counts
// half-updated; repair() rebuilds them from the entries and records. A holder
// that lives but never lets go costs the waiter the lock timeout, not a hang.
Result<Instance::Locked> Instance::hold() {
  const int rc = lock_within(hdr_->mutex, lock_timeout_ms_);
  if (rc == ETIMEDOUT) {
    std::string msg = "waited " + std::to_string(lock_timeout_ms_) +
                      " ms for the lock of the simulator instance at " + dir_ + " (the mutex in " +
                      dir_ + "/state)";
    const std::int32_t holder = holder_of(*hdr_).load(std::memory_order_relaxed);
    if (holder > 0) msg += "; process " + std::to_string(holder) + " holds it";
    return make_error(ETIMEDOUT, msg + "; if that process is stuck, end it or run 'shbuf sim " +
                                     "reset --sim " + dir_ + "'");
  }
  bool repair_needed = false;
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(&hdr_->mutex);
    repair_needed = hdr_->reset == 0;
  } else if (rc != 0) {
    char buf[128];
    return damaged(std::string("its lock cannot be taken: ") + strerror_r(rc, buf, sizeof buf));
  }
  Locked held(*this);
  holder_of(*hdr_).store(std::int32_t(self_pid()), std::memory_order_relaxed);
  if (hdr_->reset != 0) {
    return make_error(ESTALE,
                      "the simulator instance at " + dir_ + " was reset; open the provider again");
  }
  SHBUF_TRY(check_header());
  if (repair_needed) SHBUF_TRY(repair());
  return held;
}

Status Instance::lock() {
  auto held = hold();
  if (!held.ok()) return std::move(held).error();
  held->in_ = nullptr;  // held until unlock()
  return {};
}

void Instance::unlock() {
  holder_of(*hdr_).store(0, std::memory_order_relaxed);
  pthread_mutex_unlock(&hdr_->mutex);
}

// O(1): the header's fixed values, and each index it holds within its range.
Status Instance::check_header() const {
  const Header& h = *hdr_;
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0) {
    return damaged("the magic at the start of its state was overwritten");
  }
  struct Field {
    const char* name;
    std::uint32_t value;
    std::uint32_t want;
  };
  const Field fixed[] = {{"version", h.version, kVersion},
                         {"page_size", h.page_size, std::uint32_t(kPageSize)},
                         {"max_grant_frames", h.max_grant_frames, max_grant_frames_},
                         {"nr_entries", h.nr_entries, nr_entries_},
                         {"max_slots", h.max_slots, kMaxSlots},
                         {"max_domains", h.max_domains, kMaxDomains},
                         {"max_records", h.max_records, max_records_}};
  for (const Field& f : fixed) {
    if (f.value != f.want) {
      return damaged("its header's " + std::string(f.name) + " is " + std::to_string(f.value) +
                     ", expected " + std::to_string(f.want));
    }
  }
  const std::uint32_t rec_hiwater = h.rec_hiwater;
  const std::uint32_t free_head = h.rec_free_head;
  const Field bounded[] = {{"slot_hiwater", h.slot_hiwater, kMaxSlots},
                           {"nr_domains", h.nr_domains, kMaxDomains},
                           {"rec_hiwater", rec_hiwater, max_records_},
                           {"rec_in_use", h.rec_in_use, rec_hiwater}};
  for (const Field& f : bounded) {
    if (f.value > f.want) {
      return damaged("its header's " + std::string(f.name) + " is " + std::to_string(f.value) +
                     ", at most " + std::to_string(f.want));
    }
  }
  // Slots and domains are never removed but by a reset.
  if (my_slot_ != kNoSlot && h.slot_hiwater <= my_slot_) {
    return damaged("its header's slot_hiwater is " + std::to_string(h.slot_hiwater) +
                   ", below this attachment's slot " + std::to_string(my_slot_));
  }
  if (h.nr_domains < known_domains_) {
    return damaged("its header lists " + std::to_string(h.nr_domains) + " domains, but " +
                   std::to_string(known_domains_) + " were created");
  }
  if (free_head != kNil && free_head >= rec_hiwater) {
    return damaged("its header's rec_free_head is " + std::to_string(free_head) + ", beyond the " +
                   std::to_string(rec_hiwater) + " records in use or free");
  }
  return {};
}

// OFD locks belong to an open file description, not a pid, so pid reuse
// cannot fake liveness; a dead holder's lock vanishes with it.
bool Instance::slot_alive(std::uint16_t s) {
  if (s == my_slot_) return true;
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = s;
  fl.l_len = 1;
  if (fcntl(lives_fd_.get(), F_OFD_GETLK, &fl) != 0) return true;  // cannot tell: keep it
  return fl.l_type != F_UNLCK;
}

Result<std::uint16_t> Instance::attach(DomId domid, pid_t pid) {
  SHBUF_TRY(check_liveness(true));
  auto di = ensure_domain(domid);
  if (!di.ok()) return std::move(di).error();
  for (std::uint32_t s = 0; s < kMaxSlots; ++s) {
    SlotRec& sr = slots_[s];
    if (sr.used != 0) continue;
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = off_t(s);
    fl.l_len = 1;
    // Fails while the previous holder's lock lingers (it detached but has
    // not closed yet): just take another slot.
    if (fcntl(lives_fd_.get(), F_OFD_SETLK, &fl) != 0) continue;
    sr.used = 1;
    sr.gen++;
    sr.pid = pid;
    sr.domid = domid;
    sr.dom_index = *di;
    sr.pending = 0;
    doms_[*di].attached++;
    hdr_->slot_hiwater = std::max(hdr_->slot_hiwater, s + 1);
    my_slot_ = std::uint16_t(s);
    return my_slot_;
  }
  return make_error(ENOSPC, "the simulator at " + dir_ + " has " + std::to_string(kMaxSlots) +
                                " attachments already; close some providers");
}

Status Instance::detach() {
  if (my_slot_ == kNoSlot) return {};
  std::vector<bool> dead(kMaxSlots);
  dead[my_slot_] = true;
  my_slot_ = kNoSlot;
  return reap(dead, false);
}

// A published domain record is ready, names a valid domid, and keeps the
// domid this process saw there before: records are never reused.
Result<int> Instance::domain_index(DomId domid) const {
  const std::uint32_t nr = hdr_->nr_domains;
  int found = -1;
  for (std::uint32_t i = 0; i < nr; ++i) {
    const DomId id = doms_[i].domid;
    if (doms_[i].ready != 1 || id >= kDomIdFirstReserved ||
        (views_[i].base != nullptr && views_[i].domid != id)) {
      return damaged("domain record " + std::to_string(i) + " (domid " + std::to_string(id) +
                     ", ready " + std::to_string(doms_[i].ready) + ") was overwritten");
    }
    if (id != domid) continue;
    if (found >= 0) {
      return damaged("domain records " + std::to_string(found) + " and " + std::to_string(i) +
                     " both claim domain " + std::to_string(domid));
    }
    found = int(i);
  }
  return found;
}

int Instance::find_domain(DomId domid) const {
  auto found = domain_index(domid);
  return found.ok() ? *found : -1;
}

// Domains are created under the lock and published by bumping nr_domains
// last, so a crash mid-way leaves nothing half-visible. Files a creation that
// did not finish left behind are replaced, never truncated: a process may
// still map them.
Result<std::uint16_t> Instance::ensure_domain(DomId domid) {
  auto found = domain_index(domid);
  if (!found.ok()) return std::move(found).error();
  if (*found >= 0) return std::uint16_t(*found);
  if (hdr_->nr_domains >= kMaxDomains) {
    return make_error(ENOSPC, "the simulator at " + dir_ + " has " + std::to_string(kMaxDomains) +
                                  " domains already; run 'shbuf sim reset' to start afresh");
  }
  const std::uint32_t n = nr_entries_;
  const std::uint16_t di = std::uint16_t(hdr_->nr_domains);
  const std::string gnt = dom_file(dir_, domid, ".gnt");
  const std::string mem = dom_file(dir_, domid, ".mem");
  for (const std::string& path : {gnt, mem}) {
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      return errno_error("cannot replace " + path);
    }
    const UniqueFd fd(
        ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return errno_error("cannot create " + path);
    const off_t size = off_t(path == gnt ? table_size(n) : std::size_t{n} * kPageSize);
    if (ftruncate(fd.get(), size) != 0) return errno_error("cannot size " + path);
  }
  DomainRec& d = doms_[di];
  std::memset(&d, 0, sizeof d);
  d.domid = domid;
  d.ready = 1;  // view() needs it; not visible until nr_domains moves
  DomView& v = views_[di];
  if (v.base != nullptr) {  // a stale view from a failed creation
    v.unmap(true);
    v = DomView{};  // closes its descriptors
  }
  auto view_or = map_view(di);
  if (!view_or.ok()) {
    d.ready = 0;
    return std::move(view_or).error();
  }
  EntryAux* aux = (*view_or)->aux;
  d.free_head = kNil;
  d.free_count = 0;
  d.hiwater = kReservedGrefs;
  push_run(d, aux, kReservedGrefs, n - kReservedGrefs);
  hdr_->nr_domains = di + 1u;
  return di;
}

// O(1) but for the first use: the record's indices and counts within range,
// and every entry from hiwater up counted free.
Result<DomView*> Instance::view(std::uint16_t di, bool check_free) {
  const std::uint32_t nr = hdr_->nr_domains;
  if (di >= nr) {
    return damaged("domain index " + std::to_string(di) + " is beyond the " + std::to_string(nr) +
                   " domains its header lists");
  }
  const DomainRec& d = doms_[di];
  const DomId domid = d.domid;
  const std::uint32_t n = nr_entries_;
  const std::uint32_t free_head = d.free_head;
  const std::uint32_t free_count = d.free_count;
  const std::uint32_t hiwater = d.hiwater;
  const std::uint32_t attached = d.attached;
  DomView& v = views_[di];
  if (d.ready != 1 || domid >= kDomIdFirstReserved || (v.base != nullptr && v.domid != domid)) {
    return damaged("domain record " + std::to_string(di) + " (domid " + std::to_string(domid) +
                   ", ready " + std::to_string(d.ready) + ") was overwritten");
  }
  if (check_free && ((free_head != kNil && (free_head < kReservedGrefs || free_head >= n)) ||
                     free_count > n - kReservedGrefs || hiwater < kReservedGrefs || hiwater > n ||
                     free_count < n - hiwater || attached > kMaxSlots)) {
    return damaged("the record of domain " + std::to_string(domid) + " holds free_head " +
                   std::to_string(free_head) + ", free_count " + std::to_string(free_count) +
                   ", hiwater " + std::to_string(hiwater) + ", attached " +
                   std::to_string(attached) + ", for a table of " + std::to_string(n) + " entries");
  }
  if (v.base != nullptr) return &v;
  return map_view(di);
}

Result<DomView*> Instance::map_view(std::uint16_t di) {
  DomView& v = views_[di];
  const DomId domid = doms_[di].domid;
  const std::string gnt = dom_file(dir_, domid, ".gnt");
  const std::string mem = dom_file(dir_, domid, ".mem");
  const std::size_t len = table_size(nr_entries_);
  auto open_file = [&](const std::string& path, int flags, off_t size) -> Result<UniqueFd> {
    UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (!fd) {
      const int e = errno;
      if (e == ENOENT) return damaged(path + " is missing");
      if (e == ELOOP) return damaged(path + " is a symbolic link");
      return errno_error(e, "cannot open " + path);
    }
    struct stat sb {};
    if (fstat(fd.get(), &sb) != 0 || !S_ISREG(sb.st_mode)) {
      return damaged(path + " is not a regular file");
    }
    if (sb.st_size != size) {
      return damaged(path + " is " + std::to_string(sb.st_size) + " bytes, expected " +
                     std::to_string(size));
    }
    return fd;
  };
  void* p = MAP_FAILED;
  {
    auto table = open_file(gnt, O_RDWR, off_t(len));
    if (!table.ok()) return std::move(table).error();
    p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, table->get(), 0);
    if (p == MAP_FAILED) return errno_error("cannot map " + gnt);
  }  // the mapping keeps the table file
  const off_t mem_size = off_t(nr_entries_) * off_t(kPageSize);
  auto rw = open_file(mem, O_RDWR, mem_size);
  if (!rw.ok()) {
    munmap(p, len);
    return std::move(rw).error();
  }
  auto ro = open_file(mem, O_RDONLY, mem_size);
  if (!ro.ok()) {
    munmap(p, len);
    return std::move(ro).error();
  }
  v.base = p;
  v.len = len;
  v.ent = static_cast<GrantEntryV1*>(p);
  v.aux = reinterpret_cast<EntryAux*>(static_cast<char*>(p) +
                                      std::size_t{nr_entries_} * sizeof(GrantEntryV1));
  v.mem_rw = std::move(*rw);
  v.mem_ro = std::move(*ro);
  v.domid = domid;
  known_domains_ = std::max(known_domains_, di + 1u);
  return &v;
}

// Mapping a page beyond the end of the file would fault on first access.
Status Instance::check_mem(const DomView& v, int fd) const {
  struct stat sb {};
  if (fstat(fd, &sb) != 0)
    return errno_error("cannot stat the pages of domain " + std::to_string(v.domid));
  const off_t want = off_t(nr_entries_) * off_t(kPageSize);
  if (sb.st_size != want) {
    return damaged(dom_file(dir_, v.domid, ".mem") + " is " + std::to_string(sb.st_size) +
                   " bytes, expected " + std::to_string(want));
  }
  return {};
}

// What the simulator never writes into an entry's bookkeeping.
Status Instance::check_entry(const DomView& v, std::uint32_t g) const {
  const EntryAux& a = v.aux[g];
  const std::uint32_t map_count = a.map_count;
  const std::uint32_t wmap_count = a.wmap_count;
  const std::uint16_t owner = a.owner;
  const std::uint16_t state = a.state;
  const std::uint16_t flags = v.ent[g].flags;
  // Access is permitted only while granted: both change together.
  if (state > kFreeing || map_count > kMaxMapCount || wmap_count > map_count ||
      (owner >= kMaxSlots && owner != kNoSlot) ||
      ((flags & GTF_permit_access) != 0 && state != kGranted)) {
    return damaged(table_name(v.domid) + ": gref " + std::to_string(g) + " has state " +
                   std::to_string(state) + ", flags " + std::to_string(flags) + ", owner " +
                   std::to_string(owner) + ", map_count " + std::to_string(map_count) +
                   ", wmap_count " + std::to_string(wmap_count));
  }
  return {};
}

Status Instance::check_liveness(bool force) {
  const std::uint64_t now = now_ns();
  const std::uint64_t next = hdr_->next_check_ns;
  // A time more than one interval ahead is not one this code wrote.
  if (!force && now < next && next - now <= kCheckIntervalNs) return {};
  hdr_->next_check_ns = now + kCheckIntervalNs;
  std::vector<bool> dead;
  for (std::uint32_t s = 0; s < hdr_->slot_hiwater; ++s) {
    if (slots_[s].used == 0 || slot_alive(std::uint16_t(s))) continue;
    if (dead.empty()) dead.resize(kMaxSlots);
    dead[s] = true;
  }
  if (!dead.empty()) return reap(dead, false);
  return {};
}

Status Instance::check_rec(std::uint32_t r) const {
  const MapRec& rec = recs_[r];
  const std::uint32_t gref = rec.gref;
  const std::uint32_t count = rec.count;
  const std::uint16_t granter = rec.granter;
  const std::uint16_t mapper = rec.mapper;
  if (granter >= hdr_->nr_domains || mapper >= hdr_->slot_hiwater || gref < kReservedGrefs ||
      gref >= nr_entries_ || count == 0 || count > nr_entries_ - gref) {
    return damaged("mapping record " + std::to_string(r) + " holds gref " + std::to_string(gref) +
                   ", count " + std::to_string(count) + ", granter " + std::to_string(granter) +
                   ", mapper " + std::to_string(mapper));
  }
  return {};
}

// Frees what dead attachments held: their mapping records (dropping map
// counts, which may complete pending revocations) and their grants (freed,
// or made pending while a live peer still maps them). With `recount` the map
// counts are rebuilt afterwards by repair(), so records are just dropped.
Status Instance::reap(const std::vector<bool>& dead, bool recount) {
  const std::uint32_t nr = hdr_->nr_domains;
  std::vector<std::vector<std::uint32_t>> to_free(nr);
  for (std::uint32_t r = 0; r < hdr_->rec_hiwater; ++r) {
    MapRec& rec = recs_[r];
    if (rec.used == 0) continue;
    SHBUF_TRY(check_rec(r));
    if (!dead[rec.mapper]) continue;
    if (!recount) {
      auto v = view(rec.granter);
      if (!v.ok()) return std::move(v).error();
      for (std::uint32_t i = 0; i < rec.count; ++i) {
        const std::uint32_t g = rec.gref + i;
        if (unmap_entry(**v, g, rec.writable != 0)) {
          EntryAux& a = (*v)->aux[g];
          if (a.owner < kMaxSlots && slots_[a.owner].pending > 0) slots_[a.owner].pending--;
          a.owner = kNoSlot;
          to_free[rec.granter].push_back(g);
        }
      }
    }
    rec_free(r);
  }
  for (std::uint16_t di = 0; di < nr; ++di) {
    auto v = view(di, !recount);
    if (!v.ok()) return std::move(v).error();
    GrantEntryV1* ent = (*v)->ent;
    EntryAux* aux = (*v)->aux;
    const std::uint32_t hi = recount ? nr_entries_ : doms_[di].hiwater;
    for (std::uint32_t g = kReservedGrefs; g < hi; ++g) {
      EntryAux& a = aux[g];
      if (a.owner >= kMaxSlots || !dead[a.owner]) continue;
      const bool held = a.state == kGranted || a.state == kFreeing;
      // When recounting, the free runs may be half-updated: repair() frees
      // what no one maps once it has rebuilt them.
      if (held && (recount || (a.state == kGranted && a.map_count > 0))) {
        ent[g].flags &= std::uint16_t(~GTF_permit_access);
        a.state = kPending;
        a.owner = kNoSlot;
      } else if (held) {
        to_free[di].push_back(g);
      } else {
        a.owner = kNoSlot;
      }
    }
  }
  for (std::uint16_t di = 0; di < to_free.size(); ++di) {
    if (!to_free[di].empty()) SHBUF_TRY(free_now(di, to_free[di]));
  }
  for (std::uint32_t s = 0; s < hdr_->slot_hiwater; ++s) {
    if (!dead[s] || slots_[s].used == 0) continue;
    SlotRec& sr = slots_[s];
    if (sr.dom_index < hdr_->nr_domains && doms_[sr.dom_index].attached > 0) {
      doms_[sr.dom_index].attached--;
    }
    sr.used = 0;
    sr.gen++;
    sr.pid = 0;
    sr.pending = 0;
  }
  return {};
}

// After a lock holder died mid-operation: reap the dead, then rebuild the
// record free list, map counts, flags, free runs and pending counts from
// what the entries and records say.
Status Instance::repair() {
  std::vector<bool> dead(kMaxSlots);
  for (std::uint32_t s = 0; s < hdr_->slot_hiwater; ++s) {
    if (slots_[s].used != 0 && !slot_alive(std::uint16_t(s))) dead[s] = true;
  }
  SHBUF_TRY(reap(dead, true));

  hdr_->rec_free_head = kNil;
  hdr_->rec_in_use = 0;
  for (std::uint32_t r = hdr_->rec_hiwater; r-- > 0;) {
    if (recs_[r].used != 0) {
      SHBUF_TRY(check_rec(r));
      hdr_->rec_in_use++;
    } else {
      recs_[r].next = hdr_->rec_free_head;
      hdr_->rec_free_head = r;
    }
  }
  for (std::uint32_t s = 0; s < kMaxSlots; ++s) slots_[s].pending = 0;
  for (std::uint16_t di = 0; di < hdr_->nr_domains; ++di) doms_[di].attached = 0;
  for (std::uint32_t s = 0; s < hdr_->slot_hiwater; ++s) {
    if (slots_[s].used != 0 && slots_[s].dom_index < hdr_->nr_domains) {
      doms_[slots_[s].dom_index].attached++;
    }
  }

  const std::uint32_t n = nr_entries_;
  for (std::uint16_t di = 0; di < hdr_->nr_domains; ++di) {
    auto v = view(di, false);  // its free runs and counts are rebuilt below
    if (!v.ok()) return std::move(v).error();
    GrantEntryV1* ent = (*v)->ent;
    EntryAux* aux = (*v)->aux;
    for (std::uint32_t g = kReservedGrefs; g < n; ++g) {
      aux[g].map_count = aux[g].wmap_count = 0;
      aux[g].run_len = aux[g].run_next = aux[g].run_prev = aux[g].run_tail = 0;
    }
    for (std::uint32_t r = 0; r < hdr_->rec_hiwater; ++r) {
      const MapRec& rec = recs_[r];
      if (rec.used == 0 || rec.granter != di) continue;
      for (std::uint32_t i = 0; i < rec.count; ++i) {
        aux[rec.gref + i].map_count++;
        if (rec.writable) aux[rec.gref + i].wmap_count++;
      }
    }
    std::vector<std::uint32_t> to_free;
    std::uint32_t hi = kReservedGrefs;
    for (std::uint32_t g = kReservedGrefs; g < n; ++g) {
      EntryAux& a = aux[g];
      if (a.state == kFree) {
        ent[g] = GrantEntryV1{};
        continue;
      }
      hi = g + 1;
      std::uint16_t f = ent[g].flags & std::uint16_t(~(GTF_reading | GTF_writing));
      if (a.map_count > 0) f |= GTF_reading;
      if (a.wmap_count > 0) f |= GTF_writing;
      ent[g].flags = f;
      if (a.state == kPending && a.map_count == 0) {
        to_free.push_back(g);
      } else if (a.state == kPending && a.owner < kMaxSlots) {
        if (slots_[a.owner].used != 0) {
          slots_[a.owner].pending++;
        } else {
          a.owner = kNoSlot;
        }
      }
    }
    DomainRec& d = doms_[di];
    d.free_head = kNil;
    d.free_count = 0;
    d.hiwater = hi;
    for (std::uint32_t g = n; g > kReservedGrefs;) {
      std::uint32_t end = g;
      while (g > kReservedGrefs && aux[g - 1].state == kFree) --g;
      if (g < end) push_run(d, aux, g, end - g);
      while (g > kReservedGrefs && aux[g - 1].state != kFree) --g;
    }
    if (!to_free.empty()) SHBUF_TRY(free_now(di, to_free));
  }
  return {};
}

// The free run at `r` and its neighbours link to each other.
Status Instance::check_links(const DomainRec& d, const EntryAux* aux, std::uint32_t r) const {
  const std::uint32_t n = nr_entries_;
  const std::uint32_t prev = aux[r].run_prev;
  const std::uint32_t next = aux[r].run_next;
  const bool prev_ok =
      prev == kNil ? d.free_head == r
                   : prev >= kReservedGrefs && prev < n && prev != r && aux[prev].run_next == r;
  const bool next_ok =
      next == kNil || (next >= kReservedGrefs && next < n && next != r && aux[next].run_prev == r);
  if (!prev_ok || !next_ok) {
    return damaged(table_name(d.domid) + ": the free run at gref " + std::to_string(r) +
                   " links to " + std::to_string(prev) + " and " + std::to_string(next) +
                   ", which do not link back");
  }
  return {};
}

Status Instance::unlink_run(DomainRec& d, EntryAux* aux, std::uint32_t r) {
  SHBUF_TRY(check_links(d, aux, r));
  const std::uint32_t prev = aux[r].run_prev;
  const std::uint32_t next = aux[r].run_next;
  if (prev == kNil) {
    d.free_head = next;
  } else {
    aux[prev].run_next = next;
  }
  if (next != kNil) aux[next].run_prev = prev;
  aux[r].run_next = aux[r].run_prev = 0;
  return {};
}

void Instance::push_run(DomainRec& d, EntryAux* aux, std::uint32_t s, std::uint32_t n) {
  aux[s].run_len = n;
  aux[s + n - 1].run_tail = s + 1;
  aux[s].run_prev = kNil;
  aux[s].run_next = d.free_head;
  if (d.free_head != kNil) aux[d.free_head].run_prev = s;
  d.free_head = s;
  d.free_count += n;
}

// First fit among the first few runs gives one contiguous range nearly
// always; otherwise the request is gathered from several runs, so the cost
// stays O(count) however fragmented the table is. Each run is checked as it
// is reached: inside the table, its tail tag pointing back at it.
Status Instance::alloc(std::uint16_t di, std::uint32_t count, std::vector<Run>& out) {
  DomainRec& d = doms_[di];
  EntryAux* aux = views_[di].aux;
  const std::uint32_t n = nr_entries_;
  auto check_run = [&](std::uint32_t r) -> Status {
    const std::uint32_t len = r >= kReservedGrefs && r < n ? aux[r].run_len : 0;
    if (len == 0 || len > n - r || aux[r + len - 1].run_tail != r + 1 || len > d.free_count) {
      return damaged(table_name(d.domid) + ": its free list leads to gref " + std::to_string(r) +
                     ", which heads no free run (length " + std::to_string(len) + ")");
    }
    return {};
  };
  auto take = [&](std::uint32_t r, std::uint32_t t) -> Status {
    const std::uint32_t len = aux[r].run_len;
    const std::uint32_t end = r + len;
    if (t == len) {
      SHBUF_TRY(unlink_run(d, aux, r));
      aux[r].run_len = 0;
      aux[end - 1].run_tail = 0;
    } else {
      // The remainder takes the run's place in the list.
      SHBUF_TRY(check_links(d, aux, r));
      const std::uint32_t prev = aux[r].run_prev;
      const std::uint32_t next = aux[r].run_next;
      const std::uint32_t nr = r + t;
      aux[nr].run_len = len - t;
      aux[nr].run_prev = prev;
      aux[nr].run_next = next;
      if (prev == kNil) {
        d.free_head = nr;
      } else {
        aux[prev].run_next = nr;
      }
      if (next != kNil) aux[next].run_prev = nr;
      aux[r].run_len = aux[r].run_next = aux[r].run_prev = 0;
      aux[end - 1].run_tail = nr + 1;
    }
    d.hiwater = std::max(d.hiwater, r + t);  // first: free_count >= n - hiwater holds
    d.free_count -= t;
    out.push_back({r, t});
    return {};
  };
  std::uint32_t r = d.free_head;
  for (int scanned = 0; r != kNil && scanned < 64; ++scanned, r = aux[r].run_next) {
    SHBUF_TRY(check_run(r));
    if (aux[r].run_len >= count) return take(r, count);
  }
  while (count > 0) {
    r = d.free_head;
    if (r == kNil) {
      return damaged(table_name(d.domid) + ": its free runs hold fewer entries than its " +
                     "free_count says");
    }
    SHBUF_TRY(check_run(r));
    const std::uint32_t t = std::min(count, aux[r].run_len);
    SHBUF_TRY(take(r, t));
    count -= t;
  }
  return {};
}

// Boundary tags merge the run with its free neighbours in O(1), once each
// neighbour's head and tail agree.
Status Instance::release(std::uint16_t di, Run run) {
  DomainRec& d = doms_[di];
  EntryAux* aux = views_[di].aux;
  const std::uint32_t n = nr_entries_;
  std::uint32_t s = run.start;
  std::uint32_t len = run.len;
  auto bad_tag = [&](std::uint32_t g) {
    return damaged(table_name(d.domid) + ": the boundary tags next to gref " + std::to_string(g) +
                   " describe no free run");
  };
  if (s > kReservedGrefs && aux[s - 1].run_tail != 0) {
    const std::uint32_t ls = aux[s - 1].run_tail - 1;
    if (ls < kReservedGrefs || ls >= s || aux[ls].run_len != s - ls || d.free_count < s - ls) {
      return bad_tag(s - 1);
    }
    const std::uint32_t llen = s - ls;
    SHBUF_TRY(unlink_run(d, aux, ls));
    aux[s - 1].run_tail = 0;
    aux[ls].run_len = 0;
    d.free_count -= llen;
    s = ls;
    len += llen;
  }
  const std::uint32_t e = run.start + run.len;
  if (e < n && aux[e].run_len != 0) {
    const std::uint32_t rlen = aux[e].run_len;
    if (rlen > n - e || aux[e + rlen - 1].run_tail != e + 1 || d.free_count < rlen) {
      return bad_tag(e);
    }
    SHBUF_TRY(unlink_run(d, aux, e));
    aux[e].run_len = 0;
    aux[e + rlen - 1].run_tail = 0;
    d.free_count -= rlen;
    len += rlen;
  }
  push_run(d, aux, s, len);
  return {};
}

// Punching a hole both zeroes the pages for their next user and gives the
// memory back.
Status Instance::zero_pages(int mem_fd, Run run) {
  const off_t off = off_t(run.start) * off_t(kPageSize);
  const off_t len = off_t(run.len) * off_t(kPageSize);
  if (fallocate(mem_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0) return {};
  if (errno != EOPNOTSUPP) return errno_error("cannot zero freed pages");
  static const char zeros[65536] = {};
  for (off_t done = 0; done < len;) {
    const std::size_t chunk = std::size_t(std::min<off_t>(len - done, sizeof zeros));
    const ssize_t put = pwrite(mem_fd, zeros, chunk, off + done);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) return errno_error("cannot zero freed pages");
    done += put;
  }
  return {};
}

Status Instance::free_now(std::uint16_t di, std::vector<std::uint32_t>& grefs) {
  auto v = view(di);
  if (!v.ok()) return std::move(v).error();
  std::sort(grefs.begin(), grefs.end());
  grefs.erase(std::unique(grefs.begin(), grefs.end()), grefs.end());
  std::vector<Run> runs;
  to_runs(grefs.data(), grefs.size(), runs);
  for (const Run& run : runs) {
    // Should zeroing fail, the pages stay out of circulation rather than be
    // handed out dirty.
    if (!zero_pages((*v)->mem_rw.get(), run).ok()) {
      for (std::uint32_t g = run.start; g < run.start + run.len; ++g) {
        (*v)->aux[g].state = kFreeing;
        (*v)->aux[g].owner = kNoSlot;
      }
      continue;
    }
    clear_entries(**v, run);
    SHBUF_TRY(release(di, run));
  }
  return {};
}

bool Instance::unmap_entry(DomView& v, std::uint32_t gref, bool writable) {
  EntryAux& a = v.aux[gref];
  if (a.map_count > 0) a.map_count--;
  if (writable && a.wmap_count > 0) a.wmap_count--;
  if (a.wmap_count == 0) v.ent[gref].flags &= std::uint16_t(~GTF_writing);
  if (a.map_count == 0) v.ent[gref].flags &= std::uint16_t(~GTF_reading);
  return a.map_count == 0 && a.state == kPending;
}

// hold() checked that the free list's head is a record below the hiwater
// mark; a head still in use means the list is damaged. The record is marked
// used only once filled, so a holder dying midway leaves no half-made one.
std::uint32_t Instance::rec_alloc(std::uint32_t gref, std::uint32_t count, std::uint16_t granter,
                                  std::uint16_t mapper, bool writable) {
  std::uint32_t r;
  if (hdr_->rec_free_head != kNil) {
    r = hdr_->rec_free_head;
    const std::uint32_t next = recs_[r].next;
    if (r >= hdr_->rec_hiwater || recs_[r].used != 0 ||
        (next != kNil && next >= hdr_->rec_hiwater)) {
      return kNil;
    }
    hdr_->rec_free_head = next;
  } else if (hdr_->rec_hiwater < max_records_) {
    r = hdr_->rec_hiwater++;
  } else {
    return kNil;
  }
  hdr_->rec_in_use++;
  MapRec& rec = recs_[r];
  const std::uint32_t gen = rec.gen;
  rec = MapRec{};
  rec.gref = gref;
  rec.count = count;
  rec.next = kNil;
  rec.gen = gen;
  rec.granter = granter;
  rec.mapper = mapper;
  rec.writable = writable ? 1 : 0;
  rec.used = 1;
  return r;
}

void Instance::rec_free(std::uint32_t r) {
  MapRec& rec = recs_[r];
  rec.used = 0;
  rec.gen++;
  rec.next = hdr_->rec_free_head;
  hdr_->rec_free_head = r;
  if (hdr_->rec_in_use > 0) hdr_->rec_in_use--;
}

}  // namespace shbuf::sim
