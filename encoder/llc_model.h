// Internal to encoder/ (includes libtorch): the network behind an Encoder and
// the artifact reader/writer shared by encoder.cc and trainer.cc. Not for use
// outside encoder/ and tests/encoder/.
//
// The network: backbone f (built-in CNN or a TorchScript module) mapping an
// N x C x H x W float batch to N x d features, then the projection
// P: d -> bits (a linear layer with bias) giving the bit logits z = P f(x).
// LLC keeps a latent codebook C (classes x bits); its signs are the class
// codes. The optional `head` (d -> classes) is only used by the
// full-precision baseline.
#pragma once

#include <torch/script.h>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "encoder/encoder.h"

namespace hamdb {

// Format 2 adds the snap margin; an artifact with margin 0 is written as
// format 1, which builds without snapping read and encode alike. A build
// that cannot snap refuses format 2 (NotSupported) rather than give codes
// that do not match a collection's.
inline constexpr uint32_t kEncoderFormatVersion = 2;
inline constexpr uint32_t kEncoderFormatNoSnap = 1;
// The largest snap margin: beyond about 16, sigmoid(m) rounds to 1 in float
// and the bit probabilities could no longer tell which logits are inside it.
inline constexpr float kMaxSnapMargin = 16.0f;
// InvalidArgument unless 0 <= m <= kMaxSnapMargin (NaN fails).
Status ValidateSnapMargin(double m);

struct BackboneSpec {
  std::string type = "cnn";  // "cnn" or "torchscript"
  int cnn_width = 16;        // channels of the first conv layer (the second has 2x)
  int feature_dim = 128;     // d
};

// Input height/width after preprocessing.
int InputHeight(const PreprocessConfig& p);
int InputWidth(const PreprocessConfig& p);

class LlcNetImpl : public torch::nn::Module {
 public:
  // For "torchscript", `script` is the loaded module and spec.feature_dim is
  // probed by running it once; for "cnn" it is built from the spec.
  LlcNetImpl(const BackboneSpec& spec, const PreprocessConfig& pre, int bits, int num_classes,
             std::shared_ptr<torch::jit::Module> script);

  torch::Tensor Features(const torch::Tensor& x);
  torch::Tensor BitLogits(const torch::Tensor& features) { return proj->forward(features); }
  // sign(C) with a straight-through gradient to C.
  torch::Tensor SignedCodebook() const;

  // Every trainable tensor, the TorchScript backbone's included.
  std::vector<torch::Tensor> AllParameters(bool with_codebook, bool with_head);
  void SetTraining(bool on);

  BackboneSpec spec;
  torch::nn::Sequential cnn{nullptr};
  std::shared_ptr<torch::jit::Module> script;
  torch::nn::Linear proj{nullptr};
  torch::nn::Linear head{nullptr};
  torch::Tensor latent_codebook;  // classes x bits
};
TORCH_MODULE(LlcNet);

// Converts images to the network input: uint8 N x C x H x W after channel
// conversion, resize and crop (normalisation is done by Normalize).
StatusOr<torch::Tensor> ImagesToTensor(const std::vector<Image>& images, const PreprocessConfig& pre);
torch::Tensor Normalize(const torch::Tensor& u8, const PreprocessConfig& pre);

// Packs N x bits booleans into N x code_bytes LSB-first codes.
std::vector<uint8_t> PackBits(const torch::Tensor& bits_bool);

// Training schedule pieces shared by every trainer (LLC, the baseline and the
// hashing methods), so that all of them see the same batches, learning rates
// and input normalisation (defined in trainer.cc).
// The epoch's sample order: a function of (seed, global epoch) only, so a
// resumed run sees the same batches.
std::vector<int64_t> EpochOrder(size_t n, uint64_t seed, int epoch);
// Cosine learning-rate decay over `total` steps.
double CosineLr(double base, int64_t step, int64_t total);
// Per-channel mean and standard deviation (floored at 1e-3) of N x C x H x W
// uint8 pixels scaled to [0, 1]; fills pre->mean and pre->stddev.
void SetInputStatistics(const torch::Tensor& x_u8, PreprocessConfig* pre);

// Everything an artifact holds besides the network weights.
struct EncoderMeta {
  std::string method = "llc";
  int bits = 0;
  BackboneSpec backbone;
  PreprocessConfig preprocess;
  std::vector<std::string> class_names;
  std::vector<uint8_t> class_codes;  // classes * code_bytes
  uint32_t ood_radius = 0;
  float snap_margin = 0;  // in [0, kMaxSnapMargin] (encoder.h, Snapping); absent in format 1: 0
  std::string training_json = "{}";  // free-form training summary
};

// The Encoder implementation over an LlcNet.
class TorchEncoder : public Encoder {
 public:
  static StatusOr<std::unique_ptr<TorchEncoder>> Create(EncoderMeta meta, LlcNet net);

  Status Save(const std::string& path) const override;
  int bits() const override { return meta_.bits; }
  const Codebook& codebook() const override { return codebook_; }
  const PreprocessConfig& preprocess() const override { return meta_.preprocess; }
  std::string method() const override { return meta_.method; }
  uint32_t ood_radius() const override { return meta_.ood_radius; }
  float snap_margin() const override { return meta_.snap_margin; }
  StatusOr<std::vector<EncodedImage>> Encode(const std::vector<Image>& images) const override;

  // Bit logits (N x bits) of preprocessed uint8 input, in eval mode.
  torch::Tensor LogitsOfTensor(const torch::Tensor& u8) const;
  const EncoderMeta& meta() const { return meta_; }
  LlcNet net() const { return net_; }

 private:
  TorchEncoder(EncoderMeta meta, LlcNet net, Codebook codebook)
      : meta_(std::move(meta)), net_(std::move(net)), codebook_(std::move(codebook)) {}
  EncoderMeta meta_;
  LlcNet net_;
  Codebook codebook_;
};

// Saves / loads the network weights (not the TorchScript module) to bytes.
std::string SerializeWeights(LlcNet& net, bool with_codebook);
Status DeserializeWeights(LlcNet& net, const std::string& bytes, bool with_codebook);

}  // namespace hamdb
