#include "index/flat_index.h"

#include <gtest/gtest.h>

#include <random>

#include "index/binary_index.h"
#include "tests/index/index_test_util.h"
#include "index/index_factory.h"

namespace hamdb {
namespace {

using testing::DataKind;
using testing::Describe;
using testing::MakeCodes;
using testing::MakeIds;
using testing::NaiveModel;

std::unique_ptr<BinaryIndex> MakeFlat(int bits) {
  auto index = MakeIndex("Flat", bits);
  EXPECT_TRUE(index.ok()) << index.status().ToString();
  return std::move(index).value();
}

struct FlatCase {
  int bits;
  DataKind kind;
  size_t n;
};

class FlatVsNaiveTest : public ::testing::TestWithParam<FlatCase> {};

TEST_P(FlatVsNaiveTest, KnnAndRangeMatchSortEverything) {
  const FlatCase c = GetParam();
  const size_t cb = code_bytes(c.bits);
  std::vector<uint8_t> codes = MakeCodes(c.kind, c.n, c.bits, 11 + c.bits);
  std::vector<uint64_t> ids = MakeIds(c.n, 7 + c.bits);
  auto index = MakeFlat(c.bits);
  NaiveModel model(c.bits);
  ASSERT_TRUE(index->Add(ids.data(), codes.data(), c.n).ok());
  model.Add(ids.data(), codes.data(), c.n);
  ASSERT_EQ(index->size(), c.n);

  std::vector<uint8_t> queries = MakeCodes(c.kind, 6, c.bits, 99 + c.bits);
  // Also query with a stored code (distance 0 hits and ties).
  queries.insert(queries.end(), codes.begin(), codes.begin() + cb);
  const size_t nq = queries.size() / cb;
  for (size_t qi = 0; qi < nq; ++qi) {
    const uint8_t* q = &queries[qi * cb];
    const std::vector<Neighbor> all = model.All(q);  // the oracle, sorted once
    for (int threads : {1, 0, 3}) {
      SearchParams params;
      params.num_threads = threads;
      for (size_t k : {size_t{1}, size_t{5}, size_t{64}, size_t{1000}, c.n, c.n + 7}) {
        auto got = index->Search(q, k, params);
        ASSERT_TRUE(got.ok()) << got.status().ToString();
        std::vector<Neighbor> want(all.begin(), all.begin() + std::min(k, all.size()));
        ASSERT_EQ(got->neighbors, want) << "k=" << k << " threads=" << threads << " got "
                                        << Describe(got->neighbors) << " want " << Describe(want);
        EXPECT_TRUE(got->exact);
      }
      for (uint32_t r : {0u, 1u, static_cast<uint32_t>(c.bits / 3), static_cast<uint32_t>(c.bits),
                         static_cast<uint32_t>(c.bits + 5)}) {
        auto got = index->RangeSearch(q, r, params);
        ASSERT_TRUE(got.ok()) << got.status().ToString();
        std::vector<Neighbor> want;
        for (const Neighbor& nb : all) {
          if (nb.distance <= r) want.push_back(nb);
        }
        ASSERT_EQ(got->neighbors, want) << "r=" << r;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, FlatVsNaiveTest,
    ::testing::Values(FlatCase{8, DataKind::kUniform, 1500}, FlatCase{8, DataKind::kDuplicates, 900},
                      FlatCase{10, DataKind::kClustered, 1500},
                      FlatCase{32, DataKind::kUniform, 2000},
                      FlatCase{64, DataKind::kClustered, 2000},
                      FlatCase{64, DataKind::kDuplicates, 2000},
                      // Large enough to split one query across threads.
                      FlatCase{64, DataKind::kUniform, 70000},
                      FlatCase{100, DataKind::kUniform, 2000},
                      FlatCase{128, DataKind::kClustered, 2000},
                      FlatCase{256, DataKind::kUniform, 1500},
                      FlatCase{256, DataKind::kDuplicates, 1500},
                      FlatCase{1000, DataKind::kUniform, 300}),
    [](const ::testing::TestParamInfo<FlatCase>& info) {
      return std::to_string(info.param.bits) + "bits_" +
             testing::DataKindName(info.param.kind) + "_" + std::to_string(info.param.n);
    });

TEST(FlatIndexTest, AddRemoveUpsertFollowTheModel) {
  const int bits = 64;
  const size_t cb = code_bytes(bits);
  auto index = MakeFlat(bits);
  NaiveModel model(bits);
  std::mt19937_64 rng(5);
  std::vector<uint64_t> pool_ids = MakeIds(3000, 3);
  std::vector<uint8_t> query = MakeCodes(DataKind::kClustered, 1, bits, 8);
  for (int round = 0; round < 30; ++round) {
    // Add a batch: some new ids, some already present with a new code.
    const size_t n = 1 + rng() % 200;
    std::vector<uint64_t> ids(n);
    for (auto& id : ids) id = pool_ids[rng() % pool_ids.size()];
    std::vector<uint8_t> codes = MakeCodes(DataKind::kClustered, n, bits, 100 + round);
    ASSERT_TRUE(index->Add(ids.data(), codes.data(), n).ok());
    model.Add(ids.data(), codes.data(), n);
    // Remove a batch, including absent ids.
    const size_t nr = rng() % 120;
    std::vector<uint64_t> gone(nr);
    for (auto& id : gone) id = pool_ids[rng() % pool_ids.size()];
    size_t expected_removed = 0;
    {
      NaiveModel copy = model;
      for (uint64_t id : gone) {
        if (copy.items().count(id)) {
          ++expected_removed;
          copy.Remove(&id, 1);
        }
      }
    }
    size_t removed = 12345;
    ASSERT_TRUE(index->Remove(gone.data(), nr, &removed).ok());
    model.Remove(gone.data(), nr);
    EXPECT_EQ(removed, expected_removed);
    ASSERT_EQ(index->size(), model.size());
    for (size_t k : {size_t{1}, size_t{10}, size_t{5000}}) {
      auto got = index->Search(query.data(), k, SearchParams{});
      ASSERT_TRUE(got.ok());
      ASSERT_EQ(got->neighbors, model.Knn(query.data(), k)) << "round " << round;
    }
  }
  // Remove everything.
  std::vector<uint64_t> all;
  for (const auto& kv : model.items()) all.push_back(kv.first);
  size_t removed = 0;
  ASSERT_TRUE(index->Remove(all.data(), all.size(), &removed).ok());
  EXPECT_EQ(removed, all.size());
  EXPECT_EQ(index->size(), 0u);
  auto got = index->Search(query.data(), 5, SearchParams{});
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->neighbors.empty());
  (void)cb;
}

TEST(FlatIndexTest, DuplicateIdsInOneBatchKeepTheLastCode) {
  auto index = MakeFlat(16);
  const uint64_t ids[] = {7, 7, 9};
  const uint8_t codes[] = {0x00, 0x00, 0xff, 0xff, 0x0f, 0x00};
  ASSERT_TRUE(index->Add(ids, codes, 3).ok());
  EXPECT_EQ(index->size(), 2u);
  const uint8_t q[] = {0xff, 0xff};
  auto got = index->Search(q, 2, SearchParams{});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->neighbors, (std::vector<Neighbor>{{7, 0}, {9, 12}}));
}

TEST(FlatIndexTest, RejectsBadInput) {
  auto index = MakeFlat(10);  // 2 bytes, 6 padding bits
  const uint64_t ids[] = {1, 2};
  const uint8_t good[] = {0xff, 0x03, 0x00, 0x01};
  const uint8_t bad_padding[] = {0xff, 0x03, 0x00, 0x04};
  Status st = index->Add(ids, bad_padding, 2);
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument) << st.ToString();
  EXPECT_EQ(index->size(), 0u) << "nothing may be added when one code is bad";
  EXPECT_EQ(index->Add(nullptr, good, 2).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(index->Add(ids, nullptr, 2).code(), Status::Code::kInvalidArgument);
  ASSERT_TRUE(index->Add(ids, good, 2).ok());
  EXPECT_TRUE(index->Add(nullptr, nullptr, 0).ok());
  EXPECT_EQ(index->Remove(nullptr, 1, nullptr).code(), Status::Code::kInvalidArgument);

  const uint8_t q[] = {0x00, 0x00};
  const uint8_t q_bad[] = {0x00, 0x80};
  EXPECT_EQ(index->Search(q, 0, SearchParams{}).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(index->Search(q_bad, 1, SearchParams{}).status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(index->Search(nullptr, 1, SearchParams{}).status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(index->RangeSearch(q_bad, 3, SearchParams{}).status().code(),
            Status::Code::kInvalidArgument);
  std::vector<SearchResult> out;
  EXPECT_EQ(index->SearchBatch(q, 1, 0, SearchParams{}, &out).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(index->SearchBatch(q, 1, 1, SearchParams{}, nullptr).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(index->SearchBatch(q_bad, 1, 1, SearchParams{}, &out).code(),
            Status::Code::kInvalidArgument);
}

TEST(FlatIndexTest, SearchBatchEqualsSearch) {
  const int bits = 128;
  const size_t cb = code_bytes(bits);
  const size_t n = 5000;
  auto index = MakeFlat(bits);
  auto codes = MakeCodes(DataKind::kClustered, n, bits, 1);
  auto ids = MakeIds(n, 2);
  ASSERT_TRUE(index->Add(ids.data(), codes.data(), n).ok());
  auto queries = MakeCodes(DataKind::kClustered, 37, bits, 3);
  for (int threads : {0, 1, 4}) {
    SearchParams params;
    params.num_threads = threads;
    std::vector<SearchResult> out;
    ASSERT_TRUE(index->SearchBatch(queries.data(), 37, 15, params, &out).ok());
    ASSERT_EQ(out.size(), 37u);
    for (size_t i = 0; i < 37; ++i) {
      auto one = index->Search(&queries[i * cb], 15, params);
      ASSERT_TRUE(one.ok());
      EXPECT_EQ(out[i].neighbors, one->neighbors) << "query " << i;
    }
  }
  std::vector<SearchResult> out(3);
  ASSERT_TRUE(index->SearchBatch(nullptr, 0, 5, SearchParams{}, &out).ok());
  EXPECT_TRUE(out.empty());
}

// The query-blocked batch scan against the model: code lengths whose blocks
// hold from 128 to 2048 slots, heavy ties (duplicates, 8-bit codes), k from
// 1 to more than n, and batches smaller and larger than a query group. 64-
// and 256-bit codes take the AVX2 block scans where AVX2 is the best ISA.
TEST(FlatIndexTest, BlockedBatchScanEqualsTheModel) {
  for (int bits : {8, 64, 100, 256, 1024}) {
    for (DataKind kind : {DataKind::kUniform, DataKind::kDuplicates}) {
      const size_t cb = code_bytes(bits);
      const size_t n = 4099;  // not a multiple of any block
      auto index = MakeFlat(bits);
      NaiveModel model(bits);
      auto codes = MakeCodes(kind, n, bits, 5);
      auto ids = MakeIds(n, 6);
      ASSERT_TRUE(index->Add(ids.data(), codes.data(), n).ok());
      model.Add(ids.data(), codes.data(), n);
      auto queries = MakeCodes(kind, 41, bits, 7);
      for (size_t nq : {2, 17, 41}) {
        for (size_t k : {1, 10, 5000}) {
          SearchParams params;
          params.num_threads = 2;
          std::vector<SearchResult> out;
          ASSERT_TRUE(index->SearchBatch(queries.data(), nq, k, params, &out).ok());
          ASSERT_EQ(out.size(), nq);
          for (size_t i = 0; i < nq; ++i) {
            ASSERT_EQ(out[i].neighbors, model.Knn(&queries[i * cb], k))
                << bits << " bits, " << testing::DataKindName(kind) << ", nq " << nq << ", k " << k
                << ", query " << i;
          }
        }
      }
    }
  }
}

TEST(FlatIndexTest, MemoryGrowsWithItems) {
  auto index = MakeFlat(64);
  const size_t empty = index->memory_bytes();
  auto codes = MakeCodes(DataKind::kUniform, 10000, 64, 1);
  auto ids = MakeIds(10000, 1);
  ASSERT_TRUE(index->Add(ids.data(), codes.data(), 10000).ok());
  // Codes and ids alone are 16 bytes per item.
  EXPECT_GE(index->memory_bytes(), empty + 16 * 10000);
  EXPECT_LE(index->memory_bytes(), 64 * 10000u);
}

}  // namespace
}  // namespace hamdb
