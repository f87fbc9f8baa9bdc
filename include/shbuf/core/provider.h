// Grant providers: the one interface through which shbuf shares its own pages
// with a peer domain and maps pages a peer granted to it.
//
// It mirrors what user space has on Xen: libxengntshr shares freshly allocated
// pages (only memory the provider allocates can be granted), libxengnttab maps
// a list of a peer's grant references into one contiguous range.
//
// Ownership: a Share owns pages we granted, a Mapping owns a view of a peer's
// pages. Both are move-only; destroying one releases it (never throws). The
// Provider must outlive every Share and Mapping it returned. A Provider object
// is safe to use from several threads at once.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shbuf/core/handle.h"
#include "shbuf/core/result.h"
#include "shbuf/core/xen_types.h"

namespace shbuf {

enum class Access { kReadOnly, kReadWrite };

class Provider;

namespace detail {
struct ShareFields {
  Provider* provider_ = nullptr;
  std::byte* memory_ = nullptr;
  std::vector<Gref> grefs_;
  std::uint64_t token_ = 0;  // the provider's own handle
  DomId peer_ = 0;
  Access access_ = Access::kReadOnly;
};
struct MappingFields {
  Provider* provider_ = nullptr;
  std::byte* memory_ = nullptr;
  std::size_t pages_ = 0;
  std::uint64_t token_ = 0;  // the provider's own handle
  DomId peer_ = 0;
  Access access_ = Access::kReadOnly;
};
}  // namespace detail

// Pages of our own, granted to one peer. memory() is one contiguous mapping of
// all pages, grefs()[i] names page i. A moved-from Share is invalid.
class Share : public detail::OwningHandle<Share, detail::ShareFields> {
 public:
  Share() = default;
  Share(Share&&) noexcept = default;
  Share& operator=(Share&&) noexcept = default;
  ~Share() {
    if (valid()) (void)end();
  }

  bool valid() const { return provider_ != nullptr; }
  DomId peer() const { return peer_; }
  Access access() const { return access_; }
  std::size_t pages() const { return grefs_.size(); }
  std::span<const Gref> grefs() const { return grefs_; }
  std::span<std::byte> memory() const { return {memory_, grefs_.size() * kPageSize}; }

  // Revokes the grants and frees the pages; the handle is invalid afterwards
  // whatever the outcome. EBUSY: the peer still maps some page, so the pages
  // cannot be freed; the provider keeps them (neither freed nor reused) and
  // reclaims them once the peer unmaps (see Provider::pending_pages()).
  Status end();

 private:
  friend class Provider;
  friend class detail::OwningHandle<Share, detail::ShareFields>;
  Status release() { return valid() ? end() : Status{}; }
};

// A contiguous local view of a list of a peer's pages. A moved-from Mapping
// is invalid.
class Mapping : public detail::OwningHandle<Mapping, detail::MappingFields> {
 public:
  Mapping() = default;
  Mapping(Mapping&&) noexcept = default;
  Mapping& operator=(Mapping&&) noexcept = default;
  ~Mapping() {
    if (valid()) (void)unmap();
  }

  bool valid() const { return provider_ != nullptr; }
  DomId peer() const { return peer_; }
  Access access() const { return access_; }
  std::size_t pages() const { return pages_; }
  std::span<std::byte> memory() const { return {memory_, pages_ * kPageSize}; }

  // Unmaps; the handle is invalid afterwards whatever the outcome.
  Status unmap();

 private:
  friend class Provider;
  friend class detail::OwningHandle<Mapping, detail::MappingFields>;
  Status release() { return valid() ? unmap() : Status{}; }
};

// Counts of calls into the provider, for tests and benchmarks.
struct ProviderStats {
  std::uint64_t share_calls = 0;
  std::uint64_t end_calls = 0;
  std::uint64_t map_calls = 0;
  std::uint64_t unmap_calls = 0;
  std::uint64_t copy_calls = 0;
  std::uint64_t pages_shared = 0;
  std::uint64_t pages_mapped = 0;
  std::uint64_t bytes_copied = 0;
};

// What a provider can do, chosen once when it is opened.
struct ProviderFeatures {
  // Largest number of grefs one map() call accepts (0: no limit).
  std::size_t max_map_batch = 0;
  // Largest number of pages one share() call accepts (0: no limit).
  std::size_t max_share_batch = 0;
  // copy_from() and copy_to() work (the hypervisor's grant copy). Where they
  // do not, they fail with EOPNOTSUPP.
  bool grant_copy = false;
};

// The interface every grant provider implements. Public calls validate their
// arguments, count themselves and then call the do_* hook of the provider.
class Provider {
 public:
  virtual ~Provider();
  Provider(const Provider&) = delete;
  Provider& operator=(const Provider&) = delete;

  // "sim" or "xen".
  virtual std::string_view name() const = 0;
  // The domain this provider acts as.
  virtual DomId self() const = 0;
  virtual ProviderFeatures features() const = 0;

  // Allocates `count` zeroed pages and grants `peer` access to them.
  // EINVAL for count 0 or a bad peer, ENOSPC when the grant table or the
  // device's limit is exhausted, ENOMEM when pages cannot be had.
  Result<Share> share(DomId peer, std::size_t count, Access access);

  // Maps the peer's grefs, in order, into one contiguous range. All or
  // nothing: on failure no page stays mapped. EINVAL, as Linux's gntdev
  // reports every refusal of the hypervisor, for an empty list, a gref never
  // granted, granted to another domain, a writable map of a read-only grant,
  // and an unknown domain; the message says which.
  Result<Mapping> map(DomId peer, std::span<const Gref> grefs, Access access);

  // Grant copy: copies dst.size() bytes from `offset` within the peer's
  // granted page `gref` into our memory, or src into it, without mapping it,
  // as the hypervisor copies (GNTTABOP_copy). The bytes stay within one page:
  // offset + size <= 4096, size > 0. Refusals are EINVAL as for map(); a
  // copy into a page granted read-only is refused. EOPNOTSUPP where the
  // provider or the kernel has no grant copy (see ProviderFeatures).
  Status copy_from(DomId peer, Gref gref, std::size_t offset, std::span<std::byte> dst);
  Status copy_to(DomId peer, Gref gref, std::size_t offset, std::span<const std::byte> src);

  // Pages whose revocation was deferred because a peer still mapped them.
  // Reclaims what can be reclaimed now before counting.
  virtual std::size_t pending_pages() = 0;

  ProviderStats stats() const;

 protected:
  Provider() = default;

  virtual Result<Share> do_share(DomId peer, std::size_t count, Access access) = 0;
  virtual Status do_end(Share& share) = 0;
  virtual Result<Mapping> do_map(DomId peer, std::span<const Gref> grefs, Access access) = 0;
  virtual Status do_unmap(Mapping& mapping) = 0;
  // One grant copy: `to_peer` copies local into the peer's page, otherwise
  // the peer's page into local. Arguments are checked. Providers without
  // grant copy keep this default, which fails with EOPNOTSUPP.
  virtual Status do_copy(DomId peer, Gref gref, std::size_t offset, std::span<std::byte> local,
                         bool to_peer);

  // For implementations: build handles around what they allocated.
  Share make_share(std::byte* memory, std::vector<Gref> grefs, std::uint64_t token, DomId peer,
                   Access access);
  Mapping make_mapping(std::byte* memory, std::size_t pages, std::uint64_t token, DomId peer,
                       Access access);
  // For implementations: read back what a handle holds.
  static std::uint64_t token_of(const Share& s) { return s.token_; }
  static std::uint64_t token_of(const Mapping& m) { return m.token_; }

 private:
  friend class Share;
  friend class Mapping;
  Status end_share(Share& share);
  Status unmap_mapping(Mapping& mapping);

  Status copy(DomId peer, Gref gref, std::size_t offset, std::span<std::byte> local, bool to_peer);

  std::atomic<std::uint64_t> share_calls_{0}, end_calls_{0}, map_calls_{0}, unmap_calls_{0},
      copy_calls_{0};
  std::atomic<std::uint64_t> pages_shared_{0}, pages_mapped_{0}, bytes_copied_{0};
};

// Options for opening a provider by name.
struct ProviderOptions {
  std::string name = "sim";  // "sim" or "xen"
  DomId self = 0;            // the domain to act as (sim only; xen knows its own)
  std::string sim_path;      // sim instance; empty: $SHBUF_SIM or the default
};

// Opens the named provider. ENODEV for "xen" where /dev/xen is missing or
// shbuf was built without libxen; EINVAL for an unknown name.
Result<std::unique_ptr<Provider>> open_provider(const ProviderOptions& options);

}  // namespace shbuf
