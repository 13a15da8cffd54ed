// Encoder: a trained image -> binary code model (LLC or DSNC), loaded from
// one artifact file, used by ingest, the HTTP service and the benchmarks.
//
// An artifact holds everything needed to reproduce codes bit for bit: the
// backbone (built-in CNN weights, or an embedded TorchScript module), the
// projection to `bits` logits, the codebook of class codes with class names,
// the preprocessing, the training method and a format version. Loading an
// artifact and encoding the same pixels gives identical codes.
//
// Encoding: images of any size and 1 or 3 channels are preprocessed
// (channels, resize, centre crop, mean/std) as the artifact says, run through
// the network in eval mode, and each bit is set when its probability
// sigmoid(logit) is > 0.5. That raw code is decoded against the codebook
// (ED / MHD with ties broken by the bit probabilities, out-of-distribution
// when the nearest class code is farther than ood_radius).
//
// Snapping: with a snap margin m > 0 (an artifact setting), each bit whose
// logit lies strictly inside (-m, m) is uncertain and takes the value of the
// decoded class code's bit; confident bits keep their own value. The result
// is the image's code. The decode, the bit probabilities and the score all
// describe the raw logits, so snapping changes the code only. m = 0 (the
// value of artifacts written before the setting existed) leaves the raw code.
//
// Thread safety: Encode is const and may be called from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "encoder/codebook.h"
#include "encoder/image.h"
#include "core/status.h"

namespace hamdb {

// Part of the artifact: how raw pixels become the network's input tensor.
struct PreprocessConfig {
  int channels = 1;           // 1 (gray) or 3 (RGB) network input channels
  int resize_width = 28;      // resize to this size first (bilinear) ...
  int resize_height = 28;
  int crop_width = 0;         // ... then centre-crop; 0 = no crop
  int crop_height = 0;
  std::vector<float> mean;    // per channel, applied to pixels / 255
  std::vector<float> stddev;  // per channel
};

// One encoded image.
struct EncodedImage {
  std::vector<uint8_t> code;    // instance code (snapped), code_bytes(bits) bytes
  std::vector<float> bit_probs;  // bits values: P(bit = 1)
  DecodeResult decode;           // of the raw code, against the artifact's codebook
  // Mean over bits of the probability the bit agrees with the decoded class
  // code: 1 = certain, 0.5 = coin flips.
  float confidence = 0.f;
  // The item score (core/score.h) of an image: the log-odds of the
  // confidence, ln(c / (1 - c)), computed before c is rounded to a float and
  // capped at ln(1e12). It orders images exactly as c does, but spreads the
  // confidences close to 1, where most images sit, over a range whose 16-bit
  // score keys still tell them apart (c itself would round to a handful).
  float score = 0.f;
};

class Encoder {
 public:
  virtual ~Encoder() = default;

  // Loads an artifact written by Save (or by `hamdb train`). NotFound,
  // IOError, NotSupported (unknown format version) or Corruption.
  static StatusOr<std::unique_ptr<Encoder>> Load(const std::string& path);
  // Writes the artifact atomically (a temporary file, then rename).
  virtual Status Save(const std::string& path) const = 0;

  virtual int bits() const = 0;
  virtual const Codebook& codebook() const = 0;
  const std::vector<std::string>& class_names() const { return codebook().class_names(); }
  virtual const PreprocessConfig& preprocess() const = 0;
  // "llc" or "dsnc".
  virtual std::string method() const = 0;
  // Default OOD radius for Decode (0: any inexact code is OOD).
  virtual uint32_t ood_radius() const = 0;
  // The snap margin (see Snapping above); 0 = codes are the raw signs.
  virtual float snap_margin() const = 0;

  // Encodes a batch. InvalidArgument for an empty image or a bad channel count;
  // the whole call fails only for such input errors, never partially.
  // An image's result does not depend on the other images of the batch,
  // except in the last bits of its floats: libtorch's kernels add up in an
  // order that depends on the batch's size and the image's place in it, so
  // logits, probabilities and scores can differ by a rounding error, and a
  // code bit only where a logit is within a rounding error of 0 or of the
  // snap margin.
  virtual StatusOr<std::vector<EncodedImage>> Encode(const std::vector<Image>& images) const = 0;
};

}  // namespace hamdb
