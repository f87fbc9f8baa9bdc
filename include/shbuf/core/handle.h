// The move logic every owning handle of the library shares (Share, Mapping,
// FrontendBuffer, BackendBuffer).
//
// A handle keeps what it owns in a plain Fields struct whose default value is
// "owns nothing". Moving hands the fields over and leaves the source at that
// default; move assignment first releases what the target owned. The handle
// itself says how to release (a private `Status release()`) and calls it from
// its destructor.
#pragma once

#include <utility>

namespace shbuf::detail {

template <typename Self, typename Fields>
class OwningHandle : protected Fields {
 public:
  OwningHandle(const OwningHandle&) = delete;
  OwningHandle& operator=(const OwningHandle&) = delete;

 protected:
  OwningHandle() = default;
  ~OwningHandle() = default;
  OwningHandle(OwningHandle&& other) noexcept : Fields(other.take()) {}
  OwningHandle& operator=(OwningHandle&& other) noexcept {
    if (this != &other) {
      (void)static_cast<Self*>(this)->release();
      static_cast<Fields&>(*this) = other.take();
    }
    return *this;
  }

  // Hands over what is owned, leaving this handle empty. `empty` is
  // default-initialised: the members' own initialisers, without first
  // value-initialising (zeroing) the whole struct.
  Fields take() noexcept {
    Fields empty;
    return std::exchange(static_cast<Fields&>(*this), std::move(empty));
  }
};

}  // namespace shbuf::detail
