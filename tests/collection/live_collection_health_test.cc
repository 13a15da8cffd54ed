// The consistency contract of LiveCollection: refused batches store nothing,
// an index failure after the durable write degrades the collection (writes
// answer with a warning, reads and deletes go on, searches scan the store),
// the background rebuild restores it with back-off, and a collection whose
// index cannot be built still opens.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "collection/live_collection.h"
#include "tests/collection/collection_test_util.h"
#include "tests/db/test_util.h"

namespace hamdb {
namespace {

using testing_util::FaultSwitch;
using testing_util::FaultyIndexMaker;
using testing_util::Oracle;
using testing_util::RandomCode;
using testing_util::TempDir;

LiveCollectionOptions FailingOptions(FaultSwitch* sw) {
  LiveCollectionOptions o;
  o.index_maker = FaultyIndexMaker(sw);
  o.rebuild_delay = std::chrono::milliseconds(20);
  o.max_rebuild_delay = std::chrono::milliseconds(200);
  return o;
}

TEST(LiveCollectionHealth, IndexFailureAfterTheWriteDegradesThenRebuilds) {
  TempDir tmp;
  const int bits = 48;
  auto store = std::move(CodeStore::Open(tmp.path())).value();
  ASSERT_TRUE(store->CreateCollection({"c", bits, "Flat"}).ok());
  FaultSwitch sw;
  auto live = std::move(LiveCollection::Open(store.get(), "c", FailingOptions(&sw))).value();
  ASSERT_FALSE(live->degraded());

  std::mt19937_64 rng(3);
  std::map<uint64_t, std::vector<uint8_t>> model;
  auto put = [&](uint64_t id, std::string* warning) {
    ItemInput item;
    item.id = id;
    item.code = RandomCode(rng, bits);
    model[id] = item.code;
    return live->Put({item}, {}, nullptr, warning);
  };
  for (uint64_t id = 1; id <= 200; ++id) ASSERT_TRUE(put(id, nullptr).ok());

  // The index fails after the durable write: 2xx-equivalent with a warning.
  sw.fail = true;
  std::string warning;
  ASSERT_TRUE(put(500, &warning).ok());
  EXPECT_NE(warning.find("durable"), std::string::npos) << warning;
  EXPECT_TRUE(live->degraded());
  EXPECT_NE(live->health().reason.find("injected index failure"), std::string::npos)
      << live->health().reason;
  sw.fail_build = true;  // and every rebuild fails until released

  // Degraded: the item is stored, gets and deletes work, searches are exact
  // scans of the store.
  auto got = live->Get(500);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->code, model[500]);
  size_t deleted = 0;
  ASSERT_TRUE(live->Delete({7}, {}, &deleted).ok());
  EXPECT_EQ(deleted, 1u);
  model.erase(7);
  ASSERT_TRUE(put(501, nullptr).ok());
  for (int q = 0; q < 5; ++q) {
    const std::vector<uint8_t> query = RandomCode(rng, bits);
    bool scanned = false;
    auto r = live->Search(query.data(), 10, {}, &scanned);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(scanned);
    EXPECT_TRUE(r->exact);
    EXPECT_EQ(r->neighbors, Oracle(model, query, 10));
    auto range = live->RangeSearch(query.data(), 20, {}, &scanned);
    ASSERT_TRUE(range.ok());
    std::vector<Neighbor> want = Oracle(model, query, model.size());
    want.erase(std::remove_if(want.begin(), want.end(),
                              [](const Neighbor& n) { return n.distance > 20; }),
               want.end());
    EXPECT_EQ(range->neighbors, want);
  }

  // Failed rebuilds back off: with a 20 ms first delay doubling to 200 ms,
  // one second holds at most a handful of attempts, never a hot loop.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const CollectionHealth h = live->health();
  EXPECT_TRUE(h.degraded);
  EXPECT_GE(h.failed_rebuilds, 2);
  EXPECT_LE(sw.builds.load(), 12);
  EXPECT_NE(h.reason.find("rebuild failed"), std::string::npos) << h.reason;

  // Released: the rebuild brings the index back, holding every durable write.
  sw.fail = false;
  sw.fail_build = false;
  ASSERT_TRUE(live->WaitHealthy(std::chrono::seconds(10)));
  EXPECT_EQ(live->index_size(), model.size());
  for (int q = 0; q < 5; ++q) {
    const std::vector<uint8_t> query = RandomCode(rng, bits);
    bool scanned = true;
    auto r = live->Search(query.data(), 10, {}, &scanned);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(scanned);
    EXPECT_EQ(r->neighbors, Oracle(model, query, 10));
  }
}

TEST(LiveCollectionHealth, OpensDegradedWhenTheIndexCannotBeBuilt) {
  TempDir tmp;
  const int bits = 32;
  auto store = std::move(CodeStore::Open(tmp.path())).value();
  ASSERT_TRUE(store->CreateCollection({"c", bits, "Flat"}).ok());
  std::mt19937_64 rng(5);
  std::map<uint64_t, std::vector<uint8_t>> model;
  for (uint64_t id = 0; id < 100; ++id) {
    model[id] = RandomCode(rng, bits);
    ASSERT_TRUE(store->PutCodes("c", &id, model[id].data(), 1).ok());
  }
  FaultSwitch sw;
  sw.fail_build = true;
  auto live = LiveCollection::Open(store.get(), "c", FailingOptions(&sw));
  ASSERT_TRUE(live.ok()) << live.status().ToString();
  EXPECT_TRUE((*live)->degraded());
  const std::vector<uint8_t> query = RandomCode(rng, bits);
  auto r = (*live)->Search(query.data(), 5);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->neighbors, Oracle(model, query, 5));
  sw.fail_build = false;
  ASSERT_TRUE((*live)->WaitHealthy(std::chrono::seconds(10)));
  EXPECT_EQ((*live)->index_size(), 100u);
}

// A degraded collection's store scan orders ties by score exactly as the
// rebuilt index does, scores included.
TEST(LiveCollectionHealth, StoreScanOrdersTiesByScoreLikeTheIndex) {
  TempDir tmp;
  const int bits = 16;
  auto store = std::move(CodeStore::Open(tmp.path())).value();
  ASSERT_TRUE(store->CreateCollection({"c", bits, "Flat"}).ok());
  std::mt19937_64 rng(9);
  std::vector<uint8_t> codes;
  std::vector<uint64_t> ids;
  std::vector<float> scores;
  const std::vector<uint8_t> base = RandomCode(rng, bits);
  for (uint64_t id = 0; id < 300; ++id) {
    std::vector<uint8_t> c = base;
    c[rng() % 2] ^= static_cast<uint8_t>(1u << (rng() % 8));  // distance 0 or 1 or 2 from base
    if (id % 3 == 0) c = base;
    codes.insert(codes.end(), c.begin(), c.end());
    ids.push_back(id);
    scores.push_back(static_cast<float>(rng() % 5) * 0.25f);
  }
  ASSERT_TRUE(store->PutCodes("c", ids.data(), codes.data(), ids.size(), {}, nullptr, scores.data()).ok());
  FaultSwitch sw;
  sw.fail_build = true;
  auto live = std::move(LiveCollection::Open(store.get(), "c", FailingOptions(&sw))).value();
  ASSERT_TRUE(live->degraded());
  SearchParams by_score;
  by_score.tie_break = TieBreak::kScore;
  bool scanned = false;
  auto degraded = live->Search(base.data(), 40, by_score, &scanned);
  ASSERT_TRUE(degraded.ok());
  EXPECT_TRUE(scanned);
  auto range = live->RangeSearch(base.data(), 1, by_score);
  ASSERT_TRUE(range.ok());
  sw.fail_build = false;
  ASSERT_TRUE(live->WaitHealthy(std::chrono::seconds(10)));
  auto healthy = live->Search(base.data(), 40, by_score, &scanned);
  ASSERT_TRUE(healthy.ok());
  EXPECT_FALSE(scanned);
  EXPECT_EQ(degraded->neighbors, healthy->neighbors);
  EXPECT_EQ(range->neighbors, live->RangeSearch(base.data(), 1, by_score)->neighbors);
  EXPECT_NE(degraded->neighbors, live->Search(base.data(), 40)->neighbors);
  EXPECT_EQ(degraded->neighbors[0].score, ScoreKey(1.0f));
}

// An id the FAISS IVF index cannot take (>= 2^63) is refused before the
// store write: nothing is stored, the id counter does not move, later
// inserts without ids work, and the collection reopens healthy.
TEST(LiveCollectionHealth, OutOfRangeIvfIdIsRefusedAndNothingIsStored) {
  TempDir tmp;
  const int bits = 64;
  auto store = std::move(CodeStore::Open(tmp.path())).value();
  ASSERT_TRUE(LiveCollection::Create(store.get(), "ivf", bits, "IVF16", {}).ok());
  std::mt19937_64 rng(9);
  {
    auto live = std::move(LiveCollection::Open(store.get(), "ivf")).value();
    std::vector<uint8_t> code = RandomCode(rng, bits);
    const uint64_t one = 1, huge = 9223372036854775809ull;
    ASSERT_TRUE(live->PutCodes(&one, code.data(), 1).ok());
    Status s = live->PutCodes(&huge, code.data(), 1);
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.message().find("9223372036854775809"), std::string::npos) << s.ToString();
    EXPECT_EQ(live->Get(huge).status().code(), Status::Code::kNotFound);
    ItemInput item;
    item.id = huge;
    item.code = code;
    EXPECT_EQ(live->Put({item}).code(), Status::Code::kInvalidArgument);
    // Ids assigned afterwards are small: the counter did not move.
    std::vector<uint64_t> assigned;
    ASSERT_TRUE(live->PutCodes(nullptr, code.data(), 1, {}, &assigned).ok());
    ASSERT_EQ(assigned.size(), 1u);
    EXPECT_EQ(assigned[0], 2u);
    EXPECT_FALSE(live->degraded());
    EXPECT_EQ(*store->Count("ivf"), 2u);
  }
  auto reopened = LiveCollection::Open(store.get(), "ivf");
  ASSERT_TRUE(reopened.ok());
  EXPECT_FALSE((*reopened)->degraded()) << (*reopened)->health().reason;
  EXPECT_EQ((*reopened)->index_size(), 2u);
}

TEST(LiveCollectionHealth, CreateChecksEverythingBeforeWriting) {
  TempDir tmp;
  auto store = std::move(CodeStore::Open(tmp.path())).value();
  EXPECT_EQ(LiveCollection::Create(store.get(), "b", 64, "Bucket", {}).code(),
            Status::Code::kFailedPrecondition);
  EXPECT_EQ(LiveCollection::Create(store.get(), "i", 60, "IVF16", {}).code(),
            Status::Code::kInvalidArgument);  // FAISS binary codes are whole bytes
  EXPECT_EQ(LiveCollection::Create(store.get(), "x", 64, "HNSW", {}).code(),
            Status::Code::kInvalidArgument);
  EXPECT_TRUE(store->ListCollections()->empty());
}

}  // namespace
}  // namespace hamdb
