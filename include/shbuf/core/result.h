// Errors and results: every failure carries an errno-style code and a message
// naming what was wrong. No exceptions cross the library boundary.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace shbuf {

// A failure: a positive errno value (EINVAL, ENOMEM, ENOSPC, ...) and a
// human-readable message that says what was refused and why.
struct Error {
  int code = EINVAL;
  std::string message;

  // "message (EINVAL)" - the form the CLI prints.
  std::string describe() const;
};

// Builds an Error; the message should name the offending value.
inline Error make_error(int code, std::string message) {
  return Error{code, std::move(message)};
}

// Name of an errno value ("EINVAL"), or its number when unknown.
std::string errno_name(int code);

// A failed system call as an Error: the code, and "what: <strerror(code)>".
// The one way the library turns an errno value into an Error.
Error errno_error(int code, const std::string& what);

// The same for the current errno (read once, first).
Error errno_error(const std::string& what);

// A value of type T or an Error. Move-only values are fine.
template <typename T>
class [[nodiscard]] Result {
 public:
  // Implicit by design. Two overloads rather than one taking T by value: a
  // value moved in is moved once, not twice.
  Result(T&& value) : v_(std::in_place_index<0>, std::move(value)) {}    // NOLINT
  Result(const T& value) : v_(std::in_place_index<0>, value) {}          // NOLINT
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

// Success or an Error.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), failed_(true) {}  // NOLINT: implicit by design

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return error_; }
  int code() const { return failed_ ? error_.code : 0; }

 private:
  Error error_;
  bool failed_ = false;
};

}  // namespace shbuf

// Propagates a failed Status or Result from the current function.
#define SHBUF_TRY(expr)                              \
  do {                                               \
    auto&& shbuf_try_ = (expr);                      \
    if (!shbuf_try_.ok()) return shbuf_try_.error(); \
  } while (0)
