// The C API (include/shbuf.h) over the C++ library: handles that own the C++
// objects, argument checks, and the errors turned into codes and messages.
#include "shbuf.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstddef>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "shbuf/core/backend_buffer.h"
#include "shbuf/core/frontend_buffer.h"
#include "shbuf/core/provider.h"
#include "shbuf/core/result.h"
#include "shbuf/grant/sim.h"

// The C header restates the core's constants for C; they must agree.
static_assert(SHBUF_PAGE_SIZE == shbuf::kPageSize);
static_assert(SHBUF_GREFS_PER_DIR_PAGE == shbuf::kGrefsPerDirPage);
#include "shbuf/grant/xen.h"

namespace {

using shbuf::Error;
using shbuf::make_error;
using shbuf::Result;
using shbuf::Status;

// What is recorded when even the message cannot be built.
constexpr const char* kNoMemoryText = "shbuf: out of memory while describing an error (ENOMEM)";

// One last-error message. Writers may race on a provider handle: the mutex
// keeps the string itself consistent.
class ErrorSlot {
 public:
  void set(const char* text) noexcept {
    try {
      std::lock_guard lock(mutex_);
      try {
        text_.assign(text);
        fixed_ = nullptr;
      } catch (...) {
        fixed_ = kNoMemoryText;
      }
    } catch (...) {
      // The mutex could not be taken; the thread's own slot still has it.
    }
  }
  const char* get() const noexcept {
    try {
      std::lock_guard lock(mutex_);
      return fixed_ != nullptr ? fixed_ : text_.c_str();
    } catch (...) {
      return "";
    }
  }

 private:
  mutable std::mutex mutex_;
  std::string text_;
  const char* fixed_ = nullptr;
};

thread_local ErrorSlot t_error;

std::mutex g_log_mutex;
shbuf_log_fn* g_log_fn = nullptr;
void* g_log_user = nullptr;

void log_error(const char* text) noexcept {
  shbuf_log_fn* fn = nullptr;
  void* user = nullptr;
  try {
    std::lock_guard lock(g_log_mutex);
    fn = g_log_fn;
    user = g_log_user;
  } catch (...) {
    return;
  }
  if (fn != nullptr) fn(user, SHBUF_LOG_ERROR, text);
}

void record(ErrorSlot* handle, const char* text) noexcept {
  if (handle != nullptr) handle->set(text);
  t_error.set(text);
  log_error(text);
}

// Records "func: message (ENAME)" and returns the negative code.
int report(const char* func, ErrorSlot* handle, int code, std::string_view message) noexcept {
  if (code <= 0) code = EIO;
  try {
    std::string text;
    text.reserve(std::strlen(func) + message.size() + 24);
    text.append(func).append(": ").append(message);
    text.append(" (").append(shbuf::errno_name(code)).append(")");
    record(handle, text.c_str());
  } catch (...) {
    record(handle, kNoMemoryText);
  }
  return -code;
}

int report(const char* func, ErrorSlot* handle, const Error& error) noexcept {
  return report(func, handle, error.code, error.message);
}

int value_of(const Status&) {
  return 0;
}
int value_of(const Result<int>& r) {
  return *r;
}

// Runs one entry point: its Status or Result<int> becomes 0, the value or a
// recorded negative code; an exception becomes ENOMEM or EIO.
template <typename F>
int guard(const char* func, ErrorSlot* handle, F&& f) noexcept {
  try {
    auto r = std::forward<F>(f)();
    if (r.ok()) return value_of(r);
    return report(func, handle, r.error());
  } catch (const std::bad_alloc&) {
    return report(func, handle, ENOMEM, "out of memory");
  } catch (const std::length_error&) {
    return report(func, handle, ENOMEM, "out of memory");
  } catch (const std::exception& e) {
    const char* what = e.what();
    try {
      return report(func, handle, EIO, std::string("unexpected exception: ") + what);
    } catch (...) {
      return report(func, handle, EIO, "unexpected exception");
    }
  } catch (...) {
    return report(func, handle, EIO, "unexpected exception");
  }
}

Error null_arg(const char* name) {
  return make_error(EINVAL, std::string(name) + " is NULL");
}

// Shows a caller's string as text, with anything not printable as \xHH.
std::string printable(const char* s) {
  std::string out;
  for (const char* p = s; *p != '\0'; ++p) {
    const auto c = static_cast<unsigned char>(*p);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// Structs that start with their own size: fields past the caller's size keep
// their zero defaults; a larger struct is accepted only if what this library
// does not know of it is zero. `v1_size` is the end of the first version's
// last field.
constexpr std::size_t kMaxStructSize = 4096;

template <typename T>
Status read_struct(const T* user, T& ours, const char* arg, const char* type, std::size_t v1_size) {
  ours = T{};
  const std::size_t size = user->size;
  const std::string expected =
      "sizeof(struct " + std::string(type) + ") is " + std::to_string(sizeof(T));
  if (size < v1_size || size > kMaxStructSize) {
    return make_error(EINVAL, std::string(arg) + "->size is " + std::to_string(size) +
                                  ", not the size of a struct " + type + " (" + expected +
                                  "; set it to that)");
  }
  const auto* bytes = reinterpret_cast<const unsigned char*>(user);
  if (size > sizeof(T) &&
      std::any_of(bytes + sizeof(T), bytes + size, [](unsigned char b) { return b != 0; })) {
    return make_error(EINVAL, std::string(arg) + "->size is " + std::to_string(size) + " but " +
                                  expected +
                                  " in this library, and the bytes past it are not zero: "
                                  "options this version of shbuf does not know");
  }
  std::memcpy(static_cast<void*>(&ours), user, std::min(size, sizeof(T)));
  return {};
}

Result<shbuf::DomId> to_domid(std::uint32_t value, const std::string& what) {
  if (value > 0xffff) {
    return make_error(EINVAL,
                      what + " is " + std::to_string(value) + ", not a domain id (0..65535)");
  }
  return shbuf::DomId(value);
}

Result<shbuf::AllocMode> to_mode(int value, const std::string& what) {
  if (value == SHBUF_FRONTEND_ALLOC) return shbuf::AllocMode::kFrontend;
  if (value == SHBUF_BACKEND_ALLOC) return shbuf::AllocMode::kBackend;
  return make_error(EINVAL, what + " is " + std::to_string(value) +
                                " (expected SHBUF_FRONTEND_ALLOC or SHBUF_BACKEND_ALLOC)");
}

Result<shbuf::Access> to_access(int value, const std::string& what) {
  if (value == SHBUF_ACCESS_READ_WRITE) return shbuf::Access::kReadWrite;
  if (value == SHBUF_ACCESS_READ_ONLY) return shbuf::Access::kReadOnly;
  return make_error(EINVAL, what + " is " + std::to_string(value) +
                                " (expected SHBUF_ACCESS_READ_WRITE or SHBUF_ACCESS_READ_ONLY)");
}

Result<shbuf::DirectoryRead> to_directory_read(int value, const std::string& what) {
  switch (value) {
    case SHBUF_DIRECTORY_READ_AUTO:
      return shbuf::DirectoryRead::kAuto;
    case SHBUF_DIRECTORY_READ_COPY:
      return shbuf::DirectoryRead::kCopy;
    case SHBUF_DIRECTORY_READ_MAP:
      return shbuf::DirectoryRead::kMap;
    default:
      return make_error(EINVAL, what + " is " + std::to_string(value) +
                                    " (expected SHBUF_DIRECTORY_READ_AUTO, _COPY or _MAP)");
  }
}

// The C++ messages of FrontendBuffer::map() and unmap() start with the
// operation's name, which the C function name already says.
Status without_prefix(Status status, std::string_view prefix) {
  if (status.ok()) return status;
  Error error = status.error();
  if (std::string_view(error.message).starts_with(prefix)) error.message.erase(0, prefix.size());
  return error;
}

// Copies grefs into a caller's array of `count`.
Result<int> copy_grefs(std::span<const shbuf::Gref> grefs, std::uint32_t* out, std::size_t count) {
  if (out == nullptr) return null_arg("out");
  if (count < grefs.size()) {
    return make_error(ERANGE, "out has room for " + std::to_string(count) +
                                  " grefs but the buffer has " + std::to_string(grefs.size()));
  }
  if (grefs.size() > std::size_t(INT_MAX)) {
    return make_error(EOVERFLOW, "the buffer's " + std::to_string(grefs.size()) +
                                     " grefs are more than an int can count");
  }
  std::copy(grefs.begin(), grefs.end(), out);
  return int(grefs.size());
}

void* data_of(std::span<std::byte> memory) {
  return memory.empty() ? nullptr : static_cast<void*>(memory.data());
}

}  // namespace

struct shbuf_provider {
  std::unique_ptr<shbuf::Provider> impl;
  // The caller's handle and one per live buffer.
  std::atomic<std::size_t> refs{1};
  mutable ErrorSlot error;
};

struct shbuf_frontend {
  shbuf_provider* owner = nullptr;
  shbuf::FrontendBuffer buf;
  mutable ErrorSlot error;
};

struct shbuf_backend {
  shbuf_provider* owner = nullptr;
  shbuf::BackendBuffer buf;
  mutable ErrorSlot error;
};

namespace {

void acquire(shbuf_provider* p) noexcept {
  p->refs.fetch_add(1, std::memory_order_relaxed);
}

void release(shbuf_provider* p) noexcept {
  if (p->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete p;
}

ErrorSlot* slot_of(const shbuf_provider* p) {
  return p != nullptr ? &p->error : nullptr;
}
ErrorSlot* slot_of(const shbuf_frontend* h) {
  return h != nullptr ? &h->error : nullptr;
}
ErrorSlot* slot_of(const shbuf_backend* h) {
  return h != nullptr ? &h->error : nullptr;
}

// The end of the first version of each struct.
constexpr std::size_t kProviderOptionsV1 =
    offsetof(shbuf_provider_options, sim_faults) + sizeof(const char*);
constexpr std::size_t kFrontendConfigV1 =
    offsetof(shbuf_frontend_config, buffer_access) + sizeof(int);
constexpr std::size_t kBackendConfigV1 =
    offsetof(shbuf_backend_config, directory_read) + sizeof(int);

Result<std::unique_ptr<shbuf::Provider>> open_named(const shbuf_provider_options& o) {
  const std::string name = o.name != nullptr ? o.name : "sim";
  const bool has_path = o.sim_path != nullptr && *o.sim_path != '\0';
  const bool has_faults = o.sim_faults != nullptr && *o.sim_faults != '\0';
  if (name == "sim") {
    auto domid = to_domid(o.domid, "opts->domid");
    if (!domid.ok()) return std::move(domid).error();
    shbuf::SimOptions sim;
    if (has_path) sim.path = o.sim_path;
    sim.domid = *domid;
    if (o.max_grant_frames != 0) sim.max_grant_frames = o.max_grant_frames;
    if (has_faults) sim.faults = o.sim_faults;
    auto p = shbuf::SimProvider::open(sim);
    if (!p.ok()) return std::move(p).error();
    return std::unique_ptr<shbuf::Provider>(std::move(p).value());
  }
  if (name == "xen") {
    if (has_path || o.max_grant_frames != 0 || has_faults) {
      const char* field = has_path                  ? "opts->sim_path"
                          : o.max_grant_frames != 0 ? "opts->max_grant_frames"
                                                    : "opts->sim_faults";
      return make_error(EINVAL, std::string(field) + " is for the sim provider only, not xen");
    }
    return shbuf::open_xen_provider();
  }
  return make_error(
      EINVAL, "unknown grant provider '" + printable(name.c_str()) + "' (expected sim or xen)");
}

}  // namespace

extern "C" {

const char* shbuf_version(void) {
  return SHBUF_VERSION_STRING;
}

const char* shbuf_last_error(void) {
  return t_error.get();
}

void shbuf_set_logger(shbuf_log_fn* fn, void* user) {
  try {
    std::lock_guard lock(g_log_mutex);
    g_log_fn = fn;
    g_log_user = user;
  } catch (...) {
    // std::mutex::lock does not fail on a mutex that is used correctly.
  }
}

int shbuf_provider_open(const struct shbuf_provider_options* opts, shbuf_provider** out) {
  return guard("shbuf_provider_open", nullptr, [&]() -> Status {
    if (out == nullptr) return null_arg("out");
    *out = nullptr;
    shbuf_provider_options o{};
    if (opts != nullptr) {
      SHBUF_TRY(read_struct(opts, o, "opts", "shbuf_provider_options", kProviderOptionsV1));
    }
    auto handle = std::make_unique<shbuf_provider>();
    auto p = open_named(o);
    if (!p.ok()) return std::move(p).error();
    handle->impl = std::move(p).value();
    *out = handle.release();
    return {};
  });
}

void shbuf_provider_close(shbuf_provider* provider) {
  if (provider != nullptr) release(provider);
}

int shbuf_provider_domid(const shbuf_provider* provider) {
  return guard("shbuf_provider_domid", slot_of(provider), [&]() -> Result<int> {
    if (provider == nullptr) return null_arg("provider");
    return int(provider->impl->self());
  });
}

const char* shbuf_provider_name(const shbuf_provider* provider) {
  if (provider == nullptr) {
    report("shbuf_provider_name", nullptr, EINVAL, "provider is NULL");
    return nullptr;
  }
  return provider->impl->name() == "xen" ? "xen" : "sim";
}

int shbuf_provider_pending_pages(shbuf_provider* provider, size_t* pages) {
  return guard("shbuf_provider_pending_pages", slot_of(provider), [&]() -> Status {
    if (provider == nullptr) return null_arg("provider");
    if (pages == nullptr) return null_arg("pages");
    *pages = provider->impl->pending_pages();
    return {};
  });
}

const char* shbuf_provider_last_error(const shbuf_provider* provider) {
  return provider != nullptr ? provider->error.get() : "";
}

int shbuf_frontend_create(shbuf_provider* provider, const struct shbuf_frontend_config* config,
                          shbuf_frontend** out) {
  return guard("shbuf_frontend_create", slot_of(provider), [&]() -> Status {
    if (out == nullptr) return null_arg("out");
    *out = nullptr;
    if (provider == nullptr) return null_arg("provider");
    if (config == nullptr) return null_arg("config");
    shbuf_frontend_config c{};
    SHBUF_TRY(read_struct(config, c, "config", "shbuf_frontend_config", kFrontendConfigV1));
    auto backend = to_domid(c.backend, "config->backend");
    if (!backend.ok()) return std::move(backend).error();
    auto mode = to_mode(c.mode, "config->mode");
    if (!mode.ok()) return std::move(mode).error();
    auto access = to_access(c.buffer_access, "config->buffer_access");
    if (!access.ok()) return std::move(access).error();

    shbuf::FrontendBufferConfig cfg;
    cfg.backend = *backend;
    cfg.pages = c.pages;
    cfg.mode = *mode;
    if (c.max_pages != 0) cfg.max_pages = c.max_pages;
    cfg.buffer_access = *access;

    auto handle = std::make_unique<shbuf_frontend>();
    auto buf = shbuf::FrontendBuffer::create(*provider->impl, cfg);
    if (!buf.ok()) return std::move(buf).error();
    handle->buf = std::move(buf).value();
    handle->owner = provider;
    acquire(provider);
    *out = handle.release();
    return {};
  });
}

int shbuf_frontend_map(shbuf_frontend* frontend) {
  return guard("shbuf_frontend_map", slot_of(frontend), [&]() -> Status {
    if (frontend == nullptr) return null_arg("frontend");
    return without_prefix(frontend->buf.map(), "map: ");
  });
}

int shbuf_frontend_unmap(shbuf_frontend* frontend) {
  return guard("shbuf_frontend_unmap", slot_of(frontend), [&]() -> Status {
    if (frontend == nullptr) return null_arg("frontend");
    return without_prefix(frontend->buf.unmap(), "unmap: ");
  });
}

int shbuf_frontend_free(shbuf_frontend* frontend) {
  if (frontend == nullptr) return 0;
  shbuf_provider* owner = frontend->owner;
  const int rc =
      guard("shbuf_frontend_free", &owner->error, [&]() -> Status { return frontend->buf.free(); });
  delete frontend;
  release(owner);
  return rc;
}

void* shbuf_frontend_data(const shbuf_frontend* frontend) {
  if (frontend == nullptr) {
    report("shbuf_frontend_data", nullptr, EINVAL, "frontend is NULL");
    return nullptr;
  }
  return data_of(frontend->buf.memory());
}

size_t shbuf_frontend_size(const shbuf_frontend* frontend) {
  if (frontend == nullptr) {
    report("shbuf_frontend_size", nullptr, EINVAL, "frontend is NULL");
    return 0;
  }
  return frontend->buf.memory().size();
}

size_t shbuf_frontend_pages(const shbuf_frontend* frontend) {
  if (frontend == nullptr) {
    report("shbuf_frontend_pages", nullptr, EINVAL, "frontend is NULL");
    return 0;
  }
  return frontend->buf.pages();
}

uint32_t shbuf_frontend_directory_gref(const shbuf_frontend* frontend) {
  if (frontend == nullptr) {
    report("shbuf_frontend_directory_gref", nullptr, EINVAL, "frontend is NULL");
    return 0;
  }
  return frontend->buf.directory_gref();
}

int shbuf_frontend_grefs(const shbuf_frontend* frontend, uint32_t* out, size_t count) {
  return guard("shbuf_frontend_grefs", slot_of(frontend), [&]() -> Result<int> {
    if (frontend == nullptr) return null_arg("frontend");
    if (out == nullptr) return null_arg("out");
    if (frontend->buf.mode() == shbuf::AllocMode::kBackend && !frontend->buf.mapped()) {
      return make_error(EINVAL,
                        "the buffer is not mapped: in backend-allocated mode its grefs are the "
                        "backend's, read by shbuf_frontend_map()");
    }
    return copy_grefs(frontend->buf.buffer_grefs(), out, count);
  });
}

const char* shbuf_frontend_last_error(const shbuf_frontend* frontend) {
  return frontend != nullptr ? frontend->error.get() : "";
}

int shbuf_backend_attach(shbuf_provider* provider, const struct shbuf_backend_config* config,
                         shbuf_backend** out) {
  return guard("shbuf_backend_attach", slot_of(provider), [&]() -> Status {
    if (out == nullptr) return null_arg("out");
    *out = nullptr;
    if (provider == nullptr) return null_arg("provider");
    if (config == nullptr) return null_arg("config");
    shbuf_backend_config c{};
    SHBUF_TRY(read_struct(config, c, "config", "shbuf_backend_config", kBackendConfigV1));
    auto frontend = to_domid(c.frontend, "config->frontend");
    if (!frontend.ok()) return std::move(frontend).error();
    auto mode = to_mode(c.mode, "config->mode");
    if (!mode.ok()) return std::move(mode).error();
    auto access = to_access(c.access, "config->access");
    if (!access.ok()) return std::move(access).error();
    auto read = to_directory_read(c.directory_read, "config->directory_read");
    if (!read.ok()) return std::move(read).error();

    shbuf::BackendBufferConfig cfg;
    cfg.frontend = *frontend;
    cfg.directory_gref = c.directory_gref;
    cfg.pages = c.pages;
    cfg.mode = *mode;
    if (c.max_pages != 0) cfg.max_pages = c.max_pages;
    cfg.access = *access;
    cfg.directory_read = *read;

    auto handle = std::make_unique<shbuf_backend>();
    auto buf = shbuf::BackendBuffer::attach(*provider->impl, cfg);
    if (!buf.ok()) return std::move(buf).error();
    handle->buf = std::move(buf).value();
    handle->owner = provider;
    acquire(provider);
    *out = handle.release();
    return {};
  });
}

int shbuf_backend_detach(shbuf_backend* backend) {
  if (backend == nullptr) return 0;
  shbuf_provider* owner = backend->owner;
  const int rc = guard("shbuf_backend_detach", &owner->error,
                       [&]() -> Status { return backend->buf.detach(); });
  delete backend;
  release(owner);
  return rc;
}

void* shbuf_backend_data(const shbuf_backend* backend) {
  if (backend == nullptr) {
    report("shbuf_backend_data", nullptr, EINVAL, "backend is NULL");
    return nullptr;
  }
  return data_of(backend->buf.memory());
}

size_t shbuf_backend_size(const shbuf_backend* backend) {
  if (backend == nullptr) {
    report("shbuf_backend_size", nullptr, EINVAL, "backend is NULL");
    return 0;
  }
  return backend->buf.memory().size();
}

size_t shbuf_backend_pages(const shbuf_backend* backend) {
  if (backend == nullptr) {
    report("shbuf_backend_pages", nullptr, EINVAL, "backend is NULL");
    return 0;
  }
  return backend->buf.pages();
}

int shbuf_backend_grefs(const shbuf_backend* backend, uint32_t* out, size_t count) {
  return guard("shbuf_backend_grefs", slot_of(backend), [&]() -> Result<int> {
    if (backend == nullptr) return null_arg("backend");
    return copy_grefs(backend->buf.buffer_grefs(), out, count);
  });
}

const char* shbuf_backend_last_error(const shbuf_backend* backend) {
  return backend != nullptr ? backend->error.get() : "";
}

int shbuf_sim_usage(const char* sim_path, size_t* grants, size_t* mappings) {
  return guard("shbuf_sim_usage", nullptr, [&]() -> Status {
    if (grants == nullptr) return null_arg("grants");
    if (mappings == nullptr) return null_arg("mappings");
    auto st = shbuf::SimProvider::status(sim_path != nullptr ? sim_path : "");
    if (!st.ok()) return std::move(st).error();
    std::size_t mapped = 0;
    for (const auto& m : st->mappings) mapped += m.count;
    *grants = st->grants.size();
    *mappings = mapped;
    return {};
  });
}

int shbuf_sim_reset(const char* sim_path) {
  return guard("shbuf_sim_reset", nullptr, [&]() -> Status {
    return shbuf::SimProvider::reset(sim_path != nullptr ? sim_path : "");
  });
}

}  // extern "C"
