// Either end killed with SIGKILL at a random point of its work, a few
// hundred times: the survivor always finishes or fails cleanly (no hang, no
// crash), and the simulator ends with no grant or mapping left.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "run_process.h"
#include "shbuf/grant/sim.h"

namespace shbuf {
namespace {

using Clock = std::chrono::steady_clock;

pid_t spawn(const std::vector<std::string>& argv, const std::string& err_path) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int null = open("/dev/null", O_RDWR);
    const int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(null, 0);
    dup2(null, 1);
    dup2(err, 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

// The exit status, or -1 if it did not end within the timeout (then killed).
int wait_for(pid_t pid, std::chrono::milliseconds timeout, int* signal_out) {
  const auto deadline = Clock::now() + timeout;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  *signal_out = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

TEST(Crash, EitherEndKilledAtRandomLeavesNothingAndTheOtherCopes) {
  const std::string dir = "/dev/shm/shbuf-test-crash-" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string sim = dir + "/sim";
  const std::string err = dir + "/stderr";
  std::mt19937 rng(2026);
  constexpr int kRounds = 300;
  int killed_frontend = 0, killed_backend = 0, victim_already_done = 0;
  for (int round = 0; round < kRounds; ++round) {
    const std::string sock = dir + "/s" + std::to_string(round);
    const pid_t be = spawn({SHBUF_BIN, "backend", "--once", "--accept-timeout", "0.1", "--socket",
                            sock, "--sim", sim, "--domid", "0"},
                           err + ".be");
    const pid_t fe =
        spawn({SHBUF_BIN, "frontend", "--connect-timeout", "0.1", "--socket", sock, "--sim", sim,
               "--domid", "1", "--mode", "both", "--pages", "1,1025,3000,1,1025,3000"},
              err + ".fe");
    const bool kill_frontend = round % 2 == 0;
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 30000));
    const pid_t victim = kill_frontend ? fe : be;
    const pid_t survivor = kill_frontend ? be : fe;
    kill(victim, SIGKILL);
    int victim_signal = 0, survivor_signal = 0;
    wait_for(victim, std::chrono::seconds(5), &victim_signal);
    if (victim_signal == SIGKILL) {
      (kill_frontend ? killed_frontend : killed_backend)++;
    } else {
      ++victim_already_done;
    }
    const int code = wait_for(survivor, std::chrono::seconds(30), &survivor_signal);
    SCOPED_TRACE("round " + std::to_string(round) + ", killed the " +
                 (kill_frontend ? "frontend" : "backend"));
    const std::string survivor_err = testing::slurp(err + (kill_frontend ? ".be" : ".fe"));
    ASSERT_NE(code, -1) << "the survivor hung: " << survivor_err;
    ASSERT_EQ(survivor_signal, 0) << "the survivor died of signal " << survivor_signal << ": "
                                  << survivor_err;
    ASSERT_TRUE(code == 0 || code == 1) << "survivor exit " << code << ": " << survivor_err;

    // Both are gone now: the simulator must notice and hold nothing.
    auto status = SimProvider::status(sim);
    ASSERT_TRUE(status.ok()) << status.error().describe();
    ASSERT_TRUE(status->grants.empty()) << status->grants.size() << " grants left";
    ASSERT_TRUE(status->mappings.empty()) << status->mappings.size() << " mappings left";
    std::filesystem::remove(sock);
  }
  std::printf("killed the frontend %d times, the backend %d times; %d victims had finished\n",
              killed_frontend, killed_backend, victim_already_done);
  EXPECT_GE(killed_frontend + killed_backend, kRounds * 3 / 4);
  (void)SimProvider::reset(sim);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace shbuf
