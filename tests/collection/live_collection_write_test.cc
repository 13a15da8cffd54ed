// The write path of LiveCollection: group commit (concurrent writers share
// one store batch, the index follows in commit order, a bad request fails
// alone) and searches that stay exact while several writers run.
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
using testing_util::CodeOfId;
using testing_util::Oracle;
using testing_util::RandomCode;
using testing_util::TempDir;

template <typename Pred>
bool WaitFor(Pred pred) {
  for (int i = 0; i < 10000 && !pred(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

TEST(LiveCollectionWrite, WritersQueuedBehindACommitShareTheNextGroup) {
  TempDir tmp;
  const int bits = 32;
  auto store = std::move(CodeStore::Open(tmp.path())).value();
  ASSERT_TRUE(store->CreateCollection({"c", bits, "Flat"}).ok());
  FaultSwitch sw;
  LiveCollectionOptions o;
  o.index_maker = FaultyIndexMaker(&sw);
  auto live = std::move(LiveCollection::Open(store.get(), "c", o)).value();

  std::mt19937_64 rng(11);
  std::map<uint64_t, std::vector<uint8_t>> model;
  auto item = [&](uint64_t id) {
    ItemInput in;
    in.id = id;
    in.code = RandomCode(rng, bits);
    return in;
  };
  // Stored before the race: 100 and 101.
  ASSERT_TRUE(live->Put({item(100), item(101)}).ok());

  // The first writer is held inside its index update, after its durable write.
  sw.hold = true;
  const ItemInput first = item(1);
  model[1] = first.code;
  std::thread leader([&] { EXPECT_TRUE(live->Put({first}).ok()); });
  ASSERT_TRUE(WaitFor([&] { return sw.held.load() == 1; }));

  // Seven more queue behind it: five puts, one delete and one bad request.
  std::vector<ItemInput> puts;
  for (uint64_t id = 2; id <= 6; ++id) {
    puts.push_back(item(id));
    model[id] = puts.back().code;
  }
  std::vector<std::thread> writers;
  std::atomic<int> ok{0};
  for (const ItemInput& in : puts) {
    writers.emplace_back([&, in] { ok += live->Put({in}).ok() ? 1 : 0; });
  }
  size_t deleted = 0;
  writers.emplace_back([&] { ok += live->Delete({100, 999}, {}, &deleted).ok() ? 1 : 0; });
  Status bad_status;
  writers.emplace_back([&] {
    ItemInput bad = item(7);
    bad.code.push_back(0);  // one byte too many
    bad_status = live->Put({bad});
  });
  ASSERT_TRUE(WaitFor([&] { return live->pending_writes() == 8; }));
  sw.hold = false;
  leader.join();
  for (auto& t : writers) t.join();

  EXPECT_EQ(ok.load(), 6);
  EXPECT_EQ(deleted, 1u);
  EXPECT_EQ(bad_status.code(), Status::Code::kInvalidArgument) << bad_status.ToString();
  const LiveCollection::WriteStats stats = live->write_stats();
  EXPECT_EQ(stats.writes, 9u);  // the first put of 100 and 101, then eight
  EXPECT_EQ(stats.groups, 3u);  // that put, the held one, then the seven together
  // Two, one, five puts and the two ids to delete; not the refused item.
  EXPECT_EQ(stats.items, 10u);
  EXPECT_EQ(live->pending_writes(), 0u);

  // Store and index agree: 101 and the six puts, not 100 nor the bad item.
  model[101] = std::move(live->Get(101)).value().code;
  EXPECT_EQ(*store->Count("c"), model.size());
  EXPECT_EQ(live->index_size(), model.size());
  EXPECT_EQ(live->Get(7).status().code(), Status::Code::kNotFound);
  for (int q = 0; q < 10; ++q) {
    const std::vector<uint8_t> query = RandomCode(rng, bits);
    auto r = live->Search(query.data(), 5);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->neighbors, Oracle(model, query, 5));
  }
}

// Four writers stream batches while readers search. Every search must be
// exact against what was acknowledged before it started: no hit with a wrong
// distance or an id never written, and no acknowledged item missing from the
// top k that belongs in it. Run under TSan by scripts/test-tsan.sh.
TEST(LiveCollectionWrite, SearchesStayExactWhileFourWritersCommit) {
  TempDir tmp;
  const int bits = 64;
  const size_t k = 10;
  auto store = std::move(CodeStore::Open(tmp.path())).value();
  ASSERT_TRUE(store->CreateCollection({"c", bits, "MIH"}).ok());
  auto live = std::move(LiveCollection::Open(store.get(), "c")).value();

  constexpr int kWriters = 4;
  constexpr uint64_t kStride = 1000000;
  constexpr int kBatches = 40, kBatch = 25;
  std::atomic<uint64_t> acked[kWriters];
  for (auto& a : acked) a = 0;
  std::atomic<bool> writing{true};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int b = 0; b < kBatches; ++b) {
        std::vector<uint64_t> ids;
        std::vector<uint8_t> codes;
        for (int i = 0; i < kBatch; ++i) {
          const uint64_t id = w * kStride + b * kBatch + i;
          ids.push_back(id);
          const std::vector<uint8_t> c = CodeOfId(id, bits);
          codes.insert(codes.end(), c.begin(), c.end());
        }
        ASSERT_TRUE(live->PutCodes(ids.data(), codes.data(), ids.size()).ok());
        acked[w] = (b + 1) * kBatch;
      }
    });
  }
  std::atomic<int> searches{0};
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      std::mt19937_64 rng(100 + r);
      while (writing) {
        uint64_t seen[kWriters];
        for (int w = 0; w < kWriters; ++w) seen[w] = acked[w];
        const std::vector<uint8_t> query = RandomCode(rng, bits);
        auto res = live->Search(query.data(), k);
        ASSERT_TRUE(res.ok());
        const std::vector<Neighbor>& got = res->neighbors;
        ASSERT_TRUE(std::is_sorted(got.begin(), got.end(), NeighborLess));
        for (const Neighbor& n : got) {
          ASSERT_LT(n.id % kStride, static_cast<uint64_t>(kBatches * kBatch));
          EXPECT_EQ(n.distance, HammingDistance(query.data(), CodeOfId(n.id, bits).data(), 8));
        }
        // Every acknowledged item that orders before the last hit is a hit.
        std::map<uint64_t, std::vector<uint8_t>> visible;
        for (int w = 0; w < kWriters; ++w) {
          for (uint64_t i = 0; i < seen[w]; ++i) visible[w * kStride + i] = CodeOfId(w * kStride + i, bits);
        }
        for (const Neighbor& must : Oracle(visible, query, k)) {
          if (got.size() == k && NeighborLess(got.back(), must)) break;
          EXPECT_NE(std::find(got.begin(), got.end(), must), got.end())
              << "acknowledged id " << must.id << " missing";
        }
        searches++;
      }
    });
  }
  for (int w = 0; w < kWriters; ++w) threads[w].join();
  writing = false;
  for (size_t t = kWriters; t < threads.size(); ++t) threads[t].join();
  EXPECT_GT(searches.load(), 0);
  EXPECT_EQ(live->index_size(), static_cast<size_t>(kWriters * kBatches * kBatch));
  const LiveCollection::WriteStats stats = live->write_stats();
  EXPECT_EQ(stats.writes, static_cast<uint64_t>(kWriters * kBatches));
  EXPECT_EQ(stats.items, static_cast<uint64_t>(kWriters * kBatches * kBatch));
  EXPECT_GT(stats.store_seconds, 0.0);
  EXPECT_GT(stats.index_seconds, 0.0);
  EXPECT_LE(stats.sync_seconds, stats.store_seconds);
  std::printf("%llu write requests in %llu groups, %d searches checked\n",
              static_cast<unsigned long long>(stats.writes),
              static_cast<unsigned long long>(stats.groups), searches.load());
}

}  // namespace
}  // namespace hamdb
