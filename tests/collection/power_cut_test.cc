// Durability against power loss, with a file system that drops every byte
// that was not synced (tests/db/power_cut_fs.h). A writer streams batches
// into a collection (its index snapshotted all the while) and the power is
// cut at a random moment. After each cut the store must reopen, hold every
// acknowledged batch when writes are synced (with sync off: a prefix of the
// batches, never a torn one), and the collection must open with an index
// equal to the store, from its snapshot when that survived.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "collection/live_collection.h"
#include "tests/collection/collection_test_util.h"
#include "tests/db/power_cut_fs.h"
#include "tests/db/test_util.h"

namespace hamdb {
namespace {

using testing_util::CodeOfId;
using testing_util::Oracle;
using testing_util::PowerCutFileSystem;
using testing_util::RandomCode;
using testing_util::StoreContents;
using testing_util::TempDir;

constexpr int kBits = 64;
constexpr uint64_t kBatch = 8;

std::vector<uint8_t> CodeOf(uint64_t id) { return CodeOfId(id, kBits); }

struct Totals {
  int cuts = 0;
  uint64_t acknowledged = 0, lost = 0, torn = 0, beyond_prefix = 0, present = 0;
  int from_snapshot = 0, rebuilt = 0;
  size_t files_torn = 0, files_dropped = 0;
};

void RunCuts(bool sync, int rounds, uint64_t seed, Totals* t) {
  TempDir tmp;
  std::mt19937_64 rng(seed);
  for (int round = 0; round < rounds; ++round) {
    const std::string dir = tmp.sub("r" + std::to_string(round));
    auto fs = std::make_shared<PowerCutFileSystem>(rocksdb::FileSystem::Default());
    std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
    StoreOpenOptions so;
    so.env = env.get();
    LiveCollectionOptions lo;
    lo.snapshots = true;
    lo.snapshot_after_items = UINT64_MAX;  // the snapshot thread below decides
    std::atomic<uint64_t> attempted{0}, acked{0};
    {
      auto store = std::move(CodeStore::Open(dir, so)).value();
      ASSERT_TRUE(store->CreateCollection({"c", kBits, "MIH"}).ok());
      auto live = std::move(LiveCollection::Open(store.get(), "c", lo)).value();
      std::atomic<bool> stop{false};
      std::thread writer([&] {
        StoreWriteOptions wo;
        wo.sync = sync;
        for (uint64_t b = 0; !stop; ++b) {
          std::vector<uint64_t> ids;
          std::vector<uint8_t> codes;
          for (uint64_t i = 0; i < kBatch; ++i) {
            ids.push_back(b * kBatch + i);
            const std::vector<uint8_t> c = CodeOf(ids.back());
            codes.insert(codes.end(), c.begin(), c.end());
          }
          attempted = b + 1;
          if (!live->PutCodes(ids.data(), codes.data(), ids.size(), wo).ok()) break;
          acked = b + 1;
        }
      });
      std::thread snapshotter([&] {
        while (!stop) {
          std::this_thread::sleep_for(std::chrono::milliseconds(2 + rng() % 8));
          (void)live->SaveSnapshot();  // fails once the power is cut
        }
      });
      std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 60));
      fs->Kill();
      stop = true;
      writer.join();
      snapshotter.join();
      live.reset();
      store.reset();
    }
    const PowerCutFileSystem::Counts cut = fs->Cut(rng, /*tear=*/round % 2 == 1);
    t->files_torn += cut.files_torn;
    t->files_dropped += cut.files_dropped;
    ++t->cuts;

    // Reopen on the real file system.
    auto reopened = CodeStore::Open(dir);
    ASSERT_TRUE(reopened.ok()) << "cut " << round << ": " << reopened.status().ToString();
    auto& store = *reopened;
    const std::map<uint64_t, std::vector<uint8_t>> model = StoreContents(*store, "c");
    bool gap = false;
    for (uint64_t b = 0; b < attempted; ++b) {
      uint64_t here = 0;
      for (uint64_t i = 0; i < kBatch; ++i) {
        auto it = model.find(b * kBatch + i);
        if (it == model.end()) continue;
        ++here;
        EXPECT_EQ(it->second, CodeOf(b * kBatch + i)) << "cut " << round << ": wrong code";
      }
      if (here != 0 && here != kBatch) ++t->torn;
      if (b < acked) {
        ++t->acknowledged;
        if (here != kBatch) ++t->lost;
      }
      if (here == kBatch) {
        ++t->present;
        if (gap) ++t->beyond_prefix;
      } else {
        gap = true;
      }
    }
    for (const auto& [id, code] : model) {
      EXPECT_LT(id, attempted * kBatch) << "cut " << round << ": an item never written";
    }
    auto live = LiveCollection::Open(store.get(), "c", lo);
    ASSERT_TRUE(live.ok()) << live.status().ToString();
    EXPECT_FALSE((*live)->degraded()) << (*live)->health().reason;
    EXPECT_EQ((*live)->index_size(), model.size()) << "cut " << round;
    (*live)->open_info().from_snapshot ? ++t->from_snapshot : ++t->rebuilt;
    for (int q = 0; q < 3; ++q) {
      const std::vector<uint8_t> query = RandomCode(rng, kBits);
      EXPECT_EQ((*live)->Search(query.data(), 10)->neighbors, Oracle(model, query, 10))
          << "cut " << round;
    }
  }
}

void Print(const char* what, const Totals& t) {
  std::printf(
      "%s: %d cut points, %llu batches acknowledged, %llu lost, %llu torn, %llu present beyond a "
      "missing batch; %zu files torn and %zu dropped by the cuts; the index reopened from its "
      "snapshot %d times, rebuilt %d times\n",
      what, t.cuts, static_cast<unsigned long long>(t.acknowledged),
      static_cast<unsigned long long>(t.lost), static_cast<unsigned long long>(t.torn),
      static_cast<unsigned long long>(t.beyond_prefix), t.files_torn, t.files_dropped,
      t.from_snapshot, t.rebuilt);
}

TEST(PowerCut, SyncedWritesSurviveEveryCut) {
  Totals t;
  RunCuts(/*sync=*/true, 100, 1, &t);
  Print("sync on", t);
  EXPECT_EQ(t.cuts, 100);
  EXPECT_GT(t.acknowledged, 0u);
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(t.torn, 0u);
  EXPECT_EQ(t.beyond_prefix, 0u);
  EXPECT_GT(t.from_snapshot, 0);
}

TEST(PowerCut, UnsyncedWritesMayBeLostButNeverTornOrOutOfOrder) {
  Totals t;
  RunCuts(/*sync=*/false, 50, 2, &t);
  Print("sync off", t);
  EXPECT_EQ(t.torn, 0u);
  EXPECT_EQ(t.beyond_prefix, 0u);
}

}  // namespace
}  // namespace hamdb
