// The on-disk (in shared memory) layout of a sim instance. Every process that
// attaches maps these files MAP_SHARED; all fields are guarded by
// Header::mutex unless noted. Nothing read from them is trusted: every index
// and count is checked before use (see Instance::damaged()).
#pragma once

#include <pthread.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "shbuf/core/xen_types.h"

namespace shbuf::sim {

inline constexpr char kMagic[8] = {'S', 'H', 'B', 'U', 'F', 'S', 'I', 'M'};
inline constexpr std::uint32_t kVersion = 2;                      // 2: Header::holder
inline constexpr std::uint32_t kEntriesPerFrame = kPageSize / 8;  // v1 entries are 8 bytes
// The PV services' files beside `state`: the xenstore tree and the event
// channel table (src/pv/sim), which reset removes with the rest.
inline constexpr std::string_view kXenstoreFile = "xenstore";
inline constexpr std::string_view kEvtchnFile = "evtchn";
inline constexpr std::uint32_t kMaxGrantFramesLimit = 16384;
inline constexpr std::uint32_t kMaxSlots = 1024;
inline constexpr std::uint32_t kMaxDomains = 256;
inline constexpr std::uint32_t kMaxRecords = 1u << 20;
inline constexpr std::uint32_t kMaxMapCount = 1u << 24;
inline constexpr std::uint32_t kNil = 0xffffffffu;
inline constexpr std::uint16_t kNoSlot = 0xffff;

// Xen's v1 grant entry flags (xen/include/public/grant_table.h).
inline constexpr std::uint16_t GTF_permit_access = 1;
inline constexpr std::uint16_t GTF_readonly = 1 << 2;
inline constexpr std::uint16_t GTF_reading = 1 << 3;
inline constexpr std::uint16_t GTF_writing = 1 << 4;

// struct grant_entry_v1.
struct GrantEntryV1 {
  std::uint16_t flags;
  std::uint16_t domid;
  std::uint32_t frame;
};
static_assert(sizeof(GrantEntryV1) == 8);

// Where an entry is in its life.
enum EntryState : std::uint16_t {
  kFree = 0,     // in the free runs, page zero
  kGranted = 1,  // permit-access set, owned by an attachment
  kPending = 2,  // revoked while mapped: kept until the last unmap
  kFreeing = 3,  // being zeroed by `owner` before going back to the free runs
};

// The simulator's bookkeeping next to each entry. Free entries form runs kept
// in a doubly linked list with boundary tags, so allocation and release cost
// O(pages), never O(table).
struct EntryAux {
  std::uint32_t map_count;   // live mappings of this entry
  std::uint32_t wmap_count;  // of those, writable
  std::uint16_t owner;       // slot that granted it (kGranted, kFreeing), else kNoSlot
  std::uint16_t state;       // EntryState
  std::uint32_t run_len;     // at the head of a free run: its length, else 0
  std::uint32_t run_next;    // at the head of a free run: next run or kNil
  std::uint32_t run_prev;    // at the head of a free run: previous run or kNil
  std::uint32_t run_tail;    // at the tail of a free run: head + 1, else 0
  std::uint32_t reserved;
};
static_assert(sizeof(EntryAux) == 32);

// One attachment: a SimProvider object in some process.
struct SlotRec {
  std::uint32_t used;
  std::uint32_t gen;
  std::int32_t pid;
  std::uint16_t domid;
  std::uint16_t dom_index;
  std::uint64_t pending;  // pages of its grants revoked while mapped
  std::uint64_t reserved;
};
static_assert(sizeof(SlotRec) == 32);

// A domain: exists once something attached as it; its table and pages live in
// dom<id>.gnt / dom<id>.mem.
struct DomainRec {
  std::uint16_t domid;
  std::uint8_t ready;  // table file initialised
  std::uint8_t pad0;
  std::uint32_t attached;    // live attachments
  std::uint32_t free_head;   // first free run or kNil
  std::uint32_t free_count;  // free entries
  std::uint32_t hiwater;     // one past the highest entry ever handed out
  std::uint32_t pad1[11];
};
static_assert(sizeof(DomainRec) == 64);

// A run of consecutive grefs of one granter mapped by one attachment. The
// records of one Mapping are chained through `next`.
struct MapRec {
  std::uint32_t gref;
  std::uint32_t count;
  std::uint32_t next;
  std::uint32_t gen;      // bumped on free, so stale tokens are caught
  std::uint16_t granter;  // domain index
  std::uint16_t mapper;   // slot
  std::uint8_t used;
  std::uint8_t writable;
  std::uint16_t pad;
};
static_assert(sizeof(MapRec) == 24);

struct Header {
  char magic[8];
  std::uint32_t version;
  std::uint32_t page_size;
  std::uint32_t max_grant_frames;
  std::uint32_t nr_entries;
  std::uint32_t max_slots;
  std::uint32_t max_domains;
  std::uint32_t max_records;
  std::uint32_t reset;  // set by reset(): the files are gone, attach again
  std::uint64_t instance_id;
  std::uint64_t next_check_ns;  // CLOCK_MONOTONIC time of the next liveness scan
  std::uint32_t slot_hiwater;
  std::uint32_t nr_domains;
  std::uint32_t rec_free_head;
  std::uint32_t rec_hiwater;
  std::uint32_t rec_in_use;
  std::int32_t holder;  // pid holding `mutex`, 0 when free; only for messages
  alignas(64) pthread_mutex_t mutex;
};

constexpr std::size_t align64(std::size_t n) {
  return (n + 63) & ~std::size_t{63};
}
inline constexpr std::size_t kSlotsOffset = align64(sizeof(Header));
inline constexpr std::size_t kDomainsOffset = align64(kSlotsOffset + kMaxSlots * sizeof(SlotRec));
inline constexpr std::size_t kRecordsOffset =
    align64(kDomainsOffset + kMaxDomains * sizeof(DomainRec));
inline constexpr std::size_t kStateSize =
    (kRecordsOffset + kMaxRecords * sizeof(MapRec) + kPageSize - 1) & ~(kPageSize - 1);

// dom<id>.gnt: nr_entries grant entries, then nr_entries EntryAux.
constexpr std::size_t table_size(std::uint32_t nr_entries) {
  return std::size_t{nr_entries} * (sizeof(GrantEntryV1) + sizeof(EntryAux));
}

}  // namespace shbuf::sim
