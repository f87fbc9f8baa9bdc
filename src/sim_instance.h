// One process's view of a sim instance: the mapped state, the domains' tables
// it has opened, and the operations on them that need the instance lock.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shbuf/provider.h"
#include "shbuf/result.h"
#include "sim_layout.h"

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
  int mem_rw = -1;
  int mem_ro = -1;
  DomId domid = 0;
};

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
  std::uint32_t nr_entries() const { return hdr_->nr_entries; }

  // The instance lock. Repairs the state when its last holder died with it;
  // ESTALE when the instance was reset.
  Status lock();
  void unlock();

  // Everything below needs the lock.

  // Attaches as `domid`: takes a slot whose liveness byte this process can
  // lock. Returns the slot.
  Result<std::uint16_t> attach(DomId domid, pid_t pid);
  // Detaches our slot and reclaims whatever it still holds.
  void detach();
  std::uint16_t my_slot() const { return my_slot_; }

  int find_domain(DomId domid) const;
  Result<DomView*> view(std::uint16_t di);

  // Reaps dead attachments when the rate limit allows, or now when `force`.
  void check_liveness(bool force);

  // Takes `count` free entries of domain `di`, as few runs as it can.
  void alloc(std::uint16_t di, std::uint32_t count, std::vector<Run>& out);
  // Returns entries [start, start + len), already zeroed, to the free runs.
  void release(std::uint16_t di, Run run);
  // Zeroes pages, returning their memory.
  static Status zero_pages(int mem_fd, Run run);
  // Zeroes and frees entries that no longer hold anything; `grefs` may be in
  // any order.
  void free_now(std::uint16_t di, std::vector<std::uint32_t>& grefs);

  // Drops one mapping of an entry; true when it was pending and is now free
  // to reclaim.
  bool unmap_entry(DomView& v, std::uint32_t gref, bool writable);

  // Mapping records.
  std::uint32_t records_free() const { return hdr_->max_records - hdr_->rec_in_use; }
  std::uint32_t rec_alloc();
  void rec_free(std::uint32_t r);

  bool slot_alive(std::uint16_t s);

 private:
  Instance() = default;
  static Status create_state(const std::string& dir, std::uint32_t max_grant_frames);
  Result<std::uint16_t> ensure_domain(DomId domid);
  void reap(const std::vector<bool>& dead, bool recount);
  void repair();
  void unlink_run(DomainRec& d, EntryAux* aux, std::uint32_t r);
  void push_run(DomainRec& d, EntryAux* aux, std::uint32_t s, std::uint32_t n);

  std::string dir_;
  void* state_ = nullptr;
  Header* hdr_ = nullptr;
  SlotRec* slots_ = nullptr;
  DomainRec* doms_ = nullptr;
  MapRec* recs_ = nullptr;
  int state_fd_ = -1;
  int lives_fd_ = -1;
  std::uint16_t my_slot_ = kNoSlot;
  std::vector<DomView> views_;
};

// "what: strerror(e)" as an Error with code e.
Error sys_error(int e, const std::string& what);

// Splits grefs into runs of consecutive values, keeping their order.
void to_runs(const std::uint32_t* grefs, std::size_t n, std::vector<Run>& out);

}  // namespace shbuf::sim
