// One process's view of a sim instance: the mapped state, the domains' tables
// it has opened, and the operations on them that need the instance lock.
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/unique_fd.h"
#include "grant/sim/layout.h"
#include "shbuf/core/provider.h"
#include "shbuf/core/result.h"

namespace shbuf::sim {

struct Run {
  std::uint32_t start;
  std::uint32_t len;
};

// A domain's table and page files as mapped/opened by this process.
struct DomView {
  void* base = nullptr;
  std::size_t len = 0;
  GrantEntryV1* ent = nullptr;
  EntryAux* aux = nullptr;
  UniqueFd mem_rw;
  UniqueFd mem_ro;
  DomId domid = 0;
  // Windows onto the whole page file through mem_rw and mem_ro, never
  // touched themselves: a share or map duplicates the part it needs
  // (mremap), which keeps the window's MADV_DONTFORK. Made on first use,
  // under the lock; null when not made (yet).
  std::byte* window_rw = nullptr;
  std::byte* window_ro = nullptr;
  std::size_t window_len = 0;

  // Unmaps the table and, with `windows`, the windows; the descriptors stay.
  // A forked child has no windows (MADV_DONTFORK): their range may hold its
  // own mappings by now, so it unmaps the table only.
  void unmap(bool windows);
};

// `v`'s window through mem_rw (`rw`) or mem_ro, made when missing; null
// when it cannot be made (the caller maps the file itself). Needs the lock.
std::byte* window(DomView& v, bool rw, std::uint32_t nr_entries);

class Instance {
 public:
  // Maps the instance at `dir`, creating it when `create` is set.
  static Result<std::unique_ptr<Instance>> open(const std::string& dir, bool create,
                                                std::uint32_t max_grant_frames);
  ~Instance();
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  const std::string& dir() const { return dir_; }
  Header& hdr() { return *hdr_; }
  SlotRec& slot(std::uint16_t s) { return slots_[s]; }
  DomainRec& dom(std::uint16_t di) { return doms_[di]; }
  MapRec& rec(std::uint32_t r) { return recs_[r]; }
  // The table size and record count as checked when the instance was opened;
  // hold() refuses the instance should the header change afterwards.
  std::uint32_t nr_entries() const { return nr_entries_; }
  std::uint32_t max_grant_frames() const { return max_grant_frames_; }

  // The error for shared state that cannot be what the simulator wrote
  // (EUCLEAN, naming `what` and saying to reset the instance).
  Error damaged(const std::string& what) const;

  // The instance lock, held until the guard is destroyed.
  class Locked {
   public:
    Locked(Locked&& other) noexcept : in_(std::exchange(other.in_, nullptr)) {}
    Locked& operator=(Locked&&) = delete;
    Locked(const Locked&) = delete;
    Locked& operator=(const Locked&) = delete;
    ~Locked() {
      if (in_ != nullptr) in_->unlock();
    }

   private:
    friend class Instance;
    explicit Locked(Instance& in) : in_(&in) {}
    Instance* in_;
  };

  // Takes the instance lock. Repairs the state when its last holder died
  // with it; refuses with ESTALE when the instance was reset, ETIMEDOUT when
  // it stays held longer than the lock timeout, EUCLEAN when the header is
  // damaged.
  Result<Locked> hold();

  // The same without a guard, for a holder that keeps the lock until it
  // calls unlock() or exits (tests that play a stuck holder).
  Status lock();
  void unlock();

  // Everything below needs the lock.

  // Attaches as `domid`: takes a slot whose liveness byte this process can
  // lock. Returns the slot.
  Result<std::uint16_t> attach(DomId domid, pid_t pid);
  // Detaches our slot and reclaims whatever it still holds.
  Status detach();
  std::uint16_t my_slot() const { return my_slot_; }

  // The index of `domid`'s domain, or -1; EUCLEAN when the domain records
  // are damaged.
  Result<int> domain_index(DomId domid) const;
  // The same, -1 when absent or damaged.
  int find_domain(DomId domid) const;
  // Domain `di`'s table and page files, after checking its record (but for
  // its free runs and counts unless `check_free`).
  Result<DomView*> view(std::uint16_t di, bool check_free = true);
  // Checks that a domain's page file still covers its table, so that mapping
  // it cannot fault.
  Status check_mem(const DomView& v, int fd) const;

  // An entry and its bookkeeping hold values the simulator can have written.
  Status check_entry(const DomView& v, std::uint32_t g) const;

  // Reaps dead attachments when the rate limit allows, or now when `force`.
  Status check_liveness(bool force);

  // Takes `count` free entries of domain `di`, as few runs as it can.
  Status alloc(std::uint16_t di, std::uint32_t count, std::vector<Run>& out);
  // Returns entries [start, start + len), already zeroed, to the free runs.
  Status release(std::uint16_t di, Run run);
  // Zeroes pages, returning their memory.
  static Status zero_pages(int mem_fd, Run run);
  // Zeroes and frees entries that no longer hold anything; `grefs` may be in
  // any order.
  Status free_now(std::uint16_t di, std::vector<std::uint32_t>& grefs);

  // Drops one mapping of an entry; true when it was pending and is now free
  // to reclaim.
  bool unmap_entry(DomView& v, std::uint32_t gref, bool writable);

  // Mapping records.
  std::uint32_t records_free() const { return max_records_ - hdr_->rec_in_use; }
  // A record of these values, or kNil when none is free or the free list is
  // damaged.
  std::uint32_t rec_alloc(std::uint32_t gref, std::uint32_t count, std::uint16_t granter,
                          std::uint16_t mapper, bool writable);
  void rec_free(std::uint32_t r);
  // A used record's fields: a known granter, a run inside its table.
  Status check_rec(std::uint32_t r) const;

  bool slot_alive(std::uint16_t s);

 private:
  Instance() = default;
  static Status create_state(const std::string& dir, std::uint32_t max_grant_frames);
  Status check_header() const;
  Result<std::uint16_t> ensure_domain(DomId domid);
  Result<DomView*> map_view(std::uint16_t di);
  Status reap(const std::vector<bool>& dead, bool recount);
  Status repair();
  Status check_links(const DomainRec& d, const EntryAux* aux, std::uint32_t r) const;
  Status unlink_run(DomainRec& d, EntryAux* aux, std::uint32_t r);
  void push_run(DomainRec& d, EntryAux* aux, std::uint32_t s, std::uint32_t n);

  std::string dir_;
  void* state_ = nullptr;
  Header* hdr_ = nullptr;
  SlotRec* slots_ = nullptr;
  DomainRec* doms_ = nullptr;
  MapRec* recs_ = nullptr;
  UniqueFd state_fd_;
  UniqueFd lives_fd_;
  std::uint16_t my_slot_ = kNoSlot;
  std::uint32_t nr_entries_ = 0;
  std::uint32_t max_grant_frames_ = 0;
  std::uint32_t max_records_ = 0;
  unsigned lock_timeout_ms_ = 0;
  std::uint32_t known_domains_ = 0;  // one past the highest domain index seen
  std::vector<DomView> views_;
  pid_t pid_ = 0;  // the process that opened the instance
};

// This process's id, as getpid() returns it, mostly without a system call.
pid_t self_pid();

// The lock timeout: $SHBUF_SIM_LOCK_TIMEOUT_MS, else kSimLockTimeoutMs.
Result<unsigned> lock_timeout_ms();
// Takes the mutex, waiting at most `ms` milliseconds; returns what pthread_mutex_trylock would.
int lock_within(pthread_mutex_t& mutex, unsigned ms);

// "domain N", as messages name domains.
inline std::string dom_str(DomId d) {
  return "domain " + std::to_string(d);
}

// The EUCLEAN error of a damaged instance at `dir` (see Instance::damaged()).
Error damage_error(const std::string& dir, const std::string& what);

// Returns the entries of `run` to the free state: no grant, no owner, no
// mapping. The caller holds the lock and gives the pages back to the free runs.
void clear_entries(DomView& v, const Run& run);

// Splits grefs into runs of consecutive values, keeping their order, and
// appends them to `out` (a std::vector or an InlineList of Run). Runs let one
// mmap or one punch cover many pages.
template <typename Runs>
void to_runs(const std::uint32_t* grefs, std::size_t n, Runs& out) {
  std::size_t i = 0;
  while (i < n) {
    std::size_t j = i + 1;
    while (j < n && grefs[j] == grefs[j - 1] + 1 && grefs[j] != 0) ++j;
    out.push_back(Run{grefs[i], std::uint32_t(j - i)});
    i = j;
  }
}

}  // namespace shbuf::sim
