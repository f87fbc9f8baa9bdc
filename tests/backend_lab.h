// The PV backends' labs on one machine: `shbuf <kind>-be` run as a child
// process on a private simulator instance with its log in a file, the
// toolstack's part done by `shbuf sim device`, and, once SIGTERM stopped it,
// the check that it exited 0 holding nothing.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "pv/platform.h"
#include "run_process.h"
#include "test_sim_util.h"

namespace shbuf::simtest {

class BackendLab : public SimTest {
 protected:
  // `command` serves devices of `kind` ("snd-be", "vsnd"); `holdings` is
  // what its protocol holds, when it holds nothing, as its reports say it
  // ("open_streams=0 buffer_pages=0").
  BackendLab(std::string command, std::string kind, std::string holdings)
      : command_(std::move(command)), kind_(std::move(kind)), holdings_(std::move(holdings)) {}

  // An empty output directory and the log's path; start() runs the backend.
  void SetUp() override {
    SimTest::SetUp();
    out = path + "-out";
    std::filesystem::remove_all(out);
    std::filesystem::create_directories(out);
    log = path + "-be.log";
  }

  // Runs the backend on the instance, which exists before the backend opens
  // it, writing into `out`, with `options` and every request logged.
  void start(const std::vector<std::string>& options = {}) {
    ASSERT_TRUE(open(0));
    std::vector<std::string> argv = {SHBUF_BIN, command_, "--platform", "sim",
                                     "--sim",   path,     "--out",      out};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.insert(argv.end(), {"-v", "2"});
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    be = fork();
    if (be == 0) {
      if (freopen(log.c_str(), "w", stderr) == nullptr) _exit(126);
      execv(SHBUF_BIN, args.data());
      _exit(127);
    }
  }

  void TearDown() override {
    if (be > 0) {
      kill(be, SIGTERM);
      int st = 0;
      waitpid(be, &st, 0);
      EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << command_ << ": " << testing::slurp(log);
      EXPECT_NE(testing::slurp(log).find(holds_nothing("at exit")), std::string::npos)
          << testing::slurp(log);
    }
    expect_clean();
    std::filesystem::remove_all(out);
    std::filesystem::remove(log);
    SimTest::TearDown();
  }

  // The backend's report line `when` ("at exit") when it holds nothing.
  std::string holds_nothing(const std::string& when) const {
    return "holds " + when + ": devices=0 connected=0 ring_mappings=0 event_channels=0 " +
           holdings_;
  }

  // The toolstack adds a device for domain `dom`, with `options`.
  void add(DomId dom, const std::vector<std::string>& options = {}) {
    std::vector<std::string> argv = {
        SHBUF_BIN, "sim", "device", "add", kind_, "--sim", path, "--frontend", std::to_string(dom)};
    argv.insert(argv.end(), options.begin(), options.end());
    auto r = testing::run_process(argv);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  void remove(DomId dom) {
    auto r = testing::run_process({SHBUF_BIN, "sim", "device", "remove", kind_, "--sim", path,
                                   "--frontend", std::to_string(dom)});
    EXPECT_EQ(r.exit_code, 0) << r.err << testing::slurp(log);
  }

  // Domain `dom`'s platform on the instance, for a frontend.
  pv::Platform platform(DomId dom) {
    pv::PlatformOptions o;
    o.name = "sim";
    o.self = dom;
    o.sim_path = path;
    auto p = pv::open_platform(o);
    EXPECT_TRUE(p.ok()) << p.error().describe();
    return p.ok() ? std::move(p).value() : pv::Platform{};
  }

  // Runs our frontend command for this backend (`snd-fe` for `snd-be`) as
  // domain `dom` with --hostile and `options`: its lies, one line each on
  // stdout, and exit 0 when every answer was the refusal it should be.
  testing::ProcessResult hostile(DomId dom, const std::vector<std::string>& options = {}) {
    std::vector<std::string> argv = {SHBUF_BIN,    command_.substr(0, command_.size() - 3) + "-fe",
                                     "--platform", "sim",
                                     "--sim",      path,
                                     "--domid",    std::to_string(dom),
                                     "--hostile"};
    argv.insert(argv.end(), options.begin(), options.end());
    return testing::run_process(argv);
  }

  // Waits (bounded) for the backend's log to hold `text`.
  bool log_says(const std::string& text, int ms = 5000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < deadline) {
      if (testing::slurp(log).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  std::string out;
  std::string log;
  pid_t be = -1;

 private:
  std::string command_;
  std::string kind_;
  std::string holdings_;
};

}  // namespace shbuf::simtest
