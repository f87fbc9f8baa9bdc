// SimProvider's state, shared by the provider's lifetime and status
// (provider.cpp) and its grant table operations (table.cpp).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "grant/sim/faults.h"
#include "grant/sim/instance.h"
#include "shbuf/grant/sim.h"

namespace shbuf {

namespace sim {
struct Granted;
struct MapPlan;
struct Placed;
struct Revoked;
}  // namespace sim

struct SimProvider::Impl {
  std::unique_ptr<sim::Instance> in;
  DomId domid = 0;
  std::uint16_t slot = sim::kNoSlot;
  std::uint16_t dom_index = 0;
  pid_t pid = 0;
  bool grant_copy = true;
  sim::Faults faults;

  // The shared state belongs to the process that opened the provider; a
  // forked copy must not release the parent's grants (EPERM).
  Status owned() const;

  // What an operation on a peer checks before anything else: owned(), a peer
  // that is not a reserved domid (EINVAL, "<action> domid N: ..."), and the
  // fault injected for this call of `op`.
  Status admit(DomId peer, std::string_view action, SimFaultOp op);

  // The instance lock, after reaping dead attachments when due; refuses what
  // Instance::hold() and Instance::check_liveness() refuse.
  Result<sim::Instance::Locked> lock_swept();

  // Second half of freeing entries this attachment marked kFreeing: zeroes
  // the pages without the lock, then hands the entries back to the
  // allocator under it. Entries that could not be zeroed stay kFreeing
  // (retried on detach).
  Status finish_free(std::uint16_t di, int mem_fd, std::vector<std::uint32_t>& grefs);

  // Under the lock: allocates `count` entries granted to `peer` and maps
  // their pages side by side. Refuses a full table (ENOSPC), damage (EUCLEAN),
  // a failed reservation (ENOMEM) and a failed mmap.
  Result<sim::Granted> grant_pages(DomId peer, std::size_t count, Access access,
                                   std::uint32_t limit);
  // Under the lock: revokes a share's grants, marking the unmapped ones
  // kFreeing and the mapped ones pending. Refuses (EUCLEAN) grefs that are
  // not this attachment's granted ones, before changing anything.
  Result<sim::Revoked> revoke(std::span<const Gref> grefs);
  // Under the lock: checks `grefs` of `peer` as Xen does (EINVAL, ENOSPC,
  // EUCLEAN), counts the mappings, records them and maps the pages.
  Result<sim::Placed> place_mapping(DomId peer, std::span<const Gref> grefs,
                                    const sim::MapPlan& plan);
  // Under the lock: drops a mapping's records and map counts, marking the
  // revoked entries it was the last to map kFreeing. Refuses (EUCLEAN)
  // records that are no longer the mapping's, before changing anything.
  Result<sim::Revoked> release_mapping(const Mapping& mapping, std::uint64_t token);
  // The error for pages of `owner`'s that could not be populated: `st`
  // under `what`, or, when a page would have raised SIGBUS (EFAULT), the
  // page file cut short that caused it (EUCLEAN, with the reset hint).
  Error what_went_wrong(DomId owner, const std::string& what, const Status& st, bool rw);
};

}  // namespace shbuf
