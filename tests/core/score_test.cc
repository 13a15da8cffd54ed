#include "core/score.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace hamdb {
namespace {

TEST(ScoreTest, KeysOrderLikeScores) {
  std::vector<float> v = {-std::numeric_limits<float>::max(), -1e6f, -2.5f, -1.f, -1e-30f, 0.f,
                          1e-30f, 0.25f, 0.5f, 0.93f, 0.99f, 0.999f, 1.f, 3.f, 1e30f,
                          std::numeric_limits<float>::max()};
  for (size_t i = 1; i < v.size(); ++i) {
    EXPECT_LE(ScoreKey(v[i - 1]), ScoreKey(v[i])) << v[i - 1] << " vs " << v[i];
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-100.f, 100.f);
  for (int i = 0; i < 10000; ++i) {
    const float a = u(rng), b = u(rng);
    if (a < b) EXPECT_LE(ScoreKey(a), ScoreKey(b));
    // The quantised value is a's, rounded toward zero, and keeps its key.
    const float qa = ScoreOfKey(ScoreKey(a));
    EXPECT_LE(std::fabs(qa), std::fabs(a));
    EXPECT_LE(std::fabs(a - qa), std::fabs(a) / 128);
    EXPECT_EQ(ScoreKey(qa), ScoreKey(a));
  }
}

TEST(ScoreTest, NoScoreIsBelowEveryFiniteScore) {
  EXPECT_GT(ScoreKey(-std::numeric_limits<float>::max()), kNoScore);
  EXPECT_EQ(ScoreKey(-0.f), ScoreKey(0.f));
  EXPECT_EQ(ScoreOfKey(ScoreKey(0.5f)), 0.5f);
  EXPECT_EQ(ScoreOfKey(ScoreKey(-3.f)), -3.f);
  EXPECT_EQ(ScoreOfKey(ScoreKey(0.93f)), 0.9296875f);
}

TEST(ScoreTest, CheckScoreRefusesNonFinite) {
  EXPECT_TRUE(CheckScore(0.93, "score").ok());
  EXPECT_EQ(CheckScore(std::nan(""), "score").code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(CheckScore(INFINITY, "score").code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(CheckScore(-INFINITY, "score").code(), Status::Code::kInvalidArgument);
}

TEST(ScoreTest, TieBreakNames) {
  EXPECT_EQ(*ParseTieBreak("id"), TieBreak::kId);
  EXPECT_EQ(*ParseTieBreak("score"), TieBreak::kScore);
  EXPECT_STREQ(TieBreakName(TieBreak::kScore), "score");
  EXPECT_FALSE(ParseTieBreak("Score").ok());
}

}  // namespace
}  // namespace hamdb
