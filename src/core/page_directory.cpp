#include "shbuf/core/page_directory.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "core/no_throw.h"

namespace shbuf {
namespace {

constexpr std::size_t kGrefSize = sizeof(Gref);

constexpr Gref to_wire(Gref v) {
  if constexpr (std::endian::native == std::endian::little) {
    return v;
  } else {
    return ((v & 0xffu) << 24) | ((v & 0xff00u) << 8) | ((v >> 8) & 0xff00u) | (v >> 24);
  }
}
constexpr Gref from_wire(Gref v) {
  return to_wire(v);
}

bool word_aligned(const std::byte* p) {
  return reinterpret_cast<std::uintptr_t>(p) % alignof(Gref) == 0;
}

std::string num(std::size_t v) {
  return std::to_string(v);
}

// The positions of the first value that appears twice, if any.
std::optional<std::pair<std::size_t, std::size_t>> find_duplicate(std::span<const Gref> grefs) {
  std::vector<Gref> sorted(grefs.begin(), grefs.end());
  std::sort(sorted.begin(), sorted.end());
  const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup == sorted.end()) return std::nullopt;
  const auto first = std::find(grefs.begin(), grefs.end(), *dup);
  const auto second = std::find(first + 1, grefs.end(), *dup);
  return std::pair{static_cast<std::size_t>(first - grefs.begin()),
                   static_cast<std::size_t>(second - grefs.begin())};
}

// Directory grefs given by the caller: never 0, each once (a repeated one
// would make the chain loop).
Status check_dir_grefs(std::span<const Gref> dir_grefs) {
  for (std::size_t i = 0; i < dir_grefs.size(); ++i) {
    if (dir_grefs[i] == kDirListEnd) {
      return make_error(EINVAL, "directory gref " + num(i) + " is 0, which is never a valid gref");
    }
  }
  if (auto dup = find_duplicate(dir_grefs)) {
    return make_error(EINVAL, "directory gref " + num(dir_grefs[dup->first]) +
                                  " is given twice, for directory pages " + num(dup->first) +
                                  " and " + num(dup->second) + ": the chain would loop");
  }
  return {};
}

// Shared by both encoders: argument checks and the links of every page.
Status check_encode_args(std::span<const Gref> dir_grefs, std::size_t n,
                         std::span<std::byte> pages) {
  if (n == 0) return make_error(EINVAL, "a buffer of 0 pages is invalid");
  const std::size_t d = dir_pages(n);
  if (dir_grefs.size() != d) {
    return make_error(EINVAL, "a buffer of " + num(n) + " pages needs " + num(d) +
                                  " directory grefs, got " + num(dir_grefs.size()));
  }
  if (pages.size() != d * kPageSize) {
    return make_error(EINVAL, "directory of " + num(d) + " pages needs " + num(d * kPageSize) +
                                  " bytes, got " + num(pages.size()));
  }
  return check_dir_grefs(dir_grefs);
}

void write_links(std::span<const Gref> dir_grefs, std::span<std::byte> pages) {
  const std::size_t d = dir_grefs.size();
  for (std::size_t i = 0; i < d; ++i) {
    const Gref link = i + 1 < d ? dir_grefs[i + 1] : kDirListEnd;
    store_shared_gref(pages.data() + i * kPageSize, link);
  }
}

}  // namespace

const char* to_string(AllocMode mode) {
  return mode == AllocMode::kFrontend ? "frontend-alloc" : "backend-alloc";
}

void copy_grefs_from_shared(Gref* dst, const std::byte* src, std::size_t count) {
  if (word_aligned(src)) {
    const auto* words = reinterpret_cast<const Gref*>(src);
    for (std::size_t i = 0; i < count; ++i) {
      dst[i] = from_wire(__atomic_load_n(&words[i], __ATOMIC_RELAXED));
    }
  } else {
    std::memcpy(dst, src, count * kGrefSize);
    for (std::size_t i = 0; i < count; ++i) dst[i] = from_wire(dst[i]);
  }
}

void copy_grefs_to_shared(std::byte* dst, const Gref* src, std::size_t count) {
  if (word_aligned(dst)) {
    auto* words = reinterpret_cast<Gref*>(dst);
    for (std::size_t i = 0; i < count; ++i) {
      __atomic_store_n(&words[i], to_wire(src[i]), __ATOMIC_RELAXED);
    }
  } else {
    for (std::size_t i = 0; i < count; ++i) {
      const Gref v = to_wire(src[i]);
      std::memcpy(dst + i * kGrefSize, &v, kGrefSize);
    }
  }
}

Gref load_shared_gref(const std::byte* src) {
  Gref v;
  copy_grefs_from_shared(&v, src, 1);
  return v;
}

void store_shared_gref(std::byte* dst, Gref value) {
  copy_grefs_to_shared(dst, &value, 1);
}

Status encode_frontend_alloc(std::span<const Gref> dir_grefs, std::span<const Gref> buffer_grefs,
                             std::span<std::byte> pages) {
  const std::size_t n = buffer_grefs.size();
  SHBUF_TRY(without_throwing("checking the directory grefs",
                             [&] { return check_encode_args(dir_grefs, n, pages); }));
  for (std::size_t i = 0; i < n; ++i) {
    if (buffer_grefs[i] == kDirListEnd) {
      return make_error(EINVAL, "buffer gref " + num(i) + " is 0, which is never a valid gref");
    }
  }
  write_links(dir_grefs, pages);
  for (std::size_t i = 0; i < dir_grefs.size(); ++i) {
    const std::size_t first = i * kGrefsPerDirPage;
    const std::size_t count = std::min(kGrefsPerDirPage, n - first);
    std::byte* slots = pages.data() + i * kPageSize + kGrefSize;
    copy_grefs_to_shared(slots, buffer_grefs.data() + first, count);
    std::memset(slots + count * kGrefSize, 0, (kGrefsPerDirPage - count) * kGrefSize);
  }
  return {};
}

Status encode_backend_alloc(std::span<const Gref> dir_grefs, std::size_t n,
                            std::span<std::byte> pages) {
  SHBUF_TRY(without_throwing("checking the directory grefs",
                             [&] { return check_encode_args(dir_grefs, n, pages); }));
  write_links(dir_grefs, pages);
  for (std::size_t i = 0; i < dir_grefs.size(); ++i) {
    std::memset(pages.data() + i * kPageSize + kGrefSize, 0, kPageSize - kGrefSize);
  }
  return {};
}

Result<DirectoryWalker> DirectoryWalker::start(std::size_t n, Gref first_dir_gref,
                                               std::size_t max_pages) {
  if (n == 0) return make_error(EINVAL, "a buffer of 0 pages is invalid");
  if (n > max_pages) {
    return make_error(E2BIG, "a buffer of " + num(n) + " pages is above the limit of " +
                                 num(max_pages) + " pages");
  }
  return without_throwing("starting a directory walk", [&]() -> Result<DirectoryWalker> {
    DirectoryWalker w;
    w.n_ = n;
    w.total_dir_pages_ = dir_pages(n);
    // A chain of one page follows no link: nothing to remember.
    if (first_dir_gref != kDirListEnd && w.total_dir_pages_ > 1) {
      w.visited_.emplace(first_dir_gref, 0);
    }
    return w;
  });
}

// Grows geometrically with what was read, but never past N: a finished walk
// holds exactly N grefs' worth, however the chain was split.
void DirectoryWalker::make_room(std::size_t count) {
  const std::size_t need = grefs_.size() + count;
  if (need <= grefs_.capacity()) return;
  grefs_.reserve(std::min(n_, std::max(need, 2 * grefs_.capacity())));
}

Result<Gref> DirectoryWalker::accept_link(Gref link) {
  const std::size_t index = page_index_;
  const bool last = index + 1 == total_dir_pages_;
  if (last && link != kDirListEnd) {
    return make_error(EBADMSG, "directory chain does not end: page " + num(index) +
                                   " is the last of " + num(total_dir_pages_) +
                                   " but links to gref " + num(link));
  }
  if (!last && link == kDirListEnd) {
    return make_error(EBADMSG, "directory chain ends early: page " + num(index) + " of " +
                                   num(total_dir_pages_) + " has link 0");
  }
  if (!last) {
    const auto [seen, added] = visited_.emplace(link, index + 1);
    if (!added) {
      return make_error(ELOOP, "directory chain loops: page " + num(index) +
                                   " links back to gref " + num(link) + " (directory page " +
                                   num(seen->second) + ")");
    }
  }
  ++page_index_;
  return link;
}

Result<Gref> DirectoryWalker::read_page(std::span<const std::byte> page) {
  return without_throwing("reading a directory page", [&] { return read_page_inner(page); });
}

Result<Gref> DirectoryWalker::fill_page(std::span<std::byte> page,
                                        std::span<const Gref> buffer_grefs) {
  return without_throwing("filling a directory page",
                          [&] { return fill_page_inner(page, buffer_grefs); });
}

Result<Gref> DirectoryWalker::read_page_inner(std::span<const std::byte> page) {
  if (done()) return make_error(EINVAL, "directory walk already complete");
  if (page.size() != kPageSize) {
    return make_error(EINVAL,
                      "a directory page is " + num(kPageSize) + " bytes, got " + num(page.size()));
  }
  const std::size_t first = page_index_ * kGrefsPerDirPage;
  const std::size_t count = std::min(kGrefsPerDirPage, n_ - first);
  // One copy of the words this page contributes; only the copy is examined.
  Gref words[1 + kGrefsPerDirPage];
  copy_grefs_from_shared(words, page.data(), 1 + count);
  for (std::size_t i = 0; i < count; ++i) {
    if (words[1 + i] == kDirListEnd) {
      return make_error(EINVAL, "buffer gref " + num(first + i) + " (directory page " +
                                    num(page_index_) + ", slot " + num(i) +
                                    ") is 0, which is never a valid gref");
    }
  }
  auto link = accept_link(words[0]);
  if (!link.ok()) return link;
  make_room(count);
  grefs_.insert(grefs_.end(), words + 1, words + 1 + count);
  return link;
}

Result<Gref> DirectoryWalker::fill_page_inner(std::span<std::byte> page,
                                              std::span<const Gref> buffer_grefs) {
  if (done()) return make_error(EINVAL, "directory walk already complete");
  if (page.size() != kPageSize) {
    return make_error(EINVAL,
                      "a directory page is " + num(kPageSize) + " bytes, got " + num(page.size()));
  }
  if (buffer_grefs.size() != n_) {
    return make_error(EINVAL, "filling a directory of " + num(n_) + " pages needs " + num(n_) +
                                  " grefs, got " + num(buffer_grefs.size()));
  }
  const std::size_t first = page_index_ * kGrefsPerDirPage;
  const std::size_t count = std::min(kGrefsPerDirPage, n_ - first);
  for (std::size_t i = 0; i < count; ++i) {
    if (buffer_grefs[first + i] == kDirListEnd) {
      return make_error(EINVAL,
                        "buffer gref " + num(first + i) + " is 0, which is never a valid gref");
    }
  }
  auto link = accept_link(load_shared_gref(page.data()));
  if (!link.ok()) return link;
  copy_grefs_to_shared(page.data() + kGrefSize, buffer_grefs.data() + first, count);
  make_room(count);
  grefs_.insert(grefs_.end(), buffer_grefs.begin() + static_cast<std::ptrdiff_t>(first),
                buffer_grefs.begin() + static_cast<std::ptrdiff_t>(first + count));
  return link;
}

namespace {

// Checks what decode and fill share before touching any page.
Result<DirectoryWalker> start_whole(std::size_t pages_bytes, std::size_t n,
                                    const DecodeOptions& options) {
  auto walker = DirectoryWalker::start(n, options.dir_grefs.empty() ? 0 : options.dir_grefs[0],
                                       options.max_pages);
  if (!walker.ok()) return walker;
  const std::size_t d = dir_pages(n);
  if (pages_bytes != d * kPageSize) {
    return make_error(EINVAL, "a buffer of " + num(n) + " pages has " + num(d) +
                                  " directory pages (" + num(d * kPageSize) + " bytes), got " +
                                  num(pages_bytes) + " bytes");
  }
  if (!options.dir_grefs.empty() && options.dir_grefs.size() != d) {
    return make_error(EINVAL, "a buffer of " + num(n) + " pages has " + num(d) +
                                  " directory pages, got " + num(options.dir_grefs.size()) +
                                  " directory grefs");
  }
  SHBUF_TRY(check_dir_grefs(options.dir_grefs));
  return walker;
}

Status check_expected_link(const DecodeOptions& options, std::size_t page, Gref link) {
  if (options.dir_grefs.empty() || link == kDirListEnd) return {};
  const Gref expected = options.dir_grefs[page + 1];
  if (link != expected) {
    return make_error(EBADMSG, "directory page " + num(page) + " links to gref " + num(link) +
                                   ", expected " + num(expected));
  }
  return {};
}

Result<std::vector<Gref>> decode_whole(std::span<const std::byte> pages, std::size_t n,
                                       const DecodeOptions& options) {
  auto walker = start_whole(pages.size(), n, options);
  if (!walker.ok()) return std::move(walker).error();
  for (std::size_t i = 0; !walker->done(); ++i) {
    auto link = walker->read_page(pages.subspan(i * kPageSize, kPageSize));
    if (!link.ok()) return std::move(link).error();
    SHBUF_TRY(check_expected_link(options, i, *link));
  }
  return walker->take_grefs();
}

Status fill_whole(std::span<std::byte> pages, std::span<const Gref> buffer_grefs,
                  const DecodeOptions& options) {
  auto walker = start_whole(pages.size(), buffer_grefs.size(), options);
  if (!walker.ok()) return std::move(walker).error();
  for (std::size_t i = 0; !walker->done(); ++i) {
    auto link = walker->fill_page(pages.subspan(i * kPageSize, kPageSize), buffer_grefs);
    if (!link.ok()) return std::move(link).error();
    SHBUF_TRY(check_expected_link(options, i, *link));
  }
  return {};
}

}  // namespace

Result<std::vector<Gref>> decode_page_directory(std::span<const std::byte> pages, std::size_t n,
                                                const DecodeOptions& options) {
  return without_throwing("decoding a page directory",
                          [&] { return decode_whole(pages, n, options); });
}

Status check_distinct_grefs(std::span<const Gref> grefs) {
  return without_throwing("checking that grefs are distinct", [&]() -> Status {
    auto dup = find_duplicate(grefs);
    if (!dup) return {};
    return make_error(EINVAL, "gref " + num(grefs[dup->first]) +
                                  " appears twice, at buffer pages " + num(dup->first) + " and " +
                                  num(dup->second));
  });
}

Status fill_page_directory(std::span<std::byte> pages, std::span<const Gref> buffer_grefs,
                           const DecodeOptions& options) {
  return without_throwing("filling a page directory",
                          [&] { return fill_whole(pages, buffer_grefs, options); });
}

}  // namespace shbuf
