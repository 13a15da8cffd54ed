// LLC training, the encoder artifact and encoding, on a few hundred
// Fashion-MNIST images (the dataset-fashion-mnist Debian package).
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <fstream>
#include <thread>

#include "encoder/dataset.h"
#include "encoder/encoder.h"
#include "encoder/llc_model.h"
#include "encoder/trainer.h"

namespace hamdb {
namespace {

namespace fs = std::filesystem;

const LabeledImages* TrainSet() {
  static const LabeledImages* data = [] {
    auto d = LoadFashionMnist(kDefaultFashionMnistDir, "train", 600);
    return d.ok() ? new LabeledImages(std::move(d).value()) : nullptr;
  }();
  return data;
}
const LabeledImages* TestSet() {
  static const LabeledImages* data = [] {
    auto d = LoadFashionMnist(kDefaultFashionMnistDir, "test", 300);
    return d.ok() ? new LabeledImages(std::move(d).value()) : nullptr;
  }();
  return data;
}

#define REQUIRE_DATA()                                                     \
  if (TrainSet() == nullptr || TestSet() == nullptr) {                            \
    GTEST_SKIP() << "Fashion-MNIST not installed at " << kDefaultFashionMnistDir; \
  }

TrainConfig SmallConfig() {
  TrainConfig c;
  c.bits = 16;
  c.cnn_width = 8;
  c.feature_dim = 64;
  c.phase1_epochs = 3;
  c.phase2_epochs = 2;
  c.batch_size = 32;
  c.threads = 1;
  c.seed = 7;
  return c;
}

std::string TempPath(const std::string& name) {
  const std::string dir = testing::TempDir() + "/hamdb_encoder_test";
  fs::create_directories(dir);
  return dir + "/" + name;
}

void ExpectSameEncoding(const Encoder& a, const Encoder& b, const std::vector<Image>& images) {
  auto ea = a.Encode(images);
  auto eb = b.Encode(images);
  ASSERT_TRUE(ea.ok() && eb.ok());
  ASSERT_EQ(ea->size(), eb->size());
  for (size_t i = 0; i < ea->size(); ++i) {
    EXPECT_EQ((*ea)[i].code, (*eb)[i].code) << i;
    EXPECT_EQ((*ea)[i].bit_probs, (*eb)[i].bit_probs) << i;
    EXPECT_EQ((*ea)[i].decode.class_index, (*eb)[i].decode.class_index) << i;
  }
}

class LlcTrained : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (TrainSet() == nullptr || TestSet() == nullptr) return;
    auto enc = TrainLlc(*TrainSet(), TestSet(), SmallConfig(), &report_);
    if (enc.ok()) encoder_ = std::move(enc).value().release();
    else status_ = new Status(enc.status());
  }
  void SetUp() override {
    REQUIRE_DATA();
    ASSERT_EQ(status_, nullptr) << status_->ToString();
    ASSERT_NE(encoder_, nullptr);
  }
  static Encoder* encoder_;
  static Status* status_;
  static TrainReport report_;
};
Encoder* LlcTrained::encoder_ = nullptr;
Status* LlcTrained::status_ = nullptr;
TrainReport LlcTrained::report_;

TEST_F(LlcTrained, LossFallsCodesUniqueAndAccuracyBeatsChance) {
  ASSERT_EQ(report_.epoch_loss.size(), 5u);
  EXPECT_LT(report_.epoch_loss[2], report_.epoch_loss[0]);  // phase 1
  EXPECT_LT(report_.epoch_loss[4], report_.epoch_loss[3]);  // phase 2
  EXPECT_EQ(report_.unique_class_codes, 10u);
  EXPECT_EQ(encoder_->codebook().NumUniqueCodes(), 10u);
  EXPECT_EQ(encoder_->bits(), 16);
  EXPECT_EQ(encoder_->method(), "llc");
  EXPECT_EQ(encoder_->class_names(), FashionMnistClassNames());
  EXPECT_GT(report_.phase1_eval_accuracy, 0.4);

  auto ev = EvaluateEncoder(*encoder_, *TestSet());
  ASSERT_TRUE(ev.ok()) << ev.status().ToString();
  EXPECT_EQ(ev->n, TestSet()->size());
  // Ten classes: chance is 0.1. 600 training images take a small CNN well past it.
  EXPECT_GT(ev->mhd_accuracy, 0.45);
  EXPECT_GE(ev->mhd_accuracy, ev->ed_accuracy);
  EXPECT_GT(ev->mean_bits_correct, 0.7);
  EXPECT_NEAR(ev->ood_rate, 1.0 - [&] {
    // ED hits are exactly the in-distribution codes at radius 0 when codes are unique.
    size_t exact = 0;
    auto enc = encoder_->Encode(TestSet()->images);
    for (const auto& e : *enc) exact += e.decode.exact;
    return static_cast<double>(exact) / TestSet()->size();
  }(), 1e-9);
}

TEST_F(LlcTrained, EncodedImageFieldsAreConsistent) {
  std::vector<Image> imgs(TestSet()->images.begin(), TestSet()->images.begin() + 20);
  auto enc = encoder_->Encode(imgs);
  ASSERT_TRUE(enc.ok());
  // The trained default snaps: a bit with |logit| < m, that is
  // sigmoid(-m) < p < sigmoid(m), takes the decoded class code's bit.
  const double m = encoder_->snap_margin();
  ASSERT_EQ(m, SmallConfig().snap_margin);
  ASSERT_GT(m, 0);
  const float lo = static_cast<float>(1 / (1 + std::exp(m))), hi = static_cast<float>(1 / (1 + std::exp(-m)));
  size_t snapped = 0;
  for (const EncodedImage& e : *enc) {
    ASSERT_EQ(e.code.size(), 2u);
    ASSERT_EQ(e.bit_probs.size(), 16u);
    std::vector<uint8_t> raw(2, 0);
    for (int j = 0; j < 16; ++j)
      if (e.bit_probs[j] > 0.5f) raw[j / 8] |= 1 << (j % 8);
    // The decode describes the raw code.
    const DecodeResult d = encoder_->codebook().Decode(raw.data(), e.bit_probs.data());
    EXPECT_EQ(d.class_index, e.decode.class_index);
    EXPECT_EQ(d.distance, e.decode.distance);
    const uint8_t* cc = encoder_->codebook().class_code(e.decode.class_index);
    for (int j = 0; j < 16; ++j) {
      const bool uncertain = e.bit_probs[j] > lo && e.bit_probs[j] < hi;
      const bool want = uncertain ? ((cc[j / 8] >> (j % 8)) & 1) != 0 : e.bit_probs[j] > 0.5f;
      EXPECT_EQ(((e.code[j / 8] >> (j % 8)) & 1) != 0, want) << "bit " << j << " p " << e.bit_probs[j];
      snapped += uncertain && want != (e.bit_probs[j] > 0.5f);
    }
    EXPECT_GE(e.confidence, 0.f);
    EXPECT_LE(e.confidence, 1.f);
  }
  // A small model is unsure of many bits: snapping changed some codes here.
  EXPECT_GT(snapped, 0u);
}

TEST_F(LlcTrained, SnapMarginZeroGivesRawCodesAndBadMarginsAreRefused) {
  auto* torch_encoder = dynamic_cast<TorchEncoder*>(encoder_);
  ASSERT_NE(torch_encoder, nullptr);
  EncoderMeta meta = torch_encoder->meta();
  meta.snap_margin = 0;
  auto raw = TorchEncoder::Create(meta, torch_encoder->net());
  ASSERT_TRUE(raw.ok()) << raw.status().ToString();
  std::vector<Image> imgs(TestSet()->images.begin(), TestSet()->images.begin() + 50);
  auto a = (*raw)->Encode(imgs);
  auto b = encoder_->Encode(imgs);
  ASSERT_TRUE(a.ok() && b.ok());
  size_t differ = 0;
  for (size_t i = 0; i < imgs.size(); ++i) {
    const EncodedImage& e = (*a)[i];
    for (int j = 0; j < 16; ++j) EXPECT_EQ(((e.code[j / 8] >> (j % 8)) & 1) != 0, e.bit_probs[j] > 0.5f);
    // Snapping changes the code only.
    EXPECT_EQ(e.bit_probs, (*b)[i].bit_probs);
    EXPECT_EQ(e.score, (*b)[i].score);
    EXPECT_EQ(e.decode.class_index, (*b)[i].decode.class_index);
    differ += e.code != (*b)[i].code;
  }
  EXPECT_GT(differ, 0u);
  // The setting survives Save / Load.
  const std::string path = TempPath("margin0.hdbe");
  ASSERT_TRUE((*raw)->Save(path).ok());
  auto loaded = Encoder::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ((*loaded)->snap_margin(), 0.f);
  ExpectSameEncoding(**raw, **loaded, imgs);
  // Without snapping the artifact is format 1, which builds that cannot snap
  // read alike; with it, format 2, which they refuse.
  auto format_of = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    char head[12] = {};
    in.read(head, sizeof(head));
    return static_cast<int>(static_cast<unsigned char>(head[8]));
  };
  EXPECT_EQ(format_of(path), 1);
  const std::string snapped = TempPath("margin2.hdbe");
  ASSERT_TRUE(encoder_->Save(snapped).ok());
  EXPECT_EQ(format_of(snapped), 2);

  for (float bad : {-1.f, 16.5f, std::nanf(""), std::numeric_limits<float>::infinity()}) {
    meta.snap_margin = bad;
    auto r = TorchEncoder::Create(meta, torch_encoder->net());
    EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument) << bad;
  }
  // Training refuses a bad margin before its first epoch.
  TrainConfig c = SmallConfig();
  for (double bad : {-1.0, 17.0, std::nan(""), 1e39}) {
    c.snap_margin = bad;
    auto t = TrainLlc(*TrainSet(), nullptr, c, nullptr);
    EXPECT_EQ(t.status().code(), Status::Code::kInvalidArgument) << bad;
  }
}

TEST_F(LlcTrained, SaveLoadRoundTripIsBitExact) {
  const std::string path = TempPath("roundtrip.hdbe");
  ASSERT_TRUE(encoder_->Save(path).ok());
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  auto loaded = Encoder::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ((*loaded)->bits(), 16);
  EXPECT_EQ((*loaded)->class_names(), encoder_->class_names());
  EXPECT_EQ((*loaded)->preprocess().mean, encoder_->preprocess().mean);
  EXPECT_EQ((*loaded)->snap_margin(), encoder_->snap_margin());
  for (size_t c = 0; c < 10; ++c) {
    EXPECT_TRUE(std::equal((*loaded)->codebook().class_code(c), (*loaded)->codebook().class_code(c) + 2,
                           encoder_->codebook().class_code(c)));
  }
  ExpectSameEncoding(*encoder_, **loaded, TestSet()->images);

  // Damaged artifacts are errors, never crashes.
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  auto write = [&](const std::string& name, const std::string& b) {
    const std::string p = TempPath(name);
    std::ofstream(p, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
    return p;
  };
  EXPECT_EQ(Encoder::Load(write("trunc.hdbe", bytes.substr(0, bytes.size() / 2))).status().code(),
            Status::Code::kCorruption);
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 1;
  EXPECT_EQ(Encoder::Load(write("flip.hdbe", flipped)).status().code(), Status::Code::kCorruption);
  std::string version = bytes;
  version[8] = 99;
  EXPECT_EQ(Encoder::Load(write("version.hdbe", version)).status().code(), Status::Code::kNotSupported);
  EXPECT_EQ(Encoder::Load(write("empty.hdbe", "")).status().code(), Status::Code::kCorruption);
  EXPECT_EQ(Encoder::Load(TempPath("missing.hdbe")).status().code(), Status::Code::kNotFound);
}

TEST_F(LlcTrained, EncodeIsThreadSafeAndHandlesOddInput) {
  std::vector<Image> imgs(TestSet()->images.begin(), TestSet()->images.begin() + 64);
  auto ref = encoder_->Encode(imgs);
  ASSERT_TRUE(ref.ok());
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 5; ++rep) {
        auto r = encoder_->Encode(imgs);
        if (!r.ok()) {
          ++mismatches[t];
          continue;
        }
        for (size_t i = 0; i < r->size(); ++i) mismatches[t] += (*r)[i].code != (*ref)[i].code;
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);

  // Other sizes and RGB go through the preprocessing.
  Image rgb = ConvertChannels(ResizeBilinear(TestSet()->images[0], 56, 56), 3);
  auto big = encoder_->Encode({rgb});
  ASSERT_TRUE(big.ok()) << big.status().ToString();
  EXPECT_EQ(big->size(), 1u);
  // Bad input fails the call with InvalidArgument.
  EXPECT_EQ(encoder_->Encode({Image{}}).status().code(), Status::Code::kInvalidArgument);
  Image two = TestSet()->images[0];
  two.channels = 2;
  EXPECT_EQ(encoder_->Encode({two}).status().code(), Status::Code::kInvalidArgument);
  auto none = encoder_->Encode({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST(LlcTraining, DeterministicAndResumable) {
  REQUIRE_DATA();
  LabeledImages small = *TrainSet();
  small.images.resize(300);
  small.labels.resize(300);
  TrainConfig c = SmallConfig();
  c.phase1_epochs = 2;
  c.phase2_epochs = 1;
  auto a = TrainLlc(small, nullptr, c, nullptr);
  ASSERT_TRUE(a.ok()) << a.status().ToString();

  c.checkpoint_path = TempPath("ckpt.pt");
  fs::remove(c.checkpoint_path);
  c.resume = true;
  c.stop_after_epochs = 1;
  auto stopped = TrainLlc(small, nullptr, c, nullptr);
  ASSERT_FALSE(stopped.ok());
  EXPECT_NE(stopped.status().message().find("stopped after 1"), std::string::npos);
  ASSERT_TRUE(fs::exists(c.checkpoint_path));
  c.stop_after_epochs = 0;
  TrainReport rep;
  auto resumed = TrainLlc(small, nullptr, c, &rep);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ(rep.resumed_epochs, 1);
  // Same seed, one run interrupted and resumed: identical encoder.
  ExpectSameEncoding(**a, **resumed, TestSet()->images);
}

TEST(LlcTraining, CollapsedCodebookIsAnError) {
  REQUIRE_DATA();
  LabeledImages small = *TrainSet();
  small.images.resize(100);
  small.labels.resize(100);
  TrainConfig c = SmallConfig();
  c.bits = 2;  // four codes cannot name ten classes
  c.phase1_epochs = 1;
  c.phase2_epochs = 0;
  auto r = TrainLlc(small, nullptr, c, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("collapsed"), std::string::npos) << r.status().message();
}

TEST(LlcTraining, BaselineLearns) {
  REQUIRE_DATA();
  TrainConfig c = SmallConfig();
  c.phase1_epochs = 2;
  c.phase2_epochs = 1;
  auto b = TrainBaseline(*TrainSet(), *TestSet(), c);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_GT(b->test_accuracy, 0.45);
}

// A TorchScript backbone defined here, saved, and trained as a user's module.
TEST(LlcTraining, TorchScriptBackbone) {
  REQUIRE_DATA();
  torch::manual_seed(3);
  torch::jit::Module m("UserBackbone");
  m.register_parameter("w", torch::randn({784, 48}) * 0.05, false);
  m.register_parameter("b", torch::zeros({48}), false);
  m.define(R"(
    def forward(self, x):
        return torch.relu(torch.matmul(torch.flatten(x, 1), self.w) + self.b)
  )");
  const std::string script_path = TempPath("backbone.pt");
  m.save(script_path);

  TrainConfig c = SmallConfig();
  c.backbone = "torchscript";
  c.torchscript_path = script_path;
  c.lr = 3e-3;
  TrainReport rep;
  auto enc = TrainLlc(*TrainSet(), TestSet(), c, &rep);
  ASSERT_TRUE(enc.ok()) << enc.status().ToString();
  EXPECT_LT(rep.epoch_loss[2], rep.epoch_loss[0]);
  EXPECT_EQ(rep.unique_class_codes, 10u);
  auto ev = EvaluateEncoder(**enc, *TestSet());
  ASSERT_TRUE(ev.ok());
  EXPECT_GT(ev->mhd_accuracy, 0.4);

  const std::string path = TempPath("script.hdbe");
  ASSERT_TRUE((*enc)->Save(path).ok());
  auto loaded = Encoder::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ExpectSameEncoding(**enc, **loaded, TestSet()->images);

  // A module that does not accept the input is a clean error.
  torch::jit::Module bad("Bad");
  bad.define(R"(
    def forward(self, x):
        return torch.matmul(x, torch.zeros(3, 3))
  )");
  bad.save(TempPath("bad.pt"));
  c.torchscript_path = TempPath("bad.pt");
  auto r = TrainLlc(*TrainSet(), nullptr, c, nullptr);
  EXPECT_FALSE(r.ok());
  c.torchscript_path = TempPath("missing.pt");
  EXPECT_FALSE(TrainLlc(*TrainSet(), nullptr, c, nullptr).ok());
}

}  // namespace
}  // namespace hamdb
