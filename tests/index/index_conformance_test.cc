// The conformance suite: every row of the index factory's spec table
// (ExampleIndexSpecs) against the Flat oracle, on LLC-like clustered data,
// before and after upserts and removes. Exact specs must give identical
// (distance, id) lists; approximate ones report their recall and must never
// claim exactness (SearchResult::exact) for a wrong answer. A new index type
// joins by adding its row to the table; this suite then covers it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <set>

#include "core/binary_code.h"
#include "index/index_factory.h"
#include "index/synthetic.h"

namespace hamdb {
namespace {

constexpr int kBits = 64;

class IndexConformance : public ::testing::TestWithParam<std::string> {};

struct Data {
  std::vector<uint8_t> codes, codebook;
  std::vector<uint64_t> ids;
};

Data MakeData(size_t n, uint64_t seed) {
  SyntheticSpec spec;
  spec.kind = "clustered";
  spec.num_centres = 16;
  spec.flip_prob = 0.08;
  spec.seed = seed;
  auto gen = GenerateCodes(spec, n, kBits);
  EXPECT_TRUE(gen.ok()) << gen.status().ToString();
  Data d;
  d.codes = gen->codes;
  d.codebook = gen->centre_codes;
  std::mt19937_64 rng(seed);
  std::set<uint64_t> seen;
  // Ids spread over the range the spec takes.
  while (d.ids.size() < n) {
    const uint64_t id = rng() >> 1;
    if (seen.insert(id).second) d.ids.push_back(id);
  }
  return d;
}

// Compares one spec with Flat on `queries`; returns recall of the k-NN lists.
double Compare(const BinaryIndex& index, const BinaryIndex& flat, const IndexSpecInfo& info,
               const std::vector<uint8_t>& queries, size_t nq, const char* phase) {
  const size_t cb = code_bytes(kBits);
  const size_t k = 10;
  size_t hits = 0, total = 0;
  for (size_t q = 0; q < nq; ++q) {
    const uint8_t* query = queries.data() + q * cb;
    auto want = flat.Search(query, k, {});
    auto got = index.Search(query, k, {});
    EXPECT_TRUE(want.ok() && got.ok());
    if (!want.ok() || !got.ok()) return 0;
    if (info.exact) {
      EXPECT_TRUE(got->exact) << info.spec;
      EXPECT_EQ(got->neighbors, want->neighbors) << info.spec << " " << phase << " query " << q;
    } else if (got->exact) {
      EXPECT_EQ(got->neighbors, want->neighbors)
          << info.spec << " claims an exact answer that is not, " << phase << " query " << q;
    }
    std::set<uint64_t> truth;
    for (const Neighbor& n : want->neighbors) truth.insert(n.id);
    for (const Neighbor& n : got->neighbors) hits += truth.count(n.id);
    total += want->neighbors.size();

    auto want_range = flat.RangeSearch(query, 8, {});
    auto got_range = index.RangeSearch(query, 8, {});
    EXPECT_TRUE(want_range.ok() && got_range.ok());
    if (!want_range.ok() || !got_range.ok()) return 0;
    if (info.exact || got_range->exact) {
      EXPECT_EQ(got_range->neighbors, want_range->neighbors)
          << info.spec << " range, " << phase << " query " << q;
    }
    // Approximate or not, every hit is a true one at its true distance.
    for (const Neighbor& n : got_range->neighbors) {
      EXPECT_LE(n.distance, 8u) << info.spec;
    }
    if (info.exact_on_request) {
      SearchParams until_exact;
      until_exact.nprobe = -1;
      auto exact = index.Search(query, k, until_exact);
      EXPECT_TRUE(exact.ok());
      if (!exact.ok()) return 0;
      EXPECT_TRUE(exact->exact) << info.spec;
      EXPECT_EQ(exact->neighbors, want->neighbors) << info.spec << " nprobe -1, " << phase;
    }
  }
  return total ? static_cast<double>(hits) / total : 1.0;
}

TEST_P(IndexConformance, MatchesFlat) {
  const std::string spec = GetParam();
  auto info = DescribeIndexSpec(spec);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  const size_t n = 2000, cb = code_bytes(kBits);
  Data d = MakeData(n, 11);
  IndexOptions options;
  options.codebook = d.codebook;
  auto made = MakeIndex(spec, kBits, options);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  std::unique_ptr<BinaryIndex> index = std::move(made).value();
  std::unique_ptr<BinaryIndex> flat = std::move(MakeIndex("Flat", kBits)).value();
  EXPECT_EQ(index->spec(), spec);

  // Two batches, so that trained indexes (IVF) also take incremental adds.
  ASSERT_TRUE(index->Add(d.ids.data(), d.codes.data(), n / 2).ok());
  ASSERT_TRUE(index->Add(d.ids.data() + n / 2, d.codes.data() + n / 2 * cb, n - n / 2).ok());
  ASSERT_TRUE(flat->Add(d.ids.data(), d.codes.data(), n).ok());
  EXPECT_EQ(index->size(), n);

  Data qd = MakeData(40, 12);
  const double recall_before = Compare(*index, *flat, *info, qd.codes, 40, "after adds");

  // Upsert a tenth with new codes, remove another tenth.
  Data moved = MakeData(n / 10, 13);
  std::vector<uint64_t> upsert_ids(d.ids.begin(), d.ids.begin() + n / 10);
  ASSERT_TRUE(index->Add(upsert_ids.data(), moved.codes.data(), upsert_ids.size()).ok());
  ASSERT_TRUE(flat->Add(upsert_ids.data(), moved.codes.data(), upsert_ids.size()).ok());
  std::vector<uint64_t> gone(d.ids.begin() + n / 10, d.ids.begin() + n / 5);
  size_t removed_index = 0, removed_flat = 0;
  ASSERT_TRUE(index->Remove(gone.data(), gone.size(), &removed_index).ok());
  ASSERT_TRUE(flat->Remove(gone.data(), gone.size(), &removed_flat).ok());
  EXPECT_EQ(removed_index, removed_flat);
  EXPECT_EQ(index->size(), flat->size());
  const double recall_after = Compare(*index, *flat, *info, qd.codes, 40, "after upserts");

  std::printf("conformance: %-10s family %-6s %-11s recall@10 %.3f, after upserts %.3f\n",
              spec.c_str(), info->family.c_str(), info->exact ? "exact" : "approximate",
              recall_before, recall_after);
  if (info->exact) {
    EXPECT_EQ(recall_before, 1.0);
    EXPECT_EQ(recall_after, 1.0);
  }
}

// A snapshot state restores the same index: the same answers, and it keeps
// taking writes. A truncated state is an error, never a crash.
TEST_P(IndexConformance, SavedStateRestoresTheSameIndex) {
  const std::string spec = GetParam();
  const size_t n = 1500, cb = code_bytes(kBits);
  Data d = MakeData(n, 21);
  IndexOptions options;
  options.codebook = d.codebook;
  auto original = std::move(MakeIndex(spec, kBits, options)).value();
  ASSERT_TRUE(original->Add(d.ids.data(), d.codes.data(), n).ok());
  Data moved = MakeData(50, 22);
  ASSERT_TRUE(original->Add(d.ids.data(), moved.codes.data(), 50).ok());  // upserts
  ASSERT_TRUE(original->Remove(d.ids.data() + 100, 50, nullptr).ok());
  std::string state;
  ASSERT_TRUE(original->SaveState(&state).ok()) << spec;
  auto loaded = std::move(MakeIndex(spec, kBits, options)).value();
  Status s = loaded->LoadState(state);
  ASSERT_TRUE(s.ok()) << spec << ": " << s.ToString();
  EXPECT_EQ(loaded->size(), original->size());
  Data qd = MakeData(30, 23);
  auto same = [&](const char* phase) {
    for (size_t q = 0; q < 30; ++q) {
      auto a = original->Search(qd.codes.data() + q * cb, 10, {});
      auto b = loaded->Search(qd.codes.data() + q * cb, 10, {});
      ASSERT_TRUE(a.ok() && b.ok());
      EXPECT_EQ(a->neighbors, b->neighbors) << spec << " " << phase << " query " << q;
    }
  };
  same("after load");
  Data more = MakeData(300, 24);
  for (auto* index : {original.get(), loaded.get()}) {
    ASSERT_TRUE(index->Add(more.ids.data(), more.codes.data(), 300).ok());
    ASSERT_TRUE(index->Remove(d.ids.data() + 500, 200, nullptr).ok());
  }
  same("after more writes");
  for (size_t cut : {size_t{0}, state.size() / 3, state.size() - 1}) {
    auto fresh = std::move(MakeIndex(spec, kBits, options)).value();
    EXPECT_FALSE(fresh->LoadState(std::string_view(state).substr(0, cut)).ok())
        << spec << " took a state cut at " << cut;
  }
}

TEST_P(IndexConformance, RefusesWhatItsRowRefuses) {
  const std::string spec = GetParam();
  auto info = DescribeIndexSpec(spec);
  ASSERT_TRUE(info.ok());
  if (info->needs_codebook) {
    EXPECT_EQ(MakeIndex(spec, kBits).status().code(), Status::Code::kFailedPrecondition);
    EXPECT_EQ(CheckIndexSpec(spec, kBits, false).code(), Status::Code::kFailedPrecondition);
  }
  if (info->bits_multiple > 1) {
    EXPECT_EQ(CheckIndexSpec(spec, kBits + 1, true).code(), Status::Code::kInvalidArgument);
  }
  if (info->max_id < UINT64_MAX) {
    Data d = MakeData(1, 3);
    IndexOptions options;
    options.codebook = d.codebook;
    auto index = std::move(MakeIndex(spec, kBits, options)).value();
    const uint64_t too_big = info->max_id + 1;
    EXPECT_EQ(index->Add(&too_big, d.codes.data(), 1).code(), Status::Code::kInvalidArgument);
    EXPECT_EQ(index->size(), 0u);
  }
}

// Scores and the two tie rules. The data is full of ties: a third of the
// codes repeat others, and the scores come from a few values (and none), so
// the tie rule decides much of every list. The Flat oracle is itself checked
// against a sort of every item; the exact specs (and Bucket's provably exact
// answers) must equal it under both rules, in search, batch and range, and
// after upserts that change scores, removes, and a snapshot round trip. A
// spec that keeps no scores refuses the score rule.
TEST_P(IndexConformance, ScoreTiesMatchFlat) {
  const std::string spec = GetParam();
  auto info = DescribeIndexSpec(spec);
  ASSERT_TRUE(info.ok());
  const size_t n = 3000, cb = code_bytes(kBits);
  Data d = MakeData(n, 31);
  std::mt19937_64 rng(32);
  for (size_t i = n / 3 * 2; i < n; ++i) {
    const size_t from = rng() % (n / 3 * 2);
    std::copy(d.codes.begin() + from * cb, d.codes.begin() + (from + 1) * cb,
              d.codes.begin() + i * cb);
  }
  const float values[] = {0.25f, 0.5f, 0.93f, 0.9301f, -1.f};
  auto random_scores = [&](size_t count) {
    std::vector<uint16_t> keys(count);
    for (uint16_t& k : keys) {
      const size_t v = rng() % 6;
      k = v == 5 ? kNoScore : ScoreKey(values[v]);
    }
    return keys;
  };
  std::vector<uint16_t> scores = random_scores(n);
  IndexOptions options;
  options.codebook = d.codebook;
  auto index = std::move(MakeIndex(spec, kBits, options)).value();
  auto flat = std::move(MakeIndex("Flat", kBits)).value();
  EXPECT_EQ(index->keeps_scores(), info->keeps_scores) << spec;
  ASSERT_TRUE(index->Add(d.ids.data(), d.codes.data(), n / 2, scores.data()).ok());
  ASSERT_TRUE(index->Add(d.ids.data() + n / 2, d.codes.data() + n / 2 * cb, n - n / 2,
                         scores.data() + n / 2).ok());
  ASSERT_TRUE(flat->Add(d.ids.data(), d.codes.data(), n, scores.data()).ok());

  Data qd = MakeData(25, 33);
  // Queries that are stored codes too: their distance-0 groups are large.
  std::copy(d.codes.begin(), d.codes.begin() + 10 * cb, qd.codes.begin());
  const size_t nq = 25;
  SearchParams by_score;
  by_score.tie_break = TieBreak::kScore;
  if (!info->keeps_scores) {
    EXPECT_EQ(index->Search(qd.codes.data(), 10, by_score).status().code(),
              Status::Code::kInvalidArgument);
    std::vector<SearchResult> out;
    EXPECT_EQ(index->SearchBatch(qd.codes.data(), 2, 10, by_score, &out).code(),
              Status::Code::kInvalidArgument);
    return;
  }

  // The oracle: every item, sorted by the rule.
  auto brute = [&](const uint8_t* q, size_t k, TieBreak tie) {
    std::vector<uint64_t> ids;
    std::vector<uint8_t> codes;
    std::vector<uint16_t> keys;
    EXPECT_TRUE(flat->ExportItems(&ids, &codes, &keys).ok());
    std::vector<Neighbor> all;
    for (size_t i = 0; i < ids.size(); ++i) {
      uint32_t dist = 0;
      for (size_t b = 0; b < cb; ++b) dist += __builtin_popcount(q[b] ^ codes[i * cb + b]);
      all.push_back(Neighbor{ids[i], dist, keys.empty() ? kNoScore : keys[i]});
    }
    std::sort(all.begin(), all.end(), NeighborOrder{tie});
    all.resize(std::min(k, all.size()));
    return all;
  };
  auto check = [&](const BinaryIndex& got_index, const char* phase) {
    for (TieBreak tie : {TieBreak::kId, TieBreak::kScore}) {
      SearchParams p;
      p.tie_break = tie;
      for (size_t k : {size_t{1}, size_t{10}, size_t{150}}) {
        std::vector<SearchParams> variants = {p};
        if (info->exact_on_request && !info->exact) {
          variants[0].nprobe = -1;
        }
        if (info->prefix == "MIH") {
          SearchParams probe = p, scan = p;
          probe.mih_mode = 1;
          scan.mih_mode = -1;
          variants.push_back(probe);
          variants.push_back(scan);
        }
        for (const SearchParams& v : variants) {
          std::vector<SearchResult> batch;
          ASSERT_TRUE(got_index.SearchBatch(qd.codes.data(), nq, k, v, &batch).ok());
          for (size_t q = 0; q < nq; ++q) {
            const uint8_t* query = qd.codes.data() + q * cb;
            const std::vector<Neighbor> want = brute(query, k, tie);
            auto oracle = flat->Search(query, k, p);
            ASSERT_TRUE(oracle.ok());
            EXPECT_EQ(oracle->neighbors, want) << "Flat, " << TieBreakName(tie) << " k " << k;
            auto got = got_index.Search(query, k, v);
            ASSERT_TRUE(got.ok()) << got.status().ToString();
            ASSERT_TRUE(got->exact) << spec;
            EXPECT_EQ(got->neighbors, want) << spec << " " << phase << ", tie_break "
                                            << TieBreakName(tie) << ", k " << k << ", query " << q;
            EXPECT_EQ(batch[q].neighbors, want) << spec << " batch, " << phase;
          }
        }
      }
      for (size_t q = 0; q < nq; ++q) {
        const uint8_t* query = qd.codes.data() + q * cb;
        auto want = flat->RangeSearch(query, 6, p);
        auto got = got_index.RangeSearch(query, 6, p);
        ASSERT_TRUE(want.ok() && got.ok());
        EXPECT_EQ(got->neighbors, want->neighbors) << spec << " range, " << phase;
      }
    }
  };
  check(*index, "after adds");
  // The rule matters on this data: most top-10 lists differ between them.
  size_t differ = 0;
  for (size_t q = 0; q < nq; ++q) {
    differ += brute(qd.codes.data() + q * cb, 10, TieBreak::kId) !=
              brute(qd.codes.data() + q * cb, 10, TieBreak::kScore);
  }
  EXPECT_GT(differ, nq / 3);

  // Upserts that change only the score, or the code and the score; removes.
  std::vector<uint16_t> rescored = random_scores(n / 5);
  ASSERT_TRUE(index->Add(d.ids.data(), d.codes.data(), n / 5, rescored.data()).ok());
  ASSERT_TRUE(flat->Add(d.ids.data(), d.codes.data(), n / 5, rescored.data()).ok());
  Data moved = MakeData(n / 10, 34);
  std::vector<uint16_t> moved_scores = random_scores(n / 10);
  ASSERT_TRUE(index->Add(d.ids.data() + n / 5, moved.codes.data(), n / 10, moved_scores.data()).ok());
  ASSERT_TRUE(flat->Add(d.ids.data() + n / 5, moved.codes.data(), n / 10, moved_scores.data()).ok());
  ASSERT_TRUE(index->Add(d.ids.data() + n / 2, d.codes.data() + n / 2 * cb, 20).ok());  // unscored
  ASSERT_TRUE(flat->Add(d.ids.data() + n / 2, d.codes.data() + n / 2 * cb, 20).ok());
  ASSERT_TRUE(index->Remove(d.ids.data() + n / 3, n / 10, nullptr).ok());
  ASSERT_TRUE(flat->Remove(d.ids.data() + n / 3, n / 10, nullptr).ok());
  check(*index, "after upserts and removes");

  std::string state;
  ASSERT_TRUE(index->SaveState(&state).ok());
  auto loaded = std::move(MakeIndex(spec, kBits, options)).value();
  ASSERT_TRUE(loaded->LoadState(state).ok());
  check(*loaded, "after a snapshot round trip");
}

// Allows the ids whose hash falls under `per_mille` of 1000 (0: none, 1000:
// all), counting its calls.
class HashFilter : public IdFilter {
 public:
  HashFilter(uint64_t seed, int per_mille) : seed_(seed), per_mille_(per_mille) {}
  bool Allows(uint64_t id) const override {
    uint64_t h = (id ^ seed_) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    return static_cast<int>(h % 1000) < per_mille_;
  }

 private:
  uint64_t seed_;
  int per_mille_;
};

// Filtered searches give exactly what a scan of the allowed items alone
// gives, under each tie rule the index keeps, for filters that allow
// nothing, a few, many and every item (approximate indexes: only allowed
// items, and exact whenever they say so); indexes that cannot filter refuse.
TEST_P(IndexConformance, FiltersMatchFlatOverTheAllowedItems) {
  const std::string spec = GetParam();
  auto info = DescribeIndexSpec(spec);
  ASSERT_TRUE(info.ok());
  const size_t n = 3000, cb = code_bytes(kBits);
  Data d = MakeData(n, 41);
  std::mt19937_64 rng(42);
  for (size_t i = n / 2; i < n; ++i) {  // duplicate codes: large tie groups
    const size_t from = rng() % (n / 2);
    std::copy(d.codes.begin() + from * cb, d.codes.begin() + (from + 1) * cb, d.codes.begin() + i * cb);
  }
  std::vector<uint16_t> scores(n);
  for (uint16_t& k : scores) k = rng() % 4 == 0 ? kNoScore : ScoreKey(static_cast<float>(rng() % 5));
  IndexOptions options;
  options.codebook = d.codebook;
  auto index = std::move(MakeIndex(spec, kBits, options)).value();
  ASSERT_TRUE(index->Add(d.ids.data(), d.codes.data(), n, scores.data()).ok());
  Data qd = MakeData(12, 43);
  std::copy(d.codes.begin(), d.codes.begin() + 6 * cb, qd.codes.begin());  // stored codes too
  const size_t nq = 12;

  HashFilter some(7, 300);
  SearchParams filtered;
  filtered.filter = &some;
  EXPECT_EQ(info->filters, info->prefix == "Flat" || info->prefix == "MIH" || info->prefix == "Bucket" ||
                               info->prefix == "IVF")
      << spec;
  if (!info->filters) {
    EXPECT_EQ(index->Search(qd.codes.data(), 10, filtered).status().code(), Status::Code::kInvalidArgument);
    EXPECT_EQ(index->RangeSearch(qd.codes.data(), 3, filtered).status().code(),
              Status::Code::kInvalidArgument);
    return;
  }
  // The oracle: the allowed items, sorted by the rule.
  auto brute = [&](const uint8_t* q, const IdFilter& f, TieBreak tie, size_t k, uint32_t radius) {
    std::vector<Neighbor> all;
    for (size_t i = 0; i < n; ++i) {
      if (!f.Allows(d.ids[i])) continue;
      uint32_t dist = 0;
      for (size_t b = 0; b < cb; ++b) dist += __builtin_popcount(q[b] ^ d.codes[i * cb + b]);
      if (dist <= radius) all.push_back(Neighbor{d.ids[i], dist, scores[i]});
    }
    std::sort(all.begin(), all.end(), NeighborOrder{tie});
    all.resize(std::min(k, all.size()));
    return all;
  };
  std::vector<TieBreak> ties = {TieBreak::kId};
  if (info->keeps_scores) ties.push_back(TieBreak::kScore);
  size_t checked = 0, nonempty = 0, returned = 0;
  for (int per_mille : {0, 2, 30, 300, 1000}) {
    const HashFilter f(per_mille + 11, per_mille);
    for (TieBreak tie : ties) {
      SearchParams p;
      p.tie_break = tie;
      p.filter = &f;
      std::vector<SearchParams> variants = {p};
      if (info->prefix == "MIH") {
        variants.push_back(p);
        variants.back().mih_mode = 1;
        variants.push_back(p);
        variants.back().mih_mode = -1;
      }
      if (info->exact_on_request && !info->exact) {
        variants.push_back(p);
        variants.back().nprobe = -1;
      }
      for (const SearchParams& v : variants) {
        for (size_t k : {size_t{1}, size_t{10}, size_t{150}}) {
          std::vector<SearchResult> batch;
          ASSERT_TRUE(index->SearchBatch(qd.codes.data(), nq, k, v, &batch).ok());
          for (size_t q = 0; q < nq; ++q) {
            const uint8_t* query = qd.codes.data() + q * cb;
            const std::vector<Neighbor> want = brute(query, f, tie, k, kBits);
            auto got = index->Search(query, k, v);
            ASSERT_TRUE(got.ok()) << got.status().ToString();
            const bool must_be_exact = info->exact || v.nprobe == -1;
            if (must_be_exact) EXPECT_TRUE(got->exact) << spec;
            if (got->exact) {
              EXPECT_EQ(got->neighbors, want) << spec << " allowing " << per_mille << "/1000, tie "
                                              << TieBreakName(tie) << ", k " << k << ", mih_mode "
                                              << v.mih_mode << ", nprobe " << v.nprobe << ", query " << q;
              ++checked;
              nonempty += !want.empty();
            }
            for (const Neighbor& nb : got->neighbors) EXPECT_TRUE(f.Allows(nb.id)) << spec;
            returned += got->neighbors.size();
            if (batch[q].exact) EXPECT_EQ(batch[q].neighbors, want) << spec << " batch";
          }
        }
        for (size_t q = 0; q < nq; ++q) {
          const uint8_t* query = qd.codes.data() + q * cb;
          auto got = index->RangeSearch(query, 12, v);
          ASSERT_TRUE(got.ok());
          const std::vector<Neighbor> want = brute(query, f, tie, n, 12);
          if (info->exact || got->exact) {
            EXPECT_EQ(got->neighbors, want) << spec << " range, " << per_mille;
          } else {  // approximate: a subset of the answer, at true distances
            for (const Neighbor& nb : got->neighbors) {
              EXPECT_TRUE(std::any_of(want.begin(), want.end(), [&](const Neighbor& w) {
                return w.id == nb.id && w.distance == nb.distance;
              })) << spec;
            }
          }
        }
      }
    }
  }
  if (info->exact || info->exact_on_request) {
    EXPECT_GT(checked, 0u);
    EXPECT_GT(nonempty, checked / 2);
  } else {
    EXPECT_GT(returned, 0u) << spec;  // approximate, but it does answer
  }
}

INSTANTIATE_TEST_SUITE_P(EverySpec, IndexConformance, ::testing::ValuesIn(ExampleIndexSpecs()),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

TEST(IndexSpecTable, FamiliesAndErrors) {
  EXPECT_EQ(DescribeIndexSpec("GPUIVF16")->family, "ivf");
  EXPECT_FALSE(DescribeIndexSpec("GPUIVF16")->exact);
  EXPECT_FALSE(DescribeIndexSpec("GPUIVF16")->exact_on_request);
  EXPECT_EQ(DescribeIndexSpec("GPUIVF16")->max_id, static_cast<uint64_t>(INT64_MAX));
  EXPECT_EQ(DescribeIndexSpec("GPUBucket")->family, "bucket");
  EXPECT_TRUE(DescribeIndexSpec("GPUBucket")->needs_codebook);
  EXPECT_EQ(DescribeIndexSpec("GPUFlat")->family, "gpu");
  EXPECT_TRUE(DescribeIndexSpec("GPUFlat")->exact);
  EXPECT_EQ(DescribeIndexSpec("MIH4")->family, "exact");
  EXPECT_EQ(DescribeIndexSpec("IVF1024_8")->family, "ivf");
  for (const char* bad : {"", "Flat2", "MIH0", "MIH-1", "IVF", "IVF16_", "IVF_4", "Bucket01",
                          "GPUMIH", "GPU", "HNSW32", "flat"}) {
    EXPECT_EQ(DescribeIndexSpec(bad).status().code(), Status::Code::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace hamdb
