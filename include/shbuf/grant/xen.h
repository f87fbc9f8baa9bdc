// The `xen` grant provider: libxengntshr (/dev/xen/gntalloc) to share our
// pages, libxengnttab (/dev/xen/gntdev) to map a peer's.
//
// What the real devices do, and so what this provider reports:
// - share() gets fresh zeroed pages from gntalloc, granted to `peer`, in one
//   contiguous mapping. gntalloc's module parameter `limit` (default 1024) is
//   a budget of grants for the whole device, shared by every process using
//   it; a share beyond it fails with ENOSPC naming the parameter. Because it
//   is a budget rather than a batch size, features().max_share_batch is 0.
// - map() maps all grefs in one call into gntdev. The devices report every
//   refusal as EINVAL, whatever the hypervisor's reason: a gref never granted,
//   granted to another domain, a read-only grant mapped writable, and also a
//   peer domain that does not exist. For a single gref mapped writable, the provider
//   tries it read-only to tell a read-only grant apart and says which it was.
//   gntdev's module parameter `limit` (default 65536) caps one request:
//   features().max_map_batch is its value when the provider was opened.
// - Share::end() while the peer still maps a page: gntalloc unmaps our view
//   and the kernel defers revoking the grant and freeing the page until the
//   peer unmaps; the peer's view stays valid meanwhile, and the page no
//   longer counts against gntalloc's limit. User space cannot see those
//   pages, so end() succeeds (never EBUSY) and pending_pages() is always 0.
// - copy_from()/copy_to() are one gntdev grant copy each. Xen's refusals come
//   back as EINVAL naming the hypervisor's status (GNTST_*); a kernel without
//   grant copy gives EOPNOTSUPP, and features().grant_copy is false from then.
// - Failures of the devices themselves (missing device, permission) are
//   ENODEV / EACCES naming the device and what to load or change.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "shbuf/core/provider.h"

namespace shbuf {

struct XenOptions {
  // The domain this process runs in. Unset: $SHBUF_XEN_DOMID when set, else 0
  // when /proc/xen/capabilities says control_d (dom0), else xenstore's
  // relative key `domid` (read through /dev/xen/xenbus, 2 s timeout).
  std::optional<DomId> self;
};

// True when shbuf was built with libxen.
bool xen_provider_built();

// Opens /dev/xen/gntalloc and /dev/xen/gntdev. ENODEV where they are missing
// (not running on Xen, or the xen-gntalloc/xen-gntdev modules not loaded), or
// when shbuf was built without libxen; EACCES when they cannot be opened;
// ENXIO when the own domain id cannot be found out (set XenOptions::self or
// $SHBUF_XEN_DOMID).
Result<std::unique_ptr<Provider>> open_xen_provider();
Result<std::unique_ptr<Provider>> open_xen_provider(const XenOptions& options);

// Calls this provider made into the grant devices, by kind: what a share or
// a map of many pages costs, as opposed to Provider::stats(), which counts
// calls into the provider. Diagnostic retries after a refusal count too.
struct XenDeviceCalls {
  std::uint64_t share_pages = 0;  // xengntshr_share_pages
  std::uint64_t unshare = 0;      // xengntshr_unshare
  std::uint64_t map_refs = 0;     // xengnttab_map_domain_grant_refs
  std::uint64_t unmap = 0;        // xengnttab_unmap
  std::uint64_t copy = 0;         // xengnttab_grant_copy
};

// EINVAL when `provider` is not the xen provider.
Result<XenDeviceCalls> xen_device_calls(const Provider& provider);

}  // namespace shbuf
