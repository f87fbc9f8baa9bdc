// A list that keeps its first N items inline and moves to the heap only past
// them: the runs and mapping records of a map or an unmap, which are almost
// always one, without an allocation for each call.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace shbuf::sim {

template <typename T, std::size_t N>
class InlineList {
 public:
  void push_back(const T& item) {
    if (heap_.empty() && size_ < N) {
      inline_[size_++] = item;
      return;
    }
    if (heap_.empty()) heap_.assign(inline_, inline_ + size_);
    heap_.push_back(item);
    ++size_;
  }

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // The items, contiguous wherever they are kept.
  std::span<const T> items() const {
    return heap_.empty() ? std::span<const T>(inline_, size_) : std::span<const T>(heap_);
  }
  const T* begin() const { return items().data(); }
  const T* end() const { return items().data() + size_; }
  const T& front() const { return items().front(); }
  const T& back() const { return items().back(); }

 private:
  T inline_[N] = {};
  std::vector<T> heap_;
  std::size_t size_ = 0;
};

}  // namespace shbuf::sim
