// The library's promise that no exception crosses it: the one place where
// allocation failures (std::bad_alloc, and std::length_error from a size no
// container can hold) become ENOMEM.
#pragma once

#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#include "shbuf/core/result.h"

namespace shbuf {

// Runs f (returning a Status or Result) and reports an allocation failure in
// it as ENOMEM "out of memory while <what>".
template <typename F>
auto without_throwing(const char* what, F&& f) -> decltype(f()) {
  try {
    return std::forward<F>(f)();
  } catch (const std::bad_alloc&) {
    return make_error(ENOMEM, std::string("out of memory while ") + what);
  } catch (const std::length_error&) {
    return make_error(ENOMEM, std::string("out of memory while ") + what);
  }
}

}  // namespace shbuf
