// Measurement kernels shared by `shbuf bench` and bench/shbuf_benchmarks.
//
// Every kernel runs one operation on a private simulator instance and returns
// how long it took. Three implementations of each operation:
//  - kOurs:  the library (FrontendBuffer::create/free/map/unmap,
//            BackendBuffer::attach/detach) over the sim provider, which
//            allocates and maps pages up front (see sim.h).
//  - kLimit: the same amount of shared memory straight from the kernel: a
//            memfd (shmem, as the sim's tmpfs files under /dev/shm) of the
//            same size, mmapped MAP_SHARED and populated with one madvise
//            (MADV_POPULATE_WRITE for new pages, MADV_POPULATE_READ for
//            mapping existing ones: a second mapping of the very pages the
//            peer shared), plus writing (or reading) the directory words the
//            operation writes (or reads); released with munmap + close.
//  - kNaive: the library's work done with one provider call per page: one
//            share() of one page per page, one map() of one gref per page,
//            as a direct port of per-page reference loops does.
// The kernel's vm.max_map_count bounds how many single-page mappings one
// process may hold, so kNaive holds at most kNaiveChunk of them at once and
// does larger buffers in chunks (Sample::chunks says how many).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "shbuf/core/page_directory.h"
#include "shbuf/core/result.h"

namespace shbuf::bench {

enum class Impl { kOurs, kLimit, kNaive };
// kCreate: frontend create, released by free. kAttach: backend attach (of a
// buffer the frontend created beforehand, untimed), released by detach.
// kMap: the frontend's map of the pages a backend allocated and granted
// (backend-allocated mode only; frontend buffer and backend attach made
// beforehand, untimed), released by unmap.
enum class Op { kCreate, kAttach, kMap };
// kRepeated: attach and map run again and again on one buffer, as a backend
// re-attaching a buffer it saw before (the pages were mapped once before).
// kFirst: every run on a buffer made for it, untimed, as a real
// create-then-attach or create-attach-then-map. Create is always first-time.
enum class Use { kRepeated, kFirst };

const char* to_string(Impl impl);
const char* to_string(Op op);
const char* release_name(Op op);

inline constexpr std::size_t kNaiveChunk = 32768;

struct Sample {
  double acquire_ns = 0;  // create or attach
  double release_ns = 0;  // free or detach
  std::size_t chunks = 1;
};

// Bytes of heap the process holds right now, as glibc's allocator counts
// them (mallinfo2: chunks in use plus mmap'd ones). Read, never replaced: the
// tool that links this keeps the allocator it was given.
std::size_t heap_live_bytes();

// A private sim instance with a frontend (domain 1) and a backend (domain 2)
// attached; removed again on destruction.
class Bench {
 public:
  static Result<std::unique_ptr<Bench>> open();
  ~Bench();
  Bench(const Bench&) = delete;
  Bench& operator=(const Bench&) = delete;

  // One acquire + release of `impl` doing `op` on n pages in `mode`.
  Result<Sample> run(Op op, AllocMode mode, Impl impl, std::size_t n,
                     Use use = Use::kRepeated);

  // Library heap bytes still held after acquiring (kOurs), i.e. the memory a
  // live buffer costs; the buffer is released again before returning.
  Result<std::size_t> heap_bytes(Op op, AllocMode mode, std::size_t n);

  // Makes `count` grants of the frontend live (held until the next call):
  // count <= 1000 as one share; more as shares of 1000 pages with holes of
  // 2048 free entries between them, so the free list is fragmented too.
  Status set_live_grants(std::size_t count);
  // One share() of `pages` pages and its end(), in nanoseconds.
  Result<double> grant_cycle(std::size_t pages);

  // Drops the buffers and memory kept between runs.
  void release_fixtures();

 private:
  struct State;
  explicit Bench(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

}  // namespace shbuf::bench
