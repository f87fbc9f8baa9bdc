// What attaching a buffer costs in calls, whoever counts them (the provider's
// own counters on the simulator, the device calls on Xen): the directory read
// by grant copy (one per page, two when the backend writes grefs back) or by
// mapping each page, then the buffer mapped in one call if it is the
// frontend's.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>

#include "shbuf/core/backend_buffer.h"

namespace shbuf::testing {

inline void expect_attach_calls(DirectoryRead way, AllocMode mode, std::uint64_t dir_pages,
                                std::uint64_t maps, std::uint64_t unmaps, std::uint64_t copies) {
  const std::uint64_t buffer_maps = mode == AllocMode::kFrontend ? 1 : 0;
  if (way == DirectoryRead::kMap) {
    EXPECT_EQ(maps, dir_pages + buffer_maps);
    EXPECT_EQ(unmaps, dir_pages);
    EXPECT_EQ(copies, 0u);
  } else {
    EXPECT_EQ(maps, buffer_maps);
    EXPECT_EQ(unmaps, 0u);
    EXPECT_EQ(copies, mode == AllocMode::kFrontend ? dir_pages : 2 * dir_pages);
  }
}

}  // namespace shbuf::testing
