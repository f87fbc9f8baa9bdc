// `shbuf bench --quick --json` runs every measurement kernel end to end and
// reports every row, so the benchmark code cannot rot. No timing is checked.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <vector>

#include "sanitizer.h"

namespace {

std::string run(const std::string& cmd, int& status) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    status = -1;
    return out;
  }
  char buf[4096];
  std::size_t got;
  while ((got = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, got);
  status = pclose(p);
  return out;
}

std::size_t count(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

TEST(BenchSmoke, QuickJsonHasEveryRow) {
  int status = 0;
  const std::string out = run(std::string(SHBUF_BIN) + " bench --quick --json", status);
  ASSERT_EQ(status, 0) << out;
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.front(), '{');
  EXPECT_EQ(out[out.find_last_not_of('\n')], '}');
  // Every operation of both ends: create and free in both modes; attach and
  // detach in both modes, repeated and first-time; the frontend's map and
  // unmap, backend-allocated only, repeated and first-time.
  const struct {
    const char* op;
    const char* use;
    std::vector<const char*> modes;
  } ops[] = {
      {"frontend create", "", {"frontend-alloc", "backend-alloc"}},
      {"frontend free", "", {"frontend-alloc", "backend-alloc"}},
      {"backend attach", "repeated", {"frontend-alloc", "backend-alloc"}},
      {"backend attach", "first-time", {"frontend-alloc", "backend-alloc"}},
      {"backend detach", "repeated", {"frontend-alloc", "backend-alloc"}},
      {"backend detach", "first-time", {"frontend-alloc", "backend-alloc"}},
      {"frontend map", "repeated", {"backend-alloc"}},
      {"frontend map", "first-time", {"backend-alloc"}},
      {"frontend unmap", "repeated", {"backend-alloc"}},
      {"frontend unmap", "first-time", {"backend-alloc"}},
  };
  std::size_t rows = 0;
  for (const auto& o : ops) {
    for (const char* mode : o.modes) {
      for (const char* pages : {"1", "16", "1024", "16384"}) {
        const std::string row = std::string("{\"op\":\"") + o.op + "\",\"use\":\"" + o.use +
                                "\",\"mode\":\"" + mode + "\",\"pages\":" + pages + ",";
        EXPECT_EQ(count(out, row), 1u) << "missing row " << row;
        ++rows;
      }
    }
  }
  EXPECT_EQ(rows, 64u);
  // Every figure was measured: no row lacks one of its three timings.
  EXPECT_EQ(count(out, "\"ours_ns\":null"), 0u);
  EXPECT_EQ(count(out, "\"limit_ns\":null"), 0u);
  EXPECT_EQ(count(out, "\"naive_ns\":null"), 0u);
  EXPECT_EQ(count(out, "\"ours_ns_per_page\":"), rows);
  EXPECT_EQ(count(out, "\"naive_ns_per_call\":"), rows);
  // Naive is information: no target compares with it.
  EXPECT_EQ(out.find("than naive"), std::string::npos);
  EXPECT_EQ(count(out, "\"live_100000_ns\":"), 2u);
  EXPECT_EQ(count(out, "\"bytes_per_page\":"), 5u);
  // The fixed cost per call is a target: 1 page within 1.25x the limit.
  EXPECT_NE(out.find("frontend map, first-time backend-alloc (1 pages) within 1.25x the limit"),
            std::string::npos);
  EXPECT_NE(out.find("\"quick\":true"), std::string::npos);
  EXPECT_NE(out.find("\"pass\":null}"), std::string::npos);
  // A live 16384-page frontend-allocated buffer holds at least its 16384
  // grefs, 4 bytes each, and within the 8 bytes/page bound.
  const std::size_t mem = out.find("\"buffer\":\"frontend buffer\",\"mode\":\"frontend-alloc\"");
  ASSERT_NE(mem, std::string::npos);
  const std::string key = "{\"pages\":16384,\"bytes\":";
  const std::size_t at = out.find(key, mem);
  ASSERT_NE(at, std::string::npos);
  const unsigned long bytes = std::stoul(out.substr(at + key.size()));
#ifdef SHBUF_UNDER_SANITIZER
  // The heap figure is glibc's (mallinfo2); a sanitizer's allocator is not
  // glibc's, so there is nothing to check.
  (void)bytes;
#else
  EXPECT_GE(bytes, 16384u * 4);
  EXPECT_LE(bytes, 16384u * 8 + 4096);
#endif
}

TEST(BenchSmoke, RejectsUnknownOption) {
  int status = 0;
  run(std::string(SHBUF_BIN) + " bench --no-such-option 2>/dev/null", status);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
}

}  // namespace
