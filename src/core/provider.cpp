#include "shbuf/core/provider.h"

#include <string>
#include <utility>

#include "core/no_throw.h"
#include "shbuf/core/page_directory.h"
#include "shbuf/grant/sim.h"
#include "shbuf/grant/xen.h"

namespace shbuf {

Status Share::end() {
  if (provider_ == nullptr) return {};
  Provider* provider = std::exchange(provider_, nullptr);
  Status status = provider->end_share(*this);
  (void)take();  // empty whatever the outcome
  return status;
}

Status Mapping::unmap() {
  if (provider_ == nullptr) return {};
  Provider* provider = std::exchange(provider_, nullptr);
  Status status = provider->unmap_mapping(*this);
  (void)take();  // empty whatever the outcome
  return status;
}

Provider::~Provider() = default;

Result<Share> Provider::share(DomId peer, std::size_t count, Access access) {
  share_calls_.fetch_add(1, std::memory_order_relaxed);
  if (count == 0) return make_error(EINVAL, "cannot share 0 pages");
  if (peer == kDomIdSelf) return make_error(EINVAL, "cannot share with DOMID_SELF");
  const std::size_t max = features().max_share_batch;
  if (max != 0 && count > max) {
    return make_error(ENOSPC, "cannot share " + std::to_string(count) + " pages at once: the " +
                                  std::string(name()) + " provider allows at most " +
                                  std::to_string(max));
  }
  Result<Share> result =
      without_throwing("sharing pages", [&] { return do_share(peer, count, access); });
  if (result.ok()) pages_shared_.fetch_add(count, std::memory_order_relaxed);
  return result;
}

Result<Mapping> Provider::map(DomId peer, std::span<const Gref> grefs, Access access) {
  map_calls_.fetch_add(1, std::memory_order_relaxed);
  if (grefs.empty()) return make_error(EINVAL, "cannot map an empty list of grefs");
  if (peer == kDomIdSelf) return make_error(EINVAL, "cannot map from DOMID_SELF");
  const std::size_t max = features().max_map_batch;
  if (max != 0 && grefs.size() > max) {
    return make_error(E2BIG, "cannot map " + std::to_string(grefs.size()) +
                                 " grefs in one call: the " + std::string(name()) +
                                 " provider allows at most " + std::to_string(max));
  }
  Result<Mapping> result =
      without_throwing("mapping pages", [&] { return do_map(peer, grefs, access); });
  if (result.ok()) pages_mapped_.fetch_add(grefs.size(), std::memory_order_relaxed);
  return result;
}

Status Provider::copy_from(DomId peer, Gref gref, std::size_t offset, std::span<std::byte> dst) {
  return copy(peer, gref, offset, dst, false);
}

// The peer's page is only ever read from `src`; one hook serves both ways.
Status Provider::copy_to(DomId peer, Gref gref, std::size_t offset,
                         std::span<const std::byte> src) {
  return copy(peer, gref, offset,
              std::span<std::byte>(const_cast<std::byte*>(src.data()), src.size()), true);
}

Status Provider::copy(DomId peer, Gref gref, std::size_t offset, std::span<std::byte> local,
                      bool to_peer) {
  copy_calls_.fetch_add(1, std::memory_order_relaxed);
  const char* way = to_peer ? "copy into" : "copy from";
  if (local.empty()) {
    return make_error(EINVAL, std::string("cannot ") + way + " gref " + std::to_string(gref) +
                                  ": 0 bytes is no copy");
  }
  if (offset >= kPageSize || local.size() > kPageSize - offset) {
    return make_error(EINVAL, std::string("cannot ") + way + " gref " + std::to_string(gref) + " " +
                                  std::to_string(local.size()) + " bytes at offset " +
                                  std::to_string(offset) + ": a grant copy stays within one " +
                                  std::to_string(kPageSize) + "-byte page");
  }
  if (peer == kDomIdSelf) {
    return make_error(EINVAL, std::string("cannot ") + way + " a page of DOMID_SELF");
  }
  if (!features().grant_copy) {
    return make_error(EOPNOTSUPP, "the " + std::string(name()) + " provider has no grant copy");
  }
  Status status = without_throwing("copying a page",
                                   [&] { return do_copy(peer, gref, offset, local, to_peer); });
  if (status.ok()) bytes_copied_.fetch_add(local.size(), std::memory_order_relaxed);
  return status;
}

Status Provider::do_copy(DomId, Gref, std::size_t, std::span<std::byte>, bool) {
  return make_error(EOPNOTSUPP, "the " + std::string(name()) + " provider has no grant copy");
}

Status Provider::end_share(Share& share) {
  end_calls_.fetch_add(1, std::memory_order_relaxed);
  return do_end(share);
}

Status Provider::unmap_mapping(Mapping& mapping) {
  unmap_calls_.fetch_add(1, std::memory_order_relaxed);
  return do_unmap(mapping);
}

ProviderStats Provider::stats() const {
  ProviderStats s;
  s.share_calls = share_calls_.load(std::memory_order_relaxed);
  s.end_calls = end_calls_.load(std::memory_order_relaxed);
  s.map_calls = map_calls_.load(std::memory_order_relaxed);
  s.unmap_calls = unmap_calls_.load(std::memory_order_relaxed);
  s.copy_calls = copy_calls_.load(std::memory_order_relaxed);
  s.bytes_copied = bytes_copied_.load(std::memory_order_relaxed);
  s.pages_shared = pages_shared_.load(std::memory_order_relaxed);
  s.pages_mapped = pages_mapped_.load(std::memory_order_relaxed);
  return s;
}

Share Provider::make_share(std::byte* memory, std::vector<Gref> grefs, std::uint64_t token,
                           DomId peer, Access access) {
  Share s;
  s.provider_ = this;
  s.memory_ = memory;
  s.grefs_ = std::move(grefs);
  s.token_ = token;
  s.peer_ = peer;
  s.access_ = access;
  return s;
}

Mapping Provider::make_mapping(std::byte* memory, std::size_t pages, std::uint64_t token,
                               DomId peer, Access access) {
  Mapping m;
  m.provider_ = this;
  m.memory_ = memory;
  m.pages_ = pages;
  m.token_ = token;
  m.peer_ = peer;
  m.access_ = access;
  return m;
}

Result<std::unique_ptr<Provider>> open_provider(const ProviderOptions& options) {
  if (options.name == "sim") {
    SimOptions sim;
    sim.path = options.sim_path;
    sim.domid = options.self;
    auto p = SimProvider::open(sim);
    if (!p.ok()) return std::move(p).error();
    return std::unique_ptr<Provider>(std::move(p).value());
  }
  if (options.name == "xen") {
    auto p = open_xen_provider();
    if (!p.ok()) return std::move(p).error();
    return std::move(p).value();
  }
  return make_error(EINVAL, "unknown grant provider '" + options.name + "' (expected sim or xen)");
}

}  // namespace shbuf
