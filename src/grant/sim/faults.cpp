// Fault injection: parsing SHBUF_SIM_FAULT specs and firing the faults they
// name as calls are counted.
#include "grant/sim/faults.h"

#include <algorithm>
#include <cerrno>
#include <utility>

#include "grant/sim/instance.h"
#include "grant/sim/text.h"

namespace shbuf::sim {

namespace {

// Indexed by SimFaultOp.
constexpr const char* kOpNames[] = {"share", "end", "map", "unmap", "copy"};

// Errno names accepted in fault specs, so a test can say "map:2:ENOMEM".
int parse_errno(std::string_view s) {
  static const std::pair<const char*, int> kNames[] = {
      {"EPERM", EPERM},
      {"ENOENT", ENOENT},
      {"ESRCH", ESRCH},
      {"EINTR", EINTR},
      {"EIO", EIO},
      {"ENXIO", ENXIO},
      {"E2BIG", E2BIG},
      {"EBADF", EBADF},
      {"EAGAIN", EAGAIN},
      {"ENOMEM", ENOMEM},
      {"EACCES", EACCES},
      {"EFAULT", EFAULT},
      {"EBUSY", EBUSY},
      {"EEXIST", EEXIST},
      {"ENODEV", ENODEV},
      {"EINVAL", EINVAL},
      {"ENFILE", ENFILE},
      {"EMFILE", EMFILE},
      {"ENOSPC", ENOSPC},
      {"ERANGE", ERANGE},
      {"ENOSYS", ENOSYS},
      {"ENOTSUP", ENOTSUP},
      {"EOVERFLOW", EOVERFLOW},
      {"ETIMEDOUT", ETIMEDOUT},
      {"EPROTO", EPROTO},
      {"ESTALE", ESTALE},
      {"ENOTCONN", ENOTCONN},
      {"EALREADY", EALREADY},
      {"ECONNREFUSED", ECONNREFUSED},
  };
  for (const auto& [name, value] : kNames) {
    if (s == name) return value;
  }
  int n = 0;
  if (parse_uint(s, n) && n > 0 && n < 4096) return n;
  return -1;
}

}  // namespace

Status Faults::parse(std::string_view spec, const std::string& source) {
  for (std::string_view item : split(spec, ',')) {
    if (item.empty()) continue;
    const std::vector<std::string_view> parts = split(item, ':');
    auto bad = [&](const std::string& why) {
      return make_error(EINVAL, source + ": bad fault '" + std::string(item) + "': " + why);
    };
    // Quotes by appending: GCC 12's -Wrestrict warns falsely when a string is prepended.
    auto quoted = [](std::string_view value) { return std::string("'").append(value) + "'"; };
    const std::string_view op = parts[0];
    if (op == "gref") {
      if (parts.size() < 3 || parts.size() > 4) return bad("expected gref:DOMID:GREF[:ERR]");
      unsigned dom = 0;
      Gref gref = 0;
      if (!parse_uint(parts[1], dom) || dom >= kDomIdFirstReserved) {
        return bad(quoted(parts[1]) + " is not a domid (0.." +
                   std::to_string(kDomIdFirstReserved - 1) + ")");
      }
      if (!parse_uint(parts[2], gref)) return bad(quoted(parts[2]) + " is not a gref");
      const int err = parts.size() == 4 ? parse_errno(parts[3]) : EIO;
      if (err < 0) return bad(quoted(parts[3]) + " is not an errno name or number");
      std::lock_guard<std::mutex> g(mu_);
      grefs_.push_back({DomId(dom), gref, err});
      grefs_armed_.store(true);
      continue;
    }
    int which = 0;
    while (which < 5 && op != kOpNames[which]) ++which;
    if (which == 5) {
      std::string why = "unknown operation ";
      why += quoted(op);
      why += " (expected share, end, map, unmap, copy or gref)";
      return bad(why);
    }
    if (parts.size() < 2 || parts.size() > 3) return bad("expected OP:K[:ERR]");
    std::uint64_t k = 0;
    if (!parse_uint(parts[1], k) || k == 0) {
      return bad(quoted(parts[1]) + " is not a call number (1, 2, ...)");
    }
    const int err = parts.size() == 3 ? parse_errno(parts[2]) : EIO;
    if (err < 0) return bad(quoted(parts[2]) + " is not an errno name or number");
    std::lock_guard<std::mutex> g(mu_);
    ops_armed_.store(true);
    ops_.push_back({SimFaultOp(which), k, err});
  }
  return {};
}

CallFault Faults::take(SimFaultOp op) {
  const std::uint64_t call = calls_[int(op)].fetch_add(1) + 1;
  if (!ops_armed_.load()) return {call, 0};
  std::lock_guard<std::mutex> g(mu_);
  for (auto it = ops_.begin(); it != ops_.end(); ++it) {
    if (it->op == op && it->at == call) {
      const int err = it->err;
      ops_.erase(it);
      if (ops_.empty()) ops_armed_.store(false);
      return {call, err};
    }
  }
  return {call, 0};
}

Status Faults::fail_call(SimFaultOp op) {
  const CallFault f = take(op);
  if (f.err == 0) return {};
  return make_error(f.err, std::string("injected fault: ") + kOpNames[int(op)] + " call " +
                               std::to_string(f.call) + " fails");
}

Status Faults::gref_fault(DomId granter, std::span<const Gref> grefs, const char* verb) {
  if (!grefs_armed_.load()) return {};
  std::lock_guard<std::mutex> g(mu_);
  for (const Gref gref : grefs) {
    for (const GrefFault& f : grefs_) {
      if (f.granter == granter && f.gref == gref) {
        return make_error(f.err, "injected fault: gref " + std::to_string(gref) + " of " +
                                     dom_str(granter) + " fails to " + verb);
      }
    }
  }
  return {};
}

void Faults::inject(SimFaultOp op, unsigned k, int error) {
  std::lock_guard<std::mutex> g(mu_);
  ops_armed_.store(true);
  ops_.push_back({op, calls_[int(op)].load() + std::max(k, 1u), error > 0 ? error : EIO});
}

void Faults::inject_gref(DomId granter, Gref gref, int error) {
  std::lock_guard<std::mutex> g(mu_);
  grefs_.push_back({granter, gref, error > 0 ? error : EIO});
  grefs_armed_.store(true);
}

void Faults::clear() {
  std::lock_guard<std::mutex> g(mu_);
  ops_.clear();
  grefs_.clear();
  ops_armed_.store(false);
  grefs_armed_.store(false);
}

}  // namespace shbuf::sim
