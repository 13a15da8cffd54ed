#include "encoder/codebook.h"

#include <gtest/gtest.h>

#include "core/binary_code.h"

namespace hamdb {
namespace {

std::vector<uint8_t> Bits(const std::vector<std::string>& rows, int bits) {
  std::vector<uint8_t> out;
  for (const auto& r : rows) {
    auto c = ParseBitString(r, bits);
    EXPECT_TRUE(c.ok());
    out.insert(out.end(), c->begin(), c->end());
  }
  return out;
}

TEST(Codebook, ExactNearestAndOutOfDistribution) {
  auto cb = Codebook::Create(10, Bits({"0000000000", "1111100000", "0000011111"}, 10),
                             {"zero", "low", "high"});
  ASSERT_TRUE(cb.ok()) << cb.status().ToString();
  EXPECT_EQ(cb->num_classes(), 3u);
  EXPECT_EQ(cb->NumUniqueCodes(), 3u);

  auto q = ParseBitString("1111100000", 10);
  EXPECT_EQ(cb->DecodeExact(q->data()), 1);
  DecodeResult r = cb->Decode(q->data());
  EXPECT_EQ(r.class_index, 1);
  EXPECT_TRUE(r.exact);
  EXPECT_FALSE(r.out_of_distribution);

  q = ParseBitString("1111000000", 10);  // one bit from "low", four from "zero"
  EXPECT_EQ(cb->DecodeExact(q->data()), -1);
  r = cb->Decode(q->data());
  EXPECT_EQ(r.class_index, 1);
  EXPECT_EQ(r.distance, 1u);
  EXPECT_FALSE(r.exact);
  EXPECT_TRUE(r.out_of_distribution);                     // default radius 0
  EXPECT_FALSE(cb->Decode(q->data(), nullptr, 1).out_of_distribution);  // radius is inclusive
}

TEST(Codebook, TiesBrokenByBitProbabilities) {
  // Query 1100 is at distance 1 from both 1000 and 0100... and 1110 at 1.
  auto cb = Codebook::Create(4, Bits({"1000", "0100", "1111"}, 4));
  ASSERT_TRUE(cb.ok());
  auto q = ParseBitString("1100", 4);
  DecodeResult r = cb->Decode(q->data());
  EXPECT_EQ(r.num_tied, 2);
  EXPECT_EQ(r.class_index, 0);  // no probabilities: lower index
  // Bit 0 barely 1, bit 1 surely 1: class "0100" is the likelier one.
  const float probs[4] = {0.51f, 0.99f, 0.1f, 0.1f};
  r = cb->Decode(q->data(), probs);
  EXPECT_EQ(r.class_index, 1);
  EXPECT_EQ(r.distance, 1u);
}

TEST(Codebook, CollapsedCodesAndBadInput) {
  auto cb = Codebook::Create(8, Bits({"10101010", "10101010", "00000000"}, 8));
  ASSERT_TRUE(cb.ok());
  EXPECT_EQ(cb->NumUniqueCodes(), 2u);
  EXPECT_FALSE(Codebook::Create(8, {}).ok());
  EXPECT_FALSE(Codebook::Create(16, {1, 2, 3}).ok());
  EXPECT_FALSE(Codebook::Create(4, {0xF0}).ok());  // padding bits set
  EXPECT_FALSE(Codebook::Create(8, {1, 2}, {"only one name"}).ok());
}

}  // namespace
}  // namespace hamdb
