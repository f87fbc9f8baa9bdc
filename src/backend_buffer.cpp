#include "shbuf/backend_buffer.h"

#include <string>
#include <utility>

namespace shbuf {
namespace {

Error with_context(Error error, const std::string& context) {
  error.message = context + ": " + error.message;
  return error;
}

std::string dir_page_name(std::size_t index, Gref gref) {
  return "directory page " + std::to_string(index) + " (gref " + std::to_string(gref) + ")";
}

// Walks the frontend's chain one page at a time: each page is mapped, handed to
// `visit` (which copies out or writes what it must) and unmapped before the
// next. The walker's own count bounds the loop, never the pages.
template <typename Visit>
Status walk_directory(Provider& provider, const BackendBufferConfig& config, Access access,
                      DirectoryWalker& walker, Visit visit) {
  Gref gref = config.directory_gref;
  for (std::size_t index = 0; !walker.done(); ++index) {
    const Gref one[] = {gref};
    auto page = provider.map(config.frontend, one, access);
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
  return {};
}

}  // namespace

Result<BackendBuffer> BackendBuffer::attach(Provider& provider, const BackendBufferConfig& config) {
  if (config.directory_gref == kDirListEnd) {
    return make_error(EINVAL, "directory gref 0 is never a valid gref");
  }
  auto walker = DirectoryWalker::start(config.pages, config.directory_gref, config.max_pages);
  if (!walker.ok()) return std::move(walker).error();

  BackendBuffer buf;
  buf.mode_ = config.mode;
  buf.pages_ = config.pages;
  if (config.mode == AllocMode::kFrontend) {
    SHBUF_TRY(walk_directory(provider, config, Access::kReadOnly, *walker,
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
    SHBUF_TRY(
        walk_directory(provider, config, Access::kReadWrite, *walker,
                       [&](std::span<std::byte> page) { return walker->fill_page(page, grefs); }));
  }
  return buf;
}

BackendBuffer& BackendBuffer::operator=(BackendBuffer&& other) noexcept {
  if (this != &other) {
    (void)detach();
    mode_ = other.mode_;
    pages_ = std::exchange(other.pages_, 0);
    grefs_ = std::move(other.grefs_);
    mapping_ = std::move(other.mapping_);
    share_ = std::move(other.share_);
  }
  return *this;
}

BackendBuffer::~BackendBuffer() {
  (void)detach();
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
  grefs_.clear();
  grefs_.shrink_to_fit();
  pages_ = 0;
  return status;
}

}  // namespace shbuf
