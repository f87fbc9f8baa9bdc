// Every failure the providers can report, at every call of a buffer's life
// (create, attach, map, unmap, detach, free), on either side: the failure
// surfaces as an error and nothing stays granted, mapped or allocated.
#include <gtest/gtest.h>

#include <string>

#include "shbuf/core/backend_buffer.h"
#include "shbuf/core/frontend_buffer.h"
#include "sim_fixture.h"

namespace shbuf {
namespace {

constexpr std::size_t kPages = 1025;  // two directory pages: the walk maps twice

struct Outcome {
  int failures = 0;
  std::string first_error;
};

// One whole life of a buffer; every step runs if its inputs exist, and every
// error is recorded with its message.
Outcome lifecycle(Provider& fe, Provider& be, AllocMode mode) {
  Outcome out;
  auto note = [&out](const Error& e) {
    EXPECT_FALSE(e.message.empty());
    if (out.failures++ == 0) out.first_error = e.describe();
  };
  auto check = [&](const Status& s) {
    if (!s.ok()) note(s.error());
  };
  FrontendBufferConfig fc;
  fc.backend = testing::SimPair::kBackendDom;
  fc.pages = kPages;
  fc.mode = mode;
  auto f = FrontendBuffer::create(fe, fc);
  if (!f.ok()) {
    note(f.error());
    return out;
  }
  BackendBufferConfig bc;
  bc.frontend = testing::SimPair::kFrontendDom;
  bc.directory_gref = f->directory_gref();
  bc.pages = kPages;
  bc.mode = mode;
  auto b = BackendBuffer::attach(be, bc);
  if (!b.ok()) note(b.error());
  if (b.ok() && mode == AllocMode::kBackend) {
    Status mapped = f->map();
    check(mapped);
    if (mapped.ok()) {
      f->memory()[0] = std::byte{1};
      EXPECT_EQ(b->memory()[0], std::byte{1});
      check(f->unmap());
    }
  }
  if (b.ok()) check(b->detach());
  check(f->free());
  return out;
}

const char* op_name(SimFaultOp op) {
  switch (op) {
    case SimFaultOp::kShare:
      return "share";
    case SimFaultOp::kEnd:
      return "end";
    case SimFaultOp::kMap:
      return "map";
    case SimFaultOp::kUnmap:
      return "unmap";
    case SimFaultOp::kCopy:
      return "copy";
  }
  return "?";
}

std::uint64_t calls_of(const ProviderStats& s, SimFaultOp op) {
  switch (op) {
    case SimFaultOp::kShare:
      return s.share_calls;
    case SimFaultOp::kEnd:
      return s.end_calls;
    case SimFaultOp::kMap:
      return s.map_calls;
    case SimFaultOp::kUnmap:
      return s.unmap_calls;
    case SimFaultOp::kCopy:
      return s.copy_calls;
  }
  return 0;
}

class BufferFaults : public testing::SimPair {};

TEST_F(BufferFaults, EveryInjectedFailureIsReportedAndLeavesNothing) {
  int injected_runs[5] = {};
  for (AllocMode mode : {AllocMode::kFrontend, AllocMode::kBackend}) {
    // A clean life first, to know how many calls of each op each side makes.
    const ProviderStats fe0 = fe->stats(), be0 = be->stats();
    ASSERT_EQ(lifecycle(*fe, *be, mode).failures, 0);
    const ProviderStats fe1 = fe->stats(), be1 = be->stats();
    expect_clean();
    for (SimFaultOp op : {SimFaultOp::kShare, SimFaultOp::kEnd, SimFaultOp::kMap,
                          SimFaultOp::kUnmap, SimFaultOp::kCopy}) {
      for (bool on_frontend : {true, false}) {
        SimProvider& side = on_frontend ? *fe : *be;
        const std::uint64_t calls = on_frontend ? calls_of(fe1, op) - calls_of(fe0, op)
                                                : calls_of(be1, op) - calls_of(be0, op);
        for (unsigned k = 1; k <= calls; ++k) {
          SCOPED_TRACE(std::string(to_string(mode)) + ", " +
                       (on_frontend ? "frontend" : "backend") + " " + op_name(op) + " call " +
                       std::to_string(k) + " of " + std::to_string(calls));
          side.inject_fault(op, k, EIO);
          const Outcome out = lifecycle(*fe, *be, mode);
          side.clear_faults();
          EXPECT_GE(out.failures, 1) << "the injected failure went unreported";
          EXPECT_NE(out.first_error.find("EIO"), std::string::npos) << out.first_error;
          expect_clean();
          ++injected_runs[int(op)];
        }
      }
    }
  }
  // Share, end, map, unmap and copy calls are all made on some side.
  for (SimFaultOp op : {SimFaultOp::kShare, SimFaultOp::kEnd, SimFaultOp::kMap, SimFaultOp::kUnmap,
                        SimFaultOp::kCopy}) {
    EXPECT_GE(injected_runs[int(op)], 1) << op_name(op);
  }
}

TEST_F(BufferFaults, OneGrefThatFailsToMapLeavesNothing) {
  for (AllocMode mode : {AllocMode::kFrontend, AllocMode::kBackend}) {
    SCOPED_TRACE(to_string(mode));
    FrontendBufferConfig fc;
    fc.backend = kBackendDom;
    fc.pages = kPages;
    fc.mode = mode;
    auto f = FrontendBuffer::create(*fe, fc);
    ASSERT_TRUE(f.ok());
    BackendBufferConfig bc;
    bc.frontend = kFrontendDom;
    bc.directory_gref = f->directory_gref();
    bc.pages = kPages;
    bc.mode = mode;
    if (mode == AllocMode::kFrontend) {
      // The backend cannot map the frontend's 700th buffer page.
      be->inject_gref_fault(kFrontendDom, f->buffer_grefs()[700], ENOMEM);
      auto b = BackendBuffer::attach(*be, bc);
      ASSERT_FALSE(b.ok());
      EXPECT_EQ(b.error().code, ENOMEM) << b.error().describe();
    } else {
      auto b = BackendBuffer::attach(*be, bc);
      ASSERT_TRUE(b.ok());
      // The frontend cannot map the backend's 700th page.
      fe->inject_gref_fault(kBackendDom, b->buffer_grefs()[700], ENOMEM);
      Status mapped = f->map();
      EXPECT_EQ(mapped.code(), ENOMEM) << mapped.error().describe();
      EXPECT_FALSE(f->mapped());
      EXPECT_TRUE(f->memory().empty());
    }
    be->clear_faults();
    fe->clear_faults();
    ASSERT_TRUE(f->free().ok());
    expect_clean();
  }
}

}  // namespace
}  // namespace shbuf
