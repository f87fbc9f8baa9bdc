// What the `shbuf bench` commands share: the machine they ran on, JSON
// figures, the report, and running shbuf itself as a helper.
#pragma once

#include <string>
#include <vector>

#include "cli.h"
#include "pv/platform.h"

namespace shbuf::cli {

struct Machine {
  std::string cpu = "unknown CPU";
  long cores = 0;
  std::string kernel;
  long max_map_count = 0;
};

// From /proc/cpuinfo, sysconf, uname and vm.max_map_count.
Machine machine();

// A figure for JSON: null when it is not a number (nothing was measured).
Json figure(double v);

// Prints `json` (when `json_only`) and writes it to `json_file` (when set).
void report(const std::string& json, bool json_only, const std::string& json_file);

// A shbuf command run to its end (bounded, 10 s), its stdout to /dev/null;
// its failure is ours.
void run_self(const std::vector<std::string>& argv);

// The simulator instance at `sim` as domain `self`, for a bench's frontend.
pv::Platform sim_platform(const std::string& sim, DomId self);

}  // namespace shbuf::cli
