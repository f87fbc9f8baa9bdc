// `shbuf dir` run as a process: encode -> decode round trips, inspect, and
// bad input giving exit 1 with one error line.
#include <gtest/gtest.h>

#include <string>

#include "run_process.h"

namespace shbuf {
namespace {

using testing::count_lines;
using testing::run_process;

std::string numbers(unsigned first, unsigned count) {
  std::string s;
  for (unsigned i = 0; i < count; ++i) s += std::to_string(first + i) + (i % 10 == 9 ? "\n" : " ");
  return s;
}

TEST(CliDir, EncodeDecodeRoundTrip) {
  for (unsigned n : {1u, 1023u, 1024u, 2047u}) {
    SCOPED_TRACE(n);
    const unsigned d = (n + 1022) / 1023;
    auto enc = run_process({SHBUF_BIN, "dir", "encode", "--pages", std::to_string(n)},
                           numbers(16, d) + numbers(100, n));
    ASSERT_EQ(enc.exit_code, 0) << enc.err;
    ASSERT_EQ(enc.out.size(), d * 4096u);
    std::string dir_arg;
    for (unsigned i = 0; i < d; ++i) {
      if (i != 0) dir_arg += ',';
      dir_arg += std::to_string(16 + i);
    }
    auto dec = run_process(
        {SHBUF_BIN, "dir", "decode", "--pages", std::to_string(n), "--dir-grefs", dir_arg},
        enc.out);
    ASSERT_EQ(dec.exit_code, 0) << dec.err;
    std::string expect;
    for (unsigned i = 0; i < n; ++i) expect += std::to_string(100 + i) + "\n";
    EXPECT_EQ(dec.out, expect);
  }
}

TEST(CliDir, BackendAllocEncodeHasLinksOnly) {
  auto enc =
      run_process({SHBUF_BIN, "dir", "encode", "--pages", "1024", "--backend-alloc"}, "16 17");
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  ASSERT_EQ(enc.out.size(), 8192u);
  EXPECT_EQ(static_cast<unsigned char>(enc.out[0]), 17);
  EXPECT_EQ(enc.out.find_first_not_of('\0', 4), std::string::npos);
}

TEST(CliDir, InspectDescribesAWellFormedChain) {
  auto enc = run_process({SHBUF_BIN, "dir", "encode", "--pages", "1100"},
                         numbers(16, 2) + numbers(100, 1100));
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  auto ins = run_process({SHBUF_BIN, "dir", "inspect"}, enc.out);
  EXPECT_EQ(ins.exit_code, 0) << ins.err;
  EXPECT_NE(ins.out.find("page 0: link 17, 1023 grefs"), std::string::npos) << ins.out;
  EXPECT_NE(ins.out.find("page 1: link 0, 77 grefs"), std::string::npos) << ins.out;
  EXPECT_NE(ins.out.find("well formed, 2 directory pages, 1100 buffer grefs"), std::string::npos);
}

TEST(CliDir, InspectRejectsABrokenChain) {
  auto enc = run_process({SHBUF_BIN, "dir", "encode", "--pages", "1100"},
                         numbers(16, 2) + numbers(100, 1100));
  ASSERT_EQ(enc.exit_code, 0);
  std::string broken = enc.out;
  broken[4096] = 5;  // the last page now links on
  auto ins = run_process({SHBUF_BIN, "dir", "inspect"}, broken);
  EXPECT_EQ(ins.exit_code, 1);
  EXPECT_NE(ins.out.find("chain: broken"), std::string::npos) << ins.out;
  EXPECT_EQ(count_lines(ins.err), 1u) << ins.err;
}

struct BadCase {
  std::vector<std::string> args;
  std::string input;
  int exit_code;
  std::string says;
};

TEST(CliDir, BadInputGivesOneErrorLine) {
  std::string page(4096, '\0');
  // Two pages full of grefs 0x01010101 whose first page has link 0.
  std::string early_end = std::string(4096, '\x01') + std::string(4096, '\x01');
  early_end.replace(0, 4, std::string(4, '\0'));
  const std::vector<BadCase> cases = {
      {{"dir", "encode", "--pages", "2"}, "16 100", 1, "expected 3 grefs"},
      {{"dir", "encode", "--pages", "2"}, "16 100 101 102", 1, "expected 3 grefs"},
      {{"dir", "encode", "--pages", "2"}, "16 100 x", 1, "'x' is not a decimal gref"},
      {{"dir", "encode", "--pages", "2"}, "16 100 0", 1, "buffer gref 1 is 0"},
      {{"dir", "encode", "--pages", "0"}, "", 2, "--pages: 0 is not a decimal number from 1"},
      {{"dir", "encode", "--pages", "2"}, "16 100 4294967296", 1, "not a decimal gref"},
      {{"dir", "decode", "--pages", "2"}, "short", 1, "got 5 bytes"},
      {{"dir", "decode", "--pages", "2"}, page, 1, "buffer gref 0"},
      {{"dir", "decode", "--pages", "1024", "--dir-grefs", "16,17"}, early_end, 1, "ends early"},
      {{"dir", "decode", "--pages", "1", "--dir-grefs", "1,zz"}, page, 1, "'zz'"},
      {{"dir", "inspect"}, "abc", 1, "not a whole number"},
      {{"dir", "encode", "--pages", "1024"}, "16 16 " + numbers(100, 1024), 1, "given twice"},
      {{"dir", "decode", "--pages", "1", "--dir-grefs", "0"}, page, 1, "directory gref 0 is 0"},
      {{"dir", "decode", "--pages", "1024", "--dir-grefs", "0,17"}, early_end, 1, "is 0"},
      {{"dir", "encode", "--pages", "-1"}, "", 2, "'-1' is not a decimal number"},
      {{"dir", "encode", "--pages", "0x10"}, "", 2, "'0x10' is not a decimal number"},
      {{"dir", "encode", "--pages", ""}, "", 2, "'' is not a decimal number"},
      {{"dir", "encode", "--pages", " 5"}, "", 2, "' 5' is not a decimal number"},
      {{"dir", "encode", "--pages", "1e9"}, "", 2, "'1e9' is not a decimal number"},
      {{"dir", "encode", "--pages", "99999999999999999999999"}, "", 2, "is not a decimal number"},
      {{"dir", "decode", "--pages", "+5"}, "", 2, "'+5' is not a decimal number"},
      {{"dir", "inspect", "--first-gref", "0"}, "", 2, "--first-gref: 0 is not"},
      {{"dir", "inspect"}, "", 1, "no directory pages"},
      {{"dir", "encode"}, "", 2, "--pages"},
      {{"dir", "frobnicate"}, "", 2, "subcommand"},
      {{}, "", 2, ""},
  };
  for (const BadCase& c : cases) {
    std::vector<std::string> argv = {SHBUF_BIN};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    std::string shown;
    for (const auto& a : c.args) shown += a + " ";
    SCOPED_TRACE(shown);
    auto r = run_process(argv, c.input);
    EXPECT_EQ(r.exit_code, c.exit_code) << r.err;
    EXPECT_EQ(count_lines(r.err), 1u) << r.err;
    EXPECT_EQ(r.err.rfind("shbuf: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
  }
}

TEST(CliDir, InspectCatchesALinkBackToPageZeroWhenToldItsGref) {
  auto enc = run_process({SHBUF_BIN, "dir", "encode", "--pages", "1100"},
                         numbers(16, 2) + numbers(100, 1100));
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  auto ok = run_process({SHBUF_BIN, "dir", "inspect", "--first-gref", "16"}, enc.out);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  std::string loop = enc.out;
  loop[0] = 16;  // page 0 now links to itself
  auto plain = run_process({SHBUF_BIN, "dir", "inspect"}, loop);
  EXPECT_NE(plain.out.find("links back to page 0 not checked"), std::string::npos) << plain.out;
  auto told = run_process({SHBUF_BIN, "dir", "inspect", "--first-gref", "16"}, loop);
  EXPECT_EQ(told.exit_code, 1);
  EXPECT_NE(told.out.find("page 0 links to gref 16, the gref of an earlier page"),
            std::string::npos)
      << told.out;
  EXPECT_EQ(count_lines(told.err), 1u) << told.err;
}

// Errors count what really arrived, however much that is.
TEST(CliDir, CountsInErrorsAreWhatArrived) {
  std::string many;
  for (int i = 0; i < 1000000; ++i) many += "7 ";
  auto r = run_process({SHBUF_BIN, "dir", "encode", "--pages", "2"}, many);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("for 2 pages, got 1000000\n"), std::string::npos) << r.err;
  auto d = run_process({SHBUF_BIN, "dir", "decode", "--pages", "2"}, std::string(3 << 20, 'x'));
  EXPECT_EQ(d.exit_code, 1);
  EXPECT_NE(d.err.find("got 3145728 bytes"), std::string::npos) << d.err;
}

// What is not printable reaches the terminal escaped, and a NUL does not cut
// the message short.
TEST(CliDir, ErrorLinesEscapeWhatIsNotPrintable) {
  auto nul = run_process({SHBUF_BIN, "dir", "encode", "--pages", "2"}, std::string("16 1\0"
                                                                                   "7 8",
                                                                                   8));
  EXPECT_EQ(nul.exit_code, 1);
  EXPECT_NE(nul.err.find("input word 2 '1\\x007' is not a decimal gref (0..4294967295)\n"),
            std::string::npos)
      << nul.err;
  auto esc =
      run_process({SHBUF_BIN, "dir", "decode", "--pages", "1", "--dir-grefs", "\x1b[2J"}, "");
  EXPECT_EQ(esc.exit_code, 1);
  EXPECT_EQ(esc.err.find('\x1b'), std::string::npos) << esc.err;
  EXPECT_NE(esc.err.find("'\\x1b[2J'"), std::string::npos) << esc.err;
  auto arg = run_process({SHBUF_BIN, "dir", "encode", "--pages", "\x07\x1b"}, "");
  EXPECT_EQ(arg.exit_code, 2);
  EXPECT_EQ(arg.err.find('\x1b'), std::string::npos) << arg.err;
  EXPECT_EQ(count_lines(arg.err), 1u) << arg.err;
}

TEST(CliDir, EveryCommandHasHelp) {
  for (auto args : std::vector<std::vector<std::string>>{{"--help"},
                                                         {"dir", "--help"},
                                                         {"dir", "encode", "--help"},
                                                         {"dir", "decode", "--help"},
                                                         {"dir", "inspect", "--help"}}) {
    args.insert(args.begin(), SHBUF_BIN);
    auto r = run_process(args);
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << r.out;
  }
}

}  // namespace
}  // namespace shbuf
