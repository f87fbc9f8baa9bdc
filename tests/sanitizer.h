// SHBUF_UNDER_SANITIZER: defined when built with AddressSanitizer or
// ThreadSanitizer, by GCC (__SANITIZE_*__) or clang (__has_feature).
#pragma once

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SHBUF_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SHBUF_UNDER_SANITIZER 1
#endif
#endif
