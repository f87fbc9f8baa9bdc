// The sim provider within one process: grant table semantics, refusals,
// pending revocation, fault injection, status and reset.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>
#include <vector>

#include "run_process.h"
#include "shbuf/grant/sim.h"
#include "test_sim_util.h"

namespace shbuf::simtest {
namespace {

using ::testing::HasSubstr;

class Sim : public SimTest {};

TEST_F(Sim, ShareIsZeroedContiguousAndAliasedByMap) {
  auto d0 = open(0);
  auto d1 = open(1);
  ASSERT_TRUE(d0 && d1);
  EXPECT_EQ(d0->self(), 0);
  EXPECT_EQ(d1->self(), 1);
  EXPECT_EQ(d0->name(), "sim");
  auto share = d0->share(1, 16, Access::kReadWrite);
  ASSERT_TRUE(share.ok()) << share.error().describe();
  ASSERT_EQ(share->pages(), 16u);
  for (std::size_t i = 1; i < 16; ++i) EXPECT_EQ(share->grefs()[i], share->grefs()[0] + i);
  for (std::byte b : share->memory()) ASSERT_EQ(b, std::byte{0});

  auto map = d1->map(0, share->grefs(), Access::kReadWrite);
  ASSERT_TRUE(map.ok()) << map.error().describe();
  ASSERT_EQ(map->pages(), 16u);
  std::memcpy(share->memory().data() + 4096 * 3, "hello", 5);
  EXPECT_EQ(std::memcmp(map->memory().data() + 4096 * 3, "hello", 5), 0);
  std::memcpy(map->memory().data() + 4096 * 15 + 100, "back", 4);
  EXPECT_EQ(std::memcmp(share->memory().data() + 4096 * 15 + 100, "back", 4), 0);

  SimStatus s = status();
  ASSERT_EQ(s.grants.size(), 16u);
  EXPECT_EQ(s.grants[0].grantee, 1);
  EXPECT_EQ(s.grants[0].map_count, 1u);
  ASSERT_EQ(s.mappings.size(), 1u);  // one run of 16
  EXPECT_EQ(s.mappings[0].count, 16u);
  EXPECT_TRUE(s.mappings[0].writable);
  EXPECT_EQ(s.mappings[0].mapper, 1);
  EXPECT_EQ(s.mappings[0].pid, getpid());

  EXPECT_TRUE(map->unmap().ok());
  EXPECT_TRUE(share->end().ok());
  expect_clean();
  EXPECT_EQ(d0->stats().share_calls, 1u);
}

TEST_F(Sim, MapOrderFollowsGrefListAndScatteredListsWork) {
  auto d0 = open(0);
  auto d1 = open(1);
  auto share = d0->share(1, 8, Access::kReadWrite);
  ASSERT_TRUE(share.ok());
  for (int i = 0; i < 8; ++i) share->memory()[std::size_t(i) * 4096] = std::byte(i + 1);
  std::vector<Gref> order = {share->grefs()[5], share->grefs()[0], share->grefs()[7],
                             share->grefs()[1], share->grefs()[2]};
  auto map = d1->map(0, order, Access::kReadOnly);
  ASSERT_TRUE(map.ok()) << map.error().describe();
  const int expect[] = {6, 1, 8, 2, 3};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(int(map->memory()[std::size_t(i) * 4096]), expect[i]);
  EXPECT_EQ(status().mappings.size(), 4u);  // runs: [5] [0] [7] [1,2]
}

TEST_F(Sim, FreedPagesAreZeroOnReuseAndMemoryIsReturned) {
  auto d0 = open(0);
  auto share = d0->share(0, 64, Access::kReadWrite);
  ASSERT_TRUE(share.ok());
  std::memset(share->memory().data(), 0xab, share->memory().size());
  const std::vector<Gref> first(share->grefs().begin(), share->grefs().end());
  EXPECT_GE(mem_bytes(0), 64 * 4096);
  ASSERT_TRUE(share->end().ok());
  EXPECT_EQ(mem_bytes(0), 0);
  auto again = d0->share(0, 64, Access::kReadWrite);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(std::vector<Gref>(again->grefs().begin(), again->grefs().end()), first);
  for (std::byte b : again->memory()) ASSERT_EQ(b, std::byte{0});
}

TEST_F(Sim, ReservedGrefsAreNeverHandedOut) {
  auto d0 = open(0, 1);  // 512 entries
  auto d1 = open(1);
  auto all = d0->share(1, 504, Access::kReadOnly);
  ASSERT_TRUE(all.ok()) << all.error().describe();
  std::set<Gref> seen(all->grefs().begin(), all->grefs().end());
  EXPECT_EQ(seen.size(), 504u);
  EXPECT_EQ(*seen.begin(), 8u);
  EXPECT_EQ(*seen.rbegin(), 511u);
  for (Gref g = 0; g < 8; ++g) {
    const Gref one[] = {g};
    auto m = d1->map(0, one, Access::kReadOnly);
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.error().code, EINVAL);
    EXPECT_THAT(m.error().message, HasSubstr("gref " + std::to_string(g) + " of domain 0"));
    EXPECT_THAT(m.error().message, HasSubstr("reserved"));
  }
}

TEST_F(Sim, TableExhaustionIsEnospcAndLeaksNothing) {
  auto d0 = open(0, 1);
  EXPECT_EQ(status().max_grant_frames, 1u);
  std::vector<Share> shares;
  for (int i = 0; i < 7; ++i) {
    auto s = d0->share(1, 72, Access::kReadWrite);
    ASSERT_TRUE(s.ok()) << s.error().describe();
    shares.push_back(std::move(s).value());
  }
  auto full = d0->share(1, 1, Access::kReadWrite);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, ENOSPC);
  EXPECT_THAT(full.error().message, HasSubstr("504 grants in use of 504"));
  EXPECT_THAT(full.error().message, HasSubstr("domain 0"));
  auto huge = d0->share(1, 505, Access::kReadWrite);
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.error().code, ENOSPC);
  EXPECT_THAT(huge.error().message, HasSubstr("at most 504"));

  // Free every other share: 288 free in 4 holes of 72; 200 must still fit,
  // gathered from several runs into one contiguous view.
  for (int i = 0; i < 7; i += 2) ASSERT_TRUE(shares[std::size_t(i)].end().ok());
  auto gathered = d0->share(1, 200, Access::kReadWrite);
  ASSERT_TRUE(gathered.ok()) << gathered.error().describe();
  std::set<Gref> unique(gathered->grefs().begin(), gathered->grefs().end());
  EXPECT_EQ(unique.size(), 200u);
  gathered->memory()[199 * 4096] = std::byte{1};  // one contiguous view
  EXPECT_EQ(status().domains[0].grants_in_use, 416u);
  EXPECT_TRUE(gathered->end().ok());
  shares.clear();
  expect_clean();
  auto all = d0->share(1, 504, Access::kReadWrite);
  EXPECT_TRUE(all.ok()) << "free runs were not merged back";
}

TEST_F(Sim, MapRefusalsNameTheGrefAndDomain) {
  auto d0 = open(0);
  auto d1 = open(1);
  auto d2 = open(2);
  auto ro = d0->share(1, 2, Access::kReadOnly);
  auto to2 = d0->share(2, 1, Access::kReadWrite);
  ASSERT_TRUE(ro.ok() && to2.ok());
  const Gref g_ro = ro->grefs()[0];
  const Gref g2 = to2->grefs()[0];

  auto expect_refused = [&](SimProvider& p, DomId peer, std::vector<Gref> grefs, Access a, int code,
                            const std::string& text) {
    auto m = p.map(peer, grefs, a);
    ASSERT_FALSE(m.ok()) << text;
    EXPECT_EQ(m.error().code, code) << m.error().describe();
    EXPECT_THAT(m.error().message, HasSubstr(text));
  };
  expect_refused(*d1, 7, {g_ro}, Access::kReadOnly, EINVAL, "domain 7 does not exist");
  expect_refused(*d1, 0, {g_ro, 100000000}, Access::kReadOnly, EINVAL,
                 "gref 100000000 is out of range for domain 0");
  expect_refused(*d1, 0, {g_ro, 4000}, Access::kReadOnly, EINVAL,
                 "gref 4000 of domain 0 is not granted");
  expect_refused(*d1, 0, {g_ro, g2}, Access::kReadOnly, EINVAL,
                 "gref " + std::to_string(g2) +
                     " of domain 0 is granted to domain 2, not to "
                     "domain 1");
  expect_refused(*d1, 0, {g_ro}, Access::kReadWrite, EINVAL,
                 "gref " + std::to_string(g_ro) + " of domain 0 is read-only");
  expect_refused(*d1, 2, {g_ro}, Access::kReadOnly, EINVAL,
                 "gref " + std::to_string(g_ro) + " of domain 2 is not granted");
  auto empty = d1->map(0, {}, Access::kReadOnly);
  EXPECT_EQ(empty.error().code, EINVAL);
  auto self = d1->map(kDomIdSelf, std::vector<Gref>{g_ro}, Access::kReadOnly);
  EXPECT_EQ(self.error().code, EINVAL);

  // None of the refusals left a mapping or a map count behind.
  SimStatus s = status();
  EXPECT_TRUE(s.mappings.empty());
  for (const auto& g : s.grants) EXPECT_EQ(g.map_count, 0u) << "gref " << g.gref;

  // A domain whose last attachment went away no longer exists.
  d2.reset();
  expect_refused(*d1, 2, {8}, Access::kReadOnly, EINVAL, "domain 2 does not exist");
  auto ok = d1->map(0, ro->grefs(), Access::kReadOnly);
  EXPECT_TRUE(ok.ok()) << ok.error().describe();
}

TEST_F(Sim, GrantCopyReadsAndWritesThePeersPageWithoutMapping) {
  auto d0 = open(0);
  auto d1 = open(1);
  EXPECT_TRUE(d1->features().grant_copy);
  auto share = d0->share(1, 2, Access::kReadWrite);
  ASSERT_TRUE(share.ok());
  for (std::size_t i = 0; i < 2 * 4096; ++i) share->memory()[i] = std::byte(i * 7 + 1);
  const Gref g = share->grefs()[1];

  std::vector<std::byte> page(4096);
  ASSERT_TRUE(d1->copy_from(0, g, 0, page).ok());
  EXPECT_EQ(std::memcmp(page.data(), share->memory().data() + 4096, 4096), 0);
  std::vector<std::byte> part(100);
  ASSERT_TRUE(d1->copy_from(0, g, 3996, part).ok());
  EXPECT_EQ(std::memcmp(part.data(), share->memory().data() + 4096 + 3996, 100), 0);

  const char hello[] = "hello";
  ASSERT_TRUE(d1->copy_to(0, g, 10, std::as_bytes(std::span(hello))).ok());
  EXPECT_EQ(std::memcmp(share->memory().data() + 4096 + 10, hello, sizeof hello), 0);
  EXPECT_EQ(share->memory()[4096 + 9], std::byte(4105 * 7 + 1)) << "only the bytes given change";

  const ProviderStats st = d1->stats();
  EXPECT_EQ(st.copy_calls, 3u);
  EXPECT_EQ(st.bytes_copied, 4096u + 100u + sizeof hello);
  EXPECT_EQ(st.map_calls, 0u);
  // A copy leaves no mapping and no map count behind.
  SimStatus s = status();
  EXPECT_TRUE(s.mappings.empty());
  for (const auto& gr : s.grants) EXPECT_EQ(gr.map_count, 0u) << "gref " << gr.gref;
}

TEST_F(Sim, GrantCopyRefusalsAreThoseOfMap) {
  auto d0 = open(0);
  auto d1 = open(1);
  auto d2 = open(2);
  auto ro = d0->share(1, 1, Access::kReadOnly);
  auto to2 = d0->share(2, 1, Access::kReadWrite);
  ASSERT_TRUE(ro.ok() && to2.ok());
  const Gref g_ro = ro->grefs()[0];
  const Gref g2 = to2->grefs()[0];
  std::vector<std::byte> buf(64);
  auto expect_refused = [&](Status st, int code, const std::string& text) {
    ASSERT_FALSE(st.ok()) << text;
    EXPECT_EQ(st.code(), code) << st.error().describe();
    EXPECT_THAT(st.error().message, HasSubstr(text));
  };
  expect_refused(d1->copy_from(7, g_ro, 0, buf), EINVAL, "domain 7 does not exist");
  expect_refused(d1->copy_from(0, 4000, 0, buf), EINVAL, "gref 4000 of domain 0 is not granted");
  expect_refused(d1->copy_from(0, 3, 0, buf), EINVAL, "gref 3 of domain 0 is reserved");
  expect_refused(d1->copy_from(0, 100000000, 0, buf), EINVAL, "out of range");
  expect_refused(d1->copy_from(0, g2, 0, buf), EINVAL,
                 "gref " + std::to_string(g2) + " of domain 0 is granted to domain 2");
  expect_refused(d1->copy_to(0, g_ro, 0, buf), EINVAL,
                 "gref " + std::to_string(g_ro) + " of domain 0 is read-only; cannot copy into it");
  EXPECT_TRUE(d1->copy_from(0, g_ro, 0, buf).ok()) << "reading a read-only grant is allowed";
  // Arguments: within one page, not empty, not DOMID_SELF.
  expect_refused(d1->copy_from(0, g_ro, 4090, buf), EINVAL, "stays within one 4096-byte page");
  expect_refused(d1->copy_from(0, g_ro, 4096, std::span(buf).first(1)), EINVAL,
                 "stays within one 4096-byte page");
  expect_refused(d1->copy_from(0, g_ro, 0, {}), EINVAL, "0 bytes");
  expect_refused(d1->copy_from(kDomIdSelf, g_ro, 0, buf), EINVAL, "DOMID_SELF");
  // A revoked grant cannot be copied.
  const Gref ended = g2;
  ASSERT_TRUE(to2->end().ok());
  expect_refused(d2->copy_from(0, ended, 0, buf), EINVAL, "not granted");
  // Injected faults reach copies too.
  d1->inject_fault(SimFaultOp::kCopy, 1, ENOMEM);
  expect_refused(d1->copy_from(0, g_ro, 0, buf), ENOMEM, "copy call");
  d1->inject_gref_fault(0, g_ro, EIO);
  expect_refused(d1->copy_from(0, g_ro, 0, buf), EIO, "fails to copy");
  d1->clear_faults();
  EXPECT_TRUE(d1->copy_from(0, g_ro, 0, buf).ok());
}

TEST_F(Sim, GrantCopyCanBeTurnedOff) {
  auto d0 = open(0);
  SimOptions o;
  o.path = path;
  o.domid = 1;
  o.grant_copy = false;
  auto d1 = SimProvider::open(o);
  ASSERT_TRUE(d1.ok());
  EXPECT_FALSE((*d1)->features().grant_copy);
  auto share = d0->share(1, 1, Access::kReadWrite);
  ASSERT_TRUE(share.ok());
  std::vector<std::byte> buf(8);
  Status st = (*d1)->copy_from(0, share->grefs()[0], 0, buf);
  EXPECT_EQ(st.code(), EOPNOTSUPP) << st.error().describe();
  EXPECT_THAT(st.error().message, HasSubstr("no grant copy"));
}

TEST_F(Sim, MappingOwnGrantsIsAllowed) {
  auto d0 = open(0);
  auto share = d0->share(0, 3, Access::kReadWrite);
  ASSERT_TRUE(share.ok());
  share->memory()[4096] = std::byte{42};
  auto map = d0->map(0, share->grefs(), Access::kReadWrite);
  ASSERT_TRUE(map.ok()) << map.error().describe();
  EXPECT_EQ(map->memory()[4096], std::byte{42});
  EXPECT_NE(map->memory().data(), share->memory().data());
}

TEST_F(Sim, BadOptionsAndPeersAreRefused) {
  SimOptions o;
  o.path = path;
  o.domid = 0x7ff0;
  auto bad = SimProvider::open(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, EINVAL);
  EXPECT_THAT(bad.error().message, HasSubstr("32752"));
  o.domid = 0;
  o.max_grant_frames = 0;
  bad = SimProvider::open(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, EINVAL);
  EXPECT_THAT(bad.error().message, HasSubstr("max_grant_frames 0"));
  o.max_grant_frames = 1024;
  o.path = "/nonexistent-dir-for-shbuf/x";
  bad = SimProvider::open(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ENOENT);
  EXPECT_THAT(bad.error().message, HasSubstr("/nonexistent-dir-for-shbuf/x"));

  auto d0 = open(0);
  auto s = d0->share(0x7ff1, 1, Access::kReadOnly);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, EINVAL);
  auto zero = d0->share(1, 0, Access::kReadOnly);
  EXPECT_EQ(zero.error().code, EINVAL);
  auto st = SimProvider::status(path + "-missing");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ENOENT);
}

TEST_F(Sim, EndWhileMappedIsPendingUntilUnmapped) {
  auto d0 = open(0);
  auto d1 = open(1);
  auto share = d0->share(1, 10, Access::kReadWrite);
  ASSERT_TRUE(share.ok());
  const std::vector<Gref> grefs(share->grefs().begin(), share->grefs().end());
  std::memset(share->memory().data(), 0x5a, 10 * 4096);
  auto map = d1->map(0, std::span<const Gref>(grefs).subspan(2, 3), Access::kReadWrite);
  ASSERT_TRUE(map.ok());

  Status ended = share->end();
  ASSERT_FALSE(ended.ok());
  EXPECT_EQ(ended.code(), EBUSY);
  EXPECT_THAT(ended.error().message, HasSubstr("3 of 10 pages still mapped by domain 1"));
  EXPECT_FALSE(share->valid());
  EXPECT_EQ(d0->pending_pages(), 3u);
  SimStatus s = status();
  EXPECT_EQ(s.domains[0].pending, 3u);
  EXPECT_EQ(s.domains[0].frames_in_use, 3u);
  EXPECT_EQ(s.domains[0].grants_in_use, 0u);
  ASSERT_EQ(s.grants.size(), 3u);
  EXPECT_TRUE(s.grants[0].pending);

  // Revoked: no new maps, but the existing one still sees the data.
  auto again = d1->map(0, std::span<const Gref>(grefs).subspan(2, 1), Access::kReadOnly);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, EINVAL);
  EXPECT_THAT(again.error().message, HasSubstr("revoked"));
  EXPECT_EQ(map->memory()[5000], std::byte{0x5a});
  map->memory()[5000] = std::byte{1};

  // Kept pages are not reused by new shares.
  auto other = d0->share(1, 20, Access::kReadWrite);
  ASSERT_TRUE(other.ok());
  for (Gref g : other->grefs()) {
    EXPECT_TRUE(g < grefs[2] || g > grefs[4]) << "pending gref " << g << " reused";
  }
  ASSERT_TRUE(other->end().ok());

  EXPECT_TRUE(map->unmap().ok());
  EXPECT_EQ(d0->pending_pages(), 0u);
  expect_clean();
  EXPECT_EQ(mem_bytes(0), 0);
}

TEST_F(Sim, WritableAndReadOnlyMapsSetReadingAndWritingCounts) {
  auto d0 = open(0);
  auto d1 = open(1);
  auto share = d0->share(1, 1, Access::kReadWrite);
  ASSERT_TRUE(share.ok());
  auto m1 = d1->map(0, share->grefs(), Access::kReadOnly);
  auto m2 = d1->map(0, share->grefs(), Access::kReadWrite);
  ASSERT_TRUE(m1.ok() && m2.ok());
  EXPECT_EQ(status().grants[0].map_count, 2u);
  EXPECT_EQ(status().domains[0].grants_mapped, 1u);
  ASSERT_TRUE(m2->unmap().ok());
  EXPECT_EQ(status().grants[0].map_count, 1u);
  EXPECT_EQ(share->end().code(), EBUSY);
  ASSERT_TRUE(m1->unmap().ok());
  expect_clean();
}

TEST_F(Sim, InjectedFaultsAtEachOperation) {
  auto d0 = open(0);
  auto d1 = open(1);
  d0->inject_fault(SimFaultOp::kShare, 2, ENOMEM);
  auto s1 = d0->share(1, 4, Access::kReadWrite);
  ASSERT_TRUE(s1.ok());
  auto s2 = d0->share(1, 4, Access::kReadWrite);
  ASSERT_FALSE(s2.ok());
  EXPECT_EQ(s2.error().code, ENOMEM);
  EXPECT_THAT(s2.error().message, HasSubstr("injected fault: share call 2"));
  auto s3 = d0->share(1, 4, Access::kReadWrite);
  ASSERT_TRUE(s3.ok());

  d1->inject_fault(SimFaultOp::kMap, 1);
  auto m1 = d1->map(0, s1->grefs(), Access::kReadWrite);
  ASSERT_FALSE(m1.ok());
  EXPECT_EQ(m1.error().code, EIO);
  EXPECT_THAT(m1.error().message, HasSubstr("map call 1"));
  EXPECT_TRUE(status().mappings.empty());
  auto m2 = d1->map(0, s1->grefs(), Access::kReadWrite);
  ASSERT_TRUE(m2.ok());

  d1->inject_gref_fault(0, s3->grefs()[2], EFAULT);
  auto m3 = d1->map(0, s3->grefs(), Access::kReadOnly);
  ASSERT_FALSE(m3.ok());
  EXPECT_EQ(m3.error().code, EFAULT);
  EXPECT_THAT(m3.error().message,
              HasSubstr("gref " + std::to_string(s3->grefs()[2]) + " of domain 0"));
  auto m4 = d1->map(0, s3->grefs().subspan(0, 2), Access::kReadOnly);
  EXPECT_TRUE(m4.ok());
  auto m5 = d1->map(0, s3->grefs(), Access::kReadOnly);
  EXPECT_FALSE(m5.ok());  // the gref fault stays until cleared
  d1->clear_faults();
  auto m6 = d1->map(0, s3->grefs(), Access::kReadOnly);
  EXPECT_TRUE(m6.ok());

  // Injected end/unmap failures still release everything.
  d1->inject_fault(SimFaultOp::kUnmap, 1, EAGAIN);
  Status u = m2->unmap();
  EXPECT_EQ(u.code(), EAGAIN);
  EXPECT_THAT(u.error().message, HasSubstr("unmapped anyway"));
  EXPECT_FALSE(m2->valid());
  d0->inject_fault(SimFaultOp::kEnd, 1);
  Status e = s1->end();
  EXPECT_EQ(e.code(), EIO);
  EXPECT_THAT(e.error().message, HasSubstr("injected fault: end call 1"));
  m4 = Mapping();
  m6 = Mapping();
  EXPECT_TRUE(s3->end().ok());
  expect_clean();
}

TEST_F(Sim, FaultSpecFromOptionsAndEnvironment) {
  ASSERT_EQ(setenv(kSimFaultEnv, "map:2:ENOSPC,gref:0:9,copy:1:EAGAIN", 1), 0);
  SimOptions o;
  o.path = path;
  o.domid = 1;
  o.faults = "share:1:7";
  auto d1 = SimProvider::open(o);
  unsetenv(kSimFaultEnv);
  ASSERT_TRUE(d1.ok()) << d1.error().describe();
  auto d0 = open(0);
  auto s = (*d1)->share(0, 1, Access::kReadOnly);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, 7);
  auto share = d0->share(1, 4, Access::kReadOnly);
  ASSERT_TRUE(share.ok());
  ASSERT_EQ(share->grefs()[0], 8u);
  auto m1 = (*d1)->map(0, share->grefs().subspan(2), Access::kReadOnly);
  EXPECT_TRUE(m1.ok());
  auto m2 = (*d1)->map(0, share->grefs().subspan(2), Access::kReadOnly);
  EXPECT_EQ(m2.error().code, ENOSPC);
  auto m3 = (*d1)->map(0, share->grefs(), Access::kReadOnly);
  EXPECT_EQ(m3.error().code, EIO);
  EXPECT_THAT(m3.error().message, HasSubstr("gref 9 of domain 0"));
  std::vector<std::byte> buf(4);
  EXPECT_EQ((*d1)->copy_from(0, share->grefs()[2], 0, buf).code(), EAGAIN);
  EXPECT_TRUE((*d1)->copy_from(0, share->grefs()[2], 0, buf).ok());

  for (const char* bad :
       {"frob:1", "map:0", "map:x", "map:1:ENOTANERRNO", "gref:1", "map", "copy:0"}) {
    SimOptions b = o;
    b.faults = bad;
    auto p = SimProvider::open(b);
    ASSERT_FALSE(p.ok()) << bad;
    EXPECT_EQ(p.error().code, EINVAL);
    EXPECT_THAT(p.error().message, HasSubstr(bad));
  }
}

TEST_F(Sim, ResetMakesAttachedProvidersStale) {
  auto d0 = open(0);
  auto share = d0->share(1, 4, Access::kReadWrite);
  ASSERT_TRUE(share.ok());
  share->memory()[0] = std::byte{1};
  ASSERT_TRUE(SimProvider::reset(path).ok());
  EXPECT_EQ(SimProvider::status(path).error().code, ENOENT);
  auto s = d0->share(1, 1, Access::kReadWrite);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ESTALE);
  EXPECT_THAT(s.error().message, HasSubstr("was reset"));
  EXPECT_EQ(share->end().code(), ESTALE);
  auto fresh = open(0);
  ASSERT_TRUE(fresh);
  auto s2 = fresh->share(1, 1, Access::kReadWrite);
  EXPECT_TRUE(s2.ok());
  EXPECT_EQ(status().grants.size(), 1u);
  EXPECT_TRUE(SimProvider::reset(path + "-never-made").ok());
}

// Files named like an instance's in a directory that is not one.
void make_impostor(const std::string& dir) {
  std::filesystem::create_directories(dir);
  for (const char* name : {"state", "lives", "dom7.mem"}) {
    std::FILE* f = std::fopen((dir + "/" + name).c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("precious\n", f);
    std::fclose(f);
  }
}

TEST_F(Sim, ResetRefusesADirectoryThatIsNotAnInstance) {
  make_impostor(path);
  Status st = SimProvider::reset(path);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), EINVAL);
  EXPECT_THAT(st.error().message,
              HasSubstr("refusing to reset " + path +
                        ": its state does not start with the simulator's magic"));
  for (const char* name : {"state", "lives", "dom7.mem"}) {
    EXPECT_TRUE(std::filesystem::exists(path + "/" + name)) << name;
  }

  using shbuf::testing::run_process;
  auto r = run_process({SHBUF_BIN, "sim", "reset", "--sim", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("shbuf: error: refusing to reset " + path));
  EXPECT_EQ(shbuf::testing::count_lines(r.err), 1u);
  EXPECT_EQ(r.out, "");
  for (const char* name : {"state", "lives", "dom7.mem"}) {
    EXPECT_TRUE(std::filesystem::exists(path + "/" + name)) << name;
  }

  // Nor does a state that is a symbolic link to one lend its name.
  std::filesystem::remove(path + "/state");
  auto real = open(0);
  ASSERT_TRUE(real);
  const std::string other = path + "-other";
  make_impostor(other);
  std::filesystem::remove(other + "/state");
  std::filesystem::create_symlink(path + "/state", other + "/state");
  EXPECT_EQ(SimProvider::reset(other).code(), EINVAL);
  EXPECT_TRUE(std::filesystem::exists(other + "/dom7.mem"));
  std::filesystem::remove_all(other);
}

TEST_F(Sim, ResetRemovesOnlyTheInstancesOwnFiles) {
  auto d0 = open(0);
  ASSERT_TRUE(d0);
  const std::string target = path + "-target";
  std::filesystem::create_directories(target);
  std::fclose(std::fopen((target + "/kept").c_str(), "w"));
  const std::vector<std::string> strangers = {"notes.txt",    "dom7.txt",    "dom007.gnt",
                                              "dom99999.mem", "state.tmp.x", "lives.bak"};
  for (const std::string& name : strangers) {
    std::fclose(std::fopen((path + "/" + name).c_str(), "w"));
  }
  std::filesystem::create_symlink(target + "/kept", path + "/dom5.mem");
  std::filesystem::create_directory(path + "/dom6.gnt");
  ASSERT_TRUE(SimProvider::reset(path).ok());
  for (const char* gone : {"state", "lives", "dom0.gnt", "dom0.mem"}) {
    EXPECT_FALSE(std::filesystem::exists(path + "/" + gone)) << gone;
  }
  for (const std::string& name : strangers) {
    EXPECT_TRUE(std::filesystem::exists(path + "/" + name)) << name;
  }
  EXPECT_TRUE(std::filesystem::is_symlink(path + "/dom5.mem"));
  EXPECT_TRUE(std::filesystem::is_directory(path + "/dom6.gnt"));
  EXPECT_TRUE(std::filesystem::exists(target + "/kept"));
  std::filesystem::remove_all(target);

  using shbuf::testing::run_process;
  auto r = run_process({SHBUF_BIN, "sim", "reset", "--sim", path + "-never-made"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "nothing to reset at " + path + "-never-made\n");
}

TEST_F(Sim, SameDomainFromTwoProvidersSharesOneTable) {
  auto a = open(3);
  auto b = open(3);
  auto peer = open(4);
  auto sa = a->share(4, 2, Access::kReadWrite);
  auto sb = b->share(4, 2, Access::kReadWrite);
  ASSERT_TRUE(sa.ok() && sb.ok());
  std::set<Gref> all(sa->grefs().begin(), sa->grefs().end());
  all.insert(sb->grefs().begin(), sb->grefs().end());
  EXPECT_EQ(all.size(), 4u);
  SimStatus s = status();
  ASSERT_EQ(s.attachments.size(), 3u);
  for (const auto& d : s.domains) {
    if (d.domid == 3) {
      EXPECT_EQ(d.attached, 2u);
      EXPECT_EQ(d.grants_in_use, 4u);
    }
  }
  // b going away reclaims b's grants only; the domain lives on through a.
  sb = Share();
  b.reset();
  auto m = peer->map(3, sa->grefs(), Access::kReadWrite);
  EXPECT_TRUE(m.ok());
  EXPECT_EQ(status().grants.size(), 2u);
}

TEST_F(Sim, DefaultPathFollowsEnvironment) {
  const char* old = getenv("SHBUF_SIM");
  const std::string saved = old ? old : "";
  setenv("SHBUF_SIM", path.c_str(), 1);
  EXPECT_EQ(sim_default_path(), path);
  SimOptions o;  // empty path: $SHBUF_SIM
  auto p = SimProvider::open(o);
  ASSERT_TRUE(p.ok()) << p.error().describe();
  EXPECT_EQ((*p)->path(), path);
  unsetenv("SHBUF_SIM");
  EXPECT_NE(sim_default_path(), path);
  if (old) setenv("SHBUF_SIM", saved.c_str(), 1);
}

TEST_F(Sim, ManyThreadsShareAndMapAtOnce) {
  auto d0 = open(0);
  auto d1 = open(1);
  constexpr int kThreads = 8;
  constexpr int kRounds = 40;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Half the threads use shared providers, half their own.
      std::unique_ptr<SimProvider> own0, own1;
      SimProvider* g = d0.get();
      SimProvider* m = d1.get();
      if (t % 2 == 1) {
        SimOptions o;
        o.path = path;
        o.domid = 0;
        auto a = SimProvider::open(o);
        o.domid = 1;
        auto b = SimProvider::open(o);
        if (!a.ok() || !b.ok()) {
          failures++;
          return;
        }
        own0 = std::move(a).value();
        own1 = std::move(b).value();
        g = own0.get();
        m = own1.get();
      }
      for (int r = 0; r < kRounds; ++r) {
        const std::size_t pages = 1 + std::size_t((t * 7 + r) % 13);
        auto s = g->share(1, pages, Access::kReadWrite);
        if (!s.ok()) {
          failures++;
          continue;
        }
        for (std::size_t i = 0; i < pages; ++i) s->memory()[i * 4096 + 8] = std::byte(t + r);
        auto map = m->map(0, s->grefs(), r % 2 ? Access::kReadOnly : Access::kReadWrite);
        if (!map.ok()) {
          failures++;
          continue;
        }
        for (std::size_t i = 0; i < pages; ++i) {
          if (map->memory()[i * 4096 + 8] != std::byte(t + r)) failures++;
        }
        if (r % 3 == 0) {
          // End first: pending, reclaimed by the unmap.
          if (s->end().code() != EBUSY) failures++;
          if (!map->unmap().ok()) failures++;
        } else {
          if (!map->unmap().ok()) failures++;
          if (!s->end().ok()) failures++;
        }
      }
      if (t == 0) {
        auto st = SimProvider::status(path);
        if (!st.ok()) failures++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(d0->pending_pages(), 0u);
  expect_clean();
}

TEST_F(Sim, OneGibShareAndMap) {
  constexpr std::size_t kPages = 262144;
  auto d0 = open(0);
  auto d1 = open(1);
  const auto t0 = std::chrono::steady_clock::now();
  auto share = d0->share(1, kPages, Access::kReadWrite);
  ASSERT_TRUE(share.ok()) << share.error().describe();
  auto map = d1->map(0, share->grefs(), Access::kReadWrite);
  ASSERT_TRUE(map.ok()) << map.error().describe();
  EXPECT_EQ(status().mappings.size(), 1u);
  // Touch a page every 64 KiB plus the last one.
  for (std::size_t i = 0; i < kPages; i += 16) share->memory()[i * 4096] = std::byte(i >> 4);
  share->memory()[(kPages - 1) * 4096 + 4095] = std::byte{0x77};
  for (std::size_t i = 0; i < kPages; i += 16) {
    ASSERT_EQ(map->memory()[i * 4096], std::byte(i >> 4)) << "page " << i;
  }
  EXPECT_EQ(map->memory()[(kPages - 1) * 4096 + 4095], std::byte{0x77});
  EXPECT_GE(mem_bytes(0), (long long)(kPages / 16) * 4096);
  EXPECT_TRUE(map->unmap().ok());
  EXPECT_TRUE(share->end().ok());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 20.0);
  EXPECT_EQ(mem_bytes(0), 0);
  expect_clean();
}

}  // namespace
}  // namespace shbuf::simtest
