#include "bench_cases.h"

#include <fcntl.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shbuf/core/backend_buffer.h"
#include "shbuf/core/frontend_buffer.h"
#include "shbuf/grant/sim.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace shbuf::bench {
namespace {

constexpr DomId kFrontDom = 1;
constexpr DomId kBackDom = 2;
// 1 Mi grant entries per domain: room for a 1 GiB buffer next to the
// fragmented live-grant layout.
constexpr std::uint32_t kGrantFrames = 2048;

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

Error errno_error(const char* what) {
  const int e = errno;
  return make_error(e, std::string(what) + ": " + std::strerror(e));
}

// Shared memory straight from the kernel: the limit's building block.
struct Shm {
  int fd = -1;
  std::byte* p = nullptr;
  std::size_t bytes = 0;

  Shm() = default;
  Shm(Shm&& o) noexcept
      : fd(std::exchange(o.fd, -1)), p(std::exchange(o.p, nullptr)), bytes(o.bytes) {}
  Shm& operator=(Shm&& o) noexcept {
    if (this != &o) {
      reset();
      fd = std::exchange(o.fd, -1);
      p = std::exchange(o.p, nullptr);
      bytes = o.bytes;
    }
    return *this;
  }
  ~Shm() { reset(); }
  void reset() {
    if (p != nullptr) munmap(p, bytes);
    if (fd >= 0) close(fd);
    p = nullptr;
    fd = -1;
  }
};

// memfd + ftruncate + mmap + populate: n fresh zeroed pages.
Result<Shm> shm_create(std::size_t pages) {
  Shm s;
  s.bytes = pages * kPageSize;
  s.fd = memfd_create("shbuf-bench-limit", MFD_CLOEXEC);
  if (s.fd < 0) return errno_error("memfd_create");
  if (ftruncate(s.fd, off_t(s.bytes)) != 0) return errno_error("ftruncate");
  void* p = mmap(nullptr, s.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, s.fd, 0);
  if (p == MAP_FAILED) return errno_error("mmap");
  s.p = static_cast<std::byte*>(p);
  if (madvise(p, s.bytes, MADV_POPULATE_WRITE) != 0) return errno_error("madvise");
  return s;
}

// The directory words, as plainly as they can be written: link, then grefs.
void write_directory(std::byte* dir, std::size_t n, bool with_grefs) {
  const std::size_t d = dir_pages(n);
  Gref next = 100;
  for (std::size_t i = 0; i < d; ++i) {
    auto* w = reinterpret_cast<std::uint32_t*>(dir + i * kPageSize);
    w[0] = i + 1 < d ? Gref(10 + i + 1) : kDirListEnd;
    if (!with_grefs) continue;
    const std::size_t count = std::min(kGrefsPerDirPage, n - i * kGrefsPerDirPage);
    for (std::size_t j = 0; j < count; ++j) w[1 + j] = next++;
  }
}

// Only the gref slots, as a backend fills a directory in backend-allocated mode.
void write_directory_grefs(std::byte* dir, std::size_t n) {
  const std::size_t d = dir_pages(n);
  Gref next = 100;
  for (std::size_t i = 0; i < d; ++i) {
    auto* w = reinterpret_cast<std::uint32_t*>(dir + i * kPageSize);
    const std::size_t count = std::min(kGrefsPerDirPage, n - i * kGrefsPerDirPage);
    for (std::size_t j = 0; j < count; ++j) w[1 + j] = next++;
  }
}

}  // namespace

const char* to_string(Impl impl) {
  switch (impl) {
    case Impl::kOurs:
      return "ours";
    case Impl::kLimit:
      return "limit";
    case Impl::kNaive:
      return "naive";
  }
  return "?";
}

const char* to_string(Op op) {
  switch (op) {
    case Op::kCreate:
      return "frontend create";
    case Op::kAttach:
      return "backend attach";
    case Op::kMap:
      return "frontend map";
  }
  return "?";
}

const char* release_name(Op op) {
  switch (op) {
    case Op::kCreate:
      return "frontend free";
    case Op::kAttach:
      return "backend detach";
    case Op::kMap:
      return "frontend unmap";
  }
  return "?";
}

struct Bench::State {
  std::string path;
  std::unique_ptr<SimProvider> fe;
  std::unique_ptr<SimProvider> be;
  // The frontend's buffer a backend attach runs against, and for a map the
  // backend's attach of it.
  std::optional<FrontendBuffer> prepared;
  std::optional<BackendBuffer> attached;
  // The limit's counterpart of the directory a backend-allocated attach fills.
  Shm limit_dir;
  // The limit's counterpart of the frontend's directory a frontend-allocated
  // attach reads.
  Shm limit_fe_dir;
  std::vector<Share> live;

  // A frontend buffer of n pages in `mode`: the one kept, or a new one for
  // first-time use.
  Result<FrontendBuffer*> prepare(AllocMode mode, std::size_t n, Use use) {
    if (use == Use::kRepeated && !attached && prepared && prepared->mode() == mode &&
        prepared->pages() == n) {
      return &*prepared;
    }
    attached.reset();
    prepared.reset();
    FrontendBufferConfig c;
    c.backend = kBackDom;
    c.pages = n;
    c.mode = mode;
    auto fb = FrontendBuffer::create(*fe, c);
    if (!fb.ok()) return std::move(fb).error();
    prepared.emplace(std::move(fb).value());
    return &*prepared;
  }

  // A backend-allocated frontend buffer with the backend attached: what the
  // frontend maps.
  Result<FrontendBuffer*> prepare_map(std::size_t n, Use use) {
    if (use == Use::kRepeated && attached && prepared && prepared->pages() == n &&
        prepared->mode() == AllocMode::kBackend) {
      return &*prepared;
    }
    auto fb = prepare(AllocMode::kBackend, n, Use::kFirst);
    if (!fb.ok()) return std::move(fb).error();
    auto bb = BackendBuffer::attach(*be, attach_config(**fb));
    if (!bb.ok()) return std::move(bb).error();
    attached.emplace(std::move(bb).value());
    return *fb;
  }

  BackendBufferConfig attach_config(const FrontendBuffer& fb) const {
    BackendBufferConfig c;
    c.frontend = kFrontDom;
    c.directory_gref = fb.directory_gref();
    c.pages = fb.pages();
    c.mode = fb.mode();
    return c;
  }

  Result<Sample> ours(Op op, AllocMode mode, std::size_t n, Use use) {
    Sample s;
    if (op == Op::kCreate) {
      FrontendBufferConfig c;
      c.backend = kBackDom;
      c.pages = n;
      c.mode = mode;
      const auto t0 = Clock::now();
      auto fb = FrontendBuffer::create(*fe, c);
      s.acquire_ns = since(t0);
      if (!fb.ok()) return std::move(fb).error();
      const auto t1 = Clock::now();
      Status st = fb->free();
      s.release_ns = since(t1);
      SHBUF_TRY(st);
      return s;
    }
    if (op == Op::kMap) {
      auto fb = prepare_map(n, use);
      if (!fb.ok()) return std::move(fb).error();
      const auto t0 = Clock::now();
      Status st = (*fb)->map();
      s.acquire_ns = since(t0);
      SHBUF_TRY(st);
      if ((*fb)->memory().size() != n * kPageSize) return make_error(EPROTO, "map: wrong size");
      const auto t1 = Clock::now();
      st = (*fb)->unmap();
      s.release_ns = since(t1);
      SHBUF_TRY(st);
      return s;
    }
    auto fb = prepare(mode, n, use);
    if (!fb.ok()) return std::move(fb).error();
    const BackendBufferConfig c = attach_config(**fb);
    const auto t0 = Clock::now();
    auto bb = BackendBuffer::attach(*be, c);
    s.acquire_ns = since(t0);
    if (!bb.ok()) return std::move(bb).error();
    if (bb->memory().size() != n * kPageSize) return make_error(EPROTO, "attach: wrong size");
    const auto t1 = Clock::now();
    Status st = bb->detach();
    s.release_ns = since(t1);
    SHBUF_TRY(st);
    return s;
  }

  // `dir` sized and written for a buffer of n pages (a fresh one for
  // first-time use, as ours gets a directory made for it).
  static Status limit_directory(Shm& dir, std::size_t n, Use use, bool with_grefs) {
    const std::size_t d = dir_pages(n);
    if (use == Use::kFirst || dir.bytes != d * kPageSize || dir.fd < 0) {
      dir.reset();
      auto made = shm_create(d);
      if (!made.ok()) return std::move(made).error();
      dir = std::move(made).value();
      write_directory(dir.p, n, with_grefs);
    }
    return {};
  }

  // Reads the words of a directory of n pages out of `dir` with one pread()
  // per directory page: the least the OS must do to read a page of another
  // domain's that the process has not mapped, as an attach must read the
  // frontend's directory before it can map anything.
  static bool read_directory(const Shm& dir, std::size_t n) {
    std::array<std::uint32_t, 1 + kGrefsPerDirPage> words;
    for (std::size_t i = 0; i < dir_pages(n); ++i) {
      const std::size_t count = std::min(kGrefsPerDirPage, n - i * kGrefsPerDirPage);
      const std::size_t bytes = (1 + count) * sizeof(std::uint32_t);
      if (pread(dir.fd, words.data(), bytes, off_t(i * kPageSize)) != ssize_t(bytes)) return false;
    }
    return true;
  }

  // A second mapping of `pages` pages someone shared and one populate: the
  // limit of mapping a peer's pages, after reading `dir` when given (a
  // frontend-allocated attach). Sources differ in what they cost to map (on
  // the machines measured, pages first touched earlier cost up to 1.35x
  // more), so the limit maps the very pages ours maps.
  static Status second_mapping(std::span<std::byte> pages, Sample& s,
                               const std::vector<Gref>* words, const Shm* dir = nullptr) {
    const auto t0 = Clock::now();
    if (dir != nullptr && !read_directory(*dir, pages.size() / kPageSize)) {
      return errno_error("reading the limit's directory");
    }
    // mremap() of size 0 makes a second mapping of a shared one.
    void* p = mremap(pages.data(), 0, pages.size(), MREMAP_MAYMOVE);
    const bool ok = p != MAP_FAILED && madvise(p, pages.size(), MADV_POPULATE_READ) == 0;
    // The gref words a frontend reads back from its directory.
    std::vector<Gref> copy;
    if (ok && words != nullptr) copy.assign(words->begin(), words->end());
    s.acquire_ns = since(t0);
    if (!ok) return errno_error("mapping the limit's pages");
    const auto t1 = Clock::now();
    munmap(p, pages.size());
    s.release_ns = since(t1);
    return {};
  }

  Result<Sample> limit(Op op, AllocMode mode, std::size_t n, Use use) {
    Sample s;
    const std::size_t d = dir_pages(n);
    if (op == Op::kCreate) {
      const std::size_t pages = mode == AllocMode::kFrontend ? n + d : d;
      const auto t0 = Clock::now();
      auto shm = shm_create(pages);
      if (shm.ok()) write_directory(shm->p, n, mode == AllocMode::kFrontend);
      s.acquire_ns = since(t0);
      if (!shm.ok()) return std::move(shm).error();
      const auto t1 = Clock::now();
      shm->reset();
      s.release_ns = since(t1);
      return s;
    }
    if (op == Op::kMap) {
      auto fb = prepare_map(n, use);
      if (!fb.ok()) return std::move(fb).error();
      const std::vector<Gref> grefs(attached->buffer_grefs().begin(),
                                    attached->buffer_grefs().end());
      SHBUF_TRY(second_mapping(attached->memory(), s, &grefs));
      return s;
    }
    if (mode == AllocMode::kFrontend) {
      auto fb = prepare(mode, n, use);
      if (!fb.ok()) return std::move(fb).error();
      SHBUF_TRY(limit_directory(limit_fe_dir, n, use, true));
      SHBUF_TRY(second_mapping((*fb)->memory(), s, nullptr, &limit_fe_dir));
      return s;
    }
    if (use == Use::kFirst) {
      // As ours, which attaches to a directory made for it.
      auto fb = prepare(mode, n, use);
      if (!fb.ok()) return std::move(fb).error();
    }
    SHBUF_TRY(limit_directory(limit_dir, n, use, false));
    const auto t0 = Clock::now();
    auto shm = shm_create(n);
    if (shm.ok()) write_directory_grefs(limit_dir.p, n);
    s.acquire_ns = since(t0);
    if (!shm.ok()) return std::move(shm).error();
    const auto t1 = Clock::now();
    shm->reset();
    s.release_ns = since(t1);
    return s;
  }

  // n single-page shares, kNaiveChunk at a time; every chunk but the last is
  // ended (timed as release) before the next. Collects the grefs.
  Status naive_shares(SimProvider& p, DomId peer, std::size_t n, Access access, Sample& s,
                      std::vector<Share>& last, std::vector<Gref>& grefs) {
    s.chunks = 0;
    for (std::size_t done = 0; done < n;) {
      const std::size_t count = std::min(kNaiveChunk, n - done);
      last.clear();
      last.reserve(count);
      const auto t0 = Clock::now();
      for (std::size_t i = 0; i < count; ++i) {
        auto one = p.share(peer, 1, access);
        if (!one.ok()) return std::move(one).error();
        grefs.push_back(one->grefs()[0]);
        last.push_back(std::move(one).value());
      }
      s.acquire_ns += since(t0);
      done += count;
      ++s.chunks;
      if (done < n) {
        const auto t1 = Clock::now();
        for (Share& one : last) SHBUF_TRY(one.end());
        s.release_ns += since(t1);
      }
    }
    return {};
  }

  // One map() of one gref per gref, kNaiveChunk mappings held at a time.
  static Status naive_maps(SimProvider& p, DomId granter, std::span<const Gref> grefs,
                           Sample& s) {
    std::vector<Mapping> maps;
    s.chunks = 0;
    for (std::size_t done = 0; done < grefs.size();) {
      const std::size_t count = std::min(kNaiveChunk, grefs.size() - done);
      maps.clear();
      maps.reserve(count);
      auto t0 = Clock::now();
      for (std::size_t i = 0; i < count; ++i) {
        auto one = p.map(granter, grefs.subspan(done + i, 1), Access::kReadWrite);
        if (!one.ok()) return std::move(one).error();
        maps.push_back(std::move(one).value());
      }
      s.acquire_ns += since(t0);
      const auto t1 = Clock::now();
      for (Mapping& one : maps) SHBUF_TRY(one.unmap());
      s.release_ns += since(t1);
      done += count;
      ++s.chunks;
    }
    return {};
  }

  Result<Sample> naive(Op op, AllocMode mode, std::size_t n, Use use) {
    Sample s;
    const std::size_t d = dir_pages(n);
    if (op == Op::kCreate) {
      std::vector<Share> dirs;
      std::vector<Share> bufs;
      std::vector<Gref> grefs;
      grefs.reserve(n);
      const Access dir_access = mode == AllocMode::kFrontend ? Access::kReadOnly : Access::kReadWrite;
      auto t0 = Clock::now();
      for (std::size_t i = 0; i < d; ++i) {
        auto one = fe->share(kBackDom, 1, dir_access);
        if (!one.ok()) return std::move(one).error();
        dirs.push_back(std::move(one).value());
      }
      s.acquire_ns += since(t0);
      if (mode == AllocMode::kFrontend) {
        SHBUF_TRY(naive_shares(*fe, kBackDom, n, Access::kReadWrite, s, bufs, grefs));
      }
      t0 = Clock::now();
      for (std::size_t i = 0; i < d; ++i) {
        std::byte* page = dirs[i].memory().data();
        store_shared_gref(page, i + 1 < d ? dirs[i + 1].grefs()[0] : kDirListEnd);
        if (mode == AllocMode::kFrontend) {
          const std::size_t count = std::min(kGrefsPerDirPage, n - i * kGrefsPerDirPage);
          copy_grefs_to_shared(page + sizeof(Gref), grefs.data() + i * kGrefsPerDirPage, count);
        }
      }
      s.acquire_ns += since(t0);
      const auto t1 = Clock::now();
      for (Share& one : bufs) SHBUF_TRY(one.end());
      for (Share& one : dirs) SHBUF_TRY(one.end());
      s.release_ns += since(t1);
      return s;
    }
    if (op == Op::kMap) {
      // One map of one gref per page the backend granted.
      auto fb = prepare_map(n, use);
      if (!fb.ok()) return std::move(fb).error();
      SHBUF_TRY(naive_maps(*fe, kBackDom, attached->buffer_grefs(), s));
      return s;
    }
    auto fb = prepare(mode, n, use);
    if (!fb.ok()) return std::move(fb).error();
    const FrontendBuffer& front = **fb;
    // The walk is per directory page in both implementations.
    auto walk = [&](Access access, const std::vector<Gref>* fill) -> Result<std::vector<Gref>> {
      auto walker = DirectoryWalker::start(n, front.directory_gref());
      if (!walker.ok()) return std::move(walker).error();
      Gref gref = front.directory_gref();
      while (!walker->done()) {
        auto page = be->map(kFrontDom, std::span<const Gref>(&gref, 1), access);
        if (!page.ok()) return std::move(page).error();
        auto next = fill != nullptr ? walker->fill_page(page->memory(), *fill)
                                    : walker->read_page(page->memory());
        SHBUF_TRY(page->unmap());
        if (!next.ok()) return std::move(next).error();
        gref = *next;
      }
      return walker->take_grefs();
    };
    if (mode == AllocMode::kFrontend) {
      auto t0 = Clock::now();
      auto grefs = walk(Access::kReadOnly, nullptr);
      s.acquire_ns += since(t0);
      if (!grefs.ok()) return std::move(grefs).error();
      SHBUF_TRY(naive_maps(*be, kFrontDom, *grefs, s));
      return s;
    }
    std::vector<Share> bufs;
    std::vector<Gref> grefs;
    grefs.reserve(n);
    SHBUF_TRY(naive_shares(*be, kFrontDom, n, Access::kReadWrite, s, bufs, grefs));
    const auto t0 = Clock::now();
    auto walked = walk(Access::kReadWrite, &grefs);
    s.acquire_ns += since(t0);
    if (!walked.ok()) return std::move(walked).error();
    const auto t1 = Clock::now();
    for (Share& one : bufs) SHBUF_TRY(one.end());
    s.release_ns += since(t1);
    return s;
  }
};

Bench::Bench(std::unique_ptr<State> state) : s_(std::move(state)) {}

Bench::~Bench() {
  if (!s_) return;
  std::string path = s_->path;
  s_.reset();
  (void)SimProvider::reset(path);
  rmdir(path.c_str());
}

Result<std::unique_ptr<Bench>> Bench::open() {
  auto s = std::make_unique<State>();
  char tmpl[] = "/dev/shm/shbuf-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return errno_error("cannot create a directory under /dev/shm");
  s->path = tmpl;
  std::unique_ptr<Bench> b(new Bench(std::move(s)));  // removes the directory on failure
  SimOptions o;
  o.path = b->s_->path;
  o.max_grant_frames = kGrantFrames;
  o.domid = kFrontDom;
  auto fe = SimProvider::open(o);
  if (!fe.ok()) return std::move(fe).error();
  o.domid = kBackDom;
  auto be = SimProvider::open(o);
  if (!be.ok()) return std::move(be).error();
  b->s_->fe = std::move(fe).value();
  b->s_->be = std::move(be).value();
  return b;
}

Result<Sample> Bench::run(Op op, AllocMode mode, Impl impl, std::size_t n, Use use) {
  if (n == 0) return make_error(EINVAL, "a benchmark of 0 pages");
  if (op == Op::kMap && mode != AllocMode::kBackend) {
    return make_error(EINVAL, "a frontend maps a buffer only in backend-allocated mode");
  }
  switch (impl) {
    case Impl::kOurs:
      return s_->ours(op, mode, n, use);
    case Impl::kLimit:
      return s_->limit(op, mode, n, use);
    case Impl::kNaive:
      return s_->naive(op, mode, n, use);
  }
  return make_error(EINVAL, "unknown implementation");
}

std::size_t heap_live_bytes() {
  const struct mallinfo2 info = ::mallinfo2();
  return info.uordblks + info.hblkhd;
}

namespace {

// What a step added to the heap; 0 when it gave back more than it took.
std::size_t heap_growth(std::size_t before, std::size_t after) {
  return after > before ? after - before : 0;
}

}  // namespace

Result<std::size_t> Bench::heap_bytes(Op op, AllocMode mode, std::size_t n) {
  if (op == Op::kCreate) {
    FrontendBufferConfig c;
    c.backend = kBackDom;
    c.pages = n;
    c.mode = mode;
    const std::size_t before = heap_live_bytes();
    auto fb = FrontendBuffer::create(*s_->fe, c);
    if (!fb.ok()) return std::move(fb).error();
    const std::size_t after = heap_live_bytes();
    SHBUF_TRY(fb->free());
    return heap_growth(before, after);
  }
  if (op == Op::kMap) {
    auto fb = s_->prepare_map(n, Use::kRepeated);
    if (!fb.ok()) return std::move(fb).error();
    const std::size_t before = heap_live_bytes();
    SHBUF_TRY((*fb)->map());
    const std::size_t after = heap_live_bytes();
    SHBUF_TRY((*fb)->unmap());
    return heap_growth(before, after);
  }
  auto fb = s_->prepare(mode, n, Use::kRepeated);
  if (!fb.ok()) return std::move(fb).error();
  const BackendBufferConfig c = s_->attach_config(**fb);
  const std::size_t before = heap_live_bytes();
  auto bb = BackendBuffer::attach(*s_->be, c);
  if (!bb.ok()) return std::move(bb).error();
  const std::size_t after = heap_live_bytes();
  SHBUF_TRY(bb->detach());
  return heap_growth(before, after);
}

Status Bench::set_live_grants(std::size_t count) {
  s_->live.clear();
  std::vector<Share> holes;
  constexpr std::size_t kPiece = 1000;
  constexpr std::size_t kHole = 2048;
  while (count > 0) {
    const std::size_t take = count <= kPiece ? count : kPiece;
    auto piece = s_->fe->share(kBackDom, take, Access::kReadWrite);
    if (!piece.ok()) return std::move(piece).error();
    s_->live.push_back(std::move(piece).value());
    count -= take;
    if (count == 0) break;
    auto hole = s_->fe->share(kBackDom, kHole, Access::kReadWrite);
    if (!hole.ok()) return std::move(hole).error();
    holes.push_back(std::move(hole).value());
  }
  for (Share& h : holes) SHBUF_TRY(h.end());
  return {};
}

Result<double> Bench::grant_cycle(std::size_t pages) {
  const auto t0 = Clock::now();
  auto share = s_->fe->share(kBackDom, pages, Access::kReadWrite);
  if (!share.ok()) return std::move(share).error();
  SHBUF_TRY(share->end());
  return since(t0);
}

void Bench::release_fixtures() {
  s_->attached.reset();
  s_->prepared.reset();
  s_->limit_dir.reset();
  s_->limit_fe_dir.reset();
  s_->live.clear();
}

}  // namespace shbuf::bench
