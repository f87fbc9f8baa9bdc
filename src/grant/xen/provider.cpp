// The xen grant provider over libxengntshr/libxengnttab (see shbuf/grant/xen.h).
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>  // before xs_wire.h, which uses uint32_t without including it

#include <xen/grant_table.h>
#include <xen/io/xs_wire.h>
// The libxen headers do not declare C linkage themselves.
extern "C" {
#include <xengnttab.h>
}

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdarg>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/unique_fd.h"
#include "grant/xen/quiet_logger.h"
#include "shbuf/grant/xen.h"

namespace shbuf {
namespace {

constexpr const char* kGntalloc = "/dev/xen/gntalloc";
constexpr const char* kGntdev = "/dev/xen/gntdev";
constexpr const char* kXenbus = "/dev/xen/xenbus";
constexpr const char* kGntallocLimit = "/sys/module/xen_gntalloc/parameters/limit";
constexpr const char* kGntdevLimit = "/sys/module/xen_gntdev/parameters/limit";

// Module parameters are the only place the devices' limits are visible.
std::optional<std::uint64_t> read_number(const char* path) {
  std::ifstream in(path);
  std::uint64_t v = 0;
  if (!(in >> v)) return std::nullopt;
  return v;
}

// Parses a domain id given by the user; DOMID_SELF and above are not real ids.
std::optional<DomId> parse_domid(std::string_view text) {
  unsigned v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v >= kDomIdFirstReserved)
    return std::nullopt;
  return static_cast<DomId>(v);
}

// dom0 is the only domain with control_d; it has no `domid` key before the
// toolstack runs, so this is checked first.
bool is_control_domain() {
  std::ifstream in("/proc/xen/capabilities");
  std::string caps;
  std::getline(in, caps);
  return caps.find("control_d") != std::string::npos;
}

// Reads xenstore's relative key `domid` the way libxenstore does, through the
// kernel's xenbus device, but with a timeout: without a xenstore daemon the
// answer never comes.
Result<DomId> read_xenstore_domid() {
  const UniqueFd owned(::open(kXenbus, O_RDWR | O_CLOEXEC));
  const int fd = owned.get();
  if (fd < 0) {
    const int e = errno;
    return errno_error(e, std::string("cannot open ") + kXenbus);
  }
  static constexpr char kKey[] = "domid";
  xsd_sockmsg request{};
  request.type = XS_READ;
  request.req_id = 1;
  request.len = sizeof(kKey);
  char out[sizeof(request) + sizeof(kKey)];
  std::memcpy(out, &request, sizeof(request));
  std::memcpy(out + sizeof(request), kKey, sizeof(kKey));
  if (::write(fd, out, sizeof(out)) != static_cast<ssize_t>(sizeof(out))) {
    const int e = errno;
    return errno_error(e, std::string("cannot write a request to ") + kXenbus);
  }

  char in[sizeof(xsd_sockmsg) + 64];
  std::size_t got = 0;
  xsd_sockmsg reply{};
  while (true) {
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, 2000);
    if (ready == 0) {
      return make_error(ETIMEDOUT, std::string("xenstore did not answer a read of 'domid' on ") +
                                       kXenbus + " within 2 s (is xenstored running?)");
    }
    if (ready < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      return errno_error(e, std::string("poll on ") + kXenbus);
    }
    const ssize_t n = ::read(fd, in + got, sizeof(in) - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      return errno_error(e, std::string("read from ") + kXenbus);
    }
    if (n == 0) return make_error(EIO, std::string(kXenbus) + " closed before xenstore answered");
    got += static_cast<std::size_t>(n);
    if (got < sizeof(reply)) continue;
    std::memcpy(&reply, in, sizeof(reply));
    if (reply.len > sizeof(in) - sizeof(reply)) {
      return make_error(EIO, "xenstore's answer for 'domid' is " + std::to_string(reply.len) +
                                 " bytes long, too long for a domain id");
    }
    if (got >= sizeof(reply) + reply.len) break;
  }
  std::string value(in + sizeof(reply), reply.len);
  while (!value.empty() && value.back() == '\0') value.pop_back();
  if (reply.type == XS_ERROR) {
    return make_error(ENOENT, "xenstore refused to read 'domid': " + value);
  }
  auto id = parse_domid(value);
  if (reply.type != XS_READ || !id) {
    return make_error(EIO, "xenstore's 'domid' is not a domain id: '" + value + "'");
  }
  return *id;
}

// Finds the domain we run in: the options, then the environment, then what
// Xen tells us (see XenOptions::self).
Result<DomId> own_domid(const XenOptions& options) {
  if (options.self) {
    if (*options.self >= kDomIdFirstReserved) {
      return make_error(EINVAL, "XenOptions::self " + std::to_string(*options.self) +
                                    " is not a domain id (must be below " +
                                    std::to_string(kDomIdFirstReserved) + ")");
    }
    return *options.self;
  }
  if (const char* env = std::getenv("SHBUF_XEN_DOMID"); env != nullptr && *env != '\0') {
    auto id = parse_domid(env);
    if (!id) {
      return make_error(EINVAL, std::string("SHBUF_XEN_DOMID='") + env +
                                    "' is not a domain id (a number below " +
                                    std::to_string(kDomIdFirstReserved) + ")");
    }
    return *id;
  }
  if (is_control_domain()) return DomId{0};
  auto id = read_xenstore_domid();
  if (!id.ok()) {
    return make_error(ENXIO,
                      "cannot tell which domain this is: /proc/xen/capabilities does not "
                      "say control_d and " +
                          id.error().message + "; set SHBUF_XEN_DOMID or XenOptions::self");
  }
  return id;
}

// Says why a device cannot be opened in terms of what to do about it.
Error open_error(const char* device, const char* module, int e) {
  if (e == ENOENT || e == ENODEV || e == ENXIO) {
    return make_error(ENODEV, std::string(device) + " does not exist: not running on Xen, or the " +
                                  module + " module is not loaded (modprobe " + module + ")");
  }
  if (e == EACCES || e == EPERM) {
    return make_error(EACCES, std::string("no permission to open ") + device +
                                  " (run as root or grant access to the device)");
  }
  return errno_error(e, std::string("cannot open ") + device);
}

class XenProvider final : public Provider {
 public:
  // Takes over both handles; open_xen_provider() has checked them.
  XenProvider(xengntshr_handle* xgs, xengnttab_handle* xgt, DomId self, ProviderFeatures features)
      : xgs_(xgs), xgt_(xgt), self_(self), features_(features) {}

  // Every Share and Mapping is gone by now (the Provider outlives them).
  ~XenProvider() override {
    xengnttab_close(xgt_);
    xengntshr_close(xgs_);
  }

  std::string_view name() const override { return "xen"; }
  DomId self() const override { return self_; }
  // Grant copy is assumed until the kernel says it has none.
  ProviderFeatures features() const override {
    ProviderFeatures f = features_;
    f.grant_copy = grant_copy_.load(std::memory_order_relaxed);
    return f;
  }

  // The kernel keeps pages whose revocation it deferred out of user space's
  // sight (see xen.h), so there is nothing this process could count.
  std::size_t pending_pages() override { return 0; }

  // Read without a lock: each counter is exact, the set is a snapshot.
  XenDeviceCalls device_calls() const {
    XenDeviceCalls c;
    c.share_pages = share_pages_.load(std::memory_order_relaxed);
    c.unshare = unshare_.load(std::memory_order_relaxed);
    c.map_refs = map_refs_.load(std::memory_order_relaxed);
    c.unmap = unmap_.load(std::memory_order_relaxed);
    c.copy = copy_.load(std::memory_order_relaxed);
    return c;
  }

 protected:
  // One gntalloc request for all pages: they come zeroed and contiguous.
  Result<Share> do_share(DomId peer, std::size_t count, Access access) override {
    if (count > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
      return make_error(EINVAL, "cannot share " + std::to_string(count) +
                                    " pages: libxengntshr takes at most INT_MAX in one call");
    }
    std::vector<Gref> refs(count);
    share_pages_.fetch_add(1, std::memory_order_relaxed);
    void* memory = xengntshr_share_pages(xgs_, peer, static_cast<int>(count), refs.data(),
                                         access == Access::kReadWrite ? 1 : 0);
    if (memory == nullptr) return share_error(errno, peer, count);
    return make_share(static_cast<std::byte*>(memory), std::move(refs),
                      reinterpret_cast<std::uintptr_t>(memory), peer, access);
  }

  // Unmapping our view is what ends a gntalloc share; the kernel revokes the
  // grants, or defers that while the peer still maps them.
  Status do_end(Share& share) override {
    unshare_.fetch_add(1, std::memory_order_relaxed);
    void* memory = reinterpret_cast<void*>(static_cast<std::uintptr_t>(token_of(share)));
    if (xengntshr_unshare(xgs_, memory, static_cast<std::uint32_t>(share.pages())) != 0) {
      const int e = errno;
      return errno_error(e, "gntalloc failed to end the share of " + std::to_string(share.pages()) +
                                " pages with domain " + std::to_string(share.peer()));
    }
    return {};
  }

  // One gntdev request for all grefs, so a buffer of any size costs one call.
  Result<Mapping> do_map(DomId peer, std::span<const Gref> grefs, Access access) override {
    std::vector<std::uint32_t> refs(grefs.begin(), grefs.end());
    const int prot = access == Access::kReadWrite ? PROT_READ | PROT_WRITE : PROT_READ;
    map_refs_.fetch_add(1, std::memory_order_relaxed);
    void* memory = xengnttab_map_domain_grant_refs(xgt_, static_cast<std::uint32_t>(refs.size()),
                                                   peer, refs.data(), prot);
    if (memory == nullptr) return map_error(errno, peer, refs, access);
    return make_mapping(static_cast<std::byte*>(memory), refs.size(),
                        reinterpret_cast<std::uintptr_t>(memory), peer, access);
  }

  // Gives the pages back to gntdev, which unmaps the grants in the hypervisor.
  Status do_unmap(Mapping& mapping) override {
    unmap_.fetch_add(1, std::memory_order_relaxed);
    void* memory = reinterpret_cast<void*>(static_cast<std::uintptr_t>(token_of(mapping)));
    if (xengnttab_unmap(xgt_, memory, static_cast<std::uint32_t>(mapping.pages())) != 0) {
      const int e = errno;
      return errno_error(e, "gntdev failed to unmap " + std::to_string(mapping.pages()) +
                                " pages of domain " + std::to_string(mapping.peer()));
    }
    return {};
  }

  // One gntdev grant-copy request of one segment; the hypervisor checks the
  // grant as it would for a map and copies without mapping anything here.
  Status do_copy(DomId peer, Gref gref, std::size_t offset, std::span<std::byte> local,
                 bool to_peer) override {
    xengnttab_grant_copy_segment_t seg{};
    const xengnttab_grant_copy_segment_t::xengnttab_copy_ptr foreign{
        .foreign = {gref, static_cast<std::uint16_t>(offset), peer}};
    if (to_peer) {
      seg.source.virt = local.data();
      seg.dest = foreign;
      seg.flags = GNTCOPY_dest_gref;
    } else {
      seg.source = foreign;
      seg.dest.virt = local.data();
      seg.flags = GNTCOPY_source_gref;
    }
    seg.len = static_cast<std::uint16_t>(local.size());
    // Named only when something went wrong: copies are on the walk's path.
    auto what = [&] {
      return std::string(to_peer ? "copy into" : "copy from") + " gref " + std::to_string(gref) +
             " of domain " + std::to_string(peer);
    };
    copy_.fetch_add(1, std::memory_order_relaxed);
    if (xengnttab_grant_copy(xgt_, 1, &seg) != 0) {
      const int e = errno;
      if (e == ENOTTY || e == ENOSYS || e == EOPNOTSUPP) {
        grant_copy_.store(false, std::memory_order_relaxed);
        return make_error(EOPNOTSUPP, "cannot " + what() +
                                          ": this kernel's gntdev has no grant copy "
                                          "(IOCTL_GNTDEV_GRANT_COPY, Linux 4.6 and later)");
      }
      return errno_error(e, "gntdev failed to " + what());
    }
    if (seg.status != GNTST_okay) return copy_refusal(seg.status, what());
    return {};
  }

 private:
  // The hypervisor's status for a refused copy, as an errno like map()'s:
  // EINVAL for every refusal of the grant (Xen says GNTST_general_error for a
  // gref never granted or a write to a read-only one).
  static Error copy_refusal(std::int16_t status, const std::string& what) {
    const std::string base = "Xen refused to " + what + " (";
    const char* refused =
        "): it was never granted, is granted to another domain, or is read-only and was "
        "to be written";
    switch (status) {
      case GNTST_general_error:
        return make_error(EINVAL, base + "GNTST_general_error" + refused);
      case GNTST_bad_gntref:
        return make_error(EINVAL, base + "GNTST_bad_gntref" + refused);
      case GNTST_permission_denied:
        return make_error(EINVAL, base + "GNTST_permission_denied" + refused);
      case GNTST_bad_domain:
        return make_error(EINVAL, base + "GNTST_bad_domain): no such domain");
      case GNTST_bad_page:
        return make_error(EINVAL, base + "GNTST_bad_page): the granted frame is not valid");
      case GNTST_bad_copy_arg:
        return make_error(EINVAL, base + "GNTST_bad_copy_arg): the copy crosses a page");
      case GNTST_eagain:
        return make_error(EAGAIN, base + "GNTST_eagain): try again");
      default:
        return make_error(EIO, base + "status " + std::to_string(status) + ")");
    }
  }

  // ENOSPC is gntalloc's budget or the grant table running out; say which
  // knob to turn.
  Error share_error(int e, DomId peer, std::size_t count) const {
    const std::string what = "gntalloc refused to share " + std::to_string(count) +
                             " pages with domain " + std::to_string(peer);
    if (e == ENOSPC) {
      const auto limit = read_number(kGntallocLimit);
      return make_error(
          ENOSPC, what + ": its grant limit is reached (module parameter xen_gntalloc.limit=" +
                      (limit ? std::to_string(*limit) : std::string("?")) +
                      " counts every page shared through gntalloc by all processes; write a "
                      "larger value to " +
                      kGntallocLimit +
                      " or reload xen-gntalloc with a larger limit=), or this domain's grant "
                      "table is full");
    }
    if (e == ENOMEM) return make_error(ENOMEM, what + ": out of memory for the pages");
    return errno_error(e, what);
  }

  // gntdev turns every refusal of the hypervisor into EINVAL; name the gref
  // when there is one, and for a writable map of one gref find out whether a
  // read-only map would have worked.
  Error map_error(int e, DomId peer, std::vector<std::uint32_t>& refs, Access access) {
    const std::string dom = "domain " + std::to_string(peer);
    const std::string or_missing = peer == self_ ? "" : "; or " + dom + " does not exist";
    if (e == EINVAL && refs.size() == 1) {
      const std::string gref = "gref " + std::to_string(refs[0]);
      if (access == Access::kReadWrite) {
        map_refs_.fetch_add(1, std::memory_order_relaxed);
        void* probe = xengnttab_map_domain_grant_refs(xgt_, 1, peer, refs.data(), PROT_READ);
        if (probe != nullptr) {
          unmap_.fetch_add(1, std::memory_order_relaxed);
          (void)xengnttab_unmap(xgt_, probe, 1);
          return make_error(EINVAL,
                            dom + " granted " + gref + " read-only: it cannot be mapped writable");
        }
      }
      return make_error(EINVAL, dom + " refused to map " + gref +
                                    ": it was never granted or is granted to another domain" +
                                    or_missing);
    }
    if (e == EINVAL) {
      return make_error(EINVAL, dom + " refused to map " + std::to_string(refs.size()) +
                                    " grefs (the first is " + std::to_string(refs[0]) +
                                    "): at least one was never granted, granted to another "
                                    "domain, or read-only mapped writable" +
                                    or_missing);
    }
    if (e == ENOMEM) {
      return make_error(
          ENOMEM, "gntdev has no room to map " + std::to_string(refs.size()) + " pages of " + dom);
    }
    return errno_error(e,
                       "gntdev failed to map " + std::to_string(refs.size()) + " grefs of " + dom);
  }

  xengntshr_handle* const xgs_;
  xengnttab_handle* const xgt_;
  const DomId self_;
  const ProviderFeatures features_;
  std::atomic<std::uint64_t> share_pages_{0}, unshare_{0}, map_refs_{0}, unmap_{0}, copy_{0};
  std::atomic<bool> grant_copy_{true};
};

}  // namespace

// Lets callers and tests tell "no Xen here" from "built without Xen".
bool xen_provider_built() {
  return true;
}

// The usual case: the domain id is found out, not given.
Result<std::unique_ptr<Provider>> open_xen_provider() {
  return open_xen_provider(XenOptions{});
}

// Checks the devices first so a missing one is named, then learns who we are.
Result<std::unique_ptr<Provider>> open_xen_provider(const XenOptions& options) {
  for (auto [device, module] :
       {std::pair{kGntalloc, "xen-gntalloc"}, std::pair{kGntdev, "xen-gntdev"}}) {
    if (::access(device, F_OK) != 0) return open_error(device, module, errno);
  }
  auto self = own_domid(options);
  if (!self.ok()) return std::move(self).error();

  xengntshr_handle* xgs = xengntshr_open(xen::quiet_logger(), 0);
  if (xgs == nullptr) return open_error(kGntalloc, "xen-gntalloc", errno);
  xengnttab_handle* xgt = xengnttab_open(xen::quiet_logger(), 0);
  if (xgt == nullptr) {
    const int e = errno;
    xengntshr_close(xgs);
    return open_error(kGntdev, "xen-gntdev", e);
  }

  ProviderFeatures features;
  if (auto limit = read_number(kGntdevLimit)) features.max_map_batch = *limit;
  return std::unique_ptr<Provider>(new XenProvider(xgs, xgt, *self, features));
}

// Benchmarks and tests hold a plain Provider; only the xen one has these.
Result<XenDeviceCalls> xen_device_calls(const Provider& provider) {
  const auto* xen = dynamic_cast<const XenProvider*>(&provider);
  if (xen == nullptr) {
    return make_error(EINVAL, "the " + std::string(provider.name()) +
                                  " provider makes no calls into Xen's grant devices");
  }
  return xen->device_calls();
}

}  // namespace shbuf
