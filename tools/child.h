// What commands that run this program as children share: a private work
// directory, the children themselves, and files for their output.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "core/unique_fd.h"

namespace shbuf::cli {

// A private directory, <dir>/<prefix>-<pid>-XXXXXX under /dev/shm (or
// /tmp), removed with all it holds on every way out.
class WorkDir {
 public:
  explicit WorkDir(const std::string& prefix);
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  ~WorkDir() { remove(); }

  const std::string& path() const { return path_; }
  // The simulator instance to reset before the directory goes.
  void own_sim(std::string sim) { sim_ = std::move(sim); }

  void remove();

 private:
  std::string path_;
  std::string sim_;
};

// A child running this program, killed and reaped if still running when
// the object goes.
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();

  // Runs /proc/self/exe with `argv`, its stdout and stderr on the given
  // descriptors (-1: ours).
  void spawn(const std::vector<std::string>& argv, int stdout_fd, int stderr_fd);
  pid_t pid() const { return pid_; }

  // The exit status (128 + the signal that ended it); -1 when it did not
  // end within timeout_ms (then killed). `between`, when given, runs
  // between two looks and may end the command.
  int wait(int timeout_ms, const std::function<void()>& between = {});

 private:
  pid_t pid_ = -1;
};

// A new (or truncated) file for a child's output, not inherited across exec.
UniqueFd open_for_child(const std::string& path);

}  // namespace shbuf::cli
