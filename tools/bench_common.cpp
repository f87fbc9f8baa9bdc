#include "bench_common.h"

#include <fmt/format.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "child.h"

namespace shbuf::cli {

Machine machine() {
  Machine m;
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      m.cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  m.cores = sysconf(_SC_NPROCESSORS_ONLN);
  utsname u{};
  if (uname(&u) == 0) m.kernel = std::string(u.sysname) + " " + u.release;
  std::ifstream("/proc/sys/vm/max_map_count") >> m.max_map_count;
  return m;
}

Json figure(double v) {
  return std::isfinite(v) ? Json(v) : Json(nullptr);
}

void report(const std::string& json, bool json_only, const std::string& json_file) {
  if (json_only) std::fputs(json.c_str(), stdout);
  if (!json_file.empty()) {
    std::ofstream out(json_file);
    out << json;
    if (!out.flush()) fail(kExitFailure, "cannot write " + json_file);
  }
}

void run_self(const std::vector<std::string>& argv) {
  const UniqueFd null = open_for_child("/dev/null");
  Child c;
  c.spawn(argv, null.get(), -1);
  const int code = c.wait(10000);
  if (code != 0) fail(kExitFailure, fmt::format("shbuf {} exited with {}", argv[1], code));
}

pv::Platform sim_platform(const std::string& sim, DomId self) {
  pv::PlatformOptions po;
  po.name = "sim";
  po.self = self;
  po.sim_path = sim;
  return take(pv::open_platform(po));
}

}  // namespace shbuf::cli
