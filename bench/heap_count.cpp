// Replacement global allocation functions that count the bytes live, so the
// benchmarks can tell what a buffer costs on the heap. They allocate with
// malloc and count malloc_usable_size, the memory really held.
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>

#include "bench_cases.h"

namespace {

std::atomic<std::size_t> g_live{0};

void* counted(void* p) {
  if (p == nullptr) throw std::bad_alloc();
  g_live.fetch_add(malloc_usable_size(p), std::memory_order_relaxed);
  return p;
}

void uncounted(void* p) noexcept {
  if (p == nullptr) return;
  g_live.fetch_sub(malloc_usable_size(p), std::memory_order_relaxed);
  std::free(p);
}

void* aligned(std::size_t size, std::align_val_t align) {
  const std::size_t a = std::max(static_cast<std::size_t>(align), sizeof(void*));
  void* p = nullptr;
  if (posix_memalign(&p, a, size == 0 ? 1 : size) != 0) p = nullptr;
  return counted(p);
}

}  // namespace

namespace shbuf::bench {
std::size_t heap_live_bytes() { return g_live.load(std::memory_order_relaxed); }
}  // namespace shbuf::bench

void* operator new(std::size_t size) { return counted(std::malloc(size == 0 ? 1 : size)); }
void* operator new[](std::size_t size) { return counted(std::malloc(size == 0 ? 1 : size)); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p != nullptr) g_live.fetch_add(malloc_usable_size(p), std::memory_order_relaxed);
  return p;
}
void* operator new[](std::size_t size, const std::nothrow_t& t) noexcept {
  return operator new(size, t);
}
void* operator new(std::size_t size, std::align_val_t align) { return aligned(size, align); }
void* operator new[](std::size_t size, std::align_val_t align) { return aligned(size, align); }
void operator delete(void* p) noexcept { uncounted(p); }
void operator delete[](void* p) noexcept { uncounted(p); }
void operator delete(void* p, std::size_t) noexcept { uncounted(p); }
void operator delete[](void* p, std::size_t) noexcept { uncounted(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { uncounted(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { uncounted(p); }
void operator delete(void* p, std::align_val_t) noexcept { uncounted(p); }
void operator delete[](void* p, std::align_val_t) noexcept { uncounted(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { uncounted(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { uncounted(p); }
