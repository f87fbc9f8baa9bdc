// The Xen facts every layer of shbuf shares, defined once: grant references,
// domain ids and the page size of the protocols, as Xen's public headers
// define them (xen/include/public/xen.h, grant_table.h).
#pragma once

#include <cstddef>
#include <cstdint>

namespace shbuf {

// grant_ref_t.
using Gref = std::uint32_t;
// domid_t.
using DomId = std::uint16_t;

// XEN_PAGE_SIZE: every protocol page is 4096 bytes, whatever the host's is.
inline constexpr std::size_t kPageSize = 4096;

// DOMID_FIRST_RESERVED: ids from here up are not domains.
inline constexpr DomId kDomIdFirstReserved = 0x7ff0;
// DOMID_SELF (the first reserved id); never a valid peer.
inline constexpr DomId kDomIdSelf = 0x7ff0;

// GNTTAB_NR_RESERVED_ENTRIES: grefs 0..7 are never handed out.
inline constexpr Gref kReservedGrefs = 8;

}  // namespace shbuf
