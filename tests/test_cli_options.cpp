// Every number on the command line goes through one strict parser, and a bad
// one is a usage error (exit 2) with one error line, whatever the command.
// Options that would be ignored are refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "run_process.h"

namespace shbuf {
namespace {

using testing::count_lines;
using testing::run_process;

struct OptionCase {
  std::vector<std::string> args;
  std::string says;
};

void expect_usage_error(const OptionCase& c) {
  std::vector<std::string> argv = {SHBUF_BIN};
  argv.insert(argv.end(), c.args.begin(), c.args.end());
  std::string shown;
  for (const auto& a : c.args) shown += a + " ";
  SCOPED_TRACE(shown);
  auto r = run_process(argv);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(count_lines(r.err), 1u) << r.err;
  EXPECT_EQ(r.err.rfind("shbuf: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
}

TEST(CliOptions, BadNumbersAreUsageErrorsEverywhere) {
  const std::string sock = "/tmp/shbuf-options-test-" + std::to_string(::getpid());
  const std::vector<OptionCase> cases = {
      {{"backend", "--socket", sock, "--accept-timeout", "3000000"}, "from 0 to 86400"},
      {{"backend", "--socket", sock, "--accept-timeout", "1e300"}, "'1e300' is not a number"},
      {{"backend", "--socket", sock, "--accept-timeout", "nan"}, "'nan' is not a number"},
      {{"backend", "--socket", sock, "--accept-timeout", "-1"}, "'-1' is not a number"},
      {{"backend", "--socket", sock, "--max-pages", "-1"}, "'-1' is not a decimal number"},
      {{"backend", "--socket", sock, "--max-pages", "0"}, "0 is not a decimal number from 1"},
      {{"backend", "--socket", sock, "--domid", "0x10"}, "'0x10' is not a decimal number"},
      {{"backend", "--socket", sock, "--domid", "32752"}, "from 0 to 32751"},
      {{"frontend", "--socket", sock, "--connect-timeout", "1e300"}, "'1e300' is not a number"},
      {{"frontend", "--socket", sock, "--connect-timeout", "inf"}, "'inf' is not a number"},
      {{"frontend", "--socket", sock, "--pages", "1,-1"}, "'-1' is not a decimal number"},
      {{"demo", "--pages", "1, 2"}, "' 2' is not a decimal number"},
      {{"displ-be", "--verbose", "0x1"}, "'0x1' is not a decimal number"},
      {{"displ-be", "--max-buffer-mib", "4096"}, "from 1 to 4095"},
      {{"displ-be", "--png-level", "10"}, "from 0 to 9"},
      {{"displ-be", "--png-level", "-1"}, "'-1' is not a decimal number"},
      {{"bench", "displ", "--seconds", "nan"}, "'nan' is not a number"},
  };
  for (const OptionCase& c : cases) expect_usage_error(c);
}

TEST(CliOptions, LeadingZerosAreStillDecimal) {
  // "010" is ten, not eight: strictly decimal, never octal.
  auto r = run_process({SHBUF_BIN, "dir", "encode", "--pages", "02"}, "16 100 101");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.size(), 4096u);
}

TEST(CliOptions, VchanAddressesAreCheckedBeforeAnythingIsOpened) {
  const std::string sock = "/tmp/shbuf-options-test-" + std::to_string(::getpid());
  const std::string too_long = "0:/" + std::string(48, 'a');  // 49 bytes of path
  const std::vector<OptionCase> cases = {
      {{"frontend", "--vchan", "0/local/domain/0/data/x"}, "is not DOMID:PATH"},
      {{"frontend", "--vchan", "0x1:/a"}, "'0x1' is not a decimal number"},
      {{"backend", "--vchan", "32752:/a"}, "from 0 to 32751"},
      {{"backend", "--vchan", "1:"}, "must be a xenstore path"},
      {{"backend", "--vchan", "1:/"}, "must be a xenstore path"},
      {{"backend", "--vchan", "1:/a/"}, "must be a xenstore path"},
      {{"backend", "--vchan", "1:a//b"}, "must be a xenstore path"},
      {{"backend", "--vchan", "1:/a b"}, "letters, digits and / - _ @ only"},
      {{"frontend", "--vchan", too_long}, "the path is 49 bytes, libxenvchan takes at most 48"},
      {{"frontend", "--vchan", "0:/a", "--socket", sock}, "--socket excludes --vchan"},
      {{"backend", "--vchan", "1:/a", "--socket", sock}, "--socket excludes --vchan"},
      {{"frontend"}, "--socket or --vchan is required"},
      {{"backend"}, "--socket or --vchan is required"},
  };
  for (const OptionCase& c : cases) expect_usage_error(c);
}

// Off Xen, a vchan cannot be offered or reached: one error naming what it
// needs, exit 1, and no wait beyond --connect-timeout.
TEST(CliOptions, AVchanOffXenIsOneClearError) {
  const std::string sim = "/dev/shm/shbuf-vchan-options-" + std::to_string(::getpid());
  const std::string offered = "/local/domain/0/data/shbuf-test";
  auto be = testing::run_process({SHBUF_BIN, "backend", "--sim", sim, "--vchan", "1:" + offered});
  EXPECT_EQ(be.exit_code, 1) << be.err;
  EXPECT_EQ(count_lines(be.err), 1u) << be.err;
  EXPECT_NE(be.err.find("cannot offer a vchan to domain 1 at " + offered), std::string::npos)
      << be.err;
  auto fe = testing::run_process({SHBUF_BIN, "frontend", "--sim", sim, "--domid", "1", "--vchan",
                                  "0:" + offered, "--connect-timeout", "0.3"});
  EXPECT_EQ(fe.exit_code, 1) << fe.err;
  EXPECT_EQ(count_lines(fe.err), 1u) << fe.err;
  EXPECT_NE(fe.err.find("no vchan to connect to at 0:" + offered + " within 300 ms"),
            std::string::npos)
      << fe.err;
  (void)testing::run_process({SHBUF_BIN, "sim", "reset", "--sim", sim});
  std::filesystem::remove_all(sim);
}

TEST(CliOptions, SimOnlyOptionsAreRefusedWithXen) {
  expect_usage_error({{"frontend", "--provider", "xen", "--sim", "/tmp/x", "--socket", "/tmp/s"},
                      "--sim is for the sim provider"});
}

}  // namespace
}  // namespace shbuf

namespace shbuf {
namespace {

// JSON output never fails on text that is not UTF-8, such as a path.
TEST(CliOptions, JsonStatusOfAnInstanceWhosePathIsNotUtf8) {
  const std::string dir = "/dev/shm/shbuf-json-\xff-" + std::to_string(::getpid());
  auto demo = testing::run_process({SHBUF_BIN, "demo", "--pages", "1", "--sim", dir});
  ASSERT_EQ(demo.exit_code, 0) << demo.err;
  auto status = testing::run_process({SHBUF_BIN, "sim", "status", "--json", "--sim", dir});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_EQ(status.out.rfind("{\"path\":", 0), 0u) << status.out;
  EXPECT_NE(status.out.find("\"grants\":[]"), std::string::npos) << status.out;
  auto reset = testing::run_process({SHBUF_BIN, "sim", "reset", "--sim", dir});
  EXPECT_EQ(reset.exit_code, 0) << reset.err;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace shbuf
