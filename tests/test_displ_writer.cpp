// The frame writer on its own: frames are handed to the output in order on
// its worker; when the worker is held up, the latest frame of a connector
// wins within the byte budget and every dropped frame is counted; failures
// are counted and logged once per run; finish() writes what is queued, in
// bounded time.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pv/displ/writer.h"

namespace shbuf::displ {
namespace {

using namespace std::chrono_literals;

// An output that records what it is handed and, while closed, holds the
// worker on the first frame it gets.
class Gate {
 public:
  FrameSink sink(std::string tag) {
    return [this, tag = std::move(tag)](Frame&& f) -> Status {
      std::unique_lock lock(mu_);
      ++entered_;
      changed_.notify_all();
      changed_.wait(lock, [this] { return open_; });
      written_.push_back(tag + ":" + std::to_string(f.connector) + ":" + std::to_string(f.number));
      return {};
    };
  }
  // Waits until the worker holds `n` frames in all.
  bool entered(int n) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, 5s, [&] { return entered_ >= n; });
  }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    changed_.notify_all();
  }
  std::vector<std::string> written() {
    std::lock_guard lock(mu_);
    return written_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  int entered_ = 0;
  bool open_ = false;
  std::vector<std::string> written_;
};

// Opens the gate when a test ends, early on a failed assertion too, so that
// the writer's destructor finds its worker free instead of held for good.
class OpenAtEnd {
 public:
  explicit OpenAtEnd(Gate& gate) : gate_(gate) {}
  ~OpenAtEnd() { gate_.open(); }
  OpenAtEnd(const OpenAtEnd&) = delete;
  OpenAtEnd& operator=(const OpenAtEnd&) = delete;

 private:
  Gate& gate_;
};

Frame frame(std::size_t connector, std::uint64_t number, std::size_t bytes = 100) {
  return Frame{connector, number, 1,
               RawFrame{*find_pixel_format(kFormatXRGB8888), 5, 5, std::vector<std::byte>(bytes)}};
}

TEST(DisplWriter, TheLatestFrameOfAConnectorWinsAndDropsAreCounted) {
  Gate gate;
  std::vector<std::string> logged;
  WriterOptions o;
  o.budget_bytes = 300;  // three frames of 100 bytes wait
  o.log = [&logged](const std::string& line) { logged.push_back(line); };
  FrameWriter w(o);
  OpenAtEnd open_at_end(gate);
  FrameSink a = w.queue_to("a", gate.sink("a"));
  FrameSink b = w.queue_to("b", gate.sink("b"));
  ASSERT_TRUE(a(frame(0, 0)).ok());
  ASSERT_TRUE(gate.entered(1));  // the worker is held on a:0:0
  for (std::uint64_t n = 1; n <= 5; ++n) ASSERT_TRUE(a(frame(0, n)).ok());
  // Waiting: a:0:3, a:0:4, a:0:5 (1 and 2 gave way to newer ones).
  EXPECT_EQ(w.counts().dropped, 2u);
  EXPECT_EQ(w.counts().queued, 3u);
  EXPECT_EQ(w.counts().queued_bytes, 300u);
  // Connector 1 of the same device, then device b: each takes the place
  // of the oldest frame of a connector that has a newer one waiting.
  ASSERT_TRUE(a(frame(1, 0)).ok());
  ASSERT_TRUE(b(frame(0, 0)).ok());
  EXPECT_EQ(w.counts().dropped, 4u);
  // Now every waiting frame is its connector's latest: a new connector's
  // frame does not fit and is the one dropped.
  ASSERT_TRUE(b(frame(1, 0)).ok());
  EXPECT_EQ(w.counts().dropped, 5u);
  gate.open();
  ASSERT_TRUE(w.wait_idle(5s));
  EXPECT_EQ(gate.written(), (std::vector<std::string>{"a:0:0", "a:0:5", "a:1:0", "b:0:0"}));
  const WriterCounts c = w.counts();
  EXPECT_EQ(c.written, 4u);
  EXPECT_EQ(c.dropped, 5u);
  EXPECT_EQ(c.failed, 0u);
  EXPECT_EQ(c.queued, 0u);
  EXPECT_EQ(w.counts_text(), "frames_queued=0 frames_written=4 frames_dropped=5 write_failures=0");
  // One line for the whole run of drops.
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_NE(logged[0].find("a: c0: the frame writer is behind"), std::string::npos) << logged[0];
}

// The queue is bounded in frames too, and a frame larger than the whole
// budget still goes through when nothing waits.
TEST(DisplWriter, AFrameLargerThanTheBudgetIsWrittenWhenNothingWaits) {
  Gate gate;
  WriterOptions o;
  o.budget_bytes = 50;
  FrameWriter w(o);
  OpenAtEnd open_at_end(gate);
  FrameSink a = w.queue_to("a", gate.sink("a"));
  ASSERT_TRUE(a(frame(0, 0)).ok());
  ASSERT_TRUE(gate.entered(1));
  ASSERT_TRUE(a(frame(0, 1)).ok());  // waits alone, over budget
  ASSERT_TRUE(a(frame(0, 2)).ok());  // takes its place
  EXPECT_EQ(w.counts().dropped, 1u);
  gate.open();
  ASSERT_TRUE(w.wait_idle(5s));
  EXPECT_EQ(gate.written(), (std::vector<std::string>{"a:0:0", "a:0:2"}));
}

TEST(DisplWriter, FailuresAreCountedAndLoggedOncePerRun) {
  std::vector<std::string> logged;
  WriterOptions o;
  o.log = [&logged](const std::string& line) { logged.push_back(line); };
  FrameWriter w(o);
  // Frames 0-2 and 4 fail, 3 is written.
  FrameSink a = w.queue_to("dom1/0", [](Frame&& f) -> Status {
    if (f.number == 3) return {};
    return make_error(ENOSPC, "disk full");
  });
  for (std::uint64_t n = 0; n < 5; ++n) {
    ASSERT_TRUE(a(frame(0, n)).ok());  // never the flip's status
    ASSERT_TRUE(w.wait_idle(5s));
  }
  const WriterCounts c = w.counts();
  EXPECT_EQ(c.written, 1u);
  EXPECT_EQ(c.failed, 4u);
  ASSERT_EQ(logged.size(), 3u);
  EXPECT_NE(logged[0].find("dom1/0: c0: frame 0 not written: "), std::string::npos) << logged[0];
  EXPECT_NE(logged[0].find("disk full"), std::string::npos) << logged[0];
  EXPECT_NE(logged[1].find("dom1/0: frames are written again, after 3 failure(s)"),
            std::string::npos)
      << logged[1];
  EXPECT_NE(logged[2].find("frame 4 not written"), std::string::npos) << logged[2];
}

// The output of a device that is gone (its sink dropped) still gets its
// frames, and finish() writes everything queued before it stops.
TEST(DisplWriter, FinishWritesWhatIsQueuedForDevicesThatAreGone) {
  Gate gate;
  FrameWriter w;
  OpenAtEnd open_at_end(gate);
  {
    FrameSink a = w.queue_to("a", gate.sink("a"));
    for (std::uint64_t n = 0; n < 4; ++n) ASSERT_TRUE(a(frame(0, n)).ok());
    ASSERT_TRUE(gate.entered(1));
  }
  std::thread opener([&gate] {
    std::this_thread::sleep_for(50ms);
    gate.open();
  });
  w.finish(5s);
  opener.join();
  EXPECT_EQ(gate.written(), (std::vector<std::string>{"a:0:0", "a:0:1", "a:0:2", "a:0:3"}));
  EXPECT_EQ(w.counts().dropped, 0u);
}

// A writer that cannot keep up does not hold the exit: what is still
// queued after the time limit is dropped and counted.
TEST(DisplWriter, FinishIsBounded) {
  std::vector<std::string> logged;
  WriterOptions o;
  o.log = [&logged](const std::string& line) { logged.push_back(line); };
  FrameWriter w(o);
  FrameSink slow = w.queue_to("a", [](Frame&&) -> Status {
    std::this_thread::sleep_for(50ms);
    return {};
  });
  for (std::uint64_t n = 0; n < 20; ++n) ASSERT_TRUE(slow(frame(0, n)).ok());
  const auto t0 = std::chrono::steady_clock::now();
  w.finish(100ms);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  const WriterCounts c = w.counts();
  EXPECT_GE(c.dropped, 1u);
  EXPECT_EQ(c.written + c.dropped, 20u);
  ASSERT_FALSE(logged.empty());
  EXPECT_NE(logged.back().find("still queued after 100 ms are dropped"), std::string::npos);
  // Frames after finish() are dropped, never written.
  ASSERT_TRUE(slow(frame(0, 20)).ok());
  EXPECT_EQ(w.counts().dropped, c.dropped + 1);
}

// Buffers written out come back for the next frames.
TEST(DisplWriter, WrittenBuffersAreReused) {
  FrameWriter w;
  FrameSink a = w.queue_to("a", [](Frame&&) -> Status { return {}; });
  Frame f = frame(0, 0, 4096);
  const std::byte* storage = f.pixels.bytes.data();
  ASSERT_TRUE(a(std::move(f)).ok());
  ASSERT_TRUE(w.wait_idle(5s));
  std::vector<std::byte> again = w.storage(4000);
  EXPECT_EQ(again.data(), storage);
  EXPECT_TRUE(w.storage(4000).empty());  // nothing else spare
}

// The worker keeps spares of the size flips ask for ready, so that a flip
// copies into memory already faulted in even while the queue grows; spares
// too small for the frames now asked for are let go.
TEST(DisplWriter, SparesOfTheSizeFlipsAskForAreMadeReady) {
  FrameWriter w;
  FrameSink a = w.queue_to("a", [](Frame&&) -> Status { return {}; });
  for (const std::size_t bytes : {std::size_t{4096}, std::size_t{3} << 20}) {
    std::vector<std::byte> first = w.storage(bytes);
    EXPECT_TRUE(first.empty());  // none of this size yet: the flip makes its own
    ASSERT_TRUE(a(frame(0, 0, bytes)).ok());
    ASSERT_TRUE(w.wait_idle(5s));
    std::vector<std::byte> one = w.storage(bytes);
    std::vector<std::byte> two = w.storage(bytes);
    EXPECT_GE(one.capacity(), bytes);
    EXPECT_GE(two.capacity(), bytes);
    EXPECT_EQ(one.size(), bytes);  // every byte already touched
    EXPECT_EQ(two.size(), bytes);
    EXPECT_TRUE(w.storage(bytes).empty());  // at most two
  }
}

}  // namespace
}  // namespace shbuf::displ
