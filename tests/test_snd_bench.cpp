// `shbuf bench snd --json` runs snd-be and our frontend end to end and
// reports every figure, so the sound benchmark cannot rot. No timing is
// checked: the pacing target is the benchmark's, not this test's.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

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

// The bench's private directories left behind.
std::size_t work_dirs() {
  std::size_t n = 0;
  for (const char* base : {"/dev/shm", "/tmp"}) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(base, ec)) {
      n += e.path().filename().string().rfind("shbuf-bench-snd-", 0) == 0;
    }
  }
  return n;
}

TEST(SndBench, JsonHasEveryFigureAndNothingIsLeftBehind) {
  const std::size_t dirs = work_dirs();
  int status = 0;
  const std::string out = run(std::string(SHBUF_BIN) + " bench snd --seconds 0.5 --json", status);
  ASSERT_TRUE(WIFEXITED(status));
  // 1 only when the pacing target is missed on a busy machine.
  EXPECT_TRUE(WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 1) << out;
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.front(), '{');
  EXPECT_EQ(out[out.find_last_not_of('\n')], '}');
  for (const char* key :
       {"\"seconds\":0.5,", "\"played_s\":", "\"wall_s\":", "\"elapsed_s\":", "\"position_s\":",
        "\"pacing_error_ms\":", "\"pacing_error_pct\":", "\"events\":", "\"events_per_s\":",
        "\"expected_events_per_s\":187.5,", "\"snd_be_cpu_s_per_stream\":", "\"pass\":"}) {
    EXPECT_NE(out.find(key), std::string::npos) << key << " in " << out;
  }
  EXPECT_EQ(out.find(":null"), std::string::npos) << out;
  EXPECT_EQ(out.find("\"events\":0,"), std::string::npos) << out;
  EXPECT_NE(out.find("\"name\":\"snd-be exits 0 on SIGTERM\",\"measured\":\"0\",\"pass\":true"),
            std::string::npos)
      << out;
  EXPECT_EQ(work_dirs(), dirs);
}

TEST(SndBench, RejectsTooShortARun) {
  int status = 0;
  run(std::string(SHBUF_BIN) + " bench snd --seconds 0.01 2>/dev/null", status);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
}

}  // namespace
