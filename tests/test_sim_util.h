// Shared helpers of the sim provider tests: a private instance per test and
// small process utilities.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "shbuf/grant/sim.h"

namespace shbuf::simtest {

class SimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path = "/dev/shm/shbuf-simtest-" + std::to_string(::getpid()) + "-" + info->test_suite_name() +
           "-" + info->name();
    std::filesystem::remove_all(path);
  }

  void TearDown() override {
    (void)SimProvider::reset(path);
    std::filesystem::remove_all(path);
  }

  std::unique_ptr<SimProvider> open(DomId domid, std::uint32_t frames = 1024) {
    SimOptions o;
    o.path = path;
    o.domid = domid;
    o.max_grant_frames = frames;
    auto p = SimProvider::open(o);
    EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().describe());
    return p.ok() ? std::move(p).value() : nullptr;
  }

  SimStatus status() {
    auto s = SimProvider::status(path);
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().describe());
    return s.ok() ? std::move(s).value() : SimStatus{};
  }

  // No grant, mapping or page held anywhere in the instance.
  void expect_clean() {
    const SimStatus s = status();
    EXPECT_TRUE(s.grants.empty()) << s.grants.size() << " grants left";
    EXPECT_TRUE(s.mappings.empty()) << s.mappings.size() << " mappings left";
    for (const auto& d : s.domains) {
      EXPECT_EQ(d.frames_in_use, 0u) << "domain " << d.domid << " holds pages";
      EXPECT_EQ(d.pending, 0u) << "domain " << d.domid << " has pending pages";
    }
  }

  // Bytes of memory the domain's page file really holds.
  long long mem_bytes(DomId domid) {
    struct stat sb {};
    const std::string f = path + "/dom" + std::to_string(domid) + ".mem";
    if (stat(f.c_str(), &sb) != 0) return -1;
    return static_cast<long long>(sb.st_blocks) * 512;
  }

  std::string path;
};

// A pipe a forked child reports through; both ends are closed with it. Each
// side may close the end it does not use, so that a reader sees the writer's
// exit instead of waiting for ever.
struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() { EXPECT_EQ(pipe(fd), 0); }
  ~Pipe() {
    close_end(0);
    close_end(1);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  void reader() { close_end(1); }
  void writer() { close_end(0); }
  void close_end(int end) {
    if (fd[end] >= 0) close(fd[end]);
    fd[end] = -1;
  }
  bool put(const void* p, std::size_t n) {
    const bool ok = write(fd[1], p, n) == ssize_t(n);
    EXPECT_TRUE(ok);
    return ok;
  }
  bool get(void* p, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
      const ssize_t got = read(fd[0], static_cast<char*>(p) + done, n - done);
      if (got <= 0) return false;
      done += std::size_t(got);
    }
    return true;
  }
  template <typename T>
  bool put(const T& value) {
    return put(&value, sizeof value);
  }
  template <typename T>
  bool get(T& value) {
    return get(&value, sizeof value);
  }
};

// Child exit status as a short string for assertion messages.
inline std::string describe_wait(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("signal ") + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// Runs fn in a forked child; its return value is the exit code.
template <typename Fn>
pid_t spawn(Fn fn) {
  const pid_t pid = fork();
  if (pid == 0) _exit(fn());
  return pid;
}

inline int wait_for(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// Polls cond for up to `ms` milliseconds.
template <typename Cond>
bool eventually(Cond cond, int ms = 1000) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace shbuf::simtest
