// The page directory wire format shared by Xen's PV display, sound and camera
// protocols: a chain of 4 KiB pages, each holding the gref of the next
// directory page (0 on the last) followed by up to 1023 buffer grefs, all
// little-endian uint32.
//
// Everything here is pure: no I/O, no allocation of grants. Pages handed to the
// decoding side may be shared with a hostile peer that rewrites them while we
// read: each page is copied out exactly once, word by word, and only the copy is
// validated; no length is taken from the pages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "shbuf/core/provider.h"
#include "shbuf/core/result.h"
#include "shbuf/core/visibility.h"

namespace shbuf {

// Grefs one directory page carries after its link.
inline constexpr std::size_t kGrefsPerDirPage = kPageSize / sizeof(Gref) - 1;
// The link that ends the chain; also never a valid buffer gref.
inline constexpr Gref kDirListEnd = 0;
// Default bound on the buffer size a decoder accepts: 1 Mi pages (4 GiB).
inline constexpr std::size_t kDefaultMaxPages = std::size_t{1} << 20;

// Who allocates the buffer pages: the frontend grants them (the backend maps
// them), or the backend grants them (the frontend maps them).
enum class AllocMode { kFrontend, kBackend };

// "frontend-alloc" / "backend-alloc".
const char* to_string(AllocMode mode);

// Directory pages needed for a buffer of n pages: ceil(n / 1023).
constexpr std::size_t dir_pages(std::size_t n) {
  return n / kGrefsPerDirPage + (n % kGrefsPerDirPage != 0 ? 1 : 0);
}

// Frontend-allocated mode: fills pages (exactly dir_pages(N) * 4096 bytes)
// with links to dir_grefs[1..] and the N buffer grefs; unused slots are zero.
// Refuses N == 0, a dir_grefs count other than dir_pages(N), gref 0 anywhere,
// a directory gref given twice (the chain would loop), and a pages span of
// the wrong size.
Status encode_frontend_alloc(std::span<const Gref> dir_grefs, std::span<const Gref> buffer_grefs,
                             std::span<std::byte> pages);

// Backend-allocated mode: links only; every gref slot zero, for the backend
// to fill.
Status encode_backend_alloc(std::span<const Gref> dir_grefs, std::size_t n,
                            std::span<std::byte> pages);

struct DecodeOptions {
  // Buffers larger than this are refused (E2BIG) before anything is read.
  std::size_t max_pages = kDefaultMaxPages;
  // If not empty: the grefs the directory pages were reached through, in
  // order; each page's link must equal the next one's gref. They must be
  // distinct and not 0 (EINVAL).
  std::span<const Gref> dir_grefs;
};

// Reads the N buffer grefs from pages (exactly dir_pages(N) * 4096 bytes).
// Errors: EINVAL for N == 0 or a wrong pages/dir_grefs size, E2BIG above
// max_pages, EBADMSG for a chain that ends early, does not end, or links to a
// gref other than the expected one, ELOOP for a link back to an earlier
// directory page, and EINVAL for a buffer gref of 0. Memory grows with what
// was read, never with N alone; ENOMEM when it cannot.
Result<std::vector<Gref>> decode_page_directory(std::span<const std::byte> pages, std::size_t n,
                                                const DecodeOptions& options = {});

// EINVAL naming the first gref that appears twice, with both positions: a
// peer that lists a page twice would make two parts of a buffer alias.
Status check_distinct_grefs(std::span<const Gref> grefs);

// Backend-allocated mode, backend side: writes the buffer grefs into existing
// directory pages, checking each page's link as decode does. Only gref slots
// are written, never links.
Status fill_page_directory(std::span<std::byte> pages, std::span<const Gref> buffer_grefs,
                           const DecodeOptions& options = {});

// Walks a directory one page at a time, as a backend does when it can map
// only one directory page at once. Each page is copied out once; the walker
// decides from its own count, never from the page, how many grefs to take and
// whether another page must follow.
class DirectoryWalker {
 public:
  // first_dir_gref: the gref the protocol announced (0 if unknown); it is
  // remembered so a link back to the first page is caught as a loop. Nothing
  // is allocated for N up front: a walk holds what it has read.
  static Result<DirectoryWalker> start(std::size_t n, Gref first_dir_gref,
                                       std::size_t max_pages = kDefaultMaxPages);

  // Consumes the next directory page (exactly 4096 bytes): validates its link
  // and copies out its share of buffer grefs. Returns the gref of the next
  // directory page, or kDirListEnd once all N grefs are read.
  Result<Gref> read_page(std::span<const std::byte> page);

  // Backend-allocated mode: validates the page's link as read_page does and
  // writes the next share of `buffer_grefs` (all N of them) into its slots.
  Result<Gref> fill_page(std::span<std::byte> page, std::span<const Gref> buffer_grefs);

  bool done() const { return page_index_ == total_dir_pages_; }
  std::size_t pages() const { return n_; }
  std::size_t dir_pages_seen() const { return page_index_; }
  // The grefs read so far (all N once done()).
  const std::vector<Gref>& grefs() const { return grefs_; }
  std::vector<Gref> take_grefs() { return std::move(grefs_); }

 private:
  DirectoryWalker() = default;
  SHBUF_LOCAL Result<Gref> read_page_inner(std::span<const std::byte> page);
  SHBUF_LOCAL Result<Gref> fill_page_inner(std::span<std::byte> page, std::span<const Gref> buffer_grefs);
  void make_room(std::size_t count);
  // Checks a link read from page page_index_ and advances.
  Result<Gref> accept_link(Gref link);

  std::size_t n_ = 0;
  std::size_t total_dir_pages_ = 0;
  std::size_t page_index_ = 0;
  // Grefs of directory pages seen, first included, and their page index.
  std::unordered_map<Gref, std::size_t> visited_;
  std::vector<Gref> grefs_;
};

// Shared-memory access, one aligned 32-bit word at a time (little-endian on
// the wire). Relaxed atomics: a racing peer yields some value, never a torn or
// repeated read.
void copy_grefs_from_shared(Gref* dst, const std::byte* src, std::size_t count);
void copy_grefs_to_shared(std::byte* dst, const Gref* src, std::size_t count);
Gref load_shared_gref(const std::byte* src);
void store_shared_gref(std::byte* dst, Gref value);

}  // namespace shbuf
