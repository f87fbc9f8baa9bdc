// The page directory codec: round trips, byte-identity with the Linux
// frontend's layout, and one test per refusal.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "sanitizer.h"
#include "shbuf/core/page_directory.h"

namespace shbuf {
namespace {

// The Linux frontend's layout, restated from its structures: a page is
// {grant_ref_t gref_dir_next_page; grant_ref_t gref[]}, the directory comes from
// a zeroed allocation, full pages link to grefs[i + 1] and the last to 0;
// in frontend-allocated mode buffer grefs follow the directory grefs.
struct RefPageDirectory {
  std::uint32_t gref_dir_next_page;
  std::uint32_t gref[1];
};
constexpr std::size_t kRefGrefsPerPage =
    (4096 - offsetof(RefPageDirectory, gref)) / sizeof(std::uint32_t);

std::vector<std::byte> reference_layout(const std::vector<Gref>& all_grefs, std::size_t num_pages,
                                        bool be_alloc) {
  const std::size_t num_pages_dir = (num_pages + kRefGrefsPerPage - 1) / kRefGrefsPerPage;
  std::vector<std::byte> directory(num_pages_dir * 4096);  // zeroed, as kcalloc
  unsigned char* ptr = reinterpret_cast<unsigned char*>(directory.data());
  if (be_alloc) {
    for (std::size_t i = 0; i + 1 < num_pages_dir; ++i) {
      reinterpret_cast<RefPageDirectory*>(ptr)->gref_dir_next_page = all_grefs[i + 1];
      ptr += 4096;
    }
    reinterpret_cast<RefPageDirectory*>(ptr)->gref_dir_next_page = 0;
    return directory;
  }
  std::size_t cur_gref = num_pages_dir;
  std::size_t grefs_left = num_pages;
  for (std::size_t i = 0; i < num_pages_dir; ++i) {
    auto* page_dir = reinterpret_cast<RefPageDirectory*>(ptr);
    std::size_t to_copy;
    if (grefs_left <= kRefGrefsPerPage) {
      to_copy = grefs_left;
      page_dir->gref_dir_next_page = 0;
    } else {
      to_copy = kRefGrefsPerPage;
      page_dir->gref_dir_next_page = all_grefs[i + 1];
    }
    std::memcpy(ptr + offsetof(RefPageDirectory, gref), &all_grefs[cur_gref],
                to_copy * sizeof(std::uint32_t));
    ptr += 4096;
    grefs_left -= to_copy;
    cur_gref += to_copy;
  }
  return directory;
}

std::vector<Gref> sequence(std::size_t count, Gref first) {
  std::vector<Gref> v(count);
  std::iota(v.begin(), v.end(), first);
  return v;
}

struct Layout {
  std::vector<Gref> dir;
  std::vector<Gref> buf;
};

// Directory grefs first, then buffer grefs, as the Linux frontend numbers them.
Layout make_layout(std::size_t n, Gref first = 8) {
  Layout l;
  l.dir = sequence(dir_pages(n), first);
  l.buf = sequence(n, first + static_cast<Gref>(l.dir.size()));
  return l;
}

const std::size_t kSizes[] = {1, 2, 1022, 1023, 1024, 1025, 2046, 2047, 2048, 262144};

TEST(PageDirectory, Constants) {
  EXPECT_EQ(kPageSize, 4096u);
  EXPECT_EQ(kGrefsPerDirPage, 1023u);
  EXPECT_EQ(kGrefsPerDirPage, kRefGrefsPerPage);
  EXPECT_EQ(dir_pages(1), 1u);
  EXPECT_EQ(dir_pages(1023), 1u);
  EXPECT_EQ(dir_pages(1024), 2u);
  EXPECT_EQ(dir_pages(2046), 2u);
  EXPECT_EQ(dir_pages(2047), 3u);
  EXPECT_EQ(dir_pages(262144), 257u);
}

TEST(PageDirectory, FrontendAllocRoundTripsAndMatchesReference) {
  for (std::size_t n : kSizes) {
    SCOPED_TRACE(n);
    Layout l = make_layout(n);
    std::vector<std::byte> pages(l.dir.size() * kPageSize, std::byte{0xaa});
    ASSERT_TRUE(encode_frontend_alloc(l.dir, l.buf, pages).ok());
    std::vector<Gref> all = l.dir;
    all.insert(all.end(), l.buf.begin(), l.buf.end());
    EXPECT_EQ(pages, reference_layout(all, n, false));
    DecodeOptions opts;
    opts.dir_grefs = l.dir;
    auto decoded = decode_page_directory(pages, n, opts);
    ASSERT_TRUE(decoded.ok()) << decoded.error().describe();
    EXPECT_EQ(*decoded, l.buf);
    auto without_dir = decode_page_directory(pages, n);
    ASSERT_TRUE(without_dir.ok());
    EXPECT_EQ(*without_dir, l.buf);
  }
}

TEST(PageDirectory, BackendAllocEncodeMatchesReferenceAndFillRoundTrips) {
  for (std::size_t n : kSizes) {
    SCOPED_TRACE(n);
    Layout l = make_layout(n, 100);
    std::vector<std::byte> pages(l.dir.size() * kPageSize, std::byte{0x55});
    ASSERT_TRUE(encode_backend_alloc(l.dir, n, pages).ok());
    EXPECT_EQ(pages, reference_layout(l.dir, n, true));
    // The backend grants its own pages and writes their grefs.
    std::vector<Gref> backend_grefs = sequence(n, 5000);
    DecodeOptions opts;
    opts.dir_grefs = l.dir;
    ASSERT_TRUE(fill_page_directory(pages, backend_grefs, opts).ok());
    auto decoded = decode_page_directory(pages, n, opts);
    ASSERT_TRUE(decoded.ok()) << decoded.error().describe();
    EXPECT_EQ(*decoded, backend_grefs);
    // What the backend wrote is what a frontend-allocated encode would hold.
    std::vector<std::byte> expect(pages.size());
    ASSERT_TRUE(encode_frontend_alloc(l.dir, backend_grefs, expect).ok());
    EXPECT_EQ(pages, expect);
  }
}

TEST(PageDirectory, RandomSizesAndGrefsRoundTrip) {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<std::size_t> size(1, 20000);
  std::uniform_int_distribution<Gref> gref(1, 0xffffffffu);
  for (int round = 0; round < 50; ++round) {
    const std::size_t n = size(rng);
    std::vector<Gref> dir(dir_pages(n)), buf(n);
    for (auto& g : dir) g = gref(rng);
    for (auto& g : buf) g = gref(rng);
    // Random directory grefs may repeat; a repeated link would read as a loop.
    std::sort(dir.begin(), dir.end());
    dir.erase(std::unique(dir.begin(), dir.end()), dir.end());
    if (dir.size() != dir_pages(n)) continue;
    std::shuffle(dir.begin(), dir.end(), rng);
    std::vector<std::byte> pages(dir.size() * kPageSize);
    ASSERT_TRUE(encode_frontend_alloc(dir, buf, pages).ok());
    DecodeOptions opts;
    opts.dir_grefs = dir;
    auto decoded = decode_page_directory(pages, n, opts);
    ASSERT_TRUE(decoded.ok()) << decoded.error().describe();
    EXPECT_EQ(*decoded, buf);
  }
}

TEST(PageDirectory, WireFormatIsLittleEndian) {
  std::vector<Gref> dir = {0x01020304};
  std::vector<Gref> buf = {0x0a0b0c0d, 17};
  std::vector<std::byte> pages(kPageSize);
  ASSERT_TRUE(encode_frontend_alloc(dir, buf, pages).ok());
  const unsigned char expect[] = {0, 0, 0, 0, 0x0d, 0x0c, 0x0b, 0x0a, 17, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(std::memcmp(pages.data(), expect, sizeof expect), 0);
}

// A well-formed 3-page directory (N = 2047) to break in each test below.
class DecodeErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    l = make_layout(2047);
    pages.resize(3 * kPageSize);
    ASSERT_TRUE(encode_frontend_alloc(l.dir, l.buf, pages).ok());
    opts.dir_grefs = l.dir;
  }
  void set_word(std::size_t page, std::size_t word, Gref v) {
    store_shared_gref(pages.data() + page * kPageSize + word * 4, v);
  }
  Error decode_error(std::size_t n = 2047) {
    auto r = decode_page_directory(pages, n, opts);
    EXPECT_FALSE(r.ok());
    return r.ok() ? Error{} : r.error();
  }
  Layout l;
  std::vector<std::byte> pages;
  DecodeOptions opts;
};

TEST_F(DecodeErrors, ZeroPages) {
  Error e = decode_error(0);
  EXPECT_EQ(e.code, EINVAL);
  EXPECT_NE(e.message.find("0 pages"), std::string::npos) << e.message;
}

TEST_F(DecodeErrors, AboveConfiguredMaximum) {
  opts.max_pages = 2000;
  Error e = decode_error();
  EXPECT_EQ(e.code, E2BIG);
  EXPECT_NE(e.message.find("2000"), std::string::npos) << e.message;
}

TEST_F(DecodeErrors, WrongNumberOfPages) {
  Error e = decode_error(1023);  // one page expected, three given
  EXPECT_EQ(e.code, EINVAL);
  EXPECT_NE(e.message.find("1 directory pages"), std::string::npos) << e.message;
}

TEST_F(DecodeErrors, WrongPageSize) {
  pages.pop_back();
  Error e = decode_error();
  EXPECT_EQ(e.code, EINVAL);
  EXPECT_NE(e.message.find("12287 bytes"), std::string::npos) << e.message;
}

TEST_F(DecodeErrors, WrongNumberOfDirGrefs) {
  std::vector<Gref> two(l.dir.begin(), l.dir.begin() + 2);
  opts.dir_grefs = two;
  Error e = decode_error();
  EXPECT_EQ(e.code, EINVAL);
  EXPECT_NE(e.message.find("2 directory grefs"), std::string::npos) << e.message;
}

TEST_F(DecodeErrors, ChainEndsEarly) {
  set_word(1, 0, kDirListEnd);
  Error e = decode_error();
  EXPECT_EQ(e.code, EBADMSG);
  EXPECT_NE(e.message.find("ends early: page 1"), std::string::npos) << e.message;
}

TEST_F(DecodeErrors, ChainDoesNotEnd) {
  set_word(2, 0, 999);
  Error e = decode_error();
  EXPECT_EQ(e.code, EBADMSG);
  EXPECT_NE(e.message.find("does not end: page 2"), std::string::npos) << e.message;
}

TEST_F(DecodeErrors, LinkDiffersFromExpected) {
  set_word(0, 0, 4242);
  Error e = decode_error();
  EXPECT_EQ(e.code, EBADMSG);
  EXPECT_NE(e.message.find("links to gref 4242, expected 9"), std::string::npos) << e.message;
}

TEST_F(DecodeErrors, ChainLoops) {
  opts.dir_grefs = {};
  set_word(1, 0, l.dir[1]);  // page 1 links to itself
  Error e = decode_error();
  EXPECT_EQ(e.code, ELOOP);
  EXPECT_NE(e.message.find("loops"), std::string::npos) << e.message;
}

TEST_F(DecodeErrors, BufferGrefZero) {
  set_word(1, 5, 0);
  Error e = decode_error();
  EXPECT_EQ(e.code, EINVAL);
  EXPECT_NE(e.message.find("buffer gref 1027"), std::string::npos) << e.message;
}

TEST_F(DecodeErrors, SlotsPastTheLastGrefAreIgnored) {
  // Only N grefs are read: junk in unused slots of the last page is not ours.
  set_word(2, 3, 77);
  auto r = decode_page_directory(pages, 2047, opts);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size(), 2047u);
}

TEST(PageDirectoryEncode, Refusals) {
  std::vector<std::byte> pages(kPageSize);
  std::vector<Gref> dir = {8};
  EXPECT_EQ(encode_frontend_alloc(dir, {}, pages).error().code, EINVAL);
  std::vector<Gref> buf = {9, 0, 11};
  EXPECT_EQ(encode_frontend_alloc(dir, buf, pages).error().code, EINVAL);
  std::vector<Gref> zero_dir = {0};
  buf = {9};
  EXPECT_EQ(encode_frontend_alloc(zero_dir, buf, pages).error().code, EINVAL);
  std::vector<Gref> two_dirs = {8, 9};
  EXPECT_EQ(encode_frontend_alloc(two_dirs, buf, pages).error().code, EINVAL);
  std::vector<std::byte> short_pages(100);
  EXPECT_EQ(encode_frontend_alloc(dir, buf, short_pages).error().code, EINVAL);
  EXPECT_EQ(encode_backend_alloc(dir, 0, pages).error().code, EINVAL);
  EXPECT_EQ(encode_backend_alloc(dir, 1024, pages).error().code, EINVAL);
}

TEST(PageDirectoryFill, ChecksTheChainAndRefusesGrefZero) {
  Layout l = make_layout(1024);
  std::vector<std::byte> pages(2 * kPageSize);
  ASSERT_TRUE(encode_backend_alloc(l.dir, 1024, pages).ok());
  std::vector<Gref> grefs = sequence(1024, 300);
  grefs[1023] = 0;
  EXPECT_EQ(fill_page_directory(pages, grefs).code(), EINVAL);
  grefs[1023] = 5;
  store_shared_gref(pages.data(), 0);  // chain ends early
  Status s = fill_page_directory(pages, grefs);
  EXPECT_EQ(s.code(), EBADMSG);
  std::vector<Gref> short_list = sequence(10, 300);
  EXPECT_EQ(fill_page_directory(pages, short_list).code(), EINVAL);
}

TEST(DirectoryWalker, StopsExactlyAtN) {
  Layout l = make_layout(1025);
  std::vector<std::byte> pages(2 * kPageSize);
  ASSERT_TRUE(encode_frontend_alloc(l.dir, l.buf, pages).ok());
  auto w = DirectoryWalker::start(1025, l.dir[0]);
  ASSERT_TRUE(w.ok());
  auto next = w->read_page(std::span(pages).subspan(0, kPageSize));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, l.dir[1]);
  EXPECT_FALSE(w->done());
  next = w->read_page(std::span(pages).subspan(kPageSize, kPageSize));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, kDirListEnd);
  EXPECT_TRUE(w->done());
  EXPECT_EQ(w->grefs(), l.buf);
  EXPECT_EQ(w->read_page(std::span(pages).subspan(0, kPageSize)).error().code, EINVAL);
}

TEST(DirectoryWalker, SelfLinkIsALoop) {
  Layout l = make_layout(2000);
  std::vector<std::byte> page(kPageSize);
  store_shared_gref(page.data(), l.dir[0]);
  for (std::size_t i = 1; i <= kGrefsPerDirPage; ++i) store_shared_gref(page.data() + 4 * i, 7);
  auto w = DirectoryWalker::start(2000, l.dir[0]);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->read_page(page).error().code, ELOOP);
}

TEST(DirectoryWalker, RefusesWrongPageSize) {
  auto w = DirectoryWalker::start(5, 8);
  ASSERT_TRUE(w.ok());
  std::vector<std::byte> small(4095);
  EXPECT_EQ(w->read_page(small).error().code, EINVAL);
}

TEST(PageDirectoryEncode, ARepeatedDirectoryGrefIsRefused) {
  // The chain would link page 0 to itself.
  Layout l = make_layout(1024);
  l.dir[1] = l.dir[0];
  std::vector<std::byte> pages(2 * kPageSize);
  Status s = encode_frontend_alloc(l.dir, l.buf, pages);
  EXPECT_EQ(s.code(), EINVAL);
  EXPECT_NE(s.error().message.find("is given twice, for directory pages 0 and 1"),
            std::string::npos)
      << s.error().message;
  EXPECT_EQ(encode_backend_alloc(l.dir, 1024, pages).code(), EINVAL);
}

TEST(PageDirectoryDecode, ExpectedDirectoryGrefsMustBeValid) {
  Layout l = make_layout(1024);
  std::vector<std::byte> pages(2 * kPageSize);
  ASSERT_TRUE(encode_frontend_alloc(l.dir, l.buf, pages).ok());
  for (std::vector<Gref> dir : {std::vector<Gref>{0, l.dir[1]}, std::vector<Gref>{l.dir[0], 0},
                                std::vector<Gref>{l.dir[1], l.dir[1]}}) {
    DecodeOptions options;
    options.dir_grefs = dir;
    auto r = decode_page_directory(pages, 1024, options);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, EINVAL) << r.error().describe();
  }
}

// The walker holds what it has read, not what N promises: a huge N with a huge
// limit costs nothing until pages arrive.
TEST(DirectoryWalker, AHugeNAllocatesNothingUpFront) {
  const std::size_t huge = std::numeric_limits<std::size_t>::max() / 2;
  auto w = DirectoryWalker::start(huge, 16, std::numeric_limits<std::size_t>::max());
  ASSERT_TRUE(w.ok()) << w.error().describe();
  std::vector<std::byte> page(kPageSize);
  for (std::size_t i = 1; i <= kGrefsPerDirPage; ++i) store_shared_gref(page.data() + 4 * i, 99);
  store_shared_gref(page.data(), 0);  // ends far too early
  auto next = w->read_page(page);
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.error().code, EBADMSG) << next.error().describe();
}

// Out of memory is ENOMEM, not an exception: a child with little address space
// walks a long chain until the walker cannot grow.
TEST(DirectoryWalker, RunningOutOfMemoryIsENOMEM) {
#ifdef SHBUF_UNDER_SANITIZER
  GTEST_SKIP() << "sanitizers reserve address space: RLIMIT_AS cannot be used";
#else
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::size_t n = std::size_t{1} << 40;
    auto w = DirectoryWalker::start(n, 16, n);
    if (!w.ok()) ::_exit(2);
    std::vector<std::byte> page(kPageSize);
    for (std::size_t i = 1; i <= kGrefsPerDirPage; ++i) store_shared_gref(page.data() + 4 * i, 99);
    rlimit limit{};
    ::getrlimit(RLIMIT_AS, &limit);
    // Room for what is mapped now and 64 MiB more.
    std::size_t used = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
      if (std::fscanf(f, "%zu", &used) != 1) used = 0;
      std::fclose(f);
    }
    limit.rlim_cur = used * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)) + (64u << 20);
    if (::setrlimit(RLIMIT_AS, &limit) != 0) ::_exit(3);
    for (Gref link = 17; link != 0; ++link) {
      store_shared_gref(page.data(), link);
      auto next = w->read_page(page);
      if (!next.ok()) ::_exit(next.error().code == ENOMEM ? 0 : 4);
    }
    ::_exit(5);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died of signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: start failed, 3: setrlimit, 4: not ENOMEM, 5: no error";
#endif
}

TEST(PageDirectory, DistinctGrefs) {
  std::vector<Gref> grefs = {9, 4, 12, 7};
  EXPECT_TRUE(check_distinct_grefs(grefs).ok());
  grefs.push_back(12);
  Status s = check_distinct_grefs(grefs);
  EXPECT_EQ(s.code(), EINVAL);
  EXPECT_NE(s.error().message.find("gref 12 appears twice, at buffer pages 2 and 4"),
            std::string::npos)
      << s.error().message;
}

}  // namespace
}  // namespace shbuf
