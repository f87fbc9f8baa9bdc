// The frame queue and its worker thread.
#include "pv/displ/writer.h"

#include <malloc.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>

namespace shbuf::displ {
namespace {

constexpr int kWorkerNice = 10;
constexpr std::chrono::seconds kGiveBackEvery{1};
constexpr std::size_t kMaxSpares = 2;
// 16 rows of 1920 pixels take about 0.3 ms to convert or to encode at PNG
// level 1 here (a whole 1920x1080 frame: 15-18 ms and 19-21 ms).
constexpr unsigned kRowsBetweenYields = 16;

}  // namespace

BetweenRows worker_gives_way() {
  return [] {
    thread_local unsigned rows = 0;
    if (++rows % kRowsBetweenYields == 0) (void)::sched_yield();
  };
}

FrameWriter::FrameWriter(WriterOptions options) : options_(std::move(options)) {
  worker_ = std::thread([this] { run(); });
}

// Never leaves the worker running, and never waits without a bound.
FrameWriter::~FrameWriter() {
  finish(kDefaultFlushTimeout);
}

FrameSink FrameWriter::queue_to(std::string name, FrameSink output) {
  auto out = std::make_shared<Output>();
  out->name = std::move(name);
  out->sink = std::move(output);
  {
    std::lock_guard lock(mu_);
    out->id = next_output_++;
  }
  return [this, out](Frame&& frame) -> Status {
    queue(out, std::move(frame));
    return {};
  };
}

// Frames are nearly always the size of the one before: a buffer written out
// comes back here instead of the heap handing out (and the kernel zeroing)
// fresh pages on every flip.
std::vector<std::byte> FrameWriter::storage(std::size_t bytes) {
  std::lock_guard lock(mu_);
  wanted_bytes_ = bytes;
  for (auto it = spares_.begin(); it != spares_.end(); ++it) {
    if (it->capacity() >= bytes) {
      std::vector<std::byte> v = std::move(*it);
      spares_.erase(it);
      return v;
    }
  }
  return {};
}

// Under mu_: whether a frame of `bytes` may join the queue as it is.
bool FrameWriter::fits(std::size_t bytes) const {
  return queue_.empty() || (queue_.size() < options_.max_queued &&
                            counts_.queued_bytes + bytes <= options_.budget_bytes);
}

bool FrameWriter::same_connector(const Job& a, const Job& b) const {
  return a.output->id == b.output->id && a.frame.connector == b.frame.connector;
}

// Under mu_: the frame's bytes are handed back for recycle() once the new
// frame is in.
void FrameWriter::drop(std::deque<Job>::iterator it, std::vector<std::vector<std::byte>>& freed) {
  counts_.queued_bytes -= it->frame.pixels.bytes.size();
  ++counts_.dropped;
  freed.push_back(std::move(it->frame.pixels.bytes));
  queue_.erase(it);
  counts_.queued = queue_.size();
}

// Under mu_: keeps at most kMaxSpares spares (outside the budget: when the
// writer is behind the queue is full, and that is when fresh buffers cost
// most), none smaller than the frames flips last asked for.
void FrameWriter::recycle(std::vector<std::byte>&& bytes) {
  if (spares_.size() >= kMaxSpares || bytes.capacity() == 0 || bytes.capacity() < wanted_bytes_) {
    return;
  }
  spares_.push_back(std::move(bytes));
}

// Under mu_, released while a buffer is made: after each frame it writes,
// the worker makes kMaxSpares spares of the size flips last asked for ready,
// faulted in, so that a flip copies into memory the kernel has already given
// (faulting a 1920x1080 frame in on the flip path took 3 ms, and up to 50 ms
// when the kernel had to compact memory for its 2 MiB pages). This is what
// lets the queue grow, when the writer falls behind, without the flips paying
// for it.
void FrameWriter::prepare_spares(std::unique_lock<std::mutex>& lock) {
  std::erase_if(spares_,
                [&](const std::vector<std::byte>& v) { return v.capacity() < wanted_bytes_; });
  while (spares_.size() < kMaxSpares && wanted_bytes_ != 0 && !stopping_) {
    const std::size_t bytes = wanted_bytes_;
    lock.unlock();
    std::vector<std::byte> fresh = fresh_frame_storage(bytes);
    lock.lock();
    if (fresh.capacity() < wanted_bytes_) continue;  // flips changed size meanwhile
    spares_.push_back(std::move(fresh));
  }
}

// The latest frame of a connector wins over older ones still waiting.
void FrameWriter::queue(const std::shared_ptr<Output>& output, Frame&& frame) {
  Job job{output, std::move(frame)};
  const std::size_t bytes = job.frame.pixels.bytes.size();
  const std::size_t connector = job.frame.connector;
  std::string note;
  std::vector<std::vector<std::byte>> freed;  // those not kept go after the lock
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      ++counts_.dropped;
      return;
    }
    const std::uint64_t dropped_before = counts_.dropped;
    for (auto it = queue_.begin(); !fits(bytes) && it != queue_.end();) {
      if (same_connector(*it, job)) {
        drop(it, freed);
        it = queue_.begin();
      } else {
        ++it;
      }
    }
    while (!fits(bytes)) {
      auto victim = queue_.end();
      for (auto it = queue_.begin(); it != queue_.end() && victim == queue_.end(); ++it) {
        for (auto later = it + 1; later != queue_.end(); ++later) {
          if (same_connector(*it, *later)) {
            victim = it;
            break;
          }
        }
      }
      if (victim == queue_.end()) break;
      drop(victim, freed);
    }
    if (fits(bytes)) {
      counts_.queued_bytes += bytes;
      queue_.push_back(std::move(job));
      counts_.queued = queue_.size();
      wake_.notify_one();
    } else {
      ++counts_.dropped;
    }
    // A dropped frame's buffer serves the next flip.
    for (std::vector<std::byte>& old : freed) recycle(std::move(old));
    if (counts_.dropped != dropped_before && !dropping_) {
      dropping_ = true;
      note = output->name + ": c" + std::to_string(connector) +
             ": the frame writer is behind; dropping older frames (counted, not logged, until it "
             "catches up; budget " +
             std::to_string(options_.budget_bytes >> 20) + " MiB)";
    }
  }
  if (!note.empty()) log(note);
}

// One frame at a time, in the order they came, outside the lock.
void FrameWriter::run() {
  // Behind the ring loop, never in its way: on a busy core a frame waits,
  // a flip does not. Not below nice 10 (the weight of a tenth of a nice-0
  // thread), so that frames are still written while the loop is kept busy.
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kWorkerNice);
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return !queue_.empty() || stopping_; });
    if (queue_.empty()) return;
    Job job = std::move(queue_.front());
    queue_.pop_front();
    counts_.queued_bytes -= job.frame.pixels.bytes.size();
    counts_.queued = queue_.size();
    if (queue_.empty()) dropping_ = false;
    busy_ = true;
    lock.unlock();
    const std::size_t connector = job.frame.connector;
    const std::uint64_t number = job.frame.number;
    const Status s = job.output->sink(std::move(job.frame));
    std::vector<std::byte> bytes = std::move(job.frame.pixels.bytes);
    const std::string name = job.output->name;
    job = Job{};  // the output may go with its last frame
    // failures_in_run_ is the worker's alone. The line is logged before
    // the frame counts as done, so that whoever waits for that sees it.
    std::string note;
    if (s.ok() && failures_in_run_ != 0) {
      note = name + ": frames are written again, after " + std::to_string(failures_in_run_) +
             " failure(s)";
      failures_in_run_ = 0;
    } else if (!s.ok() && failures_in_run_++ == 0) {
      note = name + ": c" + std::to_string(connector) + ": frame " + std::to_string(number) +
             " not written: " + s.error().describe() +
             " (failures are counted, not logged, until a frame is written)";
    }
    if (!note.empty()) log(note);
    lock.lock();
    recycle(std::move(bytes));
    prepare_spares(lock);
    busy_ = false;
    ++(s.ok() ? counts_.written : counts_.failed);
    idle_.notify_all();
    if (bytes.capacity() != 0) {  // not kept: freed without holding up the ring
      lock.unlock();
      bytes = {};
      lock.lock();
    }
    if (queue_.empty()) give_back_memory(lock);
  }
}

// glibc keeps the memory of freed frames for later ones, so that a burst of
// queued frames would stay in the process's resident memory for its life.
// Once the queue has drained, at most once a second, it is given back.
void FrameWriter::give_back_memory(std::unique_lock<std::mutex>& lock) {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_give_back_ < kGiveBackEvery) return;
  last_give_back_ = now;
  lock.unlock();
  (void)::malloc_trim(0);
  lock.lock();
}

bool FrameWriter::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return idle_.wait_for(lock, timeout, [this] { return queue_.empty() && !busy_; });
}

void FrameWriter::finish(std::chrono::milliseconds timeout) {
  std::string note;
  {
    std::unique_lock lock(mu_);
    if (finished_) return;
    finished_ = true;
    if (!idle_.wait_for(lock, timeout, [this] { return queue_.empty() && !busy_; })) {
      note = std::to_string(queue_.size()) + " frame(s) still queued after " +
             std::to_string(timeout.count()) + " ms are dropped";
      counts_.dropped += queue_.size();
      queue_.clear();
      counts_.queued = 0;
      counts_.queued_bytes = 0;
    }
    stopping_ = true;
    wake_.notify_all();
  }
  worker_.join();
  if (!note.empty()) log(note);
}

WriterCounts FrameWriter::counts() const {
  std::lock_guard lock(mu_);
  return counts_;
}

std::string FrameWriter::counts_text() const {
  const WriterCounts c = counts();
  return "frames_queued=" + std::to_string(c.queued) +
         " frames_written=" + std::to_string(c.written) +
         " frames_dropped=" + std::to_string(c.dropped) +
         " write_failures=" + std::to_string(c.failed);
}

void FrameWriter::log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

}  // namespace shbuf::displ
