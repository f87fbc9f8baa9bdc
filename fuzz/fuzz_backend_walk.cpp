// Fuzzes the backend's attach over the simulator with a hostile frontend
// that controls every word of its directory, how many directory pages it
// grants and how. Whatever it does: no crash, no hang, never more maps than
// N + D pages, and nothing stays mapped or granted once both sides let go.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "fuzz_input.h"
#include "fuzz_sim.h"
#include "shbuf/core/backend_buffer.h"
#include "shbuf/grant/sim.h"

namespace {

using namespace shbuf;

FuzzSimDomains& domains() {
  static FuzzSimDomains d("walk");
  return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzSimDomains& d = domains();
  FuzzInput in{data, size};
  const std::uint32_t head = in.u32();
  const std::size_t n = 1 + head % 2600;                 // claimed buffer pages
  const std::size_t granted_dir = 1 + (head >> 12) % 4;  // directory pages really granted
  const std::size_t granted_buf = (head >> 16) % 64;     // buffer pages really granted
  const Access dir_access = (head >> 24) & 1 ? Access::kReadOnly : Access::kReadWrite;
  const AllocMode mode = (head >> 25) & 1 ? AllocMode::kBackend : AllocMode::kFrontend;
  const DirectoryRead way = (head >> 26) & 1 ? DirectoryRead::kMap : DirectoryRead::kCopy;

  auto dir = d.frontend->share(0, granted_dir, dir_access);
  if (!dir.ok()) std::abort();
  Share buffer;
  if (granted_buf != 0) {
    auto b = d.frontend->share(0, granted_buf, Access::kReadWrite);
    if (!b.ok()) std::abort();
    buffer = std::move(b).value();
  }
  // Each word: an exact value, or (most often) a gref the frontend granted,
  // so that chains get deep enough to be interesting.
  std::byte* pages = dir->memory().data();
  for (std::size_t w = 0; w < granted_dir * 1024 && in.size >= 4; ++w) {
    const std::uint32_t v = in.u32();
    Gref g = v >> 2;
    switch (v & 3) {
      case 0:
        break;
      case 1:
        g = dir->grefs()[g % granted_dir];
        break;
      case 2:
        g = buffer.valid() ? buffer.grefs()[g % granted_buf] : g;
        break;
      case 3:
        g = (g & 1) ? 0 : dir->grefs()[(g >> 1) % granted_dir];
        break;
    }
    store_shared_gref(pages + w * 4, g);
  }

  const ProviderStats before = d.backend->stats();
  BackendBufferConfig config;
  config.frontend = FuzzSimDomains::kFrontend;
  config.directory_gref = dir->grefs()[0];
  config.pages = n;
  config.mode = mode;
  config.directory_read = way;
  {
    auto attached = BackendBuffer::attach(*d.backend, config);
    const ProviderStats after = d.backend->stats();
    if (after.pages_mapped - before.pages_mapped > n + dir_pages(n)) std::abort();
    // At most one copy per directory page read, and one more per page written.
    if (after.copy_calls - before.copy_calls > 2 * dir_pages(n)) std::abort();
    if (attached.ok()) {
      if (attached->memory().size() != n * kPageSize) std::abort();
    } else if (attached.error().message.empty()) {
      std::abort();
    }
  }
  // Attach and its destruction left no mapping of the frontend's pages: so
  // ending every grant succeeds (EBUSY would mean a page is still mapped)
  // and the simulator records no mapping at all.
  auto st = d.backend->status();
  if (!st.ok() || !st->mappings.empty()) std::abort();
  if (buffer.valid() && !buffer.end().ok()) std::abort();
  if (!dir->end().ok()) std::abort();
  return 0;
}
