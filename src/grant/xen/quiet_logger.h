// A xentoollog logger that writes nothing. Xen's libraries log each failure
// to stderr by default; a library must not write there, and each failure
// already comes back to the caller, who reports it once.
#pragma once

#include <xentoollog.h>

#include <cstdarg>

namespace shbuf::xen {

inline xentoollog_logger* quiet_logger() {
  static xentoollog_logger logger = {
      [](xentoollog_logger*, xentoollog_level, int, const char*, const char*, va_list) {},
      [](xentoollog_logger*, const char*, const char*, int, unsigned long, unsigned long) {},
      [](xentoollog_logger*) {}};
  return &logger;
}

}  // namespace shbuf::xen
