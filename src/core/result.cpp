#include "shbuf/core/result.h"

#include <cstring>
#include <string>

namespace shbuf {

std::string errno_name(int code) {
  switch (code) {
#define SHBUF_ERRNO(e) \
  case e:              \
    return #e;
    SHBUF_ERRNO(EPERM)
    SHBUF_ERRNO(ENOENT)
    SHBUF_ERRNO(ESRCH)
    SHBUF_ERRNO(EIO)
    SHBUF_ERRNO(ENXIO)
    SHBUF_ERRNO(E2BIG)
    SHBUF_ERRNO(EBADF)
    SHBUF_ERRNO(EAGAIN)
    SHBUF_ERRNO(ENOMEM)
    SHBUF_ERRNO(EACCES)
    SHBUF_ERRNO(EFAULT)
    SHBUF_ERRNO(EBUSY)
    SHBUF_ERRNO(EEXIST)
    SHBUF_ERRNO(ENODEV)
    SHBUF_ERRNO(EINVAL)
    SHBUF_ERRNO(ENOSPC)
    SHBUF_ERRNO(ERANGE)
    SHBUF_ERRNO(ENOSYS)
    SHBUF_ERRNO(ELOOP)
    SHBUF_ERRNO(EOVERFLOW)
    SHBUF_ERRNO(EPROTO)
    SHBUF_ERRNO(EBADMSG)
    SHBUF_ERRNO(EMSGSIZE)
    SHBUF_ERRNO(EALREADY)
    SHBUF_ERRNO(ENOTCONN)
    SHBUF_ERRNO(ETIMEDOUT)
    SHBUF_ERRNO(ECONNREFUSED)
    SHBUF_ERRNO(EOWNERDEAD)
    SHBUF_ERRNO(ENOTSUP)
    SHBUF_ERRNO(ESTALE)
    SHBUF_ERRNO(EUCLEAN)
    SHBUF_ERRNO(EPIPE)
    SHBUF_ERRNO(ECONNRESET)
    SHBUF_ERRNO(EADDRINUSE)
    SHBUF_ERRNO(ENAMETOOLONG)
    SHBUF_ERRNO(ENOTSOCK)
#undef SHBUF_ERRNO
    default:
      return "errno " + std::to_string(code);
  }
}

Error errno_error(int code, const std::string& what) {
  char text[128];
  // GNU strerror_r: returns the message, in text or a static string.
  return make_error(code, what + ": " + strerror_r(code, text, sizeof text));
}

Error errno_error(const std::string& what) {
  const int code = errno;
  return errno_error(code, what);
}

std::string Error::describe() const {
  return message + " (" + errno_name(code) + ")";
}

}  // namespace shbuf
