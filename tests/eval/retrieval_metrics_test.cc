#include "eval/retrieval_metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "core/binary_code.h"

namespace hamdb {
namespace {

// The two examples of the LLC paper, Appendix B: 10 relevant items, 5 retrieved.
TEST(AveragePrecision, PaperExamples) {
  const uint8_t a[] = {1, 0, 0, 0, 0};
  const uint8_t b[] = {1, 0, 0, 1, 1};
  EXPECT_NEAR(AveragePrecisionAtK(a, 5, 5, 10, ApFormula::kCorrected), 0.2, 1e-12);
  EXPECT_NEAR(AveragePrecisionAtK(a, 5, 5, 10, ApFormula::kHashNet), 1.0, 1e-12);
  EXPECT_NEAR(AveragePrecisionAtK(b, 5, 5, 10, ApFormula::kCorrected), 0.42, 1e-12);
  EXPECT_NEAR(AveragePrecisionAtK(b, 5, 5, 10, ApFormula::kHashNet), 0.7, 1e-12);
}

TEST(AveragePrecision, ZeroHitsAndFewRelevant) {
  const uint8_t none[] = {0, 0, 0};
  EXPECT_EQ(AveragePrecisionAtK(none, 3, 3, 10, ApFormula::kCorrected), 0.0);
  EXPECT_EQ(AveragePrecisionAtK(none, 3, 3, 10, ApFormula::kHashNet), 0.0);
  EXPECT_EQ(AveragePrecisionAtK(none, 3, 3, 0, ApFormula::kCorrected), 0.0);
  // R_q = 2 < k: both relevant items at the top is a perfect score.
  const uint8_t top[] = {1, 1, 0, 0};
  EXPECT_NEAR(AveragePrecisionAtK(top, 4, 4, 2, ApFormula::kCorrected), 1.0, 1e-12);
  // Entries past k are ignored.
  const uint8_t late[] = {0, 0, 1};
  EXPECT_EQ(AveragePrecisionAtK(late, 3, 2, 1, ApFormula::kCorrected), 0.0);
}

TEST(HammingTopK, OrdersByDistanceThenIndexAndClipsK) {
  // 8-bit codes: distances to 0x00 are the popcounts.
  const std::vector<uint8_t> db = {0x03, 0x01, 0x00, 0x01, 0xFF, 0x00};
  const uint8_t q = 0x00;
  EXPECT_EQ(HammingTopK(&q, db.data(), db.size(), 8, 4), (std::vector<uint32_t>{2, 5, 1, 3}));
  // k larger than the database returns everything, ordered.
  EXPECT_EQ(HammingTopK(&q, db.data(), db.size(), 8, 100),
            (std::vector<uint32_t>{2, 5, 1, 3, 0, 4}));
}

TEST(EvaluateHamming, TiesAreBrokenByIndexNotChance) {
  // All database codes equal: the ranking is 0,1,2,3 whatever the labels.
  const std::vector<uint8_t> db(4, 0x0F);
  const std::vector<int64_t> db_labels = {1, 0, 0, 1};
  const uint8_t q = 0x0F;
  RetrievalEvalOptions o;
  o.map_at = 4;
  o.precision_at = {1, 2};
  auto m = EvaluateHamming(&q, {0}, db.data(), db_labels, 8, o);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  // rel = [0,1,1,0], R = 2: AP = (1/2 + 2/3) / 2.
  EXPECT_NEAR(m->map_corrected, (0.5 + 2.0 / 3.0) / 2, 1e-12);
  EXPECT_NEAR(m->precision_at[0].second, 0.0, 1e-12);
  EXPECT_NEAR(m->precision_at[1].second, 0.5, 1e-12);
}

TEST(EvaluateHamming, ZeroHitQueriesAreAveragedIn) {
  const std::vector<uint8_t> db = {0x00, 0x01};
  const std::vector<int64_t> db_labels = {7, 7};
  const std::vector<uint8_t> qs = {0x00, 0x00};
  // Query 0 has label 7 (perfect), query 1 label 9 (nothing relevant).
  RetrievalEvalOptions o;
  o.map_at = 10;  // larger than the database
  auto m = EvaluateHamming(qs.data(), {7, 9}, db.data(), db_labels, 8, o);
  ASSERT_TRUE(m.ok());
  EXPECT_NEAR(m->map_corrected, 0.5, 1e-12);
  EXPECT_NEAR(m->map_hashnet, 0.5, 1e-12);
  EXPECT_EQ(m->zero_hit_queries, 1u);
  // Radius 2 precision: query 0 retrieves both (both relevant), query 1 none relevant.
  EXPECT_NEAR(m->precision_within_radius, 0.5, 1e-12);
  // PR curve: at radius 0, 2 pairs retrieved (one per query), 1 relevant of 2 relevant pairs.
  ASSERT_EQ(m->pr_curve.size(), 9u);
  EXPECT_NEAR(m->pr_curve[0].precision, 0.5, 1e-12);
  EXPECT_NEAR(m->pr_curve[0].recall, 0.5, 1e-12);
  EXPECT_NEAR(m->pr_curve[8].recall, 1.0, 1e-12);
}

TEST(EvaluateHamming, IndexRankingEqualsFullSort) {
  std::mt19937_64 rng(5);
  const int bits = 32;
  const size_t ndb = 3000, nq = 60;
  std::vector<uint8_t> db(ndb * 4), qs(nq * 4);
  std::vector<int64_t> dbl(ndb), ql(nq);
  // Few distinct codes so ties are everywhere.
  for (size_t i = 0; i < ndb; ++i) {
    dbl[i] = static_cast<int64_t>(rng() % 5);
    const uint32_t v = static_cast<uint32_t>(rng() % 64) * 0x01010101u;
    std::memcpy(&db[i * 4], &v, 4);
  }
  for (size_t i = 0; i < nq; ++i) {
    ql[i] = static_cast<int64_t>(rng() % 6);
    const uint32_t v = static_cast<uint32_t>(rng());
    std::memcpy(&qs[i * 4], &v, 4);
  }
  RetrievalEvalOptions o;
  o.map_at = 500;
  auto full = EvaluateHamming(qs.data(), ql, db.data(), dbl, bits, o, HammingRanker::kFullSort);
  auto idx = EvaluateHamming(qs.data(), ql, db.data(), dbl, bits, o, HammingRanker::kIndex);
  ASSERT_TRUE(full.ok() && idx.ok());
  EXPECT_GT(full->map_corrected, 0.0);
  EXPECT_EQ(full->map_corrected, idx->map_corrected);
  EXPECT_EQ(full->map_hashnet, idx->map_hashnet);
}

// The score rule: HammingTopK with score keys equals a full sort by
// (distance, -key, index); the full sort and the MIH index give identical
// MAP under it; scores that favour relevant items raise MAP; a wrong count
// of keys is an error.
TEST(EvaluateHamming, ScoreRuleMatchesASortAndTheIndex) {
  std::mt19937_64 rng(8);
  const int bits = 16;
  const size_t ndb = 2000, nq = 40;
  std::vector<uint8_t> db(ndb * 2), qs(nq * 2);
  std::vector<int64_t> dbl(ndb), ql(nq);
  std::vector<uint16_t> keys(ndb);
  for (size_t i = 0; i < ndb; ++i) {
    dbl[i] = static_cast<int64_t>(rng() % 4);
    const uint16_t v = static_cast<uint16_t>((rng() % 16) * 0x1111u);
    std::memcpy(&db[i * 2], &v, 2);
    // Relevant-looking items (label 0) score higher; some have no score.
    keys[i] = rng() % 7 == 0 ? kNoScore : ScoreKey(static_cast<float>(rng() % 5) + (dbl[i] == 0 ? 5 : 0));
  }
  for (size_t i = 0; i < nq; ++i) {
    ql[i] = 0;
    const uint16_t v = static_cast<uint16_t>(rng());
    std::memcpy(&qs[i * 2], &v, 2);
  }
  for (size_t q = 0; q < nq; ++q) {
    std::vector<uint32_t> all(ndb);
    for (uint32_t i = 0; i < ndb; ++i) all[i] = i;
    auto dist = [&](uint32_t i) {
      return __builtin_popcount(qs[q * 2] ^ db[i * 2]) + __builtin_popcount(qs[q * 2 + 1] ^ db[i * 2 + 1]);
    };
    std::stable_sort(all.begin(), all.end(), [&](uint32_t a, uint32_t b) {
      if (dist(a) != dist(b)) return dist(a) < dist(b);
      return keys[a] > keys[b];
    });
    all.resize(300);
    EXPECT_EQ(HammingTopK(&qs[q * 2], db.data(), ndb, bits, 300, keys.data()), all) << "query " << q;
  }
  RetrievalEvalOptions o;
  o.map_at = 300;
  auto by_id = EvaluateHamming(qs.data(), ql, db.data(), dbl, bits, o, HammingRanker::kFullSort);
  o.tie_break = TieBreak::kScore;
  o.db_score_keys = keys;
  auto full = EvaluateHamming(qs.data(), ql, db.data(), dbl, bits, o, HammingRanker::kFullSort);
  auto idx = EvaluateHamming(qs.data(), ql, db.data(), dbl, bits, o, HammingRanker::kIndex);
  ASSERT_TRUE(by_id.ok() && full.ok() && idx.ok());
  EXPECT_EQ(full->map_corrected, idx->map_corrected);
  EXPECT_GT(full->map_corrected, by_id->map_corrected + 0.05);
  o.db_score_keys.pop_back();
  EXPECT_EQ(EvaluateHamming(qs.data(), ql, db.data(), dbl, bits, o).status().code(),
            Status::Code::kInvalidArgument);
}

TEST(EvaluateRankedLists, MatchesHammingOnSameRanking) {
  const std::vector<uint8_t> db = {0x00, 0x03, 0x01};
  const std::vector<int64_t> dbl = {1, 2, 1};
  const uint8_t q = 0x00;
  RetrievalEvalOptions o;
  o.map_at = 3;
  auto h = EvaluateHamming(&q, {1}, db.data(), dbl, 8, o);
  auto r = EvaluateRankedLists({{0, 2, 1}}, {1}, dbl, o);
  ASSERT_TRUE(h.ok() && r.ok());
  EXPECT_EQ(h->map_corrected, r->map_corrected);
  EXPECT_NEAR(r->map_corrected, 1.0, 1e-12);
  EXPECT_FALSE(EvaluateRankedLists({{0, 9}}, {1}, dbl, o).ok());
  EXPECT_FALSE(EvaluateRankedLists({}, {}, dbl, o).ok());
}

}  // namespace
}  // namespace hamdb
