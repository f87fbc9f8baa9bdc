// `shbuf sim device add|remove` as a toolstack on the simulator, and
// `shbuf displ-be --platform sim` answering the devices it adds: libxl's keys
// and permissions, refusals, and a device torn down as xl destroy does.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "pv/platform.h"
#include "pv/toolstack.h"
#include "run_process.h"
#include "test_sim_util.h"

namespace shbuf {
namespace {

using testing::run_process;
using testing::slurp;

class SimDevice : public simtest::SimTest {
 protected:
  testing::ProcessResult shbuf(std::vector<std::string> args) {
    args.insert(args.begin(), SHBUF_BIN);
    return run_process(args);
  }
  std::unique_ptr<pv::Xenstore> xenstore(DomId self) {
    auto grants = open(self);
    if (!grants) return nullptr;
    auto xs = pv::open_sim_xenstore(grants->path(), self);
    EXPECT_TRUE(xs.ok()) << xs.error().describe();
    return xs.ok() ? std::move(xs).value() : nullptr;
  }
  std::string read(pv::Xenstore& xs, const std::string& p) {
    auto v = xs.read(pv::kNoTransaction, p);
    return v.ok() ? *v : "<" + v.error().describe() + ">";
  }
};

TEST_F(SimDevice, AddWritesLibxlsKeysAndPermissions) {
  auto r = shbuf({"sim", "device", "add", "vdispl", "--sim", path, "--frontend", "1",
                  "--connectors", "64x48,32x16", "--be-alloc"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "added /local/domain/1/device/vdispl/0\n");
  auto dom0 = xenstore(0);
  ASSERT_TRUE(dom0);
  const std::string fe = "/local/domain/1/device/vdispl/0";
  const std::string be = "/local/domain/0/backend/vdispl/1/0";
  EXPECT_EQ(read(*dom0, fe + "/be-alloc"), "1");
  EXPECT_EQ(read(*dom0, fe + "/0/resolution"), "64x48");
  EXPECT_EQ(read(*dom0, fe + "/1/resolution"), "32x16");
  EXPECT_EQ(read(*dom0, fe + "/state"), "1");
  EXPECT_EQ(read(*dom0, fe + "/backend"), be);
  EXPECT_EQ(read(*dom0, fe + "/backend-id"), "0");
  EXPECT_EQ(read(*dom0, be + "/frontend"), fe);
  EXPECT_EQ(read(*dom0, be + "/frontend-id"), "1");
  EXPECT_EQ(read(*dom0, be + "/online"), "1");
  EXPECT_EQ(read(*dom0, be + "/state"), "1");
  // The frontend writes its own directory but not what the toolstack fixed,
  // and reads the backend's without writing it.
  auto dom1 = xenstore(1);
  ASSERT_TRUE(dom1);
  EXPECT_TRUE(dom1->write(pv::kNoTransaction, fe + "/0/req-ring-ref", "8").ok());
  EXPECT_EQ(dom1->write(pv::kNoTransaction, fe + "/be-alloc", "0").code(), EACCES);
  EXPECT_EQ(read(*dom1, be + "/state"), "1");
  EXPECT_EQ(dom1->write(pv::kNoTransaction, be + "/state", "4").code(), EACCES);
  // Another guest sees neither.
  auto dom2 = xenstore(2);
  ASSERT_TRUE(dom2);
  EXPECT_EQ(dom2->read(pv::kNoTransaction, fe + "/state").error().code, EACCES);
  EXPECT_EQ(dom2->read(pv::kNoTransaction, be + "/state").error().code, EACCES);
}

TEST_F(SimDevice, AddWritesASoundCard) {
  auto r = shbuf({"sim", "device", "add", "vsnd", "--sim", path, "--frontend", "2", "--devid", "3",
                  "--sample-rates", "48000", "--streams", "p,c,p"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto dom0 = xenstore(0);
  ASSERT_TRUE(dom0);
  const std::string fe = "/local/domain/2/device/vsnd/3";
  EXPECT_EQ(read(*dom0, fe + "/sample-rates"), "48000");
  EXPECT_EQ(read(*dom0, fe + "/0/name"), "pcm0");
  EXPECT_EQ(read(*dom0, fe + "/0/0/type"), "p");
  EXPECT_EQ(read(*dom0, fe + "/0/1/type"), "c");
  EXPECT_EQ(read(*dom0, fe + "/0/2/unique-id"), "s2p");
  EXPECT_EQ(read(*dom0, "/local/domain/0/backend/vsnd/2/3/state"), "1");
  // As libxl leaves them: every configuration key is the guest's own.
  auto dom2 = xenstore(2);
  ASSERT_TRUE(dom2);
  EXPECT_TRUE(dom2->write(pv::kNoTransaction, fe + "/sample-rates", "8000").ok());
  EXPECT_TRUE(dom2->write(pv::kNoTransaction, fe + "/0/1/type", "p").ok());
}

TEST_F(SimDevice, RefusesWhatCannotBeADevice) {
  auto twice = [&] {
    return shbuf({"sim", "device", "add", "vdispl", "--sim", path, "--frontend", "1"});
  };
  ASSERT_EQ(twice().exit_code, 0);
  auto again = twice();
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("exists"), std::string::npos) << again.err;
  for (const std::vector<std::string>& bad : {std::vector<std::string>{"--connectors", "64x"},
                                              {"--connectors", ""},
                                              {"--frontend", "0"},
                                              {"--frontend", "32752"},
                                              {"--streams", "p,x"}}) {
    std::vector<std::string> args = {"sim", "device", "add", "vdispl", "--sim", path};
    if (bad[0] == "--streams") args[3] = "vsnd";
    args.insert(args.end(), bad.begin(), bad.end());
    if (bad[0] != "--frontend") args.insert(args.end(), {"--frontend", "4"});
    auto r = shbuf(args);
    EXPECT_NE(r.exit_code, 0) << bad[0] << " " << bad[1];
    EXPECT_NE(r.err.find("error"), std::string::npos) << r.err;
  }
  auto kind = shbuf({"sim", "device", "add", "vkbd", "--sim", path});
  EXPECT_EQ(kind.exit_code, 2);
  auto missing = shbuf({"sim", "device", "remove", "vdispl", "--sim", path, "--frontend", "9"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("ENOENT"), std::string::npos) << missing.err;
}

TEST_F(SimDevice, RemoveWaitsOnlyForAConnectedBackendAndRemovesAllTheSame) {
  auto gone = [&](DomId fe) {
    auto dom0 = xenstore(0);
    const std::string f = "/local/domain/" + std::to_string(fe) + "/device/vdispl/0";
    const std::string b = "/local/domain/0/backend/vdispl/" + std::to_string(fe) + "/0";
    return dom0 && dom0->read(pv::kNoTransaction, f).error().code == ENOENT &&
           dom0->read(pv::kNoTransaction, b).error().code == ENOENT;
  };
  // No backend ever came: nothing to wait for.
  ASSERT_EQ(shbuf({"sim", "device", "add", "vdispl", "--sim", path, "--frontend", "1"}).exit_code,
            0);
  auto quick = shbuf({"sim", "device", "remove", "vdispl", "--sim", path, "--frontend", "1"});
  EXPECT_EQ(quick.exit_code, 0) << quick.err;
  EXPECT_TRUE(gone(1));
  // A Connected backend that never answers Closing.
  ASSERT_EQ(shbuf({"sim", "device", "add", "vdispl", "--sim", path, "--frontend", "2"}).exit_code,
            0);
  auto dom0 = xenstore(0);
  ASSERT_TRUE(dom0);
  ASSERT_TRUE(
      dom0->write(pv::kNoTransaction, "/local/domain/0/backend/vdispl/2/0/state", "4").ok());
  auto r = shbuf(
      {"sim", "device", "remove", "vdispl", "--sim", path, "--frontend", "2", "--timeout", "0.1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("ETIMEDOUT"), std::string::npos) << r.err;
  EXPECT_TRUE(gone(2));
}

TEST_F(SimDevice, DisplBeOnTheSimAnswersAndClosesAsOnXen) {
  const std::string out = path + "-out";
  std::filesystem::create_directories(out);
  const std::string log = out + "/be.log";
  // The instance exists before the backend opens it.
  ASSERT_TRUE(open(0));
  const pid_t be = fork();
  if (be == 0) {
    freopen(log.c_str(), "w", stderr);
    execl(SHBUF_BIN, SHBUF_BIN, "displ-be", "--platform", "sim", "--sim", path.c_str(), "--out",
          out.c_str(), "-v", "2", nullptr);
    _exit(127);
  }
  ASSERT_EQ(shbuf({"sim", "device", "add", "vdispl", "--sim", path, "--frontend", "5"}).exit_code,
            0);
  auto dom0 = xenstore(0);
  ASSERT_TRUE(dom0);
  const std::string state = "/local/domain/0/backend/vdispl/5/0/state";
  bool waiting = false;
  for (int i = 0; i < 500 && !waiting; ++i) {
    waiting = read(*dom0, state) == "2";
    if (!waiting) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(waiting) << "the backend never reached InitWait: " << slurp(log);
  // Not Connected: both directories simply go, and the backend forgets it.
  auto r = shbuf({"sim", "device", "remove", "vdispl", "--sim", path, "--frontend", "5"});
  EXPECT_EQ(r.exit_code, 0) << r.err << slurp(log);
  EXPECT_EQ(r.out, "removed /local/domain/5/device/vdispl/0\n");
  for (int i = 0; i < 500 && slurp(log).find("dom5/0: forgotten") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(be, SIGTERM);
  int st = 0;
  waitpid(be, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << slurp(log);
  const std::string text = slurp(log);
  EXPECT_NE(text.find("dom5/0: state 0 -> 2"), std::string::npos) << text;
  EXPECT_NE(text.find("dom5/0: forgotten"), std::string::npos) << text;
  EXPECT_NE(text.find("holds at exit: devices=0 connected=0 ring_mappings=0 event_channels=0 "
                      "dbufs=0 buffer_pages=0"),
            std::string::npos)
      << text;
  std::filesystem::remove_all(out);
}

TEST_F(SimDevice, DisplFeShowsItsPicturesThroughDisplBe) {
  const std::string out = path + "-fe-out";
  std::filesystem::remove_all(out);
  std::filesystem::create_directories(out);
  const std::string log = out + "/be.log";
  ASSERT_TRUE(open(0));
  auto none = shbuf({"displ-fe", "--platform", "sim", "--sim", path, "--domid", "6"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("ENOENT"), std::string::npos) << none.err;
  const pid_t be = fork();
  if (be == 0) {
    if (freopen(log.c_str(), "w", stderr) == nullptr) _exit(126);
    execl(SHBUF_BIN, SHBUF_BIN, "displ-be", "--platform", "sim", "--sim", path.c_str(), "--out",
          out.c_str(), nullptr);
    _exit(127);
  }
  ASSERT_EQ(shbuf({"sim", "device", "add", "vdispl", "--sim", path, "--frontend", "6",
                   "--connectors", "40x30,20x10"})
                .exit_code,
            0);
  auto fe =
      shbuf({"displ-fe", "--platform", "sim", "--sim", path, "--domid", "6", "--frames", "2"});
  EXPECT_EQ(fe.exit_code, 0) << fe.err << slurp(log);
  EXPECT_NE(fe.out.find("connector 0: 40x30: frame 2 shown"), std::string::npos) << fe.out;
  EXPECT_NE(fe.out.find("connector 1: 20x10: frame 2 shown"), std::string::npos) << fe.out;
  // Frames are written after their flip is answered: each file within 5 s.
  auto appears = [](const std::string& file) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!std::filesystem::exists(file) && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return std::filesystem::exists(file);
  };
  EXPECT_TRUE(appears(out + "/dom6-dev0-c0-000002.png"));
  EXPECT_TRUE(appears(out + "/dom6-dev0-c1-000002.png"));
  EXPECT_EQ(
      shbuf({"sim", "device", "remove", "vdispl", "--sim", path, "--frontend", "6"}).exit_code, 0);
  kill(be, SIGTERM);
  int st = 0;
  waitpid(be, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << slurp(log);
  std::filesystem::remove_all(out);
}

}  // namespace
}  // namespace shbuf
