// FaissIvfIndex: the exact buffer before training, valid results and stable
// ids after training, deletes and upserts, recall, per-query nprobe.
#include "index/faiss_ivf_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "index/binary_index.h"
#include "index/synthetic.h"
#include "tests/index/index_test_util.h"
#include "index/index_factory.h"

namespace hamdb {
namespace {

using testing::Describe;
using testing::NaiveDistance;
using testing::NaiveModel;

std::vector<uint8_t> Clustered(size_t n, int bits, uint64_t seed) {
  SyntheticSpec spec;
  spec.kind = "clustered";
  spec.num_centres = 64;
  spec.flip_prob = 0.05;
  spec.seed = seed;
  auto gen = GenerateCodes(spec, n, bits);
  EXPECT_TRUE(gen.ok());
  return gen->codes;
}

std::unique_ptr<FaissIvfIndex> MakeIvf(int bits, int nlist, int nprobe = 1) {
  auto index = FaissIvfIndex::Create(bits, nlist, nprobe);
  EXPECT_TRUE(index.ok()) << index.status().ToString();
  return std::move(index).value();
}

// Every neighbour is a held item at its true distance; sorted; no repeats.
void ExpectValid(const SearchResult& r, const uint8_t* q, const NaiveModel& model, int bits) {
  EXPECT_TRUE(std::is_sorted(r.neighbors.begin(), r.neighbors.end(), NeighborLess));
  std::set<uint64_t> seen;
  for (const Neighbor& nb : r.neighbors) {
    EXPECT_TRUE(seen.insert(nb.id).second) << "repeated id " << nb.id;
    auto it = model.items().find(nb.id);
    ASSERT_NE(it, model.items().end()) << "id " << nb.id << " is not held";
    EXPECT_EQ(nb.distance, NaiveDistance(q, it->second.data(), bits));
  }
}

TEST(FaissIvfIndexTest, SpecsAndArguments) {
  for (const char* spec : {"IVF16", "IVF1024", "IVF1024_8"}) {
    auto index = MakeIndex(spec, 64);
    ASSERT_TRUE(index.ok()) << spec << ": " << index.status().ToString();
    EXPECT_EQ((*index)->spec(), spec);
  }
  for (const char* spec : {"IVF", "IVF0", "IVF_8", "IVF16_", "IVF16_0", "IVF16x", "IVF16_8_1"}) {
    EXPECT_EQ(MakeIndex(spec, 64).status().code(), Status::Code::kInvalidArgument) << spec;
  }
  EXPECT_EQ(MakeIndex("IVF16", 60).status().code(), Status::Code::kInvalidArgument);
  auto index = MakeIvf(64, 4);
  const uint64_t big = uint64_t{1} << 63;
  const uint8_t code[8] = {1};
  EXPECT_EQ(index->Add(&big, code, 1).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(index->size(), 0u);
}

TEST(FaissIvfIndexTest, ExactWhileUntrainedThenTrainsAtThreshold) {
  const int bits = 64, nlist = 8;
  auto index = MakeIvf(bits, nlist);
  const size_t threshold = index->train_threshold();
  ASSERT_EQ(threshold, FaissIvfIndex::kMinTrainPerList * nlist);
  std::vector<uint8_t> codes = Clustered(threshold + 500, bits, 3);
  std::vector<uint64_t> ids = testing::MakeIds(threshold + 500, 4);
  for (auto& id : ids) id &= ~(uint64_t{1} << 63);
  NaiveModel model(bits);
  const size_t first = threshold - 10;
  ASSERT_TRUE(index->Add(ids.data(), codes.data(), first).ok());
  model.Add(ids.data(), codes.data(), first);
  EXPECT_FALSE(index->trained());
  // Exact while buffered, including after a delete and an upsert.
  ASSERT_TRUE(index->Remove(&ids[3], 1, nullptr).ok());
  model.Remove(&ids[3], 1);
  ASSERT_TRUE(index->Add(&ids[5], &codes[100 * 8], 1).ok());
  model.Add(&ids[5], &codes[100 * 8], 1);
  for (size_t qi = 0; qi < 5; ++qi) {
    const uint8_t* q = &codes[(first + qi) * 8];
    auto got = index->Search(q, 20, {});
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->neighbors, model.Knn(q, 20));
    EXPECT_TRUE(got->exact);
    auto range = index->RangeSearch(q, 6, {});
    ASSERT_TRUE(range.ok());
    EXPECT_EQ(range->neighbors, model.Range(q, 6));
  }
  // Crossing the threshold trains and moves the buffer into the lists.
  ASSERT_TRUE(index->Add(&ids[first], &codes[first * 8], 500).ok());
  model.Add(&ids[first], &codes[first * 8], 500);
  EXPECT_TRUE(index->trained());
  EXPECT_GT(index->train_seconds(), 0.0);
  EXPECT_EQ(index->size(), model.size());
  size_t listed = 0;
  for (int l = 0; l < nlist; ++l) listed += index->list(l).size;
  EXPECT_EQ(listed, model.size());
  // nprobe = nlist scans everything: the exact answer (ties by id).
  SearchParams all;
  all.nprobe = nlist;
  for (size_t qi = 0; qi < 10; ++qi) {
    const uint8_t* q = &codes[qi * 37 * 8];
    auto got = index->Search(q, 25, all);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->neighbors, model.Knn(q, 25)) << Describe(got->neighbors);
    EXPECT_FALSE(got->exact);
    EXPECT_EQ(got->visited_buckets.size(), static_cast<size_t>(nlist));
    auto range = index->RangeSearch(q, 5, all);
    ASSERT_TRUE(range.ok());
    EXPECT_EQ(range->neighbors, model.Range(q, 5));
  }
}

TEST(FaissIvfIndexTest, DeletesAndUpsertsKeepIdsStable) {
  const int bits = 128, nlist = 16;
  const size_t n = 3000;
  auto index = MakeIvf(bits, nlist, 4);
  std::vector<uint8_t> codes = Clustered(n + 200, bits, 8);
  std::vector<uint64_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = 10 * i + 7;         // sparse, not slot numbers
  ASSERT_TRUE(index->Add(ids.data(), codes.data(), n).ok());  // bulk add trains
  ASSERT_TRUE(index->trained());
  NaiveModel model(bits);
  model.Add(ids.data(), codes.data(), n);

  std::mt19937_64 rng(2);
  std::vector<uint64_t> gone;
  for (int i = 0; i < 400; ++i) gone.push_back(ids[rng() % n]);
  gone.push_back(5);  // never present
  size_t removed = 0;
  const size_t before = model.size();
  ASSERT_TRUE(index->Remove(gone.data(), gone.size(), &removed).ok());
  model.Remove(gone.data(), gone.size());
  EXPECT_EQ(removed, before - model.size());
  EXPECT_EQ(index->size(), model.size());
  // Upsert: existing ids get new codes, with a repeated id in the batch.
  std::vector<uint64_t> up = {ids[10], ids[11], ids[10]};
  const size_t cb = code_bytes(bits);
  std::vector<uint8_t> up_codes(&codes[n * cb], &codes[(n + 3) * cb]);
  ASSERT_TRUE(index->Add(up.data(), up_codes.data(), 3).ok());
  model.Add(up.data(), up_codes.data(), 3);
  EXPECT_EQ(index->size(), model.size());

  SearchParams all;
  all.nprobe = nlist;
  for (size_t qi = 0; qi < 30; ++qi) {
    const uint8_t* q = &codes[(rng() % (n + 3)) * cb];
    for (int nprobe : {0, 1, 4, nlist}) {
      SearchParams p;
      p.nprobe = nprobe;
      auto got = index->Search(q, 10, p);
      ASSERT_TRUE(got.ok());
      ExpectValid(*got, q, model, bits);
      EXPECT_EQ(got->visited_buckets.size(), static_cast<size_t>(nprobe == 0 ? 4 : nprobe));
    }
    auto got = index->Search(q, 10, all);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->neighbors, model.Knn(q, 10));
  }
  // The upserted code of ids[10] is the last one in the batch.
  auto hit = index->Search(&up_codes[2 * cb], 1, all);
  ASSERT_TRUE(hit.ok());
  ASSERT_EQ(hit->neighbors.size(), 1u);
  EXPECT_EQ(hit->neighbors[0].distance, 0u);
}

// Deletes and upserts take each removed entry's place with its list's last
// entry. A long random stream of them, with a snapshot round trip half way,
// must leave exactly the model's items in the lists: the export equals the
// model, and a search of every list equals brute force.
TEST(FaissIvfIndexTest, LongStreamsOfDeletesAndUpsertsKeepTheListsExact) {
  const int bits = 64, nlist = 8;
  const size_t cb = code_bytes(bits);
  auto index = MakeIvf(bits, nlist);
  std::vector<uint8_t> pool = Clustered(6000, bits, 21);
  size_t next_code = 0;
  NaiveModel model(bits);
  std::vector<uint64_t> live;
  uint64_t next_id = 100;
  std::mt19937_64 rng(4);
  auto add = [&](size_t n, bool upserts) {
    std::vector<uint64_t> ids;
    for (size_t i = 0; i < n; ++i) {
      if (upserts && !live.empty() && rng() % 3 == 0) {
        ids.push_back(live[rng() % live.size()]);
      } else {
        ids.push_back(next_id);
        live.push_back(next_id++);
      }
    }
    if (upserts && !ids.empty()) ids.push_back(ids.front());  // a repeated id: the last code wins
    const uint8_t* codes = &pool[next_code * cb];
    next_code += ids.size();
    ASSERT_TRUE(index->Add(ids.data(), codes, ids.size()).ok());
    model.Add(ids.data(), codes, ids.size());
  };
  auto remove = [&](size_t n) {
    std::vector<uint64_t> ids = {1};  // never held
    for (size_t i = 0; i < n && !live.empty(); ++i) {
      const size_t at = rng() % live.size();
      ids.push_back(live[at]);
      live[at] = live.back();
      live.pop_back();
    }
    size_t removed = 0;
    ASSERT_TRUE(index->Remove(ids.data(), ids.size(), &removed).ok());
    model.Remove(ids.data(), ids.size());
    EXPECT_EQ(removed, ids.size() - 1);
  };
  auto check = [&](const std::string& when) {
    SCOPED_TRACE(when);
    ASSERT_EQ(index->size(), model.size());
    std::vector<uint64_t> ids;
    std::vector<uint8_t> codes;
    std::vector<uint16_t> scores;
    ASSERT_TRUE(index->ExportItems(&ids, &codes, &scores).ok());
    std::map<uint64_t, std::vector<uint8_t>> exported;
    for (size_t i = 0; i < ids.size(); ++i) {
      EXPECT_TRUE(exported.emplace(ids[i], std::vector<uint8_t>(&codes[i * cb], &codes[(i + 1) * cb]))
                      .second)
          << "id " << ids[i] << " is in the lists twice";
    }
    EXPECT_EQ(exported, model.items());
    SearchParams all;
    all.nprobe = nlist;
    for (int q = 0; q < 5; ++q) {
      const uint8_t* query = &pool[(rng() % next_code) * cb];
      auto got = index->Search(query, 10, all);
      ASSERT_TRUE(got.ok());
      EXPECT_EQ(got->neighbors, model.Knn(query, 10));
    }
  };
  add(1500, false);  // trains
  ASSERT_TRUE(index->trained());
  check("trained");
  for (int round = 0; round < 60; ++round) {
    remove(rng() % 40);
    add(rng() % 40, true);
    if (round % 10 == 9) check("round " + std::to_string(round));
    if (round == 29) {
      std::string state;
      ASSERT_TRUE(index->SaveState(&state).ok());
      auto loaded = MakeIvf(bits, nlist);
      ASSERT_TRUE(loaded->LoadState(state).ok());
      index = std::move(loaded);
      check("loaded");
    }
  }
  remove(live.size());
  check("empty");
  add(50, false);
  check("refilled");
}

TEST(FaissIvfIndexTest, RecallIsReasonable) {
  const int bits = 64, nlist = 32;
  const size_t n = 20000, nq = 100, k = 10;
  std::vector<uint8_t> all = Clustered(n + nq, bits, 21);
  std::vector<uint64_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = i;
  auto index = MakeIvf(bits, nlist);
  ASSERT_TRUE(index->Add(ids.data(), all.data(), n).ok());
  NaiveModel model(bits);
  model.Add(ids.data(), all.data(), n);
  double recall1 = 0, recall8 = 0;
  for (size_t qi = 0; qi < nq; ++qi) {
    const uint8_t* q = &all[(n + qi) * 8];
    const std::vector<Neighbor> want = model.Knn(q, k);
    const uint32_t dk = want.back().distance;
    for (int nprobe : {1, 8}) {
      SearchParams p;
      p.nprobe = nprobe;
      auto got = index->Search(q, k, p);
      ASSERT_TRUE(got.ok());
      size_t hits = 0;
      for (const Neighbor& nb : got->neighbors) hits += nb.distance <= dk;
      (nprobe == 1 ? recall1 : recall8) += static_cast<double>(std::min(hits, k)) / k / nq;
    }
  }
  std::printf("IVF%d recall@10 (distance-based) nprobe 1/8: %.4f %.4f\n", nlist, recall1, recall8);
  EXPECT_GT(recall8, 0.9);
  EXPECT_GE(recall8 + 1e-9, recall1);
}

}  // namespace
}  // namespace hamdb
