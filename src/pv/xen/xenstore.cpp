// Xenstore through libxenstore.
// The header does not declare C linkage for C++.
extern "C" {
#include <xenstore.h>
}

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <memory>

#include "pv/platform.h"
#include "pv/xen/xs_watch.h"

namespace shbuf::pv {
namespace {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

unsigned to_xs(Perm p) {
  switch (p) {
    case Perm::kNone:
      return XS_PERM_NONE;
    case Perm::kRead:
      return XS_PERM_READ;
    case Perm::kWrite:
      return XS_PERM_WRITE;
    case Perm::kBoth:
      return XS_PERM_READ | XS_PERM_WRITE;
  }
  return XS_PERM_NONE;
}

Perm from_xs(unsigned bits) {
  const bool r = (bits & XS_PERM_READ) != 0;
  const bool w = (bits & XS_PERM_WRITE) != 0;
  return r && w ? Perm::kBoth : r ? Perm::kRead : w ? Perm::kWrite : Perm::kNone;
}

class XenXenstore final : public Xenstore {
 public:
  XenXenstore(xs_handle* h, std::unique_ptr<xen::XsWatchConnection> watches, DomId self)
      : h_(h), watches_(std::move(watches)), self_(self) {}
  ~XenXenstore() override { xs_close(h_); }
  XenXenstore(const XenXenstore&) = delete;
  XenXenstore& operator=(const XenXenstore&) = delete;

  Result<std::string> read(Transaction t, const std::string& path) override {
    if (Status s = check_path(path); !s.ok()) return s.error();
    unsigned len = 0;
    std::unique_ptr<char, FreeDeleter> v(static_cast<char*>(xs_read(h_, t, path.c_str(), &len)));
    if (!v) return errno_error("xenstore read " + path);
    return std::string(v.get(), len);
  }

  Status write(Transaction t, const std::string& path, std::string_view value) override {
    if (Status s = check_path(path); !s.ok()) return s;
    if (value.size() > kXenstorePayloadMax) return too_big(path, value.size());
    if (!xs_write(h_, t, path.c_str(), value.data(), unsigned(value.size()))) {
      return errno_error("xenstore write " + path);
    }
    return {};
  }

  Status mkdir(Transaction t, const std::string& path) override {
    if (Status s = check_path(path); !s.ok()) return s;
    if (!xs_mkdir(h_, t, path.c_str())) return errno_error("xenstore mkdir " + path);
    return {};
  }

  Status rm(Transaction t, const std::string& path) override {
    if (Status s = check_path(path); !s.ok()) return s;
    if (!xs_rm(h_, t, path.c_str()) && errno != ENOENT) return errno_error("xenstore rm " + path);
    return {};
  }

  Result<std::vector<std::string>> list(Transaction t, const std::string& path) override {
    if (Status s = check_path(path); !s.ok()) return s.error();
    unsigned n = 0;
    std::unique_ptr<char*, FreeDeleter> d(xs_directory(h_, t, path.c_str(), &n));
    if (!d) return errno_error("xenstore directory " + path);
    std::vector<std::string> out(d.get(), d.get() + n);
    std::sort(out.begin(), out.end());
    return out;
  }

  Result<std::vector<Permission>> permissions(Transaction t, const std::string& path) override {
    if (Status s = check_path(path); !s.ok()) return s.error();
    unsigned n = 0;
    std::unique_ptr<xs_permissions, FreeDeleter> p(xs_get_permissions(h_, t, path.c_str(), &n));
    if (!p) return errno_error("xenstore get permissions " + path);
    std::vector<Permission> out;
    for (unsigned i = 0; i < n; ++i)
      out.push_back({DomId(p.get()[i].id), from_xs(p.get()[i].perms)});
    return out;
  }

  Status set_permissions(Transaction t, const std::string& path,
                         const std::vector<Permission>& perms) override {
    if (Status s = check_path(path); !s.ok()) return s;
    if (perms.empty())
      return make_error(EINVAL, "xenstore permissions of " + path + ": none given");
    std::vector<xs_permissions> xp;
    for (const Permission& p : perms) xp.push_back({p.domid, to_xs(p.perm)});
    if (!xs_set_permissions(h_, t, path.c_str(), xp.data(), unsigned(xp.size()))) {
      return errno_error("xenstore set permissions " + path);
    }
    return {};
  }

  Result<Transaction> begin() override {
    const xs_transaction_t t = xs_transaction_start(h_);
    if (t == XBT_NULL) return errno_error("xenstore transaction start");
    return Transaction(t);
  }

  Status end(Transaction t, bool commit) override {
    if (!xs_transaction_end(h_, t, !commit)) {
      return errno_error(commit ? "xenstore transaction commit" : "xenstore transaction abort");
    }
    return {};
  }

  // Watches travel on a connection of their own (see xs_watch.h), so that
  // requests on h_ never meet an event.
  Status watch(const std::string& path, const std::string& token) override {
    return watches_->watch(path, token);
  }
  Status unwatch(const std::string& path, const std::string& token) override {
    return watches_->unwatch(path, token);
  }
  int fd() const override { return watches_->fd(); }
  Result<std::optional<WatchEvent>> next_event() override { return watches_->next_event(); }

  Result<bool> domain_exists(DomId domid) override {
    errno = 0;
    const bool yes = xs_is_domain_introduced(h_, domid);
    if (!yes && errno != 0 && errno != ENOENT && errno != ESRCH) {
      return errno_error("xenstore is domain " + std::to_string(domid) + " introduced");
    }
    return yes;
  }

  DomId self() const override { return self_; }

 private:
  static Error too_big(const std::string& path, std::size_t n) {
    return make_error(E2BIG, "xenstore value of " + std::to_string(n) + " bytes for " + path +
                                 " (at most " + std::to_string(kXenstorePayloadMax) + ")");
  }

  xs_handle* h_;
  std::unique_ptr<xen::XsWatchConnection> watches_;
  DomId self_;
};

}  // namespace

Result<std::unique_ptr<Xenstore>> open_xen_xenstore() {
  xs_handle* h = xs_open(0);
  if (h == nullptr) return errno_error(ENODEV, "cannot open xenstore");
  auto watches = xen::XsWatchConnection::open();
  if (!watches.ok()) {
    xs_close(h);
    return watches.error();
  }
  // Our own domid, as xenstored tells it.
  unsigned len = 0;
  std::unique_ptr<char, FreeDeleter> id(static_cast<char*>(xs_read(h, XBT_NULL, "domid", &len)));
  DomId self = 0;
  if (id) {
    const auto v = parse_xenstore_u32(std::string_view(id.get(), len));
    if (v && *v < kDomIdFirstReserved) self = DomId(*v);
  }
  return std::unique_ptr<Xenstore>(std::make_unique<XenXenstore>(h, std::move(watches).value(), self));
}

}  // namespace shbuf::pv
