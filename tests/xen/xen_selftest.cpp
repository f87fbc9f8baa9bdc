// Harness self-test for the real-Xen run: talks to /dev/xen/gntalloc and
// /dev/xen/gntdev through libxengntshr/libxengnttab directly, without shbuf,
// so a failure here points at the Xen setup rather than at shbuf. It shares
// pages from this domain to itself and maps them back, and prints the errno
// each refusal gives, so the simulator can be checked against real devices.
// The libxen headers do not declare C linkage themselves.
extern "C" {
#include <xengnttab.h>
#include <xentoollog.h>
}

#include <sys/mman.h>

#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

constexpr std::uint32_t kSelf = 0;  // dom0 maps its own grants
constexpr std::uint32_t kPage = 4096;
int failures = 0;

// The library logs every failed map to stderr; the expected refusals below
// would drown the report, so its messages are dropped.
void quiet_vmessage(xentoollog_logger*, xentoollog_level, int, const char*, const char*, va_list) {}
void quiet_progress(xentoollog_logger*, const char*, const char*, int, unsigned long,
                    unsigned long) {}
void quiet_destroy(xentoollog_logger*) {}
xentoollog_logger quiet_logger = {quiet_vmessage, quiet_progress, quiet_destroy};

// One line per check, so the serial log reads as a report.
void check(bool ok, const char* what) {
  std::printf("selftest: %s: %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}

// Records a refusal and whether it came with the expected errno.
void expect_refusal(const void* p, int err, int want, const char* what) {
  std::printf("selftest: %s: %s -> %s (errno %d %s)\n",
              (p == nullptr && err == want) ? "ok  " : "FAIL", what,
              p == nullptr ? "refused" : "ACCEPTED", err, std::strerror(err));
  if (p != nullptr || err != want) ++failures;
}

// gntalloc's device-wide grant budget, as the module reports it.
long gntalloc_limit() {
  std::ifstream f("/sys/module/xen_gntalloc/parameters/limit");
  long v = -1;
  f >> v;
  return f ? v : -1;
}

}  // namespace

int main() {
  xengntshr_handle* xgs = xengntshr_open(&quiet_logger, 0);
  xengnttab_handle* xgt = xengnttab_open(&quiet_logger, 0);
  if (xgs == nullptr || xgt == nullptr) {
    std::printf("selftest: FAIL: cannot open the grant devices: %s\n", std::strerror(errno));
    return 1;
  }

  // One page both ways.
  std::uint32_t ref = 0;
  auto* shared = static_cast<volatile std::uint8_t*>(xengntshr_share_pages(xgs, kSelf, 1, &ref, 1));
  check(shared != nullptr, "share one writable page with domain 0");
  if (shared != nullptr) {
    auto* mapped = static_cast<volatile std::uint8_t*>(
        xengnttab_map_domain_grant_refs(xgt, 1, kSelf, &ref, PROT_READ | PROT_WRITE));
    check(mapped != nullptr, "map it back read-write");
    if (mapped != nullptr) {
      check(mapped[0] == 0 && mapped[kPage - 1] == 0, "a fresh shared page reads as zeros");
      shared[10] = 0x5a;
      mapped[20] = 0xa5;
      check(mapped[10] == 0x5a && shared[20] == 0xa5, "writes alias both ways");
      check(xengnttab_unmap(xgt, const_cast<std::uint8_t*>(mapped), 1) == 0, "unmap");
    }
    check(xengntshr_unshare(xgs, const_cast<std::uint8_t*>(shared), 1) == 0, "unshare");
  }

  // 257 pages in one call each way.
  std::vector<std::uint32_t> refs(257);
  void* many = xengntshr_share_pages(xgs, kSelf, 257, refs.data(), 1);
  check(many != nullptr, "share 257 pages in one call");
  if (many != nullptr) {
    void* m = xengnttab_map_domain_grant_refs(xgt, 257, kSelf, refs.data(), PROT_READ | PROT_WRITE);
    check(m != nullptr, "map 257 grefs in one call");
    if (m != nullptr) {
      static_cast<std::uint8_t*>(many)[256 * kPage + 7] = 7;
      check(static_cast<std::uint8_t*>(m)[256 * kPage + 7] == 7, "the last of 257 pages aliases");
      check(xengnttab_unmap(xgt, m, 257) == 0, "unmap 257");
    }
    check(xengntshr_unshare(xgs, many, 257) == 0, "unshare 257");
  }

  // Refusals.
  std::uint32_t never = 0;
  {
    std::uint32_t probe = 0;
    void* p = xengntshr_share_pages(xgs, kSelf, 1, &probe, 1);
    if (p != nullptr) {
      xengntshr_unshare(xgs, p, 1);
      never = probe + 4000;  // far beyond anything handed out so far
    }
  }
  errno = 0;
  void* p = xengnttab_map_domain_grant_refs(xgt, 1, kSelf, &never, PROT_READ);
  expect_refusal(p, errno, EINVAL, "map a gref that was never granted");
  if (p != nullptr) xengnttab_unmap(xgt, p, 1);

  std::uint32_t ro = 0;
  void* ro_page = xengntshr_share_pages(xgs, kSelf, 1, &ro, 0);
  check(ro_page != nullptr, "share one read-only page");
  if (ro_page != nullptr) {
    errno = 0;
    p = xengnttab_map_domain_grant_refs(xgt, 1, kSelf, &ro, PROT_READ | PROT_WRITE);
    expect_refusal(p, errno, EINVAL, "map a read-only grant writable");
    if (p != nullptr) xengnttab_unmap(xgt, p, 1);
    p = xengnttab_map_domain_grant_refs(xgt, 1, kSelf, &ro, PROT_READ);
    check(p != nullptr, "map the read-only grant read-only");
    if (p != nullptr) xengnttab_unmap(xgt, p, 1);

    errno = 0;
    p = xengnttab_map_domain_grant_refs(xgt, 1, 999, &ro, PROT_READ);
    expect_refusal(p, errno, EINVAL, "map from domain 999, which does not exist");
    if (p != nullptr) xengnttab_unmap(xgt, p, 1);
    xengntshr_unshare(xgs, ro_page, 1);
  }

  std::uint32_t other = 0;
  void* to_other = xengntshr_share_pages(xgs, 5, 1, &other, 1);
  check(to_other != nullptr, "share one page with domain 5");
  if (to_other != nullptr) {
    errno = 0;
    p = xengnttab_map_domain_grant_refs(xgt, 1, kSelf, &other, PROT_READ);
    expect_refusal(p, errno, EINVAL, "map a gref granted to domain 5, not to us");
    if (p != nullptr) xengnttab_unmap(xgt, p, 1);
    xengntshr_unshare(xgs, to_other, 1);
  }

  const long limit = gntalloc_limit();
  check(limit > 0, "read /sys/module/xen_gntalloc/parameters/limit");
  if (limit > 0) {
    std::vector<std::uint32_t> big(static_cast<std::size_t>(limit) + 1);
    errno = 0;
    p = xengntshr_share_pages(xgs, kSelf, static_cast<int>(limit) + 1, big.data(), 1);
    std::string what = "share limit+1 = " + std::to_string(limit + 1) + " pages at once";
    expect_refusal(p, errno, ENOSPC, what.c_str());
    if (p != nullptr) xengntshr_unshare(xgs, p, static_cast<std::uint32_t>(limit) + 1);
  }

  // End a share while it is still mapped: what do the devices do?
  std::uint32_t busy = 0;
  auto* b = static_cast<volatile std::uint8_t*>(xengntshr_share_pages(xgs, kSelf, 1, &busy, 1));
  if (b != nullptr) {
    auto* m = static_cast<volatile std::uint8_t*>(
        xengnttab_map_domain_grant_refs(xgt, 1, kSelf, &busy, PROT_READ | PROT_WRITE));
    check(m != nullptr, "map a page before its share ends");
    b[0] = 0x11;
    errno = 0;
    int rc = xengntshr_unshare(xgs, const_cast<std::uint8_t*>(b), 1);
    std::printf("selftest: info: unshare while mapped -> rc %d errno %d\n", rc, errno);
    if (m != nullptr) {
      check(m[0] == 0x11, "the peer's mapping still reads the page after unshare");
      m[1] = 0x22;
      check(xengnttab_unmap(xgt, const_cast<std::uint8_t*>(m), 1) == 0,
            "unmap after the share ended");
    }
  }

  xengnttab_close(xgt);
  xengntshr_close(xgs);
  std::printf("selftest: %s (%d failures)\n", failures == 0 ? "PASSED" : "FAILED", failures);
  return failures == 0 ? 0 : 1;
}
