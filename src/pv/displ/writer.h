// Frames written off the ring path: the device copies a shown frame out of
// the guest's buffer and queues it here, the flip is answered at once, and
// one worker thread converts, encodes and writes the queued frames in order.
//
// One worker per backend process, shared by every device: the memory budget
// is then one number for the whole process whatever the guests do, a guest
// adding devices cannot add threads, and encoding takes at most one core
// besides the ring loop's. The worker runs at nice 10: where it shares a
// core with the ring loop, a flip is answered first and frames wait (and
// are dropped when they must), yet a busy loop does not starve it.
//
// Bounded: frames waiting hold at most `budget_bytes` of pixels and number
// at most `max_queued` (one frame larger than the whole budget is still
// taken when nothing waits). Beyond that, memory is the frame being written
// (with its RGB image and encoded bytes) and at most two spare buffers of the
// size flips last asked for, kept for the next flips: frames already written
// or dropped, or made (and faulted in) by the worker after each frame it
// writes, so that a flip never waits for fresh memory. Once the queue has
// drained, the memory of freed frames is given back to the system (at most
// once a second). When a new frame does not fit, the
// latest frame of a connector wins: older frames of the same connector that still wait are dropped
// first, then older frames of connectors that have a newer one waiting; if it still does not fit
// the new frame is dropped. Every dropped frame is counted.
//
// A failure to write is counted and logged once per run of failures; it is
// never the flip's status (the flip was answered before the write).
// Frames of a device that goes away are still written. finish() writes what
// waits within a time limit, drops (and counts) the rest, and stops.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pv/displ/device.h"

namespace shbuf::displ {

// Room for 69 frames of 800x600x4 waiting (a guest flipping a few frames a
// second never loses one) or three of 3840x2160x4.
inline constexpr std::size_t kDefaultQueueBudget = std::size_t{128} << 20;
inline constexpr std::size_t kDefaultMaxQueuedFrames = 1024;
// How long displ-be waits at exit for the frames still queued.
inline constexpr std::chrono::milliseconds kDefaultFlushTimeout{10000};

// For the sinks the worker runs (png_frame_sink, digest_frame_sink): every
// few rows of a frame, the worker offers its core to a thread that waits
// for it (sched_yield). Where the ring loop shares the core, the scheduler
// may let the worker run to the end of its time slice when the ring loop
// wakes (measured here: up to 3.6 ms of a flip's latency at 1920x1080);
// with this, the ring loop waits for at most a few rows' work.
BetweenRows worker_gives_way();

struct WriterOptions {
  std::size_t budget_bytes = kDefaultQueueBudget;
  std::size_t max_queued = kDefaultMaxQueuedFrames;
  // Failures and drops, one line each (without a newline); may be called
  // from the worker thread.
  std::function<void(const std::string&)> log;
};

struct WriterCounts {
  std::size_t queued = 0;        // frames waiting now
  std::size_t queued_bytes = 0;  // their pixels
  std::uint64_t written = 0;
  std::uint64_t dropped = 0;
  std::uint64_t failed = 0;
};

class FrameWriter {
 public:
  explicit FrameWriter(WriterOptions options = {});
  // finish(kDefaultFlushTimeout) unless finished.
  ~FrameWriter();
  FrameWriter(const FrameWriter&) = delete;
  FrameWriter& operator=(const FrameWriter&) = delete;

  // A sink for one device: each frame is queued, to be handed to `output`
  // on the worker. The sink never fails (a frame that does not fit is
  // dropped and counted); `output` lives until its last frame is written.
  // `name` (e.g. "dom1/0") prefixes the log lines about its frames.
  FrameSink queue_to(std::string name, FrameSink output);
  // Storage for the next frame: a spare buffer when one is large enough.
  std::vector<std::byte> storage(std::size_t bytes);
  FrameStorage storage_source() {
    return [this](std::size_t bytes) { return storage(bytes); };
  }

  // Writes the frames queued, waiting at most `timeout` (plus the frame
  // being written); frames still queued then are dropped and counted. Stops
  // the worker: frames queued later are dropped.
  void finish(std::chrono::milliseconds timeout);
  // Waits (at most `timeout`) until nothing is queued or being written.
  bool wait_idle(std::chrono::milliseconds timeout);

  WriterCounts counts() const;
  // "frames_queued=0 frames_written=12 frames_dropped=0 write_failures=0".
  std::string counts_text() const;

 private:
  struct Output {
    std::string name;
    FrameSink sink;
    std::uint64_t id = 0;
  };
  struct Job {
    std::shared_ptr<Output> output;
    Frame frame;
  };

  void queue(const std::shared_ptr<Output>& output, Frame&& frame);
  bool fits(std::size_t bytes) const;
  bool same_connector(const Job& a, const Job& b) const;
  void drop(std::deque<Job>::iterator it, std::vector<std::vector<std::byte>>& freed);
  void recycle(std::vector<std::byte>&& bytes);
  void prepare_spares(std::unique_lock<std::mutex>& lock);
  void run();
  void give_back_memory(std::unique_lock<std::mutex>& lock);
  void log(const std::string& line) const;

  WriterOptions options_;
  mutable std::mutex mu_;
  std::condition_variable wake_;  // the worker: a frame or stop
  std::condition_variable idle_;  // finish(): a frame written
  std::deque<Job> queue_;
  std::vector<std::vector<std::byte>> spares_;
  std::size_t wanted_bytes_ = 0;  // what the last flip asked storage() for
  WriterCounts counts_;
  std::uint64_t next_output_ = 0;
  std::uint64_t failures_in_run_ = 0;
  bool dropping_ = false;  // since the queue was last empty
  bool busy_ = false;      // the worker holds a frame
  bool stopping_ = false;
  bool finished_ = false;
  std::chrono::steady_clock::time_point last_give_back_{};  // the worker's
  std::thread worker_;
};

}  // namespace shbuf::displ
