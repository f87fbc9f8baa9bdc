// The backend end of a page directory shared buffer, done right.
//
// Frontend-allocated: attach() walks the frontend's directory one page at a
// time (each grant-copied into a private page, or mapped read-only and
// unmapped; read once), stops exactly when N grefs are read, refuses a chain
// that ends early, loops, goes on past the last page, or holds gref 0, then
// maps the N grefs in one call.
// Backend-allocated: attach() shares N fresh pages with the frontend and
// writes the grefs into the frontend's directory pages one at a time (read
// with a grant copy and the gref slots copied back, or mapped writable),
// validating the chain the same way.
//
// Grant copy reads each directory page without changing this process's page
// tables: no mapping to make and tear down per page, and a private snapshot
// that the frontend cannot change while it is being read.
//
// Every failure leaves nothing granted, mapped or allocated; detach() (and the
// destructor) releases exactly what attach() took.
#pragma once

#include <cstddef>
#include <span>

#include "shbuf/core/page_directory.h"
#include "shbuf/core/provider.h"
#include "shbuf/core/result.h"
#include "shbuf/core/visibility.h"

namespace shbuf {

// How attach() reads the directory pages.
enum class DirectoryRead {
  kAuto,  // grant copy where the provider has it, else map; also falls back to
          // map when the kernel turns out to lack grant copy (EOPNOTSUPP)
  kCopy,  // grant copy only
  kMap,   // map each page, one at a time
};

struct BackendBufferConfig {
  DomId frontend = 0;
  // The first directory gref, as the protocol delivered it.
  Gref directory_gref = 0;
  std::size_t pages = 0;
  AllocMode mode = AllocMode::kFrontend;
  // Requests above this many pages are refused (E2BIG) before any mapping.
  std::size_t max_pages = kDefaultMaxPages;
  // How the buffer is mapped (frontend-allocated) or granted (backend-allocated).
  Access access = Access::kReadWrite;
  DirectoryRead directory_read = DirectoryRead::kAuto;
};

namespace detail {
struct BackendBufferFields {
  AllocMode mode_ = AllocMode::kFrontend;
  std::size_t pages_ = 0;
  std::vector<Gref> grefs_;  // frontend-allocated: what the walk read
  Mapping mapping_;          // frontend-allocated
  Share share_;              // backend-allocated
};
}  // namespace detail

class BackendBuffer : public detail::OwningHandle<BackendBuffer, detail::BackendBufferFields> {
 public:
  // The provider must outlive the buffer.
  static Result<BackendBuffer> attach(Provider& provider, const BackendBufferConfig& config);

  BackendBuffer() = default;
  // A moved-from buffer is empty: invalid, 0 pages.
  BackendBuffer(BackendBuffer&&) noexcept = default;
  BackendBuffer& operator=(BackendBuffer&&) noexcept = default;
  ~BackendBuffer() {
    if (valid()) (void)detach();
  }

  bool valid() const { return mapping_.valid() || share_.valid(); }
  AllocMode mode() const { return mode_; }
  std::size_t pages() const { return pages_; }
  std::size_t directory_pages() const { return dir_pages(pages_); }
  std::span<std::byte> memory() const;
  // The buffer's grefs: read from the directory, or granted by us.
  std::span<const Gref> buffer_grefs() const;

  // Releases the mapping or ends the grants. EBUSY (backend-allocated): the
  // frontend still maps some page, kept by the provider until it unmaps.
  Status detach();

 private:
  SHBUF_LOCAL static Result<BackendBuffer> attach_inner(Provider& provider, const BackendBufferConfig& config);

  friend class detail::OwningHandle<BackendBuffer, detail::BackendBufferFields>;
  Status release() { return valid() ? detach() : Status{}; }
};

}  // namespace shbuf
