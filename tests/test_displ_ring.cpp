// The request ring and the event page against a frontend written here, on a
// page in memory: requests copied out once and answered in order, the
// notification rules of xen/io/ring.h, and a hostile frontend's indices
// refused without reading or writing outside the page.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "pv/displ/ring.h"

namespace shbuf::displ {
namespace {

// A page-aligned page plus guard bytes on both sides that must stay intact.
struct GuardedPage {
  GuardedPage() : storage(3 * kPageSize, std::byte{0xa5}) {
    page = storage.data() + kPageSize;
    std::memset(page, 0, kPageSize);
  }
  std::span<std::byte> span() { return {page, kPageSize}; }
  bool guards_intact() const {
    for (std::size_t i = 0; i < kPageSize; ++i) {
      if (storage[i] != std::byte{0xa5} || storage[2 * kPageSize + i] != std::byte{0xa5}) {
        return false;
      }
    }
    return true;
  }
  std::uint32_t& u32(std::size_t off) { return *reinterpret_cast<std::uint32_t*>(page + off); }
  std::byte* slot(std::size_t base, std::size_t i) { return page + base + i * kPacketSize; }

  std::vector<std::byte> storage;
  std::byte* page;
};

// The frontend's side of the request ring, as Linux's xen-drm-front drives it.
struct Frontend {
  explicit Frontend(GuardedPage& p) : page(p) {}
  void push(const Request& r) {
    Packet pk = encode_request(r);
    std::memcpy(page.slot(64, req_prod_pvt % kRequestRingSize), pk.data(), kPacketSize);
    ++req_prod_pvt;
    page.u32(0) = req_prod_pvt;
  }
  Response response(std::uint32_t i) {
    Packet pk;
    std::memcpy(pk.data(), page.slot(64, i % kRequestRingSize), kPacketSize);
    return decode_response(pk);
  }
  GuardedPage& page;
  std::uint32_t req_prod_pvt = 0;
};

Request flip(std::uint16_t id, std::uint64_t cookie) {
  Request r;
  r.id = id;
  r.operation = kOpPgFlip;
  r.body = PgFlip{cookie};
  return r;
}

TEST(DisplRing, RefusesPagesOfTheWrongShape) {
  std::vector<std::byte> buf(2 * kPageSize + 8);
  EXPECT_EQ(RequestRing::attach({buf.data(), 100}).error().code, EINVAL);
  EXPECT_EQ(RequestRing::attach({buf.data(), 2 * kPageSize}).error().code, EINVAL);
  EXPECT_EQ(EventRing::attach({buf.data(), 0}).error().code, EINVAL);
  EXPECT_EQ(EventRing::attach({buf.data() + 1, kPageSize}).error().code, EINVAL);
}

TEST(DisplRing, AnswersRequestsInOrderAcrossManyWraps) {
  GuardedPage page;
  auto ring = RequestRing::attach(page.span());
  ASSERT_TRUE(ring.ok());
  Frontend fe(page);
  auto none = ring->next_request();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  std::uint16_t id = 0;
  for (int round = 0; round < 200; ++round) {
    const int batch = 1 + round % static_cast<int>(kRequestRingSize);
    const std::uint32_t first = fe.req_prod_pvt;
    for (int i = 0; i < batch; ++i) fe.push(flip(static_cast<std::uint16_t>(id + i), 1000 + i));
    for (int i = 0; i < batch; ++i) {
      auto next = ring->next_request();
      ASSERT_TRUE(next.ok()) << next.error().describe();
      ASSERT_TRUE(next->has_value());
      Request r = decode_request(**next);
      EXPECT_EQ(r.id, static_cast<std::uint16_t>(id + i));
      EXPECT_EQ(std::get<PgFlip>(r.body).fb_cookie, 1000u + i);
      auto notify = ring->push_response(encode_response({r.id, r.operation, -i, 0}));
      ASSERT_TRUE(notify.ok());
    }
    auto more = ring->final_check();
    ASSERT_TRUE(more.ok());
    EXPECT_FALSE(*more);
    EXPECT_EQ(page.u32(4), fe.req_prod_pvt + 1) << "req_event re-armed";
    EXPECT_EQ(page.u32(8), fe.req_prod_pvt) << "rsp_prod published";
    for (int i = 0; i < batch; ++i) {
      Response resp = fe.response(first + i);
      EXPECT_EQ(resp.id, static_cast<std::uint16_t>(id + i));
      EXPECT_EQ(resp.status, -i);
    }
    id = static_cast<std::uint16_t>(id + batch);
  }
  EXPECT_TRUE(page.guards_intact());
}

TEST(DisplRing, NotifiesOnlyWhenTheFrontendAsked) {
  GuardedPage page;
  auto ring = RequestRing::attach(page.span());
  ASSERT_TRUE(ring.ok());
  Frontend fe(page);
  fe.push(flip(1, 1));
  fe.push(flip(2, 1));
  page.u32(12) = 1;  // rsp_event: wake me at the first response
  ASSERT_TRUE(ring->next_request().ok());
  ASSERT_TRUE(ring->next_request().ok());
  auto n1 = ring->push_response(encode_response({1, kOpPgFlip, 0, 0}));
  ASSERT_TRUE(n1.ok());
  EXPECT_TRUE(*n1);
  auto n2 = ring->push_response(encode_response({2, kOpPgFlip, 0, 0}));
  ASSERT_TRUE(n2.ok());
  EXPECT_FALSE(*n2);
  // No request awaits a response now.
  EXPECT_EQ(ring->push_response(encode_response({3, kOpPgFlip, 0, 0})).error().code, EPROTO);
}

TEST(DisplRing, FinalCheckSeesARequestPushedMeanwhile) {
  GuardedPage page;
  auto ring = RequestRing::attach(page.span());
  ASSERT_TRUE(ring.ok());
  Frontend fe(page);
  auto more = ring->final_check();
  ASSERT_TRUE(more.ok());
  EXPECT_FALSE(*more);
  fe.push(flip(1, 1));
  more = ring->final_check();
  ASSERT_TRUE(more.ok());
  EXPECT_TRUE(*more);
}

TEST(DisplRing, RefusesAProducerRunningAheadOrBehind) {
  for (std::uint32_t prod : {kRequestRingSize + 1, 1000u, 0x80000000u, 0xffffffffu}) {
    GuardedPage page;
    auto ring = RequestRing::attach(page.span());
    ASSERT_TRUE(ring.ok());
    page.u32(0) = prod;
    auto next = ring->next_request();
    ASSERT_FALSE(next.ok()) << prod;
    EXPECT_EQ(next.error().code, EPROTO);
    EXPECT_NE(next.error().message.find("ahead"), std::string::npos);
    EXPECT_EQ(ring->final_check().error().code, EPROTO);
    EXPECT_EQ(ring->consumed(), 0u);
    EXPECT_TRUE(page.guards_intact());
  }
  // Exactly a full ring is legal.
  GuardedPage page;
  auto ring = RequestRing::attach(page.span());
  ASSERT_TRUE(ring.ok());
  Frontend fe(page);
  for (std::uint32_t i = 0; i < kRequestRingSize; ++i) fe.push(flip(1, 1));
  for (std::uint32_t i = 0; i < kRequestRingSize; ++i) {
    auto next = ring->next_request();
    ASSERT_TRUE(next.ok());
    ASSERT_TRUE(next->has_value());
  }
  // Unanswered requests fill every slot: the frontend cannot add another.
  page.u32(0) = kRequestRingSize + 1;
  EXPECT_EQ(ring->next_request().error().code, EPROTO);
}

TEST(DisplRing, CopiesARequestOnceSoLaterRewritesDoNotMatter) {
  GuardedPage page;
  auto ring = RequestRing::attach(page.span());
  ASSERT_TRUE(ring.ok());
  Frontend fe(page);
  fe.push(flip(5, 0x1111));
  auto next = ring->next_request();
  ASSERT_TRUE(next.ok() && next->has_value());
  std::memset(page.slot(64, 0), 0xff, kPacketSize);  // the frontend rewrites the slot
  Request r = decode_request(**next);
  EXPECT_EQ(r.id, 5);
  EXPECT_EQ(std::get<PgFlip>(r.body).fb_cookie, 0x1111u);
}

TEST(DisplRing, EventsCarrySequentialIdsAndWrapTheRing) {
  GuardedPage page;
  auto evt = EventRing::attach(page.span());
  ASSERT_TRUE(evt.ok());
  std::uint32_t cons = 0;
  for (std::uint32_t i = 0; i < 500; ++i) {
    ASSERT_TRUE(evt->push_pg_flip(100 + i).ok()) << i;
    EXPECT_EQ(page.u32(4), i + 1);
    // The frontend consumes each event as Linux's does.
    for (; cons != page.u32(4); ++cons) {
      Packet p;
      std::memcpy(p.data(), page.slot(64, cons % kEventRingLen), kPacketSize);
      auto e = decode_pg_flip_event(p);
      ASSERT_TRUE(e);
      EXPECT_EQ(e->id, static_cast<std::uint16_t>(cons));
      EXPECT_EQ(e->fb_cookie, 100u + cons);
    }
    page.u32(0) = cons;
  }
  EXPECT_TRUE(page.guards_intact());
}

TEST(DisplRing, AFullOrLyingEventRingDropsTheEventInsteadOfWaiting) {
  GuardedPage page;
  auto evt = EventRing::attach(page.span());
  ASSERT_TRUE(evt.ok());
  for (std::uint32_t i = 0; i < kEventRingLen; ++i) ASSERT_TRUE(evt->push_pg_flip(i + 1).ok());
  auto full = evt->push_pg_flip(99);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, ENOSPC);
  EXPECT_EQ(evt->produced(), kEventRingLen);
  // A consumer index ahead of everything produced is a lie: still no room.
  page.u32(0) = 0x7fffffff;
  EXPECT_EQ(evt->push_pg_flip(99).error().code, ENOSPC);
  // Once the frontend consumes, events flow again with the next id.
  page.u32(0) = kEventRingLen;
  ASSERT_TRUE(evt->push_pg_flip(7).ok());
  Packet p;
  std::memcpy(p.data(), page.slot(64, kEventRingLen % kEventRingLen), kPacketSize);
  EXPECT_EQ(decode_pg_flip_event(p)->id, kEventRingLen);
  EXPECT_TRUE(page.guards_intact());
}

}  // namespace
}  // namespace shbuf::displ
