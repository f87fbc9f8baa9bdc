// Runs a program as a child process with given stdin and captures its output,
// for tests of the command-line tool.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace shbuf::testing {

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// Runs argv with `input` on stdin; output goes through temporary files so a
// large output can never block the child.
inline ProcessResult run_process(const std::vector<std::string>& argv,
                                 const std::string& input = {},
                                 const std::vector<std::string>& env = {}) {
  char in_path[] = "/tmp/shbuf-test-in-XXXXXX";
  char out_path[] = "/tmp/shbuf-test-out-XXXXXX";
  char err_path[] = "/tmp/shbuf-test-err-XXXXXX";
  const int in_fd = mkstemp(in_path);
  const int out_fd = mkstemp(out_path);
  const int err_fd = mkstemp(err_path);
  std::size_t done = 0;
  while (done < input.size()) {
    const ssize_t put = write(in_fd, input.data() + done, input.size() - done);
    if (put <= 0) std::abort();
    done += static_cast<std::size_t>(put);
  }
  lseek(in_fd, 0, SEEK_SET);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(in_fd, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    for (const std::string& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ProcessResult r;
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  r.out = slurp(out_path);
  r.err = slurp(err_path);
  close(in_fd);
  close(out_fd);
  close(err_fd);
  unlink(in_path);
  unlink(out_path);
  unlink(err_path);
  return r;
}

inline std::size_t count_lines(const std::string& s) {
  std::size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace shbuf::testing
