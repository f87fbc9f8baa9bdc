// A private simulator instance with a frontend domain (1) and a backend
// domain (0) in this process, removed afterwards.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>

#include "shbuf/grant/sim.h"

namespace shbuf::testing {

class SimPair : public ::testing::Test {
 public:
  static constexpr DomId kBackendDom = 0;
  static constexpr DomId kFrontendDom = 1;

 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path = "/dev/shm/shbuf-test-" + std::to_string(::getpid()) + "-" + info->test_suite_name() +
           "-" + info->name();
    // Parameterised tests are named Prefix/Suite.Name/Param.
    std::replace(path.begin() + 9, path.end(), '/', '_');
    std::filesystem::remove_all(path);
    fe = open_dom(kFrontendDom);
    be = open_dom(kBackendDom);
    ASSERT_TRUE(fe && be);
  }

  void TearDown() override {
    fe.reset();
    be.reset();
    (void)SimProvider::reset(path);
    std::filesystem::remove_all(path);
  }

  std::unique_ptr<SimProvider> open_dom(DomId domid, std::uint32_t max_grant_frames = 1024) {
    SimOptions options;
    options.path = path;
    options.domid = domid;
    options.max_grant_frames = max_grant_frames;
    auto p = SimProvider::open(options);
    EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().describe());
    return p.ok() ? std::move(p).value() : nullptr;
  }

  // No grant in use, no mapping, nothing pending, in the whole instance.
  void expect_clean() {
    auto st = SimProvider::status(path);
    ASSERT_TRUE(st.ok()) << st.error().describe();
    EXPECT_TRUE(st->grants.empty()) << st->grants.size() << " grants left";
    EXPECT_TRUE(st->mappings.empty()) << st->mappings.size() << " mappings left";
    for (const auto& d : st->domains) {
      EXPECT_EQ(d.frames_in_use, 0u) << "domain " << d.domid << " holds pages";
    }
  }

  std::string path;
  std::unique_ptr<SimProvider> fe;
  std::unique_ptr<SimProvider> be;
};

}  // namespace shbuf::testing
