#include "shbuf/core/frontend_buffer.h"

#include <string>
#include <utility>

#include "core/no_throw.h"

namespace shbuf {
namespace {

// Checks a request before anything is granted.
Status check_config(const FrontendBufferConfig& config) {
  if (config.pages == 0) return make_error(EINVAL, "a buffer of 0 pages is invalid");
  if (config.pages > config.max_pages) {
    return make_error(E2BIG, "a buffer of " + std::to_string(config.pages) +
                                 " pages is above the limit of " +
                                 std::to_string(config.max_pages) + " pages");
  }
  return {};
}

Error with_context(Error error, const std::string& context) {
  error.message = context + ": " + error.message;
  return error;
}

}  // namespace

Result<FrontendBuffer> FrontendBuffer::create(Provider& provider,
                                              const FrontendBufferConfig& config) {
  return without_throwing("creating a buffer", [&] { return create_inner(provider, config); });
}

Result<FrontendBuffer> FrontendBuffer::create_inner(Provider& provider,
                                                    const FrontendBufferConfig& config) {
  SHBUF_TRY(check_config(config));
  const std::size_t d = dir_pages(config.pages);
  FrontendBuffer buf;
  buf.provider_ = &provider;
  buf.mode_ = config.mode;
  buf.pages_ = config.pages;
  buf.max_pages_ = config.max_pages;
  buf.backend_ = config.backend;

  // In frontend-allocated mode the backend only reads the directory; in
  // backend-allocated mode it writes its grefs there.
  const Access dir_access =
      config.mode == AllocMode::kFrontend ? Access::kReadOnly : Access::kReadWrite;
  auto directory = provider.share(config.backend, d, dir_access);
  if (!directory.ok()) {
    return with_context(std::move(directory).error(),
                        "sharing " + std::to_string(d) + " directory pages");
  }
  buf.directory_ = std::move(directory).value();

  if (config.mode == AllocMode::kFrontend) {
    auto buffer = provider.share(config.backend, config.pages, config.buffer_access);
    if (!buffer.ok()) {
      return with_context(std::move(buffer).error(),
                          "sharing " + std::to_string(config.pages) + " buffer pages");
    }
    buf.buffer_ = std::move(buffer).value();
    SHBUF_TRY(encode_frontend_alloc(buf.directory_.grefs(), buf.buffer_.grefs(),
                                    buf.directory_.memory()));
  } else {
    SHBUF_TRY(encode_backend_alloc(buf.directory_.grefs(), config.pages, buf.directory_.memory()));
  }
  return buf;
}

Gref FrontendBuffer::directory_gref() const {
  return directory_.valid() ? directory_.grefs()[0] : kDirListEnd;
}

std::span<std::byte> FrontendBuffer::memory() const {
  if (mode_ == AllocMode::kFrontend) return buffer_.memory();
  return mapping_.memory();
}

std::span<const Gref> FrontendBuffer::buffer_grefs() const {
  if (mode_ == AllocMode::kFrontend) return buffer_.grefs();
  return backend_grefs_;
}

Status FrontendBuffer::map() {
  return without_throwing("mapping the backend's pages", [&] { return map_inner(); });
}

Status FrontendBuffer::map_inner() {
  if (!valid()) return make_error(EINVAL, "map: the buffer was freed or never created");
  if (mode_ != AllocMode::kBackend) {
    return make_error(EINVAL, "map: the frontend allocated this buffer; there is nothing to map");
  }
  if (mapping_.valid()) return make_error(EALREADY, "map: the buffer is already mapped");
  // The backend may rewrite the directory while we read it: the decoder copies
  // every word once and checks the links against the grefs we granted.
  DecodeOptions options;
  options.max_pages = max_pages_;
  options.dir_grefs = directory_.grefs();
  auto grefs = decode_page_directory(directory_.memory(), pages_, options);
  if (!grefs.ok()) {
    return with_context(std::move(grefs).error(), "map: the backend's page directory is invalid");
  }
  Status distinct = check_distinct_grefs(*grefs);
  if (!distinct.ok()) {
    return with_context(distinct.error(), "map: the backend's page directory is invalid");
  }
  auto mapping = provider_->map(backend_, *grefs, Access::kReadWrite);
  if (!mapping.ok()) {
    return with_context(std::move(mapping).error(),
                        "map: mapping the backend's " + std::to_string(pages_) + " pages");
  }
  mapping_ = std::move(mapping).value();
  backend_grefs_ = std::move(grefs).value();
  return {};
}

Status FrontendBuffer::unmap() {
  if (mode_ != AllocMode::kBackend || !mapping_.valid()) {
    return make_error(EINVAL, "unmap: the buffer is not mapped");
  }
  backend_grefs_.clear();
  backend_grefs_.shrink_to_fit();
  return mapping_.unmap();
}

Status FrontendBuffer::free() {
  if (!valid()) return {};
  Status first;
  auto keep_first = [&first](Status s) {
    if (first.ok() && !s.ok()) first = std::move(s);
  };
  if (mapping_.valid()) keep_first(unmap());
  keep_first(buffer_.end());
  keep_first(directory_.end());
  (void)take();  // empty whatever the outcome
  return first;
}

}  // namespace shbuf
