// Index snapshots: a reopened collection loads its snapshot, replays the
// changes logged after it, and answers exactly what a rebuild would; a
// snapshot that is corrupt, truncated, of another spec or older than the
// change log reaches is refused with a logged reason and the index is
// rebuilt from the store.
#include <gtest/gtest.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "collection/live_collection.h"
#include "tests/collection/collection_test_util.h"
#include "tests/db/test_util.h"

namespace hamdb {
namespace {

using testing_util::Oracle;
using testing_util::RandomCode;
using testing_util::SettingsWithCodebook;
using testing_util::TempDir;

constexpr int kBits = 64;

LiveCollectionOptions WithSnapshots() {
  LiveCollectionOptions o;
  o.snapshots = true;
  o.snapshot_after_items = 1u << 30;  // only explicit snapshots, unless a test says otherwise
  return o;
}

struct Fixture {
  TempDir tmp;
  std::unique_ptr<CodeStore> store = std::move(CodeStore::Open(tmp.path())).value();
  std::mt19937_64 rng{5};
  std::map<uint64_t, std::vector<uint8_t>> model;
  std::vector<std::vector<uint8_t>> classes;

  void Create(const std::string& spec) {
    for (int c = 0; c < 8; ++c) classes.push_back(RandomCode(rng, kBits));
    CollectionSpec cs{"c", kBits, spec, SettingsWithCodebook(classes, kBits)};
    ASSERT_TRUE(store->CreateCollection(cs).ok());
  }
  // n items near the class codes (so buckets and IVF lists are meaningful).
  void Write(LiveCollection* live, size_t n, uint64_t id_range) {
    std::vector<ItemInput> batch(n);
    for (auto& in : batch) {
      in.id = rng() % id_range;
      in.code = classes[rng() % classes.size()];
      for (int f = 0; f < 6; ++f) {
        const int b = static_cast<int>(rng() % kBits);
        SetBit(in.code.data(), b, !GetBit(in.code.data(), b));
      }
    }
    ASSERT_TRUE(live->Put(batch).ok());
    for (auto& in : batch) model[*in.id] = in.code;
  }
  void Delete(LiveCollection* live, size_t n, uint64_t id_range) {
    std::vector<uint64_t> ids;
    for (size_t i = 0; i < n; ++i) ids.push_back(rng() % id_range);
    ASSERT_TRUE(live->Delete(ids).ok());
    for (uint64_t id : ids) model.erase(id);
  }
  std::string SnapshotPath() { return store->SnapshotPath(*store->GetCollection("c")); }
};

// For each exact spec: results after a snapshot restart equal the oracle.
// For IVF (approximate): results equal those before the restart.
class SnapshotSpecTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SnapshotSpecTest, ReopenLoadsTheSnapshotAndReplaysLaterChanges) {
  Fixture f;
  f.Create(GetParam());
  std::vector<std::vector<uint8_t>> queries;
  for (int q = 0; q < 20; ++q) queries.push_back(RandomCode(f.rng, kBits));
  std::vector<SearchResult> before;
  {
    auto live = std::move(LiveCollection::Open(f.store.get(), "c", WithSnapshots())).value();
    EXPECT_FALSE(live->open_info().from_snapshot);
    f.Write(live.get(), 3000, 5000);
    ASSERT_TRUE(live->SaveSnapshot().ok());
    EXPECT_TRUE(std::filesystem::exists(f.SnapshotPath()));
    // Changes after the snapshot: upserts, new items and deletes.
    f.Write(live.get(), 200, 6000);
    f.Delete(live.get(), 150, 6000);
    for (const auto& q : queries) before.push_back(*live->Search(q.data(), 10));
  }
  auto live = std::move(LiveCollection::Open(f.store.get(), "c", WithSnapshots())).value();
  ASSERT_TRUE(live->open_info().from_snapshot) << live->open_info().why_rebuilt;
  EXPECT_GT(live->open_info().replayed_ids, 0u);
  EXPECT_LE(live->open_info().replayed_ids, 350u);
  EXPECT_EQ(live->index_size(), f.model.size());
  for (size_t q = 0; q < queries.size(); ++q) {
    auto r = live->Search(queries[q].data(), 10);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->neighbors, before[q].neighbors) << "query " << q;
    if (r->exact) {
      EXPECT_EQ(r->neighbors, Oracle(f.model, queries[q], 10)) << "query " << q;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Specs, SnapshotSpecTest,
                         ::testing::Values("Flat", "MIH", "MIH4", "Bucket", "IVF8"),
                         [](const auto& info) { return info.param; });

// Scores survive a restart, through the snapshot and its replay and through
// a rebuild from the store alike: the score-ordered lists after each reopen
// equal those before it, and carry the stored scores' keys.
TEST_P(SnapshotSpecTest, ScoresSurviveSnapshotAndRebuild) {
  Fixture f;
  f.Create(GetParam());
  if (GetParam() == std::string("IVF8")) {
    // IVF keeps no scores: the score rule is refused, the id rule works.
    auto live = std::move(LiveCollection::Open(f.store.get(), "c", WithSnapshots())).value();
    SearchParams p;
    p.tie_break = TieBreak::kScore;
    EXPECT_EQ(live->Search(f.classes[0].data(), 5, p).status().code(), Status::Code::kInvalidArgument);
    EXPECT_TRUE(live->Search(f.classes[0].data(), 5).ok());
    return;
  }
  std::vector<std::vector<uint8_t>> queries;
  for (int q = 0; q < 20; ++q) queries.push_back(f.classes[q % f.classes.size()]);
  SearchParams by_score;
  by_score.tie_break = TieBreak::kScore;
  // Items with one of a few scores, or none, on heavily tied codes.
  auto write = [&](LiveCollection* live, size_t n, uint64_t id_range) {
    std::vector<ItemInput> batch(n);
    for (auto& in : batch) {
      in.id = f.rng() % id_range;
      in.code = f.classes[f.rng() % f.classes.size()];
      if (f.rng() % 2) SetBit(in.code.data(), static_cast<int>(f.rng() % kBits), true);
      const uint64_t v = f.rng() % 4;
      if (v < 3) in.score = 0.5f + 0.2f * static_cast<float>(v);
    }
    ASSERT_TRUE(live->Put(batch).ok());
  };
  std::vector<SearchResult> before;
  {
    auto live = std::move(LiveCollection::Open(f.store.get(), "c", WithSnapshots())).value();
    write(live.get(), 2000, 3000);
    const std::vector<uint64_t> ids = {100000, 100001};
    const std::vector<float> scores = {9.f, 8.f};
    ASSERT_TRUE(live->PutCodes(ids.data(), f.classes[0].data(), 1, {}, nullptr, nullptr,
                               scores.data()).ok());
    ASSERT_TRUE(live->SaveSnapshot().ok());
    write(live.get(), 300, 3500);  // after the snapshot: replayed
    ASSERT_TRUE(live->PutCodes(ids.data() + 1, f.classes[0].data(), 1, {}, nullptr, nullptr,
                               scores.data() + 1).ok());
    for (const auto& q : queries) before.push_back(*live->Search(q.data(), 10, by_score));
    // The best-scored exact matches of class 0 lead its list.
    EXPECT_EQ(before[0].neighbors[0].id, 100000u);
    EXPECT_EQ(before[0].neighbors[0].score, ScoreKey(9.f));
    EXPECT_EQ(before[0].neighbors[1].id, 100001u);
    size_t differ = 0;
    for (size_t q = 0; q < queries.size(); ++q) {
      differ += live->Search(queries[q].data(), 10)->neighbors != before[q].neighbors;
    }
    EXPECT_GT(differ, queries.size() / 2) << "the tie rule should matter on this data";
  }
  for (bool snapshots : {true, false}) {
    LiveCollectionOptions o = WithSnapshots();
    o.snapshots = snapshots;
    auto live = std::move(LiveCollection::Open(f.store.get(), "c", o)).value();
    EXPECT_EQ(live->open_info().from_snapshot, snapshots) << live->open_info().why_rebuilt;
    for (size_t q = 0; q < queries.size(); ++q) {
      auto r = live->Search(queries[q].data(), 10, by_score);
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(r->neighbors, before[q].neighbors)
          << (snapshots ? "snapshot" : "rebuild") << ", query " << q;
    }
  }
}

// The default tie rule: "score" for a collection with an encoder whose
// index keeps scores, "id" otherwise; the settings may name it; an index
// without scores refuses the score rule, at create and at search.
TEST(LiveCollectionScores, DefaultTieBreakAndIndexesWithoutScores) {
  Fixture f;
  f.Create("MIH");
  CollectionSettings plain;
  ASSERT_TRUE(LiveCollection::Create(f.store.get(), "plain", kBits, "Flat", plain).ok());
  CollectionSettings named;
  named.tie_break = TieBreak::kId;
  named.encoder_path = "/nowhere/model.hdbe";
  ASSERT_TRUE(LiveCollection::Create(f.store.get(), "named", kBits, "Flat", named).ok());
  CollectionSettings score_ivf;
  score_ivf.tie_break = TieBreak::kScore;
  Status s = LiveCollection::Create(f.store.get(), "bad", kBits, "IVF8", score_ivf);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();

  EXPECT_EQ(LiveCollection::Open(f.store.get(), "c").value()->default_tie_break(), TieBreak::kScore);
  EXPECT_EQ(LiveCollection::Open(f.store.get(), "plain").value()->default_tie_break(), TieBreak::kId);
  EXPECT_EQ(LiveCollection::Open(f.store.get(), "named").value()->default_tie_break(), TieBreak::kId);
  LiveCollectionOptions ivf;
  ivf.index_spec = "IVF8";
  auto live = std::move(LiveCollection::Open(f.store.get(), "c", ivf)).value();
  EXPECT_EQ(live->default_tie_break(), TieBreak::kId);
  SearchParams by_score;
  by_score.tie_break = TieBreak::kScore;
  EXPECT_EQ(live->Search(f.classes[0].data(), 5, by_score).status().code(),
            Status::Code::kInvalidArgument);
}

// Damaged or foreign snapshots are never used; the rebuilt index is exact.
TEST(LiveCollectionSnapshot, BadSnapshotsAreRefusedAndTheIndexRebuilt) {
  Fixture f;
  f.Create("MIH");
  std::string good;
  {
    auto live = std::move(LiveCollection::Open(f.store.get(), "c", WithSnapshots())).value();
    f.Write(live.get(), 2000, 4000);
    ASSERT_TRUE(live->SaveSnapshot().ok());
    std::ifstream in(f.SnapshotPath(), std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_GT(good.size(), 1000u);
  auto reopen_with = [&](const std::string& bytes, const std::string& index_spec = "") {
    std::ofstream(f.SnapshotPath(), std::ios::binary | std::ios::trunc) << bytes;
    LiveCollectionOptions o = WithSnapshots();
    o.index_spec = index_spec;
    auto live = std::move(LiveCollection::Open(f.store.get(), "c", o)).value();
    EXPECT_EQ(live->index_size(), f.model.size());
    const std::vector<uint8_t> q = RandomCode(f.rng, kBits);
    EXPECT_EQ(live->Search(q.data(), 10)->neighbors, Oracle(f.model, q, 10));
    return live->open_info();
  };
  EXPECT_TRUE(reopen_with(good).from_snapshot);
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x10;
  IndexOpenInfo info = reopen_with(flipped);
  EXPECT_FALSE(info.from_snapshot);
  EXPECT_NE(info.why_rebuilt.find("checksum"), std::string::npos) << info.why_rebuilt;
  info = reopen_with(good.substr(0, good.size() - 100));
  EXPECT_FALSE(info.from_snapshot);
  EXPECT_NE(info.why_rebuilt.find("Corruption"), std::string::npos) << info.why_rebuilt;
  info = reopen_with("");
  EXPECT_FALSE(info.from_snapshot);
  info = reopen_with(good, "Flat");  // a snapshot of another spec
  EXPECT_FALSE(info.from_snapshot);
  EXPECT_NE(info.why_rebuilt.find("not Flat"), std::string::npos) << info.why_rebuilt;
  std::filesystem::remove(f.SnapshotPath());
  LiveCollectionOptions o = WithSnapshots();
  auto live = std::move(LiveCollection::Open(f.store.get(), "c", o)).value();
  EXPECT_NE(live->open_info().why_rebuilt.find("NotFound"), std::string::npos)
      << live->open_info().why_rebuilt;
}

// A snapshot older than what the change log still holds is refused.
TEST(LiveCollectionSnapshot, ASnapshotOlderThanTheTrimmedLogIsRefused) {
  Fixture f;
  f.Create("Flat");
  std::string old_bytes;
  {
    auto live = std::move(LiveCollection::Open(f.store.get(), "c", WithSnapshots())).value();
    f.Write(live.get(), 500, 1000);
    ASSERT_TRUE(live->SaveSnapshot().ok());
    std::ifstream in(f.SnapshotPath(), std::ios::binary);
    old_bytes.assign(std::istreambuf_iterator<char>(in), {});
    f.Write(live.get(), 100, 1000);
    ASSERT_TRUE(live->SaveSnapshot().ok());  // trims the log past the old snapshot
  }
  std::ofstream(f.SnapshotPath(), std::ios::binary | std::ios::trunc) << old_bytes;
  auto live = std::move(LiveCollection::Open(f.store.get(), "c", WithSnapshots())).value();
  EXPECT_FALSE(live->open_info().from_snapshot);
  EXPECT_NE(live->open_info().why_rebuilt.find("trimmed"), std::string::npos)
      << live->open_info().why_rebuilt;
  EXPECT_EQ(live->index_size(), f.model.size());
}

// The background thread writes a snapshot once enough items changed, and a
// dropped collection's snapshot goes with it.
TEST(LiveCollectionSnapshot, WrittenInTheBackgroundAfterEnoughWritesAndDroppedWithTheCollection) {
  Fixture f;
  f.Create("MIH");
  LiveCollectionOptions o = WithSnapshots();
  o.snapshot_after_items = 500;
  auto live = std::move(LiveCollection::Open(f.store.get(), "c", o)).value();
  f.Write(live.get(), 300, 100000);
  EXPECT_FALSE(std::filesystem::exists(f.SnapshotPath()));
  f.Write(live.get(), 300, 100000);
  const std::string path = f.SnapshotPath();
  for (int i = 0; i < 5000 && !std::filesystem::exists(path); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_TRUE(std::filesystem::exists(path));
  live.reset();
  ASSERT_TRUE(f.store->DropCollection("c").ok());
  EXPECT_FALSE(std::filesystem::exists(path));
}

// After snapshot_interval a changed collection is snapshotted even below
// the item threshold; then, with nothing changed, the thread sleeps (it
// does not spin: the process uses little CPU while idle).
TEST(LiveCollectionSnapshot, WrittenAfterTheIntervalThenIdle) {
  Fixture f;
  f.Create("Flat");
  LiveCollectionOptions o = WithSnapshots();
  o.snapshot_interval = std::chrono::milliseconds(100);
  auto live = std::move(LiveCollection::Open(f.store.get(), "c", o)).value();
  f.Write(live.get(), 10, 1000);
  const std::string path = f.SnapshotPath();
  for (int i = 0; i < 2500 && !std::filesystem::exists(path); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_TRUE(std::filesystem::exists(path));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // past the next interval
  const std::clock_t cpu0 = std::clock();
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  const double cpu_ms = 1000.0 * static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC;
  EXPECT_LT(cpu_ms, 150.0) << "the snapshot thread spins while idle";
}

}  // namespace
}  // namespace hamdb
