// The `sim` grant provider: a simulator of Xen grant tables (v1) in shared
// memory, so that processes on one machine act as domains and share real pages.
// It refuses what Xen refuses.
//
// An instance is a directory: `state` (header, robust process-shared mutex,
// attachments, domains, mapping records), `lives` (one OFD-locked byte per
// live attachment), and per domain `dom<id>.gnt` (v1 grant entries plus the
// simulator's bookkeeping) and `dom<id>.mem` (the domain's pages; a grant's
// frame is its page in that file, and gref N always uses frame N).
//
// Semantics worth knowing:
//  - Every SimProvider object is one attachment. Several objects, threads or
//    processes may attach as the same domid: they share that domain's grant
//    table, and a domain exists while any of them is attached. A grant belongs
//    to the attachment that made it.
//  - share() allocates its pages at once, as gntalloc does, and map() maps
//    every page at once, as gntdev does: first accesses do not fault.
//  - grefs 0..7 are reserved and never handed out (GNTTAB_NR_RESERVED_ENTRIES).
//  - map() refusals use EINVAL as Linux gntdev does (gref reserved, out of
//    range, not granted, revoked, granted to another domain, writable map of a
//    read-only grant, no process attached as the granter); the message says
//    which.
//    Mapping one's own grants is allowed (dom0 may on real Xen).
//  - Share::end() while the grantee maps some page: EBUSY, the grants are
//    revoked (no new maps) and the pages are kept, neither freed nor reused,
//    until the last mapping goes; then they are reclaimed by whoever unmaps.
//  - When an attachment dies (even by SIGKILL), its mappings are released and
//    its grants reclaimed (or made pending while a live peer maps them) on
//    the next attach, sweep(), status(), or an operation that runs into it,
//    and at most about 0.25 s after death by any operation of anyone.
//  - An injected end/unmap fault still releases everything and then reports
//    the error: the handle is consumed, nothing leaks.
//  - A forked child must open its own provider: one inherited across fork()
//    refuses every operation with EPERM. The child has none of the pages of
//    the parent's shares and mappings (MADV_DONTFORK, as gntalloc's and
//    gntdev's VM_DONTCOPY): ending or unmapping an inherited handle refuses
//    with EPERM and leaves what the child has at those addresses alone.
//  - The instance's files are trusted no further than they are checked: a
//    state or table the simulator cannot have written (a process killed
//    mid-write by something other than a signal, a stray writer, another
//    version of shbuf) makes every operation that meets it fail with
//    EUCLEAN, the message naming the damaged value and saying to run
//    `shbuf sim reset`; an instance of another layout version is refused the
//    same way. A page file shorter than its table is refused before a
//    mapping of it is handed out. Truncating a page file while it is mapped
//    cannot be prevented (SECURITY.md, "The simulator's own trust model").
//  - Waiting for the instance lock gives up after kSimLockTimeoutMs (or
//    $SHBUF_SIM_LOCK_TIMEOUT_MS) with ETIMEDOUT, naming the process that
//    holds it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shbuf/core/provider.h"
#include "shbuf/core/visibility.h"

namespace shbuf {

struct SimOptions {
  // Instance directory; empty: $SHBUF_SIM, else the default instance
  // (sim_default_path()).
  std::string path;
  // The domain this process attaches as.
  DomId domid = 0;
  // Grant table size per domain, in 4 KiB frames of 512 v1 entries each
  // (Xen's max_grant_frames). Only used when the instance is created.
  std::uint32_t max_grant_frames = 1024;
  // Faults to inject, in the SHBUF_SIM_FAULT syntax (see below); applied
  // before the environment variable.
  std::string faults;
  // Offer grant copy (copy_from/copy_to), as Xen and Linux's gntdev do; false
  // makes this provider behave like a kernel without it (EOPNOTSUPP).
  bool grant_copy = true;
};

// SHBUF_SIM_FAULT, read by SimProvider::open(): a comma-separated list of
//   share|end|map|unmap|copy:K[:ERR]   the K-th call (1-based) of that op fails
//   gref:DOMID:GREF[:ERR]               every map() including that gref fails,
//                                       and every copy of it
// ERR is an errno name (EIO, ENOMEM, ...) or number; the default is EIO.
// A malformed list makes open() fail with EINVAL.
inline constexpr const char* kSimFaultEnv = "SHBUF_SIM_FAULT";

// How long an operation waits for the instance lock before failing with
// ETIMEDOUT; SHBUF_SIM_LOCK_TIMEOUT_MS (milliseconds, 1 or more) overrides it.
inline constexpr unsigned kSimLockTimeoutMs = 10'000;
inline constexpr const char* kSimLockTimeoutEnv = "SHBUF_SIM_LOCK_TIMEOUT_MS";

// $SHBUF_SIM if set, else "$XDG_RUNTIME_DIR/shbuf-sim" or "/dev/shm/shbuf-sim-<uid>".
std::string sim_default_path();

// The operations fault injection can target.
enum class SimFaultOp { kShare, kEnd, kMap, kUnmap, kCopy };

// What `shbuf sim status` shows.
struct SimStatus {
  struct Domain {
    DomId domid = 0;
    bool alive = false;                // a live process is attached as this domain
    std::size_t grants_in_use = 0;     // entries with permit-access set
    std::size_t grants_mapped = 0;     // of those, mapped by a peer now
    std::size_t frames_in_use = 0;     // pages allocated, pending ones included
    std::size_t attached = 0;          // live attachments as this domain
    std::size_t grants_read_only = 0;  // of grants_in_use, read-only ones
    std::size_t pending = 0;           // revoked while mapped: kept until unmapped
  };
  struct Attachment {
    DomId domid = 0;
    int pid = 0;
    bool alive = false;
  };
  struct Grant {
    DomId granter = 0;
    Gref gref = 0;
    DomId grantee = 0;
    bool read_only = false;
    std::uint32_t map_count = 0;
    bool pending = false;  // revoked while mapped: kept until unmapped
  };
  struct MappingInfo {
    DomId mapper = 0;
    DomId granter = 0;
    Gref gref = 0;  // first gref of a run: gref .. gref + count - 1
    bool writable = false;
    std::uint32_t count = 1;
    int pid = 0;  // the mapping process
  };
  std::string path;
  std::uint32_t max_grant_frames = 0;
  std::uint32_t grants_per_domain = 0;  // max_grant_frames * 512
  std::vector<Attachment> attachments;
  std::vector<Domain> domains;
  std::vector<Grant> grants;
  std::vector<MappingInfo> mappings;
};

class SimProvider final : public Provider {
 public:
  // Opens (creating on first use) the instance and attaches as options.domid.
  static Result<std::unique_ptr<SimProvider>> open(const SimOptions& options);
  ~SimProvider() override;

  std::string_view name() const override { return "sim"; }
  DomId self() const override;
  ProviderFeatures features() const override;
  std::size_t pending_pages() override;

  // Fault injection: the k-th call (1-based, counted from now, in this
  // provider object) of `op` fails with `error`.
  void inject_fault(SimFaultOp op, unsigned k, int error = EIO);
  // Any map() that includes this gref of `granter`, and any copy of it,
  // fails with `error`.
  void inject_gref_fault(DomId granter, Gref gref, int error = EIO);
  void clear_faults();

  // Reclaims what dead processes left behind (also done on attach and when an
  // operation runs into it).
  void sweep();

  // The instance directory this provider is attached to.
  const std::string& path() const;

  // The instance's state.
  Result<SimStatus> status();

  // Removes every domain's grants, mappings and pages: the files the
  // instance made (state, lives, dom<id>.gnt, dom<id>.mem), nothing else,
  // and not the directory. Processes still attached see their next operation
  // fail. Refuses (EINVAL, nothing removed) a directory whose `state` is not
  // a simulator state owned by this user; a missing directory or `state` is
  // nothing to reset.
  static Status reset(const std::string& path);
  // Reads an instance's state without attaching.
  static Result<SimStatus> status(const std::string& path);

 protected:
  Result<Share> do_share(DomId peer, std::size_t count, Access access) override;
  Status do_end(Share& share) override;
  Result<Mapping> do_map(DomId peer, std::span<const Gref> grefs, Access access) override;
  Status do_copy(DomId peer, Gref gref, std::size_t offset, std::span<std::byte> local,
                 bool to_peer) override;
  Status do_unmap(Mapping& mapping) override;

 private:
  struct Impl;
  SHBUF_LOCAL explicit SimProvider(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace shbuf
