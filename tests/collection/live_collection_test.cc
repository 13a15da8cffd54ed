#include "collection/live_collection.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "core/hamming.h"
#include "tests/collection/collection_test_util.h"
#include "tests/db/test_util.h"

namespace hamdb {
namespace {

using testing_util::Oracle;
using testing_util::RandomCode;
using testing_util::TempDir;

TEST(LiveCollection, IndexFollowsStoreAndRebuildsOnOpen) {
  TempDir tmp;
  const int bits = 64;
  auto store_or = CodeStore::Open(tmp.path());
  ASSERT_TRUE(store_or.ok());
  auto store = std::move(store_or).value();
  ASSERT_TRUE(store->CreateCollection({"live", bits, "MIH"}).ok());
  std::map<uint64_t, std::vector<uint8_t>> model;
  std::mt19937_64 rng(5);
  {
    auto live = LiveCollection::Open(store.get(), "live");
    ASSERT_TRUE(live.ok()) << live.status().ToString();
    for (int round = 0; round < 30; ++round) {
      std::vector<ItemInput> batch(50);
      for (auto& in : batch) {
        in.id = rng() % 800;
        in.code = RandomCode(rng, bits);
      }
      // A repeated id in one batch: the last code wins in store and index.
      batch[1].id = batch[0].id;
      ASSERT_TRUE((*live)->Put(batch).ok());
      for (auto& in : batch) model[*in.id] = in.code;
      std::vector<uint64_t> del = {rng() % 800, rng() % 800};
      ASSERT_TRUE((*live)->Delete(del).ok());
      for (uint64_t id : del) model.erase(id);
    }
    ASSERT_EQ((*live)->index_size(), model.size());
    for (int q = 0; q < 20; ++q) {
      auto query = RandomCode(rng, bits);
      auto r = (*live)->Search(query.data(), 10);
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(r->neighbors, Oracle(model, query, 10));
    }
  }
  // Reopen: the index is rebuilt from the store with progress.
  uint64_t last_done = 0, last_total = 0;
  LiveCollectionOptions opts;
  opts.scan_chunk = 100;
  opts.progress = [&](uint64_t d, uint64_t t) { last_done = d; last_total = t; };
  auto live = LiveCollection::Open(store.get(), "live", opts);
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(last_done, model.size());
  EXPECT_EQ(last_total, model.size());
  ASSERT_EQ((*live)->index_size(), model.size());
  for (int q = 0; q < 20; ++q) {
    auto query = RandomCode(rng, bits);
    auto r = (*live)->Search(query.data(), 25);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->neighbors, Oracle(model, query, 25));
  }
  // A rejected batch changes neither the store nor the index.
  std::vector<ItemInput> bad(2);
  bad[0].code = RandomCode(rng, bits);
  bad[1].code = {1, 2, 3};
  EXPECT_FALSE((*live)->Put(bad).ok());
  EXPECT_EQ((*live)->index_size(), model.size());
  EXPECT_EQ(*store->Count("live"), model.size());
}

TEST(LiveCollection, ErrorsForMissingCollectionAndBadSpec) {
  TempDir tmp;
  auto store = std::move(CodeStore::Open(tmp.path())).value();
  EXPECT_EQ(LiveCollection::Open(store.get(), "nope").status().code(), Status::Code::kNotFound);
  ASSERT_TRUE(store->CreateCollection({"c", 16}).ok());
  LiveCollectionOptions o;
  o.index_spec = "Bogus";
  EXPECT_EQ(LiveCollection::Open(store.get(), "c", o).status().code(),
            Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace hamdb
