// Work directories and children of the commands that run this program.
#include "child.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "cli.h"
#include "shbuf/grant/sim.h"

namespace shbuf::cli {

WorkDir::WorkDir(const std::string& prefix) {
  const char* base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
  std::string path = fmt::format("{}/{}-{}-XXXXXX", base, prefix, ::getpid());
  if (::mkdtemp(path.data()) == nullptr) {
    fail(kExitFailure,
         errno_error(fmt::format("cannot create a directory under {}", base)).message);
  }
  path_ = std::move(path);
}

void WorkDir::remove() {
  if (path_.empty()) return;
  if (!sim_.empty()) (void)SimProvider::reset(sim_);
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  path_.clear();
}

Child::~Child() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

void Child::spawn(const std::vector<std::string>& argv, int stdout_fd, int stderr_fd) {
  const pid_t pid = ::fork();
  if (pid < 0) fail(kExitFailure, errno_error("fork").message);
  if (pid == 0) {
    if (stdout_fd >= 0) ::dup2(stdout_fd, STDOUT_FILENO);
    if (stderr_fd >= 0) ::dup2(stderr_fd, STDERR_FILENO);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv("/proc/self/exe", args.data());
    std::fprintf(stderr, "shbuf: error: cannot run /proc/self/exe: %s\n", std::strerror(errno));
    ::_exit(127);
  }
  pid_ = pid;
}

int Child::wait(int timeout_ms, const std::function<void()>& between) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int status = 0;
    const pid_t got = ::waitpid(pid_, &status, WNOHANG);
    if (got == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (got < 0 && errno != EINTR) {
      pid_ = -1;
      return -1;
    }
    if (between) between();
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

UniqueFd open_for_child(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) fail(kExitFailure, errno_error(fmt::format("cannot create '{}'", path)).message);
  return fd;
}

}  // namespace shbuf::cli
