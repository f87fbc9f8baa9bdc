// UniqueFd: the one owner of a file descriptor. Move-only; closes what it
// owns when destroyed or reset. Every descriptor the library and its tools
// own lives in one.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <utility>

namespace shbuf {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing.
  int release() { return std::exchange(fd_, -1); }

  // Closes what is owned (if anything) and owns fd instead.
  void reset(int fd = -1) {
    const int old = std::exchange(fd_, fd);
    if (old >= 0) ::close(old);
  }

  // Closes now and reports close's own failure (0 or an errno value), for
  // descriptors whose close can lose data (a file just written).
  int close() {
    const int old = release();
    return old >= 0 && ::close(old) != 0 ? errno : 0;
  }

 private:
  int fd_ = -1;
};

}  // namespace shbuf
