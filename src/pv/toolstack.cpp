#include "pv/toolstack.h"

#include <thread>

#include "pv/xenbus.h"

namespace shbuf::pv {
namespace {

// A transaction that met another change is tried again, a bounded number of
// times.
constexpr int kTransactionAttempts = 32;

std::string state_text(XenbusState s) {
  return std::to_string(static_cast<int>(s));
}

// Runs `body` in a transaction until it commits.
template <typename Body>
Status in_transaction(Xenstore& xs, const std::string& what, Body&& body) {
  for (int attempt = 0; attempt < kTransactionAttempts; ++attempt) {
    auto t = xs.begin();
    if (!t.ok()) return t.error();
    if (Status s = body(*t); !s.ok()) {
      (void)xs.end(*t, false);
      return s;
    }
    Status done = xs.end(*t, true);
    if (done.ok()) return {};
    if (done.code() != EAGAIN) return done;
  }
  return make_error(EAGAIN, what + ": xenstore kept changing over " +
                                std::to_string(kTransactionAttempts) + " attempts");
}

Status write_entries(Xenstore& xs, Transaction t, const std::string& dir, const Entries& entries,
                     const std::vector<Permission>* perms) {
  for (const auto& [key, value] : entries) {
    const std::string path = dir + "/" + key;
    SHBUF_TRY(xs.write(t, path, value));
    if (perms != nullptr) SHBUF_TRY(xs.set_permissions(t, path, *perms));
  }
  return {};
}

}  // namespace

std::string backend_path(const std::string& kind, DomId backend, DomId frontend,
                         std::uint32_t devid) {
  return domain_path(backend) + "/backend/" + kind + "/" + std::to_string(frontend) + "/" +
         std::to_string(devid);
}

std::string frontend_path(const std::string& kind, DomId frontend, std::uint32_t devid) {
  return domain_path(frontend) + "/device/" + kind + "/" + std::to_string(devid);
}

Status introduce_domain(Xenstore& xs, DomId domid) {
  const std::string home = domain_path(domid);
  return in_transaction(xs, "introducing " + home, [&](Transaction t) -> Status {
    auto existing = xs.read(t, home);
    if (existing.ok()) return {};
    if (existing.error().code != ENOENT) return existing.error();
    // The domain reads its home; what it writes lives in folders of its own.
    SHBUF_TRY(xs.mkdir(t, home));
    SHBUF_TRY(xs.set_permissions(t, home, {{0, Perm::kNone}, {domid, Perm::kRead}}));
    SHBUF_TRY(xs.write(t, home + "/domid", std::to_string(domid)));
    for (const char* own : {"device", "data", "drivers"}) {
      SHBUF_TRY(xs.mkdir(t, home + "/" + own));
      SHBUF_TRY(xs.set_permissions(t, home + "/" + own, {{domid, Perm::kNone}}));
    }
    return {};
  });
}

Status release_domain(Xenstore& xs, DomId domid) {
  if (domid == 0) return make_error(EINVAL, "domain 0 cannot be released");
  return xs.rm(kNoTransaction, domain_path(domid));
}

Status add_device(Xenstore& xs, const DeviceSpec& spec) {
  if (spec.frontend == spec.backend || spec.frontend >= kDomIdFirstReserved ||
      spec.backend >= kDomIdFirstReserved) {
    return make_error(EINVAL, "a device needs two different domains below " +
                                  std::to_string(kDomIdFirstReserved) + " (frontend " +
                                  std::to_string(spec.frontend) + ", backend " +
                                  std::to_string(spec.backend) + ")");
  }
  SHBUF_TRY(introduce_domain(xs, spec.frontend));
  if (spec.backend != 0) SHBUF_TRY(introduce_domain(xs, spec.backend));
  const std::string be = backend_path(spec.kind, spec.backend, spec.frontend, spec.devid);
  const std::string fe = frontend_path(spec.kind, spec.frontend, spec.devid);
  const std::vector<Permission> fe_perms = {{spec.frontend, Perm::kNone},
                                            {spec.backend, Perm::kRead}};
  const std::vector<Permission> be_perms = {{spec.backend, Perm::kNone},
                                            {spec.frontend, Perm::kRead}};
  return in_transaction(xs, "adding " + fe, [&](Transaction t) -> Status {
    for (const std::string& dir : {be, fe}) {
      auto existing = xs.read(t, dir);
      if (existing.ok()) return make_error(EEXIST, "device " + dir + " exists");
      if (existing.error().code != ENOENT) return existing.error();
    }
    SHBUF_TRY(xs.mkdir(t, fe));
    SHBUF_TRY(xs.set_permissions(t, fe, fe_perms));
    SHBUF_TRY(xs.write(t, fe + "/backend", be));
    SHBUF_TRY(xs.write(t, fe + "/backend-id", std::to_string(spec.backend)));
    SHBUF_TRY(xs.write(t, fe + "/state", state_text(XenbusState::kInitialising)));
    SHBUF_TRY(write_entries(xs, t, fe, spec.front, nullptr));
    SHBUF_TRY(write_entries(xs, t, fe, spec.ro_front, &be_perms));
    SHBUF_TRY(xs.mkdir(t, be));
    SHBUF_TRY(xs.set_permissions(t, be, be_perms));
    SHBUF_TRY(xs.write(t, be + "/frontend", fe));
    SHBUF_TRY(xs.write(t, be + "/frontend-id", std::to_string(spec.frontend)));
    SHBUF_TRY(xs.write(t, be + "/online", "1"));
    SHBUF_TRY(xs.write(t, be + "/state", state_text(XenbusState::kInitialising)));
    return write_entries(xs, t, be, spec.back, nullptr);
  });
}

Status remove_device(Xenstore& xs, const std::string& kind, DomId backend, DomId frontend,
                     std::uint32_t devid, std::chrono::milliseconds wait) {
  const std::string be = backend_path(kind, backend, frontend, devid);
  const std::string fe = frontend_path(kind, frontend, devid);
  auto state = xs.read(kNoTransaction, be + "/state");
  if (!state.ok()) {
    if (state.error().code == ENOENT) {
      return make_error(ENOENT, "no " + kind + " device " + std::to_string(devid) + " of domain " +
                                    std::to_string(frontend) + " at " + be);
    }
    return state.error();
  }
  // As libxl: only a Connected backend is asked to close and waited for.
  if (parse_xenbus_state(*state) != XenbusState::kConnected) {
    SHBUF_TRY(xs.rm(kNoTransaction, fe));
    return xs.rm(kNoTransaction, be);
  }
  SHBUF_TRY(xs.write(kNoTransaction, be + "/state", state_text(XenbusState::kClosing)));
  SHBUF_TRY(xs.rm(kNoTransaction, fe));
  // The backend answers Closing with Closed once it has let go.
  const auto deadline = std::chrono::steady_clock::now() + wait;
  bool closed = false;
  while (!closed) {
    auto now = xs.read(kNoTransaction, be + "/state");
    closed = !now.ok() || parse_xenbus_state(*now) == XenbusState::kClosed;
    if (closed || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  SHBUF_TRY(xs.rm(kNoTransaction, be));
  if (!closed) {
    return make_error(ETIMEDOUT, "the backend of " + be + " did not close within " +
                                     std::to_string(wait.count()) + " ms (removed all the same)");
  }
  return {};
}

Result<std::vector<std::uint32_t>> list_devices(Xenstore& xs, const std::string& kind,
                                                DomId backend, DomId frontend) {
  const std::string dir =
      domain_path(backend) + "/backend/" + kind + "/" + std::to_string(frontend);
  auto names = xs.list(kNoTransaction, dir);
  if (!names.ok()) {
    if (names.error().code == ENOENT) return std::vector<std::uint32_t>();
    return names.error();
  }
  std::vector<std::uint32_t> out;
  for (const std::string& n : *names) {
    if (const auto v = parse_xenstore_u32(n)) out.push_back(*v);
  }
  return out;
}

}  // namespace shbuf::pv
