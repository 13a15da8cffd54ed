// The hashing baselines (HashNet, GreedyHash, DSNC, float) on 300
// Fashion-MNIST images, and the cosine ranking of the float baseline.
#include "eval/hashing_methods.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "encoder/dataset.h"
#include "core/binary_code.h"

namespace hamdb {
namespace {

const LabeledImages* Train300() {
  static const LabeledImages* data = [] {
    auto d = LoadFashionMnist(kDefaultFashionMnistDir, "train", 300);
    return d.ok() ? new LabeledImages(std::move(d).value()) : nullptr;
  }();
  return data;
}

TrainConfig TinyConfig(int bits) {
  TrainConfig c;
  c.bits = bits;
  c.cnn_width = 8;
  c.feature_dim = 64;
  c.phase1_epochs = 1;
  c.phase2_epochs = 1;  // a 2-epoch budget
  c.batch_size = 32;
  c.threads = 1;
  c.seed = 3;
  return c;
}

int Popcount(const uint8_t* a, const uint8_t* b, size_t bytes) {
  int d = 0;
  for (size_t i = 0; i < bytes; ++i) d += __builtin_popcount(a[i] ^ b[i]);
  return d;
}

TEST(HashingMethodsTest, ParseNames) {
  for (const char* name : {"hashnet", "greedyhash", "dsnc", "float"}) {
    auto m = ParseHashingMethod(name);
    ASSERT_TRUE(m.ok()) << name;
    EXPECT_STREQ(HashingMethodName(*m), name);
  }
  EXPECT_EQ(ParseHashingMethod("llc").status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(ParseHashingMethod("").status().code(), Status::Code::kInvalidArgument);
}

TEST(HashingMethodsTest, RejectsBadInput) {
  LabeledImages empty;
  empty.class_names = {"a", "b"};
  EXPECT_EQ(TrainHashingMethod(HashingMethod::kHashNet, empty, TinyConfig(16), nullptr).status().code(),
            Status::Code::kInvalidArgument);
  if (Train300() == nullptr) GTEST_SKIP() << "Fashion-MNIST not installed";
  TrainConfig c = TinyConfig(0);
  EXPECT_EQ(TrainHashingMethod(HashingMethod::kDsnc, *Train300(), c, nullptr).status().code(),
            Status::Code::kInvalidArgument);
  c = TinyConfig(16);
  c.phase1_epochs = 0;
  c.phase2_epochs = 0;
  EXPECT_EQ(TrainHashingMethod(HashingMethod::kFloat, *Train300(), c, nullptr).status().code(),
            Status::Code::kInvalidArgument);
  LabeledImages bad = *Train300();
  bad.labels[5] = 99;
  EXPECT_EQ(TrainHashingMethod(HashingMethod::kGreedyHash, bad, TinyConfig(16), nullptr).status().code(),
            Status::Code::kInvalidArgument);
}

class HashingMethodTrainTest : public testing::TestWithParam<HashingMethod> {};

// 12 bits: the second byte of each code has 4 padding bits that must be 0.
TEST_P(HashingMethodTrainTest, TrainsCodesAreValidDeterministicAndBetterThanRandom) {
  const LabeledImages* train = Train300();
  if (train == nullptr) GTEST_SKIP() << "Fashion-MNIST not installed";
  const int bits = 12;
  const size_t cb = code_bytes(bits);
  HashingReport rep;
  auto model = TrainHashingMethod(GetParam(), *train, TinyConfig(bits), &rep);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ((*model)->method(), GetParam());
  EXPECT_EQ((*model)->bits(), bits);
  ASSERT_EQ(rep.epoch_loss.size(), 2u);
  for (double l : rep.epoch_loss) EXPECT_TRUE(std::isfinite(l));
  EXPECT_GT(rep.seconds, 0);

  auto codes = (*model)->Codes(train->images);
  ASSERT_TRUE(codes.ok()) << codes.status().ToString();
  ASSERT_EQ(codes->size(), train->size() * cb);
  auto feats = (*model)->Features(train->images);
  ASSERT_TRUE(feats.ok());
  ASSERT_EQ(feats->size(), train->size() * bits);
  for (size_t i = 0; i < train->size(); ++i) {
    ASSERT_TRUE(CheckPadding(codes->data() + i * cb, bits).ok()) << "row " << i;
    for (int b = 0; b < bits; ++b) {
      const bool bit = ((*codes)[i * cb + b / 8] >> (b % 8)) & 1;
      ASSERT_EQ(bit, (*feats)[i * bits + b] > 0) << "row " << i << " bit " << b;
    }
  }

  // Better than random on the training data: codes of the same class are
  // clearly closer than codes of different classes (random codes: equal).
  double within = 0, between = 0;
  size_t nw = 0, nb = 0;
  for (size_t i = 0; i < train->size(); ++i) {
    for (size_t j = i + 1; j < train->size(); ++j) {
      const int d = Popcount(codes->data() + i * cb, codes->data() + j * cb, cb);
      if (train->labels[i] == train->labels[j]) { within += d; ++nw; } else { between += d; ++nb; }
    }
  }
  within /= nw;
  between /= nb;
  EXPECT_LT(within, 0.8 * between) << "within " << within << " between " << between;

  // Determinism: the same seed gives the same codes; another seed does not.
  auto again = TrainHashingMethod(GetParam(), *train, TinyConfig(bits), nullptr);
  ASSERT_TRUE(again.ok());
  auto codes2 = (*again)->Codes(train->images);
  ASSERT_TRUE(codes2.ok());
  EXPECT_EQ(*codes, *codes2);
  TrainConfig other = TinyConfig(bits);
  other.seed = 4;
  auto third = TrainHashingMethod(GetParam(), *train, other, nullptr);
  ASSERT_TRUE(third.ok());
  auto codes3 = (*third)->Codes(train->images);
  ASSERT_TRUE(codes3.ok());
  EXPECT_NE(*codes, *codes3);

  auto none = (*model)->Codes({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

INSTANTIATE_TEST_SUITE_P(AllMethods, HashingMethodTrainTest,
                         testing::Values(HashingMethod::kHashNet, HashingMethod::kGreedyHash, HashingMethod::kDsnc,
                                         HashingMethod::kFloat),
                         [](const testing::TestParamInfo<HashingMethod>& i) {
                           return std::string(HashingMethodName(i.param));
                         });

TEST(HashingMethodsTest, LossFallsWithMoreEpochs) {
  const LabeledImages* train = Train300();
  if (train == nullptr) GTEST_SKIP() << "Fashion-MNIST not installed";
  for (HashingMethod m : {HashingMethod::kHashNet, HashingMethod::kGreedyHash}) {
    TrainConfig c = TinyConfig(16);
    c.phase1_epochs = 3;
    c.phase2_epochs = 0;
    HashingReport rep;
    ASSERT_TRUE(TrainHashingMethod(m, *train, c, &rep).ok());
    ASSERT_EQ(rep.epoch_loss.size(), 3u);
    EXPECT_LT(rep.epoch_loss.back(), rep.epoch_loss.front()) << HashingMethodName(m);
  }
}

TEST(CosineTopKTest, MatchesBruteForceWithTiesByIndex) {
  const int dim = 3;
  // Rows 1, 3 and 4 point the same way (ties); row 2 is zero.
  const std::vector<float> db = {1, 0, 0,  0, 1, 0,  0, 0, 0,  0, 2, 0,  0, 0.5f, 0,  1, 1, 0};
  const std::vector<float> q = {0, 1, 0,  1, 0.1f, 0};
  auto r = CosineTopK(q, db, dim, 4);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0], (std::vector<uint32_t>{1, 3, 4, 5}));
  EXPECT_EQ((*r)[1], (std::vector<uint32_t>{0, 5, 1, 3}));
  auto all = CosineTopK(q, db, dim, 100);  // k is clipped to the database
  ASSERT_TRUE(all.ok());
  EXPECT_EQ((*all)[0], (std::vector<uint32_t>{1, 3, 4, 5, 0, 2}));
  EXPECT_EQ(CosineTopK(q, db, 0, 4).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(CosineTopK({1, 2}, db, dim, 4).status().code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace hamdb
