#include "sim_instance.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace shbuf::sim {

namespace {

constexpr std::uint64_t kCheckIntervalNs = 250'000'000;

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::uint64_t(ts.tv_sec) * 1'000'000'000u + std::uint64_t(ts.tv_nsec);
}

std::string dom_file(const std::string& dir, DomId domid, const char* ext) {
  return dir + "/dom" + std::to_string(domid) + ext;
}

// Instance-wide random id, so two instances are never confused.
std::uint64_t random_id() {
  std::random_device rd;
  return (std::uint64_t(rd()) << 32) ^ rd() ^ now_ns();
}

}  // namespace

Error sys_error(int e, const std::string& what) {
  char buf[128];
  return make_error(e, what + ": " + strerror_r(e, buf, sizeof buf));
}

// Runs let one mmap or one punch cover many pages.
void to_runs(const std::uint32_t* grefs, std::size_t n, std::vector<Run>& out) {
  std::size_t i = 0;
  while (i < n) {
    std::size_t j = i + 1;
    while (j < n && grefs[j] == grefs[j - 1] + 1 && grefs[j] != 0) ++j;
    out.push_back({grefs[i], std::uint32_t(j - i)});
    i = j;
  }
}

// A fully initialised state file is linked into place atomically, so a
// process never sees a half-made one and two creators cannot both win.
Status Instance::create_state(const std::string& dir, std::uint32_t max_grant_frames) {
  const std::string tmp = dir + "/state.tmp." + std::to_string(getpid()) + "." +
                          std::to_string(random_id() & 0xffffffffu);
  const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return sys_error(errno, "cannot create " + tmp);
  Status st;
  void* p = MAP_FAILED;
  if (ftruncate(fd, off_t(kStateSize)) != 0) {
    st = sys_error(errno, "cannot size " + tmp);
  } else {
    p = mmap(nullptr, kStateSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) st = sys_error(errno, "cannot map " + tmp);
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
    if (rc != 0) st = sys_error(rc, "cannot initialise the lock in " + tmp);
    std::memcpy(h->magic, kMagic, sizeof kMagic);
    munmap(p, kStateSize);
  }
  if (st.ok() && link(tmp.c_str(), (dir + "/state").c_str()) != 0 && errno != EEXIST &&
      errno != ENOENT) {
    st = sys_error(errno, "cannot create " + dir + "/state");
  }
  unlink(tmp.c_str());
  close(fd);
  return st;
}

Result<std::unique_ptr<Instance>> Instance::open(const std::string& dir, bool create,
                                                 std::uint32_t max_grant_frames) {
  const std::string state_path = dir + "/state";
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (create && mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return sys_error(errno, "cannot create the simulator directory " + dir);
    }
    const int fd = ::open(state_path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      const int e = errno;
      if (e == ENOENT && create) {
        Status st = create_state(dir, max_grant_frames);
        if (!st.ok() && st.code() != ENOENT) return st.error();
        continue;
      }
      if (e == ENOENT) return make_error(ENOENT, "no simulator instance at " + dir);
      return sys_error(e, "cannot open " + state_path);
    }
    std::unique_ptr<Instance> in(new Instance);
    in->dir_ = dir;
    in->state_fd_ = fd;
    struct stat sb {};
    if (fstat(fd, &sb) != 0) return sys_error(errno, "cannot stat " + state_path);
    if (sb.st_size < off_t(kStateSize)) {
      return make_error(EPROTO, state_path + " is not a shbuf sim state (size " +
                                    std::to_string(sb.st_size) + ", expected " +
                                    std::to_string(kStateSize) + "); run 'shbuf sim reset --sim " +
                                    dir + "'");
    }
    void* p = mmap(nullptr, kStateSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return sys_error(errno, "cannot map " + state_path);
    in->state_ = p;
    in->hdr_ = static_cast<Header*>(p);
    in->slots_ = reinterpret_cast<SlotRec*>(static_cast<char*>(p) + kSlotsOffset);
    in->doms_ = reinterpret_cast<DomainRec*>(static_cast<char*>(p) + kDomainsOffset);
    in->recs_ = reinterpret_cast<MapRec*>(static_cast<char*>(p) + kRecordsOffset);
    const Header& h = *in->hdr_;
    if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0 || h.version != kVersion ||
        h.page_size != kPageSize || h.max_slots != kMaxSlots || h.max_domains != kMaxDomains ||
        h.max_records != kMaxRecords || h.max_grant_frames == 0 ||
        h.max_grant_frames > kMaxGrantFramesLimit ||
        h.nr_entries != h.max_grant_frames * kEntriesPerFrame) {
      return make_error(EPROTO, state_path +
                                    " is not a shbuf sim state of this version; run 'shbuf sim "
                                    "reset --sim " +
                                    dir + "'");
    }
    in->views_.resize(kMaxDomains);
    const std::string lives = dir + "/lives";
    in->lives_fd_ = ::open(lives.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (in->lives_fd_ < 0) return sys_error(errno, "cannot open " + lives);
    Status st = in->lock();
    if (!st.ok()) {
      if (st.code() == ESTALE) continue;  // reset under our feet: open the new one
      return st.error();
    }
    in->unlock();
    return in;
  }
  return make_error(EAGAIN, "the simulator instance at " + dir + " keeps being reset");
}

Instance::~Instance() {
  for (DomView& v : views_) {
    if (v.base != nullptr) munmap(v.base, v.len);
    if (v.mem_rw >= 0) close(v.mem_rw);
    if (v.mem_ro >= 0) close(v.mem_ro);
  }
  if (state_ != nullptr) munmap(state_, kStateSize);
  if (state_fd_ >= 0) close(state_fd_);
  // Closing the last descriptor of our open file description drops our
  // liveness lock: from now on our slot reads as dead.
  if (lives_fd_ >= 0) close(lives_fd_);
}

// A holder that died mid-operation may have left the allocator or the counts
// half-updated; repair() rebuilds them from the entries and records.
Status Instance::lock() {
  const int rc = pthread_mutex_lock(&hdr_->mutex);
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(&hdr_->mutex);
    if (hdr_->reset == 0) repair();
  } else if (rc != 0) {
    return make_error(EIO, "the simulator state at " + dir_ +
                               " cannot be recovered; run 'shbuf sim reset --sim " + dir_ + "'");
  }
  if (hdr_->reset != 0) {
    pthread_mutex_unlock(&hdr_->mutex);
    return make_error(ESTALE,
                      "the simulator instance at " + dir_ + " was reset; open the provider again");
  }
  return {};
}

void Instance::unlock() {
  pthread_mutex_unlock(&hdr_->mutex);
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
  if (fcntl(lives_fd_, F_OFD_GETLK, &fl) != 0) return true;  // cannot tell: keep it
  return fl.l_type != F_UNLCK;
}

Result<std::uint16_t> Instance::attach(DomId domid, pid_t pid) {
  check_liveness(true);
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
    if (fcntl(lives_fd_, F_OFD_SETLK, &fl) != 0) continue;
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

void Instance::detach() {
  if (my_slot_ == kNoSlot) return;
  std::vector<bool> dead(kMaxSlots);
  dead[my_slot_] = true;
  reap(dead, false);
  my_slot_ = kNoSlot;
}

int Instance::find_domain(DomId domid) const {
  for (std::uint32_t i = 0; i < hdr_->nr_domains; ++i) {
    if (doms_[i].domid == domid && doms_[i].ready) return int(i);
  }
  return -1;
}

// Domains are created under the lock and published by bumping nr_domains
// last, so a crash mid-way leaves nothing half-visible.
Result<std::uint16_t> Instance::ensure_domain(DomId domid) {
  const int found = find_domain(domid);
  if (found >= 0) return std::uint16_t(found);
  if (hdr_->nr_domains >= kMaxDomains) {
    return make_error(ENOSPC, "the simulator at " + dir_ + " has " + std::to_string(kMaxDomains) +
                                  " domains already; run 'shbuf sim reset' to start afresh");
  }
  const std::uint32_t n = hdr_->nr_entries;
  const std::uint16_t di = std::uint16_t(hdr_->nr_domains);
  const std::string gnt = dom_file(dir_, domid, ".gnt");
  const std::string mem = dom_file(dir_, domid, ".mem");
  for (const std::string& path : {gnt, mem}) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return sys_error(errno, "cannot create " + path);
    const off_t size = off_t(path == gnt ? table_size(n) : std::size_t{n} * kPageSize);
    const int rc = ftruncate(fd, size);
    const int e = errno;
    close(fd);
    if (rc != 0) return sys_error(e, "cannot size " + path);
  }
  DomainRec& d = doms_[di];
  std::memset(&d, 0, sizeof d);
  d.domid = domid;
  d.ready = 1;  // view() needs it; not visible until nr_domains moves
  DomView& v = views_[di];
  if (v.base != nullptr) {  // a stale view from a failed creation
    munmap(v.base, v.len);
    close(v.mem_rw);
    close(v.mem_ro);
    v = DomView{};
  }
  auto view_or = view(di);
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

Result<DomView*> Instance::view(std::uint16_t di) {
  DomView& v = views_[di];
  const DomId domid = doms_[di].domid;
  if (v.base != nullptr && v.domid == domid) return &v;
  if (v.base != nullptr) {  // the index was reused after a failed creation
    munmap(v.base, v.len);
    close(v.mem_rw);
    close(v.mem_ro);
    v = DomView{};
  }
  const std::string gnt = dom_file(dir_, domid, ".gnt");
  const std::string mem = dom_file(dir_, domid, ".mem");
  const std::size_t len = table_size(hdr_->nr_entries);
  const int fd = ::open(gnt.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return sys_error(errno, "cannot open " + gnt);
  struct stat sb {};
  if (fstat(fd, &sb) != 0 || sb.st_size != off_t(len)) {
    close(fd);
    return make_error(EPROTO,
                      gnt + " has the wrong size; run 'shbuf sim reset --sim " + dir_ + "'");
  }
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int e = errno;
  close(fd);
  if (p == MAP_FAILED) return sys_error(e, "cannot map " + gnt);
  const int rw = ::open(mem.c_str(), O_RDWR | O_CLOEXEC);
  const int ro = rw < 0 ? -1 : ::open(mem.c_str(), O_RDONLY | O_CLOEXEC);
  if (rw < 0 || ro < 0) {
    const int e2 = errno;
    if (rw >= 0) close(rw);
    munmap(p, len);
    return sys_error(e2, "cannot open " + mem);
  }
  v.base = p;
  v.len = len;
  v.ent = static_cast<GrantEntryV1*>(p);
  v.aux = reinterpret_cast<EntryAux*>(static_cast<char*>(p) +
                                      std::size_t{hdr_->nr_entries} * sizeof(GrantEntryV1));
  v.mem_rw = rw;
  v.mem_ro = ro;
  v.domid = domid;
  return &v;
}

void Instance::check_liveness(bool force) {
  const std::uint64_t now = now_ns();
  if (!force && now < hdr_->next_check_ns) return;
  hdr_->next_check_ns = now + kCheckIntervalNs;
  std::vector<bool> dead;
  for (std::uint32_t s = 0; s < hdr_->slot_hiwater; ++s) {
    if (slots_[s].used == 0 || slot_alive(std::uint16_t(s))) continue;
    if (dead.empty()) dead.resize(kMaxSlots);
    dead[s] = true;
  }
  if (!dead.empty()) reap(dead, false);
}

// Frees what dead attachments held: their mapping records (dropping map
// counts, which may complete pending revocations) and their grants (freed,
// or made pending while a live peer still maps them). With `recount` the map
// counts are rebuilt afterwards by repair(), so records are just dropped.
void Instance::reap(const std::vector<bool>& dead, bool recount) {
  std::vector<std::vector<std::uint32_t>> to_free(hdr_->nr_domains);
  for (std::uint32_t r = 0; r < hdr_->rec_hiwater; ++r) {
    MapRec& rec = recs_[r];
    if (rec.used == 0 || rec.mapper >= kMaxSlots || !dead[rec.mapper]) continue;
    if (!recount && rec.granter < hdr_->nr_domains) {
      auto v = view(rec.granter);
      if (v.ok()) {
        for (std::uint32_t i = 0; i < rec.count; ++i) {
          const std::uint32_t g = rec.gref + i;
          if (g >= hdr_->nr_entries) break;
          if (unmap_entry(**v, g, rec.writable != 0)) {
            EntryAux& a = (*v)->aux[g];
            if (a.owner < kMaxSlots && slots_[a.owner].pending > 0) slots_[a.owner].pending--;
            a.owner = kNoSlot;
            to_free[rec.granter].push_back(g);
          }
        }
      }
    }
    rec_free(r);
  }
  for (std::uint16_t di = 0; di < hdr_->nr_domains; ++di) {
    auto v = view(di);
    if (!v.ok()) continue;
    GrantEntryV1* ent = (*v)->ent;
    EntryAux* aux = (*v)->aux;
    const std::uint32_t hi = std::min(doms_[di].hiwater, hdr_->nr_entries);
    for (std::uint32_t g = kReservedGrefs; g < hi; ++g) {
      EntryAux& a = aux[g];
      if (a.owner >= kMaxSlots || !dead[a.owner]) continue;
      if (a.state == kGranted && a.map_count > 0) {
        ent[g].flags &= std::uint16_t(~GTF_permit_access);
        a.state = kPending;
        a.owner = kNoSlot;
      } else if (a.state == kGranted || a.state == kFreeing) {
        to_free[di].push_back(g);
      } else {
        a.owner = kNoSlot;
      }
    }
  }
  for (std::uint16_t di = 0; di < to_free.size(); ++di) {
    if (!to_free[di].empty()) free_now(di, to_free[di]);
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
}

// After a lock holder died mid-operation: reap the dead, then rebuild the
// record free list, map counts, flags, free runs and pending counts from
// what the entries and records say.
void Instance::repair() {
  std::vector<bool> dead(kMaxSlots);
  for (std::uint32_t s = 0; s < hdr_->slot_hiwater; ++s) {
    if (slots_[s].used != 0 && !slot_alive(std::uint16_t(s))) dead[s] = true;
  }
  reap(dead, true);

  hdr_->rec_free_head = kNil;
  hdr_->rec_in_use = 0;
  for (std::uint32_t r = hdr_->rec_hiwater; r-- > 0;) {
    if (recs_[r].used != 0) {
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

  const std::uint32_t n = hdr_->nr_entries;
  for (std::uint16_t di = 0; di < hdr_->nr_domains; ++di) {
    auto v = view(di);
    if (!v.ok()) continue;
    GrantEntryV1* ent = (*v)->ent;
    EntryAux* aux = (*v)->aux;
    for (std::uint32_t g = kReservedGrefs; g < n; ++g) {
      aux[g].map_count = aux[g].wmap_count = 0;
      aux[g].run_len = aux[g].run_next = aux[g].run_prev = aux[g].run_tail = 0;
    }
    for (std::uint32_t r = 0; r < hdr_->rec_hiwater; ++r) {
      const MapRec& rec = recs_[r];
      if (rec.used == 0 || rec.granter != di) continue;
      for (std::uint32_t i = 0; i < rec.count && rec.gref + i < n; ++i) {
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
    if (!to_free.empty()) free_now(di, to_free);
  }
}

void Instance::unlink_run(DomainRec& d, EntryAux* aux, std::uint32_t r) {
  const std::uint32_t prev = aux[r].run_prev;
  const std::uint32_t next = aux[r].run_next;
  if (prev == kNil) {
    d.free_head = next;
  } else {
    aux[prev].run_next = next;
  }
  if (next != kNil) aux[next].run_prev = prev;
  aux[r].run_next = aux[r].run_prev = 0;
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
// stays O(count) however fragmented the table is.
void Instance::alloc(std::uint16_t di, std::uint32_t count, std::vector<Run>& out) {
  DomainRec& d = doms_[di];
  EntryAux* aux = views_[di].aux;
  auto take = [&](std::uint32_t r, std::uint32_t t) {
    const std::uint32_t len = aux[r].run_len;
    const std::uint32_t end = r + len;
    if (t == len) {
      unlink_run(d, aux, r);
      aux[r].run_len = 0;
      aux[end - 1].run_tail = 0;
    } else {
      const std::uint32_t nr = r + t;
      aux[nr].run_len = len - t;
      aux[nr].run_prev = aux[r].run_prev;
      aux[nr].run_next = aux[r].run_next;
      if (aux[r].run_prev == kNil) {
        d.free_head = nr;
      } else {
        aux[aux[r].run_prev].run_next = nr;
      }
      if (aux[r].run_next != kNil) aux[aux[r].run_next].run_prev = nr;
      aux[r].run_len = aux[r].run_next = aux[r].run_prev = 0;
      aux[end - 1].run_tail = nr + 1;
    }
    d.free_count -= t;
    d.hiwater = std::max(d.hiwater, r + t);
    out.push_back({r, t});
  };
  std::uint32_t r = d.free_head;
  for (int scanned = 0; r != kNil && scanned < 64; ++scanned, r = aux[r].run_next) {
    if (aux[r].run_len >= count) {
      take(r, count);
      return;
    }
  }
  while (count > 0 && d.free_head != kNil) {
    const std::uint32_t t = std::min(count, aux[d.free_head].run_len);
    take(d.free_head, t);
    count -= t;
  }
}

// Boundary tags merge the run with its free neighbours in O(1).
void Instance::release(std::uint16_t di, Run run) {
  DomainRec& d = doms_[di];
  EntryAux* aux = views_[di].aux;
  std::uint32_t s = run.start;
  std::uint32_t n = run.len;
  if (s > kReservedGrefs && aux[s - 1].run_tail != 0) {
    const std::uint32_t ls = aux[s - 1].run_tail - 1;
    const std::uint32_t llen = aux[ls].run_len;
    unlink_run(d, aux, ls);
    aux[s - 1].run_tail = 0;
    aux[ls].run_len = 0;
    d.free_count -= llen;
    s = ls;
    n += llen;
  }
  const std::uint32_t e = run.start + run.len;
  if (e < hdr_->nr_entries && aux[e].run_len != 0) {
    const std::uint32_t rlen = aux[e].run_len;
    unlink_run(d, aux, e);
    aux[e].run_len = 0;
    aux[e + rlen - 1].run_tail = 0;
    d.free_count -= rlen;
    n += rlen;
  }
  push_run(d, aux, s, n);
}

// Punching a hole both zeroes the pages for their next user and gives the
// memory back.
Status Instance::zero_pages(int mem_fd, Run run) {
  const off_t off = off_t(run.start) * off_t(kPageSize);
  const off_t len = off_t(run.len) * off_t(kPageSize);
  if (fallocate(mem_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0) return {};
  if (errno != EOPNOTSUPP) return sys_error(errno, "cannot zero freed pages");
  static const char zeros[65536] = {};
  for (off_t done = 0; done < len;) {
    const std::size_t chunk = std::size_t(std::min<off_t>(len - done, sizeof zeros));
    const ssize_t put = pwrite(mem_fd, zeros, chunk, off + done);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) return sys_error(errno, "cannot zero freed pages");
    done += put;
  }
  return {};
}

void Instance::free_now(std::uint16_t di, std::vector<std::uint32_t>& grefs) {
  auto v = view(di);
  if (!v.ok()) return;
  std::sort(grefs.begin(), grefs.end());
  grefs.erase(std::unique(grefs.begin(), grefs.end()), grefs.end());
  std::vector<Run> runs;
  to_runs(grefs.data(), grefs.size(), runs);
  for (const Run& run : runs) {
    // Should zeroing fail, the pages stay out of circulation rather than be
    // handed out dirty.
    if (!zero_pages((*v)->mem_rw, run).ok()) {
      for (std::uint32_t g = run.start; g < run.start + run.len; ++g) {
        (*v)->aux[g].state = kFreeing;
        (*v)->aux[g].owner = kNoSlot;
      }
      continue;
    }
    for (std::uint32_t g = run.start; g < run.start + run.len; ++g) {
      (*v)->ent[g] = GrantEntryV1{};
      EntryAux& a = (*v)->aux[g];
      a.state = kFree;
      a.owner = kNoSlot;
      a.map_count = a.wmap_count = 0;
    }
    release(di, run);
  }
}

bool Instance::unmap_entry(DomView& v, std::uint32_t gref, bool writable) {
  EntryAux& a = v.aux[gref];
  if (a.map_count > 0) a.map_count--;
  if (writable && a.wmap_count > 0) a.wmap_count--;
  if (a.wmap_count == 0) v.ent[gref].flags &= std::uint16_t(~GTF_writing);
  if (a.map_count == 0) v.ent[gref].flags &= std::uint16_t(~GTF_reading);
  return a.map_count == 0 && a.state == kPending;
}

std::uint32_t Instance::rec_alloc() {
  std::uint32_t r;
  if (hdr_->rec_free_head != kNil) {
    r = hdr_->rec_free_head;
    hdr_->rec_free_head = recs_[r].next;
  } else if (hdr_->rec_hiwater < hdr_->max_records) {
    r = hdr_->rec_hiwater++;
  } else {
    return kNil;
  }
  hdr_->rec_in_use++;
  MapRec& rec = recs_[r];
  const std::uint32_t gen = rec.gen;
  rec = MapRec{};
  rec.gen = gen;
  rec.used = 1;
  rec.next = kNil;
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
