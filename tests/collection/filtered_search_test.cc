// Filtered search through a collection: for every exact spec, both tie
// rules, random predicates (including ones that match nothing and ones that
// match everything), with declared indexed fields and without, on the
// selective path and on the index's own filtered search, the answer equals
// a brute-force scan over the matching items. Also after updates and
// deletes, and after a restart from a snapshot that carries the field index.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "collection/filter.h"
#include "collection/live_collection.h"
#include "collection/settings.h"
#include "core/binary_code.h"
#include "core/hamming.h"
#include "tests/collection/collection_test_util.h"
#include "tests/db/test_util.h"

namespace hamdb {
namespace {

using testing_util::TempDir;

constexpr int kBits = 32;
const char* kFolders[] = {"alpha", "alps", "beta", "gamma"};

// A random predicate over label, metadata.folder (indexed in some runs),
// metadata.n (never indexed) and ids.
std::string RandomFilter(std::mt19937_64& rng, int depth, const std::vector<uint64_t>& some_ids) {
  const int pick = static_cast<int>(rng() % (depth >= 2 ? 6 : 9));
  switch (pick) {
    case 0: return "{\"field\": \"label\", \"eq\": " + std::to_string(rng() % 12) + "}";
    case 1: return "{\"field\": \"label\", \"in\": [" + std::to_string(rng() % 12) + ", " +
                   std::to_string(rng() % 12) + "]}";
    case 2: return "{\"field\": \"label\", \"gte\": " + std::to_string(rng() % 12) + ", \"lt\": " +
                   std::to_string(rng() % 12 + 2) + "}";
    case 3: return std::string("{\"field\": \"metadata.folder\", \"eq\": \"") + kFolders[rng() % 4] + "\"}";
    case 4: return "{\"field\": \"metadata.folder\", \"prefix\": \"al\"}";
    case 5: {
      std::string s = "{\"ids\": [";
      for (int i = 0; i < 5; ++i) s += (i ? ", " : "") + std::to_string(some_ids[rng() % some_ids.size()]);
      return s + "]}";
    }
    case 6: return "{\"not\": " + RandomFilter(rng, depth + 1, some_ids) + "}";
    case 7:
    case 8: {
      std::string s = pick == 7 ? "{\"and\": [" : "{\"or\": [";
      const int n = static_cast<int>(rng() % 3) + 1;
      for (int i = 0; i < n; ++i) s += (i ? ", " : "") + RandomFilter(rng, depth + 1, some_ids);
      // Sometimes a condition on the unindexed field too.
      if (rng() % 3 == 0) s += ", {\"field\": \"metadata.n\", \"lt\": " + std::to_string(rng() % 7) + "}";
      return s + "]}";
    }
  }
  return "{\"and\": []}";
}

// Until the searcher threads have run a search (at most 10 s), so that the
// writes that follow really run beside searches on a loaded machine.
void WaitForFirstSearch(const std::atomic<int>& searches) {
  for (int i = 0; i < 10000 && searches.load() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

class FilteredSearch : public ::testing::TestWithParam<std::string> {
 protected:
  TempDir tmp;
  std::unique_ptr<CodeStore> store = std::move(CodeStore::Open(tmp.path())).value();
  std::map<uint64_t, Item> model;
  std::mt19937_64 rng{11};

  void Create(bool indexed) {
    CollectionSettings settings;
    if (GetParam() == "Bucket") {
      std::vector<std::vector<uint8_t>> classes;
      for (int c = 0; c < 8; ++c) classes.push_back(testing_util::CodeOfId(1000 + c, kBits));
      settings = std::move(ParseCollectionSettings(testing_util::SettingsWithCodebook(classes, kBits), kBits)).value();
      settings.encoder_path.clear();
    }
    if (indexed) settings.indexed_fields = {"label", "metadata.folder"};
    ASSERT_TRUE(LiveCollection::Create(store.get(), "c", kBits, GetParam(), settings).ok());
  }

  // Planning 0: the index filters; 1: the posting lists or id lookups
  // whenever the filter allows; 2: over-fetch first, then posting lists.
  std::unique_ptr<LiveCollection> Open(int planning, bool snapshots = false) {
    LiveCollectionOptions o;
    FilterPlanning& f = o.filter_planning;
    f.plan = planning != 0;
    f.posting_fraction = planning == 1 ? 1 : 0;
    f.overfetch = planning == 2 ? 2 : 0;
    f.max_overfetch = 64;
    f.lookup_fraction = planning == 1 ? 1 : 0;
    f.lookup_min_items = 0;
    o.snapshots = snapshots;
    // Posting lists of sealed blocks and a tail, on this small data.
    if (planning != 0) o.field_block_items = 5;
    return std::move(LiveCollection::Open(store.get(), "c", o)).value();
  }

  // Items near a few centres, so that distances tie; some unlabelled,
  // some without metadata, some with scores.
  void Write(LiveCollection* live, int n, uint64_t first_id) {
    std::vector<ItemInput> items;
    for (int i = 0; i < n; ++i) {
      ItemInput in;
      in.id = first_id + static_cast<uint64_t>(i) * 7919;
      const uint64_t centre = rng() % 8;
      in.code = testing_util::CodeOfId(centre + 1000, kBits);
      for (int b = 0; b < 3; ++b) {
        const int bit = static_cast<int>(rng() % kBits);
        SetBit(in.code.data(), bit, !GetBit(in.code.data(), bit));
      }
      // Labels mostly follow the centre (tight posting lists, which the
      // posting scan's bounds prune), some at random.
      if (rng() % 6 != 0) in.label = static_cast<int64_t>(rng() % 3 ? centre : rng() % 12);
      if (rng() % 5 != 0) {
        in.metadata_json = std::string("{\"folder\": \"") + kFolders[rng() % 4] + "\", \"n\": " +
                           std::to_string(rng() % 7) + "}";
      }
      if (rng() % 3 != 0) in.score = static_cast<float>(rng() % 5) / 4.0f;
      items.push_back(in);
    }
    std::vector<uint64_t> ids;
    ASSERT_TRUE(live->Put(items, {}, &ids).ok());
    for (size_t i = 0; i < items.size(); ++i) {
      Item it;
      it.id = ids[i];
      it.code = items[i].code;
      it.score = items[i].score;
      it.label = items[i].label;
      it.metadata_json = items[i].metadata_json;
      model[ids[i]] = it;
    }
  }

  std::vector<Neighbor> Oracle(const ItemFilter& f, const std::vector<uint8_t>& q, TieBreak tie,
                               size_t k, std::optional<uint32_t> radius) const {
    std::vector<Neighbor> all;
    for (const auto& [id, item] : model) {
      if (!f.Matches(id, &item)) continue;
      const uint32_t d = HammingDistance(q.data(), item.code.data(), item.code.size());
      if (radius && d > *radius) continue;
      all.push_back({id, d, item.score ? ScoreKey(*item.score) : kNoScore});
    }
    std::sort(all.begin(), all.end(), NeighborOrder{tie});
    if (!radius && all.size() > k) all.resize(k);
    return all;
  }

  std::vector<uint64_t> SomeIds() const {
    std::vector<uint64_t> ids;
    for (const auto& [id, item] : model) ids.push_back(id);
    ids.push_back(424242);  // not stored
    return ids;
  }

  void ExpectExact(const LiveCollection& live, int filters) {
    const std::vector<uint64_t> some = SomeIds();
    std::vector<std::string> texts = {R"({"or": []})", R"({"and": []})", R"({"field": "label", "eq": 99})",
                                      R"({"not": {"and": []}})", R"({"field": "metadata.folder", "eq": "alpha"})"};
    for (int i = 0; i < filters; ++i) texts.push_back(RandomFilter(rng, 0, some));
    for (const std::string& text : texts) {
      StatusOr<ItemFilter> f = ItemFilter::Parse(text);
      ASSERT_TRUE(f.ok()) << text << ": " << f.status().ToString();
      StoreFilter sf(&live, &*f);
      // The batched check agrees with the single one, on stored and absent ids.
      std::vector<uint64_t> ids = {987654321};
      for (const auto& [id, item] : model) ids.push_back(id);
      std::vector<uint8_t> allowed(ids.size(), 2);
      sf.AllowsMany(ids.data(), ids.size(), allowed.data());
      for (size_t i = 0; i < ids.size(); ++i) {
        ASSERT_EQ(allowed[i] != 0, sf.Allows(ids[i])) << text << " id " << ids[i];
      }
      for (TieBreak tie : {TieBreak::kId, TieBreak::kScore}) {
        SearchParams p;
        p.tie_break = tie;
        p.filter = &sf;
        p.nprobe = GetParam() == "Bucket" ? -1 : 0;
        const std::vector<uint8_t> q = testing_util::CodeOfId(rng() % 8 + 1000, kBits);
        const size_t k = 1 + rng() % 25;
        StatusOr<SearchResult> r = live.Search(q.data(), k, p);
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        EXPECT_TRUE(r->exact);
        EXPECT_EQ(r->neighbors, Oracle(*f, q, tie, k, std::nullopt)) << text << " k " << k;
        const uint32_t radius = static_cast<uint32_t>(rng() % 8);
        StatusOr<SearchResult> rr = live.RangeSearch(q.data(), radius, p);
        ASSERT_TRUE(rr.ok()) << rr.status().ToString();
        EXPECT_EQ(rr->neighbors, Oracle(*f, q, tie, 0, radius)) << text << " radius " << radius;
        std::vector<SearchResult> batch;
        std::vector<uint8_t> two = q;
        two.insert(two.end(), q.begin(), q.end());
        ASSERT_TRUE(live.SearchBatch(two.data(), 2, k, p, &batch).ok());
        ASSERT_EQ(batch.size(), 2u);
        EXPECT_EQ(batch[1].neighbors, Oracle(*f, q, tie, k, std::nullopt)) << text << " batch";
      }
    }
  }
};

TEST_P(FilteredSearch, EqualsAScanOfTheMatchingItems) {
  for (bool indexed : {true, false}) {
    SCOPED_TRACE(indexed ? "indexed fields" : "no indexed fields");
    (void)store->DropCollection("c");
    model.clear();
    Create(indexed);
    {
      std::unique_ptr<LiveCollection> live = Open(0);
      EXPECT_EQ(live->field_index() != nullptr, indexed);
      Write(live.get(), 600, 1);
      // Updates move items between values; deletes and bare codes remove them.
      Write(live.get(), 150, 1);
      std::vector<uint64_t> gone;
      for (const auto& [id, item] : model) {
        if (rng() % 10 == 0) gone.push_back(id);
      }
      ASSERT_TRUE(live->Delete(gone).ok());
      for (uint64_t id : gone) model.erase(id);
      const uint64_t bare = model.begin()->first;
      const std::vector<uint8_t> code = testing_util::CodeOfId(1003, kBits);
      ASSERT_TRUE(live->PutCodes(&bare, code.data(), 1).ok());
      model[bare] = Item{bare, code, std::nullopt, std::nullopt, std::nullopt, ""};
      if (indexed) {
        EXPECT_LT(live->field_index()->size(), model.size());
      }
    }
    for (int planning : {0, 1, 2}) {
      SCOPED_TRACE(planning == 0 ? "index filters" : planning == 1 ? "selective path" : "over-fetch");
      std::unique_ptr<LiveCollection> live = Open(planning);
      ExpectExact(*live, 30);
    }
  }
}

TEST_P(FilteredSearch, TheFieldIndexTravelsWithTheSnapshot) {
  Create(/*indexed=*/true);
  {
    std::unique_ptr<LiveCollection> live = Open(1, /*snapshots=*/true);
    Write(live.get(), 400, 1);
    ASSERT_TRUE(live->SaveSnapshot().ok());
    // Changes after the snapshot are replayed into both indexes.
    Write(live.get(), 100, 5);
    std::vector<uint64_t> gone = {model.begin()->first};
    ASSERT_TRUE(live->Delete(gone).ok());
    model.erase(gone[0]);
  }
  std::unique_ptr<LiveCollection> live = Open(1, /*snapshots=*/true);
  EXPECT_TRUE(live->open_info().from_snapshot) << live->open_info().why_rebuilt;
  EXPECT_GT(live->open_info().replayed_ids, 0u);
  ASSERT_NE(live->field_index(), nullptr);
  ExpectExact(*live, 20);
}

// Filtered searches (each holding the field index's read lock while it
// runs) beside a writer that upserts and deletes: nobody waits forever, and
// every answer holds only matching items, in order.
TEST_P(FilteredSearch, SearchesBesideWrites) {
  Create(/*indexed=*/true);
  std::unique_ptr<LiveCollection> live = Open(1);
  Write(live.get(), 300, 1);
  std::atomic<bool> stop{false};
  std::atomic<int> searches{0};
  auto searcher = [&](uint64_t seed) {
    std::mt19937_64 r(seed);
    StatusOr<ItemFilter> f = ItemFilter::Parse(R"({"field": "label", "in": [1, 2, 3]})");
    while (!stop) {
      StoreFilter sf(live.get(), &*f);
      SearchParams p;
      p.filter = &sf;
      p.nprobe = GetParam() == "Bucket" ? -1 : 0;
      const std::vector<uint8_t> q = testing_util::CodeOfId(r() % 8 + 1000, kBits);
      StatusOr<SearchResult> res = live->Search(q.data(), 10, p);
      ASSERT_TRUE(res.ok()) << res.status().ToString();
      // Items change under it, so only the shape is checked here.
      EXPECT_LE(res->neighbors.size(), 10u);
      for (size_t i = 1; i < res->neighbors.size(); ++i) {
        EXPECT_FALSE(NeighborOrder{}(res->neighbors[i], res->neighbors[i - 1]));
      }
      ++searches;
    }
  };
  std::thread a(searcher, 1), b(searcher, 2);
  WaitForFirstSearch(searches);
  for (int round = 0; round < 20; ++round) {
    Write(live.get(), 50, 1 + static_cast<uint64_t>(round % 3) * 100003);
    std::vector<uint64_t> gone = {model.begin()->first};
    ASSERT_TRUE(live->Delete(gone).ok());
    model.erase(gone[0]);
  }
  stop = true;
  a.join();
  b.join();
  EXPECT_GT(searches.load(), 0);
  // Quiet again: exact.
  ExpectExact(*live, 10);
}

// An upsert changes an item's label and code together; a filtered search
// sees both changes or neither: every item it returns for "label eq L" has
// label L's code, whichever path the search takes.
TEST_P(FilteredSearch, UpsertsAreSeenWhole) {
  Create(/*indexed=*/true);
  for (int planning : {0, 1}) {
    std::unique_ptr<LiveCollection> live = Open(planning);
    auto item = [](uint64_t id, int label) {
      ItemInput in;
      in.id = id;
      in.label = label;
      in.code = testing_util::CodeOfId(1000 + static_cast<uint64_t>(label), kBits);
      return in;
    };
    std::vector<ItemInput> first;
    for (uint64_t id = 1; id <= 40; ++id) first.push_back(item(id, static_cast<int>(id % 4)));
    ASSERT_TRUE(live->Put(first, {}, nullptr).ok());
    std::atomic<bool> stop{false};
    std::atomic<int> searches{0}, torn{0};
    auto searcher = [&](uint64_t seed) {
      std::mt19937_64 r(seed);
      while (!stop) {
        const int label = static_cast<int>(r() % 4);
        StatusOr<ItemFilter> f = ItemFilter::Parse("{\"field\": \"label\", \"eq\": " + std::to_string(label) + "}");
        StoreFilter sf(live.get(), &*f);
        SearchParams p;
        p.filter = &sf;
        p.nprobe = GetParam() == "Bucket" ? -1 : 0;
        const std::vector<uint8_t> q = testing_util::CodeOfId(1000 + static_cast<uint64_t>(label), kBits);
        StatusOr<SearchResult> res = live->Search(q.data(), 40, p);
        ASSERT_TRUE(res.ok()) << res.status().ToString();
        for (const Neighbor& n : res->neighbors) {
          if (n.distance != 0) ++torn;
        }
        ++searches;
      }
    };
    std::thread a(searcher, 1), b(searcher, 2);
    WaitForFirstSearch(searches);
    std::mt19937_64 r(5);
    for (int round = 0; round < 300; ++round) {
      std::vector<ItemInput> batch;
      for (int i = 0; i < 8; ++i) batch.push_back(item(1 + r() % 40, static_cast<int>(r() % 4)));
      ASSERT_TRUE(live->Put(batch, {}, nullptr).ok());
    }
    stop = true;
    a.join();
    b.join();
    EXPECT_GT(searches.load(), 0);
    EXPECT_EQ(torn.load(), 0) << "planning " << planning;
  }
}

INSTANTIATE_TEST_SUITE_P(Specs, FilteredSearch, ::testing::Values("Flat", "MIH", "Bucket"));

TEST(FilteredSearchSettings, IndexedFieldsAreChecked) {
  CollectionSettings s;
  s.indexed_fields = {"label", "metadata.folder"};
  auto back = ParseCollectionSettings(CollectionSettingsJson(s), 16);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->indexed_fields, s.indexed_fields);
  EXPECT_FALSE(ParseCollectionSettings(R"({"indexed_fields": ["score"]})", 16).ok());
  EXPECT_FALSE(ParseCollectionSettings(R"({"indexed_fields": ["label", "label"]})", 16).ok());
  EXPECT_FALSE(ParseCollectionSettings(R"({"indexed_fields": "label"})", 16).ok());
  EXPECT_FALSE(ParseCollectionSettings(R"({"indexed_fields": [1]})", 16).ok());
  TempDir tmp;
  std::unique_ptr<CodeStore> store = std::move(CodeStore::Open(tmp.path())).value();
  s.indexed_fields = {"metadata."};
  const Status st = LiveCollection::Create(store.get(), "c", 16, "Flat", s);
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(st.message().find("metadata."), std::string::npos) << st.ToString();
  EXPECT_FALSE(store->GetCollection("c").ok());  // nothing written
}

}  // namespace
}  // namespace hamdb
