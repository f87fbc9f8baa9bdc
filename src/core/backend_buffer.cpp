#include "shbuf/core/backend_buffer.h"

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>

#include "core/no_throw.h"

namespace shbuf {
namespace {

Error with_context(Error error, const std::string& context) {
  error.message = context + ": " + error.message;
  return error;
}

std::string dir_page_name(std::size_t index, Gref gref) {
  return "directory page " + std::to_string(index) + " (gref " + std::to_string(gref) + ")";
}

// Walks the frontend's chain one page at a time. Each page is grant-copied
// into a private page (or, without grant copy, mapped and unmapped), handed to
// `visit`, which reads the grefs out or, with `write`, writes grefs into it,
// and those slots are copied back. A copy brings only the words `visit`
// reads: the link and this page's slots, or with `write` the link alone.
// The walker's own count bounds the loop, never the pages.
template <typename Visit>
Status walk_directory(Provider& provider, const BackendBufferConfig& config, bool write,
                      DirectoryWalker& walker, Visit visit) {
  bool copy = config.directory_read == DirectoryRead::kCopy ||
              (config.directory_read == DirectoryRead::kAuto && provider.features().grant_copy);
  alignas(kPageSize) std::byte local[kPageSize];
  Gref gref = config.directory_gref;
  std::size_t index = 0;
  while (!walker.done()) {
    const std::size_t count = std::min(kGrefsPerDirPage, config.pages - index * kGrefsPerDirPage);
    if (copy) {
      const std::size_t words = write ? 1 : 1 + count;
      Status got = provider.copy_from(config.frontend, gref, 0,
                                      std::span<std::byte>(local, words * sizeof(Gref)));
      if (got.code() == EOPNOTSUPP && config.directory_read == DirectoryRead::kAuto) {
        copy = false;  // a kernel without grant copy: map instead
        continue;
      }
      if (!got.ok()) return with_context(got.error(), "copying " + dir_page_name(index, gref));
      Result<Gref> next = visit(std::span<std::byte>(local));
      if (!next.ok()) return with_context(std::move(next).error(), dir_page_name(index, gref));
      if (write) {
        const std::span<const std::byte> slots(local + sizeof(Gref), count * sizeof(Gref));
        if (Status put = provider.copy_to(config.frontend, gref, sizeof(Gref), slots); !put.ok()) {
          return with_context(put.error(), "writing grefs into " + dir_page_name(index, gref));
        }
      }
      gref = *next;
    } else {
      const Gref one[] = {gref};
      auto page =
          provider.map(config.frontend, one, write ? Access::kReadWrite : Access::kReadOnly);
      if (!page.ok())
        return with_context(std::move(page).error(), "mapping " + dir_page_name(index, gref));
      Result<Gref> next = visit(page->memory().first(kPageSize));
      Status unmapped = page->unmap();
      if (!next.ok()) return with_context(std::move(next).error(), dir_page_name(index, gref));
      if (!unmapped.ok()) {
        return with_context(unmapped.error(), "unmapping " + dir_page_name(index, gref));
      }
      gref = *next;
    }
    ++index;
  }
  return {};
}

}  // namespace

Result<BackendBuffer> BackendBuffer::attach(Provider& provider, const BackendBufferConfig& config) {
  return without_throwing("attaching a buffer", [&] { return attach_inner(provider, config); });
}

Result<BackendBuffer> BackendBuffer::attach_inner(Provider& provider,
                                                  const BackendBufferConfig& config) {
  if (config.directory_gref == kDirListEnd) {
    return make_error(EINVAL, "directory gref 0 is never a valid gref");
  }
  auto walker = DirectoryWalker::start(config.pages, config.directory_gref, config.max_pages);
  if (!walker.ok()) return std::move(walker).error();

  BackendBuffer buf;
  buf.mode_ = config.mode;
  buf.pages_ = config.pages;
  if (config.mode == AllocMode::kFrontend) {
    SHBUF_TRY(walk_directory(provider, config, false, *walker,
                             [&](std::span<std::byte> page) { return walker->read_page(page); }));
    buf.grefs_ = walker->take_grefs();
    auto mapping = provider.map(config.frontend, buf.grefs_, config.access);
    if (!mapping.ok()) {
      return with_context(std::move(mapping).error(),
                          "mapping the frontend's " + std::to_string(config.pages) + " pages");
    }
    buf.mapping_ = std::move(mapping).value();
  } else {
    auto share = provider.share(config.frontend, config.pages, config.access);
    if (!share.ok()) {
      return with_context(std::move(share).error(),
                          "sharing " + std::to_string(config.pages) + " buffer pages");
    }
    buf.share_ = std::move(share).value();
    const std::span<const Gref> grefs = buf.share_.grefs();
    SHBUF_TRY(walk_directory(provider, config, true, *walker, [&](std::span<std::byte> page) {
      return walker->fill_page(page, grefs);
    }));
  }
  return buf;
}

std::span<std::byte> BackendBuffer::memory() const {
  return mode_ == AllocMode::kFrontend ? mapping_.memory() : share_.memory();
}

std::span<const Gref> BackendBuffer::buffer_grefs() const {
  return mode_ == AllocMode::kFrontend ? std::span<const Gref>(grefs_) : share_.grefs();
}

Status BackendBuffer::detach() {
  Status status;
  if (mapping_.valid()) status = mapping_.unmap();
  if (share_.valid()) status = share_.end();
  (void)take();  // empty whatever the outcome
  return status;
}

}  // namespace shbuf
