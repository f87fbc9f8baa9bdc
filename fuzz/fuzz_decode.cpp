// Fuzzes the page directory decoder with arbitrary pages, N and directory
// grefs. Whatever the input: no crash, no read outside the pages, and a
// success always means exactly N non-zero grefs.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "fuzz_input.h"
#include "shbuf/core/page_directory.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace shbuf;
  FuzzInput in{data, size};
  // N mostly small, sometimes around page boundaries, sometimes huge.
  const std::uint32_t raw_n = in.u32();
  const std::size_t n = (raw_n & 0x80000000u) ? raw_n : raw_n % 4100;
  const std::uint32_t flags = in.u32();
  DecodeOptions options;
  options.max_pages = (flags & 1) ? 3000 : kDefaultMaxPages;
  std::vector<Gref> dir_grefs;
  if (flags & 2) {
    const std::size_t count = (flags >> 8) % 6;
    for (std::size_t i = 0; i < count; ++i) dir_grefs.push_back(in.u32());
    options.dir_grefs = dir_grefs;
  }
  // The rest is the pages; a copy so that the decoder reads a buffer of
  // exactly this size (ASan catches any read past it).
  std::vector<std::byte> pages(in.size);
  if (in.size != 0) std::memcpy(pages.data(), in.data, in.size);

  auto result = decode_page_directory(pages, n, options);
  if (result.ok()) {
    if (result->size() != n) std::abort();
    for (Gref g : *result) {
      if (g == kDirListEnd) std::abort();
    }
    if (pages.size() != dir_pages(n) * kPageSize) std::abort();
  } else if (result.error().message.empty()) {
    std::abort();
  }

  // The page-at-a-time walker over the same bytes must agree.
  auto walker = DirectoryWalker::start(n, dir_grefs.empty() ? 0 : dir_grefs[0], options.max_pages);
  if (walker.ok()) {
    for (std::size_t i = 0; i * kPageSize + kPageSize <= pages.size() && !walker->done(); ++i) {
      auto link = walker->read_page(std::span(pages).subspan(i * kPageSize, kPageSize));
      if (!link.ok()) break;
    }
    if (walker->done() && result.ok() && walker->grefs() != *result) std::abort();
  }

  // Filling a copy with N grefs must keep every link untouched.
  if (result.ok()) {
    std::vector<std::byte> copy = pages;
    std::vector<Gref> grefs(n, 7);
    if (!fill_page_directory(copy, grefs, options).ok()) std::abort();
    for (std::size_t i = 0; i < dir_pages(n); ++i) {
      if (std::memcmp(copy.data() + i * kPageSize, pages.data() + i * kPageSize, 4) != 0) {
        std::abort();
      }
    }
  }
  return 0;
}
