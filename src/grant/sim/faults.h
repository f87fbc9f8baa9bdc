// Fault injection of one SimProvider: the SHBUF_SIM_FAULT spec (see sim.h),
// the per-operation call counts, and the faults still waiting to fire.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shbuf/grant/sim.h"

namespace shbuf::sim {

// What counting one call found: its number and its injected error (0: none).
struct CallFault {
  std::uint64_t call = 0;
  int err = 0;
};

class Faults {
 public:
  // Adds the faults of a spec in the SHBUF_SIM_FAULT syntax; refuses a
  // malformed one with EINVAL, naming `source` and the bad item.
  Status parse(std::string_view spec, const std::string& source);

  // Counts a call of `op`; the fault injected for it, if any, fires once.
  CallFault take(SimFaultOp op);
  // The same for an operation that fails at once on a fault: its error,
  // "injected fault: <op> call K fails".
  Status fail_call(SimFaultOp op);
  // The first injected fault among `grefs` of `granter`, as an error saying
  // the gref fails to `verb`.
  Status gref_fault(DomId granter, std::span<const Gref> grefs, const char* verb);

  // The k-th call of `op` from now fails with `error` (EIO when not positive).
  void inject(SimFaultOp op, unsigned k, int error);
  // Every map or copy of `gref` of `granter` fails with `error` (EIO when not
  // positive).
  void inject_gref(DomId granter, Gref gref, int error);
  void clear();

 private:
  struct OpFault {
    SimFaultOp op;
    std::uint64_t at;  // the call number that fails
    int err;
  };
  struct GrefFault {
    DomId granter;
    Gref gref;
    int err;
  };

  // The counts and the two flags are read without the mutex, so that a call
  // pays for no lock while no fault is armed (the usual case). A flag is set
  // before the count that places a fault is read: a call that finds its flag
  // clear was counted before that, and so is not the call the fault is for.
  std::mutex mu_;
  std::atomic<std::uint64_t> calls_[5] = {};
  std::atomic<bool> ops_armed_{false};
  std::atomic<bool> grefs_armed_{false};
  std::vector<OpFault> ops_;      // guarded by mu_
  std::vector<GrefFault> grefs_;  // guarded by mu_
};

}  // namespace shbuf::sim
