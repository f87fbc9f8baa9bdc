// The frontend end of a page directory shared buffer: what Linux's
// xen-front-pgdir-shbuf does, over any grant provider.
//
// Frontend-allocated: create() shares N buffer pages and D = dir_pages(N)
// directory pages with the backend and fills the directory; memory() is the
// buffer at once. Backend-allocated: create() shares only the D directory pages
// (writable: the backend writes its grefs there); map() copies those grefs out
// once, validates them like the decoder, refuses a gref listed twice (two
// buffer pages would alias), and maps them; unmap() undoes it.
//
// Every failure leaves nothing granted, mapped or allocated. free() (and the
// destructor) ends exactly the grants create() made. If the backend still maps
// a page, the provider keeps it (never reused) until the backend unmaps: free()
// then reports EBUSY and Provider::pending_pages() shows it.
#pragma once

#include <cstddef>
#include <span>

#include "shbuf/core/page_directory.h"
#include "shbuf/core/provider.h"
#include "shbuf/core/result.h"
#include "shbuf/core/visibility.h"

namespace shbuf {

struct FrontendBufferConfig {
  DomId backend = 0;
  std::size_t pages = 0;
  AllocMode mode = AllocMode::kFrontend;
  // Requests above this many pages are refused (E2BIG).
  std::size_t max_pages = kDefaultMaxPages;
  // How the backend may access the buffer pages (frontend-allocated mode).
  // The directory is granted read-only in that mode: the backend only reads it.
  Access buffer_access = Access::kReadWrite;
};

namespace detail {
struct FrontendBufferFields {
  Provider* provider_ = nullptr;
  AllocMode mode_ = AllocMode::kFrontend;
  std::size_t pages_ = 0;
  std::size_t max_pages_ = kDefaultMaxPages;
  DomId backend_ = 0;
  Share directory_;
  Share buffer_;                     // frontend-allocated
  Mapping mapping_;                  // backend-allocated, once mapped
  std::vector<Gref> backend_grefs_;  // backend-allocated, once mapped
};
}  // namespace detail

class FrontendBuffer : public detail::OwningHandle<FrontendBuffer, detail::FrontendBufferFields> {
 public:
  // The provider must outlive the buffer.
  static Result<FrontendBuffer> create(Provider& provider, const FrontendBufferConfig& config);

  FrontendBuffer() = default;
  // A moved-from buffer is empty: invalid, 0 pages.
  FrontendBuffer(FrontendBuffer&&) noexcept = default;
  FrontendBuffer& operator=(FrontendBuffer&&) noexcept = default;
  ~FrontendBuffer() {
    if (valid()) (void)free();
  }

  bool valid() const { return directory_.valid(); }
  AllocMode mode() const { return mode_; }
  std::size_t pages() const { return pages_; }
  std::size_t directory_pages() const { return directory_.pages(); }
  // The gref the protocol carries (displif's gref_directory).
  Gref directory_gref() const;
  // The buffer; empty in backend-allocated mode until map().
  std::span<std::byte> memory() const;
  bool mapped() const { return mapping_.valid(); }
  // The grefs of the buffer pages: ours (frontend-allocated) or those the
  // backend wrote (backend-allocated, once mapped).
  std::span<const Gref> buffer_grefs() const;

  // Backend-allocated mode only. EINVAL in frontend-allocated mode, EALREADY
  // when mapped; a bad directory gives the decoder's error.
  Status map();
  // Backend-allocated mode only; EINVAL when not mapped.
  Status unmap();
  // Unmaps, ends every grant; the buffer is invalid afterwards. EBUSY: the
  // backend still maps some page (kept by the provider until it unmaps).
  Status free();

 private:
  SHBUF_LOCAL static Result<FrontendBuffer> create_inner(Provider& provider,
                                             const FrontendBufferConfig& config);
  SHBUF_LOCAL Status map_inner();

  friend class detail::OwningHandle<FrontendBuffer, detail::FrontendBufferFields>;
  Status release() { return valid() ? free() : Status{}; }
};

}  // namespace shbuf
