// ClassBucketIndex against the sort-everything model: exactness at full
// probe and in "until exact" mode, the exactness claim, recall on clustered
// data, online writes, and the codebook contract.
#include "index/bucket_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include "index/binary_index.h"
#include "index/synthetic.h"
#include "tests/index/index_test_util.h"
#include "index/index_factory.h"

namespace hamdb {
namespace {

using testing::Describe;
using testing::MakeIds;
using testing::MakeQueries;
using testing::NaiveDistance;
using testing::NaiveModel;

// LLC-like data: `classes` class codes, items = a class code with each bit
// flipped with probability flip. Returns codes; *codebook gets the classes.
std::vector<uint8_t> LlcCodes(size_t n, int bits, size_t classes, double flip, uint64_t seed,
                              std::vector<uint8_t>* codebook) {
  SyntheticSpec spec;
  spec.kind = "clustered";
  spec.num_centres = classes;
  spec.flip_prob = flip;
  spec.seed = seed;
  auto gen = GenerateCodes(spec, n, bits);
  EXPECT_TRUE(gen.ok()) << gen.status().ToString();
  *codebook = gen->centre_codes;
  return gen->codes;
}

std::unique_ptr<ClassBucketIndex> MakeBuckets(int bits, const std::vector<uint8_t>& codebook,
                                              int nprobe = 1) {
  auto index = ClassBucketIndex::Create(bits, codebook, nprobe);
  EXPECT_TRUE(index.ok()) << index.status().ToString();
  return std::move(index).value();
}

// The naive decode: argmin distance, ties to the lower class.
uint32_t NaiveDecode(const uint8_t* code, const std::vector<uint8_t>& codebook, int bits) {
  const size_t cb = code_bytes(bits);
  uint32_t best = 0, best_d = UINT32_MAX;
  for (size_t c = 0; c < codebook.size() / cb; ++c) {
    const uint32_t d = NaiveDistance(code, &codebook[c * cb], bits);
    if (d < best_d) best_d = d, best = static_cast<uint32_t>(c);
  }
  return best;
}

TEST(ClassBucketIndexTest, CodebookContract) {
  EXPECT_EQ(ClassBucketIndex::Create(64, {}).status().code(), Status::Code::kFailedPrecondition);
  auto no_codebook = MakeIndex("Bucket", 64);
  ASSERT_FALSE(no_codebook.ok());
  EXPECT_EQ(no_codebook.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(no_codebook.status().message().find("codebook"), std::string::npos);
  EXPECT_EQ(ClassBucketIndex::Create(64, std::vector<uint8_t>(12)).status().code(),
            Status::Code::kInvalidArgument);  // not a multiple of 8 bytes
  std::vector<uint8_t> padded(2, 0);
  padded[1] = 0x80;  // bit 15 set in a 12-bit code
  EXPECT_EQ(ClassBucketIndex::Create(12, padded).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(ClassBucketIndex::Create(64, std::vector<uint8_t>(8), 0).status().code(),
            Status::Code::kInvalidArgument);

  IndexOptions options;
  options.codebook.assign(3 * 8, 0);
  for (const char* spec : {"Bucket", "Bucket4"}) {
    auto index = MakeIndex(spec, 64, options);
    ASSERT_TRUE(index.ok()) << index.status().ToString();
    EXPECT_EQ((*index)->spec(), spec);
  }
  EXPECT_EQ(dynamic_cast<ClassBucketIndex&>(**MakeIndex("Bucket4", 64, options)).default_nprobe(),
            4);
  for (const char* spec : {"Bucket0", "Bucket04", "Bucketx", "Bucket-1"}) {
    EXPECT_EQ(MakeIndex(spec, 64, options).status().code(), Status::Code::kInvalidArgument) << spec;
  }
}

TEST(ClassBucketIndexTest, DecodeIsNearestClassTiesToLowerIndex) {
  const int bits = 16;
  // Classes 0 and 2 are identical; class 1 differs everywhere.
  std::vector<uint8_t> codebook = {0x0F, 0x00, 0xFF, 0xFF, 0x0F, 0x00};
  auto index = MakeBuckets(bits, codebook);
  const uint8_t same[2] = {0x0F, 0x00};
  EXPECT_EQ(index->Decode(same), 0u);
  const uint8_t near1[2] = {0xFF, 0x7F};
  EXPECT_EQ(index->Decode(near1), 1u);
  // Equidistant from class 0 and class 1 (d = 6 each): the lower wins.
  const uint8_t mid[2] = {0xFF, 0x03};
  EXPECT_EQ(NaiveDistance(mid, &codebook[0], bits), NaiveDistance(mid, &codebook[2], bits));
  EXPECT_EQ(index->Decode(mid), 0u);

  std::mt19937_64 rng(5);
  std::vector<uint8_t> big_book = testing::MakeCodes(testing::DataKind::kUniform, 1500, 40, 3);
  auto big = MakeBuckets(40, big_book);  // more classes than one decode block
  for (int i = 0; i < 200; ++i) {
    std::vector<uint8_t> code = testing::RandomCode(40, rng);
    EXPECT_EQ(big->Decode(code.data()), NaiveDecode(code.data(), big_book, 40));
  }
}

struct BucketCase {
  int bits;
  size_t classes;
  double flip;
};

class BucketVsNaiveTest : public ::testing::TestWithParam<BucketCase> {};

TEST_P(BucketVsNaiveTest, FullProbeAndUntilExactEqualFlat) {
  const BucketCase c = GetParam();
  const size_t cb = code_bytes(c.bits);
  const size_t n = 3000;
  std::vector<uint8_t> codebook;
  std::vector<uint8_t> codes = LlcCodes(n, c.bits, c.classes, c.flip, 17 + c.bits, &codebook);
  std::vector<uint64_t> ids = MakeIds(n, 23 + c.bits);
  auto index = MakeBuckets(c.bits, codebook);
  NaiveModel model(c.bits);
  ASSERT_TRUE(index->Add(ids.data(), codes.data(), n).ok());
  model.Add(ids.data(), codes.data(), n);
  ASSERT_EQ(index->size(), n);

  std::vector<uint8_t> queries = MakeQueries(codes, c.bits, 16, 31 + c.bits);
  size_t exact_claims = 0;
  for (size_t qi = 0; qi < 16; ++qi) {
    const uint8_t* q = &queries[qi * cb];
    const std::vector<Neighbor> all = model.All(q);
    for (size_t k : {size_t{1}, size_t{10}, size_t{100}, n + 3}) {
      const std::vector<Neighbor> want(all.begin(), all.begin() + std::min(k, all.size()));
      SearchParams full;
      full.nprobe = static_cast<int>(c.classes);
      auto got = index->Search(q, k, full);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_EQ(got->neighbors, want) << "full probe k=" << k << " got " << Describe(got->neighbors)
                                      << " want " << Describe(want);
      EXPECT_TRUE(got->exact);
      EXPECT_EQ(got->visited_buckets.size(), c.classes);

      SearchParams until_exact;
      until_exact.nprobe = -1;
      got = index->Search(q, k, until_exact);
      ASSERT_TRUE(got.ok());
      EXPECT_EQ(got->neighbors, want) << "until exact k=" << k << " got "
                                      << Describe(got->neighbors) << " want " << Describe(want);
      EXPECT_TRUE(got->exact);

      // Whenever a partial probe claims exactness, it must be right.
      for (int nprobe : {1, 2, 4}) {
        SearchParams p;
        p.nprobe = nprobe;
        got = index->Search(q, k, p);
        ASSERT_TRUE(got.ok());
        ASSERT_EQ(got->neighbors.size(), want.size());  // widening fills k
        EXPECT_TRUE(std::is_sorted(got->neighbors.begin(), got->neighbors.end(), NeighborLess));
        for (const Neighbor& nb : got->neighbors) {
          EXPECT_EQ(nb.distance, NaiveDistance(q, model.items().at(nb.id).data(), c.bits));
        }
        ASSERT_FALSE(got->visited_buckets.empty());
        EXPECT_EQ(static_cast<uint32_t>(got->visited_buckets[0]), index->Decode(q));
        EXPECT_GE(got->visited_buckets.size(), static_cast<size_t>(nprobe));
        if (got->exact) {
          ++exact_claims;
          EXPECT_EQ(got->neighbors, want) << "claimed exact, nprobe=" << nprobe << " k=" << k;
        }
      }
    }
    for (uint32_t r : {0u, 2u, 5u, static_cast<uint32_t>(c.bits / 4)}) {
      auto got = index->RangeSearch(q, r, {});
      ASSERT_TRUE(got.ok());
      EXPECT_EQ(got->neighbors, model.Range(q, r)) << "r=" << r;
      EXPECT_TRUE(got->exact);
    }
  }
  // The bound is useful on tight clusters, not only vacuous.
  if (c.flip <= 0.02) {
    EXPECT_GT(exact_claims, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Codes, BucketVsNaiveTest,
                         ::testing::Values(BucketCase{64, 32, 0.02}, BucketCase{64, 32, 0.05},
                                           BucketCase{100, 20, 0.03}, BucketCase{256, 40, 0.05},
                                           BucketCase{12, 8, 0.1}),
                         [](const ::testing::TestParamInfo<BucketCase>& info) {
                           return "bits" + std::to_string(info.param.bits) + "_classes" +
                                  std::to_string(info.param.classes) + "_flip" +
                                  std::to_string(static_cast<int>(info.param.flip * 100));
                         });

// Tie-aware recall of `got` against the exact `want` (same k).
double Recall(const std::vector<Neighbor>& got, const std::vector<Neighbor>& want) {
  if (want.empty()) return 1;
  const uint32_t dk = want.back().distance;
  size_t below = 0, at = 0, want_at = 0;
  for (const Neighbor& nb : got) below += nb.distance < dk, at += nb.distance == dk;
  for (const Neighbor& nb : want) want_at += nb.distance == dk;
  return static_cast<double>(below + std::min(at, want_at)) / want.size();
}

TEST(ClassBucketIndexTest, RecallOnLlcLikeData) {
  // The bench shape, scaled down: 64-bit codes, 100 classes, 5% bit noise;
  // queries are fresh items of the same distribution.
  const int bits = 64;
  const size_t n = 20000, nq = 200, k = 10;
  std::vector<uint8_t> codebook;
  std::vector<uint8_t> all = LlcCodes(n + nq, bits, 100, 0.05, 77, &codebook);
  std::vector<uint64_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = i;
  auto index = MakeBuckets(bits, codebook);
  ASSERT_TRUE(index->Add(ids.data(), all.data(), n).ok());
  NaiveModel model(bits);
  model.Add(ids.data(), all.data(), n);
  double recall[3] = {0, 0, 0};
  const int probes[3] = {1, 2, 8};
  for (size_t qi = 0; qi < nq; ++qi) {
    const uint8_t* q = &all[(n + qi) * 8];
    const std::vector<Neighbor> want = model.Knn(q, k);
    for (int j = 0; j < 3; ++j) {
      SearchParams p;
      p.nprobe = probes[j];
      auto got = index->Search(q, k, p);
      ASSERT_TRUE(got.ok());
      recall[j] += Recall(got->neighbors, want) / nq;
    }
  }
  // With 5% noise on 64 bits an item is ~3.2 bits from its class and
  // classes are ~32 bits apart, so the predicted bucket holds nearly all
  // true neighbours.
  EXPECT_GT(recall[0], 0.95) << recall[0];
  EXPECT_GE(recall[1] + 1e-9, recall[0]);
  EXPECT_GE(recall[2] + 1e-9, recall[1]);
  std::printf("recall@10 nprobe 1/2/8: %.4f %.4f %.4f\n", recall[0], recall[1], recall[2]);
}

TEST(ClassBucketIndexTest, WidensWhenTheBucketIsShort) {
  const int bits = 32;
  std::vector<uint8_t> codebook;
  std::vector<uint8_t> codes = LlcCodes(200, bits, 50, 0.03, 5, &codebook);
  std::vector<uint64_t> ids = MakeIds(200, 6);
  auto index = MakeBuckets(bits, codebook);
  ASSERT_TRUE(index->Add(ids.data(), codes.data(), 200).ok());
  SearchParams p;
  p.nprobe = 1;
  auto got = index->Search(codes.data(), 60, p);  // ~4 items per bucket
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->neighbors.size(), 60u);
  EXPECT_GT(got->visited_buckets.size(), 1u);
  std::set<int> distinct(got->visited_buckets.begin(), got->visited_buckets.end());
  EXPECT_EQ(distinct.size(), got->visited_buckets.size());
}

TEST(ClassBucketIndexTest, GivenClassesAndOnlineWritesMatchModel) {
  const int bits = 64;
  const size_t cb = 8;
  std::vector<uint8_t> codebook;
  std::vector<uint8_t> codes = LlcCodes(4000, bits, 16, 0.08, 9, &codebook);
  auto index = MakeBuckets(bits, codebook);
  NaiveModel model(bits);
  std::mt19937_64 rng(12);
  std::vector<uint32_t> bad_class = {16};
  uint64_t one_id = 1;
  EXPECT_EQ(index->AddWithClasses(&one_id, codes.data(), bad_class.data(), 1).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(index->size(), 0u);

  // Given classes put items in the named bucket even when it is not the
  // nearest one.
  std::vector<uint32_t> given(10, 3);
  given[9] = ClassBucketIndex::kDecodeClass;
  std::vector<uint64_t> first_ids(10);
  for (size_t i = 0; i < 10; ++i) first_ids[i] = 1000000 + i;
  ASSERT_TRUE(index->AddWithClasses(first_ids.data(), codes.data(), given.data(), 10).ok());
  model.Add(first_ids.data(), codes.data(), 10);
  EXPECT_GE(index->bucket_size(3), 9u);

  size_t next = 10;
  for (int round = 0; round < 60; ++round) {
    const int op = static_cast<int>(rng() % 3);
    if (op == 0 && next + 50 <= 4000) {  // insert a batch, some ids repeated (upsert)
      std::vector<uint64_t> ids(50);
      for (auto& id : ids) id = rng() % 3000;
      ASSERT_TRUE(index->Add(ids.data(), &codes[next * cb], 50).ok());
      model.Add(ids.data(), &codes[next * cb], 50);
      next += 50;
    } else if (op == 1) {  // delete some present and absent ids
      std::vector<uint64_t> ids(20);
      for (auto& id : ids) id = rng() % 3000;
      size_t removed = 0;
      const size_t before = model.size();
      ASSERT_TRUE(index->Remove(ids.data(), ids.size(), &removed).ok());
      model.Remove(ids.data(), ids.size());
      EXPECT_EQ(removed, before - model.size());
    } else {
      ASSERT_EQ(index->size(), model.size());
      const std::vector<uint8_t> q = testing::RandomCode(bits, rng);
      const uint8_t* query = (rng() % 2) ? q.data() : &codes[(rng() % next) * cb];
      SearchParams p;
      p.nprobe = -1;
      auto got = index->Search(query, 15, p);
      ASSERT_TRUE(got.ok());
      EXPECT_EQ(got->neighbors, model.Knn(query, 15)) << "round " << round;
    }
  }
  // Sizes and radii agree with a recount from the model.
  std::vector<size_t> members(16, 0);
  std::vector<uint32_t> radius(16, 0);
  size_t total = 0;
  for (uint32_t c = 0; c < 16; ++c) total += index->bucket_size(c);
  EXPECT_EQ(total, model.size());
  for (const auto& [id, code] : model.items()) {
    if (id >= 1000000 && id < 1000009) continue;  // given class 3
    const uint32_t c = NaiveDecode(code.data(), codebook, bits);
    radius[c] = std::max(radius[c], NaiveDistance(code.data(), &codebook[c * cb], bits));
  }
  for (uint32_t c = 0; c < 16; ++c) {
    if (c == 3) {
      EXPECT_GE(index->bucket_radius(c), radius[c]);
    } else {
      EXPECT_EQ(index->bucket_radius(c), radius[c]) << "class " << c;
    }
  }
  // Removing everything leaves empty buckets with radius 0.
  std::vector<uint64_t> everyone;
  for (const auto& kv : model.items()) everyone.push_back(kv.first);
  ASSERT_TRUE(index->Remove(everyone.data(), everyone.size(), nullptr).ok());
  EXPECT_EQ(index->size(), 0u);
  for (uint32_t c = 0; c < 16; ++c) {
    EXPECT_EQ(index->bucket_size(c), 0u);
    EXPECT_EQ(index->bucket_radius(c), 0u);
  }
  auto empty = index->Search(codes.data(), 5, {});
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->neighbors.empty());
  EXPECT_TRUE(empty->exact);
}

// Readers search (until exact, and nprobe 1) while one writer inserts and
// removes: every answer is consistent (true distances, sorted, no repeats)
// and, until exact, misses no base item (present throughout) below its last
// result. At the end the index equals the model.
TEST(ClassBucketIndexTest, ConcurrentSearchesDuringWrites) {
  const int bits = 64;
  const size_t cb = 8, nbase = 3000, nextra = 5000;
  std::vector<uint8_t> codebook;
  std::vector<uint8_t> codes = LlcCodes(nbase + nextra + 16, bits, 40, 0.06, 3, &codebook);
  std::vector<uint64_t> ids = MakeIds(nbase + nextra, 4);
  std::unordered_map<uint64_t, const uint8_t*> code_of;
  for (size_t i = 0; i < ids.size(); ++i) code_of[ids[i]] = &codes[i * cb];
  auto index = MakeBuckets(bits, codebook);
  ASSERT_TRUE(index->Add(ids.data(), codes.data(), nbase).ok());
  NaiveModel base(bits);
  base.Add(ids.data(), codes.data(), nbase);
  const uint8_t* queries = &codes[(nbase + nextra) * cb];
  std::vector<std::vector<Neighbor>> base_all(16);
  for (size_t qi = 0; qi < 16; ++qi) base_all[qi] = base.All(queries + qi * cb);

  const size_t k = 20;
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::atomic<long> searches{0};
  auto reader = [&](int seed) {
    std::mt19937_64 rng(seed);
    while (!stop.load()) {
      const size_t qi = rng() % 16;
      const uint8_t* q = queries + qi * cb;
      SearchParams params;
      params.nprobe = (rng() % 2) ? -1 : 1;
      auto r = index->Search(q, k, params);
      if (!r.ok() || r->neighbors.size() != k) {
        ++failures;
        continue;
      }
      failures += testing::CountRaceFaults(r->neighbors, q, bits, code_of, base_all[qi], r->exact);
      ++searches;
    }
  };
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) readers.emplace_back(reader, t);
  NaiveModel model(bits);
  model.Add(ids.data(), codes.data(), nbase);
  std::vector<size_t> present;
  testing::WriteRoundsBesideReaders(index.get(), ids, codes, nbase, 100, 200, 80, searches, &present,
                                    [&](size_t first, size_t n, const std::vector<uint64_t>& gone) {
                                      model.Add(&ids[first], &codes[first * cb], n);
                                      model.Remove(gone.data(), gone.size());
                                    });
  stop = true;
  for (auto& t : readers) t.join();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(searches.load(), 0);
  ASSERT_EQ(index->size(), model.size());
  SearchParams until_exact;
  until_exact.nprobe = -1;
  for (size_t qi = 0; qi < 16; ++qi) {
    auto r = index->Search(queries + qi * cb, 30, until_exact);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->neighbors, model.Knn(queries + qi * cb, 30));
  }
}

TEST(ClassBucketIndexTest, RejectsBadArguments) {
  std::vector<uint8_t> codebook(4 * 2, 0);
  auto index = MakeBuckets(12, codebook);
  const uint8_t bad[2] = {0x00, 0xF0};
  uint64_t id = 1;
  EXPECT_EQ(index->Add(&id, bad, 1).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(index->Search(bad, 1, {}).status().code(), Status::Code::kInvalidArgument);
  const uint8_t ok[2] = {0x01, 0x00};
  EXPECT_EQ(index->Search(ok, 0, {}).status().code(), Status::Code::kInvalidArgument);
  SearchParams p;
  p.nprobe = -2;
  EXPECT_EQ(index->Search(ok, 1, p).status().code(), Status::Code::kInvalidArgument);
  EXPECT_GT(index->memory_bytes(), 0u);
}

}  // namespace
}  // namespace hamdb
