// Both ends of the PV layer's request/response ring and event page on one
// page in memory: entries of several sizes pass in order across wraps, the
// notification rules of xen/io/ring.h hold, and an index the other end
// cannot have written is refused, never followed.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "pv/ring.h"

namespace shbuf::pv {
namespace {

struct Page {
  alignas(kPageSize) std::byte bytes[kPageSize] = {};
  std::span<std::byte> span() { return {bytes, kPageSize}; }
  std::uint32_t& u32(std::size_t off) { return *reinterpret_cast<std::uint32_t*>(bytes + off); }
};

std::vector<std::byte> entry(std::size_t size, std::uint32_t tag) {
  std::vector<std::byte> e(size);
  for (std::size_t i = 0; i < size; i += 4) {
    const std::uint32_t v = tag * 1000 + std::uint32_t(i);
    std::memcpy(e.data() + i, &v, 4);
  }
  return e;
}

TEST(PvRing, SizesFollowRingH) {
  EXPECT_EQ(ring_size(64), 32u);   // (4096 - 64) / 64 = 63, rounded down
  EXPECT_EQ(ring_size(112), 32u);  // 36
  EXPECT_EQ(ring_size(16), 128u);  // 252
  EXPECT_EQ(event_ring_len(64), 63u);
  EXPECT_EQ(ring_size(0), 0u);
  EXPECT_EQ(ring_size(kPageSize), 0u);
}

class PvRingSizes : public ::testing::TestWithParam<std::size_t> {};

TEST_P(PvRingSizes, RequestsAndResponsesPassInOrderAcrossWraps) {
  const std::size_t size = GetParam();
  Page page;
  auto front = FrontRing::init(page.span(), size);
  ASSERT_TRUE(front.ok()) << front.error().describe();
  auto back = BackRing::attach(page.span(), size);
  ASSERT_TRUE(back.ok());
  std::vector<std::byte> got(size);
  std::uint32_t sent = 0, answered = 0;
  for (int round = 0; round < 20; ++round) {
    // Fill the ring, then answer everything.
    while (!front->full()) {
      auto notify = front->push_request(entry(size, sent++));
      ASSERT_TRUE(notify.ok());
    }
    auto overflow = front->push_request(entry(size, 0));
    ASSERT_FALSE(overflow.ok());
    EXPECT_EQ(overflow.error().code, ENOSPC);
    for (;;) {
      auto r = back->next_request(got);
      ASSERT_TRUE(r.ok()) << r.error().describe();
      if (!*r) break;
      ASSERT_EQ(got, entry(size, back->consumed() - 1));
      ASSERT_TRUE(back->push_response(entry(size, back->consumed() - 1 + 7)).ok());
    }
    for (;;) {
      auto r = front->next_response(got);
      ASSERT_TRUE(r.ok());
      if (!*r) break;
      ASSERT_EQ(got, entry(size, answered++ + 7));
    }
    EXPECT_EQ(answered, sent);
    EXPECT_EQ(front->in_flight(), 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(EntrySizes, PvRingSizes, ::testing::Values(16, 64, 112, 2016));

TEST(PvRing, NotificationsFollowTheEventIndices) {
  Page page;
  auto front = FrontRing::init(page.span(), 64);
  auto back = BackRing::attach(page.span(), 64);
  ASSERT_TRUE(front.ok() && back.ok());
  std::vector<std::byte> e(64);
  // A fresh ring wants the first request announced, not the second.
  EXPECT_TRUE(*front->push_request(e));
  EXPECT_FALSE(*front->push_request(e));
  ASSERT_TRUE(*back->next_request(e));
  ASSERT_TRUE(*back->next_request(e));
  // The backend re-arms only when it runs dry.
  EXPECT_FALSE(*back->final_check());
  EXPECT_TRUE(*front->push_request(e));
  // Responses: the first after the frontend armed rsp_event=1 notifies.
  EXPECT_TRUE(*back->push_response(e));
  EXPECT_FALSE(*back->push_response(e));
  EXPECT_TRUE(*front->next_response(e));
  EXPECT_TRUE(*front->next_response(e));
  EXPECT_FALSE(*front->final_check());
  ASSERT_TRUE(*back->next_request(e));
  EXPECT_TRUE(*back->push_response(e));
}

TEST(PvRing, BackendRefusesAProducerIndexFarAhead) {
  Page page;
  auto back = BackRing::attach(page.span(), 64);
  ASSERT_TRUE(back.ok());
  page.u32(0) = 33;  // req_prod: more than a ring of 32 ahead
  std::vector<std::byte> e(64);
  auto r = back->next_request(e);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EPROTO);
  page.u32(0) = 0xffffffffu;  // behind us, seen unsigned: far ahead
  EXPECT_EQ(back->final_check().error().code, EPROTO);
}

TEST(PvRing, BackendRefusesAResponseWithoutRequest) {
  Page page;
  auto back = BackRing::attach(page.span(), 64);
  ASSERT_TRUE(back.ok());
  auto r = back->push_response(std::vector<std::byte>(64));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EPROTO);
}

TEST(PvRing, FrontendRefusesMoreResponsesThanRequests) {
  Page page;
  auto front = FrontRing::init(page.span(), 64);
  ASSERT_TRUE(front.ok());
  std::vector<std::byte> e(64);
  ASSERT_TRUE(front->push_request(e).ok());
  page.u32(8) = 2;  // rsp_prod: two responses to one request
  auto r = front->next_response(e);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EPROTO);
}

TEST(PvRing, EventsPassInOrderAndAFullPageDropsThem) {
  Page page;
  auto producer = EventProducer::attach(page.span(), 64);
  auto consumer = EventConsumer::attach(page.span(), 64);
  ASSERT_TRUE(producer.ok() && consumer.ok());
  std::vector<std::byte> got(64);
  std::uint32_t next = 0;
  for (int round = 0; round < 10; ++round) {
    for (std::uint32_t i = 0; i < producer->len(); ++i) {
      ASSERT_TRUE(producer->push(entry(64, round * 100 + i)).ok());
    }
    Status full = producer->push(entry(64, 0));
    ASSERT_FALSE(full.ok());
    EXPECT_EQ(full.code(), ENOSPC);
    for (std::uint32_t i = 0; i < producer->len(); ++i) {
      auto r = consumer->next(got);
      ASSERT_TRUE(r.ok() && *r);
      ASSERT_EQ(got, entry(64, round * 100 + i));
      ++next;
    }
    EXPECT_FALSE(*consumer->next(got));
  }
  EXPECT_EQ(next, 10 * producer->len());
}

TEST(PvRing, EventConsumerRefusesAProducerIndexFarAhead) {
  Page page;
  auto consumer = EventConsumer::attach(page.span(), 64);
  ASSERT_TRUE(consumer.ok());
  page.u32(4) = 64;  // in_prod: more than the 63 events the page holds
  std::vector<std::byte> e(64);
  auto r = consumer->next(e);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EPROTO);
}

TEST(PvRing, EventProducerDropsWhenTheConsumerIndexIsImpossible) {
  Page page;
  auto producer = EventProducer::attach(page.span(), 64);
  ASSERT_TRUE(producer.ok());
  page.u32(0) = 5;  // in_cons beyond anything produced
  EXPECT_EQ(producer->push(std::vector<std::byte>(64)).code(), ENOSPC);
}

TEST(PvRing, ShapesThatCannotBeARingAreRefused) {
  Page page;
  for (std::size_t bad : {std::size_t(0), std::size_t(3), std::size_t(66), kPageSize}) {
    EXPECT_EQ(BackRing::attach(page.span(), bad).error().code, EINVAL) << bad;
    EXPECT_EQ(FrontRing::init(page.span(), bad).error().code, EINVAL) << bad;
    EXPECT_EQ(EventProducer::attach(page.span(), bad).error().code, EINVAL) << bad;
  }
  EXPECT_EQ(BackRing::attach(page.span().first(100), 64).error().code, EINVAL);
  EXPECT_EQ(EventConsumer::attach(page.span().subspan(1, kPageSize - 1), 64).error().code, EINVAL);
  auto back = BackRing::attach(page.span(), 64);
  std::vector<std::byte> small(32);
  EXPECT_EQ(back->next_request(small).error().code, EINVAL);
}

}  // namespace
}  // namespace shbuf::pv
